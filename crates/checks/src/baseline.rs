//! The baseline: the plan run on the unchanged base commit before any agent. It tells a check
//! that cannot run here at all (its program missing or not executable, setup failing) from one
//! that runs and already fails — a pre-existing failure, not the change's.

use nightshift_core::{CheckOutcome, CheckResult};
use serde::{Deserialize, Serialize};

/// The checks' results on the base commit, and what running them left in the checkout.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The commit the checks ran on.
    pub commit: String,
    /// Format, lint and test, in the plan's order.
    pub results: Vec<CheckResult>,
    /// Paths the checks left untracked that the repository does not ignore (`.pytest_cache/`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untracked: Vec<String>,
    /// Tracked files the formatters changed on the base: a change will carry their formatting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reformatted: Vec<String>,
}

impl Baseline {
    /// The checks that already fail on the base.
    pub fn failing(&self) -> Vec<&CheckResult> {
        self.results
            .iter()
            .filter(|r| r.outcome != CheckOutcome::Passed)
            .collect()
    }

    /// Whether `command` of `stage` already fails on the base.
    pub fn fails(&self, stage: &str, command: &str) -> bool {
        self.failing()
            .iter()
            .any(|r| r.stage == stage && r.command == command)
    }
}

/// Where a missing program was looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LookedIn {
    /// The run's PATH.
    Path,
    /// The checkout: a relative path such as `.venv/bin/black`.
    Checkout,
    /// The project's own environment, through its package manager (`uv run`, `npx`, `yarn run`).
    Project,
}

/// Why a command cannot run on this server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Blocker {
    /// A program it runs was not found (exit 127, or a shell or package manager saying so).
    Missing {
        program: Option<String>,
        looked_in: LookedIn,
    },
    /// A program it runs was found but cannot be executed (exit 126).
    NotExecutable { program: Option<String> },
    /// Setup failed: what the checks need is not installed.
    SetupFailed,
}

/// A command of the plan that cannot run here: the repository cannot be validated on this
/// server until the operator (or the repository) fixes it, so no agent should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CannotRun {
    pub stage: String,
    pub command: String,
    pub blocker: Blocker,
    /// How the command ended, in words (`exited with code 127`).
    pub how: String,
    /// The PATH the command ran with.
    pub path: String,
}

/// Exit statuses shells give a program they did not find, and one they cannot execute.
const NOT_FOUND: i32 = 127;
const NOT_EXECUTABLE: i32 = 126;

impl CannotRun {
    /// Why `result` could not run at all, when that is what its exit status and output say;
    /// `path` is the PATH it ran with. A setup command that failed for any reason cannot run.
    pub fn of(result: &CheckResult, path: &str) -> Option<CannotRun> {
        if result.outcome == CheckOutcome::Passed {
            return None;
        }
        let found = unrunnable_program(&result.output, &result.command);
        let blocker = match (found, result.exit_code) {
            (Some(Found::Missing(program, looked_in)), _) => Blocker::Missing {
                program: Some(program),
                looked_in,
            },
            (Some(Found::NotExecutable(program)), Some(NOT_EXECUTABLE)) => Blocker::NotExecutable {
                program: Some(program),
            },
            (_, Some(NOT_FOUND)) => Blocker::Missing {
                program: None,
                looked_in: LookedIn::Path,
            },
            (_, Some(NOT_EXECUTABLE)) => Blocker::NotExecutable { program: None },
            _ if result.stage == "setup" => Blocker::SetupFailed,
            _ => return None,
        };
        Some(CannotRun {
            stage: result.stage.clone(),
            command: result.command.clone(),
            blocker,
            how: result.exit_text(),
            path: path.to_string(),
        })
    }

    /// The program that was not found or cannot be executed, when the output named it.
    pub fn program(&self) -> Option<&str> {
        match &self.blocker {
            Blocker::Missing { program, .. } | Blocker::NotExecutable { program } => {
                program.as_deref()
            }
            Blocker::SetupFailed => None,
        }
    }

