//! Attacks on a running server through its public interface, each refused the way a user can
//! understand: sessions after revocation, DNS rebinding, state changes on GET, framing, cookies
//! sent in the clear, and floods.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use nightshift_core::{AgentSpec, AuditFilter, BranchName, Budget, Instructions, NewTask, RepoUrl};
use nightshift_server::{AllowedHosts, AuthConfig, ProxyConfig, ServerConfig};
use nightshift_test_support::git::RemoteRepo;

use super::app::{Answer, App};

/// Signs in on the web UI's form with `token`: the `name=value` cookie pair, if one was set.
async fn sign_in_on_the_form(app: &App, token: &str) -> Option<String> {
    let request = Request::post("/signin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("token={token}&next=%2F")))
        .unwrap();
    let answer = app.send(request).await;
    answer
        .headers
        .get("set-cookie")
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_string())
}

fn with_cookie(method: Method, uri: &str, cookie: &str, body: Option<&str>) -> Request<Body> {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("cookie", cookie);
    match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap()
}

#[tokio::test]
async fn a_session_dies_with_the_token_that_opened_it() {
    let app = App::start(ServerConfig::default(), 0).await;
    let created = app
        .call(
            Method::POST,
            "/tokens",
            "editor",
            Some(r#"{"name":"browser"}"#),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = created.body["token"].as_str().unwrap().to_string();
    let id = created.body["id"].as_i64().unwrap();
    let cookie = sign_in_on_the_form(&app, &secret)
        .await
        .expect("signing in sets a cookie");
    let me = app
        .send(with_cookie(Method::GET, "/api/v1/me", &cookie, None))
        .await;
    assert_eq!(me.body["name"], "eddie");

    // The token leaks and is revoked (from another of the user's tokens).
    let revoked = app
        .call(Method::DELETE, &format!("/tokens/{id}"), "editor", None)
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);

    // The session it opened is over: no reading, no minting a fresh token, no pages.
    let me = app
        .send(with_cookie(Method::GET, "/api/v1/me", &cookie, None))
        .await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
    assert!(me.message().contains("sign in again"), "{}", me.message());
    let minted = app
        .send(with_cookie(
            Method::POST,
            "/api/v1/tokens",
            &cookie,
            Some(r#"{"name":"persist"}"#),
        ))
        .await;
    assert_eq!(minted.status, StatusCode::UNAUTHORIZED);
    assert_eq!(minted.body["token"], serde_json::Value::Null);
    let page = app
        .send(with_cookie(Method::GET, "/p/alpha/tasks", &cookie, None))
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(
        page.headers["location"]
            .to_str()
            .unwrap()
            .starts_with("/signin"),
        "{:?}",
        page.headers
    );
    // And the revoked token opens no new session.
    assert_eq!(sign_in_on_the_form(&app, &secret).await, None);
    let again = app
        .call(
            Method::POST,
            "/session",
            "anonymous",
            Some(&format!(r#"{{"token":"{secret}"}}"#)),
        )
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
}

/// A request as a browser sends it to `host`, signed in with nothing (`--no-auth` needs none).
fn from_browser(method: Method, uri: &str, host: &str, origin: Option<&str>) -> Request<Body> {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .header("content-type", "application/json");
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.body(Body::from(r#"{"name":"rebound"}"#)).unwrap()
}

#[tokio::test]
async fn a_rebound_name_reaches_nothing_even_without_sign_in() {
    let config = ServerConfig {
        auth: AuthConfig {
            disabled: true,
            ..AuthConfig::default()
        },
        allowed_hosts: AllowedHosts::parse(&["nightshift.lan"]).unwrap(),
        ..ServerConfig::default()
    };
    let app = App::start(config, 0).await;
    app.store.create_user("local", None, true).await.unwrap();

    // A page on attacker.example, whose name now resolves to 127.0.0.1, posts same-origin.
    let attack = from_browser(
        Method::POST,
        "/api/v1/tokens",
        "attacker.example:8080",
        Some("http://attacker.example:8080"),
    );
    let refused = app.send(attack).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.body["error"]["code"], "host_not_allowed");
    assert!(
        refused.message().contains("\"attacker.example\"")
            && refused.message().contains("allowed_hosts"),
        "{}",
        refused.message()
    );
    let read = app
        .send(from_browser(
            Method::GET,
            "/api/v1/me",
            "attacker.example:8080",
            None,
        ))
        .await;
    assert_eq!(read.status, StatusCode::FORBIDDEN);
    let page = app
        .send(from_browser(
            Method::GET,
            "/p/default/tasks",
            "attacker.example",
            None,
        ))
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    // An allowed Host with a foreign Origin is the same attack through a proxy.
    let origin = app
        .send(from_browser(
            Method::GET,
            "/api/v1/me",
            "127.0.0.1:8080",
            Some("http://attacker.example:8080"),
        ))
        .await;
    assert_eq!(origin.status, StatusCode::FORBIDDEN);
    let tokens = app.store.user_by_name("local").await.unwrap().unwrap();
    assert!(app.store.tokens(tokens.id).await.unwrap().is_empty());

    // The server's own names keep working: its address, localhost, the configured name.
    for host in [
        "127.0.0.1:8080",
        "localhost:8080",
        "[::1]:8080",
        "nightshift.lan",
    ] {
        let ok = app
            .send(from_browser(Method::GET, "/api/v1/me", host, None))
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{host}: {}", ok.body);
        assert_eq!(ok.body["name"], "local");
    }
    let created = app
        .send(from_browser(
            Method::POST,
            "/api/v1/tokens",
            "localhost:8080",
            Some("http://localhost:8080"),
        ))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
}

/// A task of root's whose run ended, so root has an unread notification: its id.
async fn unread_notification(app: &App, remote: &RemoteRepo) -> (i64, i64) {
    let alpha = app.store.project("alpha").await.unwrap().unwrap();
    let (task, _) = app
        .store
        .create_task(&NewTask {
            project_id: alpha.id,
            title: "done".into(),
            instructions: Instructions::parse("Finish").unwrap(),
            repo: RepoUrl::parse(&remote.url()).unwrap(),
            base_branch: BranchName::parse("main").unwrap(),
            agent: AgentSpec::command("true"),
            timeout_secs: 60,
            budget: Budget::default(),
            allow_test_changes: false,
            created_by: "vera".into(),
        })
        .await
        .unwrap();
    let claim = app
        .store
        .claim_run("test", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    app.store
        .finish_run(
            claim.run.id,
            "test",
            nightshift_core::EndReason::Succeeded,
            None,
            None,
        )
        .await
        .unwrap();
    let list = app
        .store
        .notifications(alpha.id, "vera", true, 10)
        .await
        .unwrap();
    (list[0].id, task.id)
}

#[tokio::test]
async fn reading_a_notification_takes_a_form_and_a_viewer_may_send_it() {
    let app = App::start(ServerConfig::default(), 0).await;
    let remote = RemoteRepo::with_files(&[("README.md", "hello\n")]);
    let (id, task_id) = unread_notification(&app, &remote).await;
    let cookie = sign_in_on_the_form(&app, app.token("viewer").unwrap())
        .await
        .unwrap();
    let unread = || async {
        app.call(
            Method::GET,
            "/projects/alpha/notifications?unread=true",
            "viewer",
            None,
        )
        .await
        .body["unread"]
            .as_i64()
            .unwrap()
    };

    // A link (an <img>, a prefetch) to the notification changes nothing.
    let followed = app
        .send(with_cookie(
            Method::GET,
            &format!("/p/alpha/notifications/{id}"),
            &cookie,
            None,
        ))
        .await;
    assert_eq!(followed.status, StatusCode::SEE_OTHER);
    assert_eq!(unread().await, 1, "a GET marked the notification read");

    // The list's entry is a form; the viewer posts it and lands on the task, read.
    let list = app
        .send(with_cookie(
            Method::GET,
            "/p/alpha/notifications",
            &cookie,
            None,
        ))
        .await;
    assert_eq!(list.status, StatusCode::OK);
    let opened = app
        .send(with_cookie(
            Method::POST,
            &format!("/p/alpha/notifications/{id}"),
            &cookie,
            None,
        ))
        .await;
    assert_eq!(opened.status, StatusCode::SEE_OTHER);
    assert_eq!(
        opened.headers["location"],
        format!("/p/alpha/tasks/{task_id}").as_str()
    );
    assert_eq!(unread().await, 0);
    // "Mark all read" too, as the API lets a viewer do.
    let all = app
        .send(with_cookie(
            Method::POST,
            "/p/alpha/notifications/read-all",
            &cookie,
            None,
        ))
        .await;
    assert_eq!(all.status, StatusCode::SEE_OTHER);
    // Creating a task is still the editor's.
    let create = Request::post("/p/alpha/tasks")
        .header("cookie", cookie.clone())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from("instructions=x&repo=%2Ftmp%2Fx"))
        .unwrap();
    assert_eq!(app.send(create).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn pages_and_answers_carry_the_security_headers() {
    let app = App::start(ServerConfig::default(), 0).await;
    let cookie = sign_in_on_the_form(&app, app.token("admin").unwrap())
        .await
        .unwrap();
    let page = app
        .send(with_cookie(Method::GET, "/p/alpha/tasks", &cookie, None))
        .await;
    let api = app.call(Method::GET, "/health", "anonymous", None).await;
    let signin = app
        .send(Request::get("/signin").body(Body::empty()).unwrap())
        .await;
    for answer in [&page, &api, &signin] {
        let h = &answer.headers;
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "same-origin");
    }
}

async fn sign_in_via(app: &App, peer: [u8; 4], forwarded_proto: Option<&str>) -> String {
    let mut request = Request::post("/api/v1/session")
        .header("content-type", "application/json")
        .extension(ConnectInfo(SocketAddr::from((peer, 40000))));
    if let Some(proto) = forwarded_proto {
        request = request.header("x-forwarded-proto", proto);
    }
    let body = format!(r#"{{"token":"{}"}}"#, app.token("viewer").unwrap());
    let answer: Answer = app.send(request.body(Body::from(body)).unwrap()).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
    answer.headers["set-cookie"].to_str().unwrap().to_string()
}

#[tokio::test]
async fn the_session_cookie_is_secure_behind_tls() {
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
    // Behind the trusted TLS proxy: Secure, so the browser never sends it in the clear.
    let behind = sign_in_via(&app, [10, 0, 0, 1], Some("https")).await;
    assert!(behind.contains("; Secure"), "{behind}");
    // The same header from anyone else proves nothing; plain HTTP gets no Secure either.
    let forged = sign_in_via(&app, [10, 0, 0, 9], Some("https")).await;
    assert!(!forged.contains("Secure"), "{forged}");
    let plain = sign_in_via(&app, [10, 0, 0, 1], Some("http")).await;
    assert!(!plain.contains("Secure"), "{plain}");
}

#[tokio::test]
async fn a_public_https_url_makes_the_cookie_secure() {
    let app = App::start_with(ServerConfig::default(), 0, |engine| {
        engine.public_url = "https://nightshift.example.com".into();
    })
    .await;
    let cookie = sign_in_via(&app, [127, 0, 0, 1], None).await;
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Its name is allowed without configuring it.
    let ok = app
        .send(from_browser(
            Method::GET,
            "/api/v1/health",
            "nightshift.example.com",
            None,
        ))
        .await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn a_flood_of_forged_proxy_headers_writes_a_bounded_audit_trail() {
    let app = App::start(ServerConfig::default(), 0).await;
    let forged = |peer: [u8; 4]| {
        Request::get("/api/v1/health")
            .header("x-forwarded-user", "root")
            .extension(ConnectInfo(SocketAddr::from((peer, 40000))))
            .body(Body::empty())
            .unwrap()
    };
    let flood = std::time::Instant::now();
    for _ in 0..200 {
        assert_eq!(app.send(forged([10, 9, 9, 9])).await.status, StatusCode::OK);
    }
    // Five at once, then one every 12 s: a slow machine's flood may earn one more per 12 s.
    let bound = 5 + flood.elapsed().as_secs() as usize / 12;
    // Another address is still recorded: the bound is per source first.
    app.send(forged([10, 9, 9, 10])).await;
    let events = app
        .store
        .audit_events(
            None,
            &AuditFilter {
                action: Some("auth.untrusted_proxy_header".into()),
                limit: Some(1000),
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    let from = |ip: &str| events.iter().filter(|e| e.source == ip).count();
    assert!(
        (1..=bound).contains(&from("10.9.9.9")),
        "{} records from 200 requests, at most {bound} allowed",
        from("10.9.9.9")
    );
    assert_eq!(from("10.9.9.10"), 1);
}
