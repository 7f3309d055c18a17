//! `nightshift checks detect` on the fixture projects: the plan and its evidence, as text and
//! JSON, read from a repository the command fetches itself.

use std::process::{Command, Output, Stdio};

use nightshift_test_support::git::RemoteRepo;
use nightshift_test_support::projects::{Project, all};

use super::server::BIN;

fn detect(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["checks", "detect"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "checks detect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One line each fixture's plan must show: a command, then its evidence.
const SHOWN: &[(&str, &str, &str)] = &[
    (
        "rust-example",
        "cargo clippy --all-targets -- -D warnings",
        "from Cargo.toml: clippy over every target",
    ),
    (
        "uv-ruff-mypy",
        "uv run ruff check --no-fix .",
        "from the CI step `uv run ruff check .`, run in .github/workflows/ci.yml",
    ),
    (
        "npm-scripts",
        "npx --no-install prettier --write .",
        "from package.json script check:format (`prettier --check .`), run in .github/workflows/tests.yml",
    ),
    (
        "pnpm-corepack",
        "corepack pnpm install --frozen-lockfile",
        "packageManager pnpm@9.15.0",
    ),
    (
        "yarn-berry",
        "node .yarn/releases/yarn-4.5.3.cjs install --immutable",
        "shipped in the repository (.yarnrc.yml yarnPath)",
    ),
    (
        "tox-no-lock",
        ".venv/bin/flake8 .",
        "from tox.ini [testenv:lint] (`flake8 .`), run in .gitlab-ci.yml",
    ),
    ("go-module", "go vet ./...", "from go.mod"),
    (
        "makefile-python",
        ". .venv/bin/activate && make lint",
        "from Makefile target lint",
    ),
    (
        "pre-commit-local",
        ".venv/bin/ruff check --no-fix",
        "from .pre-commit-config.yaml hook ruff (`ruff check --fix`)",
    ),
];

#[test]
fn detect_prints_every_fixtures_plan_with_its_evidence() {
    assert_eq!(SHOWN.len(), all().len(), "every fixture has a line to show");
    for project in all() {
        let remote = project.remote();
        let path = remote.bare_path().display().to_string();
        let text = stdout(&detect(&[&path]));
        let (_, command, evidence) = SHOWN.iter().find(|(n, ..)| *n == project.name).unwrap();
        let at = text
            .lines()
            .position(|l| l.trim() == *command)
            .unwrap_or_else(|| panic!("{}: `{command}` is not in\n{text}", project.name));
        let next = text.lines().nth(at + 1).unwrap_or_default();
        assert!(
            next.contains(evidence),
            "{}: `{command}` shows {next:?}, not {evidence:?}",
            project.name
        );
        let head = remote.head("main").unwrap();
        assert!(
            text.starts_with(&format!(
                "Checks for file://{path} (main at {}",
                &head[..12]
            )),
            "{text}"
        );

        // The JSON form is the plan the library detects on the same files.
        let json: serde_json::Value =
            serde_json::from_str(&stdout(&detect(&[&path, "--json"]))).unwrap();
        let dir = tempfile::tempdir().unwrap();
        project.write(dir.path());
        let plan = nightshift_checks::discover(dir.path()).unwrap();
        assert_eq!(
            json["plan"],
            serde_json::to_value(&plan).unwrap(),
            "{}",
            project.name
        );
        assert_eq!(json["commit"], head.as_str());
        assert_eq!(json["base"], "main");
        let describe = plan.describe().join("\n");
        assert!(
            text.contains(&describe),
            "{}: the text is not the plan:\n{text}",
            project.name
        );
    }
}

#[test]
fn detect_reads_the_branch_it_is_asked_for_and_names_what_is_wrong() {
    let remote = RemoteRepo::with_files(&[("go.mod", "module example.com/x\n\ngo 1.19\n")]);
    let uv = Project::named("uv-ruff-mypy");
    let files: Vec<(&str, &str)> = uv.files.iter().map(|(p, c)| (*p, c.as_str())).collect();
    remote.commit("python", &files, "a python project");
    let path = remote.bare_path().display().to_string();

    let main = stdout(&detect(&[&path]));
    assert!(
        main.contains("go vet ./...") && !main.contains("ruff"),
        "{main}"
    );
    let python = stdout(&detect(&[&path, "--base", "python"]));
    assert!(python.contains("uv run ruff check --no-fix ."), "{python}");
    assert!(python.contains("(python at "), "{python}");

    let out = detect(&[&path, "--base", "nope"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nope") && err.contains("does not exist"),
        "{err}"
    );

    let out = detect(&["/no/such/repository"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("/no/such/repository")
            && err.contains("no such directory"),
        "{err}"
    );
    assert!(!err.contains("Some(") && !err.contains("Os {"), "{err}");
}

fn baseline(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["checks", "baseline"])
        .args(args)
        // No configuration but what the test gives.
        .env("NIGHTSHIFT_DATA_DIR", tempfile::tempdir().unwrap().path())
        .env_remove("NIGHTSHIFT_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Each check passes, fails, or cannot run — the last with the program, the PATH it was looked
/// for on and the fix — and the command fails when one cannot run. It runs confined: the
/// server user's home is out of reach.
#[test]
fn baseline_says_which_checks_pass_fail_or_cannot_run() {
    let home = std::env::var("HOME").unwrap();
    let canary = format!("{home}/.nightshift-baseline-canary-{}", std::process::id());
    std::fs::write(&canary, "secret").unwrap();
    let config = format!(
        "[setup]\ncommands = [\"echo setting up\"]\n\
         [checks]\nlint = [\"grep -q goodbye a.txt\", \"nightshift-absent-linter .\"]\n\
         test = [\"test ! -e {canary}\"]\n"
    );
    let remote = RemoteRepo::with_files(&[(".nightshift.toml", &config), ("a.txt", "hello\n")]);
    let path = remote.bare_path().display().to_string();
    let out = baseline(&[&path]);
    let _ = std::fs::remove_file(&canary);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let head = remote.head("main").unwrap();
    assert!(
        text.starts_with(&format!(
            "Baseline of file://{path} (main at {}",
            &head[..12]
        )),
        "{text}"
    );
    let line = |start: &str| {
        text.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line {start:?} in\n{text}"))
            .to_string()
    };
    assert!(
        line("setup  `echo setting up`").contains("passes"),
        "{text}"
    );
    assert!(
        line("lint   `grep -q goodbye a.txt`").contains("fails"),
        "{text}"
    );
    assert!(
        line("lint   `nightshift-absent-linter .`").contains("cannot run here"),
        "{text}"
    );
    assert!(
        line(&format!("test   `test ! -e {canary}`")).contains("passes"),
        "{text}"
    );
    let path_var = std::env::var("PATH").unwrap();
    for part in [
        &format!("`nightshift-absent-linter` was not found on the run's PATH ({path_var})"),
        "Install it on the server",
        "sandbox_readonly",
        "1 command cannot run here",
        "setup_failed",
    ] {
        assert!(text.contains(part), "{part:?} is not in\n{text}");
    }

    let out = baseline(&[&path, "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["can_validate"], false);
    let checks = json["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 4, "{json:#}");
    assert_eq!(checks[1]["result"]["outcome"], "failed");
    assert!(checks[1].get("cannot_run").is_none(), "{json:#}");
    assert_eq!(
        checks[2]["cannot_run"]["blocker"]["program"],
        "nightshift-absent-linter"
    );
}

/// A fixture project, set up through the sandbox's egress proxy with the server's configuration
/// (its [env] passes the machine's certificates on), runs every check and passes them all.
#[test]
fn baseline_of_a_fixture_project_runs_and_passes_every_check() {
    let remote = Project::named("uv-ruff-mypy").published();
    let path = remote.bare_path().display().to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nightshift.toml");
    std::fs::write(
        &config,
        "[env]\npass = [\"SSL_CERT_FILE\", \"SSL_CERT_DIR\", \"PIP_CERT\"]\n",
    )
    .unwrap();
    let out = baseline(&[&path, "--config", &config.display().to_string()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for command in [
        "setup  `uv sync --locked --all-extras --dev`  passes",
        "lint   `uv run mypy`  passes",
        "test   `uv run pytest`  passes",
        "Every check runs and passes on main",
    ] {
        assert!(text.contains(command), "{command:?} is not in\n{text}");
    }
}
