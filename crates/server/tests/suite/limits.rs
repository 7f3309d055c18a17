//! Limits through the API with real workers: one user's tasks on one repository take turns
//! and say why they wait; duplicates are refused; usage is reported per month.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use nightshift_server::ServerConfig;
use nightshift_test_support::git::RemoteRepo;
use serde_json::Value;

use super::app::App;

#[tokio::test]
async fn three_tasks_of_one_user_on_one_repository_run_one_at_a_time() {
    let app = App::start(ServerConfig::default(), 3).await;
    let remote = RemoteRepo::with_files(&[("a.txt", "a\n")]);
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = serde_json::json!({
            "repo": remote.url(),
            "instructions": format!("Write file {i}"),
            "agent": {"kind": "command", "command": format!("sleep 0.5 && echo {i} > f{i}.txt")},
        });
        let created = app
            .call(
                Method::POST,
                "/projects/alpha/tasks",
                "editor",
                Some(&body.to_string()),
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        ids.push(created.body["id"].as_i64().unwrap());
    }
    let duplicate = serde_json::json!({"repo": remote.url(), "instructions": "Write file 2"});
    let refused = app
        .call(
            Method::POST,
            "/projects/alpha/tasks",
            "editor",
            Some(&duplicate.to_string()),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert_eq!(refused.body["error"]["code"], "duplicate_task");
    assert!(
        refused.message().contains(&format!("task {}", ids[2])),
        "{}",
        refused.message()
    );

    let mut reasons = Vec::new();
    let started = Instant::now();
    loop {
        // One read of every running run: reading task by task could see run 1 still running
        // and run 2 already started, one just after the other.
        let running = app
            .call(
                Method::GET,
                "/projects/alpha/runs?status=running",
                "viewer",
                None,
            )
            .await;
        let running = running.body["runs"].as_array().map_or(0, Vec::len);
        let mut ended = 0;
        for id in &ids {
            let task = app
                .call(
                    Method::GET,
                    &format!("/projects/alpha/tasks/{id}"),
                    "viewer",
                    None,
                )
                .await;
            let run = &task.body["runs"][0];
            match run["status"].as_str().unwrap() {
                "running" => {}
                "queued" => {
                    if let Some(why) = run["waiting_reason"].as_str() {
                        reasons.push(why.to_string());
                    }
                }
                _ => {
                    assert_eq!(run["end_reason"], "succeeded", "{}", task.body);
                    ended += 1;
                }
            }
        }
        assert!(running <= 1, "two runs of one repository at once");
        if ended == 3 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "runs never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("repository lock") && r.contains("held by task")),
        "queued runs said why they waited: {reasons:?}"
    );
    let waiting: Value = app
        .call(
            Method::GET,
            "/projects/alpha/runs?waiting=true",
            "viewer",
            None,
        )
        .await
        .body;
    assert_eq!(waiting["runs"].as_array().unwrap().len(), 0);
    let usage = app
        .call(Method::GET, "/projects/alpha/usage", "viewer", None)
        .await;
    assert_eq!(usage.body["runs"], 3);
}

#[tokio::test]
async fn project_limits_cap_timeouts_and_budget() {
    let app = App::start(ServerConfig::default(), 0).await;
    let remote = RemoteRepo::with_files(&[("a.txt", "a\n")]);
    let patched = app
        .call(
            Method::PATCH,
            "/projects/alpha",
            "admin",
            Some(r#"{"max_timeout":"10m","monthly_budget_usd":0}"#),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    // The audit record says what changed in words, not as Rust values.
    let alpha = app.store.ensure_project("alpha").await.unwrap();
    let audit = app
        .store
        .audit_events(
            Some(alpha.id),
            &nightshift_core::AuditFilter {
                action: Some("project.update".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        audit[0].detail.as_deref(),
        Some("max_timeout=600s, monthly_budget_usd=0")
    );
    let too_long = serde_json::json!({"repo": remote.url(), "instructions": "x", "timeout": "20m"});
    let refused = app
        .call(
            Method::POST,
            "/projects/alpha/tasks",
            "editor",
            Some(&too_long.to_string()),
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["error"]["code"], "timeout_too_long");
    let ok = serde_json::json!({"repo": remote.url(), "instructions": "y"});
    let created = app
        .call(
            Method::POST,
            "/projects/alpha/tasks",
            "editor",
            Some(&ok.to_string()),
        )
        .await;
    assert_eq!(created.body["timeout"], "10m");
    // A budget of 0 is spent before anything runs: the run waits and says so.
    assert!(
        app.store
            .claim_run("w", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none()
    );
    let id = created.body["id"].as_i64().unwrap();
    let task = app
        .call(
            Method::GET,
            &format!("/projects/alpha/tasks/{id}"),
            "viewer",
            None,
        )
        .await;
    let why = task.body["runs"][0]["waiting_reason"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("monthly budget"), "{}", task.body);
    let usage = app
        .call(Method::GET, "/projects/alpha/usage", "viewer", None)
        .await;
    assert_eq!(usage.body["over_budget"], true);
}
