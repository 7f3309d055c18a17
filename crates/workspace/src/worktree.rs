//! One run's checkout: its own branch in the mirror, its own directory.

use std::path::{Path, PathBuf};

use nightshift_sandbox::{MountView, WorkspaceMount};

use crate::{Git, Result, WorkspaceError};

/// Stored diffs are capped; the stat and file list always cover the whole change.
const MAX_DIFF_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Worktree {
    path: PathBuf,
    mirror: PathBuf,
    /// The worktree's own directory inside the mirror (`<mirror>/worktrees/<name>`).
    git_dir: PathBuf,
    branch: String,
    base: String,
    base_commit: String,
    /// For a checkout of a branch that is already on the remote (a follow-up run): the commit
    /// it pointed at then, which a force-push with lease expects to find there.
    upstream: Option<String>,
    /// Patterns of paths that are never part of the change (what setup and the checks left
    /// behind), given to Nightshift's git as `core.excludesFile`.
    excludes: Option<PathBuf>,
    /// How the checkout is seen at `path` when it is not the directory itself: a base being
    /// built, or a run's layer over a base. Everything that runs in it, git included, sees it so.
    view: Option<MountView>,
}

/// What a change did, as git reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub patch: String,
    pub stat: String,
    pub files: Vec<String>,
}

impl Worktree {
    pub(crate) fn new(
        path: PathBuf,
        mirror: PathBuf,
        branch: String,
        base: String,
        base_commit: String,
    ) -> Self {
        let git_dir = admin_dir(&mirror, &path).unwrap_or_else(|| mirror.join("worktrees/unknown"));
        Worktree {
            path,
            git_dir,
            mirror,
            branch,
            base,
            base_commit,
            upstream: None,
            excludes: None,
            view: None,
        }
    }

    /// A checkout seen at `path` through `view`, with its git directory at `git_dir`.
    pub(crate) fn layered(
        path: PathBuf,
        mirror: PathBuf,
        git_dir: PathBuf,
        branch: Option<String>,
        base: String,
        base_commit: String,
        view: MountView,
    ) -> Self {
        Worktree {
            path,
            mirror,
            git_dir,
            branch: branch.unwrap_or_default(),
            base,
            base_commit,
            excludes: None,
            upstream: None,
            view: Some(view),
        }
    }

    /// How the checkout is mounted at [`path`](Worktree::path), when it is.
    pub fn view(&self) -> Option<&MountView> {
        self.view.as_ref()
    }

    /// Where Nightshift itself reads the checkout's files as they were before anyone changed
    /// them (processes see them at [`path`](Worktree::path)): a layered checkout's base.
    pub fn unchanged_tree(&self) -> &Path {
        match self.view.as_ref().map(|v| &v.mount) {
            Some(WorkspaceMount::Bind { source }) => source,
            Some(WorkspaceMount::Overlay { lower, .. }) => lower,
            None => &self.path,
        }
    }

    /// This worktree as a checkout of the remote branch that pointed at `upstream`.
    pub(crate) fn with_upstream(mut self, upstream: String) -> Self {
        self.upstream = Some(upstream);
        self
    }

    /// The commit the branch pointed at on the remote when this checkout of it was made;
    /// `None` for a fresh branch.
    pub fn upstream(&self) -> Option<&str> {
        self.upstream.as_deref()
    }

