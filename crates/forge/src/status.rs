//! A pull request as the follower sees it: open, merged or closed; whether it still merges
//! cleanly and is up to date with its base; its head commit; and the CI verdict on that commit.

pub use nightshift_core::{CiState, Mergeability, PrState};
use serde::{Deserialize, Serialize};

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
    fn heads_compare() {
        use CiState::*;
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
