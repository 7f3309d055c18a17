//! After the pull request is open: its state (Gitea's API sends no ETags, so every poll reads
//! it whole and compares), the failing commit statuses of its head, its comments and reviews,
//! and a commenter's permission.

use nightshift_core::RepoUrl;
use reqwest::Method;
use serde_json::{Value, json};

use super::GiteaForge;
use crate::http::{encode_segment, field_str};
use crate::poll::Poll;
use crate::review::{after, millis};
use crate::webhook::github_comment;
use crate::{
    CiFailure, CiReport, CiState, CommentKind, ForgeError, Mergeability, Permission,
    PollValidators, PrComment, PrPoll, PrState, PrStatus, RepoPath, Result,
};

impl GiteaForge {
    pub(super) async fn poll(
        &self,
        repo: &RepoUrl,
        number: u64,
        previous: Option<&PollValidators>,
    ) -> Result<PrPoll> {
        let base = Self::repo_base(&RepoPath::parse(repo)?)?;
        let mut poll = Poll::new(previous);
        let pr = poll
            .get(
                &self.api,
                &format!("{base}/pulls/{number}"),
                &[],
                &self.auth,
                "the pull request",
                |pr| {
                    json!({
                        "state": if pr.get("merged") == Some(&Value::Bool(true)) { "merged" } else { pr["state"].as_str().unwrap_or_default() },
                        "head": pr.pointer("/head/sha"),
                        "mergeable": pr.get("mergeable"),
                        "merge_base": pr.get("merge_base"),
                        "base": pr.pointer("/base/sha"),
                    })
                },
            )
            .await?;
        let state = match pr["state"].as_str() {
            Some("merged") => PrState::Merged,
            Some("open") => PrState::Open,
            _ => PrState::Closed,
        };
        let open = state == PrState::Open;
        let mergeable = match (open, pr["mergeable"].as_bool()) {
            (true, Some(true)) => Mergeability::Clean,
            (true, Some(false)) => Mergeability::Conflicting,
            _ => Mergeability::Unknown,
        };
        // The merge base is where the branch left the base; a base tip past it is news.
        let behind_base = match (pr["merge_base"].as_str(), pr["base"].as_str()) {
            (Some(merge_base), Some(tip)) if open && !merge_base.is_empty() && !tip.is_empty() => {
                Some(merge_base != tip)
            }
            _ => None,
        };
        let sha = pr["head"].as_str().unwrap_or_default().to_string();
        let ci = if sha.is_empty() {
            CiState::None
        } else {
            let verdict = poll
                .get(
                    &self.api,
                    &format!("{base}/commits/{}/status", encode_segment(&sha)),
                    &[],
                    &self.auth,
                    "the commit status",
                    |combined| json!(status_verdict(combined)),
                )
                .await?;
            serde_json::from_value(verdict).unwrap_or(CiState::None)
        };
        Ok(poll.finish(PrStatus {
            state,
            ci,
            head_sha: (!sha.is_empty()).then_some(sha),
            mergeable,
            behind_base,
        }))
    }

