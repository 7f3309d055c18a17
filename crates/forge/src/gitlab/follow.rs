//! After the merge request is open: its state polled politely (GitLab answers `If-None-Match`
//! with 304), the failed jobs of its head pipeline with their trace tails, its notes, and a
//! commenter's access level.

use nightshift_core::RepoUrl;
use reqwest::Method;
use serde_json::{Value, json};

use super::{GitLabForge, pipeline_state};
use crate::ci::{MAX_FAILURE_BYTES, MAX_FAILURES_WITH_OUTPUT, MAX_LOG_READ_BYTES};
use crate::http::field_str;
use crate::poll::Poll;
use crate::review::{after, millis};
use crate::{
    CiFailure, CiReport, CommentKind, ForgeError, Mergeability, Permission, PollValidators,
    PrComment, PrPoll, PrState, PrStatus, RepoPath, Result, trim_log,
};

impl GitLabForge {
    pub(super) async fn poll(
        &self,
        repo: &RepoUrl,
        number: u64,
        previous: Option<&PollValidators>,
    ) -> Result<PrPoll> {
        let project = Self::project(&RepoPath::parse(repo)?);
        let mut poll = Poll::new(previous);
        let mr = poll
            .get(
                &self.api,
                &format!("{project}/merge_requests/{number}"),
                &[("include_diverged_commits_count", "true".to_string())],
                &self.auth,
                "the merge request",
                |mr| {
                    json!({
                        "state": mr.get("state"),
                        "sha": mr.get("sha"),
                        "pipeline": mr.pointer("/head_pipeline/status"),
                        "has_conflicts": mr.get("has_conflicts"),
                        "merge_status": mr.get("detailed_merge_status"),
                        "diverged": mr.get("diverged_commits_count"),
                    })
                },
            )
            .await?;
        let state = match mr["state"].as_str() {
            Some("opened" | "locked") => PrState::Open,
            Some("merged") => PrState::Merged,
            _ => PrState::Closed,
        };
        let merge_status = mr["merge_status"].as_str().unwrap_or_default();
        let mergeable = if state != PrState::Open {
            Mergeability::Unknown
        } else if mr["has_conflicts"].as_bool() == Some(true) || merge_status == "conflict" {
            Mergeability::Conflicting
        } else if matches!(merge_status, "checking" | "unchecked" | "preparing" | "") {
            Mergeability::Unknown
        } else {
            Mergeability::Clean
        };
        let behind_base = match (state, mr["diverged"].as_u64()) {
            (PrState::Open, Some(count)) => Some(count > 0 || merge_status == "need_rebase"),
            (PrState::Open, None) if merge_status == "need_rebase" => Some(true),
            _ => None,
        };
        let sha = mr["sha"].as_str().unwrap_or_default().to_string();
        Ok(poll.finish(PrStatus {
            state,
            ci: pipeline_state(mr["pipeline"].as_str()),
            head_sha: (!sha.is_empty()).then_some(sha),
            mergeable,
            behind_base,
        }))
    }

