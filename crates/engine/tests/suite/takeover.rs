//! A run changing workers: taken over after a crash (lease expired) or handed back by a worker
//! shutting down, on another machine (its own data directory) sharing only the store. Finished
//! agent work is restored from the store, never done again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightshift_core::{
    AgentSpec, Budget, DEFAULT_PROJECT, EventKind, Phase, Run, RunEvent, RunStatus,
};
use nightshift_engine::{Engine, EngineConfig, LocalRepos};
use nightshift_store::Store;
use nightshift_test_support::git::{RemoteRepo, git, repos_root};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::harness::{intake, processes_with, request, tester};

/// Bytes no text diff carries: a NUL, bytes that are not UTF-8, no final newline.
const BLOB: &[u8] = b"\x00\xff\xfe binary \x80\x81";

/// A store shared by workers on two "machines", a remote whose one check blocks until the test
/// lets it go, and a directory outside every workspace where the agent and the check leave a
/// line each time they run.
struct Site {
    _db: tempfile::TempDir,
    store: Store,
    project_id: i64,
    markers: tempfile::TempDir,
    remote: RemoteRepo,
}

/// One machine's workers: their own data directory (mirrors, workspaces), the shared store.
struct Machine {
    engine: Arc<Engine>,
    handle: Option<tokio::task::JoinHandle<()>>,
    shutdown: CancellationToken,
    _data: tempfile::TempDir,
}

impl Machine {
    /// The process dies: nothing is released, the lease runs out.
    fn crash(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }

    /// SIGTERM: the workers stop claiming and hand their runs back; waits until they have.
    async fn shut_down(&mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            tokio::time::timeout(Duration::from_secs(120), handle)
                .await
                .expect("the workers stopped")
                .unwrap();
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.crash();
    }
}

