//! How a run's setup, agent and checks are confined: the run's checkout and HOME are the only
//! writable places, the data directory and host secrets are hidden, and each phase gets only
//! the network it needs (setup: package registries, agent: its model through the gateway,
//! checks: nothing unless the repository asks).

use std::path::{Path, PathBuf};

use nightshift_agent::AgentConfig;
use nightshift_core::{AgentKind, AgentSpec};
use nightshift_sandbox::{
    AllowedHost, ConfinementPolicy, HostEnv, Limits, MountView, Network, Redactor, Sandbox,
    SandboxError, Toolchains, install_root, interpreter, resolve,
};
use nightshift_workspace::Worktree;
use serde::{Deserialize, Serialize};

use crate::EngineConfig;
use crate::EngineError;
use crate::run_env::{PhaseEnv, RunEnv};

/// How the engine runs setup, agents and checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SandboxMode {
    /// Under bubblewrap; a run fails at `preparing` when bubblewrap does not work here.
    #[default]
    Bubblewrap,
    /// With the server user's view of the machine (scrubbed environment only). Must be chosen.
    None,
}

impl SandboxMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SandboxMode::Bubblewrap => "bubblewrap",
            SandboxMode::None => "none",
        }
    }
}

impl std::str::FromStr for SandboxMode {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self, EngineError> {
        match s.trim() {
            "bubblewrap" => Ok(SandboxMode::Bubblewrap),
            "none" => Ok(SandboxMode::None),
            other => Err(EngineError::Invalid(format!(
                "sandbox = {other:?} is not known: use \"bubblewrap\" (the default) or \"none\""
            ))),
        }
    }
}

/// Package registries setup commands (`cargo fetch`, `npm ci`, `pip install`, `go mod
/// download`) may reach when the server configures no list of its own.
pub const DEFAULT_SETUP_HOSTS: &[&str] = &[
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "pypi.org",
    "files.pythonhosted.org",
    "proxy.golang.org",
    "sum.golang.org",
];

/// Where a confined agent finds its model gateways, on the sandbox's own loopback.
const ANTHROPIC_PORT_INSIDE: u16 = 8401;
const OPENAI_PORT_INSIDE: u16 = 8402;

/// The server's confinement settings (`sandbox`, `[sandbox_limits]`, `setup_hosts`, `[env]`, …
/// in nightshift.toml).
#[derive(Debug, Clone)]
pub struct ConfinementConfig {
    pub mode: SandboxMode,
    /// Memory, processes, file size and open files of each confined process tree.
    pub limits: Limits,
    /// Hosts setup commands may reach, through the egress proxy. Empty: no network at all.
    pub setup_hosts: Vec<AllowedHost>,
    /// Shown read-only even under a hidden path (a toolchain under the server user's home).
    pub readonly: Vec<PathBuf>,
    /// Hidden besides the data directory, the homes and well-known host secrets (a key file
    /// elsewhere, the configuration file).
    pub hidden: Vec<PathBuf>,
    /// The in-sandbox forwarder (program and leading arguments, see
    /// `nightshift_sandbox::netfwd`); `None`: the `nightshift` binary itself when that is what
    /// runs, else `nightshift-netfwd` beside the server or on PATH.
    pub forwarder: Option<Vec<String>>,
    /// The server's environment: the PATH runs get, the toolchains found from it, and the
    /// values `checks_env` and `agent_env` pass through.
    pub host: HostEnv,
    /// The operator's variables for setup and checks.
    pub checks_env: RunEnv,
    /// The operator's variables for the agent.
    pub agent_env: RunEnv,
}

impl Default for ConfinementConfig {
    fn default() -> Self {
        ConfinementConfig {
            mode: SandboxMode::Bubblewrap,
            limits: Limits::default(),
            setup_hosts: DEFAULT_SETUP_HOSTS
                .iter()
                .filter_map(|h| AllowedHost::parse(h).ok())
                .collect(),
            readonly: Vec::new(),
            hidden: Vec::new(),
            forwarder: None,
            host: HostEnv::current(),
            checks_env: RunEnv::default(),
            agent_env: RunEnv::default(),
        }
    }
}

impl ConfinementConfig {
    /// The values of the operator's variables that look like secrets, for the run's redactor.
    pub(crate) fn secret_values(&self) -> Vec<String> {
        let mut secrets = self.checks_env.secret_values(&self.host);
        secrets.extend(self.agent_env.secret_values(&self.host));
        secrets
    }
}

/// Whether this server's runs are confined, for the API and the web UI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfinementStatus {
    /// What the operator chose.
    pub sandbox: SandboxMode,
    /// Whether runs are confined. `false` with `bubblewrap`: runs fail until it works.
    pub confined: bool,
    /// The bubblewrap version and how limits are enforced, or why runs are not confined.
    pub detail: String,
}

