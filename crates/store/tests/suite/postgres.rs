//! What only PostgreSQL offers: several nodes on one database.

use std::time::Duration;

use nightshift_core::{DEFAULT_PROJECT, EventKind};
use nightshift_store::{NewEvent, Store};
use nightshift_test_support::postgres::PgCluster;

use crate::suite::conformance::new_task;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_on_one_node_wake_followers_on_another() {
    let url = PgCluster::shared().fresh_database();
    let worker_node = Store::connect(&url).await.unwrap();
    let api_node = Store::connect(&url).await.unwrap();
    let project = worker_node.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (_, run) = worker_node
        .create_task(&new_task(project.id, "/srv/a.git", "cross node"))
        .await
        .unwrap();
    let mut wake = api_node.subscribe();
    let mut follower = api_node.follow(run.id, 0);
    worker_node
        .append_events(
            run.id,
            &[NewEvent {
                kind: EventKind::Log,
                phase: None,
                message: "from the worker".into(),
                data: serde_json::Value::Null,
            }],
        )
        .await
        .unwrap();
    // A guard against hanging, not a latency check: the numbers are in docs/benchmarks.md.
    let woke = tokio::time::timeout(Duration::from_secs(30), wake.recv())
        .await
        .expect("the other node is notified")
        .unwrap();
    assert_eq!(woke, run.id);
    let events = follower.next(10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message, "from the worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_from_many_nodes_take_each_run_once() {
    let url = PgCluster::shared().fresh_database();
    let nodes = [
        Store::connect(&url).await.unwrap(),
        Store::connect(&url).await.unwrap(),
        Store::connect(&url).await.unwrap(),
        Store::connect(&url).await.unwrap(),
    ];
    let project = nodes[0].ensure_project(DEFAULT_PROJECT).await.unwrap();
    for i in 0..100 {
        nodes[0]
            .create_task(&new_task(project.id, "/srv/a.git", &format!("task {i}")))
            .await
            .unwrap();
    }
    let mut handles = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for w in 0..4 {
            let node = node.clone();
            handles.push(tokio::spawn(async move {
                let worker = format!("node{n}-w{w}");
                let mut mine = Vec::new();
                while let Some(c) = node
                    .claim_run(&worker, Duration::from_secs(60))
                    .await
                    .unwrap()
                {
                    node.finish_run(
                        c.run.id,
                        &worker,
                        nightshift_core::EndReason::Succeeded,
                        None,
                        None,
                    )
                    .await
                    .unwrap();
                    mine.push(c.run.id);
                }
                mine
            }));
        }
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 100);
    assert_eq!(unique.len(), 100, "no run claimed by two nodes");
}
