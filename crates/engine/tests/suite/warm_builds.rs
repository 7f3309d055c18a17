//! Building a warm base under the run's limits and through a crash: what the build writes
//! counts under the building run's `checkout_disk`, and a worker killed mid-build leaves
//! nothing a later run uses; the next run builds the base again from scratch.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nightshift_core::{AgentSpec, Budget, DEFAULT_PROJECT, EndReason, EventKind, RunEvent};
use nightshift_engine::{Engine, EngineConfig, LocalRepos, RunLimits};
use nightshift_store::Store;
use nightshift_test_support::git::{RemoteRepo, repos_root};
use tokio_util::sync::CancellationToken;

use super::harness::{Harness, forwarder, intake, request, tester};

/// Directories under the data directory's bases whose name starts with `prefix`, at any depth.
fn bases_named(data: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![data.join("bases")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                if entry.file_name().to_string_lossy().starts_with(prefix) {
                    found.push(entry.path());
                }
                dirs.push(entry.path());
            }
        }
    }
    found
}

/// Ready bases: directories with a `base.json`.
fn ready_bases(data: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut dirs = vec![data.join("bases")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().join("base.json").is_file() {
                found.push(entry.path());
            } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path());
            }
        }
    }
    found
}

fn setups_started(events: &[RunEvent]) -> usize {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Check && e.data["status"] == "running")
        .filter(|e| e.data["stage"] == "setup")
        .count()
}

#[tokio::test]
async fn what_a_base_build_writes_counts_under_the_run_s_checkout_disk() {
    let h = Harness::start_with(
        tempfile::tempdir().unwrap(),
        1,
        |config: &mut EngineConfig| {
            config.run_limits = RunLimits {
                checkout_disk: Some(4 << 20),
                ..RunLimits::default()
            };
        },
    )
    .await;
    // Setup fills the base past the limit and would then go on for a minute.
    let remote = RemoteRepo::with_files(&[
        (
            ".nightshift.toml",
            "[setup]\ncommands = [\"mkdir -p deps && head -c 20000000 /dev/zero > deps/big && sleep 60\"]\n\
             [checks]\ntest = [\"true\"]\n",
        ),
        ("greeting.txt", "hello world\n"),
    ]);
    let task = h
        .create(
            &remote.url(),
            "Say goodbye",
            "true",
            Duration::from_secs(300),
        )
        .await;
    let run = h.wait_end(task).await;
    assert_eq!(run.end_reason, Some(EndReason::BudgetExceeded), "{run:?}");
    let error = run.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("over the limit of 4 MiB")
            && error.contains("checkout_disk in [run_limits] of nightshift.toml"),
        "{error}"
    );
    let events = h.events(&run).await;
    let hit = events
        .iter()
        .find(|e| e.data["limit"]["name"] == "checkout_disk")
        .expect("the limit is an event of the run");
    assert!(hit.data["limit"]["used"].as_u64() > Some(4 << 20));
    // Nothing of the build is left, let alone taken for ready.
    assert!(ready_bases(h.data.path()).is_empty());
    assert!(bases_named(h.data.path(), ".building").is_empty());
}

/// An engine on `data` (sharing its store) that builds the base of `repo` for one task until it
/// is killed. Run by `a_worker_killed_while_building_a_base_...` in a process of its own.
#[tokio::test]
#[ignore = "started, and killed, by a_worker_killed_while_building_a_base_leaves_nothing_used"]
async fn build_a_base_until_killed() {
    let (Ok(data), Ok(repo)) = (
        std::env::var("NIGHTSHIFT_TEST_DATA"),
        std::env::var("NIGHTSHIFT_TEST_REPO"),
    ) else {
        return;
    };
    let data = PathBuf::from(data);
    let store = Store::open_sqlite(&data.join("nightshift.db"))
        .await
        .unwrap();
    let engine = Engine::new(store.clone(), crash_config(&data));
    let (e, stop) = (engine.clone(), CancellationToken::new());
    tokio::spawn(async move { e.run_workers(1, stop).await });
    let project = store.project(DEFAULT_PROJECT).await.unwrap().unwrap();
    let request = request(
        &repo,
        "Say goodbye",
        AgentSpec::command("true"),
        Budget::default(),
        Duration::from_secs(600),
    );
    intake(&engine)
        .create(&project, &tester(), request)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(600)).await;
}

