//! The run queue: claiming under a lease, heartbeats, progress and checkpoints, and the end.

use std::time::Duration;

use nightshift_core::{Checkpoint, EndReason, Phase, Run, Task, Usage, now_millis};
use sqlx::{AnyConnection, Row};

use crate::rows::{self, RUN_COLUMNS, TASK_COLUMNS};
use crate::tasks::not_found;
use crate::{Backend, Result, Store, StoreError};

/// A run a worker now holds, with its task.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub run: Run,
    pub task: Task,
    /// The run was running under another worker before: continue from its checkpoint.
    pub resumed: bool,
    /// That worker handed the run back (it was shutting down) rather than letting its lease expire.
    pub handed_over: bool,
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

    /// Takes a queued run (or a running one whose lease expired) for `worker`, fairly across
    /// projects (see `claim_order` for the policy).
    pub async fn claim_run(&self, worker: &str, lease: Duration) -> Result<Option<Claim>> {
        let now = now_millis();
        // On PostgreSQL concurrent claimers skip each other's locked rows; on SQLite the single
        // statement runs under the database's write lock.
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        // Queued runs start only when the limits admit them (see `limits.rs`); an expired
        // lease is always resumed, since its run already holds its place.
        let admissible = crate::limits::admissible(now);
        let sql = format!(
            "UPDATE runs SET status = 'running', lease_owner = $1, lease_expires_at = $2, \
             started_at = COALESCE(started_at, $3), claimed_at = $3, waiting_reason = NULL, \
             claims = claims + 1, \
             handed_over = CASE WHEN status = 'running' THEN 0 ELSE handed_over END \
             WHERE id = (SELECT q.id FROM runs q WHERE q.project_id = $4 AND ((q.status = 'queued' AND {admissible}) \
                OR (q.status = 'running' AND q.lease_expires_at < $3)) ORDER BY q.id LIMIT 1 {lock}) \
             RETURNING id, claims, handed_over"
        );
        // The order is a snapshot: another claimer may take the project's last run first, so
        // fall through to the next project rather than report an empty queue.
        for project_id in self.claim_order(now).await? {
            // One transaction, so one commit (one disk flush) per claim, and the task's status
            // never disagrees with its run's.
            let mut tx = self.begin_claim().await?;
            let row = sqlx::query(&sql)
                .bind(worker)
                .bind(now + lease.as_millis() as i64)
                .bind(now)
                .bind(project_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(row) = row else { continue };
            // Under the same lock, so concurrent claimers do not write the same rows in turn.
            crate::limits::refresh_waiting_reasons(&mut tx).await?;
            let run_id: i64 = row.try_get("id")?;
            let claims: i64 = row.try_get("claims")?;
            let handed_over: i64 = row.try_get("handed_over")?;
            sync_task_status(&mut tx, run_id).await?;
            let run = fetch_run(&mut tx, run_id).await?;
            let sql = format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = $1");
            let task = rows::task(
                &sqlx::query(&sql)
                    .bind(run.task_id)
                    .fetch_one(&mut *tx)
                    .await?,
            )?;
            tx.commit().await?;
            return Ok(Some(Claim {
                run,
                task,
                resumed: claims > 1,
                handed_over: claims > 1 && handed_over != 0,
            }));
        }
        // Nothing could start: still tell the waiting runs why.
        let mut tx = self.begin_claim().await?;
        crate::limits::refresh_waiting_reasons(&mut tx).await?;
        tx.commit().await?;
        Ok(None)
    }

    /// A claim's transaction. Row locks cannot stop two claimers from each taking a different
    /// run of one repository (or of one user), so on PostgreSQL claims take turns.
    async fn begin_claim(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.write_tx().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT 1 AS n FROM pg_advisory_xact_lock(7482903)")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// The projects with a claimable run, in the order a worker should serve them.
    ///
    /// Fairness: a project with a backlog must not starve the others, so the next worker goes
    /// to the project with the fewest runs holding a live lease (a fair share of workers), then
    /// to the one served least recently (round-robin, so one worker that claims and finishes in
    /// turn still alternates), then to the one whose oldest claimable run has waited longest.
    /// Pure FIFO would make a later project wait for the whole backlog; ranking by running count
    /// alone would too when runs finish as fast as they are claimed. The cost is one index probe
    /// per project, not per queued run, so a deep backlog does not slow claiming down.
    async fn claim_order(&self, now: i64) -> Result<Vec<i64>> {
        let rows = sqlx::query(
            "SELECT p.id, (SELECT MAX(r.claimed_at) FROM runs r WHERE r.project_id = p.id) AS last_claim_at, \
             (SELECT COUNT(*) FROM runs r WHERE r.project_id = p.id AND r.status = 'running' \
                AND r.lease_expires_at >= $1) AS active, \
             (SELECT MIN(r.id) FROM runs r WHERE r.project_id = p.id AND r.status = 'queued') AS queued, \
             (SELECT MIN(r.id) FROM runs r WHERE r.project_id = p.id AND r.status = 'running' \
                AND r.lease_expires_at < $1) AS expired \
             FROM projects p",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut candidates = Vec::new();
        for row in &rows {
            let queued: Option<i64> = row.try_get("queued")?;
            let expired: Option<i64> = row.try_get("expired")?;
            let oldest = match (queued, expired) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => match a.or(b) {
                    Some(id) => id,
                    None => continue,
                },
            };
            let active: i64 = row.try_get("active")?;
            // Never served sorts first.
            let last: Option<i64> = row.try_get("last_claim_at")?;
            let id: i64 = row.try_get("id")?;
            candidates.push(((active, last.unwrap_or(i64::MIN), oldest), id));
        }
        candidates.sort();
        Ok(candidates.into_iter().map(|(_, id)| id).collect())
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
             output_tokens = COALESCE($7, output_tokens), \
             cost_usd = CASE WHEN $6 IS NULL THEN cost_usd ELSE $8 END, \
             turns = COALESCE($9, turns) WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(worker)
        .bind(update.phase.map(|p| p.as_str()))
        .bind(update.progress.map(i64::from))
        .bind(checkpoint)
        .bind(usage.map(|u| u.input_tokens as i64))
        .bind(usage.map(|u| u.output_tokens as i64))
        // Never a NULL float: sqlx's Any driver sends a NULL `f64` to PostgreSQL typed as
        // float4, the prepared statement keeps that type, and the next real cost is refused.
        .bind(usage.map_or(0.0, |u| u.cost_usd))
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
        let mut tx = self.write_tx().await?;
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
        sync_task_status(&mut tx, run_id).await?;
        // The agent's result now lives in the generated change and the pushed branch.
        sqlx::query("DELETE FROM run_snapshots WHERE run_id = $1")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        let run = fetch_run(&mut tx, run_id).await?;
        // In the same transaction as the status change, so a finished run always has its
        // notifications and a failed insert leaves the run unfinished rather than silent.
        crate::notifications::insert_run_notifications(&mut tx, &run).await?;
        // Its followers learn of the end at once (see `RunFollower::next_or_end`).
        self.commit_and_wake(tx, run_id).await?;
        Ok(run)
    }

    /// Gives a run back to the queue (graceful shutdown): the next claim takes it at once, as a
    /// handover, instead of waiting for the lease to expire. Fails with
    /// [`StoreError::LeaseLost`] when this worker no longer holds the run.
    pub async fn release_run(&self, run_id: i64, worker: &str) -> Result<()> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE runs SET status = 'queued', lease_owner = NULL, lease_expires_at = NULL, \
             handed_over = 1 WHERE id = $1 AND lease_owner = $2 AND status = 'running'",
        )
        .bind(run_id)
        .bind(worker)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::LeaseLost { run_id });
        }
        sync_task_status(&mut tx, run_id).await?;
        tx.commit().await?;
        Ok(())
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

/// Reads a run inside a transaction (it must exist: the caller just changed it).
pub(crate) async fn fetch_run(conn: &mut AnyConnection, run_id: i64) -> Result<Run> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.id = $1");
    let row = sqlx::query(&sql).bind(run_id).fetch_optional(conn).await?;
    row.as_ref()
        .map(rows::run)
        .transpose()?
        .ok_or_else(|| not_found("run", run_id))
}

/// Copies the run's status to its task when it is the task's latest run, in the caller's
/// transaction so lists never show a task disagreeing with its run.
pub(crate) async fn sync_task_status(conn: &mut AnyConnection, run_id: i64) -> Result<()> {
    sqlx::query(
        "UPDATE tasks SET status = (SELECT status FROM runs WHERE id = $1), \
         end_reason = (SELECT end_reason FROM runs WHERE id = $1) \
         WHERE id = (SELECT task_id FROM runs WHERE id = $1) AND latest_run_id = $1",
    )
    .bind(run_id)
    .execute(conn)
    .await?;
    Ok(())
}
