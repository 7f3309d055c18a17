//! Followed pull requests: one follower per poll, what a poll leaves behind, and takeovers.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nightshift_core::{
    CiState, DEFAULT_PROJECT, FollowedPr, GeneratedChange, Mergeability, NewFollow, PrState, Task,
    now_millis,
};
use nightshift_store::{PollOutcome, PrSeen, Store, StoreError};

use super::conformance::independent_task;

pub(super) const DAY_MS: i64 = 24 * 3600 * 1000;

/// A task with a run that published pull request `number`, followed from now on.
pub(crate) async fn published(store: &Store, i: usize, number: u64) -> FollowedPr {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (task, run) = store
        .create_task(&independent_task(project.id, i, &format!("task {i}")))
        .await
        .unwrap();
    follow(store, &task, run.id, number).await
}

/// Run `run_id` of `task` published pull request `number`, followed from now on.
pub(crate) async fn follow(store: &Store, task: &Task, run_id: i64, number: u64) -> FollowedPr {
    store
        .save_change(&GeneratedChange {
            run_id,
            ..Default::default()
        })
        .await
        .unwrap();
    store
        .follow_pull_request(&NewFollow {
            project_id: task.project_id,
            task_id: task.id,
            run_id,
            repo: task.repo.clone(),
            number,
            url: format!("https://forge.example/pulls/{number}"),
            branch: format!("nightshift/task-{}", task.id),
            follow_until: now_millis() + 14 * DAY_MS,
        })
        .await
        .unwrap()
}

