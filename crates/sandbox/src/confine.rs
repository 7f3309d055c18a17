//! Confinement of a run's processes with bubblewrap: the workspace and the agent's HOME are the
//! only writable places, host secrets are invisible, the network is cut or proxied, and resource
//! limits hold for the whole process tree.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::limits::{LimitEnforcement, Limits};
use crate::proxy::AllowedHost;
use crate::{Result, SandboxError};

/// Where the proxy's Unix socket appears inside the sandbox (its private `/tmp`).
pub(crate) const PROXY_SOCKET_INSIDE: &str = "/tmp/.nightshift/proxy.sock";
/// The loopback port the in-sandbox forwarder listens on; `HTTP(S)_PROXY` point here.
pub(crate) const PROXY_PORT_INSIDE: u16 = 3128;
/// Where the sockets of [`ConfinementPolicy::forward`] appear inside the sandbox.
const FORWARD_SOCKETS_INSIDE: &str = "/tmp/.nightshift";

/// How a run's processes are confined. There is no default: `None` has to be chosen on purpose.
#[derive(Debug, Clone)]
pub enum Confinement {
    /// Processes run with the server's own view of the machine (only the environment is scrubbed).
    None,
    /// Processes run under bubblewrap with this policy.
    Bubblewrap(Box<ConfinementPolicy>),
}

/// What a confined process may reach on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Network {
    /// A private network namespace with only a loopback interface.
    None,
    /// The host's network, unfiltered.
    Full,
    /// A private network namespace whose only way out is Nightshift's egress proxy, which lets
    /// through only these hosts (HTTP CONNECT and plain HTTP).
    Allow(Vec<AllowedHost>),
}

/// What one confined process tree sees and may do.
#[derive(Debug, Clone)]
pub struct ConfinementPolicy {
    /// The run's checkout: writable.
    pub workspace: PathBuf,
    /// The agent's HOME, inside the run directory: writable, and `HOME` points to it.
    pub home: PathBuf,
    /// Paths shown read-only even when they lie under a hidden path (toolchains under a hidden home).
    pub extra_readonly: Vec<PathBuf>,
    /// Writable besides the workspace and the home, even under a hidden path (a repository's
    /// download and build caches).
    pub extra_writable: Vec<PathBuf>,
    /// Read-only although they lie inside a writable directory (the download caches within a
    /// repository's caches, for the agent): bound after the writable ones.
    pub readonly_within: Vec<PathBuf>,
    /// Paths that must not be visible at all: the data directory, other workspaces, key files.
    pub hidden: Vec<PathBuf>,
    /// `(source, path)`: the file `source` from outside shown read-only at `path` instead of
    /// what is there (a harmless stand-in for a file that must not be read, but must exist).
    pub substitutes: Vec<(PathBuf, PathBuf)>,
    pub network: Network,
    pub limits: Limits,
    /// Loopback ports inside the sandbox relayed to Unix sockets outside it (a gateway that
    /// Nightshift runs, say), whatever `network` is, except [`Network::Full`].
    pub forwards: Vec<Forward>,
    /// The in-sandbox forwarder for [`Network::Allow`] and `forwards`: a program (plus leading
    /// arguments) that understands `<listen addr> <socket>… -- <command…>`, see [`crate::netfwd`].
    pub forwarder: Vec<String>,
    /// A directory on disk in which each process gets a fresh `/tmp` of its own, removed when
    /// the process ends, so what it writes there can be measured (and bounded) from outside.
    /// `None`: a fresh tmpfs in memory.
    pub tmp: Option<PathBuf>,
}

/// One loopback port inside the sandbox whose connections go to a Unix socket outside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// The port on the sandbox's own 127.0.0.1.
    pub port: u16,
    /// The listening Unix socket outside the sandbox.
    pub socket: PathBuf,
}

impl ConfinementPolicy {
    /// A policy with the server user's home and well-known host secrets hidden, no network and
    /// the default limits.
    pub fn new(workspace: impl Into<PathBuf>, home: impl Into<PathBuf>) -> Self {
        ConfinementPolicy {
            workspace: workspace.into(),
            home: home.into(),
            extra_readonly: Vec::new(),
            extra_writable: Vec::new(),
            readonly_within: Vec::new(),
            hidden: default_hidden(),
            substitutes: Vec::new(),
            network: Network::None,
            limits: Limits::default(),
            forwards: Vec::new(),
            forwarder: default_forwarder(),
            tmp: None,
        }
    }

    pub fn hide(mut self, path: impl Into<PathBuf>) -> Self {
        self.hidden.push(path.into());
        self
    }

