//! The scaled-out shape with real processes: `nightshift worker` processes (the real binary) on
//! one real PostgreSQL, each with its own data directory as if on its own machine, draining a
//! queue filled through the intake, stopped with SIGTERM and killed with SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nightshift_core::{
    AgentSpec, DEFAULT_PROJECT, Phase, Project, ProjectSettings, Run, RunStatus,
};
use nightshift_engine::{
    Creator, Engine, EngineConfig, Intake, IntakePolicy, LocalRepos, TaskRateLimit, TaskRequest,
};
use nightshift_store::{RunFilter, Store};
use nightshift_test_support::git::{RemoteRepo, git, repos_root};
use nightshift_test_support::postgres::PgCluster;
use serde_json::Value;

use super::server::BIN;

/// A PostgreSQL database, the store on it, one remote with `lanes` base branches (runs on one
/// base branch take turns: the repository lock), and a directory outside every workspace that
/// agents append to.
struct Cluster {
    url: String,
    store: Store,
    /// Tasks come in as through the API; this engine runs no workers.
    intake: Intake,
    project: Project,
    project_id: i64,
    remote: RemoteRepo,
    shared: tempfile::TempDir,
    /// Worker data directories and logs.
    scratch: tempfile::TempDir,
    config: PathBuf,
    workers_started: usize,
    /// Put before the workers' `PATH`: programs that stand in for a slow remote.
    path_prefix: Option<PathBuf>,
}

/// A `nightshift worker` process; killed (SIGKILL) when dropped.
struct Worker {
    child: Child,
    log: PathBuf,
}

impl Worker {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn terminate(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }

    /// Waits for the process to exit on its own and returns whether it exited 0.
    fn wait_exit(&mut self) -> bool {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.success();
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the worker did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

impl Cluster {
    /// `workers` is the configuration file's `[workers]` table; `main` (and every lane) holds `files`.
    async fn start(lanes: usize, workers: &str, files: &[(&str, &str)]) -> Cluster {
        let url = PgCluster::shared().fresh_database();
        let store = Store::connect(&url).await.unwrap();
        let project_id = store.project(DEFAULT_PROJECT).await.unwrap().unwrap().id;
        // Every task is the tester's: no per-user cap, only the repository lock orders them.
        store
            .set_project_settings(
                project_id,
                &ProjectSettings {
                    max_active_runs_per_user: 0,
                    ..store.project_settings(project_id).await.unwrap()
                },
            )
            .await
            .unwrap();
        let mut files = files.to_vec();
        files.push(("README", "lanes\n"));
        let remote = RemoteRepo::with_files(&files);
        for lane in 0..lanes {
            git(&remote.bare_path(), &["branch", &lane_name(lane), "main"]);
        }
        let scratch = tempfile::tempdir().unwrap();
        let mut engine = EngineConfig::new(scratch.path().join("intake"));
        engine.repositories.local = LocalRepos::Under(vec![repos_root()]);
        let intake = Intake::new(
            Engine::new(store.clone(), engine),
            IntakePolicy {
                max_timeout: Duration::from_secs(3600),
                default_agent: AgentSpec::command("true"),
                task_rate: TaskRateLimit {
                    per_minute: 10_000,
                    burst: 10_000,
                },
            },
        );
        let project = store.project(DEFAULT_PROJECT).await.unwrap().unwrap();
        let config = scratch.path().join("nightshift.toml");
        // The agents record each execution in a directory outside their workspace, which
        // confinement would hide; queueing, not confinement, is what these tests are about.
        // The remote lives in the temp directory: the operator allows local repositories there.
        std::fs::write(
            &config,
            format!(
                "sandbox = \"none\"\n\n[repositories]\nlocal_roots = [{:?}]\n\n[workers]\n{workers}",
                repos_root().display().to_string()
            ),
        )
        .unwrap();
        Cluster {
            url,
            store,
            intake,
            project,
            project_id,
            remote,
            shared: tempfile::tempdir().unwrap(),
            scratch,
            config,
            workers_started: 0,
            path_prefix: None,
        }
    }

    /// Makes the remote take each push slowly: the `git receive-pack` that serves it on this
    /// machine waits first. (Nightshift runs none of the remote's hooks, so the delay cannot
    /// be a hook.)
    fn slow_down_pushes(&mut self, by: &str) {
        let real = std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("git"))
                    .find(|git| git.is_file())
            })
            .unwrap();
        let bin = self.scratch.path().join("slow-remote");
        std::fs::create_dir_all(&bin).unwrap();
        let git = bin.join("git");
        std::fs::write(
            &git,
            format!(
                "#!/bin/sh\ncase \" $* \" in *\" receive-pack \"*) sleep {by};; esac\nexec {} \"$@\"\n",
                real.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&git, std::fs::Permissions::from_mode(0o755)).unwrap();
        self.path_prefix = Some(bin);
    }

