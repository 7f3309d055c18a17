//! A rebase run's replay of a pull request's commits onto the base branch's tip: commit by
//! commit where they apply, else as one uncommitted change with the conflict markers left in
//! the files for the agent to resolve.

use crate::{Git, Result, WorkspaceError, Worktree};

/// The base's commits since the fork point that a conflicting change is shown, at most.
const SHOWN_BASE_COMMITS: usize = 20;

/// What replaying a pull request's branch onto the base's tip left in the checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replayed {
    /// The branch already has the base's tip: there is nothing to rebase.
    UpToDate,
    /// Each of the branch's commits replayed onto the base, committed (those the base already
    /// has dropped).
    Clean,
    /// Commit by commit it conflicts, but the change as a whole applies to the base: it is in
    /// the checkout, uncommitted.
    Squashed,
    /// The change conflicts with the base: it is in the checkout, uncommitted, with conflict
    /// markers in `files`.
    Conflicts {
        files: Vec<String>,
        /// Where the branch left the base.
        fork_point: String,
        /// The base's commits since then, newest first, one line each (`sha subject`).
        base_commits: Vec<String>,
    },
}

impl Worktree {
    /// Replays the commits of the branch at `tip` that the base lacks onto the checkout's
    /// commit, the base's tip (see [`Mirrors::checkout_for_rebase`](crate::Mirrors)).
    pub async fn replay(&self, git: &Git, tip: &str) -> Result<Replayed> {
        let git = &self.git(git);
        let path = self.path();
        let base = self.base_commit().to_string();
        let fork_point = git
            .run(path, &["merge-base", &base, tip])
            .await
            .map_err(|_| WorkspaceError::Conflict {
                base: self.base().to_string(),
                detail: format!("{} shares no history with {}", self.branch(), self.base()),
            })?
            .trim()
            .to_string();
        if fork_point == base {
            return Ok(Replayed::UpToDate);
        }
        git.run(path, &["reset", "--hard", "--quiet", tip]).await?;
        if git.run(path, &["rebase", "--quiet", &base]).await.is_ok() {
            return Ok(Replayed::Clean);
        }
        let _ = git.run(path, &["rebase", "--abort"]).await;
        git.run(path, &["reset", "--hard", "--quiet", &base])
            .await?;
        let merged = git
            .run(path, &["merge", "--squash", "--no-commit", tip])
            .await;
        let files = git
            .run(path, &["diff", "--name-only", "--diff-filter=U", "-z"])
            .await?;
        let files: Vec<String> = files
            .trim_end_matches('\n')
            .split('\0')
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect();
        // The change as plain edits to the base, markers and all: what the agent and the
        // checks see, and what the run commits once they pass.
        git.run(path, &["reset", "--quiet"]).await?;
        if merged.is_ok() && files.is_empty() {
            return Ok(Replayed::Squashed);
        }
        let range = format!("{fork_point}..{base}");
        let count = format!("-{SHOWN_BASE_COMMITS}");
        let log = git
            .run(
                path,
                &["log", "--no-decorate", "--format=%h %s", &count, &range],
            )
            .await?;
        Ok(Replayed::Conflicts {
            files,
            fork_point,
            base_commits: log.lines().map(str::to_string).collect(),
        })
    }

    /// The conflict markers still in `files` (paths in the checkout), as `path:line`.
    pub fn conflict_markers(&self, files: &[String]) -> Vec<String> {
        let mut found = Vec::new();
        for file in files {
            // A file the resolution deleted has no markers left.
            let Ok(bytes) = std::fs::read(self.path().join(file)) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            for (n, line) in text.lines().enumerate() {
                if is_marker(line) {
                    found.push(format!("{file}:{}", n + 1));
                }
            }
        }
        found
    }
}

/// A line git writes around a conflict: `<<<<<<< ours`, `=======`, `>>>>>>> theirs`.
fn is_marker(line: &str) -> bool {
    let marked = |prefix: &str| {
        line.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(' '))
    };
    marked("<<<<<<<") || marked(">>>>>>>") || line == "======="
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_markers_are_told_from_text() {
        assert!(is_marker("<<<<<<< HEAD"));
        assert!(is_marker(">>>>>>> abc123 (Say goodbye)"));
        assert!(is_marker("======="));
        assert!(is_marker("<<<<<<<"));
        assert!(!is_marker("<<<<<<<< eight"));
        assert!(!is_marker("======= heading"));
        assert!(!is_marker("a <<<<<<< b"));
    }
}
