//! Task routes: create, list with filters, show, cancel, retry, events, generated change.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use nightshift_core::{
    GeneratedChange, Project, RepoUrl, Run, RunEvent, Task, TaskFilter, parse_timestamp,
};
use nightshift_engine::TaskRequest;
use nightshift_store::CancelOutcome as StoreCancel;

use crate::AppState;
use crate::auth::{AuditNote, ProjectAccess};
use crate::contract::{
    AddressReview, CancelOutcome, Cancelled, CreateTask, ErrorCode, EventsPage, EventsQuery,
    RunView, TaskList, TaskListEntry, TaskListQuery, TaskView,
};
use crate::error::ApiError;

/// Turns axum's body rejections into our error shape, naming what was wrong.
pub(crate) fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v).map_err(|rejection| {
        let status = rejection.status();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::TooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => ErrorCode::InvalidField,
            _ if status.is_server_error() => {
                return ApiError::internal(
                    "the server could not read the request body",
                    rejection.body_text(),
                );
            }
            _ => ErrorCode::InvalidJson,
        };
        ApiError::new(status, code, rejection.body_text())
    })
}

pub async fn create(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    request: Result<Json<CreateTask>, JsonRejection>,
) -> Result<Response, ApiError> {
    let project = access.project.clone();
    let request = body(request)?;
    let (task, run) = state
        .intake
        .create(&project, &access.user.creator(), request.into())
        .await?;
    created(&task, &project, run)
}

/// A task the intake created, as the API answers it: the intake recorded its audit event.
pub(crate) fn created(task: &Task, project: &Project, run: Run) -> Result<Response, ApiError> {
    let view = TaskView::new(task, &project.name, &[run])
        .ok_or_else(|| ApiError::not_found("task has no run"))?;
    Ok(AuditNote::written_with_change().attach((StatusCode::CREATED, Json(view))))
}

impl From<CreateTask> for TaskRequest {
    fn from(r: CreateTask) -> Self {
        TaskRequest {
            repo: r.repo,
            base: r.base,
            instructions: r.instructions,
            title: r.title,
            agent: r.agent,
            timeout: r.timeout,
            budget: r.budget,
            allow_test_changes: r.allow_test_changes,
        }
    }
}

pub async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
    query: Result<Query<TaskListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<TaskList>, ApiError> {
    let project = state.project(&project).await?;
    let Query(q) = query.map_err(|e| ApiError::invalid(ErrorCode::InvalidQuery, e.body_text()))?;
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
    let tasks = tasks
        .iter()
        .map(|t| TaskListEntry::new(&t.task, &project.name, &t.latest))
        .collect();
    Ok(Json(TaskList {
        tasks,
        next_before: next,
    }))
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
    let prs = state.store.task_pull_requests(project.id, id).await?;
    Ok(TaskView::new(&task, &project.name, &runs)
        .ok_or_else(|| ApiError::not_found(format!("task {id} has no runs")))?
        .with_pull_request(prs.first(), &runs))
}

pub async fn cancel(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    let project = state.project(&project).await?;
    let (status, outcome, run) = match state.store.cancel_task(project.id, id).await? {
        StoreCancel::Cancelled(run) => (StatusCode::OK, CancelOutcome::Cancelled, run),
        // Accepted, not done: the run is marked cancelled once its processes are gone.
        StoreCancel::Requested(run) => (StatusCode::ACCEPTED, CancelOutcome::CancelRequested, run),
        StoreCancel::AlreadyEnded(run) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::AlreadyEnded,
                format!(
                    "run {} of task {id} already ended ({})",
                    run.number, run.status
                ),
            ));
        }
    };
    Ok(AuditNote::task(id, run.number).attach((
        status,
        Json(Cancelled {
            outcome,
            run: RunView::new(&run),
        }),
    )))
}

/// A follow-up run on the task's pull request whose CI fails: the agent gets the failing jobs'
/// output and pushes on top of the same branch.
pub async fn fix_ci(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    Path((_, id)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    let project = &access.project;
    let run = state
        .store
        .start_fix_ci(project.id, id, access.user.name())
        .await?;
    follow_up_queued(&state, project, id, &run).await
}

/// A follow-up run that replays the task's open pull request onto its base branch as it is
/// now; where that conflicts, the agent resolves it. Pushed with a lease.
pub async fn rebase(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    Path((_, id)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    let project = &access.project;
    let run = state
        .store
        .start_rebase(project.id, id, access.user.name())
        .await?;
    follow_up_queued(&state, project, id, &run).await
}

/// What starting a follow-up run answers: the task with its new run, audited as that run.
async fn follow_up_queued(
    state: &AppState,
    project: &Project,
    id: i64,
    run: &Run,
) -> Result<Response, ApiError> {
    state.engine.wake();
    Ok(AuditNote::task(id, run.number).attach((
        StatusCode::CREATED,
        Json(task_view(state, project, id).await?),
    )))
}

/// A follow-up run on the task's open pull request that addresses its review comments and
/// the caller's extra instructions, pushing on top of the same branch. The body may be empty.
pub async fn address_review(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    Path((_, id)): Path<(String, i64)>,
    headers: HeaderMap,
    request: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let request = if request.iter().all(u8::is_ascii_whitespace) {
        AddressReview::default()
    } else if !headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "send the body as application/json, or leave it out",
        ));
    } else {
        body(Json::<AddressReview>::from_bytes(&request))?
    };
    let project = &access.project;
    let run = state
        .engine
        .address_review(
            project.id,
            id,
            access.user.name(),
            request.instructions.as_deref(),
        )
        .await?;
    follow_up_queued(&state, project, id, &run).await
}

pub async fn retry(
    State(state): State<AppState>,
    Path((project, id)): Path<(String, i64)>,
) -> Result<Response, ApiError> {
    let project = state.project(&project).await?;
    let run = state.store.retry_task(project.id, id).await?;
    state.engine.wake();
    Ok(AuditNote::task(id, run.number).attach((
        StatusCode::CREATED,
        Json(task_view(&state, &project, id).await?),
    )))
}

pub async fn events(
    State(state): State<AppState>,
    Path((project, id, number)): Path<(String, i64, i64)>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<EventsPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid(ErrorCode::InvalidQuery, e.body_text()))?;
    let run_id = state.run_id(&project, id, number).await?;
    let limit = q.limit.unwrap_or(500).clamp(1, 5000);
    let events: Vec<RunEvent> = state.store.events(run_id, q.after, limit).await?;
    let next = (events.len() == limit as usize)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(Json(EventsPage {
        events,
        next_after: next,
    }))
}

pub async fn change(
    State(state): State<AppState>,
    Path((project, id, number)): Path<(String, i64, i64)>,
) -> Result<Json<GeneratedChange>, ApiError> {
    let run_id = state.run_id(&project, id, number).await?;
    let change = state
        .store
        .change(run_id)
        .await?
        .ok_or_else(|| ApiError::not_found("this run has no generated change yet"))?;
    Ok(Json(change))
}
