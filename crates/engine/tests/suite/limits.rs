//! A run's bounds, attacked by its own agent: output past what a run may store, one event
//! larger than an event may be, and disk filled past the checkout's and /tmp's limits.

use std::time::Duration;

use nightshift_core::{AgentEvent, EndReason, EventKind, Phase, Run, RunEvent};
use nightshift_engine::{EngineConfig, RunLimits};
use nightshift_store::{EVENT_ROW_BYTES, NewEvent};
use nightshift_test_support::git::RemoteRepo;

use super::harness::Harness;

async fn run_agent(limits: RunLimits, command: &str) -> (Harness, Run, Vec<RunEvent>) {
    let h = Harness::start_with(
        tempfile::tempdir().unwrap(),
        1,
        |config: &mut EngineConfig| {
            config.run_limits = limits;
        },
    )
    .await;
    let remote = RemoteRepo::with_files(&[("a", "")]);
    let task = h
        .create(&remote.url(), "Noisy", command, Duration::from_secs(120))
        .await;
    let run = h.wait_end(task).await;
    let events = h.events(&run).await;
    (h, run, events)
}

/// What an event takes in the store, as the store itself counts it.
fn stored(event: &RunEvent) -> usize {
    NewEvent {
        kind: event.kind,
        phase: event.phase,
        message: event.message.clone(),
        data: event.data.clone(),
    }
    .stored_bytes()
}

fn output_line(event: &RunEvent) -> Option<String> {
    match serde_json::from_value::<AgentEvent>(event.data.clone()) {
        Ok(AgentEvent::Output { line, .. }) => Some(line),
        _ => None,
    }
}

#[tokio::test]
async fn an_agent_printing_past_the_runs_limit_stores_only_up_to_it() {
    const LIMIT: u64 = 256 << 10;
    let limits = RunLimits {
        stored_events: Some(LIMIT),
        ..RunLimits::default()
    };
    // About 2.7 MB of numbered lines, ten times the limit.
    let (_h, run, events) = run_agent(limits, "seq 1 400000; touch b").await;
    assert_eq!(run.end_reason, Some(EndReason::Succeeded), "{run:?}");

    // The output kept is the start of what was printed, and no more than the limit.
    let lines: Vec<String> = events.iter().filter_map(output_line).collect();
    let expected: Vec<String> = (1..=lines.len()).map(|n| n.to_string()).collect();
    assert_eq!(lines, expected);
    assert!(
        lines.len() > 1000 && lines.len() < 400_000,
        "{}",
        lines.len()
    );
    let output: usize = events
        .iter()
        .filter(|e| output_line(e).is_some())
        .map(stored)
        .sum();
    assert!(output as u64 <= LIMIT, "{output}");
    // The run's own events come on top, and the run's count is what its events take.
    let total: usize = events.iter().map(stored).sum();
    assert!(total as u64 <= LIMIT + 16 * 1024, "{total}");
    assert_eq!(run.event_bytes, total as u64);

    let said: Vec<&RunEvent> = events
        .iter()
        .filter(|e| e.data["limit"]["name"] == "stored_events")
        .collect();
    assert_eq!(said.len(), 1, "said once");
    assert_eq!(said[0].data["limit"]["bytes"], LIMIT);
    assert!(
        said[0].message.contains("256 KiB")
            && said[0]
                .message
                .contains("stored_events in [run_limits] of nightshift.toml"),
        "{}",
        said[0].message
    );
    // Everything after the limit that is not output is still there, the end included.
    let last = events.last().unwrap();
    assert_eq!(last.message, "run ended: succeeded");
    assert!(events.iter().any(|e| e.message.starts_with("committed")));
}

#[tokio::test]
async fn one_line_longer_than_an_event_may_be_is_cut_with_a_marker() {
    let limits = RunLimits {
        event_size: Some(4096),
        ..RunLimits::default()
    };
    let (_h, run, events) = run_agent(
        limits,
        "head -c 100000 /dev/zero | tr '\\0' x; echo; touch b",
    )
    .await;
    assert_eq!(run.end_reason, Some(EndReason::Succeeded), "{run:?}");
    let long = events
        .iter()
        .find(|e| e.message.starts_with("xxxx"))
        .expect("the long line is stored");
    assert!(long.message.len() <= 4096, "{}", long.message.len());
    let kept = long.message.trim_end_matches(|c| c != 'x').len();
    assert!(
        long.message
            .ends_with(&format!("… [{} more bytes not stored]", 100_000 - kept)),
        "{}",
        &long.message[kept..]
    );
    // The data says the same line, stored once.
    assert_eq!(output_line(long).as_deref(), Some(long.message.as_str()));
    assert!(
        stored(long) <= 4096 + 64 + EVENT_ROW_BYTES,
        "{}",
        stored(long)
    );
}

fn assert_stopped_over(run: &Run, events: &[RunEvent], limit: &str, size: &str) {
    assert_eq!(run.end_reason, Some(EndReason::BudgetExceeded), "{run:?}");
    assert_eq!(run.failed_phase, Some(Phase::Agent), "{run:?}");
    let error = run.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&format!("over the limit of {size}"))
            && error.contains(&format!("{limit} in [run_limits] of nightshift.toml")),
        "{error}"
    );
    let hit = events
        .iter()
        .find(|e| e.data["limit"]["name"] == limit)
        .expect("the limit is an event of the run");
    assert_eq!(hit.kind, EventKind::Error);
    assert!(hit.data["limit"]["used"].as_u64() > hit.data["limit"]["bytes"].as_u64());
}

#[tokio::test]
async fn an_agent_filling_its_checkout_past_the_limit_is_stopped() {
    let limits = RunLimits {
        checkout_disk: Some(8 << 20),
        ..RunLimits::default()
    };
    let (h, run, events) = run_agent(
        limits,
        "head -c 40000000 /dev/urandom > big; echo written; sleep 60",
    )
    .await;
    assert_stopped_over(&run, &events, "checkout_disk", "8 MiB");
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .starts_with("the run's checkout and HOME took"),
        "{run:?}"
    );
    assert!(
        !h.data.path().join("runs").join(run.id.to_string()).exists(),
        "the checkout is removed when the run ends"
    );
}

#[tokio::test]
async fn an_agent_filling_tmp_past_the_limit_is_stopped() {
    let limits = RunLimits {
        tmp_disk: Some(8 << 20),
        ..RunLimits::default()
    };
    let (_h, run, events) = run_agent(
        limits,
        "head -c 40000000 /dev/urandom > /tmp/big; echo written; sleep 60",
    )
    .await;
    assert_stopped_over(&run, &events, "tmp_disk", "8 MiB");
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .starts_with("the /tmp of the run's processes took"),
        "{run:?}"
    );
}
