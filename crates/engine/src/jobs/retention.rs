//! The retention sweeper: once an hour, this machine's workspaces of runs that ended longer ago
//! than the policy keeps them, and — where the engine sweeps records — the database's old run
//! events, diffs and audit events.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use nightshift_core::{Millis, now_millis};
use nightshift_store::{RetentionPolicy, Store, StoreError};
use tokio_util::sync::CancellationToken;

use crate::Engine;

/// How often the sweeper runs; the first sweep is at start.
const EVERY: Duration = Duration::from_secs(3600);

/// Enforces the engine's retention policy until `stop` fires.
pub(super) async fn sweep(engine: Arc<Engine>, stop: CancellationToken) {
    let policy = engine.config.retention;
    let runs_dir = engine.config.data_dir.join("runs");
    loop {
        match sweep_workspaces(&engine.store, &runs_dir, &policy, now_millis()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(workspaces = n, "retention sweep removed old workspaces"),
            Err(e) => tracing::error!(error = %e, "workspace sweep failed"),
        }
        if engine.config.sweep_records {
            match engine.store.sweep(&policy, now_millis()).await {
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
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Removes run directories (workspace, agent home) of runs that ended longer ago than the
/// policy keeps them, and of runs the store no longer knows. Running runs are never touched.
/// Returns how many it removed.
pub async fn sweep_workspaces(
    store: &Store,
    runs_dir: &Path,
    policy: &RetentionPolicy,
    now: Millis,
) -> Result<usize, StoreError> {
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
        if stale && nightshift_workspace::remove_tree(&entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}