impl ConfinementStatus {
    pub(crate) fn probe(config: &ConfinementConfig) -> ConfinementStatus {
        let (confined, detail) = match config.mode {
            SandboxMode::None => (
                false,
                "runs are not confined (sandbox = \"none\"): setup, agents and checks see and \
                 reach everything the server's user can"
                    .to_string(),
            ),
            SandboxMode::Bubblewrap => match nightshift_sandbox::detect() {
                Ok(support) => (
                    true,
                    format!(
                        "{}; limits enforced with {}",
                        support.bwrap_version,
                        match support.limits {
                            nightshift_sandbox::LimitEnforcement::CgroupV2 { .. } => "cgroup v2",
                            nightshift_sandbox::LimitEnforcement::CgroupV1 { .. } => "cgroup v1",
                            nightshift_sandbox::LimitEnforcement::Rlimit =>
                                "rlimits only (no writable cgroup)",
                        }
                    ),
                ),
                Err(e) => (false, unavailable(&e)),
            },
        };
        ConfinementStatus {
            sandbox: config.mode,
            confined,
            detail,
        }
    }
}

/// The last probe, taken again on every look while runs cannot be confined: bubblewrap
/// installed (or namespaces allowed) after the start needs no restart.
pub(crate) struct ConfinementProbe(std::sync::Mutex<ConfinementStatus>);

impl ConfinementProbe {
    pub(crate) fn start(config: &ConfinementConfig) -> ConfinementProbe {
        let status = ConfinementStatus::probe(config);
        if !status.confined {
            tracing::warn!(detail = %status.detail, "runs are not confined");
        }
        ConfinementProbe(std::sync::Mutex::new(status))
    }

    pub(crate) fn status(&self, config: &ConfinementConfig) -> ConfinementStatus {
        let mut last = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.sandbox == SandboxMode::Bubblewrap && !last.confined {
            let now = ConfinementStatus::probe(config);
            if now.confined {
                tracing::info!(detail = %now.detail, "runs are confined now");
            }
            *last = now;
        }
        last.clone()
    }
}

/// Why runs cannot start, and the two ways out.
fn unavailable(e: &SandboxError) -> String {
    let reason = match e {
        SandboxError::ConfinementUnavailable(reason) => reason.clone(),
        other => other.to_string(),
    };
    format!(
        "runs cannot be confined: {reason}. Install bubblewrap (apt install bubblewrap, or \
         scripts/install-system-deps.sh) and allow it to create namespaces — runs are confined \
         as soon as it works, without a restart — or set sandbox = \"none\" in nightshift.toml \
         to run agents and checks unconfined"
    )
}

/// One run's sandboxes, one per phase, all with the run's secret filter and environment.
pub(crate) struct RunConfinement {
    /// `None`: the operator chose to run unconfined.
    policy: Option<ConfinementPolicy>,
    redactor: Redactor,
    env: PhaseEnv,
    /// How every process sees the checkout, when it is a base or a layer over one.
    view: Option<MountView>,
    /// The repository's download and build caches.
    cache: PathBuf,
}

/// What the run's setup and checks get from the server for project `project_id`'s repository
/// mirrored at `mirror`: the toolchains found and the phases' variables, with its download
/// caches (created here).
pub(crate) fn phase_env(
    config: &EngineConfig,
    project_id: i64,
    mirror: &Path,
) -> Result<(PhaseEnv, Toolchains, PathBuf), EngineError> {
    let confinement = &config.confinement;
    let toolchains = Toolchains::discover(&confinement.host);
    // Per project and repository: one tenant's runs never build from another's downloads.
    let cache = config
        .data_dir
        .join("caches")
        .join(project_id.to_string())
        .join(mirror.file_stem().unwrap_or_default());
    // The download caches exist before any agent, so its sandbox can show them read-only.
    for dir in std::iter::once(cache.clone()).chain(nightshift_sandbox::download_dirs(&cache)) {
        std::fs::create_dir_all(&dir)
            .map_err(EngineError::io(format!("cannot create {}", dir.display())))?;
    }
    let env = PhaseEnv::new(
        &confinement.host,
        &toolchains,
        &cache,
        &confinement.checks_env,
        &confinement.agent_env,
    );
    Ok((env, toolchains, cache))
}

