//! Admission to the queue's head: per-user active runs, one running run per repository and
//! base branch (the repo lock), and the project's monthly budget. `claim_run` only takes a
//! queued run these admit; the others get a `waiting_reason` saying what they wait for.

use nightshift_core::{Millis, month_bounds, month_label, now_millis};
use serde::Serialize;
use sqlx::Row;

use crate::{Result, Store};

/// The three reasons a queued run `q` (joined with its task as `qt`) may not start, as SQL
/// conditions that read the same on SQLite and PostgreSQL. `month_start` is a number we
/// computed, never user input, so it is written into the text.
struct Gates {
    repo_locked: String,
    user_at_limit: String,
    over_budget: String,
}

fn gates(month_start: Millis) -> Gates {
    Gates {
        // Across projects: two pushes to one branch race whoever asked for them.
        repo_locked: "EXISTS (SELECT 1 FROM tasks ht JOIN runs h ON h.task_id = ht.id \
             WHERE ht.repo = qt.repo AND ht.base_branch = qt.base_branch AND h.status = 'running')"
            .into(),
        user_at_limit: "(SELECT p.max_active_runs_per_user FROM projects p WHERE p.id = q.project_id) > 0 \
             AND (SELECT COUNT(*) FROM tasks ut JOIN runs u ON u.task_id = ut.id \
                WHERE ut.project_id = qt.project_id AND ut.created_by = qt.created_by AND u.status = 'running') \
             >= (SELECT p.max_active_runs_per_user FROM projects p WHERE p.id = q.project_id)"
            .into(),
        over_budget: format!(
            "EXISTS (SELECT 1 FROM projects p WHERE p.id = q.project_id AND p.monthly_budget_usd IS NOT NULL \
             AND p.monthly_budget_usd <= (SELECT COALESCE(SUM(s.cost_usd), 0) FROM runs s \
                WHERE s.project_id = p.id AND s.created_at >= {month_start}))"
        ),
    }
}

/// The condition (on queued run `q`) under which `claim_run` may start it now.
pub(crate) fn admissible(now: Millis) -> String {
    let g = gates(month_bounds(now).0);
    format!(
        "EXISTS (SELECT 1 FROM tasks qt WHERE qt.id = q.task_id AND NOT ({}) AND NOT ({}) AND NOT ({}))",
        g.repo_locked, g.user_at_limit, g.over_budget
    )
}

/// A project's spend in one calendar month (UTC).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonthlyUsage {
    /// `YYYY-MM`.
    pub month: String,
    pub runs: i64,
    pub cost_usd: f64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub turns: i64,
    pub budget_usd: Option<f64>,
}

/// Says on every queued run what it waits for, and clears the reason of those that may go.
/// Only rows whose reason changes are written.
pub(crate) async fn refresh_waiting_reasons(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
) -> Result<()> {
    let g = gates(month_bounds(now_millis()).0);
    let reason = format!(
        "(SELECT CASE \
           WHEN {budget} THEN 'the project''s monthly budget is spent: an admin can raise it, or the run starts next month' \
           WHEN {locked} THEN 'waiting for the repository lock on ' || qt.repo || ' ' || qt.base_branch || ': held by ' || \
              COALESCE((SELECT 'task ' || CAST(MIN(ht.id) AS TEXT) FROM tasks ht JOIN runs h ON h.task_id = ht.id \
                WHERE ht.repo = qt.repo AND ht.base_branch = qt.base_branch AND h.status = 'running' \
                AND ht.project_id = qt.project_id), 'a run in another project') \
           WHEN {user} THEN 'waiting: ' || qt.created_by || ' already has ' || \
              CAST((SELECT p.max_active_runs_per_user FROM projects p WHERE p.id = q.project_id) AS TEXT) || \
              ' active run(s), the most this project allows per user' \
           ELSE NULL END FROM tasks qt WHERE qt.id = q.task_id)",
        budget = g.over_budget,
        locked = g.repo_locked,
        user = g.user_at_limit,
    );
    let sql = format!(
        "UPDATE runs AS q SET waiting_reason = {reason} WHERE q.status = 'queued' \
         AND COALESCE(q.waiting_reason, '') <> COALESCE({reason}, '')"
    );
    sqlx::query(&sql).execute(&mut **tx).await?;
    Ok(())
}

impl Store {
    /// The project's spend in the month that contains `at`.
    pub async fn monthly_usage(&self, project_id: i64, at: Millis) -> Result<MonthlyUsage> {
        let (start, end) = month_bounds(at);
        let row = sqlx::query(
            "SELECT COUNT(*) AS runs, COALESCE(SUM(cost_usd), 0) AS cost, \
             CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS input_tokens, CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS output_tokens, \
             CAST(COALESCE(SUM(turns), 0) AS BIGINT) AS turns FROM runs WHERE project_id = $1 AND created_at >= $2 AND created_at < $3",
        )
        .bind(project_id)
        .bind(start)
        .bind(end)
        .fetch_one(&self.pool)
        .await?;
        let settings = self.project_settings(project_id).await?;
        Ok(MonthlyUsage {
            month: month_label(at),
            runs: row.try_get("runs")?,
            cost_usd: row.try_get("cost")?,
            input_tokens: row.try_get("input_tokens")?,
            output_tokens: row.try_get("output_tokens")?,
            turns: row.try_get("turns")?,
            budget_usd: settings.monthly_budget_usd,
        })
    }
}
