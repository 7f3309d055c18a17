//! One run through the pipeline. Every failure ends in a typed reason naming the phase it
//! happened in; a stop (cancel, timeout) kills the run's processes before the run is marked.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nightshift_agent::{AgentDriver, AgentEnd, AgentRequest, BudgetLimits, run_with_budget};
use nightshift_checks::{CheckPlan, CheckRunner, ChecksError, Stage};
use nightshift_core::{
    AgentEvent, CheckOutcome, CheckResult, Checkpoint, EndReason, EventKind, GeneratedChange,
    Phase, RepoUrl, Run, Task, Usage, format_duration, now_millis,
};
use nightshift_forge::{ForgeError, PullRequestSpec};
use nightshift_store::{Claim, RunUpdate, StoreError};
use nightshift_workspace::{WorkspaceError, Worktree};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Engine, EventSink};

/// Why a run was stopped from outside its own work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopCause {
    Cancelled,
    TimedOut,
    LeaseLost,
    Shutdown,
}

/// How the pipeline ended early.
enum Failure {
    End {
        reason: EndReason,
        message: String,
        phase: Phase,
    },
    Stopped,
}

type Step<T> = std::result::Result<T, Failure>;

fn fail(reason: EndReason, phase: Phase, message: impl Into<String>) -> Failure {
    Failure::End {
        reason,
        message: message.into(),
        phase,
    }
}

pub(crate) struct RunExecution {
    engine: Arc<Engine>,
    task: Task,
    run: Run,
    resumed: bool,
    worker: String,
    events: EventSink,
    writer: Option<tokio::task::JoinHandle<()>>,
    stop: CancellationToken,
    cause: Arc<Mutex<Option<StopCause>>>,
    checkpoint: Checkpoint,
    change: GeneratedChange,
    usage: Usage,
    phase: Phase,
    worktree: Option<Worktree>,
    run_dir: PathBuf,
}

impl RunExecution {
    pub(crate) fn new(engine: Arc<Engine>, claim: Claim, worker: String) -> Self {
        let (events, writer) = EventSink::start(engine.store.clone(), claim.run.id);
        let run_dir = engine
            .config
            .data_dir
            .join("runs")
            .join(claim.run.id.to_string());
        RunExecution {
            change: GeneratedChange {
                run_id: claim.run.id,
                ..Default::default()
            },
            checkpoint: Checkpoint::default(),
            usage: Usage::default(),
            phase: Phase::Preparing,
            task: claim.task,
            resumed: claim.resumed,
            run: claim.run,
            engine,
            worker,
            events,
            writer: Some(writer),
            stop: CancellationToken::new(),
            cause: Arc::new(Mutex::new(None)),
            worktree: None,
            run_dir,
        }
    }

    pub(crate) async fn execute(mut self, shutdown: CancellationToken) {
        let watchdog = tokio::spawn(watch(
            self.engine.clone(),
            self.run.clone(),
            self.task.timeout_secs,
            self.worker.clone(),
            self.stop.clone(),
            self.cause.clone(),
            shutdown,
        ));
        if self.resumed {
            self.events.info(None, "resumed by another worker after its lease expired: starting again from a fresh workspace");
        }
        let result = if self.run.cancel_requested {
            self.set_cause(StopCause::Cancelled);
            Err(Failure::Stopped)
        } else {
            self.pipeline().await
        };
        watchdog.abort();
        self.conclude(result).await;
    }

    fn set_cause(&self, cause: StopCause) {
        let mut slot = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(cause);
    }

