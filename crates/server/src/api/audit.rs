//! Reading a project's records: the audit trail, monthly usage, and runs across tasks.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use nightshift_core::{AuditFilter, format_timestamp, now_millis, parse_month, parse_timestamp};
use nightshift_store::RunFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::ProjectAccess;
use crate::error::ApiError;
use crate::views::RunView;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::invalid("invalid_query", e.body_text()))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

pub async fn list(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    audit_page(&state, Some(access.project.id), query(q)?).await
}

/// Events outside any project: tokens, users, sign-in, forged proxy headers.
pub async fn list_server(
    State(state): State<AppState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    audit_page(&state, None, query(q)?).await
}

async fn audit_page(
    state: &AppState,
    project_id: Option<i64>,
    q: AuditQuery,
) -> Result<Json<Value>, ApiError> {
    let filter = AuditFilter {
        actor: q.actor,
        action: q.action,
        since: q.since.as_deref().map(parse_timestamp).transpose()?,
        until: q.until.as_deref().map(parse_timestamp).transpose()?,
        before: q.before,
        limit: q.limit,
    };
    let events = state.store.audit_events(project_id, &filter).await?;
    let limit = filter.limit.unwrap_or(100).clamp(1, 1000) as usize;
    let next = (events.len() == limit)
        .then(|| events.last().map(|e| e.id))
        .flatten();
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": format_timestamp(e.at),
                "actor": e.actor,
                "action": e.action,
                "object": e.object,
                "source": e.source,
                "detail": e.detail,
            })
        })
        .collect();
    Ok(Json(json!({"events": events, "next_before": next})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// `YYYY-MM`; this month when absent.
    pub month: Option<String>,
}

pub async fn usage(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let at = match q.month.as_deref() {
        None => now_millis(),
        Some(text) => parse_month(text).ok_or_else(|| {
            ApiError::invalid("invalid_month", "month: use YYYY-MM, e.g. 2026-11")
        })?,
    };
    let usage = state.store.monthly_usage(access.project.id, at).await?;
    Ok(Json(json!({
        "project": access.project.name,
        "month": usage.month,
        "runs": usage.runs,
        "cost_usd": usage.cost_usd,
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "turns": usage.turns,
        "budget_usd": usage.budget_usd,
        "over_budget": usage.budget_usd.is_some_and(|b| usage.cost_usd >= b),
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    pub status: Option<String>,
    /// `true`: only queued runs held back by a limit.
    #[serde(default)]
    pub waiting: bool,
    pub since: Option<String>,
    pub until: Option<String>,
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

pub async fn runs(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let q = query(q)?;
    let filter = RunFilter {
        status: q.status.as_deref().map(str::parse).transpose()?,
        waiting: q.waiting,
        since: q.since.as_deref().map(parse_timestamp).transpose()?,
        until: q.until.as_deref().map(parse_timestamp).transpose()?,
        before: q.before,
        limit: q.limit,
    };
    let runs = state.store.list_runs(access.project.id, &filter).await?;
    let limit = filter.limit.unwrap_or(50).clamp(1, 500) as usize;
    let next = (runs.len() == limit)
        .then(|| runs.last().map(|r| r.id))
        .flatten();
    let runs: Vec<Value> = runs
        .iter()
        .map(|r| {
            let mut view = serde_json::to_value(RunView::new(r)).unwrap_or_default();
            view["task_id"] = json!(r.task_id);
            view["id"] = json!(r.id);
            view
        })
        .collect();
    Ok(Json(json!({"runs": runs, "next_before": next})))
}
