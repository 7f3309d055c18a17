//! The requesting user's in-app notifications: list with unread count, mark read.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use nightshift_core::Project;
use nightshift_store::Notification;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{AuditNote, CurrentUser};
use crate::error::ApiError;

#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    pub unread: bool,
    pub limit: Option<u32>,
}

fn view(n: &Notification, project: &str) -> Value {
    json!({
        "id": n.id,
        "kind": n.kind,
        "message": n.message,
        "task_id": n.task_id,
        "task_url": format!("/p/{project}/tasks/{}", n.task_id),
        "created_at": nightshift_core::format_timestamp(n.created_at),
        "read": n.read_at.is_some(),
    })
}

pub async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let project = state.project(&project).await?;
    let unread = state
        .store
        .unread_notifications(project.id, user.name())
        .await?;
    let list = state
        .store
        .notifications(
            project.id,
            user.name(),
            query.unread,
            query.limit.unwrap_or(50),
        )
        .await?;
    Ok(Json(json!({
        "unread": unread,
        "notifications": list.iter().map(|n| view(n, &project.name)).collect::<Vec<_>>(),
    })))
}

pub async fn read(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let project = state.project(&project).await?;
    let n = mark_read(&state, &project, &user, id).await?;
    Ok(AuditNote::notification(id).attach(Json(view(&n, &project.name))))
}

/// Marks one of the user's notifications read: 404 when it is not theirs.
pub(crate) async fn mark_read(
    state: &AppState,
    project: &Project,
    user: &CurrentUser,
    id: i64,
) -> Result<Notification, ApiError> {
    state
        .store
        .mark_notification_read(project.id, user.name(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("notification {id} not found")))
}

/// Marks all the user's notifications in the project read, with the note its audit event takes.
pub(crate) async fn mark_all_read(
    state: &AppState,
    project: &Project,
    user: &CurrentUser,
) -> Result<(u64, AuditNote), ApiError> {
    let marked = state
        .store
        .mark_all_notifications_read(project.id, user.name())
        .await?;
    let note = AuditNote::on(format!("notifications of {}", user.name()))
        .detail(format!("{marked} marked read"));
    Ok((marked, note))
}

pub async fn read_all(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let project = state.project(&project).await?;
    let (marked, note) = mark_all_read(&state, &project, &user).await?;
    Ok(note.attach(Json(json!({"marked": marked}))))
}