    /// What the operator (or the repository) can do about it.
    pub fn fix(&self) -> &'static str {
        match self.blocker {
            Blocker::SetupFailed => {
                "See its output in the log. Setup reaches only the hosts in setup_hosts and \
                 extra_setup_hosts; the mirrors, proxies and certificates it needs go in [env] \
                 of nightshift.toml. Or name setup commands that work here in the repository's \
                 .nightshift.toml."
            }
            _ => {
                "Install it on the server, or have the repository's setup install it; a program \
                 under a hidden directory (a home) needs its directory in sandbox_readonly, or on \
                 PATH in [env], of nightshift.toml. Or name the checks this server can run in \
                 the repository's .nightshift.toml."
            }
        }
    }
}

impl std::fmt::Display for CannotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (stage, command) = (&self.stage, &self.command);
        if self.blocker == Blocker::SetupFailed {
            return write!(
                f,
                "{stage} `{command}` {}, so the repository's checks cannot run here (what they \
                 need is not installed). {}",
                self.how,
                self.fix()
            );
        }
        write!(f, "{stage} `{command}` cannot run here: ")?;
        match &self.blocker {
            Blocker::Missing { program, looked_in } => {
                let program = match program {
                    Some(p) => format!("`{p}`"),
                    None => "a program it runs".to_string(),
                };
                match looked_in {
                    LookedIn::Path => write!(
                        f,
                        "{program} was not found on the run's PATH ({}), so it {}.",
                        self.path, self.how
                    )?,
                    LookedIn::Checkout => write!(
                        f,
                        "{program} does not exist in the checkout after setup, so it {}.",
                        self.how
                    )?,
                    LookedIn::Project => write!(
                        f,
                        "{program} is not installed in the project's environment after setup \
                         (nor on the run's PATH: {}), so it {}.",
                        self.path, self.how
                    )?,
                }
            }
            Blocker::NotExecutable { program } => {
                let program = match program {
                    Some(p) => format!("`{p}`"),
                    None => "a program it runs".to_string(),
                };
                write!(
                    f,
                    "{program} was found but cannot be executed (on the run's PATH: {}), so it {}.",
                    self.path, self.how
                )?;
            }
            Blocker::SetupFailed => {}
        }
        write!(f, " {}", self.fix())
    }
}

enum Found {
    Missing(String, LookedIn),
    NotExecutable(String),
}

/// Programs that report another program they could not start as `<reporter>: …`.
const REPORTERS: &[&str] = &[
    "sh", "bash", "dash", "zsh", "ash", "ksh", "make", "gmake", "env", "xargs", "nice", "nohup",
    "timeout", "exec",
];

/// The program a line of output says could not be started, in the words of shells, `env`,
/// `make`, `xargs`, `python -m` and the package managers' runners.
fn unrunnable_program(output: &str, command: &str) -> Option<Found> {
    output
        .lines()
        .find_map(|line| unrunnable_in(line.trim(), command))
}

fn unrunnable_in(line: &str, command: &str) -> Option<Found> {
    let quoted = |text: &str, open: char, close: char| -> Option<String> {
        let start = text.find(open)? + open.len_utf8();
        let end = text[start..].find(close)? + start;
        Some(text[start..end].to_string()).filter(|p| !p.is_empty())
    };
    let project = |program: String| Some(Found::Missing(program, LookedIn::Project));
    // uv run: "error: Failed to spawn: `ruff`"; poetry run: "Command not found: ruff".
    if let Some(rest) = line.strip_prefix("error: Failed to spawn: ") {
        return project(quoted(rest, '`', '`')?);
    }
    if let Some(program) = line.strip_prefix("Command not found: ") {
        return project(program.trim().to_string());
    }
    // pnpm exec: `Command "tsc" not found`; yarn 2+: `Couldn't find a script named "biome".`
    if let Some(rest) = line.split("Command \"").nth(1)
        && rest.contains("\" not found")
    {
        return project(rest.split('"').next()?.to_string());
    }
    if let Some(rest) = line.split("Couldn't find a script named \"").nth(1) {
        return project(rest.split('"').next()?.to_string());
    }
    // npx --no-install: "could not determine executable to run" — the program is npx's.
    if line.contains("could not determine executable to run") {
        return project(npx_program(command)?);
    }
    let parts: Vec<&str> = line.split(": ").map(str::trim).collect();
    let reporter = parts.first()?.rsplit('/').next()?;
    // python3 -m pytest: "/usr/bin/python3: No module named pytest".
    if reporter.starts_with("python")
        && let Some(module) = line.split(": No module named ").nth(1)
    {
        return project(module.trim().to_string());
    }
    if parts.len() < 3 || !REPORTERS.contains(&reporter) {
        return None;
    }
    let last = *parts.last()?;
    // zsh: "zsh: command not found: eslint".
    if parts.len() == 3 && parts[1] == "command not found" {
        return Some(missing(parts[2]));
    }
    let program = parts[parts.len() - 2].trim_matches(['\'', '‘', '’', '`']);
    if program.is_empty() || program.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    match last {
        "not found" | "command not found" | "Command not found" | "No such file or directory" => {
            Some(missing(program))
        }
        "Permission denied" => Some(Found::NotExecutable(program.to_string())),
        _ => None,
    }
}

