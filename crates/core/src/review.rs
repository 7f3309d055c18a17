//! Nightshift's own review of a change beyond its checks: what the test-tampering guard found
//! and what the judge said, kept on the change and shown with it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Usage;
use crate::run::string_enum;

string_enum!(
    /// What the test-tampering guard found a change doing to the checks.
    GuardKind, "guard finding" {
        TestFileRemoved => "test_file_removed",
        TestRemoved => "test_removed",
        SkipAdded => "skip_added",
        AssertionRemoved => "assertion_removed",
        SuppressionAdded => "suppression_added",
        CheckConfigEdited => "check_config_edited",
    }
);

impl GuardKind {
    /// The finding's kind as people read it in a list.
    pub fn label(self) -> &'static str {
        match self {
            GuardKind::TestFileRemoved => "test file removed",
            GuardKind::TestRemoved => "test removed",
            GuardKind::SkipAdded => "skip added",
            GuardKind::AssertionRemoved => "assertion removed",
            GuardKind::SuppressionAdded => "suppression added",
            GuardKind::CheckConfigEdited => "check configuration edited",
        }
    }
}

/// One thing the guard found, where it is: the line in the changed file, or in the base's
/// file for what was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GuardFinding {
    pub kind: GuardKind,
    pub path: String,
    pub line: u32,
    /// What was found, e.g. `` `@pytest.mark.skip` added `` or `` `def test_greets()` removed ``.
    pub detail: String,
}

impl std::fmt::Display for GuardFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.path,
            self.line,
            self.kind.label(),
            self.detail
        )
    }
}

string_enum!(
    /// What the judge decided about a change.
    JudgeDecision, "judge decision" {
        Approve => "approve",
        Reject => "reject",
    }
);

/// One review of a change by the judge: its decision and reasons, or — when it could not
/// answer — the problem and the decision the configured policy took in its place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JudgeVerdict {
    /// The agent round whose change was reviewed.
    pub round: u32,
    pub decision: JudgeDecision,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// `anthropic` or `openai`, and the model asked.
    pub provider: String,
    pub model: String,
    /// Why the judge gave no verdict of its own (timeout, malformed answer); the decision is
    /// then the policy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
    #[serde(default)]
    pub usage: Usage,
}

impl JudgeVerdict {
    pub fn approved(&self) -> bool {
        self.decision == JudgeDecision::Approve
    }
}
