//! One run through the pipeline. Every failure ends in a typed reason naming the phase it
//! happened in; a stop (cancel, timeout) kills the run's processes before the run is marked.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nightshift_agent::{AgentDriver, AgentEnd, AgentRequest, BudgetLimits, run_with_budget};
use nightshift_checks::{CheckPlan, CheckRunner, ChecksError, Stage};
use nightshift_core::{
    AgentEvent, CheckOutcome, CheckResult, Checkpoint, EndReason, EventKind, GeneratedChange,
    Phase, RepoUrl, Run, Task, Usage, format_duration, now_millis,
};
use nightshift_forge::{
    Forge, ForgeError, PrBody, PrState, PrStatus, PullRequestSpec, redact, render_pr_body,
};
use nightshift_store::{Claim, RunUpdate, StoreError, WorkspaceSnapshot};
use nightshift_workspace::{WorkspaceError, Worktree};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::confinement::{AgentSandbox, RunConfinement, SandboxMode};
use crate::{Engine, EventSink};

/// A background task that ends with its owner.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a run was stopped from outside its own work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopCause {
    Cancelled,
    TimedOut,
    LeaseLost,
    /// The worker is shutting down and the run reached a checkpoint: handed back as it is.
    HandOver,
    /// The worker is shutting down and its grace period ran out before the next checkpoint.
    Shutdown,
}