    fn cause(&self) -> Option<StopCause> {
        *self.cause.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check_stop(&self) -> Step<()> {
        if self.stop.is_cancelled() {
            Err(Failure::Stopped)
        } else {
            Ok(())
        }
    }

    async fn enter(&mut self, phase: Phase) -> Step<()> {
        self.check_stop()?;
        self.phase = phase;
        self.events.emit(
            EventKind::Phase,
            Some(phase),
            phase.as_str(),
            serde_json::Value::Null,
        );
        self.progress(phase.start_progress()).await
    }

    async fn progress(&self, progress: u8) -> Step<()> {
        let update = RunUpdate {
            phase: Some(self.phase),
            progress: Some(progress),
            ..Default::default()
        };
        self.store_update(&update).await
    }

    async fn store_update(&self, update: &RunUpdate) -> Step<()> {
        match self
            .engine
            .store
            .update_run(self.run.id, &self.worker, update)
            .await
        {
            Ok(()) => Ok(()),
            Err(StoreError::LeaseLost { .. }) => {
                self.set_cause(StopCause::LeaseLost);
                self.stop.cancel();
                Err(Failure::Stopped)
            }
            Err(e) => Err(fail(
                EndReason::Infrastructure,
                self.phase,
                format!("cannot record progress: {e}"),
            )),
        }
    }

    async fn save_checkpoint(&mut self, completed: Phase) -> Step<()> {
        if !self.checkpoint.completed.contains(&completed) {
            self.checkpoint.completed.push(completed);
        }
        let update = RunUpdate {
            checkpoint: Some(self.checkpoint.clone()),
            ..Default::default()
        };
        self.store_update(&update).await
    }

    fn infra(&self, what: &str) -> impl Fn(String) -> Failure + '_ {
        let phase = self.phase;
        let what = what.to_string();
        move |e| fail(EndReason::Infrastructure, phase, format!("{what}: {e}"))
    }

