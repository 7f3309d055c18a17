//! Resource limits for one confined process tree: a cgroup (v2 or v1) of its own when this
//! process may create one, otherwise rlimits set between fork and exec.

use std::ffi::CString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::resource::{Resource, getrlimit, setrlimit};

use crate::{Result, SandboxError};

const GIB: u64 = 1024 * 1024 * 1024;

/// Limits for one process tree. `None` leaves that resource as the server has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Memory of the whole tree (cgroup), or data segment per process (rlimit fallback).
    pub memory_bytes: Option<u64>,
    /// Processes and threads of the whole tree (cgroup), or of the user (rlimit fallback).
    pub processes: Option<u64>,
    /// The largest file a process may write (RLIMIT_FSIZE, always per process).
    pub file_size_bytes: Option<u64>,
    /// Open file descriptors per process (RLIMIT_NOFILE).
    pub open_files: Option<u64>,
}

impl Default for Limits {
    /// Room for a large Rust or Node build, not for a runaway one.
    fn default() -> Self {
        Limits {
            memory_bytes: Some(8 * GIB),
            processes: Some(4096),
            file_size_bytes: Some(16 * GIB),
            open_files: Some(65_536),
        }
    }
}

impl Limits {
    pub fn unlimited() -> Self {
        Limits {
            memory_bytes: None,
            processes: None,
            file_size_bytes: None,
            open_files: None,
        }
    }
}

/// How memory and process-count limits are enforced on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitEnforcement {
    /// A child cgroup per process tree under the server's own cgroup (unified hierarchy).
    CgroupV2 { parent: PathBuf },
    /// Child cgroups in the legacy `pids` and `memory` hierarchies.
    CgroupV1 { pids: PathBuf, memory: PathBuf },
    /// rlimits only. RLIMIT_NPROC counts every process of the user and does not bind root, and
    /// RLIMIT_DATA is per process: weaker, so say so.
    Rlimit,
}

/// Finds writable cgroup hierarchies for the server's own cgroup.
pub fn enforcement() -> LimitEnforcement {
    let Ok(own) = std::fs::read_to_string("/proc/self/cgroup") else {
        return LimitEnforcement::Rlimit;
    };
    let mut v2 = None;
    let (mut pids, mut memory) = (None, None);
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let path = path.trim_start_matches('/');
        if controllers.is_empty() {
            v2 = Some(Path::new("/sys/fs/cgroup").join(path));
        }
        for controller in controllers.split(',') {
            let dir = Path::new("/sys/fs/cgroup").join(controller).join(path);
            match controller {
                "pids" => pids = Some(dir),
                "memory" => memory = Some(dir),
                _ => {}
            }
        }
    }
    if let Some(parent) = v2 {
        // Only usable when someone delegated these controllers to our subtree.
        let delegated =
            std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
        let has = |c: &str| delegated.split_whitespace().any(|d| d == c);
        if has("pids") && has("memory") && probe_mkdir(&parent) {
            return LimitEnforcement::CgroupV2 { parent };
        }
    }
    if let (Some(pids), Some(memory)) = (pids, memory)
        && probe_mkdir(&pids)
        && probe_mkdir(&memory)
    {
        return LimitEnforcement::CgroupV1 { pids, memory };
    }
    LimitEnforcement::Rlimit
}

fn probe_mkdir(parent: &Path) -> bool {
    let dir = parent.join(format!("nightshift-probe-{}", std::process::id()));
    let made = std::fs::create_dir(&dir).is_ok();
    let _ = std::fs::remove_dir(&dir);
    made
}

/// The cgroups of one process tree; removed again when dropped (once the tree is gone).
#[derive(Debug)]
pub(crate) struct CgroupLease {
    dirs: Vec<PathBuf>,
    /// `cgroup.procs` of each dir: the child writes "0" to join before it execs.
    procs: Vec<CString>,
}

