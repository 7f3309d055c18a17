//! What outcome insights are computed from: a project's tasks, ended runs, retries and pull
//! requests over a period, each one aggregate query over an indexed time column.

use nightshift_core::{EndReason, Millis, OutcomeCounts};
use sqlx::Row;

use crate::{Result, Store};

impl Store {
    /// The counts behind a project's insights over `[since, until)`.
    pub async fn outcome_counts(
        &self,
        project_id: i64,
        since: Millis,
        until: Millis,
    ) -> Result<OutcomeCounts> {
        let mut counts = OutcomeCounts::default();
        let count = |row: &sqlx::any::AnyRow, name: &str| -> Result<u64> {
            Ok(row.try_get::<i64, _>(name)?.max(0) as u64)
        };
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM tasks WHERE project_id = $1 AND created_at >= $2 \
             AND created_at < $3",
        )
        .bind(project_id)
        .bind(since)
        .bind(until)
        .fetch_one(&self.pool)
        .await?;
        counts.tasks_created = count(&row, "n")?;

        let rows = sqlx::query(
            "SELECT end_reason, COUNT(*) AS n, SUM(cost_usd) AS cost FROM runs \
             WHERE project_id = $1 AND ended_at >= $2 AND ended_at < $3 \
             AND end_reason IS NOT NULL GROUP BY end_reason",
        )
        .bind(project_id)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let reason: EndReason = row.try_get::<String, _>("end_reason")?.parse()?;
            let cost: Option<f64> = row.try_get("cost")?;
            counts
                .ended_runs
                .push((reason, count(row, "n")?, cost.unwrap_or(0.0)));
        }

        // A retry is a later run of a task started afresh; a follow-up run is not one.
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, COUNT(CASE WHEN end_reason = 'succeeded' THEN 1 END) AS ok \
             FROM runs WHERE project_id = $1 AND ended_at >= $2 AND ended_at < $3 \
             AND number > 1 AND follow_up IS NULL",
        )
        .bind(project_id)
        .bind(since)
        .bind(until)
        .fetch_one(&self.pool)
        .await?;
        counts.retries = count(&row, "n")?;
        counts.retries_succeeded = count(&row, "ok")?;

        let rows = sqlx::query(
            "SELECT p.opened_at - t.created_at AS waited, p.state FROM followed_pull_requests p \
             JOIN tasks t ON t.id = p.task_id WHERE p.project_id = $1 AND p.opened_at >= $2 \
             AND p.opened_at < $3",
        )
        .bind(project_id)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            counts
                .time_to_pr_ms
                .push(row.try_get::<i64, _>("waited")?.max(0));
            match row.try_get::<String, _>("state")?.as_str() {
                "merged" => counts.opened_merged += 1,
                "closed" => counts.opened_closed += 1,
                _ => {}
            }
        }

        let row = sqlx::query(
            "SELECT COUNT(*) AS n, (SELECT SUM(r.cost_usd) FROM runs r WHERE r.task_id IN \
                (SELECT m.task_id FROM followed_pull_requests m WHERE m.project_id = $1 \
                 AND m.state = 'merged' AND m.ended_at >= $2 AND m.ended_at < $3)) AS cost \
             FROM followed_pull_requests p WHERE p.project_id = $1 AND p.state = 'merged' \
             AND p.ended_at >= $2 AND p.ended_at < $3",
        )
        .bind(project_id)
        .bind(since)
        .bind(until)
        .fetch_one(&self.pool)
        .await?;
        counts.merged = count(&row, "n")?;
        counts.merged_tasks_cost_usd = row.try_get::<Option<f64>, _>("cost")?.unwrap_or(0.0);
        Ok(counts)
    }
}
