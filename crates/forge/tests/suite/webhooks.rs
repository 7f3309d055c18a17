//! Webhook deliveries signed the way each forge signs them: genuine ones are read into events,
//! forged, tampered or unsigned ones are refused, and what a follower ignores reads as nothing.

use nightshift_forge::{
    CiState, CommentKind, ForgeError, ForgeKind, PrChange, Secret, WebhookEvent, parse_webhook,
};
use nightshift_test_support::forge_fake::FakeKind;
use nightshift_test_support::forge_fake::webhook::delivery;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Value, json};

const SECRET: &str = "hook-secret-3b9e";

fn forge_kind(kind: FakeKind) -> ForgeKind {
    match kind {
        FakeKind::GitHub => ForgeKind::Github,
        FakeKind::GitLab => ForgeKind::Gitlab,
        FakeKind::Gitea => ForgeKind::Gitea,
    }
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.insert(
            HeaderName::try_from(name.as_str()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn parse(
    kind: FakeKind,
    secret: &str,
    event: &str,
    payload: &Value,
) -> Result<Option<WebhookEvent>, ForgeError> {
    let (headers, body) = delivery(kind, secret, event, payload);
    parse_webhook(
        forge_kind(kind),
        &Secret::new(SECRET),
        &header_map(&headers),
        &body,
    )
}

/// A pull request merged, in each forge's payload.
fn merged(kind: FakeKind) -> (&'static str, Value) {
    match kind {
        FakeKind::GitHub => (
            "pull_request",
            json!({"action": "closed", "number": 7, "pull_request": {"number": 7, "state": "closed", "merged": true, "head": {"sha": "abc123", "ref": "nightshift/7-x"}}, "repository": {"full_name": "acme/widget"}, "sender": {"login": "alice"}}),
        ),
        FakeKind::GitLab => (
            "Merge Request Hook",
            json!({"object_kind": "merge_request", "event_type": "merge_request", "user": {"username": "alice"}, "project": {"id": 1, "path_with_namespace": "acme/widget"}, "object_attributes": {"iid": 7, "action": "merge", "state": "merged", "last_commit": {"id": "abc123"}}}),
        ),
        FakeKind::Gitea => (
            "pull_request",
            json!({"action": "closed", "number": 7, "pull_request": {"number": 7, "state": "closed", "merged": true, "head": {"sha": "abc123"}}, "repository": {"full_name": "acme/widget"}, "sender": {"login": "alice"}}),
        ),
    }
}

async fn genuine_deliveries_are_read(kind: FakeKind) {
    let (event, payload) = merged(kind);
    assert_eq!(
        parse(kind, SECRET, event, &payload).unwrap(),
        Some(WebhookEvent::PullRequest {
            repo: "acme/widget".into(),
            number: 7,
            change: PrChange::Merged,
            head_sha: Some("abc123".into()),
        })
    );

    let (event, payload) = match kind {
        FakeKind::GitHub => (
            "check_suite",
            json!({"action": "completed", "check_suite": {"head_sha": "abc123", "status": "completed", "conclusion": "failure", "app": {"name": "GitHub Actions"}, "pull_requests": [{"number": 7}]}, "repository": {"full_name": "acme/widget"}}),
        ),
        FakeKind::GitLab => (
            "Pipeline Hook",
            json!({"object_kind": "pipeline", "object_attributes": {"id": 31, "sha": "abc123", "status": "failed", "ref": "nightshift/7-x"}, "merge_request": {"iid": 7}, "project": {"path_with_namespace": "acme/widget"}}),
        ),
        FakeKind::Gitea => (
            "status",
            json!({"sha": "abc123", "state": "failure", "context": "ci/test", "target_url": "https://ci.example.com/1", "repository": {"full_name": "acme/widget"}, "sender": {"login": "ci"}}),
        ),
    };
    match parse(kind, SECRET, event, &payload).unwrap() {
        Some(WebhookEvent::Ci {
            repo,
            head_sha,
            state,
            ..
        }) => {
            assert_eq!(
                (repo.as_str(), head_sha.as_str(), state),
                ("acme/widget", "abc123", CiState::Failing)
            );
        }
        other => panic!("{other:?}"),
    }

    let (event, payload) = match kind {
        FakeKind::GitHub => (
            "issue_comment",
            json!({"action": "created", "issue": {"number": 7, "pull_request": {"url": "https://api.github.com/repos/acme/widget/pulls/7"}}, "comment": {"id": 99, "body": "/nightshift fix the lint", "user": {"login": "alice"}, "created_at": "2026-01-01T10:00:00Z", "html_url": "https://github.com/acme/widget/pull/7#issuecomment-99"}, "repository": {"full_name": "acme/widget"}}),
        ),
        FakeKind::GitLab => (
            "Note Hook",
            json!({"object_kind": "note", "user": {"username": "alice"}, "project": {"path_with_namespace": "acme/widget"}, "object_attributes": {"id": 99, "note": "/nightshift fix the lint", "noteable_type": "MergeRequest", "created_at": "2026-01-01 10:00:00 UTC", "system": false, "type": null, "url": "https://gitlab.example.com/acme/widget/-/merge_requests/7#note_99"}, "merge_request": {"iid": 7}}),
        ),
        FakeKind::Gitea => (
            "pull_request_comment",
            json!({"action": "created", "is_pull": true, "issue": {"number": 7, "pull_request": {"merged": false}}, "comment": {"id": 99, "body": "/nightshift fix the lint", "user": {"login": "alice"}, "created_at": "2026-01-01T12:00:00+02:00", "html_url": "https://gitea.example.com/acme/widget/pulls/7#issuecomment-99"}, "repository": {"full_name": "acme/widget"}}),
        ),
    };
    match parse(kind, SECRET, event, &payload).unwrap() {
        Some(WebhookEvent::Comment {
            repo,
            number,
            comment,
        }) => {
            assert_eq!((repo.as_str(), number), ("acme/widget", 7));
            assert_eq!(
                (
                    comment.id,
                    comment.kind,
                    comment.author.as_str(),
                    comment.body.as_str()
                ),
                (
                    99,
                    CommentKind::Conversation,
                    "alice",
                    "/nightshift fix the lint"
                )
            );
            assert_eq!(comment.created_at, 1_767_261_600_000, "{comment:?}");
        }
        other => panic!("{other:?}"),
    }

    // Genuine, but nothing a follower acts on.
    let (event, payload) = match kind {
        FakeKind::GitHub => (
            "ping",
            json!({"zen": "Keep it logically awesome.", "hook_id": 1}),
        ),
        FakeKind::GitLab => (
            "Push Hook",
            json!({"object_kind": "push", "project": {"path_with_namespace": "acme/widget"}}),
        ),
        FakeKind::Gitea => (
            "push",
            json!({"ref": "refs/heads/main", "repository": {"full_name": "acme/widget"}}),
        ),
    };
    assert_eq!(parse(kind, SECRET, event, &payload).unwrap(), None);
}

async fn forged_deliveries_are_refused(kind: FakeKind) {
    let (event, payload) = merged(kind);
    let refused = |result: Result<Option<WebhookEvent>, ForgeError>| match result {
        Err(ForgeError::WebhookRejected { reason, .. }) => reason,
        other => panic!("a forged delivery was accepted: {other:?}"),
    };
    // Signed with another secret.
    let reason = refused(parse(kind, "not-the-secret", event, &payload));
    assert!(reason.contains("does not match"), "{reason}");
    // A genuine signature over a body that was changed afterwards.
    let (headers, body) = delivery(kind, SECRET, event, &payload);
    let mut tampered = body.clone();
    let at = tampered.iter().position(|b| *b == b'7').unwrap();
    tampered[at] = b'8';
    // GitLab's token proves the sender, not the body; the others sign the body.
    if kind != FakeKind::GitLab {
        let reason = refused(parse_webhook(
            forge_kind(kind),
            &Secret::new(SECRET),
            &header_map(&headers),
            &tampered,
        ));
        assert!(reason.contains("does not match"), "{reason}");
    }
    // No proof at all.
    let unsigned: Vec<(String, String)> = headers
        .into_iter()
        .filter(|(name, _)| !name.contains("signature") && name != "x-gitlab-token")
        .collect();
    let reason = refused(parse_webhook(
        forge_kind(kind),
        &Secret::new(SECRET),
        &header_map(&unsigned),
        &body,
    ));
    assert!(reason.starts_with("no "), "{reason}");
    assert!(!reason.contains(SECRET));
}

/// A genuine delivery Nightshift cannot read (GitHub's form-encoded content type, a payload
/// without its fields) is told apart from a forged one: the sender is right, the setup is not.
async fn genuine_but_unreadable_deliveries_say_why(kind: FakeKind) {
    let (event, _) = merged(kind);
    let form = b"payload=%7B%22action%22%3A%22closed%22%7D".to_vec();
    let (headers, _) = delivery(kind, SECRET, event, &json!({}));
    // Signed again over the form body, as the forge would have.
    let resigned: Vec<(String, String)> = proof_for(kind, &form)
        .into_iter()
        .chain(
            headers
                .into_iter()
                .filter(|(n, _)| !n.contains("signature") && n != "x-gitlab-token"),
        )
        .collect();
    match parse_webhook(
        forge_kind(kind),
        &Secret::new(SECRET),
        &header_map(&resigned),
        &form,
    ) {
        Err(ForgeError::WebhookUnreadable { reason, .. }) => {
            assert!(reason.contains("not JSON"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    let (event, mut payload) = merged(kind);
    payload["repository"] = Value::Null;
    payload["project"] = Value::Null;
    match parse(kind, SECRET, event, &payload) {
        Err(ForgeError::WebhookUnreadable { reason, .. }) => {
            assert!(reason.contains("lacks the fields"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

/// The proof headers `kind` sends for `body` signed with [`SECRET`].
fn proof_for(kind: FakeKind, body: &[u8]) -> Vec<(String, String)> {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(body);
    let signature = hex::encode(mac.finalize().into_bytes());
    match kind {
        FakeKind::GitHub => vec![("x-hub-signature-256".into(), format!("sha256={signature}"))],
        FakeKind::GitLab => vec![("x-gitlab-token".into(), SECRET.into())],
        FakeKind::Gitea => vec![("x-gitea-signature".into(), signature)],
    }
}

#[tokio::test]
async fn github_deliveries_are_read() {
    genuine_deliveries_are_read(FakeKind::GitHub).await;
}

#[tokio::test]
async fn gitlab_deliveries_are_read() {
    genuine_deliveries_are_read(FakeKind::GitLab).await;
}

#[tokio::test]
async fn gitea_deliveries_are_read() {
    genuine_deliveries_are_read(FakeKind::Gitea).await;
}

#[tokio::test]
async fn forged_github_deliveries_are_refused() {
    forged_deliveries_are_refused(FakeKind::GitHub).await;
}

#[tokio::test]
async fn forged_gitlab_deliveries_are_refused() {
    forged_deliveries_are_refused(FakeKind::GitLab).await;
}

#[tokio::test]
async fn forged_gitea_deliveries_are_refused() {
    forged_deliveries_are_refused(FakeKind::Gitea).await;
}

#[tokio::test]
async fn genuine_but_unreadable_deliveries_are_told_apart_from_forged_ones() {
    for kind in [FakeKind::GitHub, FakeKind::GitLab, FakeKind::Gitea] {
        genuine_but_unreadable_deliveries_say_why(kind).await;
    }
}
