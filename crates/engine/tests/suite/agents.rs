//! The real agent CLIs (Claude Code, Codex, claude-agent-acp) driven by the engine against the
//! scripted model server: tasks go in through the store, branches come out of real git.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nightshift_agent::{AgentConfig, AgentDefaults};
use nightshift_core::{
    AgentKind, AgentSpec, Budget, EndReason, EventKind, GeneratedChange, Phase, Run, RunEvent,
    RunStatus,
};
use nightshift_engine::EngineConfig;
use nightshift_sandbox::group_alive;
use nightshift_test_support::git::RemoteRepo;
use nightshift_test_support::model_server::{ModelServer, Turn};
use nightshift_test_support::test_tool;
use serde_json::{Value, json};

use super::harness::Harness;

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

    pub(super) fn raw_lines(&self, run: &Run) -> Vec<Value> {
        std::fs::read_to_string(self.raw_log(run))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Every agent process group the run started is gone.
    pub(super) fn assert_no_agent_left(&self, run: &Run) {
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

pub(super) fn finals(events: &[RunEvent]) -> Vec<Value> {
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
