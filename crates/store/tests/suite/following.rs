//! A run's events on both back ends: gap-free sequences, and followers that see every
//! event in order and the run's end after its last one.

use std::time::Duration;

use nightshift_core::{DEFAULT_PROJECT, EndReason, EventKind, RunStatus};
use nightshift_store::{Followed, NewEvent, Store};

use super::conformance::new_task;

pub async fn events_have_gap_free_sequences(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (_, run) = store
        .create_task(&new_task(project.id, "/srv/a.git", "log"))
        .await
        .unwrap();
    let mut wake = store.subscribe();
    let ev = |i: usize| NewEvent {
        kind: EventKind::Log,
        phase: None,
        message: format!("line {i}"),
        data: serde_json::json!({"i": i}),
    };
    let mut handles = Vec::new();
    for chunk in 0..4 {
        let store = store.clone();
        let batch: Vec<_> = (0..25).map(|i| ev(chunk * 25 + i)).collect();
        handles.push(tokio::spawn(async move {
            store.append_events(run.id, &batch).await.unwrap()
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    assert_eq!(wake.recv().await.unwrap(), run.id);
    let events = store.events(run.id, 0, 1000).await.unwrap();
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    let tail = store.events(run.id, 98, 10).await.unwrap();
    assert_eq!(tail.len(), 2);
    assert!(events[0].data["i"].as_u64().is_some());
}

pub async fn follower_sees_appends_in_order(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (_, run) = store
        .create_task(&new_task(project.id, "/srv/a.git", "follow me"))
        .await
        .unwrap();
    store.append_events(run.id, &[log_event(0)]).await.unwrap();
    let mut follower = store.follow(run.id, 0);
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for batch in 0..5 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let events: Vec<_> = (1..=6).map(|i| log_event(batch * 6 + i)).collect();
                store.append_events(run.id, &events).await.unwrap();
            }
        })
    };
    let mut seen = Vec::new();
    while seen.len() < 31 {
        let batch = tokio::time::timeout(Duration::from_secs(30), follower.next(100))
            .await
            .expect("the follower is woken by appends");
        seen.extend(batch.unwrap().into_iter().map(|e| e.seq));
    }
    writer.await.unwrap();
    assert_eq!(seen, (1..=31).collect::<Vec<_>>());
    assert_eq!(follower.position(), 31);
}

/// Follows with `next_or_end` until the end: the sequence numbers seen, and the ended run.
async fn follow_to_end(
    follower: &mut nightshift_store::RunFollower,
) -> (Vec<i64>, nightshift_core::Run) {
    let mut seen = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), follower.next_or_end(2))
            .await
            .expect("the follower is woken by appends and by the end");
        match next.unwrap() {
            Followed::Events(events) => seen.extend(events.iter().map(|e| e.seq)),
            Followed::Ended(run) => return (seen, *run),
        }
    }
}

pub async fn followers_see_a_run_end_after_its_last_event(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (_, run) = store
        .create_task(&new_task(project.id, "/srv/a.git", "end me"))
        .await
        .unwrap();
    let mut early = store.follow(run.id, 0);
    let watching = tokio::spawn(async move { follow_to_end(&mut early).await });
    let claim = store
        .claim_run("w", Duration::from_secs(3600))
        .await
        .unwrap()
        .unwrap();
    for i in 0..5 {
        store.append_events(run.id, &[log_event(i)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The last events and the end come together, as when a worker flushes and finishes.
    store
        .append_events(run.id, &[log_event(5), log_event(6)])
        .await
        .unwrap();
    store
        .finish_run(claim.run.id, "w", EndReason::Succeeded, None, None)
        .await
        .unwrap();
    let (seen, ended) = watching.await.unwrap();
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
    assert_eq!(ended.status, RunStatus::Succeeded);
    // Followers that come later (and those resuming part-way) get the rest, then the end.
    let (seen, _) = follow_to_end(&mut store.follow(run.id, 0)).await;
    assert_eq!(seen, (1..=7).collect::<Vec<_>>());
    let (seen, _) = follow_to_end(&mut store.follow(run.id, 4)).await;
    assert_eq!(seen, vec![5, 6, 7]);

    // A queued run cancelled before any event: the end alone.
    let (task, queued) = store
        .create_task(&new_task(project.id, "/srv/b.git", "cancel me"))
        .await
        .unwrap();
    let mut follower = store.follow(queued.id, 0);
    let watching = tokio::spawn(async move { follow_to_end(&mut follower).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    store.cancel_task(project.id, task.id).await.unwrap();
    let (seen, ended) = watching.await.unwrap();
    assert!(seen.is_empty());
    assert_eq!(ended.status, RunStatus::Cancelled);
}

fn log_event(i: usize) -> NewEvent {
    NewEvent {
        kind: EventKind::Log,
        phase: None,
        message: format!("line {i}"),
        data: serde_json::Value::Null,
    }
}

pub async fn many_followers_of_one_run_see_every_event(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (_, run) = store
        .create_task(&new_task(project.id, "/srv/a.git", "busy run"))
        .await
        .unwrap();
    // More history than a node keeps in memory, so late joiners read it from the database.
    let history: Vec<_> = (1..=1500).map(log_event).collect();
    store.append_events(run.id, &history).await.unwrap();
    let starts = [1490, 1495, 0, 700]
        .into_iter()
        .chain(std::iter::repeat_n(1500, 26));
    let mut handles = Vec::new();
    for (i, start) in starts.enumerate() {
        let mut follower = store.follow(run.id, start);
        // Small and large pages both come out gap-free.
        let page = if i % 2 == 0 { 7 } else { 1000 };
        handles.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while follower.position() < 1520 {
                let batch = tokio::time::timeout(Duration::from_secs(30), follower.next(page))
                    .await
                    .expect("the follower is woken by appends")
                    .unwrap();
                seen.extend(batch.into_iter().map(|e| e.seq));
            }
            (start, seen)
        }));
    }
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let more: Vec<_> = (1..=5).map(|j| log_event(1500 + i * 5 + j)).collect();
        store.append_events(run.id, &more).await.unwrap();
    }
    for h in handles {
        let (start, seen) = h.await.unwrap();
        assert_eq!(
            seen,
            ((start + 1)..=1520).collect::<Vec<_>>(),
            "follower from {start}"
        );
    }
}
