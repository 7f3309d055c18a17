//! What the server does for itself: the first admin on first start, and the retention sweeper.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nightshift_core::{DEFAULT_PROJECT, Millis, Role, now_millis};
use nightshift_store::{RetentionPolicy, Store, write_private};
use tokio_util::sync::CancellationToken;

use crate::auth::LOCAL_USER;
use crate::{ServeOptions, ServerError};

/// On a store without users, creates `admin` (a server admin, admin of the default project)
/// and writes its API token to `<data-dir>/admin.token`, readable by the owner only. Returns
/// that path when it did. With sign-in disabled it makes the local user instead.
pub(crate) async fn first_start(
    store: &Store,
    options: &ServeOptions,
) -> Result<Option<PathBuf>, ServerError> {
    if options.server.auth.disabled {
        if store.user_by_name(LOCAL_USER).await?.is_none() {
            store.create_user(LOCAL_USER, None, true).await?;
        }
        return Ok(None);
    }
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let admin = store.create_user("admin", None, true).await?;
    let project = store.ensure_project(DEFAULT_PROJECT).await?;
    store.set_member(project.id, admin.id, Role::Admin).await?;
    let (_, token) = store.create_token(admin.id, "admin.token").await?;
    let path = options.data_dir.join("admin.token");
    // A token file left from an earlier database names a user that no longer exists.
    let _ = std::fs::remove_file(&path);
    write_private(&path, format!("{token}\n").as_bytes()).map_err(|source| {
        ServerError::AdminToken {
            path: path.clone(),
            source,
        }
    })?;
    Ok(Some(path))
}

/// Removes run directories (workspace, agent home) of runs that ended longer ago than the
/// policy keeps them, and of runs the store no longer knows. Running runs are never touched.
/// Returns how many it removed.
pub async fn sweep_workspaces(
    store: &Store,
    runs_dir: &Path,
    policy: &RetentionPolicy,
    now: Millis,
) -> Result<usize, nightshift_store::StoreError> {
    let cutoff = now - policy.workspaces.as_millis() as i64;
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let Some(run_id) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i64>().ok())
        else {
            continue;
        };
        let stale = match store.run(run_id).await? {
            None => true,
            Some(run) => run.status.is_terminal() && run.ended_at.is_some_and(|at| at < cutoff),
        };
        if stale && std::fs::remove_dir_all(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Enforces the retention policy once an hour until shutdown.
pub(crate) async fn sweep_forever(
    store: Store,
    policy: RetentionPolicy,
    runs_dir: PathBuf,
    shutdown: CancellationToken,
) {
    loop {
        match sweep_workspaces(&store, &runs_dir, &policy, now_millis()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(workspaces = n, "retention sweep removed old workspaces"),
            Err(e) => tracing::error!(error = %e, "workspace sweep failed"),
        }
        match store.sweep(&policy, now_millis()).await {
            Ok(swept) if swept != Default::default() => {
                tracing::info!(
                    events = swept.events,
                    changes = swept.changes,
                    audit = swept.audit,
                    "retention sweep"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "retention sweep failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
