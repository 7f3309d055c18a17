use std::time::Duration;

use nightshift_core::{CheckOutcome, EndReason, EventKind, Phase, RunStatus};
use nightshift_engine::Requester;
use nightshift_test_support::git::RemoteRepo;

use super::harness::Harness;

const CONFIG: &str = r#"[checks]
format = ["sh fmt.sh"]
lint = ["sh lint.sh"]
test = ["sh test.sh"]
"#;

/// A tiny repository with a formatter (squeezes spaces), a linter (no TODO) and a test
/// (the greeting says goodbye).
fn checked_repo() -> RemoteRepo {
    RemoteRepo::with_files(&[
        (".nightshift.toml", CONFIG),
        ("greeting.txt", "hello world\n"),
        (
            "fmt.sh",
            "tr -s ' ' < greeting.txt > .fmt && mv .fmt greeting.txt\n",
        ),
        ("lint.sh", "! grep -n TODO greeting.txt\n"),
        (
            "test.sh",
            "grep -q goodbye greeting.txt || { echo 'assertion failed: greeting does not say goodbye'; exit 1; }\n",
        ),
    ])
}

#[tokio::test]
async fn a_command_task_is_validated_formatted_and_pushed() {
    let remote = checked_repo();
    let h = Harness::start(1).await;
    let task = h
        .create(
            &remote.url(),
            "Say goodbye",
            "sed -i 's/hello/goodbye/' greeting.txt && echo 'see   you' >> greeting.txt",
            Duration::from_secs(60),
        )
        .await;
    let run = h.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.end_reason, Some(EndReason::Succeeded));
    assert_eq!(run.progress, 100);

    let branch = h.branch_of(task, "Say goodbye");
    let head = remote.head(&branch).expect("branch pushed");
    assert_eq!(run.checkpoint.pushed_commit.as_deref(), Some(head.as_str()));
    // The formatter's result is what was committed.
    assert_eq!(
        remote.show(&head, "greeting.txt"),
        "goodbye world\nsee you\n"
    );
    let message = remote.message(&head);
    assert!(message.starts_with("Say goodbye"), "{message}");
    assert!(
        message.contains(&format!("Nightshift-Task: {task}")),
        "{message}"
    );
    assert!(message.contains("Nightshift-Run: 1"), "{message}");
    assert_eq!(remote.parent(&head), remote.head("main").unwrap());

    let events = h.events(&run).await;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "ordered, gap-free"
    );
    let phases: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == EventKind::Phase)
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        &phases[..4],
        &["preparing", "agent", "validating", "publishing"]
    );
    // Validating leaves the change uncommitted; publishing commits it, then pushes.
    let at = |what: &str| {
        events
            .iter()
            .position(|e| e.message.starts_with(what))
            .unwrap_or_else(|| panic!("no {what:?} event: {events:#?}"))
    };
    let committed = &events[at("committed ")];
    assert_eq!(committed.phase, Some(Phase::Publishing), "{committed:?}");
    assert!(at("publishing") < at("committed ") && at("committed ") < at("pushed "));
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::Check
                && e.message.contains("checks from .nightshift.toml"))
    );

    let change = h
        .store
        .change(run.id)
        .await
        .unwrap()
        .expect("generated change stored");
    assert_eq!(change.files_changed, vec!["greeting.txt"]);
    assert!(change.diff.contains("+goodbye world"));
    // The repository's three checks, then the test-tampering guard.
    assert_eq!(change.checks.len(), 4);
    assert_eq!(change.checks[3].stage, "guard");
    assert!(
        change
            .checks
            .iter()
            .all(|c| c.outcome == CheckOutcome::Passed)
    );
    assert_eq!(change.checks_source, ".nightshift.toml");
    assert_eq!(change.branch.as_deref(), Some(branch.as_str()));
    assert!(run.checkpoint.completed.contains(&Phase::Publishing));
    // The end is recorded first and the workspace removed right after: give it a moment.
    let workspace = h.data.path().join("runs").join(run.id.to_string());
    let removing = std::time::Instant::now();
    while workspace.exists() && removing.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!workspace.exists(), "workspace removed");
}

