//! Templates and notifications through the REST API (no workers: runs are ended by hand).

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use nightshift_core::{EndReason, Role};
use nightshift_engine::{Engine, EngineConfig, LocalRepos};
use nightshift_server::{AppState, ServerConfig, router};
use nightshift_store::{SecretKey, Store};
use nightshift_test_support::git::{RemoteRepo, repos_root};
use serde_json::{Value, json};
use tower::ServiceExt;

pub struct App {
    pub router: Router,
    pub store: Store,
    pub repo: RemoteRepo,
    /// The API token of `admin`, the signed-in user every request acts for.
    pub token: String,
    _dir: tempfile::TempDir,
}

/// The user the requests sign in as, like the admin a real first start creates.
pub const USER: &str = "admin";

pub async fn app() -> App {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("nightshift.db"))
        .await
        .unwrap();
    let key = SecretKey::load_or_create(&dir.path().join("secret.key")).unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.repositories.local = LocalRepos::Under(vec![repos_root()]);
    let engine = Engine::new(store.clone(), config);
    let state = AppState::new(store.clone(), engine, ServerConfig::default(), key);
    let admin = store.create_user(USER, None, true).await.unwrap();
    let project = store.ensure_project("default").await.unwrap();
    store
        .set_member(project.id, admin.id, Role::Admin)
        .await
        .unwrap();
    let (_, token) = store.create_token(admin.id, "t").await.unwrap();
    App {
        router: router(state),
        store,
        repo: RemoteRepo::with_files(&[("a.txt", "hello\n")]),
        token,
        _dir: dir,
    }
}

impl App {
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/api/v1/projects/default{path}"));
        if body.is_some() {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .body(body.map(|b| Body::from(b.to_string())).unwrap_or_default())
            .unwrap();
        let response = self.send(request).await;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Sends a request as the signed-in admin (bearer token, from the loopback address).
    pub async fn send(&self, mut request: Request<Body>) -> axum::response::Response {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.token).parse().unwrap(),
        );
        self.send_anonymous(request).await
    }

    /// Sends a request with only the credentials it carries.
    pub async fn send_anonymous(&self, mut request: Request<Body>) -> axum::response::Response {
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        self.router.clone().oneshot(request).await.unwrap()
    }

    /// Ends the next queued run the way a worker would.
    pub async fn finish_next(&self, reason: EndReason) -> i64 {
        let claim = self
            .store
            .claim_run("test", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        self.store
            .finish_run(claim.run.id, "test", reason, None, None)
            .await
            .unwrap();
        claim.task.id
    }
}

fn spec() -> Value {
    json!({
        "name": "bump",
        "description": "Bump a crate",
        "instructions": "Bump {{krate}} to {{version}}",
        "parameters": [
            {"name": "krate", "type": "enum", "required": true, "choices": ["serde", "tokio"]},
            {"name": "version", "type": "string", "required": true, "pattern": "\\d+\\.\\d+"}
        ],
        "agent": {"kind": "command", "command": "true"},
        "timeout_secs": 120
    })
}

