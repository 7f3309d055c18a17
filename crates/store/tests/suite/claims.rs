//! Claiming runs under a lease on both back ends: each run once, taken over when a lease
//! lapses, handed over at once, and fairly across projects.

use std::time::Duration;

use nightshift_core::{DEFAULT_PROJECT, EndReason, RunStatus, TaskFilter};
use nightshift_store::{RunUpdate, Store, StoreError, WorkspaceSnapshot};

use super::conformance::{independent_task, new_task};

pub async fn claims_each_run_once_and_finishes_it(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    for i in 0..5 {
        // Different users and repositories: one user's runs on one repository take turns.
        let mut task = new_task(project.id, &format!("/srv/a{i}.git"), &format!("task {i}"));
        task.created_by = format!("user{i}");
        store.create_task(&task).await.unwrap();
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
        // Long enough that the check below runs before it ends, even on a loaded machine.
        .claim_run("dead", Duration::from_millis(1500))
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
    tokio::time::sleep(Duration::from_millis(1600)).await;
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

pub async fn a_released_run_is_claimed_at_once_as_a_handover(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    store
        .create_task(&new_task(project.id, "/srv/a.git", "hand me over"))
        .await
        .unwrap();
    let hour = Duration::from_secs(3600);
    let first = store.claim_run("stopping", hour).await.unwrap().unwrap();
    assert!(!first.resumed && !first.handed_over);
    store.release_run(first.run.id, "stopping").await.unwrap();
    let released = store.run(first.run.id).await.unwrap().unwrap();
    assert_eq!(released.status, RunStatus::Queued);
    assert_eq!(released.lease_owner, None);
    // The first lease had an hour left: only the release lets another worker in now.
    let second = store
        .claim_run("next", Duration::from_millis(100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(second.run.id, first.run.id);
    assert!(second.resumed && second.handed_over, "{second:?}");
    assert!(matches!(
        store.release_run(first.run.id, "stopping").await,
        Err(StoreError::LeaseLost { .. })
    ));
    // The next takeover is after an expired lease, not a handover.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = store.claim_run("third", hour).await.unwrap().unwrap();
    assert_eq!(third.run.id, first.run.id);
    assert!(third.resumed && !third.handed_over, "{third:?}");
}

pub async fn snapshots_belong_to_the_lease_holder_until_the_run_ends(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    store
        .create_task(&new_task(project.id, "/srv/a.git", "snapshot me"))
        .await
        .unwrap();
    let claim = store
        .claim_run("holder", Duration::from_secs(3600))
        .await
        .unwrap()
        .unwrap();
    let id = claim.run.id;
    assert_eq!(store.snapshot(id).await.unwrap(), None);
    // Every byte value: a binary patch of a file that is not UTF-8 comes back exactly.
    let mut snapshot = WorkspaceSnapshot {
        round: 1,
        validated: false,
        base_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        patch: (0..=255u8).cycle().take(70_000).collect(),
    };
    store.save_snapshot(id, "holder", &snapshot).await.unwrap();
    assert_eq!(store.snapshot(id).await.unwrap().as_ref(), Some(&snapshot));
    assert!(matches!(
        store.save_snapshot(id, "stranger", &snapshot).await,
        Err(StoreError::LeaseLost { .. })
    ));
    snapshot.round = 2;
    snapshot.validated = true;
    snapshot.patch = b"diff --git a/x b/x\n".to_vec();
    store.save_snapshot(id, "holder", &snapshot).await.unwrap();
    assert_eq!(store.snapshot(id).await.unwrap().as_ref(), Some(&snapshot));
    store
        .finish_run(id, "holder", EndReason::Succeeded, None, None)
        .await
        .unwrap();
    assert_eq!(store.snapshot(id).await.unwrap(), None, "gone with the run");
    assert!(matches!(
        store.save_snapshot(id, "holder", &snapshot).await,
        Err(StoreError::LeaseLost { .. })
    ));
}

/// Updates without a cost (progress, a budget cleared) and with one, in turn, on every pooled
/// connection: a prepared statement must not keep the type of a NULL it was first given.
pub async fn costs_stay_exact_between_updates_without_one(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    store
        .create_task(&new_task(project.id, "/srv/a.git", "spend"))
        .await
        .unwrap();
    let claim = store
        .claim_run("w", Duration::from_secs(3600))
        .await
        .unwrap()
        .unwrap();
    for i in 1..=40u64 {
        let progress = RunUpdate {
            progress: Some(1),
            ..Default::default()
        };
        store
            .update_run(claim.run.id, "w", &progress)
            .await
            .unwrap();
        let usage = nightshift_core::Usage {
            input_tokens: i,
            output_tokens: 2 * i,
            cost_usd: i as f64 * 0.25,
            turns: i,
        };
        let spent = RunUpdate {
            usage: Some(usage),
            ..Default::default()
        };
        store.update_run(claim.run.id, "w", &spent).await.unwrap();
        let run = store.run(claim.run.id).await.unwrap().unwrap();
        assert_eq!(run.usage, usage);

        let mut settings = store.project_settings(project.id).await.unwrap();
        settings.monthly_budget_usd = None;
        store
            .set_project_settings(project.id, &settings)
            .await
            .unwrap();
        settings.monthly_budget_usd = Some(i as f64 + 0.5);
        store
            .set_project_settings(project.id, &settings)
            .await
            .unwrap();
        let read = store.project_settings(project.id).await.unwrap();
        assert_eq!(read.monthly_budget_usd, Some(i as f64 + 0.5));
    }
    let mut settings = store.project_settings(project.id).await.unwrap();
    settings.monthly_budget_usd = None;
    store
        .set_project_settings(project.id, &settings)
        .await
        .unwrap();
    assert_eq!(
        store
            .project_settings(project.id)
            .await
            .unwrap()
            .monthly_budget_usd,
        None
    );
}

pub async fn fair_claims_across_projects(store: Store) {
    let a = store.ensure_project("a").await.unwrap();
    let b = store.ensure_project("b").await.unwrap();
    for i in 0..50 {
        store
            .create_task(&independent_task(a.id, i, &format!("backlog {i}")))
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(30);
    for _ in 0..3 {
        let claim = store.claim_run("w", lease).await.unwrap().unwrap();
        assert_eq!(claim.run.project_id, a.id);
    }
    let (_, b_run) = store
        .create_task(&independent_task(b.id, 1000, "late but not starved"))
        .await
        .unwrap();
    let next: Vec<i64> = [
        store.claim_run("w", lease).await.unwrap().unwrap(),
        store.claim_run("w", lease).await.unwrap().unwrap(),
    ]
    .iter()
    .map(|c| c.run.id)
    .collect();
    assert!(
        next.contains(&b_run.id),
        "project b's run must be claimed within two claims, got {next:?}"
    );
    // Within a project the queue stays first in, first out.
    let mut rest = Vec::new();
    while let Some(claim) = store.claim_run("w", lease).await.unwrap() {
        rest.push(claim.run.id);
    }
    assert_eq!(rest.len(), 46);
    assert!(
        rest.windows(2).all(|w| w[0] < w[1]),
        "oldest first within a project"
    );
}

pub async fn fair_claims_when_runs_finish_as_fast_as_claimed(store: Store) {
    let a = store.ensure_project("a").await.unwrap();
    let b = store.ensure_project("b").await.unwrap();
    for i in 0..20 {
        store
            .create_task(&independent_task(a.id, i, &format!("backlog {i}")))
            .await
            .unwrap();
    }
    let lease = Duration::from_secs(30);
    let first = store.claim_run("w", lease).await.unwrap().unwrap();
    store
        .finish_run(first.run.id, "w", EndReason::Succeeded, None, None)
        .await
        .unwrap();
    let (_, b_run) = store
        .create_task(&independent_task(b.id, 1000, "late but not starved"))
        .await
        .unwrap();
    // One worker, nothing running: the project served least recently goes next.
    let next = store.claim_run("w", lease).await.unwrap().unwrap();
    assert_eq!(next.run.id, b_run.id);
}

pub async fn many_concurrent_claimers_take_each_run_once(store: Store) {
    let projects = [
        store.ensure_project("p1").await.unwrap(),
        store.ensure_project("p2").await.unwrap(),
        store.ensure_project("p3").await.unwrap(),
    ];
    let mut created = std::collections::HashSet::new();
    for i in 0..200 {
        let project = &projects[i % projects.len()];
        let (_, run) = store
            .create_task(&independent_task(project.id, i, &format!("task {i}")))
            .await
            .unwrap();
        created.insert(run.id);
    }
    let lease = Duration::from_secs(60);
    let mut handles = Vec::new();
    for w in 0..16 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let worker = format!("w{w}");
            let mut mine = Vec::new();
            while let Some(claim) = store.claim_run(&worker, lease).await.unwrap() {
                assert_eq!(claim.run.lease_owner.as_deref(), Some(worker.as_str()));
                assert!(!claim.resumed);
                mine.push(claim.run.id);
            }
            mine
        }));
    }
    let mut claimed = std::collections::HashSet::new();
    for h in handles {
        for id in h.await.unwrap() {
            assert!(claimed.insert(id), "run {id} claimed twice");
        }
    }
    assert_eq!(claimed, created, "every run claimed exactly once");
    assert!(store.claim_run("late", lease).await.unwrap().is_none());
}