impl RunConfinement {
    /// The sandboxes of the run of project `project_id` checked out in `worktree`, with `home`
    /// as its HOME: confined unless the operator chose `sandbox = "none"`. The toolchains under
    /// the homes are shown read-only, the repository's caches are writable, and the agent's
    /// executables are shown wherever they are installed.
    pub(crate) fn new(
        config: &EngineConfig,
        project_id: i64,
        agent: &AgentSpec,
        worktree: &Worktree,
        home: &Path,
        redactor: Redactor,
    ) -> Result<RunConfinement, EngineError> {
        let confinement = &config.confinement;
        let host = &confinement.host;
        let (env, toolchains, cache) = phase_env(config, project_id, worktree.mirror())?;
        let view = worktree.view().cloned();
        if confinement.mode == SandboxMode::None {
            return Ok(RunConfinement {
                policy: None,
                redactor,
                env,
                view,
                cache,
            });
        }
        let mirror = worktree.mirror();
        // Beside the run's HOME, outside what the sandbox shows.
        let empty_config = home.with_file_name("mirror-config");
        std::fs::write(&empty_config, "").map_err(EngineError::io(format!(
            "cannot write {}",
            empty_config.display()
        )))?;
        let mut policy = ConfinementPolicy::new(worktree.path(), home)
            // The database, other runs, mirrors, logs, tokens and the vault key.
            .hide(&config.data_dir)
            // On disk in the run directory, not in memory, so the run's disk limit covers it.
            .tmp_under(crate::limits::tmp_root(home.parent().unwrap_or(home)))
            .limits(confinement.limits)
            // git in the checkout (agents run `git status` and `git diff`) reads the mirror
            // and the worktree's own directory in it, read-only: nobody else's, and not the
            // mirror's config (a remote URL may carry credentials), which git finds empty.
            .readonly(mirror)
            .hide(mirror.join("worktrees"))
            .readonly(worktree.git_dir())
            .substitute(mirror.join("config"), &empty_config)
            .hide(mirror.join("FETCH_HEAD"))
            .writable(&cache);
        if let Some(home) = host.home() {
            policy = policy.hide(home);
        }
        for path in &confinement.hidden {
            policy = policy.hide(path);
        }
        for path in &confinement.readonly {
            policy = policy.readonly(path);
        }
        let programs = agent_programs(agent, &config.agents, host.path());
        for dir in toolchains
            .shown()
            .chain(programs.iter().map(PathBuf::as_path))
        {
            if policy.hides(dir) {
                policy = policy.readonly(dir);
            }
        }
        // The agent starts the `verify` tool's server inside: its program must be visible.
        if let Some(program) = config.verify_tool.as_ref().and_then(|v| v.first())
            && Path::new(program).is_absolute()
            && policy.hides(Path::new(program))
        {
            policy = policy.readonly(program);
        }
        for secret in toolchains.secrets_within() {
            policy = policy.hide(secret);
        }
        if let Some(forwarder) = &confinement.forwarder {
            policy = policy.forwarder(forwarder.clone());
        }
        Ok(RunConfinement {
            policy: Some(policy),
            redactor,
            env,
            view,
            cache,
        })
    }

    /// What the run's log says about its environment: toolchains, caches, the operator's
    /// variables by name.
    pub(crate) fn log(&self) -> &[String] {
        &self.env.log
    }

    /// The variables setup and checks get, besides HOME and the sandbox's own.
    pub(crate) fn checks_env(&self) -> &[(String, String)] {
        &self.env.checks
    }

    /// The PATH setup and checks look for programs on.
    pub(crate) fn checks_path(&self) -> String {
        self.env
            .checks
            .iter()
            .rev()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }

    /// For setup and checks: no network, or only `hosts` through the egress proxy.
    pub(crate) fn with_hosts(&self, hosts: &[AllowedHost]) -> Result<Sandbox, SandboxError> {
        let network = if hosts.is_empty() {
            Network::None
        } else {
            Network::Allow(hosts.to_vec())
        };
        self.sandbox(&self.env.checks, |policy| policy.network(network))
    }

    /// For the agent: no network but the model gateways relayed to `(port, socket)`, and the
    /// download caches setup filled read-only.
    fn with_forwards(&self, forwards: &[(u16, &Path)]) -> Result<Sandbox, SandboxError> {
        self.sandbox(&self.env.agent, |mut policy| {
            for (port, socket) in forwards {
                policy = policy.forward(*port, socket);
            }
            for dir in nightshift_sandbox::download_dirs(&self.cache) {
                policy = policy.readonly_within(dir);
            }
            policy.network(Network::None)
        })
    }

    fn sandbox(
        &self,
        env: &[(String, String)],
        shape: impl FnOnce(ConfinementPolicy) -> ConfinementPolicy,
    ) -> Result<Sandbox, SandboxError> {
        let mut sandbox = match &self.policy {
            Some(policy) => Sandbox::confined(shape(policy.clone()))?,
            None => Sandbox::new(),
        };
        if let Some(view) = &self.view {
            sandbox = sandbox.with_mount(view.clone());
        }
        Ok(sandbox
            .with_env(env.iter().cloned())
            .with_redactor(self.redactor.clone()))
    }

