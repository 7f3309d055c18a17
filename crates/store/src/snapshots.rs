//! The agent's finished work on a running run, kept in the database so that a worker on any
//! machine taking the run over restores it instead of running the agent again.

use nightshift_core::now_millis;
use sqlx::Row;

use crate::{Result, Store, StoreError};

/// A run's latest finished agent round as a binary patch (`git diff --binary` against
/// `base_commit`, new files included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceSnapshot {
    /// The agent round the patch is the result of.
    pub round: u32,
    /// The checks passed on it (after formatters applied): only committing and publishing are left.
    pub validated: bool,
    /// The commit the patch applies to.
    pub base_commit: String,
    pub patch: Vec<u8>,
}

impl Store {
    /// Replaces the run's snapshot. Only the worker holding the run may: a worker that lost its
    /// lease gets [`StoreError::LeaseLost`] and cannot overwrite the new holder's work.
    pub async fn save_snapshot(
        &self,
        run_id: i64,
        worker: &str,
        snapshot: &WorkspaceSnapshot,
    ) -> Result<()> {
        let done = sqlx::query(
            "INSERT INTO run_snapshots (run_id, round, validated, base_commit, patch, created_at) \
             SELECT $1, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM runs \
                WHERE id = $1 AND lease_owner = $2 AND status = 'running') \
             ON CONFLICT (run_id) DO UPDATE SET round = excluded.round, validated = excluded.validated, \
             base_commit = excluded.base_commit, patch = excluded.patch, created_at = excluded.created_at",
        )
        .bind(run_id)
        .bind(worker)
        .bind(i64::from(snapshot.round))
        .bind(i64::from(snapshot.validated))
        .bind(&snapshot.base_commit)
        .bind(&snapshot.patch)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::LeaseLost { run_id });
        }
        Ok(())
    }

    /// The run's snapshot, while it is running; none once it ended.
    pub async fn snapshot(&self, run_id: i64) -> Result<Option<WorkspaceSnapshot>> {
        let row = sqlx::query(
            "SELECT round, validated, base_commit, patch FROM run_snapshots WHERE run_id = $1",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<WorkspaceSnapshot> {
            Ok(WorkspaceSnapshot {
                round: u32::try_from(r.try_get::<i64, _>("round")?)
                    .map_err(|e| StoreError::Corrupt(format!("snapshot round: {e}")))?,
                validated: r.try_get::<i64, _>("validated")? != 0,
                base_commit: r.try_get("base_commit")?,
                patch: r.try_get("patch")?,
            })
        })
        .transpose()
    }
}
