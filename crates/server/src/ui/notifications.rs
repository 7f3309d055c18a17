//! The notification list; opening an entry (a form: reading changes state) marks it read and
//! goes to its task.

use axum::extract::{Path, State};
use axum::response::Response;
use maud::{Markup, html};

use super::layout::{Chrome, Nav, PageError, age, page, project_base, see_other};
use crate::AppState;
use crate::api::notifications::{mark_all_read, mark_read};
use crate::auth::{AuditNote, CurrentUser};

pub async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
) -> Result<Markup, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let base = chrome.base();
    let list = state
        .store
        .notifications(project.id, user.name(), false, 100)
        .await?;
    let body = html! {
        form method="post" action={ (base) "/notifications/read-all" } {
            button type="submit" { "Mark all read" }
        }
        ul class="notifications" id="notifications" {
            @for n in &list {
                li class={ (if n.read_at.is_some() { "read" } else { "unread" }) " n-" (n.kind) } {
                    form method="post" action={ (base) "/notifications/" (n.id) } class="inline" {
                        button type="submit" class="as-link" { (n.message) }
                    }
                    " "
                    small {
                        (n.kind) ", " (age(n.created_at))
                        @if n.read_at.is_none() { ", unread" }
                    }
                }
            }
            @if list.is_empty() {
                li {
                    "Nothing yet. You are told here when a run of yours succeeds, fails or opens \
                     a pull request."
                }
            }
        }
    };
    Ok(page(&chrome, Nav::Notifications, "Notifications", body))
}

/// Opening a notification (a posted form) marks it read, then shows its task.
pub async fn open(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
    user: CurrentUser,
) -> Result<Response, PageError> {
    let project = state.project(&project).await?;
    let n = mark_read(&state, &project, &user, id).await?;
    Ok(AuditNote::notification(id).attach(see_other(&format!(
        "{}/tasks/{}",
        project_base(&project.name),
        n.task_id
    ))))
}

/// A notification's address followed as a link (a bookmark, an old page): the list, with the
/// notification left as it was, since a GET must not change anything.
pub async fn show(Path((project, _)): Path<(String, i64)>) -> Response {
    see_other(&format!("{}/notifications", project_base(&project)))
}

pub async fn read_all(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
) -> Result<Response, PageError> {
    let project = state.project(&project).await?;
    let (_, note) = mark_all_read(&state, &project, &user).await?;
    Ok(note.attach(see_other(&format!(
        "{}/notifications",
        project_base(&project.name)
    ))))
}
