//! Tasks: creation with their first run, retry, cancel, and filtered listing.

use nightshift_core::{
    FollowUp, NewTask, Run, RunStatus, Task, TaskFilter, Template, TemplateParams, now_millis,
};
use serde::Serialize;
use sqlx::Row;

use crate::rows::{self, RUN_COLUMNS, TASK_COLUMNS};
use crate::runs::{fetch_run, sync_task_status};
use crate::{Backend, NewAudit, Result, Store, StoreError};

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

/// Who created a task, as its audit event records them; the object is the task itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskAudit {
    pub actor: String,
    /// `task.create`, or `template.instantiate` for a task rendered from a template.
    pub action: String,
    pub source: String,
    pub detail: Option<String>,
}

impl Store {
    /// Stores a task and its first run (queued) in one transaction, as it is: no duplicate
    /// check and no audit event. Tasks people create come in through [`Store::intake_task`].
    pub async fn create_task(&self, new: &NewTask) -> Result<(Task, Run)> {
        self.insert_task(new, None, None).await
    }

    /// Stores a task the intake took in, with its first run (queued), the template version and
    /// values it came from and its audit event (object `task N`), all in one transaction.
    /// Refused with [`StoreError::DuplicateTask`] while a task of the project with the same
    /// instructions on the same repository is queued or running: a second one would only race it.
    pub async fn intake_task(
        &self,
        new: &NewTask,
        template: Option<(&Template, &TemplateParams)>,
        audit: &TaskAudit,
    ) -> Result<(Task, Run)> {
        let template = template
            .map(|(template, params)| crate::templates::template_link(new, template, params))
            .transpose()?;
        self.insert_task(new, template, Some(audit)).await
    }

