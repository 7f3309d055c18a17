//! The configuration file of `serve` and `worker` (`nightshift.toml`), and the engine's
//! settings made from it.

use std::path::PathBuf;

use anyhow::Context;
use nightshift_core::parse_duration;
use nightshift_engine::{EngineConfig, LocalRepos};
use nightshift_server::TaskRateLimit;

/// The configuration file of `serve` and `worker`. Everything is optional; the environment's
/// model endpoint and key variables win over what the file says.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct ConfigFile {
    /// The agent a task gets when it names none: claude-code, codex, acp or command.
    pub(crate) default_agent: Option<String>,
    /// Extra agent sessions after failing checks.
    verification_rounds: Option<u32>,
    /// Budget defaults for tasks that set none (`max_cost_usd`, `max_turns`, `max_tokens`).
    budget: nightshift_core::Budget,
    agents: nightshift_agent::AgentConfig,
    /// Where people reach this server; pull requests link back to `<public_url>/tasks/<id>`.
    public_url: Option<String>,
    /// Names the server answers to besides its address, `localhost` and `public_url`'s host.
    pub(crate) allowed_hosts: Vec<String>,
    /// `[rate_limits]`: how fast one user may create tasks.
    pub(crate) rate_limits: RateLimitSettings,
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
    /// `[webhooks]`: the secrets forges sign webhook deliveries with (`secret`, or
    /// `github_secret`, `gitlab_secret`, `gitea_secret`); none: the endpoints are off.
    pub(crate) webhooks: nightshift_engine::WebhookSecrets,
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
    pub(crate) fn task_rate(&self) -> anyhow::Result<TaskRateLimit> {
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
    config.webhooks.validate().map_err(anyhow::Error::msg)?;
    engine.webhooks = config.webhooks.clone();
    if let Some(judge) = &config.judge {
        engine.judge = Some(
            judge
                .engine_config()
                .context("[judge] in the configuration file")?,
        );
    }
    Ok(engine)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_server::AllowedHosts;

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
    fn webhook_secrets_are_read_and_a_guessable_one_is_refused_without_showing_it() {
        let dir = std::path::Path::new("/srv/nightshift");
        let engine = |text: &str| {
            engine_config(
                parse_config(text).unwrap(),
                dir,
                None,
                LocalRepos::ForServerAdmins,
            )
        };
        assert!(engine("").unwrap().webhooks.forges().is_empty());
        let on = engine(
            "[webhooks]\nsecret = \"4f9c1e0b7d2a6358-shared\"\ngitlab_secret = \"a-different-one-for-gitlab\"\n",
        )
        .unwrap();
        assert_eq!(on.webhooks.forges(), ["github", "gitlab", "gitea"]);
        let err = format!(
            "{:#}",
            engine("[webhooks]\nsecret = \"hunter2\"\n").unwrap_err()
        );
        assert!(err.contains("webhooks.secret"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(parse_config("[webhooks]\nsecrets = \"x\"\n").is_err());
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
