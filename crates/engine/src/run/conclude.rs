//! The end of a run, whatever it was: the failure or stop said in the log, the change stored
//! (a failed run's uncommitted diff too), the workspace released, the end recorded — or the run
//! handed back to the queue.

use std::time::Duration;

use nightshift_core::{EndReason, EventKind, Phase, RunStatus, format_duration};

use super::watch::StopCause;
use super::{Failure, Outcome, RunExecution, Workspace};

impl RunExecution {
    /// Records the end: the change, the events, the status — then removes the workspace.
    pub(super) async fn conclude(
        mut self,
        workspace: Option<Workspace>,
        result: Result<Outcome, Failure>,
    ) {
        let store = self.engine.store.clone();
        let (reason, message, phase) = match &result {
            Ok(Outcome::NoChanges) => (Some(EndReason::NoChanges), None, None),
            Ok(Outcome::Published) => (Some(EndReason::Succeeded), None, None),
            Err(Failure::Failed { phase, error }) => (
                Some(error.end_reason()),
                Some(error.to_string()),
                Some(*phase),
            ),
            Err(Failure::Stopped) => self.stopped(),
        };
        // Errors are built without credentials; the run's secret filter is the net under that.
        let message = message.map(|m| self.events.redact(&m));
        if let Some(message) = &message {
            self.events.error(phase, message.clone());
        }
        // A run that ended with no changes has a checkout git found unchanged: its change is
        // empty, and four git commands over the whole checkout would only say so again.
        let unchanged = matches!(result, Ok(Outcome::NoChanges));
        self.record_change(workspace.as_ref(), unchanged).await;
        // Released before the end is recorded: whoever sees the run ended (or claims it again
        // from the queue, in the same directory) finds no workspace left behind.
        let keep = self.engine.config.keep_failed_workspaces
            && reason.is_some_and(|r| r.status() == RunStatus::Failed);
        if let Some(workspace) = &workspace
            && !keep
            && let Err(e) = self
                .engine
                .mirrors
                .remove_worktree(&workspace.worktree)
                .await
        {
            tracing::warn!(run_id = self.run.id, error = %e, "cannot remove the workspace");
        }
        if !keep {
            let _ = nightshift_workspace::remove_tree(&self.run_dir);
        }
        self.phase_ended(None);
        match reason {
            Some(reason) => {
                crate::telemetry::run_ended(reason);
                self.events.emit(
                    EventKind::Phase,
                    phase,
                    format!("run ended: {reason}"),
                    serde_json::json!({"status": reason.status().as_str(), "end_reason": reason.as_str()}),
                );
                self.events.flush().await;
                let failed_phase = if reason.status() == RunStatus::Failed {
                    phase
                } else {
                    None
                };
                if let Err(e) = store
                    .finish_run(
                        self.run.id,
                        &self.worker,
                        reason,
                        message.as_deref(),
                        failed_phase,
                    )
                    .await
                {
                    tracing::error!(run_id = self.run.id, error = %e, "cannot record the end of the run");
                }
            }
            None if matches!(
                self.cause(),
                Some(StopCause::Shutdown | StopCause::HandOver) | None
            ) =>
            {
                self.events.flush().await;
                if let Err(e) = store.release_run(self.run.id, &self.worker).await {
                    tracing::error!(run_id = self.run.id, error = %e, "cannot release the run");
                }
            }
            None => self.events.flush().await,
        }
        drop(self.events);
        if let Some(writer) = self.writer.take() {
            let _ = writer.await;
        }
    }

