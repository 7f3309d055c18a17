//! What the engine's benchmarks share: an engine with one worker on a repository, and timing
//! a `command` task from its creation until its run ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nightshift_core::{AgentSpec, BranchName, Budget, Instructions, NewTask, RepoUrl, Run};
use nightshift_engine::{Engine, EngineConfig};
use nightshift_store::Store;
use tokio_util::sync::CancellationToken;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// One worker of an engine with `config`, ready to run tasks on `repo`.
pub struct Bench {
    pub store: Store,
    pub engine: Arc<Engine>,
    project_id: i64,
    repo: RepoUrl,
    base: BranchName,
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
        let project_id = store.project("default").await.unwrap().unwrap().id;
        let repo = RepoUrl::parse(repo).unwrap();
        let base = engine
            .resolve_base(&repo, None, nightshift_engine::Requester::Run)
            .await
            .unwrap();
        Bench {
            store,
            engine,
            project_id,
            repo,
            base,
            _stop: stop.drop_guard(),
        }
    }

    /// Creates a task whose agent runs `command` and waits for its run to end: the run and the
    /// milliseconds from creation to the end.
    pub async fn run(&self, instructions: &str, command: &str) -> (Run, f64) {
        let instructions = Instructions::parse(instructions).unwrap();
        let new = NewTask {
            project_id: self.project_id,
            title: instructions.summary(),
            instructions,
            repo: self.repo.clone(),
            base_branch: self.base.clone(),
            agent: AgentSpec::command(command),
            timeout_secs: 600,
            budget: Budget::default(),
            allow_test_changes: false,
            created_by: "bench".into(),
        };
        let start = Instant::now();
        let (task, _) = self.store.create_task(&new).await.unwrap();
        self.engine.wake();
        loop {
            let run = self
                .store
                .task_runs(self.project_id, task.id)
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
