//! `nightshift serve`: the embedded shape — API and workers in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use nightshift_core::parse_duration;
use nightshift_engine::{EngineConfig, LocalRepos};
use nightshift_server::{
    AllowedHosts, AuthConfig, ProxyConfig, ServeOptions, ServerConfig, TaskRateLimit,
};
use nightshift_store::SecretKey;
use tokio_util::sync::CancellationToken;

#[derive(Args)]
pub struct ServeArgs {
    /// Where the database, mirrors and workspaces live.
    #[arg(long, env = "NIGHTSHIFT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "NIGHTSHIFT_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// How logs on stderr are written.
    #[arg(long, env = "NIGHTSHIFT_LOG_FORMAT", value_enum, default_value_t)]
    log_format: crate::logging::LogFormat,
    /// How many runs this process executes at once.
    #[arg(long, env = "NIGHTSHIFT_WORKERS", default_value_t = 2)]
    workers: usize,
    /// Serve the API only; runs are executed by `nightshift worker` processes.
    #[arg(long)]
    no_workers: bool,
    /// `postgres://…` to use PostgreSQL; SQLite in the data directory otherwise.
    #[arg(long, env = "NIGHTSHIFT_DATABASE")]
    database: Option<String>,
    /// The longest timeout a task may ask for (the default timeout is 1h, or this when lower).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    max_timeout: std::time::Duration,
    /// No sign-in: every request acts as the local admin. Only on a loopback address.
    #[arg(long)]
    no_auth: bool,
    /// Accept X-Forwarded-User/-Email/-Groups from this proxy address (repeatable).
    #[arg(
        long = "trusted-proxy",
        env = "NIGHTSHIFT_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    trusted_proxies: Vec<std::net::IpAddr>,
    /// The key that seals stored credentials (32 bytes, base64); else `<data-dir>/secret.key`.
    #[arg(long, env = "NIGHTSHIFT_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Keep run events and diffs this long [default: `[retention] events`, else 90d].
    #[arg(long, value_parser = parse_duration)]
    keep_events: Option<std::time::Duration>,
    /// Keep audit events this long [default: `[retention] audit`, else 400d].
    #[arg(long, value_parser = parse_duration)]
    keep_audit: Option<std::time::Duration>,
    /// Remove workspaces kept from failed runs after this long [default: `[retention]
    /// failed_workspaces`, else 7d].
    #[arg(long, value_parser = parse_duration)]
    keep_failed_workspaces: Option<std::time::Duration>,
    /// The configuration file (default: nightshift.toml in the data directory, when present).
    #[arg(long, env = "NIGHTSHIFT_CONFIG")]
    config: Option<PathBuf>,
    /// Do not install bubblewrap when it is missing (by default it is, with the system's package
    /// manager, when this runs as root or with sudo that asks no password).
    #[arg(long, env = "NIGHTSHIFT_NO_INSTALL_BUBBLEWRAP")]
    no_install_bubblewrap: bool,
}