    /// Re-attaches to a worktree that already exists (a resumed run).
    pub fn existing(
        path: PathBuf,
        mirror: PathBuf,
        branch: String,
        base: String,
        base_commit: String,
    ) -> Self {
        Worktree::new(path, mirror, branch, base, base_commit)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mirror(&self) -> &Path {
        &self.mirror
    }

    /// The worktree's directory inside the mirror: HEAD, index. Sandboxed git reads it.
    pub fn git_dir(&self) -> &Path {
        &self.git_dir
    }

    /// `git` pinned to this worktree's repository: what Nightshift itself runs in a checkout
    /// that an agent or a check has had in its hands (see [`Git::pinned_to`]).
    pub fn git(&self, git: &Git) -> Git {
        let mut pinned = git.pinned_to(&self.git_dir, &self.path);
        if let Some(view) = &self.view {
            pinned = pinned.with_mount(view.clone());
        }
        match &self.excludes {
            Some(file) => pinned.with_config("core.excludesFile", &file.display().to_string()),
            None => pinned,
        }
    }

    /// The paths no commit holds and the repository does not ignore, as git lists them (a
    /// directory with nothing tracked in it as `dir/`).
    pub async fn untracked(&self, git: &Git) -> Result<Vec<String>> {
        let out = self
            .git(git)
            .run(
                &self.path,
                &[
                    "ls-files",
                    "--others",
                    "--exclude-standard",
                    "--directory",
                    "--no-empty-directory",
                    "-z",
                ],
            )
            .await?;
        Ok(nul_separated(&out))
    }

    /// Puts every tracked file back as the last commit has it, and returns the ones that had
    /// changed; untracked files stay.
    pub async fn restore_tracked(&self, git: &Git) -> Result<Vec<String>> {
        let git = &self.git(git);
        let changed = nul_separated(
            &git.run(&self.path, &["diff", "--name-only", "-z", "HEAD"])
                .await?,
        );
        if !changed.is_empty() {
            git.run(&self.path, &["reset", "--hard", "--quiet", "HEAD"])
                .await?;
        }
        Ok(changed)
    }

    /// Leaves `paths` (as [`untracked`](Worktree::untracked) lists them) out of everything
    /// Nightshift's git does here from now on — status, diffs, snapshots, the commit — through
    /// an excludes file written to `file`, outside the checkout where no sandbox reaches it.
    pub fn exclude(&mut self, paths: &[String], file: &Path) -> Result<()> {
        let mut patterns = String::new();
        // gitignore has no way to write a newline in a name.
        for path in paths.iter().filter(|p| !p.contains('\n')) {
            // Anchored at the root, with gitignore's special characters taken literally.
            patterns.push('/');
            for c in path.chars() {
                if matches!(c, '*' | '?' | '[' | '\\' | '!' | '#') {
                    patterns.push('\\');
                }
                patterns.push(c);
            }
            if patterns.ends_with(' ') {
                patterns.pop();
                patterns.push_str("\\ ");
            }
            patterns.push('\n');
        }
        std::fs::write(file, patterns).map_err(|e| WorkspaceError::io(file, e))?;
        self.excludes = Some(file.to_path_buf());
        Ok(())
    }

    pub fn branch(&self) -> &str {
        &self.branch
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn base_commit(&self) -> &str {
        &self.base_commit
    }

    /// The committed contents of the files `pathspecs` match (`git ls-files -s`): what setup
    /// installs from, as the commit has it.
    pub async fn tracked_contents(&self, git: &Git, pathspecs: &[&str]) -> Result<String> {
        let mut args = vec!["ls-files", "--stage", "--"];
        args.extend_from_slice(pathspecs);
        self.git(git).run(&self.path, &args).await
    }

    /// How the files `pathspecs` match differ from the base commit now, as a patch of the
    /// tracked ones followed by the names and blob ids of new ones (empty: unchanged).
    pub async fn changes_among(&self, git: &Git, pathspecs: &[&str]) -> Result<String> {
        let git = &self.git(git);
        let mut diff = vec!["diff", "--binary", "--no-color", &self.base_commit, "--"];
        diff.extend_from_slice(pathspecs);
        let mut changes = git.run(&self.path, &diff).await?;
        let mut others = vec!["ls-files", "--others", "--exclude-standard", "-z", "--"];
        others.extend_from_slice(pathspecs);
        let added = nul_separated(&git.run(&self.path, &others).await?);
        if !added.is_empty() {
            let mut hash = vec!["hash-object", "--"];
            hash.extend(added.iter().map(String::as_str));
            let ids = git.run(&self.path, &hash).await?;
            for (path, id) in added.iter().zip(ids.lines()) {
                changes.push_str(&format!("new file {path} {id}\n"));
            }
        }
        Ok(changes)
    }

    /// Whether anything differs from the last commit, untracked files included.
    pub async fn has_changes(&self, git: &Git) -> Result<bool> {
        Ok(!self
            .git(git)
            .run(&self.path, &["status", "--porcelain"])
            .await?
            .trim()
            .is_empty())
    }

    /// Commits everything with `message` and `trailers`; returns the commit id.
    pub async fn commit(
        &self,
        git: &Git,
        message: &str,
        trailers: &[(&str, String)],
    ) -> Result<String> {
        let git = &self.git(git);
        git.run(&self.path, &["add", "--all"]).await?;
        let trailer_args: Vec<String> = trailers.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let mut args = vec!["commit", "--quiet", "--no-verify", "-m", message];
        for t in &trailer_args {
            args.push("--trailer");
            args.push(t);
        }
        git.run(&self.path, &args).await?;
        self.head(git).await
    }

    pub async fn head(&self, git: &Git) -> Result<String> {
        Ok(self
            .git(git)
            .run(&self.path, &["rev-parse", "HEAD"])
            .await?
            .trim()
            .to_string())
    }

    /// The committed change against the commit the run started from.
    pub async fn diff(&self, git: &Git) -> Result<Diff> {
        let git = &self.git(git);
        let range = format!("{}..HEAD", self.base_commit);
        let mut patch = git.run(&self.path, &["diff", "--no-color", &range]).await?;
        if patch.len() > MAX_DIFF_BYTES {
            let mut cut = MAX_DIFF_BYTES;
            while !patch.is_char_boundary(cut) {
                cut -= 1;
            }
            patch.truncate(cut);
            patch.push_str("\n… diff truncated; the branch has the whole change\n");
        }
        let stat = git
            .run(&self.path, &["diff", "--stat", "--no-color", &range])
            .await?;
        let files = git
            .run(&self.path, &["diff", "--name-only", &range])
            .await?
            .lines()
            .map(str::to_string)
            .collect();
        Ok(Diff {
            patch,
            stat: stat.trim_end().to_string(),
            files,
        })
    }

    /// Writes everything that differs from the base commit — committed or not, new files
    /// included — to `patch` as a binary patch that [`apply`](Worktree::apply) restores in
    /// another worktree on the same base commit.
    pub async fn save_patch(&self, git: &Git, patch: &Path) -> Result<()> {
        // The checkout has been in the agent's hands: git runs pinned to the mirror's worktree.
        let git = &self.git(git);
        git.run(&self.path, &["add", "--all"]).await?;
        let output = format!("--output={}", patch.display());
        git.run(
            &self.path,
            &[
                "diff",
                "--cached",
                "--binary",
                "--no-color",
                "--no-ext-diff",
                "--no-renames",
                &output,
                &self.base_commit,
            ],
        )
        .await?;
        Ok(())
    }

    /// Writes everything that differs from the base commit — committed or not, new files
    /// included, renames found — to `out` as a text diff to be read (binary files are named,
    /// not included), with paths unquoted and `a/`, `b/` prefixes whatever git's configuration.
    pub async fn write_review_diff(&self, git: &Git, out: &Path) -> Result<()> {
        let git = &self.git(git);
        git.run(&self.path, &["add", "--all"]).await?;
        let output = format!("--output={}", out.display());
        git.run(
            &self.path,
            &[
                "-c",
                "core.quotePath=false",
                "diff",
                "--cached",
                "-M",
                "--no-color",
                "--no-ext-diff",
                "--no-textconv",
                "--src-prefix=a/",
                "--dst-prefix=b/",
                &output,
                &self.base_commit,
            ],
        )
        .await?;
        Ok(())
    }

    /// The text of `path` on the base commit; `None` when the base has no such file.
    pub async fn base_text(&self, git: &Git, path: &str) -> Result<Option<String>> {
        let object = format!("{}:{path}", self.base_commit);
        match self
            .git(git)
            .run(&self.path, &["cat-file", "blob", &object])
            .await
        {
            Ok(text) => Ok(Some(text)),
            Err(WorkspaceError::Git { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Applies a patch written by [`save_patch`](Worktree::save_patch) to the checkout,
    /// uncommitted. All or nothing: a patch that does not apply changes no file.
    pub async fn apply(&self, git: &Git, patch: &Path) -> Result<()> {
        let git = &self.git(git);
        let patch = patch.display().to_string();
        git.run(
            &self.path,
            &["apply", "--binary", "--whitespace=nowarn", &patch],
        )
        .await?;
        Ok(())
    }

    /// Replays the run's commit onto `new_base`. A conflict aborts the rebase and is reported.
    pub async fn rebase_onto(&mut self, git: &Git, new_base: &str) -> Result<()> {
        if new_base == self.base_commit {
            return Ok(());
        }
        let git = &self.git(git);
        if let Err(e) = git.run(&self.path, &["rebase", "--quiet", new_base]).await {
            let _ = git.run(&self.path, &["rebase", "--abort"]).await;
            let detail = match e {
                WorkspaceError::Git { stderr, .. } => stderr
                    .lines()
                    .filter(|l| l.starts_with("CONFLICT") || l.starts_with("error"))
                    .collect::<Vec<_>>()
                    .join("; "),
                other => other.to_string(),
            };
            return Err(WorkspaceError::Conflict {
                base: self.base.clone(),
                detail,
            });
        }
        self.base_commit = new_base.to_string();
        Ok(())
    }

    /// Pushes HEAD to `refs/heads/<branch>` on the remote (replacing an earlier run's push of the
    /// same task's branch). Never pushes to the base branch.
    pub async fn push(&self, git: &Git, remote_label: &str) -> Result<String> {
        let refspec = format!("+HEAD:refs/heads/{}", self.branch);
        self.push_refspec(git, remote_label, "--porcelain", &refspec, None)
            .await
    }

    /// Pushes HEAD over the branch only if the remote still has it at `expected` (what
    /// Nightshift pushed last): `--force-with-lease=refs/heads/<branch>:<expected>`. A person's
    /// push in between is never overwritten: that is [`WorkspaceError::LeaseBroken`].
    pub async fn push_with_lease(
        &self,
        git: &Git,
        remote_label: &str,
        expected: &str,
    ) -> Result<String> {
        let lease = format!("--force-with-lease=refs/heads/{}:{expected}", self.branch);
        let refspec = format!("HEAD:refs/heads/{}", self.branch);
        self.push_refspec(git, remote_label, &lease, &refspec, Some(expected))
            .await
    }

    async fn push_refspec(
        &self,
        git: &Git,
        remote_label: &str,
        option: &str,
        refspec: &str,
        lease: Option<&str>,
    ) -> Result<String> {
        if self.branch == self.base {
            return Err(WorkspaceError::PushToBase(self.base.clone()));
        }
        let push = ["push", "--quiet", option, "origin", refspec];
        if let Err(e) = self.git(git).run(&self.path, &push).await {
            let detail = match e {
                WorkspaceError::Git { stderr, .. } => stderr,
                other => other.to_string(),
            };
            if let Some(expected) = lease
                && (detail.contains("stale info") || detail.contains("[rejected]"))
            {
                return Err(WorkspaceError::LeaseBroken {
                    repo: remote_label.to_string(),
                    branch: self.branch.clone(),
                    expected: expected.to_string(),
                });
            }
            let lower = detail.to_lowercase();
            let permission = [
                "permission",
                "denied",
                "403",
                "401",
                "insufficient",
                "unauthorized",
                "read-only",
                "authentication",
            ]
            .iter()
            .any(|w| lower.contains(w));
            return Err(WorkspaceError::PushRefused {
                repo: remote_label.to_string(),
                detail,
                permission,
            });
        }
        self.head(git).await
    }
}

/// The names in git's `-z` output (to which output capture adds a final newline).
fn nul_separated(out: &str) -> Vec<String> {
    out.strip_suffix('\n')
        .unwrap_or(out)
        .split('\0')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect()
}

/// The mirror's directory for the worktree at `path`: the one whose `gitdir` file points back
/// to `<path>/.git`. Found from the mirror's side, which sandboxed processes cannot change,
/// rather than from the worktree's `.git` file, which they can.
fn admin_dir(mirror: &Path, path: &Path) -> Option<PathBuf> {
    let want = std::fs::canonicalize(path).ok()?.join(".git");
    std::fs::read_dir(mirror.join("worktrees"))
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .find(|dir| {
            std::fs::read_to_string(dir.join("gitdir"))
                .ok()
                .and_then(|text| std::fs::canonicalize(text.trim().trim_end_matches("/.git")).ok())
                .is_some_and(|p| p.join(".git") == want)
        })
}
