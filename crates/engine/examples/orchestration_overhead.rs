//! Benchmark: what Nightshift itself adds to a run — end-to-end wall time of a no-op `command`
//! task (create → run ended) minus the agent's own time, median of N.
//!
//! cargo run --release -p nightshift-engine --example orchestration_overhead [RUNS]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use nightshift_core::{AgentEvent, AgentSpec, Budget, EventKind, Instructions, NewTask, RepoUrl};
use nightshift_engine::{Engine, EngineConfig};
use nightshift_store::Store;
use nightshift_test_support::git::RemoteRepo;
use tokio_util::sync::CancellationToken;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(20);
    let remote = RemoteRepo::with_files(&[("README", "hello\n")]);
    let data = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&data.path().join("nightshift.db"))
        .await
        .unwrap();
    let engine = Engine::new(store.clone(), EngineConfig::new(data.path()));
    let stop = CancellationToken::new();
    let (e, s) = (engine.clone(), stop.clone());
    tokio::spawn(async move { e.run_workers(1, s).await });
    let project = store.project("default").await.unwrap().unwrap();
    let repo = RepoUrl::parse(&remote.url()).unwrap();
    let base = engine.resolve_base(&repo, None).await.unwrap();

    let (mut total, mut agent, mut overhead) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let instructions = Instructions::parse(&format!("no-op {i}")).unwrap();
        let new = NewTask {
            project_id: project.id,
            title: instructions.summary(),
            instructions,
            repo: repo.clone(),
            base_branch: base.clone(),
            agent: AgentSpec::command("true"),
            timeout_secs: 600,
            budget: Budget::default(),
            created_by: "bench".into(),
        };
        let start = Instant::now();
        let (task, _) = store.create_task(&new).await.unwrap();
        engine.wake();
        let run = loop {
            let run = store
                .task_runs(project.id, task.id)
                .await
                .unwrap()
                .pop()
                .unwrap();
            if run.status.is_terminal() {
                break run;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let wall = start.elapsed().as_secs_f64() * 1e3;
        assert_eq!(run.end_reason, Some(nightshift_core::EndReason::NoChanges));
        // The agent's own time: from its start event to its final event, as stored.
        let events = store.events(run.id, 0, 1000).await.unwrap();
        let at = |want: fn(&AgentEvent) -> bool| {
            events
                .iter()
                .filter(|e| e.kind == EventKind::Agent)
                .find(|e| {
                    serde_json::from_value::<AgentEvent>(e.data.clone()).is_ok_and(|a| want(&a))
                })
                .map(|e| e.at)
                .unwrap()
        };
        let own = (at(|a| matches!(a, AgentEvent::Final { .. }))
            - at(|a| matches!(a, AgentEvent::Started { .. }))) as f64;
        total.push(wall);
        agent.push(own);
        overhead.push(wall - own);
    }
    stop.cancel();
    println!(
        "| runs | end-to-end, median | agent's own time, median | orchestration overhead, median | overhead, min–max |"
    );
    println!("|---:|---:|---:|---:|---:|");
    let (lo, hi) = overhead
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
    println!(
        "| {runs} | {:.0} ms | {:.0} ms | {:.0} ms | {lo:.0}–{hi:.0} ms |",
        median(total),
        median(agent),
        median(overhead)
    );
}