    pub fn readonly(mut self, path: impl Into<PathBuf>) -> Self {
        self.extra_readonly.push(path.into());
        self
    }

    /// Makes `path`, an existing directory, writable inside the sandbox.
    pub fn writable(mut self, path: impl Into<PathBuf>) -> Self {
        self.extra_writable.push(path.into());
        self
    }

    /// Makes `path`, an existing directory inside a writable one, read-only inside the sandbox.
    pub fn readonly_within(mut self, path: impl Into<PathBuf>) -> Self {
        self.readonly_within.push(path.into());
        self
    }

    /// Shows the file `source` read-only at `path` (a hidden file reads as a device nobody may
    /// open; some programs need an empty file there instead).
    pub fn substitute(mut self, path: impl Into<PathBuf>, source: impl Into<PathBuf>) -> Self {
        self.substitutes.push((source.into(), path.into()));
        self
    }

    pub fn network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// Gives each process a fresh `/tmp` in its own directory under `root` (see
    /// [`ConfinementPolicy::tmp`]).
    pub fn tmp_under(mut self, root: impl Into<PathBuf>) -> Self {
        self.tmp = Some(root.into());
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Relays `127.0.0.1:<port>` inside the sandbox to the Unix socket `socket` outside it.
    pub fn forward(mut self, port: u16, socket: impl Into<PathBuf>) -> Self {
        self.forwards.push(Forward {
            port,
            socket: socket.into(),
        });
        self
    }

    /// Whether processes start behind the in-sandbox forwarder.
    pub(crate) fn needs_forwarder(&self) -> bool {
        matches!(self.network, Network::Allow(_)) || !self.forwards.is_empty()
    }

    pub fn forwarder<I, S>(mut self, command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.forwarder = command.into_iter().map(Into::into).collect();
        self
    }

    /// Whether `path` (canonical) is invisible inside the sandbox: the deepest hidden or shown
    /// directory above it decides, as the mounts of [`ConfinementPolicy::bwrap_args`] do.
    pub fn hides(&self, path: &Path) -> bool {
        let deepest = |paths: &[PathBuf]| {
            paths
                .iter()
                .filter_map(|p| std::fs::canonicalize(p).ok())
                .filter(|p| path.starts_with(p))
                .map(|p| p.components().count())
                .max()
        };
        let shown = [self.workspace.clone(), self.home.clone()];
        let shown = deepest(&self.extra_readonly)
            .max(deepest(&self.extra_writable))
            .max(deepest(&shown));
        // The sandbox's /tmp is a fresh one: the host's is as good as hidden.
        let hidden = deepest(&self.hidden).max(deepest(&[PathBuf::from("/tmp")]));
        match (hidden, shown) {
            (Some(hidden), Some(shown)) => hidden > shown,
            (hidden, _) => hidden.is_some(),
        }
    }

    /// The bubblewrap arguments up to and including `--`; the command follows. `tmp` is the
    /// process's own directory for `/tmp` (under [`ConfinementPolicy::tmp`]), if it has one.
    pub(crate) fn bwrap_args(
        &self,
        cwd: &Path,
        proxy_socket: Option<&Path>,
        tmp: Option<&Path>,
    ) -> Result<Vec<String>> {
        let workspace = canonical(&self.workspace)?;
        let home = canonical(&self.home)?;
        let mut args: Vec<String> = [
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
            // As root bwrap would keep every capability, and with CAP_SYS_ADMIN the child could
            // simply unmount what hides the host's secrets.
            "--cap-drop",
            "ALL",
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
        ]
        .map(String::from)
        .to_vec();
        match tmp {
            Some(dir) => args.extend(["--bind".into(), path_str(dir)?.into(), "/tmp".into()]),
            None => args.extend(["--tmpfs".into(), "/tmp".into()]),
        }
        if self.network != Network::Full {
            args.push("--unshare-net".into());
        }
        // The forwarder runs inside: it must stay visible even when it lives under a directory
        // the sandbox covers (a checkout under /tmp, say).
        let forwarder = match self.forwarder.first() {
            Some(program) if self.needs_forwarder() && Path::new(program).is_absolute() => {
                Some(PathBuf::from(program))
            }
            _ => None,
        };
        // Hidden and shown paths nest (a toolchain under a hidden home, a hidden directory
        // inside a shown one): mounted shallowest first, each later mount wins inside its own.
        enum Mount {
            Hide,
            Show,
            ShowFrom(PathBuf),
        }
        let mut mounts: Vec<(PathBuf, Mount)> = Vec::new();
        for path in &self.hidden {
            // Only what exists can be covered; a symlink is covered where it points.
            if let Ok(path) = std::fs::canonicalize(path) {
                if path == Path::new("/") {
                    return Err(SandboxError::Policy(
                        "hiding / would hide the whole system".into(),
                    ));
                }
                mounts.push((path, Mount::Hide));
            }
        }
        for path in self.extra_readonly.iter().chain(forwarder.as_ref()) {
            if let Ok(path) = std::fs::canonicalize(path) {
                mounts.push((path, Mount::Show));
            }
        }
        for (source, path) in &self.substitutes {
            if let (Ok(source), Ok(path)) = (canonical(source), canonical(path)) {
                mounts.push((path, Mount::ShowFrom(source)));
            }
        }
        // At equal depth a path both hidden and shown is shown; the sort is stable.
        mounts.sort_by_key(|(path, mount)| {
            (path.components().count(), !matches!(mount, Mount::Hide))
        });
        let mut covered = Vec::new();
        for (path, mount) in mounts {
            let p = path_str(&path)?.to_string();
            match mount {
                Mount::Show => args.extend(["--ro-bind".into(), p.clone(), p]),
                Mount::ShowFrom(source) => {
                    args.extend(["--ro-bind".into(), path_str(&source)?.into(), p])
                }
                Mount::Hide if path.is_dir() => {
                    args.extend(["--tmpfs".into(), p]);
                    covered.push(path);
                }
                // bwrap binds with nodev: the device reads as nothing anyone may open.
                Mount::Hide => args.extend(["--ro-bind".into(), "/dev/null".into(), p]),
            }
        }
        // Bound last so they stay writable even when they lie inside a hidden directory.
        let writable = self
            .extra_writable
            .iter()
            .map(|p| canonical(p))
            .collect::<Result<Vec<_>>>()?;
        for path in [&workspace, &home].into_iter().chain(&writable) {
            let path = path_str(path)?.to_string();
            args.extend(["--bind".into(), path.clone(), path]);
        }
        // Over the writable binds they lie in, so they stay read-only.
        for path in &self.readonly_within {
            if let Ok(path) = std::fs::canonicalize(path) {
                let path = path_str(&path)?.to_string();
                args.extend(["--ro-bind".into(), path.clone(), path]);
            }
        }
        if let Some(socket) = proxy_socket {
            args.extend([
                "--ro-bind".into(),
                path_str(socket)?.into(),
                PROXY_SOCKET_INSIDE.into(),
            ]);
        }
        if !self.forwards.is_empty() && self.network == Network::Full {
            return Err(SandboxError::Policy(
                "forwarded ports need a private network: they would clash with the host's".into(),
            ));
        }
        let mut relays: Vec<(String, String)> = Vec::new();
        if proxy_socket.is_some() {
            relays.push((
                format!("127.0.0.1:{PROXY_PORT_INSIDE}"),
                PROXY_SOCKET_INSIDE.into(),
            ));
        }
        for forward in &self.forwards {
            if forward.port == PROXY_PORT_INSIDE && proxy_socket.is_some() {
                return Err(SandboxError::Policy(format!(
                    "port {PROXY_PORT_INSIDE} is the egress proxy's inside the sandbox"
                )));
            }
            let inside = format!("{FORWARD_SOCKETS_INSIDE}/forward-{}.sock", forward.port);
            args.extend([
                "--ro-bind".into(),
                path_str(&forward.socket)?.into(),
                inside.clone(),
            ]);
            relays.push((format!("127.0.0.1:{}", forward.port), inside));
        }
        // The empty tmpfs over a hidden dir would otherwise take writes that silently vanish;
        // remounting only that mount keeps the binds made inside it writable.
        for path in &covered {
            args.extend(["--remount-ro".into(), path_str(path)?.into()]);
        }
        args.extend(["--chdir".into(), path_str(cwd)?.into(), "--".into()]);
        if !relays.is_empty() {
            if self.forwarder.is_empty() {
                return Err(SandboxError::Policy(
                    "the network of this sandbox needs the in-sandbox forwarder (nightshift-netfwd) but none was found".into(),
                ));
            }
            args.extend(self.forwarder.iter().cloned());
            for (listen, socket) in relays {
                args.extend([listen, socket]);
            }
            args.push("--".into());
        }
        Ok(args)
    }
}

fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|_| SandboxError::MissingDir(path.to_path_buf()))
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .ok_or_else(|| SandboxError::Policy(format!("path {} is not UTF-8", path.display())))
}

