//! The follow-up runs the follower starts by itself, when the project enables them: a rebase
//! run when a pull request's base moved on (`rebase` = conflicts | behind), and a fix-CI run
//! when its CI fails (`auto_fix_ci_attempts` per pull request). Each at most once per head
//! commit of the pull request, never while a run of the task is active (a later poll tries
//! again), and a fix-CI run no more than the project's bound.

use nightshift_core::{
    AUTOMATIC, CiState, FollowUpKind, FollowedPr, Mergeability, PrState, ProjectSettings, Run,
};
use nightshift_store::StoreError;

use crate::Engine;

/// What the follower would start for the pull request as it was just seen, if anything.
pub(crate) fn wanted(
    pr: &FollowedPr,
    settings: &ProjectSettings,
    runs: &[Run],
) -> Option<FollowUpKind> {
    if pr.state != PrState::Open || runs.iter().any(|r| !r.status.is_terminal()) {
        return None;
    }
    let head = pr.head_sha.as_deref()?;
    // Already asked for this head commit, by a person or by the follower.
    let started = |kind: FollowUpKind| {
        runs.iter().filter_map(|r| r.follow_up.as_ref()).any(|f| {
            f.kind == kind && f.pr_number == pr.number && f.head_sha.as_deref() == Some(head)
        })
    };
    let automatic_fixes = runs
        .iter()
        .filter_map(|r| r.follow_up.as_ref())
        .filter(|f| {
            f.kind == FollowUpKind::FixCi && f.pr_number == pr.number && f.requested_by == AUTOMATIC
        })
        .count();
    let rebase =
        settings.rebase.wants(pr.mergeable, pr.behind_base) && !started(FollowUpKind::Rebase);
    let fix = pr.ci == CiState::Failing
        && automatic_fixes < settings.auto_fix_ci_attempts as usize
        && !started(FollowUpKind::FixCi);
    // A conflicting branch first: a fix pushed on top of it could not be rebased anyway.
    match (rebase, fix) {
        (true, _) if pr.mergeable == Mergeability::Conflicting => Some(FollowUpKind::Rebase),
        (_, true) => Some(FollowUpKind::FixCi),
        (true, false) => Some(FollowUpKind::Rebase),
        (false, false) => None,
    }
}

/// Starts what [`wanted`] says for the pull request just polled. A refusal (a run of the task
/// started meanwhile) is left to a later poll.
pub(super) async fn start_follow_up(engine: &Engine, pr: &FollowedPr) {
    if pr.state != PrState::Open {
        return;
    }
    let store = &engine.store;
    let settings = match store.project_settings(pr.project_id).await {
        Ok(settings) => settings,
        Err(e) => {
            tracing::warn!(pr = pr.number, error = %e, "cannot read the project's settings");
            return;
        }
    };
    let runs = match store.task_runs(pr.project_id, pr.task_id).await {
        Ok(runs) => runs,
        Err(e) => {
            tracing::warn!(pr = pr.number, error = %e, "cannot read the task's runs");
            return;
        }
    };
    let Some(kind) = wanted(pr, &settings, &runs) else {
        return;
    };
    let started = match kind {
        FollowUpKind::Rebase => {
            store
                .start_rebase(pr.project_id, pr.task_id, AUTOMATIC)
                .await
        }
        FollowUpKind::FixCi => {
            store
                .start_fix_ci(pr.project_id, pr.task_id, AUTOMATIC)
                .await
        }
    };
    match started {
        Ok(run) => {
            tracing::info!(pr = pr.number, repo = %pr.repo, task = pr.task_id, run = run.number, follow_up = %kind, "started a follow-up run");
            engine.wake();
        }
        Err(StoreError::Conflict(_) | StoreError::NothingToFix(_)) => {
            tracing::debug!(pr = pr.number, "the follow-up waits for a later poll");
        }
        Err(e) => {
            tracing::warn!(pr = pr.number, error = %e, "cannot start a follow-up run");
        }
    }
}