    pub(super) async fn failures(&self, repo: &RepoUrl, number: u64) -> Result<CiReport> {
        let project = Self::project(&RepoPath::parse(repo)?);
        let mr = self
            .api
            .json(
                Method::GET,
                &format!("{project}/merge_requests/{number}"),
                &[],
                None,
                &self.auth,
                "the merge request",
            )
            .await?;
        let mut report = CiReport {
            head_sha: field_str(&mr, "/sha"),
            failures: Vec::new(),
        };
        let Some(pipeline) = mr.pointer("/head_pipeline/id").and_then(Value::as_u64) else {
            return Ok(report);
        };
        let jobs = self
            .api
            .pages(
                &format!("{project}/pipelines/{pipeline}/jobs"),
                &[("scope[]", "failed".to_string())],
                "per_page",
                &self.auth,
                "the pipeline's jobs",
            )
            .await?;
        // A job allowed to fail does not fail the pipeline.
        let failed = jobs
            .iter()
            .filter(|job| field_str(job, "/status") == "failed")
            .filter(|job| job.get("allow_failure") != Some(&Value::Bool(true)));
        for (i, job) in failed.enumerate() {
            let mut text = String::new();
            if let Some(reason) = Some(field_str(job, "/failure_reason")).filter(|r| !r.is_empty())
            {
                text.push_str(&format!("failure reason: {reason}\n"));
            }
            if let (true, Some(id)) = (
                i < MAX_FAILURES_WITH_OUTPUT,
                job.get("id").and_then(Value::as_u64),
            ) {
                match self
                    .api
                    .get_text_tail(
                        &format!("{project}/jobs/{id}/trace"),
                        &self.auth,
                        "the job's trace",
                        MAX_LOG_READ_BYTES,
                    )
                    .await
                {
                    Ok(trace) => text.push_str(&trace),
                    // An erased or expired trace leaves the job's name and reason.
                    Err(ForgeError::NotFound { .. }) => {}
                    Err(other) => return Err(other),
                }
            }
            let stage = field_str(job, "/stage");
            let name = field_str(job, "/name");
            report.failures.push(CiFailure {
                name: if stage.is_empty() {
                    name
                } else {
                    format!("{stage}: {name}")
                },
                conclusion: field_str(job, "/status"),
                url: Some(field_str(job, "/web_url")).filter(|u| !u.is_empty()),
                text: trim_log(&text, MAX_FAILURE_BYTES),
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
        let project = Self::project(&RepoPath::parse(repo)?);
        let notes = self
            .api
            .pages(
                &format!("{project}/merge_requests/{number}/notes"),
                &[
                    ("sort", "asc".to_string()),
                    ("order_by", "created_at".to_string()),
                ],
                "per_page",
                &self.auth,
                "the merge request's notes",
            )
            .await?;
        let web = self.web_url(repo);
        let comments = notes
            .iter()
            // System notes are GitLab's own record of events ("added 1 commit").
            .filter(|note| note.get("system") != Some(&Value::Bool(true)))
            .filter_map(|note| {
                let id = note.get("id").and_then(Value::as_u64)?;
                let inline = field_str(note, "/type") == "DiffNote";
                Some(PrComment {
                    id,
                    kind: if inline {
                        CommentKind::Inline
                    } else {
                        CommentKind::Conversation
                    },
                    author: Some(field_str(note, "/author/username")).filter(|a| !a.is_empty())?,
                    body: field_str(note, "/body"),
                    path: Some(field_str(note, "/position/new_path")).filter(|p| !p.is_empty()),
                    line: note.pointer("/position/new_line").and_then(Value::as_u64),
                    created_at: millis(&field_str(note, "/created_at")),
                    url: web
                        .as_ref()
                        .map(|web| format!("{web}/-/merge_requests/{number}#note_{id}")),
                })
            })
            .collect();
        Ok(after(comments, since))
    }

    /// The project's page, for links to notes (the notes API gives none).
    fn web_url(&self, repo: &RepoUrl) -> Option<String> {
        let path = RepoPath::parse(repo).ok()?;
        let origin = path
            .http_origin()
            .unwrap_or_else(|| format!("https://{}", path.host));
        Some(format!("{origin}/{}", path.path))
    }

    pub(super) async fn user_permission(&self, repo: &RepoUrl, user: &str) -> Result<Permission> {
        let project = Self::project(&RepoPath::parse(repo)?);
        let users = self
            .api
            .json(
                Method::GET,
                "/users",
                &[("username", user.to_string())],
                None,
                &self.auth,
                "the user",
            )
            .await?;
        let Some(id) = users
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| field_str(u, "/username").eq_ignore_ascii_case(user))
            .and_then(|u| u.get("id").and_then(Value::as_u64))
        else {
            return Ok(Permission::None);
        };
        let member = self
            .api
            .send(
                Method::GET,
                &format!("{project}/members/all/{id}"),
                &[],
                None,
                &self.auth,
            )
            .await?;
        if member.status.as_u16() == 404 {
            return Ok(Permission::None);
        }
        let member = member.into_body(
            super::FORGE,
            &format!("GET {project}/members/all/{id}"),
            "the membership",
        )?;
        let level = member
            .get("access_level")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        Ok(Permission::from_gitlab_level(level))
    }
}
