//! Nightshift's own review of a change whose checks passed: the test-tampering guard (what the
//! change does to the tests and the checks), then the judge (the change against the task).
//! Either refuses the round with feedback for the agent, and with the error that ends the run
//! when no round is left.

use std::time::Instant;

use nightshift_agent::BudgetLimits;
use nightshift_checks::CheckPlan;
use nightshift_checks::guard::{self, Contents, GuardInput};
use nightshift_core::{
    CheckOutcome, CheckResult, EventKind, JudgeDecision, JudgeVerdict, Phase, Usage,
};
use nightshift_store::RunUpdate;

use super::agent::Feedback;
use super::{Halt, RunExecution, Step, Workspace};
use crate::EngineError;
use crate::judge::{self, OnJudgeError};

/// Files the guard reads whole are small configuration and source files; larger ones are
/// read from the diff alone.
const MAX_CONTENT_BYTES: u64 = 1024 * 1024;

/// Why a round is refused.
pub(crate) struct Rejection {
    /// What refused it, for the log: `test `sh test.sh``, `the test-tampering guard (2 findings)`.
    pub(crate) failed: Vec<String>,
    pub(crate) feedback: Feedback,
    /// How the run ends when no round is left.
    pub(crate) error: EngineError,
}

/// The round's change against its base, as text: what the guard and the judge read.
pub(crate) async fn change_diff(run: &RunExecution, workspace: &Workspace) -> Step<String> {
    let file = run.run_dir.join("review.diff");
    workspace
        .worktree
        .write_review_diff(&run.engine.git, &file)
        .await
        .map_err(EngineError::workspace("cannot read the change for review"))?;
    let bytes = std::fs::read(&file).map_err(EngineError::io("cannot read the change"))?;
    let _ = std::fs::remove_file(&file);
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The guard on the round's change. Its findings refuse the round, unless the task allows test
/// changes: then they are kept on the change and listed in the pull request.
pub(crate) async fn guard(
    run: &mut RunExecution,
    workspace: &Workspace,
    plan: &CheckPlan,
    diff: &str,
    round: u32,
) -> Step<Option<Rejection>> {
    run.check_stop()?;
    let started = Instant::now();
    let worktree = &workspace.worktree;
    let git = &run.engine.git;
    let needed = guard::files_needed(diff);
    let mut contents = Contents::default();
    for path in needed.base {
        if let Some(text) = worktree
            .base_text(git, &path)
            .await
            .map_err(EngineError::workspace("cannot read the base for the guard"))?
        {
            contents.insert_base(path, text);
        }
    }
    for path in needed.change {
        let file = worktree.path().join(&path);
        if std::fs::metadata(&file).is_ok_and(|m| m.len() <= MAX_CONTENT_BYTES)
            && let Ok(text) = std::fs::read_to_string(&file)
        {
            contents.insert_change(path, text);
        }
    }
    let check_files = guard::check_files(plan);
    let report = guard::inspect(&GuardInput {
        diff,
        check_files: &check_files,
        contents: &contents,
    });
    let lines = report.lines();
    let allowed = !report.passed() && run.task.allow_test_changes;
    let result = CheckResult {
        stage: "guard".into(),
        command: "test-tampering guard".into(),
        outcome: if report.passed() || allowed {
            CheckOutcome::Passed
        } else {
            CheckOutcome::Failed
        },
        exit_code: None,
        signal: None,
        duration_ms: started.elapsed().as_millis() as u64,
        output: lines.join("\n"),
        round,
        failed_on_base: false,
    };
    let message = match (report.passed(), allowed) {
        (true, _) => format!(
            "guard: the change leaves the tests and the checks as they were ({} ms)",
            result.duration_ms
        ),
        (false, true) => format!(
            "guard: {} finding(s), allowed by the task and listed in the pull request:\n{}",
            lines.len(),
            lines.join("\n")
        ),
        (false, false) => format!(
            "guard: the change weakens the tests or the checks:\n{}",
            lines.join("\n")
        ),
    };
    run.events.emit(
        EventKind::Check,
        Some(Phase::Validating),
        message,
        serde_json::json!({"guard": {
            "round": round,
            "findings": report.findings,
            "omitted": report.omitted,
            "left_alone": report.left_alone,
            "allowed": allowed,
            "duration_ms": result.duration_ms,
        }}),
    );
    run.change.checks.push(result);
    let passed = report.passed();
    run.change.guard = report.findings;
    if passed || allowed {
        return Ok(None);
    }
    Ok(Some(Rejection {
        failed: vec![format!(
            "the test-tampering guard ({} finding{})",
            lines.len(),
            if lines.len() == 1 { "" } else { "s" }
        )],
        feedback: Feedback::Guard(lines.clone()),
        error: EngineError::TestTampering { findings: lines },
    }))
}

/// The judge on the round's change, when the server has one and the project keeps it on. A
/// rejection refuses the round; a judge that gives no verdict is handled as the server's
/// `on_error` says. Its tokens count toward the task's budget.
pub(crate) async fn judge(
    run: &mut RunExecution,
    diff: &str,
    round: u32,
) -> Step<Option<Rejection>> {
    let Some(config) = run.engine.config.judge.clone() else {
        return Ok(None);
    };
    let settings = run
        .engine
        .store
        .project_settings(run.task.project_id)
        .await
        .map_err(EngineError::record("cannot read the project's settings"))?;
    if !settings.judge {
        run.events.info(
            Some(Phase::Validating),
            "judge: switched off for this project",
        );
        return Ok(None);
    }
    run.check_stop()?;
    run.events.info(
        Some(Phase::Validating),
        format!(
            "judge: reviewing the change against the task ({} {})",
            config.provider.as_str(),
            config.model
        ),
    );
    let stat = stat(diff);
    let change = judge::Change {
        instructions: &run.task.instructions,
        summary: run.change.summary.as_deref(),
        diff_stat: &stat,
        diff,
    };
    let Some(review) = judge::review(&config, &run.engine.config.agents, &change, &run.stop).await
    else {
        return Err(Halt::Stopped);
    };
    run.usage.add(&review.usage);
    run.store_update(&RunUpdate {
        usage: Some(run.usage),
        ..Default::default()
    })
    .await?;
    let (decision, reasons, problem) = match review.verdict {
        Ok((decision, reasons)) => (decision, reasons, None),
        Err(problem) => match config.on_error {
            OnJudgeError::Fail => {
                run.events.emit(
                    EventKind::Check,
                    Some(Phase::Validating),
                    format!("judge: no verdict ({problem}); on_error = \"fail\" ends the run"),
                    serde_json::json!({"judge": {"round": round, "problem": problem, "policy": "fail"}}),
                );
                return Err(EngineError::JudgeUnavailable(problem).into());
            }
            OnJudgeError::Approve => (JudgeDecision::Approve, Vec::new(), Some(problem)),
            OnJudgeError::Reject => (
                JudgeDecision::Reject,
                vec![format!(
                    "The reviewer gave no verdict ({problem}). Check the change against the \
                     task once more: keep what it asks for, revert anything else."
                )],
                Some(problem),
            ),
        },
    };
    let verdict = JudgeVerdict {
        round,
        decision,
        reasons,
        provider: config.provider.as_str().to_string(),
        model: config.model.clone(),
        problem,
        usage: review.usage,
    };
    let said = match (&verdict.problem, verdict.approved()) {
        (None, true) => "approved the change".to_string(),
        (None, false) => "rejected the change".to_string(),
        (Some(problem), _) => format!(
            "no verdict ({problem}); on_error = \"{}\" {} it",
            config.on_error.as_str(),
            if verdict.approved() {
                "approves"
            } else {
                "rejects"
            }
        ),
    };
    let listed: String = verdict.reasons.iter().map(|r| format!("\n- {r}")).collect();
    run.events.emit(
        EventKind::Check,
        Some(Phase::Validating),
        format!("judge: {said}{listed}"),
        serde_json::json!({"judge": verdict}),
    );
    run.change.verdicts.push(verdict.clone());
    let limits = BudgetLimits::resolve(&run.task.budget, &run.engine.config.budget_defaults);
    if let Some(reason) = limits.exceeded(&Usage::default(), &run.usage) {
        return Err(
            EngineError::BudgetExceeded(format!("with the judge's review, {reason}")).into(),
        );
    }
    if verdict.approved() {
        return Ok(None);
    }
    Ok(Some(Rejection {
        failed: vec!["the judge".to_string()],
        feedback: Feedback::Judge(verdict.reasons.clone()),
        error: EngineError::JudgeRejected {
            reasons: verdict.reasons,
        },
    }))
}

/// The files of the change with their lines, as the judge reads the change's outline.
fn stat(diff: &str) -> String {
    guard::changed_files(diff)
        .iter()
        .map(|f| {
            let what = if f.binary {
                "binary".to_string()
            } else {
                format!("+{} -{}", f.added, f.removed)
            };
            match &f.moved_from {
                Some(from) => format!("{from} → {} | {what}", f.path),
                None => format!("{} | {what}", f.path),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
