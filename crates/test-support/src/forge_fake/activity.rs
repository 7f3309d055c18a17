//! What happens on a pull request after it opens, as a test stages it: CI (commit statuses,
//! GitHub check runs with annotations and Actions logs, GitLab pipelines with jobs and traces),
//! comments and reviews, people pushing to branches; and what git says about a branch against
//! its base (conflicts, commits behind).

use std::path::Path;
use std::process::{Command, Stdio};

use super::{ForgeFake, git};

/// A commit status (GitHub, Gitea): `state` is `pending`, `success`, `failure` or `error`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FakeStatus {
    pub context: String,
    pub state: String,
    pub description: String,
    pub target_url: String,
}

/// A GitHub check run. `log` makes it a GitHub Actions job whose log can be downloaded.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FakeCheck {
    /// Given by the fake.
    pub id: u64,
    pub name: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    pub conclusion: Option<String>,
    pub title: String,
    pub summary: String,
    pub annotations: Vec<FakeAnnotation>,
    pub log: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FakeAnnotation {
    pub path: String,
    pub line: u64,
    /// `notice`, `warning` or `failure`.
    pub level: String,
    pub message: String,
}

/// A GitLab job in the pipeline of a commit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FakeJob {
    /// Given by the fake.
    pub id: u64,
    pub name: String,
    pub stage: String,
    /// `success`, `failed`, `running`, …
    pub status: String,
    pub allow_failure: bool,
    pub trace: String,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Pipeline {
    pub id: u64,
    pub status: String,
    pub jobs: Vec<FakeJob>,
}

/// A review as a person submits it: `state` is `APPROVED`, `CHANGES_REQUESTED` or `COMMENTED`
/// (the fake speaks each forge's words), with comments on lines of the diff.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Review {
    pub author: String,
    pub state: String,
    pub body: String,
    /// (path, line, body).
    pub inline: Vec<(String, u64, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) enum CommentPlace {
    Conversation,
    Review {
        state: String,
        inline: usize,
    },
    Inline {
        path: String,
        line: u64,
        review: u64,
    },
}

#[derive(Debug, Clone)]
pub(super) struct StoredComment {
    pub id: u64,
    pub pull: u64,
    pub place: CommentPlace,
    pub author: String,
    pub body: String,
    /// Milliseconds since the epoch.
    pub created_ms: i64,
}

impl StoredComment {
    pub fn created(&self) -> String {
        nightshift_core::format_timestamp(self.created_ms)
    }
}

impl ForgeFake {
    /// A commit status with only a context and a state.
    pub fn set_commit_status(&self, full_name: &str, sha: &str, context: &str, state: &str) {
        self.add_commit_status(
            full_name,
            sha,
            FakeStatus {
                context: context.into(),
                state: state.into(),
                ..FakeStatus::default()
            },
        );
    }

    /// A commit status, replacing the one with the same context.
    pub fn add_commit_status(&self, full_name: &str, sha: &str, status: FakeStatus) {
        if let Some(repo) = self.state().repo_mut(full_name) {
            let list = repo.statuses.entry(sha.to_string()).or_default();
            list.retain(|s| s.context != status.context);
            list.push(status);
        }
    }

    /// A GitHub check run with only a status and a conclusion.
    pub fn set_check_run(
        &self,
        full_name: &str,
        sha: &str,
        name: &str,
        status: &str,
        conclusion: Option<&str>,
    ) {
        self.add_check_run(
            full_name,
            sha,
            FakeCheck {
                name: name.into(),
                status: status.into(),
                conclusion: conclusion.map(str::to_string),
                ..FakeCheck::default()
            },
        );
    }

    /// A GitHub check run, replacing the one with the same name. Returns its id.
    pub fn add_check_run(&self, full_name: &str, sha: &str, mut check: FakeCheck) -> u64 {
        let mut state = self.state();
        check.id = state.next_id();
        let id = check.id;
        if let Some(repo) = state.repo_mut(full_name) {
            let list = repo.check_runs.entry(sha.to_string()).or_default();
            list.retain(|c| c.name != check.name);
            list.push(check);
        }
        id
    }

    /// The GitLab pipeline of `sha`: `running`, `success`, `failed`, …
    pub fn set_pipeline(&self, full_name: &str, sha: &str, status: &str) {
        let mut state = self.state();
        let id = state.next_id();
        if let Some(repo) = state.repo_mut(full_name) {
            let pipeline = repo.pipelines.entry(sha.to_string()).or_default();
            if pipeline.id == 0 {
                pipeline.id = id;
            }
            pipeline.status = status.to_string();
        }
    }

