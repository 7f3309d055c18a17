//! The pages: rendered, escaped, and guarded against cross-site form posts.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use serde_json::json;
use tower::ServiceExt;

use super::templates::app;

async fn get(app: &super::templates::App, path: &str) -> (StatusCode, String) {
    let response = app
        .router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
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
    let response = app
        .router
        .clone()
        .oneshot(post(Some("https://evil.example")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // The API too: a cross-site form could otherwise cancel a task.
    let cancel = Request::post("/api/v1/projects/default/tasks/1/cancel")
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, "https://evil.example")
        .body(Body::empty())
        .unwrap();
    let response = app.router.clone().oneshot(cancel).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = app
        .router
        .clone()
        .oneshot(post(Some("http://127.0.0.1:8080")))
        .await
        .unwrap();
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
    let response = app.router.clone().oneshot(edit).await.unwrap();
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
        .router
        .clone()
        .oneshot(post(format!(
            "template=typed&param.kind=b&param.n=3&param.loud=false&repo={encoded}&base=main"
        )))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (_, task) = app.call("GET", "/tasks/1", None).await;
    assert_eq!(task["instructions"], "Do b 3 times, loudly: false");

    let response = app
        .router
        .clone()
        .oneshot(post(format!(
            "template=typed&param.kind=b&param.n=lots&param.loud=false&param.loud=true&repo={encoded}"
        )))
        .await
        .unwrap();
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
            created_by: "local".into(),
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
