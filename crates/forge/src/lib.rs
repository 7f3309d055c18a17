//! Forges: where a validated branch becomes a pull request. The engine pushes the branch
//! (see `nightshift-workspace`) with the forge's credential; a forge checks access up front,
//! opens or adopts the PR, and reports the PR's state and CI afterwards.

mod answer;
mod body;
mod ci;
mod config;
mod git;
mod gitea;
mod github;
mod gitlab;
mod http;
mod poll;
mod repo_path;
mod retry;
mod review;
mod secret;
mod status;
mod webhook;

pub use body::{PrBody, render_pr_body, task_marker};
pub use ci::{CiFailure, CiReport, MAX_FAILURE_BYTES, trim_log};
pub use config::{ForgeConfig, ForgeEntry, ForgeKind, GitHubAppConfig, resolve};
pub use git::GitForge;
pub use gitea::GiteaForge;
pub use github::{GitHubAuth, GitHubForge};
pub use gitlab::GitLabForge;
pub use poll::{PollValidators, PrPoll};
pub use repo_path::RepoPath;
pub use retry::{RetryEvent, RetryObserver, RetryPolicy, ignore_retries};
pub use review::{CommentKind, Permission, PrComment};
pub use secret::{GitAuth, Secret};
pub use status::{CiState, Mergeability, PrState, PrStatus};
pub use webhook::{PrChange, WebhookEvent, parse_webhook};

use async_trait::async_trait;
use nightshift_core::RepoUrl;
use serde::{Deserialize, Serialize};

/// The label every Nightshift pull request carries, so people can filter for them.
pub const NIGHTSHIFT_LABEL: &str = "nightshift";

/// Everything that can go wrong talking to a forge. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("no write access to {repo}: {reason}")]
    PermissionDenied { repo: String, reason: String },
    #[error("{what} not found on {forge}: {detail}")]
    NotFound {
        forge: &'static str,
        what: String,
        detail: String,
    },
    #[error("{forge} rejected the credential ({status}): {detail}")]
    Unauthorized {
        forge: &'static str,
        status: u16,
        detail: String,
    },
    #[error("{forge} answered {status} to {operation}: {detail}")]
    Api {
        forge: &'static str,
        operation: String,
        status: u16,
        detail: String,
    },
    #[error(
        "{forge} did not answer {operation} after {attempts} attempts over {elapsed_ms} ms: {last}"
    )]
    RetriesExhausted {
        forge: &'static str,
        operation: String,
        attempts: u32,
        elapsed_ms: u64,
        last: String,
    },
    #[error("unexpected answer from {forge} to {operation}: {detail}")]
    Protocol {
        forge: &'static str,
        operation: String,
        detail: String,
    },
    #[error("forge configuration: {0}")]
    Config(String),
    #[error("the {forge} forge does not support {what}")]
    Unsupported {
        forge: &'static str,
        what: &'static str,
    },
    /// A webhook delivery that cannot be trusted: no signature or token, or one that does not
    /// match the secret. Nothing in it was acted on.
    #[error("{forge} webhook delivery refused: {reason}")]
    WebhookRejected { forge: &'static str, reason: String },
    /// A genuine delivery (its signature matches) that cannot be read: not JSON, no event
    /// header, or a payload without the fields its event documents.
    #[error("{forge} webhook delivery unreadable: {reason}")]
    WebhookUnreadable { forge: &'static str, reason: String },
}

pub type Result<T, E = ForgeError> = std::result::Result<T, E>;

/// What Nightshift asks a forge to open (or update, when one exists for the branch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequestSpec {
    pub repo: RepoUrl,
    pub base: String,
    pub head: String,
    pub title: String,
    /// Markdown, usually from [`render_pr_body`]; carries the hidden task marker.
    pub body: String,
    /// Labels besides [`NIGHTSHIFT_LABEL`], which is always added.
    pub labels: Vec<String>,
}

impl PullRequestSpec {
    /// The labels to ensure: the spec's own plus [`NIGHTSHIFT_LABEL`], without duplicates.
    pub fn all_labels(&self) -> Vec<String> {
        let mut labels = vec![NIGHTSHIFT_LABEL.to_string()];
        for label in &self.labels {
            if !labels.contains(label) {
                labels.push(label.clone());
            }
        }
        labels
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
    /// True when the PR already existed and was adopted instead of created.
    pub adopted: bool,
}

/// A place a validated branch is published to.
#[async_trait]
pub trait Forge: Send + Sync + std::fmt::Debug {
    /// A short name: `git`, `github`, `gitlab`, `gitea`.
    fn name(&self) -> &'static str;

    /// Fails with [`ForgeError::PermissionDenied`] when the credential cannot push to `repo`.
    async fn check_push_access(&self, repo: &RepoUrl) -> Result<()>;

    /// The credential `git push` should use for `repo`, passed through git's environment
    /// config (see [`GitAuth::env`]) so it never shows in argv or remote URLs. Async because
    /// a GitHub App mints a short-lived installation token per repository owner.
    /// `None` when git's own credentials apply (plain git).
    async fn git_auth(&self, repo: &RepoUrl) -> Result<Option<GitAuth>>;

    /// Opens the pull request for `spec.head`, or adopts and updates the open one that
    /// exists, and ensures its labels. Safe to call again after a crash: never duplicates.
    /// `None` when the forge has no pull requests (plain git).
    async fn find_or_create_pull_request(
        &self,
        spec: &PullRequestSpec,
    ) -> Result<Option<PullRequest>>;

    /// The PR's state, mergeability, head and CI verdict. `previous` is what the last poll
    /// returned: requests are then conditional where the forge supports it (GitHub's 304s do
    /// not count against its rate limit), and [`PrPoll::changed`] says whether anything moved.
    async fn poll_pull_request(
        &self,
        repo: &RepoUrl,
        number: u64,
        previous: Option<&PollValidators>,
    ) -> Result<PrPoll>;

    /// The PR's state as it is now, asked without validators.
    async fn pull_request_status(&self, repo: &RepoUrl, number: u64) -> Result<PrStatus> {
        Ok(self.poll_pull_request(repo, number, None).await?.status)
    }

    /// What failed in the CI of the PR's head commit: each failing job or check with its
    /// output from the forge, trimmed for an agent's prompt. Empty when nothing failed.
    async fn ci_failures(&self, repo: &RepoUrl, number: u64) -> Result<CiReport>;

    /// The PR's conversation comments, review summaries and inline review comments created
    /// after `since` (milliseconds since the epoch; all when `None`), oldest first.
    async fn pull_request_comments(
        &self,
        repo: &RepoUrl,
        number: u64,
        since: Option<i64>,
    ) -> Result<Vec<PrComment>>;

    /// What `user` (a login) may do on `repo`: a `/nightshift` comment counts only from
    /// someone with write access.
    async fn permission(&self, repo: &RepoUrl, user: &str) -> Result<Permission>;

    /// The login Nightshift's credential acts as on `repo`'s forge, so that what it wrote
    /// itself is told from what reviewers wrote. `None` when the forge cannot say (a GitHub
    /// App's installation token has no user; plain git has no comments).
    async fn own_login(&self, _repo: &RepoUrl) -> Result<Option<String>> {
        Ok(None)
    }
}
