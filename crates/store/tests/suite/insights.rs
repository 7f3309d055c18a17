//! Outcome insights' counts: a project's runs, retries and pull requests over a period, one
//! template's tasks alone, the time templates say their merged pull requests saved, and the
//! period in stretches for a chart.

use std::collections::BTreeMap;
use std::time::Duration;

use nightshift_core::{CiState, DEFAULT_PROJECT, PrState, TemplateSpec, now_millis};
use nightshift_store::{Store, TaskAudit};

use super::conformance::independent_task;
use super::followed::{follow, published, seen};

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Ends the next queued run the way a worker would, having spent `cost_usd`.
async fn end_next(store: &Store, reason: nightshift_core::EndReason, cost_usd: f64) -> i64 {
    let claim = store
        .claim_run("w", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    let usage = nightshift_core::Usage {
        cost_usd,
        ..Default::default()
    };
    let update = nightshift_store::RunUpdate {
        usage: Some(usage),
        ..Default::default()
    };
    store.update_run(claim.run.id, "w", &update).await.unwrap();
    store
        .finish_run(claim.run.id, "w", reason, None, None)
        .await
        .unwrap();
    claim.task.id
}

pub async fn outcome_counts_cover_runs_retries_and_pull_requests(store: Store) {
    use nightshift_core::EndReason::{ChecksFailed, Succeeded};
    let started = now_millis();
    // Task A fails, is retried and succeeds, and its pull request is merged; task B's pull
    // request stays open; task C fails once.
    let a = published(&store, 1, 1).await;
    let b = published(&store, 2, 2).await;
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    store
        .create_task(&independent_task(project.id, 3, "task C"))
        .await
        .unwrap();
    assert_eq!(end_next(&store, ChecksFailed, 0.5).await, a.task_id);
    assert_eq!(end_next(&store, Succeeded, 1.0).await, b.task_id);
    end_next(&store, ChecksFailed, 0.25).await;
    store.retry_task(project.id, a.task_id).await.unwrap();
    assert_eq!(end_next(&store, Succeeded, 2.0).await, a.task_id);
    let lease = Duration::from_secs(60);
    while let Some(pr) = store.claim_pull_request_poll("f", lease).await.unwrap() {
        let state = if pr.id == a.id {
            PrState::Merged
        } else {
            PrState::Open
        };
        let outcome = seen(state, CiState::Passing, now_millis() + DAY_MS);
        store
            .record_pull_request_poll(pr.id, "f", &outcome)
            .await
            .unwrap();
    }

    let counts = store
        .outcome_counts(project.id, started, now_millis() + 1, None)
        .await
        .unwrap();
    assert_eq!(counts.tasks_created, 3);
    let mut ended = counts.ended_runs.clone();
    ended.sort_by_key(|(reason, _, _)| reason.as_str());
    assert_eq!(ended, vec![(ChecksFailed, 2, 0.75), (Succeeded, 2, 3.0)]);
    assert_eq!((counts.retries, counts.retries_succeeded), (1, 1));
    assert_eq!(counts.time_to_pr_ms.len(), 2);
    assert!(counts.time_to_pr_ms.iter().all(|t| *t >= 0 && *t < 60_000));
    assert_eq!((counts.opened_merged, counts.opened_closed), (1, 0));
    assert_eq!(counts.merged, 1);
    // Both of task A's runs count against its merged pull request.
    assert_eq!(counts.merged_tasks_cost_usd, 2.5);

    let before = store
        .outcome_counts(project.id, 0, started, None)
        .await
        .unwrap();
    assert_eq!(before, nightshift_core::OutcomeCounts::default());
}

/// A task made from `template`, with its first run queued.
async fn from_template(store: &Store, template: &nightshift_core::Template, i: usize) -> i64 {
    let params = template.spec.bind(&BTreeMap::new()).unwrap();
    let new = independent_task(template.project_id, i, &format!("task {i}"));
    let audit = TaskAudit {
        actor: "alice".into(),
        action: "template.instantiate".into(),
        source: "api".into(),
        detail: None,
    };
    let (task, _) = store
        .intake_task(&new, Some((template, &params)), &audit)
        .await
        .unwrap();
    task.id
}

/// Follows a pull request for the task's latest run, then records it `state`.
async fn pull_request(store: &Store, task_id: i64, number: u64, state: PrState) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let task = store.task(project.id, task_id).await.unwrap().unwrap();
    let runs = store.task_runs(project.id, task_id).await.unwrap();
    let run = runs.iter().max_by_key(|r| r.number).unwrap();
    let pr = follow(store, &task, run.id, number).await;
    let claimed = store
        .claim_pull_request_poll("f", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, pr.id);
    store
        .record_pull_request_poll(
            pr.id,
            "f",
            &seen(state, CiState::Passing, now_millis() + DAY_MS),
        )
        .await
        .unwrap();
}