    async fn pipeline(&mut self) -> Step<EndReason> {
        let repo = RepoUrl::parse(&self.task.repo)
            .map_err(|e| fail(EndReason::Infrastructure, Phase::Preparing, e.to_string()))?;
        let forge = self.engine.forge(&repo);

        // preparing
        self.enter(Phase::Preparing).await?;
        match forge.check_push_access(&repo).await {
            Ok(()) => {}
            Err(ForgeError::PermissionDenied { reason, .. }) => {
                return Err(fail(EndReason::PermissionDenied, Phase::Preparing, reason));
            }
            Err(e) => {
                return Err(fail(
                    EndReason::Infrastructure,
                    Phase::Preparing,
                    e.to_string(),
                ));
            }
        }
        let branch = self.task.branch_name();
        let work = self.run_dir.join("work");
        let worktree = self
            .engine
            .mirrors
            .add_worktree(&repo, &self.task.base_branch, &branch, &work)
            .await
            .map_err(|e| self.infra("cannot prepare the workspace")(e.to_string()))?;
        self.events.info(
            Some(Phase::Preparing),
            format!(
                "checked out {} at {} on branch {branch}",
                self.task.base_branch,
                short_sha(worktree.base_commit())
            ),
        );
        self.checkpoint.workspace = Some(work.display().to_string());
        self.checkpoint.branch = Some(branch.clone());
        self.checkpoint.base_commit = Some(worktree.base_commit().to_string());
        self.change.branch = Some(branch);
        self.worktree = Some(worktree);

        let mut plan = nightshift_checks::discover(&work)
            .map_err(|e| fail(EndReason::ChecksFailed, Phase::Preparing, e.to_string()))?;
        // A template's checks override replaces the repository's format, lint and test commands.
        if let Some((source, commands)) = self
            .engine
            .store
            .task_checks_override(self.task.project_id, self.task.id)
            .await
            .map_err(|e| self.infra("cannot read the template's checks")(e.to_string()))?
        {
            plan.format.clear();
            plan.lint.clear();
            plan.test = commands;
            plan.source = source;
        }
        self.change.checks_source = plan.source.clone();
        self.events.emit(
            EventKind::Check,
            Some(Phase::Preparing),
            format!(
                "checks from {}: format {:?}, lint {:?}, test {:?}",
                plan.source, plan.format, plan.lint, plan.test
            ),
            serde_json::to_value(&plan).unwrap_or_default(),
        );
        if !plan.setup.is_empty() {
            let results = self.run_stages(&plan, &[Stage::Setup], 0).await?;
            if let Some(failed) = results.iter().find(|r| r.outcome != CheckOutcome::Passed) {
                return Err(fail(
                    EndReason::ChecksFailed,
                    Phase::Preparing,
                    format!(
                        "setup command `{}` failed with exit code {:?}",
                        failed.command, failed.exit_code
                    ),
                ));
            }
        }
        self.save_checkpoint(Phase::Preparing).await?;

        // agent ⇄ validating, until the checks pass or the rounds run out
        let driver = self
            .engine
            .driver(&self.task.agent)
            .map_err(|e| fail(EndReason::AgentFailed, Phase::Agent, e.to_string()))?;
        let max_rounds = if driver.supports_resume() {
            1 + self.engine.config.verification_rounds
        } else {
            1
        };
        let mut prompt = match self.task.agent.kind {
            // A codemod gets the instructions as they are; an agent gets them in the frame.
            nightshift_core::AgentKind::Command => self.task.instructions.clone(),
            _ => nightshift_agent::compose_prompt(&self.task.instructions, &work),
        };
        let mut round = 1;
        loop {
            self.enter(Phase::Agent).await?;
            self.run_agent(driver.as_ref(), &prompt, &work).await?;
            self.save_checkpoint(Phase::Agent).await?;
            if !self.has_changes().await? {
                self.events.info(
                    Some(Phase::Agent),
                    "the agent changed nothing: nothing to validate or push",
                );
                return Ok(EndReason::NoChanges);
            }
            self.enter(Phase::Validating).await?;
            let results = self
                .run_stages(&plan, &[Stage::Format, Stage::Lint, Stage::Test], round)
                .await?;
            self.change.rounds = round;
            let failures: Vec<&CheckResult> = results
                .iter()
                .filter(|r| r.outcome != CheckOutcome::Passed)
                .collect();
            if failures.is_empty() {
                self.events.info(
                    Some(Phase::Validating),
                    format!("round {round}: all {} checks passed", results.len()),
                );
                break;
            }
            let names: Vec<String> = failures
                .iter()
                .map(|f| format!("{} `{}`", f.stage, f.command))
                .collect();
            if round >= max_rounds {
                return Err(fail(
                    EndReason::ChecksFailed,
                    Phase::Validating,
                    format!("failed: {}", names.join(", ")),
                ));
            }
            self.events.info(
                Some(Phase::Validating),
                format!(
                    "round {round}: {} failed; sending the failures back to the agent",
                    names.join(", ")
                ),
            );
            let failed: Vec<CheckResult> = failures.into_iter().cloned().collect();
            prompt = nightshift_agent::feedback_prompt(&failed);
            round += 1;
        }
        if !self.has_changes().await? {
            return Ok(EndReason::NoChanges);
        }
        let message = self.commit_message();
        let git = self.engine.git.clone();
        let commit = {
            let worktree = self.worktree()?;
            worktree
                .commit(
                    &git,
                    &message,
                    &[
                        ("Nightshift-Task", self.task.id.to_string()),
                        ("Nightshift-Run", self.run.number.to_string()),
                    ],
                )
                .await
                .map_err(|e| self.infra("cannot commit")(e.to_string()))?
        };
        self.change.commit_message = message;
        self.checkpoint.commit = Some(commit.clone());
        self.events.info(
            Some(Phase::Validating),
            format!("committed {}", short_sha(&commit)),
        );
        self.save_checkpoint(Phase::Validating).await?;

        // publishing
        self.enter(Phase::Publishing).await?;
        let fresh = self
            .engine
            .mirrors
            .refresh_base(&repo, &self.task.base_branch)
            .await
            .map_err(|e| self.infra("cannot fetch the base branch")(e.to_string()))?;
        let old_base = self.worktree()?.base_commit().to_string();
        if fresh != old_base {
            self.events.info(
                Some(Phase::Publishing),
                format!(
                    "{} moved from {} to {}: rebasing",
                    self.task.base_branch,
                    short_sha(&old_base),
                    short_sha(&fresh)
                ),
            );
            let mut worktree = self.worktree.take().ok_or_else(|| {
                fail(EndReason::Infrastructure, Phase::Publishing, "no workspace")
            })?;
            let rebased = worktree.rebase_onto(&git, &fresh).await;
            self.worktree = Some(worktree);
            match rebased {
                Ok(()) => {}
                Err(WorkspaceError::Conflict { detail, .. }) => {
                    return Err(fail(
                        EndReason::Conflict,
                        Phase::Publishing,
                        format!(
                            "the change conflicts with {}: {detail}",
                            self.task.base_branch
                        ),
                    ));
                }
                Err(e) => {
                    return Err(fail(
                        EndReason::Infrastructure,
                        Phase::Publishing,
                        e.to_string(),
                    ));
                }
            }
            // The rebased tree is new code: prove it again before it leaves the machine.
            let results = self
                .run_stages(&plan, &[Stage::Lint, Stage::Test], round)
                .await?;
            if let Some(failed) = results.iter().find(|r| r.outcome != CheckOutcome::Passed) {
                return Err(fail(
                    EndReason::ChecksFailed,
                    Phase::Publishing,
                    format!(
                        "after rebasing onto {}: {} `{}` failed",
                        self.task.base_branch, failed.stage, failed.command
                    ),
                ));
            }
        }
        self.progress(90).await?;
        let pushed = {
            let worktree = self.worktree()?;
            match worktree.push(&git, &repo.to_string()).await {
                Ok(sha) => sha,
                Err(WorkspaceError::PushRefused {
                    detail,
                    permission: true,
                    ..
                }) => {
                    return Err(fail(
                        EndReason::PermissionDenied,
                        Phase::Publishing,
                        format!("push refused: {detail}"),
                    ));
                }
                Err(e) => {
                    return Err(fail(
                        EndReason::Infrastructure,
                        Phase::Publishing,
                        e.to_string(),
                    ));
                }
            }
        };
        let branch = self.worktree()?.branch().to_string();
        self.events.info(
            Some(Phase::Publishing),
            format!("pushed {} to {branch}", short_sha(&pushed)),
        );
        self.checkpoint.pushed_commit = Some(pushed.clone());
        self.change.commit = Some(pushed);
        self.save_checkpoint(Phase::Publishing).await?;

        let spec = PullRequestSpec {
            repo: repo.clone(),
            base: self.task.base_branch.clone(),
            head: branch,
            title: self.task.title.clone(),
            body: self.change.summary.clone().unwrap_or_default(),
            labels: vec!["nightshift".into()],
        };
        match forge.find_or_create_pull_request(&spec).await {
            Ok(Some(pr)) => {
                self.events
                    .info(Some(Phase::Publishing), format!("pull request {}", pr.url));
                self.checkpoint.pr_number = Some(pr.number);
                self.checkpoint.pr_url = Some(pr.url.clone());
                self.change.pr_number = Some(pr.number);
                self.change.pr_url = Some(pr.url);
                self.save_checkpoint(Phase::Publishing).await?;
            }
            Ok(None) => {}
            Err(e) => {
                return Err(fail(
                    EndReason::Infrastructure,
                    Phase::Publishing,
                    e.to_string(),
                ));
            }
        }
        Ok(EndReason::Succeeded)
    }

