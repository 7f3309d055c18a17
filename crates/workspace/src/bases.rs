//! Warm bases: per repository, a checked-out tree of one base commit with setup done and the
//! checks run once, so dependencies and build outputs are there when a run starts. Runs see a
//! base through a copy-on-write layer of their own (see [`Mirrors::add_layer`]), never change
//! it, and many share one.
//!
//! On disk, `<root>/workspace/` is the empty directory every run's processes see their checkout
//! at, whichever base is under it, each in its own mount namespace; and under `<root>/<scope>/`
//! (scope: the project and the repository's mirror):
//!
//! ```text
//! build.lock          held by the one build of this repository at a time
//! .building-<key>/    a build in progress; never used, removed by the next build
//! <key>/tree/         a ready base: the tree, its git index, base.json; `use.lock` is held
//!       index           shared by each run on it (so it is never evicted under a run) and its
//!       base.json       modification time says when a run last took it
//!       use.lock
//! ```
//!
//! A base appears only by renaming its finished build directory, so a crash while building
//! leaves nothing that looks ready.
//!
//! [`Mirrors::add_layer`]: crate::Mirrors::add_layer

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::{Result, WorkspaceError};

const BUILDING: &str = ".building-";
const EVICTED: &str = ".evicted-";

/// What a ready base was built from and holds, as `base.json` records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseInfo {
    /// The key it was built for: repository, commit and the inputs of setup.
    pub key: String,
    pub commit: String,
    /// A hash of what setup depends on (its commands and the lockfiles and manifests): a
    /// refresh from this base runs setup again only when it differs.
    pub setup_inputs: String,
    /// What setup and the checks left untracked, which no run's change may contain.
    pub untracked: Vec<String>,
    /// Milliseconds since the epoch.
    pub built_at: i64,
    /// Its size on disk, counted once it was built.
    pub bytes: u64,
}

/// Every worker's bases, under one directory of its data directory, within a disk budget.
#[derive(Debug, Clone)]
pub struct Bases {
    root: PathBuf,
    /// Bytes all bases together may take; `None`: no limit.
    budget: Option<u64>,
}

impl Bases {
    pub fn new(root: impl Into<PathBuf>, budget: Option<u64>) -> Self {
        Bases {
            root: root.into(),
            budget,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bases of one repository (`scope` names it, e.g. `<project>/<mirror name>`).
    pub fn repo(&self, scope: &str) -> Result<RepoBases> {
        let dir = self.root.join(scope);
        let checkout = self.mount_point();
        for path in [&dir, &checkout] {
            std::fs::create_dir_all(path).map_err(|e| WorkspaceError::io(path, e))?;
        }
        Ok(RepoBases { dir, checkout })
    }

    /// The empty directory that setup, the checks, the agent and Nightshift's own git see a
    /// warm checkout at, whichever repository and base is under it: paths written into a base
    /// (a virtualenv's scripts, an editable install, build caches) hold for every run on it and
    /// every later base.
    pub fn mount_point(&self) -> PathBuf {
        self.root.join("workspace")
    }

    /// Removes the least recently used bases until all of them fit the budget again, never one
    /// a run holds. Returns the directories removed.
    pub fn evict_over_budget(&self) -> Vec<PathBuf> {
        let Some(budget) = self.budget else {
            return Vec::new();
        };
        let mut ready: Vec<(SystemTime, u64, PathBuf)> = Vec::new();
        for scope in subdirs(&self.root).into_iter().flat_map(|d| subdirs(&d)) {
            for base in subdirs(&scope) {
                let Some(info) = read_info(&base) else {
                    continue;
                };
                let used = std::fs::metadata(base.join("use.lock"))
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                ready.push((used, info.bytes, base));
            }
        }
        let mut total: u64 = ready.iter().map(|(_, bytes, _)| bytes).sum();
        ready.sort();
        let mut evicted = Vec::new();
        for (_, bytes, base) in ready {
            if total <= budget {
                break;
            }
            // A run on it holds its lock shared: such a base stays, whatever it costs.
            let Ok(file) = File::open(base.join("use.lock")) else {
                continue;
            };
            let Ok(_held) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
                continue;
            };
            let Some(name) = base.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            // Renamed first, so it stops looking ready at once, whatever the removal takes.
            let gone = base.with_file_name(format!("{EVICTED}{name}"));
            if std::fs::rename(&base, &gone).is_ok() {
                let _ = remove_tree(&gone);
                total = total.saturating_sub(bytes);
                evicted.push(base);
            }
        }
        evicted
    }
}

/// The bases of one repository.
#[derive(Debug, Clone)]
pub struct RepoBases {
    dir: PathBuf,
    checkout: PathBuf,
}

impl RepoBases {
    /// Where the checkout is seen (see [`Bases::mount_point`]).
    pub fn mount_point(&self) -> &Path {
        &self.checkout
    }

