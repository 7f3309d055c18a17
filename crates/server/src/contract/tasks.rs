//! Tasks and runs: what creating and listing them takes, and how the API shows them.

use std::time::Duration;

use nightshift_core::{
    AgentSpec, Budget, CiState, EndReason, FollowUp, FollowedPr, Mergeability, Phase, PrState, Run,
    RunEvent, RunStatus, Task, Usage, format_duration, format_timestamp,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// `POST /projects/{project}/tasks/{id}/address-review`: what to tell the agent besides the
/// pull request's review comments. The body may be left out when there are comments.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressReview {
    /// Extra instructions for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
}

/// `POST /projects/{project}/tasks`: a change to make on one repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTask {
    /// `https://`, `ssh://`, `file://` or an absolute path.
    pub repo: String,
    /// The branch to start from and open the pull request against (default: the remote's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
    pub instructions: String,
    /// Default: cut from the instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSpec>,
    /// `90s`, `10m`, `1h`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
    /// Lets the agent delete or skip tests, silence linters and edit the checks' configuration:
    /// the test-tampering guard's findings are listed in the pull request instead of sent back.
    /// Default: the template's, else `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_test_changes: Option<bool>,
}

/// Filters of `GET /projects/{project}/tasks`, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TaskListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The latest run's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<RunStatus>)]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<EndReason>)]
    pub end_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// An RFC 3339 timestamp, or a date (`2026-11-24`, midnight UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Free text in the title or instructions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// Only tasks with an id below this one: the previous page's `next_before`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// 1 to 500; 50 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// One attempt at a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    pub number: i64,
    pub status: RunStatus,
    #[schema(required)]
    pub phase: Option<Phase>,
    pub progress: u8,
    #[schema(required)]
    pub end_reason: Option<EndReason>,
    #[schema(required)]
    pub failed_phase: Option<Phase>,
    #[schema(required)]
    pub error: Option<String>,
    /// What a queued run waits for (a limit), when something holds it back.
    #[schema(required)]
    pub waiting_reason: Option<String>,
    pub cancel_requested: bool,
    /// The pushed branch, once something was pushed to it.
    #[schema(required)]
    pub branch: Option<String>,
    #[schema(required)]
    pub commit: Option<String>,
    #[schema(required)]
    pub pr_url: Option<String>,
    /// What a follow-up run (a fix-CI run) was started for; `null` for other runs.
    #[schema(required)]
    pub follow_up: Option<FollowUp>,
    pub usage: Usage,
    pub created_at: String,
    #[schema(required)]
    pub started_at: Option<String>,
    #[schema(required)]
    pub ended_at: Option<String>,
}

impl RunView {
    pub fn new(run: &Run) -> Self {
        RunView {
            number: run.number,
            status: run.status,
            phase: run.phase,
            progress: run.progress,
            end_reason: run.end_reason,
            failed_phase: run.failed_phase,
            error: run.error.clone(),
            waiting_reason: run.waiting_reason.clone(),
            cancel_requested: run.cancel_requested,
            // A branch is only worth naming once something was pushed to it.
            branch: run
                .checkpoint
                .pushed_commit
                .as_ref()
                .and(run.checkpoint.branch.clone()),
            commit: run.checkpoint.pushed_commit.clone(),
            pr_url: run.checkpoint.pr_url.clone(),
            follow_up: run.follow_up.clone(),
            usage: run.usage,
            created_at: format_timestamp(run.created_at),
            started_at: run.started_at.map(format_timestamp),
            ended_at: run.ended_at.map(format_timestamp),
        }
    }
}

/// What every view of a task shows: its definition and what it is doing now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskFields {
    pub id: i64,
    pub project: String,
    pub title: String,
    pub instructions: String,
    pub repo: String,
    pub base: String,
    pub agent: AgentSpec,
    pub timeout: String,
    pub budget: Budget,
    /// Whether the agent may change its tests and checks (see `CreateTask`).
    pub allow_test_changes: bool,
    pub created_by: String,
    pub created_at: String,
    /// The latest run's status: what the task is doing now.
    pub status: RunStatus,
    #[schema(required)]
    pub end_reason: Option<EndReason>,
}

impl TaskFields {
    fn new(task: &Task, project: &str, latest: &Run) -> Self {
        TaskFields {
            id: task.id,
            project: project.to_string(),
            title: task.title.clone(),
            instructions: task.instructions.clone(),
            repo: task.repo.clone(),
            base: task.base_branch.clone(),
            agent: task.agent.clone(),
            timeout: format_duration(Duration::from_secs(task.timeout_secs)),
            budget: task.budget,
            allow_test_changes: task.allow_test_changes,
            created_by: task.created_by.clone(),
            created_at: format_timestamp(task.created_at),
            status: latest.status,
            end_reason: latest.end_reason,
        }
    }
}