    /// A worker process with its own fresh data directory: another machine.
    fn worker(&mut self, slots: usize) -> Worker {
        self.workers_started += 1;
        let n = self.workers_started;
        let data = self.scratch.path().join(format!("worker-{n}"));
        let log = self.scratch.path().join(format!("worker-{n}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut command = Command::new(BIN);
        if let Some(prefix) = &self.path_prefix {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let paths = std::iter::once(prefix.clone()).chain(std::env::split_paths(&path));
            command.env("PATH", std::env::join_paths(paths).unwrap());
        }
        let child = command
            .args(["worker", "--database", &self.url])
            .args(["--data-dir", &data.to_string_lossy()])
            .args(["--workers", &slots.to_string()])
            .args(["--config", &self.config.to_string_lossy()])
            .env("NIGHTSHIFT_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Worker { child, log }
    }

    fn shared(&self, name: &str) -> PathBuf {
        self.shared.path().join(name)
    }

    async fn create(&self, i: usize, lane: usize, command: &str) -> i64 {
        let request = TaskRequest {
            repo: self.remote.url(),
            base: Some(lane_name(lane)),
            instructions: format!("Write result {i}"),
            agent: Some(AgentSpec::command(command)),
            ..TaskRequest::default()
        };
        let tester = Creator {
            name: "tester".into(),
            server_admin: false,
            source: "test".into(),
        };
        let (task, _) = self
            .intake
            .create(&self.project, &tester, request)
            .await
            .unwrap();
        task.id
    }

    /// Every run, oldest first.
    async fn runs(&self) -> Vec<Run> {
        let filter = RunFilter {
            limit: Some(500),
            ..RunFilter::default()
        };
        let mut runs = self
            .store
            .list_runs(self.project_id, &filter)
            .await
            .unwrap();
        runs.reverse();
        runs
    }

    /// Waits until every run ended; `workers` are checked to be alive meanwhile. Gives up before
    /// nextest's 300 s limit, so a stuck queue says which runs it holds.
    async fn wait_all_ended(&self, workers: &mut [Worker], seed: &str) -> Vec<Run> {
        let started = Instant::now();
        loop {
            let runs = self.runs().await;
            if runs.iter().all(|r| r.status.is_terminal()) {
                return runs;
            }
            for worker in workers.iter_mut() {
                if let Some(status) = worker.child.try_wait().unwrap() {
                    panic!("{seed}a worker exited ({status}):\n{}", worker.log());
                }
            }
            let pending: Vec<String> = runs
                .iter()
                .filter(|r| !r.status.is_terminal())
                .map(|r| format!("run {} {} {:?}", r.id, r.status, r.phase))
                .collect();
            assert!(
                started.elapsed() < Duration::from_secs(240),
                "{seed}runs did not end: {pending:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `nightshift/*` branches on the remote, each with the number of commits it has on top of
    /// its lane.
    fn run_branches(&self) -> BTreeMap<String, usize> {
        let bare = self.remote.bare_path();
        let main = self.remote.head("main").unwrap();
        self.remote
            .branches()
            .into_iter()
            .filter(|b| b.starts_with("nightshift/"))
            .map(|b| {
                let count = git(&bare, &["rev-list", "--count", &format!("{main}..{b}")]);
                (b, count.trim().parse().unwrap())
            })
            .collect()
    }

    /// Each run's events are numbered 1, 2, 3… with no gap.
    async fn assert_gap_free(&self, runs: &[Run], seed: &str) {
        for run in runs {
            let events = self.store.events(run.id, 0, 10_000).await.unwrap();
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            assert_eq!(
                seqs,
                (1..=events.len() as i64).collect::<Vec<_>>(),
                "{seed}run {} has a gap in its events",
                run.id
            );
        }
    }
}

fn lane_name(lane: usize) -> String {
    format!("lane-{lane:02}")
}

fn data_key<'a>(events: &'a [nightshift_core::RunEvent], key: &str) -> Vec<&'a Value> {
    events.iter().filter_map(|e| e.data.get(key)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_drain_two_hundred_runs_each_exactly_once() {
    const RUNS: usize = 200;
    let mut cluster = Cluster::start(20, "poll = \"100ms\"\n", &[]).await;
    let ran = cluster.shared("ran");
    for i in 0..RUNS {
        let command = format!(
            "echo {i} >> {ran} && echo {i} > result.txt",
            ran = ran.display()
        );
        cluster.create(i, i % 20, &command).await;
    }
    let started = Instant::now();
    let mut workers: Vec<Worker> = (0..3).map(|_| cluster.worker(2)).collect();
    let runs = cluster.wait_all_ended(&mut workers, "").await;
    eprintln!(
        "{RUNS} runs drained by 3 workers in {:.1?}",
        started.elapsed()
    );

    assert_eq!(runs.len(), RUNS, "one run per task");
    for run in &runs {
        assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    }
    // Each agent ran exactly once: one line per task in the shared file.
    let lines: Vec<usize> = std::fs::read_to_string(&ran)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(lines.len(), RUNS, "an agent ran twice or never");
    assert_eq!(
        lines.iter().copied().collect::<BTreeSet<_>>(),
        (0..RUNS).collect()
    );
    // One branch per run with exactly one commit, holding that run's result.
    let branches = cluster.run_branches();
    assert_eq!(branches.len(), RUNS, "{branches:?}");
    assert!(branches.values().all(|&n| n == 1), "{branches:?}");
    for run in &runs {
        let task = cluster
            .store
            .task(cluster.project_id, run.task_id)
            .await
            .unwrap()
            .unwrap();
        let i: usize = task
            .title
            .trim_start_matches("Write result ")
            .parse()
            .unwrap();
        let head = run.checkpoint.pushed_commit.as_deref().unwrap();
        assert_eq!(cluster.remote.show(head, "result.txt"), format!("{i}\n"));
        assert_eq!(
            cluster.remote.head(&task.branch_name()).as_deref(),
            Some(head)
        );
    }
    // No run changed hands, and all three workers took part (each fetched the repository).
    for run in &runs {
        let events = cluster.store.events(run.id, 0, 10_000).await.unwrap();
        assert!(data_key(&events, "takeover").is_empty(), "{events:?}");
    }
    cluster.assert_gap_free(&runs, "").await;
    for (n, mut worker) in workers.into_iter().enumerate() {
        let mirrors = cluster
            .scratch
            .path()
            .join(format!("worker-{}/mirrors", n + 1));
        assert!(
            std::fs::read_dir(&mirrors).is_ok_and(|mut d| d.next().is_some()),
            "worker {n} ran nothing"
        );
        worker.terminate();
        assert!(worker.wait_exit(), "{}", worker.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_run_to_another_worker_process_at_once() {
    // Leases of an hour: the second worker can only get the run by a handover.
    let mut cluster = Cluster::start(
        1,
        "lease = \"1h\"\nshutdown_grace = \"1h\"\npoll = \"100ms\"\n",
        &[],
    )
    .await;
    let (started, ran) = (cluster.shared("started"), cluster.shared("ran"));
    // The agent takes a moment, so the signal lands while it works.
    let command = format!(
        "echo started >> {started} && sleep 1.5 && echo ran >> {ran} && echo done > result.txt",
        started = started.display(),
        ran = ran.display()
    );
    let mut first = cluster.worker(1);
    cluster.create(0, 0, &command).await;
    let waited = Instant::now();
    while !started.exists() {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the agent never started:\n{}",
            first.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = cluster.worker(1);
    first.terminate();
    assert!(
        first.wait_exit(),
        "SIGTERM ends the worker cleanly:\n{}",
        first.log()
    );
    assert!(first.log().contains("shutting down"), "{}", first.log());
    let mut workers = [second];
    let runs = cluster.wait_all_ended(&mut workers, "").await;
    let run = &runs[0];
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap().lines().count(),
        1,
        "the agent's work was handed over, not done again"
    );
    assert_eq!(
        cluster.run_branches().into_values().collect::<Vec<_>>(),
        vec![1]
    );

    let events = cluster.store.events(run.id, 0, 10_000).await.unwrap();
    let handovers = data_key(&events, "handover");
    assert_eq!(handovers.len(), 1, "{events:#?}");
    assert_eq!(handovers[0]["grace_expired"], false);
    let from = handovers[0]["worker"].as_str().unwrap();
    assert!(from.contains(&format!("-{}-", first.pid())), "{from}");
    let takeovers = data_key(&events, "takeover");
    assert_eq!(takeovers.len(), 1, "{events:#?}");
    assert_eq!(takeovers[0]["after"], "handed_back");
    let to = takeovers[0]["worker"].as_str().unwrap();
    assert!(to.contains(&format!("-{}-", workers[0].pid())), "{to}");
    assert_eq!(data_key(&events, "restored").len(), 1, "{events:#?}");
    cluster.assert_gap_free(&runs, "").await;
}

/// A small deterministic generator, so a failing kill schedule can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_kills_at_random_points_lose_no_run() {
    const KILLS: usize = 30;
    const LANES: usize = 8;
    let seed: u64 = match std::env::var("NIGHTSHIFT_TEST_SEED") {
        Ok(seed) => seed.parse().unwrap(),
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        }
    };
    let tag = format!("[NIGHTSHIFT_TEST_SEED={seed}] ");
    eprintln!("{tag}killing workers {KILLS} times");
    let mut rng = Rng(seed);
    // Every phase takes a moment, so kills land in each: a setup command (preparing), the agent,
    // the test check (validating), and a remote slow to take pushes (publishing).
    let mut cluster = Cluster::start(
        LANES,
        "lease = \"1500ms\"\npoll = \"100ms\"\n",
        &[(
            ".nightshift.toml",
            "[setup]\ncommands = [\"sleep 0.3\"]\n[checks]\ntest = [\"sleep 0.3\"]\n",
        )],
    )
    .await;
    cluster.slow_down_pushes("0.3");
    let ran = cluster.shared("ran");
    let command = |i: usize| {
        format!(
            "echo {i} >> {ran} && sleep 0.4 && echo {i} > result.txt",
            ran = ran.display()
        )
    };
    let started = Instant::now();
    let mut workers: Vec<Worker> = (0..2).map(|_| cluster.worker(2)).collect();
    let mut created = 0;
    let mut kills: Vec<Phase> = Vec::new();
    let phases = [
        Phase::Preparing,
        Phase::Agent,
        Phase::Validating,
        Phase::Publishing,
    ];
    for k in 0..KILLS {
        // Keep a backlog, so every worker always has runs to be killed in.
        let open = cluster
            .runs()
            .await
            .iter()
            .filter(|r| !r.status.is_terminal())
            .count();
        if open < 2 * LANES {
            for _ in 0..LANES {
                cluster
                    .create(created, created % LANES, &command(created))
                    .await;
                created += 1;
            }
        }
        let victim = k % workers.len();
        let owner = format!("-{}-", workers[victim].pid());
        let target = phases[k % phases.len()];
        let waited = Instant::now();
        let run_id = loop {
            let held = cluster.runs().await.into_iter().find(|r| {
                r.status == RunStatus::Running
                    && r.phase == Some(target)
                    && r.lease_owner.as_deref().is_some_and(|o| o.contains(&owner))
            });
            if let Some(run) = held {
                break run.id;
            }
            assert!(
                waited.elapsed() < Duration::from_secs(60),
                "{tag}kill {k}: the worker never held a run in {target}:\n{}",
                workers[victim].log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        tokio::time::sleep(Duration::from_millis(rng.below(150))).await;
        let now = cluster.store.run(run_id).await.unwrap().unwrap();
        workers[victim].kill_hard();
        // Where the kill landed: the run's phase just before, if the victim still held it.
        if now
            .lease_owner
            .as_deref()
            .is_some_and(|o| o.contains(&owner))
        {
            kills.extend(now.phase);
        }
        workers[victim] = cluster.worker(2);
    }
    let runs = cluster.wait_all_ended(&mut workers, &tag).await;
    eprintln!(
        "{tag}{KILLS} kills ({kills:?}), {created} runs, all ended after {:.1?}",
        started.elapsed()
    );

    assert_eq!(runs.len(), created, "{tag}one run per task");
    for run in &runs {
        assert_eq!(run.status, RunStatus::Succeeded, "{tag}{run:?}");
    }
    let branches = cluster.run_branches();
    assert_eq!(branches.len(), created, "{tag}{branches:?}");
    assert!(branches.values().all(|&n| n == 1), "{tag}{branches:?}");
    for run in &runs {
        let task = cluster
            .store
            .task(cluster.project_id, run.task_id)
            .await
            .unwrap()
            .unwrap();
        let i: usize = task
            .title
            .trim_start_matches("Write result ")
            .parse()
            .unwrap();
        let head = cluster.remote.head(&task.branch_name()).unwrap();
        assert_eq!(
            cluster.remote.show(&head, "result.txt"),
            format!("{i}\n"),
            "{tag}"
        );
    }
    cluster.assert_gap_free(&runs, &tag).await;
    for phase in phases {
        assert!(
            kills.contains(&phase),
            "{tag}no kill landed in {phase}: {kills:?}"
        );
    }
    let mut restored = 0;
    for run in &runs {
        let events = cluster.store.events(run.id, 0, 10_000).await.unwrap();
        restored += data_key(&events, "restored").len();
    }
    assert!(restored > 0, "{tag}no run was restored from its checkpoint");
}
