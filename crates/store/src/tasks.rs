//! Tasks: creation with their first run, retry, cancel, and filtered listing.

use nightshift_core::{NewTask, Run, RunStatus, Task, TaskFilter, now_millis};
use serde::Serialize;
use sqlx::Row;

use crate::rows::{self, RUN_COLUMNS, TASK_COLUMNS};
use crate::{Result, Store, StoreError};

/// A task with its newest run, as lists show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskSummary {
    pub task: Task,
    pub latest: Run,
}

/// What a cancel request did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The run was still queued and is now cancelled.
    Cancelled(Run),
    /// The run is running; its worker stops it and then marks it cancelled.
    Requested(Run),
    /// The run had already ended.
    AlreadyEnded(Run),
}

/// A value bound to a `$N` parameter of a query built at run time.
enum Bind {
    Int(i64),
    Text(String),
}

impl Store {
    /// Stores a task and its first run (queued) in one transaction.
    pub async fn create_task(&self, new: &NewTask) -> Result<(Task, Run)> {
        self.insert_task(new, None).await
    }

    /// `template`: the id, version and parameter values (JSON) of the template it came from.
    pub(crate) async fn insert_task(
        &self,
        new: &NewTask,
        template: Option<(i64, i64, String)>,
    ) -> Result<(Task, Run)> {
        let now = now_millis();
        let mut tx = self.pool.begin().await?;
        let task_id: i64 = sqlx::query(
            "INSERT INTO tasks (project_id, title, instructions, repo, base_branch, agent, timeout_secs, budget, \
             created_by, created_at, status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued') RETURNING id",
        )
        .bind(new.project_id)
        .bind(&new.title)
        .bind(new.instructions.as_str())
        .bind(new.repo.as_str())
        .bind(new.base_branch.as_str())
        .bind(serde_json::to_string(&new.agent)?)
        .bind(new.timeout_secs as i64)
        .bind(serde_json::to_string(&new.budget)?)
        .bind(&new.created_by)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        let run_id = insert_run(&mut tx, new.project_id, task_id, 1, now).await?;
        sqlx::query("UPDATE tasks SET latest_run_id = $1 WHERE id = $2")
            .bind(run_id)
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
        if let Some((template_id, version, params)) = template {
            sqlx::query(
                "UPDATE tasks SET template_id = $1, template_version = $2, template_params = $3 WHERE id = $4",
            )
            .bind(template_id)
            .bind(version)
            .bind(params)
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let task = self
            .task(new.project_id, task_id)
            .await?
            .ok_or_else(|| not_found("task", task_id))?;
        let run = self
            .run(run_id)
            .await?
            .ok_or_else(|| not_found("run", run_id))?;
        Ok((task, run))
    }

    pub async fn task(&self, project_id: i64, id: i64) -> Result<Option<Task>> {
        let sql =
            format!("SELECT {TASK_COLUMNS} FROM tasks t WHERE t.id = $1 AND t.project_id = $2");
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(project_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(rows::task).transpose()
    }

    /// All runs of a task, oldest first.
    pub async fn task_runs(&self, project_id: i64, task_id: i64) -> Result<Vec<Run>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r WHERE r.task_id = $1 AND r.project_id = $2 ORDER BY r.number"
        );
        let rows = sqlx::query(&sql)
            .bind(task_id)
            .bind(project_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(rows::run).collect()
    }

    /// Tasks of a project, newest first, with their latest run.
    pub async fn list_tasks(
        &self,
        project_id: i64,
        filter: &TaskFilter,
    ) -> Result<Vec<TaskSummary>> {
        let mut clauses = vec!["t.project_id = $1".to_string()];
        let mut binds = vec![Bind::Int(project_id)];
        let mut push = |clause: &str, bind: Bind| {
            binds.push(bind);
            clauses.push(clause.replace('?', &format!("${}", binds.len())));
        };
        if let Some(repo) = &filter.repo {
            push("t.repo = ?", Bind::Text(repo.clone()));
        }
        if let Some(status) = filter.status {
            push("t.status = ?", Bind::Text(status.as_str().into()));
        }
        if let Some(reason) = filter.end_reason {
            push("t.end_reason = ?", Bind::Text(reason.as_str().into()));
        }
        if let Some(creator) = &filter.created_by {
            push("t.created_by = ?", Bind::Text(creator.clone()));
        }
        if let Some(since) = filter.since {
            push("t.created_at >= ?", Bind::Int(since));
        }
        if let Some(until) = filter.until {
            push("t.created_at < ?", Bind::Int(until));
        }
        if let Some(before) = filter.before {
            push("t.id < ?", Bind::Int(before));
        }
        if let Some(text) = filter.text.as_deref().filter(|t| !t.trim().is_empty()) {
            let pattern = format!("%{}%", escape_like(&text.trim().to_lowercase()));
            push(
                "(LOWER(t.title) LIKE ? ESCAPE '\\' OR LOWER(t.instructions) LIKE ? ESCAPE '\\')",
                Bind::Text(pattern),
            );
        }
        let limit = filter.limit.unwrap_or(50).clamp(1, 500);
        let sql = format!(
            "SELECT {TASK_COLUMNS}, t.latest_run_id FROM tasks t WHERE {} ORDER BY t.id DESC LIMIT {limit}",
            clauses.join(" AND ")
        );
        let mut query = sqlx::query(&sql);
        for bind in &binds {
            query = match bind {
                Bind::Int(v) => query.bind(*v),
                Bind::Text(v) => query.bind(v.as_str()),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let task = rows::task(row)?;
            let run_id: i64 = row.try_get("latest_run_id")?;
            let latest = self
                .run(run_id)
                .await?
                .ok_or_else(|| not_found("run", run_id))?;
            out.push(TaskSummary { task, latest });
        }
        Ok(out)
    }

    /// Creates run N+1 of a task. Refused while a run of the task is still active.
    pub async fn retry_task(&self, project_id: i64, task_id: i64) -> Result<Run> {
        let now = now_millis();
        let mut tx = self.pool.begin().await?;
        // Starting with the write takes SQLite's write lock up front, so concurrent writers wait
        // instead of failing, and the status check and the new run are one atomic step.
        let claimed = sqlx::query(
            "UPDATE tasks SET status = 'queued', end_reason = NULL WHERE id = $1 AND project_id = $2 \
             AND status NOT IN ('queued', 'running') RETURNING id",
        )
        .bind(task_id)
        .bind(project_id)
        .fetch_optional(&mut *tx)
        .await?;
        if claimed.is_none() {
            drop(tx);
            return match self.task(project_id, task_id).await? {
                None => Err(not_found("task", task_id)),
                Some(_) => Err(StoreError::Conflict(format!(
                    "task {task_id} still has an active run: cancel it or wait for it to end before retrying"
                ))),
            };
        }
        let number: i64 =
            sqlx::query("SELECT COALESCE(MAX(number), 0) + 1 AS n FROM runs WHERE task_id = $1")
                .bind(task_id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("n")?;
        let run_id = insert_run(&mut tx, project_id, task_id, number, now).await?;
        sqlx::query("UPDATE tasks SET latest_run_id = $1 WHERE id = $2")
            .bind(run_id)
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.run(run_id)
            .await?
            .ok_or_else(|| not_found("run", run_id))
    }

    /// Cancels the task's latest run: at once when queued, through its worker when running.
    pub async fn cancel_task(&self, project_id: i64, task_id: i64) -> Result<CancelOutcome> {
        // Two attempts: a queued run may be claimed between the read and the update.
        for _ in 0..2 {
            let runs = self.task_runs(project_id, task_id).await?;
            let run = runs
                .into_iter()
                .last()
                .ok_or_else(|| not_found("task", task_id))?;
            match run.status {
                RunStatus::Queued => {
                    let done = sqlx::query(
                        "UPDATE runs SET status = 'cancelled', end_reason = 'cancelled', ended_at = $2, \
                         waiting_reason = NULL WHERE id = $1 AND status = 'queued'",
                    )
                    .bind(run.id)
                    .bind(now_millis())
                    .execute(&self.pool)
                    .await?;
                    if done.rows_affected() == 1 {
                        self.sync_task_status(run.id).await?;
                        let run = self
                            .run(run.id)
                            .await?
                            .ok_or_else(|| not_found("run", run.id))?;
                        return Ok(CancelOutcome::Cancelled(run));
                    }
                }
                RunStatus::Running => {
                    sqlx::query("UPDATE runs SET cancel_requested = 1 WHERE id = $1")
                        .bind(run.id)
                        .execute(&self.pool)
                        .await?;
                    let run = self
                        .run(run.id)
                        .await?
                        .ok_or_else(|| not_found("run", run.id))?;
                    if run.status == RunStatus::Running {
                        return Ok(CancelOutcome::Requested(run));
                    }
                    if run.status.is_terminal() {
                        return Ok(CancelOutcome::AlreadyEnded(run));
                    }
                }
                _ => return Ok(CancelOutcome::AlreadyEnded(run)),
            }
        }
        Err(StoreError::Conflict(format!(
            "task {task_id} changed state while cancelling: try again"
        )))
    }

    /// Copies the run's status to its task when it is the task's latest run.
    pub(crate) async fn sync_task_status(&self, run_id: i64) -> Result<()> {
        sqlx::query(
            "UPDATE tasks SET status = (SELECT status FROM runs WHERE id = $1), \
             end_reason = (SELECT end_reason FROM runs WHERE id = $1) WHERE latest_run_id = $1",
        )
        .bind(run_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

async fn insert_run(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    project_id: i64,
    task_id: i64,
    number: i64,
    now: i64,
) -> Result<i64> {
    Ok(sqlx::query(
        "INSERT INTO runs (project_id, task_id, number, status, created_at) VALUES ($1, $2, $3, 'queued', $4) RETURNING id",
    )
    .bind(project_id)
    .bind(task_id)
    .bind(number)
    .bind(now)
    .fetch_one(&mut **tx)
    .await?
    .try_get("id")?)
}

pub(crate) fn not_found(what: &'static str, id: i64) -> StoreError {
    StoreError::NotFound {
        what,
        id: id.to_string(),
    }
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