impl Site {
    async fn start() -> Site {
        let markers = tempfile::tempdir().unwrap();
        let m = markers.path().display();
        // On the unchanged base (the baseline before the agent) it passes at once.
        let check = format!(
            "grep -q goodbye greeting.txt || exit 0\necho checked >> {m}/checks\n\
             while [ ! -e {m}/go ]; do sleep 0.05; done\n"
        );
        let remote = RemoteRepo::with_files(&[
            (".nightshift.toml", "[checks]\ntest = [\"sh check.sh\"]\n"),
            ("greeting.txt", "hello world\n"),
            ("check.sh", &check),
        ]);
        let db = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&db.path().join("nightshift.db"))
            .await
            .unwrap();
        let project_id = store.project(DEFAULT_PROJECT).await.unwrap().unwrap().id;
        Site {
            _db: db,
            store,
            project_id,
            markers,
            remote,
        }
    }

    fn marker(&self, name: &str) -> PathBuf {
        self.markers.path().join(name)
    }

    fn lines(&self, name: &str) -> usize {
        std::fs::read_to_string(self.marker(name))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }

    /// Lets every check (present and future) pass.
    fn release_checks(&self) {
        std::fs::write(self.marker("go"), "").unwrap();
    }

    /// An agent that edits a file, adds files in new directories (one binary), and leaves a
    /// line in the `agent` marker each time it runs. `before` runs first.
    fn agent(&self, before: &str) -> String {
        let blob: String = BLOB.iter().map(|b| format!("\\{b:03o}")).collect();
        format!(
            "{before}echo ran >> {agent} && sed -i 's/hello/goodbye/' greeting.txt && \
             mkdir -p new/dir && echo fresh > new/dir/file.txt && printf '{blob}' > blob.bin",
            agent = self.marker("agent").display()
        )
    }

    fn machine(&self, configure: impl FnOnce(&mut EngineConfig)) -> Machine {
        let data = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(data.path());
        config.repositories.local = LocalRepos::Under(vec![repos_root()]);
        config.heartbeat = Duration::from_millis(200);
        config.poll = Duration::from_millis(100);
        // The agents leave markers outside their checkout, which confinement would hide;
        // handing runs over is the subject here.
        config.confinement.mode = nightshift_engine::SandboxMode::None;
        configure(&mut config);
        let engine = Engine::new(self.store.clone(), config);
        let shutdown = CancellationToken::new();
        let (e, s) = (engine.clone(), shutdown.clone());
        let handle = tokio::spawn(async move { e.run_workers(1, s).await });
        Machine {
            engine,
            handle: Some(handle),
            shutdown,
            _data: data,
        }
    }

    async fn create(&self, machine: &Machine, command: &str) -> i64 {
        let request = request(
            &self.remote.url(),
            "Say goodbye",
            AgentSpec::command(command),
            Budget::default(),
            Duration::from_secs(600),
        );
        let project = self.store.project(DEFAULT_PROJECT).await.unwrap().unwrap();
        let (task, _) = intake(&machine.engine)
            .create(&project, &tester(), request)
            .await
            .unwrap();
        task.id
    }

    async fn latest(&self, task: i64) -> Run {
        self.store
            .task_runs(self.project_id, task)
            .await
            .unwrap()
            .pop()
            .unwrap()
    }

    async fn wait_end(&self, task: i64) -> Run {
        wait_for("the run's end", async || {
            let run = self.latest(task).await;
            run.status.is_terminal().then_some(run)
        })
        .await
    }

    async fn events(&self, run: &Run) -> Vec<RunEvent> {
        let events = self.store.events(run.id, 0, 10_000).await.unwrap();
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=events.len() as i64).collect::<Vec<_>>(),
            "gap-free"
        );
        events
    }

    /// The pushed branch holds the agent's whole change, binary file included.
    fn assert_published(&self, run: &Run, task: i64) {
        let branch = format!("nightshift/{task}-say-goodbye");
        let head = self.remote.head(&branch).expect("the branch was pushed");
        assert_eq!(run.checkpoint.pushed_commit.as_deref(), Some(head.as_str()));
        assert_eq!(self.remote.show(&head, "greeting.txt"), "goodbye world\n");
        assert_eq!(self.remote.show(&head, "new/dir/file.txt"), "fresh\n");
        let expected = self.markers.path().join("expected.bin");
        std::fs::write(&expected, BLOB).unwrap();
        let want = git(
            self.markers.path(),
            &["hash-object", &expected.display().to_string()],
        );
        let got = git(
            &self.remote.bare_path(),
            &["rev-parse", &format!("{head}:blob.bin")],
        );
        assert_eq!(
            got.trim(),
            want.trim(),
            "blob.bin came through byte for byte"
        );
        assert_eq!(
            self.remote.branches().len(),
            2,
            "{:?}",
            self.remote.branches()
        );
    }
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{what}: not reached"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn with_key<'a>(events: &'a [RunEvent], key: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter_map(|e| e.data.get(key))
        .collect::<Vec<_>>()
}

fn phase_entries(events: &[RunEvent], phase: Phase) -> usize {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Phase && e.message == phase.as_str())
        .count()
}

#[tokio::test]
async fn a_crash_after_the_agent_phase_restores_its_result_on_another_machine() {
    let site = Site::start().await;
    let mut first = site.machine(|c| c.lease = Duration::from_secs(1));
    let task = site.create(&first, &site.agent("")).await;
    // The check is running: the agent finished and its result was checkpointed.
    wait_for("the first check", async || {
        (site.lines("checks") == 1).then_some(())
    })
    .await;
    first.crash();
    site.release_checks();
    let _second = site.machine(|c| c.lease = Duration::from_secs(1));
    let run = site.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(site.lines("agent"), 1, "the agent ran once");
    assert_eq!(
        site.lines("checks"),
        2,
        "the restored result was validated again"
    );
    site.assert_published(&run, task);

    let events = site.events(&run).await;
    let takeovers = with_key(&events, "takeover");
    assert_eq!(takeovers.len(), 1, "{events:#?}");
    assert_eq!(takeovers[0]["after"], "lease_expired");
    let restored = with_key(&events, "restored");
    assert_eq!(restored.len(), 1, "{events:#?}");
    assert_eq!(restored[0]["round"], 1);
    assert_eq!(restored[0]["validated"], false);
    assert_eq!(phase_entries(&events, Phase::Agent), 1, "one agent phase");
    assert_eq!(phase_entries(&events, Phase::Validating), 2);
    let change = site.store.change(run.id).await.unwrap().unwrap();
    assert_eq!(
        change.files_changed,
        vec!["blob.bin", "greeting.txt", "new/dir/file.txt"]
    );
    assert_eq!(site.store.snapshot(run.id).await.unwrap(), None);
}

