//! The way a task comes in and the pipeline of its runs: the intake takes tasks in from every
//! door, then workers claim queued runs under a lease and take each through
//! `preparing → agent → validating → publishing`, writing a checkpoint at every phase end, with
//! cancel and timeout that kill the run's processes before the run is marked ended.

mod baseline;
mod confinement;
mod error;
mod events;
mod gateway;
mod intake;
mod jobs;
mod judge;
mod limits;
mod review;
mod run;
mod run_env;
pub mod telemetry;
mod webhooks;
mod workspaces;

pub use baseline::{BaseCheck, check_base};
pub use confinement::{ConfinementConfig, ConfinementStatus, DEFAULT_SETUP_HOSTS, SandboxMode};
pub use error::{EngineError, Result};
pub use events::EventSink;
pub use intake::{
    Creator, Intake, IntakePolicy, TASK_CREATE, TEMPLATE_INSTANTIATE, TaskRateLimit, TaskRequest,
};
pub use jobs::sweep_workspaces;
pub use judge::{JudgeConfig, JudgeProvider, OnJudgeError, known_price};
pub use limits::RunLimits;
pub use nightshift_workspace::{AllowedRepo, LocalRepos, RepoPolicy, Requester};
pub use run_env::{RunEnv, ToolchainInfo};
pub use webhooks::{NUDGE_GAP, WebhookReceipt, WebhookSecrets, WebhookSource};
pub use workspaces::{CheckoutKind, WorkspaceMode, WorkspacesStatus};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nightshift_agent::{AgentConfig, AgentDriver, AgentError};
use nightshift_core::{AgentSpec, BranchName, Budget, Redactor, RepoUrl};
use nightshift_forge::{
    Forge, ForgeConfig, ForgeEntry, ForgeKind, GitHubAppConfig, RepoPath, RetryEvent,
    RetryObserver, Secret,
};
use nightshift_sandbox::Sandbox;
use nightshift_store::{ForgeCredential, RetentionPolicy, SecretKey, Store};
use nightshift_workspace::{Bases, Git, Mirrors, WorkspaceError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long task creation waits for a repository's name to resolve and its branches to be
/// listed: the request is held meanwhile.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// How the engine runs. Defaults suit the embedded, single-machine shape.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// How long a claim holds without a heartbeat before another worker may take the run.
    pub lease: Duration,
    /// How often a worker renews its lease and looks for a cancel request.
    pub heartbeat: Duration,
    /// How often an idle worker looks for queued runs (a local wake-up comes sooner).
    pub poll: Duration,
    /// Extra agent sessions after failing checks, each fed the failures.
    pub verification_rounds: u32,
    pub budget_defaults: Budget,
    /// How long a stopping worker lets its runs go on before handing them back to the queue.
    pub shutdown_grace: Duration,
    /// Keep the workspace of a failed run for inspection instead of deleting it.
    pub keep_failed_workspaces: bool,
    /// Agent binaries, models and the model endpoint and key.
    pub agents: AgentConfig,
    /// Opens the per-project credentials vault; `None` when the server set up no key.
    pub secret_key: Option<SecretKey>,
    /// Which forge serves which repository host, with the credential the engine pushes with.
    pub forges: ForgeConfig,
    /// Where people reach this server; pull requests link back to `<public_url>/tasks/<id>`.
    pub public_url: String,
    /// How often a pull request that changed within the hour is asked about; quieter ones are
    /// asked less often (see the follower job).
    pub ci_poll: Duration,
    /// How long after it was published a pull request is followed at most, when it is neither
    /// merged nor closed by then; then its last state stays.
    pub follow_for: Duration,
    /// How setup, agents and checks are confined (bubblewrap by default).
    pub confinement: ConfinementConfig,
    /// How long ended runs' workspaces, run events and diffs, and audit events are kept.
    pub retention: RetentionPolicy,
    /// Whether the sweeper also removes old run events, diffs and audit events from the
    /// database (API nodes, which hold the retention people configured), or only this
    /// machine's workspaces (`nightshift worker`).
    pub sweep_records: bool,
    /// Which repositories may be used: local ones where the operator allows them, hosts on
    /// public addresses or listed. The configured forges' hosts are always listed.
    pub repositories: RepoPolicy,
    /// What one run may store and write: its events, and the disk of its checkout and /tmp.
    pub run_limits: RunLimits,
    /// Warm bases with a copy-on-write layer per run where overlays work, or a worktree each.
    pub workspaces: WorkspaceMode,
    /// Bytes this worker's warm bases may take together (least recently used go first, never
    /// one a run is on); `None`: no limit.
    pub bases_budget: Option<u64>,
    /// The judge that reviews changes whose checks passed; `None`: no judge. Projects switch
    /// it off and on (`ProjectSettings::judge`).
    pub judge: Option<JudgeConfig>,
    /// The program (and leading arguments) that serves the `verify` tool to agents: the
    /// `nightshift` binary's `verify-mcp`. `None`: agents get no `verify` tool.
    pub verify_tool: Option<Vec<String>>,
    /// The secrets forges sign webhook deliveries with; a forge without one has its webhook
    /// endpoint off, and its pull requests are only polled.
    pub webhooks: WebhookSecrets,
}

