//! Detection rules on small repositories: the CI decides for the ecosystems it checks, entry
//! points are read for what they run, linters never fix, setup installs what checks need.

use std::fs;

use nightshift_checks::{CheckPlan, Stage, discover};

fn plan(files: &[(&str, &str)]) -> CheckPlan {
    let dir = tempfile::tempdir().unwrap();
    for (p, c) in files {
        let path = dir.path().join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, c).unwrap();
    }
    discover(dir.path()).unwrap()
}

fn workflow(steps: &str) -> String {
    format!("on: [pull_request]\njobs:\n  ci:\n    runs-on: ubuntu-latest\n    steps:\n{steps}")
}

fn says(plan: &CheckPlan, stage: Stage, command: &str) -> String {
    plan.evidence_for(stage, command)
        .unwrap_or_else(|| panic!("no {command} in {}", plan.describe().join("\n")))
        .to_string()
}

#[test]
fn the_ci_decides_what_an_ecosystem_must_pass() {
    let p = plan(&[
        ("Cargo.toml", "[package]\nname = \"x\"\n"),
        (
            ".github/workflows/ci.yml",
            &workflow("      - run: cargo test --workspace --all-features\n"),
        ),
    ]);
    assert_eq!(p.test, vec!["cargo test --workspace --all-features"]);
    assert!(
        p.format.is_empty() && p.lint.is_empty(),
        "{:?}",
        p.describe()
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("cargo clippy") && n.contains("the CI does not run it")),
        "{:?}",
        p.notes
    );
    assert_eq!(p.setup, vec!["cargo fetch"]);

    // Without CI, Cargo's conventions.
    let p = plan(&[("Cargo.toml", "[package]\nname = \"x\"\n")]);
    assert_eq!(p.lint, vec!["cargo clippy --all-targets -- -D warnings"]);
    assert_eq!(p.format, vec!["cargo fmt --all"]);
}

#[test]
fn lint_scripts_that_fix_run_their_linter_strictly_and_fix_scripts_never_run() {
    let p = plan(&[
        (
            "package.json",
            r#"{"scripts":{"lint":"eslint --fix src","lint:fix":"eslint --fix .","test":"echo \"Error: no test specified\" && exit 1"},"devDependencies":{"eslint":"9"}}"#,
        ),
        ("package-lock.json", "{}"),
    ]);
    assert_eq!(p.setup, vec!["npm ci"]);
    assert_eq!(p.lint, vec!["npx --no-install eslint src"]);
    assert!(
        says(&p, Stage::Lint, "npx --no-install eslint src")
            .contains("package.json script lint (`eslint --fix src`)")
    );
    assert!(
        p.test.is_empty(),
        "npm's placeholder test script is no test suite"
    );

    // `npm run lint -- --fix` in CI is a fix, not a check.
    let p = plan(&[
        ("package.json", r#"{"scripts":{"lint":"eslint ."}}"#),
        (
            ".github/workflows/ci.yml",
            &workflow("      - run: npm run lint -- --fix\n      - run: npm run lint\n"),
        ),
    ]);
    assert_eq!(p.lint, vec!["npm run lint"]);
}

#[test]
fn ruff_configured_to_fix_is_run_with_no_fix_even_through_a_makefile() {
    let p = plan(&[
        ("ruff.toml", "fix = true\n"),
        ("requirements-dev.txt", "ruff\n"),
        ("Makefile", "lint:\n\truff check .\ntest:\n\tpytest\n"),
    ]);
    assert_eq!(p.lint, vec![".venv/bin/ruff check --no-fix ."]);
    assert!(
        says(&p, Stage::Lint, ".venv/bin/ruff check --no-fix .")
            .contains("Makefile target lint (`ruff check .`)")
    );
    assert_eq!(p.test, vec![". .venv/bin/activate && make test"]);
    assert_eq!(p.format, vec![".venv/bin/ruff format ."]);
    // Undeclared tools the checks run are installed, and say so.
    assert_eq!(
        p.setup[1..],
        [
            ".venv/bin/pip install -r requirements-dev.txt",
            ".venv/bin/pip install pytest"
        ]
    );
    assert!(says(&p, Stage::Setup, ".venv/bin/pip install pytest").contains("do not declare it"));
}

#[test]
fn gitlab_jobs_with_extends_anchors_and_default_before_script() {
    let p = plan(&[
        (
            "package.json",
            r#"{"scripts":{"lint":"eslint .","format:check":"prettier -c .","test":"jest"},"packageManager":"yarn@1.22.22"}"#,
        ),
        ("yarn.lock", ""),
        (
            ".gitlab-ci.yml",
            "default:\n  before_script:\n    - yarn install --frozen-lockfile\n.node: &node\n  image: node:20\n\
             lint:\n  <<: *node\n  script: yarn lint\nformat:\n  extends: .node\n  script:\n    - yarn format:check\n\
             deploy:\n  script: ./deploy.sh\n  when: manual\n",
        ),
    ]);
    assert_eq!(p.setup, vec!["corepack yarn install --frozen-lockfile"]);
    assert_eq!(p.lint, vec!["corepack yarn run lint"]);
    assert_eq!(p.format, vec!["corepack yarn run prettier --write ."]);
    assert!(
        p.test.is_empty(),
        "the CI runs no tests: {:?}",
        p.describe()
    );
    assert!(says(&p, Stage::Lint, "corepack yarn run lint").ends_with("run in .gitlab-ci.yml"));
}

#[test]
fn workflows_that_gate_changes_with_known_actions_and_local_composites() {
    let p = plan(&[
        ("go.mod", "module x\n"),
        (
            "pyproject.toml",
            "[project]\nname = \"x\"\n[dependency-groups]\ndev = [\"ruff\"]\n",
        ),
        ("uv.lock", ""),
        (
            ".github/workflows/lint.yml",
            "on:\n  pull_request:\njobs:\n  go:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: golangci/golangci-lint-action@v6\n        with:\n          args: --timeout 5m\n\
             \x20     - uses: ./.github/actions/test\n  py:\n    runs-on: ubuntu-latest\n    steps:\n      - uses: astral-sh/ruff-action@v3\n",
        ),
        (
            ".github/actions/test/action.yml",
            "runs:\n  using: composite\n  steps:\n    - run: go test -race ./...\n      shell: bash\n",
        ),
        (
            ".github/workflows/release.yml",
            "on:\n  release:\njobs:\n  r:\n    steps:\n      - run: go test ./...\n",
        ),
    ]);
    assert_eq!(
        p.lint,
        vec![
            "golangci-lint run --timeout 5m",
            "uv run ruff check --no-fix"
        ]
    );
    assert_eq!(p.test, vec!["go test -race ./..."]);
    assert!(p.format.is_empty());
    assert_eq!(p.setup, vec!["uv sync --locked", "go mod download"]);
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("release.yml does not run on pull requests"))
    );
}

