//! In-app notifications: one row per (run, kind) for the task's creator, written when a run ends.

use nightshift_core::{Millis, Run, RunStatus, now_millis};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store};

/// Something the user should see: a run of theirs succeeded, failed or opened a pull request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub id: i64,
    pub project_id: i64,
    pub user: String,
    pub task_id: i64,
    pub run_id: i64,
    /// `succeeded`, `failed` or `pr_opened`; after the run, `ci_failed`, `pr_conflicts`,
    /// `pr_merged` or `pr_closed` from the pull request follower.
    pub kind: String,
    pub message: String,
    pub created_at: Millis,
    pub read_at: Option<Millis>,
}

const COLUMNS: &str =
    "id, project_id, user_name, task_id, run_id, kind, message, created_at, read_at";

fn notification(row: &AnyRow) -> Result<Notification> {
    Ok(Notification {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        user: row.try_get("user_name")?,
        task_id: row.try_get("task_id")?,
        run_id: row.try_get("run_id")?,
        kind: row.try_get("kind")?,
        message: row.try_get("message")?,
        created_at: row.try_get("created_at")?,
        read_at: row.try_get("read_at")?,
    })
}

impl Store {
    /// Writes the notifications an ended run deserves for its task's creator. Idempotent: a
    /// (run, kind) pair is written once, so a repeated call after a crash adds nothing.
    pub async fn notify_run_end(&self, run: &Run) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        insert_run_notifications(&mut conn, run).await
    }

    /// The user's notifications in a project, newest first.
    pub async fn notifications(
        &self,
        project_id: i64,
        user: &str,
        unread_only: bool,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        let unread = if unread_only {
            " AND read_at IS NULL"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM notifications WHERE project_id = $1 AND user_name = $2{unread} \
             ORDER BY id DESC LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(project_id)
            .bind(user)
            .bind(i64::from(limit.clamp(1, 500)))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(notification).collect()
    }

    pub async fn unread_notifications(&self, project_id: i64, user: &str) -> Result<i64> {
        Ok(sqlx::query(
            "SELECT COUNT(*) AS n FROM notifications WHERE project_id = $1 AND user_name = $2 AND read_at IS NULL",
        )
        .bind(project_id)
        .bind(user)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?)
    }

    /// Marks one of the user's notifications read and returns it; another user's is not found.
    pub async fn mark_notification_read(
        &self,
        project_id: i64,
        user: &str,
        id: i64,
    ) -> Result<Option<Notification>> {
        sqlx::query(
            "UPDATE notifications SET read_at = COALESCE(read_at, $4) WHERE id = $1 AND project_id = $2 AND user_name = $3",
        )
        .bind(id)
        .bind(project_id)
        .bind(user)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM notifications WHERE id = $1 AND project_id = $2 AND user_name = $3"
        );
        let row = sqlx::query(&sql)
            .bind(id)
            .bind(project_id)
            .bind(user)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(notification).transpose()
    }

    pub async fn mark_all_notifications_read(&self, project_id: i64, user: &str) -> Result<u64> {
        Ok(sqlx::query(
            "UPDATE notifications SET read_at = $3 WHERE project_id = $1 AND user_name = $2 AND read_at IS NULL",
        )
        .bind(project_id)
        .bind(user)
        .bind(now_millis())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}

/// The rows behind [`Store::notify_run_end`], on any connection, so `finish_run` writes them in
/// the same transaction as the run's end.
pub(crate) async fn insert_run_notifications(
    conn: &mut sqlx::AnyConnection,
    run: &Run,
) -> Result<()> {
    let mut entries: Vec<(&str, String)> = Vec::new();
    let reason = run.end_reason.map(|r| r.as_str()).unwrap_or("unknown");
    match run.status {
        RunStatus::Succeeded => entries.push((
            "succeeded",
            format!("run {} succeeded ({reason})", run.number),
        )),
        RunStatus::Failed => entries.push((
            "failed",
            format!(
                "run {} failed ({reason}{})",
                run.number,
                run.failed_phase
                    .map(|p| format!(" in {p}"))
                    .unwrap_or_default()
            ),
        )),
        // A cancel is the user's own doing: nothing to tell them.
        _ => {}
    }
    if let Some(url) = &run.checkpoint.pr_url {
        entries.push((
            "pr_opened",
            format!("run {} opened a pull request: {url}", run.number),
        ));
    }
    for (kind, message) in entries {
        insert_notification(&mut *conn, run.task_id, run.id, kind, &message).await?;
    }
    Ok(())
}

/// One notification for the creator of task `task_id` about its run `run_id`, prefixed with
/// the task's title. A (run, kind) pair is written once.
pub(crate) async fn insert_notification(
    conn: &mut sqlx::AnyConnection,
    task_id: i64,
    run_id: i64,
    kind: &str,
    message: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO notifications (project_id, user_name, task_id, run_id, kind, message, created_at) \
         SELECT project_id, created_by, id, $2, $3, title || ': ' || $4, $5 FROM tasks WHERE id = $1 \
         ON CONFLICT (run_id, kind) DO NOTHING",
    )
    .bind(task_id)
    .bind(run_id)
    .bind(kind)
    .bind(message)
    .bind(now_millis())
    .execute(conn)
    .await?;
    Ok(())
}
