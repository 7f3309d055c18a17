//! Checkouts over warm bases: the tree a base is built in, and a run's copy-on-write layer over
//! a ready base. Both are seen at the repository's mount point through a mount namespace (see
//! `nightshift_sandbox::MountView`), by sandboxed processes and Nightshift's own git alike, so
//! git's status, diffs and commits are of the merged tree: exactly what the run changed.
//!
//! Their git directories are not in the mirror's `worktrees/` but beside the tree or layer
//! (`commondir` names the mirror), so nothing of git's worktree bookkeeping — prune, "already
//! checked out" — sees them, and removing the directory removes everything.

use std::path::{Path, PathBuf};

use nightshift_sandbox::{MountView, WorkspaceMount};

use crate::bases::{BaseBuild, BaseInfo, BaseLease, remove_tree};
use crate::{AllowedRepo, Git, Mirrors, Result, WorkspaceError, Worktree};

impl Mirrors {
    /// The checkout a base of `repo` at `commit` is built in (`build`'s tree, seen at `at`):
    /// made from the base built last when there is one — a copy of its tree, dependencies and
    /// build outputs included, moved to `commit` by git — else checked out afresh. Says whether
    /// it came from `from`.
    pub async fn base_worktree(
        &self,
        repo: &AllowedRepo,
        base_branch: &str,
        commit: &str,
        build: &BaseBuild,
        at: &Path,
        from: Option<&BaseLease>,
    ) -> Result<(Worktree, bool)> {
        let mirror = self.mirror_path(repo);
        let tree = build.tree();
        let admin = build.git_dir();
        // A new view for each new tree: a view's namespace keeps the directory it was made on.
        let worktree = || {
            Worktree::layered(
                at.to_path_buf(),
                mirror.clone(),
                admin.clone(),
                None,
                base_branch.to_string(),
                commit.to_string(),
                MountView::bind(at, &tree),
            )
        };
        write_admin(
            &admin,
            &mirror,
            at,
            commit,
            from.map(BaseLease::index).as_deref(),
        )?;
        write_dot_git(&tree, &admin)?;
        if let Some(from) = from {
            let worktree = worktree();
            let git = worktree.git(self.git());
            let refreshed = async {
                copy_tree(&from.tree(), &tree).await?;
                write_dot_git(&tree, &admin)?;
                // The copy has new inodes: git looks at the files again before moving them.
                git.run(at, &["update-index", "-q", "--refresh"]).await?;
                git.run(at, &["read-tree", "-m", "-u", &from.info().commit, commit])
                    .await?;
                Ok::<_, WorkspaceError>(())
            }
            .await;
            match refreshed {
                Ok(()) => return Ok((worktree, true)),
                Err(e) => {
                    tracing::info!(error = %e, "cannot move the last base: checking out afresh");
                    remove_tree(&tree)?;
                    std::fs::create_dir_all(&tree).map_err(|e| WorkspaceError::io(&tree, e))?;
                    write_admin(&admin, &mirror, at, commit, None)?;
                    write_dot_git(&tree, &admin)?;
                }
            }
        }
        let worktree = worktree();
        worktree
            .git(self.git())
            .run(at, &["read-tree", "--reset", "-u", commit])
            .await?;
        Ok((worktree, false))
    }

    /// A run's checkout over the ready `base`, seen at `at`, on a new branch `branch`: its own
    /// git directory and an empty copy-on-write layer under `layer`, which takes every write.
    pub async fn add_layer(
        &self,
        repo: &AllowedRepo,
        base_branch: &str,
        branch: &str,
        base: &BaseLease,
        at: &Path,
        layer: &Path,
    ) -> Result<Worktree> {
        let mirror = self.mirror_path(repo);
        remove_tree(layer)?;
        let (upper, work, admin) = (layer.join("upper"), layer.join("work"), layer.join("git"));
        for dir in [&upper, &work, &admin] {
            std::fs::create_dir_all(dir).map_err(|e| WorkspaceError::io(dir, e))?;
        }
        let commit = &base.info().commit;
        self.git()
            .run(
                &mirror,
                &["update-ref", &format!("refs/heads/{branch}"), commit],
            )
            .await?;
        write_admin(
            &admin,
            &mirror,
            at,
            &format!("ref: refs/heads/{branch}"),
            Some(&base.index()),
        )?;
        // The layer's own `.git` hides the base's: the agent's git finds this run's directory.
        write_dot_git(&upper, &admin)?;
        Ok(Worktree::layered(
            at.to_path_buf(),
            mirror,
            admin,
            Some(branch.to_string()),
            base_branch.to_string(),
            commit.clone(),
            MountView::overlay(at, base.tree(), upper, work),
        ))
    }
}

