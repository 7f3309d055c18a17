//! The agent phase: the agent's sandbox and driver for the run, one session per round, the
//! prompt each round gets (the task, the failing checks, or "carry on" after a takeover), and
//! the run's spend, live, and the `verify` tool's calls (`verify`) as they happen.

use std::sync::atomic::Ordering;
use std::time::Duration;

use nightshift_agent::{
    AgentDriver, AgentEnd, AgentRequest, BudgetLimits, base_failures_prompt,
    compose_prompt_reading, feedback_prompt, guard_prompt, judge_prompt, run_with_budget,
    takeover_prompt,
};
use nightshift_checks::CheckPlan;
use nightshift_core::{AgentEvent, AgentKind, CheckResult, EndReason, EventKind, Phase};
use nightshift_store::RunUpdate;
use tokio::sync::mpsc;

use super::verify::VerifyTool;
use super::{Halt, RunExecution, Step, Workspace, resume, short_sha};
use crate::EngineError;
use crate::confinement::AgentSandbox;

/// Where the agent's rounds start.
pub(crate) struct FirstRound {
    pub(crate) round: u32,
    /// The round's result is in the workspace already (restored from a checkpoint): it is
    /// validated, not run again.
    pub(crate) restored: bool,
    /// The previous worker's agent session, continued here where the driver can.
    pub(crate) session: Option<String>,
}

/// Why the agent gets another round: what its last one was refused for.
pub(crate) enum Feedback {
    /// The repository's checks that failed.
    Checks(Vec<CheckResult>),
    /// The test-tampering guard's findings, one per line.
    Guard(Vec<String>),
    /// The judge's reasons for rejecting the change.
    Judge(Vec<String>),
    /// The conflict markers a rebase run's resolution left behind, `path:line`.
    Conflicts(Vec<String>),
}

/// What a round left in the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Round {
    Changed,
    /// The agent changed nothing: there is nothing to validate or push.
    Unchanged,
}

/// The agent for the length of the run's rounds.
pub(crate) struct AgentPhase {
    /// Its sandbox and environment; the model gateways live as long as this.
    sandbox: AgentSandbox,
    driver: Box<dyn AgentDriver>,
    /// The task as the agent is first told it.
    instructions: String,
    /// What the next session is told.
    prompt: String,
    round: u32,
    max_rounds: u32,
    restored: bool,
    /// The previous worker's session, continued in this worker's first session.
    taken_over: Option<String>,
    /// What a continued session is told the workspace holds.
    restored_to: String,
    /// The token totals the agent last reported for its session, as it reported them.
    session_tokens: (u64, u64),
    /// What the current round answers, for its summary: `after failing checks`.
    after: &'static str,
    /// The repository's checks as a tool the agent may call; `None` when there is none.
    verify: Option<VerifyTool>,
}

impl AgentPhase {
    pub(crate) async fn start(
        run: &mut RunExecution,
        workspace: &Workspace,
        plan: &CheckPlan,
        first: FirstRound,
    ) -> Step<AgentPhase> {
        let agents = &run.engine.config.agents;
        let sandbox = workspace.confinement.agent(run.task.agent.kind, agents)?;
        let driver = run
            .engine
            .driver(&run.task.agent, sandbox.sandbox.clone())
            .map_err(EngineError::Agent)?;
        let max_rounds = if driver.supports_resume() {
            1 + run.engine.config.verification_rounds
        } else {
            1
        };
        let instructions = match (&run.ci_report, &run.review, &run.run.follow_up) {
            (Some(report), _, Some(follow_up)) => super::follow_up::fix_ci_instructions(
                &run.task.instructions,
                follow_up.pr_number,
                report,
            ),
            (_, Some((comments, review)), Some(follow_up)) => {
                super::follow_up::address_review_instructions(
                    &run.task.instructions,
                    follow_up,
                    comments,
                    review,
                )
            }
            _ => run.task.instructions.clone(),
        };
        // A rebase run's agent resolves the conflicts its replay left.
        let instructions = match (&run.conflicts, &run.run.follow_up) {
            (Some(conflicts), Some(follow_up)) => super::rebase::conflict_instructions(
                &instructions,
                follow_up,
                &run.task.base_branch,
                conflicts,
            ),
            _ => instructions,
        };
        let instructions = match run.task.agent.kind {
            // A codemod gets the instructions as they are; an agent gets them in the frame,
            // told which checks already fail on the base.
            AgentKind::Command => instructions,
            _ if !run.failing_on_base.is_empty() => {
                compose_prompt_reading(
                    &instructions,
                    workspace.worktree.path(),
                    workspace.worktree.unchanged_tree(),
                ) + &base_failures_prompt(&run.failing_on_base)
            }
            _ => compose_prompt_reading(
                &instructions,
                workspace.worktree.path(),
                workspace.worktree.unchanged_tree(),
            ),
        };
        let mut prompt = instructions.clone();
        // Continued where the driver can; else the agent starts again (see `after_takeover`).
        let taken_over = first.session.filter(|_| driver.supports_resume());
        run.checkpoint.agent_session_id = taken_over.clone();
        let restored_to = if first.restored {
            format!("your result of round {}", first.round)
        } else {
            if taken_over.is_some() {
                prompt = "Carry on with the task from there, and reply with a short summary \
                          when you are done."
                    .to_string();
            } else if run.resumed {
                run.events.info(
                    Some(Phase::Preparing),
                    "no finished agent round to restore: starting again from a fresh workspace",
                );
            }
            format!(
                "the base commit {}",
                short_sha(workspace.worktree.base_commit())
            )
        };
        let verify = VerifyTool::new(
            run.engine.config.verify_tool.as_deref(),
            run.task.agent.kind,
            plan,
            workspace.worktree.path(),
            &run.home()?,
        );
        Ok(AgentPhase {
            sandbox,
            driver,
            instructions,
            prompt,
            round: first.round,
            max_rounds,
            restored: first.restored,
            taken_over,
            restored_to,
            session_tokens: (0, 0),
            after: "after failing checks",
            verify,
        })
    }

