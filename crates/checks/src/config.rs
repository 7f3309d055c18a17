//! Finding a repository's checks: its own `.nightshift.toml` when present, otherwise what the
//! repository and its CI files say (see `detect`).

use std::path::Path;

use serde::Deserialize;

use crate::{CheckPlan, ChecksError, Result};

pub const CONFIG_FILE: &str = ".nightshift.toml";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    setup: SetupSection,
    #[serde(default)]
    checks: ChecksSection,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetupSection {
    #[serde(default)]
    commands: Vec<String>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecksSection {
    #[serde(default)]
    format: Vec<String>,
    #[serde(default)]
    lint: Vec<String>,
    #[serde(default)]
    test: Vec<String>,
    #[serde(default)]
    network: Vec<String>,
}

/// The checks of the repository checked out at `root`.
pub fn discover(root: &Path) -> Result<CheckPlan> {
    let config = root.join(CONFIG_FILE);
    if config.exists() {
        let text = read(&config)?;
        let parsed: ConfigFile = toml::from_str(&text).map_err(|e| ChecksError::InvalidConfig {
            file: CONFIG_FILE.into(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let blank = |list: &[String]| list.iter().any(|c| c.trim().is_empty());
        if blank(&parsed.setup.commands)
            || blank(&parsed.checks.format)
            || blank(&parsed.checks.lint)
            || blank(&parsed.checks.test)
        {
            return Err(ChecksError::InvalidConfig {
                file: CONFIG_FILE.into(),
                message: "a command is empty".into(),
            });
        }
        for host in &parsed.checks.network {
            nightshift_sandbox::AllowedHost::parse(host).map_err(|_| {
                ChecksError::InvalidConfig {
                    file: CONFIG_FILE.into(),
                    message: format!(
                        "checks.network entry {host:?} is not host, host:port or *.domain[:port]"
                    ),
                }
            })?;
        }
        return Ok(CheckPlan {
            setup: parsed.setup.commands,
            format: parsed.checks.format,
            lint: parsed.checks.lint,
            test: parsed.checks.test,
            network: parsed.checks.network,
            source: CONFIG_FILE.into(),
            ..CheckPlan::default()
        });
    }
    crate::detect::detect(root)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ChecksError::Read {
        path: path.display().to_string(),
        source,
    })
}
