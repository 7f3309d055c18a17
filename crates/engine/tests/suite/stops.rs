use std::time::{Duration, Instant};

use nightshift_core::{EndReason, Phase, RunStatus};
use nightshift_store::CancelOutcome;
use nightshift_test_support::git::{RemoteRepo, repos_root};

use super::harness::{Harness, processes_with};

#[tokio::test]
async fn timeout_kills_the_whole_process_group() {
    let remote = RemoteRepo::with_files(&[("a", "")]);
    let h = Harness::start(1).await;
    // A background child that ignores SIGINT/SIGTERM: only a group-wide SIGKILL ends it.
    let task = h
        .create(
            &remote.url(),
            "Sleep",
            "trap '' INT TERM; sleep 987.651 & sleep 987.652; wait",
            // The limit covers preparing the workspace too, which a loaded machine can make
            // take seconds: long enough that the agent surely starts before it passes.
            Duration::from_secs(6),
        )
        .await;
    h.wait_phase(task, Phase::Agent).await;
    let started = Instant::now();
    let run = h.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.end_reason, Some(EndReason::TimedOut));
    assert_eq!(run.failed_phase, Some(Phase::Agent));
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "ended {:?} after the agent started",
        started.elapsed()
    );
    assert!(
        processes_with("987.65").is_empty(),
        "left behind: {:?}",
        processes_with("987.65")
    );
    let events = h.events(&run).await;
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("timed out after 6s"))
    );
}

#[tokio::test]
async fn cancel_is_confirmed_only_once_processes_are_gone() {
    let remote = RemoteRepo::with_files(&[("a", "")]);
    let h = Harness::start(1).await;
    let task = h
        .create(
            &remote.url(),
            "Sleep",
            "sleep 876.541 & sleep 876.542; wait",
            Duration::from_secs(600),
        )
        .await;
    h.wait_phase(task, Phase::Agent).await;
    // The phase is recorded just before the agent starts: wait for its processes to appear.
    let appeared = Instant::now();
    while processes_with("876.54").is_empty() {
        assert!(
            appeared.elapsed() < Duration::from_secs(10),
            "the agent never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    match h.store.cancel_task(h.project_id, task).await.unwrap() {
        CancelOutcome::Requested(run) => assert_eq!(run.status, RunStatus::Running),
        other => panic!("{other:?}"),
    }
    let asked = Instant::now();
    let run = h.wait_end(task).await;
    // Marked only after the group is gone: nothing may be found now.
    assert!(
        processes_with("876.54").is_empty(),
        "left behind: {:?}",
        processes_with("876.54")
    );
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.end_reason, Some(EndReason::Cancelled));
    assert!(asked.elapsed() < Duration::from_secs(10));

    // A queued run is cancelled at once, without a worker.
    let idle = Harness::start(0).await;
    let task = idle
        .create(&remote.url(), "Never runs", "true", Duration::from_secs(60))
        .await;
    assert!(matches!(
        idle.store.cancel_task(idle.project_id, task).await.unwrap(),
        CancelOutcome::Cancelled(_)
    ));
    assert_eq!(idle.latest(task).await.status, RunStatus::Cancelled);
}

#[tokio::test]
async fn a_queued_run_survives_a_restart() {
    let remote = RemoteRepo::with_files(&[("a", "")]);
    let h = Harness::start(0).await;
    h.create(&remote.url(), "Touch b", "touch b", Duration::from_secs(60))
        .await;
    h.store.close().await;
    let data = h.data.path().to_path_buf();
    let store = nightshift_store::Store::open_sqlite(&data.join("nightshift.db"))
        .await
        .unwrap();
    let mut config = nightshift_engine::EngineConfig::new(&data);
    config.repositories.local = nightshift_engine::LocalRepos::Under(vec![repos_root()]);
    let engine = nightshift_engine::Engine::new(store.clone(), config);
    let stop = tokio_util::sync::CancellationToken::new();
    let e = engine.clone();
    let s = stop.clone();
    tokio::spawn(async move { e.run_workers(1, s).await });
    let project = store.project("default").await.unwrap().unwrap();
    let start = Instant::now();
    loop {
        let runs = store.task_runs(project.id, 1).await.unwrap();
        if runs[0].status.is_terminal() {
            assert_eq!(runs[0].end_reason, Some(EndReason::Succeeded));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    assert!(
        remote
            .branches()
            .iter()
            .any(|b| b.starts_with("nightshift/1-"))
    );
}