    /// How a stopped run ends: cancelled or timed out in its phase, or — lease lost, worker
    /// shutting down — not at all, for another worker continues it.
    fn stopped(&self) -> (Option<EndReason>, Option<String>, Option<Phase>) {
        match self.cause() {
            Some(StopCause::Cancelled) => (
                Some(EndReason::Cancelled),
                Some("cancelled".to_string()),
                Some(self.phase),
            ),
            Some(StopCause::TimedOut) => (
                Some(EndReason::TimedOut),
                Some(format!(
                    "timed out after {}",
                    format_duration(Duration::from_secs(self.task.timeout_secs))
                )),
                Some(self.phase),
            ),
            Some(StopCause::OverLimit(message)) => (
                Some(EndReason::BudgetExceeded),
                Some(message),
                Some(self.phase),
            ),
            Some(StopCause::LeaseLost) => {
                self.events.error(
                    Some(self.phase),
                    "lost the lease on this run: another worker continues it",
                );
                (None, None, None)
            }
            Some(StopCause::HandOver) => {
                let checkpoint = self
                    .checkpoint
                    .completed
                    .last()
                    .map_or("start", |p| p.as_str());
                self.events.emit(
                    EventKind::Info,
                    Some(self.phase),
                    format!(
                        "worker {} is shutting down: handed the run back to the queue at its \
                         {checkpoint} checkpoint",
                        self.worker
                    ),
                    serde_json::json!({"handover": {
                        "worker": self.worker, "checkpoint": checkpoint, "grace_expired": false,
                    }}),
                );
                (None, None, None)
            }
            Some(StopCause::Shutdown) | None => {
                self.events.emit(
                    EventKind::Info,
                    Some(self.phase),
                    format!(
                        "worker {} is shutting down and its grace period of {} ran out in {}: \
                         stopped the run's processes and handed it back to the queue",
                        self.worker,
                        format_duration(self.engine.config.shutdown_grace),
                        self.phase
                    ),
                    serde_json::json!({"handover": {
                        "worker": self.worker, "phase": self.phase, "grace_expired": true,
                    }}),
                );
                (None, None, None)
            }
        }
    }

    /// Stores what the run produced, including the uncommitted diff of a failed run.
    async fn record_change(&mut self, workspace: Option<&Workspace>, unchanged: bool) {
        let Some(workspace) = workspace else {
            // A run resumed after its push has no workspace, only the change stored then.
            if self.change.commit.is_some()
                && let Err(e) = self.engine.store.save_change(&self.redacted_change()).await
            {
                tracing::error!(run_id = self.run.id, error = %e, "cannot store the generated change");
            }
            return;
        };
        let worktree = &workspace.worktree;
        // The checkout has been in the agent's hands: git is pinned to the mirror's side.
        let git = &worktree.git(&self.engine.git);
        if unchanged {
            // What git would say: no diff, no stat, no files (whatever an earlier round had).
            self.change.diff.clear();
            self.change.diff_stat.clear();
            self.change.files_changed.clear();
        } else if self.checkpoint.commit.is_none() {
            // Stage everything so the diff shows new files too; nothing is committed.
            let _ = git.run(worktree.path(), &["add", "--all"]).await;
            let base = worktree.base_commit();
            let diff = |args: &'static [&'static str]| {
                let mut all = vec!["diff", "--cached"];
                all.extend_from_slice(args);
                all.push(base);
                all
            };
            if let Ok(patch) = git.run(worktree.path(), &diff(&["--no-color"])).await {
                self.change.diff = patch;
            }
            if let Ok(stat) = git.run(worktree.path(), &diff(&["--stat"])).await {
                self.change.diff_stat = stat.trim_end().to_string();
            }
            if let Ok(files) = git.run(worktree.path(), &diff(&["--name-only"])).await {
                self.change.files_changed = files.lines().map(str::to_string).collect();
            }
        } else if let Ok(diff) = worktree.diff(&self.engine.git).await {
            self.change.diff = diff.patch;
            self.change.diff_stat = diff.stat;
            self.change.files_changed = diff.files;
        }
        if let Err(e) = self.engine.store.save_change(&self.redacted_change()).await {
            tracing::error!(run_id = self.run.id, error = %e, "cannot store the generated change");
        }
    }
}