/// The server user's home (SSH keys, cloud credentials, tokens), every home, and well-known
/// host secrets. A toolchain under a home goes in `extra_readonly`.
fn default_hidden() -> Vec<PathBuf> {
    let mut hidden: Vec<PathBuf> = std::env::var_os("HOME")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    // Every user's home: world-readable dotfiles leak too. Sockets stay usable on a read-only
    // bind, and any of the container sockets is root on the host.
    hidden.extend(
        [
            "/home",
            "/root",
            "/etc/shadow",
            "/etc/gshadow",
            "/run/docker.sock",
            "/var/run/docker.sock",
            "/run/containerd",
            "/run/podman",
        ]
        .map(PathBuf::from),
    );
    hidden
}

/// The `nightshift` CLI itself when that is what runs (its hidden `netfwd` subcommand), else
/// `nightshift-netfwd` next to the running executable, else on `PATH`.
fn default_forwarder() -> Vec<String> {
    const NAME: &str = "nightshift-netfwd";
    let exe = std::env::current_exe().ok();
    if let Some(exe) = exe
        .as_ref()
        .filter(|e| e.file_name().is_some_and(|n| n == "nightshift"))
        && let Some(exe) = exe.to_str()
    {
        return vec![exe.to_string(), crate::netfwd::SUBCOMMAND.to_string()];
    }
    let beside = exe.and_then(|exe| exe.parent().map(|dir| dir.join(NAME)));
    beside
        .filter(|p| p.is_file())
        .or_else(|| find_on_path(NAME))
        .and_then(|p| p.to_str().map(String::from))
        .into_iter()
        .collect()
}

