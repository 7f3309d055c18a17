//! `nightshift worker`: the scaled-out shape's executor — engine workers only, no HTTP, on the
//! database the API nodes (`serve --no-workers`) use.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use nightshift_core::format_duration;
use nightshift_engine::Engine;
use nightshift_store::{SecretKey, Store};
use tokio_util::sync::CancellationToken;

use crate::config::{engine_config, load_config};
use crate::serve::{data_dir, wait_for_signal};

#[derive(Args)]
#[command(after_long_help = "\
Runs queued runs and nothing else: no API, no web UI. Start any number of workers, on any
number of machines, on the PostgreSQL database of your `nightshift serve --no-workers` API
nodes; each claims runs under a lease it renews, and a run whose worker dies is taken over
from its last checkpoint once the lease expires.

On SIGTERM or SIGINT a worker stops claiming, lets each running run reach its next checkpoint
(at most `shutdown_grace`, see [workers] in the configuration file), then hands it back to the
queue, where another worker takes it over at once. A second signal exits at once.

Give every worker the API nodes' configuration file (agents, [[forge]], public_url) and their
server key (NIGHTSHIFT_SECRET_KEY), which opens the project credentials they push with.")]
pub struct WorkerArgs {
    /// The database of the API nodes: `postgres://…` (or `sqlite://PATH` on one machine).
    #[arg(long, env = "NIGHTSHIFT_DATABASE")]
    database: String,
    /// This worker's own directory for mirrors, workspaces and logs (not shared with others).
    #[arg(long, env = "NIGHTSHIFT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// How many runs this process executes at once.
    #[arg(long, env = "NIGHTSHIFT_WORKERS", default_value_t = 2)]
    workers: usize,
    /// The configuration file (default: nightshift.toml in the data directory, when present).
    #[arg(long, env = "NIGHTSHIFT_CONFIG")]
    config: Option<PathBuf>,
    /// The API nodes' key that seals stored credentials (32 bytes, base64); else
    /// `<data-dir>/secret.key` when it exists.
    #[arg(long, env = "NIGHTSHIFT_SECRET_KEY", hide_env_values = true)]
    secret_key: Option<String>,
    /// Serve this worker's metrics (Prometheus text format) at `http://ADDR/metrics`, without
    /// sign-in: choose an address only your Prometheus reaches.
    #[arg(long, env = "NIGHTSHIFT_METRICS_LISTEN")]
    metrics_listen: Option<std::net::SocketAddr>,
    /// How logs on stderr are written.
    #[arg(long, env = "NIGHTSHIFT_LOG_FORMAT", value_enum, default_value_t)]
    log_format: crate::logging::LogFormat,
    /// Do not install bubblewrap when it is missing (see `nightshift serve --help`).
    #[arg(long, env = "NIGHTSHIFT_NO_INSTALL_BUBBLEWRAP")]
    no_install_bubblewrap: bool,
}

pub async fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init(args.log_format);
    if args.workers == 0 {
        anyhow::bail!("--workers must be at least 1");
    }
    let data_dir = data_dir(args.data_dir)?;
    let config = load_config(args.config.as_ref(), &data_dir)?;
    // A worker serves whoever reaches the API nodes: local repositories only where the
    // configuration file names them.
    let no_local = nightshift_engine::LocalRepos::Under(Vec::new());
    let mut engine_config = engine_config(config, &data_dir, args.config.as_deref(), no_local)?;
    // The database's records are swept by the API nodes, with the retention they were given.
    engine_config.sweep_records = false;
    engine_config.secret_key = secret_key(args.secret_key.as_deref(), &data_dir)?;
    if engine_config.secret_key.is_none() {
        tracing::warn!(
            "no server key (NIGHTSHIFT_SECRET_KEY): runs cannot use project credentials from the vault"
        );
    }
    crate::install::bubblewrap_if_missing(
        engine_config.confinement.mode,
        !args.no_install_bubblewrap,
    )
    .await;
    let grace = engine_config.shutdown_grace;
    let store = Store::connect(&args.database)
        .await
        .context("cannot open the database")?;
    let engine = Engine::new(store.clone(), engine_config);
    println!(
        "nightshift worker running {} workers on the {} store (data in {})",
        args.workers,
        store.backend().as_str(),
        data_dir.display()
    );

    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!(
            "nightshift worker: shutting down: handing runs back at their next checkpoint (at most {})",
            format_duration(grace)
        );
        signal.cancel();
        wait_for_signal().await;
        // Whatever was not handed back is taken over when its lease expires.
        eprintln!("nightshift worker: second signal: exiting now");
        std::process::exit(130);
    });
    if let Some(addr) = args.metrics_listen {
        let (store, stop) = (store.clone(), shutdown.clone());
        // Bound before the workers start, so a taken address fails the worker at once.
        let metrics = nightshift_server::serve_metrics(addr, store, stop)
            .await
            .with_context(|| format!("--metrics-listen {addr}"))?;
        tokio::spawn(async move {
            if let Err(e) = metrics.await {
                tracing::error!(error = %e, "the metrics listener stopped");
            }
        });
    }
    // With the workers, the engine's jobs: the pull request follower, and the sweeper of this
    // machine's leftover workspaces (a crash leaves them behind).
    engine.run_workers(args.workers, shutdown).await;
    store.close().await;
    eprintln!("nightshift worker: stopped");
    Ok(ExitCode::SUCCESS)
}

/// The key from the flag or environment, else the data directory's key file when there is one.
/// Never a new key: one that differs from the API nodes' cannot open their credentials.
fn secret_key(
    given: Option<&str>,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<SecretKey>> {
    if let Some(text) = given {
        return Ok(Some(
            SecretKey::from_base64(text).context("NIGHTSHIFT_SECRET_KEY")?,
        ));
    }
    let path = data_dir.join("secret.key");
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(
        SecretKey::load_or_create(&path).with_context(|| format!("{}", path.display()))?,
    ))
}