/// The configuration file of `serve` and `worker`. Everything is optional; the environment's
/// model endpoint and key variables win over what the file says.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// The agent a task gets when it names none: claude-code, codex, acp or command.
    default_agent: Option<String>,
    /// Extra agent sessions after failing checks.
    verification_rounds: Option<u32>,
    /// Budget defaults for tasks that set none (`max_cost_usd`, `max_turns`, `max_tokens`).
    budget: nightshift_core::Budget,
    agents: nightshift_agent::AgentConfig,
    /// Where people reach this server; pull requests link back to `<public_url>/tasks/<id>`.
    public_url: Option<String>,
    /// Names the server answers to besides its address, `localhost` and `public_url`'s host.
    allowed_hosts: Vec<String>,
    /// `[rate_limits]`: how fast one user may create tasks.
    rate_limits: RateLimitSettings,
    /// `[[forge]]`: which forge serves which repository host, and the credential it pushes with.
    forge: Vec<nightshift_forge::ForgeEntry>,
    /// How hard forge requests are retried (`max_attempts`, backoff, timeouts).
    retry: nightshift_forge::RetryPolicy,
    /// How often a pull request that changed within the hour is asked about, e.g. `30s`.
    ci_poll: Option<String>,
    /// How long a pull request is followed at most when nobody merges or closes it, e.g. `14d`.
    follow_pull_requests_for: Option<String>,
    /// `"bubblewrap"` (the default) or `"none"`: how setup, agents and checks are confined.
    sandbox: Option<String>,
    /// Hosts setup commands may reach; replaces the default package registries.
    setup_hosts: Option<Vec<String>>,
    /// Hosts setup commands may reach besides `setup_hosts` (mirrors, a private registry).
    extra_setup_hosts: Vec<String>,
    /// Shown read-only inside the sandbox although under a hidden path (toolchains).
    sandbox_readonly: Vec<PathBuf>,
    /// Hidden inside the sandbox besides the data directory and the homes (key files).
    sandbox_hidden: Vec<PathBuf>,
    /// Memory, processes, file size and open files of each confined process tree.
    sandbox_limits: crate::confine::LimitSettings,
    /// `[env]`: variables for setup and checks, set here or passed from the server's environment.
    env: crate::confine::EnvSettings,
    /// `[agent_env]`: variables for the agent, likewise.
    agent_env: crate::confine::EnvSettings,
    /// What one run may store and write: its events, and the disk of its checkout and /tmp.
    run_limits: crate::confine::RunLimitSettings,
    /// `"auto"` (the default: warm bases with a copy-on-write layer per run where overlays
    /// work) or `"worktree"` (a fresh checkout per run).
    workspaces: Option<String>,
    /// Disk this worker's warm bases may take together, as `"20G"`; `"unlimited"` (the default).
    bases_budget: Option<crate::confine::Amount>,
    /// `[workers]`: leases, heartbeats and how long a stopping worker lets its runs go on.
    workers: WorkerSettings,
    /// `[retention]`: how long run events, audit events and failed runs' workspaces are kept.
    retention: RetentionSettings,
    /// `[repositories]`: where local repositories may be, which hosts may be reached.
    repositories: crate::repos::RepositorySettings,
    /// `[judge]`: the model that reviews each change against its task once the checks pass.
    judge: Option<crate::judge::JudgeSettings>,
}

/// What the retention sweeper keeps, and for how long. Durations as `90d`, `12h`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RetentionSettings {
    /// Run events and diffs of ended runs (90d).
    events: Option<String>,
    /// Audit events (400d).
    audit: Option<String>,
    /// Workspaces kept from failed runs, on every machine that ran one (7d).
    failed_workspaces: Option<String>,
}

/// How fast one user may create tasks: `task_burst` at once, then `tasks_per_minute`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct RateLimitSettings {
    tasks_per_minute: Option<u32>,
    task_burst: Option<u32>,
}

impl RateLimitSettings {
    fn task_rate(&self) -> anyhow::Result<TaskRateLimit> {
        let default = TaskRateLimit::default();
        TaskRateLimit::new(
            self.tasks_per_minute.unwrap_or(default.per_minute),
            self.task_burst.unwrap_or(default.burst),
        )
        .map_err(anyhow::Error::msg)
    }
}

/// How workers hold their runs. Durations as `30s`, `500ms`, `2m`.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct WorkerSettings {
    /// How long a claim holds without a heartbeat before another worker takes the run over.
    lease: Option<String>,
    /// How often a worker renews its leases; shorter than the lease.
    heartbeat: Option<String>,
    /// How often an idle worker looks for queued runs.
    poll: Option<String>,
    /// How long a stopping worker lets a run go on to its next checkpoint before it stops the
    /// run's processes and hands it back anyway.
    shutdown_grace: Option<String>,
}

pub(crate) fn load_config(
    explicit: Option<&PathBuf>,
    data_dir: &std::path::Path,
) -> anyhow::Result<ConfigFile> {
    let path = match explicit {
        Some(path) => path.clone(),
        None => {
            let default = data_dir.join("nightshift.toml");
            if !default.exists() {
                return Ok(ConfigFile::default());
            }
            default
        }
    };
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    parse_config(&text).map_err(|e| anyhow::anyhow!("{} is not valid: {e}", path.display()))
}

/// toml's own message quotes the offending line, which may hold a forge token: only the
/// reason and the line number are kept.
fn parse_config(text: &str) -> Result<ConfigFile, String> {
    toml::from_str(text).map_err(|e| match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].lines().count().max(1);
            format!("line {line}: {}", e.message())
        }
        None => e.message().to_string(),
    })
}

