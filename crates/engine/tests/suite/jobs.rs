//! The engine's background jobs: the retention sweeper, on its own and as started with the
//! workers. (The pull request follower is exercised by the publishing tests.)

use std::path::Path;
use std::time::{Duration, Instant};

use nightshift_core::{
    AgentSpec, BranchName, Budget, DEFAULT_PROJECT, EndReason, EventKind, Instructions, NewTask,
    RepoUrl,
};
use nightshift_engine::{Engine, EngineConfig};
use nightshift_store::{NewEvent, RetentionPolicy, Store};
use tokio_util::sync::CancellationToken;

/// A store with two runs of the default project: one ended (with an event in its log), one
/// running.
async fn store_with_runs(dir: &Path) -> (Store, i64, i64) {
    let store = Store::open_sqlite(&dir.join("nightshift.db"))
        .await
        .unwrap();
    let project = store.project(DEFAULT_PROJECT).await.unwrap().unwrap();
    for i in 0..2 {
        store
            .create_task(&NewTask {
                project_id: project.id,
                title: "t".into(),
                instructions: Instructions::parse(&format!("task {i}")).unwrap(),
                repo: RepoUrl::parse(&format!("/srv/r{i}.git")).unwrap(),
                base_branch: BranchName::parse("main").unwrap(),
                agent: AgentSpec::command("true"),
                timeout_secs: 60,
                budget: Budget::default(),
                allow_test_changes: false,
                created_by: format!("user-{i}"),
            })
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(30);
    let ended = store.claim_run("w", lease).await.unwrap().unwrap().run.id;
    store
        .append_events(
            ended,
            &[NewEvent {
                kind: EventKind::Info,
                phase: None,
                message: "kept until the retention says otherwise".into(),
                data: serde_json::Value::Null,
            }],
        )
        .await
        .unwrap();
    store
        .finish_run(ended, "w", EndReason::ChecksFailed, None, None)
        .await
        .unwrap();
    let running = store.claim_run("w", lease).await.unwrap().unwrap().run.id;
    (store, ended, running)
}

#[tokio::test]
async fn the_sweeper_removes_old_workspaces_of_ended_runs_only() {
    let data = tempfile::tempdir().unwrap();
    let (store, ended, running) = store_with_runs(data.path()).await;
    let dir = data.path().join("runs");
    for id in [ended, running, 999_999] {
        std::fs::create_dir_all(dir.join(id.to_string()).join("work")).unwrap();
    }
    let policy = RetentionPolicy::default();
    let now = nightshift_core::now_millis();
    let removed = nightshift_engine::sweep_workspaces(&store, &dir, &policy, now)
        .await
        .unwrap();
    assert_eq!(removed, 1, "only the unknown run's directory goes now");
    assert!(
        dir.join(ended.to_string()).exists(),
        "a recent failure is kept for debugging"
    );
    let later = now + policy.workspaces.as_millis() as i64 + 1000;
    let removed = nightshift_engine::sweep_workspaces(&store, &dir, &policy, later)
        .await
        .unwrap();
    assert_eq!(removed, 1);
    assert!(!dir.join(ended.to_string()).exists());
    assert!(
        dir.join(running.to_string()).exists(),
        "a running run keeps its workspace"
    );
}

/// Starts workers (none: the jobs alone) with a retention of a millisecond for workspaces and
/// events, waits until the ended run's leftover workspace is gone, stops them, and says whether
/// the ended run's events are still there.
async fn sweep_with_workers(sweep_records: bool) -> bool {
    let data = tempfile::tempdir().unwrap();
    let (store, ended, running) = store_with_runs(data.path()).await;
    let runs = data.path().join("runs");
    for id in [ended, running] {
        std::fs::create_dir_all(runs.join(id.to_string()).join("work")).unwrap();
    }
    // Older than the retention below by the time the sweeper looks.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut config = EngineConfig::new(data.path());
    config.retention = RetentionPolicy {
        events: Duration::from_millis(1),
        audit: Duration::from_secs(3600),
        workspaces: Duration::from_millis(1),
    };
    config.sweep_records = sweep_records;
    let engine = Engine::new(store.clone(), config);
    let shutdown = CancellationToken::new();
    let (e, s) = (engine.clone(), shutdown.clone());
    let workers = tokio::spawn(async move { e.run_workers(0, s).await });
    let started = Instant::now();
    while runs.join(ended.to_string()).exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the leftover workspace was not swept"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shutdown.cancel();
    workers.await.unwrap();
    assert!(
        runs.join(running.to_string()).exists(),
        "a running run keeps its workspace"
    );
    !store.events(ended, 0, 100).await.unwrap().is_empty()
}

#[tokio::test]
async fn workers_sweep_with_the_configured_retention() {
    assert!(
        !sweep_with_workers(true).await,
        "the ended run's events outlived their retention"
    );
}

#[tokio::test]
async fn workers_that_do_not_sweep_records_leave_the_database_alone() {
    assert!(
        sweep_with_workers(false).await,
        "a worker swept the shared database's records"
    );
}
