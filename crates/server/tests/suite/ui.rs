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
}
