use std::time::Duration;

use nightshift_core::{
    AgentSpec, BranchName, Budget, DEFAULT_PROJECT, EndReason, GeneratedChange, Instructions,
    NewTask, RepoUrl, RunStatus, TaskFilter,
};
use nightshift_store::{CancelOutcome, Store, StoreError};
use nightshift_test_support::postgres::PgCluster;

pub async fn sqlite() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("nightshift.db"))
        .await
        .unwrap();
    (store, dir)
}

/// A fresh database on the test binary's one PostgreSQL cluster.
pub async fn postgres() -> (Store, ()) {
    let url = PgCluster::shared().fresh_database();
    (Store::connect(&url).await.unwrap(), ())
}

/// A task no limit holds back: its own repository and its own creator.
pub fn independent_task(project_id: i64, i: usize, instructions: &str) -> NewTask {
    let mut task = new_task(project_id, &format!("/srv/r{i}.git"), instructions);
    task.created_by = format!("user{i}");
    task
}

pub fn new_task(project_id: i64, repo: &str, instructions: &str) -> NewTask {
    NewTask {
        project_id,
        title: Instructions::parse(instructions).unwrap().summary(),
        instructions: Instructions::parse(instructions).unwrap(),
        repo: RepoUrl::parse(repo).unwrap(),
        base_branch: BranchName::parse("main").unwrap(),
        agent: AgentSpec::command("true"),
        timeout_secs: 60,
        budget: Budget::default(),
        allow_test_changes: false,
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
            crate::suite::claims::claims_each_run_once_and_finishes_it(store).await;
        }
        #[tokio::test]
        async fn expired_lease_is_resumed_by_another_worker() {
            let (store, _guard) = $make().await;
            crate::suite::claims::expired_lease_is_resumed_by_another_worker(store).await;
        }
        #[tokio::test]
        async fn a_released_run_is_claimed_at_once_as_a_handover() {
            let (store, _guard) = $make().await;
            crate::suite::claims::a_released_run_is_claimed_at_once_as_a_handover(store).await;
        }
        #[tokio::test]
        async fn snapshots_belong_to_the_lease_holder_until_the_run_ends() {
            let (store, _guard) = $make().await;
            crate::suite::claims::snapshots_belong_to_the_lease_holder_until_the_run_ends(
                store,
            )
            .await;
        }
        #[tokio::test]
        async fn costs_stay_exact_between_updates_without_one() {
            let (store, _guard) = $make().await;
            crate::suite::claims::costs_stay_exact_between_updates_without_one(store).await;
        }
        #[tokio::test]
        async fn followers_see_a_run_end_after_its_last_event() {
            let (store, _guard) = $make().await;
            crate::suite::following::followers_see_a_run_end_after_its_last_event(store).await;
        }
        #[tokio::test]
        async fn events_have_gap_free_sequences() {
            let (store, _guard) = $make().await;
            crate::suite::following::events_have_gap_free_sequences(store).await;
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
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn follower_sees_appends_in_order() {
            let (store, _guard) = $make().await;
            crate::suite::following::follower_sees_appends_in_order(store).await;
        }
        #[tokio::test]
        async fn time_window_filters_keep_newest_first() {
            let (store, _guard) = $make().await;
            crate::suite::conformance::time_window_filters_keep_newest_first(store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn many_followers_of_one_run_see_every_event() {
            let (store, _guard) = $make().await;
            crate::suite::following::many_followers_of_one_run_see_every_event(store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn fair_claims_across_projects() {
            let (store, _guard) = $make().await;
            crate::suite::claims::fair_claims_across_projects(store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn fair_claims_when_runs_finish_as_fast_as_claimed() {
            let (store, _guard) = $make().await;
            crate::suite::claims::fair_claims_when_runs_finish_as_fast_as_claimed(store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn many_concurrent_claimers_take_each_run_once() {
            let (store, _guard) = $make().await;
            crate::suite::claims::many_concurrent_claimers_take_each_run_once(store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn ids_and_ordering() {
            let (store, _guard) = $make().await;
            crate::suite::conformance::ids_and_ordering(store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn text_search_escapes_and_folds_case() {
            let (store, _guard) = $make().await;
            crate::suite::values::text_search_escapes_and_folds_case(store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn values_round_trip_exactly() {
            let (store, _guard) = $make().await;
            crate::suite::values::values_round_trip_exactly(store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn ensure_project_is_idempotent() {
            let (store, _guard) = $make().await;
            crate::suite::conformance::ensure_project_is_idempotent(store).await;
        }
        #[tokio::test]
        async fn sessions_end_with_the_token_that_opened_them() {
            let (store, _guard) = $make().await;
            crate::suite::sessions::sessions_end_with_the_token_that_opened_them(store).await;
        }
        #[tokio::test]
        async fn events_store_their_message_once() {
            let (store, _guard) = $make().await;
            crate::suite::events::events_store_their_message_once(store).await;
        }
        #[tokio::test]
        async fn the_intake_refuses_active_duplicates_and_audits_with_the_task() {
            let (store, _guard) = $make().await;
            crate::suite::intake::the_intake_refuses_active_duplicates_and_audits_with_the_task(
                store,
            )
            .await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn racing_intakes_of_one_task_store_it_once() {
            let (store, _guard) = $make().await;
            crate::suite::intake::racing_intakes_of_one_task_store_it_once(store).await;
        }
        #[tokio::test]
        async fn followers_get_every_large_event() {
            let (store, _guard) = $make().await;
            crate::suite::events::followers_get_every_large_event(store).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn one_follower_polls_a_pull_request_at_a_time() {
            let (store, _guard) = $make().await;
            crate::suite::followed::one_follower_polls_a_pull_request_at_a_time(store).await;
        }
        #[tokio::test]
        async fn a_poll_records_the_change_notifies_and_ends_with_the_merge() {
            let (store, _guard) = $make().await;
            crate::suite::followed::a_poll_records_the_change_notifies_and_ends_with_the_merge(
                store,
            )
            .await;
        }
        #[tokio::test]
        async fn a_lapsed_poll_lease_is_taken_over_and_a_gone_pull_request_is_let_go() {
            let (store, _guard) = $make().await;
            crate::suite::followed::a_lapsed_poll_lease_is_taken_over_and_a_gone_pull_request_is_let_go(store).await;
        }
        #[tokio::test]
        async fn a_fix_ci_run_needs_an_open_pull_request_with_failing_ci() {
            let (store, _guard) = $make().await;
            crate::suite::followed::a_fix_ci_run_needs_an_open_pull_request_with_failing_ci(store)
                .await;
        }
        #[tokio::test]
        async fn a_rebase_run_needs_an_open_pull_request() {
            let (store, _guard) = $make().await;
            crate::suite::rebase::a_rebase_run_needs_an_open_pull_request(store).await;
        }
        #[tokio::test]
        async fn the_follow_up_policy_is_kept_with_the_project() {
            let (store, _guard) = $make().await;
            crate::suite::rebase::the_follow_up_policy_is_kept_with_the_project(store).await;
        }
        #[tokio::test]
        async fn a_command_comment_starts_at_most_one_run() {
            let (store, _guard) = $make().await;
            crate::suite::addressed::a_command_comment_starts_at_most_one_run(store).await;
        }
        #[tokio::test]
        async fn a_nudge_moves_the_next_poll_but_not_within_the_gap() {
            let (store, _guard) = $make().await;
            crate::suite::nudges::a_nudge_moves_the_next_poll_but_not_within_the_gap(store).await;
        }
        #[tokio::test]
        async fn outcome_counts_cover_runs_retries_and_pull_requests() {
            let (store, _guard) = $make().await;
            crate::suite::insights::outcome_counts_cover_runs_retries_and_pull_requests(store)
                .await;
        }
        #[tokio::test]
        async fn insights_count_one_templates_tasks_and_the_time_they_saved() {
            let (store, _guard) = $make().await;
            crate::suite::insights::insights_count_one_templates_tasks_and_the_time_they_saved(
                store,
            )
            .await;
        }
    };
}

mod on_sqlite {
    conformance_cases!(super::sqlite);
}

mod on_postgres {
    conformance_cases!(super::postgres);
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

pub async fn ids_and_ordering(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let mut task_ids = Vec::new();
    let mut run_ids = Vec::new();
    for i in 0..5 {
        let (task, run) = store
            .create_task(&independent_task(project.id, i, &format!("task {i}")))
            .await
            .unwrap();
        assert!(task.id > 0 && run.id > 0);
        task_ids.push(task.id);
        run_ids.push(run.id);
    }
    assert!(
        task_ids.windows(2).all(|w| w[0] < w[1]),
        "ids grow in creation order"
    );
    assert!(run_ids.windows(2).all(|w| w[0] < w[1]));
    let listed: Vec<i64> = store
        .list_tasks(project.id, &TaskFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|s| s.task.id)
        .collect();
    let mut newest_first = task_ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);

    // A retry is run 2 of the same task, and the list shows it as the latest.
    let task = task_ids[0];
    while let Some(claim) = store.claim_run("w", Duration::from_secs(30)).await.unwrap() {
        store
            .finish_run(
                claim.run.id,
                "w",
                EndReason::AgentFailed,
                Some("boom"),
                None,
            )
            .await
            .unwrap();
    }
    let second = store.retry_task(project.id, task).await.unwrap();
    let runs = store.task_runs(project.id, task).await.unwrap();
    assert_eq!(
        runs.iter().map(|r| r.number).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(
        store
            .run_by_number(project.id, task, 2)
            .await
            .unwrap()
            .map(|r| r.id),
        Some(second.id)
    );
    let summary = store
        .list_tasks(project.id, &TaskFilter::default())
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.task.id == task)
        .unwrap();
    assert_eq!(summary.latest.id, second.id);
    assert_eq!(summary.latest.status, RunStatus::Queued);
}

pub async fn ensure_project_is_idempotent(store: Store) {
    let first = store.ensure_project("team").await.unwrap();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.ensure_project("team").await.unwrap() })
        })
        .collect();
    for h in handles {
        assert_eq!(h.await.unwrap(), first, "ON CONFLICT keeps the first row");
    }
    assert!(store.project("nobody").await.unwrap().is_none());
}

pub async fn time_window_filters_keep_newest_first(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let (task, _) = store
            .create_task(&independent_task(project.id, i, &format!("task {i}")))
            .await
            .unwrap();
        tasks.push(task);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let ids = |found: Vec<nightshift_store::TaskSummary>| -> Vec<i64> {
        found.into_iter().map(|s| s.task.id).collect()
    };
    let window = TaskFilter {
        since: Some(tasks[1].created_at),
        until: Some(tasks[4].created_at),
        ..Default::default()
    };
    let expected: Vec<i64> = tasks[1..4].iter().rev().map(|t| t.id).collect();
    assert_eq!(
        ids(store.list_tasks(project.id, &window).await.unwrap()),
        expected
    );
    let since = TaskFilter {
        since: Some(tasks[3].created_at),
        limit: Some(2),
        ..Default::default()
    };
    assert_eq!(
        ids(store.list_tasks(project.id, &since).await.unwrap()),
        vec![tasks[5].id, tasks[4].id]
    );
    let until = TaskFilter {
        until: Some(tasks[0].created_at),
        ..Default::default()
    };
    assert!(
        store
            .list_tasks(project.id, &until)
            .await
            .unwrap()
            .is_empty()
    );
}