    /// `template`: the id, version and parameter values (JSON) of the template it came from.
    /// With `audit`, an active duplicate is refused and the audit event written too.
    pub(crate) async fn insert_task(
        &self,
        new: &NewTask,
        template: Option<(i64, i64, String)>,
        audit: Option<&TaskAudit>,
    ) -> Result<(Task, Run)> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        if audit.is_some() {
            refuse_active_duplicate(&mut tx, self.backend, new).await?;
        }
        let task_id: i64 = sqlx::query(
            "INSERT INTO tasks (project_id, title, instructions, repo, base_branch, agent, timeout_secs, budget, \
             created_by, created_at, status, search_text, allow_test_changes) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', $11, $12) RETURNING id",
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
        .bind(search_text(&new.title, new.instructions.as_str()))
        .bind(i64::from(new.allow_test_changes))
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
        if let Some(audit) = audit {
            crate::audit::insert_audit(
                &mut tx,
                &NewAudit {
                    project_id: Some(new.project_id),
                    actor: audit.actor.clone(),
                    action: audit.action.clone(),
                    object: format!("task {task_id}"),
                    source: audit.source.clone(),
                    detail: audit.detail.clone(),
                },
            )
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
        // Neither planner knows that `created_at` grows with `id`, and each guessed wrong for one
        // kind of time window over a million tasks: PostgreSQL walked the id index newest first
        // through an old one-hour window (841 ms), SQLite sorted a whole recent day (316 ms).
        // So count the window first, stopping at NARROW_WINDOW + 1, and say which index to use:
        // a narrow window is read through `created_at` and sorted (`id + 0` cannot use the id
        // index), a wide one is met soon walking the id index (`+created_at` cannot use its
        // index). Same rows, same order; only the plan differs.
        let narrow = if filter.since.is_some() || filter.until.is_some() {
            Some(self.narrow_window(project_id, filter).await?)
        } else {
            None
        };
        let created_at = if narrow == Some(false) {
            "+t.created_at"
        } else {
            "t.created_at"
        };
        let mut clauses = vec!["t.project_id = $1".to_string()];
        let mut from = "tasks t";
        let mut order = "t.id DESC";
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
            push(&format!("{created_at} >= ?"), Bind::Int(since));
        }
        if let Some(until) = filter.until {
            push(&format!("{created_at} < ?"), Bind::Int(until));
        }
        if let Some(before) = filter.before {
            push("t.id < ?", Bind::Int(before));
        }
        if let Some(text) = filter.text.as_deref().filter(|t| !t.trim().is_empty()) {
            let folded = fold_case(text.trim());
            let pattern = format!("%{}%", escape_like(&folded));
            match self.backend {
                // Backslash is PostgreSQL's default LIKE escape; without an ESCAPE clause the
                // pg_trgm index (migration 0003) can answer the LIKE.
                Backend::Postgres => push("t.search_text LIKE ?", Bind::Text(pattern)),
                Backend::Sqlite => {
                    // The FTS5 trigram index takes no ESCAPE clause, so it gets a looser pattern
                    // (wildcard characters become `%`) and the exact LIKE checks what it finds.
                    // It needs three characters in a row to use the index; shorter text scans.
                    // The index drives the query newest first and stops at `limit` matches,
                    // so a common word costs as little as a rare one.
                    let pieces: Vec<&str> = folded.split(['%', '_']).collect();
                    if pieces.iter().any(|p| p.chars().count() >= 3) {
                        from = "tasks_search s CROSS JOIN tasks t";
                        order = "s.rowid DESC";
                        push(
                            "t.id = s.rowid AND s.search_text LIKE ?",
                            Bind::Text(format!("%{}%", pieces.join("%"))),
                        );
                    }
                    push("t.search_text LIKE ? ESCAPE '\\'", Bind::Text(pattern));
                }
            }
        }
        if narrow == Some(true) && from == "tasks t" {
            order = "t.id + 0 DESC";
        }
        let limit = filter.limit.unwrap_or(50).clamp(1, 500);
        let sql = format!(
            "SELECT {TASK_COLUMNS}, t.latest_run_id FROM {from} WHERE {} ORDER BY {order} LIMIT {limit}",
            clauses.join(" AND ")
        );
        // Not a cached prepared statement: the planner then sees the values, and a filter on a
        // rare status or an old time window gets its own index instead of a plan for the
        // average value (which on PostgreSQL scanned tens of thousands of rows).
        let mut query = sqlx::query(&sql).persistent(false);
        for bind in &binds {
            query = match bind {
                Bind::Int(v) => query.bind(*v),
                Bind::Text(v) => query.bind(v.as_str()),
            };
        }
        let rows = query.fetch_all(&self.pool).await?;
        let tasks = rows
            .iter()
            .map(|row| Ok((rows::task(row)?, row.try_get::<i64, _>("latest_run_id")?)))
            .collect::<Result<Vec<_>>>()?;
        // One query for all latest runs instead of one per task. The ids are integers we just
        // read, so writing them into the SQL is safe.
        let mut latest = std::collections::HashMap::new();
        if !tasks.is_empty() {
            let ids: Vec<String> = tasks.iter().map(|(_, id)| id.to_string()).collect();
            let sql = format!(
                "SELECT {RUN_COLUMNS} FROM runs r WHERE r.id IN ({}) AND r.project_id = $1",
                ids.join(", ")
            );
            for row in sqlx::query(&sql)
                .bind(project_id)
                .fetch_all(&self.pool)
                .await?
            {
                let run = rows::run(&row)?;
                latest.insert(run.id, run);
            }
        }
        tasks
            .into_iter()
            .map(|(task, run_id)| {
                let latest = latest
                    .remove(&run_id)
                    .ok_or_else(|| not_found("run", run_id))?;
                Ok(TaskSummary { task, latest })
            })
            .collect()
    }

