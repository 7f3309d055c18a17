//! Rebase runs and the project's settings for what the follower starts by itself, on every
//! back end.

use std::time::Duration;

use nightshift_core::{
    AUTOMATIC, CiState, DEFAULT_PROJECT, FollowUpKind, NewFollow, PrState, ProjectSettings,
    RebasePolicy, now_millis,
};
use nightshift_store::{Store, StoreError};

use super::followed::{DAY_MS, published, seen};

pub async fn a_rebase_run_needs_an_open_pull_request(store: Store) {
    let refused = |e: StoreError| match e {
        StoreError::NothingToFix(message) | StoreError::Conflict(message) => message,
        other => panic!("not refused with a reason: {other}"),
    };
    let pr = published(&store, 1, 8).await;
    let message = refused(
        store
            .start_rebase(pr.project_id, pr.task_id, AUTOMATIC)
            .await
            .unwrap_err(),
    );
    assert!(message.contains("still has an active run"), "{message}");
    let lease = Duration::from_secs(60);
    let claim = store.claim_run("w", lease).await.unwrap().unwrap();
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
    store
        .claim_pull_request_poll("f", lease)
        .await
        .unwrap()
        .unwrap();
    let open = seen(PrState::Open, CiState::Passing, now_millis() + DAY_MS);
    store
        .record_pull_request_poll(pr.id, "f", &open)
        .await
        .unwrap();
    let run = store
        .start_rebase(pr.project_id, pr.task_id, AUTOMATIC)
        .await
        .unwrap();
    assert_eq!(run.number, 2);
    let follow_up = run.follow_up.clone().unwrap();
    assert_eq!(follow_up.kind, FollowUpKind::Rebase);
    assert_eq!(
        (
            follow_up.pr_number,
            follow_up.branch.as_str(),
            follow_up.head_sha.as_deref()
        ),
        (8, pr.branch.as_str(), Some("abc123"))
    );
    assert_eq!(follow_up.requested_by, AUTOMATIC);

    // Closed: nothing left to rebase.
    store.cancel_task(pr.project_id, pr.task_id).await.unwrap();
    // Registered again, so it is due for a poll at once.
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
    let closed = seen(PrState::Closed, CiState::Passing, now_millis());
    store
        .record_pull_request_poll(pr.id, "f", &closed)
        .await
        .unwrap();
    let message = refused(
        store
            .start_rebase(pr.project_id, pr.task_id, "alice")
            .await
            .unwrap_err(),
    );
    assert!(message.contains("#8 is closed"), "{message}");
}

pub async fn the_follow_up_policy_is_kept_with_the_project(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let defaults = store.project_settings(project.id).await.unwrap();
    assert_eq!(defaults, ProjectSettings::default());
    assert_eq!(defaults.rebase, RebasePolicy::Conflicts);
    assert_eq!(defaults.auto_fix_ci_attempts, 0);
    let changed = ProjectSettings {
        rebase: RebasePolicy::Behind,
        auto_fix_ci_attempts: 3,
        ..defaults
    };
    store
        .set_project_settings(project.id, &changed)
        .await
        .unwrap();
    assert_eq!(store.project_settings(project.id).await.unwrap(), changed);
}
