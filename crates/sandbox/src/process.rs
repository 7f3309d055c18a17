//! Starting, watching and stopping one process tree, confined or not.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nightshift_core::OutputStream;
use tokio::process::Command;

use crate::confine::{Confinement, ConfinementPolicy, Network, PROXY_PORT_INSIDE, find_in};
use crate::limits::{CgroupLease, LimitEnforcement, apply_rlimits};
use crate::mount::MountView;
use crate::proxy::EgressProxy;
use crate::running::{Held, RunningProcess};
use crate::tmp::ProcessTmp;
use crate::{Result, SandboxError};
use nightshift_core::Redactor;

/// What to run, where, and with exactly which environment (nothing is inherited).
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
}

impl ProcessSpec {
    pub fn new(program: impl Into<String>, cwd: impl Into<PathBuf>) -> Self {
        ProcessSpec {
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.into(),
            env: Vec::new(),
        }
    }

    /// `sh -c <script>`: how repository checks and `command` agents are run.
    pub fn shell(script: &str, cwd: impl Into<PathBuf>) -> Self {
        ProcessSpec::new("sh", cwd).arg("-c").arg(script)
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }

    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One line of a process's output. Invalid UTF-8 is replaced, never dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: OutputStream,
    pub text: String,
    pub truncated: bool,
}

/// How a process ended. Under confinement bwrap reports a command killed by signal N as
/// `Code(128 + N)`, the way a shell does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Nightshift stopped it (cancel, timeout, budget).
    Killed,
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }

    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(c),
            _ => None,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::Killed => f.write_str("stopped by Nightshift"),
        }
    }
}

/// Starts processes with a scrubbed environment: only `base_env` and the spec's own variables.
#[derive(Debug, Clone)]
pub struct Sandbox {
    base_env: Vec<(String, String)>,
    grace: Duration,
    confined: Option<Arc<Confined>>,
    redactor: Option<Arc<Redactor>>,
    /// The workspace as processes see it, when it is not the directory itself.
    mount: Option<Arc<MountView>>,
}

/// Everything a confined spawn needs, shared by clones of the sandbox.
#[derive(Debug)]
struct Confined {
    policy: ConfinementPolicy,
    bwrap: PathBuf,
    limits: LimitEnforcement,
    // Lives as long as the sandbox: the proxy stops when the last clone is dropped.
    proxy: Option<EgressProxy>,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    /// A sandbox whose processes see only `PATH` (from the server) and a UTF-8 locale.
    pub fn new() -> Self {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        Sandbox {
            base_env: vec![("PATH".into(), path), ("LANG".into(), "C.UTF-8".into())],
            grace: Duration::from_secs(2),
            confined: None,
            redactor: None,
            mount: None,
        }
    }

    /// Whether bubblewrap confinement works on this machine, and how limits are enforced.
    pub fn detect() -> Result<crate::ConfinementSupport> {
        crate::detect()
    }

    /// A sandbox confined as chosen. `Confinement::None` is the explicit opt-out.
    pub fn with_confinement(confinement: Confinement) -> Result<Sandbox> {
        match confinement {
            Confinement::None => Ok(Sandbox::new()),
            Confinement::Bubblewrap(policy) => Sandbox::confined(*policy),
        }
    }