fn crash_config(data: &Path) -> EngineConfig {
    let mut config = EngineConfig::new(data);
    config.repositories.local = LocalRepos::Under(vec![repos_root()]);
    config.heartbeat = Duration::from_millis(200);
    config.poll = Duration::from_millis(100);
    // The killed worker's run is taken over soon after.
    config.lease = Duration::from_secs(2);
    config.confinement.forwarder = Some(vec![forwarder()]);
    config
}

#[tokio::test]
async fn a_worker_killed_while_building_a_base_leaves_nothing_used_and_the_next_run_rebuilds() {
    let data = tempfile::tempdir().unwrap();
    // Setup installs half, then waits for a file the test makes once the first worker is dead.
    let go = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let go = go.path().join("go");
    let remote = RemoteRepo::with_files(&[
        (
            ".nightshift.toml",
            &format!(
                "[setup]\ncommands = [\"mkdir -p deps && echo half > deps/half && \
                 while [ ! -e {go} ]; do sleep 0.05; done && echo whole > deps/whole\"]\n\
                 [checks]\ntest = [\"test -s deps/whole\"]\n",
                go = go.display()
            ),
        ),
        ("greeting.txt", "hello world\n"),
    ]);
    let mut worker = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "suite::warm_builds::build_a_base_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env("NIGHTSHIFT_TEST_DATA", data.path())
        .env("NIGHTSHIFT_TEST_REPO", remote.url())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let half = loop {
        let half = bases_named(data.path(), ".building")
            .into_iter()
            .map(|dir| dir.join("tree/deps/half"))
            .find(|half| half.is_file());
        if let Some(half) = half {
            break half;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the first worker never got to setup"
        );
        assert!(
            worker.try_wait().unwrap().is_none(),
            "the first worker died"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    // SIGKILL: nothing of the worker runs again, no destructor, the kernel drops its locks.
    worker.kill().unwrap();
    worker.wait().unwrap();
    assert!(half.is_file(), "a killed build leaves its directory behind");
    assert!(
        ready_bases(data.path()).is_empty(),
        "a half-built base looks ready"
    );
    std::fs::write(&go, "").unwrap();

    // The worker starts again on the same data directory and takes the run over.
    let h = Harness::start_with(data, 1, |config: &mut EngineConfig| {
        let data = config.data_dir.clone();
        *config = crash_config(&data);
    })
    .await;
    let project = h.store.project(DEFAULT_PROJECT).await.unwrap().unwrap();
    let tasks = h
        .store
        .list_tasks(project.id, &nightshift_core::TaskFilter::default())
        .await
        .unwrap();
    assert_eq!(tasks.len(), 1);
    let run = h.wait_end(tasks[0].task.id).await;
    assert_eq!(run.end_reason, Some(EndReason::NoChanges), "{run:?}");
    let events = h.events(&run).await;
    // The same run, taken over: what its second worker did comes after the takeover.
    let takeover = events
        .iter()
        .position(|e| e.data.get("takeover").is_some())
        .expect("the run was taken over");
    let (before, after) = events.split_at(takeover);
    assert_eq!(setups_started(before), 1, "the killed worker got to setup");
    assert_eq!(setups_started(after), 1, "setup ran again in the new build");
    assert!(
        after
            .iter()
            .any(|e| e.data["base_build"]["refreshed"] == false),
        "the base was checked out afresh, not built on the dead build"
    );
    let ready = ready_bases(h.data.path());
    assert_eq!(ready.len(), 1, "{ready:?}");
    assert!(ready[0].join("tree/deps/whole").is_file());
    assert!(bases_named(h.data.path(), ".building").is_empty());
}
