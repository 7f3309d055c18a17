//! Webhook deliveries as each forge sends them: its event headers and its proof of origin
//! (GitHub's `X-Hub-Signature-256` and Gitea's `X-Gitea-Signature`, HMAC-SHA256 of the body;
//! GitLab's `X-Gitlab-Token`, the secret itself).

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::FakeKind;

/// The headers and body of a delivery of `event` (GitHub `pull_request`, GitLab
/// `Merge Request Hook`, Gitea `pull_request`, …) signed with `secret`. For Gitea, `event` is
/// the specific type (`pull_request_comment`); the general one goes in `X-Gitea-Event`.
pub fn delivery(
    kind: FakeKind,
    secret: &str,
    event: &str,
    payload: &Value,
) -> (Vec<(String, String)>, Vec<u8>) {
    let body = serde_json::to_vec_pretty(payload).expect("JSON payload");
    let signature = {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(&body);
        hex::encode(mac.finalize().into_bytes())
    };
    let id = "f1d2c3b4-0000-4000-8000-000000000001".to_string();
    let pair = |name: &str, value: String| (name.to_string(), value);
    let mut headers = vec![pair("content-type", "application/json".into())];
    match kind {
        FakeKind::GitHub => headers.extend([
            pair("user-agent", "GitHub-Hookshot/044aadd".into()),
            pair("x-github-event", event.into()),
            pair("x-github-delivery", id),
            pair("x-github-hook-id", "292430182".into()),
            pair("x-hub-signature-256", format!("sha256={signature}")),
        ]),
        FakeKind::GitLab => headers.extend([
            pair("user-agent", "GitLab/17.0.0".into()),
            pair("x-gitlab-event", event.into()),
            pair("x-gitlab-event-uuid", id),
            pair("x-gitlab-instance", "https://gitlab.example.com".into()),
            pair("x-gitlab-token", secret.into()),
        ]),
        FakeKind::Gitea => {
            let general = match event {
                "pull_request_comment" => "issue_comment",
                "pull_request_sync" => "pull_request",
                e if e.starts_with("pull_request_review_") => "pull_request",
                e => e,
            };
            headers.extend([
                pair("user-agent", "Go-http-client/1.1".into()),
                pair("x-gitea-event", general.into()),
                pair("x-gitea-event-type", event.into()),
                pair("x-gitea-delivery", id),
                pair("x-gitea-signature", signature.clone()),
                pair("x-github-event", general.into()),
                pair("x-hub-signature-256", format!("sha256={signature}")),
            ])
        }
    }
    (headers, body)
}