/// A task with every run, oldest first, and the pull request its runs published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskView {
    #[serde(flatten)]
    pub task: TaskFields,
    pub runs: Vec<RunView>,
    /// As the follower last polled it; `null` before a run opened one.
    #[serde(default)]
    #[schema(required)]
    pub pull_request: Option<PullRequestView>,
}

impl TaskView {
    /// A task with all its runs; `None` when `runs` is empty (every task has a first run).
    pub fn new(task: &Task, project: &str, runs: &[Run]) -> Option<Self> {
        Some(TaskView {
            task: TaskFields::new(task, project, runs.last()?),
            runs: runs.iter().map(RunView::new).collect(),
            pull_request: None,
        })
    }

    /// With the task's pull request as the follower last polled it; `runs` are the task's.
    pub fn with_pull_request(mut self, pr: Option<&FollowedPr>, runs: &[Run]) -> Self {
        self.pull_request = pr.map(|pr| PullRequestView::new(pr, runs));
        self
    }

    /// The newest run.
    pub fn latest_run(&self) -> Option<&RunView> {
        self.runs.last()
    }
}

/// A published pull request as the follower last polled it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PullRequestView {
    pub number: u64,
    pub url: String,
    pub branch: String,
    pub state: PrState,
    pub ci: CiState,
    pub mergeable: Mergeability,
    /// Whether the base has commits the branch lacks; `null` when the forge did not say.
    #[schema(required)]
    pub behind_base: Option<bool>,
    /// The commit the branch points at, which the CI verdict is about.
    #[schema(required)]
    pub head: Option<String>,
    /// The number of the run that last pushed to it.
    #[schema(required)]
    pub run: Option<i64>,
    /// Still polled: neither merged nor closed, within the follow limit.
    pub following: bool,
    pub opened_at: String,
    /// When it was seen merged or closed.
    #[schema(required)]
    pub ended_at: Option<String>,
    #[schema(required)]
    pub last_polled_at: Option<String>,
    /// Why the last poll failed, if it did.
    #[schema(required)]
    pub last_error: Option<String>,
    /// Why the last `/nightshift` comment on it started no run, if it did not.
    #[serde(default)]
    #[schema(required)]
    pub command_note: Option<String>,
}

impl PullRequestView {
    /// `runs` are the task's: the one that last pushed is named by its number.
    pub fn new(pr: &FollowedPr, runs: &[Run]) -> Self {
        PullRequestView {
            number: pr.number,
            url: pr.url.clone(),
            branch: pr.branch.clone(),
            state: pr.state,
            ci: pr.ci,
            mergeable: pr.mergeable,
            behind_base: pr.behind_base,
            head: pr.head_sha.clone(),
            run: runs.iter().find(|r| r.id == pr.run_id).map(|r| r.number),
            following: pr.following,
            opened_at: format_timestamp(pr.opened_at),
            ended_at: pr.ended_at.map(format_timestamp),
            last_polled_at: pr.last_polled_at.map(format_timestamp),
            last_error: pr.last_error.clone(),
            command_note: pr.command_note.clone(),
        }
    }
}

/// A task in a list, with its newest run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskListEntry {
    #[serde(flatten)]
    pub task: TaskFields,
    pub latest_run: RunView,
}

impl TaskListEntry {
    pub fn new(task: &Task, project: &str, latest: &Run) -> Self {
        TaskListEntry {
            task: TaskFields::new(task, project, latest),
            latest_run: RunView::new(latest),
        }
    }
}

/// One page of tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskListEntry>,
    /// Pass as `before` for the next page; `null` on the last.
    #[schema(required)]
    pub next_before: Option<i64>,
}

/// How a cancel went: done at once (the run had not started), or asked of a running run,
/// which ends `cancelled` once its processes are gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    Cancelled,
    CancelRequested,
}

/// The answer to a cancel: 200 when done, 202 when asked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cancelled {
    pub outcome: CancelOutcome,
    pub run: RunView,
}

/// `GET …/runs/{number}/events`: a page of a run's log after a sequence number.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events after this sequence number: the previous page's `next_after`.
    #[serde(default)]
    pub after: i64,
    /// 1 to 5000; 500 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EventsPage {
    pub events: Vec<RunEvent>,
    /// Pass as `after` for the next page; `null` on the last.
    #[schema(required)]
    pub next_after: Option<i64>,
}

/// `GET …/runs/{number}/stream`: where the live stream starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FollowQuery {
    /// Events after this sequence number (else `Last-Event-ID`, else from the start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
}

/// Filters of `GET /projects/{project}/runs`, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<RunStatus>)]
    pub status: Option<String>,
    /// `true`: only queued runs held back by a limit.
    #[serde(default)]
    pub waiting: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

/// A run in the project's list of runs: the run with its task and its own id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunListEntry {
    #[serde(flatten)]
    pub run: RunView,
    pub task_id: i64,
    /// Pass as `before` to page from here.
    pub id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunListEntry>,
    #[schema(required)]
    pub next_before: Option<i64>,
}