pub(crate) fn seen(state: PrState, ci: CiState, next_poll_at: i64) -> PollOutcome {
    PollOutcome::Seen {
        seen: PrSeen {
            state,
            ci,
            mergeable: Mergeability::Clean,
            behind_base: Some(false),
            head_sha: Some("abc123".into()),
            validators: Some(r#"{"answers":{}}"#.into()),
            unchanged: false,
        },
        next_poll_at,
    }
}

pub async fn one_follower_polls_a_pull_request_at_a_time(store: Store) {
    let mut all = HashSet::new();
    for i in 0..20 {
        all.insert(published(&store, i, i as u64 + 1).await.id);
    }
    let in_flight = Arc::new(Mutex::new(HashSet::new()));
    let polled = Arc::new(Mutex::new(HashSet::new()));
    let lease = Duration::from_secs(60);
    let mut followers = Vec::new();
    for f in 0..8 {
        let (store, in_flight, polled) = (store.clone(), in_flight.clone(), polled.clone());
        followers.push(tokio::spawn(async move {
            let me = format!("follower-{f}");
            // Every poll makes the pull request due again at once: the followers keep racing
            // for the same rows until 200 polls are done between them.
            for _ in 0..25 {
                let Some(pr) = store.claim_pull_request_poll(&me, lease).await.unwrap() else {
                    tokio::task::yield_now().await;
                    continue;
                };
                assert!(
                    in_flight.lock().unwrap().insert(pr.id),
                    "pull request {} polled by two followers at once",
                    pr.id
                );
                polled.lock().unwrap().insert(pr.id);
                tokio::task::yield_now().await;
                in_flight.lock().unwrap().remove(&pr.id);
                let outcome = seen(PrState::Open, CiState::Pending, now_millis() - 1);
                store
                    .record_pull_request_poll(pr.id, &me, &outcome)
                    .await
                    .unwrap();
            }
        }));
    }
    for follower in followers {
        follower.await.unwrap();
    }
    assert_eq!(
        *polled.lock().unwrap(),
        all,
        "every pull request was polled"
    );
}

pub async fn a_poll_records_the_change_notifies_and_ends_with_the_merge(store: Store) {
    let pr = published(&store, 1, 7).await;
    assert_eq!(
        (pr.state, pr.ci, pr.following),
        (PrState::Open, CiState::Pending, true)
    );
    let lease = Duration::from_secs(60);
    let claimed = store
        .claim_pull_request_poll("a", lease)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, pr.id);
    assert!(
        store
            .claim_pull_request_poll("b", lease)
            .await
            .unwrap()
            .is_none()
    );

    // Only the lease holder records.
    let failing = seen(PrState::Open, CiState::Failing, now_millis() - 1);
    assert!(matches!(
        store.record_pull_request_poll(pr.id, "b", &failing).await,
        Err(StoreError::FollowLeaseLost { .. })
    ));
    let after = store
        .record_pull_request_poll(pr.id, "a", &failing)
        .await
        .unwrap();
    assert_eq!(
        (after.ci, after.polls, after.failures),
        (CiState::Failing, 1, 0)
    );
    assert!(after.validators.is_some());
    let change = store.change(pr.run_id).await.unwrap().unwrap();
    assert_eq!(change.ci_status.as_deref(), Some("open · ci failing"));
    let notes = store
        .notifications(pr.project_id, "user1", false, 10)
        .await
        .unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].kind, "ci_failed");
    assert!(notes[0].message.contains("#7"), "{}", notes[0].message);

    // A failed poll keeps following, counting the failure.
    store
        .claim_pull_request_poll("a", lease)
        .await
        .unwrap()
        .unwrap();
    let failed = PollOutcome::Failed {
        error: "HTTP 503".into(),
        gone: false,
        next_poll_at: now_millis() - 1,
    };
    let after = store
        .record_pull_request_poll(pr.id, "a", &failed)
        .await
        .unwrap();
    assert_eq!((after.failures, after.following), (1, true));
    assert_eq!(
        after.ci,
        CiState::Failing,
        "a failed poll changes nothing seen"
    );

    store
        .claim_pull_request_poll("a", lease)
        .await
        .unwrap()
        .unwrap();
    let merged = seen(PrState::Merged, CiState::Passing, now_millis() - 1);
    let after = store
        .record_pull_request_poll(pr.id, "a", &merged)
        .await
        .unwrap();
    assert!(!after.following);
    assert!(after.ended_at.is_some());
    assert!(
        store
            .claim_pull_request_poll("a", lease)
            .await
            .unwrap()
            .is_none()
    );
    let change = store.change(pr.run_id).await.unwrap().unwrap();
    assert_eq!(change.ci_status.as_deref(), Some("merged · ci passing"));
    let kinds: Vec<String> = store
        .notifications(pr.project_id, "user1", false, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.kind)
        .collect();
    assert_eq!(kinds, ["pr_merged", "ci_failed"]);

    // Pushed to again (a follow-up run): followed again from the start, opened when it was.
    let again = store
        .follow_pull_request(&NewFollow {
            project_id: pr.project_id,
            task_id: pr.task_id,
            run_id: pr.run_id,
            repo: pr.repo.clone(),
            number: pr.number,
            url: pr.url.clone(),
            branch: pr.branch.clone(),
            follow_until: now_millis() + DAY_MS,
        })
        .await
        .unwrap();
    assert_eq!(again.id, pr.id);
    assert_eq!(again.opened_at, pr.opened_at);
    assert_eq!(
        (again.state, again.ci, again.following),
        (PrState::Open, CiState::Pending, true)
    );
    assert_eq!(
        store
            .task_pull_requests(pr.project_id, pr.task_id)
            .await
            .unwrap(),
        vec![again]
    );
}

