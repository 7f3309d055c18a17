//! A workspace seen through the process's own mount namespace: another directory shown at the
//! workspace's path (a base being built), or a copy-on-write overlay of a base with a run's own
//! layer on top. Made between fork and exec, in a user namespace of the server's user (mapped
//! to itself), so it needs no privilege; bubblewrap, when the process is confined, starts from
//! that view and so do git and everything else the process starts.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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

/// A workspace mount at the path `at` (an existing, empty directory on the host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountView {
    pub at: PathBuf,
    pub mount: WorkspaceMount,
}

impl MountView {
    pub fn bind(at: impl Into<PathBuf>, source: impl Into<PathBuf>) -> Self {
        MountView {
            at: at.into(),
            mount: WorkspaceMount::Bind {
                source: source.into(),
            },
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
        }
    }

    /// Everything [`Entered::enter`] needs, made before the fork (nothing may allocate after).
    pub(crate) fn prepare(&self, cwd: &Path) -> Result<Entered> {
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

/// A [`MountView`] ready to be entered in a forked child.
pub(crate) struct Entered {
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
    pub(crate) fn enter(&self) -> std::io::Result<()> {
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
