//! A workspace seen through a mount namespace of its own: another directory shown at the
//! workspace's path (a base being built), or a copy-on-write overlay of a base with a run's own
//! layer on top. Made in a user namespace of the server's user (mapped to itself), so it needs
//! no privilege; bubblewrap, when the process is confined, starts from that view and so do git
//! and everything else the process starts.
//!
//! The namespace is made once per view, by a short-lived holder process, and kept open (its
//! `/proc/<pid>/ns` files) for as long as any copy of the view lives: every later process of
//! the run joins it between fork and exec (`setns`) instead of mounting the view again. That
//! saves a mount and a namespace teardown per process (several milliseconds each, paid by every
//! git command of a run), and every process of a run sees one and the same overlay, so what one
//! writes the next sees at once. Nothing is mounted in the host's namespace: when the server
//! dies, its descriptors close and the namespace goes with them.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::libc;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use nix::unistd::{chdir, getgid, getuid};

use crate::{Result, SandboxError};

/// What a process sees at its workspace's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceMount {
    /// `source` itself.
    Bind { source: PathBuf },
    /// `lower`, never written, under `upper`, which takes every write (a deleted file becomes a
    /// whiteout there: a character device 0/0). `work` is overlayfs's scratch directory, on the
    /// same filesystem as `upper`.
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
    },
}

/// A workspace mount at the path `at` (an existing, empty directory on the host). Copies share
/// one mount namespace, made when the first process starts.
#[derive(Debug, Clone)]
pub struct MountView {
    pub at: PathBuf,
    pub mount: WorkspaceMount,
    held: Arc<Mutex<Option<Arc<Namespace>>>>,
}

impl PartialEq for MountView {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at && self.mount == other.mount
    }
}

impl Eq for MountView {}

/// A user namespace and the mount namespace in it where the view is mounted, kept by their
/// descriptors (close-on-exec, so no process started inherits them).
#[derive(Debug)]
struct Namespace {
    user: OwnedFd,
    mnt: OwnedFd,
}

impl MountView {
    pub fn bind(at: impl Into<PathBuf>, source: impl Into<PathBuf>) -> Self {
        MountView {
            at: at.into(),
            mount: WorkspaceMount::Bind {
                source: source.into(),
            },
            held: Arc::default(),
        }
    }

    pub fn overlay(
        at: impl Into<PathBuf>,
        lower: impl Into<PathBuf>,
        upper: impl Into<PathBuf>,
        work: impl Into<PathBuf>,
    ) -> Self {
        MountView {
            at: at.into(),
            mount: WorkspaceMount::Overlay {
                lower: lower.into(),
                upper: upper.into(),
                work: work.into(),
            },
            held: Arc::default(),
        }
    }

    /// Everything [`Joined::enter`] needs for a process working in `cwd`, made before the fork
    /// (nothing may allocate after): the view's namespace, made first if no process made it yet.
    pub(crate) fn prepare(&self, cwd: &Path) -> Result<Joined> {
        let namespace = {
            let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
            match held.as_ref() {
                Some(namespace) => namespace.clone(),
                None => held.insert(Arc::new(self.make_namespace()?)).clone(),
            }
        };
        Ok(Joined {
            user: namespace.user.as_raw_fd(),
            mnt: namespace.mnt.as_raw_fd(),
            cwd: CString::new(cwd.as_os_str().as_bytes())
                .map_err(|_| SandboxError::Policy("a working directory holds a NUL byte".into()))?,
            _namespace: namespace,
        })
    }

    /// Mounts the view in a new namespace, in a holder process that does nothing but wait for
    /// its namespace to be opened here, then ends.
    fn make_namespace(&self) -> Result<Namespace> {
        let entered = self.mount_in(&self.at)?;
        let failed = |source: std::io::Error| SandboxError::Spawn {
            program: "cat".into(),
            hint: " (which holds the mount namespace the workspace is seen in)".into(),
            source,
        };
        let mut holder = std::process::Command::new("cat");
        holder
            .env_clear()
            .current_dir("/")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // SAFETY: only async-signal-safe system calls on data made before the fork.
        unsafe {
            holder.pre_exec(crate::fds::close_inherited);
            holder.pre_exec(move || entered.enter());
        }
        let mut child = holder.spawn().map_err(failed)?;
        let open = |name: &str| {
            std::fs::File::open(format!("/proc/{}/ns/{name}", child.id())).map(OwnedFd::from)
        };
        let namespace = open("user").and_then(|user| Ok((user, open("mnt")?)));
        // Its stdin closed, the holder ends; the namespace lives on in our descriptors.
        drop(child.stdin.take());
        let _ = child.wait();
        let (user, mnt) = namespace.map_err(failed)?;
        Ok(Namespace { user, mnt })
    }