/// The engine's settings from the configuration file, for the data directory `data_dir`.
/// `config_file` is the file named on the command line, if any; `default_local` says where
/// local repositories may be when the file does not.
pub(crate) fn engine_config(
    config: ConfigFile,
    data_dir: &std::path::Path,
    config_file: Option<&std::path::Path>,
    default_local: LocalRepos,
) -> anyhow::Result<EngineConfig> {
    let duration = |key: &str, value: &Option<String>| -> anyhow::Result<_> {
        value
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|e| anyhow::anyhow!("{key}: {e}"))
    };
    let mut engine = EngineConfig::new(data_dir);
    engine.repositories = config
        .repositories
        .policy(data_dir, default_local)
        .context("the [repositories] settings in the configuration file")?;
    engine.agents = config.agents.with_server_env();
    config
        .budget
        .validate()
        .context("[budget] in the configuration file")?;
    engine.budget_defaults = config.budget;
    if let Some(rounds) = config.verification_rounds {
        engine.verification_rounds = rounds;
    }
    engine.forges = nightshift_forge::ForgeConfig {
        entries: config.forge,
        retry: config.retry,
    };
    if let Some(url) = config.public_url {
        engine.public_url = url;
    }
    if let Some(poll) = duration("ci_poll", &config.ci_poll)? {
        engine.ci_poll = poll;
    }
    if let Some(limit) = duration("follow_pull_requests_for", &config.follow_pull_requests_for)? {
        engine.follow_for = limit;
    }
    // An explicitly named config file may hold tokens: hidden from runs like the data dir.
    let explicit_config = config_file.and_then(|p| p.canonicalize().ok());
    engine.confinement = crate::confine::SandboxSettings {
        sandbox: config.sandbox,
        setup_hosts: config.setup_hosts,
        extra_setup_hosts: config.extra_setup_hosts,
        sandbox_readonly: config.sandbox_readonly,
        sandbox_hidden: config.sandbox_hidden,
        sandbox_limits: config.sandbox_limits,
        env: config.env,
        agent_env: config.agent_env,
    }
    .engine_config(explicit_config.as_deref())
    .context("the sandbox settings in the configuration file")?;
    // Agents get the repository's checks as the `verify` tool, served by this very binary.
    engine.verify_tool = std::env::current_exe().ok().map(|exe| {
        vec![
            exe.to_string_lossy().into_owned(),
            nightshift_checks::verify::SUBCOMMAND.to_string(),
        ]
    });
    engine.run_limits = config
        .run_limits
        .engine_limits()
        .context("[run_limits] in the configuration file")?;
    if let Some(mode) = &config.workspaces {
        engine.workspaces = mode.parse()?;
    }
    if let Some(budget) = &config.bases_budget {
        engine.bases_budget = budget.value("bases_budget")?;
    }
    let workers = &config.workers;
    if let Some(lease) = duration("workers.lease", &workers.lease)? {
        engine.lease = lease;
        // A short lease needs beats well within it, or a busy worker loses runs it is running.
        engine.heartbeat = engine.heartbeat.min(lease / 3);
    }
    if let Some(heartbeat) = duration("workers.heartbeat", &workers.heartbeat)? {
        engine.heartbeat = heartbeat;
    }
    if engine.heartbeat.is_zero() || engine.heartbeat >= engine.lease {
        anyhow::bail!(
            "workers.heartbeat ({}) must be above zero and shorter than workers.lease ({})",
            nightshift_core::format_duration(engine.heartbeat),
            nightshift_core::format_duration(engine.lease)
        );
    }
    if let Some(poll) = duration("workers.poll", &workers.poll)? {
        engine.poll = poll;
    }
    if let Some(grace) = duration("workers.shutdown_grace", &workers.shutdown_grace)? {
        engine.shutdown_grace = grace;
    }
    let retention = &config.retention;
    if let Some(events) = duration("retention.events", &retention.events)? {
        engine.retention.events = events;
    }
    if let Some(audit) = duration("retention.audit", &retention.audit)? {
        engine.retention.audit = audit;
    }
    if let Some(kept) = duration("retention.failed_workspaces", &retention.failed_workspaces)? {
        engine.retention.workspaces = kept;
    }
    if let Some(judge) = &config.judge {
        engine.judge = Some(
            judge
                .engine_config()
                .context("[judge] in the configuration file")?,
        );
    }
    Ok(engine)
}

/// The data directory given (or the default one), created and made absolute.
pub(crate) fn data_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let data_dir = given.unwrap_or_else(default_data_dir);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    data_dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", data_dir.display()))
}

