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
    // Most polls find nothing the project asks for: the task's runs are not read then.
    let asked = settings.rebase.wants(pr.mergeable, pr.behind_base)
        || (settings.auto_fix_ci_attempts > 0 && pr.ci == CiState::Failing);
    if !asked {
        return;
    }
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
        // Reviews are asked for by people, or by their `/nightshift` comments (`commands`).
        FollowUpKind::AddressReview => return,
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

#[cfg(test)]
mod tests {
    use nightshift_core::{Checkpoint, FollowUp, RebasePolicy, RunStatus, Usage};

    use super::*;

    fn pr(ci: CiState, mergeable: Mergeability, behind: bool, head: &str) -> FollowedPr {
        FollowedPr {
            id: 1,
            project_id: 1,
            task_id: 1,
            run_id: 1,
            repo: "https://forge.example/acme/widget.git".into(),
            number: 7,
            url: "https://forge.example/acme/widget/pull/7".into(),
            branch: "nightshift/1-say-goodbye".into(),
            state: PrState::Open,
            ci,
            mergeable,
            behind_base: Some(behind),
            head_sha: Some(head.into()),
            validators: None,
            opened_at: 0,
            changed_at: 0,
            ended_at: None,
            follow_until: i64::MAX,
            following: true,
            next_poll_at: 0,
            polls: 1,
            unchanged_polls: 0,
            last_polled_at: None,
            last_error: None,
            failures: 0,
            nudged_at: None,
            review_until: None,
            last_command: None,
            command_note: None,
        }
    }

    fn run(status: RunStatus, follow_up: Option<(FollowUpKind, &str, &str)>) -> Run {
        Run {
            id: 1,
            task_id: 1,
            project_id: 1,
            number: 1,
            status,
            phase: None,
            progress: 0,
            end_reason: None,
            failed_phase: None,
            error: None,
            waiting_reason: None,
            checkpoint: Checkpoint::default(),
            usage: Usage::default(),
            cancel_requested: false,
            lease_owner: None,
            lease_expires_at: None,
            created_at: 0,
            started_at: None,
            ended_at: None,
            event_bytes: 0,
            follow_up: follow_up.map(|(kind, head, by)| FollowUp {
                kind,
                pr_number: 7,
                pr_url: String::new(),
                branch: String::new(),
                head_sha: Some(head.into()),
                requested_by: by.into(),
                review: None,
            }),
        }
    }

    fn settings(rebase: RebasePolicy, attempts: u32) -> ProjectSettings {
        ProjectSettings {
            rebase,
            auto_fix_ci_attempts: attempts,
            ..ProjectSettings::default()
        }
    }

    #[test]
    fn one_follow_up_per_head_within_the_bound_and_never_beside_an_active_run() {
        use CiState::{Failing, Passing};
        use Mergeability::{Clean, Conflicting};
        let first = run(RunStatus::Succeeded, None);
        let on = settings(RebasePolicy::Conflicts, 2);
        let red = pr(Failing, Clean, false, "h1");
        assert_eq!(
            wanted(&red, &on, std::slice::from_ref(&first)),
            Some(FollowUpKind::FixCi)
        );
        // Off by default.
        let defaults = ProjectSettings::default();
        assert_eq!(wanted(&red, &defaults, std::slice::from_ref(&first)), None);
        // Not while a run of the task is active.
        let active = run(RunStatus::Running, None);
        assert_eq!(wanted(&red, &on, &[first.clone(), active]), None);
        // Once per red head, whoever asked.
        let fixed_h1 = run(
            RunStatus::Failed,
            Some((FollowUpKind::FixCi, "h1", "alice")),
        );
        assert_eq!(wanted(&red, &on, &[first.clone(), fixed_h1.clone()]), None);
        // A new red head gets one, up to the bound of automatic attempts.
        let red_h3 = pr(Failing, Clean, false, "h3");
        let auto = |head| {
            run(
                RunStatus::Succeeded,
                Some((FollowUpKind::FixCi, head, AUTOMATIC)),
            )
        };
        let one = [first.clone(), auto("h1")];
        assert_eq!(wanted(&red_h3, &on, &one), Some(FollowUpKind::FixCi));
        let two = [first.clone(), auto("h1"), auto("h2")];
        assert_eq!(wanted(&red_h3, &on, &two), None);

        // A conflict is rebased first, once per head; being behind only under `behind`.
        let both = pr(Failing, Conflicting, true, "h1");
        assert_eq!(
            wanted(&both, &on, std::slice::from_ref(&first)),
            Some(FollowUpKind::Rebase)
        );
        let rebased = run(
            RunStatus::Failed,
            Some((FollowUpKind::Rebase, "h1", AUTOMATIC)),
        );
        assert_eq!(
            wanted(&both, &on, &[first.clone(), rebased]),
            Some(FollowUpKind::FixCi)
        );
        let behind = pr(Passing, Clean, true, "h1");
        assert_eq!(wanted(&behind, &on, std::slice::from_ref(&first)), None);
        let eager = settings(RebasePolicy::Behind, 0);
        assert_eq!(
            wanted(&behind, &eager, std::slice::from_ref(&first)),
            Some(FollowUpKind::Rebase)
        );
        let mut closed = behind.clone();
        closed.state = PrState::Closed;
        assert_eq!(wanted(&closed, &eager, &[first]), None);
    }
}
