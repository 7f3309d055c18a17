//! A run's limits through the real `nightshift serve`, set in `[run_limits]` of nightshift.toml
//! and attacked by the run's own agent: printing far more than a run may store, and filling
//! `/tmp` past its disk limit.

use nightshift_core::{RunEvent, format_size};
use nightshift_store::NewEvent;
use nightshift_test_support::git::RemoteRepo;
use serde_json::Value;

use super::server::Server;

const STORED: u64 = 64 << 10;

fn start(data: &std::path::Path) -> Server {
    std::fs::write(
        data.join("nightshift.toml"),
        "[run_limits]\nstored_events = \"64K\"\ntmp_disk = \"8M\"\n",
    )
    .unwrap();
    Server::start(data, 1)
}

fn create(server: &Server, command: &str) -> Value {
    let repo = RemoteRepo::with_files(&[("a", "")]);
    let task = server.json(&[
        "task",
        "create",
        "--repo",
        &repo.url(),
        "--instructions",
        "Make some noise",
        "--agent-command",
        command,
        "--json",
    ]);
    server.wait_end(task["id"].as_i64().unwrap())
}

/// Every event of the task's first run, as the API gives them.
fn events(server: &Server, id: i64) -> Vec<RunEvent> {
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let (status, body) = server.get(&format!(
            "/api/v1/projects/default/tasks/{id}/runs/1/events?after={after}&limit=5000"
        ));
        assert_eq!(status, 200, "{body}");
        let page: Value = serde_json::from_str(&body).unwrap();
        all.extend(serde_json::from_value::<Vec<RunEvent>>(page["events"].clone()).unwrap());
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => return all,
        }
    }
}

#[test]
fn a_run_stores_no_more_than_its_limit_and_says_so() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    // About 1.3 MB of output, twenty times what the run may store.
    let task = create(&server, "seq 1 200000; touch b");
    assert_eq!(task["runs"][0]["end_reason"], "succeeded", "{task}");
    let id = task["id"].as_i64().unwrap();

    let events = events(&server, id);
    let stored: usize = events
        .iter()
        .map(|e| {
            NewEvent {
                kind: e.kind,
                phase: e.phase,
                message: e.message.clone(),
                data: e.data.clone(),
            }
            .stored_bytes()
        })
        .sum();
    // The limit, and the run's own few events (phases, checks, its end) on top.
    assert!(stored as u64 <= STORED + 16 * 1024, "{stored} bytes stored");
    assert!(events.len() < 5000, "{} events", events.len());

    let logs = server.cli(&["task", "logs", &id.to_string()]);
    let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert!(
        logs.contains("this run's stored events reached 64 KiB")
            && logs.contains("stored_events in [run_limits] of nightshift.toml"),
        "{logs}"
    );
    assert!(logs.contains("run ended: succeeded"), "{logs}");
    // The start of the output is kept, its end is not.
    let printed = |n: &str| logs.lines().any(|l| l.ends_with(&format!(" agent  {n}")));
    assert!(printed("1") && !printed("200000"), "{logs}");
}

#[test]
fn a_run_filling_tmp_past_its_limit_is_stopped_naming_the_limit() {
    let data = tempfile::tempdir().unwrap();
    let server = start(data.path());
    let task = create(
        &server,
        "head -c 40000000 /dev/urandom > /tmp/fill; sleep 60; touch b",
    );
    let run = &task["runs"][0];
    assert_eq!(run["end_reason"], "budget_exceeded", "{task}");
    assert_eq!(run["failed_phase"], "agent", "{task}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.starts_with("the /tmp of the run's processes took")
            && error.contains(&format!("over the limit of {}", format_size(8 << 20)))
            && error.contains("tmp_disk in [run_limits] of nightshift.toml"),
        "{error}"
    );
}
