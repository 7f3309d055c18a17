//! What stops a real agent: its cost and turn budgets (counted across rounds), a cancel that
//! reaches its whole process group, and a worker's crash mid-session, taken over from the lease.

use std::path::Path;
use std::time::{Duration, Instant};

use nightshift_core::{AgentKind, AgentSpec, Budget, EndReason, Phase, RunStatus};
use nightshift_engine::{EngineConfig, LocalRepos};
use nightshift_test_support::git::repos_root;
use nightshift_test_support::model_server::{ModelServer, Turn};
use serde_json::{Value, json};

use super::agents::{MODEL, Rig, agent_config, agent_events, at, greeting_repo, read_then_edit};
use super::harness::{intake, processes_with, request, tester};

#[tokio::test]
async fn crossing_the_cost_budget_stops_claude_code_at_once() {
    let rig = Rig::start(
        |ws| {
            vec![
                // 2M input tokens at Sonnet prices is about $6: over the task's $1.
                Turn::tool("Bash", json!({"command": "sleep 7.319"})).usage(2_000_000, 10),
                Turn::tool(
                    "Write",
                    json!({"file_path": at(ws, "late.txt"), "content": "too late\n"}),
                ),
                Turn::text("done"),
            ]
        },
        |_| {},
    )
    .await;
    let budget = Budget {
        max_cost_usd: Some(1.0),
        ..Budget::default()
    };
    let run = rig
        .run_task("Spend too much", AgentKind::ClaudeCode, budget)
        .await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(run.end_reason, Some(EndReason::BudgetExceeded));
    assert_eq!(run.failed_phase, Some(Phase::Agent));
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .contains("over the budget of $1.00"),
        "{run:?}"
    );
    assert!(run.usage.cost_usd > 1.0, "{:?}", run.usage);

    let events = agent_events(&rig.h.events(&run).await);
    let crossing = events
        .iter()
        .position(|d| d["type"] == "usage" && d["usage"]["cost_usd"].as_f64().unwrap() > 1.0)
        .expect("a usage event crossing the budget");
    assert!(
        events.len() - crossing - 1 <= 1,
        "agent events after the crossing: {:#?}",
        &events[crossing..]
    );
    assert!(rig.change(&run).await.files_changed.is_empty());
    assert!(
        processes_with("7.319").is_empty(),
        "left behind: {:?}",
        processes_with("7.319")
    );
    rig.assert_no_agent_left(&run);
}

/// The turn budget is enforced by Claude Code itself (`--max-turns`): reaching it is a budget
/// end, not an agent failure.
#[tokio::test]
async fn reaching_the_turn_budget_ends_budget_exceeded() {
    let rig = Rig::start(
        |ws| {
            let mut script = read_then_edit(ws, "hello", "goodbye");
            script.push(Turn::tool(
                "Write",
                json!({"file_path": at(ws, "late.txt"), "content": "too late\n"}),
            ));
            script.push(Turn::text("done"));
            script
        },
        |_| {},
    )
    .await;
    let budget = Budget {
        max_turns: Some(2),
        ..Budget::default()
    };
    let run = rig
        .run_task("Say goodbye", AgentKind::ClaudeCode, budget)
        .await;
    assert_eq!(run.end_reason, Some(EndReason::BudgetExceeded), "{run:?}");
    assert_eq!(run.failed_phase, Some(Phase::Agent));
    assert!(run.error.as_deref().unwrap().contains("turns"), "{run:?}");
    assert!(run.usage.turns <= 3, "{:?}", run.usage);
    assert!(
        !rig.change(&run)
            .await
            .files_changed
            .contains(&"late.txt".to_string())
    );
    rig.assert_no_agent_left(&run);
}

