//! The validating phase: the repository's checks on the agent's change — formatters applied,
//! then lint and test — then Nightshift's own review (`review`), and what the verdict means:
//! publish, back to the agent, or fail.
//! Running a set of checks (setup in `prepare`, the re-check after a rebase in `publish`)
//! lives here too.

use nightshift_checks::{CannotRun, CheckPlan, CheckRunner, ChecksError, LineTaken, Stage};
use nightshift_core::{CheckOutcome, CheckResult, EventKind, Phase, format_duration};

use super::agent::{AgentPhase, Feedback};
use super::review::{self, Rejection};
use super::{Halt, RunExecution, Step, Workspace, resume};
use crate::EngineError;

/// The change whose checks passed, in the workspace and not yet committed (publishing does).
pub(crate) struct Validated {
    /// The agent round that produced it.
    pub(crate) round: u32,
}

/// What validation said about the agent's round.
pub(crate) enum Verdict {
    Passed(Validated),
    /// They passed, and the formatters left nothing of the change.
    Unchanged,
    /// Refused with rounds left: the agent gets another one with this.
    Failed(Feedback),
}

/// Validates the agent's latest round: the repository's checks, then — once they pass — the
/// guard and the judge. When all pass, the change is checkpointed as validated so a worker
/// taking the run over publishes it without validating it again.
pub(crate) async fn round(
    run: &mut RunExecution,
    workspace: &Workspace,
    plan: &CheckPlan,
    agent: &AgentPhase,
) -> Step<Verdict> {
    let round = agent.number();
    run.enter(Phase::Validating).await?;
    run.change.rounds = round;
    if let Some(rejection) = super::rebase::unresolved(run, workspace) {
        return refuse(run, workspace, agent, rejection);
    }
    let mut results = super::baseline::setup_again(run, workspace, plan, round).await?;
    let checks = run_checks(
        run,
        workspace,
        plan,
        &[Stage::Format, Stage::Lint, Stage::Test],
        round,
    )
    .await?;
    results.extend(checks);
    let failures: Vec<CheckResult> = results
        .iter()
        .filter(|r| r.outcome != CheckOutcome::Passed)
        .cloned()
        .collect();
    let rejection = if failures.is_empty() {
        if !workspace.has_changes(&run.engine).await? {
            outcome(run, round, &[]).info(format!(
                "round {round}: all {} checks passed",
                results.len()
            ));
            return Ok(Verdict::Unchanged);
        }
        let diff = review::change_diff(run, workspace).await?;
        match review::guard(run, workspace, plan, &diff, round).await? {
            Some(rejection) => Some(rejection),
            None => review::judge(run, &diff, round).await?,
        }
    } else {
        let names: Vec<String> = failures
            .iter()
            .map(|f| format!("{} `{}`", f.stage, f.command))
            .collect();
        Some(Rejection {
            failed: names.clone(),
            feedback: Feedback::Checks(failures),
            error: EngineError::ChecksFailed { failed: names },
        })
    };
    let Some(rejection) = rejection else {
        outcome(run, round, &[]).info(format!(
            "round {round}: all {} checks passed",
            results.len()
        ));
        resume::save_snapshot(run, workspace, round, true).await?;
        run.save_checkpoint(Phase::Validating).await?;
        run.hand_over_if_stopping()?;
        return Ok(Verdict::Passed(Validated { round }));
    };
    refuse(run, workspace, agent, rejection)
}

/// A refused round: back to the agent with the feedback, or — no round left — the run's end.
fn refuse(
    run: &RunExecution,
    workspace: &Workspace,
    agent: &AgentPhase,
    rejection: Rejection,
) -> Step<Verdict> {
    let round = agent.number();
    let said = outcome(run, round, &rejection.failed);
    let what = rejection.failed.join(", ");
    if agent.is_last() {
        said.info(format!(
            "round {round}: {what} failed; no verification rounds left"
        ));
        // A program gone missing is not the checks' verdict on the change (see `baseline`).
        if let Feedback::Checks(failures) = &rejection.feedback {
            let path = workspace.confinement.checks_path();
            if let Some(blocked) = failures.iter().find_map(|f| CannotRun::of(f, &path)) {
                return Err(EngineError::CannotRun(Box::new(blocked)).into());
            }
        }
        return Err(rejection.error.into());
    }
    said.info(format!(
        "round {round}: {what} failed; sending the failures back to the agent"
    ));
    Ok(Verdict::Failed(rejection.feedback))
}

