//! The intake's step in the store: a task with its first run, the template it came from and its
//! audit event in one transaction, refused while the same task is active on the repository.

use nightshift_core::{AuditFilter, DEFAULT_PROJECT, TaskFilter};
use nightshift_store::{CancelOutcome, Store, StoreError, TaskAudit};

use super::conformance::new_task;

fn audit(actor: &str) -> TaskAudit {
    TaskAudit {
        actor: actor.into(),
        action: "task.create".into(),
        source: "10.0.0.7".into(),
        detail: None,
    }
}

pub async fn the_intake_refuses_active_duplicates_and_audits_with_the_task(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let other = store.ensure_project("other").await.unwrap();
    let trail = |project_id| {
        let store = store.clone();
        async move {
            store
                .audit_events(Some(project_id), &AuditFilter::default())
                .await
                .unwrap()
        }
    };
    let (task, run) = store
        .intake_task(
            &new_task(project.id, "/srv/a.git", "Bump serde"),
            None,
            &audit("alice"),
        )
        .await
        .unwrap();
    assert_eq!(run.number, 1);
    let events = trail(project.id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        (
            events[0].actor.as_str(),
            events[0].action.as_str(),
            events[0].object.clone(),
            events[0].source.as_str()
        ),
        (
            "alice",
            "task.create",
            format!("task {}", task.id),
            "10.0.0.7"
        )
    );

    // The same instructions on the same repository while the first is queued: refused, naming
    // it, and neither a task nor an audit event is left behind.
    let refused = store
        .intake_task(
            &new_task(project.id, "/srv/a.git", "Bump serde"),
            None,
            &audit("bob"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::DuplicateTask { task: t } if t == task.id),
        "{refused:?}"
    );
    let listed = store
        .list_tasks(project.id, &TaskFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(trail(project.id).await.len(), 1);

    // Another repository or another project is no duplicate; nor is the same task once ended.
    for (project_id, repo) in [(project.id, "/srv/b.git"), (other.id, "/srv/a.git")] {
        store
            .intake_task(
                &new_task(project_id, repo, "Bump serde"),
                None,
                &audit("alice"),
            )
            .await
            .unwrap();
    }
    assert!(matches!(
        store.cancel_task(project.id, task.id).await.unwrap(),
        CancelOutcome::Cancelled(_)
    ));
    store
        .intake_task(
            &new_task(project.id, "/srv/a.git", "Bump serde"),
            None,
            &audit("alice"),
        )
        .await
        .unwrap();
    assert_eq!(trail(project.id).await.len(), 3);
    assert_eq!(trail(other.id).await.len(), 1);
}

/// Intakes of one task racing each other store it once: the check and the insert are one step.
pub async fn racing_intakes_of_one_task_store_it_once(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let mut racers = tokio::task::JoinSet::new();
    for n in 0..8 {
        let store = store.clone();
        racers.spawn(async move {
            store
                .intake_task(
                    &new_task(project.id, "/srv/a.git", "Race for it"),
                    None,
                    &audit(&format!("racer{n}")),
                )
                .await
        });
    }
    let (mut stored, mut refused) = (0, 0);
    while let Some(outcome) = racers.join_next().await {
        match outcome.unwrap() {
            Ok(_) => stored += 1,
            Err(StoreError::DuplicateTask { .. }) => refused += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((stored, refused), (1, 7));
    let events = store
        .audit_events(Some(project.id), &AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
}