impl EngineConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        EngineConfig {
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(1),
            poll: Duration::from_millis(500),
            verification_rounds: 2,
            budget_defaults: Budget::default(),
            shutdown_grace: Duration::from_secs(30),
            keep_failed_workspaces: false,
            agents: AgentConfig::default(),
            secret_key: None,
            forges: ForgeConfig::default(),
            public_url: "http://127.0.0.1:8080".into(),
            ci_poll: Duration::from_secs(30),
            follow_for: Duration::from_secs(14 * 24 * 3600),
            confinement: ConfinementConfig::default(),
            retention: RetentionPolicy::default(),
            sweep_records: true,
            repositories: RepoPolicy::new(&data_dir),
            run_limits: RunLimits::default(),
            workspaces: WorkspaceMode::default(),
            bases_budget: None,
            judge: None,
            verify_tool: None,
            webhooks: WebhookSecrets::default(),
            data_dir,
        }
    }
}

/// Shared by every worker of a process.
pub struct Engine {
    store: Store,
    config: EngineConfig,
    /// The configured policy with the data directory and the forges' hosts filled in.
    repositories: RepoPolicy,
    git: Git,
    mirrors: Mirrors,
    bases: Bases,
    /// How runs get their checkout here, probed on first use.
    workspaces: tokio::sync::OnceCell<WorkspacesStatus>,
    /// Whether bubblewrap works here decides whether runs can start at all.
    confinement: confinement::ConfinementProbe,
    wake: Notify,
    instance: String,
}

