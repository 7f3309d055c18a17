//! Task pages: the filtered list (rows refresh live), the new-task form (free text or from a
//! template), the task detail with live status, log stream, checks, review and diff, and the cancel and
//! retry forms. What several of them show of a run lives here.

mod change;
mod detail;
mod list;
mod new;
mod review;

pub use detail::{detail, live};
pub use list::{list, rows};
pub use new::{create, new_form};

use axum::extract::{Form, Path, State};
use axum::response::Response;
use maud::{Markup, html};
use nightshift_core::{Project, Run, RunStatus};
use nightshift_store::CancelOutcome;

use super::layout::{PageError, project_base, see_other};
use crate::AppState;
use crate::auth::{AuditNote, CurrentUser};

fn status_badge(status: RunStatus) -> Markup {
    html! { span class={ "badge s-" (status) } { (status) } }
}

fn progress_bar(run: &Run) -> Markup {
    let label = match run.phase {
        Some(phase) if run.status == RunStatus::Running => format!("{phase}, {}%", run.progress),
        _ => format!("{}%", run.progress),
    };
    html! {
        progress max="100" value=(run.progress) aria-label={ "Progress " (label) } {
            (run.progress) "%"
        }
        " "
        span class="pct" { (run.progress) "%" }
    }
}

/// The run's pull request: a link when its address is one, else the address as text.
fn pr_link(run: &Run) -> Markup {
    html! {
        @match &run.checkpoint.pr_url {
            Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                a href=(url) rel="noopener noreferrer" {
                    "PR"
                    @if let Some(n) = run.checkpoint.pr_number { " #" (n) }
                }
            }
            Some(url) => (url),
            None => {}
        }
    }
}

/// The end reason, when it says more than the status (`checks_failed` of `failed`).
fn reason(run: &Run) -> Option<&'static str> {
    run.end_reason
        .filter(|r| r.as_str() != run.status.as_str())
        .map(|r| r.as_str())
}

pub async fn cancel(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    let project = state.project(&project).await?;
    let back = see_other(&format!("{}/tasks/{id}", project_base(&project.name)));
    // Already ended is fine here: the page shows what happened, and nothing changed.
    Ok(match state.store.cancel_task(project.id, id).await? {
        CancelOutcome::Cancelled(run) | CancelOutcome::Requested(run) => {
            AuditNote::task(id, run.number).attach(back)
        }
        CancelOutcome::AlreadyEnded(_) => AuditNote::nothing_changed().attach(back),
    })
}

pub async fn fix_ci(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
    user: CurrentUser,
) -> Result<Response, PageError> {
    let project = state.project(&project).await?;
    let run = state
        .store
        .start_fix_ci(project.id, id, user.name())
        .await?;
    Ok(run_started(&state, &project, id, &run))
}

pub async fn rebase(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
    user: CurrentUser,
) -> Result<Response, PageError> {
    let project = state.project(&project).await?;
    let run = state
        .store
        .start_rebase(project.id, id, user.name())
        .await?;
    Ok(run_started(&state, &project, id, &run))
}

/// The task page's address-review form: its optional instructions go to the agent with the
/// pull request's review comments.
pub async fn address_review(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
    user: CurrentUser,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let project = state.project(&project).await?;
    let instructions = form
        .iter()
        .find(|(k, _)| k == "instructions")
        .map(|(_, v)| v.as_str());
    let run = state
        .engine
        .address_review(project.id, id, user.name(), instructions)
        .await
        .map_err(crate::error::ApiError::from)?;
    Ok(run_started(&state, &project, id, &run))
}

pub async fn retry(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    let project = state.project(&project).await?;
    let run = state.store.retry_task(project.id, id).await?;
    Ok(run_started(&state, &project, id, &run))
}

/// Back to the task page once a form started its next run, audited as that run.
fn run_started(state: &AppState, project: &Project, id: i64, run: &Run) -> Response {
    state.engine.wake();
    let back = see_other(&format!("{}/tasks/{id}", project_base(&project.name)));
    AuditNote::task(id, run.number).attach(back)
}
