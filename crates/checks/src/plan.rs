//! The check plan: the commands of each stage (setup, then format in apply mode, lint and test
//! in check mode), and for each command the evidence it was found from.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Setup,
    Format,
    Lint,
    Test,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Setup, Stage::Format, Stage::Lint, Stage::Test];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Setup => "setup",
            Stage::Format => "format",
            Stage::Lint => "lint",
            Stage::Test => "test",
        }
    }

    /// How the stage's commands run, for people reading a plan.
    pub fn mode(self) -> &'static str {
        match self {
            Stage::Setup => "installs what the checks need",
            Stage::Format => "apply mode: the changes become part of the commit",
            Stage::Lint => "check mode: must exit 0 and change nothing",
            Stage::Test => "must exit 0",
        }
    }
}

/// Why one command is in the plan: what it was found from and which CI files run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub stage: Stage,
    pub command: String,
    /// What the command was found from, e.g. `package.json script check:format`.
    pub from: String,
    /// The CI files that run it (or the check it was derived from), e.g.
    /// `.github/workflows/tests.yml`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ci: Vec<String>,
}

impl std::fmt::Display for Evidence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "from {}", self.from)?;
        if !self.ci.is_empty() {
            write!(f, ", run in {}", self.ci.join(", "))?;
        }
        Ok(())
    }
}

/// The files setup installs from — lockfiles and manifests — as git pathspecs: when one changes
/// (a dependency upgrade), setup has to run again before the checks.
pub const SETUP_INPUTS: &[&str] = &[
    ":(glob)**/Cargo.toml",
    ":(glob)**/Cargo.lock",
    ":(glob)**/rust-toolchain.toml",
    ":(glob)**/package.json",
    ":(glob)**/package-lock.json",
    ":(glob)**/npm-shrinkwrap.json",
    ":(glob)**/yarn.lock",
    ":(glob)**/pnpm-lock.yaml",
    ":(glob)**/bun.lockb",
    ":(glob)**/pyproject.toml",
    ":(glob)**/uv.lock",
    ":(glob)**/poetry.lock",
    ":(glob)**/pdm.lock",
    ":(glob)**/Pipfile",
    ":(glob)**/Pipfile.lock",
    ":(glob)**/requirements*.txt",
    ":(glob)**/setup.py",
    ":(glob)**/setup.cfg",
    ":(glob)**/tox.ini",
    ":(glob)**/go.mod",
    ":(glob)**/go.sum",
    ":(glob)**/Gemfile",
    ":(glob)**/Gemfile.lock",
    ":(glob)**/.pre-commit-config.yaml",
];

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
    /// One entry per detected command (none for a `.nightshift.toml` plan: the file says it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    /// What was found but not made a check, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
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

    /// The evidence of `command` in `stage`, when it was detected.
    pub fn evidence_for(&self, stage: Stage, command: &str) -> Option<&Evidence> {
        self.evidence
            .iter()
            .find(|e| e.stage == stage && e.command == command)
    }

    /// Adds `command` to `stage` with its evidence, unless it is already there (then the
    /// evidence is merged).
    pub fn add(&mut self, stage: Stage, command: String, from: String, ci: Vec<String>) {
        let list = match stage {
            Stage::Setup => &mut self.setup,
            Stage::Format => &mut self.format,
            Stage::Lint => &mut self.lint,
            Stage::Test => &mut self.test,
        };
        if let Some(existing) = self
            .evidence
            .iter_mut()
            .find(|e| e.stage == stage && e.command == command)
        {
            for file in ci {
                if !existing.ci.contains(&file) {
                    existing.ci.push(file);
                }
            }
            return;
        }
        list.push(command.clone());
        self.evidence.push(Evidence {
            stage,
            command,
            from,
            ci,
        });
    }

    /// The plan as lines a person reads: each stage, its commands and why each is there.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!("checks from {}", self.source)];
        for stage in Stage::ALL {
            let commands = self.commands(stage);
            if commands.is_empty() {
                continue;
            }
            lines.push(format!("{} ({}):", stage.as_str(), stage.mode()));
            for command in commands {
                lines.push(format!("  {command}"));
                if let Some(evidence) = self.evidence_for(stage, command) {
                    lines.push(format!("      {evidence}"));
                }
            }
        }
        if self.is_empty() {
            lines.push("no format, lint or test commands found".into());
        }
        if !self.network.is_empty() {
            lines.push(format!("checks may reach: {}", self.network.join(", ")));
        }
        for note in &self.notes {
            lines.push(format!("note: {note}"));
        }
        lines
    }
}