#[test]
fn python_setup_installs_the_groups_extras_and_files_that_hold_the_tools() {
    let poetry = plan(&[
        (
            "pyproject.toml",
            "[tool.poetry]\nname = \"x\"\n[tool.poetry.group.lint]\noptional = true\n[tool.poetry.group.lint.dependencies]\nmypy = \"*\"\n\
             [tool.mypy]\nstrict = true\n[tool.pytest.ini_options]\n",
        ),
        ("poetry.lock", ""),
    ]);
    assert_eq!(
        poetry.setup,
        vec![
            "poetry install --no-interaction --with lint",
            "poetry run pip install pytest"
        ]
    );
    assert_eq!(poetry.lint, vec!["poetry run mypy ."]);
    assert_eq!(poetry.test, vec!["poetry run pytest"]);

    let pip = plan(&[
        ("setup.py", "from setuptools import setup\nsetup()\n"),
        (
            "setup.cfg",
            "[options.extras_require]\ntest =\n    pytest\n[flake8]\nmax-line-length = 100\n",
        ),
        ("requirements/lint.txt", "flake8==7.1.1\n"),
        ("requirements/docs.txt", "sphinx\n"),
        ("conftest.py", ""),
        (
            ".github/workflows/ci.yml",
            &workflow(
                "      - run: python -m pip install --user -e .[test]\n      - run: python -m pytest -x\n",
            ),
        ),
    ]);
    assert_eq!(
        pip.setup,
        vec![
            "python3 -m venv .venv && echo '*' > .venv/.gitignore",
            ".venv/bin/pip install -e '.[test]'",
        ]
    );
    assert_eq!(pip.test, vec![".venv/bin/python -m pytest -x"]);
    assert!(
        pip.lint.is_empty(),
        "the CI runs no flake8: {:?}",
        pip.describe()
    );
}

#[test]
fn justfile_recipes_and_pre_commit_ci() {
    let p = plan(&[
        (
            "justfile",
            "src := \"src\"\n\n# checks\nlint:\n    uv run ruff check {{src}}\ntest *ARGS:\n    uv run pytest {{ARGS}}\n",
        ),
        ("uv.lock", ""),
        (
            "pyproject.toml",
            "[project]\nname = \"x\"\n[dependency-groups]\ndev = [\"ruff\", \"pytest\"]\n",
        ),
    ]);
    // The recipe would let ruff fix only if configured to: run as written, it is a check.
    assert_eq!(p.lint, vec!["just lint"]);
    assert_eq!(p.test, vec!["just test"]);
    assert_eq!(p.setup, vec!["uv sync --locked"]);

    let p = plan(&[
        ("justfile", "test:\n    cargo test --all-features\n"),
        ("Cargo.toml", "[package]\nname = \"x\"\n"),
        (
            ".pre-commit-config.yaml",
            "ci:\n  skip: [clippy]\nrepos:\n  - repo: https://github.com/doublify/pre-commit-rust\n    rev: v1.0\n    hooks:\n      - id: fmt\n      - id: clippy\n",
        ),
    ]);
    // pre-commit.ci runs the fmt hook (and skips clippy): Rust formatting is the CI's.
    let fmt_hook = p.format[0].clone();
    assert!(
        fmt_hook.contains("pre-commit run fmt --files"),
        "{:?}",
        p.format
    );
    assert!(says(&p, Stage::Format, &fmt_hook).contains("run in pre-commit.ci"));
    assert!(
        p.setup
            .iter()
            .any(|s| s.ends_with("pre-commit install-hooks")),
        "{:?}",
        p.setup
    );
    assert!(p.lint.is_empty() && p.test.is_empty(), "{:?}", p.describe());
}

#[test]
fn nothing_found_and_files_outside_the_repository_are_not_read() {
    let p = plan(&[("README", "")]);
    assert!(p.is_empty());
    assert_eq!(p.source, "none found");

    let outside = tempfile::tempdir().unwrap();
    fs::write(
        outside.path().join("package.json"),
        r#"{"scripts":{"test":"jest"}}"#,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("package.json"),
        dir.path().join("package.json"),
    )
    .unwrap();
    assert!(discover(dir.path()).unwrap().is_empty());

    let p = plan(&[(".github/workflows/broken.yml", "on: [push\njobs: {")]);
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("broken.yml is not valid YAML")),
        "{:?}",
        p.notes
    );
}
