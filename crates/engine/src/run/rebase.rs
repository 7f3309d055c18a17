//! Rebase runs: a follow-up run that brings its pull request's branch onto the base branch as
//! it is now. The checkout is the base's tip, set up and baselined like a first run's; the
//! pull request's commits are replayed onto it. A clean replay needs no agent: the
//! repository's checks run again and the branch is pushed with a lease. A conflicting one
//! leaves the change with its conflict markers in the checkout, and the agent resolves them
//! under the usual checks, guard and judge.

use std::fmt::Write;

use nightshift_checks::{CheckPlan, Stage};
use nightshift_core::{CheckOutcome, EventKind, FollowUp, Phase, PrState};
use nightshift_workspace::{Replayed, WorkspaceError};

use super::agent::{Feedback, FirstRound};
use super::prepare::{Start, Target};
use super::review::Rejection;
use super::validate::{Validated, run_checks};
use super::{RunExecution, Step, Workspace, short_sha};
use crate::EngineError;

/// What a conflicting replay left for the agent.
#[derive(Debug, Clone)]
pub(crate) struct Conflicts {
    pub(crate) files: Vec<String>,
    pub(crate) fork_point: String,
    pub(crate) base_commit: String,
    pub(crate) base_commits: Vec<String>,
}

/// Before any checkout: the pull request must still be open. The change the pull request
/// carries (its summary and reviews) is taken over from the run that pushed it last, so the
/// pull request's description keeps saying what the change is.
pub(crate) async fn read_input(
    run: &mut RunExecution,
    target: &Target,
    follow_up: &FollowUp,
) -> Step<()> {
    let number = follow_up.pr_number;
    let status = target
        .forge
        .pull_request_status(target.repo.url(), number)
        .await
        .map_err(EngineError::Forge)?;
    if status.state != PrState::Open {
        return Err(EngineError::FollowUpStale(format!(
            "pull request #{number} is {} now: there is nothing left to rebase",
            status.state
        ))
        .into());
    }
    let store = &run.engine.store;
    let previous = store
        .task_pull_requests(run.task.project_id, run.task.id)
        .await
        .map_err(EngineError::record("cannot read the task's pull requests"))?
        .into_iter()
        .find(|pr| pr.number == number)
        .map(|pr| pr.run_id);
    if let Some(previous) = previous
        && let Some(change) = store
            .change(previous)
            .await
            .map_err(EngineError::record("cannot read the pull request's change"))?
    {
        run.change.summary = change.summary;
        run.change.guard = change.guard;
        run.change.verdicts = change.verdicts;
    }
    let behind = match status.behind_base {
        Some(true) => "behind its base",
        Some(false) => "up to date with its base",
        None => "of unknown distance to its base",
    };
    run.events.emit(
        EventKind::Info,
        Some(Phase::Preparing),
        format!(
            "rebasing pull request #{number} onto {}, asked by {}: it is {behind}, mergeable {}",
            run.task.base_branch, follow_up.requested_by, status.mergeable
        ),
        serde_json::json!({"rebase": {
            "pr_number": number,
            "mergeable": status.mergeable,
            "behind_base": status.behind_base,
        }}),
    );
    Ok(())
}

/// Replays the pull request's commits onto the checkout (the base's tip) and says where the
/// run goes on from: nowhere when it is up to date, the checks again when it replayed
/// cleanly, the agent when it conflicts.
pub(crate) async fn replay(run: &mut RunExecution, workspace: &Workspace) -> Step<Start> {
    let worktree = &workspace.worktree;
    let base = run.task.base_branch.clone();
    let base_commit = worktree.base_commit().to_string();
    let Some(tip) = worktree.upstream().map(str::to_string) else {
        return Err(EngineError::Invalid(
            "a rebase run needs its pull request's branch, and the checkout has none".into(),
        )
        .into());
    };
    let replayed = worktree
        .replay(&run.engine.git, &tip)
        .await
        .map_err(|e| match e {
            conflict @ WorkspaceError::Conflict { .. } => EngineError::Conflict(conflict),
            other => EngineError::workspace("cannot replay the pull request")(other),
        })?;
    let (tip, base_at) = (short_sha(&tip), short_sha(&base_commit));
    let start = match replayed {
        Replayed::UpToDate => {
            run.events.info(
                Some(Phase::Preparing),
                format!("{tip} already has {base} at {base_at}: there is nothing to rebase"),
            );
            Start::UpToDate
        }
        Replayed::Clean | Replayed::Squashed => {
            let how = if replayed == Replayed::Clean {
                "commit by commit"
            } else {
                "as one change (its commits conflict one by one, not as a whole)"
            };
            run.events.info(
                Some(Phase::Preparing),
                format!(
                    "replayed {tip} onto {base} at {base_at} without conflicts, {how}: no \
                     agent needed, checking it again"
                ),
            );
            Start::Rebased
        }
        Replayed::Conflicts {
            files,
            fork_point,
            base_commits,
        } => {
            run.events.emit(
                EventKind::Info,
                Some(Phase::Preparing),
                format!(
                    "replaying {tip} onto {base} at {base_at} conflicts in {}: the agent \
                     resolves it",
                    files.join(", ")
                ),
                serde_json::json!({"conflicts": {"files": files, "fork_point": fork_point,
                    "base_commit": base_commit, "base_commits": base_commits}}),
            );
            run.conflicts = Some(Conflicts {
                files,
                fork_point,
                base_commit,
                base_commits,
            });
            Start::Agent(FirstRound {
                round: 1,
                restored: false,
                session: None,
            })
        }
    };
    Ok(start)
}

