//! History across tasks: runs of a project filtered by status, newest first, with a cursor.

use nightshift_core::{Millis, Run, RunStatus};

use crate::rows::{self, RUN_COLUMNS};
use crate::{Result, Store};

/// Filters for listing runs. Every field narrows; `None` does not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    pub status: Option<RunStatus>,
    /// Only queued runs that wait for a limit (user, repository lock, budget).
    pub waiting: bool,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// Only runs with an id below this one: ids never change, so pages never shift.
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

impl Store {
    /// Runs of a project, newest first.
    pub async fn list_runs(&self, project_id: i64, filter: &RunFilter) -> Result<Vec<Run>> {
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs r WHERE r.project_id = $1");
        let mut ints = vec![project_id];
        let mut text = None;
        if let Some(status) = filter.status {
            text = Some(status.as_str());
            sql.push_str(" AND r.status = $2");
        }
        if filter.waiting {
            sql.push_str(" AND r.status = 'queued' AND r.waiting_reason IS NOT NULL");
        }
        let offset = 1 + usize::from(text.is_some());
        for (value, clause) in [
            (filter.since, "r.created_at >="),
            (filter.until, "r.created_at <"),
            (filter.before, "r.id <"),
        ] {
            if let Some(value) = value {
                ints.push(value);
                sql.push_str(&format!(" AND {clause} ${}", ints.len() - 1 + offset));
            }
        }
        let limit = filter.limit.unwrap_or(50).clamp(1, 500);
        sql.push_str(&format!(" ORDER BY r.id DESC LIMIT {limit}"));
        let mut query = sqlx::query(&sql).bind(project_id);
        if let Some(status) = text {
            query = query.bind(status);
        }
        for value in &ints[1..] {
            query = query.bind(*value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(rows::run).collect()
    }
}