/// `name` in the directories of this process's `PATH`.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    find_in(name, &std::env::var_os("PATH")?)
}

/// `name` in the directories of a `PATH`-style list.
pub(crate) fn find_in(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// What this machine supports, as found by [`detect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfinementSupport {
    pub bwrap: PathBuf,
    pub bwrap_version: String,
    /// How [`Limits`] are enforced here.
    pub limits: LimitEnforcement,
}

/// How long a failed probe of an installed bwrap stands before it is tried again (namespaces
/// allowed since, say); a missing bwrap is looked for again on every call.
const RETRY_FAILED_PROBE: Duration = Duration::from_secs(5);

/// Whether bubblewrap runs here with PID and network namespaces. A working bwrap is probed once
/// per process; while it is missing or failing it is probed again, so installing it needs no
/// restart.
pub fn detect() -> Result<ConfinementSupport> {
    struct Probe {
        /// The bwrap probed: its path, inode and modification time.
        bwrap: (PathBuf, u64, i64),
        at: Instant,
        result: std::result::Result<ConfinementSupport, String>,
    }
    static LAST: Mutex<Option<Probe>> = Mutex::new(None);
    let bwrap = find_on_path("bwrap").ok_or_else(|| {
        SandboxError::ConfinementUnavailable("bwrap (bubblewrap) is not installed".into())
    })?;
    let identity = {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&bwrap).map_err(|e| {
            SandboxError::ConfinementUnavailable(format!("{}: {e}", bwrap.display()))
        })?;
        (bwrap.clone(), meta.ino(), meta.mtime())
    };
    let mut last = LAST.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(probe) = last.as_ref().filter(|probe| {
        probe.bwrap == identity && (probe.result.is_ok() || probe.at.elapsed() < RETRY_FAILED_PROBE)
    }) {
        return probe
            .result
            .clone()
            .map_err(SandboxError::ConfinementUnavailable);
    }
    let result = probe(&bwrap);
    *last = Some(Probe {
        bwrap: identity,
        at: Instant::now(),
        result: result.clone(),
    });
    result.map_err(SandboxError::ConfinementUnavailable)
}

fn probe(bwrap: &Path) -> std::result::Result<ConfinementSupport, String> {
    let version = std::process::Command::new(bwrap)
        .arg("--version")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bwrap.display()))?;
    let run = std::process::Command::new(bwrap)
        .args([
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-net",
            "--cap-drop",
            "ALL",
        ])
        .args([
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
            "--",
            "true",
        ])
        .env_clear()
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bwrap.display()))?;
    if !run.status.success() {
        return Err(format!(
            "bwrap cannot create namespaces here ({}): {}",
            run.status,
            String::from_utf8_lossy(&run.stderr).trim()
        ));
    }
    Ok(ConfinementSupport {
        bwrap: bwrap.to_path_buf(),
        bwrap_version: String::from_utf8_lossy(&version.stdout).trim().to_string(),
        limits: crate::limits::enforcement(),
    })
}