    /// Whether at most [`NARROW_WINDOW`] tasks of the project were created in the filter's
    /// time window: a bounded count over the `created_at` index, so it costs at most that.
    async fn narrow_window(&self, project_id: i64, filter: &TaskFilter) -> Result<bool> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM (SELECT 1 FROM tasks WHERE project_id = $1 \
             AND created_at >= $2 AND created_at < $3 LIMIT $4) AS w",
        )
        .bind(project_id)
        .bind(filter.since.unwrap_or(i64::MIN))
        .bind(filter.until.unwrap_or(i64::MAX))
        .bind(NARROW_WINDOW + 1)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get::<i64, _>("n")? <= NARROW_WINDOW)
    }

    /// Creates run N+1 of a task. Refused while a run of the task is still active.
    pub async fn retry_task(&self, project_id: i64, task_id: i64) -> Result<Run> {
        let tx = self.write_tx().await?;
        self.queue_next_run(tx, project_id, task_id, None, "retrying")
            .await
    }

    /// Creates run N+1 of a task in `tx` (a write transaction), with what a follow-up run is
    /// for. Refused while a run of the task is still active; `doing` names what was refused.
    pub(crate) async fn queue_next_run(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        project_id: i64,
        task_id: i64,
        follow_up: Option<&FollowUp>,
        doing: &str,
    ) -> Result<Run> {
        let now = now_millis();
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
                    "task {task_id} still has an active run: cancel it or wait for it to end before {doing}"
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
        if let Some(follow_up) = follow_up {
            sqlx::query("UPDATE runs SET follow_up = $1 WHERE id = $2")
                .bind(serde_json::to_string(follow_up)?)
                .bind(run_id)
                .execute(&mut *tx)
                .await?;
        }
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
                    let mut tx = self.write_tx().await?;
                    let done = sqlx::query(
                        "UPDATE runs SET status = 'cancelled', end_reason = 'cancelled', ended_at = $2, \
                         waiting_reason = NULL WHERE id = $1 AND status = 'queued'",
                    )
                    .bind(run.id)
                    .bind(now_millis())
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 1 {
                        sync_task_status(&mut tx, run.id).await?;
                        let run = fetch_run(&mut tx, run.id).await?;
                        self.commit_and_wake(tx, run.id).await?;
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

/// Refuses `new` while a task of its project with the same instructions on the same repository
/// is queued or running. On PostgreSQL the project's row is locked first, so two intakes of the
/// same task cannot both find no duplicate; SQLite's write transaction already runs alone.
async fn refuse_active_duplicate(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    backend: Backend,
    new: &NewTask,
) -> Result<()> {
    if backend == Backend::Postgres {
        sqlx::query("SELECT id FROM projects WHERE id = $1 FOR UPDATE")
            .bind(new.project_id)
            .execute(&mut **tx)
            .await?;
    }
    let existing = sqlx::query(
        "SELECT id FROM tasks WHERE project_id = $1 AND repo = $2 AND instructions = $3 \
         AND status IN ('queued', 'running') ORDER BY id LIMIT 1",
    )
    .bind(new.project_id)
    .bind(new.repo.as_str())
    .bind(new.instructions.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    match existing {
        Some(row) => Err(StoreError::DuplicateTask {
            task: row.try_get("id")?,
        }),
        None => Ok(()),
    }
}

pub(crate) fn not_found(what: &'static str, id: i64) -> StoreError {
    StoreError::NotFound {
        what,
        id: id.to_string(),
    }
}

/// Up to this many tasks in a time window, listing sorts the window instead of walking the
/// newest tasks (see `list_tasks`).
const NARROW_WINDOW: i64 = 5_000;

/// Separates title and instructions in `search_text`, so no match spans the two.
const FIELD_SEPARATOR: char = '\u{1f}';

/// Case folding done here, not by the database: SQLite's `LOWER` folds ASCII only and
/// PostgreSQL's depends on the database's locale, so folding in Rust makes a search for
/// "ÜBER" find "über" on both back ends alike.
fn fold_case(text: &str) -> String {
    text.to_lowercase().replace(FIELD_SEPARATOR, " ")
}

/// The text a task's free-text filter searches: title and instructions, case-folded.
pub(crate) fn search_text(title: &str, instructions: &str) -> String {
    format!(
        "{}{FIELD_SEPARATOR}{}",
        fold_case(title),
        fold_case(instructions)
    )
}

fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}
