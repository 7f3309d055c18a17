//! Running `git` with a fixed, minimal environment and typed errors.

use std::path::{Path, PathBuf};

use nightshift_core::{MASK, Redactor};
use nightshift_sandbox::{ProcessSpec, Sandbox};

use crate::{Result, WorkspaceError};

/// How Nightshift invokes git: no prompts, no user or system config, a fixed identity.
#[derive(Debug, Clone)]
pub struct Git {
    sandbox: Sandbox,
    home: PathBuf,
    /// Extra `-c key=value` settings given through the environment (e.g. an auth header), so
    /// they never appear on a command line other processes can read.
    config: Vec<(String, String)>,
    /// Secrets to mask in anything git prints back (token shapes and URL credentials are
    /// masked anyway).
    secrets: Vec<String>,
    /// Extra environment, e.g. the repository a worktree's commands are pinned to.
    env: Vec<(String, String)>,
    /// Whether git may use its `file` transport (local repositories).
    local_transport: bool,
}

/// The transports git may use besides `file`: helpers such as `fd::` and `ext::` never.
const PROTOCOLS: &str = "https:http:ssh:git";

impl Git {
    pub fn new(home: impl Into<PathBuf>) -> Self {
        Git {
            sandbox: Sandbox::new(),
            home: home.into(),
            config: Vec::new(),
            secrets: Vec::new(),
            env: Vec::new(),
            local_transport: true,
        }
    }

    /// A copy that refuses git's `file` transport: for a server that allows no local repository.
    pub fn without_local_transport(&self) -> Self {
        let mut git = self.clone();
        git.local_transport = false;
        git
    }

    /// A copy that passes `key = value` to git as configuration.
    pub fn with_config(&self, key: &str, value: &str) -> Self {
        let mut git = self.clone();
        git.config.push((key.to_string(), value.to_string()));
        git
    }

    /// A copy for a checkout that sandboxed processes could write to: the repository comes
    /// from `git_dir` (which the sandbox cannot change), never from the checkout's own `.git`
    /// file, and nothing runs hooks, a filesystem monitor or commands of a nested repository.
    /// Without this an agent could point `.git` at a config of its own and have Nightshift run
    /// its commands outside the sandbox.
    pub fn pinned_to(&self, git_dir: &Path, work_tree: &Path) -> Self {
        let mut git = self.clone();
        git.env.extend([
            ("GIT_DIR".to_string(), git_dir.display().to_string()),
            ("GIT_WORK_TREE".to_string(), work_tree.display().to_string()),
        ]);
        for (key, value) in [
            ("core.hooksPath", "/dev/null"),
            ("core.fsmonitor", "false"),
            ("diff.ignoreSubmodules", "all"),
            ("status.submoduleSummary", "false"),
            ("submodule.recurse", "false"),
        ] {
            git.config.push((key.to_string(), value.to_string()));
        }
        git
    }

    /// A copy whose git sees a checkout through `view` (see [`Worktree::view`](crate::Worktree::view)).
    pub fn with_mount(&self, view: nightshift_sandbox::MountView) -> Self {
        let mut git = self.clone();
        git.sandbox = git.sandbox.with_mount(view);
        git
    }

    /// A copy that passes `key = value` to git as configuration, masking `value` in errors.
    pub fn with_secret_config(&self, key: &str, value: &str) -> Self {
        let mut git = self.with_config(key, value);
        git.secrets.push(value.to_string());
        git
    }

    /// A copy that takes git configuration given as `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_<n>`/
    /// `GIT_CONFIG_VALUE_<n>` pairs (as a forge hands out its push credential), merged with
    /// the settings this `Git` already has. Every value is treated as a secret.
    pub fn with_config_env(&self, env: &[(String, String)]) -> Self {
        let get = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let count: usize = get("GIT_CONFIG_COUNT")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut git = self.clone();
        for i in 0..count {
            if let (Some(key), Some(value)) = (
                get(&format!("GIT_CONFIG_KEY_{i}")),
                get(&format!("GIT_CONFIG_VALUE_{i}")),
            ) {
                git = git.with_secret_config(key, value);
            }
        }
        git
    }

    fn spec(&self, dir: &Path, args: &[&str]) -> ProcessSpec {
        let mut spec = ProcessSpec::new("git", dir)
            .args(args.iter().copied())
            .env("HOME", self.home.display().to_string())
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Nightshift")
            .env("GIT_AUTHOR_EMAIL", "nightshift@localhost")
            .env("GIT_COMMITTER_NAME", "Nightshift")
            .env("GIT_COMMITTER_EMAIL", "nightshift@localhost");
        for (key, value) in &self.env {
            spec = spec.env(key.clone(), value.clone());
        }
        if let Ok(sock) = std::env::var("SSH_AUTH_SOCK") {
            spec = spec.env("SSH_AUTH_SOCK", sock);
        }
        // Inherited by every git process this one starts, so a remote helper or submodule
        // cannot bring in another transport either.
        let protocols = if self.local_transport {
            format!("{PROTOCOLS}:file")
        } else {
            PROTOCOLS.to_string()
        };
        spec = spec.env("GIT_ALLOW_PROTOCOL", protocols);
        // A redirect could send git to a host nobody checked.
        let fixed = [("http.followRedirects", "false")];
        let config = fixed
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(self.config.iter().cloned());
        let mut count = 0;
        for (i, (k, v)) in config.enumerate() {
            spec = spec
                .env(format!("GIT_CONFIG_KEY_{i}"), k)
                .env(format!("GIT_CONFIG_VALUE_{i}"), v);
            count = i + 1;
        }
        spec.env("GIT_CONFIG_COUNT", count.to_string())
    }

    /// Runs git in `dir` and returns its stdout; a non-zero exit is an error with stderr.
    pub async fn run(&self, dir: &Path, args: &[&str]) -> Result<String> {
        let (exit, lines) = self.sandbox.output(&self.spec(dir, args)).await?;
        let mut stdout = String::new();
        let mut stderr = String::new();
        for line in lines {
            let out = if line.stream == nightshift_core::OutputStream::Stdout {
                &mut stdout
            } else {
                &mut stderr
            };
            out.push_str(&line.text);
            out.push('\n');
        }
        if exit.success() {
            Ok(stdout)
        } else {
            Err(WorkspaceError::Git {
                command: format!("git {}", self.mask(&args.join(" "))),
                exit: exit.to_string(),
                stderr: self.mask(stderr.trim()),
            })
        }
    }

    /// `text` through the one secret filter, with this git's secrets: none of it at all should
    /// the filter not build, for a secret must never get through.
    fn mask(&self, text: &str) -> String {
        match Redactor::new(&self.secrets) {
            Ok(redactor) => redactor.redact(text).into_owned(),
            Err(_) => MASK.to_string(),
        }
    }
}
