//! Template routes: list, show with usage history, create, edit (a new version), save a
//! succeeded task as a template, and create a task from one.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use nightshift_core::{AgentSpec, Project, Template, TemplateSpec, format_timestamp, parameterise};
use nightshift_engine::TaskRequest;
use nightshift_store::TemplateSummary;
use serde_json::Value;

use crate::AppState;
use crate::api::tasks::{body, created};
use crate::auth::{AuditNote, CurrentUser};
use crate::contract::{
    ErrorCode, FromTask, Instantiate, TemplateDetail, TemplateList, TemplateListEntry,
    TemplateQuery, TemplateUseView, TemplateVersionView, TemplateView,
};
use crate::error::ApiError;

pub(crate) async fn template_or_404(
    state: &AppState,
    project: &Project,
    name: &str,
    version: Option<i64>,
) -> Result<Template, ApiError> {
    state
        .store
        .template(project.id, name, version)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("template {name:?} not found")))
}

pub async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
) -> Result<Json<TemplateList>, ApiError> {
    let project = state.project(&project).await?;
    let list = state.store.list_templates(project.id).await?;
    Ok(Json(TemplateList {
        templates: list.iter().map(TemplateListEntry::new).collect(),
    }))
}

pub async fn show(
    State(state): State<AppState>,
    Path((project, name)): Path<(String, String)>,
    Query(query): Query<TemplateQuery>,
) -> Result<Json<TemplateDetail>, ApiError> {
    let project = state.project(&project).await?;
    let template = template_or_404(&state, &project, &name, query.version).await?;
    let versions = state.store.template_versions(project.id, &name).await?;
    let usage = state
        .store
        .template_usage(project.id, template.id, 100)
        .await?;
    let summary = state
        .store
        .list_templates(project.id)
        .await?
        .into_iter()
        .find(|s| s.template.id == template.id);
    Ok(Json(TemplateDetail {
        template: TemplateView::new(&template),
        versions: versions
            .iter()
            .map(|v| TemplateVersionView {
                version: v.version,
                created_by: v.created_by.clone(),
                created_at: format_timestamp(v.created_at),
            })
            .collect(),
        usage: usage.iter().map(TemplateUseView::new).collect(),
        success_rate: summary.as_ref().and_then(TemplateSummary::success_rate),
        uses: summary.as_ref().map(|s| s.uses).unwrap_or(0),
    }))
}

/// Validates and stores a new template (version 1).
pub(crate) async fn create_template(
    state: &AppState,
    project: &Project,
    user: &CurrentUser,
    spec: &TemplateSpec,
) -> Result<Template, ApiError> {
    spec.validate()?;
    check_agent(spec.agent.as_ref())?;
    Ok(state
        .store
        .create_template(project.id, spec, user.name())
        .await?)
}

/// Validates and stores the next version of template `name`.
pub(crate) async fn update_template(
    state: &AppState,
    project: &Project,
    user: &CurrentUser,
    name: &str,
    spec: &TemplateSpec,
) -> Result<Template, ApiError> {
    spec.validate()?;
    check_agent(spec.agent.as_ref())?;
    Ok(state
        .store
        .update_template(project.id, name, spec, user.name())
        .await?)
}

fn check_agent(agent: Option<&AgentSpec>) -> Result<(), ApiError> {
    if let Some(agent) = agent
        && agent.kind == nightshift_core::AgentKind::Command
        && agent.command.as_deref().is_none_or(|c| c.trim().is_empty())
    {
        return Err(ApiError::invalid(
            ErrorCode::AgentCommandRequired,
            "the command agent needs a command",
        ));
    }
    Ok(())
}

pub async fn create(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    request: Result<Json<TemplateSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let project = state.project(&project).await?;
    let spec = body(request)?;
    let template = create_template(&state, &project, &user, &spec).await?;
    Ok(AuditNote::template(&template)
        .attach((StatusCode::CREATED, Json(TemplateView::new(&template)))))
}

