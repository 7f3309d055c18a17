use std::sync::Arc;
use std::time::{Duration, Instant};

use nightshift_core::{AgentSpec, Budget, DEFAULT_PROJECT, Project, Run, RunEvent};
use nightshift_engine::{
    Creator, Engine, EngineConfig, Intake, IntakePolicy, LocalRepos, TaskRateLimit, TaskRequest,
};
use nightshift_store::Store;
use nightshift_test_support::git::repos_root;
use tokio_util::sync::CancellationToken;

pub struct Harness {
    pub data: tempfile::TempDir,
    pub store: Store,
    pub engine: Arc<Engine>,
    /// The way tasks come in, as through the API.
    pub intake: Intake,
    pub project: Project,
    pub project_id: i64,
    shutdown: CancellationToken,
}

/// The intake tests create tasks through: the API's, with room for long timeouts and many tasks.
pub fn intake(engine: &Arc<Engine>) -> Intake {
    Intake::new(
        engine.clone(),
        IntakePolicy {
            max_timeout: Duration::from_secs(24 * 3600),
            default_agent: AgentSpec::command("true"),
            task_rate: TaskRateLimit {
                per_minute: 100_000,
                burst: 100_000,
            },
        },
    )
}

/// The member who creates the tests' tasks.
pub fn tester() -> Creator {
    Creator {
        name: "tester".into(),
        server_admin: false,
        source: "test".into(),
    }
}

/// A task request with everything the tests choose.
pub fn request(
    repo: &str,
    instructions: &str,
    agent: AgentSpec,
    budget: Budget,
    timeout: Duration,
) -> TaskRequest {
    TaskRequest {
        repo: repo.to_string(),
        instructions: instructions.to_string(),
        agent: Some(agent),
        budget: Some(budget),
        timeout: Some(format!("{}s", timeout.as_secs())),
        ..TaskRequest::default()
    }
}

impl Harness {
    pub async fn start(workers: usize) -> Harness {
        Harness::start_with(tempfile::tempdir().unwrap(), workers, |_| {}).await
    }

    /// Starts the engine on `data` with the test's own configuration (agents, rounds, budget).
    pub async fn start_with(
        data: tempfile::TempDir,
        workers: usize,
        configure: impl FnOnce(&mut EngineConfig),
    ) -> Harness {
        let store = Store::open_sqlite(&data.path().join("nightshift.db"))
            .await
            .unwrap();
        let mut config = EngineConfig::new(data.path());
        // The operator lets tasks use repositories in the temp directory, where tests keep them.
        config.repositories.local = LocalRepos::Under(vec![repos_root()]);
        config.heartbeat = Duration::from_millis(200);
        config.poll = Duration::from_millis(100);
        config.confinement.forwarder = Some(vec![forwarder()]);
        configure(&mut config);
        let engine = Engine::new(store.clone(), config);
        let shutdown = CancellationToken::new();
        let e = engine.clone();
        let s = shutdown.clone();
        tokio::spawn(async move { e.run_workers(workers, s).await });
        let project = store.project(DEFAULT_PROJECT).await.unwrap().unwrap();
        Harness {
            data,
            store,
            intake: intake(&engine),
            engine,
            project_id: project.id,
            project,
            shutdown,
        }
    }

    pub async fn create(
        &self,
        repo: &str,
        instructions: &str,
        command: &str,
        timeout: Duration,
    ) -> i64 {
        self.create_with(
            repo,
            instructions,
            AgentSpec::command(command),
            Budget::default(),
            timeout,
        )
        .await
    }

    /// Creates a task through the intake with any agent and budget, as the API does.
    pub async fn create_with(
        &self,
        repo: &str,
        instructions: &str,
        agent: AgentSpec,
        budget: Budget,
        timeout: Duration,
    ) -> i64 {
        self.submit(request(repo, instructions, agent, budget, timeout))
            .await
    }

    /// Creates a task through the intake from a request a test adjusted.
    pub async fn submit(&self, request: TaskRequest) -> i64 {
        let (task, _) = self
            .intake
            .create(&self.project, &tester(), request)
            .await
            .unwrap();
        task.id
    }

    pub async fn latest(&self, task_id: i64) -> Run {
        self.store
            .task_runs(self.project_id, task_id)
            .await
            .unwrap()
            .pop()
            .unwrap()
    }

    /// Waits for the task's latest run to end.
    pub async fn wait_end(&self, task_id: i64) -> Run {
        let started = Instant::now();
        loop {
            let run = self.latest(task_id).await;
            if run.status.is_terminal() {
                return run;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "run did not end: {run:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_phase(&self, task_id: i64, phase: nightshift_core::Phase) {
        let started = Instant::now();
        while self.latest(task_id).await.phase != Some(phase) {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "phase {phase} not reached"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn events(&self, run: &Run) -> Vec<RunEvent> {
        self.store.events(run.id, 0, 10_000).await.unwrap()
    }

    pub fn branch_of(&self, task_id: i64, title: &str) -> String {
        let slug = nightshift_core::slug(title);
        format!("nightshift/{task_id}-{slug}")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The in-sandbox forwarder built with these tests (the CLI has its own built in).
pub fn forwarder() -> String {
    env!("CARGO_BIN_EXE_nightshift-engine-netfwd").to_string()
}

/// Processes whose command line contains `marker` (a unique argument such as `sleep 987.65`).
pub fn processes_with(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if cmdline.contains(marker) && !zombie && !cmdline.contains("cargo") {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}
