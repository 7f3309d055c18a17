//! A pull request as the follower sees it: open, merged or closed; whether it still merges
//! cleanly and is up to date with its base; its head commit; and the CI verdict on that commit.

use serde::{Deserialize, Serialize};

/// Whether a pull request is still open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrState {
    Open,
    Closed,
    Merged,
}

/// The combined verdict of every status and check on the PR's head commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CiState {
    /// Something is still queued or running.
    Pending,
    Passing,
    Failing,
    /// No CI reported anything for the head commit.
    None,
}

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

    /// True once CI will not change by itself any more; the engine stops polling then.
    pub fn is_settled(self) -> bool {
        !matches!(self, CiState::Pending)
    }
}

/// Whether the forge can merge the PR's head into its base as they stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mergeability {
    Clean,
    /// The head and the base change the same lines: a rebase needs someone to resolve it.
    Conflicting,
    /// The forge has not worked it out yet (GitHub computes it in the background), or the PR
    /// is no longer open.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrStatus {
    pub state: PrState,
    pub ci: CiState,
    /// The commit the PR's branch points at, which the CI verdict is about.
    pub head_sha: Option<String>,
    pub mergeable: Mergeability,
    /// Whether the base has commits the head lacks; `None` when the forge did not say.
    pub behind_base: Option<bool>,
}

impl PrStatus {
    /// Whether the branch moved away from the commit Nightshift pushed (`pushed`): someone
    /// else pushed to it, or force-pushed over it. A follow-up must not overwrite their work.
    pub fn head_moved_from(&self, pushed: &str) -> bool {
        self.head_sha.as_deref().is_some_and(|head| head != pushed)
    }

    /// Whether the base moved on in a way that needs a rebase: it conflicts, or it is behind.
    pub fn is_stale(&self) -> bool {
        self.state == PrState::Open
            && (self.mergeable == Mergeability::Conflicting || self.behind_base == Some(true))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_fold_and_heads_compare() {
        use CiState::*;
        assert_eq!(CiState::combine([Passing, Pending, Passing]), Pending);
        assert_eq!(CiState::combine([Pending, Failing]), Failing);
        assert_eq!(CiState::combine([]), None);
        let status = PrStatus {
            state: PrState::Open,
            ci: Passing,
            head_sha: Some("abc".into()),
            mergeable: Mergeability::Clean,
            behind_base: Some(true),
        };
        assert!(!status.head_moved_from("abc"));
        assert!(status.head_moved_from("def"));
        assert!(status.is_stale());
    }
}
