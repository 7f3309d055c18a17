//! What a refused or failed request answers: `{"error": {"code", "message"}}`, with the code
//! one of a fixed list that clients may match on.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

nightshift_core::string_enum!(
    /// Why a request was refused or failed: stable and machine-readable. The message says the
    /// same for people.
    ErrorCode, "error code" {
        /// No such object, or one the caller may not see (the same answer).
        NotFound => "not_found",
        /// The change conflicts with what is stored (a name that is taken).
        Conflict => "conflict",
        /// Not signed in, or the token or session is no longer valid.
        Unauthenticated => "unauthenticated",
        /// Signed in, but the role is too weak.
        Forbidden => "forbidden",
        /// The request named a host this server does not answer to.
        HostNotAllowed => "host_not_allowed",
        /// The body is larger than the server accepts.
        TooLarge => "too_large",
        /// The body is not `application/json`.
        UnsupportedMediaType => "unsupported_media_type",
        /// The body is not JSON.
        InvalidJson => "invalid_json",
        /// A field of the body is missing, unknown or of the wrong type.
        InvalidField => "invalid_field",
        /// A query parameter is unknown or of the wrong type.
        InvalidQuery => "invalid_query",
        /// The request cannot be carried out as asked.
        InvalidRequest => "invalid_request",
        InvalidRepo => "invalid_repo",
        InvalidBranch => "invalid_branch",
        EmptyInstructions => "empty_instructions",
        InstructionsTooLong => "instructions_too_long",
        InvalidDuration => "invalid_duration",
        InvalidTimestamp => "invalid_timestamp",
        InvalidValue => "invalid_value",
        InvalidTransition => "invalid_transition",
        InvalidTemplate => "invalid_template",
        InvalidParameter => "invalid_parameter",
        /// Text that must be one line holds a control character.
        ControlCharacter => "control_character",
        InvalidText => "invalid_text",
        InvalidBudget => "invalid_budget",
        InvalidName => "invalid_name",
        InvalidHost => "invalid_host",
        InvalidCredential => "invalid_credential",
        InvalidMonth => "invalid_month",
        InvalidTask => "invalid_task",
        /// The timeout asked for is over the project's or the server's limit.
        TimeoutTooLong => "timeout_too_long",
        AgentCommandRequired => "agent_command_required",
        /// The repository did not answer, or refused to be read.
        RepoUnreachable => "repo_unreachable",
        /// The server's rules do not let tasks use this repository.
        RepoNotAllowed => "repo_not_allowed",
        BaseNotFound => "base_not_found",
        /// A task with the same instructions on the same repository is still active.
        DuplicateTask => "duplicate_task",
        /// The run had already ended.
        AlreadyEnded => "already_ended",
        /// The project's last admin cannot leave or be demoted.
        LastAdmin => "last_admin",
        /// A follow-up run needs the task's pull request open (and, to fix CI, its CI
        /// failing); the message says which it is not.
        NothingToFix => "nothing_to_fix",
        /// An address-review run needs a review comment on the pull request or instructions.
        NothingToAddress => "nothing_to_address",
        /// Only a task that succeeded can become a template.
        TaskNotSucceeded => "task_not_succeeded",
        /// Too many tasks created too fast; `Retry-After` says when to go on.
        TooManyTasks => "too_many_tasks",
        /// Webhook deliveries from that forge are not taken: the server has no secret for it.
        WebhooksOff => "webhooks_off",
        /// A webhook delivery whose signature or token does not match the server's secret.
        WebhookRefused => "webhook_refused",
        /// A genuine webhook delivery that cannot be read (not JSON, no event header).
        WebhookUnreadable => "webhook_unreadable",
        /// The server could not run git for the request (its log says why).
        GitFailed => "git_failed",
        /// The repository's forge did not answer what the request needed from it.
        ForgeFailed => "forge_failed",
        /// The server failed (its log says why, under the id the message gives).
        Internal => "internal",
    }
);

/// The body of every answer that is not a success.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// What was wrong and what to do, for people.
    pub message: String,
}
