//! What the engine's benchmarks share: an engine with one worker on a repository, and timing
//! a `command` task, created through the intake as the API creates it, until its run ended.

use std::time::{Duration, Instant};

use nightshift_core::{AgentSpec, Project, Run};
use nightshift_engine::{
    Creator, Engine, EngineConfig, Intake, IntakePolicy, TaskRateLimit, TaskRequest,
};
use nightshift_store::Store;
use tokio_util::sync::CancellationToken;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One worker of an engine with `config`, ready to run tasks on `repo`.
pub struct Bench {
    pub store: Store,
    intake: Intake,
    project: Project,
    repo: String,
    _stop: tokio_util::sync::DropGuard,
}

impl Bench {
    pub async fn start(store: Store, mut config: EngineConfig, repo: &str) -> Bench {
        // Benchmark repositories live in the temp directory, which the operator allows.
        config.repositories.local =
            nightshift_engine::LocalRepos::Under(vec![nightshift_test_support::git::repos_root()]);
        let engine = Engine::new(store.clone(), config);
        let stop = CancellationToken::new();
        let (e, s) = (engine.clone(), stop.clone());
        tokio::spawn(async move { e.run_workers(1, s).await });
        let project = store.project("default").await.unwrap().unwrap();
        let intake = Intake::new(
            engine.clone(),
            IntakePolicy {
                max_timeout: Duration::from_secs(3600),
                default_agent: AgentSpec::command("true"),
                // A benchmark creates tasks as fast as runs end.
                task_rate: TaskRateLimit {
                    per_minute: 100_000,
                    burst: 100_000,
                },
            },
        );
        Bench {
            store,
            intake,
            project,
            repo: repo.to_string(),
            _stop: stop.drop_guard(),
        }
    }

    /// Creates a task whose agent runs `command` and waits for its run to end: the run and the
    /// milliseconds from the task stored (the intake's probe of the repository is no part of a
    /// run) to the end.
    pub async fn run(&self, instructions: &str, command: &str) -> (Run, f64) {
        let request = TaskRequest {
            repo: self.repo.clone(),
            instructions: instructions.to_string(),
            agent: Some(AgentSpec::command(command)),
            timeout: Some("10m".into()),
            ..TaskRequest::default()
        };
        let bench = Creator {
            name: "bench".into(),
            server_admin: false,
            source: "benchmark".into(),
        };
        let (task, _) = self
            .intake
            .create(&self.project, &bench, request)
            .await
            .unwrap();
        let start = Instant::now();
        loop {
            let run = self
                .store
                .task_runs(self.project.id, task.id)
                .await
                .unwrap()
                .pop()
                .unwrap();
            if run.status.is_terminal() {
                return (run, start.elapsed().as_secs_f64() * 1e3);
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}
