//! The fixture projects through whole confined runs, with the real toolchains and package
//! managers and nothing configured but what a proxy-bound machine needs: the good change is
//! pushed and its branch, cloned afresh, passes every check the repository's CI runs; the bad
//! change is stopped (or put right by the repository's own formatter, and then passes too).
//! The second run on each base reuses the first one's baseline.

use std::time::Duration;

use nightshift_checks::{CheckRunner, Stage, discover};
use nightshift_core::{CheckOutcome, EndReason, Run, RunEvent, RunStatus};
use nightshift_engine::RunEnv;
use nightshift_sandbox::Sandbox;
use nightshift_test_support::git::{RemoteRepo, git};
use nightshift_test_support::projects::{Project, check_env, writing};
use tokio_util::sync::CancellationToken;

use super::harness::Harness;

/// What setup needs on a machine behind a TLS-inspecting proxy, passed on as an operator would
/// in `[env]`; corepack checks npm's signatures, which such a registry answer may lack.
async fn harness() -> Harness {
    Harness::start_with(tempfile::tempdir().unwrap(), 1, |config| {
        config.confinement.checks_env = RunEnv {
            set: vec![("COREPACK_INTEGRITY_KEYS".into(), "0".into())],
            pass: [
                "SSL_CERT_FILE",
                "SSL_CERT_DIR",
                "NODE_EXTRA_CA_CERTS",
                "PIP_CERT",
                "REQUESTS_CA_BUNDLE",
            ]
            .into_iter()
            .filter(|v| std::env::var_os(v).is_some())
            .map(String::from)
            .collect(),
        };
    })
    .await
}

fn text(events: &[RunEvent]) -> String {
    events
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

async fn run_change(
    h: &Harness,
    remote: &RemoteRepo,
    title: &str,
    change: &[(&str, String)],
) -> (i64, Run, Vec<RunEvent>) {
    let task = h
        .create(
            &remote.url(),
            title,
            &writing(change),
            Duration::from_secs(600),
        )
        .await;
    let run = h.wait_end(task).await;
    let events = h.events(&run).await;
    (task, run, events)
}

/// Whether the run reused a baseline, as its event says.
fn baseline_reused(events: &[RunEvent]) -> bool {
    let found = events
        .iter()
        .find_map(|e| e.data.get("baseline"))
        .unwrap_or_else(|| panic!("no baseline event:\n{}", text(events)));
    found["cached"] == true
}

/// Clones `branch` afresh and runs the plan its files give, as the repository's CI would:
/// setup with network, then every check offline. Every check passes, and the formatters find
/// nothing left to change (a CI's check mode would pass).
async fn assert_branch_passes(remote: &RemoteRepo, branch: &str) {
    let scratch = tempfile::tempdir().unwrap();
    let (dir, home) = (scratch.path().join("clone"), scratch.path().join("home"));
    std::fs::create_dir_all(&home).unwrap();
    git(
        scratch.path(),
        &[
            "clone",
            "--quiet",
            "--branch",
            branch,
            &remote.url(),
            &dir.display().to_string(),
        ],
    );
    let plan = discover(&dir).unwrap();
    for stage in Stage::ALL {
        let runner = CheckRunner::new(Sandbox::new(), check_env(&home, stage == Stage::Setup));
        for command in plan.commands(stage) {
            let mut output = Vec::new();
            let result = runner
                .run(
                    stage,
                    command,
                    &dir,
                    1,
                    &CancellationToken::new(),
                    &mut |l| {
                        output.push(l.text.clone());
                        Box::pin(async {})
                    },
                )
                .await
                .unwrap();
            assert_eq!(
                result.outcome,
                CheckOutcome::Passed,
                "{branch}: {} `{command}` failed:\n{}",
                stage.as_str(),
                output.join("\n")
            );
        }
        if stage == Stage::Format {
            let status = git(&dir, &["status", "--porcelain", "--untracked-files=no"]);
            assert!(status.is_empty(), "{branch} is not formatted:\n{status}");
        }
    }
}

async fn good_is_pushed_and_bad_is_stopped(name: &str) {
    let project = Project::named(name);
    let remote = project.published();
    let h = harness().await;

    let (task, run, events) = run_change(&h, &remote, "Make the good change", &project.good).await;
    assert_eq!(
        run.status,
        RunStatus::Succeeded,
        "{name}: {run:?}\n{}",
        text(&events)
    );
    assert!(
        !baseline_reused(&events),
        "{name}: the first run reused a baseline"
    );
    let branch = h.branch_of(task, "Make the good change");
    assert!(remote.head(&branch).is_some(), "{name}: nothing pushed");
    assert_branch_passes(&remote, &branch).await;

    let (task, run, events) = run_change(&h, &remote, "Make the bad change", &project.bad).await;
    assert!(
        baseline_reused(&events),
        "{name}: the baseline was taken again:\n{}",
        text(&events)
    );
    let branch = h.branch_of(task, "Make the bad change");
    match run.end_reason {
        Some(EndReason::ChecksFailed) => {
            assert_eq!(
                remote.head(&branch),
                None,
                "{name}: a failing change was pushed"
            );
        }
        Some(EndReason::Succeeded) => assert_branch_passes(&remote, &branch).await,
        _ => panic!("{name}: the bad change ended {run:?}\n{}", text(&events)),
    }
}

#[tokio::test]
async fn rust_example_through_a_run() {
    good_is_pushed_and_bad_is_stopped("rust-example").await;
}

#[tokio::test]
async fn uv_ruff_mypy_through_a_run() {
    good_is_pushed_and_bad_is_stopped("uv-ruff-mypy").await;
}

#[tokio::test]
async fn npm_scripts_through_a_run() {
    good_is_pushed_and_bad_is_stopped("npm-scripts").await;
}

#[tokio::test]
async fn pnpm_corepack_through_a_run() {
    good_is_pushed_and_bad_is_stopped("pnpm-corepack").await;
}

#[tokio::test]
async fn yarn_berry_through_a_run() {
    good_is_pushed_and_bad_is_stopped("yarn-berry").await;
}

#[tokio::test]
async fn tox_no_lock_through_a_run() {
    good_is_pushed_and_bad_is_stopped("tox-no-lock").await;
}

#[tokio::test]
async fn go_module_through_a_run() {
    good_is_pushed_and_bad_is_stopped("go-module").await;
}

#[tokio::test]
async fn makefile_python_through_a_run() {
    good_is_pushed_and_bad_is_stopped("makefile-python").await;
}

#[tokio::test]
async fn pre_commit_local_through_a_run() {
    good_is_pushed_and_bad_is_stopped("pre-commit-local").await;
}

/// Every fixture has its test here.
#[test]
fn every_fixture_goes_through_a_run() {
    let source = include_str!("projects.rs");
    for project in nightshift_test_support::projects::all() {
        let test = format!("fn {}_through_a_run()", project.name.replace('-', "_"));
        assert!(
            source.contains(&test),
            "no `{test}` for the {} fixture",
            project.name
        );
    }
}
