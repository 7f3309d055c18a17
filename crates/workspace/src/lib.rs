//! Git for runs: which repositories may be reached, a bare mirror per repository (fetched, never
//! re-cloned), warm bases per repository and base commit with a copy-on-write layer per run (or
//! a worktree per run where overlays cannot be mounted), each on its own branch, commits with
//! trailers, diffs, rebase onto a fresh base, and push. Everything goes through the `git` CLI so behaviour matches what users
//! see in their own clones.

mod access;
mod bases;
mod git;
mod layer;
mod mirror;
mod replay;
mod worktree;

pub use access::{AllowedRepo, LocalRepos, RepoPolicy, Requester};
pub use bases::{BaseBuild, BaseInfo, BaseLease, Bases, BuildLock, RepoBases, remove_tree};
pub use git::Git;
pub use mirror::{Mirrors, RemoteInfo};
pub use replay::Replayed;
pub use worktree::{Diff, Worktree};

#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("`{command}` failed ({exit}): {stderr}")]
    Git {
        command: String,
        exit: String,
        stderr: String,
    },
    #[error("repository {repo} is unreachable or does not exist: {detail}")]
    Unreachable { repo: String, detail: String },
    #[error("repository {repo} is not allowed: {reason}")]
    NotAllowed { repo: String, reason: String },
    #[error("branch {branch:?} does not exist in {repo}")]
    MissingBranch { repo: String, branch: String },
    #[error("commit {commit} is not in {repo} (was the branch force-pushed?)")]
    MissingCommit { repo: String, commit: String },
    #[error("the change conflicts with new commits on {base}: {detail}")]
    Conflict { base: String, detail: String },
    #[error("push to {repo} was refused: {detail}")]
    PushRefused {
        repo: String,
        detail: String,
        permission: bool,
    },
    /// A force-push with lease found the branch elsewhere than Nightshift left it: someone
    /// pushed to it in between, and their commits are kept.
    #[error(
        "branch {branch} on {repo} moved since Nightshift pushed {expected}: someone else pushed \
         to it, so nothing was overwritten; start from the branch as it is now"
    )]
    LeaseBroken {
        repo: String,
        branch: String,
        expected: String,
    },
    #[error("refusing to push to the base branch {0}: Nightshift only pushes its own branches")]
    PushToBase(String),
    #[error(transparent)]
    Sandbox(#[from] nightshift_sandbox::SandboxError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl WorkspaceError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        WorkspaceError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

pub type Result<T, E = WorkspaceError> = std::result::Result<T, E>;
