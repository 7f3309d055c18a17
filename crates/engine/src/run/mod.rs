//! One run through the pipeline, a module per phase. Each phase takes what the one before it
//! produced and hands on its own result; `pipeline` below is the whole sequence:
//!
//! ```text
//! resume::decide ─► ResumePoint ─► prepare (warm base, setup, baseline) ─► Prepared { workspace, plan, start }
//!       │ Pushed                                 │
//!       │       agent ⇄ validate (checks, review) ─► Validated ─► publish ─► Pushed ─► Published
//!       └──────────────────────────────────────────────────────────────────┘
//! conclude, whatever happened: the end recorded, the workspace released
//! ```
//!
//! Every phase ends with a checkpoint in the store, and a worker taking the run over starts at
//! the last one (see `resume`). A failure names the phase it happened in and ends the run with
//! its error's reason; a stop (cancel, timeout, lost lease, shutdown) kills the run's processes
//! before the run is marked.

mod agent;
mod baseline;
mod conclude;
mod follow_up;
mod prepare;
mod publish;
mod rebase;
mod resume;
mod review;
mod validate;
mod verify;
mod warm;
mod watch;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nightshift_core::{
    CheckResult, Checkpoint, EventKind, GeneratedChange, Phase, Run, Task, Usage,
};
use nightshift_store::{Claim, RunUpdate, StoreError};
use nightshift_workspace::{BaseLease, Worktree};
use tokio_util::sync::CancellationToken;

use crate::confinement::RunConfinement;
use crate::jobs::AbortOnDrop;
use crate::{Engine, EngineError, EventSink};

use self::agent::{AgentPhase, Round};
use self::prepare::{Prepared, Start};
use self::publish::Published;
use self::resume::{Checkout, ResumePoint};
use self::validate::Verdict;
use self::watch::StopCause;

/// Takes a claimed run through its phases and records how it ended.
pub(crate) async fn execute(
    engine: Arc<Engine>,
    claim: Claim,
    worker: String,
    shutdown: CancellationToken,
) {
    let mut run = RunExecution::new(engine, claim, worker, shutdown);
    // Aborted on drop too: a run whose worker was torn down must stop renewing its lease, or
    // no other worker could ever resume it.
    let watchdog = AbortOnDrop(tokio::spawn(watch::watch(
        run.engine.clone(),
        run.run.clone(),
        run.task.timeout_secs,
        run.worker.clone(),
        run.stop.clone(),
        run.cause.clone(),
        run.shutdown.clone(),
    )));
    let disk = AbortOnDrop(tokio::spawn(crate::limits::stop_over_disk(
        run.run_dir.clone(),
        run.engine.config.run_limits,
        run.events.clone(),
        {
            let (stop, cause) = (run.stop.clone(), run.cause.clone());
            move |message| {
                let mut slot = cause.lock().unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert(StopCause::OverLimit(message));
                stop.cancel();
            }
        },
    )));
    run.announce_takeover();
    // The run's checkout, from `prepare` until `conclude` records and removes it.
    let mut workspace = None;
    let result = if run.run.cancel_requested {
        run.set_cause(StopCause::Cancelled);
        Err(Failure::Stopped)
    } else {
        run.pipeline(&mut workspace).await
    };
    drop((watchdog, disk));
    run.conclude(workspace, result).await;
}

/// How a run that got to its end ended.
pub(crate) enum Outcome {
    /// The agent changed nothing (or the formatters undid it all): nothing to push.
    NoChanges,
    Published,
}

/// How a phase ended early.
pub(crate) enum Halt {
    Failed(EngineError),
    /// Stopped from outside; the cause is in the run's stop slot.
    Stopped,
}

impl From<EngineError> for Halt {
    fn from(e: EngineError) -> Self {
        Halt::Failed(e)
    }
}

/// What a phase's steps return.
pub(crate) type Step<T> = std::result::Result<T, Halt>;

/// How the pipeline ended early: a failure in a named phase, or a stop.
pub(crate) enum Failure {
    Failed { phase: Phase, error: EngineError },
    Stopped,
}

/// Names the phase a step's failure happened in.
trait During<T> {
    fn during(self, phase: Phase) -> Result<T, Failure>;
}

