//! Detection on fixture projects in the shapes real repositories have, and the detected plans
//! run by the real toolchains: a good change passes every check, a bad one fails one.

use std::path::Path;

use nightshift_checks::{CheckPlan, CheckRunner, Stage, discover};
use nightshift_core::{CheckOutcome, CheckResult};
use nightshift_sandbox::Sandbox;
use nightshift_test_support::git::git;
use nightshift_test_support::projects::{Project, check_env, write_files};
use tokio_util::sync::CancellationToken;

/// The plan detected on the project's files.
fn detected(name: &str) -> CheckPlan {
    let dir = tempfile::tempdir().unwrap();
    Project::named(name).write(dir.path());
    discover(dir.path()).unwrap()
}

/// Asserts the plan's commands stage by stage, and that each listed command's evidence says
/// what it was found from and which CI file runs it.
fn assert_plan(plan: &CheckPlan, stages: [&[&str]; 4], evidence: &[(&str, &str)]) {
    for (stage, want) in Stage::ALL.into_iter().zip(stages) {
        assert_eq!(
            plan.commands(stage),
            want,
            "{} commands of\n{}",
            stage.as_str(),
            plan.describe().join("\n")
        );
    }
    for (command, says) in evidence {
        let found = plan
            .evidence
            .iter()
            .find(|e| e.command == *command)
            .unwrap_or_else(|| {
                panic!("no evidence for {command}:\n{}", plan.describe().join("\n"))
            });
        assert!(
            found.to_string().contains(says),
            "evidence of {command} is {found}, expected it to say {says}"
        );
    }
}

#[test]
fn a_rust_crate_is_linted_over_every_target() {
    assert_plan(
        &detected("rust-example"),
        [
            &["cargo fetch --locked"],
            &["cargo fmt --all"],
            &["cargo clippy --all-targets -- -D warnings"],
            &["cargo test"],
        ],
        &[
            ("cargo fmt --all", "from Cargo.toml and rustfmt.toml"),
            ("cargo clippy --all-targets -- -D warnings", "every target"),
        ],
    );
}

#[test]
fn a_uv_project_runs_what_its_ci_runs_and_ruff_never_fixes() {
    assert_plan(
        &detected("uv-ruff-mypy"),
        [
            &["uv sync --locked --all-extras --dev"],
            &["uv run ruff format ."],
            &["uv run ruff check --no-fix .", "uv run mypy"],
            &["uv run pytest"],
        ],
        &[
            (
                "uv sync --locked --all-extras --dev",
                "run in .github/workflows/ci.yml",
            ),
            (
                "uv run ruff check --no-fix .",
                "from the CI step `uv run ruff check .`, run in .github/workflows/ci.yml",
            ),
            ("uv run ruff format .", "`uv run ruff format --check .`"),
        ],
    );
}

#[test]
fn npm_scripts_with_check_names_are_found_and_the_format_check_applies() {
    assert_plan(
        &detected("npm-scripts"),
        [
            &["npm ci"],
            &["npx --no-install prettier --write ."],
            &["npm run check:lint"],
            &["npm run test"],
        ],
        &[
            (
                "npx --no-install prettier --write .",
                "from package.json script check:format (`prettier --check .`), run in .github/workflows/tests.yml",
            ),
            (
                "npm run check:lint",
                "from package.json script check:lint, run in .github/workflows/tests.yml",
            ),
        ],
    );
}

#[test]
fn pnpm_comes_from_corepack_at_the_pinned_version() {
    assert_plan(
        &detected("pnpm-corepack"),
        [
            &["corepack pnpm install --frozen-lockfile"],
            &["corepack pnpm run format"],
            &["corepack pnpm run typecheck"],
            &["corepack pnpm run test"],
        ],
        &[
            (
                "corepack pnpm install --frozen-lockfile",
                "packageManager pnpm@9.15.0",
            ),
            (
                "corepack pnpm run format",
                "the apply mode of package.json script format:check), run in .github/workflows/ci.yml",
            ),
        ],
    );
}

#[test]
fn yarn_berry_runs_the_release_shipped_in_the_repository() {
    let yarn = "node .yarn/releases/yarn-4.5.3.cjs";
    let plan = detected("yarn-berry");
    assert_plan(
        &plan,
        [
            &[&format!("{yarn} install --immutable")],
            &[&format!("{yarn} run fix:format")],
            &[&format!("{yarn} run biome lint .")],
            &[&format!("{yarn} run test")],
        ],
        &[
            (
                &format!("{yarn} install --immutable"),
                "(.yarnrc.yml yarnPath)",
            ),
            (
                &format!("{yarn} run biome lint ."),
                "from package.json script lint (`biome lint --write .`)",
            ),
        ],
    );
}

