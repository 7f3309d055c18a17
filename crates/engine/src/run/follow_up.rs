//! Follow-up runs on a task's open pull request. A fix-CI run asks the forge, before any agent
//! time, whether the pull request is still open and what failed in its CI; an address-review
//! run asks for the review comments written since the last one. Either starts from the pushed
//! branch, and the agent gets what the forge said with the task's instructions. A rebase run
//! reads what it needs in `rebase`.

use std::fmt::Write;

use nightshift_core::{EventKind, FollowUp, FollowUpKind, Phase, PrState, ReviewRequest};
use nightshift_forge::{CiReport, CommentKind, PrComment};

use super::prepare::Target;
use super::{RunExecution, Step, short_sha};
use crate::EngineError;

/// Reads what a follow-up run needs from the forge; nothing for a first run or a retry.
pub(crate) async fn read_input(run: &mut RunExecution, target: &Target) -> Step<()> {
    let Some(follow_up) = run.run.follow_up.clone() else {
        return Ok(());
    };
    match follow_up.kind {
        FollowUpKind::FixCi | FollowUpKind::AddressReview => {}
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
            "pull request #{number} is {} now: there is nothing left to change on it",
            status.state
        ))
        .into());
    }
    if follow_up.kind == FollowUpKind::AddressReview {
        return read_review(run, target, &follow_up).await;
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

/// Reads the review comments an address-review run answers, and says what it answers.
async fn read_review(run: &mut RunExecution, target: &Target, follow_up: &FollowUp) -> Step<()> {
    let number = follow_up.pr_number;
    let review = follow_up.review.clone().unwrap_or(ReviewRequest {
        instructions: None,
        comments_since: None,
        command_url: None,
    });
    let comments = crate::review::review_comments(
        target.forge.as_ref(),
        &target.repo,
        number,
        review.comments_since,
    )
    .await?;
    if comments.is_empty() && review.instructions.is_none() {
        return Err(EngineError::FollowUpStale(format!(
            "pull request #{number} has no review comments to address any more, and no \
             instructions were given"
        ))
        .into());
    }
    let mut authors: Vec<&str> = comments.iter().map(|c| c.author.as_str()).collect();
    authors.sort_unstable();
    authors.dedup();
    let from = match (authors.is_empty(), &review.instructions) {
        (false, Some(_)) => format!(
            "{} review comments by {}, and instructions",
            comments.len(),
            authors.join(", ")
        ),
        (false, None) => format!(
            "{} review comments by {}",
            comments.len(),
            authors.join(", ")
        ),
        (true, _) => "instructions".to_string(),
    };
    run.events.emit(
        EventKind::Info,
        Some(Phase::Preparing),
        format!(
            "addressing the review of pull request #{number}, asked by {}: {from}",
            follow_up.requested_by
        ),
        serde_json::json!({"review_comments": comments, "instructions": review.instructions}),
    );
    run.review = Some((comments, review));
    Ok(())
}

/// The task's instructions followed by the review comments, each with its author and place,
/// and the extra instructions of whoever asked, for the agent.
pub(crate) fn address_review_instructions(
    instructions: &str,
    follow_up: &FollowUp,
    comments: &[PrComment],
    review: &ReviewRequest,
) -> String {
    let mut text = format!(
        "{}\n\nThis change is already in pull request #{}, and its reviewers asked for more. \
         Address what they say below on top of the pull request's branch, keeping the change to \
         what the task and the reviewers ask for, and do not skip or weaken tests or CI steps. \
         Where a comment only asks a question, answer it in your summary instead of changing the \
         code.\n",
        instructions.trim(),
        follow_up.pr_number
    );
    if !comments.is_empty() {
        text.push_str("\n## Review comments\n");
    }
    for comment in comments {
        let place = match (&comment.path, comment.line, comment.kind) {
            (Some(path), Some(line), _) => format!(" on {path}:{line}"),
            (Some(path), None, _) => format!(" on {path}"),
            (None, _, CommentKind::Review) => " in their review".to_string(),
            (None, _, _) => String::new(),
        };
        let _ = write!(text, "\n### {}{place}\n", comment.author);
        for line in comment.body.trim().lines() {
            let _ = writeln!(text, "> {line}");
        }
    }
    if let Some(extra) = &review.instructions {
        let _ = write!(
            text,
            "\n## Instructions from {}\n{}\n",
            follow_up.requested_by,
            extra.trim()
        );
    }
    text
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
    use nightshift_core::FollowUpKind;
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

    #[test]
    fn the_agent_reads_each_review_comment_with_its_author_and_place() {
        let comment = |id, kind, author: &str, body: &str, path: Option<&str>| PrComment {
            id,
            kind,
            author: author.into(),
            body: body.into(),
            path: path.map(str::to_string),
            line: path.map(|_| 12),
            created_at: 1,
            url: None,
        };
        let comments = [
            comment(1, CommentKind::Review, "rita", "Please also log it.", None),
            comment(
                2,
                CommentKind::Inline,
                "rita",
                "Rename this\nto `farewell`.",
                Some("src/lib.rs"),
            ),
            comment(3, CommentKind::Conversation, "wes", "Looks close.", None),
        ];
        let follow_up = FollowUp {
            kind: FollowUpKind::AddressReview,
            pr_number: 7,
            pr_url: "https://forge.example/pull/7".into(),
            branch: "nightshift/1-x".into(),
            head_sha: None,
            requested_by: "eddie".into(),
            review: None,
        };
        let review = ReviewRequest {
            instructions: Some("Keep the old name as an alias.".into()),
            comments_since: None,
            command_url: None,
        };
        let text = address_review_instructions("Say goodbye\n", &follow_up, &comments, &review);
        assert!(text.starts_with("Say goodbye\n\nThis change is already in pull request #7"));
        assert!(
            text.contains("### rita in their review\n> Please also log it.\n"),
            "{text}"
        );
        assert!(
            text.contains("### rita on src/lib.rs:12\n> Rename this\n> to `farewell`.\n"),
            "{text}"
        );
        assert!(text.contains("### wes\n> Looks close.\n"), "{text}");
        assert!(
            text.ends_with("## Instructions from eddie\nKeep the old name as an alias.\n"),
            "{text}"
        );
    }
}
