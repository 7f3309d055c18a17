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
