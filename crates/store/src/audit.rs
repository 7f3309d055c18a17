//! The audit trail: who did what to which object, when and from where. Append-only: the store
//! offers no update, and only the retention sweeper deletes.

use nightshift_core::{AuditEvent, AuditFilter, now_millis};
use sqlx::Row;

use crate::{Result, Store};

/// One thing to record; the time is the store's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NewAudit {
    pub project_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub object: String,
    pub source: String,
    pub detail: Option<String>,
}

/// The trail's one insert, run on the pool or in the transaction of the change it records.
fn insert(event: &NewAudit) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
    sqlx::query(
        "INSERT INTO audit_events (project_id, at, actor, action, object, source, detail) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(event.project_id)
    .bind(now_millis())
    .bind(&event.actor)
    .bind(&event.action)
    .bind(&event.object)
    .bind(&event.source)
    .bind(event.detail.as_deref())
}

/// Records `event` in the transaction of the change it describes: both are stored or neither.
pub(crate) async fn insert_audit(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    event: &NewAudit,
) -> Result<()> {
    insert(event).execute(&mut **tx).await?;
    Ok(())
}

impl Store {
    pub async fn record_audit(&self, event: &NewAudit) -> Result<()> {
        insert(event).execute(&self.pool).await?;
        Ok(())
    }

    /// Audit events of one project (or, with `None`, those outside any project), newest first.
    pub async fn audit_events(
        &self,
        project_id: Option<i64>,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEvent>> {
        let mut sql = String::from(
            "SELECT id, project_id, at, actor, action, object, source, detail FROM audit_events WHERE ",
        );
        let mut n = 0;
        let mut next = || {
            n += 1;
            format!("${n}")
        };
        sql.push_str(&match project_id {
            Some(_) => format!("project_id = {}", next()),
            None => "project_id IS NULL".to_string(),
        });
        if filter.actor.is_some() {
            sql.push_str(&format!(" AND actor = {}", next()));
        }
        if filter.action.is_some() {
            sql.push_str(&format!(" AND action = {}", next()));
        }
        if filter.since.is_some() {
            sql.push_str(&format!(" AND at >= {}", next()));
        }
        if filter.until.is_some() {
            sql.push_str(&format!(" AND at < {}", next()));
        }
        if filter.before.is_some() {
            sql.push_str(&format!(" AND id < {}", next()));
        }
        let limit = filter.limit.unwrap_or(100).clamp(1, 1000);
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {limit}"));
        let mut query = sqlx::query(&sql);
        if let Some(id) = project_id {
            query = query.bind(id);
        }
        if let Some(actor) = &filter.actor {
            query = query.bind(actor.as_str());
        }
        if let Some(action) = &filter.action {
            query = query.bind(action.as_str());
        }
        for value in [filter.since, filter.until, filter.before]
            .into_iter()
            .flatten()
        {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEvent {
                    id: row.try_get("id")?,
                    project_id: row.try_get("project_id")?,
                    at: row.try_get("at")?,
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    object: row.try_get("object")?,
                    source: row.try_get("source")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }
}
