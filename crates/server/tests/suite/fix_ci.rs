//! Starting a fix-CI run through the API and the task page: who may, what is refused and why,
//! and what the task then shows.

use axum::http::{Method, StatusCode};
use nightshift_core::EndReason;
use nightshift_server::ServerConfig;
use nightshift_test_support::git::RemoteRepo;
use serde_json::json;

use super::app::App;
use super::doors::red_pull_request;

#[tokio::test]
async fn a_fix_ci_run_is_started_on_a_red_pull_request_and_refused_otherwise() {
    let app = App::start(ServerConfig::default(), 0).await;
    let remote = RemoteRepo::with_files(&[("README.md", "hello\n")]);
    let body = json!({"repo": remote.url(), "instructions": "Rename Foo to Bar"}).to_string();
    let created = app
        .call(Method::POST, "/projects/alpha/tasks", "editor", Some(&body))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let task = created.body["id"].as_i64().unwrap();
    let fix = format!("/projects/alpha/tasks/{task}/fix-ci");

    // No pull request yet.
    let refused = app.call(Method::POST, &fix, "editor", None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.message().contains("has no pull request"),
        "{}",
        refused.body
    );

    let claim = app
        .store
        .claim_run("w", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    app.store
        .finish_run(claim.run.id, "w", EndReason::Succeeded, None, None)
        .await
        .unwrap();
    red_pull_request(&app.store, task).await;

    // The task shows the red CI, and the page offers the fix.
    let shown = app
        .call(
            Method::GET,
            &format!("/projects/alpha/tasks/{task}"),
            "viewer",
            None,
        )
        .await;
    assert_eq!(
        shown.body["pull_request"]["ci"], "failing",
        "{}",
        shown.body
    );
    assert_eq!(shown.body["pull_request"]["number"], 17);
    assert_eq!(shown.body["pull_request"]["run"], 1);
    let page = app.page(&format!("/p/alpha/tasks/{task}"), "editor").await;
    assert!(page.contains("id=\"fix-ci\""), "{page}");
    assert!(page.contains("CI fails on #17"), "{page}");

    // A viewer may not start runs.
    let denied = app.call(Method::POST, &fix, "viewer", None).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    let started = app.call(Method::POST, &fix, "editor", None).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let run = &started.body["runs"][1];
    assert_eq!(run["number"], 2);
    assert_eq!(run["follow_up"]["kind"], "fix_ci");
    assert_eq!(run["follow_up"]["pr_number"], 17);
    assert_eq!(run["follow_up"]["requested_by"], "eddie");
    // While it runs, the page offers no second one, and the API refuses it.
    let page = app.page(&format!("/p/alpha/tasks/{task}"), "editor").await;
    assert!(!page.contains("id=\"fix-ci\""), "{page}");
    let again = app.call(Method::POST, &fix, "editor", None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.message().contains("still has an active run"),
        "{}",
        again.body
    );
}
