//! The Nightshift server: the REST API under `/api/v1` with live SSE streams, and — in the
//! embedded shape — the workers, all in one process.

mod api;
pub mod auth;
mod bootstrap;
pub mod contract;
mod edge;
mod error;
pub mod openapi;
mod throttle;
mod ui;

pub use api::{RouteSpec, route_table, serve_metrics};
pub use auth::{Access, AuthConfig, CurrentUser, ProxyConfig};
pub use edge::AllowedHosts;
pub use error::ApiError;
pub use nightshift_engine::TaskRateLimit;
pub use throttle::Throttle;
pub use ui::{PageRoute, page_table};

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use nightshift_core::{AgentSpec, DEFAULT_TIMEOUT, Project};
use nightshift_engine::{Engine, EngineConfig, Intake, IntakePolicy};
use nightshift_store::{SecretKey, Store};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] nightshift_store::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error(
        "refusing to listen on {0} with sign-in disabled: anyone who can reach it would act as admin. \
         Listen on 127.0.0.1, or drop --no-auth so API tokens (or a trusted proxy) are required"
    )]
    Insecure(SocketAddr),
    #[error("cannot write {path}: {source}")]
    AdminToken {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Settings of the API itself.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The longest timeout a task may ask for.
    pub max_timeout: Duration,
    /// The agent a task gets when it names none.
    pub default_agent: AgentSpec,
    /// How people sign in.
    pub auth: AuthConfig,
    /// Names this server answers to besides its address, `localhost` and the public URL's host.
    pub allowed_hosts: AllowedHosts,
    /// How fast one user may create tasks.
    pub task_rate: TaskRateLimit,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_timeout: DEFAULT_TIMEOUT,
            default_agent: AgentSpec {
                kind: nightshift_core::AgentKind::ClaudeCode,
                command: None,
                model: None,
                args: Vec::new(),
            },
            auth: AuthConfig::default(),
            allowed_hosts: AllowedHosts::default(),
            task_rate: TaskRateLimit::default(),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub engine: Arc<Engine>,
    pub config: Arc<ServerConfig>,
    /// Seals and opens the credentials vault.
    pub secret_key: Arc<SecretKey>,
    /// The one way tasks come in, API and web UI alike.
    pub intake: Arc<Intake>,
    /// How much anonymous noise this process writes to the audit trail.
    pub throttle: Arc<Throttle>,
}

impl AppState {
    pub fn new(
        store: Store,
        engine: Arc<Engine>,
        config: ServerConfig,
        secret_key: SecretKey,
    ) -> AppState {
        let intake = Intake::new(
            engine.clone(),
            IntakePolicy {
                max_timeout: config.max_timeout,
                default_agent: config.default_agent.clone(),
                task_rate: config.task_rate,
            },
        );
        AppState {
            throttle: Arc::new(Throttle::new()),
            intake: Arc::new(intake),
            store,
            engine,
            config: Arc::new(config),
            secret_key: Arc::new(secret_key),
        }
    }

    pub(crate) async fn project(&self, name: &str) -> Result<Project, ApiError> {
        self.store
            .project(name)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("project {name:?} not found")))
    }

    /// The store id of run `number` of task `id` in `project`.
    pub(crate) async fn run_id(
        &self,
        project: &str,
        id: i64,
        number: i64,
    ) -> Result<i64, ApiError> {
        let project = self.project(project).await?;
        let run = self
            .store
            .run_by_number(project.id, id, number)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("run {number} of task {id} not found")))?;
        Ok(run.id)
    }
}

/// Requests larger than this are refused with 413: instructions are capped at 64 KiB anyway.
const MAX_BODY_BYTES: usize = 1024 * 1024;