pub(crate) fn default_data_dir() -> PathBuf {
    match (std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME")) {
        (Some(xdg), _) => PathBuf::from(xdg).join("nightshift"),
        (None, Some(home)) => PathBuf::from(home).join(".local/share/nightshift"),
        (None, None) => PathBuf::from(".nightshift"),
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init(args.log_format);
    let data_dir = data_dir(args.data_dir)?;
    let config = load_config(args.config.as_ref(), &data_dir)?;
    let default_agent = config.default_agent.clone();
    let allowed_hosts = AllowedHosts::parse(&config.allowed_hosts).map_err(anyhow::Error::msg)?;
    let task_rate = config.rate_limits.task_rate()?;
    let local = crate::repos::serve_default(&args.listen, !args.trusted_proxies.is_empty());
    let mut engine = engine_config(config, &data_dir, args.config.as_deref(), local)?;
    // The flags win over the configuration file.
    let retention = &mut engine.retention;
    retention.events = args.keep_events.unwrap_or(retention.events);
    retention.audit = args.keep_audit.unwrap_or(retention.audit);
    retention.workspaces = args.keep_failed_workspaces.unwrap_or(retention.workspaces);
    if !args.no_workers {
        crate::install::bubblewrap_if_missing(engine.confinement.mode, !args.no_install_bubblewrap)
            .await;
    }
    let mut server = ServerConfig {
        max_timeout: args.max_timeout,
        auth: AuthConfig {
            disabled: args.no_auth,
            proxy: (!args.trusted_proxies.is_empty()).then(|| ProxyConfig {
                trusted: args.trusted_proxies.clone(),
            }),
            ..AuthConfig::default()
        },
        allowed_hosts,
        task_rate,
        ..ServerConfig::default()
    };
    if let Some(kind) = &default_agent {
        server.default_agent.kind = kind.parse()?;
    }
    let options = ServeOptions {
        engine: Some(engine),
        data_dir,
        listen: args.listen,
        workers: if args.no_workers { 0 } else { args.workers },
        database: args.database,
        server,
        secret_key: args
            .secret_key
            .as_deref()
            .map(SecretKey::from_base64)
            .transpose()
            .context("NIGHTSHIFT_SECRET_KEY")?,
    };
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!("nightshift: shutting down");
        signal.cancel();
    });
    nightshift_server::serve(options, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}