    fn worktree(&self) -> Step<&Worktree> {
        self.worktree
            .as_ref()
            .ok_or_else(|| fail(EndReason::Infrastructure, self.phase, "no workspace"))
    }

    async fn has_changes(&self) -> Step<bool> {
        let worktree = self.worktree()?;
        worktree
            .has_changes(&self.engine.git)
            .await
            .map_err(|e| self.infra("cannot read the workspace")(e.to_string()))
    }

    fn commit_message(&self) -> String {
        match &self.change.summary {
            Some(summary) if !summary.trim().is_empty() && summary.trim() != self.task.title => {
                format!("{}\n\n{}", self.task.title, summary.trim())
            }
            _ => self.task.title.clone(),
        }
    }

    async fn run_agent(
        &mut self,
        driver: &dyn AgentDriver,
        prompt: &str,
        work: &std::path::Path,
    ) -> Step<()> {
        let home = self.run_dir.join("home");
        std::fs::create_dir_all(&home)
            .map_err(|e| self.infra("cannot create the agent's home")(e.to_string()))?;
        let limits = BudgetLimits::resolve(&self.task.budget, &self.engine.config.budget_defaults);
        let logs = self
            .engine
            .config
            .data_dir
            .join("logs")
            .join(self.run.id.to_string());
        std::fs::create_dir_all(&logs)
            .map_err(|e| self.infra("cannot create the run's log directory")(e.to_string()))?;
        let mut request = AgentRequest::new(self.task.agent.clone(), work, home, prompt);
        request.resume_session = self.checkpoint.agent_session_id.clone();
        request.env = self.engine.config.agents.agent_env(self.task.agent.kind);
        // Kept outside the workspace so the raw output outlives it.
        request.raw_log = Some(logs.join("agent.jsonl"));
        request.max_turns = Some(limits.max_turns);
        let (tx, mut rx) = mpsc::channel::<AgentEvent>(256);
        let spent = self.usage;
        let run = run_with_budget(driver, request, limits, spent, tx, self.stop.clone());
        let events = self.events.clone();
        let forward = async {
            let mut progress = Phase::Agent.start_progress();
            let mut last_usage = None;
            while let Some(event) = rx.recv().await {
                events.agent(&event);
                if let AgentEvent::Usage { usage } = &event {
                    last_usage = Some(*usage);
                }
                if progress < 60 {
                    progress += 1;
                    let _ = self.progress(progress).await;
                }
            }
            last_usage
        };
        let (outcome, _) = tokio::join!(run, forward);
        let outcome =
            outcome.map_err(|e| fail(EndReason::AgentFailed, Phase::Agent, e.to_string()))?;
        self.usage.add(&outcome.usage);
        self.store_update(&RunUpdate {
            usage: Some(self.usage),
            ..Default::default()
        })
        .await?;
        if let Some(session) = &outcome.session_id {
            self.checkpoint.agent_session_id = Some(session.clone());
        }
        if let Some(summary) = &outcome.summary {
            self.change.summary = Some(summary.clone());
        }
        match outcome.end {
            AgentEnd::Finished { success: true, .. } => Ok(()),
            AgentEnd::Finished {
                success: false,
                exit,
            } => Err(fail(
                EndReason::AgentFailed,
                Phase::Agent,
                outcome
                    .error
                    .unwrap_or_else(|| format!("the agent failed ({exit})")),
            )),
            AgentEnd::Stopped => Err(Failure::Stopped),
            AgentEnd::BudgetExceeded(reason) => {
                Err(fail(EndReason::BudgetExceeded, Phase::Agent, reason))
            }
        }
    }

