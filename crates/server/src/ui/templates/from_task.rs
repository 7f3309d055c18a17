//! "Save as template": a succeeded task's instructions with the parts that change from use to
//! use marked as parameters; its agent, budget and timeout become the template's defaults.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use maud::{Markup, html};
use nightshift_core::{ParamFromText, ParamType, Task};
use serde::Deserialize;

use super::type_options;
use crate::AppState;
use crate::api::templates::template_from_task;
use crate::auth::CurrentUser;
use crate::contract::{ErrorCode, FromTask};
use crate::error::ApiError;
use crate::ui::layout::{
    Chrome, Nav, PageError, field, filled, form_error, page, refused, see_other, url_component,
};

#[derive(Debug, Deserialize)]
pub struct FromTaskParams {
    task: i64,
}

/// Rows offered for marking parts of the instructions as parameters.
const MARK_ROWS: usize = 3;

fn from_task_page(
    chrome: &Chrome,
    task: &Task,
    form: &[(String, String)],
    error: Option<&str>,
) -> Markup {
    let base = chrome.base();
    let value = |name: String| field(form, &name).unwrap_or_default().to_string();
    let body = html! {
        (form_error(error))
        p {
            "From task " a href={ (base) "/tasks/" (task.id) } { "#" (task.id) " " (task.title) }
            ": its agent, budget and timeout become the template's defaults. Mark the parts of \
             its instructions that change from use to use: each occurrence becomes a parameter, \
             with the text as its default."
        }
        h2 { "Instructions" }
        pre class="instructions" id="task-instructions" { (task.instructions) }
        form method="post" action={ (base) "/templates/from-task" } class="stack"
            id="from-task-form" {
            input type="hidden" name="task" value=(task.id);
            label for="name" { "Template name" }
            input id="name" name="name" required value=(value("name".into()));
            label for="description" { "Description" }
            input id="description" name="description" value=(value("description".into()));
            @for i in 0..MARK_ROWS {
                @let id = |f: &str| format!("m{i}_{f}");
                @let kind = field(form, &id("type"))
                    .and_then(|k| k.parse().ok())
                    .unwrap_or(ParamType::String);
                fieldset class="param" {
                    legend { "Parameter " (i + 1) }
                    label for=(id("text")) { "Text in the instructions" }
                    input id=(id("text")) name=(id("text")) value=(value(id("text")));
                    label for=(id("name")) { "Parameter name" }
                    input id=(id("name")) name=(id("name")) value=(value(id("name")))
                        pattern="[a-z_][a-z0-9_]*";
                    label for=(id("type")) { "Type" }
                    select id=(id("type")) name=(id("type")) { (type_options(kind)) }
                    label for=(id("pattern")) { "Pattern " small { "(optional, strings)" } }
                    input id=(id("pattern")) name=(id("pattern")) value=(value(id("pattern")));
                }
            }
            button type="submit" { "Save as template" }
        }
    };
    page(chrome, Nav::Templates, "Save task as template", body)
}

pub async fn from_task_form(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    Query(params): Query<FromTaskParams>,
) -> Result<Markup, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let task = state
        .store
        .task(project.id, params.task)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task {} not found", params.task)))?;
    Ok(from_task_page(&chrome, &task, &[], None))
}

pub async fn from_task(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let (chrome, project) = Chrome::load(&state, &project, &user).await?;
    let task_id: i64 = filled(&form, "task")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            ApiError::invalid(
                ErrorCode::InvalidTask,
                "which task? the form lost its task id",
            )
        })?;
    let task = state
        .store
        .task(project.id, task_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task {task_id} not found")))?;
    let parameters = (0..MARK_ROWS)
        .filter_map(|i| {
            let text = field(&form, &format!("m{i}_text")).filter(|t| !t.is_empty())?;
            Some(ParamFromText {
                text: text.to_string(),
                name: filled(&form, &format!("m{i}_name"))
                    .unwrap_or_default()
                    .to_string(),
                kind: filled(&form, &format!("m{i}_type"))
                    .and_then(|k| k.parse().ok())
                    .unwrap_or(ParamType::String),
                pattern: filled(&form, &format!("m{i}_pattern")).map(str::to_string),
            })
        })
        .collect();
    let request = FromTask {
        task_id,
        name: field(&form, "name").unwrap_or_default().trim().to_string(),
        description: field(&form, "description")
            .unwrap_or_default()
            .trim()
            .to_string(),
        parameters,
    };
    match template_from_task(&state, &project, &user, &request).await {
        Ok((t, note)) => Ok(note.attach(see_other(&format!(
            "{}/templates/{}",
            chrome.base(),
            url_component(&t.spec.name)
        )))),
        Err(e) if e.status.is_client_error() => Ok(refused(from_task_page(
            &chrome,
            &task,
            &form,
            Some(&e.message),
        ))),
        Err(e) => Err(e.into()),
    }
}
