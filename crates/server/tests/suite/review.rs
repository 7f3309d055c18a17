//! Nightshift's own review as the API and the pages show and set it: a task that may change its
//! tests (directly, by the new-task form, or by its template's default), a project's judge
//! switched off and on, and the guard's findings and judge's verdicts on the task page.

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use nightshift_core::{
    GeneratedChange, GuardFinding, GuardKind, JudgeDecision, JudgeVerdict, Usage,
};
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

async fn page(app: &super::templates::App, request: Request<Body>) -> (StatusCode, String) {
    let response = app.send(request).await;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn the_new_task_form_allows_test_changes_when_ticked() {
    let app = app().await;
    let (_, form) = page(
        &app,
        Request::get("/p/default/tasks/new")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert!(form.contains("type=\"checkbox\" id=\"allow_test_changes\" name=\"allow_test_changes\" value=\"true\">"), "{form}");
    let encoded: String = app
        .repo
        .url()
        .bytes()
        .map(|b| format!("%{b:02X}"))
        .collect();
    for (n, ticked) in [(1, true), (2, false)] {
        let tick = if ticked {
            "&allow_test_changes=true"
        } else {
            ""
        };
        let body = format!(
            "repo={encoded}&base=main&instructions=Task+{n}&agent=command&agent_command=true&allow_test_changes=false{tick}"
        );
        let request = Request::post("/p/default/tasks")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let (status, html) = page(&app, request).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{html}");
        let (_, task) = app.call("GET", &format!("/tasks/{n}"), None).await;
        assert_eq!(task["allow_test_changes"], ticked, "{task}");
    }
}

#[tokio::test]
async fn the_task_page_shows_the_guards_findings_and_the_judges_verdicts() {
    let app = app().await;
    let (status, task) = app
        .call("POST", "/tasks", Some(json!({"repo": app.repo.url(), "base": "main", "instructions": "Say goodbye", "agent": {"kind": "command", "command": "true"}})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let run = app
        .store
        .claim_run("test", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap()
        .run;
    let verdict = |round, decision, reasons: &[&str], problem: Option<&str>| JudgeVerdict {
        round,
        decision,
        reasons: reasons.iter().map(|r| r.to_string()).collect(),
        provider: "anthropic".into(),
        model: "claude-sonnet-4-5".into(),
        problem: problem.map(str::to_string),
        usage: Usage {
            input_tokens: 1200,
            output_tokens: 80,
            cost_usd: 0.0048,
            turns: 0,
        },
    };
    let change = GeneratedChange {
        run_id: run.id,
        guard: vec![GuardFinding {
            kind: GuardKind::SkipAdded,
            path: "tests/test_a.py".into(),
            line: 7,
            detail: "`@pytest.mark.skip` added: `<b>@pytest.mark.skip</b>`".into(),
        }],
        verdicts: vec![
            verdict(
                1,
                JudgeDecision::Reject,
                &["README.md: the badge is unrelated; revert it."],
                None,
            ),
            verdict(2, JudgeDecision::Approve, &[], Some("no answer within 2m")),
        ],
        ..GeneratedChange::default()
    };
    app.store.save_change(&change).await.unwrap();
    let (status, html) = page(
        &app,
        Request::get("/p/default/tasks/1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for part in [
        "<h2 id=\"review-h\">Review</h2>",
        "The change weakens the tests or the checks:",
        "<code>tests/test_a.py:7</code> skip added: `@pytest.mark.skip` added: `&lt;b&gt;@pytest.mark.skip&lt;/b&gt;`",
        "Round 1: <strong>rejected</strong>",
        "<li>README.md: the badge is unrelated; revert it.</li>",
        "Round 2: <strong>approved</strong> <small>by policy: no verdict (no answer within 2m)</small>",
        "anthropic claude-sonnet-4-5 · 1200 in / 80 out tokens · $0.0048",
    ] {
        assert!(html.contains(part), "missing {part:?} in the page");
    }
}
