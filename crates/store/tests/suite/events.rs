//! Conformance cases for how run events are stored: the message once, and the bytes a run's
//! events take counted on the run. Run on every back end by the `conformance_cases!` macro.

use nightshift_core::{DEFAULT_PROJECT, EventKind, Phase};
use nightshift_store::{EVENT_ROW_BYTES, NewEvent, Store};

use super::conformance::new_task;

fn event(kind: EventKind, message: &str, data: serde_json::Value) -> NewEvent {
    NewEvent {
        kind,
        phase: Some(Phase::Agent),
        message: message.into(),
        data,
    }
}

pub async fn events_store_their_message_once(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (_, run) = store
        .create_task(&new_task(project.id, "/srv/e.git", "print"))
        .await
        .unwrap();
    let line = "an output line of the agent";
    let events = vec![
        // An agent's output: the line is the message and a field of the data.
        event(
            EventKind::Agent,
            line,
            serde_json::json!({"type": "output", "stream": "stdout", "line": line}),
        ),
        // Nothing in the data equals the message.
        event(
            EventKind::Check,
            "test `make`",
            serde_json::json!({"command": "make", "round": 1}),
        ),
        event(EventKind::Phase, "agent", serde_json::Value::Null),
        // An empty message is nothing to save.
        event(EventKind::Info, "", serde_json::json!({"note": ""})),
        // Only top-level strings of an object are the message.
        event(EventKind::Info, "x", serde_json::json!(["x"])),
        event(
            EventKind::Info,
            "y",
            serde_json::json!({"nested": {"y": "y"}}),
        ),
        // The message is the whole data object.
        event(
            EventKind::Agent,
            "only",
            serde_json::json!({"text": "only"}),
        ),
    ];
    store.append_events(run.id, &events[..3]).await.unwrap();
    store.append_events(run.id, &events[3..]).await.unwrap();

    let read = store.events(run.id, 0, 100).await.unwrap();
    let back: Vec<NewEvent> = read
        .into_iter()
        .map(|e| NewEvent {
            kind: e.kind,
            phase: e.phase,
            message: e.message,
            data: e.data,
        })
        .collect();
    assert_eq!(back, events, "every event reads back as it was appended");

    // The line once: its message, plus the rest of its data, plus its row.
    let output = line.len() + r#"{"stream":"stdout","type":"output"}"#.len() + EVENT_ROW_BYTES;
    assert_eq!(events[0].stored_bytes(), output);
    assert_eq!(
        events[6].stored_bytes(),
        "only".len() + "{}".len() + EVENT_ROW_BYTES
    );
    let stored: usize = events.iter().map(NewEvent::stored_bytes).sum();
    let run = store.run(run.id).await.unwrap().unwrap();
    assert_eq!(
        run.event_bytes, stored as u64,
        "counted across both appends"
    );
}

/// The database itself holds an output line once: read with SQLite's own driver, not the store.
#[tokio::test]
async fn the_database_holds_an_output_line_once() {
    let (store, dir) = super::conformance::sqlite().await;
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (_, run) = store
        .create_task(&new_task(project.id, "/srv/e.git", "print"))
        .await
        .unwrap();
    let line = "a line the database should hold once";
    let output = serde_json::json!({"type": "output", "stream": "stderr", "line": line});
    store
        .append_events(run.id, &[event(EventKind::Agent, line, output)])
        .await
        .unwrap();
    let url = format!("sqlite://{}", dir.path().join("nightshift.db").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (message, data): (String, String) = sqlx::query_as("SELECT message, data FROM run_events")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(message, line);
    let data: serde_json::Value = serde_json::from_str(&data).unwrap();
    assert_eq!(
        data,
        serde_json::json!({"stream": "stderr", "type": "output"})
    );
}

/// Followers of a run whose events are large get every one, in order, though a node keeps only
/// a few megabytes of a run's newest events in memory: the rest is read from the database.
pub async fn followers_get_every_large_event(store: Store) {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let (_, run) = store
        .create_task(&new_task(project.id, "/srv/e.git", "print"))
        .await
        .unwrap();
    let big = |i: usize| {
        let line = format!("{i} {}", "x".repeat(1 << 20));
        let data = serde_json::json!({"type": "output", "stream": "stdout", "line": line});
        event(EventKind::Agent, &line, data)
    };
    let mut slow = store.follow(run.id, 0);
    let mut fast = store.follow(run.id, 0);
    let mut seen = Vec::new();
    for batch in 0..4 {
        let events: Vec<NewEvent> = (0..3).map(|i| big(batch * 3 + i)).collect();
        store.append_events(run.id, &events).await.unwrap();
        // One follower keeps up, the other falls behind what the node keeps in memory.
        while seen.len() < (batch + 1) * 3 {
            let next = tokio::time::timeout(std::time::Duration::from_secs(30), fast.next(1))
                .await
                .expect("woken by the append");
            seen.extend(next.unwrap());
        }
    }
    let mut late = Vec::new();
    while late.len() < 12 {
        late.extend(slow.next(5).await.unwrap());
    }
    for events in [&seen, &late] {
        let lines: Vec<String> = events
            .iter()
            .map(|e| {
                e.data["line"]
                    .as_str()
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        let expected: Vec<String> = (0..12).map(|i: usize| i.to_string()).collect();
        assert_eq!(lines, expected);
        assert!(events.iter().all(|e| e.message.len() > 1 << 20));
    }
}
