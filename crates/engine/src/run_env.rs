//! The environment a run's processes get, built from scratch: the server's PATH and the
//! toolchains found on it, the repository's download and build caches, and the operator's own
//! variables — one set for setup and checks, another for the agent.

use std::path::Path;

use nightshift_sandbox::{HostEnv, Toolchain, Toolchains, cache_env};
use serde::Serialize;

use crate::EngineError;

/// Variables the operator gives runs (`[env]` and `[agent_env]` in nightshift.toml).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct RunEnv {
    /// Literal values.
    pub set: Vec<(String, String)>,
    /// Names whose values come from the server's environment.
    pub pass: Vec<String>,
}

/// Names only: the values may be secrets.
impl std::fmt::Debug for RunEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunEnv")
            .field("set", &self.set.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("pass", &self.pass)
            .finish()
    }
}

/// What every run sets itself: the run's own HOME and private TMPDIR.
const RESERVED: &[&str] = &["HOME", "TMPDIR"];

/// Parts of a variable's name (split at `_`) that say its value is a secret.
const SECRET_WORDS: &[&str] = &[
    "TOKEN",
    "AUTHTOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASS",
    "KEY",
    "APIKEY",
    "PAT",
    "AUTH",
    "CREDENTIAL",
    "CREDENTIALS",
];

impl RunEnv {
    /// Refuses a name no process could be given, one every run sets itself, and one both set
    /// and passed; `table` names the configuration table in the message.
    pub fn validate(&self, table: &str) -> Result<(), EngineError> {
        let names = self.set.iter().map(|(k, _)| k).chain(&self.pass);
        for name in names {
            let mut chars = name.chars();
            let valid = chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(EngineError::Invalid(format!(
                    "{table}: {name:?} is not a variable name (letters, digits and _, not \
                     starting with a digit)"
                )));
            }
            if RESERVED.contains(&name.as_str()) {
                return Err(EngineError::Invalid(format!(
                    "{table}: {name} cannot be given: every run has its own HOME and TMPDIR"
                )));
            }
        }
        if let Some((name, _)) = self.set.iter().find(|(k, _)| self.pass.contains(k)) {
            return Err(EngineError::Invalid(format!(
                "{table}: {name} is both set and passed from the server: keep one"
            )));
        }
        Ok(())
    }

    /// The variables with their values: the literal ones, then those the server has.
    fn resolve(&self, host: &HostEnv) -> Vec<(String, String)> {
        let passed = self
            .pass
            .iter()
            .filter_map(|name| Some((name.clone(), host.var(name)?.to_string())));
        self.set.iter().cloned().chain(passed).collect()
    }

    /// The values that look like secrets (by their name, or a URL with credentials), which
    /// the run's records must never show.
    pub fn secret_values(&self, host: &HostEnv) -> Vec<String> {
        self.resolve(host)
            .into_iter()
            .filter(|(name, value)| looks_secret(name, value))
            .map(|(_, value)| value)
            .collect()
    }

    /// "A, B from the server's environment and C; not set there, so not passed: D".
    fn describe(&self, host: &HostEnv) -> Option<String> {
        if self.set.is_empty() && self.pass.is_empty() {
            return None;
        }
        let (passed, missing): (Vec<&String>, Vec<&String>) =
            self.pass.iter().partition(|name| host.var(name).is_some());
        let list = |names: Vec<&String>| {
            names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !passed.is_empty() {
            parts.push(format!("{} from the server's environment", list(passed)));
        }
        if !self.set.is_empty() {
            parts.push(list(self.set.iter().map(|(k, _)| k).collect()));
        }
        let mut text = if parts.is_empty() {
            "nothing".to_string()
        } else {
            parts.join(" and ")
        };
        if !missing.is_empty() {
            text.push_str(&format!(
                "; not in the server's environment, so not passed: {}",
                list(missing)
            ));
        }
        Some(text)
    }
}

fn looks_secret(name: &str, value: &str) -> bool {
    let named = name
        .split('_')
        .any(|part| SECRET_WORDS.contains(&part.to_ascii_uppercase().as_str()));
    // https://user:password@host/… or https://token@host/…
    let url_credentials = value.split_once("://").is_some_and(|(_, rest)| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        authority.contains('@')
    });
    named || url_credentials
}

