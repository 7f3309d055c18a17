//! The `git` forge: the branch is pushed to the repository's own remote, and the review page
//! is Nightshift's own. Push access shows itself at push time.

use async_trait::async_trait;
use nightshift_core::RepoUrl;

use crate::{Forge, PullRequest, PullRequestSpec, Result};

#[derive(Debug, Clone, Default)]
pub struct GitForge;

#[async_trait]
impl Forge for GitForge {
    fn name(&self) -> &'static str {
        "git"
    }

    async fn check_push_access(&self, _repo: &RepoUrl) -> Result<()> {
        Ok(())
    }

    async fn find_or_create_pull_request(
        &self,
        _spec: &PullRequestSpec,
    ) -> Result<Option<PullRequest>> {
        Ok(None)
    }
}