    /// The agent's sandbox and environment: confined, the agent reaches its model only through
    /// gateways that hold the key, and gets a placeholder; unconfined, it gets the endpoint and
    /// key themselves. The gateways live as long as the returned guard.
    pub(crate) fn agent(
        &self,
        kind: AgentKind,
        agents: &AgentConfig,
    ) -> Result<AgentSandbox, EngineError> {
        let direct = agents.agent_env(kind);
        if self.policy.is_none() || kind == AgentKind::Command {
            let sandbox = self
                .with_forwards(&[])
                .map_err(EngineError::sandbox("cannot confine the agent"))?;
            return Ok(AgentSandbox {
                sandbox,
                env: direct,
                _gateways: Vec::new(),
            });
        }
        use crate::gateway::{KeyHeader, ModelGateway, PLACEHOLDER_KEY, Upstream};
        let anthropic = (
            "ANTHROPIC_BASE_URL",
            "ANTHROPIC_API_KEY",
            agents
                .anthropic_base_url
                .clone()
                .unwrap_or_else(|| "https://api.anthropic.com".into()),
            agents.anthropic_api_key.clone(),
            KeyHeader::XApiKey,
            ANTHROPIC_PORT_INSIDE,
        );
        let openai = (
            "OPENAI_BASE_URL",
            "OPENAI_API_KEY",
            agents
                .openai_base_url
                .clone()
                .unwrap_or_else(|| "https://api.openai.com/v1".into()),
            agents.openai_api_key.clone(),
            KeyHeader::Bearer,
            OPENAI_PORT_INSIDE,
        );
        let providers = match kind {
            AgentKind::ClaudeCode => vec![anthropic],
            AgentKind::Codex => vec![openai],
            AgentKind::Acp => vec![anthropic, openai],
            AgentKind::Command => Vec::new(),
        };
        let mut env = Vec::new();
        let mut gateways = Vec::new();
        for (url_var, key_var, base, key, header, port) in providers {
            let gateway = ModelGateway::start(Upstream::parse(&base, key, header)?)?;
            env.push((url_var.to_string(), gateway.base_url_inside(port)));
            env.push((key_var.to_string(), PLACEHOLDER_KEY.to_string()));
            gateways.push((port, gateway));
        }
        let forwards: Vec<(u16, &Path)> = gateways.iter().map(|(p, g)| (*p, g.socket())).collect();
        let sandbox = self
            .with_forwards(&forwards)
            .map_err(EngineError::sandbox("cannot confine the agent"))?;
        Ok(AgentSandbox {
            sandbox,
            env,
            _gateways: gateways.into_iter().map(|(_, g)| g).collect(),
        })
    }
}

/// The agent's sandbox, the environment it gets, and the gateways it talks to.
pub(crate) struct AgentSandbox {
    pub(crate) sandbox: Sandbox,
    pub(crate) env: Vec<(String, String)>,
    _gateways: Vec<crate::gateway::ModelGateway>,
}

/// The executables an agent of `spec` runs, resolved on `path`, as the directories to show
/// read-only: the npm package tree an agent was installed with (its script needs the rest of
/// `node_modules`), else the program's own directory, plus a script's interpreter.
fn agent_programs(spec: &AgentSpec, agents: &AgentConfig, path: &str) -> Vec<PathBuf> {
    let mut commands: Vec<String> = Vec::new();
    let configured = |c: &Option<String>, default: &str| c.clone().unwrap_or(default.into());
    match spec.kind {
        AgentKind::Command => {}
        AgentKind::ClaudeCode => commands.push(configured(&agents.claude_code.command, "claude")),
        AgentKind::Codex => commands.push(configured(&agents.codex.command, "codex")),
        AgentKind::Acp => {
            let line = spec
                .command
                .clone()
                .or(agents.acp.command.clone())
                .unwrap_or_default();
            commands.extend(line.split_whitespace().next().map(str::to_string));
            // claude-agent-acp runs the native Claude Code named by CLAUDE_CODE_EXECUTABLE.
            commands.extend(agents.claude_code.command.clone());
        }
    }
    let mut roots = Vec::new();
    for command in commands {
        let Some(program) = resolve(&command, path) else {
            continue;
        };
        roots.push(install_root(&program));
        if let Some(interpreter) = interpreter(&program, Some(path)) {
            roots.push(install_root(&interpreter));
        }
    }
    roots.sort();
    roots.dedup();
    roots
}
