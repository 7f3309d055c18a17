//! The real agent CLIs (Claude Code, Codex, claude-agent-acp) driven by the engine against the
//! scripted model server: tasks go in through the store, branches come out of real git.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nightshift_agent::{AgentConfig, AgentDefaults};
use nightshift_core::{
    AgentKind, AgentSpec, Budget, EndReason, EventKind, GeneratedChange, Phase, Run, RunEvent,
    RunStatus,
};
use nightshift_engine::{EngineConfig, LocalRepos};
use nightshift_sandbox::group_alive;
use nightshift_test_support::git::{RemoteRepo, repos_root};
use nightshift_test_support::model_server::{ModelServer, Turn};
use nightshift_test_support::test_tool;
use serde_json::{Value, json};

use super::harness::{Harness, intake, processes_with, request, tester};

pub(crate) const MODEL: &str = "claude-sonnet-4-5";
const CHECKS: &str = "[checks]\ntest = [\"sh test.sh\"]\n";
pub(super) const FAILURE: &str = "assertion failed: greeting does not say goodbye";

/// A repository whose only check is a test that wants the greeting to say goodbye.
pub(super) fn greeting_repo() -> RemoteRepo {
    RemoteRepo::with_files(&[
        (".nightshift.toml", CHECKS),
        ("greeting.txt", "hello world\n"),
        (
            "test.sh",
            &format!("grep -q goodbye greeting.txt || {{ echo '{FAILURE}'; exit 1; }}\n"),
        ),
    ])
}

/// An engine with one worker whose agents talk to a scripted model server.
pub(super) struct Rig {
    pub(super) h: Harness,
    pub(super) server: ModelServer,
    pub(super) remote: RemoteRepo,
    started: Instant,
}

impl Rig {
    /// `script` gets the workspace of the engine's first run: tool calls carry absolute paths,
    /// and a fresh store numbers its first run 1. Warm, every run sees its checkout at the
    /// same path.
    pub(super) async fn start(
        script: impl FnOnce(&Path) -> Vec<Turn>,
        configure: impl FnOnce(&mut EngineConfig),
    ) -> Rig {
        let started = Instant::now();
        let data = tempfile::tempdir().unwrap();
        let workspace = data.path().join("bases/workspace");
        let server = ModelServer::start(script(&workspace)).await.unwrap();
        let agents = agent_config(&server);
        let h = Harness::start_with(data, 1, |config| {
            config.agents = agents;
            configure(config);
        })
        .await;
        Rig {
            h,
            server,
            remote: greeting_repo(),
            started,
        }
    }