/// Waits for SIGTERM or SIGINT (Ctrl-C).
pub(crate) async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forge_settings_parse_and_errors_hide_tokens() {
        let config = parse_config(
            r#"
            public_url = "https://ns.example.com"
            ci_poll = "10s"

            [retry]
            max_attempts = 3

            [[forge]]
            kind = "github"
            host = "github.com"
            token = "github_pat_canary"

            [[forge]]
            kind = "forgejo"
            host = "codeberg.org"
            token = "tok"
            "#,
        )
        .unwrap();
        assert_eq!(config.forge.len(), 2);
        assert_eq!(config.retry.max_attempts, 3);
        assert_eq!(config.public_url.as_deref(), Some("https://ns.example.com"));

        let err =
            parse_config("[[forge]]\nkind = \"github\"\nhost = 1\ntoken = \"glpat-canary\"\n")
                .err()
                .unwrap();
        assert!(!err.contains("canary"), "{err}");
        assert!(err.starts_with("line 3"), "{err}");
    }

    #[test]
    fn pull_requests_are_followed_for_the_configured_time() {
        let engine = |text: &str| {
            engine_config(
                parse_config(text).unwrap(),
                std::path::Path::new("/srv/ns"),
                None,
                LocalRepos::ForServerAdmins,
            )
        };
        let day = std::time::Duration::from_secs(24 * 3600);
        assert_eq!(engine("").unwrap().follow_for, 14 * day);
        let set = engine("follow_pull_requests_for = \"3d\"\n").unwrap();
        assert_eq!(set.follow_for, 3 * day);
        let err = format!(
            "{:#}",
            engine("follow_pull_requests_for = \"soon\"\n").unwrap_err()
        );
        assert!(err.contains("follow_pull_requests_for"), "{err}");
    }

    #[test]
    fn host_and_rate_settings_parse_and_bad_ones_are_named() {
        let config = parse_config(
            "allowed_hosts = [\"ns.example.com\", \"*.corp.example\"]\n\
             [rate_limits]\ntasks_per_minute = 5\ntask_burst = 2\n",
        )
        .unwrap();
        assert!(
            AllowedHosts::parse(&config.allowed_hosts)
                .unwrap()
                .allows("a.corp.example:8080")
        );
        assert_eq!(
            config.rate_limits.task_rate().unwrap(),
            TaskRateLimit::new(5, 2).unwrap()
        );
        let zero = parse_config("[rate_limits]\ntasks_per_minute = 0\n").unwrap();
        let err = zero.rate_limits.task_rate().unwrap_err().to_string();
        assert!(err.contains("tasks_per_minute (0)"), "{err}");
        let err = AllowedHosts::parse(&["https://ns.example.com"]).unwrap_err();
        assert!(err.contains("not a host name"), "{err}");
        let budget = parse_config("[budget]\nmax_turns = 0\n").unwrap();
        let err = format!(
            "{:#}",
            engine_config(
                budget,
                std::path::Path::new("/srv/ns"),
                None,
                LocalRepos::ForServerAdmins
            )
            .unwrap_err()
        );
        assert!(
            err.contains("[budget]") && err.contains("max_turns"),
            "{err}"
        );
    }

    #[test]
    fn the_judge_is_configured_and_its_errors_say_where() {
        let dir = std::path::Path::new("/srv/nightshift");
        let none = engine_config(
            ConfigFile::default(),
            dir,
            None,
            LocalRepos::ForServerAdmins,
        )
        .unwrap();
        assert!(none.judge.is_none(), "no [judge]: no judge");
        let config =
            parse_config("[judge]\nmodel = \"gpt-5-mini\"\nprovider = \"openai\"\n").unwrap();
        let judge = engine_config(config, dir, None, LocalRepos::ForServerAdmins)
            .unwrap()
            .judge
            .unwrap();
        assert_eq!(judge.model, "gpt-5-mini");
        let config = parse_config("[judge]\nprovider = \"anthropic\"\n").unwrap();
        let err = format!(
            "{:#}",
            engine_config(config, dir, None, LocalRepos::ForServerAdmins).unwrap_err()
        );
        assert!(
            err.contains("[judge]") && err.contains("model is missing"),
            "{err}"
        );
    }

    #[test]
    fn worker_settings_set_lease_heartbeat_and_grace() {
        let dir = std::path::Path::new("/srv/nightshift");
        let config =
            parse_config("[workers]\nlease = \"2s\"\npoll = \"100ms\"\nshutdown_grace = \"5m\"\n")
                .unwrap();
        let engine = engine_config(config, dir, None, LocalRepos::ForServerAdmins).unwrap();
        assert_eq!(engine.lease, std::time::Duration::from_secs(2));
        assert!(
            engine.heartbeat < engine.lease / 2,
            "{:?}",
            engine.heartbeat
        );
        assert_eq!(engine.poll, std::time::Duration::from_millis(100));
        assert_eq!(engine.shutdown_grace, std::time::Duration::from_secs(300));

        let defaults = engine_config(
            ConfigFile::default(),
            dir,
            None,
            LocalRepos::ForServerAdmins,
        )
        .unwrap();
        assert_eq!(defaults.lease, std::time::Duration::from_secs(30));

        let slow = parse_config("[workers]\nlease = \"2s\"\nheartbeat = \"3s\"\n").unwrap();
        let err = engine_config(slow, dir, None, LocalRepos::ForServerAdmins)
            .unwrap_err()
            .to_string();
        assert!(err.contains("shorter than workers.lease"), "{err}");
        let bad = parse_config("[workers]\nshutdown_grace = \"soon\"\n").unwrap();
        let err = engine_config(bad, dir, None, LocalRepos::ForServerAdmins)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("workers.shutdown_grace"), "{err}");
        assert!(parse_config("[workers]\nleese = \"2s\"\n").is_err());
    }

    #[test]
    fn retention_settings_set_the_sweepers_windows() {
        let dir = std::path::Path::new("/srv/nightshift");
        let day = |n: u64| std::time::Duration::from_secs(n * 86_400);
        let config = parse_config(
            "[retention]\nevents = \"30d\"\naudit = \"800d\"\nfailed_workspaces = \"1d\"\n",
        )
        .unwrap();
        let retention = engine_config(
            config,
            dir,
            None,
            nightshift_engine::LocalRepos::Under(Vec::new()),
        )
        .unwrap()
        .retention;
        assert_eq!(
            (retention.events, retention.audit, retention.workspaces),
            (day(30), day(800), day(1))
        );
        let defaults = engine_config(
            ConfigFile::default(),
            dir,
            None,
            nightshift_engine::LocalRepos::Under(Vec::new()),
        )
        .unwrap();
        assert_eq!(
            defaults.retention,
            nightshift_store::RetentionPolicy::default()
        );
        let bad = parse_config("[retention]\nevents = \"forever\"\n").unwrap();
        let err = engine_config(
            bad,
            dir,
            None,
            nightshift_engine::LocalRepos::Under(Vec::new()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("retention.events"), "{err}");
        assert!(parse_config("[retention]\nworkspaces = \"1d\"\n").is_err());
    }
}
