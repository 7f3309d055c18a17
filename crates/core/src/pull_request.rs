//! A published pull request as it is followed after its run: open, merged or closed; whether
//! it still merges cleanly; the CI verdict on its head; and how often it is asked about.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::Millis;
use crate::run::string_enum;

string_enum!(
    /// Whether a pull request is still open.
    PrState, "pr_state" {
        Open => "open",
        Closed => "closed",
        Merged => "merged",
    }
);

string_enum!(
    /// The combined verdict of every status and check on the PR's head commit.
    CiState, "ci_state" {
        /// Something is still queued or running.
        Pending => "pending",
        Passing => "passing",
        Failing => "failing",
        /// No CI reported anything for the head commit.
        None => "none",
    }
);

string_enum!(
    /// Whether the forge can merge the PR's head into its base as they stand.
    Mergeability, "mergeable" {
        Clean => "clean",
        /// The head and the base change the same lines: a rebase needs someone to resolve it.
        Conflicting => "conflicting",
        /// The forge has not worked it out yet (GitHub computes it in the background), or the
        /// PR is no longer open.
        Unknown => "unknown",
    }
);

impl CiState {
    /// Folds many verdicts into one: any failure fails, then anything pending is pending.
    pub fn combine(states: impl IntoIterator<Item = CiState>) -> CiState {
        let mut result = CiState::None;
        for state in states {
            result = match (result, state) {
                (CiState::Failing, _) | (_, CiState::Failing) => CiState::Failing,
                (CiState::Pending, _) | (_, CiState::Pending) => CiState::Pending,
                (CiState::Passing, _) | (_, CiState::Passing) => CiState::Passing,
                (CiState::None, CiState::None) => CiState::None,
            };
        }
        result
    }

    /// True once CI will not change by itself any more.
    pub fn is_settled(self) -> bool {
        !matches!(self, CiState::Pending)
    }
}

/// A pull request Nightshift published and follows until it is merged or closed, or its
/// follow limit passes. Claimed for each poll under a lease, like runs, so one node asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FollowedPr {
    pub id: i64,
    pub project_id: i64,
    pub task_id: i64,
    /// The run that last pushed to it: a follow-up run of the task takes it over.
    pub run_id: i64,
    pub repo: String,
    pub number: u64,
    pub url: String,
    pub branch: String,
    pub state: PrState,
    pub ci: CiState,
    pub mergeable: Mergeability,
    pub behind_base: Option<bool>,
    pub head_sha: Option<String>,
    /// The ETags of the last poll with what they meant (the forge's validators, as JSON).
    #[serde(skip)]
    pub validators: Option<String>,
    pub opened_at: Millis,
    /// When the state, CI verdict or mergeability last changed.
    pub changed_at: Millis,
    /// When it was seen merged or closed.
    pub ended_at: Option<Millis>,
    /// Polled until then at the latest.
    pub follow_until: Millis,
    /// False once merged, closed, gone from the forge or past `follow_until`.
    pub following: bool,
    pub next_poll_at: Millis,
    pub polls: u64,
    /// Polls that found nothing new.
    pub unchanged_polls: u64,
    pub last_polled_at: Option<Millis>,
    /// Why the last poll failed, if it did; cleared by the next answer.
    pub last_error: Option<String>,
    /// Failed polls in a row, for the back-off.
    pub failures: u32,
    /// Review comments up to this time went to an address-review run.
    pub review_until: Option<Millis>,
    /// The last `/nightshift` comment handled (run started or ignored): its time and id, so
    /// none starts a second run.
    pub last_command: Option<(Millis, u64)>,
    /// Why the last `/nightshift` comment started no run, for the task page.
    pub command_note: Option<String>,
    /// When a forge's webhook delivery about it last asked for a poll.
    pub nudged_at: Option<Millis>,
}

impl FollowedPr {
    /// The state as people read it: `open · ci passing`, `merged`, `closed · ci failing`.
    pub fn describe(&self) -> String {
        describe(self.state, self.ci)
    }
}

/// A pull request's state and CI verdict as people read them.
pub fn describe(state: PrState, ci: CiState) -> String {
    let ci = match ci {
        CiState::Pending => "ci pending",
        CiState::Passing => "ci passing",
        CiState::Failing => "ci failing",
        CiState::None => "no ci",
    };
    format!("{state} · {ci}")
}

string_enum!(
    /// Why a follow-up run was started on a task's open pull request.
    FollowUpKind, "follow_up" {
        /// The pull request's CI failed: the failing jobs' output is the agent's input.
        FixCi => "fix_ci",
        /// Reviewers commented on the pull request, or a person asked for changes: their
        /// comments and instructions are the agent's input.
        AddressReview => "address_review",
        /// The base branch moved on: the branch is replayed onto it and checked again; where
        /// that conflicts, the agent resolves the conflicts.
        Rebase => "rebase",
    }
);

