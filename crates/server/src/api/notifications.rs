//! The requesting user's in-app notifications: list with unread count, mark read.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use nightshift_core::Project;
use nightshift_store::Notification;

use crate::AppState;
use crate::auth::{AuditNote, CurrentUser};
use crate::contract::{MarkedRead, NotificationList, NotificationQuery, NotificationView};
use crate::error::ApiError;

pub async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    Query(query): Query<NotificationQuery>,
) -> Result<Json<NotificationList>, ApiError> {
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
    Ok(Json(NotificationList {
        unread,
        notifications: list
            .iter()
            .map(|n| NotificationView::new(n, &project.name))
            .collect(),
    }))
}

pub async fn read(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
    user: CurrentUser,
) -> Result<Response, ApiError> {
    let project = state.project(&project).await?;
    let n = mark_read(&state, &project, &user, id).await?;
    Ok(AuditNote::notification(id).attach(Json(NotificationView::new(&n, &project.name))))
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
    Ok(note.attach(Json(MarkedRead { marked })))
}