/// Stored patches larger than this are not kept for a takeover (which then runs the agent again):
/// a checkpoint is written in one statement, and a change this large is rarely an agent's.
const MAX_SNAPSHOT_BYTES: usize = 64 * 1024 * 1024;

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
    /// The previous worker handed the run back rather than letting its lease expire.
    handed_over: bool,
    worker: String,
    /// Fires when the worker shuts down: the run hands itself back at its next checkpoint.
    shutdown: CancellationToken,
    events: EventSink,
    writer: Option<tokio::task::JoinHandle<()>>,
    stop: CancellationToken,
    cause: Arc<Mutex<Option<StopCause>>>,
    checkpoint: Checkpoint,
    change: GeneratedChange,
    usage: Usage,
    /// The token totals the agent last reported for its session, as it reported them.
    session_tokens: (u64, u64),
    phase: Phase,
    /// The highest progress stored: a verification round re-enters `agent` without the
    /// percentage the UI shows going backwards.
    progress: AtomicU8,
    worktree: Option<Worktree>,
    run_dir: PathBuf,
    /// The run's sandboxes, one per phase, once its workspace exists.
    confinement: Option<RunConfinement>,
    /// The environment the agent gets: the model gateways' when confined.
    agent_env: Vec<(String, String)>,
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
            session_tokens: (0, 0),
            phase: Phase::Preparing,
            // A run taken over keeps the progress people saw, so the bar never goes backwards.
            progress: AtomicU8::new(if claim.resumed { claim.run.progress } else { 0 }),
            task: claim.task,
            resumed: claim.resumed,
            handed_over: claim.handed_over,
            shutdown: CancellationToken::new(),
            run: claim.run,
            engine,
            worker,
            events,
            writer: Some(writer),
            stop: CancellationToken::new(),
            cause: Arc::new(Mutex::new(None)),
            worktree: None,
            run_dir,
            confinement: None,
            agent_env: Vec::new(),
        }
    }

    pub(crate) async fn execute(mut self, shutdown: CancellationToken) {
        // Aborted on drop too: a run whose worker was torn down must stop renewing its lease,
        // or no other worker could ever resume it.
        let watchdog = AbortOnDrop(tokio::spawn(watch(
            self.engine.clone(),
            self.run.clone(),
            self.task.timeout_secs,
            self.worker.clone(),
            self.stop.clone(),
            self.cause.clone(),
            shutdown.clone(),
        )));
        self.shutdown = shutdown;
        if self.resumed {
            let (why, after) = if self.handed_over {
                ("its previous worker handed it back", "handed_back")
            } else {
                ("its previous worker's lease expired", "lease_expired")
            };
            self.events.emit(
                EventKind::Info,
                None,
                format!("taken over by worker {}: {why}", self.worker),
                serde_json::json!({"takeover": {"worker": self.worker, "after": after}}),
            );
        }
        let result = if self.run.cancel_requested {
            self.set_cause(StopCause::Cancelled);
            Err(Failure::Stopped)
        } else {
            self.pipeline().await
        };
        drop(watchdog);
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
        let progress = progress.max(self.progress.fetch_max(progress, Ordering::Relaxed));
        let update = RunUpdate {
            phase: Some(self.phase),
            progress: Some(progress),
            ..Default::default()
        };
        self.store_update(&update).await
    }

    async fn store_update(&self, update: &RunUpdate) -> Step<()> {
        let written = self
            .engine
            .store
            .update_run(self.run.id, &self.worker, update)
            .await;
        self.under_lease(written, "cannot record progress")
    }

    /// A write guarded by this worker's lease: a lost lease stops the run here (another worker
    /// has it now), any other error fails it as infrastructure.
    fn under_lease(&self, written: Result<(), StoreError>, what: &str) -> Step<()> {
        match written {
            Ok(()) => Ok(()),
            Err(StoreError::LeaseLost { .. }) => {
                self.set_cause(StopCause::LeaseLost);
                self.stop.cancel();
                Err(Failure::Stopped)
            }
            Err(e) => Err(self.infra(what)(e.to_string())),
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

    /// At a checkpoint of a stopping worker: hands the run back (see `conclude`) so another
    /// worker continues from this checkpoint at once, instead of after the lease expires.
    fn hand_over_if_stopping(&self) -> Step<()> {
        if self.shutdown.is_cancelled() {
            self.set_cause(StopCause::HandOver);
            return Err(Failure::Stopped);
        }
        Ok(())
    }

    /// Stores the workspace's change (the agent's result of `round`, or with `validated` the
    /// committed change whose checks passed) and the change record, so a worker taking the run
    /// over — on any machine — restores it instead of running the agent again.
    async fn save_snapshot(&mut self, round: u32, validated: bool) -> Step<()> {
        let file = self.run_dir.join("snapshot.patch");
        let base_commit = {
            let worktree = self.worktree()?;
            worktree
                .save_patch(&self.engine.git, &file)
                .await
                .map_err(|e| self.infra("cannot save the agent's result")(e.to_string()))?;
            worktree.base_commit().to_string()
        };
        let patch = std::fs::read(&file)
            .map_err(|e| self.infra("cannot read the agent's result")(e.to_string()))?;
        let _ = std::fs::remove_file(&file);
        if patch.len() > MAX_SNAPSHOT_BYTES {
            self.events.info(
                Some(self.phase),
                format!(
                    "the change is too large to keep for another worker ({} MiB): a worker taking \
                     the run over would start it again",
                    patch.len() >> 20
                ),
            );
            return Ok(());
        }
        // The change first: a restored snapshot finds the summary and checks it goes with.
        self.engine
            .store
            .save_change(&self.redacted_change())
            .await
            .map_err(|e| self.infra("cannot store the change")(e.to_string()))?;
        let snapshot = WorkspaceSnapshot {
            round,
            validated,
            base_commit,
            patch,
        };
        let written = self
            .engine
            .store
            .save_snapshot(self.run.id, &self.worker, &snapshot)
            .await;
        self.under_lease(written, "cannot store the agent's result")
    }

    /// For a run taken over from another worker: the agent's result it stored, restored into a
    /// fresh worktree on the commit it was made on. `None` (and a fresh worktree from the base
    /// branch) when there is nothing to restore or it cannot be.
    async fn restore_snapshot(
        &mut self,
        repo: &RepoUrl,
        branch: &str,
        work: &std::path::Path,
    ) -> Step<Option<(Worktree, WorkspaceSnapshot)>> {
        let snapshot = match self.engine.store.snapshot(self.run.id).await {
            Ok(Some(snapshot)) => snapshot,
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(self.infra("cannot read the stored agent result")(
                    e.to_string(),
                ));
            }
        };
        let worktree = match self
            .engine
            .mirrors
            .add_worktree_at(
                repo,
                &self.task.base_branch,
                branch,
                work,
                &snapshot.base_commit,
            )
            .await
        {
            Ok(worktree) => worktree,
            Err(e) => {
                self.events.info(
                    Some(Phase::Preparing),
                    format!(
                        "cannot restore the agent's result of round {}: {e}",
                        snapshot.round
                    ),
                );
                return Ok(None);
            }
        };
        Ok(Some((worktree, snapshot)))
    }

    /// After a snapshot was applied: takes over the change record stored with it (summary,
    /// checks so far, rounds) and the run's spend, and says what was restored.
    async fn restored(&mut self, snapshot: &WorkspaceSnapshot) -> Step<()> {
        match self.engine.store.change(self.run.id).await {
            Ok(Some(change)) => self.change = change,
            Ok(None) => {}
            Err(e) => return Err(self.infra("cannot read the stored change")(e.to_string())),
        }
        let next = if snapshot.validated {
            "its checks passed: committing and publishing it"
        } else {
            "validating it"
        };
        self.events.emit(
            EventKind::Info,
            Some(Phase::Preparing),
            format!(
                "restored the agent's result of round {} from the checkpoint ({} bytes of patch on {}): {next}",
                snapshot.round,
                snapshot.patch.len(),
                short_sha(&snapshot.base_commit)
            ),
            serde_json::json!({"restored": {
                "round": snapshot.round,
                "validated": snapshot.validated,
                "base_commit": snapshot.base_commit,
                "patch_bytes": snapshot.patch.len(),
            }}),
        );
        Ok(())
    }

    /// The first agent session of a run taken over in the middle of one: continues the previous
    /// worker's session, or — when it cannot continue here (its state stayed on the other
    /// machine, or the agent refuses it) — starts a new session with `fresh`.
    async fn run_agent_after_takeover(
        &mut self,
        driver: &dyn AgentDriver,
        session: &str,
        continued: &str,
        fresh: &str,
        work: &std::path::Path,
        round: u32,
    ) -> Step<()> {
        self.events.emit(
            EventKind::Info,
            Some(Phase::Agent),
            format!("continuing agent session {session} of the previous worker"),
            serde_json::json!({"continued_session": session}),
        );
        match self.run_agent(driver, continued, work, round).await {
            Err(Failure::End {
                reason: EndReason::AgentFailed,
                message,
                ..
            }) => {
                self.events.info(
                    Some(Phase::Agent),
                    format!(
                        "agent session {session} cannot be continued on this worker ({message}): \
                         starting a new session"
                    ),
                );
                self.checkpoint.agent_session_id = None;
                self.run_agent(driver, fresh, work, round).await
            }
            other => other,
        }
    }

    /// Applies a restored snapshot's patch to the new worktree.
    async fn apply_snapshot(&self, snapshot: &WorkspaceSnapshot) -> Result<(), String> {
        let worktree = self.worktree().map_err(|_| "no workspace".to_string())?;
        let file = self.run_dir.join("snapshot.patch");
        std::fs::write(&file, &snapshot.patch).map_err(|e| e.to_string())?;
        let applied = worktree.apply(&self.engine.git, &file).await;
        let _ = std::fs::remove_file(&file);
        applied.map_err(|e| e.to_string())
    }

    fn infra(&self, what: &str) -> impl Fn(String) -> Failure + '_ {
        let phase = self.phase;
        let what = what.to_string();
        move |e| fail(EndReason::Infrastructure, phase, format!("{what}: {e}"))
    }

    async fn pipeline(&mut self) -> Step<EndReason> {
        let repo = RepoUrl::parse(&self.task.repo)
            .map_err(|e| fail(EndReason::Infrastructure, Phase::Preparing, e.to_string()))?;

        // The run's secrets are masked in everything it records from here on.
        let host = nightshift_forge::RepoPath::parse(&repo)
            .ok()
            .map(|p| p.host);
        let redactor = self
            .engine
            .run_redactor(self.task.project_id, host.as_deref())
            .await
            .map_err(|e| fail(EndReason::Infrastructure, Phase::Preparing, e))?;
        self.events.set_redactor(redactor.clone());

        // preparing: the forge and push access first, so a run that could never publish
        // fails in seconds instead of after the agent's work.
        self.enter(Phase::Preparing).await?;
        // Never unconfined by accident: only an explicit `sandbox = "none"` runs without it.
        let status = self.engine.confinement();
        if status.sandbox == SandboxMode::Bubblewrap && !status.confined {
            return Err(fail(
                EndReason::Infrastructure,
                Phase::Preparing,
                status.detail.clone(),
            ));
        }
        let forge = self
            .engine
            .forge(self.task.project_id, &repo, &self.events)
            .await
            .map_err(|e| {
                fail(
                    EndReason::Infrastructure,
                    Phase::Preparing,
                    format!("forge settings: {e}"),
                )
            })?;
        let branch = self.task.branch_name();
        if branch == self.task.base_branch {
            return Err(fail(
                EndReason::PermissionDenied,
                Phase::Preparing,
                format!(
                    "refusing to run: the base branch {branch} is the branch Nightshift pushes to"
                ),
            ));
        }
        forge
            .check_push_access(&repo)
            .await
            .map_err(|e| forge_failure(e, Phase::Preparing))?;
        self.events.info(
            Some(Phase::Preparing),
            format!("{} grants push access to {repo}", forge.name()),
        );
        if self.resumed && self.resume_after_push().await {
            self.events.info(
                Some(Phase::Publishing),
                "the branch was pushed before the interruption: going on with the pull request",
            );
            self.enter(Phase::Publishing).await?;
            self.open_pull_request(forge.as_ref(), &repo).await?;
            return Ok(EndReason::Succeeded);
        }
        if self.resumed {
            // What the previous workers spent counts against the run's budget.
            self.usage = self.run.usage;
        }
        let work = self.run_dir.join("work");
        // A run taken over after an agent round finished continues from that round's result.
        let restored = if self.resumed {
            self.restore_snapshot(&repo, &branch, &work).await?
        } else {
            None
        };
        let (worktree, mut restored) = match restored {
            Some((worktree, snapshot)) => (worktree, Some(snapshot)),
            None => {
                let worktree = self
                    .engine
                    .mirrors
                    .add_worktree(&repo, &self.task.base_branch, &branch, &work)
                    .await
                    .map_err(|e| self.infra("cannot prepare the workspace")(e.to_string()))?;
                (worktree, None)
            }
        };
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
        self.change.branch = Some(branch.clone());
        self.worktree = Some(worktree);
        self.confinement = Some(self.confine(redactor.clone())?);
        for line in self.confinement()?.log() {
            self.events.info(Some(Phase::Preparing), line.clone());
        }

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
            plan.evidence.retain(|e| e.stage == Stage::Setup);
        }
        self.change.checks_source = plan.source.clone();
        // Each check with the evidence it was found from, one per line.
        self.events.emit(
            EventKind::Check,
            Some(Phase::Preparing),
            plan.describe().join("\n"),
            serde_json::to_value(&plan).unwrap_or_default(),
        );
        if !plan.network.is_empty() {
            self.events.emit(
                EventKind::Check,
                Some(Phase::Preparing),
                format!(
                    "{} asks for network in its checks: they may reach {}",
                    nightshift_checks::CONFIG_FILE,
                    plan.network.join(", ")
                ),
                serde_json::json!({"checks_network": plan.network}),
            );
        }
        if !plan.setup.is_empty() {
            let results = self.run_stages(&plan, &[Stage::Setup], 0).await?;
            if let Some(failed) = results.iter().find(|r| r.outcome != CheckOutcome::Passed) {
                return Err(fail(
                    EndReason::ChecksFailed,
                    Phase::Preparing,
                    format!("setup command `{}` {}", failed.command, failed.exit_text()),
                ));
            }
        }
        // Applied after the plan is read and set up: as in a first run, the checks are the ones
        // the repository had before the agent touched it.
        if let Some(snapshot) = &restored {
            match self.apply_snapshot(snapshot).await {
                Ok(()) => self.restored(snapshot).await?,
                Err(e) => {
                    self.events.info(
                        Some(Phase::Preparing),
                        format!(
                            "cannot restore the agent's result of round {}: {e}",
                            snapshot.round
                        ),
                    );
                    let worktree = self
                        .engine
                        .mirrors
                        .add_worktree(&repo, &self.task.base_branch, &branch, &work)
                        .await
                        .map_err(|e| self.infra("cannot prepare the workspace")(e.to_string()))?;
                    self.checkpoint.base_commit = Some(worktree.base_commit().to_string());
                    self.worktree = Some(worktree);
                    // The sandbox shows the mirror's directory of the worktree it was made for.
                    self.confinement = Some(self.confine(redactor.clone())?);
                    restored = None;
                }
            }
        }
        self.save_checkpoint(Phase::Preparing).await?;
        self.hand_over_if_stopping()?;

        // agent ⇄ validating, until the checks pass or the rounds run out. The model gateways
        // live as long as `agent`, across the rounds.
        let agent: AgentSandbox = self
            .confinement()?
            .agent(self.task.agent.kind, &self.engine.config.agents)
            .map_err(|e| fail(EndReason::Infrastructure, Phase::Agent, e))?;
        self.agent_env = agent.env.clone();
        let driver = self
            .engine
            .driver(&self.task.agent, agent.sandbox.clone())
            .map_err(|e| fail(EndReason::AgentFailed, Phase::Agent, e.to_string()))?;
        let max_rounds = if driver.supports_resume() {
            1 + self.engine.config.verification_rounds
        } else {
            1
        };
        let first_prompt = match self.task.agent.kind {
            // A codemod gets the instructions as they are; an agent gets them in the frame.
            nightshift_core::AgentKind::Command => self.task.instructions.clone(),
            _ => nightshift_agent::compose_prompt(&self.task.instructions, &work),
        };
        let mut prompt = first_prompt.clone();
        let mut round = 1;
        // The session the previous worker's agent had: continued where the driver can, else
        // the agent starts again (see `run_agent_after_takeover`).
        let mut taken_over_session = None;
        if self.resumed && driver.supports_resume() {
            taken_over_session = self.run.checkpoint.agent_session_id.clone();
            self.checkpoint.agent_session_id = taken_over_session.clone();
        }
        // What a continued session is told the workspace holds.
        let restored_to = match &restored {
            Some(snapshot) => {
                round = snapshot.round;
                format!("your result of round {}", snapshot.round)
            }
            None => {
                if taken_over_session.is_some() {
                    prompt = "Carry on with the task from there, and reply with a short summary \
                              when you are done."
                        .to_string();
                } else if self.resumed {
                    self.events.info(
                        Some(Phase::Preparing),
                        "no finished agent round to restore: starting again from a fresh workspace",
                    );
                }
                format!(
                    "the base commit {}",
                    short_sha(self.checkpoint.base_commit.as_deref().unwrap_or_default())
                )
            }
        };
        let validated = restored.as_ref().is_some_and(|s| s.validated);
        // The round whose agent result is already in the workspace: validated, not run again.
        let mut in_workspace = restored.as_ref().map(|s| s.round);
        loop {
            if validated {
                break;
            }
            if in_workspace != Some(round) {
                self.enter(Phase::Agent).await?;
                match taken_over_session.take() {
                    Some(session) => {
                        // Should the session not continue here, a new one needs the task too.
                        let fresh = if round > 1 {
                            format!(
                                "{first_prompt}\n\nA previous session already worked on this task in \
                                 the workspace. {prompt}"
                            )
                        } else {
                            first_prompt.clone()
                        };
                        let continued = nightshift_agent::takeover_prompt(&restored_to, &prompt);
                        self.run_agent_after_takeover(
                            driver.as_ref(),
                            &session,
                            &continued,
                            &fresh,
                            &work,
                            round,
                        )
                        .await?
                    }
                    None => {
                        self.run_agent(driver.as_ref(), &prompt, &work, round)
                            .await?
                    }
                }
                let changed = self.has_changes().await?;
                if changed {
                    self.save_snapshot(round, false).await?;
                }
                self.save_checkpoint(Phase::Agent).await?;
                if !changed {
                    self.events.info(
                        Some(Phase::Agent),
                        "the agent changed nothing: nothing to validate or push",
                    );
                    return Ok(EndReason::NoChanges);
                }
                self.hand_over_if_stopping()?;
            }
            in_workspace = None;
            self.enter(Phase::Validating).await?;
            let results = self
                .run_stages(&plan, &[Stage::Format, Stage::Lint, Stage::Test], round)
                .await?;
            self.change.rounds = round;
            let failures: Vec<&CheckResult> = results
                .iter()
                .filter(|r| r.outcome != CheckOutcome::Passed)
                .collect();
            let names: Vec<String> = failures
                .iter()
                .map(|f| format!("{} `{}`", f.stage, f.command))
                .collect();
            // Machine-readable, so the UI can show each round's outcome without parsing text.
            let outcome = serde_json::json!({"round_outcome": {
                "round": round, "passed": failures.is_empty(), "failed": names,
            }});
            if failures.is_empty() {
                self.events.emit(
                    EventKind::Info,
                    Some(Phase::Validating),
                    format!("round {round}: all {} checks passed", results.len()),
                    outcome,
                );
                break;
            }
            if round >= max_rounds {
                self.events.emit(
                    EventKind::Info,
                    Some(Phase::Validating),
                    format!(
                        "round {round}: {} failed; no verification rounds left",
                        names.join(", ")
                    ),
                    outcome,
                );
                return Err(fail(
                    EndReason::ChecksFailed,
                    Phase::Validating,
                    format!("failed: {}", names.join(", ")),
                ));
            }
            self.events.emit(
                EventKind::Info,
                Some(Phase::Validating),
                format!(
                    "round {round}: {} failed; sending the failures back to the agent",
                    names.join(", ")
                ),
                outcome,
            );
            let failed: Vec<CheckResult> = failures.into_iter().cloned().collect();
            prompt = nightshift_agent::feedback_prompt(&failed);
            if self.checkpoint.agent_session_id.is_none() {
                // A new session (the old one could not be continued here) needs the task too.
                prompt = format!(
                    "{first_prompt}\n\nA previous session already worked on this task in the \
                     workspace. {prompt}"
                );
            }
            round += 1;
        }
        if !self.has_changes().await? {
            return Ok(EndReason::NoChanges);
        }
        let message = self.events.redact(&self.commit_message());
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
        if !validated {
            self.save_snapshot(self.change.rounds.max(1), true).await?;
        }
        self.save_checkpoint(Phase::Validating).await?;
        self.hand_over_if_stopping()?;

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
        // The engine's own credential, fetched now because App tokens are short-lived; it goes
        // to git through environment config, never argv or the remote URL.
        let auth = forge
            .git_auth(&repo)
            .await
            .map_err(|e| forge_failure(e, Phase::Publishing))?;
        let push_git = match &auth {
            Some(auth) => git.with_config_env(&auth.env()),
            None => git.clone(),
        };
        // A short-lived App token exists only from here on: masked like the others.
        if let (Some(auth), Some(current)) = (&auth, self.events.redactor()) {
            let secrets: Vec<String> = auth
                .secrets()
                .iter()
                .map(|s| s.expose().to_string())
                .collect();
            match current.with_secrets(secrets) {
                Ok(more) => self.events.set_redactor(more),
                Err(e) => return Err(self.infra("cannot build the secret filter")(e.to_string())),
            }
        }
        let scrub = |text: String| match &auth {
            Some(auth) => auth.redact(&text),
            None => text,
        };
        let pushed = {
            let worktree = self.worktree()?;
            match worktree.push(&push_git, &repo.to_string()).await {
                Ok(sha) => sha,
                Err(WorkspaceError::PushRefused {
                    detail,
                    permission: true,
                    ..
                }) => {
                    return Err(fail(
                        EndReason::PermissionDenied,
                        Phase::Publishing,
                        format!("push refused: {}", scrub(detail)),
                    ));
                }
                Err(e) => {
                    return Err(fail(
                        EndReason::Infrastructure,
                        Phase::Publishing,
                        scrub(e.to_string()),
                    ));
                }
            }
        };
        let branch = self.worktree()?.branch().to_string();
        self.events.info(
            Some(Phase::Publishing),
            format!("pushed {} to {branch}", short_sha(&pushed)),
        );
        self.change.commit = Some(pushed.clone());
        if let Ok(diff) = self.worktree()?.diff(&git).await {
            self.change.diff = diff.patch;
            self.change.diff_stat = diff.stat;
            self.change.files_changed = diff.files;
        }
        // Stored before the checkpoint that names the push, so a run resumed after a crash
        // finds what the pull request description needs.
        if let Err(e) = self.engine.store.save_change(&self.redacted_change()).await {
            return Err(fail(
                EndReason::Infrastructure,
                Phase::Publishing,
                format!("cannot store the change: {e}"),
            ));
        }
        self.checkpoint.pushed_commit = Some(pushed);
        self.save_checkpoint(Phase::Publishing).await?;

        self.open_pull_request(forge.as_ref(), &repo).await?;
        Ok(EndReason::Succeeded)
    }

    /// For a run resumed after another worker died: when that worker had already pushed,
    /// takes over its checkpoint and stored change so only the pull request is left to do.
    async fn resume_after_push(&mut self) -> bool {
        let checkpoint = self.run.checkpoint.clone();
        if checkpoint.pushed_commit.is_none() {
            return false;
        }
        let change = match self.engine.store.change(self.run.id).await {
            Ok(Some(change)) if change.commit.is_some() && change.branch.is_some() => change,
            Ok(_) => return false,
            Err(e) => {
                tracing::warn!(run_id = self.run.id, error = %e, "cannot read the stored change");
                return false;
            }
        };
        self.checkpoint = checkpoint;
        self.change = change;
        self.usage = self.run.usage;
        true
    }

    /// Opens the pull request for the pushed branch, or adopts and updates the open one (this
    /// run before a crash, or an earlier run of the task), and records it.
    async fn open_pull_request(&mut self, forge: &dyn Forge, repo: &RepoUrl) -> Step<()> {
        let head = self.change.branch.clone().ok_or_else(|| {
            fail(
                EndReason::Infrastructure,
                Phase::Publishing,
                "no pushed branch to open a pull request for",
            )
        })?;
        let public_url = self.engine.config.public_url.trim_end_matches('/');
        let body = render_pr_body(&PrBody {
            task_id: self.task.id,
            run_number: self.run.number,
            summary: self.change.summary.clone(),
            instructions: self.task.instructions.clone(),
            files_changed: self.change.files_changed.clone(),
            diff_stat: self.change.diff_stat.clone(),
            checks: self.change.checks.clone(),
            rounds: self.change.rounds,
            usage: Some(self.usage),
            task_url: (!public_url.is_empty())
                .then(|| format!("{public_url}/tasks/{}", self.task.id)),
        });
        let spec = PullRequestSpec {
            repo: repo.clone(),
            base: self.task.base_branch.clone(),
            head,
            title: self.events.redact(&self.task.title),
            body: self.events.redact(&body),
            labels: Vec::new(),
        };
        let Some(pr) = forge
            .find_or_create_pull_request(&spec)
            .await
            .map_err(|e| forge_failure(e, Phase::Publishing))?
        else {
            // Plain git: the branch is the result; the review page is Nightshift's own.
            return Ok(());
        };
        self.events.emit(
            EventKind::Info,
            Some(Phase::Publishing),
            format!(
                "{} pull request #{}: {}",
                if pr.adopted {
                    "updated the open"
                } else {
                    "opened"
                },
                pr.number,
                pr.url
            ),
            serde_json::json!({"pr_number": pr.number, "pr_url": pr.url, "adopted": pr.adopted}),
        );
        self.checkpoint.pr_number = Some(pr.number);
        self.checkpoint.pr_url = Some(pr.url.clone());
        self.change.pr_number = Some(pr.number);
        self.change.pr_url = Some(pr.url);
        self.save_checkpoint(Phase::Publishing).await
    }

    /// The run's sandboxes for its workspace: built once the workspace exists.
    fn confinement(&self) -> Step<&RunConfinement> {
        self.confinement.as_ref().ok_or_else(|| {
            fail(
                EndReason::Infrastructure,
                self.phase,
                "the run's sandbox was not set up with its workspace",
            )
        })
    }

    /// Builds the sandboxes of the run's workspace, which must exist by now.
    fn confine(&self, redactor: nightshift_sandbox::Redactor) -> Step<RunConfinement> {
        let worktree = self.worktree()?;
        let home = self.run_dir.join("home");
        std::fs::create_dir_all(&home)
            .map_err(|e| self.infra("cannot create the run's home")(e.to_string()))?;
        RunConfinement::new(
            &self.engine.config,
            self.task.project_id,
            &self.task.agent,
            worktree,
            &home,
            redactor,
        )
        .map_err(|e| fail(EndReason::Infrastructure, self.phase, e))
    }

    /// The run's change with its secrets masked, as it is stored and shown.
    fn redacted_change(&self) -> GeneratedChange {
        let mut change = self.change.clone();
        let r = |text: &mut String| *text = self.events.redact(text);
        r(&mut change.diff);
        r(&mut change.diff_stat);
        r(&mut change.commit_message);
        change.files_changed.iter_mut().for_each(r);
        if let Some(summary) = &mut change.summary {
            r(summary);
        }
        for check in &mut change.checks {
            r(&mut check.command);
            r(&mut check.output);
        }
        change
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
        round: u32,
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
        request.env = self.agent_env.clone();
        // Kept outside the workspace so the raw output outlives it.
        request.raw_log = Some(logs.join("agent.jsonl"));
        // The turn budget is the run's: earlier rounds have spent part of it.
        let turns_left = limits.max_turns.saturating_sub(self.usage.turns);
        if turns_left == 0 {
            return Err(fail(
                EndReason::BudgetExceeded,
                Phase::Agent,
                format!(
                    "the run has used all {} turns of its budget before round {round}",
                    limits.max_turns
                ),
            ));
        }
        request.max_turns = Some(turns_left);
        let (tx, mut rx) = mpsc::channel::<AgentEvent>(256);
        // What the run spent outside this session's own reports: a resumed Codex thread
        // reports its earlier rounds' tokens again, so they are not counted twice.
        let mut spent = self.usage;
        if request.resume_session.is_some() && driver.resumed_tokens_are_cumulative() {
            spent.input_tokens = spent.input_tokens.saturating_sub(self.session_tokens.0);
            spent.output_tokens = spent.output_tokens.saturating_sub(self.session_tokens.1);
        }
        let run = run_with_budget(driver, request, limits, spent, tx, self.stop.clone());
        let events = self.events.clone();
        let forward = async {
            let mut progress = Phase::Agent.start_progress();
            while let Some(event) = rx.recv().await {
                events.agent(&event);
                match &event {
                    // Checkpointed at once: a worker that dies mid-session leaves the session
                    // id behind for whoever picks the run up.
                    AgentEvent::Started {
                        session_id: Some(id),
                        ..
                    } if self.checkpoint.agent_session_id.as_ref() != Some(id) => {
                        let mut checkpoint = self.checkpoint.clone();
                        checkpoint.agent_session_id = Some(id.clone());
                        let _ = self
                            .store_update(&RunUpdate {
                                checkpoint: Some(checkpoint),
                                ..Default::default()
                            })
                            .await;
                    }
                    // The run's usage is live, not only known when a session ends.
                    AgentEvent::Usage { usage } => {
                        let mut total = spent;
                        total.add(usage);
                        let _ = self
                            .store_update(&RunUpdate {
                                usage: Some(total),
                                ..Default::default()
                            })
                            .await;
                    }
                    _ => {}
                }
                if progress < 60 {
                    progress += 1;
                    if progress > self.progress.load(Ordering::Relaxed) {
                        let _ = self.progress(progress).await;
                    }
                }
            }
        };
        let (outcome, ()) = tokio::join!(run, forward);
        let outcome =
            outcome.map_err(|e| fail(EndReason::AgentFailed, Phase::Agent, e.to_string()))?;
        self.session_tokens = (outcome.usage.input_tokens, outcome.usage.output_tokens);
        self.usage = spent;
        self.usage.add(&outcome.usage);
        self.store_update(&RunUpdate {
            usage: Some(self.usage),
            ..Default::default()
        })
        .await?;
        if let Some(session) = &outcome.session_id {
            self.checkpoint.agent_session_id = Some(session.clone());
        }
        if let Some(summary) = outcome.summary.as_deref().map(str::trim)
            && !summary.is_empty()
        {
            // A later round's summary tells what it fixed; the first one what the change is.
            self.change.summary = Some(match self.change.summary.take() {
                Some(first) if round > 1 => {
                    format!("{first}\n\nRound {round}, after failing checks: {summary}")
                }
                _ => summary.to_string(),
            });
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
        // Setup reaches the registries the server allows; checks what the repository asked for.
        let hosts = if stages.contains(&Stage::Setup) {
            self.engine.config.confinement.setup_hosts.clone()
        } else {
            plan.network
                .iter()
                .filter_map(|h| nightshift_sandbox::AllowedHost::parse(h).ok())
                .collect()
        };
        let sandbox = self
            .confinement()?
            .with_hosts(&hosts)
            .map_err(|e| self.infra("cannot confine the checks")(e.to_string()))?;
        let runner = CheckRunner::new(sandbox, vec![("HOME".into(), home.display().to_string())]);
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
                        took(result.duration_ms)
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
            },
        };
        // Forge errors are built without credentials; this is the net under that promise.
        let secrets = self.engine.forge_secrets();
        let secrets: Vec<&nightshift_forge::Secret> = secrets.iter().collect();
        let message = message.map(|m| self.events.redact(&redact(&m, &secrets)));
        if let Some(message) = &message {
            self.events.error(phase, message.clone());
        }
        self.record_change().await;
        // Released before the end is recorded: whoever sees the run ended (or claims it again
        // from the queue, in the same directory) finds no workspace left behind.
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
        if reason == Some(EndReason::Succeeded)
            && let Some(number) = self.change.pr_number
            && let Ok(repo) = RepoUrl::parse(&self.task.repo)
        {
            tokio::spawn(follow_pull_request(
                self.engine.clone(),
                self.task.project_id,
                repo,
                self.run.id,
                number,
            ));
        }
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

    /// Stores what the run produced, including the uncommitted diff of a failed run.
    async fn record_change(&mut self) {
        let Some(worktree) = &self.worktree else {
            // A run resumed after its push has no workspace, only the change stored then.
            if self.change.commit.is_some()
                && let Err(e) = self.engine.store.save_change(&self.redacted_change()).await
            {
                tracing::error!(run_id = self.run.id, error = %e, "cannot store the generated change");
            }
            return;
        };
        // The checkout has been in the agent's hands: git is pinned to the mirror's side.
        let git = &worktree.git(&self.engine.git);
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

/// Follows a pull request after its run ended: stores `open · ci passing`-style statuses on
/// the run's change until the PR is closed or merged, or `ci_follow_for` has passed. Open PRs
/// are kept polling after CI settles so a PR closed by a person shows too.
async fn follow_pull_request(
    engine: Arc<Engine>,
    project_id: i64,
    repo: RepoUrl,
    run_id: i64,
    number: u64,
) {
    // The run's log is closed; retries here are not news to anyone.
    let forge = match engine
        .forge_config(project_id, &repo)
        .await
        .and_then(|config| {
            nightshift_forge::resolve(&repo, &config, nightshift_forge::ignore_retries())
                .map_err(|e| e.to_string())
        }) {
        Ok(forge) => forge,
        Err(e) => {
            tracing::warn!(run_id, error = %e, "cannot follow the pull request");
            return;
        }
    };
    let poll = engine.config.ci_poll;
    let until = tokio::time::Instant::now() + engine.config.ci_follow_for;
    let mut last: Option<String> = None;
    loop {
        match forge.pull_request_status(&repo, number).await {
            Ok(status) => {
                let text = describe_pr(&status);
                if last.as_deref() != Some(text.as_str()) {
                    match engine.store.change(run_id).await {
                        Ok(Some(mut change)) => {
                            change.ci_status = Some(text.clone());
                            if let Err(e) = engine.store.save_change(&change).await {
                                tracing::warn!(run_id, error = %e, "cannot store the CI status");
                            }
                        }
                        Ok(None) => return,
                        Err(e) => tracing::warn!(run_id, error = %e, "cannot read the change"),
                    }
                    last = Some(text);
                }
                if status.state != PrState::Open {
                    return;
                }
            }
            Err(e) => {
                tracing::warn!(run_id, pr = number, error = %e, "cannot read the pull request's status")
            }
        }
        if tokio::time::Instant::now() + poll > until {
            return;
        }
        tokio::time::sleep(poll).await;
    }
}

/// A pull request's state as people read it: `open · ci passing`, `merged`, `closed · ci failing`.
fn describe_pr(status: &PrStatus) -> String {
    let state = match status.state {
        PrState::Open => "open",
        PrState::Closed => "closed",
        PrState::Merged => "merged",
    };
    let ci = match status.ci {
        nightshift_forge::CiState::Pending => "ci pending",
        nightshift_forge::CiState::Passing => "ci passing",
        nightshift_forge::CiState::Failing => "ci failing",
        nightshift_forge::CiState::None => "no ci",
    };
    format!("{state} · {ci}")
}

/// A forge refusal as the run's end: missing access or a rejected credential is
/// `permission_denied`, anything else (an outage, retries exhausted) `infrastructure`.
fn forge_failure(e: ForgeError, phase: Phase) -> Failure {
    let reason = match e {
        ForgeError::PermissionDenied { .. } | ForgeError::Unauthorized { .. } => {
            EndReason::PermissionDenied
        }
        _ => EndReason::Infrastructure,
    };
    fail(reason, phase, e.to_string())
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

/// A check's duration as people read it: `340ms`, `12s`, `2m 5s`.
fn took(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format_duration(Duration::from_millis(ms))
    }
}

fn short_sha(sha: &str) -> &str {
    &sha[..sha.len().min(10)]
}
