//! Resuming: where a run continues on a worker is decided once, from what the store holds —
//! the checkpoint, the agent's result saved as a snapshot, the change — and this is where those
//! snapshots are saved and restored. A snapshot lets a worker on any machine go on with
//! validating (or, when the checks had passed, with publishing) instead of running the agent
//! again.

use std::path::Path;

use nightshift_core::{EventKind, FollowUpKind, Phase};
use nightshift_store::WorkspaceSnapshot;
use nightshift_workspace::Worktree;

use super::agent::FirstRound;
use super::prepare::{Start, Target};
use super::publish::Pushed;
use super::validate::Validated;
use super::{RunExecution, Step, Workspace, short_sha};
use crate::EngineError;

/// Stored patches larger than this are not kept for a takeover (which then runs the agent again):
/// a checkpoint is written in one statement, and a change this large is rarely an agent's.
const MAX_SNAPSHOT_BYTES: usize = 64 * 1024 * 1024;

/// Where a run continues, decided once when a worker takes it.
pub(crate) enum ResumePoint {
    /// From the start: a first run, or a takeover before any agent round finished. The
    /// previous worker's agent session, if any, is continued where the driver can.
    Fresh { session: Option<String> },
    /// An agent round finished: its result is restored and validated next.
    AfterAgentRound(Snapshot),
    /// The checks passed on the agent's result: it is restored, committed and published next.
    Validated(Snapshot),
    /// The branch was pushed: only the pull request is left.
    Pushed(Pushed),
}

/// The agent's result as the previous worker stored it.
pub(crate) struct Snapshot {
    saved: WorkspaceSnapshot,
    session: Option<String>,
}

/// What a run's checkout starts from.
pub(crate) enum Checkout {
    /// The tip of the base branch.
    Base { session: Option<String> },
    /// The commit a snapshot was made on, the snapshot to be applied once setup ran.
    Snapshot(Snapshot),
}

pub(crate) async fn decide(run: &mut RunExecution) -> Step<ResumePoint> {
    if !run.resumed {
        return Ok(ResumePoint::Fresh { session: None });
    }
    // What the previous workers spent counts against the run's budget.
    run.usage = run.run.usage;
    if let Some(pushed) = pushed(run).await {
        return Ok(ResumePoint::Pushed(pushed));
    }
    let session = run.run.checkpoint.agent_session_id.clone();
    // A snapshot is a patch against the fork point, not the pull request's head: a follow-up
    // run taken over before its push starts again on the branch.
    if run.run.follow_up.is_some() {
        return Ok(ResumePoint::Fresh { session });
    }
    let saved = run
        .engine
        .store
        .snapshot(run.run.id)
        .await
        .map_err(EngineError::record("cannot read the stored agent result"))?;
    Ok(match saved {
        None => ResumePoint::Fresh { session },
        Some(saved) if saved.validated => ResumePoint::Validated(Snapshot { saved, session }),
        Some(saved) => ResumePoint::AfterAgentRound(Snapshot { saved, session }),
    })
}

/// When the previous worker had pushed: takes over its checkpoint and stored change, which
/// hold what the pull request needs.
async fn pushed(run: &mut RunExecution) -> Option<Pushed> {
    let checkpoint = run.run.checkpoint.clone();
    let commit = checkpoint.pushed_commit.clone()?;
    let change = match run.engine.store.change(run.run.id).await {
        Ok(Some(change)) if change.commit.is_some() => change,
        Ok(_) => return None,
        Err(e) => {
            tracing::warn!(run_id = run.run.id, error = %e, "cannot read the stored change");
            return None;
        }
    };
    let branch = change.branch.clone()?;
    run.checkpoint = checkpoint;
    run.change = change;
    Some(Pushed { branch, commit })
}

/// The run's checkout at `work`: from a snapshot's commit, or — when there is none or that
/// commit cannot be checked out — from the tip of the base branch.
pub(crate) async fn checkout(
    run: &RunExecution,
    target: &Target,
    from: Checkout,
    work: &Path,
) -> Step<(Worktree, Checkout)> {
    let session = match from {
        Checkout::Snapshot(snapshot) => {
            let at = run
                .engine
                .mirrors
                .add_worktree_at(
                    &target.repo,
                    &run.task.base_branch,
                    &target.branch,
                    work,
                    &snapshot.saved.base_commit,
                )
                .await;
            match at {
                Ok(worktree) => return Ok((worktree, Checkout::Snapshot(snapshot))),
                Err(e) => {
                    not_restored(run, &snapshot, &e);
                    snapshot.session
                }
            }
        }
        Checkout::Base { session } => session,
    };
    let worktree = fresh(run, target, work).await?;
    Ok((worktree, Checkout::Base { session }))
}