/// A toolchain as `GET /api/v1/health` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ToolchainInfo {
    pub name: String,
    pub manager: String,
    pub version: Option<String>,
    pub from: String,
}

impl From<&Toolchain> for ToolchainInfo {
    fn from(t: &Toolchain) -> Self {
        ToolchainInfo {
            name: t.name.clone(),
            manager: t.manager.clone(),
            version: t.version.clone(),
            from: t.from.display().to_string(),
        }
    }
}

/// One run's variables by phase, and what its log says about them (names only).
pub(crate) struct PhaseEnv {
    /// Setup and checks.
    pub(crate) checks: Vec<(String, String)>,
    pub(crate) agent: Vec<(String, String)>,
    pub(crate) log: Vec<String>,
}

impl PhaseEnv {
    /// PATH, the toolchains' variables and the caches in `cache` for every phase, then the
    /// operator's, which win.
    pub(crate) fn new(
        host: &HostEnv,
        toolchains: &Toolchains,
        cache: &Path,
        checks: &RunEnv,
        agent: &RunEnv,
    ) -> PhaseEnv {
        let mut common = vec![("PATH".to_string(), host.path().to_string())];
        common.extend(toolchains.env());
        common.extend(cache_env(cache));
        let with = |operator: &RunEnv| {
            let operator = operator.resolve(host);
            let mut vars: Vec<(String, String)> = common
                .iter()
                .filter(|(k, _)| !operator.iter().any(|(o, _)| o == k))
                .cloned()
                .collect();
            vars.extend(operator);
            vars
        };
        let found: Vec<String> = toolchains
            .list
            .iter()
            .map(|t| {
                let what = match &t.version {
                    Some(v) => format!("{}, {v}", t.manager),
                    None => t.manager.clone(),
                };
                format!("{} ({what}) from {}", t.name, t.from.display())
            })
            .collect();
        let mut log = vec![format!(
            "toolchains: {}; downloads and build caches in {}",
            if found.is_empty() {
                "none found beyond the system's".to_string()
            } else {
                found.join("; ")
            },
            cache.display()
        )];
        log.extend(
            checks
                .describe(host)
                .map(|d| format!("setup and checks get {d}")),
        );
        log.extend(agent.describe(host).map(|d| format!("the agent gets {d}")));
        PhaseEnv {
            checks: with(checks),
            agent: with(agent),
            log,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_secret_looking_values_found() {
        let ok = RunEnv {
            set: vec![("UV_NATIVE_TLS".into(), "1".into())],
            pass: vec!["SSL_CERT_FILE".into()],
        };
        assert!(ok.validate("env").is_ok());
        for (bad, says) in [
            ("HOME", "own HOME"),
            ("1X", "not a variable name"),
            ("A-B", "not a variable name"),
        ] {
            let env = RunEnv {
                set: vec![],
                pass: vec![bad.into()],
            };
            let err = env.validate("agent_env").unwrap_err().to_string();
            assert!(err.starts_with("agent_env") && err.contains(says), "{err}");
        }
        let both = RunEnv {
            set: vec![("X".into(), "1".into())],
            pass: vec!["X".into()],
        };
        assert!(
            both.validate("env")
                .unwrap_err()
                .to_string()
                .contains("both")
        );

        for (name, value, secret) in [
            ("NPM_TOKEN", "abc", true),
            ("npm_config__authToken", "abc", true),
            ("AWS_SECRET_ACCESS_KEY", "abc", true),
            ("PIP_INDEX_URL", "https://u:p@pypi.internal/simple", true),
            ("GOPROXY", "https://tok@proxy.internal", true),
            ("PIP_INDEX_URL", "https://pypi.internal/simple", false),
            ("GIT_AUTHOR_NAME", "Nightshift", false),
            ("SSL_CERT_FILE", "/etc/ssl/certs/ca.pem", false),
            ("NODE_EXTRA_CA_CERTS", "/etc/ssl/certs/ca.pem", false),
        ] {
            assert_eq!(looks_secret(name, value), secret, "{name}={value}");
        }
    }
}