impl<T> During<T> for Step<T> {
    fn during(self, phase: Phase) -> Result<T, Failure> {
        self.map_err(|halt| match halt {
            Halt::Failed(error) => Failure::Failed { phase, error },
            Halt::Stopped => Failure::Stopped,
        })
    }
}

/// The run's checkout on its branch, and the sandboxes over it.
pub(crate) struct Workspace {
    worktree: Worktree,
    confinement: RunConfinement,
    /// The warm base under the run's layer, held so that it is not evicted meanwhile.
    base: Option<BaseLease>,
}

/// One run on this worker: what it was claimed as, and the records it builds as it goes.
pub(crate) struct RunExecution {
    engine: Arc<Engine>,
    task: Task,
    run: Run,
    /// The run was running under another worker before: it continues from its checkpoint.
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
    phase: Phase,
    /// When `phase` began, for its duration in the metrics.
    phase_since: Instant,
    /// The highest progress stored: a verification round re-enters `agent` without the
    /// percentage the UI shows going backwards.
    progress: AtomicU8,
    /// Where the run's checkout, HOME and scratch files live on this worker.
    run_dir: PathBuf,
    /// For a fix-CI run: what failed in the pull request's CI, read in preparing.
    ci_report: Option<nightshift_forge::CiReport>,
    /// For an address-review run: the review comments it answers, and what was asked.
    review: Option<(
        Vec<nightshift_forge::PrComment>,
        nightshift_core::ReviewRequest,
    )>,
    /// For a rebase run whose replay conflicts: what the agent resolves.
    conflicts: Option<rebase::Conflicts>,
    /// The checks that already failed on the base commit, before the agent.
    failing_on_base: Vec<CheckResult>,
    /// How the lockfiles and manifests differed from the base when setup last ran again.
    setup_changes: String,
}

