//! `nightshift serve`: the embedded shape — API and workers in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use nightshift_core::parse_duration;
use nightshift_server::{AllowedHosts, AuthConfig, ProxyConfig, ServeOptions, ServerConfig};
use nightshift_store::SecretKey;
use tokio_util::sync::CancellationToken;

use crate::config::{engine_config, load_config};

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
    /// The secret forges sign webhook deliveries with; overrides `[webhooks] secret` of the
    /// configuration file (set it in the environment, not on the command line).
    #[arg(long, env = "NIGHTSHIFT_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
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
    let mut config = load_config(args.config.as_ref(), &data_dir)?;
    if let Some(secret) = args.webhook_secret {
        config.webhooks.secret = Some(nightshift_forge::Secret::new(secret));
    }
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
