//! Sign-in: API tokens and the sessions they open, cookies, names on tasks, bodies the API
//! cannot read, and proxy headers that count only from trusted proxies.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use nightshift_core::AuditFilter;
use nightshift_server::{AuthConfig, ProxyConfig, ServerConfig};

use super::access::fixture;
use super::app::App;

#[tokio::test]
async fn tokens_sessions_and_names_on_tasks() {
    let f = fixture().await;
    let created = f
        .app
        .call(Method::POST, "/tokens", "editor", Some(r#"{"name":"ci"}"#))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = created.body["token"].as_str().unwrap().to_string();
    let listed = f.app.call(Method::GET, "/tokens", "editor", None).await;
    assert!(
        !listed.body.to_string().contains(&secret),
        "a token is shown once"
    );

    let with = |token: &str| {
        Request::get("/api/v1/me")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(f.app.send(with(&secret)).await.body["name"], "eddie");
    let id = created.body["id"].as_i64().unwrap();
    let revoked = f
        .app
        .call(Method::DELETE, &format!("/tokens/{id}"), "editor", None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    assert_eq!(
        f.app.send(with(&secret)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        f.app.send(with("nst_forged")).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Browser sign-in: token in, HttpOnly SameSite=Strict cookie out.
    let body = format!(r#"{{"token":"{}"}}"#, f.app.token("viewer").unwrap());
    let signed = f
        .app
        .call(Method::POST, "/session", "anonymous", Some(&body))
        .await;
    assert_eq!(signed.status, StatusCode::CREATED);
    let cookie = signed.headers["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().unwrap().to_string();
    let with_cookie = |method: Method| {
        Request::builder()
            .method(method)
            .uri("/api/v1/me")
            .header("cookie", pair.clone())
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        f.app.send(with_cookie(Method::GET)).await.body["name"],
        "vera"
    );
    let out = Request::delete("/api/v1/session")
        .header("cookie", pair.clone())
        .body(Body::empty())
        .unwrap();
    assert_eq!(f.app.send(out).await.status, StatusCode::NO_CONTENT);
    assert_eq!(
        f.app.send(with_cookie(Method::GET)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // created_by is the signed-in user's name.
    let body = format!(
        r#"{{"repo":"{}","instructions":"Rename Foo"}}"#,
        f.remote.url()
    );
    let task = f
        .app
        .call(Method::POST, "/projects/alpha/tasks", "editor", Some(&body))
        .await;
    assert_eq!(task.status, StatusCode::CREATED, "{}", task.body);
    assert_eq!(task.body["created_by"], "eddie");
}

#[tokio::test]
async fn bad_bodies_are_named_and_big_ones_refused() {
    let f = fixture().await;
    let wrong = f
        .app
        .call(
            Method::PATCH,
            "/projects/alpha",
            "admin",
            Some(r#"{"max_active_runs_per_user":"two"}"#),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        wrong.message().contains("max_active_runs_per_user"),
        "{}",
        wrong.message()
    );
    let broken = f
        .app
        .call(
            Method::POST,
            "/projects/alpha/tasks",
            "admin",
            Some(r#"{"repo": "#),
        )
        .await;
    assert!(broken.status.is_client_error(), "{}", broken.status);
    let huge = format!(r#"{{"repo":"x","instructions":"{}"}}"#, "a".repeat(2 << 20));
    let big = f
        .app
        .call(Method::POST, "/projects/alpha/tasks", "admin", Some(&huge))
        .await;
    assert_eq!(big.status, StatusCode::PAYLOAD_TOO_LARGE);
}

fn from(ip: [u8; 4], user: &str, groups: &str) -> Request<Body> {
    let mut request = Request::get("/api/v1/projects/alpha/tasks")
        .header("x-forwarded-user", user)
        .header("x-forwarded-email", format!("{user}@example.com"))
        .header("x-forwarded-groups", groups)
        .body(Body::empty())
        .unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((ip, 5555))));
    request
}

#[tokio::test]
async fn proxy_headers_count_only_from_trusted_proxies() {
    let config = ServerConfig {
        auth: AuthConfig {
            proxy: Some(ProxyConfig {
                trusted: vec!["10.0.0.1".parse().unwrap()],
            }),
            ..AuthConfig::default()
        },
        ..ServerConfig::default()
    };
    let app = App::start(config, 0).await;
    let bound = app
        .call(
            Method::PUT,
            "/projects/alpha/groups/devs",
            "admin",
            Some(r#"{"role":"viewer"}"#),
        )
        .await;
    assert_eq!(bound.status, StatusCode::OK);
    assert_eq!(
        app.send(from([10, 0, 0, 1], "carol", "devs, ops"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        app.send(from([10, 0, 0, 1], "dave", "ops")).await.status,
        StatusCode::NOT_FOUND,
        "signed in, but no role in alpha"
    );
    let forged = app.send(from([10, 0, 0, 9], "ada", "devs")).await;
    assert_eq!(
        forged.status,
        StatusCode::UNAUTHORIZED,
        "a forged header is ignored"
    );
    let audit = app
        .store
        .audit_events(
            None,
            &AuditFilter {
                action: Some("auth.untrusted_proxy_header".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].source, "10.0.0.9");
    let carol = app.store.user_by_name("carol").await.unwrap().unwrap();
    assert_eq!(carol.email.as_deref(), Some("carol@example.com"));
}
