use std::time::Duration;

use nightshift_core::{
    AgentSpec, BranchName, Budget, DEFAULT_PROJECT, EndReason, EventKind, GeneratedChange,
    Instructions, NewTask, RepoUrl, RunStatus, TaskFilter,
};
use nightshift_store::{CancelOutcome, NewEvent, RunUpdate, Store, StoreError};

pub async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("nightshift.db"))
        .await
        .unwrap();
    (store, dir)
}

fn new_task(project_id: i64, repo: &str, instructions: &str) -> NewTask {
    NewTask {
        project_id,
        title: Instructions::parse(instructions).unwrap().summary(),
        instructions: Instructions::parse(instructions).unwrap(),
        repo: RepoUrl::parse(repo).unwrap(),
        base_branch: BranchName::parse("main").unwrap(),
        agent: AgentSpec::command("true"),
        timeout_secs: 60,
        budget: Budget::default(),
        created_by: "alice".into(),
    }
}

/// Runs every case on one store. Back ends call this with a fresh store each.
macro_rules! conformance_cases {
    ($make:path) => {
        #[tokio::test]
        async fn creates_and_lists_tasks_with_filters() {
            let (store, _guard) = $make().await;
            crate::suite::conformance::creates_and_lists_tasks_with_filters(store).await;
        }
        #[tokio::test]
        async fn claims_each_run_once_and_finishes_it() {
            let (store, _guard) = $make().await;
            crate::suite::conformance::claims_each_run_once_and_finishes_it(store).await;
        }
        #[tokio::test]
        async fn expired_lease_is_resumed_by_another_worker() {
            let (store, _guard) = $make().await;
            crate::suite::conformance::expired_lease_is_resumed_by_another_worker(store).await;
        }
        #[tokio::test]
        async fn events_have_gap_free_sequences() {
            let (store, _guard) = $make().await;
            crate::suite::conformance::events_have_gap_free_sequences(store).await;
        }
        #[tokio::test]
        async fn cancel_and_retry() {
            let (store, _guard) = $make().await;
            crate::suite::conformance::cancel_and_retry(store).await;
        }
        #[tokio::test]
        async fn generated_change_round_trips() {
            let (store, _guard) = $make().await;
            crate::suite::conformance::generated_change_round_trips(store).await;
        }
        #[tokio::test]
        async fn templates_are_versioned_and_record_their_use() {
            let (store, _guard) = $make().await;
            crate::suite::templates::templates_are_versioned_and_record_their_use(store).await;
        }
        #[tokio::test]
        async fn finished_runs_notify_their_creator() {
            let (store, _guard) = $make().await;
            crate::suite::templates::finished_runs_notify_their_creator(store).await;
        }
    };
}

mod on_sqlite {
    conformance_cases!(super::sqlite);
}

pub async fn creates_and_lists_tasks_with_filters(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let other = store.ensure_project("other").await.unwrap();
    let (a, run) = store
        .create_task(&new_task(project.id, "/srv/a.git", "Bump serde"))
        .await
        .unwrap();
    assert_eq!(run.number, 1);
    assert_eq!(run.status, RunStatus::Queued);
    store
        .create_task(&new_task(
            project.id,
            "/srv/b.git",
            "Rename Foo to Bar\n100% of it",
        ))
        .await
        .unwrap();
    store
        .create_task(&new_task(other.id, "/srv/a.git", "Bump serde elsewhere"))
        .await
        .unwrap();

    let all = store
        .list_tasks(project.id, &TaskFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 2, "the other project's task must not show");
    assert!(all[0].task.id > all[1].task.id, "newest first");

    let by_repo = TaskFilter {
        repo: Some("file:///srv/a.git".into()),
        ..Default::default()
    };
    let found = store.list_tasks(project.id, &by_repo).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].task.id, a.id);

    let by_text = TaskFilter {
        text: Some("100%".into()),
        ..Default::default()
    };
    assert_eq!(
        store.list_tasks(project.id, &by_text).await.unwrap().len(),
        1
    );
    let by_text = TaskFilter {
        text: Some("SERDE".into()),
        ..Default::default()
    };
    assert_eq!(
        store.list_tasks(project.id, &by_text).await.unwrap().len(),
        1
    );

    let paged = TaskFilter {
        limit: Some(1),
        ..Default::default()
    };
    let first = store.list_tasks(project.id, &paged).await.unwrap();
    let next = TaskFilter {
        limit: Some(1),
        before: Some(first[0].task.id),
        ..Default::default()
    };
    let second = store.list_tasks(project.id, &next).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_ne!(first[0].task.id, second[0].task.id);

    let queued = TaskFilter {
        status: Some(RunStatus::Queued),
        ..Default::default()
    };
    assert_eq!(
        store.list_tasks(project.id, &queued).await.unwrap().len(),
        2
    );
    assert!(
        store.task(other.id, a.id).await.unwrap().is_none(),
        "no query crosses projects"
    );
}