    /// Runs every command of `stages` (all of them, so the report is complete) and records each.
    async fn run_stages(
        &mut self,
        plan: &CheckPlan,
        stages: &[Stage],
        round: u32,
    ) -> Step<Vec<CheckResult>> {
        let work = self.worktree()?.path().to_path_buf();
        let home = self.run_dir.join("home");
        std::fs::create_dir_all(&home)
            .map_err(|e| self.infra("cannot create the checks' home")(e.to_string()))?;
        let runner = CheckRunner::new(
            self.engine.sandbox.clone(),
            vec![("HOME".into(), home.display().to_string())],
        );
        let total: usize = stages.iter().map(|s| plan.commands(*s).len()).sum();
        let mut results = Vec::new();
        for stage in stages {
            for command in plan.commands(*stage) {
                self.check_stop()?;
                let phase = self.phase;
                self.events.emit(
                    EventKind::Check,
                    Some(phase),
                    format!("{} `{command}`", stage.as_str()),
                    serde_json::json!({"stage": stage.as_str(), "command": command, "status": "running", "round": round}),
                );
                let events = self.events.clone();
                let mut on_line = |line: &nightshift_sandbox::OutputLine| {
                    events.emit(
                        EventKind::Log,
                        Some(phase),
                        line.text.clone(),
                        serde_json::json!({"stream": line.stream.as_str(), "stage": stage.as_str()}),
                    );
                };
                let result = match runner
                    .run(*stage, command, &work, round, &self.stop, &mut on_line)
                    .await
                {
                    Ok(result) => result,
                    Err(ChecksError::Stopped) => return Err(Failure::Stopped),
                    Err(e) => return Err(fail(EndReason::Infrastructure, phase, e.to_string())),
                };
                self.events.emit(
                    EventKind::Check,
                    Some(phase),
                    format!(
                        "{} `{command}` {} in {}",
                        stage.as_str(),
                        result.outcome.as_str(),
                        format_duration(Duration::from_millis(result.duration_ms))
                            .replace("0s", "<1s")
                    ),
                    serde_json::to_value(&result).unwrap_or_default(),
                );
                self.change.checks.push(result.clone());
                results.push(result);
                if phase == Phase::Validating {
                    let step = (results.len() * 19 / total.max(1)) as u8;
                    self.progress(Phase::Validating.start_progress() + step)
                        .await?;
                }
            }
        }
        Ok(results)
    }

