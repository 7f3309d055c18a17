//! A server on a temporary store, with users in every role, driven through the router.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use nightshift_core::{AgentSpec, Role};
use nightshift_engine::{Engine, EngineConfig, LocalRepos};
use nightshift_server::{AppState, ServerConfig, router};
use nightshift_store::{SecretKey, Store};
use nightshift_test_support::git::repos_root;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub struct App {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub router: Router,
    pub engine: Arc<Engine>,
    /// Tokens by principal: root (server admin), admin, editor, viewer, outsider (beta only).
    pub tokens: std::collections::HashMap<&'static str, String>,
    pub shutdown: CancellationToken,
}

pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: axum::http::HeaderMap,
}

impl Answer {
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

impl App {
    pub async fn start(config: ServerConfig, workers: usize) -> App {
        App::start_with(config, workers, |_| {}).await
    }

    /// Like [`App::start`], with the engine's settings adjusted first (e.g. its public URL).
    pub async fn start_with(
        config: ServerConfig,
        workers: usize,
        adjust: impl FnOnce(&mut EngineConfig),
    ) -> App {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("nightshift.db"))
            .await
            .unwrap();
        let key = SecretKey::load_or_create(&dir.path().join("secret.key")).unwrap();
        let mut engine_config = EngineConfig::new(dir.path());
        engine_config.secret_key = Some(key.clone());
        engine_config.heartbeat = Duration::from_millis(200);
        engine_config.poll = Duration::from_millis(100);
        // The operator lets tasks use repositories in the temp directory, where tests keep them.
        engine_config.repositories.local = LocalRepos::Under(vec![repos_root()]);
        adjust(&mut engine_config);
        let engine = Engine::new(store.clone(), engine_config);
        let shutdown = CancellationToken::new();
        if workers > 0 {
            let (e, s) = (engine.clone(), shutdown.clone());
            tokio::spawn(async move { e.run_workers(workers, s).await });
        }
        let mut config = config;
        config.default_agent = AgentSpec::command("true");
        let state = AppState::new(store.clone(), engine.clone(), config, key);
        let mut tokens = std::collections::HashMap::new();
        let root = store.create_user("root", None, true).await.unwrap();
        tokens.insert("root", store.create_token(root.id, "t").await.unwrap().1);
        let admin = store.create_user("ada", None, false).await.unwrap();
        tokens.insert("admin", store.create_token(admin.id, "t").await.unwrap().1);
        let alpha = store.create_project("alpha", &admin).await.unwrap();
        for (who, name, role) in [
            ("editor", "eddie", Role::Editor),
            ("viewer", "vera", Role::Viewer),
        ] {
            let user = store.create_user(name, None, false).await.unwrap();
            store.set_member(alpha.id, user.id, role).await.unwrap();
            tokens.insert(who, store.create_token(user.id, "t").await.unwrap().1);
        }
        let outsider = store.create_user("otto", None, false).await.unwrap();
        store.create_project("beta", &outsider).await.unwrap();
        tokens.insert(
            "outsider",
            store.create_token(outsider.id, "t").await.unwrap().1,
        );
        App {
            dir,
            store,
            router: router(state),
            engine,
            tokens,
            shutdown,
        }
    }

    pub fn token(&self, who: &str) -> Option<&str> {
        self.tokens.get(who).map(String::as_str)
    }

    pub async fn call(&self, method: Method, path: &str, who: &str, body: Option<&str>) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"));
        if let Some(token) = self.token(who) {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = match body {
            Some(body) => request
                .header("content-type", "application/json")
                .body(Body::from(body.to_string())),
            None => request.body(Body::empty()),
        }
        .unwrap();
        self.send(request).await
    }

    /// A page of the web UI as `who` sees it, signed in with a session.
    pub async fn page(&self, path: &str, who: &str) -> String {
        let token = self.token(who).unwrap_or_default();
        let signed_in = Request::post("/api/v1/session")
            .header("content-type", "application/json")
            .body(Body::from(
                serde_json::json!({ "token": token }).to_string(),
            ))
            .unwrap();
        let answer = self.send(signed_in).await;
        let cookie = answer.headers["set-cookie"].to_str().unwrap();
        let cookie = cookie.split(';').next().unwrap().to_string();
        let mut request = Request::get(path)
            .header("cookie", cookie)
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        let response = self.router.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let bytes = axum::body::to_bytes(response.into_body(), 4 << 20)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    pub async fn send(&self, mut request: Request<Body>) -> Answer {
        if request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .is_none()
        {
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
        }
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let json = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        // Event streams never end on their own: only JSON answers are read.
        let body = if json {
            let bytes = axum::body::to_bytes(response.into_body(), 4 << 20)
                .await
                .unwrap();
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        Answer {
            status,
            body,
            headers,
        }
    }
}

/// Creates a task whose agent is `command` on `repo`, as `who`.
pub async fn create(app: &App, project: &str, who: &str, repo: &str, command: &str) -> Answer {
    let body = json!({
        "repo": repo,
        "instructions": format!("Work on {repo}"),
        "agent": {"kind": "command", "command": command},
    });
    app.call(
        Method::POST,
        &format!("/projects/{project}/tasks"),
        who,
        Some(&body.to_string()),
    )
    .await
}

/// The task's first run once it ended (two minutes at most).
pub async fn wait_end(app: &App, project: &str, id: i64) -> Value {
    let started = Instant::now();
    loop {
        let task = app
            .call(
                Method::GET,
                &format!("/projects/{project}/tasks/{id}"),
                "root",
                None,
            )
            .await;
        let run = task.body["runs"][0].clone();
        if ["succeeded", "failed", "cancelled"].contains(&run["status"].as_str().unwrap()) {
            return run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{}",
            task.body
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
