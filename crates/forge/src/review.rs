//! What people said on a pull request: conversation comments, review summaries and inline
//! review comments in one shape, and what the person who said it may do on the repository.

use serde::{Deserialize, Serialize};

/// Where on the pull request a comment was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommentKind {
    /// The PR's conversation (GitHub and Gitea issue comments, GitLab notes).
    Conversation,
    /// The body of a submitted review.
    Review,
    /// A review comment on a line of the diff.
    Inline,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrComment {
    /// The forge's id of the comment (unique per kind).
    pub id: u64,
    pub kind: CommentKind,
    /// The author's login.
    pub author: String,
    /// Markdown, as written.
    pub body: String,
    /// The file an inline comment is on.
    pub path: Option<String>,
    /// The line (in the new version of the file) an inline comment is on.
    pub line: Option<u64>,
    /// Milliseconds since the epoch.
    pub created_at: i64,
    pub url: Option<String>,
}

/// What a person may do on a repository, in the forges' common words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Not a collaborator or member.
    None,
    Read,
    Write,
    Admin,
}

impl Permission {
    /// Whether they can push: only then may their comment start a run.
    pub fn can_write(self) -> bool {
        self >= Permission::Write
    }

    /// GitHub's and Gitea's words (`admin`, `maintain`, `write`, `triage`, `read`, `none`).
    pub(crate) fn from_word(word: &str) -> Permission {
        match word {
            "admin" | "owner" => Permission::Admin,
            "maintain" | "write" => Permission::Write,
            "triage" | "read" => Permission::Read,
            _ => Permission::None,
        }
    }

    /// GitLab's access levels: 30 (Developer) and up push; 50 is Owner, 40 Maintainer.
    pub(crate) fn from_gitlab_level(level: u64) -> Permission {
        match level {
            40.. => Permission::Admin,
            30..=39 => Permission::Write,
            1..=29 => Permission::Read,
            0 => Permission::None,
        }
    }
}

/// Keeps the comments after `since`, oldest first.
pub(crate) fn after(mut comments: Vec<PrComment>, since: Option<i64>) -> Vec<PrComment> {
    comments.retain(|c| since.is_none_or(|since| c.created_at > since));
    comments.sort_by_key(|c| (c.created_at, c.id));
    comments
}

/// A forge timestamp (RFC 3339, `Z` or a `±hh:mm` offset as Gitea sends) in milliseconds; 0
/// when it is missing or unreadable.
pub(crate) fn millis(text: &str) -> i64 {
    let text = text.trim();
    // GitLab's webhooks still write `2026-01-01 10:00:00 UTC`.
    if let Some(utc) = text.strip_suffix(" UTC") {
        return nightshift_core::parse_timestamp(&format!("{}Z", utc.replacen(' ', "T", 1)))
            .unwrap_or_default();
    }
    let offset = text.len().checked_sub(6).and_then(|at| {
        let (local, zone) = text.split_at(at);
        let sign = match zone.as_bytes().first() {
            Some(b'+') => 1,
            Some(b'-') => -1,
            _ => return None,
        };
        let (hours, minutes) = zone[1..].split_once(':')?;
        let minutes = hours.parse::<i64>().ok()? * 60 + minutes.parse::<i64>().ok()?;
        local
            .contains('T')
            .then_some((local, sign * minutes * 60_000))
    });
    match offset {
        Some((local, offset)) => {
            nightshift_core::parse_timestamp(&format!("{local}Z")).map_or(0, |ms| ms - offset)
        }
        None => nightshift_core::parse_timestamp(text).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_with_offsets() {
        let utc = millis("2026-01-01T10:00:00Z");
        assert!(utc > 0);
        assert_eq!(millis("2026-01-01T12:00:00+02:00"), utc);
        assert_eq!(millis("2026-01-01T10:00:00.000Z"), utc);
        assert_eq!(millis("2026-01-01T05:30:00-04:30"), utc);
        assert_eq!(millis("2026-01-01 10:00:00 UTC"), utc);
        assert_eq!(millis("nonsense"), 0);
    }

    #[test]
    fn permissions_from_the_forges_words() {
        assert!(Permission::from_word("maintain").can_write());
        assert!(!Permission::from_word("triage").can_write());
        assert!(Permission::from_gitlab_level(30).can_write());
        assert!(!Permission::from_gitlab_level(20).can_write());
    }
}
