//! The engine's one error type: why the intake refuses a task (its repository, base branch or
//! limits), and why a run failed. Every cause keeps its source and names exactly one end reason.

use nightshift_agent::AgentError;
use nightshift_checks::{CannotRun, ChecksError};
use std::time::Duration;

use nightshift_core::{CoreError, EndReason, format_duration};
use nightshift_forge::ForgeError;
use nightshift_sandbox::SandboxError;
use nightshift_store::StoreError;
use nightshift_workspace::WorkspaceError;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    RepoUnreachable(String),
    /// The operator's rules refuse the repository (a local path outside the allowed roots, an
    /// internal host not listed, the data directory).
    #[error("{0}")]
    RepoNotAllowed(String),
    #[error("{0}")]
    BaseNotFound(String),
    #[error("{0}")]
    Git(String),
    #[error("{0}")]
    Invalid(String),
    /// A task asks for longer than its project (or the server) allows.
    #[error(
        "timeout {} is over this project's limit of {}",
        format_duration(*.asked),
        format_duration(*.limit)
    )]
    TimeoutTooLong { asked: Duration, limit: Duration },
    #[error("the command agent needs a command: set agent.command (CLI: --agent-command)")]
    AgentCommandRequired,
    /// The same instructions are already queued or running on the repository in `project`.
    #[error(
        "task {task} has the same instructions on this repository and is still queued or running"
    )]
    DuplicateTask { task: i64, project: String },
    /// `retry_after` is in whole seconds.
    #[error(
        "you are creating tasks faster than this server allows ({burst} at once, then \
         {per_minute} a minute per user): try again in {retry_after} s"
    )]
    TooManyTasks {
        burst: u32,
        per_minute: u32,
        retry_after: u64,
    },

    /// A record the run reads or writes (a lost lease is a stop, not this).
    #[error("{what}: {source}")]
    Record {
        what: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot open the project's credential for {host}: {source}")]
    Credential {
        host: String,
        #[source]
        source: StoreError,
    },
    #[error("{what}: {source}")]
    Workspace {
        what: String,
        #[source]
        source: WorkspaceError,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Sandbox {
        what: String,
        #[source]
        source: SandboxError,
    },
    #[error("{what}: {source}")]
    Http {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("model endpoint {url:?} {problem}")]
    ModelEndpoint { url: String, problem: String },
    /// A stored value that no longer parses, or the secret filter that does not build.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// Bubblewrap is chosen but does not work here; the detail says why and the ways out.
    #[error("{0}")]
    Unconfined(String),
    #[error("forge settings: {0}")]
    ForgeSettings(#[source] ForgeError),
    #[error(transparent)]
    Forge(ForgeError),
    #[error("refusing to run: the base branch {0} is the branch Nightshift pushes to")]
    BaseIsTarget(String),
    /// The repository's checks cannot be read (an invalid `.nightshift.toml`).
    #[error(transparent)]
    ChecksConfig(ChecksError),
    /// A check could not be run at all (as opposed to: it ran and failed).
    #[error(transparent)]
    Checks(ChecksError),
    /// A setup or check command cannot run on this server (its program missing or not
    /// executable, setup failing): the message names the program, where it was looked for and
    /// the fix. Found before the agent, so it costs no agent time.
    #[error("{0}")]
    CannotRun(Box<CannotRun>),
    /// Checks still failing when no verification round is left, named `stage `command``.
    #[error("failed: {}", failed.join(", "))]
    ChecksFailed { failed: Vec<String> },
    /// The guard's findings (`path:line: what`) still there when no round is left.
    #[error(
        "the change weakens the checks instead of fixing the code: {}",
        listed(findings)
    )]
    TestTampering { findings: Vec<String> },
    /// The judge still rejects the change when no round is left.
    #[error("the judge rejected the change: {}", listed(reasons))]
    JudgeRejected { reasons: Vec<String> },
    /// The judge gave no verdict and the server's policy fails the run for it.
    #[error("the judge could not review the change: {0}")]
    JudgeUnavailable(String),
    #[error("after rebasing onto {base}: {check} failed")]
    RecheckFailed { base: String, check: String },
    #[error(transparent)]
    Conflict(WorkspaceError),
    #[error(transparent)]
    Push(WorkspaceError),
    /// The agent could not be started or driven.
    #[error(transparent)]
    Agent(AgentError),
    /// The agent ran and reported failure, in its own words.
    #[error("{0}")]
    AgentFailed(String),
    #[error("{0}")]
    BudgetExceeded(String),
    /// A follow-up run found its pull request no longer in the state it was started for.
    #[error("{0}")]
    FollowUpStale(String),
    /// An address-review run was asked for with no review comment and no instruction.
    #[error("{0}")]
    NothingToAddress(String),
    /// Webhook deliveries from that forge are not taken here (no secret is configured), or the
    /// name is no forge's.
    #[error("{0}")]
    WebhooksOff(String),
    /// A webhook delivery whose signature or token does not prove it came from the forge.
    #[error("{0}")]
    WebhookRefused(String),
    /// A genuine webhook delivery that cannot be read.
    #[error("{0}")]
    WebhookUnreadable(String),
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

impl EngineError {
    /// How a run that failed with this error ends.
    pub fn end_reason(&self) -> EndReason {
        use EngineError as E;
        match self {
            E::Forge(ForgeError::PermissionDenied { .. } | ForgeError::Unauthorized { .. })
            | E::BaseIsTarget(_)
            | E::RepoNotAllowed(_)
            | E::Push(WorkspaceError::PushRefused {
                permission: true, ..
            }) => EndReason::PermissionDenied,
            // A person's push to the branch in between is kept, not overwritten.
            E::Conflict(_)
            | E::FollowUpStale(_)
            | E::NothingToAddress(_)
            | E::Push(WorkspaceError::LeaseBroken { .. }) => EndReason::Conflict,
            E::CannotRun(_) => EndReason::SetupFailed,
            E::ChecksConfig(_) | E::ChecksFailed { .. } | E::RecheckFailed { .. } => {
                EndReason::ChecksFailed
            }
            E::TestTampering { .. } => EndReason::TestTampering,
            E::JudgeRejected { .. } => EndReason::JudgeRejected,
            E::Agent(_) | E::AgentFailed(_) => EndReason::AgentFailed,
            E::BudgetExceeded(_) => EndReason::BudgetExceeded,
            E::Store(_)
            | E::RepoUnreachable(_)
            | E::BaseNotFound(_)
            | E::Git(_)
            | E::Invalid(_)
            | E::TimeoutTooLong { .. }
            | E::AgentCommandRequired
            | E::DuplicateTask { .. }
            | E::TooManyTasks { .. }
            | E::Record { .. }
            | E::Credential { .. }
            | E::Workspace { .. }
            | E::Io { .. }
            | E::Sandbox { .. }
            | E::Http { .. }
            | E::ModelEndpoint { .. }
            | E::JudgeUnavailable(_)
            | E::Core(_)
            | E::Unconfined(_)
            | E::ForgeSettings(_)
            | E::Forge(_)
            | E::Checks(_)
            | E::WebhooksOff(_)
            | E::WebhookRefused(_)
            | E::WebhookUnreadable(_)
            | E::Push(_) => EndReason::Infrastructure,
        }
    }

    pub(crate) fn record(what: &str) -> impl FnOnce(StoreError) -> EngineError {
        let what = what.to_string();
        move |source| EngineError::Record { what, source }
    }

    pub(crate) fn workspace(what: &str) -> impl FnOnce(WorkspaceError) -> EngineError {
        let what = what.to_string();
        move |source| EngineError::Workspace { what, source }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EngineError {
        let what = what.into();
        move |source| EngineError::Io { what, source }
    }

    pub(crate) fn sandbox(what: &str) -> impl FnOnce(SandboxError) -> EngineError {
        let what = what.to_string();
        move |source| EngineError::Sandbox { what, source }
    }
}

/// The first few of a list, and how many more there are.
fn listed(items: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut text = items
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if items.len() > SHOWN {
        text.push_str(&format!("; and {} more", items.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusals that are a person's to fix are told apart from outages of the same source.
    #[test]
    fn each_cause_names_one_end_reason() {
        let forge_denied = ForgeError::PermissionDenied {
            repo: "o/r".into(),
            reason: "read only".into(),
        };
        let forge_down = ForgeError::Api {
            forge: "github",
            operation: "GET /repos/o/r".into(),
            status: 502,
            detail: "bad gateway".into(),
        };
        let refused = |permission| WorkspaceError::PushRefused {
            repo: "o/r".into(),
            detail: "rejected".into(),
            permission,
        };
        let conflict = WorkspaceError::Conflict {
            base: "main".into(),
            detail: "CONFLICT (content)".into(),
        };
        let cases = [
            (
                EngineError::Forge(forge_denied),
                EndReason::PermissionDenied,
            ),
            (EngineError::Forge(forge_down), EndReason::Infrastructure),
            (
                EngineError::Push(refused(true)),
                EndReason::PermissionDenied,
            ),
            (EngineError::Push(refused(false)), EndReason::Infrastructure),
            (EngineError::Conflict(conflict), EndReason::Conflict),
            (
                EngineError::CannotRun(Box::new(missing_eslint())),
                EndReason::SetupFailed,
            ),
            (
                EngineError::AgentFailed("the agent failed".into()),
                EndReason::AgentFailed,
            ),
            (
                EngineError::BudgetExceeded("over $1.00".into()),
                EndReason::BudgetExceeded,
            ),
            (
                EngineError::BaseIsTarget("main".into()),
                EndReason::PermissionDenied,
            ),
            (
                EngineError::TestTampering {
                    findings: vec![
                        "tests/test_a.py:1: test file removed: deleted (2 tests)".into(),
                    ],
                },
                EndReason::TestTampering,
            ),
            (
                EngineError::JudgeRejected {
                    reasons: vec!["edits README.md, which the task did not ask for".into()],
                },
                EndReason::JudgeRejected,
            ),
            (
                EngineError::JudgeUnavailable("timed out after 2m".into()),
                EndReason::Infrastructure,
            ),
        ];
        for (error, reason) in cases {
            assert_eq!(error.end_reason(), reason, "{error}");
        }
        let missing = EngineError::CannotRun(Box::new(missing_eslint())).to_string();
        assert!(
            missing.starts_with(
                "lint `npm run lint` cannot run here: `eslint` was not found on the run's PATH \
                 (/usr/bin:/bin), so it exited with code 127."
            ),
            "{missing}"
        );
    }

    fn missing_eslint() -> CannotRun {
        CannotRun {
            stage: "lint".into(),
            command: "npm run lint".into(),
            blocker: nightshift_checks::Blocker::Missing {
                program: Some("eslint".into()),
                looked_in: nightshift_checks::LookedIn::Path,
            },
            how: "exited with code 127".into(),
            path: "/usr/bin:/bin".into(),
        }
    }
}
