//! The run queue: claiming under a lease, heartbeats, progress and checkpoints, and the end.

use std::time::Duration;

use nightshift_core::{Checkpoint, EndReason, Phase, Run, Task, Usage, now_millis};
use sqlx::Row;

use crate::rows::{self, RUN_COLUMNS, TASK_COLUMNS};
use crate::tasks::not_found;
use crate::{Backend, Result, Store, StoreError};

/// A run a worker now holds, with its task.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub run: Run,
    pub task: Task,
    /// The run was running under another worker whose lease expired: continue from its checkpoint.
    pub resumed: bool,
}

/// What the store tells a worker on each heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub cancel_requested: bool,
}

/// A change to a running run. `None` fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunUpdate {
    pub phase: Option<Phase>,
    pub progress: Option<u8>,
    pub checkpoint: Option<Checkpoint>,
    pub usage: Option<Usage>,
}

impl Store {
    pub async fn run(&self, run_id: i64) -> Result<Option<Run>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.id = $1");
        let row = sqlx::query(&sql)
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::run).transpose()
    }

    /// Takes the oldest queued run (or a running one whose lease expired) for `worker`.
    pub async fn claim_run(&self, worker: &str, lease: Duration) -> Result<Option<Claim>> {
        let now = now_millis();
        // On PostgreSQL concurrent claimers skip each other's locked rows; on SQLite the single
        // statement runs under the database's write lock.
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE runs SET status = 'running', lease_owner = $1, lease_expires_at = $2, \
             started_at = COALESCE(started_at, $3), waiting_reason = NULL, claims = claims + 1 \
             WHERE id = (SELECT id FROM runs WHERE status = 'queued' \
                OR (status = 'running' AND lease_expires_at < $3) ORDER BY id LIMIT 1 {lock}) \
             RETURNING id, claims"
        );
        let row = sqlx::query(&sql)
            .bind(worker)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        let run_id: i64 = row.try_get("id")?;
        let claims: i64 = row.try_get("claims")?;
        self.sync_task_status(run_id).await?;
        let run = self
            .run(run_id)
            .await?
            .ok_or_else(|| not_found("run", run_id))?;
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = $1");
        let task = rows::task(
            &sqlx::query(&sql)
                .bind(run.task_id)
                .fetch_one(&self.pool)
                .await?,
        )?;
        Ok(Some(Claim {
            run,
            task,
            resumed: claims > 1,
        }))
    }

    /// Renews the lease. Fails with [`StoreError::LeaseLost`] when another worker took the run.
    pub async fn heartbeat(&self, run_id: i64, worker: &str, lease: Duration) -> Result<Heartbeat> {
        let row = sqlx::query(
            "UPDATE runs SET lease_expires_at = $3 WHERE id = $1 AND lease_owner = $2 AND status = 'running' \
             RETURNING cancel_requested",
        )
        .bind(run_id)
        .bind(worker)
        .bind(now_millis() + lease.as_millis() as i64)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => Ok(Heartbeat {
                cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
            }),
            None => Err(StoreError::LeaseLost { run_id }),
        }
    }

    /// Records phase, progress, checkpoint or usage of a run this worker holds.
    pub async fn update_run(&self, run_id: i64, worker: &str, update: &RunUpdate) -> Result<()> {
        let checkpoint = update
            .checkpoint
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        let usage = update.usage;
        let done = sqlx::query(
            "UPDATE runs SET phase = COALESCE($3, phase), progress = COALESCE($4, progress), \
             checkpoint = COALESCE($5, checkpoint), input_tokens = COALESCE($6, input_tokens), \
             output_tokens = COALESCE($7, output_tokens), cost_usd = COALESCE($8, cost_usd), \
             turns = COALESCE($9, turns) WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(worker)
        .bind(update.phase.map(|p| p.as_str()))
        .bind(update.progress.map(i64::from))
        .bind(checkpoint)
        .bind(usage.map(|u| u.input_tokens as i64))
        .bind(usage.map(|u| u.output_tokens as i64))
        .bind(usage.map(|u| u.cost_usd))
        .bind(usage.map(|u| u.turns as i64))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::LeaseLost { run_id });
        }
        Ok(())
    }

    /// Ends a run this worker holds. `failed_phase` names where a failure happened. The
    /// notifications for the task's creator are written in the same transaction.
    pub async fn finish_run(
        &self,
        run_id: i64,
        worker: &str,
        reason: EndReason,
        error: Option<&str>,
        failed_phase: Option<Phase>,
    ) -> Result<Run> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE runs SET status = $3, end_reason = $4, error = $5, failed_phase = $6, ended_at = $7, \
             progress = CASE WHEN $3 = 'succeeded' THEN 100 ELSE progress END, \
             lease_owner = NULL, lease_expires_at = NULL WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(worker)
        .bind(reason.status().as_str())
        .bind(reason.as_str())
        .bind(error)
        .bind(failed_phase.map(|p| p.as_str()))
        .bind(now_millis())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::LeaseLost { run_id });
        }
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.id = $1");
        let ended = rows::run(&sqlx::query(&sql).bind(run_id).fetch_one(&mut *tx).await?)?;
        crate::notifications::insert_run_notifications(&mut tx, &ended).await?;
        tx.commit().await?;
        self.sync_task_status(run_id).await?;
        self.run(run_id)
            .await?
            .ok_or_else(|| not_found("run", run_id))
    }

    /// Gives a run back to the queue (graceful shutdown): another worker resumes it.
    pub async fn release_run(&self, run_id: i64, worker: &str) -> Result<()> {
        sqlx::query(
            "UPDATE runs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(worker)
        .execute(&self.pool)
        .await?;
        self.sync_task_status(run_id).await
    }

    /// The run's number within its task, as users name runs.
    pub async fn run_by_number(
        &self,
        project_id: i64,
        task_id: i64,
        number: i64,
    ) -> Result<Option<Run>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r WHERE r.task_id = $1 AND r.number = $2 AND r.project_id = $3"
        );
        let row = sqlx::query(&sql)
            .bind(task_id)
            .bind(number)
            .bind(project_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::run).transpose()
    }
}
