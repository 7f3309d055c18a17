//! Follow-up runs on a task's open pull request. A fix-CI run asks the forge, before any agent
//! time, whether the pull request is still open and what failed in its CI; it starts from the
//! pushed branch, and the agent gets the failing jobs' output with the task's instructions.
//! A rebase run reads what it needs in `rebase`.

use std::fmt::Write;

use nightshift_core::{EventKind, FollowUpKind, Phase, PrState};
use nightshift_forge::CiReport;

use super::prepare::Target;
use super::{RunExecution, Step, short_sha};
use crate::EngineError;

/// Reads what a follow-up run needs from the forge; nothing for a first run or a retry.
pub(crate) async fn read_input(run: &mut RunExecution, target: &Target) -> Step<()> {
    let Some(follow_up) = run.run.follow_up.clone() else {
        return Ok(());
    };
    match follow_up.kind {
        FollowUpKind::FixCi => {}
        FollowUpKind::Rebase => return super::rebase::read_input(run, target, &follow_up).await,
    }
    let number = follow_up.pr_number;
    let status = target
        .forge
        .pull_request_status(target.repo.url(), number)
        .await
        .map_err(EngineError::Forge)?;
    if status.state != PrState::Open {
        return Err(EngineError::FollowUpStale(format!(
            "pull request #{number} is {} now: there is nothing left to fix on it",
            status.state
        ))
        .into());
    }
    let report = target
        .forge
        .ci_failures(target.repo.url(), number)
        .await
        .map_err(EngineError::Forge)?;
    if report.failures.is_empty() {
        return Err(EngineError::FollowUpStale(format!(
            "CI on pull request #{number} has no failing job on {} any more: nothing to fix",
            short_sha(&report.head_sha)
        ))
        .into());
    }
    let names: Vec<String> = report
        .failures
        .iter()
        .map(|f| format!("{} ({})", f.name, f.conclusion))
        .collect();
    run.events.emit(
        EventKind::Check,
        Some(Phase::Preparing),
        format!(
            "fixing the CI of pull request #{number} on {}, asked by {}: {} failed",
            short_sha(&report.head_sha),
            follow_up.requested_by,
            names.join(", ")
        ),
        serde_json::json!({"ci_failures": report}),
    );
    run.ci_report = Some(report);
    Ok(())
}

/// The task's instructions followed by what failed in the pull request's CI, for the agent.
pub(crate) fn fix_ci_instructions(instructions: &str, number: u64, report: &CiReport) -> String {
    let mut text = format!(
        "{}\n\nThis change is already in pull request #{number}, and the repository's CI fails \
         on it (commit {}). Fix what makes the jobs below fail, keeping the change to what the \
         task asks for, and do not skip or weaken tests or CI steps.\n",
        instructions.trim(),
        short_sha(&report.head_sha)
    );
    for failure in &report.failures {
        let _ = write!(text, "\n### {} ({})\n", failure.name, failure.conclusion);
        if let Some(url) = &failure.url {
            let _ = writeln!(text, "{url}");
        }
        if !failure.text.trim().is_empty() {
            let _ = write!(text, "```\n{}\n```\n", failure.text.trim_end());
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use nightshift_forge::CiFailure;

    use super::*;

    #[test]
    fn the_agent_reads_each_failing_job_with_its_output() {
        let report = CiReport {
            head_sha: "0123456789abcdef".into(),
            failures: vec![
                CiFailure {
                    name: "test (ubuntu)".into(),
                    conclusion: "failure".into(),
                    url: Some("https://ci.example/1".into()),
                    text: "assertion failed: left == right\n".into(),
                },
                CiFailure {
                    name: "lint".into(),
                    conclusion: "timed_out".into(),
                    url: None,
                    text: String::new(),
                },
            ],
        };
        let text = fix_ci_instructions("Say goodbye\n", 7, &report);
        assert!(text.starts_with("Say goodbye\n\nThis change is already in pull request #7"));
        assert!(text.contains("### test (ubuntu) (failure)\nhttps://ci.example/1\n```\nassertion failed: left == right\n```"));
        assert!(text.contains("### lint (timed_out)\n"));
    }
}
