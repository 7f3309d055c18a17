//! Benchmark: what Nightshift itself adds to a run — end-to-end wall time of a no-op `command`
//! task (create → run ended) minus the agent's own time, median of N.
//!
//! cargo run --release -p nightshift-engine --example orchestration_overhead [RUNS] [--events]
//!
//! With `--events`, the last run's events are printed with their times from the task's
//! creation: where the overhead goes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use nightshift_core::{AgentEvent, EventKind};
use nightshift_engine::EngineConfig;
use nightshift_store::Store;
use nightshift_test_support::git::RemoteRepo;

use common::{Bench, median};

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .filter(|a| a != "--events")
        .map(|a| a.parse().unwrap())
        .unwrap_or(20);
    let show_events = std::env::args().any(|a| a == "--events");
    let remote = RemoteRepo::with_files(&[("README", "hello\n")]);
    let data = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&data.path().join("nightshift.db"))
        .await
        .unwrap();
    let bench = Bench::start(store, EngineConfig::new(data.path()), &remote.url()).await;
    let store = &bench.store;

    let (mut total, mut agent, mut overhead) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = Vec::new();
    for i in 0..runs {
        let created = nightshift_core::now_millis();
        let (run, wall) = bench.run(&format!("no-op {i}"), "true").await;
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
        last = events
            .iter()
            .map(|e| format!("{:>5} ms  {}", e.at - created, e.message))
            .collect();
        total.push(wall);
        agent.push(own);
        overhead.push(wall - own);
    }
    if show_events {
        println!(
            "The last run's events, from the task's creation:\n{}\n",
            last.join("\n")
        );
    }
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
