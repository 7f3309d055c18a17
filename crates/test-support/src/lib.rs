//! Fixtures shared by the integration tests of every Nightshift crate: real git repositories on
//! disk (bare remotes behind `file://`), fixture projects of every ecosystem the checks know, a
//! scripted model server, and the agent CLIs' location.
//! Test-only code: it panics on setup failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod forge_fake;
pub mod git;
pub mod model_server;
pub mod postgres;
pub mod projects;

use std::path::PathBuf;

/// Where `scripts/install-test-tools.sh` installs the pinned agent CLIs.
pub fn test_tools_dir() -> PathBuf {
    match std::env::var_os("NIGHTSHIFT_TEST_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/test-tools"),
    }
}

/// The absolute path of an installed agent CLI (`claude`, `codex`, `claude-agent-acp`).
/// Panics when it is missing: the agent tests must fail, never skip, without their tools.
pub fn test_tool(name: &str) -> PathBuf {
    installed(name, test_tools_dir().join("node_modules/.bin").join(name))
}

/// The absolute path of a Python tool from the test tools' virtualenv
/// (`openapi-spec-validator`). Panics when it is missing, like [`test_tool`].
pub fn python_tool(name: &str) -> PathBuf {
    installed(name, test_tools_dir().join("python/bin").join(name))
}

fn installed(name: &str, path: PathBuf) -> PathBuf {
    match path.canonicalize() {
        Ok(path) => path,
        Err(_) => panic!(
            "test tool {name:?} is not installed at {}: run scripts/install-test-tools.sh \
             (set NIGHTSHIFT_TEST_TOOLS to install elsewhere)",
            path.display()
        ),
    }
}
