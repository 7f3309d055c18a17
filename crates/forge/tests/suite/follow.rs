//! What a follower asks once the pull request is open, demanded of every driver against the
//! contract-checked fakes: polite polls, mergeability and staleness, CI failure output, review
//! comments and permissions.

use nightshift_forge::{CiState, CommentKind, Mergeability, Permission, PrState, PullRequestSpec};
use nightshift_test_support::forge_fake::{
    Access, FakeAnnotation, FakeCheck, FakeJob, FakeKind, FakeStatus, Review,
};

use super::{Credential, Harness};

/// A pushed branch with one commit changing `notes.txt`, and its pull request's number.
async fn open_pull(h: &Harness, branch: &str) -> u64 {
    h.fake
        .push_commit("acme/widget", branch, &[("notes.txt", "ours\n")]);
    let pr = h
        .forge
        .find_or_create_pull_request(&PullRequestSpec {
            repo: h.repo.clone(),
            base: "main".into(),
            head: branch.into(),
            title: "Follow me".into(),
            body: "A change".into(),
            labels: vec![],
        })
        .await
        .unwrap()
        .unwrap();
    pr.number
}

/// The `remaining` count of GitHub's or GitLab's rate-limit headers on an answer.
fn remaining(headers: &[(String, String)]) -> Option<u64> {
    headers
        .iter()
        .find(|(n, _)| n == "x-ratelimit-remaining" || n == "ratelimit-remaining")
        .and_then(|(_, v)| v.parse().ok())
}

pub async fn polls_politely(kind: FakeKind, credential: Credential) {
    let h = Harness::start(kind, credential).await;
    let number = open_pull(&h, "nightshift/1-poll").await;
    let first = h
        .forge
        .poll_pull_request(&h.repo, number, None)
        .await
        .unwrap();
    assert!(first.changed);
    assert_eq!(
        (first.status.state, first.status.ci),
        (PrState::Open, CiState::None)
    );
    let before = h.fake.requests().len();
    let second = h
        .forge
        .poll_pull_request(&h.repo, number, Some(&first.validators))
        .await
        .unwrap();
    assert!(!second.changed, "nothing moved: {second:?}");
    assert_eq!(second.status, first.status);
    let asked: Vec<_> = h.fake.requests().into_iter().skip(before).collect();
    assert!(!asked.is_empty());
    if kind == FakeKind::Gitea {
        // Gitea's API sends no ETags: every poll reads whole answers.
        assert!(first.validators.is_empty());
        assert!(
            asked
                .iter()
                .all(|r| r.if_none_match.is_none() && r.status == 200)
        );
    } else {
        assert!(
            asked
                .iter()
                .all(|r| r.if_none_match.is_some() && r.status == 304),
            "every read was conditional and unchanged: {:?}",
            asked
                .iter()
                .map(|r| (&r.path, r.status))
                .collect::<Vec<_>>()
        );
    }
    if kind == FakeKind::GitHub {
        // GitHub does not count a 304 against the rate limit.
        let counts: Vec<Option<u64>> = asked
            .iter()
            .map(|r| remaining(&r.response_headers))
            .collect();
        assert!(counts.windows(2).all(|w| w[0] == w[1]), "{counts:?}");
    }

    // CI fails: the next conditional poll sees it.
    let sha = first.status.head_sha.clone().unwrap();
    match kind {
        FakeKind::GitLab => h.fake.set_pipeline("acme/widget", &sha, "failed"),
        _ => h
            .fake
            .set_commit_status("acme/widget", &sha, "ci/test", "failure"),
    }
    let third = h
        .forge
        .poll_pull_request(&h.repo, number, Some(&second.validators))
        .await
        .unwrap();
    assert!(third.changed);
    assert_eq!(third.status.ci, CiState::Failing);
    h.fake.merge("acme/widget", number);
    let merged = h
        .forge
        .poll_pull_request(&h.repo, number, Some(&third.validators))
        .await
        .unwrap();
    assert!(merged.changed);
    assert_eq!(merged.status.state, PrState::Merged);
    h.assert_contract_kept();
    h.assert_no_leak_in_recordings();
}

