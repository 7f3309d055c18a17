//! The one place errors become HTTP answers: a status and a stable machine-readable `code`.
//! A failure of the server itself says what failed in general terms; what went wrong inside
//! (database errors, paths) goes to the log under a correlation id the answer names.

use std::fmt::Display;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nightshift_engine::EngineError;
use nightshift_store::StoreError;

use crate::contract::{ErrorBody, ErrorCode, ErrorDetail};

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    /// For the caller. For a server failure: what failed, in general terms.
    pub message: String,
    /// What went wrong inside the server: written to the log, never sent.
    cause: Option<String>,
    /// Seconds until the caller may try again, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            cause: None,
            retry_after: None,
        }
    }

    /// A failure of the server itself (5xx): `what` tells the caller what failed in general
    /// terms; `cause` goes to the log only.
    pub fn failed(status: StatusCode, code: ErrorCode, what: &str, cause: impl Display) -> Self {
        ApiError {
            cause: Some(cause.to_string()),
            ..ApiError::new(status, code, what)
        }
    }

    /// An internal failure (500).
    pub fn internal(what: &str, cause: impl Display) -> Self {
        ApiError::failed(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Internal,
            what,
            cause,
        )
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    pub fn invalid(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }

    /// What the caller is told. A server failure is logged first, with its cause, under a
    /// fresh id that the message names so an operator can find it.
    pub(crate) fn reported(self) -> ErrorDetail {
        let message = if self.status.is_server_error() {
            let id = format!("{:08x}", rand::random::<u32>());
            tracing::error!(
                id,
                code = %self.code,
                what = %self.message,
                cause = self.cause.as_deref().unwrap_or("-"),
                "request failed"
            );
            format!("{}; see the server log (id {id})", self.message)
        } else {
            self.message
        };
        ErrorDetail {
            code: self.code,
            message,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, retry_after) = (self.status, self.retry_after);
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.reported(),
            }),
        )
            .into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let what = match &e {
            StoreError::NotFound { .. } => return ApiError::not_found(e.to_string()),
            StoreError::Conflict(m) => {
                return ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, m.clone());
            }
            StoreError::NothingToFix(m) => {
                return ApiError::new(StatusCode::CONFLICT, ErrorCode::NothingToFix, m.clone());
            }
            StoreError::DuplicateTask { .. } => {
                return ApiError::new(
                    StatusCode::CONFLICT,
                    ErrorCode::DuplicateTask,
                    e.to_string(),
                );
            }
            StoreError::Corrupt(_) => "the server found stored data it cannot read",
            StoreError::Key(_) => "the server could not use its secret key",
            StoreError::LeaseLost { .. } => "the server lost its hold on the run",
            StoreError::FollowLeaseLost { .. } => "the server lost its hold on a pull request",
            StoreError::Database(_) | StoreError::Migrate(_) | StoreError::UnsupportedUrl(_) => {
                "the server could not read or write its database"
            }
        };
        ApiError::internal(what, e)
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Store(e) => e.into(),
            EngineError::RepoUnreachable(m) => ApiError::invalid(ErrorCode::RepoUnreachable, m),
            EngineError::RepoNotAllowed(m) => ApiError::invalid(ErrorCode::RepoNotAllowed, m),
            EngineError::BaseNotFound(m) => ApiError::invalid(ErrorCode::BaseNotFound, m),
            EngineError::Git(m) => ApiError::failed(
                StatusCode::BAD_GATEWAY,
                ErrorCode::GitFailed,
                "the server could not read the repository with git",
                m,
            ),
            EngineError::Invalid(m) => ApiError::invalid(ErrorCode::InvalidRequest, m),
            EngineError::Core(e) => e.into(),
            e @ EngineError::TimeoutTooLong { .. } => {
                ApiError::invalid(ErrorCode::TimeoutTooLong, e.to_string())
            }
            e @ EngineError::AgentCommandRequired => {
                ApiError::invalid(ErrorCode::AgentCommandRequired, e.to_string())
            }
            EngineError::DuplicateTask { task, ref project } => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::DuplicateTask,
                format!(
                    "{e}: follow it at /api/v1/projects/{project}/tasks/{task}, or cancel it first"
                ),
            ),
            e @ EngineError::TooManyTasks { retry_after, .. } => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyTasks,
                e.to_string(),
            )
            .retry_after(retry_after),
            EngineError::NothingToAddress(m) => ApiError::invalid(ErrorCode::NothingToAddress, m),
            EngineError::Forge(e) => ApiError::failed(
                StatusCode::BAD_GATEWAY,
                ErrorCode::ForgeFailed,
                "the repository's forge did not answer",
                e,
            ),
            EngineError::WebhooksOff(m) => {
                ApiError::new(StatusCode::NOT_FOUND, ErrorCode::WebhooksOff, m)
            }
            EngineError::WebhookRefused(m) => {
                ApiError::new(StatusCode::UNAUTHORIZED, ErrorCode::WebhookRefused, m)
            }
            EngineError::WebhookUnreadable(m) => {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::WebhookUnreadable, m)
            }
            EngineError::Credential { .. } => {
                ApiError::internal("the server could not open the project's credential", e)
            }
            // The causes of a run's failure: they end runs, they do not answer requests.
            other => ApiError::internal("the server could not carry out the request", other),
        }
    }
}

