//! Verification rounds with the real agent CLIs: a failing check goes back to the same
//! session (Claude Code resumed, `codex exec resume`, ACP `session/load`) until the rounds run out.

use std::path::Path;

use nightshift_core::{AgentKind, Budget, EndReason, Phase, RunStatus};
use nightshift_test_support::model_server::Turn;
use serde_json::Value;

use super::agents::{FAILURE, Rig, agent_events, finals, read_then_edit};

/// Rounds: a first session leaves a failing test, the engine resumes the same session with the
/// failure, and the second session fixes it.
#[tokio::test]
async fn a_failing_check_goes_back_to_the_same_claude_code_session() {
    const FIRST: &str = "Edited the greeting.";
    const SECOND: &str = "Fixed the spelling so the test passes.";
    let rig = Rig::start(
        |ws| {
            let mut script = read_then_edit(ws, "hello", "good bye");
            script.push(Turn::text(FIRST));
            script.extend(read_then_edit(ws, "good bye", "goodbye"));
            script.push(Turn::text(SECOND));
            script
        },
        |config| config.verification_rounds = 2,
    )
    .await;
    let run = rig
        .run_task("Say goodbye", AgentKind::ClaudeCode, Budget::default())
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");

    let change = rig.change(&run).await;
    assert_eq!(change.rounds, 2);
    let tests: Vec<(u32, &str)> = change
        .checks
        .iter()
        .filter(|c| c.stage == "test")
        .map(|c| (c.round, c.outcome.as_str()))
        .collect();
    assert_eq!(tests, vec![(1, "failed"), (2, "passed")]);
    let head = rig
        .remote
        .head(&rig.h.branch_of(run.task_id, "Say goodbye"))
        .unwrap();
    assert_eq!(rig.remote.show(&head, "greeting.txt"), "goodbye world\n");
    // Both sessions' summaries describe the change.
    let summary = change.summary.clone().unwrap();
    assert!(
        summary.contains(FIRST) && summary.contains(SECOND),
        "{summary}"
    );
    assert!(change.commit_message.contains(SECOND), "{change:?}");

    // The second session resumed the first: its first request carries the first session's
    // turns and the failing check's output.
    let requests = rig.server.scripted_requests();
    let resumed = requests
        .iter()
        .find(|r| r.turn == Some(3))
        .expect("a request of the second round");
    let body = resumed.body.to_string();
    assert!(body.contains(FIRST), "first session's turns missing");
    assert!(body.contains(FAILURE), "check output missing: {body:.3000}");
    assert!(body.contains("sh test.sh"), "failing command missing");

    let events = rig.h.events(&run).await;
    let sessions: Vec<Value> = agent_events(&events)
        .into_iter()
        .filter(|d| d["type"] == "started")
        .map(|d| d["session_id"].clone())
        .collect();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    assert_eq!(
        sessions[0], sessions[1],
        "a new session instead of a resume"
    );
    assert_eq!(
        run.checkpoint.agent_session_id.as_deref(),
        sessions[0].as_str()
    );
    let rounds: Vec<(u64, bool)> = events
        .iter()
        .filter(|e| e.data["round_outcome"].is_object())
        .map(|e| {
            let o = &e.data["round_outcome"];
            (o["round"].as_u64().unwrap(), o["passed"].as_bool().unwrap())
        })
        .collect();
    assert_eq!(rounds, vec![(1, false), (2, true)]);
    assert_eq!(finals(&events).len(), 2);

    // Usage adds up both sessions: the run's totals are the sum of the sessions' own totals.
    assert_eq!(run.usage.turns, 6, "{:?}", run.usage);
    let results: Vec<Value> = rig
        .raw_lines(&run)
        .into_iter()
        .filter(|l| l["type"] == "result")
        .collect();
    assert_eq!(results.len(), 2);
    let cost: f64 = results
        .iter()
        .map(|r| r["total_cost_usd"].as_f64().unwrap())
        .sum();
    let input: u64 = results
        .iter()
        .map(|r| r["usage"]["input_tokens"].as_u64().unwrap())
        .sum();
    assert!(
        (run.usage.cost_usd - cost).abs() < 1e-9,
        "{:?} vs {cost}",
        run.usage
    );
    assert_eq!(run.usage.input_tokens, input, "{:?}", run.usage);
    rig.assert_no_agent_left(&run);
}

