//! Nightshift's own review of a change whose checks passed: the test-tampering guard (what the
//! change does to the tests and the checks), then the judge (the change against the task).
//! Either refuses the round with feedback for the agent, and with the error that ends the run
//! when no round is left.

use std::time::Instant;

use nightshift_checks::CheckPlan;
use nightshift_checks::guard::{self, Contents, GuardInput};
use nightshift_core::{CheckOutcome, CheckResult, EventKind, Phase};

use super::agent::Feedback;
use super::{RunExecution, Step, Workspace};
use crate::EngineError;

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

/// The guard on the round's change. Its findings refuse the round, unless the task allows test
/// changes: then they are kept on the change and listed in the pull request.
pub(crate) async fn guard(
    run: &mut RunExecution,
    workspace: &Workspace,
    plan: &CheckPlan,
    round: u32,
) -> Step<Option<Rejection>> {
    run.check_stop()?;
    let started = Instant::now();
    let worktree = &workspace.worktree;
    let git = &run.engine.git;
    let file = run.run_dir.join("review.diff");
    worktree
        .write_review_diff(git, &file)
        .await
        .map_err(EngineError::workspace(
            "cannot read the change for the guard",
        ))?;
    let bytes = std::fs::read(&file).map_err(EngineError::io("cannot read the change"))?;
    let _ = std::fs::remove_file(&file);
    let diff = String::from_utf8_lossy(&bytes);
    let needed = guard::files_needed(&diff);
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
        diff: &diff,
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