#[test]
fn a_tox_project_without_a_lockfile_installs_its_environments_dependencies() {
    assert_plan(
        &detected("tox-no-lock"),
        [
            &[
                "python3 -m venv .venv && echo '*' > .venv/.gitignore",
                ".venv/bin/pip install black==24.10.0 flake8==7.1.1 pytest==8.3.4",
            ],
            &[".venv/bin/black ."],
            &[".venv/bin/flake8 ."],
            &[".venv/bin/pytest tests"],
        ],
        &[
            (
                ".venv/bin/black .",
                "from tox.ini [testenv:lint] (`black --check --diff .`), run in .gitlab-ci.yml",
            ),
            (
                ".venv/bin/pip install black==24.10.0 flake8==7.1.1 pytest==8.3.4",
                "tox.ini [testenv:lint] deps",
            ),
        ],
    );
}

#[test]
fn a_go_module_gets_gofmt_vet_and_test() {
    assert_plan(
        &detected("go-module"),
        [
            &["go mod download"],
            &["gofmt -w ."],
            &["go vet ./..."],
            &["go test ./..."],
        ],
        &[("go vet ./...", "from go.mod")],
    );
}

#[test]
fn makefile_targets_run_with_the_virtualenv_active() {
    assert_plan(
        &detected("makefile-python"),
        [
            &[
                "python3 -m venv .venv && echo '*' > .venv/.gitignore",
                ".venv/bin/pip install -r requirements-dev.txt",
            ],
            &[". .venv/bin/activate && make format"],
            &[". .venv/bin/activate && make lint"],
            &[". .venv/bin/activate && make test"],
        ],
        &[(
            ". .venv/bin/activate && make lint",
            "from Makefile target lint",
        )],
    );
}

#[test]
fn pre_commit_hooks_run_through_pre_commit_and_a_fixing_local_hook_runs_strictly() {
    let hook = |id: &str| {
        format!(
            ". .venv/bin/activate && git ls-files -z --cached --others --exclude-standard | xargs -0 pre-commit run {id} --files"
        )
    };
    let format = hook("ruff-format");
    let format = format!(
        "{format} || {}",
        format.trim_start_matches(". .venv/bin/activate && ")
    );
    assert_plan(
        &detected("pre-commit-local"),
        [
            &[
                "python3 -m venv .venv && echo '*' > .venv/.gitignore",
                ".venv/bin/pip install -r requirements-dev.txt",
            ],
            &[&format],
            &[".venv/bin/ruff check --no-fix", &hook("no-print")],
            &[&hook("pytest")],
        ],
        &[
            (
                ".venv/bin/ruff check --no-fix",
                "from .pre-commit-config.yaml hook ruff (`ruff check --fix`), run in .github/workflows/pre-commit.yml",
            ),
            (
                ".venv/bin/pip install -r requirements-dev.txt",
                "run in .github/workflows/pre-commit.yml",
            ),
        ],
    );
}

/// Runs `stages` of `plan` in `dir`: setup with network, checks without.
async fn run(plan: &CheckPlan, dir: &Path, home: &Path, stages: &[Stage]) -> Vec<CheckResult> {
    let mut results = Vec::new();
    for stage in stages {
        let runner = CheckRunner::new(Sandbox::new(), check_env(home, *stage == Stage::Setup));
        for command in plan.commands(*stage) {
            let mut output = Vec::new();
            let result = runner
                .run(
                    *stage,
                    command,
                    dir,
                    1,
                    &CancellationToken::new(),
                    &mut |l| {
                        output.push(l.text.clone());
                        Box::pin(async {})
                    },
                )
                .await
                .unwrap();
            eprintln!(
                "{} `{command}`: {:?} in {} ms",
                stage.as_str(),
                result.outcome,
                result.duration_ms
            );
            if *stage == Stage::Setup {
                assert_eq!(
                    result.outcome,
                    CheckOutcome::Passed,
                    "setup `{command}` failed:\n{}",
                    output.join("\n")
                );
            }
            results.push(result);
        }
    }
    results
}

