//! Forges: where a validated branch becomes a pull request. The engine pushes the branch
//! (see `nightshift-workspace`) with the forge's credential; a forge checks access up front,
//! opens or adopts the PR, and reports the PR's state and CI afterwards.

mod body;
mod config;
mod git;
mod gitea;
mod github;
mod gitlab;
mod http;
mod repo_path;
mod secret;

pub use body::{PrBody, render_pr_body, task_marker};
pub use config::{ForgeConfig, ForgeEntry, ForgeKind, GitHubAppConfig, resolve};
pub use git::GitForge;
pub use gitea::GiteaForge;
pub use github::{GitHubAuth, GitHubForge};
pub use gitlab::GitLabForge;
pub use http::{RetryEvent, RetryObserver, RetryPolicy, ignore_retries};
pub use repo_path::RepoPath;
pub use secret::{GitAuth, Secret};

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

/// Whether a pull request is still open, and what its CI says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrState {
    Open,
    Closed,
    Merged,
}

/// The combined verdict of every status and check on the PR's head commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CiState {
    /// Something is still queued or running.
    Pending,
    Passing,
    Failing,
    /// No CI reported anything for the head commit.
    None,
}

impl CiState {
    /// Folds many verdicts into one: any failure fails, then anything pending is pending.
    pub fn combine(states: impl IntoIterator<Item = CiState>) -> CiState {
        let mut result = CiState::None;
        for state in states {
            result = match (result, state) {
                (CiState::Failing, _) | (_, CiState::Failing) => CiState::Failing,
                (CiState::Pending, _) | (_, CiState::Pending) => CiState::Pending,
                (CiState::Passing, _) | (_, CiState::Passing) => CiState::Passing,
                (CiState::None, CiState::None) => CiState::None,
            };
        }
        result
    }

    /// True once CI will not change by itself any more; the engine stops polling then.
    pub fn is_settled(self) -> bool {
        !matches!(self, CiState::Pending)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrStatus {
    pub state: PrState,
    pub ci: CiState,
    /// The commit the CI verdict is about.
    pub head_sha: Option<String>,
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

    /// The PR's state and its CI verdict; the engine polls this until it settles.
    async fn pull_request_status(&self, repo: &RepoUrl, number: u64) -> Result<PrStatus>;
}