    /// A job in the GitLab pipeline of `sha` (created running when there is none). Returns its id.
    pub fn add_pipeline_job(&self, full_name: &str, sha: &str, mut job: FakeJob) -> u64 {
        let mut state = self.state();
        let (pipeline_id, job_id) = (state.next_id(), state.next_id());
        job.id = job_id;
        if let Some(repo) = state.repo_mut(full_name) {
            let pipeline = repo.pipelines.entry(sha.to_string()).or_default();
            if pipeline.id == 0 {
                pipeline.id = pipeline_id;
                pipeline.status = "running".into();
            }
            pipeline.jobs.push(job);
        }
        job_id
    }

    /// `author` comments on the pull request's conversation. Returns the comment's id.
    pub fn comment(&self, full_name: &str, number: u64, author: &str, body: &str) -> u64 {
        self.store_comment(full_name, number, author, body, CommentPlace::Conversation)
    }

    /// `review.author` submits a review with its inline comments. Returns the review's id.
    pub fn review(&self, full_name: &str, number: u64, review: Review) -> u64 {
        let place = CommentPlace::Review {
            state: review.state.clone(),
            inline: review.inline.len(),
        };
        let id = self.store_comment(full_name, number, &review.author, &review.body, place);
        for (path, line, body) in review.inline {
            let place = CommentPlace::Inline {
                path,
                line,
                review: id,
            };
            self.store_comment(full_name, number, &review.author, &body, place);
        }
        id
    }

    fn store_comment(
        &self,
        full_name: &str,
        number: u64,
        author: &str,
        body: &str,
        place: CommentPlace,
    ) -> u64 {
        let mut state = self.state();
        let id = state.next_id();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as i64;
        // Whole, increasing seconds: forges filter `since` at second precision.
        let created_ms = (now / 1000 * 1000).max(state.clock_ms + 1000);
        state.clock_ms = created_ms;
        if let Some(repo) = state.repo_mut(full_name) {
            repo.comments.push(StoredComment {
                id,
                pull: number,
                place,
                author: author.to_string(),
                body: body.to_string(),
                created_ms,
            });
        }
        id
    }

    /// Someone commits `files` on `branch` (from `main` when it does not exist) and pushes,
    /// as a person would outside Nightshift. Returns the new commit.
    pub fn push_commit(&self, full_name: &str, branch: &str, files: &[(&str, &str)]) -> String {
        let bare = self.bare_path(full_name);
        let work = tempfile::tempdir().expect("scratch directory");
        let dir = work.path();
        let run = |args: &[&str]| git(dir, args).expect("git in the scratch clone");
        run(&["init", "-q"]);
        run(&[
            "fetch",
            "-q",
            &bare.to_string_lossy(),
            "+refs/heads/*:refs/remotes/o/*",
        ]);
        let start = if super::rev_parse(&bare, branch).is_some() {
            format!("o/{branch}")
        } else {
            "o/main".to_string()
        };
        run(&["checkout", "-q", "-b", "work", &start]);
        for (path, content) in files {
            let full = dir.join(path);
            if let Some(parent) = full.parent() {
                std::fs::create_dir_all(parent).expect("directories");
            }
            std::fs::write(&full, content).expect("file");
        }
        run(&["add", "--all"]);
        run(&[
            "-c",
            "user.name=Someone",
            "-c",
            "user.email=someone@example.com",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "a person's commit",
        ]);
        run(&[
            "push",
            "-q",
            "--force",
            &bare.to_string_lossy(),
            &format!("HEAD:refs/heads/{branch}"),
        ]);
        super::rev_parse(&bare, branch).unwrap_or_default()
    }
}

/// What git says about `head` against `base` in a bare repository.
#[derive(Debug, Clone, Default)]
pub(super) struct Comparison {
    pub conflicting: bool,
    pub ahead_by: u64,
    pub behind_by: u64,
    pub merge_base: String,
}

pub(super) fn compare(bare: &Path, base: &str, head: &str) -> Option<Comparison> {
    let output = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(bare)
            .stderr(Stdio::null())
            .output()
            .ok()
    };
    let count = |range: String| -> Option<u64> {
        let out = output(&["rev-list", "--count", &range])?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    let merge_base = output(&["merge-base", base, head]).filter(|o| o.status.success())?;
    // `merge-tree --write-tree` exits 1 when the merge has conflicts.
    let merge = output(&["merge-tree", "--write-tree", "--name-only", base, head])?;
    Some(Comparison {
        conflicting: merge.status.code() == Some(1),
        ahead_by: count(format!("{base}..{head}"))?,
        behind_by: count(format!("{head}..{base}"))?,
        merge_base: String::from_utf8_lossy(&merge_base.stdout)
            .trim()
            .to_string(),
    })
}