/// Applies the snapshot to the checkout made for it and takes over the change stored with it
/// (summary, checks so far, rounds); when the patch does not apply, starts again on a fresh
/// checkout. Says where the run goes on from.
pub(crate) async fn restore(
    run: &mut RunExecution,
    target: &Target,
    workspace: &mut Workspace,
    from: Checkout,
) -> Step<Start> {
    let snapshot = match from {
        Checkout::Base { session } => {
            return Ok(Start::Agent(FirstRound {
                round: 1,
                restored: false,
                session,
            }));
        }
        Checkout::Snapshot(snapshot) => snapshot,
    };
    if let Err(e) = apply(run, &workspace.worktree, &snapshot.saved).await {
        not_restored(run, &snapshot, &e);
        let work = workspace.worktree.path().to_path_buf();
        let worktree = fresh(run, target, &work).await?;
        run.checkpoint.base_commit = Some(worktree.base_commit().to_string());
        // The sandbox shows the mirror's directory of the worktree it was made for.
        workspace.confinement = super::prepare::confine(run, &worktree)?;
        workspace.worktree = worktree;
        return Ok(Start::Agent(FirstRound {
            round: 1,
            restored: false,
            session: snapshot.session,
        }));
    }
    if let Some(change) = run
        .engine
        .store
        .change(run.run.id)
        .await
        .map_err(EngineError::record("cannot read the stored change"))?
    {
        run.change = change;
    }
    let saved = &snapshot.saved;
    let next = if saved.validated {
        "its checks passed: committing and publishing it"
    } else {
        "validating it"
    };
    run.events.emit(
        EventKind::Info,
        Some(Phase::Preparing),
        format!(
            "restored the agent's result of round {} from the checkpoint ({} bytes of patch on {}): {next}",
            saved.round,
            saved.patch.len(),
            short_sha(&saved.base_commit)
        ),
        serde_json::json!({"restored": {
            "round": saved.round,
            "validated": saved.validated,
            "base_commit": saved.base_commit,
            "patch_bytes": saved.patch.len(),
        }}),
    );
    Ok(if saved.validated {
        Start::Validated(Validated { round: saved.round })
    } else {
        Start::Agent(FirstRound {
            round: saved.round,
            restored: true,
            session: snapshot.session,
        })
    })
}

/// Stores the workspace's change (the agent's result of `round`, or with `validated` the
/// change whose checks passed) and the change record, so a worker taking the run over — on
/// any machine — restores it instead of running the agent again.
pub(crate) async fn save_snapshot(
    run: &mut RunExecution,
    workspace: &Workspace,
    round: u32,
    validated: bool,
) -> Step<()> {
    let file = run.run_dir.join("snapshot.patch");
    let worktree = &workspace.worktree;
    worktree
        .save_patch(&run.engine.git, &file)
        .await
        .map_err(EngineError::workspace("cannot save the agent's result"))?;
    let patch = std::fs::read(&file).map_err(EngineError::io("cannot read the agent's result"))?;
    let _ = std::fs::remove_file(&file);
    if patch.len() > MAX_SNAPSHOT_BYTES {
        run.events.info(
            Some(run.phase),
            format!(
                "the change is too large to keep for another worker ({} MiB): a worker taking \
                 the run over would start it again",
                patch.len() >> 20
            ),
        );
        return Ok(());
    }
    // The change first: a restored snapshot finds the summary and checks it goes with.
    run.save_change().await?;
    let snapshot = WorkspaceSnapshot {
        round,
        validated,
        base_commit: worktree.base_commit().to_string(),
        patch,
    };
    let written = run
        .engine
        .store
        .save_snapshot(run.run.id, &run.worker, &snapshot)
        .await;
    run.under_lease(written, "cannot store the agent's result")
}

async fn apply(
    run: &RunExecution,
    worktree: &Worktree,
    saved: &WorkspaceSnapshot,
) -> Result<(), EngineError> {
    let file = run.run_dir.join("snapshot.patch");
    std::fs::write(&file, &saved.patch).map_err(EngineError::io("cannot write the patch"))?;
    let applied = worktree.apply(&run.engine.git, &file).await;
    let _ = std::fs::remove_file(&file);
    applied.map_err(EngineError::workspace("cannot apply the patch"))
}

/// A new checkout: of the base branch's tip, or for a follow-up run of the pushed branch, so
/// the agent works on top of the pull request and the push is checked against its head.
async fn fresh(run: &RunExecution, target: &Target, work: &Path) -> Step<Worktree> {
    let mirrors = &run.engine.mirrors;
    let base = &run.task.base_branch;
    let checkout = match &run.run.follow_up {
        // A rebase run starts on the base's tip; the branch's commits are replayed onto it.
        Some(follow_up) if follow_up.kind == FollowUpKind::Rebase => {
            mirrors
                .checkout_for_rebase(&target.repo, base, &target.branch, work)
                .await
        }
        Some(_) => {
            mirrors
                .checkout_branch(&target.repo, base, &target.branch, work)
                .await
        }
        None => {
            mirrors
                .add_worktree(&target.repo, base, &target.branch, work)
                .await
        }
    };
    Ok(checkout.map_err(EngineError::workspace("cannot prepare the workspace"))?)
}

fn not_restored(run: &RunExecution, snapshot: &Snapshot, error: &dyn std::fmt::Display) {
    run.events.info(
        Some(Phase::Preparing),
        format!(
            "cannot restore the agent's result of round {}: {error}",
            snapshot.saved.round
        ),
    );
}