/// The round's outcome as the log says it: machine-readable too, so the UI can show each
/// round without parsing text.
struct Outcome<'a> {
    run: &'a RunExecution,
    data: serde_json::Value,
}

fn outcome<'a>(run: &'a RunExecution, round: u32, failed: &[String]) -> Outcome<'a> {
    Outcome {
        run,
        data: serde_json::json!({"round_outcome": {
            "round": round, "passed": failed.is_empty(), "failed": failed,
        }}),
    }
}

impl Outcome<'_> {
    fn info(self, message: String) {
        self.run
            .events
            .emit(EventKind::Info, Some(Phase::Validating), message, self.data);
    }
}

/// Runs every command of `stages` (all of them, so the report is complete) and records each
/// on the run's change and in its log.
pub(crate) async fn run_checks(
    run: &mut RunExecution,
    workspace: &Workspace,
    plan: &CheckPlan,
    stages: &[Stage],
    round: u32,
) -> Step<Vec<CheckResult>> {
    let work = workspace.worktree.path().to_path_buf();
    let home = run.home()?;
    let hosts = crate::baseline::hosts_for(
        stages.contains(&Stage::Setup),
        plan,
        &run.engine.config.confinement.setup_hosts,
    );
    let sandbox = workspace
        .confinement
        .with_hosts(&hosts)
        .map_err(EngineError::sandbox("cannot confine the checks"))?;
    let runner = CheckRunner::new(sandbox, vec![("HOME".into(), home.display().to_string())]);
    let total: usize = stages.iter().map(|s| plan.commands(*s).len()).sum();
    let mut results = Vec::new();
    for stage in stages {
        for command in plan.commands(*stage) {
            run.check_stop()?;
            let phase = run.phase;
            run.events.emit(
                EventKind::Check,
                Some(phase),
                format!("{} `{command}`", stage.as_str()),
                serde_json::json!({"stage": stage.as_str(), "command": command, "status": "running", "round": round}),
            );
            let events = run.events.clone();
            let mut on_line = |line: &nightshift_sandbox::OutputLine| -> LineTaken {
                let events = events.clone();
                let data =
                    serde_json::json!({"stream": line.stream.as_str(), "stage": stage.as_str()});
                let text = line.text.clone();
                Box::pin(
                    async move { events.output(EventKind::Log, Some(phase), text, data).await },
                )
            };
            let mut result = match runner
                .run(*stage, command, &work, round, &run.stop, &mut on_line)
                .await
            {
                Ok(result) => result,
                Err(ChecksError::Stopped) => return Err(Halt::Stopped),
                Err(e) => return Err(EngineError::Checks(e).into()),
            };
            result.failed_on_base = run
                .failing_on_base
                .iter()
                .any(|b| b.stage == result.stage && b.command == result.command);
            run.events.emit(
                EventKind::Check,
                Some(phase),
                format!(
                    "{} `{command}` {} in {}{}",
                    stage.as_str(),
                    result.outcome.as_str(),
                    took(result.duration_ms),
                    if result.failed_on_base {
                        " (it failed on the base too: a pre-existing failure)"
                    } else {
                        ""
                    }
                ),
                serde_json::to_value(&result).unwrap_or_default(),
            );
            run.change.checks.push(result.clone());
            results.push(result);
            if phase == Phase::Validating {
                let step = (results.len() * 19 / total.max(1)) as u8;
                run.progress(Phase::Validating.start_progress() + step)
                    .await?;
            }
        }
    }
    Ok(results)
}

/// A check's duration as people read it: `340ms`, `12s`, `2m 5s`.
fn took(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format_duration(std::time::Duration::from_millis(ms))
    }
}
