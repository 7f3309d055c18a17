//! Fixture projects in the shapes real repositories have — a Rust crate, uv, npm, pnpm, yarn 4,
//! tox, Go, Makefile and pre-commit projects — each with a change its checks accept and one they
//! refuse, plus the environment the real toolchains need to run their checks in a test.

mod files;

use std::path::{Path, PathBuf};
use std::process::Command;

pub use files::all;

use crate::git::{RemoteRepo, git};

/// How a project's lockfile is made: by its own package manager, once, then kept in the
/// test tools' cache (keyed by the manifest) so later runs need no resolution.
#[derive(Debug, Clone, Copy)]
pub struct Lock {
    pub file: &'static str,
    pub command: &'static str,
}

#[derive(Debug, Clone)]
pub struct Project {
    pub name: &'static str,
    pub files: Vec<(&'static str, String)>,
    /// A change every check accepts (after the formatter applied).
    pub good: Vec<(&'static str, String)>,
    /// A change a check refuses.
    pub bad: Vec<(&'static str, String)>,
    pub lock: Option<Lock>,
    /// Programs its checks need on PATH.
    pub needs: &'static [&'static str],
}

impl Project {
    pub fn named(name: &str) -> Project {
        all()
            .into_iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no fixture project {name}"))
    }

    /// Writes the project to `dir`; its lockfile, if any, is a placeholder (enough to detect
    /// checks from, not to install from).
    pub fn write(&self, dir: &Path) {
        write_files(dir, &self.files);
        if let Some(lock) = self.lock {
            let path = dir.join(lock.file);
            if !path.exists() {
                std::fs::write(path, "").unwrap();
            }
        }
    }

    /// A bare remote whose `main` holds the project (placeholder lockfile).
    pub fn remote(&self) -> RemoteRepo {
        let mut files: Vec<(&str, &str)> =
            self.files.iter().map(|(p, c)| (*p, c.as_str())).collect();
        if let Some(lock) = self.lock {
            files.push((lock.file, ""));
        }
        RemoteRepo::with_files(&files)
    }

    /// The project as a git checkout in `dir` with a real lockfile, ready for its checks to
    /// run. Panics with the fix when a program it needs is missing.
    pub fn checkout(&self, dir: &Path) {
        for program in self.needs {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {program}")])
                .output()
                .is_ok_and(|o| o.status.success());
            assert!(
                found,
                "the {} fixture needs `{program}` on PATH: run scripts/install-system-deps.sh",
                self.name
            );
        }
        write_files(dir, &self.files);
        if self.name == "yarn-berry" {
            let release = yarn_release();
            let to = dir.join(".yarn/releases/yarn-4.5.3.cjs");
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&release, &to).unwrap();
        }
        if let Some(lock) = self.lock {
            self.make_lock(dir, lock);
        }
        git(dir, &["init", "--quiet", "--initial-branch=main"]);
        git(dir, &["add", "--all"]);
        git(dir, &["commit", "--quiet", "-m", "initial commit"]);
    }

    /// A bare remote whose `main` holds the project as [`checkout`](Project::checkout) makes
    /// it: real lockfile, shipped yarn release.
    pub fn published(&self) -> RemoteRepo {
        let work = tempfile::tempdir().unwrap();
        self.checkout(work.path());
        RemoteRepo::from_checkout(work.path())
    }

    fn make_lock(&self, dir: &Path, lock: Lock) {
        let manifest: String = self
            .files
            .iter()
            .filter(|(p, _)| !p.contains('/') || p.starts_with(".yarn"))
            .map(|(p, c)| format!("{p}\n{c}\n"))
            .collect();
        // FNV-1a: stable across runs and Rust releases.
        let key = manifest.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
        let cached = cache_dir("locks").join(format!("{}-{key:016x}-{}", self.name, lock.file));
        if !cached.exists() {
            let home = tempfile::tempdir().unwrap();
            let out = Command::new("sh")
                .args(["-c", lock.command])
                .current_dir(dir)
                .env_clear()
                .envs(check_env(home.path(), true))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "`{}` failed for the {} fixture: {}{}",
                lock.command,
                self.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::copy(dir.join(lock.file), &cached).unwrap();
        }
        std::fs::copy(&cached, dir.join(lock.file)).unwrap();
        // What a lock command leaves besides the lockfile is not part of the project.
        for leftover in [
            "node_modules",
            ".venv",
            ".yarn/install-state.gz",
            ".pnp.cjs",
        ] {
            let path = dir.join(leftover);
            if path.is_dir() {
                std::fs::remove_dir_all(&path).unwrap();
            } else if path.exists() {
                std::fs::remove_file(&path).unwrap();
            }
        }
    }
}

/// A shell command that writes `files` (path, content) in the current directory, as a command
/// agent makes a change: the contents travel base64-encoded, whatever characters they hold.
pub fn writing(files: &[(&str, String)]) -> String {
    use base64::Engine;
    files
        .iter()
        .map(|(path, content)| {
            let encoded = base64::engine::general_purpose::STANDARD.encode(content);
            format!(
                "mkdir -p \"$(dirname '{path}')\" && printf %s '{encoded}' | base64 -d > '{path}'"
            )
        })
        .collect::<Vec<_>>()
        .join(" && ")
}

/// Writes `files` (path, content) under `dir`.
pub fn write_files<S: AsRef<str>>(dir: &Path, files: &[(&str, S)]) {
    for (path, content) in files {
        let full = dir.join(path);
        std::fs::create_dir_all(full.parent().unwrap()).unwrap();
        std::fs::write(&full, content.as_ref()).unwrap();
    }
}

/// A directory under the test tools for downloads kept between test runs.
pub fn cache_dir(name: &str) -> PathBuf {
    let dir = crate::test_tools_dir().join("cache").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The yarn 4 release a yarn project ships in `.yarn/releases`, as
/// `scripts/install-test-tools.sh` puts it in the test tools.
pub fn yarn_release() -> PathBuf {
    let path = crate::test_tools_dir().join("node_modules/@yarnpkg/cli-dist/bin/yarn.js");
    assert!(
        path.exists(),
        "the yarn release is not at {}: run scripts/install-test-tools.sh",
        path.display()
    );
    path
}

/// Variables the machine needs to reach package registries (a TLS-inspecting proxy's CA,
/// proxies, mirrors), passed on from the test's own environment.
const PASSED_ON: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "PIP_CERT",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "UV_INDEX_URL",
    "npm_config_registry",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "GOPROXY",
    "PYENV_ROOT",
    "PYENV_VERSION",
];

/// The environment the checks of a fixture run with in a test: a HOME of their own, download
/// caches shared between tests, the toolchains' homes, and — unless `network` — every
/// package manager told to stay offline, as checks have no network in a run.
pub fn check_env(home: &Path, network: bool) -> Vec<(String, String)> {
    let real_home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    let path = std::env::var("PATH").unwrap_or_default();
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), path),
        ("LANG".into(), "C.UTF-8".into()),
        ("HOME".into(), home.display().to_string()),
        (
            "RUSTUP_HOME".into(),
            std::env::var("RUSTUP_HOME").unwrap_or(format!("{real_home}/.rustup")),
        ),
        (
            "CARGO_HOME".into(),
            std::env::var("CARGO_HOME").unwrap_or(format!("{real_home}/.cargo")),
        ),
        (
            "CARGO_TARGET_DIR".into(),
            home.join("target").display().to_string(),
        ),
        ("npm_config_cache".into(), cache("npm")),
        ("npm_config_update_notifier".into(), "false".into()),
        ("npm_config_audit".into(), "false".into()),
        ("npm_config_fund".into(), "false".into()),
        ("COREPACK_HOME".into(), cache("corepack")),
        ("COREPACK_INTEGRITY_KEYS".into(), "0".into()),
        ("COREPACK_ENABLE_DOWNLOAD_PROMPT".into(), "0".into()),
        ("YARN_GLOBAL_FOLDER".into(), cache("yarn")),
        ("YARN_ENABLE_TELEMETRY".into(), "0".into()),
        ("UV_CACHE_DIR".into(), cache("uv")),
        ("UV_PYTHON_DOWNLOADS".into(), "never".into()),
        ("UV_NATIVE_TLS".into(), "1".into()),
        ("PIP_CACHE_DIR".into(), cache("pip")),
        ("PIP_DISABLE_PIP_VERSION_CHECK".into(), "1".into()),
        ("PRE_COMMIT_HOME".into(), cache("pre-commit")),
        ("GOPATH".into(), home.join("go").display().to_string()),
        ("GOMODCACHE".into(), cache("gomod")),
        ("GOCACHE".into(), cache("gobuild")),
        ("GOFLAGS".into(), "-modcacherw".into()),
    ];
    if std::env::var_os("PYENV_ROOT").is_none() {
        env.push(("PYENV_ROOT".into(), format!("{real_home}/.pyenv")));
    }
    for name in PASSED_ON {
        if let Ok(value) = std::env::var(name) {
            env.push((name.to_string(), value));
        }
    }
    if !network {
        for (k, v) in [
            ("UV_OFFLINE", "1"),
            ("PIP_NO_INDEX", "1"),
            ("npm_config_offline", "true"),
            ("COREPACK_ENABLE_NETWORK", "0"),
            ("YARN_ENABLE_NETWORK", "0"),
            ("GOPROXY", "off"),
            ("CARGO_NET_OFFLINE", "true"),
        ] {
            env.retain(|(name, _)| name != k);
            env.push((k.into(), v.into()));
        }
    }
    env
}

fn cache(name: &str) -> String {
    cache_dir(name).display().to_string()
}