pub async fn claims_each_run_once_and_finishes_it(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    for i in 0..5 {
        store
            .create_task(&new_task(project.id, "/srv/a.git", &format!("task {i}")))
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(30);
    let mut claimed = std::collections::HashSet::new();
    let mut handles = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(claim) = store.claim_run(&format!("w{w}"), lease).await.unwrap() {
                mine.push(claim.run.id);
            }
            mine
        }));
    }
    for h in handles {
        for id in h.await.unwrap() {
            assert!(claimed.insert(id), "run {id} claimed twice");
        }
    }
    assert_eq!(claimed.len(), 5);

    let id = *claimed.iter().next().unwrap();
    let run = store.run(id).await.unwrap().unwrap();
    let owner = run.lease_owner.clone().unwrap();
    assert!(matches!(
        store.heartbeat(id, "intruder", lease).await,
        Err(StoreError::LeaseLost { .. })
    ));
    store.heartbeat(id, &owner, lease).await.unwrap();
    store
        .update_run(
            id,
            &owner,
            &RunUpdate {
                phase: Some(nightshift_core::Phase::Agent),
                progress: Some(20),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let ended = store
        .finish_run(
            id,
            &owner,
            EndReason::ChecksFailed,
            Some("test failed"),
            Some(nightshift_core::Phase::Validating),
        )
        .await
        .unwrap();
    assert_eq!(ended.status, RunStatus::Failed);
    assert_eq!(ended.end_reason, Some(EndReason::ChecksFailed));
    assert_eq!(ended.failed_phase, Some(nightshift_core::Phase::Validating));
    assert!(ended.ended_at.is_some());
    let tasks = store
        .list_tasks(
            project.id,
            &TaskFilter {
                status: Some(RunStatus::Failed),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1, "the task shows its latest run's status");
    assert!(
        store
            .finish_run(id, &owner, EndReason::Succeeded, None, None)
            .await
            .is_err(),
        "ended runs stay ended"
    );
}

pub async fn expired_lease_is_resumed_by_another_worker(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    store
        .create_task(&new_task(project.id, "/srv/a.git", "resume me"))
        .await
        .unwrap();
    let first = store
        .claim_run("dead", Duration::from_millis(50))
        .await
        .unwrap()
        .unwrap();
    assert!(!first.resumed);
    assert!(
        store
            .claim_run("alive", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none()
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    let second = store
        .claim_run("alive", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.run.id, first.run.id);
    assert!(second.resumed);
    assert!(matches!(
        store
            .heartbeat(first.run.id, "dead", Duration::from_secs(1))
            .await,
        Err(StoreError::LeaseLost { .. })
    ));
}

pub async fn events_have_gap_free_sequences(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (_, run) = store
        .create_task(&new_task(project.id, "/srv/a.git", "log"))
        .await
        .unwrap();
    let mut wake = store.subscribe();
    let ev = |i: usize| NewEvent {
        kind: EventKind::Log,
        phase: None,
        message: format!("line {i}"),
        data: serde_json::json!({"i": i}),
    };
    let mut handles = Vec::new();
    for chunk in 0..4 {
        let store = store.clone();
        let batch: Vec<_> = (0..25).map(|i| ev(chunk * 25 + i)).collect();
        handles.push(tokio::spawn(async move {
            store.append_events(run.id, &batch).await.unwrap()
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(wake.recv().await.unwrap(), run.id);
    let events = store.events(run.id, 0, 1000).await.unwrap();
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    let tail = store.events(run.id, 98, 10).await.unwrap();
    assert_eq!(tail.len(), 2);
    assert!(events[0].data["i"].as_u64().is_some());
}

pub async fn cancel_and_retry(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (task, _) = store
        .create_task(&new_task(project.id, "/srv/a.git", "cancel me"))
        .await
        .unwrap();
    assert!(matches!(
        store.retry_task(project.id, task.id).await,
        Err(StoreError::Conflict(_))
    ));
    match store.cancel_task(project.id, task.id).await.unwrap() {
        CancelOutcome::Cancelled(run) => assert_eq!(run.end_reason, Some(EndReason::Cancelled)),
        other => panic!("queued run should cancel at once: {other:?}"),
    }
    let run2 = store.retry_task(project.id, task.id).await.unwrap();
    assert_eq!(run2.number, 2);
    let claim = store
        .claim_run("w", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.run.id, run2.id);
    match store.cancel_task(project.id, task.id).await.unwrap() {
        CancelOutcome::Requested(run) => assert!(run.cancel_requested),
        other => panic!("running run is cancelled through its worker: {other:?}"),
    }
    assert!(
        store
            .heartbeat(run2.id, "w", Duration::from_secs(30))
            .await
            .unwrap()
            .cancel_requested
    );
    let runs = store.task_runs(project.id, task.id).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.number).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert!(matches!(
        store.retry_task(project.id, 9999).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn generated_change_round_trips(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (_, run) = store
        .create_task(&new_task(project.id, "/srv/a.git", "change"))
        .await
        .unwrap();
    let mut change = GeneratedChange {
        run_id: run.id,
        diff: "diff --git a/x b/x".into(),
        rounds: 1,
        ..Default::default()
    };
    store.save_change(&change).await.unwrap();
    change.pr_url = Some("https://example/pr/1".into());
    store.save_change(&change).await.unwrap();
    assert_eq!(store.change(run.id).await.unwrap(), Some(change));
}