/// The repository's checks on a cleanly replayed branch, before it is pushed.
pub(crate) async fn recheck(
    run: &mut RunExecution,
    workspace: &Workspace,
    plan: &CheckPlan,
) -> Step<Validated> {
    run.enter(Phase::Validating).await?;
    let results = run_checks(run, workspace, plan, &[Stage::Lint, Stage::Test], 1).await?;
    if let Some(failed) = results.iter().find(|r| r.outcome != CheckOutcome::Passed) {
        return Err(EngineError::RecheckFailed {
            base: run.task.base_branch.to_string(),
            check: format!("{} `{}`", failed.stage, failed.command),
        }
        .into());
    }
    run.events.info(
        Some(Phase::Validating),
        format!("all {} checks passed on the rebased branch", results.len()),
    );
    Ok(Validated { round: 1 })
}

/// A round of a conflict resolution that left conflict markers behind is refused before the
/// checks run: the agent is told where they are.
pub(crate) fn unresolved(run: &RunExecution, workspace: &Workspace) -> Option<Rejection> {
    let conflicts = run.conflicts.as_ref()?;
    let markers = workspace.worktree.conflict_markers(&conflicts.files);
    if markers.is_empty() {
        return None;
    }
    let detail = format!("conflict markers left at {}", markers.join(", "));
    Some(Rejection {
        failed: vec![format!(
            "the conflict resolution ({} markers left)",
            markers.len()
        )],
        feedback: Feedback::Conflicts(markers),
        error: EngineError::Conflict(WorkspaceError::Conflict {
            base: run.task.base_branch.to_string(),
            detail,
        }),
    })
}

/// The task's instructions followed by the conflicts to resolve, for the agent.
pub(crate) fn conflict_instructions(
    instructions: &str,
    follow_up: &FollowUp,
    base: &str,
    conflicts: &Conflicts,
) -> String {
    let mut text = format!(
        "{}\n\nThis change is already in pull request #{} (branch {}). Its base branch {base} \
         has moved on from {} to {}, and the change conflicts with it. The workspace holds \
         {base} as it is now with the change applied on top, uncommitted; git left conflict \
         markers (<<<<<<<, =======, >>>>>>>) where both changed the same lines. Resolve every \
         conflict so that the change still does what the task asks on top of what {base} \
         changed, keep {base}'s changes, remove every marker, and do not commit.\n\nFiles with \
         conflicts:\n",
        instructions.trim(),
        follow_up.pr_number,
        follow_up.branch,
        short_sha(&conflicts.fork_point),
        short_sha(&conflicts.base_commit),
    );
    for file in &conflicts.files {
        let _ = writeln!(text, "- {file}");
    }
    if !conflicts.base_commits.is_empty() {
        let _ = write!(text, "\nWhat {base} changed since (newest first):\n");
        for commit in &conflicts.base_commits {
            let _ = writeln!(text, "- {commit}");
        }
    }
    text
}

/// What the agent is told when its resolution left markers behind.
pub(crate) fn markers_prompt(markers: &[String]) -> String {
    format!(
        "Conflict markers are still in the workspace at {}. Resolve those conflicts too and \
         remove every marker, then reply with a short summary.",
        markers.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use nightshift_core::FollowUpKind;

    use super::*;

    #[test]
    fn the_agent_reads_the_conflicting_files_and_the_base_commits() {
        let follow_up = FollowUp {
            kind: FollowUpKind::Rebase,
            pr_number: 4,
            pr_url: "https://forge.example/pr/4".into(),
            branch: "nightshift/1-say-goodbye".into(),
            head_sha: Some("0123456789abcdef".into()),
            requested_by: "alice".into(),
            review: None,
        };
        let conflicts = Conflicts {
            files: vec!["greeting.txt".into()],
            fork_point: "aaaaaaaaaaaaaaaa".into(),
            base_commit: "bbbbbbbbbbbbbbbb".into(),
            base_commits: vec!["bbbbbbb Say hi instead".into()],
        };
        let text = conflict_instructions("Say goodbye\n", &follow_up, "main", &conflicts);
        assert!(text.starts_with("Say goodbye\n\nThis change is already in pull request #4"));
        assert!(
            text.contains("moved on from aaaaaaaaaa to bbbbbbbbbb"),
            "{text}"
        );
        assert!(
            text.contains("Files with conflicts:\n- greeting.txt\n"),
            "{text}"
        );
        assert!(text.contains("- bbbbbbb Say hi instead\n"), "{text}");
    }
}