    /// A sandbox whose processes run under bubblewrap with `policy`. Fails with
    /// [`SandboxError::ConfinementUnavailable`] when bubblewrap or namespaces do not work here.
    /// With [`Network::Allow`] this starts the egress proxy, so it must run inside Tokio.
    pub fn confined(policy: ConfinementPolicy) -> Result<Sandbox> {
        let support = crate::detect()?;
        for dir in [&policy.workspace, &policy.home] {
            if !dir.is_dir() {
                return Err(SandboxError::MissingDir(dir.clone()));
            }
        }
        let mut sandbox = Sandbox::new();
        let home = policy.home.to_string_lossy().into_owned();
        sandbox
            .base_env
            .extend([("HOME".into(), home), ("TMPDIR".into(), "/tmp".into())]);
        if policy.needs_forwarder() && policy.forwarder.is_empty() {
            return Err(SandboxError::Policy(
                "this sandbox's network needs the in-sandbox forwarder nightshift-netfwd: install it \
                 next to the server binary or on PATH, or set ConfinementPolicy::forwarder"
                    .into(),
            ));
        }
        let proxy = match &policy.network {
            Network::Allow(hosts) => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Err(SandboxError::Policy(
                        "Network::Allow must be set up inside a Tokio runtime".into(),
                    ));
                }
                let url = format!("http://127.0.0.1:{PROXY_PORT_INSIDE}");
                // Yarn 2+ reads only its own proxy settings, not the conventional variables.
                for key in [
                    "YARN_HTTP_PROXY",
                    "YARN_HTTPS_PROXY",
                    "HTTP_PROXY",
                    "HTTPS_PROXY",
                    "http_proxy",
                    "https_proxy",
                    "ALL_PROXY",
                    "all_proxy",
                ] {
                    sandbox.base_env.push((key.into(), url.clone()));
                }
                sandbox
                    .base_env
                    .push(("NO_PROXY".into(), "localhost,127.0.0.1,::1".into()));
                sandbox
                    .base_env
                    .push(("no_proxy".into(), "localhost,127.0.0.1,::1".into()));
                Some(EgressProxy::start(hosts.clone())?)
            }
            Network::None | Network::Full => None,
        };
        sandbox.confined = Some(Arc::new(Confined {
            policy,
            bwrap: support.bwrap,
            limits: support.limits,
            proxy,
        }));
        Ok(sandbox)
    }

    /// Adds variables every process gets (`PATH` and `LANG` replace the defaults). What
    /// confinement sets itself — `HOME`, `TMPDIR`, the egress proxy's — and variables added
    /// before are kept.
    pub fn with_env<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        for (key, value) in vars {
            let (key, value) = (key.into(), value.into());
            match self.base_env.iter_mut().find(|(k, _)| *k == key) {
                Some(existing) if key == "PATH" || key == "LANG" => existing.1 = value,
                Some(_) => {}
                None => self.base_env.push((key, value)),
            }
        }
        self
    }

    /// Every captured line passes through `redactor` before anyone sees it.
    pub fn with_redactor(mut self, redactor: Redactor) -> Self {
        self.redactor = Some(Arc::new(redactor));
        self
    }

    /// Every process sees its workspace through `view`, in a mount namespace of its own (see
    /// [`MountView`]); a confined one starts bubblewrap from there.
    pub fn with_mount(mut self, view: MountView) -> Self {
        self.mount = Some(Arc::new(view));
        self
    }

    pub fn mount(&self) -> Option<&MountView> {
        self.mount.as_deref()
    }

    pub fn is_confined(&self) -> bool {
        self.confined.is_some()
    }

    /// How memory and process limits are enforced for confined processes (`None` if unconfined).
    pub fn limit_enforcement(&self) -> Option<&LimitEnforcement> {
        self.confined.as_ref().map(|c| &c.limits)
    }

    /// How long each signal of the SIGINT → SIGTERM → SIGKILL escalation waits.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Starts `spec`. Confined processes use bwrap's `--die-with-parent`, which the kernel ties
    /// to the calling *thread*: call this from async code, not from a `spawn_blocking` thread
    /// that may exit while the process runs.
    pub fn spawn(&self, spec: &ProcessSpec) -> Result<RunningProcess> {
        Ok(self.start(spec, false)?.0)
    }

    /// Like [`Sandbox::spawn`], with a pipe to the process's stdin, for agents that speak a
    /// protocol on stdio (Agent Client Protocol).
    pub fn spawn_with_stdin(
        &self,
        spec: &ProcessSpec,
    ) -> Result<(RunningProcess, tokio::process::ChildStdin)> {
        let (process, stdin) = self.start(spec, true)?;
        match stdin {
            Some(stdin) => Ok((process, stdin)),
            None => Err(SandboxError::Spawn {
                program: spec.program.clone(),
                hint: String::new(),
                source: std::io::Error::other("stdin pipe was not created"),
            }),
        }
    }

    fn start(
        &self,
        spec: &ProcessSpec,
        with_stdin: bool,
    ) -> Result<(RunningProcess, Option<tokio::process::ChildStdin>)> {
        let view = match &self.mount {
            Some(view) => Some(view.prepare(&spec.cwd)?),
            None => None,
        };
        // Under a mount the directory is entered once the view is made.
        if view.is_none() && !Path::new(&spec.cwd).is_dir() {
            return Err(SandboxError::MissingDir(spec.cwd.clone()));
        }
        let (mut cmd, held) = match &self.confined {
            None => {
                let mut cmd = Command::new(&spec.program);
                cmd.args(&spec.args).process_group(0);
                (cmd, Held::default())
            }
            Some(confined) => confined.command(spec, &self.base_env)?,
        };
        // SAFETY: only async-signal-safe system calls, on nothing prepared before the fork.
        unsafe {
            cmd.pre_exec(crate::fds::close_inherited);
        }
        if let Some(view) = view {
            // SAFETY: as above (see `Entered::enter`).
            unsafe {
                cmd.pre_exec(move || view.enter());
            }
            cmd.current_dir("/");
        } else {
            cmd.current_dir(&spec.cwd);
        }
        cmd.env_clear()
            .envs(self.base_env.iter().map(|(k, v)| (k, v)))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(if with_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
            program: spec.program.clone(),
            hint: if source.kind() == std::io::ErrorKind::NotFound {
                " (not found on PATH: install it or give its absolute path)".into()
            } else {
                String::new()
            },
            source,
        })?;
        let stdin = child.stdin.take();
        let process = RunningProcess::watch(
            child,
            spec.program.clone(),
            self.grace,
            self.confined.is_some(),
            held,
            self.redactor.clone(),
        );
        Ok((process, stdin))
    }

    /// Runs to the end and returns the exit and all output lines. For short commands (git).
    pub async fn output(&self, spec: &ProcessSpec) -> Result<(Exit, Vec<OutputLine>)> {
        let mut process = self.spawn(spec)?;
        let mut lines = Vec::new();
        while let Some(line) = process.next_line().await {
            lines.push(line);
        }
        let exit = process.wait().await?;
        Ok((exit, lines))
    }
}

