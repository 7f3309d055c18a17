//! Persistence behind one [`Store`] API, on SQLite (the embedded default, one file) or
//! PostgreSQL (many nodes). Both speak the same SQL here: numbered `$N` parameters, integer
//! times and flags, JSON as text. Where they differ, the difference is named at the spot: row
//! locks when claiming, `NOTIFY` for live events across nodes, and the text-search index.
//! The conformance suite (tests/suite/conformance.rs) runs every case on both.

mod addressed;
mod events;
mod followed;
mod gauges;
mod insights;
mod live;
mod notifications;
mod nudges;
mod rebase;
mod rows;
mod runs;
mod snapshots;
mod tasks;
mod templates;

// Projects, people and policies.
mod audit;
mod credentials;
mod history;
mod limits;
mod projects;
mod retention;
mod users;

pub use addressed::CommandComment;
pub use events::{EVENT_ROW_BYTES, NewEvent};
pub use followed::{PollOutcome, PrSeen};
pub use gauges::QueueGauges;
pub use live::{ANY_RUN, Followed, RunFollower};
pub use notifications::Notification;
pub use runs::{Claim, Heartbeat, RunUpdate};
pub use snapshots::WorkspaceSnapshot;
pub use tasks::{CancelOutcome, TaskAudit, TaskSummary};
pub use templates::{TemplateSummary, TemplateUsage, TemplateUse};

pub use audit::NewAudit;
pub use credentials::{
    CredentialInfo, ForgeCredential, SecretKey, restrict_to_owner, write_private,
};
pub use history::RunFilter;
pub use limits::MonthlyUsage;
pub use projects::{GroupBinding, Member};
pub use retention::{RetentionPolicy, Swept};
pub use users::{ApiToken, TOKEN_PREFIX, hash_secret, new_secret};

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use nightshift_core::{DEFAULT_PROJECT, Millis, Project, now_millis};
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor, Row};
use tokio::sync::broadcast;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    /// A follow-up run was asked for where its pull request gives it nothing to do.
    #[error("{0}")]
    NothingToFix(String),
    /// The intake found the same instructions already queued or running on the repository.
    #[error(
        "task {task} has the same instructions on this repository and is still queued or running"
    )]
    DuplicateTask { task: i64 },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("run {run_id} is no longer leased by this worker")]
    LeaseLost { run_id: i64 },
    #[error("the poll of followed pull request {id} is no longer leased by this follower")]
    FollowLeaseLost { id: i64 },
    #[error("server key: {0}")]
    Key(String),
}

impl From<nightshift_core::CoreError> for StoreError {
    fn from(e: nightshift_core::CoreError) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// The one persistence API. Cheap to clone: a pool and a broadcast sender.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Wakes live followers of a run in this process when events are appended (carries the run
    /// id). On PostgreSQL it is fed by `LISTEN/NOTIFY`, so appends on other nodes wake it too.
    appended: broadcast::Sender<i64>,
    /// The PostgreSQL listener feeding `appended`; stopped when the last clone is dropped.
    _relay: Option<Arc<live::Relay>>,
    /// Runs being followed on this node, each read once per wake-up for all its followers.
    tails: live::Tails,
}

impl Store {
    /// Opens (creating if needed) the SQLite database file at `path`, readable by its owner
    /// only: the file, and its `-wal` and `-shm` companions, which SQLite creates with the
    /// database file's mode.
    pub async fn open_sqlite(path: &Path) -> Result<Store> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |p: &Path, e: std::io::Error| StoreError::Corrupt(format!("{}: {e}", p.display()));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(path, e)),
        }
        let companions = |path: &Path| -> Result<()> {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
                restrict_to_owner(&file).map_err(|e| io(&file, e))?;
            }
            Ok(())
        };
        companions(path)?;
        let store = Store::connect(&format!("sqlite://{}?mode=rwc", path.display())).await?;
        companions(path)?;
        Ok(store)
    }

    /// Connects to `sqlite://…` or `postgres://…` and applies migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let options = AnyPoolOptions::new().max_connections(match backend {
            Backend::Sqlite => 8,
            Backend::Postgres => 16,
        });
        let options = match backend {
            Backend::Sqlite => options.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets readers proceed while a worker writes; the busy timeout makes
                    // concurrent writers wait instead of failing.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA busy_timeout = 30000").await?;
                    conn.execute("PRAGMA synchronous = NORMAL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            }),
            Backend::Postgres => options,
        };
        let pool = options
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        let (appended, _) = broadcast::channel(4096);
        let relay = match backend {
            Backend::Postgres => Some(live::start_relay(url, appended.clone()).await?),
            Backend::Sqlite => None,
        };
        let store = Store {
            pool,
            backend,
            appended,
            _relay: relay,
            tails: Default::default(),
        };
        store.ensure_project(DEFAULT_PROJECT).await?;
        Ok(store)
    }

    /// A transaction that writes. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`): a transaction that reads first and writes later cannot wait for the lock and
    /// fails with "database is locked" when another writer holds it.
    pub(crate) async fn write_tx(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Returns the project named `name`, creating it when missing.
    pub async fn ensure_project(&self, name: &str) -> Result<Project> {
        sqlx::query(
            "INSERT INTO projects (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        self.project(name)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                what: "project",
                id: name.into(),
            })
    }

    pub async fn project(&self, name: &str) -> Result<Option<Project>> {
        let row = sqlx::query("SELECT id, name, created_at FROM projects WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| -> Result<Project> {
            Ok(Project {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                created_at: r.try_get::<Millis, _>("created_at")?,
            })
        })
        .transpose()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl FromStr for Backend {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" => Ok(Backend::Postgres),
            other => Err(StoreError::UnsupportedUrl(other.to_string())),
        }
    }
}
