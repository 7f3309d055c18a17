//! The notification list; opening an entry (a form: reading changes state) marks it read and
//! goes to its task.

use axum::extract::{Path, State};
use axum::response::{Html, Response};

use super::{Chrome, Nav, PageError, age, esc, see_other, url_component};
use crate::AppState;
use crate::api::notifications::{mark_all_read, mark_read};
use crate::auth::{AuditNote, CurrentUser};

pub async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
) -> Result<Html<String>, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let base = chrome.base();
    let list = state
        .store
        .notifications(project.id, user.name(), false, 100)
        .await?;
    let items: String = if list.is_empty() {
        "<li>Nothing yet. You are told here when a run of yours succeeds, fails or opens a pull request.</li>".into()
    } else {
        list.iter()
            .map(|n| {
                format!(
                    "<li class=\"{state} n-{kind}\"><form method=\"post\" action=\"{base}/notifications/{id}\" class=\"inline\">\
<button type=\"submit\" class=\"as-link\">{message}</button></form> \
<small>{kind}, {at}{unread}</small></li>",
                    state = if n.read_at.is_some() { "read" } else { "unread" },
                    kind = esc(&n.kind),
                    id = n.id,
                    message = esc(&n.message),
                    at = age(n.created_at),
                    unread = if n.read_at.is_none() { ", unread" } else { "" },
                )
            })
            .collect()
    };
    let body = format!(
        "<form method=\"post\" action=\"{base}/notifications/read-all\"><button type=\"submit\">Mark all read</button></form>\
<ul class=\"notifications\" id=\"notifications\">{items}</ul>"
    );
    Ok(page_with(&chrome, &body))
}

fn page_with(chrome: &Chrome, body: &str) -> Html<String> {
    super::page(chrome, Nav::Notifications, "Notifications", body)
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
        "/p/{}/tasks/{}",
        url_component(&project.name),
        n.task_id
    ))))
}

/// A notification's address followed as a link (a bookmark, an old page): the list, with the
/// notification left as it was, since a GET must not change anything.
pub async fn show(Path((project, _)): Path<(String, i64)>) -> Response {
    see_other(&format!("/p/{}/notifications", url_component(&project)))
}

pub async fn read_all(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
) -> Result<Response, PageError> {
    let project = state.project(&project).await?;
    let (_, note) = mark_all_read(&state, &project, &user).await?;
    Ok(note.attach(see_other(&format!(
        "/p/{}/notifications",
        url_component(&project.name)
    ))))
}
