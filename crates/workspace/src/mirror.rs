//! The mirror cache: one bare repository per remote under the data directory, fetched (not
//! re-cloned) before each run, from which every run's worktree is made.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nightshift_core::RepoUrl;

use crate::{AllowedRepo, Git, Result, WorkspaceError, Worktree};

/// What git runs on this machine to serve a local repository's side of a fetch or a push: the
/// same program with that repository's hooks and the commands its config may name turned off
/// (git runs them as the server's user otherwise; `-c` outranks the repository's own config).
const LOCAL_UPLOAD_PACK: &str =
    "git -c core.hooksPath=/dev/null -c core.fsmonitor=false upload-pack";
const LOCAL_RECEIVE_PACK: &str = "git -c core.hooksPath=/dev/null -c core.fsmonitor=false \
     -c core.alternateRefsCommand=true -c receive.autogc=false \
     -c receive.denyCurrentBranch=refuse receive-pack";

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
    pub async fn remote_info(&self, repo: &AllowedRepo) -> Result<RemoteInfo> {
        std::fs::create_dir_all(&self.root).map_err(|e| WorkspaceError::io(&self.root, e))?;
        let upload_pack = format!("--upload-pack={LOCAL_UPLOAD_PACK}");
        let mut args = vec!["ls-remote", "--symref"];
        if repo.is_local() {
            args.push(&upload_pack);
        }
        args.extend(["--", repo.as_str(), "HEAD", "refs/heads/*"]);
        let out = self
            .remote_git(repo)
            .run(&self.root, &args)
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

    /// git for talking to `repo`: an HTTP remote is reached at the addresses that were checked.
    fn remote_git(&self, repo: &AllowedRepo) -> Git {
        match repo.pin() {
            Some(pin) => self.git.with_config("http.curloptResolve", pin),
            None => self.git.clone(),
        }
    }

    /// Creates the mirror on first use, then fetches. Returns its path.
    pub async fn sync(&self, repo: &AllowedRepo) -> Result<PathBuf> {
        let path = self.mirror_path(repo);
        let lock = self.lock_for(&path);
        let _held = lock.lock().await;
        self.sync_locked(repo, &path).await?;
        Ok(path)
    }

    async fn sync_locked(&self, repo: &AllowedRepo, path: &Path) -> Result<()> {
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
        // Kept in the mirror's config because the push reads it from there; written when
        // missing, so mirrors made by an older version get it too.
        let config = std::fs::read_to_string(path.join("config")).unwrap_or_default();
        let configured = [LOCAL_UPLOAD_PACK, LOCAL_RECEIVE_PACK]
            .iter()
            .all(|program| config.contains(program));
        if repo.is_local() && !configured {
            for (key, value) in [
                ("remote.origin.uploadpack", LOCAL_UPLOAD_PACK),
                ("remote.origin.receivepack", LOCAL_RECEIVE_PACK),
            ] {
                self.git.run(path, &["config", key, value]).await?;
            }
        }
        self.remote_git(repo)
            .run(path, &["fetch", "--quiet", "--prune", "origin"])
            .await
            .map_err(|e| unreachable(repo, e))?;
        Ok(())
    }

    /// Fetches, then creates a worktree at `dest` on a new branch `branch` from `base`.
    pub async fn add_worktree(
        &self,
        repo: &AllowedRepo,
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
        repo: &AllowedRepo,
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
        repo: &AllowedRepo,
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
        self.add_worktree_locked(&mirror, dest, branch, &base_commit)
            .await?;
        Ok(Worktree::new(
            dest.to_path_buf(),
            mirror,
            branch.to_string(),
            base.to_string(),
            base_commit,
        ))
    }

    /// Fetches, then checks out the remote's `branch` (a pull request's, pushed by an earlier
    /// run) at `dest` as the starting point of a follow-up run on the same branch. The
    /// worktree's base commit is where the branch left `base`, so its diff is the whole change;
    /// [`Worktree::upstream`] is the branch's commit now, which a push with lease expects.
    pub async fn checkout_branch(
        &self,
        repo: &AllowedRepo,
        base: &str,
        branch: &str,
        dest: &Path,
    ) -> Result<Worktree> {
        let mirror = self.mirror_path(repo);
        let lock = self.lock_for(&mirror);
        let _held = lock.lock().await;
        self.sync_locked(repo, &mirror).await?;
        let at = &mirror;
        let commit_of = |name: &str| {
            let name = name.to_string();
            async move {
                self.git
                    .run(
                        at,
                        &[
                            "rev-parse",
                            "--verify",
                            "--quiet",
                            &format!("refs/remotes/origin/{name}^{{commit}}"),
                        ],
                    )
                    .await
                    .map(|sha| sha.trim().to_string())
                    .map_err(|_| WorkspaceError::MissingBranch {
                        repo: repo.to_string(),
                        branch: name,
                    })
            }
        };
        let tip = commit_of(branch).await?;
        let base_tip = commit_of(base).await?;
        let fork_point = self
            .git
            .run(&mirror, &["merge-base", &base_tip, &tip])
            .await
            .map_err(|_| WorkspaceError::Conflict {
                base: base.to_string(),
                detail: format!("{branch} shares no history with {base}"),
            })?
            .trim()
            .to_string();
        self.add_worktree_locked(&mirror, dest, branch, &tip)
            .await?;
        Ok(Worktree::new(
            dest.to_path_buf(),
            mirror,
            branch.to_string(),
            base.to_string(),
            fork_point,
        )
        .with_upstream(tip))
    }

    /// Fetches, then checks out `branch` at the tip of `base` in `dest`, for a rebase run of
    /// the remote's `branch` (a pull request's): the checkout is the new base, its
    /// [`Worktree::upstream`] the branch's commit now (which the push with lease expects), and
    /// [`Worktree::replay`] brings the pull request's commits onto it.
    pub async fn checkout_for_rebase(
        &self,
        repo: &AllowedRepo,
        base: &str,
        branch: &str,
        dest: &Path,
    ) -> Result<Worktree> {
        let mirror = self.mirror_path(repo);
        let lock = self.lock_for(&mirror);
        let _held = lock.lock().await;
        self.sync_locked(repo, &mirror).await?;
        let mut tips = Vec::new();
        for name in [branch, base] {
            let tip = self
                .git
                .run(
                    &mirror,
                    &[
                        "rev-parse",
                        "--verify",
                        "--quiet",
                        &format!("refs/remotes/origin/{name}^{{commit}}"),
                    ],
                )
                .await
                .map_err(|_| WorkspaceError::MissingBranch {
                    repo: repo.to_string(),
                    branch: name.to_string(),
                })?;
            tips.push(tip.trim().to_string());
        }
        let (tip, base_tip) = (tips.remove(0), tips.remove(0));
        self.add_worktree_locked(&mirror, dest, branch, &base_tip)
            .await?;
        Ok(Worktree::new(
            dest.to_path_buf(),
            mirror,
            branch.to_string(),
            base.to_string(),
            base_tip,
        )
        .with_upstream(tip))
    }

    /// `git worktree add` of `branch` at `commit` in `dest`, replacing a leftover there. The
    /// mirror's lock must be held.
    async fn add_worktree_locked(
        &self,
        mirror: &Path,
        dest: &Path,
        branch: &str,
        commit: &str,
    ) -> Result<()> {
        if dest.exists() {
            // A leftover from a run that died: worktrees are disposable.
            let _ = self
                .git
                .run(
                    mirror,
                    &["worktree", "remove", "--force", &dest.to_string_lossy()],
                )
                .await;
            let _ = std::fs::remove_dir_all(dest);
        }
        self.git.run(mirror, &["worktree", "prune"]).await?;
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent).map_err(|e| WorkspaceError::io(parent, e))?;
        }
        self.git
            .run(
                mirror,
                &[
                    "worktree",
                    "add",
                    "--quiet",
                    "--no-track",
                    "-B",
                    branch,
                    &dest.to_string_lossy(),
                    commit,
                ],
            )
            .await?;
        Ok(())
    }

    /// Fetches the remote again and returns the base branch's current commit.
    pub async fn refresh_base(&self, repo: &AllowedRepo, base: &str) -> Result<String> {
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

    /// Removes a run's worktree (or layer) and its local branch.
    pub async fn remove_worktree(&self, worktree: &Worktree) -> Result<()> {
        if let Some(layer) = worktree.layer_dir() {
            // The base and the mount point are shared: only the run's own layer goes.
            crate::bases::remove_tree(layer)?;
            let _ = self
                .git
                .run(worktree.mirror(), &["branch", "-D", worktree.branch()])
                .await;
            return Ok(());
        }
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

/// Why a remote could not be read, in words of our own: what the other side answered is never
/// repeated (it may be any server a URL pointed at).
fn unreachable(repo: &RepoUrl, error: WorkspaceError) -> WorkspaceError {
    let stderr = match &error {
        WorkspaceError::Git { stderr, .. } => stderr.to_lowercase(),
        _ => String::new(),
    };
    let has = |words: &[&str]| words.iter().any(|w| stderr.contains(w));
    let detail = if has(&["could not resolve host", "name or service not known"]) {
        "its host name does not resolve"
    } else if has(&[
        "failed to connect",
        "couldn't connect",
        "connection refused",
        "unable to connect",
        "timed out",
        "no route to host",
        "network is unreachable",
    ]) {
        "nothing answered at its address"
    } else if has(&[
        "could not read username",
        "could not read password",
        "authentication failed",
        "permission denied",
        "error: 401",
        "error: 403",
    ]) {
        "it asks for credentials this server does not have for it"
    } else if has(&["dubious ownership"]) {
        "git refuses it: the directory belongs to another user"
    } else if has(&["ssl", "certificate"]) {
        "its TLS certificate was not accepted"
    } else if has(&[
        "not found",
        "does not appear to be a git repository",
        "not a git repository",
        "error: 404",
    ]) {
        "no git repository answered there (a private one may need credentials; one that moved \
         needs its new URL, as redirects are not followed)"
    } else if has(&["not allowed"]) {
        "git refuses its transport"
    } else {
        "git could not read from it"
    };
    WorkspaceError::Unreachable {
        repo: repo.to_string(),
        detail: detail.to_string(),
    }
}