pub async fn a_lapsed_poll_lease_is_taken_over_and_a_gone_pull_request_is_let_go(store: Store) {
    let pr = published(&store, 1, 3).await;
    store
        .claim_pull_request_poll("dead", Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let taken = store
        .claim_pull_request_poll("alive", Duration::from_secs(60))
        .await
        .unwrap()
        .expect("a lapsed lease is taken over");
    assert_eq!(taken.id, pr.id);
    let late = seen(PrState::Open, CiState::Passing, now_millis());
    assert!(matches!(
        store.record_pull_request_poll(pr.id, "dead", &late).await,
        Err(StoreError::FollowLeaseLost { .. })
    ));
    let gone = PollOutcome::Failed {
        error: "pull request not found".into(),
        gone: true,
        next_poll_at: now_millis() - 1,
    };
    let after = store
        .record_pull_request_poll(pr.id, "alive", &gone)
        .await
        .unwrap();
    assert!(!after.following);
    assert_eq!(after.last_error.as_deref(), Some("pull request not found"));
    assert!(
        store
            .claim_pull_request_poll("alive", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn a_fix_ci_run_needs_an_open_pull_request_with_failing_ci(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (bare, run) = store
        .create_task(&independent_task(project.id, 9, "no pull request"))
        .await
        .unwrap();
    assert!(run.follow_up.is_none());
    // Nothing to fix, or (while a run is active) a conflict: either says why.
    let refused = |e: StoreError| match e {
        StoreError::NothingToFix(message) | StoreError::Conflict(message) => message,
        other => panic!("not refused with a reason: {other}"),
    };
    let message = refused(
        store
            .start_fix_ci(project.id, bare.id, "alice")
            .await
            .unwrap_err(),
    );
    assert!(message.contains("has no pull request"), "{message}");

    let pr = published(&store, 1, 5).await;
    // The run that published it is still queued: CI is pending anyway.
    let message = refused(
        store
            .start_fix_ci(pr.project_id, pr.task_id, "alice")
            .await
            .unwrap_err(),
    );
    assert!(message.contains("is pending, not failing"), "{message}");
    let lease = Duration::from_secs(60);
    store
        .claim_pull_request_poll("f", lease)
        .await
        .unwrap()
        .unwrap();
    let failing = seen(PrState::Open, CiState::Failing, now_millis() + DAY_MS);
    store
        .record_pull_request_poll(pr.id, "f", &failing)
        .await
        .unwrap();
    let message = refused(
        store
            .start_fix_ci(pr.project_id, pr.task_id, "alice")
            .await
            .unwrap_err(),
    );
    assert!(message.contains("still has an active run"), "{message}");

    let claim = loop {
        let claim = store.claim_run("w", lease).await.unwrap().unwrap();
        if claim.task.id == pr.task_id {
            break claim;
        }
    };
    store
        .finish_run(
            claim.run.id,
            "w",
            nightshift_core::EndReason::Succeeded,
            None,
            None,
        )
        .await
        .unwrap();
    let run = store
        .start_fix_ci(pr.project_id, pr.task_id, "alice")
        .await
        .unwrap();
    assert_eq!(run.number, 2);
    let follow_up = run.follow_up.clone().expect("a follow-up run");
    assert_eq!(follow_up.kind, nightshift_core::FollowUpKind::FixCi);
    assert_eq!(
        (follow_up.pr_number, follow_up.branch.as_str()),
        (5, pr.branch.as_str())
    );
    assert_eq!(follow_up.head_sha.as_deref(), Some("abc123"));
    assert_eq!(follow_up.requested_by, "alice");
    assert_eq!(
        store.run(run.id).await.unwrap().unwrap().follow_up,
        Some(follow_up)
    );
    let message = refused(
        store
            .start_fix_ci(pr.project_id, pr.task_id, "alice")
            .await
            .unwrap_err(),
    );
    assert!(message.contains("still has an active run"), "{message}");

    // Once merged there is nothing left to fix.
    store.cancel_task(pr.project_id, pr.task_id).await.unwrap();
    store
        .follow_pull_request(&NewFollow {
            project_id: pr.project_id,
            task_id: pr.task_id,
            run_id: pr.run_id,
            repo: pr.repo.clone(),
            number: pr.number,
            url: pr.url.clone(),
            branch: pr.branch.clone(),
            follow_until: now_millis() + DAY_MS,
        })
        .await
        .unwrap();
    store
        .claim_pull_request_poll("f", lease)
        .await
        .unwrap()
        .unwrap();
    let merged = seen(PrState::Merged, CiState::Failing, now_millis());
    store
        .record_pull_request_poll(pr.id, "f", &merged)
        .await
        .unwrap();
    let message = refused(
        store
            .start_fix_ci(pr.project_id, pr.task_id, "alice")
            .await
            .unwrap_err(),
    );
    assert!(message.contains("#5 is merged"), "{message}");
}