fn missing(program: &str) -> Found {
    let looked_in = if program.contains('/') {
        LookedIn::Checkout
    } else {
        LookedIn::Path
    };
    Found::Missing(program.to_string(), looked_in)
}

/// The program `npx` runs in `command`: the first word after `npx` that is not an option.
fn npx_program(command: &str) -> Option<String> {
    let mut words = command.split_whitespace().skip_while(|w| *w != "npx");
    words.next()?;
    words
        .find(|w| !w.starts_with('-'))
        .map(|w| w.split('@').next().unwrap_or(w).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(stage: &str, command: &str, exit: i32, output: &str) -> CheckResult {
        CheckResult {
            stage: stage.into(),
            command: command.into(),
            outcome: if exit == 0 {
                CheckOutcome::Passed
            } else {
                CheckOutcome::Failed
            },
            exit_code: Some(exit),
            signal: None,
            duration_ms: 1,
            output: output.into(),
            round: 0,
            failed_on_base: false,
        }
    }

    const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

    /// The program each tool's own words name, and where it was looked for.
    #[test]
    fn the_missing_program_is_named_in_the_words_of_each_tool() {
        let cases = [
            (
                "npm run lint",
                127,
                "sh: 1: eslint: not found",
                "eslint",
                LookedIn::Path,
            ),
            (
                "black .",
                127,
                "/bin/sh: 1: black: not found",
                "black",
                LookedIn::Path,
            ),
            (
                "x",
                127,
                "bash: line 1: tox: command not found",
                "tox",
                LookedIn::Path,
            ),
            (
                "x",
                127,
                "bash: golangci-lint: command not found",
                "golangci-lint",
                LookedIn::Path,
            ),
            (
                "x",
                127,
                "zsh: command not found: mypy",
                "mypy",
                LookedIn::Path,
            ),
            (
                "make lint",
                2,
                "make: flake8: No such file or directory\nmake: *** [Makefile:8: lint] Error 127",
                "flake8",
                LookedIn::Path,
            ),
            (
                "x",
                127,
                "xargs: pre-commit: No such file or directory",
                "pre-commit",
                LookedIn::Path,
            ),
            (
                "x",
                127,
                "/usr/bin/env: ‘node’: No such file or directory",
                "node",
                LookedIn::Path,
            ),
            (
                ".venv/bin/black .",
                127,
                "sh: 1: .venv/bin/black: not found",
                ".venv/bin/black",
                LookedIn::Checkout,
            ),
            (
                "uv run ruff check --no-fix .",
                2,
                "error: Failed to spawn: `ruff`\n  Caused by: No such file or directory (os error 2)",
                "ruff",
                LookedIn::Project,
            ),
            (
                "poetry run pytest",
                1,
                "Command not found: pytest",
                "pytest",
                LookedIn::Project,
            ),
            (
                "python3 -m pytest",
                1,
                "/usr/bin/python3: No module named pytest",
                "pytest",
                LookedIn::Project,
            ),
            (
                "corepack pnpm exec tsc",
                1,
                " ERR_PNPM_RECURSIVE_EXEC_FIRST_FAIL  Command \"tsc\" not found",
                "tsc",
                LookedIn::Project,
            ),
            (
                "yarn run biome lint .",
                1,
                "Usage Error: Couldn't find a script named \"biome\".",
                "biome",
                LookedIn::Project,
            ),
            (
                "npx --no-install prettier --write .",
                1,
                "npm error could not determine executable to run",
                "prettier",
                LookedIn::Project,
            ),
        ];
        for (command, exit, output, program, looked_in) in cases {
            let found = CannotRun::of(&result("lint", command, exit, output), PATH)
                .unwrap_or_else(|| panic!("{output:?} was taken for a failing check"));
            assert_eq!(
                found.blocker,
                Blocker::Missing {
                    program: Some(program.into()),
                    looked_in
                },
                "{output:?}"
            );
            let message = found.to_string();
            assert!(message.contains(&format!("`{program}`")), "{message}");
            assert!(message.contains(".nightshift.toml"), "{message}");
        }
    }

    /// The message names the program, the PATH it was looked for on, and the ways out.
    #[test]
    fn a_missing_program_says_where_it_was_looked_for_and_the_fix() {
        let found = CannotRun::of(
            &result(
                "lint",
                "npm run check:lint",
                127,
                "> eslint .\nsh: 1: eslint: not found",
            ),
            PATH,
        )
        .unwrap();
        assert_eq!(found.program(), Some("eslint"));
        let message = found.to_string();
        for part in [
            "lint `npm run check:lint` cannot run here",
            "`eslint` was not found on the run's PATH (/usr/local/bin:/usr/bin:/bin)",
            "exited with code 127",
            "Install it on the server",
            "sandbox_readonly",
            "[env]",
            "the repository's .nightshift.toml",
        ] {
            assert!(message.contains(part), "{part:?} is not in: {message}");
        }
        assert!(!message.contains("Some("), "{message}");
    }

    /// Exit statuses alone say so when the output names nothing; a setup failure always does.
    #[test]
    fn exit_126_127_and_failed_setup_cannot_run_and_a_failing_check_can() {
        let unnamed = CannotRun::of(&result("test", "./run-tests", 127, ""), PATH).unwrap();
        assert_eq!(
            unnamed.blocker,
            Blocker::Missing {
                program: None,
                looked_in: LookedIn::Path
            }
        );
        assert!(
            unnamed
                .to_string()
                .contains("a program it runs was not found")
        );
        let denied = CannotRun::of(
            &result(
                "test",
                "./run.sh",
                126,
                "sh: 1: ./run.sh: Permission denied",
            ),
            PATH,
        )
        .unwrap();
        assert_eq!(
            denied.blocker,
            Blocker::NotExecutable {
                program: Some("./run.sh".into())
            }
        );
        let setup =
            CannotRun::of(&result("setup", "npm ci", 1, "npm error network"), PATH).unwrap();
        assert_eq!(setup.blocker, Blocker::SetupFailed);
        assert!(setup.to_string().contains("setup_hosts"), "{setup}");

        // Checks that ran and failed, whatever they printed.
        for (exit, output) in [
            (1, "tests/test_x.py:3: AssertionError"),
            (1, "E   ModuleNotFoundError: No module named 'requests'"),
            (2, "sh: 1: cannot create /x: Permission denied"),
            (1, "error: 3 files not found in the index"),
            (0, "sh: 1: eslint: not found"),
        ] {
            assert_eq!(
                CannotRun::of(&result("test", "pytest", exit, output), PATH),
                None,
                "{output:?}"
            );
        }
    }

    #[test]
    fn the_baseline_names_its_failing_checks() {
        let baseline = Baseline {
            commit: "abc".into(),
            results: vec![
                result("lint", "ruff check --no-fix .", 1, "F401"),
                result("test", "pytest", 0, ""),
            ],
            ..Baseline::default()
        };
        assert_eq!(baseline.failing().len(), 1);
        assert!(baseline.fails("lint", "ruff check --no-fix ."));
        assert!(!baseline.fails("test", "pytest"));
    }
}
