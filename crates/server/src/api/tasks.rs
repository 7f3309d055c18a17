//! Task routes: create, list with filters, show, cancel, retry, events, generated change.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nightshift_core::{
    AgentKind, AgentSpec, BranchName, Budget, DEFAULT_TIMEOUT, Instructions, NewTask, Project,
    RepoUrl, RunEvent, TaskFilter, Template, TemplateParams, Title, parse_duration,
    parse_timestamp,
};
use nightshift_engine::Requester;
use nightshift_store::CancelOutcome;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::auth::{AuditNote, CurrentUser, ProjectAccess};
use crate::error::ApiError;
use crate::views::{RunView, TaskView};

/// Turns axum's body rejections into our error shape, naming what was wrong.
pub(crate) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|rejection| {
        let status = rejection.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_field",
            _ => "invalid_json",
        };
        ApiError::new(status, code, rejection.body_text())
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    pub repo: String,
    #[serde(default)]
    pub base: Option<String>,
    pub instructions: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub agent: Option<AgentSpec>,
    /// `90s`, `10m`, `1h`.
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub budget: Option<Budget>,
    /// Lets the agent delete or skip tests, silence linters and edit the checks' configuration;
    /// the guard's findings are listed in the pull request instead of sent back.
    #[serde(default)]
    pub allow_test_changes: Option<bool>,
}

pub async fn create(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    request: Result<Json<CreateTask>, JsonRejection>,
) -> Result<Response, ApiError> {
    let project = access.project.clone();
    let request = body(request)?;
    let view = create_task(&state, &project, &access.user, request, None).await?;
    let task_id = view.id;
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    response.extensions_mut().insert(AuditNote {
        object: Some(format!("task {task_id}")),
        ..Default::default()
    });
    Ok(response)
}

/// Validates a task request and stores the task with its first run. With a template, its
/// agent, budget and timeout apply where the request names none, and the task records which
/// version and values it came from (`request.instructions` is then the rendered text).
pub(crate) async fn create_task(
    state: &AppState,
    project: &Project,
    user: &CurrentUser,
    request: CreateTask,
    template: Option<(&Template, &TemplateParams)>,
) -> Result<TaskView, ApiError> {
    let spec = template.map(|(t, _)| &t.spec);
    // The project may lower the server's timeout cap (and with it the default).
    let settings = state.store.project_settings(project.id).await?;
    let max_timeout = settings
        .max_timeout_secs
        .map(std::time::Duration::from_secs)
        .map_or(state.config.max_timeout, |p| {
            p.min(state.config.max_timeout)
        });
    let instructions = Instructions::parse(&request.instructions)?;
    let repo = RepoUrl::parse(&request.repo)?;
    let title = Title::parse(request.title.as_deref().unwrap_or_default())?;
    let base = request
        .base
        .as_deref()
        .filter(|b| !b.trim().is_empty())
        .map(BranchName::parse)
        .transpose()?;
    let timeout = match (
        request.timeout.as_deref(),
        spec.and_then(|s| s.timeout_secs),
    ) {
        (Some(text), _) => parse_duration(text)?,
        (None, Some(secs)) => std::time::Duration::from_secs(secs),
        (None, None) => DEFAULT_TIMEOUT.min(max_timeout),
    };
    if timeout > max_timeout {
        return Err(ApiError::invalid(
            "timeout_too_long",
            format!(
                "timeout {} is over this project's limit of {}",
                nightshift_core::format_duration(timeout),
                nightshift_core::format_duration(max_timeout)
            ),
        ));
    }
    let agent = request
        .agent
        .or_else(|| spec.and_then(|s| s.agent.clone()))
        .unwrap_or_else(|| state.config.default_agent.clone());
    if agent.kind == AgentKind::Command
        && agent.command.as_deref().is_none_or(|c| c.trim().is_empty())
    {
        return Err(ApiError::invalid(
            "agent_command_required",
            "the command agent needs a command: set agent.command (CLI: --agent-command)",
        ));
    }
    let budget = request
        .budget
        .or(spec.map(|s| s.budget))
        .unwrap_or_default();
    budget.validate()?;
    let allow_test_changes = request
        .allow_test_changes
        .or(spec.map(|s| s.allow_test_changes))
        .unwrap_or(false);
    // Configured secrets are masked before anything is derived from the text: a title cut
    // from the instructions must not keep half a key the mask would no longer recognise.
    let redactor = state.engine.intake_redactor(project.id, &repo).await?;
    let instructions = Instructions::parse(&redactor.redact(instructions.as_str()))?;
    let title = match title {
        Some(title) => redactor.redact(&String::from(title)).into_owned(),
        None => instructions.summary(),
    };
    let masked_params;
    let template = match template {
        Some((template, params)) => {
            let values: BTreeMap<String, String> = params
                .as_map()
                .iter()
                .map(|(k, v)| (k.clone(), redactor.redact(v).into_owned()))
                .collect();
            if values == *params.as_map() {
                Some((template, params))
            } else {
                masked_params = template.spec.bind(&values)?;
                Some((template, &masked_params))
            }
        }
        None => None,
    };
    state.throttle.task_created(user.name())?;
    if let Some(existing) = state
        .store
        .active_duplicate(project.id, repo.as_str(), instructions.as_str())
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "duplicate_task",
            format!(
                "task {existing} has the same instructions on this repository and is still queued or running: \
                 follow it at /api/v1/projects/{}/tasks/{existing}, or cancel it first",
                project.name
            ),
        ));
    }
    let requester = if user.user.server_admin {
        Requester::ServerAdmin
    } else {
        Requester::Member
    };
    let base = state
        .engine
        .resolve_base(&repo, base.as_ref(), requester)
        .await?;
    let new = NewTask {
        project_id: project.id,
        title,
        instructions,
        repo,
        base_branch: base,
        agent,
        timeout_secs: timeout.as_secs(),
        budget,
        allow_test_changes,
        created_by: user.name().to_string(),
    };
    let (task, run) = match template {
        Some((template, params)) => {
            state
                .store
                .create_task_from_template(&new, template, params)
                .await?
        }
        None => state.store.create_task(&new).await?,
    };
    state.engine.wake();
    TaskView::detail(&task, &project.name, &[run])
        .ok_or_else(|| ApiError::not_found("task has no run"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub repo: Option<String>,
    pub status: Option<String>,
    pub end_reason: Option<String>,
    pub created_by: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub q: Option<String>,
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

pub async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let project = state.project(&project).await?;
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let filter = TaskFilter {
        repo: q
            .repo
            .as_deref()
            .map(|r| RepoUrl::parse(r).map(String::from))
            .transpose()?,
        status: q.status.as_deref().map(str::parse).transpose()?,
        end_reason: q.end_reason.as_deref().map(str::parse).transpose()?,
        created_by: q.created_by,
        since: q.since.as_deref().map(parse_timestamp).transpose()?,
        until: q.until.as_deref().map(parse_timestamp).transpose()?,
        text: q.q,
        before: q.before,
        limit: q.limit,
    };
    let tasks = state.store.list_tasks(project.id, &filter).await?;
    let limit = filter.limit.unwrap_or(50).clamp(1, 500) as usize;
    let next = (tasks.len() == limit)
        .then(|| tasks.last().map(|t| t.task.id))
        .flatten();
    let views: Vec<TaskView> = tasks
        .iter()
        .map(|t| TaskView::summary(&t.task, &project.name, &t.latest))
        .collect();
    Ok(Json(json!({"tasks": views, "next_before": next})))
}

pub async fn show(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
) -> Result<Json<TaskView>, ApiError> {
    let project = state.project(&project).await?;
    Ok(Json(task_view(&state, &project, id).await?))
}

pub(crate) async fn task_view(
    state: &AppState,
    project: &Project,
    id: i64,
) -> Result<TaskView, ApiError> {
    let task = state
        .store
        .task(project.id, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("task {id} not found")))?;
    let runs = state.store.task_runs(project.id, id).await?;
    TaskView::detail(&task, &project.name, &runs)
        .ok_or_else(|| ApiError::not_found(format!("task {id} has no runs")))
}

