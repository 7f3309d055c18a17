//! The requesting user's in-app notifications: list with unread count, mark read.

use axum::Json;
use axum::extract::{Path, Query, State};

use crate::AppState;
use crate::auth::CurrentUser;
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
) -> Result<Json<NotificationView>, ApiError> {
    let project = state.project(&project).await?;
    let n = state
        .store
        .mark_notification_read(project.id, user.name(), id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("notification {id} not found")))?;
    Ok(Json(NotificationView::new(&n, &project.name)))
}

pub async fn read_all(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
) -> Result<Json<MarkedRead>, ApiError> {
    let project = state.project(&project).await?;
    let marked = state
        .store
        .mark_all_notifications_read(project.id, user.name())
        .await?;
    Ok(Json(MarkedRead { marked }))
}
