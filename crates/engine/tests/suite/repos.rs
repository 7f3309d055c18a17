//! A run checks its repository again before it touches it: a task created under older rules,
//! or stored without going through task creation, ends `permission_denied` before any git runs
//! against the repository.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use nightshift_core::{
    AgentSpec, Budget, EndReason, Instructions, NewTask, Phase, RepoUrl, RunStatus,
};
use nightshift_engine::{Engine, EngineConfig, LocalRepos};
use nightshift_store::Store;
use nightshift_test_support::git::RemoteRepo;
use tokio_util::sync::CancellationToken;

use super::harness::Harness;

#[tokio::test]
async fn a_task_created_before_the_operator_withdrew_its_directory_does_not_run() {
    let remote = RemoteRepo::with_files(&[("a.txt", "a\n")]);
    let marker = remote.bare_path().parent().unwrap().join("hook-ran");
    let hook = remote.bare_path().join("hooks/pre-receive");
    std::fs::write(&hook, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Created while the operator allowed the temp directory; nothing runs it yet.
    let idle = Harness::start(0).await;
    let task = idle
        .create(&remote.url(), "Touch b", "touch b", Duration::from_secs(60))
        .await;
    idle.store.close().await;

    // The server starts again with no local repositories allowed.
    let data = idle.data.path().to_path_buf();
    let store = Store::open_sqlite(&data.join("nightshift.db"))
        .await
        .unwrap();
    let engine = Engine::new(store.clone(), EngineConfig::new(&data));
    let stop = CancellationToken::new();
    let (e, s) = (engine.clone(), stop.clone());
    tokio::spawn(async move { e.run_workers(1, s).await });
    let run = loop {
        let run = store
            .task_runs(idle.project_id, task)
            .await
            .unwrap()
            .pop()
            .unwrap();
        if run.status.is_terminal() {
            break run;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.cancel();
    assert_eq!(run.end_reason, Some(EndReason::PermissionDenied), "{run:?}");
    assert_eq!(run.failed_phase, Some(Phase::Preparing));
    let error = run.error.unwrap_or_default();
    assert!(error.contains("allows no local repositories"), "{error}");
    assert!(error.contains("local_roots"), "{error}");
    let mirrors = std::fs::read_dir(data.join("mirrors")).unwrap().count();
    assert_eq!(mirrors, 0, "the repository was fetched");
    assert_eq!(remote.branches(), vec!["main"]);
    assert!(!marker.exists());
}

/// A task that names another project's mirror without going through task creation (a row
/// written by an older version, or by hand) is refused by the run itself.
#[tokio::test]
async fn a_stored_task_naming_a_mirror_ends_before_touching_it() {
    let h = Harness::start(1).await;
    let remote = RemoteRepo::with_files(&[("a.txt", "a\n")]);
    let first = h
        .create(&remote.url(), "Touch b", "touch b", Duration::from_secs(60))
        .await;
    assert_eq!(h.wait_end(first).await.status, RunStatus::Succeeded);
    let mirror = std::fs::read_dir(h.data.path().join("mirrors"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "git"))
        .unwrap();
    let before = std::fs::read_dir(mirror.join("refs/heads/nightshift"))
        .map(|d| d.count())
        .unwrap_or(0);

    let instructions = Instructions::parse("Read the mirror").unwrap();
    let new = NewTask {
        project_id: h.project_id,
        title: instructions.summary(),
        instructions,
        repo: RepoUrl::parse(&mirror.display().to_string()).unwrap(),
        base_branch: nightshift_core::BranchName::parse("main").unwrap(),
        agent: AgentSpec::command("touch c"),
        timeout_secs: 60,
        budget: Budget::default(),
        allow_test_changes: false,
        created_by: "tester".into(),
    };
    let (task, _) = h.store.create_task(&new).await.unwrap();
    h.engine.wake();
    let run = h.wait_end(task.id).await;
    assert_eq!(run.end_reason, Some(EndReason::PermissionDenied), "{run:?}");
    let error = run.error.unwrap_or_default();
    assert!(
        error.contains("inside Nightshift's data directory"),
        "{error}"
    );
    let after = std::fs::read_dir(mirror.join("refs/heads/nightshift"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(before, after, "a branch was pushed into the mirror");
    let operator = LocalRepos::Under(vec![nightshift_test_support::git::repos_root()]);
    assert_eq!(h.engine.config().repositories.local, operator);
}
