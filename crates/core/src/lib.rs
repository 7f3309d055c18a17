//! The Nightshift domain: projects, tasks, runs and their events, the run state machine and the
//! validated values that cross the system's edges. Pure: no IO and no async runtime.

mod agent_event;
mod error;
mod insights;
mod model;
mod people;
mod pull_request;
mod redact;
mod review;
mod run;
mod template;
mod text;
mod values;

pub use agent_event::{AgentEvent, OutputStream, ToolKind, Usage};
pub use error::{CoreError, Result};
pub use insights::{Bucket, Insights, OutcomeCounts, TemplateOutcome, bucket_width, percentile};
pub use model::{
    AgentKind, AgentSpec, Budget, CheckOutcome, CheckResult, Checkpoint, DEFAULT_PROJECT,
    EventKind, GeneratedChange, MAX_TASK_COST_USD, MAX_TASK_TOKENS, MAX_TASK_TURNS, NewTask,
    Project, RunEvent, Task, TaskFilter,
};
pub use people::{
    AuditEvent, AuditFilter, ProjectSettings, Role, User, month_bounds, month_label, parse_month,
};
pub use pull_request::{
    AUTOMATIC, COMMENT_COMMAND, CiState, FollowUp, FollowUpKind, FollowedPr, Mergeability,
    NewFollow, PrState, RebasePolicy, ReviewRequest, comment_command, describe as describe_pr,
};
pub use redact::{MASK, MIN_SECRET_LEN, Redactor};
pub use review::{GuardFinding, GuardKind, JudgeDecision, JudgeVerdict};
pub use run::{EndReason, Phase, Run, RunStatus};
pub use template::{
    ParamFromText, ParamType, Template, TemplateParam, TemplateParams, TemplateSpec, parameterise,
    placeholders, valid_template_name,
};
pub use text::{multi_line, printable, single_line};
pub use values::{
    BranchName, DEFAULT_TIMEOUT, Instructions, MAX_INSTRUCTIONS_BYTES, MAX_TITLE_CHARS, RepoTarget,
    RepoUrl, Title, format_duration, format_size, format_timestamp, format_work, now_millis,
    parse_duration, parse_timestamp, slug,
};

/// Milliseconds since the Unix epoch: the one time representation stored and sent everywhere.
pub type Millis = i64;