    /// The ready base of `key`, taken for a run (its lease keeps it from eviction).
    pub fn ready(&self, key: &str) -> Result<Option<BaseLease>> {
        BaseLease::take(&self.dir.join(key))
    }

    /// The base built last, to build the next one from when the branch moves.
    pub fn latest(&self) -> Result<Option<BaseLease>> {
        let newest = subdirs(&self.dir)
            .into_iter()
            .filter_map(|dir| read_info(&dir).map(|info| (info.built_at, dir)))
            .max();
        match newest {
            Some((_, dir)) => BaseLease::take(&dir),
            None => Ok(None),
        }
    }

    /// The right to build a base of this repository, if nobody holds it now.
    pub fn try_lock_building(&self) -> Result<Option<BuildLock>> {
        let file = self.lock_file()?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(held) => Ok(Some(BuildLock {
                dir: self.dir.clone(),
                _held: held,
            })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(WorkspaceError::io(&self.dir.join("build.lock"), e.into())),
        }
    }

    /// The right to build a base of this repository, once whoever builds one now is done.
    pub async fn lock_building(&self) -> Result<BuildLock> {
        let file = self.lock_file()?;
        let dir = self.dir.clone();
        let path = dir.join("build.lock");
        tokio::task::spawn_blocking(move || {
            Flock::lock(file, FlockArg::LockExclusive)
                .map(|held| BuildLock { dir, _held: held })
                .map_err(|(_, e)| WorkspaceError::io(&path, e.into()))
        })
        .await
        .map_err(|e| WorkspaceError::io(&self.dir, std::io::Error::other(e)))?
    }

    fn lock_file(&self) -> Result<File> {
        let path = self.dir.join("build.lock");
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| WorkspaceError::io(&path, e))
    }
}

/// Held while a base of one repository is built; others wait for it.
pub struct BuildLock {
    dir: PathBuf,
    _held: Flock<File>,
}

impl BuildLock {
    /// Starts building the base of `key` in a directory of its own, after removing what an
    /// earlier build that died left behind.
    pub fn start(&self, key: &str) -> Result<BaseBuild> {
        for dir in subdirs_named(&self.dir, |name| {
            name.starts_with(BUILDING) || name.starts_with(EVICTED)
        }) {
            remove_tree(&dir)?;
        }
        let dir = self.dir.join(format!("{BUILDING}{key}"));
        let tree = dir.join("tree");
        std::fs::create_dir_all(&tree).map_err(|e| WorkspaceError::io(&tree, e))?;
        Ok(BaseBuild {
            dir,
            ready: self.dir.join(key),
            done: false,
        })
    }
}

/// A base being built. Dropped unfinished, it is removed.
pub struct BaseBuild {
    dir: PathBuf,
    ready: PathBuf,
    done: bool,
}

