//! Nightshift's own review as the API shows and sets it: a task that may change its tests
//! (directly, or by its template's default), and a project's judge switched off and on.

use axum::http::StatusCode;
use serde_json::json;

use super::templates::app;

#[tokio::test]
async fn a_task_may_allow_test_changes_and_a_template_sets_the_default() {
    let app = app().await;
    let task = |allow: Option<bool>| {
        let mut body = json!({"repo": app.repo.url(), "base": "main", "instructions": format!("Change a.txt {allow:?}")});
        if let Some(allow) = allow {
            body["allow_test_changes"] = json!(allow);
        }
        body
    };
    let (status, allowed) = app.call("POST", "/tasks", Some(task(Some(true)))).await;
    assert_eq!(status, StatusCode::CREATED, "{allowed}");
    assert_eq!(allowed["allow_test_changes"], true);
    let (_, plain) = app.call("POST", "/tasks", Some(task(None))).await;
    assert_eq!(plain["allow_test_changes"], false, "{plain}");
    let id = allowed["id"].as_i64().unwrap();
    let (_, shown) = app.call("GET", &format!("/tasks/{id}"), None).await;
    assert_eq!(shown["allow_test_changes"], true, "{shown}");
    let (status, wrong) = app
        .call(
            "POST",
            "/tasks",
            Some(json!({"repo": app.repo.url(), "instructions": "x", "allow_test_changes": "yes"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{wrong}");

    let spec = json!({
        "name": "drop-tests",
        "instructions": "Remove the tests of {{module}}",
        "parameters": [{"name": "module", "type": "string", "required": true}],
        "agent": {"kind": "command", "command": "true"},
        "allow_test_changes": true,
    });
    let (status, created) = app.call("POST", "/templates", Some(spec)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["allow_test_changes"], true, "{created}");
    let from_template = |allow: Option<bool>| {
        let mut body = json!({"repo": app.repo.url(), "base": "main", "params": {"module": format!("m{allow:?}")}});
        if let Some(allow) = allow {
            body["allow_test_changes"] = json!(allow);
        }
        body
    };
    let (status, by_default) = app
        .call(
            "POST",
            "/templates/drop-tests/tasks",
            Some(from_template(None)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{by_default}");
    assert_eq!(
        by_default["allow_test_changes"], true,
        "the template's default applies"
    );
    let (_, overridden) = app
        .call(
            "POST",
            "/templates/drop-tests/tasks",
            Some(from_template(Some(false))),
        )
        .await;
    assert_eq!(overridden["allow_test_changes"], false, "{overridden}");
}

#[tokio::test]
async fn a_project_switches_its_judge_off_and_on() {
    let app = app().await;
    let (_, project) = app.call("GET", "", None).await;
    assert_eq!(project["settings"]["judge"], true, "{project}");
    let (status, updated) = app.call("PATCH", "", Some(json!({"judge": false}))).await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["settings"]["judge"], false);
    let id = app.store.project("default").await.unwrap().unwrap().id;
    assert!(!app.store.project_settings(id).await.unwrap().judge);
    let (_, updated) = app.call("PATCH", "", Some(json!({"judge": true}))).await;
    assert_eq!(updated["settings"]["judge"], true);
}
