//! The mirror cache: one bare repository per remote under the data directory, fetched (not
//! re-cloned) before each run, from which every run's worktree is made.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nightshift_core::RepoUrl;

use crate::{Git, Result, WorkspaceError, Worktree};

/// What `git ls-remote` tells about a remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteInfo {
    pub default_branch: Option<String>,
    pub branches: Vec<String>,
}

pub struct Mirrors {
    root: PathBuf,
    git: Git,
    /// One lock per mirror: fetches and `worktree add` on the same mirror must not interleave.
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl Mirrors {
    pub fn new(root: impl Into<PathBuf>, git: Git) -> Self {
        Mirrors {
            root: root.into(),
            git,
            locks: Mutex::new(HashMap::new()),
        }
    }

    pub fn git(&self) -> &Git {
        &self.git
    }

    /// Where the mirror of `repo` lives: a readable name plus a hash against collisions.
    pub fn mirror_path(&self, repo: &RepoUrl) -> PathBuf {
        let url = repo.as_str();
        let readable: String = url
            .rsplit(['/', ':'])
            .find(|s| !s.is_empty())
            .unwrap_or("repo")
            .trim_end_matches(".git")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        // FNV-1a: stable across Rust releases, unlike the standard library's hasher.
        let hash = url.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        self.root.join(format!("{readable}-{hash:016x}.git"))
    }

    fn lock_for(&self, path: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(path.to_path_buf()).or_default().clone()
    }

    /// Asks the remote for its branches and default branch, without cloning.
    pub async fn remote_info(&self, repo: &RepoUrl) -> Result<RemoteInfo> {
        std::fs::create_dir_all(&self.root).map_err(|e| WorkspaceError::io(&self.root, e))?;
        let out = self
            .git
            .run(
                &self.root,
                &[
                    "ls-remote",
                    "--symref",
                    "--",
                    repo.as_str(),
                    "HEAD",
                    "refs/heads/*",
                ],
            )
            .await
            .map_err(|e| unreachable(repo, e))?;
        let mut info = RemoteInfo {
            default_branch: None,
            branches: Vec::new(),
        };
        for line in out.lines() {
            if let Some(rest) = line.strip_prefix("ref: refs/heads/") {
                info.default_branch = rest.split('\t').next().map(str::to_string);
            } else if let Some((_, name)) = line.split_once('\t')
                && let Some(branch) = name.strip_prefix("refs/heads/")
            {
                info.branches.push(branch.to_string());
            }
        }
        Ok(info)
    }

    /// Creates the mirror on first use, then fetches. Returns its path.
    pub async fn sync(&self, repo: &RepoUrl) -> Result<PathBuf> {
        let path = self.mirror_path(repo);
        let lock = self.lock_for(&path);
        let _held = lock.lock().await;
        self.sync_locked(repo, &path).await?;
        Ok(path)
    }

    async fn sync_locked(&self, repo: &RepoUrl, path: &Path) -> Result<()> {
        if !path.join("HEAD").exists() {
            std::fs::create_dir_all(path).map_err(|e| WorkspaceError::io(path, e))?;
            let p = path.to_string_lossy().to_string();
            self.git
                .run(&self.root, &["init", "--quiet", "--bare", &p])
                .await?;
            self.git
                .run(path, &["remote", "add", "origin", repo.as_str()])
                .await?;
            // Remote branches live under refs/remotes/origin so run branches in refs/heads are
            // never touched (or pruned) by a fetch.
            self.git
                .run(
                    path,
                    &[
                        "config",
                        "remote.origin.fetch",
                        "+refs/heads/*:refs/remotes/origin/*",
                    ],
                )
                .await?;
        }
        self.git
            .run(path, &["fetch", "--quiet", "--prune", "origin"])
            .await
            .map_err(|e| unreachable(repo, e))?;
        Ok(())
    }

    /// Fetches, then creates a worktree at `dest` on a new branch `branch` from `base`.
    pub async fn add_worktree(
        &self,
        repo: &RepoUrl,
        base: &str,
        branch: &str,
        dest: &Path,
    ) -> Result<Worktree> {
        self.add_worktree_from(repo, base, branch, dest, None).await
    }

    /// Like [`add_worktree`](Mirrors::add_worktree), but from the older commit `at` of `base`
    /// instead of its tip: a run taken over by another worker restores work that was done on
    /// that commit.
    pub async fn add_worktree_at(
        &self,
        repo: &RepoUrl,
        base: &str,
        branch: &str,
        dest: &Path,
        at: &str,
    ) -> Result<Worktree> {
        self.add_worktree_from(repo, base, branch, dest, Some(at))
            .await
    }

    async fn add_worktree_from(
        &self,
        repo: &RepoUrl,
        base: &str,
        branch: &str,
        dest: &Path,
        at: Option<&str>,
    ) -> Result<Worktree> {
        let mirror = self.mirror_path(repo);
        let lock = self.lock_for(&mirror);
        let _held = lock.lock().await;
        self.sync_locked(repo, &mirror).await?;
        let start = match at {
            Some(commit) => commit.to_string(),
            None => format!("refs/remotes/origin/{base}"),
        };
        let base_commit = match self
            .git
            .run(
                &mirror,
                &[
                    "rev-parse",
                    "--verify",
                    "--quiet",
                    &format!("{start}^{{commit}}"),
                ],
            )
            .await
        {
            Ok(sha) => sha.trim().to_string(),
            Err(_) => {
                return Err(match at {
                    Some(commit) => WorkspaceError::MissingCommit {
                        repo: repo.to_string(),
                        commit: commit.to_string(),
                    },
                    None => WorkspaceError::MissingBranch {
                        repo: repo.to_string(),
                        branch: base.to_string(),
                    },
                });
            }
        };
        if dest.exists() {
            // A leftover from a run that died: worktrees are disposable.
            let _ = self
                .git
                .run(
                    &mirror,
                    &["worktree", "remove", "--force", &dest.to_string_lossy()],
                )
                .await;
            let _ = std::fs::remove_dir_all(dest);
        }
        self.git.run(&mirror, &["worktree", "prune"]).await?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| WorkspaceError::io(parent, e))?;
        }
        self.git
            .run(
                &mirror,
                &[
                    "worktree",
                    "add",
                    "--quiet",
                    "--no-track",
                    "-B",
                    branch,
                    &dest.to_string_lossy(),
                    &base_commit,
                ],
            )
            .await?;
        Ok(Worktree::new(
            dest.to_path_buf(),
            mirror,
            branch.to_string(),
            base.to_string(),
            base_commit,
        ))
    }

    /// Fetches the remote again and returns the base branch's current commit.
    pub async fn refresh_base(&self, repo: &RepoUrl, base: &str) -> Result<String> {
        let mirror = self.sync(repo).await?;
        let sha = self
            .git
            .run(
                &mirror,
                &[
                    "rev-parse",
                    "--verify",
                    &format!("refs/remotes/origin/{base}^{{commit}}"),
                ],
            )
            .await
            .map_err(|_| WorkspaceError::MissingBranch {
                repo: repo.to_string(),
                branch: base.to_string(),
            })?;
        Ok(sha.trim().to_string())
    }

    /// Removes a run's worktree and its local branch.
    pub async fn remove_worktree(&self, worktree: &Worktree) -> Result<()> {
        let lock = self.lock_for(worktree.mirror());
        let _held = lock.lock().await;
        let path = worktree.path().to_string_lossy().to_string();
        let _ = self
            .git
            .run(worktree.mirror(), &["worktree", "remove", "--force", &path])
            .await;
        if worktree.path().exists() {
            std::fs::remove_dir_all(worktree.path())
                .map_err(|e| WorkspaceError::io(worktree.path(), e))?;
        }
        self.git
            .run(worktree.mirror(), &["worktree", "prune"])
            .await?;
        let _ = self
            .git
            .run(worktree.mirror(), &["branch", "-D", worktree.branch()])
            .await;
        Ok(())
    }
}

fn unreachable(repo: &RepoUrl, error: WorkspaceError) -> WorkspaceError {
    let detail = match error {
        // git's first `fatal:` line says what went wrong; the lines after it are generic advice.
        WorkspaceError::Git { stderr, .. } => stderr
            .lines()
            .find_map(|l| l.strip_prefix("fatal: "))
            .or_else(|| stderr.lines().rfind(|l| !l.trim().is_empty()))
            .unwrap_or("git failed")
            .to_string(),
        other => other.to_string(),
    };
    WorkspaceError::Unreachable {
        repo: repo.to_string(),
        detail,
    }
}
