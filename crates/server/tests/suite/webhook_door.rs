//! The webhook endpoint itself: off without a secret, bounded in size, telling a genuine but
//! unreadable delivery from a forged one, logging refusals without their body or any secret,
//! and documented with the forges' proofs.

use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use nightshift_forge::Secret;
use nightshift_server::ServerConfig;
use nightshift_test_support::forge_fake::FakeKind;
use nightshift_test_support::forge_fake::webhook::delivery;
use serde_json::{Value, json};

use super::app::App;
use super::webhooks::{SECRET, deliver, deliveries, listen, post, scrape};

/// A log the test reads back.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Through the router on this test's thread, so the log of the handling is this test's.
async fn call_direct(
    app: &App,
    forge: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let mut request = axum::http::Request::post(format!("/api/v1/webhooks/{forge}"));
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let answer = app
        .send(request.body(axum::body::Body::from(body)).unwrap())
        .await;
    (answer.status, answer.body)
}

#[tokio::test]
async fn a_refused_delivery_is_logged_without_its_body_or_any_secret() {
    let app = App::start_with(ServerConfig::default(), 0, |config| {
        config.webhooks.secret = Some(Secret::new(SECRET));
    })
    .await;
    let log = Log::default();
    let writer = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let payload = json!({"object_kind": "note", "object_attributes": {"note": "body-canary-51f0"}});
    let guess = "guessed-token-canary-7e21";
    let (headers, body) = delivery(FakeKind::GitLab, guess, "Note Hook", &payload);
    let (status, answer) = call_direct(&app, "gitlab", &headers, body).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the token does not match"),
        "{answer}"
    );
    let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("webhook delivery refused"))
        .unwrap_or_else(|| panic!("not logged: {log}"));
    assert!(
        line.contains("gitlab") && line.contains("the token does not match"),
        "{line}"
    );
    // Where it came from, and which delivery it was in the forge's own log.
    assert!(
        line.contains("peer=127.0.0.1") && line.contains("f1d2c3b4-0000-4000-8000-000000000001"),
        "{line}"
    );
    for hidden in ["body-canary-51f0", guess, SECRET] {
        assert!(!log.contains(hidden), "{hidden} in the log: {log}");
    }
}

#[tokio::test]
async fn webhooks_are_off_without_a_secret_and_bounded_and_checked_with_one() {
    let off = App::start(ServerConfig::default(), 0).await;
    let payload = json!({"zen": "Keep it simple.", "hook_id": 1});
    let (headers, body) = delivery(FakeKind::GitHub, SECRET, "ping", &payload);
    let (status, answer) = call_direct(&off, "github", &headers, body.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    assert_eq!(answer["error"]["code"], "webhooks_off");
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.contains("[webhooks]"), "{message}");

    let on = App::start_with(ServerConfig::default(), 0, |config| {
        config.webhooks.gitea_secret = Some(Secret::new(SECRET));
    })
    .await;
    let addr = listen(&on).await;
    // Only Gitea's is on; a name that is no forge's is no endpoint.
    let off_here = post(addr, "github", &headers, body).await;
    assert_eq!(off_here.status, StatusCode::NOT_FOUND);
    let unknown = post(addr, "bitbucket", &[], b"{}".to_vec()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(
        unknown.message().contains("/api/v1/webhooks/gitea"),
        "{}",
        unknown.body
    );
    // Forgejo is Gitea.
    let ping = deliver(
        addr,
        FakeKind::Gitea,
        SECRET,
        "push",
        &json!({"ref": "refs/heads/main"}),
    )
    .await;
    assert_eq!(ping.status, StatusCode::ACCEPTED, "{}", ping.body);
    let (headers, body) = delivery(FakeKind::Gitea, SECRET, "push", &json!({"ref": "x"}));
    let forgejo = post(addr, "forgejo", &headers, body).await;
    assert_eq!(forgejo.status, StatusCode::ACCEPTED, "{}", forgejo.body);

    // Larger than the server reads: refused before the signature is looked at.
    let huge = json!({"padding": "x".repeat(1024 * 1024 + 1)});
    let (headers, body) = delivery(FakeKind::Gitea, SECRET, "push", &huge);
    let before = scrape(&on).await;
    let refused = post(addr, "gitea", &headers, body).await;
    assert_eq!(
        refused.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        refused.body
    );
    assert_eq!(refused.code(), "too_large");
    let after = scrape(&on).await;
    assert!(deliveries(&after, "gitea", "too_large") > deliveries(&before, "gitea", "too_large"));

    // Genuine, but form-encoded as GitHub can be set to send: read as unreadable, not forged.
    let form = b"payload=%7B%7D".to_vec();
    let (mut headers, _) = delivery(FakeKind::Gitea, SECRET, "push", &json!({}));
    let signature = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&form);
        hex::encode(mac.finalize().into_bytes())
    };
    for (name, value) in headers.iter_mut() {
        match name.as_str() {
            "x-gitea-signature" => *value = signature.clone(),
            "x-hub-signature-256" => *value = format!("sha256={signature}"),
            "content-type" => *value = "application/x-www-form-urlencoded".into(),
            _ => {}
        }
    }
    let unreadable = post(addr, "gitea", &headers, form).await;
    assert_eq!(
        unreadable.status,
        StatusCode::BAD_REQUEST,
        "{}",
        unreadable.body
    );
    assert_eq!(unreadable.code(), "webhook_unreadable");
    assert!(
        unreadable.message().contains("application/json"),
        "{}",
        unreadable.body
    );
}

/// The route as the OpenAPI document has it: no sign-in, the forges' proofs instead.
#[tokio::test]
async fn the_webhook_route_is_documented_with_the_forges_proofs() {
    let app = App::start(ServerConfig::default(), 0).await;
    let doc = app
        .call(Method::GET, "/openapi.json", "anonymous", None)
        .await;
    let op = &doc.body["paths"]["/webhooks/{forge}"]["post"];
    assert_eq!(
        op["security"],
        json!([{"github_signature": []}, {"gitlab_token": []}, {"gitea_signature": []}])
    );
    let schemes = &doc.body["components"]["securitySchemes"];
    assert_eq!(schemes["github_signature"]["name"], "X-Hub-Signature-256");
    assert_eq!(schemes["gitlab_token"]["name"], "X-Gitlab-Token");
    for status in ["202", "401", "404", "413"] {
        assert!(op["responses"][status].is_object(), "{status}: {op}");
    }
}
