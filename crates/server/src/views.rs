//! What the API sends: tasks with their runs, in one stable JSON shape shared by the CLI.

use nightshift_core::{
    AgentSpec, Budget, EndReason, Phase, Run, RunStatus, Task, Usage, format_duration,
    format_timestamp,
};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: i64,
    pub project: String,
    pub title: String,
    pub instructions: String,
    pub repo: String,
    pub base: String,
    pub agent: AgentSpec,
    pub timeout: String,
    pub budget: Budget,
    pub allow_test_changes: bool,
    pub created_by: String,
    pub created_at: String,
    /// The latest run's status: what the task is doing now.
    pub status: RunStatus,
    pub end_reason: Option<EndReason>,
    /// Every run, oldest first (task detail only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<Vec<RunView>>,
    /// The newest run (lists only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latest_run: Option<RunView>,
}

#[derive(Debug, Serialize)]
pub struct RunView {
    pub number: i64,
    pub status: RunStatus,
    pub phase: Option<Phase>,
    pub progress: u8,
    pub end_reason: Option<EndReason>,
    pub failed_phase: Option<Phase>,
    pub error: Option<String>,
    pub waiting_reason: Option<String>,
    pub cancel_requested: bool,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub pr_url: Option<String>,
    pub usage: Usage,
    pub created_at: String,
    pub started_at: Option<String>,
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
            usage: run.usage,
            created_at: format_timestamp(run.created_at),
            started_at: run.started_at.map(format_timestamp),
            ended_at: run.ended_at.map(format_timestamp),
        }
    }
}

impl TaskView {
    fn base(task: &Task, project: &str, latest: &Run) -> Self {
        TaskView {
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
            runs: None,
            latest_run: None,
        }
    }

    /// A task with all its runs; `runs` must not be empty (every task has a first run).
    pub fn detail(task: &Task, project: &str, runs: &[Run]) -> Option<Self> {
        let latest = runs.last()?;
        let mut view = TaskView::base(task, project, latest);
        view.runs = Some(runs.iter().map(RunView::new).collect());
        Some(view)
    }

    pub fn summary(task: &Task, project: &str, latest: &Run) -> Self {
        let mut view = TaskView::base(task, project, latest);
        view.latest_run = Some(RunView::new(latest));
        view
    }
}