    pub(super) async fn run_task(
        &self,
        instructions: &str,
        kind: AgentKind,
        budget: Budget,
    ) -> Run {
        let agent = AgentSpec {
            kind,
            command: None,
            model: (kind == AgentKind::ClaudeCode).then(|| MODEL.to_string()),
            args: vec![],
        };
        let task = self
            .h
            .create_with(
                &self.remote.url(),
                instructions,
                agent,
                budget,
                Duration::from_secs(300),
            )
            .await;
        // Polled here rather than with `wait_end` to watch the progress the UI would show.
        let mut seen: Vec<u8> = Vec::new();
        let run = loop {
            let run = self.h.latest(task).await;
            if seen.last() != Some(&run.progress) {
                seen.push(run.progress);
            }
            if run.status.is_terminal() {
                break run;
            }
            assert!(self.started.elapsed() < Duration::from_secs(120), "{run:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "progress went backwards: {seen:?}"
        );
        assert_eq!(run.id, 1, "the script was written for run 1's workspace");
        eprintln!(
            "{instructions:?} ended {:?} after {:.1?}",
            run.end_reason,
            self.started.elapsed()
        );
        run
    }

    pub(super) async fn change(&self, run: &Run) -> GeneratedChange {
        self.h.store.change(run.id).await.unwrap().unwrap()
    }

    /// The run's raw agent output, kept under the data directory after the workspace is gone.
    fn raw_log(&self, run: &Run) -> PathBuf {
        self.h
            .data
            .path()
            .join("logs")
            .join(run.id.to_string())
            .join("agent.jsonl")
    }

    fn raw_lines(&self, run: &Run) -> Vec<Value> {
        std::fs::read_to_string(self.raw_log(run))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every agent process group the run started is gone.
    fn assert_no_agent_left(&self, run: &Run) {
        let pgids: Vec<i32> = self
            .raw_lines(run)
            .iter()
            .filter(|l| l["type"] == "nightshift.process")
            .map(|l| l["pgid"].as_i64().unwrap() as i32)
            .collect();
        assert!(!pgids.is_empty(), "no agent process recorded");
        for pgid in pgids {
            assert!(!group_alive(pgid), "agent process group {pgid} still alive");
        }
    }
}

/// The real CLIs from `scripts/install-test-tools.sh`, pointed at `server`.
pub(crate) fn agent_config(server: &ModelServer) -> AgentConfig {
    AgentConfig {
        claude_code: AgentDefaults {
            command: Some(test_tool("claude").display().to_string()),
            model: Some(MODEL.into()),
            args: vec![],
        },
        codex: AgentDefaults {
            command: Some(test_tool("codex").display().to_string()),
            ..Default::default()
        },
        acp: AgentDefaults {
            command: Some(test_tool("claude-agent-acp").display().to_string()),
            ..Default::default()
        },
        anthropic_base_url: Some(server.url()),
        anthropic_api_key: Some("test-key".into()),
        openai_base_url: Some(format!("{}/v1", server.url())),
        openai_api_key: Some("test-key".into()),
        // The scripted server answers at once; the CLIs' backoff would only slow failures down.
        max_retries: 0,
        after_final_grace_ms: 2000,
        ..AgentConfig::default()
    }
}

pub(crate) fn at(workspace: &Path, name: &str) -> String {
    workspace.join(name).display().to_string()
}

/// The normalised agent events the run stored, as JSON.
pub(super) fn agent_events(events: &[RunEvent]) -> Vec<Value> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Agent)
        .map(|e| e.data.clone())
        .collect()
}

fn tool_calls(events: &[RunEvent]) -> Vec<String> {
    agent_events(events)
        .iter()
        .filter(|d| d["type"] == "tool_call")
        .map(|d| d["name"].as_str().unwrap().to_string())
        .collect()
}

fn finals(events: &[RunEvent]) -> Vec<Value> {
    agent_events(events)
        .into_iter()
        .filter(|d| d["type"] == "final")
        .collect()
}

pub(crate) fn read_then_edit(workspace: &Path, old: &str, new: &str) -> Vec<Turn> {
    let file = at(workspace, "greeting.txt");
    vec![
        Turn::tool("Read", json!({"file_path": file})),
        Turn::tool(
            "Edit",
            json!({"file_path": file, "old_string": old, "new_string": new}),
        ),
    ]
}