pub async fn sees_stale_bases_and_other_pushes(kind: FakeKind, credential: Credential) {
    let h = Harness::start(kind, credential).await;
    let number = open_pull(&h, "nightshift/2-stale").await;
    let fresh = h.forge.pull_request_status(&h.repo, number).await.unwrap();
    let pushed = fresh.head_sha.clone().unwrap();
    assert_eq!(fresh.mergeable, Mergeability::Clean, "{fresh:?}");
    assert_eq!(fresh.behind_base, Some(false), "{fresh:?}");
    assert!(!fresh.is_stale());

    // The base moves without touching our file: behind, still clean.
    h.fake
        .push_commit("acme/widget", "main", &[("other.txt", "theirs\n")]);
    let behind = h.forge.pull_request_status(&h.repo, number).await.unwrap();
    assert_eq!(
        (behind.mergeable, behind.behind_base),
        (Mergeability::Clean, Some(true)),
        "{behind:?}"
    );
    assert!(behind.is_stale());

    // The base changes our file too: conflicting.
    h.fake
        .push_commit("acme/widget", "main", &[("notes.txt", "theirs\n")]);
    let conflicting = h.forge.pull_request_status(&h.repo, number).await.unwrap();
    assert_eq!(
        conflicting.mergeable,
        Mergeability::Conflicting,
        "{conflicting:?}"
    );

    // Someone else pushes to the branch: its head is no longer what Nightshift pushed.
    assert!(!conflicting.head_moved_from(&pushed));
    h.fake.push_commit(
        "acme/widget",
        "nightshift/2-stale",
        &[("notes.txt", "a person's\n")],
    );
    let moved = h.forge.pull_request_status(&h.repo, number).await.unwrap();
    assert!(moved.head_moved_from(&pushed), "{moved:?}");
    h.assert_contract_kept();
}

pub async fn reports_ci_failures_with_output(kind: FakeKind, credential: Credential) {
    let h = Harness::start(kind, credential).await;
    let number = open_pull(&h, "nightshift/3-red").await;
    let sha = h
        .fake
        .branch_sha("acme/widget", "nightshift/3-red")
        .unwrap();
    let empty = h.forge.ci_failures(&h.repo, number).await.unwrap();
    assert_eq!(empty.head_sha, sha);
    assert!(empty.failures.is_empty());

    let mut long_log = String::new();
    for i in 0..8_000 {
        long_log.push_str(&format!("2026-01-01T10:00:00.0000000Z step {i} ok\n"));
        if i == 50 {
            long_log.push_str("2026-01-01T10:00:00.0000000Z error[E0308]: mismatched types\n");
        }
    }
    long_log.push_str("2026-01-01T10:00:01.0000000Z \u{1b}[31mtest result: FAILED\u{1b}[0m\n");
    match kind {
        FakeKind::GitHub => {
            h.fake.add_check_run(
                "acme/widget",
                &sha,
                FakeCheck {
                    name: "test".into(),
                    status: "completed".into(),
                    conclusion: Some("failure".into()),
                    title: "1 test failed".into(),
                    summary: "widget::adds failed".into(),
                    annotations: vec![FakeAnnotation {
                        path: "src/lib.rs".into(),
                        line: 12,
                        level: "failure".into(),
                        message: "assertion failed: 1 + 1 == 3".into(),
                    }],
                    log: Some(long_log.clone()),
                    ..FakeCheck::default()
                },
            );
            h.fake
                .set_check_run("acme/widget", &sha, "lint", "completed", Some("success"));
        }
        FakeKind::GitLab => {
            let trace = format!("section_start:1767261600:step_script\r\u{1b}[0K{long_log}");
            for (name, status, allow_failure) in [
                ("test", "failed", false),
                ("flaky", "failed", true),
                ("lint", "success", false),
            ] {
                h.fake.add_pipeline_job(
                    "acme/widget",
                    &sha,
                    FakeJob {
                        name: name.into(),
                        stage: "test".into(),
                        status: status.into(),
                        allow_failure,
                        trace: trace.clone(),
                        ..FakeJob::default()
                    },
                );
            }
            h.fake.set_pipeline("acme/widget", &sha, "failed");
        }
        FakeKind::Gitea => {}
    }
    if kind != FakeKind::GitLab {
        h.fake.add_commit_status(
            "acme/widget",
            &sha,
            FakeStatus {
                context: "ci/build".into(),
                state: "failure".into(),
                description: "make: *** [build] Error 2".into(),
                target_url: "https://ci.example.com/build/7".into(),
            },
        );
        h.fake
            .set_commit_status("acme/widget", &sha, "ci/docs", "success");
    }
    let report = h.forge.ci_failures(&h.repo, number).await.unwrap();
    assert_eq!(report.head_sha, sha);
    let names: Vec<&str> = report.failures.iter().map(|f| f.name.as_str()).collect();
    match kind {
        FakeKind::GitHub => assert_eq!(names, ["test", "ci/build"]),
        FakeKind::GitLab => assert_eq!(names, ["test: test"]),
        FakeKind::Gitea => assert_eq!(names, ["ci/build"]),
    }
    for failure in &report.failures {
        assert!(
            failure.text.len() <= nightshift_forge::MAX_FAILURE_BYTES,
            "{} bytes",
            failure.text.len()
        );
        assert!(failure.url.is_some(), "{failure:?}");
    }
    let first = &report.failures[0];
    if kind == FakeKind::Gitea {
        assert_eq!(first.conclusion, "failure");
        assert_eq!(first.text, "make: *** [build] Error 2");
    } else {
        // The log's own words: the early error line and the tail, without colour codes,
        // timestamps or section markers.
        assert!(
            first.text.contains("error[E0308]: mismatched types"),
            "{}",
            first.text
        );
        assert!(
            first.text.ends_with("test result: FAILED"),
            "{}",
            first.text
        );
        assert!(!first.text.contains('\u{1b}') && !first.text.contains("2026-01-01T"));
        assert!(!first.text.contains("section_start"));
    }
    if kind == FakeKind::GitHub {
        assert!(
            first
                .text
                .contains("src/lib.rs:12: failure: test assertion failed"),
            "{}",
            first.text
        );
        assert!(first.text.starts_with("1 test failed"), "{}", first.text);
        assert_eq!(report.failures[1].text, "make: *** [build] Error 2");
    }
    h.assert_contract_kept();
    h.assert_no_leak_in_recordings();
}