impl BaseBuild {
    /// Where the tree is built (processes see it at the repository's mount point).
    pub fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// Makes the base ready for runs: the tree's git index kept (its git directory and `.git`
    /// go: each run has its own), its size and `info` recorded, then the whole directory
    /// renamed into place in one step.
    pub fn finish(mut self, mut info: BaseInfo) -> Result<BaseLease> {
        let git = self.git_dir();
        let kept = self.dir.join("index");
        std::fs::rename(git.join("index"), &kept).map_err(|e| WorkspaceError::io(&kept, e))?;
        remove_tree(&git)?;
        let dot_git = self.tree().join(".git");
        std::fs::remove_file(&dot_git).map_err(|e| WorkspaceError::io(&dot_git, e))?;
        info.bytes = disk_usage(&self.dir);
        let file = self.dir.join("base.json");
        let json = serde_json::to_vec_pretty(&info)
            .map_err(|e| WorkspaceError::io(&file, std::io::Error::other(e)))?;
        std::fs::write(&file, json).map_err(|e| WorkspaceError::io(&file, e))?;
        if self.ready.exists() {
            remove_tree(&self.ready)?;
        }
        std::fs::rename(&self.dir, &self.ready).map_err(|e| WorkspaceError::io(&self.ready, e))?;
        self.done = true;
        BaseLease::take(&self.ready)?
            .ok_or_else(|| WorkspaceError::io(&self.ready, std::io::ErrorKind::NotFound.into()))
    }
}

impl Drop for BaseBuild {
    fn drop(&mut self) {
        if !self.done {
            let _ = remove_tree(&self.dir);
        }
    }
}

/// A ready base taken for a run: while it lives, the base is not evicted.
#[derive(Debug)]
pub struct BaseLease {
    dir: PathBuf,
    info: BaseInfo,
    _held: Flock<File>,
}

impl BaseLease {
    fn take(dir: &Path) -> Result<Option<BaseLease>> {
        let Some(info) = read_info(dir) else {
            return Ok(None);
        };
        let path = dir.join("use.lock");
        let file = match File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
        {
            Ok(file) => file,
            // Evicted in between.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(WorkspaceError::io(&path, e)),
        };
        let _ = file.set_modified(SystemTime::now());
        let held = match Flock::lock(file, FlockArg::LockSharedNonblock) {
            Ok(held) => held,
            // Being evicted right now.
            Err(_) => return Ok(None),
        };
        // Evicted between reading it and taking the lock: it is gone.
        if !dir.join("base.json").is_file() {
            return Ok(None);
        }
        Ok(Some(BaseLease {
            dir: dir.to_path_buf(),
            info,
            _held: held,
        }))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn tree(&self) -> PathBuf {
        self.dir.join("tree")
    }

    /// The git index of the tree, which a run's layer starts from.
    pub fn index(&self) -> PathBuf {
        self.dir.join("index")
    }

    pub fn info(&self) -> &BaseInfo {
        &self.info
    }
}

fn read_info(dir: &Path) -> Option<BaseInfo> {
    let text = std::fs::read(dir.join("base.json")).ok()?;
    serde_json::from_slice(&text).ok()
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    subdirs_named(dir, |name| {
        !name.starts_with(BUILDING) && !name.starts_with(EVICTED)
    })
}

fn subdirs_named(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| e.file_name().to_str().is_some_and(&keep))
        .map(|e| e.path())
        .collect()
}

/// Bytes `dir` takes on disk, counted by allocated blocks (hard links once per visit).
pub(crate) fn disk_usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            total += meta.blocks() * 512;
            if meta.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    total
}

/// Removes a tree, including the directory overlayfs leaves without permissions in a layer's
/// work directory (which `remove_dir_all` cannot enter as an unprivileged user).
pub fn remove_tree(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) => {
            let mut stack = vec![dir.to_path_buf()];
            while let Some(dir) = stack.pop() {
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        stack.push(entry.path());
                    }
                }
            }
            std::fs::remove_dir_all(dir).map_err(|e| WorkspaceError::io(dir, e))
        }
    }
}
