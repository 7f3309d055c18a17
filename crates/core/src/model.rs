//! The entities of the domain model (names are binding: see the architecture map).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::run::string_enum;
use crate::{EndReason, Millis, Phase, RunStatus};

/// The project every installation has; embedded mode works in it unless told otherwise.
pub const DEFAULT_PROJECT: &str = "default";

/// The tenant boundary: every task, run and event belongs to exactly one project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: i64,
    pub name: String,
    pub created_at: Millis,
}

string_enum!(
    /// Which agent driver runs a task.
    AgentKind, "agent" {
        Command => "command",
        ClaudeCode => "claude-code",
        Codex => "codex",
        Acp => "acp",
    }
);

/// Which agent runs a task and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentSpec {
    pub kind: AgentKind,
    /// The shell command for `command`, or the agent's command line for `acp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

impl AgentSpec {
    pub fn command(cmd: impl Into<String>) -> Self {
        AgentSpec {
            kind: AgentKind::Command,
            command: Some(cmd.into()),
            model: None,
            args: Vec::new(),
        }
    }
}

/// Per-task spending limits; `None` means the server default applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Budget {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
}

/// The most a single task may be allowed to spend, in USD.
pub const MAX_TASK_COST_USD: f64 = 10_000.0;
/// The most agent turns a single task may be allowed.
pub const MAX_TASK_TURNS: u64 = 10_000;
/// The most tokens a single task may be allowed.
pub const MAX_TASK_TOKENS: u64 = 1_000_000_000;

impl Budget {
    /// Refuses limits that allow nothing (zero turns) or that are no limit at all (1e308 USD).
    pub fn validate(&self) -> Result<(), crate::CoreError> {
        let fail = |reason: String| Err(crate::CoreError::InvalidBudget { reason });
        if let Some(cost) = self.max_cost_usd
            && !(cost.is_finite() && cost > 0.0 && cost <= MAX_TASK_COST_USD)
        {
            return fail(format!(
                "max_cost_usd is {cost}; use more than 0 and at most {MAX_TASK_COST_USD} dollars"
            ));
        }
        if let Some(turns) = self.max_turns
            && !(1..=MAX_TASK_TURNS).contains(&turns)
        {
            return fail(format!(
                "max_turns is {turns}; use 1 to {MAX_TASK_TURNS} agent turns"
            ));
        }
        if let Some(tokens) = self.max_tokens
            && !(1..=MAX_TASK_TOKENS).contains(&tokens)
        {
            return fail(format!(
                "max_tokens is {tokens}; use 1 to {MAX_TASK_TOKENS} tokens"
            ));
        }
        Ok(())
    }
}

/// What a caller asks for; validated values only.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTask {
    pub project_id: i64,
    pub title: String,
    pub instructions: crate::Instructions,
    pub repo: crate::RepoUrl,
    pub base_branch: crate::BranchName,
    pub agent: AgentSpec,
    pub timeout_secs: u64,
    pub budget: Budget,
    /// The task may delete or skip tests, silence linters or edit what decides the checks:
    /// the guard's findings are then listed with the change instead of sent back.
    pub allow_test_changes: bool,
    pub created_by: String,
}

/// The definition of a change: immutable once created, except for its title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: i64,
    pub project_id: i64,
    pub title: String,
    pub instructions: String,
    pub repo: String,
    pub base_branch: String,
    pub agent: AgentSpec,
    pub timeout_secs: u64,
    pub budget: Budget,
    /// See [`NewTask::allow_test_changes`].
    #[serde(default)]
    pub allow_test_changes: bool,
    pub created_by: String,
    pub created_at: Millis,
}

impl Task {
    /// The branch every run of this task pushes: `nightshift/<task-id>-<slug>`.
    pub fn branch_name(&self) -> String {
        let slug = crate::slug(&self.title);
        if slug.is_empty() {
            format!("nightshift/{}", self.id)
        } else {
            format!("nightshift/{}-{}", self.id, slug)
        }
    }
}

/// What a run has durably finished, written at the end of each phase so a resumed run
/// continues instead of starting over.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_session_id: Option<String>,
    /// The commit holding the validated change, before rebase and push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The commit that is on the remote branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_commit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_number: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_url: Option<String>,
    #[serde(default)]
    pub completed: Vec<Phase>,
}

string_enum!(
    /// What an event in a run's log is about.
    EventKind, "event kind" {
        Phase => "phase",
        Log => "log",
        Agent => "agent",
        Check => "check",
        Info => "info",
        Error => "error",
    }
);

/// One entry of a run's ordered, append-only log. The live stream and the history are the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunEvent {
    pub run_id: i64,
    pub seq: i64,
    /// Milliseconds since the epoch.
    #[schema(value_type = i64)]
    pub at: Millis,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    pub message: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub data: serde_json::Value,
}

string_enum!(
    CheckOutcome, "check outcome" {
        Passed => "passed",
        Failed => "failed",
        TimedOut => "timed_out",
    }
);

/// One command of the repository's checks, as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CheckResult {
    /// `setup`, `format`, `lint` or `test`.
    pub stage: String,
    pub command: String,
    pub outcome: CheckOutcome,
    pub exit_code: Option<i32>,
    /// The signal that killed the command, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    pub duration_ms: u64,
    /// The lines that matter, not the whole log.
    pub output: String,
    pub round: u32,
    /// The check failed on the unchanged base commit too, before the agent: a pre-existing
    /// failure, not one the change brought in (it must still pass before anything is pushed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub failed_on_base: bool,
}

impl CheckResult {
    /// How the command ended, for people: `exited with code 127`, `was killed by signal 9`.
    pub fn exit_text(&self) -> String {
        match (self.exit_code, self.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!("was killed by signal {signal}"),
            (None, None) => "was stopped".into(),
        }
    }
}

/// The result of a run: what changed, how it was proven, where it went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GeneratedChange {
    pub run_id: i64,
    pub diff: String,
    pub diff_stat: String,
    pub files_changed: Vec<String>,
    pub commit_message: String,
    pub checks: Vec<CheckResult>,
    /// Which checks were found and from which file, e.g. `.nightshift.toml` or `Cargo.toml`.
    pub checks_source: String,
    pub rounds: u32,
    pub summary: Option<String>,
    pub branch: Option<String>,
    pub commit: Option<String>,
    pub pr_url: Option<String>,
    pub pr_number: Option<u64>,
    pub ci_status: Option<String>,
    /// What the test-tampering guard found on the change as it stands: allowed by the task
    /// (and listed in the pull request), or what ended the run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guard: Vec<crate::GuardFinding>,
    /// The judge's verdicts, one per round it reviewed, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<crate::JudgeVerdict>,
}

/// Filters for listing tasks. Every field narrows; `None` does not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskFilter {
    pub repo: Option<String>,
    pub status: Option<RunStatus>,
    pub end_reason: Option<EndReason>,
    pub created_by: Option<String>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub text: Option<String>,
    /// Only tasks with an id below this one (a stable cursor for paging newest first).
    pub before: Option<i64>,
    pub limit: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn how_a_check_ended_reads_as_words() {
        let mut check = CheckResult {
            stage: "setup".into(),
            command: "npm ci".into(),
            outcome: CheckOutcome::Failed,
            exit_code: Some(127),
            signal: None,
            duration_ms: 1,
            output: String::new(),
            round: 0,
            failed_on_base: false,
        };
        assert_eq!(check.exit_text(), "exited with code 127");
        check.exit_code = None;
        check.signal = Some(9);
        assert_eq!(check.exit_text(), "was killed by signal 9");
        check.signal = None;
        assert_eq!(check.exit_text(), "was stopped");
    }
}