pub async fn reads_comments_and_permissions(kind: FakeKind, credential: Credential) {
    let h = Harness::start(kind, credential).await;
    let number = open_pull(&h, "nightshift/4-review").await;
    for (login, access) in [
        ("alice", Some(Access::Write)),
        ("bob", Some(Access::Read)),
        ("carol", None),
    ] {
        h.fake.add_user(login, &format!("{login}-token"));
        if let Some(access) = access {
            h.fake.grant("acme/widget", login, access);
        }
    }
    assert!(
        h.forge
            .pull_request_comments(&h.repo, number, None)
            .await
            .unwrap()
            .is_empty()
    );
    h.fake.comment(
        "acme/widget",
        number,
        "alice",
        "/nightshift please rename `x`",
    );
    h.fake.review(
        "acme/widget",
        number,
        Review {
            author: "bob".into(),
            state: "CHANGES_REQUESTED".into(),
            body: "Two things.".into(),
            inline: vec![("src/lib.rs".into(), 7, "This can panic.".into())],
        },
    );
    let all = h
        .forge
        .pull_request_comments(&h.repo, number, None)
        .await
        .unwrap();
    let seen: Vec<(CommentKind, &str, &str)> = all
        .iter()
        .map(|c| (c.kind, c.author.as_str(), c.body.as_str()))
        .collect();
    // GitLab has no review bodies of its own: the fake posts them as notes.
    let review_kind = if kind == FakeKind::GitLab {
        CommentKind::Conversation
    } else {
        CommentKind::Review
    };
    assert_eq!(
        seen,
        [
            (
                CommentKind::Conversation,
                "alice",
                "/nightshift please rename `x`"
            ),
            (review_kind, "bob", "Two things."),
            (CommentKind::Inline, "bob", "This can panic."),
        ]
    );
    let inline = &all[2];
    assert_eq!(
        (inline.path.as_deref(), inline.line),
        (Some("src/lib.rs"), Some(7))
    );
    assert!(all.iter().all(|c| c.created_at > 0 && c.id > 0));

    // Only what came after a point.
    let since = all[0].created_at;
    let later = h
        .forge
        .pull_request_comments(&h.repo, number, Some(since))
        .await
        .unwrap();
    assert_eq!(later.len(), 2, "{later:?}");
    assert!(later.iter().all(|c| c.author == "bob"));

    let permission = |user: &'static str| {
        let h = &h;
        async move { h.forge.permission(&h.repo, user).await.unwrap() }
    };
    assert_eq!(permission("alice").await, Permission::Write);
    assert!(permission("alice").await.can_write());
    assert_eq!(permission("bob").await, Permission::Read);
    assert!(!permission("bob").await.can_write());
    assert_eq!(permission("carol").await, Permission::None);

    // Who Nightshift itself is there, so its own comments are told from reviewers'. An App's
    // installation token has no user of its own.
    let own = h.forge.own_login(&h.repo).await.unwrap();
    match credential {
        Credential::Token => assert_eq!(own.as_deref(), Some("nightshift-bot")),
        Credential::App => assert_eq!(own, None),
    }
    h.assert_contract_kept();
    h.assert_no_leak_in_recordings();
}

macro_rules! follow_suite {
    ($name:ident, $kind:expr, $credential:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn polls_politely_with_etags() {
                super::polls_politely($kind, $credential).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sees_stale_bases_and_other_pushes() {
                super::sees_stale_bases_and_other_pushes($kind, $credential).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reports_ci_failures_with_output() {
                super::reports_ci_failures_with_output($kind, $credential).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reads_comments_and_permissions() {
                super::reads_comments_and_permissions($kind, $credential).await;
            }
        }
    };
}

follow_suite!(github_token, FakeKind::GitHub, Credential::Token);
follow_suite!(github_app, FakeKind::GitHub, Credential::App);
follow_suite!(gitlab, FakeKind::GitLab, Credential::Token);
follow_suite!(gitea, FakeKind::Gitea, Credential::Token);