    /// Everything [`Entered::enter`] needs to mount the view and enter `cwd`.
    fn mount_in(&self, cwd: &Path) -> Result<Entered> {
        let c = |text: &[u8]| {
            CString::new(text)
                .map_err(|_| SandboxError::Policy("a mount path holds a NUL byte".into()))
        };
        let (source, fstype, options) = match &self.mount {
            WorkspaceMount::Bind { source } => (c(source.as_os_str().as_bytes())?, None, None),
            WorkspaceMount::Overlay { lower, upper, work } => {
                for dir in [lower, upper, work] {
                    // overlayfs splits its options on these; no escape is portable.
                    if dir
                        .as_os_str()
                        .as_bytes()
                        .iter()
                        .any(|b| b",:\\".contains(b))
                    {
                        return Err(SandboxError::Policy(format!(
                            "{} cannot be an overlay layer: its path holds ',', ':' or '\\' \
                             (choose a data directory without them)",
                            dir.display()
                        )));
                    }
                }
                let options = format!(
                    "userxattr,lowerdir={},upperdir={},workdir={}",
                    lower.display(),
                    upper.display(),
                    work.display()
                );
                (
                    c(b"overlay")?,
                    Some(c(b"overlay")?),
                    Some(c(options.as_bytes())?),
                )
            }
        };
        Ok(Entered {
            uid_map: format!("{0} {0} 1\n", getuid()).into_bytes(),
            gid_map: format!("{0} {0} 1\n", getgid()).into_bytes(),
            source,
            target: c(self.at.as_os_str().as_bytes())?,
            fstype,
            options,
            cwd: c(cwd.as_os_str().as_bytes())?,
        })
    }
}

/// A [`MountView`]'s namespace, ready to be joined in a forked child.
pub(crate) struct Joined {
    user: RawFd,
    mnt: RawFd,
    cwd: CString,
    /// Keeps the descriptors open until the process started.
    _namespace: Arc<Namespace>,
}

impl Joined {
    /// In the forked child before exec: into the view's user namespace (where the server's user
    /// holds the rights to enter its mount namespace), then its mount namespace, then the
    /// working directory through the mount. Only async-signal-safe system calls.
    pub(crate) fn enter(&self) -> std::io::Result<()> {
        for (fd, kind) in [
            (self.user, libc::CLONE_NEWUSER),
            (self.mnt, libc::CLONE_NEWNS),
        ] {
            // SAFETY: a system call on a descriptor kept open by `_namespace`.
            if unsafe { libc::setns(fd, kind) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        chdir(self.cwd.as_c_str())?;
        Ok(())
    }
}

/// A [`MountView`] ready to be mounted in a forked child.
struct Entered {
    uid_map: Vec<u8>,
    gid_map: Vec<u8>,
    source: CString,
    target: CString,
    fstype: Option<CString>,
    options: Option<CString>,
    cwd: CString,
}

impl Entered {
    /// In the forked child before exec: a user namespace mapping the server's user to itself
    /// and a private mount namespace, the workspace mounted, and the working directory entered
    /// again through the mount. Only async-signal-safe system calls on data made before the fork.
    fn enter(&self) -> std::io::Result<()> {
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS)?;
        write_proc(c"/proc/self/setgroups", b"deny")?;
        write_proc(c"/proc/self/uid_map", &self.uid_map)?;
        write_proc(c"/proc/self/gid_map", &self.gid_map)?;
        // Nothing mounted here may reach the host's namespace.
        mount(
            None::<&std::ffi::CStr>,
            c"/",
            None::<&std::ffi::CStr>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&std::ffi::CStr>,
        )?;
        let flags = match self.fstype {
            None => MsFlags::MS_BIND | MsFlags::MS_REC,
            Some(_) => MsFlags::empty(),
        };
        mount(
            Some(self.source.as_c_str()),
            self.target.as_c_str(),
            self.fstype.as_deref(),
            flags,
            self.options.as_deref(),
        )?;
        chdir(self.cwd.as_c_str())?;
        Ok(())
    }
}

fn write_proc(path: &std::ffi::CStr, text: &[u8]) -> std::io::Result<()> {
    // SAFETY: plain system calls on a NUL-terminated path and a buffer made before the fork.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let written = libc::write(fd, text.as_ptr().cast(), text.len());
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        if written < 0 {
            return Err(error);
        }
    }
    Ok(())
}

/// Whether a copy-on-write overlay works on this machine, tried in `scratch` (a directory on
/// the filesystem the layers will live on, removed afterwards): a process deletes a file of the
/// base and adds one, and the base must be untouched. `Err` says why overlays cannot be used.
pub async fn overlay_support(scratch: &Path) -> std::result::Result<(), String> {
    let result = try_overlay(scratch).await;
    let _ = std::fs::remove_dir_all(scratch);
    result
}

async fn try_overlay(scratch: &Path) -> std::result::Result<(), String> {
    let dir = |name: &str| scratch.join(name);
    for name in ["lower", "upper", "work", "at"] {
        std::fs::create_dir_all(dir(name)).map_err(|e| format!("{}: {e}", dir(name).display()))?;
    }
    std::fs::write(dir("lower").join("probe"), "base")
        .map_err(|e| format!("{}: {e}", scratch.display()))?;
    let view = MountView::overlay(dir("at"), dir("lower"), dir("upper"), dir("work"));
    let spec = crate::ProcessSpec::new("sh", dir("at"))
        .args(["-c", "cat probe && rm probe && echo layer > added"]);
    let (exit, lines) = crate::Sandbox::new()
        .with_mount(view)
        .output(&spec)
        .await
        .map_err(|e| format!("cannot mount an overlay in a user namespace: {e}"))?;
    if !exit.success() {
        let said: Vec<String> = lines.into_iter().map(|l| l.text).collect();
        return Err(format!(
            "cannot mount an overlay in a user namespace ({exit}): {}",
            said.join("; ")
        ));
    }
    let base_kept = std::fs::read_to_string(dir("lower").join("probe")).is_ok_and(|t| t == "base");
    if !base_kept || !dir("upper").join("added").is_file() {
        return Err("an overlay mounted here did not keep its writes off the base".into());
    }
    Ok(())
}
