#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::fs;

use nightshift_checks::{CheckRunner, ChecksError, Stage, discover, trim_output};
use nightshift_core::CheckOutcome;
use nightshift_sandbox::Sandbox;
use tokio_util::sync::CancellationToken;

fn repo(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (p, c) in files {
        fs::write(dir.path().join(p), c).unwrap();
    }
    dir
}

#[test]
fn config_file_wins() {
    let dir = repo(&[
        (
            ".nightshift.toml",
            "[setup]\ncommands = [\"make deps\"]\n[checks]\nformat = [\"fmt\"]\nlint = [\"lint\"]\ntest = [\"t1\", \"t2\"]\n",
        ),
        ("Cargo.toml", "[package]"),
    ]);
    let plan = discover(dir.path()).unwrap();
    assert_eq!(plan.setup, vec!["make deps"]);
    assert_eq!(plan.test, vec!["t1", "t2"]);
    assert_eq!(plan.source, ".nightshift.toml");
    assert!(
        plan.network.is_empty(),
        "checks get no network unless asked"
    );
}

#[test]
fn checks_ask_for_network_by_host() {
    let dir = repo(&[(
        ".nightshift.toml",
        "[checks]\ntest = [\"t\"]\nnetwork = [\"db.internal:5432\", \"*.example.com\"]\n",
    )]);
    let plan = discover(dir.path()).unwrap();
    assert_eq!(plan.network, vec!["db.internal:5432", "*.example.com"]);
    let dir = repo(&[(
        ".nightshift.toml",
        "[checks]\ntest = [\"t\"]\nnetwork = [\"http://everything\"]\n",
    )]);
    let err = discover(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("checks.network") && err.contains("http://everything"),
        "{err}"
    );
}

#[test]
fn malformed_config_names_the_line() {
    let dir = repo(&[(
        ".nightshift.toml",
        "[checks]\nformat = [\"ok\"]\nlint = \"not a list\n",
    )]);
    let err = discover(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(".nightshift.toml") && err.contains("line 3"),
        "{err}"
    );
    let dir = repo(&[(".nightshift.toml", "[checks]\ntests = [\"typo\"]\n")]);
    let err = discover(dir.path()).unwrap_err().to_string();
    assert!(err.contains("tests") && err.contains("line 2"), "{err}");
}

#[test]
fn detects_from_build_files() {
    let cargo = discover(repo(&[("Cargo.toml", ""), ("Cargo.lock", "")]).path()).unwrap();
    assert_eq!(cargo.setup, vec!["cargo fetch --locked"]);
    assert_eq!(cargo.format, vec!["cargo fmt --all"]);
    assert_eq!(
        cargo.lint,
        vec!["cargo clippy --all-targets -- -D warnings"]
    );
    assert_eq!(cargo.test, vec!["cargo test"]);
    assert_eq!(cargo.source, "Cargo.toml");

    let pnpm = discover(
        repo(&[
            (
                "package.json",
                r#"{"scripts":{"lint":"eslint .","test":"vitest"}}"#,
            ),
            ("pnpm-lock.yaml", ""),
        ])
        .path(),
    )
    .unwrap();
    assert_eq!(pnpm.setup, vec!["pnpm install --frozen-lockfile"]);
    assert_eq!(pnpm.lint, vec!["pnpm run lint"]);
    assert_eq!(pnpm.test, vec!["pnpm run test"]);
    assert!(pnpm.format.is_empty());

    let npm = discover(
        repo(&[
            (
                "package.json",
                r#"{"scripts":{"test":"echo \"Error: no test specified\" && exit 1"}}"#,
            ),
            ("package-lock.json", ""),
        ])
        .path(),
    )
    .unwrap();
    assert_eq!(npm.setup, vec!["npm ci"]);
    assert!(npm.test.is_empty());

    let py = discover(
        repo(&[
            ("pyproject.toml", "[tool.ruff]\n[tool.pytest.ini_options]\n"),
            ("uv.lock", ""),
        ])
        .path(),
    )
    .unwrap();
    assert_eq!(py.setup, vec!["uv sync --locked"]);
    assert_eq!(py.format, vec!["ruff format ."]);
    assert_eq!(py.lint, vec!["ruff check ."]);
    assert_eq!(py.test, vec!["pytest"]);

    let go = discover(repo(&[("go.mod", "module x")]).path()).unwrap();
    assert_eq!(go.lint, vec!["go vet ./..."]);

    let make = discover(
        repo(&[
            ("Makefile", "fmt:\n\ttrue\ntest:\n\ttrue\n"),
            ("go.mod", ""),
        ])
        .path(),
    )
    .unwrap();
    assert_eq!(make.format, vec!["make fmt"]);
    assert_eq!(make.lint, vec!["go vet ./..."]);
    assert_eq!(make.test, vec!["make test"]);
    assert_eq!(make.source, "go.mod, Makefile");

    assert!(discover(repo(&[("README", "")]).path()).unwrap().is_empty());
}

#[tokio::test]
async fn runs_a_check_and_keeps_the_lines_that_matter() {
    let dir = repo(&[]);
    let runner = CheckRunner::new(Sandbox::new(), vec![]);
    let mut seen = 0;
    let script = "for i in $(seq 1 200); do echo noise $i; done; echo 'assertion failed: left == right'; for i in $(seq 1 30); do echo tail $i; done; exit 2";
    let result = runner
        .run(
            Stage::Test,
            script,
            dir.path(),
            1,
            &CancellationToken::new(),
            &mut |_| {
                seen += 1;
                Box::pin(async {})
            },
        )
        .await
        .unwrap();
    assert_eq!(seen, 231);
    assert_eq!(result.outcome, CheckOutcome::Failed);
    assert_eq!(result.exit_code, Some(2));
    assert!(result.output.contains("assertion failed"));
    assert!(result.output.contains("tail 30"));
    assert!(!result.output.contains("noise 5\n"));
    assert_eq!(result.stage, "test");

    let ok = runner
        .run(
            Stage::Lint,
            "true",
            dir.path(),
            1,
            &CancellationToken::new(),
            &mut |_| Box::pin(async {}),
        )
        .await
        .unwrap();
    assert_eq!(ok.outcome, CheckOutcome::Passed);
}

#[tokio::test]
async fn a_stopped_check_is_killed() {
    let dir = repo(&[]);
    let runner = CheckRunner::new(Sandbox::new(), vec![]);
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        s.cancel();
    });
    let err = runner
        .run(Stage::Test, "sleep 100", dir.path(), 1, &stop, &mut |_| {
            Box::pin(async {})
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ChecksError::Stopped));
}

#[test]
fn trimming_caps_size() {
    let lines: Vec<String> = (0..100_000)
        .map(|i| format!("error line {i} {}", "x".repeat(50)))
        .collect();
    assert!(trim_output(&lines).len() <= 8 * 1024 + 4);
}