string_enum!(
    /// When the follower rebases a project's open pull requests by itself.
    RebasePolicy, "rebase" {
        /// Never: a person starts a rebase run.
        Off => "off",
        /// When the pull request conflicts with its base (it cannot be merged as it is).
        Conflicts => "conflicts",
        /// Whenever the base has commits the pull request lacks, conflicting or not.
        Behind => "behind",
    }
);

impl RebasePolicy {
    /// Whether a pull request in this state is rebased by itself under the policy.
    pub fn wants(self, mergeable: Mergeability, behind_base: Option<bool>) -> bool {
        match self {
            RebasePolicy::Off => false,
            RebasePolicy::Conflicts => mergeable == Mergeability::Conflicting,
            RebasePolicy::Behind => {
                mergeable == Mergeability::Conflicting || behind_base == Some(true)
            }
        }
    }
}

/// Who the follower says started a follow-up run it started by itself.
pub const AUTOMATIC: &str = "nightshift (automatic)";

/// A run of a task on its open pull request: it starts from the pushed branch, and pushes on
/// top of it to the same pull request, with a lease that never overwrites a person's push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FollowUp {
    pub kind: FollowUpKind,
    pub pr_number: u64,
    pub pr_url: String,
    pub branch: String,
    /// The pull request's head when the run was asked for: the commit its CI failed on, or
    /// the one to rebase.
    #[schema(required)]
    pub head_sha: Option<String>,
    /// Who started it.
    pub requested_by: String,
    /// For an address-review run: what it answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewRequest>,
}

/// What an address-review run answers: the review comments made after `comments_since`, and a
/// person's extra instructions (from the task page, the API, or a `/nightshift` comment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReviewRequest {
    /// Extra instructions for the agent, besides the comments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// Comments up to this time (milliseconds since the epoch) went to an earlier run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comments_since: Option<Millis>,
    /// The `/nightshift` comment that asked for it, when one did: its link on the forge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_url: Option<String>,
}

/// The marker a reviewer's comment starts with to send the agent back to the pull request.
pub const COMMENT_COMMAND: &str = "/nightshift";

/// The extra instructions of a `/nightshift` comment (the rest of it, trimmed; empty for a bare
/// command), or `None` when the comment is no command.
pub fn comment_command(body: &str) -> Option<&str> {
    let rest = body.trim_start().strip_prefix(COMMENT_COMMAND)?;
    // `/nightshifted` is a word of its own, not the command.
    if rest.chars().next().is_some_and(|c| !c.is_whitespace()) {
        return None;
    }
    Some(rest.trim())
}

/// What a run that just published hands to the follower.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFollow {
    pub project_id: i64,
    pub task_id: i64,
    pub run_id: i64,
    pub repo: String,
    pub number: u64,
    pub url: String,
    pub branch: String,
    /// Followed until then at the latest.
    pub follow_until: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_fold_and_read_as_words() {
        use CiState::*;
        assert_eq!(CiState::combine([Passing, Pending, Passing]), Pending);
        assert_eq!(CiState::combine([Pending, Failing]), Failing);
        assert_eq!(CiState::combine([]), None);
        assert_eq!(describe(PrState::Open, Passing), "open · ci passing");
        assert_eq!("merged".parse::<PrState>().unwrap(), PrState::Merged);
        assert!("gone".parse::<PrState>().is_err());
    }

    #[test]
    fn the_rebase_policy_says_which_pull_requests_it_takes() {
        use Mergeability::*;
        let policies = [
            RebasePolicy::Off,
            RebasePolicy::Conflicts,
            RebasePolicy::Behind,
        ];
        let wants = |mergeable, behind| policies.map(|p| p.wants(mergeable, behind));
        assert_eq!(wants(Conflicting, Some(true)), [false, true, true]);
        assert_eq!(wants(Clean, Some(true)), [false, false, true]);
        assert_eq!(wants(Clean, Some(false)), [false, false, false]);
        assert_eq!(wants(Unknown, None), [false, false, false]);
    }

    #[test]
    fn a_comment_command_is_the_marker_then_the_instructions() {
        assert_eq!(comment_command("/nightshift"), Some(""));
        assert_eq!(
            comment_command("  /nightshift please rename it\nand test it "),
            Some("please rename it\nand test it")
        );
        assert_eq!(comment_command("/nightshifted it"), None);
        assert_eq!(comment_command("LGTM /nightshift"), None);
    }
}