/// A cancel reaches the real agent's whole process group, tool children included.
#[tokio::test]
async fn cancel_stops_claude_code_and_its_tools() {
    let rig = Rig::start(
        |_| {
            vec![
                Turn::tool("Bash", json!({"command": "sleep 60.417"})),
                Turn::text("slept"),
            ]
        },
        |_| {},
    )
    .await;
    let agent = AgentSpec {
        kind: AgentKind::ClaudeCode,
        command: None,
        model: None,
        args: vec![],
    };
    let task = rig
        .h
        .create_with(
            &rig.remote.url(),
            "Sleep",
            agent,
            Budget::default(),
            Duration::from_secs(300),
        )
        .await;
    let started = Instant::now();
    while processes_with("sleep 60.417").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the tool never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rig.h
        .store
        .cancel_task(rig.h.project_id, task)
        .await
        .unwrap();
    let asked = Instant::now();
    let run = rig.h.wait_end(task).await;
    assert_eq!(run.end_reason, Some(EndReason::Cancelled), "{run:?}");
    // Well before the tool's minute is up: the cancel stopped it, not its end (a loaded
    // machine may take seconds to deliver the signals and reap the processes).
    assert!(
        asked.elapsed() < Duration::from_secs(20),
        "{:?}",
        asked.elapsed()
    );
    // Marked ended only once the processes are gone.
    assert!(processes_with("sleep 60.417").is_empty());
    rig.assert_no_agent_left(&run);
    // The session id was checkpointed when the session started, not only when it ended well.
    assert!(run.checkpoint.agent_session_id.is_some(), "{run:?}");
}

/// The cost budget is the run's, across rounds: the second session starts with the first
/// session's spending counted.
#[tokio::test]
async fn the_cost_budget_counts_every_round() {
    let rig = Rig::start(
        |ws| {
            // 180k input tokens at Sonnet prices is about $0.54 (under the 200k long-context
            // tier): one round fits in $1, two do not.
            let mut script = read_then_edit(ws, "hello", "good bye");
            script[0] = script[0].clone().usage(180_000, 10);
            script.push(Turn::text("Edited the greeting."));
            let mut second = read_then_edit(ws, "good bye", "goodbye");
            second[0] = second[0].clone().usage(180_000, 10);
            script.extend(second);
            script.push(Turn::text("Fixed it."));
            script
        },
        |config| config.verification_rounds = 2,
    )
    .await;
    let budget = Budget {
        max_cost_usd: Some(1.0),
        ..Budget::default()
    };
    let run = rig
        .run_task("Say goodbye", AgentKind::ClaudeCode, budget)
        .await;
    assert_eq!(run.end_reason, Some(EndReason::BudgetExceeded), "{run:?}");
    assert_eq!(run.failed_phase, Some(Phase::Agent));
    assert!(run.usage.cost_usd > 1.0, "{:?}", run.usage);
    let change = rig.change(&run).await;
    assert_eq!(
        change.rounds, 1,
        "the second round never reached the checks"
    );
    // Stopped on the second session's first usage: its edit never ran.
    assert!(change.diff.contains("+good bye world"), "{}", change.diff);
    let turns: Vec<Option<usize>> = rig
        .server
        .scripted_requests()
        .iter()
        .map(|r| r.turn)
        .collect();
    assert!(turns.contains(&Some(3)), "no second round: {turns:?}");
    // The crossing shows in turn 3's usage; the request the agent may already have sent by the
    // time it is stopped (turn 4) is never acted upon: its edit did not run (above) and nothing
    // came after it.
    assert!(
        !turns.contains(&Some(5)),
        "the agent went on after the budget was crossed: {turns:?}"
    );
    rig.assert_no_agent_left(&run);
}

