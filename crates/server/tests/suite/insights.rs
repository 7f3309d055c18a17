//! Outcome insights through the API: what a period's tasks, runs and pull requests add up to.

use axum::http::{Method, StatusCode};
use nightshift_core::{CiState, EndReason, PrState, Usage};
use nightshift_server::ServerConfig;
use nightshift_store::RunUpdate;
use nightshift_test_support::git::RemoteRepo;
use serde_json::json;

use super::app::App;
use super::doors::{pull_request_seen, red_pull_request};

/// Ends the next queued run as a worker would, having spent `cost_usd`.
async fn end_next(app: &App, reason: EndReason, cost_usd: f64) {
    let claim = app
        .store
        .claim_run("w", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let update = RunUpdate {
        usage: Some(Usage {
            cost_usd,
            ..Usage::default()
        }),
        ..RunUpdate::default()
    };
    app.store
        .update_run(claim.run.id, "w", &update)
        .await
        .unwrap();
    app.store
        .finish_run(claim.run.id, "w", reason, None, None)
        .await
        .unwrap();
}

#[tokio::test]
async fn insights_add_up_a_periods_runs_retries_and_pull_requests() {
    let app = App::start(ServerConfig::default(), 0).await;
    let remote = RemoteRepo::with_files(&[("README.md", "hello\n")]);
    for instructions in ["Rename Foo to Bar", "Rename Baz to Qux"] {
        let body = json!({"repo": remote.url(), "instructions": instructions}).to_string();
        let created = app
            .call(Method::POST, "/projects/alpha/tasks", "editor", Some(&body))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    // Task 1 fails, is retried and succeeds with a pull request; task 2 fails.
    end_next(&app, EndReason::ChecksFailed, 0.5).await;
    end_next(&app, EndReason::ChecksFailed, 0.25).await;
    let retried = app
        .call(
            Method::POST,
            "/projects/alpha/tasks/1/retry",
            "editor",
            None,
        )
        .await;
    assert_eq!(retried.status, StatusCode::CREATED);
    end_next(&app, EndReason::Succeeded, 1.25).await;
    red_pull_request(&app.store, 1).await;

    let answer = app
        .call(Method::GET, "/projects/alpha/insights", "viewer", None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let i = &answer.body;
    assert_eq!(i["project"], "alpha");
    assert_eq!(i["tasks_created"], 2);
    assert_eq!(i["runs"]["ended"], 3);
    assert_eq!(
        i["runs"]["by_end_reason"],
        json!([{"end_reason": "checks_failed", "runs": 2}, {"end_reason": "succeeded", "runs": 1}])
    );
    assert_eq!(i["runs"]["retries"], 1);
    assert_eq!(i["runs"]["retry_success_rate"], 1.0);
    assert_eq!(i["pull_requests"]["opened"], 1);
    assert_eq!(i["pull_requests"]["merged"], 0);
    assert_eq!(i["pull_requests"]["merge_rate"], 0.0);
    assert_eq!(i["pull_requests"]["within_hour_rate"], 1.0);
    assert!(
        i["pull_requests"]["median_time_to_pr_secs"]
            .as_u64()
            .unwrap()
            < 60
    );
    assert_eq!(i["cost"]["total_usd"], 2.0);
    assert_eq!(i["cost"]["per_run_usd"].as_f64().unwrap(), 2.0 / 3.0);
    assert_eq!(i["cost"]["merged_prs"], 0);
    assert!(i["cost"]["per_merged_pr_usd"].is_null());

    // The page shows the same, with a bar per end reason.
    let page = app.page("/p/alpha/insights", "viewer").await;
    assert!(page.contains(r#"<dd id="tasks-created">2</dd>"#), "{page}");
    assert!(page.contains("1 opened, 0 merged, 0 closed"), "{page}");
    assert!(page.contains("1, 100% succeeded"), "{page}");
    assert!(
        page.contains(r#"<td>checks_failed</td><td>2</td><td><progress max="3" value="2""#),
        "{page}"
    );
    let quiet = app
        .page(
            "/p/alpha/insights?since=2020-01-01&until=2020-02-01",
            "viewer",
        )
        .await;
    assert!(quiet.contains("No run ended in this period."), "{quiet}");

    // A period before any of it is empty; a period that ends before it starts is refused.
    let empty = app
        .call(
            Method::GET,
            "/projects/alpha/insights?since=2020-01-01&until=2020-02-01",
            "viewer",
            None,
        )
        .await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert_eq!(empty.body["runs"]["ended"], 0);
    assert!(empty.body["pull_requests"]["merge_rate"].is_null());
    let backwards = app
        .call(
            Method::GET,
            "/projects/alpha/insights?since=2020-02-01&until=2020-01-01",
            "viewer",
            None,
        )
        .await;
    assert_eq!(
        backwards.body["error"]["code"], "invalid_query",
        "{}",
        backwards.body
    );
    assert!(backwards.message().contains("since must be before until"));
    let unknown = app
        .call(
            Method::GET,
            "/projects/alpha/insights?from=2020-01-01",
            "viewer",
            None,
        )
        .await;
    assert_eq!(unknown.body["error"]["code"], "invalid_query");
}

#[tokio::test]
async fn one_templates_insights_count_the_manual_work_its_merged_pull_requests_saved() {
    let app = App::start(ServerConfig::default(), 0).await;
    let remote = RemoteRepo::with_files(&[("README.md", "hello\n")]);
    let template = |name: &str, minutes: serde_json::Value| {
        json!({"name": name, "instructions": format!("Apply {name} to {{{{path}}}}"),
               "parameters": [{"name": "path", "type": "string", "required": true}],
               "manual_effort_minutes": minutes})
        .to_string()
    };
    // A manual effort of nothing is refused, saying what to write instead.
    let zero = app
        .call(
            Method::POST,
            "/projects/alpha/templates",
            "editor",
            Some(&template("bump", json!(0))),
        )
        .await;
    assert_eq!(
        zero.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        zero.body
    );
    assert!(
        zero.message().contains("manual_effort_minutes 0"),
        "{}",
        zero.message()
    );
    for (name, minutes) in [("bump", json!(150)), ("docs", json!(null))] {
        let created = app
            .call(
                Method::POST,
                "/projects/alpha/templates",
                "editor",
                Some(&template(name, minutes)),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    }
    // Task 1 from `bump`, task 2 from `docs`, task 3 from neither: each succeeds and its pull
    // request is merged.
    for (path, body) in [
        (
            "/projects/alpha/templates/bump/tasks",
            json!({"repo": remote.url(), "params": {"path": "a"}}),
        ),
        (
            "/projects/alpha/templates/docs/tasks",
            json!({"repo": remote.url(), "params": {"path": "b"}}),
        ),
        (
            "/projects/alpha/tasks",
            json!({"repo": remote.url(), "instructions": "Rename Foo"}),
        ),
    ] {
        let created = app
            .call(Method::POST, path, "editor", Some(&body.to_string()))
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        end_next(&app, EndReason::Succeeded, 1.0).await;
    }
    for task in 1..=3 {
        pull_request_seen(&app.store, task, PrState::Merged, CiState::Passing).await;
    }

    let all = app
        .call(Method::GET, "/projects/alpha/insights", "viewer", None)
        .await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert!(all.body["template"].is_null());
    assert_eq!(all.body["pull_requests"]["merged"], 3);
    assert_eq!(
        all.body["time_saved"],
        json!({"minutes": 150, "merged_prs": 1})
    );
    // The last 30 days, a bar a day: today's holds the three runs and merges.
    assert_eq!(all.body["chart_days"], 1);
    let chart = all.body["chart"].as_array().unwrap();
    assert_eq!(chart.len(), 30);
    let today = chart.last().unwrap();
    assert_eq!(
        (
            &today["runs_succeeded"],
            &today["runs_failed"],
            &today["prs_merged"]
        ),
        (&json!(3), &json!(0), &json!(3))
    );
    let templates: Vec<(String, u64, u64)> = all.body["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["template"].as_str().unwrap().to_string(),
                t["prs_merged"].as_u64().unwrap(),
                t["time_saved_minutes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        templates,
        vec![("bump".into(), 1, 150), ("docs".into(), 1, 0)]
    );

    // One template's tasks alone.
    let bump = app
        .call(
            Method::GET,
            "/projects/alpha/insights?template=bump",
            "viewer",
            None,
        )
        .await;
    assert_eq!(bump.status, StatusCode::OK, "{}", bump.body);
    assert_eq!(bump.body["template"], "bump");
    assert_eq!(bump.body["tasks_created"], 1);
    assert_eq!(bump.body["runs"]["ended"], 1);
    assert_eq!(bump.body["pull_requests"]["merge_rate"], 1.0);
    assert_eq!(bump.body["time_saved"]["minutes"], 150);
    let unknown = app
        .call(
            Method::GET,
            "/projects/alpha/insights?template=nope",
            "viewer",
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.body["error"]["code"], "invalid_query");
    assert!(
        unknown.message().contains("no template named \"nope\""),
        "{}",
        unknown.message()
    );

    // The page: the time saved, a chart with a bar per day, a line per template.
    let page = app.page("/p/alpha/insights", "viewer").await;
    assert!(
        page.contains("2h 30m of manual work, by 1 merged pull request"),
        "{page}"
    );
    assert!(
        page.contains(r#"<figure class="chart" id="chart">"#),
        "{page}"
    );
    assert_eq!(page.matches(r#"<rect class="ok""#).count(), 30, "{page}");
    assert!(page.contains("3 succeeded, 0 failed, 3 merged"), "{page}");
    assert!(
        page.contains(r#"<td>1 opened, 1 merged</td><td>100%</td><td>2h 30m</td>"#),
        "{page}"
    );
    let one = app.page("/p/alpha/insights?template=bump", "viewer").await;
    assert!(
        one.contains(r#"<option value="bump" selected>bump</option>"#),
        "{one}"
    );
    assert!(one.contains(r#"<dd id="tasks-created">1</dd>"#), "{one}");
}
