//! `nightshift worker` on its own: what it does besides running runs.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nightshift_core::{
    AgentSpec, BranchName, Budget, DEFAULT_PROJECT, EndReason, EventKind, Instructions, NewTask,
    RepoUrl,
};
use nightshift_store::{NewEvent, Store};

use super::server::BIN;

/// The worker sweeps the workspaces its crashes left behind with the retention the
/// configuration file gives, and leaves the shared database's records to the API nodes.
#[tokio::test]
async fn a_worker_sweeps_its_workspaces_with_the_configured_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nightshift.db");
    let store = Store::open_sqlite(&db).await.unwrap();
    let project = store.project(DEFAULT_PROJECT).await.unwrap().unwrap();
    store
        .create_task(&NewTask {
            project_id: project.id,
            title: "t".into(),
            instructions: Instructions::parse("a task that ended").unwrap(),
            repo: RepoUrl::parse("/srv/gone.git").unwrap(),
            base_branch: BranchName::parse("main").unwrap(),
            agent: AgentSpec::command("true"),
            timeout_secs: 60,
            budget: Budget::default(),
            allow_test_changes: false,
            created_by: "tester".into(),
        })
        .await
        .unwrap();
    let run = store
        .claim_run("a-worker-that-crashed", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap()
        .run
        .id;
    let event = NewEvent {
        kind: EventKind::Info,
        phase: None,
        message: "the run's log".into(),
        data: serde_json::Value::Null,
    };
    store.append_events(run, &[event]).await.unwrap();
    store
        .finish_run(
            run,
            "a-worker-that-crashed",
            EndReason::ChecksFailed,
            None,
            None,
        )
        .await
        .unwrap();
    // What the crash left on this machine; the default retention would keep it for 7 days.
    let data = dir.path().join("worker");
    let leftover = data.join("runs").join(run.to_string());
    std::fs::create_dir_all(leftover.join("work")).unwrap();
    let config = dir.path().join("nightshift.toml");
    std::fs::write(
        &config,
        "sandbox = \"none\"\n\n[retention]\nfailed_workspaces = \"1ms\"\nevents = \"1ms\"\n",
    )
    .unwrap();
    let log = dir.path().join("worker.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut worker = Command::new(BIN)
        .args([
            "worker",
            "--database",
            &format!("sqlite://{}", db.display()),
        ])
        .args(["--data-dir", &data.to_string_lossy()])
        .args(["--workers", "1"])
        .args(["--config", &config.to_string_lossy()])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let started = Instant::now();
    while leftover.exists() {
        let log = || std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(status) = worker.try_wait().unwrap() {
            panic!("the worker exited ({status}):\n{}", log());
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = worker.kill();
            panic!("the leftover workspace is still there:\n{}", log());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(worker.wait().unwrap().success());
    assert_eq!(
        store.events(run, 0, 10).await.unwrap().len(),
        1,
        "the worker swept the database's records"
    );
}
