//! What the queue looks like right now, across every project: the gauges an operator scrapes.

use nightshift_core::{Millis, RunStatus};
use sqlx::Row;

use crate::{Result, Store};

/// Runs by status, and how long the queue has kept its oldest run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueGauges {
    /// Every status with its number of runs (statuses without runs are absent).
    pub runs: Vec<(RunStatus, i64)>,
    /// Queued runs held back by a limit (user, repository lock, budget).
    pub waiting: i64,
    /// When the oldest queued run was created.
    pub oldest_queued: Option<Millis>,
}

impl Store {
    pub async fn queue_gauges(&self) -> Result<QueueGauges> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        let mut runs = Vec::with_capacity(rows.len());
        for row in rows {
            let status: String = row.try_get("status")?;
            runs.push((status.parse()?, row.try_get("n")?));
        }
        let row = sqlx::query(
            "SELECT COUNT(waiting_reason) AS waiting, MIN(created_at) AS oldest \
             FROM runs WHERE status = 'queued'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(QueueGauges {
            runs,
            waiting: row.try_get("waiting")?,
            oldest_queued: row.try_get("oldest")?,
        })
    }
}
