//! Rebase runs through the API and the task page: a conflicting pull request offers one, who
//! may start it, what is refused and why; and the project's settings for what the follower
//! starts by itself.

use axum::http::{Method, StatusCode};
use nightshift_core::{CiState, EndReason, Mergeability, NewFollow, PrState, now_millis};
use nightshift_server::ServerConfig;
use nightshift_store::{PollOutcome, PrSeen, Store};
use nightshift_test_support::git::RemoteRepo;
use serde_json::json;

use super::app::App;

/// Records a poll of the task's pull request #21 that found it `state` and conflicting.
async fn pull_request_seen(store: &Store, task: i64, state: PrState) {
    let project = store.project("alpha").await.unwrap().unwrap();
    let run = store
        .task_runs(project.id, task)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let task = store.task(project.id, task).await.unwrap().unwrap();
    let pr = store
        .follow_pull_request(&NewFollow {
            project_id: project.id,
            task_id: task.id,
            run_id: run.id,
            repo: task.repo.clone(),
            number: 21,
            url: "https://forge.example/acme/widget/pull/21".into(),
            branch: format!("nightshift/{}-rename", task.id),
            follow_until: now_millis() + 3_600_000,
        })
        .await
        .unwrap();
    store
        .claim_pull_request_poll("follower", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    let seen = PollOutcome::Seen {
        seen: PrSeen {
            state,
            ci: CiState::Passing,
            mergeable: Mergeability::Conflicting,
            behind_base: Some(true),
            head_sha: Some("89abcdef0123456789abcdef0123456789abcdef".into()),
            validators: None,
            unchanged: false,
        },
        next_poll_at: now_millis() + 3_600_000,
    };
    store
        .record_pull_request_poll(pr.id, "follower", &seen)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_rebase_run_is_started_on_a_conflicting_pull_request_and_refused_otherwise() {
    let app = App::start(ServerConfig::default(), 0).await;
    let remote = RemoteRepo::with_files(&[("README.md", "hello\n")]);
    let body = json!({"repo": remote.url(), "instructions": "Rename Foo to Bar"}).to_string();
    let created = app
        .call(Method::POST, "/projects/alpha/tasks", "editor", Some(&body))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let task = created.body["id"].as_i64().unwrap();
    let rebase = format!("/projects/alpha/tasks/{task}/rebase");

    let refused = app.call(Method::POST, &rebase, "editor", None).await;
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
    pull_request_seen(&app.store, task, PrState::Open).await;

    // The page says it conflicts and offers the rebase.
    let page = app.page(&format!("/p/alpha/tasks/{task}"), "editor").await;
    assert!(page.contains("id=\"rebase\""), "{page}");
    assert!(page.contains("conflicts with its base"), "{page}");

    let denied = app.call(Method::POST, &rebase, "viewer", None).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let started = app.call(Method::POST, &rebase, "editor", None).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let run = &started.body["runs"][1];
    assert_eq!(run["number"], 2);
    assert_eq!(run["follow_up"]["kind"], "rebase");
    assert_eq!(run["follow_up"]["pr_number"], 21);
    assert_eq!(run["follow_up"]["requested_by"], "eddie");
    let page = app.page(&format!("/p/alpha/tasks/{task}"), "editor").await;
    assert!(!page.contains("id=\"rebase\""), "{page}");
    assert!(page.contains("(rebase, asked by eddie)"), "{page}");
    let again = app.call(Method::POST, &rebase, "editor", None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.message().contains("still has an active run"),
        "{}",
        again.body
    );

    // Once the pull request is closed there is nothing to rebase.
    let queued = app
        .store
        .task_runs(claim.run.project_id, task)
        .await
        .unwrap();
    app.store
        .cancel_task(claim.run.project_id, task)
        .await
        .unwrap();
    assert_eq!(queued.len(), 2);
    pull_request_seen(&app.store, task, PrState::Closed).await;
    let closed = app.call(Method::POST, &rebase, "editor", None).await;
    assert_eq!(closed.status, StatusCode::CONFLICT);
    assert_eq!(
        closed.body["error"]["code"], "nothing_to_fix",
        "{}",
        closed.body
    );
    assert!(closed.message().contains("is closed"), "{}", closed.body);
}

#[tokio::test]
async fn a_project_sets_what_the_follower_starts_by_itself() {
    let app = App::start(ServerConfig::default(), 0).await;
    let shown = app
        .call(Method::GET, "/projects/alpha", "viewer", None)
        .await;
    assert_eq!(
        shown.body["settings"]["rebase"], "conflicts",
        "{}",
        shown.body
    );
    assert_eq!(shown.body["settings"]["auto_fix_ci_attempts"], 0);

    let body = json!({"rebase": "behind", "auto_fix_ci_attempts": 3}).to_string();
    let denied = app
        .call(Method::PATCH, "/projects/alpha", "editor", Some(&body))
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let updated = app
        .call(Method::PATCH, "/projects/alpha", "admin", Some(&body))
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.body["settings"]["rebase"], "behind");
    let project = app.store.project("alpha").await.unwrap().unwrap();
    let settings = app.store.project_settings(project.id).await.unwrap();
    assert_eq!(settings.rebase, nightshift_core::RebasePolicy::Behind);
    assert_eq!(settings.auto_fix_ci_attempts, 3);

    for (bad, says) in [
        (json!({"auto_fix_ci_attempts": 11}), "0 (off) to 10"),
        (json!({"rebase": "sometimes"}), "rebase"),
    ] {
        let refused = app
            .call(
                Method::PATCH,
                "/projects/alpha",
                "admin",
                Some(&bad.to_string()),
            )
            .await;
        assert!(refused.status.is_client_error(), "{}", refused.body);
        assert!(refused.message().contains(says), "{}", refused.body);
    }
    let settings = app.store.project_settings(project.id).await.unwrap();
    assert_eq!(
        settings.auto_fix_ci_attempts, 3,
        "nothing changed by a refusal"
    );
}
