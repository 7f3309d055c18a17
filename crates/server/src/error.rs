//! The one place errors become HTTP answers: a status and a stable machine-readable `code`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nightshift_engine::EngineError;
use nightshift_store::StoreError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds until the caller may try again, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let mut response = (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::not_found(e.to_string()),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StoreError::DuplicateTask { .. } => {
                ApiError::new(StatusCode::CONFLICT, "duplicate_task", e.to_string())
            }
            other => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                other.to_string(),
            ),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(e) => e.into(),
            EngineError::RepoUnreachable(m) => ApiError::invalid("repo_unreachable", m),
            EngineError::RepoNotAllowed(m) => ApiError::invalid("repo_not_allowed", m),
            EngineError::BaseNotFound(m) => ApiError::invalid("base_not_found", m),
            EngineError::Git(m) => ApiError::new(StatusCode::BAD_GATEWAY, "git_failed", m),
            EngineError::Invalid(m) => ApiError::invalid("invalid_request", m),
            EngineError::Core(e) => e.into(),
            e @ EngineError::TimeoutTooLong { .. } => {
                ApiError::invalid("timeout_too_long", e.to_string())
            }
            e @ EngineError::AgentCommandRequired => {
                ApiError::invalid("agent_command_required", e.to_string())
            }
            EngineError::DuplicateTask { task, ref project } => ApiError::new(
                StatusCode::CONFLICT,
                "duplicate_task",
                format!(
                    "{e}: follow it at /api/v1/projects/{project}/tasks/{task}, or cancel it first"
                ),
            ),
            e @ EngineError::TooManyTasks { retry_after, .. } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_tasks",
                e.to_string(),
            )
            .retry_after(retry_after),
            // The causes of a run's failure: they end runs, they do not answer requests.
            other => {
                tracing::error!(error = %other, "engine error in a request");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

impl From<nightshift_core::CoreError> for ApiError {
    fn from(e: nightshift_core::CoreError) -> Self {
        use nightshift_core::CoreError as C;
        let code = match &e {
            // Never a request's fault: the server could not build its own secret filter.
            C::SecretFilter { .. } => {
                return ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                );
            }
            C::InvalidRepoUrl { .. } => "invalid_repo",
            C::InvalidBranch { .. } => "invalid_branch",
            C::EmptyInstructions => "empty_instructions",
            C::InstructionsTooLong { .. } => "instructions_too_long",
            C::InvalidDuration { .. } => "invalid_duration",
            C::InvalidTimestamp { .. } => "invalid_timestamp",
            C::InvalidEnum { .. } => "invalid_value",
            C::InvalidTransition { .. } => "invalid_transition",
            C::InvalidTemplate { .. } => "invalid_template",
            C::InvalidParameter { .. } => "invalid_parameter",
            C::ControlCharacter { .. } => "control_character",
            C::InvalidText { .. } => "invalid_text",
            C::InvalidBudget { .. } => "invalid_budget",
        };
        ApiError::invalid(code, e.to_string())
    }
}