    /// The round whose result is validated next.
    pub(crate) fn number(&self) -> u32 {
        self.round
    }

    /// No verification round is left after this one.
    pub(crate) fn is_last(&self) -> bool {
        self.round >= self.max_rounds
    }

    /// The round's agent session (none when its result was restored), then the round's
    /// checkpoint.
    pub(crate) async fn round(
        &mut self,
        run: &mut RunExecution,
        workspace: &Workspace,
    ) -> Step<Round> {
        if std::mem::take(&mut self.restored) {
            return Ok(Round::Changed);
        }
        run.enter(Phase::Agent).await?;
        match self.taken_over.take() {
            Some(session) => {
                // Should the session not continue here, a new one needs the task too.
                let fresh = if self.round > 1 {
                    self.with_task(&self.prompt)
                } else {
                    self.instructions.clone()
                };
                let continued = takeover_prompt(&self.restored_to, &self.prompt);
                self.after_takeover(run, workspace, &session, &continued, &fresh)
                    .await?
            }
            None => {
                let prompt = self.prompt.clone();
                self.session(run, workspace, &prompt).await?
            }
        }
        let changed = workspace.has_changes(&run.engine).await?;
        if changed {
            resume::save_snapshot(run, workspace, self.round, false).await?;
        }
        run.save_checkpoint(Phase::Agent).await?;
        if !changed {
            run.events.info(
                Some(Phase::Agent),
                "the agent changed nothing: nothing to validate or push",
            );
            return Ok(Round::Unchanged);
        }
        run.hand_over_if_stopping()?;
        Ok(Round::Changed)
    }

    /// The next round: the agent is sent why its change was refused.
    pub(crate) fn feed_back(&mut self, run: &RunExecution, feedback: &Feedback) {
        self.prompt = match feedback {
            Feedback::Checks(failures) => feedback_prompt(failures),
            Feedback::Guard(findings) => guard_prompt(findings),
            Feedback::Judge(reasons) => judge_prompt(reasons),
            Feedback::Conflicts(markers) => super::rebase::markers_prompt(markers),
        };
        self.after = match feedback {
            Feedback::Checks(_) => "after failing checks",
            Feedback::Guard(_) => "after the test-tampering guard",
            Feedback::Judge(_) => "after the judge's review",
            Feedback::Conflicts(_) => "after leaving conflict markers",
        };
        if run.checkpoint.agent_session_id.is_none() {
            // A new session (the old one could not be continued here) needs the task too.
            self.prompt = self.with_task(&self.prompt);
        }
        self.round += 1;
    }

    fn with_task(&self, prompt: &str) -> String {
        format!(
            "{}\n\nA previous session already worked on this task in the workspace. {prompt}",
            self.instructions
        )
    }

    /// The first session of a run taken over in the middle of one: continues the previous
    /// worker's session, or — when it cannot continue here (its state stayed on the other
    /// machine, or the agent refuses it) — starts a new session with `fresh`.
    async fn after_takeover(
        &mut self,
        run: &mut RunExecution,
        workspace: &Workspace,
        session: &str,
        continued: &str,
        fresh: &str,
    ) -> Step<()> {
        run.events.emit(
            EventKind::Info,
            Some(Phase::Agent),
            format!("continuing agent session {session} of the previous worker"),
            serde_json::json!({"continued_session": session}),
        );
        match self.session(run, workspace, continued).await {
            Err(Halt::Failed(e)) if e.end_reason() == EndReason::AgentFailed => {
                run.events.info(
                    Some(Phase::Agent),
                    format!(
                        "agent session {session} cannot be continued on this worker ({e}): \
                         starting a new session"
                    ),
                );
                run.checkpoint.agent_session_id = None;
                self.session(run, workspace, fresh).await
            }
            other => other,
        }
    }

