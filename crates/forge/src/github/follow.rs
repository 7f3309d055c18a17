//! After the pull request is open: its state polled politely (ETags), what failed in its CI
//! (check runs with their annotations and Actions logs, commit statuses), what reviewers said,
//! and what a commenter may do on the repository.

use nightshift_core::RepoUrl;
use serde_json::{Value, json};

use super::GitHubForge;
use crate::ci::{MAX_FAILURE_BYTES, MAX_FAILURES_WITH_OUTPUT, MAX_LOG_READ_BYTES};
use crate::http::{Auth, encode_segment, field_str};
use crate::poll::Poll;
use crate::review::after;
use crate::webhook::github_comment;
use crate::{
    CiFailure, CiReport, CiState, CommentKind, ForgeError, Mergeability, Permission,
    PollValidators, PrComment, PrPoll, PrState, PrStatus, RepoPath, Result, trim_log,
};

impl GitHubForge {
    /// The token and the `/repos/{owner}/{repo}` prefix for `repo`.
    async fn access(&self, repo: &RepoUrl) -> Result<(Auth, String)> {
        let path = RepoPath::parse(repo)?;
        let (owner, name) = path.owner_repo()?;
        let (token, _) = self.token(owner, name).await?;
        Ok((Self::bearer(&token), Self::repo_base(owner, name)))
    }

    pub(super) async fn poll(
        &self,
        repo: &RepoUrl,
        number: u64,
        previous: Option<&PollValidators>,
    ) -> Result<PrPoll> {
        let (auth, base) = self.access(repo).await?;
        let mut poll = Poll::new(previous);
        let pr = poll
            .get(
                &self.api,
                &format!("{base}/pulls/{number}"),
                &[],
                &auth,
                "the pull request",
                |pr| {
                    let merged = pr.get("merged").and_then(Value::as_bool) == Some(true)
                        || !field_str(pr, "/merged_at").is_empty();
                    json!({
                        "state": if merged { "merged" } else { pr["state"].as_str().unwrap_or_default() },
                        "head": pr.pointer("/head/sha"),
                        "base": pr.pointer("/base/ref"),
                        "mergeable": pr.get("mergeable"),
                        "mergeable_state": pr.get("mergeable_state"),
                    })
                },
            )
            .await?;
        let state = match pr["state"].as_str() {
            Some("merged") => PrState::Merged,
            Some("open") => PrState::Open,
            _ => PrState::Closed,
        };
        let mergeable = match (
            state,
            pr["mergeable"].as_bool(),
            pr["mergeable_state"].as_str(),
        ) {
            (PrState::Open, Some(false), _) | (PrState::Open, _, Some("dirty")) => {
                Mergeability::Conflicting
            }
            (PrState::Open, Some(true), _) => Mergeability::Clean,
            _ => Mergeability::Unknown,
        };
        let sha = pr["head"].as_str().unwrap_or_default().to_string();
        if sha.is_empty() {
            return Ok(poll.finish(PrStatus {
                state,
                ci: CiState::None,
                head_sha: None,
                mergeable,
                behind_base: None,
            }));
        }
        let sha_segment = encode_segment(&sha);
        let combined = poll
            .get(
                &self.api,
                &format!("{base}/commits/{sha_segment}/status"),
                &[],
                &auth,
                "the commit status",
                |combined| json!(status_verdict(combined)),
            )
            .await?;
        let runs = poll
            .get(
                &self.api,
                &format!("{base}/commits/{sha_segment}/check-runs"),
                &[("per_page", "100".to_string())],
                &auth,
                "the check runs",
                |runs| json!(CiState::combine(check_runs(runs).map(|(_, state)| state))),
            )
            .await?;
        let ci = CiState::combine(
            [combined, runs]
                .into_iter()
                .filter_map(|v| serde_json::from_value(v).ok()),
        );
        // Behind its base: the commits on the base the head lacks, from a comparison.
        let behind_base = match (state, pr["base"].as_str()) {
            (PrState::Open, Some(base_ref)) => {
                let compare = poll
                    .get(
                        &self.api,
                        &format!(
                            "{base}/compare/{}...{sha_segment}",
                            encode_segment(base_ref)
                        ),
                        &[("per_page", "1".to_string())],
                        &auth,
                        "the comparison with the base",
                        |c| json!({ "behind_by": c.get("behind_by") }),
                    )
                    .await;
                match compare {
                    Ok(compare) => compare["behind_by"].as_u64().map(|n| n > 0),
                    // A base branch deleted under an open PR: nothing to be behind.
                    Err(ForgeError::NotFound { .. }) => None,
                    Err(other) => return Err(other),
                }
            }
            _ => None,
        };
        Ok(poll.finish(PrStatus {
            state,
            ci,
            head_sha: Some(sha),
            mergeable,
            behind_base,
        }))
    }