#[tokio::test]
async fn checks_still_failing_when_the_rounds_run_out_fail_the_run() {
    let rig = Rig::start(
        |ws| {
            let mut script = read_then_edit(ws, "hello", "good bye");
            script.push(Turn::text("Edited the greeting."));
            script
        },
        |config| config.verification_rounds = 0,
    )
    .await;
    let run = rig
        .run_task("Say goodbye", AgentKind::ClaudeCode, Budget::default())
        .await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(run.end_reason, Some(EndReason::ChecksFailed));
    assert_eq!(run.failed_phase, Some(Phase::Validating));
    assert!(
        rig.remote
            .head(&rig.h.branch_of(run.task_id, "Say goodbye"))
            .is_none()
    );
    let change = rig.change(&run).await;
    assert_eq!(change.rounds, 1);
    assert!(change.diff.contains("+good bye world"), "{}", change.diff);
    // One session only: nothing was sent back.
    assert_eq!(rig.server.scripted_requests().len(), 3);
}

/// Codex and the ACP agent go through verification rounds too: the engine resumes their
/// session (`codex exec resume`, ACP `session/load`) with the failing check's output.
async fn second_round_resumes(kind: AgentKind, script: impl FnOnce(&Path) -> Vec<Turn>) -> Rig {
    let rig = Rig::start(script, |config| config.verification_rounds = 1).await;
    let run = rig.run_task("Say goodbye", kind, Budget::default()).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let change = rig.change(&run).await;
    assert_eq!(change.rounds, 2);
    let head = rig
        .remote
        .head(&rig.h.branch_of(run.task_id, "Say goodbye"))
        .unwrap();
    assert_eq!(rig.remote.show(&head, "greeting.txt"), "goodbye world\n");
    let second_round = rig
        .server
        .scripted_requests()
        .into_iter()
        // The first prompt names the check too: it already fails on the base.
        .filter(|r| {
            r.body
                .to_string()
                .contains("The repository's checks failed on your change")
        })
        .collect::<Vec<_>>();
    let first = second_round
        .first()
        .expect("the failure was sent to the agent");
    assert!(
        first.body.to_string().contains("Edited the greeting."),
        "the second round is a new session, not a resume: {:.3000}",
        first.body
    );
    let events = rig.h.events(&run).await;
    let sessions: Vec<Value> = agent_events(&events)
        .into_iter()
        .filter(|d| d["type"] == "started")
        .map(|d| d["session_id"].clone())
        .collect();
    assert!(
        !sessions.is_empty()
            && sessions
                .iter()
                .all(|s| s.as_str() == run.checkpoint.agent_session_id.as_deref()),
        "{sessions:?} vs {:?}",
        run.checkpoint
    );
    rig.assert_no_agent_left(&run);
    rig
}

fn patch(old: &str, new: &str) -> String {
    format!("*** Begin Patch\n*** Update File: greeting.txt\n@@\n-{old}\n+{new}\n*** End Patch\n")
}

#[tokio::test]
async fn codex_resumes_its_thread_for_a_second_round() {
    let rig = second_round_resumes(AgentKind::Codex, |_| {
        vec![
            Turn::custom_tool("apply_patch", patch("hello world", "good bye world")),
            Turn::text("Edited the greeting."),
            Turn::custom_tool("apply_patch", patch("good bye world", "goodbye world")),
            Turn::text("Fixed the spelling."),
        ]
    })
    .await;
    // Codex reports a resumed thread's running totals; the run counts every request once.
    let run = rig.h.latest(1).await;
    let requests = rig.server.scripted_requests().len() as u64;
    assert_eq!(run.usage.input_tokens, 10 * requests, "{:?}", run.usage);
    assert_eq!(run.usage.output_tokens, 5 * requests, "{:?}", run.usage);
    assert_eq!(run.usage.turns, 2, "{:?}", run.usage);
}

#[tokio::test]
async fn an_acp_agent_loads_its_session_for_a_second_round() {
    second_round_resumes(AgentKind::Acp, |ws| {
        let mut script = read_then_edit(ws, "hello", "good bye");
        script.push(Turn::text("Edited the greeting."));
        script.extend(read_then_edit(ws, "good bye", "goodbye"));
        script.push(Turn::text("Fixed the spelling."));
        script
    })
    .await;
}