#[tokio::test]
async fn failing_checks_push_nothing_and_retry_makes_run_two() {
    let remote = checked_repo();
    let h = Harness::start(1).await;
    let task = h
        .create(
            &remote.url(),
            "Break it",
            "echo 'TODO fix' >> greeting.txt",
            Duration::from_secs(60),
        )
        .await;
    let run = h.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.end_reason, Some(EndReason::ChecksFailed));
    assert_eq!(run.failed_phase, Some(Phase::Validating));
    assert!(
        run.error
            .as_deref()
            .unwrap_or("")
            .contains("test `sh test.sh`"),
        "{:?}",
        run.error
    );
    assert_eq!(remote.branches(), vec!["main"], "nothing pushed");

    let events = h.events(&run).await;
    assert!(
        events.iter().any(|e| e.kind == EventKind::Log
            && e.message
                .contains("assertion failed: greeting does not say goodbye")),
        "the failing test's output is in the events"
    );
    let change = h.store.change(run.id).await.unwrap().unwrap();
    assert!(
        change.diff.contains("+TODO fix"),
        "a failed run keeps its diff"
    );
    let test = change.checks.iter().find(|c| c.stage == "test").unwrap();
    assert_eq!(test.outcome, CheckOutcome::Failed);
    assert!(test.output.contains("assertion failed"));

    let run2 = h.store.retry_task(h.project_id, task).await.unwrap();
    assert_eq!(run2.number, 2);
    h.engine.wake();
    let run2 = h.wait_end(task).await;
    assert_eq!(run2.number, 2);
    assert_eq!(run2.end_reason, Some(EndReason::ChecksFailed));
    assert_eq!(
        h.store.task_runs(h.project_id, task).await.unwrap().len(),
        2
    );
}

/// A remote that refuses the push for want of permission: the run fails in publishing as
/// `permission_denied` (not `infrastructure`), with git's reason, and keeps its committed diff.
#[tokio::test]
async fn no_change_succeeds_without_pushing() {
    let remote = checked_repo();
    let h = Harness::start(1).await;
    let task = h
        .create(
            &remote.url(),
            "Do nothing",
            "echo looked around",
            Duration::from_secs(60),
        )
        .await;
    let run = h.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Succeeded);
    assert_eq!(run.end_reason, Some(EndReason::NoChanges));
    assert_eq!(remote.branches(), vec!["main"]);
}