impl From<nightshift_core::CoreError> for ApiError {
    fn from(e: nightshift_core::CoreError) -> Self {
        use nightshift_core::CoreError as C;
        let code = match &e {
            // Never a request's fault: the server could not build its own secret filter.
            C::SecretFilter { .. } => {
                return ApiError::internal("the server could not build its secret filter", e);
            }
            C::InvalidRepoUrl { .. } => ErrorCode::InvalidRepo,
            C::InvalidBranch { .. } => ErrorCode::InvalidBranch,
            C::EmptyInstructions => ErrorCode::EmptyInstructions,
            C::InstructionsTooLong { .. } => ErrorCode::InstructionsTooLong,
            C::InvalidDuration { .. } => ErrorCode::InvalidDuration,
            C::InvalidTimestamp { .. } => ErrorCode::InvalidTimestamp,
            C::InvalidEnum { .. } => ErrorCode::InvalidValue,
            C::InvalidTransition { .. } => ErrorCode::InvalidTransition,
            C::InvalidTemplate { .. } => ErrorCode::InvalidTemplate,
            C::InvalidParameter { .. } => ErrorCode::InvalidParameter,
            C::ControlCharacter { .. } => ErrorCode::ControlCharacter,
            C::InvalidText { .. } => ErrorCode::InvalidText,
            C::InvalidBudget { .. } => ErrorCode::InvalidBudget,
        };
        ApiError::invalid(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log that tests can read back.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_server_failure_is_told_in_general_terms_and_logged_with_its_cause() {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let cause = "row 7 of /var/lib/nightshift/nightshift.db: invalid JSON";
        let told = tracing::subscriber::with_default(subscriber, || {
            ApiError::from(StoreError::Corrupt(cause.into())).reported()
        });
        assert_eq!(told.code, ErrorCode::Internal);
        let id = told
            .message
            .strip_prefix("the server found stored data it cannot read; see the server log (id ")
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{}", told.message));
        assert!(!told.message.contains("/var/lib"), "{}", told.message);
        let log = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
        let entry = log
            .lines()
            .find(|line| line.contains(id))
            .unwrap_or_else(|| panic!("no log entry with id {id}: {log}"));
        assert!(entry.contains(cause), "{entry}");
    }

    #[test]
    fn a_refusal_is_told_as_it_is() {
        let told = ApiError::invalid(ErrorCode::InvalidRepo, "repo: use https://").reported();
        assert_eq!(told.message, "repo: use https://");
        assert_eq!(told.code, ErrorCode::InvalidRepo);
    }
}