impl Confined {
    /// `bwrap <policy> -- [forwarder] program args`, limited between fork and exec.
    fn command(
        &self,
        spec: &ProcessSpec,
        base_env: &[(String, String)],
    ) -> Result<(Command, Held)> {
        // bwrap would report a missing program only as its own exit status 1: say it up front.
        let path = spec
            .env
            .iter()
            .chain(base_env)
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_str());
        let found = if spec.program.contains('/') {
            Some(PathBuf::from(&spec.program))
        } else {
            let found = path.and_then(|path| find_in(&spec.program, path.as_ref()));
            if found.is_none() {
                return Err(SandboxError::Spawn {
                    program: spec.program.clone(),
                    hint: " (not found on PATH: install it or give its absolute path)".into(),
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
            found
        };
        if let Some(program) = found.and_then(|p| std::fs::canonicalize(spec.cwd.join(p)).ok())
            && self.policy.hides(&program)
        {
            return Err(SandboxError::Policy(format!(
                "{} is hidden inside the sandbox: add its directory to extra_readonly",
                program.display()
            )));
        }
        let socket = self.proxy.as_ref().map(EgressProxy::socket);
        let tmp = match &self.policy.tmp {
            Some(root) => Some(ProcessTmp::create(root)?),
            None => None,
        };
        let mut cmd = Command::new(&self.bwrap);
        cmd.args(
            self.policy
                .bwrap_args(&spec.cwd, socket, tmp.as_ref().map(ProcessTmp::path))?,
        )
        .arg(&spec.program)
        .args(&spec.args);
        let cgroup = CgroupLease::create(&self.policy.limits, &self.limits)?;
        let joins = cgroup.as_ref().map(CgroupLease::join_handle);
        let limits = self.policy.limits;
        let rlimits_only = joins.is_none();
        // SAFETY: the closure only makes async-signal-safe system calls (setsid, open, write,
        // getrlimit, setrlimit) on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                // Our own session rather than bwrap's --new-session: that would put the command
                // in a group of its own, out of reach of killpg and of the graceful SIGINT.
                nix::unistd::setsid()?;
                if let Some(joins) = &joins {
                    joins.join_self()?;
                }
                apply_rlimits(&limits, !rlimits_only)
            });
        }
        Ok((cmd, Held { cgroup, tmp }))
    }
}