    /// One agent session with `prompt`, within what is left of the run's budget.
    async fn session(
        &mut self,
        run: &mut RunExecution,
        workspace: &Workspace,
        prompt: &str,
    ) -> Step<()> {
        let home = run.home()?;
        let limits = BudgetLimits::resolve(&run.task.budget, &run.engine.config.budget_defaults);
        let logs = run
            .engine
            .config
            .data_dir
            .join("logs")
            .join(run.run.id.to_string());
        std::fs::create_dir_all(&logs)
            .map_err(EngineError::io("cannot create the run's log directory"))?;
        let work = workspace.worktree.path();
        let mut request = AgentRequest::new(run.task.agent.clone(), work, home, prompt);
        request.resume_session = run.checkpoint.agent_session_id.clone();
        request.env = self.sandbox.env.clone();
        // Kept outside the workspace so the raw output outlives it.
        request.raw_log = Some(logs.join("agent.jsonl"));
        // The turn budget is the run's: earlier rounds have spent part of it.
        let turns_left = limits.max_turns.saturating_sub(run.usage.turns);
        if turns_left == 0 {
            return Err(EngineError::BudgetExceeded(format!(
                "the run has used all {} turns of its budget before round {}",
                limits.max_turns, self.round
            ))
            .into());
        }
        request.max_turns = Some(turns_left);
        if let Some(verify) = &self.verify {
            verify.clear();
            request.mcp_servers.push(verify.server());
        }
        let (tx, mut rx) = mpsc::channel::<AgentEvent>(256);
        // What the run spent outside this session's own reports: a resumed Codex thread
        // reports its earlier rounds' tokens again, so they are not counted twice.
        let mut spent = run.usage;
        if request.resume_session.is_some() && self.driver.resumed_tokens_are_cumulative() {
            spent.input_tokens = spent.input_tokens.saturating_sub(self.session_tokens.0);
            spent.output_tokens = spent.output_tokens.saturating_sub(self.session_tokens.1);
        }
        let session = run_with_budget(
            self.driver.as_ref(),
            request,
            limits,
            spent,
            tx,
            run.stop.clone(),
        );
        let watched = &*run;
        let forward = async {
            let mut progress = Phase::Agent.start_progress();
            while let Some(event) = rx.recv().await {
                watched.events.agent(&event).await;
                match &event {
                    // Checkpointed at once: a worker that dies mid-session leaves the session
                    // id behind for whoever picks the run up.
                    AgentEvent::Started {
                        session_id: Some(id),
                        ..
                    } if watched.checkpoint.agent_session_id.as_ref() != Some(id) => {
                        let mut checkpoint = watched.checkpoint.clone();
                        checkpoint.agent_session_id = Some(id.clone());
                        let _ = watched
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
                        let _ = watched
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
                    if progress > watched.progress.load(Ordering::Relaxed) {
                        let _ = watched.progress(progress).await;
                    }
                }
            }
        };
        // The tool's calls become events as they happen, and once more when the session ends.
        let (mut logged, round) = (0, self.round);
        let (outcome, ()) = {
            let ended = async { tokio::join!(session, forward) };
            tokio::pin!(ended);
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    done = &mut ended => break done,
                    _ = tick.tick(), if self.verify.is_some() => {
                        if let Some(verify) = self.verify.as_mut() {
                            logged = verify.drain(logged, round, &run.events);
                        }
                    }
                }
            }
        };
        if let Some(verify) = self.verify.as_mut() {
            verify.drain(logged, round, &run.events);
        }
        let outcome = outcome.map_err(EngineError::Agent)?;
        self.session_tokens = (outcome.usage.input_tokens, outcome.usage.output_tokens);
        crate::telemetry::model_usage(&outcome.usage);
        run.usage = spent;
        run.usage.add(&outcome.usage);
        run.store_update(&RunUpdate {
            usage: Some(run.usage),
            ..Default::default()
        })
        .await?;
        if let Some(session) = &outcome.session_id {
            run.checkpoint.agent_session_id = Some(session.clone());
        }
        if let Some(summary) = outcome.summary.as_deref().map(str::trim)
            && !summary.is_empty()
        {
            // A later round's summary tells what it fixed; the first one what the change is.
            let (round, after) = (self.round, self.after);
            run.change.summary = Some(match run.change.summary.take() {
                Some(first) if round > 1 => {
                    format!("{first}\n\nRound {round}, {after}: {summary}")
                }
                _ => summary.to_string(),
            });
        }
        match outcome.end {
            AgentEnd::Finished { success: true, .. } => Ok(()),
            AgentEnd::Finished {
                success: false,
                exit,
            } => Err(EngineError::AgentFailed(
                outcome
                    .error
                    .unwrap_or_else(|| format!("the agent failed ({exit})")),
            )
            .into()),
            AgentEnd::Stopped => Err(Halt::Stopped),
            AgentEnd::BudgetExceeded(reason) => Err(EngineError::BudgetExceeded(reason).into()),
        }
    }
}
