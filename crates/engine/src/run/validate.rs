//! The validating phase: the repository's checks on the agent's change — formatters applied,
//! then lint and test — and what their verdict means: publish, back to the agent, or fail.
//! Running a set of checks (setup in `prepare`, the re-check after a rebase in `publish`)
//! lives here too.

use nightshift_checks::{CannotRun, CheckPlan, CheckRunner, ChecksError, LineTaken, Stage};
use nightshift_core::{CheckOutcome, CheckResult, EventKind, Phase, format_duration};

use super::agent::AgentPhase;
use super::{Halt, RunExecution, Step, Workspace, resume};
use crate::EngineError;

/// The change whose checks passed, in the workspace and not yet committed (publishing does).
pub(crate) struct Validated {
    /// The agent round that produced it.
    pub(crate) round: u32,
}

/// What the checks said about the agent's round.
pub(crate) enum Verdict {
    Passed(Validated),
    /// They passed, and the formatters left nothing of the change.
    Unchanged,
    /// Failed with rounds left: the agent gets another one with these.
    Failed(Vec<CheckResult>),
}

/// Checks the agent's latest round. When they pass, the change is checkpointed as validated so
/// a worker taking the run over publishes it without checking it again.
pub(crate) async fn checks(
    run: &mut RunExecution,
    workspace: &Workspace,
    plan: &CheckPlan,
    agent: &AgentPhase,
) -> Step<Verdict> {
    let round = agent.number();
    run.enter(Phase::Validating).await?;
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
    run.change.rounds = round;
    let failures: Vec<CheckResult> = results
        .iter()
        .filter(|r| r.outcome != CheckOutcome::Passed)
        .cloned()
        .collect();
    let names: Vec<String> = failures
        .iter()
        .map(|f| format!("{} `{}`", f.stage, f.command))
        .collect();
    // Machine-readable, so the UI can show each round's outcome without parsing text.
    let outcome = serde_json::json!({"round_outcome": {
        "round": round, "passed": failures.is_empty(), "failed": names,
    }});
    let events = run.events.clone();
    let said =
        |message: String| events.emit(EventKind::Info, Some(Phase::Validating), message, outcome);
    if failures.is_empty() {
        said(format!(
            "round {round}: all {} checks passed",
            results.len()
        ));
        if !workspace.has_changes(&run.engine).await? {
            return Ok(Verdict::Unchanged);
        }
        resume::save_snapshot(run, workspace, round, true).await?;
        run.save_checkpoint(Phase::Validating).await?;
        run.hand_over_if_stopping()?;
        return Ok(Verdict::Passed(Validated { round }));
    }
    if agent.is_last() {
        said(format!(
            "round {round}: {} failed; no verification rounds left",
            names.join(", ")
        ));
        // A program gone missing is not the checks' verdict on the change (see `baseline`).
        let path = workspace.confinement.checks_path();
        if let Some(blocked) = failures.iter().find_map(|f| CannotRun::of(f, &path)) {
            return Err(EngineError::CannotRun(Box::new(blocked)).into());
        }
        return Err(EngineError::ChecksFailed { failed: names }.into());
    }
    said(format!(
        "round {round}: {} failed; sending the failures back to the agent",
        names.join(", ")
    ));
    Ok(Verdict::Failed(failures))
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