/// A worker dies in the middle of a Claude Code session (the agent is running a slow command);
/// another worker takes the run over when the lease expires. `same_machine`: it works in the
/// same data directory (a restarted machine), where the session's state still is; otherwise in
/// its own (another machine), where it is not.
async fn claude_session_taken_over(same_machine: bool) {
    const SUMMARY: &str = "Said goodbye after the interruption.";
    let markers = tempfile::tempdir().unwrap();
    let started = markers.path().join("started");
    let first = tempfile::tempdir().unwrap();
    let second = tempfile::tempdir().unwrap();
    let continuing = if same_machine { &first } else { &second };
    // The server answers by the conversation's length, so a new session starts the script
    // again: the command waits only the first time.
    let mut script = vec![Turn::tool(
        "Bash",
        json!({"command": format!(
            "if [ ! -e {s} ]; then echo started > {s} && sleep 611.5; fi",
            s = started.display()
        ), "description": "Wait a little"}),
    )];
    script.extend(read_then_edit(
        &continuing.path().join("bases/workspace"),
        "hello",
        "goodbye",
    ));
    script.push(Turn::text(SUMMARY));
    let server = ModelServer::start(script).await.unwrap();
    let db = tempfile::tempdir().unwrap();
    let store = nightshift_store::Store::open_sqlite(&db.path().join("nightshift.db"))
        .await
        .unwrap();
    let remote = greeting_repo();
    let start = |data: &Path| {
        let mut config = EngineConfig::new(data);
        config.repositories.local = LocalRepos::Under(vec![repos_root()]);
        config.agents = agent_config(&server);
        config.lease = Duration::from_secs(1);
        config.heartbeat = Duration::from_millis(200);
        config.poll = Duration::from_millis(100);
        // The agent's command leaves a marker outside its checkout, which confinement would
        // hide; taking the session over is the subject here.
        config.confinement.mode = nightshift_engine::SandboxMode::None;
        let engine = nightshift_engine::Engine::new(store.clone(), config);
        let stop = tokio_util::sync::CancellationToken::new();
        let e = engine.clone();
        let handle = tokio::spawn(async move { e.run_workers(1, stop).await });
        (engine, handle)
    };
    let (engine, dying) = start(first.path());
    let project = store.project("default").await.unwrap().unwrap();
    let agent = AgentSpec {
        kind: AgentKind::ClaudeCode,
        command: None,
        model: Some(MODEL.into()),
        args: vec![],
    };
    let request = request(
        &remote.url(),
        "Say goodbye",
        agent,
        Budget::default(),
        Duration::from_secs(300),
    );
    let (task, run) = intake(&engine)
        .create(&project, &tester(), request)
        .await
        .unwrap();
    let waited = Instant::now();
    while !started.exists()
        || store
            .run(run.id)
            .await
            .unwrap()
            .unwrap()
            .checkpoint
            .agent_session_id
            .is_none()
    {
        assert!(
            waited.elapsed() < Duration::from_secs(120),
            "the session never got going"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The worker dies: its agent with it, the command the agent started left behind.
    dying.abort();
    let _ = dying.await;
    for process in processes_with("sleep 611.5") {
        let pid = process.split(':').next().unwrap();
        let _ = std::process::Command::new("kill")
            .args(["-9", pid])
            .status();
    }
    let (_engine, _continuing) = start(continuing.path());
    let waited = Instant::now();
    let run = loop {
        let run = store.run(run.id).await.unwrap().unwrap();
        if run.status.is_terminal() {
            break run;
        }
        assert!(waited.elapsed() < Duration::from_secs(120), "{run:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let head = remote.head(&task.branch_name()).unwrap();
    assert_eq!(remote.show(&head, "greeting.txt"), "goodbye world\n");

    let events = store.events(run.id, 0, 10_000).await.unwrap();
    let session = events
        .iter()
        .find_map(|e| e.data.get("continued_session"))
        .unwrap_or_else(|| panic!("no attempt to continue the session: {events:#?}"));
    let sessions: Vec<Value> = agent_events(&events)
        .into_iter()
        .filter(|d| d["type"] == "started")
        .map(|d| d["session_id"].clone())
        .collect();
    let refused = events
        .iter()
        .any(|e| e.message.contains("cannot be continued on this worker"));
    // The requests that told the agent about the interruption: only a continued session's.
    let resumed: Vec<String> = server
        .scripted_requests()
        .iter()
        .filter(|r| r.body.to_string().contains("Your session was interrupted"))
        .map(|r| r.body["messages"].to_string())
        .collect();
    if same_machine {
        assert!(!refused, "{events:#?}");
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        assert!(
            sessions.iter().all(|s| s == session),
            "one session throughout: {sessions:?}"
        );
        // The continued conversation: the task as the first session got it, then the note.
        let first = resumed
            .first()
            .expect("the session was told about the interruption");
        let task_at = first.find("The task:").expect("the first session's prompt");
        assert!(task_at < first.find("Your session was interrupted").unwrap());
    } else {
        assert!(refused, "{events:#?}");
        assert!(resumed.is_empty(), "nothing was continued");
        assert_eq!(sessions.len(), 3, "{sessions:?}");
        assert_ne!(&sessions[2], session, "a new session: {sessions:?}");
    }
    let change = store.change(run.id).await.unwrap().unwrap();
    assert_eq!(change.summary.as_deref(), Some(SUMMARY));
}

#[tokio::test]
async fn a_claude_code_session_cut_off_by_a_crash_continues_on_the_restarted_machine() {
    claude_session_taken_over(true).await;
}

#[tokio::test]
async fn a_claude_code_session_cut_off_by_a_crash_starts_again_on_another_machine() {
    claude_session_taken_over(false).await;
}
