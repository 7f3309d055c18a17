//! The credentials vault through the API: a canary goes in and never comes out.

use axum::http::{Method, StatusCode};
use nightshift_server::ServerConfig;

use super::app::App;

const CANARY: &str = "ghp_CANARYcanary0123456789SECRET";

#[tokio::test]
async fn a_credential_set_through_the_api_cannot_be_read_back_anywhere() {
    let app = App::start(ServerConfig::default(), 0).await;
    let body = format!(r#"{{"kind":"github_token","token":"{CANARY}"}}"#);
    let viewer = app
        .call(
            Method::PUT,
            "/projects/alpha/credentials/github.com",
            "editor",
            Some(&body),
        )
        .await;
    assert_eq!(
        viewer.status,
        StatusCode::FORBIDDEN,
        "only admins set credentials"
    );
    let set = app
        .call(
            Method::PUT,
            "/projects/alpha/credentials/github.com",
            "admin",
            Some(&body),
        )
        .await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert!(
        set.body["fingerprint"]
            .as_str()
            .is_some_and(|f| !f.is_empty())
    );
    // A wrongly typed secret is refused without being echoed.
    let wrong = format!(
        r#"{{"kind":"github_app","app_id":"{CANARY}","installation_id":1,"private_key":"k"}}"#
    );
    let refused = app
        .call(
            Method::PUT,
            "/projects/alpha/credentials/github.com",
            "admin",
            Some(&wrong),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.message().contains("app_id"),
        "{}",
        refused.message()
    );

    let mut seen = vec![set.body.to_string(), refused.body.to_string()];
    for path in [
        "/projects/alpha/credentials",
        "/projects/alpha/audit",
        "/projects/alpha",
        "/projects/alpha/runs",
        "/openapi.json",
    ] {
        let answer = app.call(Method::GET, path, "admin", None).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        seen.push(answer.body.to_string());
    }
    for text in &seen {
        assert!(!text.contains(CANARY), "the secret came back: {text}");
    }
    let alpha = app.store.project("alpha").await.unwrap().unwrap();
    // The engine opens it for its own pushes (host names are case-insensitive).
    let opened = app
        .engine
        .project_credential(alpha.id, "GitHub.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(opened.secrets(), [CANARY], "the engine can open it");
    app.store.close().await;
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            assert!(
                !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
                "{} holds the secret in the clear",
                path.display()
            );
        }
    }
}
