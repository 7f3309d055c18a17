//! A run's lifecycle: `queued → running → succeeded | failed | cancelled`, the phase while
//! running, and the typed reason every ended run carries.

use serde::{Deserialize, Serialize};

use crate::{Checkpoint, CoreError, Millis, Usage};

/// Declares a string-backed enum with one spelling shared by serde, the store, the API's
/// schema and the CLI. Other crates use it for their own wire enums (the API's error codes).
#[macro_export]
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal {
        $($(#[$vmeta:meta])* $variant:ident => $text:tt),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            ::serde::Serialize, ::serde::Deserialize, ::utoipa::ToSchema,
        )]
        pub enum $name { $($(#[$vmeta])* #[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::CoreError;
            fn from_str(s: &str) -> ::std::result::Result<Self, $crate::CoreError> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::CoreError::InvalidEnum {
                        field: $field,
                        value: s.to_string(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}
pub(crate) use string_enum;

string_enum!(
    /// Where a run is in its life.
    RunStatus, "status" {
        Queued => "queued",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

string_enum!(
    /// What a running run is doing now.
    Phase, "phase" {
        Preparing => "preparing",
        Agent => "agent",
        Validating => "validating",
        Publishing => "publishing",
    }
);

string_enum!(
    /// Why a run ended. The status follows from it (see [`EndReason::status`]).
    EndReason, "end_reason" {
        Succeeded => "succeeded",
        NoChanges => "no_changes",
        SetupFailed => "setup_failed",
        ChecksFailed => "checks_failed",
        TestTampering => "test_tampering",
        JudgeRejected => "judge_rejected",
        BudgetExceeded => "budget_exceeded",
        TimedOut => "timed_out",
        Cancelled => "cancelled",
        PermissionDenied => "permission_denied",
        Conflict => "conflict",
        AgentFailed => "agent_failed",
        Infrastructure => "infrastructure",
    }
);

impl RunStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    pub fn is_active(self) -> bool {
        !self.is_terminal()
    }
}

impl Phase {
    /// The progress percentage shown when a phase starts; phases report finer steps within.
    pub fn start_progress(self) -> u8 {
        match self {
            Phase::Preparing => 0,
            Phase::Agent => 15,
            Phase::Validating => 65,
            Phase::Publishing => 85,
        }
    }
}

impl EndReason {
    pub fn status(self) -> RunStatus {
        match self {
            EndReason::Succeeded | EndReason::NoChanges => RunStatus::Succeeded,
            EndReason::Cancelled => RunStatus::Cancelled,
            _ => RunStatus::Failed,
        }
    }
}

/// One attempt at a task. Retry creates run `number + 1` of the same task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: i64,
    pub task_id: i64,
    pub project_id: i64,
    pub number: i64,
    pub status: RunStatus,
    pub phase: Option<Phase>,
    pub progress: u8,
    pub end_reason: Option<EndReason>,
    /// The phase a failed run stopped in, so the failure point is named, not guessed.
    pub failed_phase: Option<Phase>,
    pub error: Option<String>,
    pub waiting_reason: Option<String>,
    pub checkpoint: Checkpoint,
    pub usage: Usage,
    pub cancel_requested: bool,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<Millis>,
    pub created_at: Millis,
    pub started_at: Option<Millis>,
    pub ended_at: Option<Millis>,
    /// Bytes of events the run stored (messages, data and rows), bounded per run by the server.
    #[serde(default)]
    pub event_bytes: u64,
    /// What a follow-up run (a run on the task's open pull request) was started to do;
    /// `None` for a first run or a retry.
    #[serde(default)]
    pub follow_up: Option<crate::FollowUp>,
}

impl Run {
    /// Checks that a run in `self.status` may move to `to`. Terminal states are final.
    pub fn check_transition(&self, to: RunStatus) -> Result<(), CoreError> {
        let allowed = match (self.status, to) {
            (RunStatus::Queued, RunStatus::Running) => true,
            (RunStatus::Queued, RunStatus::Cancelled) => true,
            // A run that lost its lease goes back to the queue and is resumed by another worker.
            (RunStatus::Running, RunStatus::Queued) => true,
            (RunStatus::Running, RunStatus::Running) => true,
            (RunStatus::Running, t) if t.is_terminal() => true,
            _ => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(CoreError::InvalidTransition {
                from: self.status.to_string(),
                to: to.to_string(),
            })
        }
    }

    pub fn branch(&self) -> Option<&str> {
        self.checkpoint.branch.as_deref()
    }

    pub fn commit(&self) -> Option<&str> {
        self.checkpoint
            .pushed_commit
            .as_deref()
            .or(self.checkpoint.commit.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: RunStatus) -> Run {
        Run {
            id: 1,
            task_id: 1,
            project_id: 1,
            number: 1,
            status,
            phase: None,
            progress: 0,
            end_reason: None,
            failed_phase: None,
            error: None,
            waiting_reason: None,
            checkpoint: Checkpoint::default(),
            usage: Usage::default(),
            cancel_requested: false,
            lease_owner: None,
            lease_expires_at: None,
            created_at: 0,
            started_at: None,
            ended_at: None,
            event_bytes: 0,
            follow_up: None,
        }
    }

    #[test]
    fn terminal_states_are_final() {
        for end in [
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ] {
            for to in RunStatus::ALL {
                assert!(run(end).check_transition(*to).is_err(), "{end} -> {to}");
            }
        }
        assert!(
            run(RunStatus::Queued)
                .check_transition(RunStatus::Running)
                .is_ok()
        );
        assert!(
            run(RunStatus::Queued)
                .check_transition(RunStatus::Failed)
                .is_err()
        );
    }

    #[test]
    fn end_reason_decides_status() {
        assert_eq!(EndReason::NoChanges.status(), RunStatus::Succeeded);
        assert_eq!(EndReason::TimedOut.status(), RunStatus::Failed);
        assert_eq!(EndReason::SetupFailed.status(), RunStatus::Failed);
        assert_eq!(
            "setup_failed".parse::<EndReason>(),
            Ok(EndReason::SetupFailed)
        );
        assert_eq!(EndReason::Cancelled.status(), RunStatus::Cancelled);
        assert_eq!(
            "checks_failed".parse::<EndReason>(),
            Ok(EndReason::ChecksFailed)
        );
        assert!("bogus".parse::<EndReason>().is_err());
    }
}
