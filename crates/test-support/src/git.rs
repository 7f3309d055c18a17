//! Bare git repositories on disk, reached through `file://`, that a test can seed, move and
//! inspect like a real remote.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs git with a fixed identity and no user configuration; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Where [`RemoteRepo`] keeps its repositories: the directory an operator of a test server names
/// in `local_roots` so that tasks may use them.
pub fn repos_root() -> PathBuf {
    std::env::temp_dir()
}

/// A bare repository with a `main` branch, plus scratch space to make commits to it.
pub struct RemoteRepo {
    dir: tempfile::TempDir,
}

impl RemoteRepo {
    /// A remote whose `main` holds `files` (path, content). Paths ending in `.sh` are executable.
    pub fn with_files(files: &[(&str, &str)]) -> RemoteRepo {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("remote.git");
        git(
            dir.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                &bare.to_string_lossy(),
            ],
        );
        let repo = RemoteRepo { dir };
        repo.commit("main", files, "initial commit");
        repo
    }

    /// A remote whose `main` holds the commits of the checkout at `work` (its `HEAD`).
    pub fn from_checkout(work: &Path) -> RemoteRepo {
        let dir = tempfile::tempdir().expect("tempdir");
        let bare = dir.path().join("remote.git");
        let bare_arg = bare.to_string_lossy().into_owned();
        git(
            dir.path(),
            &[
                "init",
                "--quiet",
                "--bare",
                "--initial-branch=main",
                &bare_arg,
            ],
        );
        git(
            work,
            &["push", "--quiet", &bare_arg, "HEAD:refs/heads/main"],
        );
        RemoteRepo { dir }
    }

    pub fn bare_path(&self) -> PathBuf {
        self.dir.path().join("remote.git")
    }

    pub fn url(&self) -> String {
        format!("file://{}", self.bare_path().display())
    }

    fn scratch(&self, branch: &str) -> PathBuf {
        let work = self
            .dir
            .path()
            .join(format!("scratch-{}", branch.replace('/', "-")));
        if work.exists() {
            std::fs::remove_dir_all(&work).expect("clean scratch");
        }
        git(
            self.dir.path(),
            &["clone", "--quiet", &self.url(), &work.to_string_lossy()],
        );
        work
    }

    /// Commits `files` on top of `branch` (created from main when missing) and pushes it.
    pub fn commit(&self, branch: &str, files: &[(&str, &str)], message: &str) -> String {
        let work = self.scratch(branch);
        let has_commits = !git(&work, &["ls-remote", "--heads", "origin"])
            .trim()
            .is_empty();
        if has_commits {
            let exists = !git(&work, &["ls-remote", "--heads", "origin", branch])
                .trim()
                .is_empty();
            if exists {
                git(&work, &["checkout", "--quiet", branch]);
            } else {
                git(&work, &["checkout", "--quiet", "-b", branch, "origin/main"]);
            }
        } else {
            git(&work, &["checkout", "--quiet", "-b", branch]);
        }
        for (path, content) in files {
            let full = work.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(&full, content).unwrap();
            if path.ends_with(".sh") {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&full, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
        git(&work, &["add", "--all"]);
        git(
            &work,
            &["commit", "--quiet", "--allow-empty", "-m", message],
        );
        git(
            &work,
            &[
                "push",
                "--quiet",
                "origin",
                &format!("HEAD:refs/heads/{branch}"),
            ],
        );
        git(&work, &["rev-parse", "HEAD"]).trim().to_string()
    }

    /// The commit `branch` points at on the remote, if it exists.
    pub fn head(&self, branch: &str) -> Option<String> {
        let out = git(
            &self.bare_path(),
            &[
                "for-each-ref",
                "--format=%(objectname)",
                &format!("refs/heads/{branch}"),
            ],
        );
        let sha = out.trim();
        (!sha.is_empty()).then(|| sha.to_string())
    }

    /// Branch names on the remote.
    pub fn branches(&self) -> Vec<String> {
        git(
            &self.bare_path(),
            &["for-each-ref", "--format=%(refname:short)", "refs/heads"],
        )
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// A file's content at `rev` on the remote.
    pub fn show(&self, rev: &str, path: &str) -> String {
        git(&self.bare_path(), &["show", &format!("{rev}:{path}")])
    }

    /// The full commit message of `rev`.
    pub fn message(&self, rev: &str) -> String {
        git(&self.bare_path(), &["log", "-1", "--format=%B", rev])
    }

    /// The parent commit of `rev`.
    pub fn parent(&self, rev: &str) -> String {
        git(&self.bare_path(), &["rev-parse", &format!("{rev}^")])
            .trim()
            .to_string()
    }
}
