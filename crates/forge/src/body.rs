//! The pull request description: what the agent did, how the repository's own checks proved
//! it, what Nightshift's review said (the test changes the task allowed, the judge's verdicts),
//! what it cost, and a hidden marker tying the PR to its task and run.

use nightshift_core::{CheckOutcome, CheckResult, GuardFinding, JudgeVerdict, Usage};

/// Forges cap descriptions (GitHub at 65,536 characters); long parts are cut to stay below.
const MAX_BODY_CHARS: usize = 60_000;
const MAX_SECTION_CHARS: usize = 12_000;

/// Everything the PR description shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PrBody {
    pub task_id: i64,
    pub run_number: i64,
    pub summary: Option<String>,
    pub instructions: String,
    pub files_changed: Vec<String>,
    /// `git diff --stat` output.
    pub diff_stat: String,
    pub checks: Vec<CheckResult>,
    /// Verification rounds the agent needed (1 = the checks passed the first time).
    pub rounds: u32,
    /// What the test-tampering guard found on a change whose task allows test changes.
    pub guard: Vec<GuardFinding>,
    /// The judge's verdicts, oldest first.
    pub verdicts: Vec<JudgeVerdict>,
    pub usage: Option<Usage>,
    /// The task's page in Nightshift, when the server has a public URL.
    pub task_url: Option<String>,
}

/// The hidden marker that ties a PR to its task and run: `<!-- nightshift:task=7 run=2 -->`.
pub fn task_marker(task_id: i64, run_number: i64) -> String {
    format!("<!-- nightshift:task={task_id} run={run_number} -->")
}

/// Renders the PR description as Markdown, marker last.
pub fn render_pr_body(input: &PrBody) -> String {
    let mut out = String::new();
    out.push_str("## Summary\n\n");
    match input
        .summary
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(summary) => out.push_str(&cut(summary, MAX_SECTION_CHARS)),
        None => out.push_str("_The agent gave no summary._"),
    }
    out.push_str("\n\n## Instructions\n\n");
    for line in cut(input.instructions.trim(), MAX_SECTION_CHARS).lines() {
        out.push_str("> ");
        out.push_str(line);
        out.push('\n');
    }

    out.push_str(&format!(
        "\n## Files changed ({})\n\n",
        input.files_changed.len()
    ));
    if !input.diff_stat.trim().is_empty() {
        // A fence longer than any backtick run inside keeps the stat from breaking out.
        let fence = "`".repeat(longest_backtick_run(&input.diff_stat).max(2) + 1);
        out.push_str(&format!(
            "{fence}\n{}\n{fence}\n",
            cut(input.diff_stat.trim_end(), MAX_SECTION_CHARS)
        ));
    } else {
        for file in &input.files_changed {
            out.push_str(&format!("- {}\n", code(file)));
        }
    }

    out.push_str("\n## Checks\n\n");
    if input.checks.is_empty() {
        out.push_str("_No checks ran._\n");
    } else {
        out.push_str("| Stage | Command | Outcome | Duration |\n| --- | --- | --- | --- |\n");
        for check in &input.checks {
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                cell(&check.stage),
                code(&check.command),
                outcome(check),
                duration(check.duration_ms)
            ));
        }
        if input.checks.iter().any(|c| c.failed_on_base) {
            out.push_str(
                "\nA check marked _failed on the base_ already failed on the base branch before \
                 this change: a pre-existing failure, which this change makes pass.\n",
            );
        }
    }
    let rounds = input.rounds.max(1);
    out.push_str(&format!(
        "\nVerified in {rounds} round{}.\n",
        if rounds == 1 { "" } else { "s" }
    ));

    if !input.guard.is_empty() {
        out.push_str(
            "\n## Test changes\n\nThe task allows changes to its tests and checks; the \
             test-tampering guard lists them for review:\n\n",
        );
        for finding in &input.guard {
            out.push_str(&format!(
                "- {} {}: {}\n",
                code(&format!("{}:{}", finding.path, finding.line)),
                finding.kind.label(),
                cell(&finding.detail)
            ));
        }
    }

    if !input.verdicts.is_empty() {
        out.push_str("\n## Judge\n\n");
        for verdict in &input.verdicts {
            out.push_str(&format!(
                "- Round {}: {}",
                verdict.round,
                if verdict.approved() {
                    "✅ approved"
                } else {
                    "❌ rejected"
                }
            ));
            if let Some(problem) = &verdict.problem {
                out.push_str(&format!(" by policy (no verdict: {})", cell(problem)));
            }
            out.push_str(&format!(" — {} `{}`\n", verdict.provider, verdict.model));
            for reason in &verdict.reasons {
                out.push_str(&format!("  - {}\n", cell(reason)));
            }
        }
    }

    if let Some(usage) = &input.usage {
        out.push_str(&format!(
            "\n## Usage\n\n{} input + {} output tokens, {} turns, ${:.2}\n",
            usage.input_tokens, usage.output_tokens, usage.turns, usage.cost_usd
        ));
    }

    out.push_str("\n---\n");
    match &input.task_url {
        Some(url) => out.push_str(&format!(
            "Opened by Nightshift for [task {}]({url}), run {}.\n",
            input.task_id, input.run_number
        )),
        None => out.push_str(&format!(
            "Opened by Nightshift for task {}, run {}.\n",
            input.task_id, input.run_number
        )),
    }
    let mut out = cut(&out, MAX_BODY_CHARS);
    out.push('\n');
    out.push_str(&task_marker(input.task_id, input.run_number));
    out.push('\n');
    out
}

