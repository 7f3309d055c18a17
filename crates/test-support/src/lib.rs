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

/// One sample of a Prometheus text exposition, as Prometheus' own parser read it.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub value: f64,
    /// The family's type: counter, gauge, histogram, …
    pub kind: String,
}

impl Sample {
    /// Whether this is a sample of `name` carrying every one of `labels`.
    pub fn is(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.name == name
            && labels
                .iter()
                .all(|(k, v)| self.labels.get(*k).map(String::as_str) == Some(*v))
    }
}

/// The value of the first sample of `name` with all of `labels`.
pub fn sample_value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples.iter().find(|s| s.is(name, labels)).map(|s| s.value)
}

/// Parses metrics with the reference parser (`prometheus_client` from the test tools'
/// virtualenv). Panics on text it refuses: a scrape Prometheus could not read is a failure.
pub fn parse_prometheus(text: &str) -> Vec<Sample> {
    use std::io::Write;
    const READ: &str = "import json, sys\n\
from prometheus_client.parser import text_string_to_metric_families\n\
out = [dict(name=s.name, labels=s.labels, value=s.value, kind=f.type)\n\
       for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]\n\
print(json.dumps(out))\n";
    // Not canonicalized: the virtualenv's python is a link whose target knows no virtualenv.
    let python = test_tools_dir().join("python/bin/python");
    installed("python of the test tools' virtualenv", python.clone());
    let mut child = std::process::Command::new(python)
        .args(["-c", READ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "Prometheus' parser refused the metrics: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
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