#[tokio::test]
async fn claude_code_edits_pass_the_checks_and_the_branch_is_pushed() {
    const SUMMARY: &str = "Changed greeting.txt to say goodbye and added NOTES.md.";
    let rig = Rig::start(
        |ws| {
            let mut script = read_then_edit(ws, "hello", "goodbye");
            script[0] = script[0].clone().usage(1000, 100);
            script.push(Turn::tool(
                "Write",
                json!({"file_path": at(ws, "NOTES.md"), "content": "Said goodbye.\n"}),
            ));
            script.push(Turn::text(SUMMARY));
            script
        },
        |_| {},
    )
    .await;
    let run = rig
        .run_task("Say goodbye", AgentKind::ClaudeCode, Budget::default())
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.end_reason, Some(EndReason::Succeeded));

    let branch = rig.h.branch_of(run.task_id, "Say goodbye");
    let head = rig.remote.head(&branch).expect("branch pushed");
    assert_eq!(rig.remote.show(&head, "greeting.txt"), "goodbye world\n");
    assert_eq!(rig.remote.show(&head, "NOTES.md"), "Said goodbye.\n");
    let message = rig.remote.message(&head);
    assert!(
        message.starts_with("Say goodbye\n\n") && message.contains(SUMMARY),
        "{message}"
    );

    let change = rig.change(&run).await;
    assert_eq!(change.summary.as_deref(), Some(SUMMARY));
    assert_eq!(change.rounds, 1);
    assert_eq!(change.files_changed, vec!["NOTES.md", "greeting.txt"]);
    assert!(run.checkpoint.agent_session_id.is_some(), "{run:?}");

    let events = rig.h.events(&run).await;
    assert_eq!(tool_calls(&events), vec!["Read", "Edit", "Write"]);
    let data = agent_events(&events);
    assert!(
        data.iter()
            .filter(|d| d["type"] == "tool_result")
            .all(|d| d["is_error"] == false),
        "{data:#?}"
    );
    assert!(
        data.iter()
            .any(|d| d["type"] == "file_diff" && d["diff"].as_str().unwrap().contains("+goodbye")),
        "{data:#?}"
    );
    let finals = finals(&events);
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0]["summary"], SUMMARY);
    assert_eq!(finals[0]["is_error"], false);

    // Claude Code turns the usage the server reported into cost; the engine stores it on the run.
    assert!(run.usage.cost_usd > 0.0, "{:?}", run.usage);
    assert!(run.usage.input_tokens >= 1000, "{:?}", run.usage);
    assert!(run.usage.turns >= 4, "{:?}", run.usage);
    rig.assert_no_agent_left(&run);
}

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

#[tokio::test]
async fn codex_applies_a_patch_through_the_engine() {
    const SUMMARY: &str = "Patched greeting.txt to say goodbye.";
    let rig = Rig::start(
        |_| {
            vec![
                Turn::custom_tool(
                    "apply_patch",
                    "*** Begin Patch\n*** Update File: greeting.txt\n@@\n-hello world\n+goodbye world\n*** End Patch\n",
                )
                .usage(300, 20),
                Turn::text(SUMMARY),
            ]
        },
        |_| {},
    )
    .await;
    let run = rig
        .run_task("Say goodbye", AgentKind::Codex, Budget::default())
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let head = rig
        .remote
        .head(&rig.h.branch_of(run.task_id, "Say goodbye"))
        .unwrap();
    assert_eq!(rig.remote.show(&head, "greeting.txt"), "goodbye world\n");
    assert!(rig.remote.message(&head).contains(SUMMARY));
    assert_eq!(rig.change(&run).await.summary.as_deref(), Some(SUMMARY));
    let events = rig.h.events(&run).await;
    assert!(
        agent_events(&events)
            .iter()
            .any(|d| d["type"] == "tool_call" && d["name"] == "apply_patch" && d["kind"] == "edit"),
        "{:#?}",
        agent_events(&events)
    );
    assert!(run.usage.input_tokens >= 300, "{:?}", run.usage);
    assert!(run.checkpoint.agent_session_id.is_some());
    rig.assert_no_agent_left(&run);
}

#[tokio::test]
async fn an_acp_agent_edits_with_permission_answered_by_policy() {
    const SUMMARY: &str = "Edited greeting.txt through ACP.";
    let rig = Rig::start(
        |ws| {
            let mut script = read_then_edit(ws, "hello", "goodbye");
            script.push(Turn::text(SUMMARY));
            script
        },
        |_| {},
    )
    .await;
    let run = rig
        .run_task("Say goodbye", AgentKind::Acp, Budget::default())
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let head = rig
        .remote
        .head(&rig.h.branch_of(run.task_id, "Say goodbye"))
        .unwrap();
    assert_eq!(rig.remote.show(&head, "greeting.txt"), "goodbye world\n");
    assert_eq!(rig.change(&run).await.summary.as_deref(), Some(SUMMARY));
    let raw = rig.raw_lines(&run);
    assert!(
        raw.iter()
            .any(|l| l["method"] == "session/request_permission"),
        "the agent asked for no permission"
    );
    assert!(
        raw.iter().any(|l| l["type"] == "nightshift.sent"
            && l["message"]["result"]["outcome"]["outcome"] == "selected"),
        "no permission answer in the raw log"
    );
    let events = rig.h.events(&run).await;
    assert!(
        agent_events(&events)
            .iter()
            .any(|d| d["type"] == "tool_call" && d["kind"] == "edit"),
        "{:#?}",
        agent_events(&events)
    );
    rig.assert_no_agent_left(&run);
}