impl RunExecution {
    fn new(engine: Arc<Engine>, claim: Claim, worker: String, shutdown: CancellationToken) -> Self {
        if !claim.resumed {
            let waited = nightshift_core::now_millis() - claim.run.created_at;
            crate::telemetry::queue_wait(Duration::from_millis(waited.max(0) as u64));
        }
        let (events, writer) =
            EventSink::start(engine.store.clone(), &claim.run, engine.config.run_limits);
        // The server's own secrets are masked from the first event; the run adds its project's
        // credential once it knows its repository.
        if let Ok(redactor) = engine.secret_filter(Vec::new()) {
            events.set_redactor(redactor);
        }
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
            phase_since: Instant::now(),
            // A run taken over keeps the progress people saw, so the bar never goes backwards.
            progress: AtomicU8::new(if claim.resumed { claim.run.progress } else { 0 }),
            task: claim.task,
            resumed: claim.resumed,
            handed_over: claim.handed_over,
            shutdown,
            run: claim.run,
            engine,
            worker,
            events,
            writer: Some(writer),
            stop: CancellationToken::new(),
            cause: Arc::new(Mutex::new(None)),
            run_dir,
            ci_report: None,
            review: None,
            conflicts: None,
            failing_on_base: Vec::new(),
            setup_changes: String::new(),
        }
    }

    /// The phases in order. Where the run starts is decided once (`ResumePoint`); each step's
    /// failure is named after the phase it belongs to.
    async fn pipeline(&mut self, workspace: &mut Option<Workspace>) -> Result<Outcome, Failure> {
        // preparing: the forge and push access first, so a run that could never publish
        // fails in seconds instead of after the agent's work.
        let target = prepare::target(self).await.during(Phase::Preparing)?;
        let from = match resume::decide(self).await.during(Phase::Preparing)? {
            ResumePoint::Fresh { session } => Checkout::Base { session },
            ResumePoint::AfterAgentRound(snapshot) | ResumePoint::Validated(snapshot) => {
                Checkout::Snapshot(snapshot)
            }
            // Pushed before the interruption: only the pull request is left.
            ResumePoint::Pushed(pushed) => {
                let Published = publish::after_takeover(self, &target, pushed)
                    .await
                    .during(Phase::Publishing)?;
                return Ok(Outcome::Published);
            }
        };
        follow_up::read_input(self, &target)
            .await
            .during(Phase::Preparing)?;
        let Prepared {
            workspace,
            plan,
            start,
        } = prepare::workspace(self, &target, from, workspace)
            .await
            .during(Phase::Preparing)?;
        // agent ⇄ validating, unless the restored change had passed its checks already.
        let validated = match start {
            Start::Validated(validated) => validated,
            // A rebase run: the branch already has the base, or replayed onto it cleanly.
            Start::UpToDate => return Ok(Outcome::NoChanges),
            Start::Rebased => rebase::recheck(self, workspace, &plan)
                .await
                .during(Phase::Validating)?,
            Start::Agent(first) => {
                let mut agent = AgentPhase::start(self, workspace, &plan, first)
                    .await
                    .during(Phase::Agent)?;
                loop {
                    let round = agent.round(self, workspace).await.during(Phase::Agent)?;
                    if round == Round::Unchanged {
                        return Ok(Outcome::NoChanges);
                    }
                    let verdict = validate::round(self, workspace, &plan, &agent)
                        .await
                        .during(Phase::Validating)?;
                    match verdict {
                        Verdict::Passed(validated) => break validated,
                        Verdict::Unchanged => return Ok(Outcome::NoChanges),
                        Verdict::Failed(feedback) => agent.feed_back(self, &feedback),
                    }
                }
            }
        };
        // publishing: commit, rebase onto a base that moved, push, pull request.
        let pushed = publish::push(self, &target, workspace, &plan, validated)
            .await
            .during(Phase::Publishing)?;
        let Published = publish::pull_request(self, &target, pushed)
            .await
            .during(Phase::Publishing)?;
        Ok(Outcome::Published)
    }

    fn announce_takeover(&self) {
        if !self.resumed {
            return;
        }
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

    fn set_cause(&self, cause: StopCause) {
        let mut slot = self.cause.lock().unwrap_or_else(|e| e.into_inner());
        slot.get_or_insert(cause);
    }

    fn cause(&self) -> Option<StopCause> {
        self.cause.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn check_stop(&self) -> Step<()> {
        if self.stop.is_cancelled() {
            Err(Halt::Stopped)
        } else {
            Ok(())
        }
    }

    async fn enter(&mut self, phase: Phase) -> Step<()> {
        self.check_stop()?;
        self.phase_ended(phase);
        self.phase = phase;
        self.events.emit(
            EventKind::Phase,
            Some(phase),
            phase.as_str(),
            serde_json::Value::Null,
        );
        self.progress(phase.start_progress()).await
    }

    /// Records how long the current phase took when the run moves to `next` (or ends: `None`).
    fn phase_ended(&mut self, next: impl Into<Option<Phase>>) {
        if next.into() != Some(self.phase) {
            crate::telemetry::phase_duration(self.phase, self.phase_since.elapsed());
            self.phase_since = Instant::now();
        }
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
    /// has it now), any other error fails it.
    fn under_lease(&self, written: Result<(), StoreError>, what: &str) -> Step<()> {
        match written {
            Ok(()) => Ok(()),
            Err(StoreError::LeaseLost { .. }) => {
                self.set_cause(StopCause::LeaseLost);
                self.stop.cancel();
                Err(Halt::Stopped)
            }
            Err(e) => Err(EngineError::record(what)(e).into()),
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
            return Err(Halt::Stopped);
        }
        Ok(())
    }

    /// The run's HOME, shared by setup, the agent and the checks; created on first use.
    fn home(&self) -> Step<PathBuf> {
        let home = self.run_dir.join("home");
        std::fs::create_dir_all(&home).map_err(EngineError::io("cannot create the run's home"))?;
        Ok(home)
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
        for finding in &mut change.guard {
            r(&mut finding.detail);
        }
        for verdict in &mut change.verdicts {
            verdict.reasons.iter_mut().for_each(r);
            if let Some(problem) = &mut verdict.problem {
                r(problem);
            }
        }
        change
    }

    async fn save_change(&self) -> Step<()> {
        self.engine
            .store
            .save_change(&self.redacted_change())
            .await
            .map_err(EngineError::record("cannot store the change"))?;
        Ok(())
    }
}

impl Workspace {
    /// Whether the checkout differs from its last commit.
    async fn has_changes(&self, engine: &Engine) -> Step<bool> {
        Ok(self
            .worktree
            .has_changes(&engine.git)
            .await
            .map_err(EngineError::workspace("cannot read the workspace"))?)
    }
}

/// The first characters of a commit id, as people quote it.
fn short_sha(sha: &str) -> &str {
    &sha[..sha.len().min(10)]
}