#[tokio::test]
async fn a_worker_shutting_down_hands_its_run_over_at_the_next_checkpoint() {
    let site = Site::start().await;
    // Leases of an hour: only a handover lets the second machine in while the test runs.
    let hour = Duration::from_secs(3600);
    let mut first = site.machine(|c| {
        c.lease = hour;
        c.shutdown_grace = hour;
    });
    let task = site.create(&first, &site.agent("")).await;
    wait_for("the first check", async || {
        (site.lines("checks") == 1).then_some(())
    })
    .await;
    let _second = site.machine(|c| c.lease = hour);
    // The shutdown lets the running check finish; the run stops at the checkpoint after it.
    let stopping = tokio::spawn(async move {
        first.shut_down().await;
        first
    });
    site.release_checks();
    let _first = stopping.await.unwrap();
    let run = site.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(site.lines("agent"), 1, "the agent ran once");
    assert_eq!(
        site.lines("checks"),
        1,
        "validated work is not checked again"
    );
    site.assert_published(&run, task);

    let events = site.events(&run).await;
    let handovers = with_key(&events, "handover");
    assert_eq!(handovers.len(), 1, "{events:#?}");
    assert_eq!(handovers[0]["checkpoint"], "validating");
    assert_eq!(handovers[0]["grace_expired"], false);
    let takeovers = with_key(&events, "takeover");
    assert_eq!(takeovers.len(), 1);
    assert_eq!(takeovers[0]["after"], "handed_back");
    assert_ne!(takeovers[0]["worker"], handovers[0]["worker"]);
    let restored = with_key(&events, "restored");
    assert_eq!(restored.len(), 1, "{events:#?}");
    assert_eq!(restored[0]["validated"], true);
    assert_eq!(phase_entries(&events, Phase::Agent), 1);
    assert_eq!(phase_entries(&events, Phase::Validating), 1);
    let change = site.store.change(run.id).await.unwrap().unwrap();
    assert_eq!(change.rounds, 1);
    // The check and the guard of the one validation, not run again after the takeover.
    assert_eq!(change.checks.len(), 2, "{:?}", change.checks);
}

#[tokio::test]
async fn a_grace_period_that_runs_out_stops_the_agent_and_hands_the_run_back() {
    let site = Site::start().await;
    site.release_checks();
    let hour = Duration::from_secs(3600);
    let mut first = site.machine(|c| {
        c.lease = hour;
        c.shutdown_grace = Duration::from_millis(300);
    });
    // The first session hangs; the one after the handover does the work.
    let once = site.marker("once");
    let hang = format!(
        "if [ ! -e {once} ]; then touch {once}; sleep 643.21; fi; ",
        once = once.display()
    );
    let task = site.create(&first, &site.agent(&hang)).await;
    wait_for("the hanging agent", async || {
        (!processes_with("sleep 643.21").is_empty()).then_some(())
    })
    .await;
    first.shut_down().await;
    assert_eq!(
        processes_with("sleep 643.21"),
        Vec::<String>::new(),
        "the agent was stopped"
    );
    let stopped = site.latest(task).await;
    assert_eq!(stopped.status, RunStatus::Queued, "{stopped:?}");
    let _second = site.machine(|c| c.lease = hour);
    let run = site.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    site.assert_published(&run, task);
    let events = site.events(&run).await;
    let handovers = with_key(&events, "handover");
    assert_eq!(handovers.len(), 1, "{events:#?}");
    assert_eq!(handovers[0]["grace_expired"], true);
    assert_eq!(handovers[0]["phase"], "agent");
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("starting again from a fresh workspace")),
        "{events:#?}"
    );
    assert_eq!(phase_entries(&events, Phase::Agent), 2);
}