    pub(super) async fn failures(&self, repo: &RepoUrl, number: u64) -> Result<CiReport> {
        let (auth, base) = self.access(repo).await?;
        let pr = self
            .api
            .get_if_changed(
                &format!("{base}/pulls/{number}"),
                &[],
                &auth,
                "the pull request",
                None,
            )
            .await?
            .map(|(pr, _)| pr)
            .unwrap_or_default();
        let sha = field_str(&pr, "/head/sha");
        let mut report = CiReport {
            head_sha: sha.clone(),
            failures: Vec::new(),
        };
        if sha.is_empty() {
            return Ok(report);
        }
        let sha_segment = encode_segment(&sha);
        let runs = self
            .api
            .json(
                reqwest::Method::GET,
                &format!("{base}/commits/{sha_segment}/check-runs"),
                &[("per_page", "100".to_string())],
                None,
                &auth,
                "the check runs",
            )
            .await?;
        let failing: Vec<&Value> = check_runs(&runs)
            .filter(|(_, state)| *state == CiState::Failing)
            .map(|(run, _)| run)
            .collect();
        for (i, run) in failing.into_iter().enumerate() {
            let text = if i < MAX_FAILURES_WITH_OUTPUT {
                self.check_run_output(&base, run, &auth).await?
            } else {
                String::new()
            };
            report.failures.push(CiFailure {
                name: field_str(run, "/name"),
                conclusion: field_str(run, "/conclusion"),
                url: Some(field_str(run, "/html_url")).filter(|u| !u.is_empty()),
                text: trim_log(&text, MAX_FAILURE_BYTES),
            });
        }
        let combined = self
            .api
            .json(
                reqwest::Method::GET,
                &format!("{base}/commits/{sha_segment}/status"),
                &[],
                None,
                &auth,
                "the commit status",
            )
            .await?;
        for status in combined
            .get("statuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|s| matches!(s["state"].as_str(), Some("failure" | "error")))
        {
            report.failures.push(CiFailure {
                name: field_str(status, "/context"),
                conclusion: field_str(status, "/state"),
                url: Some(field_str(status, "/target_url")).filter(|u| !u.is_empty()),
                text: field_str(status, "/description"),
            });
        }
        Ok(report)
    }

    /// A failing check run's own words: its output, its annotations, and for a GitHub
    /// Actions job the tail of its log (the check run's id is the job's).
    async fn check_run_output(&self, base: &str, run: &Value, auth: &Auth) -> Result<String> {
        let mut text = String::new();
        for part in ["/output/title", "/output/summary", "/output/text"] {
            let value = field_str(run, part);
            if !value.is_empty() {
                text.push_str(&value);
                text.push('\n');
            }
        }
        let Some(id) = run.get("id").and_then(Value::as_u64) else {
            return Ok(text);
        };
        if run
            .pointer("/output/annotations_count")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            > 0
        {
            let annotations = self
                .api
                .pages(
                    &format!("{base}/check-runs/{id}/annotations"),
                    &[],
                    "per_page",
                    auth,
                    "the check run's annotations",
                )
                .await?;
            for a in annotations {
                text.push_str(&format!(
                    "{}:{}: {}: {} {}\n",
                    field_str(&a, "/path"),
                    a.get("start_line").and_then(Value::as_u64).unwrap_or(0),
                    field_str(&a, "/annotation_level"),
                    field_str(&a, "/title"),
                    field_str(&a, "/message"),
                ));
            }
        }
        if field_str(run, "/app/slug") == "github-actions" {
            let logs = format!("{base}/actions/jobs/{id}/logs");
            match self
                .api
                .get_text_tail(&logs, auth, "the job's log", MAX_LOG_READ_BYTES)
                .await
            {
                Ok(log) => text.push_str(&log),
                // Logs expire (410) or may not be readable with this token: the rest remains.
                Err(ForgeError::NotFound { .. } | ForgeError::Api { .. }) => {}
                Err(other) => return Err(other),
            }
        }
        Ok(text)
    }

    pub(super) async fn comments(
        &self,
        repo: &RepoUrl,
        number: u64,
        since: Option<i64>,
    ) -> Result<Vec<PrComment>> {
        let (auth, base) = self.access(repo).await?;
        let since_query: Vec<(&str, String)> = since
            .map(|ms| ("since", nightshift_core::format_timestamp(ms)))
            .into_iter()
            .collect();
        let mut comments = Vec::new();
        for (path, kind, query) in [
            (
                format!("{base}/issues/{number}/comments"),
                CommentKind::Conversation,
                since_query.clone(),
            ),
            (
                format!("{base}/pulls/{number}/comments"),
                CommentKind::Inline,
                since_query.clone(),
            ),
            (
                format!("{base}/pulls/{number}/reviews"),
                CommentKind::Review,
                Vec::new(),
            ),
        ] {
            let items = self
                .api
                .pages(
                    &path,
                    &query,
                    "per_page",
                    &auth,
                    "the pull request's comments",
                )
                .await?;
            comments.extend(items.iter().filter_map(|item| {
                // A pending review is its author's draft; an empty review body says nothing.
                if kind == CommentKind::Review
                    && (field_str(item, "/state") == "PENDING"
                        || field_str(item, "/body").is_empty())
                {
                    return None;
                }
                github_comment(item, kind)
            }));
        }
        Ok(after(comments, since))
    }

    pub(super) async fn user_permission(&self, repo: &RepoUrl, user: &str) -> Result<Permission> {
        let (auth, base) = self.access(repo).await?;
        let path = format!("{base}/collaborators/{}/permission", encode_segment(user));
        match self
            .api
            .json(
                reqwest::Method::GET,
                &path,
                &[],
                None,
                &auth,
                "the collaborator permission",
            )
            .await
        {
            Ok(answer) => Ok(Permission::from_word(&field_str(&answer, "/permission"))),
            Err(ForgeError::NotFound { .. }) => Ok(Permission::None),
            Err(other) => Err(other),
        }
    }
}

/// The verdict of a combined commit status; no statuses at all is no CI.
fn status_verdict(combined: &Value) -> CiState {
    match (
        field_str(combined, "/state").as_str(),
        combined.get("total_count").and_then(Value::as_u64),
    ) {
        (_, Some(0)) => CiState::None,
        ("success", _) => CiState::Passing,
        ("failure" | "error", _) => CiState::Failing,
        _ => CiState::Pending,
    }
}

/// Each check run with its verdict.
fn check_runs(runs: &Value) -> impl Iterator<Item = (&Value, CiState)> {
    runs.get("check_runs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|run| {
            let state = if field_str(run, "/status") != "completed" {
                CiState::Pending
            } else {
                match field_str(run, "/conclusion").as_str() {
                    "success" | "neutral" | "skipped" => CiState::Passing,
                    _ => CiState::Failing,
                }
            };
            (run, state)
        })
}