impl Engine {
    pub fn new(store: Store, config: EngineConfig) -> Arc<Engine> {
        // Code, events and agent homes live here: the server user's alone, also when an older
        // version left them readable to every local user.
        for dir in ["mirrors", "runs", "logs", "git-home", "bases"] {
            let path = config.data_dir.join(dir);
            if let Err(e) = std::fs::create_dir_all(&path)
                .and_then(|()| nightshift_store::restrict_to_owner(&path))
            {
                tracing::warn!(path = %path.display(), error = %e, "cannot make the directory private");
            }
        }
        let mut repositories = config.repositories.clone();
        repositories.data_dir = config.data_dir.clone();
        repositories
            .hosts
            .extend(config.forges.entries.iter().map(|e| e.host.clone()));
        let mut git = Git::new(config.data_dir.join("git-home"));
        if !repositories.allows_local() {
            git = git.without_local_transport();
        }
        let mirrors = Mirrors::new(config.data_dir.join("mirrors"), git.clone());
        let bases = Bases::new(config.data_dir.join("bases"), config.bases_budget);
        let instance = instance_name();
        let confinement = confinement::ConfinementProbe::start(&config.confinement);
        Arc::new(Engine {
            store,
            config,
            repositories,
            git,
            mirrors,
            bases,
            workspaces: tokio::sync::OnceCell::new(),
            confinement,
            wake: Notify::new(),
            instance,
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Whether runs are confined here, and if not, why (probed again until they are).
    pub fn confinement(&self) -> ConfinementStatus {
        self.confinement.status(&self.config.confinement)
    }

    /// How runs get their checkout on this worker: warm bases with an overlay, or worktrees.
    pub async fn workspaces(&self) -> WorkspacesStatus {
        self.workspaces
            .get_or_init(|| WorkspacesStatus::probe(self.config.workspaces, &self.config.data_dir))
            .await
            .clone()
    }

    /// The toolchains runs can use, found in the server's environment as it is now.
    pub fn toolchains(&self) -> Vec<ToolchainInfo> {
        nightshift_sandbox::Toolchains::discover(&self.config.confinement.host)
            .list
            .iter()
            .map(ToolchainInfo::from)
            .collect()
    }

    /// Tells idle workers of this process that a run was queued.
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Lets `repo` through the operator's rules for `by`, or says why not.
    pub async fn admit(&self, repo: &RepoUrl, by: Requester) -> Result<AllowedRepo> {
        self.repositories
            .admit(repo, by)
            .await
            .map_err(|e| match e {
                WorkspaceError::NotAllowed { .. } => EngineError::RepoNotAllowed(e.to_string()),
                WorkspaceError::Unreachable { .. } => EngineError::RepoUnreachable(e.to_string()),
                other => EngineError::Git(other.to_string()),
            })
    }

    /// A task's repository as a run uses it: admitted again under the rules in force now (the
    /// task was admitted when it was created, under the rules of then).
    pub(crate) async fn task_repo(&self, repo: &str) -> Result<AllowedRepo> {
        let repo = RepoUrl::parse(repo).map_err(|e| {
            EngineError::RepoNotAllowed(format!("the task's repository is no longer accepted: {e}"))
        })?;
        self.admit(&repo, Requester::Run).await
    }

    /// Checks that `repo` may be used by `by` and is reachable, and resolves the base branch:
    /// the one given (which must exist) or the remote's default branch.
    pub async fn resolve_base(
        &self,
        repo: &RepoUrl,
        base: Option<&BranchName>,
        by: Requester,
    ) -> Result<BranchName> {
        let probe = async {
            let allowed = self.admit(repo, by).await?;
            self.mirrors
                .remote_info(&allowed)
                .await
                .map_err(|e| match e {
                    WorkspaceError::Unreachable { .. } => {
                        EngineError::RepoUnreachable(e.to_string())
                    }
                    other => EngineError::Git(other.to_string()),
                })
        };
        let info = tokio::time::timeout(PROBE_TIMEOUT, probe)
            .await
            .map_err(|_| {
                EngineError::RepoUnreachable(format!(
                    "repository {repo} is unreachable: it did not answer within {} s",
                    PROBE_TIMEOUT.as_secs()
                ))
            })??;
        match base {
            Some(base) if info.branches.iter().any(|b| b == base.as_str()) => Ok(base.clone()),
            Some(base) => Err(EngineError::BaseNotFound(
                WorkspaceError::MissingBranch {
                    repo: repo.to_string(),
                    branch: base.to_string(),
                }
                .to_string(),
            )),
            None => {
                // A bare repository's HEAD may name a branch that was never pushed; then the
                // only branch, or a conventional name, is what people mean.
                let conventional = ["main", "master"]
                    .into_iter()
                    .find(|name| info.branches.iter().any(|b| b == name))
                    .map(str::to_string);
                let only = (info.branches.len() == 1).then(|| info.branches[0].clone());
                let name = info
                    .default_branch
                    .filter(|d| info.branches.contains(d))
                    .or(only)
                    .or(conventional)
                    .ok_or_else(|| {
                        EngineError::Invalid(format!(
                            "repository {repo} has no default branch (branches: {}): pass --base",
                            if info.branches.is_empty() {
                                "none".to_string()
                            } else {
                                info.branches.join(", ")
                            }
                        ))
                    })?;
                BranchName::parse(&name).map_err(|e| EngineError::Invalid(e.to_string()))
            }
        }
    }

    /// The driver for a task's agent, starting its processes in `sandbox`.
    pub(crate) fn driver(
        &self,
        spec: &AgentSpec,
        sandbox: Sandbox,
    ) -> std::result::Result<Box<dyn AgentDriver>, AgentError> {
        nightshift_agent::driver_for(spec, &self.config.agents, sandbox)
    }

    /// The project's stored credential for a forge host (e.g. `github.com`), opened with the
    /// server key. For the engine's own pushes and forge calls only: never hand it to the agent.
    pub async fn project_credential(
        &self,
        project_id: i64,
        host: &str,
    ) -> Result<Option<ForgeCredential>> {
        let Some(key) = &self.config.secret_key else {
            return Ok(None);
        };
        Ok(self
            .store
            .forge_credential(key, project_id, &host.to_ascii_lowercase())
            .await?)
    }

    /// The forge a repository's branches and pull requests go to, resolved per run so every
    /// retry it makes (rate limits, 5xx) shows in that run's log.
    pub(crate) async fn forge(
        &self,
        project_id: i64,
        repo: &RepoUrl,
        events: &EventSink,
    ) -> Result<Box<dyn Forge>> {
        let config = self.forge_config(project_id, repo).await?;
        let sink = events.clone();
        let observer: RetryObserver = Arc::new(move |retry: &RetryEvent| {
            sink.emit(
                nightshift_core::EventKind::Info,
                None,
                format!(
                    "{} {}: {} on attempt {}; retrying in {} ms",
                    retry.forge,
                    retry.operation,
                    retry.reason,
                    retry.attempt,
                    retry.delay.as_millis()
                ),
                serde_json::json!({
                    "forge_retry": {
                        "forge": retry.forge,
                        "operation": retry.operation,
                        "attempt": retry.attempt,
                        "delay_ms": retry.delay.as_millis() as u64,
                        "reason": retry.reason,
                        "server_delay": retry.server_delay,
                    }
                }),
            );
        });
        nightshift_forge::resolve(repo, &config, observer).map_err(EngineError::ForgeSettings)
    }

    /// The server's forge settings, with the project's stored credential for the repository's
    /// host (if it has one) taking the place of the server's own for that host.
    pub(crate) async fn forge_config(
        &self,
        project_id: i64,
        repo: &RepoUrl,
    ) -> Result<ForgeConfig> {
        let Ok(path) = RepoPath::parse(repo) else {
            return Ok(self.config.forges.clone());
        };
        for host in [path.host.as_str(), path.hostname()] {
            if let Some(credential) = self.credential_for(project_id, host).await? {
                return Ok(self.config.forges.with_entry(forge_entry(host, credential)));
            }
        }
        Ok(self.config.forges.clone())
    }

    async fn credential_for(&self, project_id: i64, host: &str) -> Result<Option<ForgeCredential>> {
        self.project_credential(project_id, host)
            .await
            .map_err(|e| match e {
                EngineError::Store(source) => EngineError::Credential {
                    host: host.to_string(),
                    source,
                },
                other => other,
            })
    }

    /// The filter every line a run stores passes through: the server's forge credentials, the
    /// model keys, `more` (a project's credential), and token shapes.
    pub(crate) fn secret_filter(&self, more: Vec<String>) -> Result<Redactor> {
        let mut secrets = more;
        for entry in &self.config.forges.entries {
            secrets.extend(entry.token.iter().map(|t| t.expose().to_string()));
            if let Some(app) = &entry.app {
                secrets.push(app.private_key.expose().to_string());
            }
        }
        let agents = &self.config.agents;
        secrets.extend(agents.anthropic_api_key.clone());
        secrets.extend(agents.openai_api_key.clone());
        // What the operator gives runs as secrets, by name.
        secrets.extend(self.config.confinement.secret_values());
        // A PEM key may show up a line at a time: every long line of a secret is one too.
        let lines: Vec<String> = secrets
            .iter()
            .flat_map(|s| s.lines().map(str::trim).filter(|l| l.len() >= 20))
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_string)
            .collect();
        secrets.extend(lines);
        Ok(Redactor::new(secrets)?)
    }

    /// The secret filter of a run on a repository at `host`: the project's stored credential
    /// for it besides everything [`secret_filter`](Engine::secret_filter) masks.
    pub(crate) async fn run_redactor(
        &self,
        project_id: i64,
        host: Option<&str>,
    ) -> Result<Redactor> {
        let mut more = Vec::new();
        if let Some(host) = host
            && let Some(credential) = self.credential_for(project_id, host).await?
        {
            more.extend(credential.secrets().into_iter().map(str::to_string));
        }
        self.secret_filter(more)
    }

    /// The filter a run of `repo` in this project would record through, for what the intake
    /// stores before any run: a task's instructions, title and parameter values.
    pub async fn intake_redactor(&self, project_id: i64, repo: &RepoUrl) -> Result<Redactor> {
        let host = RepoPath::parse(repo).ok().map(|p| p.host);
        self.run_redactor(project_id, host.as_deref()).await
    }

    /// Runs `count` workers and the engine's jobs (the retention sweeper and the pull request
    /// follower) until `shutdown` fires, then lets running runs finish (bounded by
    /// `shutdown_grace`), hands the rest back to the queue and stops the jobs.
    pub async fn run_workers(self: &Arc<Self>, count: usize, shutdown: CancellationToken) {
        telemetry::install();
        let jobs_stop = CancellationToken::new();
        // Aborted with this future too: workers torn down take their jobs with them.
        let mut jobs = jobs::AbortOnDrop(tokio::spawn(jobs::run(self.clone(), jobs_stop.clone())));
        let mut workers = tokio::task::JoinSet::new();
        for n in 0..count {
            let engine = self.clone();
            let shutdown = shutdown.clone();
            workers.spawn(async move { engine.worker(n, shutdown).await });
        }
        while workers.join_next().await.is_some() {}
        // With no workers (an API-only node) there is nothing to join: wait for the shutdown.
        shutdown.cancelled().await;
        jobs_stop.cancel();
        if let Err(e) = (&mut jobs.0).await {
            tracing::error!(error = %e, "the engine's jobs failed");
        }
    }

    async fn worker(self: Arc<Self>, n: usize, shutdown: CancellationToken) {
        let id = format!("{}-w{n}", self.instance);
        while !shutdown.is_cancelled() {
            let notified = self.wake.notified();
            match self.store.claim_run(&id, self.config.lease).await {
                Ok(Some(claim)) => {
                    run::execute(self.clone(), claim, id.clone(), shutdown.clone()).await;
                    limits::give_back_memory();
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!(worker = %id, error = %e, "cannot claim runs"),
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep(self.config.poll) => {}
                _ = shutdown.cancelled() => {}
            }
        }
    }
}

/// This engine's name in leases and events: host and process, plus a tag because neither is
/// unique on its own (containers all run as pid 1, and tests start several engines per process).
fn instance_name() -> String {
    static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or_default();
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = (nanos ^ (n << 20)) & 0x00ff_ffff;
    format!("{}-{}-{tag:06x}", hostname(), std::process::id())
}

/// A project's stored credential as the forge entry for `host`.
fn forge_entry(host: &str, credential: ForgeCredential) -> ForgeEntry {
    let entry = |kind, token: String| ForgeEntry {
        kind,
        host: host.to_string(),
        api_url: None,
        token: Some(Secret::new(token)),
        username: None,
        app: None,
    };
    match credential {
        ForgeCredential::GithubApp {
            app_id,
            private_key,
            ..
        } => ForgeEntry {
            token: None,
            app: Some(GitHubAppConfig {
                app_id,
                private_key: Secret::new(private_key),
            }),
            ..entry(ForgeKind::Github, String::new())
        },
        ForgeCredential::GithubToken { token } => entry(ForgeKind::Github, token),
        ForgeCredential::GitlabToken { token } => entry(ForgeKind::Gitlab, token),
        ForgeCredential::GiteaToken { token } => entry(ForgeKind::Gitea, token),
        ForgeCredential::Git { username, password } => ForgeEntry {
            username: Some(username),
            ..entry(ForgeKind::Git, password)
        },
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "nightshift".into())
}