    /// Records the end: the change, the events, the status — then removes the workspace.
    async fn conclude(mut self, result: Step<EndReason>) {
        let store = self.engine.store.clone();
        let (reason, message, phase) = match result {
            Ok(reason) => (Some(reason), None, None),
            Err(Failure::End {
                reason,
                message,
                phase,
            }) => (Some(reason), Some(message), Some(phase)),
            Err(Failure::Stopped) => match self.cause() {
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
                Some(StopCause::LeaseLost) => {
                    self.events.error(
                        Some(self.phase),
                        "lost the lease on this run: another worker continues it",
                    );
                    (None, None, None)
                }
                Some(StopCause::Shutdown) | None => {
                    self.events.info(
                        Some(self.phase),
                        "worker shutting down: the run goes back to the queue",
                    );
                    (None, None, None)
                }
            },
        };
        if let Some(message) = &message {
            self.events.error(phase, message.clone());
        }
        self.record_change().await;
        match reason {
            Some(reason) => {
                self.events.emit(
                    EventKind::Phase,
                    phase,
                    format!("run ended: {reason}"),
                    serde_json::json!({"status": reason.status().as_str(), "end_reason": reason.as_str()}),
                );
                self.events.flush().await;
                let failed_phase = if reason.status() == nightshift_core::RunStatus::Failed {
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
            None if self.cause() == Some(StopCause::Shutdown) || self.cause().is_none() => {
                self.events.flush().await;
                if let Err(e) = store.release_run(self.run.id, &self.worker).await {
                    tracing::error!(run_id = self.run.id, error = %e, "cannot release the run");
                }
            }
            None => self.events.flush().await,
        }
        let keep = self.engine.config.keep_failed_workspaces
            && reason.is_some_and(|r| r.status() == nightshift_core::RunStatus::Failed);
        if let Some(worktree) = self.worktree.take()
            && !keep
            && let Err(e) = self.engine.mirrors.remove_worktree(&worktree).await
        {
            tracing::warn!(run_id = self.run.id, error = %e, "cannot remove the workspace");
        }
        if !keep {
            let _ = std::fs::remove_dir_all(&self.run_dir);
        }
        drop(self.events);
        if let Some(writer) = self.writer.take() {
            let _ = writer.await;
        }
    }

    /// Stores what the run produced, including the uncommitted diff of a failed run.
    async fn record_change(&mut self) {
        let Some(worktree) = &self.worktree else {
            return;
        };
        let git = &self.engine.git;
        if self.checkpoint.commit.is_none() {
            // Stage everything so the diff shows new files too; nothing is committed.
            let _ = git.run(worktree.path(), &["add", "--all"]).await;
            if let Ok(patch) = git
                .run(
                    worktree.path(),
                    &["diff", "--cached", "--no-color", worktree.base_commit()],
                )
                .await
            {
                self.change.diff = patch;
            }
            if let Ok(stat) = git
                .run(
                    worktree.path(),
                    &["diff", "--cached", "--stat", worktree.base_commit()],
                )
                .await
            {
                self.change.diff_stat = stat.trim_end().to_string();
            }
            if let Ok(files) = git
                .run(
                    worktree.path(),
                    &["diff", "--cached", "--name-only", worktree.base_commit()],
                )
                .await
            {
                self.change.files_changed = files.lines().map(str::to_string).collect();
            }
        } else if let Ok(diff) = worktree.diff(git).await {
            self.change.diff = diff.patch;
            self.change.diff_stat = diff.stat;
            self.change.files_changed = diff.files;
        }
        if let Err(e) = self.engine.store.save_change(&self.change).await {
            tracing::error!(run_id = self.run.id, error = %e, "cannot store the generated change");
        }
    }
}

/// Renews the lease, notices cancel requests, enforces the deadline and worker shutdown.
async fn watch(
    engine: Arc<Engine>,
    run: Run,
    timeout_secs: u64,
    worker: String,
    stop: CancellationToken,
    cause: Arc<Mutex<Option<StopCause>>>,
    shutdown: CancellationToken,
) {
    let started = run.started_at.unwrap_or_else(now_millis);
    let remaining = (started + (timeout_secs as i64) * 1000 - now_millis()).max(0);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(remaining as u64);
    let stop_with = |c: StopCause| {
        cause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(c);
        stop.cancel();
    };
    let mut grace_end = None;
    loop {
        let grace = async {
            match grace_end {
                Some(end) => tokio::time::sleep_until(end).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return stop_with(StopCause::TimedOut),
            _ = shutdown.cancelled(), if grace_end.is_none() => {
                grace_end = Some(tokio::time::Instant::now() + engine.config.shutdown_grace);
            }
            _ = grace => return stop_with(StopCause::Shutdown),
            _ = tokio::time::sleep(engine.config.heartbeat) => {
                match engine.store.heartbeat(run.id, &worker, engine.config.lease).await {
                    Ok(beat) if beat.cancel_requested => return stop_with(StopCause::Cancelled),
                    Ok(_) => {}
                    Err(StoreError::LeaseLost { .. }) => return stop_with(StopCause::LeaseLost),
                    Err(e) => tracing::warn!(run_id = run.id, error = %e, "heartbeat failed"),
                }
            }
        }
    }
}

fn short_sha(sha: &str) -> &str {
    &sha[..sha.len().min(10)]
}