    pub(super) async fn failures(&self, repo: &RepoUrl, number: u64) -> Result<CiReport> {
        let base = Self::repo_base(&RepoPath::parse(repo)?)?;
        let pr = self
            .api
            .json(
                Method::GET,
                &format!("{base}/pulls/{number}"),
                &[],
                None,
                &self.auth,
                "the pull request",
            )
            .await?;
        let sha = field_str(&pr, "/head/sha");
        let mut report = CiReport {
            head_sha: sha.clone(),
            failures: Vec::new(),
        };
        if sha.is_empty() {
            return Ok(report);
        }
        let combined = self
            .api
            .json(
                Method::GET,
                &format!("{base}/commits/{}/status", encode_segment(&sha)),
                &[],
                None,
                &self.auth,
                "the commit status",
            )
            .await?;
        // Gitea's statuses (Actions jobs or external CI) say what failed in their description;
        // the log stays behind the target URL.
        for status in combined
            .get("statuses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|s| matches!(s["status"].as_str(), Some("failure" | "error")))
        {
            report.failures.push(CiFailure {
                name: field_str(status, "/context"),
                conclusion: field_str(status, "/status"),
                url: Some(field_str(status, "/target_url")).filter(|u| !u.is_empty()),
                text: field_str(status, "/description"),
            });
        }
        Ok(report)
    }

    pub(super) async fn comments(
        &self,
        repo: &RepoUrl,
        number: u64,
        since: Option<i64>,
    ) -> Result<Vec<PrComment>> {
        let base = Self::repo_base(&RepoPath::parse(repo)?)?;
        let query: Vec<(&str, String)> = since
            .map(|ms| ("since", nightshift_core::format_timestamp(ms)))
            .into_iter()
            .collect();
        let conversation = self
            .api
            .json(
                Method::GET,
                &format!("{base}/issues/{number}/comments"),
                &query,
                None,
                &self.auth,
                "the pull request's comments",
            )
            .await?;
        let mut comments: Vec<PrComment> = conversation
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| github_comment(c, CommentKind::Conversation))
            .collect();
        let reviews = self
            .api
            .pages(
                &format!("{base}/pulls/{number}/reviews"),
                &[],
                "limit",
                &self.auth,
                "the pull request's reviews",
            )
            .await?;
        for review in &reviews {
            // Pending reviews are drafts; requested ones are not said yet.
            if matches!(
                review["state"].as_str(),
                Some("PENDING" | "REQUEST_REVIEW") | None
            ) {
                continue;
            }
            let Some(id) = review.get("id").and_then(Value::as_u64) else {
                continue;
            };
            let author = field_str(review, "/user/login");
            if !field_str(review, "/body").is_empty() {
                comments.push(PrComment {
                    id,
                    kind: CommentKind::Review,
                    author: author.clone(),
                    body: field_str(review, "/body"),
                    path: None,
                    line: None,
                    created_at: millis(&field_str(review, "/submitted_at")),
                    url: Some(field_str(review, "/html_url")).filter(|u| !u.is_empty()),
                });
            }
            if review.get("comments_count").and_then(Value::as_u64) > Some(0) {
                let inline = self
                    .api
                    .json(
                        Method::GET,
                        &format!("{base}/pulls/{number}/reviews/{id}/comments"),
                        &[],
                        None,
                        &self.auth,
                        "the review's comments",
                    )
                    .await?;
                comments.extend(inline.as_array().into_iter().flatten().filter_map(|c| {
                    let mut comment = github_comment(c, CommentKind::Inline)?;
                    // Gitea names the new-file line `position`.
                    comment.line = c.get("position").and_then(Value::as_u64).filter(|l| *l > 0);
                    Some(comment)
                }));
            }
        }
        Ok(after(comments, since))
    }

    pub(super) async fn user_permission(&self, repo: &RepoUrl, user: &str) -> Result<Permission> {
        let base = Self::repo_base(&RepoPath::parse(repo)?)?;
        let path = format!("{base}/collaborators/{}/permission", encode_segment(user));
        match self
            .api
            .json(
                Method::GET,
                &path,
                &[],
                None,
                &self.auth,
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

/// Gitea's combined status as a verdict. Real Gitea sends an empty state with no statuses.
fn status_verdict(combined: &Value) -> CiState {
    match (
        field_str(combined, "/state").as_str(),
        combined.get("total_count").and_then(Value::as_u64),
    ) {
        (_, Some(0)) | ("", _) => CiState::None,
        ("success", _) => CiState::Passing,
        ("failure" | "error", _) => CiState::Failing,
        // `warning` does not block merging on Gitea.
        ("warning", _) => CiState::Passing,
        _ => CiState::Pending,
    }
}
