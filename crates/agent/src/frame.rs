//! The prompt frame every agent receives around the task's instructions (with the checks that
//! already fail on the base), and the feedback prompt of a verification round. The frame text lives in `frame.md` so it is reviewed as prose.

use std::fmt::Write;
use std::path::Path;

use nightshift_core::{CheckOutcome, CheckResult};

const FRAME: &str = include_str!("frame.md");
/// Check output beyond this is cut from the front: the end of a log holds the failure.
const MAX_CHECK_OUTPUT: usize = 6 * 1024;
/// Less of a pre-existing failure's output goes into the first prompt, which holds the task.
const MAX_BASE_OUTPUT: usize = 2 * 1024;

/// The first prompt of a session: the frame with the workspace, the repository's own agent
/// instruction files (named, not inlined: the agent reads them itself), and the instructions.
pub fn compose_prompt(instructions: &str, workspace: &Path) -> String {
    compose_prompt_reading(instructions, workspace, workspace)
}

/// [`compose_prompt`] for a workspace the agent sees at `workspace` whose files Nightshift
/// reads at `files` (a warm base under the run's layer).
pub fn compose_prompt_reading(instructions: &str, workspace: &Path, files: &Path) -> String {
    let found: Vec<&str> = ["AGENTS.md", "CLAUDE.md"]
        .into_iter()
        .filter(|f| files.join(f).is_file())
        .collect();
    let conventions = if found.is_empty() {
        String::new()
    } else {
        format!(
            "- This repository documents its conventions in {}: read and follow them.\n",
            found.join(" and ")
        )
    };
    FRAME
        .replace("{workspace}", &workspace.display().to_string())
        .replace("{conventions}", &conventions)
        .replace("{instructions}", instructions.trim())
}

/// The prompt of a verification round: which checks failed and the end of their output.
pub fn feedback_prompt(failures: &[CheckResult]) -> String {
    let mut prompt = String::from(
        "The repository's checks failed on your change. Fix the causes below, keeping the change to \
         what the task asked for, and do not skip or weaken tests.\n",
    );
    for check in failures
        .iter()
        .filter(|c| c.outcome != CheckOutcome::Passed)
    {
        let _ = write!(
            prompt,
            "\n## {} check `{}` failed: it {}\n```\n{}\n```\n",
            check.stage,
            check.command,
            check.exit_text(),
            tail(check.output.trim(), MAX_CHECK_OUTPUT)
        );
    }
    prompt
        .push_str("\nWhen the checks would pass, reply with a short summary of what you fixed.\n");
    prompt
}

/// The prompt of a round after the test-tampering guard found the change passing the checks
/// by weakening them: each finding, one per line (`path:line: what`).
pub fn guard_prompt(findings: &[String]) -> String {
    let mut prompt = String::from(
        "The repository's checks pass on your change, but Nightshift's test-tampering guard found \
         that the change weakens them instead of fixing the code: tests removed or skipped, \
         assertions removed, linters silenced, or the checks' own configuration edited.\n\n",
    );
    for finding in findings {
        let _ = writeln!(prompt, "- {finding}");
    }
    prompt.push_str(
        "\nUndo each of these: restore the tests and the configuration as they were, and fix the \
         code so that the checks pass on their own. When you are done, reply with a short summary \
         of what you changed.\n",
    );
    prompt
}

/// The prompt of a round after the judge rejected the change, with its reasons.
pub fn judge_prompt(reasons: &[String]) -> String {
    let mut prompt =
        String::from("A reviewer compared your change with the task and rejected it:\n\n");
    for reason in reasons {
        let _ = writeln!(prompt, "- {reason}");
    }
    prompt.push_str(
        "\nRevise the change so that it does what the task asks and nothing else: revert what the \
         task did not ask for and finish what it did. When you are done, reply with a short \
         summary of what you changed.\n",
    );
    prompt
}

/// What a session is told, after the task, about checks that already fail on the unchanged
/// base commit: not the agent's doing, yet they must pass before anything is pushed.
pub fn base_failures_prompt(failures: &[CheckResult]) -> String {
    let mut prompt = String::from(
        "\n\nBefore this session Nightshift ran the repository's checks on the unchanged base \
         commit, and these already fail there. A pull request is opened only when every check \
         passes, these included: make them pass as part of your change, with the smallest fix \
         that does it.\n",
    );
    for check in failures
        .iter()
        .filter(|c| c.outcome != CheckOutcome::Passed)
    {
        let _ = write!(
            prompt,
            "\n## {} check `{}` already fails on the base: it {}\n```\n{}\n```\n",
            check.stage,
            check.command,
            check.exit_text(),
            tail(check.output.trim(), MAX_BASE_OUTPUT)
        );
    }
    prompt
}

/// The prompt that continues a session whose worker stopped in the middle of it, on the worker
/// that took the run over: the session remembers edits the workspace no longer has, so it is
/// told what the workspace holds (`restored`) before it is asked for `next`.
pub fn takeover_prompt(restored: &str, next: &str) -> String {
    format!(
        "Your session was interrupted: the worker running it stopped, and another worker continues \
         it. The workspace was restored to {restored}; anything you changed after that is gone, so \
         look at the files again before you go on.\n\n{next}"
    )
}

fn tail(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("… ({start} bytes cut)\n{}", &text[start..])
}