#[tokio::test]
async fn templates_validate_render_and_record_usage() {
    let app = app().await;
    let (status, created) = app.call("POST", "/templates", Some(spec())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["version"], 1);
    let (status, _) = app.call("POST", "/templates", Some(spec())).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let mut broken = spec();
    broken["instructions"] = json!("Bump {{krate}} with {{undeclared}}");
    broken["name"] = json!("broken");
    let (status, body) = app.call("POST", "/templates", Some(broken)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "invalid_template");

    // Invalid values are refused with the parameter named; nothing is created.
    for (params, named) in [
        (json!({"krate": "serde", "version": "latest"}), "version"),
        (json!({"krate": "rand", "version": "1.0"}), "krate"),
        (json!({"krate": "serde"}), "version"),
        (
            json!({"krate": "serde", "version": "1.0", "extra": "x"}),
            "extra",
        ),
    ] {
        let (status, body) = app
            .call(
                "POST",
                "/templates/bump/tasks",
                Some(json!({"repo": app.repo.url(), "base": "main", "params": params})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_parameter");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("parameter {named}")), "{message}");
    }
    let (status, tasks) = app.call("GET", "/tasks", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 0);

    let (status, task) = app
        .call(
            "POST",
            "/templates/bump/tasks",
            Some(json!({"repo": app.repo.url(), "base": "main", "params": {"krate": "tokio", "version": "1.40"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    assert_eq!(task["instructions"], "Bump tokio to 1.40");
    assert_eq!(
        task["agent"]["command"], "true",
        "the template's agent applies"
    );
    assert_eq!(task["timeout"], "2m");

    // Editing makes version 2; version 1 stays readable.
    let mut v2 = spec();
    v2["instructions"] = json!("Upgrade {{krate}} to {{version}}");
    let (status, updated) = app.call("PUT", "/templates/bump", Some(v2)).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["version"], 2);
    let (_, old) = app.call("GET", "/templates/bump?version=1", None).await;
    assert_eq!(
        old["template"]["instructions"],
        "Bump {{krate}} to {{version}}"
    );

    app.finish_next(EndReason::Succeeded).await;
    let (_, shown) = app.call("GET", "/templates/bump", None).await;
    assert_eq!(shown["template"]["version"], 2);
    assert_eq!(shown["versions"].as_array().unwrap().len(), 2);
    let usage = shown["usage"].as_array().unwrap();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["version"], 1);
    assert_eq!(usage[0]["params"]["version"], "1.40");
    assert_eq!(usage[0]["run"]["status"], "succeeded");
    assert_eq!(shown["success_rate"], 1.0);
    let (_, list) = app.call("GET", "/templates", None).await;
    assert_eq!(list["templates"][0]["uses"], 1);
}

#[tokio::test]
async fn a_succeeded_task_becomes_a_template() {
    let app = app().await;
    let (status, task) = app
        .call(
            "POST",
            "/tasks",
            Some(json!({"repo": app.repo.url(), "base": "main", "instructions": "Rename foo to bar in foo.rs",
                "agent": {"kind": "command", "command": "sed -i s/foo/bar/ foo.rs"}, "timeout": "5m"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let request = json!({"task_id": task["id"], "name": "rename", "parameters": [
        {"text": "foo", "name": "old"}, {"text": "bar", "name": "new", "type": "string", "pattern": "[a-z]+"}]});
    let (status, body) = app
        .call("POST", "/templates/from-task", Some(request.clone()))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "only a succeeded task: {body}"
    );
    app.finish_next(EndReason::Succeeded).await;
    let (status, t) = app
        .call("POST", "/templates/from-task", Some(request))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{t}");
    assert_eq!(t["instructions"], "Rename {{old}} to {{new}} in {{old}}.rs");
    assert_eq!(t["parameters"][0]["default"], "foo");
    assert_eq!(t["parameters"][1]["pattern"], "[a-z]+");
    assert_eq!(t["agent"]["command"], "sed -i s/foo/bar/ foo.rs");
    assert_eq!(t["timeout_secs"], 300);

    let bad = json!({"task_id": task["id"], "name": "x", "parameters": [{"text": "absent", "name": "y"}]});
    let (status, body) = app.call("POST", "/templates/from-task", Some(bad)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "invalid_parameter");
}

#[tokio::test]
async fn finished_runs_notify_the_signed_in_creator() {
    let app = app().await;
    // Different instructions: two identical active tasks would be refused as duplicates.
    for n in 0..2 {
        let (status, _) = app
            .call(
                "POST",
                "/tasks",
                Some(
                    json!({"repo": app.repo.url(), "base": "main", "instructions": format!("Do it {n}"),
                    "agent": {"kind": "command", "command": "true"}}),
                ),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    app.finish_next(EndReason::Succeeded).await;
    app.finish_next(EndReason::AgentFailed).await;
    let (_, list) = app.call("GET", "/notifications", None).await;
    assert_eq!(list["unread"], 2);
    let id = list["notifications"][0]["id"].as_i64().unwrap();
    let (status, read) = app
        .call("POST", &format!("/notifications/{id}/read"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["read"], true);
    let (_, list) = app.call("GET", "/notifications?unread=true", None).await;
    assert_eq!(list["unread"], 1);
    assert_eq!(list["notifications"].as_array().unwrap().len(), 1);
    let (_, done) = app.call("POST", "/notifications/read-all", None).await;
    assert_eq!(done["marked"], 1);
    let (status, _) = app.call("POST", "/notifications/999/read", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
