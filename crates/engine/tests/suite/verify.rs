//! The `verify` tool through the engine: the real agent CLIs start Nightshift's MCP server in
//! their sandbox and offer its tool to the model. With Claude Code, a change that fails the lint
//! is verified, fixed and verified again, and the run's own validation passes in round 1.

use std::path::Path;
use std::time::Duration;

use nightshift_core::{AgentKind, AgentSpec, Budget, EndReason, Run, RunStatus};
use nightshift_test_support::git::RemoteRepo;
use nightshift_test_support::model_server::{ModelServer, RecordedRequest, Turn};
use serde_json::{Value, json};

use super::agents::{MODEL, agent_config, at};
use super::harness::Harness;

const CHECKS: &str = "[checks]\nlint = [\"sh lint.sh\"]\ntest = [\"sh test.sh\"]\n";
const LINT: &str = "if grep -n 'print(' greeting.py; then\n  echo 'lint: print() left in greeting.py'\n  exit 1\nfi\n";
const TEST: &str =
    "python3 -c 'from greeting import greet; assert greet() == \"hello\", greet()'\n";
const MISSPELT: &str = "def greet():\n    return \"helo\"\n";
const FIXED: &str = "def greet():\n    return \"hello\"\n";
/// Claude Code's name for the tool of the MCP server named `nightshift`.
const CLAUDE_TOOL: &str = "mcp__nightshift__verify";

fn repo() -> RemoteRepo {
    RemoteRepo::with_files(&[
        (".nightshift.toml", CHECKS),
        ("lint.sh", LINT),
        ("test.sh", TEST),
        ("greeting.py", MISSPELT),
    ])
}

/// The tool's server built with these tests (the CLI serves it itself).
fn verify_program() -> Vec<String> {
    vec![env!("CARGO_BIN_EXE_nightshift-engine-verify").to_string()]
}

struct VerifyRig {
    h: Harness,
    server: ModelServer,
    remote: RemoteRepo,
}

impl VerifyRig {
    async fn start(script: impl FnOnce(&Path) -> Vec<Turn>) -> VerifyRig {
        let data = tempfile::tempdir().unwrap();
        let server = ModelServer::start(script(&data.path().join("bases/workspace")))
            .await
            .unwrap();
        let agents = agent_config(&server);
        let h = Harness::start_with(data, 1, |config| {
            config.agents = agents;
            config.verify_tool = Some(verify_program());
        })
        .await;
        VerifyRig {
            h,
            server,
            remote: repo(),
        }
    }

    async fn run(&self, kind: AgentKind) -> Run {
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
                "Fix the greeting",
                agent,
                Budget::default(),
                Duration::from_secs(300),
            )
            .await;
        let run = self.h.wait_end(task).await;
        assert_eq!(run.id, 1, "the script was written for run 1's workspace");
        run
    }

    /// The `verify` events of the run: (call, passed, failed checks).
    async fn verify_events(&self, run: &Run) -> Vec<(u64, bool, Vec<String>)> {
        self.h
            .events(run)
            .await
            .iter()
            .filter_map(|e| e.data.get("verify"))
            .map(|v| {
                let failed = v["failed"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string())
                    .collect();
                (v["call"].as_u64().unwrap(), v["passed"] == true, failed)
            })
            .collect()
    }

    /// The request answering script step `turn`: what the model was sent before it.
    fn request(&self, turn: usize) -> RecordedRequest {
        self.server
            .scripted_requests()
            .into_iter()
            .find(|r| r.turn == Some(turn))
            .unwrap_or_else(|| panic!("no request for step {turn}"))
    }
}

/// The names of the tools a request offers the model, whatever the provider's shape.
fn tool_names(request: &RecordedRequest) -> Vec<String> {
    request.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| {
            t.get("name")
                .or_else(|| t.get("function").and_then(|f| f.get("name")))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test]
async fn claude_code_verifies_fixes_the_lint_and_the_run_passes_in_round_one() {
    const SUMMARY: &str = "Fixed the greeting; verify passes.";
    let rig = VerifyRig::start(|ws| {
        let greeting = at(ws, "greeting.py");
        vec![
            Turn::tool("Read", json!({"file_path": greeting})),
            Turn::tool(
                "Edit",
                json!({"file_path": greeting, "old_string": "    return \"helo\"", "new_string": "    print(\"greeting\")\n    return \"hello\""}),
            ),
            Turn::tool(CLAUDE_TOOL, json!({})),
            Turn::tool(
                "Edit",
                json!({"file_path": greeting, "old_string": "    print(\"greeting\")\n", "new_string": ""}),
            ),
            Turn::tool(CLAUDE_TOOL, json!({})),
            Turn::text(SUMMARY),
        ]
    })
    .await;
    let run = rig.run(AgentKind::ClaudeCode).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let head = rig
        .remote
        .head(&rig.h.branch_of(run.task_id, "Fix the greeting"))
        .expect("branch pushed");
    assert_eq!(rig.remote.show(&head, "greeting.py"), FIXED);

    // The model was offered the tool, and saw what each call answered.
    assert!(
        tool_names(&rig.request(0)).contains(&CLAUDE_TOOL.to_string()),
        "{:?}",
        tool_names(&rig.request(0))
    );
    let first = rig.request(3).body.to_string();
    assert!(
        first.contains("1 of 2 checks failed")
            && first.contains("lint `sh lint.sh` (exit 1)")
            && first.contains("lint: print() left in greeting.py"),
        "{first:.4000}"
    );
    let second = rig.request(5).body.to_string();
    assert!(second.contains("All 2 checks passed"), "{second:.4000}");

    // Each call is a run event; the run's own validation then passes in its first round.
    assert_eq!(
        rig.verify_events(&run).await,
        vec![
            (1, false, vec!["lint `sh lint.sh`".to_string()]),
            (2, true, vec![])
        ]
    );
    let change = rig.h.store.change(run.id).await.unwrap().unwrap();
    assert_eq!(change.rounds, 1);
    assert!(
        change.checks.iter().all(|c| c.round == 1),
        "{:?}",
        change.checks
    );
    // The tool's record stays outside the checkout: it is not part of the change.
    assert!(!change.diff.contains("verify.jsonl"), "{}", change.diff);
}

/// Codex and the ACP agent start the same server in their sandbox and offer its tool to their
/// model: Claude behind ACP lists it with its tools; Codex lists the server's tools as a
/// namespace the model loads when it wants them, described by what the server says it is.
#[tokio::test]
async fn codex_and_acp_agents_are_offered_verify() {
    for kind in [AgentKind::Codex, AgentKind::Acp] {
        let rig = VerifyRig::start(|_| vec![Turn::text("Nothing to do.")]).await;
        let run = rig.run(kind).await;
        assert_eq!(
            run.end_reason,
            Some(EndReason::NoChanges),
            "{kind:?}: {run:?}"
        );
        let first = rig.request(0);
        let names = tool_names(&first);
        let offered = match kind {
            AgentKind::Codex => {
                let body = first.body.to_string();
                body.contains("mcp__nightshift")
                    && body.contains("`verify` runs the repository's own checks")
            }
            _ => names.contains(&CLAUDE_TOOL.to_string()),
        };
        assert!(offered, "{kind:?} offered no verify tool: {names:?}");
    }
}
