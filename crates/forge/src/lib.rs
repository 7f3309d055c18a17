//! Forges: where a validated branch becomes a pull request. The engine pushes the branch
//! (see `nightshift-workspace`); a forge checks access up front and opens or adopts the PR.

mod git;

pub use git::GitForge;

use async_trait::async_trait;
use nightshift_core::RepoUrl;
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error("no write access to {repo}: {reason}")]
    PermissionDenied { repo: String, reason: String },
    #[error("forge request failed: {0}")]
    Request(String),
}

pub type Result<T, E = ForgeError> = std::result::Result<T, E>;

/// What Nightshift asks a forge to open (or update, when one exists for the branch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullRequestSpec {
    pub repo: RepoUrl,
    pub base: String,
    pub head: String,
    pub title: String,
    pub body: String,
    pub labels: Vec<String>,
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
pub trait Forge: Send + Sync {
    /// A short name: `git`, `github`, `gitlab`, `gitea`.
    fn name(&self) -> &'static str;

    /// Fails with [`ForgeError::PermissionDenied`] when the credential cannot push to `repo`.
    async fn check_push_access(&self, repo: &RepoUrl) -> Result<()>;

    /// Opens the pull request for `spec.head`, or adopts and updates the one that exists.
    /// `None` when the forge has no pull requests (plain git).
    async fn find_or_create_pull_request(
        &self,
        spec: &PullRequestSpec,
    ) -> Result<Option<PullRequest>>;
}
