//! Finding a repository's checks: its own `.nightshift.toml` when present, otherwise what its
//! build files imply. Linters run in check mode; anything that fixes belongs under `format`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{ChecksError, Result};

pub const CONFIG_FILE: &str = ".nightshift.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Setup,
    Format,
    Lint,
    Test,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Setup => "setup",
            Stage::Format => "format",
            Stage::Lint => "lint",
            Stage::Test => "test",
        }
    }
}

/// What to run, and where that was learnt from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckPlan {
    pub setup: Vec<String>,
    pub format: Vec<String>,
    pub lint: Vec<String>,
    pub test: Vec<String>,
    /// Hosts (`host`, `host:port`, `*.domain`) the repository asks its checks to reach; by
    /// default checks have no network at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network: Vec<String>,
    /// The files the plan came from, e.g. `.nightshift.toml` or `Cargo.toml, Makefile`.
    pub source: String,
}

impl CheckPlan {
    pub fn commands(&self, stage: Stage) -> &[String] {
        match stage {
            Stage::Setup => &self.setup,
            Stage::Format => &self.format,
            Stage::Lint => &self.lint,
            Stage::Test => &self.test,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.format.is_empty() && self.lint.is_empty() && self.test.is_empty()
    }
}

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
        });
    }
    detect(root)
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| ChecksError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn detect(root: &Path) -> Result<CheckPlan> {
    let mut plan = CheckPlan::default();
    let mut sources = Vec::new();
    let has = |name: &str| root.join(name).exists();

    if has("Cargo.toml") {
        sources.push("Cargo.toml");
        plan.setup.push(
            if has("Cargo.lock") {
                "cargo fetch --locked"
            } else {
                "cargo fetch"
            }
            .into(),
        );
        plan.format.push("cargo fmt --all".into());
        plan.lint
            .push("cargo clippy --all-targets -- -D warnings".into());
        plan.test.push("cargo test".into());
    }

    if has("package.json") {
        sources.push("package.json");
        let manifest: serde_json::Value = serde_json::from_str(&read(&root.join("package.json"))?)
            .map_err(|e| ChecksError::InvalidConfig {
                file: "package.json".into(),
                message: e.to_string(),
            })?;
        let (pm, install) = if has("pnpm-lock.yaml") {
            ("pnpm", "pnpm install --frozen-lockfile")
        } else if has("yarn.lock") {
            ("yarn", "yarn install --frozen-lockfile")
        } else if has("package-lock.json") {
            ("npm", "npm ci")
        } else {
            ("npm", "npm install")
        };
        plan.setup.push(install.into());
        let scripts = manifest.get("scripts").and_then(|s| s.as_object());
        let script = |name: &str| {
            scripts
                .and_then(|s| s.get(name))
                .and_then(|v| v.as_str())
                // npm init's placeholder test script always fails; it is not a test suite.
                .filter(|body| !body.contains("no test specified"))
                .map(|_| format!("{pm} run {name}"))
        };
        plan.format.extend(script("format"));
        plan.lint.extend(script("lint"));
        plan.test.extend(script("test"));
    }

    let pyproject = if has("pyproject.toml") {
        read(&root.join("pyproject.toml"))?
    } else {
        String::new()
    };
    let setup_cfg = if has("setup.cfg") {
        read(&root.join("setup.cfg"))?
    } else {
        String::new()
    };
    let tox_ini = if has("tox.ini") {
        read(&root.join("tox.ini"))?
    } else {
        String::new()
    };
    let ruff = pyproject.contains("[tool.ruff") || has("ruff.toml") || has(".ruff.toml");
    let black = pyproject.contains("[tool.black");
    let pytest = pyproject.contains("[tool.pytest")
        || setup_cfg.contains("[tool:pytest]")
        || tox_ini.contains("[pytest]")
        || has("pytest.ini")
        || has("conftest.py");
    if ruff || black || pytest {
        sources.push(if has("pyproject.toml") {
            "pyproject.toml"
        } else {
            "setup.cfg/tox.ini"
        });
        if has("uv.lock") {
            plan.setup.push("uv sync --locked".into());
        } else if has("poetry.lock") {
            plan.setup.push("poetry install --no-root".into());
        } else if has("requirements.txt") {
            plan.setup.push("pip install -r requirements.txt".into());
        }
        if ruff {
            plan.format.push("ruff format .".into());
            plan.lint.push("ruff check .".into());
        } else if black {
            plan.format.push("black .".into());
        }
        if pytest {
            plan.test.push("pytest".into());
        }
    }

    if has("go.mod") {
        sources.push("go.mod");
        plan.setup.push("go mod download".into());
        plan.format.push("gofmt -w .".into());
        plan.lint.push("go vet ./...".into());
        plan.test.push("go test ./...".into());
    }

    if has("Makefile") {
        let makefile = read(&root.join("Makefile"))?;
        let target = |names: &[&str]| {
            names
                .iter()
                .find(|n| makefile.lines().any(|l| l.starts_with(&format!("{n}:"))))
                .map(|n| format!("make {n}"))
        };
        let (fmt, lint, test) = (
            target(&["fmt", "format"]),
            target(&["lint"]),
            target(&["test"]),
        );
        if fmt.is_some() || lint.is_some() || test.is_some() {
            sources.push("Makefile");
            // A Makefile target is the repository's own word on how to check it: it replaces
            // what was guessed from other files for that stage.
            if let Some(cmd) = fmt {
                plan.format = vec![cmd];
            }
            if let Some(cmd) = lint {
                plan.lint = vec![cmd];
            }
            if let Some(cmd) = test {
                plan.test = vec![cmd];
            }
        }
    }

    plan.source = if sources.is_empty() {
        "none found".into()
    } else {
        sources.join(", ")
    };
    Ok(plan)
}