impl BaseBuild {
    /// Makes the base ready for runs (see [`BaseBuild::finish`]) once its git index is settled:
    /// written in a later second than every file it lists, so that no entry is "racily clean"
    /// and git in every run trusts the index instead of reading every file again.
    pub async fn finish_with_index(
        self,
        worktree: &Worktree,
        git: &Git,
        info: BaseInfo,
    ) -> Result<BaseLease> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        tokio::time::sleep(std::time::Duration::from_nanos(
            1_000_000_000 - u64::from(now.subsec_nanos()),
        ))
        .await;
        let git = worktree.git(git);
        // Rewrites the index when it holds entries it could not trust before.
        git.run(worktree.path(), &["update-index", "-q", "--refresh"])
            .await?;
        // Written now whatever it held, so its time is past every file's.
        let index = worktree.git_dir().join("index");
        let file = std::fs::File::options()
            .append(true)
            .open(&index)
            .map_err(|e| WorkspaceError::io(&index, e))?;
        file.set_modified(std::time::SystemTime::now())
            .map_err(|e| WorkspaceError::io(&index, e))?;
        self.finish(info)
    }

    /// The git directory of the checkout being built.
    pub fn git_dir(&self) -> PathBuf {
        self.tree().with_file_name("git")
    }
}

impl Worktree {
    /// The directory of a run's layer (`None` for a plain worktree or a base being built).
    pub(crate) fn layer_dir(&self) -> Option<&Path> {
        match &self.view()?.mount {
            WorkspaceMount::Overlay { upper, .. } => upper.parent(),
            WorkspaceMount::Bind { .. } => None,
        }
    }
}

/// A linked worktree's git directory at `admin` for the tree seen at `at`: `head` is a commit
/// or `ref: …`, and the index is a copy of `index` (a base's) when given.
fn write_admin(
    admin: &Path,
    mirror: &Path,
    at: &Path,
    head: &str,
    index: Option<&Path>,
) -> Result<()> {
    std::fs::create_dir_all(admin).map_err(|e| WorkspaceError::io(admin, e))?;
    let write = |name: &str, text: String| {
        let path = admin.join(name);
        std::fs::write(&path, text).map_err(|e| WorkspaceError::io(&path, e))
    };
    let mirror = std::fs::canonicalize(mirror).map_err(|e| WorkspaceError::io(mirror, e))?;
    write("commondir", format!("{}\n", mirror.display()))?;
    write("gitdir", format!("{}\n", at.join(".git").display()))?;
    write("HEAD", format!("{head}\n"))?;
    let kept = admin.join("index");
    match index {
        Some(index) => {
            std::fs::copy(index, &kept).map_err(|e| WorkspaceError::io(&kept, e))?;
        }
        None => {
            let _ = std::fs::remove_file(&kept);
        }
    }
    Ok(())
}

fn write_dot_git(dir: &Path, admin: &Path) -> Result<()> {
    let path = dir.join(".git");
    std::fs::write(&path, format!("gitdir: {}\n", admin.display()))
        .map_err(|e| WorkspaceError::io(&path, e))
}

/// Copies `from` into the empty directory `to`, keeping links, modes and times, sharing
/// extents where the filesystem can.
async fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    let source = format!("{}/.", from.display());
    let spec =
        nightshift_sandbox::ProcessSpec::new("cp", to).args(["-a", "--reflink=auto", &source, "."]);
    let (exit, lines) = nightshift_sandbox::Sandbox::new().output(&spec).await?;
    if exit.success() {
        return Ok(());
    }
    Err(WorkspaceError::io(
        to,
        std::io::Error::other(
            lines
                .into_iter()
                .map(|l| l.text)
                .collect::<Vec<_>>()
                .join("; "),
        ),
    ))
}
