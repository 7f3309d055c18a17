//! The requesting user's in-app notifications: list with unread count, mark read.

use axum::Json;
use axum::extract::{Path, Query, State};
use nightshift_store::Notification;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::CurrentUser;
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
) -> Result<Json<Value>, ApiError> {
    let project = state.project(&project).await?;
    let n = state
        .store
        .mark_notification_read(project.id, user.name(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("notification {id} not found")))?;
    Ok(Json(view(&n, &project.name)))
}

pub async fn read_all(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
) -> Result<Json<Value>, ApiError> {
    let project = state.project(&project).await?;
    let marked = state
        .store
        .mark_all_notifications_read(project.id, user.name())
        .await?;
    Ok(Json(json!({"marked": marked})))
}