/// Sets the project up once, then runs its checks on the good change (all pass, the
/// formatter's changes stay) and on the bad change (one fails). Returns the bad run's dir.
async fn good_passes_bad_fails(name: &str) -> (tempfile::TempDir, Vec<CheckResult>) {
    let project = Project::named(name);
    let scratch = tempfile::tempdir().unwrap();
    let (dir, home) = (scratch.path().join("repo"), scratch.path().join("home"));
    std::fs::create_dir_all(&home).unwrap();
    project.checkout(&dir);
    let plan = discover(&dir).unwrap();
    run(&plan, &dir, &home, &[Stage::Setup]).await;
    let checks = [Stage::Format, Stage::Lint, Stage::Test];

    write_files(&dir, &project.good);
    let good = run(&plan, &dir, &home, &checks).await;
    let failed: Vec<&CheckResult> = good
        .iter()
        .filter(|r| r.outcome != CheckOutcome::Passed)
        .collect();
    assert!(
        failed.is_empty(),
        "{name}: the good change failed {failed:#?}"
    );

    git(&dir, &["checkout", "--quiet", "--", "."]);
    git(&dir, &["clean", "--quiet", "-fd"]);
    write_files(&dir, &project.bad);
    let bad = run(&plan, &dir, &home, &checks).await;
    assert!(
        bad.iter().any(|r| r.outcome == CheckOutcome::Failed),
        "{name}: the bad change passed every check: {bad:#?}"
    );
    (scratch, bad)
}

fn failed_stages(results: &[CheckResult]) -> Vec<&str> {
    results
        .iter()
        .filter(|r| r.outcome == CheckOutcome::Failed)
        .map(|r| r.stage.as_str())
        .collect()
}

#[tokio::test]
async fn rust_example_lint_is_caught_by_clippy_over_all_targets() {
    let (_dir, bad) = good_passes_bad_fails("rust-example").await;
    // The example compiles, so `cargo test` passes: only clippy over every target sees it.
    assert_eq!(failed_stages(&bad), vec!["lint"], "{bad:#?}");
    assert!(
        bad[1].output.contains("examples/hello.rs"),
        "{}",
        bad[1].output
    );
}

#[tokio::test]
async fn uv_lint_fails_and_leaves_the_file_as_the_change_made_it() {
    let (scratch, bad) = good_passes_bad_fails("uv-ruff-mypy").await;
    assert!(failed_stages(&bad).contains(&"lint"), "{bad:#?}");
    let tally = std::fs::read_to_string(scratch.path().join("repo/tally.py")).unwrap();
    assert!(
        tally.starts_with("import os"),
        "ruff fixed the file in check mode:\n{tally}"
    );
}

#[tokio::test]
async fn npm_scripts_project_runs_good_and_refuses_bad() {
    let (_dir, bad) = good_passes_bad_fails("npm-scripts").await;
    assert_eq!(failed_stages(&bad), vec!["lint"], "{bad:#?}");
}

#[tokio::test]
async fn pnpm_project_runs_good_and_refuses_bad() {
    let (_dir, bad) = good_passes_bad_fails("pnpm-corepack").await;
    assert_eq!(failed_stages(&bad), vec!["lint"], "{bad:#?}");
}

#[tokio::test]
async fn yarn_berry_project_runs_good_and_refuses_bad() {
    let (_dir, bad) = good_passes_bad_fails("yarn-berry").await;
    assert_eq!(failed_stages(&bad), vec!["lint"], "{bad:#?}");
}

#[tokio::test]
async fn tox_project_runs_good_and_refuses_bad() {
    let (_dir, bad) = good_passes_bad_fails("tox-no-lock").await;
    assert_eq!(failed_stages(&bad), vec!["lint"], "{bad:#?}");
}

#[tokio::test]
async fn go_module_runs_good_and_refuses_bad() {
    let (_dir, bad) = good_passes_bad_fails("go-module").await;
    assert!(failed_stages(&bad).contains(&"lint"), "{bad:#?}");
}

#[tokio::test]
async fn makefile_project_runs_good_and_refuses_bad() {
    let (_dir, bad) = good_passes_bad_fails("makefile-python").await;
    assert_eq!(failed_stages(&bad), vec!["lint"], "{bad:#?}");
}

#[tokio::test]
async fn pre_commit_project_runs_good_and_refuses_bad() {
    let (_dir, bad) = good_passes_bad_fails("pre-commit-local").await;
    assert_eq!(failed_stages(&bad), vec!["lint"], "{bad:#?}");
}