pub fn router(state: AppState) -> Router {
    // The guard wraps every API route (and only those): sign-in, access, audit.
    let api = api::routes().layer(axum::middleware::from_fn_with_state(
        state.clone(),
        auth::guard,
    ));
    let hosts = Arc::new(
        state
            .config
            .allowed_hosts
            .with_url(&state.engine.config().public_url),
    );
    Router::new()
        .nest("/api/v1", api)
        .merge(ui::routes(state.clone()))
        // A browser's cross-site POST (a form on another site) is refused everywhere, API
        // included: sessions are cookies, and this is what makes them CSRF-safe.
        .layer(axum::middleware::from_fn(ui::same_origin))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // In every mode, `--no-auth` included: a name that is not this server's is refused
        // before anything else looks at the request.
        .layer(axum::middleware::from_fn(move |request, next| {
            edge::check_host(hosts.clone(), request, next)
        }))
        .layer(axum::middleware::from_fn(edge::security_headers))
        .with_state(state)
}

/// Everything `nightshift serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub workers: usize,
    /// `sqlite://…` or `postgres://…`; the SQLite file in the data directory when absent.
    pub database: Option<String>,
    pub server: ServerConfig,
    pub engine: Option<EngineConfig>,
    /// The vault key (from `NIGHTSHIFT_SECRET_KEY`); else `<data-dir>/secret.key`, created once.
    pub secret_key: Option<SecretKey>,
}

/// Opens the store the options name (migrations run on open).
pub async fn open_store(options: &ServeOptions) -> Result<Store, ServerError> {
    Ok(match &options.database {
        Some(url) => Store::connect(url).await?,
        None => Store::open_sqlite(&options.data_dir.join("nightshift.db")).await?,
    })
}

/// Runs the API and the workers until `shutdown` fires or one of them ends.
pub async fn serve(options: ServeOptions, shutdown: CancellationToken) -> Result<(), ServerError> {
    if options.server.auth.disabled && !options.listen.ip().is_loopback() {
        return Err(ServerError::Insecure(options.listen));
    }
    let store = open_store(&options).await?;
    let secret_key = match &options.secret_key {
        Some(key) => key.clone(),
        None => SecretKey::load_or_create(&options.data_dir.join("secret.key"))?,
    };
    // An older version wrote the token file with the same mode; a copy put there by hand may not.
    let admin_token = options.data_dir.join("admin.token");
    if let Err(e) = nightshift_store::restrict_to_owner(&admin_token) {
        tracing::warn!(path = %admin_token.display(), error = %e, "cannot make the file private");
    }
    if let Some(path) = bootstrap::first_start(&store, &options).await? {
        println!(
            "nightshift: created the admin user; its API token is in {} (export NIGHTSHIFT_TOKEN=$(cat {}))",
            path.display(),
            path.display()
        );
    }
    let mut engine_config = options
        .engine
        .clone()
        .unwrap_or_else(|| EngineConfig::new(&options.data_dir));
    engine_config.secret_key = Some(secret_key.clone());
    let webhooks = engine_config.webhooks.forges();
    if !webhooks.is_empty() {
        let url = engine_config.public_url.trim_end_matches('/');
        tracing::info!(
            forges = ?webhooks,
            "webhook endpoints on: {url}/api/v1/webhooks/<forge>"
        );
    }
    let engine = Engine::new(store.clone(), engine_config);
    let state = AppState::new(
        store.clone(),
        engine.clone(),
        options.server.clone(),
        secret_key,
    );
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: options.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(ServerError::Serve)?;
    tracing::info!(%addr, workers = options.workers, data_dir = %options.data_dir.display(), "nightshift listening");
    println!(
        "nightshift listening on http://{addr} ({} workers, data in {})",
        options.workers,
        options.data_dir.display()
    );

    let api_shutdown = shutdown.clone();
    // Connection info lets the guard trust identity headers only from configured proxies.
    let api = axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { api_shutdown.cancelled().await })
    .into_future();
    // The workers, with the engine's jobs: the retention sweeper and the pull request follower.
    let workers = engine.run_workers(options.workers, shutdown.clone());
    tokio::pin!(api);
    tokio::pin!(workers);
    // Whichever part ends first says why; the other is asked to stop and awaited.
    let result = tokio::select! {
        r = &mut api => {
            shutdown.cancel();
            workers.await;
            r.map_err(ServerError::Serve)
        }
        () = &mut workers => {
            shutdown.cancel();
            api.await.map_err(ServerError::Serve)
        }
    };
    store.close().await;
    result
}
