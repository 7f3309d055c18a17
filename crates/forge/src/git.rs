//! The `git` forge: the branch is pushed to the repository's own remote, and the review page
//! is Nightshift's own. Push access shows itself at push time.

use async_trait::async_trait;
use nightshift_core::RepoUrl;

use crate::{
    CiReport, Forge, ForgeError, GitAuth, Permission, PollValidators, PrComment, PrPoll,
    PullRequest, PullRequestSpec, RepoPath, Result, Secret,
};

#[derive(Debug, Clone, Default)]
pub struct GitForge {
    /// User name and password for HTTPS remotes; without them git uses what the machine has.
    password: Option<(String, Secret)>,
}

impl GitForge {
    pub fn with_password(username: &str, password: &Secret) -> GitForge {
        GitForge {
            password: Some((username.to_string(), password.clone())),
        }
    }
}

#[async_trait]
impl Forge for GitForge {
    fn name(&self) -> &'static str {
        "git"
    }

    async fn check_push_access(&self, _repo: &RepoUrl) -> Result<()> {
        Ok(())
    }

    async fn git_auth(&self, repo: &RepoUrl) -> Result<Option<GitAuth>> {
        let Some((username, password)) = &self.password else {
            return Ok(None);
        };
        // Local paths and SSH remotes take no password.
        Ok(RepoPath::parse(repo)
            .ok()
            .and_then(|path| path.http_origin())
            .map(|origin| GitAuth::basic(&origin, username, password)))
    }

    async fn find_or_create_pull_request(
        &self,
        _spec: &PullRequestSpec,
    ) -> Result<Option<PullRequest>> {
        Ok(None)
    }

    // Plain git never returns a PR number, so there is nothing to ask about.
    async fn poll_pull_request(
        &self,
        _repo: &RepoUrl,
        _number: u64,
        _previous: Option<&PollValidators>,
    ) -> Result<PrPoll> {
        Err(UNSUPPORTED)
    }

    async fn ci_failures(&self, _repo: &RepoUrl, _number: u64) -> Result<CiReport> {
        Err(UNSUPPORTED)
    }

    async fn pull_request_comments(
        &self,
        _repo: &RepoUrl,
        _number: u64,
        _since: Option<i64>,
    ) -> Result<Vec<PrComment>> {
        // A plain remote has no review comments: what a person asks for is all there is.
        Ok(Vec::new())
    }

    async fn permission(&self, _repo: &RepoUrl, _user: &str) -> Result<Permission> {
        Err(UNSUPPORTED)
    }
}

const UNSUPPORTED: ForgeError = ForgeError::Unsupported {
    forge: "git",
    what: "pull requests",
};