#[tokio::test]
async fn broken_inputs_end_with_the_right_reason() {
    let h = Harness::start(1).await;
    let bad_config = RemoteRepo::with_files(&[
        (
            ".nightshift.toml",
            "[checks]\nformat = [\"ok\"]\nlint = \"oops\n",
        ),
        ("a", ""),
    ]);
    let task = h
        .create(&bad_config.url(), "x", "touch b", Duration::from_secs(60))
        .await;
    let run = h.wait_end(task).await;
    assert_eq!(run.end_reason, Some(EndReason::ChecksFailed));
    assert_eq!(run.failed_phase, Some(Phase::Preparing));
    assert!(
        run.error.as_deref().unwrap_or("").contains("line 3"),
        "{:?}",
        run.error
    );

    let plain = RemoteRepo::with_files(&[("a", "")]);
    let task = h
        .create(
            &plain.url(),
            "y",
            "definitely-not-a-real-tool --fix",
            Duration::from_secs(60),
        )
        .await;
    let run = h.wait_end(task).await;
    assert_eq!(run.end_reason, Some(EndReason::AgentFailed));
    assert_eq!(run.failed_phase, Some(Phase::Agent));
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("definitely-not-a-real-tool") && error.contains("not found"),
        "{error}"
    );

    let setup =
        RemoteRepo::with_files(&[(".nightshift.toml", "[setup]\ncommands = [\"exit 7\"]\n")]);
    let task = h
        .create(&setup.url(), "z", "touch b", Duration::from_secs(60))
        .await;
    let run = h.wait_end(task).await;
    // Not the agent's or the change's fault: the repository cannot be set up here.
    assert_eq!(run.end_reason, Some(EndReason::SetupFailed));
    assert_eq!(run.failed_phase, Some(Phase::Preparing));
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains(
            "setup `exit 7` exited with code 7, so the repository's checks cannot run here"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn the_run_log_names_the_evidence_of_each_detected_check() {
    let remote = RemoteRepo::with_files(&[
        (
            "Makefile",
            "lint:\n\ttrue\ntest:\n\tgrep -q goodbye greeting.txt\n",
        ),
        ("greeting.txt", "hello\n"),
        (
            ".github/workflows/ci.yml",
            "on: [pull_request]\njobs:\n  ci:\n    runs-on: ubuntu-latest\n    steps:\n      - run: make test\n",
        ),
    ]);
    let h = Harness::start(1).await;
    let task = h
        .create(
            &remote.url(),
            "Say goodbye",
            "echo goodbye > greeting.txt",
            Duration::from_secs(60),
        )
        .await;
    let run = h.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let events = h.events(&run).await;
    let plan = events
        .iter()
        .find(|e| e.kind == EventKind::Check && e.message.starts_with("checks from"))
        .expect("the plan is logged");
    assert!(
        plan.message.contains(
            "make test\n      from Makefile target test, run in .github/workflows/ci.yml"
        ),
        "{}",
        plan.message
    );
    assert_eq!(plan.data["evidence"][0]["from"], "Makefile target test");
}

#[tokio::test]
async fn a_moving_base_is_rebased_and_a_conflicting_one_fails() {
    // The agents wait on a gate the test opens from outside their checkout, which confinement
    // would rightly hide; rebasing is the subject here.
    let h = Harness::start_with(tempfile::tempdir().unwrap(), 2, |config| {
        config.confinement.mode = nightshift_engine::SandboxMode::None;
    })
    .await;
    let remote = RemoteRepo::with_files(&[("a.txt", "a\n"), ("b.txt", "b\n")]);
    let gate = h.data.path().join("gate");
    std::fs::create_dir_all(&gate).unwrap();
    // The agent edits, then waits until the test has moved the remote's main.
    let agent = |file: &str, name: &str| {
        format!(
            "echo changed > {file} && touch {g}/{name}.ready && while [ ! -f {g}/{name}.go ]; do sleep 0.05; done",
            g = gate.display()
        )
    };
    let clean = h
        .create(
            &remote.url(),
            "Change a",
            &agent("a.txt", "clean"),
            Duration::from_secs(60),
        )
        .await;
    wait_file(&gate.join("clean.ready")).await;
    let upstream = remote.commit("main", &[("b.txt", "upstream\n")], "upstream moves");
    std::fs::write(gate.join("clean.go"), "").unwrap();
    let run = h.wait_end(clean).await;
    assert_eq!(run.end_reason, Some(EndReason::Succeeded), "{run:?}");
    let head = remote.head(&h.branch_of(clean, "Change a")).unwrap();
    assert_eq!(remote.parent(&head), upstream, "rebased onto the new base");
    assert_eq!(remote.show(&head, "b.txt"), "upstream\n");
    assert_eq!(remote.show(&head, "a.txt"), "changed\n");

    let conflicting = h
        .create(
            &remote.url(),
            "Change b",
            &agent("b.txt", "conflict"),
            Duration::from_secs(60),
        )
        .await;
    wait_file(&gate.join("conflict.ready")).await;
    remote.commit("main", &[("b.txt", "someone else\n")], "conflicting move");
    std::fs::write(gate.join("conflict.go"), "").unwrap();
    let run = h.wait_end(conflicting).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.end_reason, Some(EndReason::Conflict));
    assert_eq!(run.failed_phase, Some(Phase::Publishing));
    assert!(
        remote.head(&h.branch_of(conflicting, "Change b")).is_none(),
        "nothing pushed"
    );
}

async fn wait_file(path: &std::path::Path) {
    let start = std::time::Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_base_defaults_to_the_remotes_branch_when_head_names_none() {
    // `git init --bare` points HEAD at a branch nobody pushed; the pushed branch is meant.
    let dir = tempfile::tempdir().unwrap();
    let bare = dir.path().join("r.git");
    nightshift_test_support::git::git(
        dir.path(),
        &[
            "init",
            "--quiet",
            "--bare",
            "--initial-branch=trunk",
            &bare.to_string_lossy(),
        ],
    );
    let work = dir.path().join("w");
    nightshift_test_support::git::git(
        dir.path(),
        &[
            "clone",
            "--quiet",
            &bare.to_string_lossy(),
            &work.to_string_lossy(),
        ],
    );
    std::fs::write(work.join("a"), "a").unwrap();
    nightshift_test_support::git::git(&work, &["add", "a"]);
    nightshift_test_support::git::git(&work, &["commit", "--quiet", "-m", "a"]);
    nightshift_test_support::git::git(
        &work,
        &["push", "--quiet", "origin", "HEAD:refs/heads/develop"],
    );
    let h = Harness::start(0).await;
    let repo = nightshift_core::RepoUrl::parse(&bare.to_string_lossy()).unwrap();
    assert_eq!(
        h.engine
            .resolve_base(&repo, None, Requester::Member)
            .await
            .unwrap()
            .as_str(),
        "develop"
    );
    let missing = nightshift_core::BranchName::parse("main").unwrap();
    assert!(
        h.engine
            .resolve_base(&repo, Some(&missing), Requester::Member)
            .await
            .is_err()
    );
}
