//! Reading a project's records: the audit trail, monthly usage, and runs across tasks.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Query, State};
use nightshift_core::{AuditFilter, now_millis, parse_month, parse_timestamp};
use nightshift_store::RunFilter;

use crate::AppState;
use crate::auth::ProjectAccess;
use crate::contract::{
    AuditEventView, AuditPage, AuditQuery, ErrorCode, MonthUsage, RunList, RunListEntry, RunView,
    RunsQuery, UsageQuery,
};
use crate::error::ApiError;

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::invalid(ErrorCode::InvalidQuery, e.body_text()))
}

pub async fn list(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    audit_page(&state, Some(access.project.id), query(q)?).await
}

/// Events outside any project: tokens, users, sign-in, forged proxy headers.
pub async fn list_server(
    State(state): State<AppState>,
    q: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Json<AuditPage>, ApiError> {
    audit_page(&state, None, query(q)?).await
}

async fn audit_page(
    state: &AppState,
    project_id: Option<i64>,
    q: AuditQuery,
) -> Result<Json<AuditPage>, ApiError> {
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
    Ok(Json(AuditPage {
        events: events.iter().map(AuditEventView::new).collect(),
        next_before: next,
    }))
}

pub async fn usage(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Json<MonthUsage>, ApiError> {
    let q = query(q)?;
    let at = match q.month.as_deref() {
        None => now_millis(),
        Some(text) => parse_month(text).ok_or_else(|| {
            ApiError::invalid(ErrorCode::InvalidMonth, "month: use YYYY-MM, e.g. 2026-11")
        })?,
    };
    let usage = state.store.monthly_usage(access.project.id, at).await?;
    Ok(Json(MonthUsage::new(&access.project.name, &usage)))
}

pub async fn runs(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    q: Result<Query<RunsQuery>, QueryRejection>,
) -> Result<Json<RunList>, ApiError> {
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
    let runs = runs
        .iter()
        .map(|r| RunListEntry {
            run: RunView::new(r),
            task_id: r.task_id,
            id: r.id,
        })
        .collect();
    Ok(Json(RunList {
        runs,
        next_before: next,
    }))
}