pub async fn cancel(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let project = state.project(&project).await?;
    let (status, outcome, run) = match state.store.cancel_task(project.id, id).await? {
        CancelOutcome::Cancelled(run) => (StatusCode::OK, "cancelled", run),
        // Accepted, not done: the run is marked cancelled once its processes are gone.
        CancelOutcome::Requested(run) => (StatusCode::ACCEPTED, "cancel_requested", run),
        CancelOutcome::AlreadyEnded(run) => (StatusCode::CONFLICT, "already_ended", run),
    };
    if status == StatusCode::CONFLICT {
        return Err(ApiError::new(
            status,
            "already_ended",
            format!(
                "run {} of task {id} already ended ({})",
                run.number, run.status
            ),
        ));
    }
    Ok((
        status,
        Json(json!({"outcome": outcome, "run": RunView::new(&run)})),
    ))
}

pub async fn retry(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
) -> Result<(StatusCode, Json<TaskView>), ApiError> {
    let project = state.project(&project).await?;
    state.store.retry_task(project.id, id).await?;
    state.engine.wake();
    Ok((
        StatusCode::CREATED,
        Json(task_view(&state, &project, id).await?),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(default)]
    pub after: i64,
    pub limit: Option<u32>,
}

pub async fn events(
    State(state): State<AppState>,
    Path((project, id, number)): Path<(String, i64, i64)>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid("invalid_query", e.body_text()))?;
    let run_id = state.run_id(&project, id, number).await?;
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let events: Vec<RunEvent> = state.store.events(run_id, q.after, limit).await?;
    let next = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(Json(json!({"events": events, "next_after": next})))
}

pub async fn change(
    State(state): State<AppState>,
    Path((project, id, number)): Path<(String, i64, i64)>,
) -> Result<Json<Value>, ApiError> {
    let run_id = state.run_id(&project, id, number).await?;
    let change = state
        .store
        .change(run_id)
        .await?
        .ok_or_else(|| ApiError::not_found("this run has no generated change yet"))?;
    Ok(Json(serde_json::to_value(change).unwrap_or_default()))
}
