//! The pages: rendered, escaped, and guarded against cross-site form posts.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;

use super::templates::app;

async fn get(app: &super::templates::App, path: &str) -> (StatusCode, String) {
    let response = app
        .send(Request::get(path).body(Body::empty()).unwrap())
        .await;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn pages_render_and_escape_user_content() {
    let app = app().await;
    let (status, _) = app
        .call(
            "POST",
            "/tasks",
            Some(json!({"repo": app.repo.url(), "base": "main", "instructions": "<script>alert(1)</script> fix",
                "agent": {"kind": "command", "command": "true"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    for path in [
        "/p/default/tasks",
        "/p/default/tasks/rows",
        "/p/default/tasks/1",
        "/p/default/tasks/1/live",
        "/p/default/tasks/new",
        "/p/default/templates",
        "/p/default/templates/new",
        "/p/default/notifications",
    ] {
        let (status, html) = get(&app, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {html}");
        assert!(
            !html.contains("<script>alert"),
            "{path} must escape user content"
        );
    }
    let (_, list) = get(&app, "/p/default/tasks").await;
    assert!(list.contains("&lt;script&gt;alert(1)&lt;/script&gt; fix"));
    let (status, _) = get(&app, "/p/default/tasks/99").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, js) = get(&app, "/static/app.js").await;
    assert_eq!(status, StatusCode::OK);
    assert!(js.contains("EventSource"));
}

#[tokio::test]
async fn forms_from_another_site_are_refused() {
    let app = app().await;
    let post = |origin: Option<&str>| {
        let mut r = Request::post("/p/default/templates")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            r = r.header(header::ORIGIN, o);
        }
        r.body(Body::from(
            "name=t1&instructions=Do+%7B%7Bx%7D%7D&p0_name=x&p0_type=string&p0_required=true",
        ))
        .unwrap()
    };
    let response = app.send(post(Some("https://evil.example"))).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The API too: a cross-site form could otherwise cancel a task.
    let cancel = Request::post("/api/v1/projects/default/tasks/1/cancel")
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::empty())
        .unwrap();
    let response = app.send(cancel).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app.send(post(Some("http://127.0.0.1:8080"))).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        "/p/default/templates/t1"
    );
    // The form's typed parameters were stored.
    let (_, t) = app.call("GET", "/templates/t1", None).await;
    assert_eq!(t["template"]["parameters"][0]["name"], "x");
    assert_eq!(t["template"]["parameters"][0]["required"], true);

    // The edit form stores version 2 under the same name.
    let edit = Request::post("/p/default/templates/t1/edit")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(
            "name=t1&instructions=Redo+%7B%7Bx%7D%7D&p0_name=x&p0_type=string&p0_default=y&timeout=10m",
        ))
        .unwrap();
    let response = app.send(edit).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (_, t) = app.call("GET", "/templates/t1", None).await;
    assert_eq!(t["template"]["version"], 2);
    assert_eq!(t["template"]["instructions"], "Redo {{x}}");
    assert_eq!(t["template"]["parameters"][0]["required"], false);
    assert_eq!(t["template"]["timeout_secs"], 600);
}

#[tokio::test]
async fn the_template_form_follows_parameter_types() {
    let app = app().await;
    let spec = json!({
        "name": "typed",
        "instructions": "Do {{kind}} {{n}} times, loudly: {{loud}}",
        "parameters": [
            {"name": "kind", "type": "enum", "required": true, "choices": ["a", "b"]},
            {"name": "n", "type": "number", "required": true, "default": "2"},
            {"name": "loud", "type": "boolean", "required": true}
        ],
        "agent": {"kind": "command", "command": "true"}
    });
    let (status, _) = app.call("POST", "/templates", Some(spec)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, form) = get(&app, "/p/default/tasks/new?template=typed").await;
    assert_eq!(status, StatusCode::OK);
    assert!(form.contains("<select id=\"param-kind\" name=\"param.kind\" required>"));
    assert!(
        form.contains("type=\"number\" step=\"any\" id=\"param-n\" name=\"param.n\" value=\"2\"")
    );
    assert!(form.contains("type=\"checkbox\" id=\"param-loud\""));

    let post = |body: String| {
        Request::post("/p/default/tasks")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap()
    };
    let repo = app.repo.url();
    let encoded: String = repo.bytes().map(|b| format!("%{b:02X}")).collect();
    // An unticked required boolean is false, not missing.
    let response = app
        .send(post(format!(
            "template=typed&param.kind=b&param.n=3&param.loud=false&repo={encoded}&base=main"
        )))
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (_, task) = app.call("GET", "/tasks/1", None).await;
    assert_eq!(task["instructions"], "Do b 3 times, loudly: false");

    let response = app.send(post(format!(
            "template=typed&param.kind=b&param.n=lots&param.loud=false&param.loud=true&repo={encoded}"
        ))).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let html = String::from_utf8_lossy(&bytes);
    assert!(html.contains("invalid value for parameter n"), "{html}");
    assert!(
        html.contains(
            "id=\"param-n\" name=\"param.n\" value=\"lots\" required aria-invalid=\"true\""
        )
    );
    assert!(
        html.contains("value=\"true\" checked"),
        "the ticked box stays ticked"
    );
}

#[tokio::test]
async fn the_task_list_pages_by_hundreds() {
    use nightshift_core::{AgentSpec, BranchName, Budget, Instructions, NewTask, RepoUrl};
    let app = app().await;
    let project = app.store.project("default").await.unwrap().unwrap();
    for n in 1..=101 {
        let instructions = Instructions::parse(&format!("Task number {n}")).unwrap();
        let new = NewTask {
            project_id: project.id,
            title: instructions.summary(),
            instructions,
            repo: RepoUrl::parse("/srv/r.git").unwrap(),
            base_branch: BranchName::parse("main").unwrap(),
            agent: AgentSpec::command("true"),
            timeout_secs: 60,
            budget: Budget::default(),
            allow_test_changes: false,
            created_by: super::templates::USER.into(),
        };
        app.store.create_task(&new).await.unwrap();
    }
    let (_, first) = get(&app, "/p/default/tasks?q=number").await;
    assert_eq!(first.matches("<tr data-task=").count(), 100);
    assert!(
        first.contains("href=\"/p/default/tasks?q=number&amp;before=2\">Older tasks</a>"),
        "{first}"
    );
    let (_, second) = get(&app, "/p/default/tasks?q=number&before=2").await;
    assert_eq!(second.matches("<tr data-task=").count(), 1);
    assert!(second.contains("#1 Task number 1"));
    assert!(!second.contains("Older tasks"));
}

#[tokio::test]
async fn pages_need_sign_in_and_the_project_role() {
    let app = app().await;
    // No credentials: every page sends the browser to the sign-in form, with the way back.
    let response = app
        .send_anonymous(
            Request::get("/p/default/tasks?q=x")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        "/signin?next=%2Fp%2Fdefault%2Ftasks%3Fq%3Dx"
    );
    let response = app
        .send_anonymous(Request::get("/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let response = app
        .send_anonymous(
            Request::get("/signin?next=%2Fp%2Fdefault%2Ftasks")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // A wrong token shows the form again; a right one sets the session cookie and goes on.
    let sign_in = |token: &str, next: &str| {
        Request::post("/signin")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!("token={token}&next={next}")))
            .unwrap()
    };
    let response = app
        .send_anonymous(sign_in("nst_wrong", "%2Fp%2Fdefault%2Ftasks"))
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get(header::SET_COOKIE).is_none());
    let response = app
        .send_anonymous(sign_in(&app.token, "%2Fp%2Fdefault%2Ftasks"))
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/p/default/tasks");
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let session = cookie.split(';').next().unwrap().to_string();
    let response = app
        .send_anonymous(
            Request::get("/p/default/tasks")
                .header(header::COOKIE, &session)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    // `next` never leaves the site.
    let response = app
        .send_anonymous(sign_in(&app.token, "https%3A%2F%2Fevil.example%2F"))
        .await;
    assert_eq!(response.headers()[header::LOCATION], "/");

    // A viewer reads but may not post forms; someone outside the project sees nothing.
    let project = app.store.project("default").await.unwrap().unwrap();
    let vera = app.store.create_user("vera", None, false).await.unwrap();
    app.store
        .set_member(project.id, vera.id, nightshift_core::Role::Viewer)
        .await
        .unwrap();
    let (_, vera_token) = app.store.create_token(vera.id, "t").await.unwrap();
    let otto = app.store.create_user("otto", None, false).await.unwrap();
    let (_, otto_token) = app.store.create_token(otto.id, "t").await.unwrap();
    let as_user = |token: &str, request: axum::http::request::Builder, body: &str| {
        request
            .header("authorization", format!("Bearer {token}"))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let response = app
        .send_anonymous(as_user(&vera_token, Request::get("/p/default/tasks"), ""))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let response = app
        .send_anonymous(as_user(
            &vera_token,
            Request::post("/p/default/templates"),
            "name=t1&instructions=Do+it",
        ))
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .send_anonymous(as_user(&otto_token, Request::get("/p/default/tasks"), ""))
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Signing out ends the session: the cookie no longer signs in.
    let response = app
        .send_anonymous(
            Request::post("/signout")
                .header(header::COOKIE, &session)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/signin");
    let response = app
        .send_anonymous(
            Request::get("/p/default/tasks")
                .header(header::COOKIE, &session)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
}

/// A run that could not set up its checks says `setup_failed` with the reason, and a check
/// that already failed on the base is marked so in the change's check table.
#[tokio::test]
async fn setup_failed_and_a_pre_existing_failure_are_shown() {
    use nightshift_core::{CheckOutcome, CheckResult, EndReason, GeneratedChange};
    let app = app().await;
    let (status, _) = app
        .call(
            "POST",
            "/tasks",
            Some(
                json!({"repo": app.repo.url(), "base": "main", "instructions": "fix the lint",
                "agent": {"kind": "command", "command": "true"}}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let task = app.finish_next(EndReason::SetupFailed).await;
    let project = app.store.project("default").await.unwrap().unwrap();
    let run = app
        .store
        .task_runs(project.id, task)
        .await
        .unwrap()
        .remove(0);
    let check = |command: &str, failed_on_base| CheckResult {
        stage: "lint".into(),
        command: command.into(),
        outcome: CheckOutcome::Failed,
        exit_code: Some(1),
        signal: None,
        duration_ms: 10,
        output: String::new(),
        round: 1,
        failed_on_base,
    };
    app.store
        .save_change(&GeneratedChange {
            run_id: run.id,
            checks: vec![check("mypy .", true), check("ruff check .", false)],
            ..Default::default()
        })
        .await
        .unwrap();
    let (status, html) = get(&app, &format!("/p/default/tasks/{task}")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(html.contains("setup_failed"), "{html}");
    let rows: Vec<&str> = html.split("<tr class=\"c-failed\">").skip(1).collect();
    assert_eq!(rows.len(), 2, "{html}");
    assert!(rows[0].contains("mypy .") && rows[0].contains("failed on the base"));
    assert!(rows[1].contains("ruff check .") && !rows[1].contains("failed on the base"));
}