impl CgroupLease {
    pub(crate) fn create(limits: &Limits, how: &LimitEnforcement) -> Result<Option<CgroupLease>> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            "nightshift-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        if limits.processes.is_none() && limits.memory_bytes.is_none() {
            // Creating cgroups costs milliseconds per spawn; skip it when there is nothing to cap.
            return Ok(None);
        }
        let mut settings: Vec<(PathBuf, Vec<(&str, u64)>)> = Vec::new();
        match how {
            LimitEnforcement::Rlimit => return Ok(None),
            LimitEnforcement::CgroupV2 { parent } => {
                let mut files = Vec::new();
                files.extend(limits.processes.map(|n| ("pids.max", n)));
                files.extend(limits.memory_bytes.map(|n| ("memory.max", n)));
                files.extend(limits.memory_bytes.map(|_| ("memory.swap.max", 0)));
                settings.push((parent.join(&name), files));
            }
            LimitEnforcement::CgroupV1 { pids, memory } => {
                settings.push((
                    pids.join(&name),
                    limits
                        .processes
                        .map(|n| ("pids.max", n))
                        .into_iter()
                        .collect(),
                ));
                let mut files: Vec<(&str, u64)> = Vec::new();
                if let Some(n) = limits.memory_bytes {
                    // memsw (memory + swap) must not be below the memory limit, so it goes second.
                    files.extend([
                        ("memory.limit_in_bytes", n),
                        ("memory.memsw.limit_in_bytes", n),
                    ]);
                }
                settings.push((memory.join(&name), files));
            }
        }
        let mut lease = CgroupLease {
            dirs: Vec::new(),
            procs: Vec::new(),
        };
        for (dir, files) in settings {
            std::fs::create_dir(&dir).map_err(|e| cgroup_error(&dir, e))?;
            lease.dirs.push(dir.clone());
            for (file, value) in files {
                let path = dir.join(file);
                // memsw only exists when swap accounting is on; without swap there is nothing to cap.
                if file == "memory.memsw.limit_in_bytes" && !path.exists() {
                    continue;
                }
                std::fs::write(&path, value.to_string()).map_err(|e| cgroup_error(&path, e))?;
            }
            let procs = CString::new(
                dir.join("cgroup.procs")
                    .into_os_string()
                    .into_encoded_bytes(),
            )
            .map_err(|_| {
                SandboxError::Policy(format!("cgroup path {} contains NUL", dir.display()))
            })?;
            lease.procs.push(procs);
        }
        Ok(Some(lease))
    }

    /// What the child needs to join these cgroups, owned so it can move into `pre_exec`.
    pub(crate) fn join_handle(&self) -> CgroupJoin {
        CgroupJoin {
            procs: self.procs.clone(),
        }
    }

    /// Removes the (by now empty) cgroups.
    pub(crate) fn remove(&mut self) {
        let left: Vec<PathBuf> = self
            .dirs
            .drain(..)
            .filter(|dir| std::fs::remove_dir(dir).is_err() && dir.exists())
            .collect();
        if left.is_empty() {
            return;
        }
        // The last processes of a killed tree can take a moment to leave; retry off the async
        // threads rather than block them.
        std::thread::spawn(move || {
            for _ in 0..500 {
                std::thread::sleep(std::time::Duration::from_millis(10));
                if left
                    .iter()
                    .all(|dir| std::fs::remove_dir(dir).is_ok() || !dir.exists())
                {
                    return;
                }
            }
            tracing::warn!(
                ?left,
                "cgroups of a finished process tree could not be removed"
            );
        });
    }
}

/// The `cgroup.procs` files a child writes itself into.
#[derive(Debug)]
pub(crate) struct CgroupJoin {
    procs: Vec<CString>,
}

impl CgroupJoin {
    /// Runs in the forked child before exec: only async-signal-safe calls.
    pub(crate) fn join_self(&self) -> std::io::Result<()> {
        use nix::fcntl::{OFlag, open};
        use nix::sys::stat::Mode;
        for procs in &self.procs {
            let fd = open(
                procs.as_c_str(),
                OFlag::O_WRONLY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            // SAFETY: `fd` was just opened by us and is closed exactly once, here.
            let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            nix::unistd::write(&fd, b"0")?;
        }
        Ok(())
    }
}

impl Drop for CgroupLease {
    fn drop(&mut self) {
        self.remove();
    }
}

fn cgroup_error(path: &Path, source: std::io::Error) -> SandboxError {
    SandboxError::Limits {
        what: format!("cannot set up cgroup {}", path.display()),
        source,
    }
}

/// Runs in the forked child before exec: rlimits are inherited by the whole tree.
pub(crate) fn apply_rlimits(limits: &Limits, cgroup: bool) -> std::io::Result<()> {
    let set = |resource, value: Option<u64>| -> std::io::Result<()> {
        if let Some(v) = value {
            // Without privileges a hard limit can only go down.
            let (_, hard) = getrlimit(resource)?;
            let v = v.min(hard);
            setrlimit(resource, v, v)?;
        }
        Ok(())
    };
    set(Resource::RLIMIT_FSIZE, limits.file_size_bytes)?;
    set(Resource::RLIMIT_NOFILE, limits.open_files)?;
    if !cgroup {
        set(Resource::RLIMIT_NPROC, limits.processes)?;
        set(Resource::RLIMIT_DATA, limits.memory_bytes)?;
    }
    Ok(())
}