pub async fn insights_count_one_templates_tasks_and_the_time_they_saved(store: Store) {
    use nightshift_core::EndReason::{ChecksFailed, Succeeded};
    let started = now_millis();
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let spec = |name: &str, minutes: Option<u32>| TemplateSpec {
        name: name.into(),
        description: String::new(),
        instructions: format!("Do {name}"),
        parameters: Vec::new(),
        agent: None,
        checks: Vec::new(),
        budget: Default::default(),
        timeout_secs: None,
        allow_test_changes: false,
        manual_effort_minutes: minutes,
    };
    let bump = store
        .create_template(project.id, &spec("bump", Some(90)), "alice")
        .await
        .unwrap();
    let docs = store
        .create_template(project.id, &spec("docs", None), "alice")
        .await
        .unwrap();
    // Two tasks of `bump` (one merged, one failed), one of `docs` (merged), one of none
    // (merged).
    let bump_merged = from_template(&store, &bump, 1).await;
    let bump_failed = from_template(&store, &bump, 2).await;
    let documented = from_template(&store, &docs, 3).await;
    let plain = store
        .create_task(&independent_task(project.id, 4, "task 4"))
        .await
        .unwrap()
        .0
        .id;
    assert_eq!(end_next(&store, Succeeded, 1.0).await, bump_merged);
    assert_eq!(end_next(&store, ChecksFailed, 0.5).await, bump_failed);
    assert_eq!(end_next(&store, Succeeded, 2.0).await, documented);
    assert_eq!(end_next(&store, Succeeded, 4.0).await, plain);
    pull_request(&store, bump_merged, 1, PrState::Merged).await;
    pull_request(&store, documented, 3, PrState::Merged).await;
    pull_request(&store, plain, 4, PrState::Merged).await;
    let until = now_millis() + 1;

    // Every task: three merged, one of them from a template that states its effort.
    let all = store
        .outcome_counts(project.id, started, until, None)
        .await
        .unwrap();
    assert_eq!((all.tasks_created, all.merged), (4, 3));
    assert_eq!((all.merged_with_effort, all.saved_minutes), (1, 90));
    // The whole period is one day: every run in the first bar, 3 succeeded and 1 failed.
    assert_eq!(all.runs_by_bucket, vec![(0, 3, 1)]);
    assert_eq!(all.merged_by_bucket, vec![(0, 3)]);

    // Only `bump`'s tasks.
    let one = store
        .outcome_counts(project.id, started, until, Some(bump.id))
        .await
        .unwrap();
    assert_eq!(one.tasks_created, 2);
    let mut ended = one.ended_runs.clone();
    ended.sort_by_key(|(reason, _, _)| reason.as_str());
    assert_eq!(ended, vec![(ChecksFailed, 1, 0.5), (Succeeded, 1, 1.0)]);
    assert_eq!((one.opened_merged, one.merged), (1, 1));
    assert_eq!(one.merged_tasks_cost_usd, 1.0);
    assert_eq!((one.merged_with_effort, one.saved_minutes), (1, 90));

    // A line per template, by name.
    let by_template = store
        .template_outcomes(project.id, started, until)
        .await
        .unwrap();
    let lines: Vec<(&str, u64, u64, u64, u64, u64)> = by_template
        .iter()
        .map(|t| {
            (
                t.template.as_str(),
                t.tasks_created,
                t.runs_succeeded,
                t.prs_merged,
                t.merged_in_period,
                t.saved_minutes,
            )
        })
        .collect();
    assert_eq!(
        lines,
        vec![("bump", 2, 1, 1, 1, 90), ("docs", 1, 1, 1, 1, 0)]
    );
    assert_eq!(by_template[0].success_rate(), Some(0.5));
    // Before any of it, nothing.
    assert!(
        store
            .template_outcomes(project.id, 0, started)
            .await
            .unwrap()
            .is_empty()
    );
}