fn outcome(check: &CheckResult) -> String {
    let outcome = match check.outcome {
        CheckOutcome::Passed => "✅ passed",
        CheckOutcome::Failed => "❌ failed",
        CheckOutcome::TimedOut => "⏱ timed out",
    };
    if check.failed_on_base {
        format!("{outcome} (_failed on the base_)")
    } else {
        outcome.to_string()
    }
}

fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{}m {}s", ms / 60_000, ms / 1000 % 60)
    }
}

/// A table cell: pipes escaped and newlines flattened, or the row breaks.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

/// Inline code that survives backticks inside the text.
fn code(text: &str) -> String {
    let fence = "`".repeat(longest_backtick_run(text) + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    cell(&format!("{fence}{pad}{text}{pad}{fence}"))
}

fn longest_backtick_run(text: &str) -> usize {
    text.split(|c| c != '`').map(str::len).max().unwrap_or(0)
}

fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let kept: String = text.chars().take(max).collect();
    format!("{kept}\n\n_… cut to {max} characters._")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sections_table_and_marker() {
        let body = render_pr_body(&PrBody {
            task_id: 7,
            run_number: 2,
            summary: Some("Renamed `foo` to `bar`.".into()),
            instructions: "Rename foo\nto bar".into(),
            files_changed: vec!["src/lib.rs".into()],
            diff_stat: " src/lib.rs | 2 +-\n 1 file changed".into(),
            checks: vec![
                CheckResult {
                    stage: "test".into(),
                    command: "cargo test | tee log".into(),
                    outcome: CheckOutcome::Passed,
                    exit_code: Some(0),
                    signal: None,
                    duration_ms: 1500,
                    output: String::new(),
                    round: 1,
                    failed_on_base: false,
                },
                CheckResult {
                    stage: "lint".into(),
                    command: "cargo clippy".into(),
                    outcome: CheckOutcome::Passed,
                    exit_code: Some(0),
                    signal: None,
                    duration_ms: 300,
                    output: String::new(),
                    round: 1,
                    failed_on_base: true,
                },
            ],
            rounds: 2,
            guard: vec![GuardFinding {
                kind: nightshift_core::GuardKind::TestFileRemoved,
                path: "tests/test_old.py".into(),
                line: 1,
                detail: "deleted (2 tests)".into(),
            }],
            verdicts: vec![JudgeVerdict {
                round: 2,
                decision: nightshift_core::JudgeDecision::Approve,
                reasons: vec!["Renames foo as asked and nothing else.".into()],
                provider: "anthropic".into(),
                model: "claude-sonnet-4-5".into(),
                problem: None,
                usage: Usage::default(),
            }],
            usage: Some(Usage {
                input_tokens: 10,
                output_tokens: 5,
                cost_usd: 0.125,
                turns: 3,
            }),
            task_url: Some("https://ns.example.com/tasks/7".into()),
        });
        assert!(body.contains("> Rename foo\n> to bar\n"), "{body}");
        assert!(
            body.contains("| test | `cargo test \\| tee log` | ✅ passed | 1.5 s |"),
            "{body}"
        );
        // A pre-existing failure the change fixed says so.
        assert!(
            body.contains("| lint | `cargo clippy` | ✅ passed (_failed on the base_) | 300 ms |"),
            "{body}"
        );
        assert!(body.contains("a pre-existing failure"), "{body}");
        assert!(body.contains("Verified in 2 rounds."));
        assert!(
            body.contains("## Test changes")
                && body.contains("- `tests/test_old.py:1` test file removed: deleted (2 tests)"),
            "{body}"
        );
        assert!(
            body.contains("- Round 2: ✅ approved — anthropic `claude-sonnet-4-5`\n  - Renames foo as asked and nothing else."),
            "{body}"
        );
        assert!(body.contains("$0.13") || body.contains("$0.12"));
        assert!(body.contains("[task 7](https://ns.example.com/tasks/7)"));
        assert!(
            body.trim_end()
                .ends_with("<!-- nightshift:task=7 run=2 -->")
        );
    }
}