pub async fn update(
    State(state): State<AppState>,
    Path((project, name)): Path<(String, String)>,
    user: CurrentUser,
    request: Result<Json<TemplateSpec>, JsonRejection>,
) -> Result<Response, ApiError> {
    let project = state.project(&project).await?;
    let spec = body(request)?;
    let template = update_template(&state, &project, &user, &name, &spec).await?;
    Ok(AuditNote::template(&template).attach(Json(TemplateView::new(&template))))
}

/// The spec a succeeded task would make: its instructions with the marked parts turned into
/// parameters, and its agent, budget and timeout.
pub(crate) async fn spec_from_task(
    state: &AppState,
    project: &Project,
    request: &FromTask,
) -> Result<TemplateSpec, ApiError> {
    let task = state
        .store
        .task(project.id, request.task_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task {} not found", request.task_id)))?;
    if !state.store.task_ever_succeeded(project.id, task.id).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::TaskNotSucceeded,
            format!(
                "task {} has no succeeded run: only a task that worked becomes a template",
                task.id
            ),
        ));
    }
    let (instructions, parameters) = parameterise(&task.instructions, &request.parameters)?;
    Ok(TemplateSpec {
        name: request.name.trim().to_string(),
        description: request.description.clone(),
        instructions,
        parameters,
        agent: Some(task.agent.clone()),
        checks: Vec::new(),
        budget: task.budget,
        timeout_secs: Some(task.timeout_secs),
        allow_test_changes: task.allow_test_changes,
        manual_effort_minutes: None,
    })
}

/// Saves the template a succeeded task makes; its audit note names the task too.
pub(crate) async fn template_from_task(
    state: &AppState,
    project: &Project,
    user: &CurrentUser,
    request: &FromTask,
) -> Result<(Template, AuditNote), ApiError> {
    let spec = spec_from_task(state, project, request).await?;
    let template = create_template(state, project, user, &spec).await?;
    let note = AuditNote::template(&template).detail(format!(
        "version {} from task {}",
        template.version, request.task_id
    ));
    Ok((template, note))
}

pub async fn from_task(
    State(state): State<AppState>,
    Path(project): Path<String>,
    user: CurrentUser,
    request: Result<Json<FromTask>, JsonRejection>,
) -> Result<Response, ApiError> {
    let project = state.project(&project).await?;
    let request = body(request)?;
    let (template, note) = template_from_task(&state, &project, &user, &request).await?;
    Ok(note.attach((StatusCode::CREATED, Json(TemplateView::new(&template)))))
}

/// JSON values become the text the form would have sent; objects and arrays are refused.
fn value_text(name: &str, value: &Value) -> Result<String, ApiError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Null => Ok(String::new()),
        _ => Err(ApiError::invalid(
            ErrorCode::InvalidParameter,
            format!("invalid value for parameter {name}: use a string, number or boolean"),
        )),
    }
}

pub async fn instantiate(
    State(state): State<AppState>,
    Path((project, name)): Path<(String, String)>,
    user: CurrentUser,
    request: Result<Json<Instantiate>, JsonRejection>,
) -> Result<Response, ApiError> {
    let project = state.project(&project).await?;
    let request = body(request)?;
    let template = template_or_404(&state, &project, &name, request.version).await?;
    let values = request
        .params
        .iter()
        .map(|(k, v)| Ok((k.clone(), value_text(k, v)?)))
        .collect::<Result<BTreeMap<_, _>, ApiError>>()?;
    let create = TaskRequest {
        repo: request.repo,
        base: request.base,
        instructions: String::new(),
        title: request.title,
        agent: request.agent,
        timeout: request.timeout,
        budget: request.budget,
        allow_test_changes: request.allow_test_changes,
    };
    let (task, run) = state
        .intake
        .create_from_template(&project, &user.creator(), &template, &values, create)
        .await?;
    created(&task, &project, run)
}