#[tokio::test]
async fn the_agent_never_sees_a_forge_token() {
    const CANARY: &str = "ghp_nightshiftCanary0123456789";
    // SAFETY: set before this test starts any process; other tests only read the environment,
    // and a canary in their environment is harmless (it must not reach their agents either).
    unsafe {
        std::env::set_var("GITHUB_TOKEN", CANARY);
        std::env::set_var("NIGHTSHIFT_FORGE_TOKEN", CANARY);
    }
    let rig = Rig::start(
        |_| {
            vec![
                Turn::tool("Bash", json!({"command": "env"})),
                Turn::text("Listed the environment."),
            ]
        },
        |_| {},
    )
    .await;
    let run = rig
        .run_task(
            "Print the environment",
            AgentKind::ClaudeCode,
            Budget::default(),
        )
        .await;
    assert!(
        run.status.is_terminal() && run.end_reason == Some(EndReason::NoChanges),
        "{run:?}"
    );

    // The tool result the model saw is the agent's environment, without the canary.
    let requests = rig.server.scripted_requests();
    let seen = requests
        .iter()
        .find(|r| r.turn == Some(1))
        .expect("the request carrying the env output")
        .body
        .to_string();
    assert!(
        seen.contains("PATH=") && seen.contains("HOME="),
        "{seen:.3000}"
    );
    for request in rig.server.requests() {
        assert!(
            !request.body.to_string().contains(CANARY),
            "canary sent to the model"
        );
    }
    for event in rig.h.events(&run).await {
        assert!(
            !event.message.contains(CANARY) && !event.data.to_string().contains(CANARY),
            "canary in a stored event: {event:?}"
        );
    }
    let raw = std::fs::read_to_string(rig.raw_log(&run)).unwrap();
    assert!(raw.contains("PATH=") && !raw.contains(CANARY));
}

#[tokio::test]
async fn a_missing_agent_binary_fails_naming_the_command_and_the_install() {
    let rig = Rig::start(
        |_| vec![],
        |config| config.agents.claude_code.command = Some("nightshift-no-such-claude".into()),
    )
    .await;
    let run = rig
        .run_task("Say goodbye", AgentKind::ClaudeCode, Budget::default())
        .await;
    assert_eq!(run.end_reason, Some(EndReason::AgentFailed), "{run:?}");
    assert_eq!(run.failed_phase, Some(Phase::Agent));
    let error = run.error.clone().unwrap();
    assert!(
        error.contains("nightshift-no-such-claude")
            && error.contains("npm install -g @anthropic-ai/claude-code"),
        "{error}"
    );
    assert!(rig.server.requests().is_empty());
}

#[tokio::test]
async fn a_model_server_error_fails_the_run_with_the_cause_and_keeps_the_raw_output() {
    let rig = Rig::start(|_| vec![Turn::failing(500)], |_| {}).await;
    let run = rig
        .run_task("Say goodbye", AgentKind::ClaudeCode, Budget::default())
        .await;
    assert_eq!(run.end_reason, Some(EndReason::AgentFailed), "{run:?}");
    assert_eq!(run.failed_phase, Some(Phase::Agent));
    assert!(run.error.as_deref().unwrap().contains("500"), "{run:?}");
    let events = rig.h.events(&run).await;
    assert!(
        events.iter().any(|e| e.kind == EventKind::Agent
            && e.data["type"] == "error"
            && e.message.contains("500")),
        "{events:#?}"
    );
    // The workspace is gone; the raw output stays for the post-mortem.
    assert!(!rig.h.data.path().join("runs/1").exists());
    let raw = rig.raw_lines(&run);
    assert!(
        raw.iter()
            .any(|l| l["type"] == "result" && l["is_error"] == true),
        "{raw:#?}"
    );
    rig.assert_no_agent_left(&run);
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
            started.elapsed() < Duration::from_secs(30),
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
    assert!(
        asked.elapsed() < Duration::from_secs(5),
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
