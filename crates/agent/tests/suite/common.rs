//! Helpers shared by the agent tests: a workspace, a per-run home, the scripted server and a
//! config pointing the real CLIs at it.

use std::path::{Path, PathBuf};

use nightshift_agent::{AgentConfig, AgentDefaults, AgentDriver, AgentOutcome, AgentRequest};
use nightshift_core::{AgentEvent, AgentKind, AgentSpec};
use nightshift_test_support::model_server::{ModelServer, Turn};
use nightshift_test_support::test_tool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub const MODEL: &str = "claude-sonnet-4-5";

pub struct Harness {
    pub server: ModelServer,
    /// Holds the temporary directory for the test's lifetime.
    pub _dir: tempfile::TempDir,
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub raw_log: PathBuf,
}

impl Harness {
    /// A fresh workspace and home, and a server replaying the script `script(workspace)` builds
    /// (tool calls need absolute paths inside the workspace).
    pub async fn start(script: impl FnOnce(&Path) -> Vec<Turn>) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let workspace = dir.path().join("workspace");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&workspace).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        let server = ModelServer::start(script(&workspace)).await.unwrap();
        let raw_log = dir.path().join("raw/agent.jsonl");
        Harness {
            server,
            _dir: dir,
            workspace,
            home,
            raw_log,
        }
    }

    pub fn path(&self, name: &str) -> String {
        self.workspace.join(name).display().to_string()
    }

    pub fn config(&self) -> AgentConfig {
        let claude = test_tool("claude").display().to_string();
        AgentConfig {
            claude_code: AgentDefaults {
                command: Some(claude),
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
            anthropic_base_url: Some(self.server.url()),
            anthropic_api_key: Some("test-key".into()),
            openai_base_url: Some(format!("{}/v1", self.server.url())),
            openai_api_key: Some("test-key".into()),
            max_retries: 0,
            after_final_grace_ms: 2000,
            ..AgentConfig::default()
        }
    }

    pub fn request(&self, kind: AgentKind, prompt: &str) -> AgentRequest {
        let spec = AgentSpec {
            kind,
            command: None,
            model: None,
            args: vec![],
        };
        let mut request = AgentRequest::new(spec, &self.workspace, &self.home, prompt);
        request.env = self.config().agent_env(kind);
        request.raw_log = Some(self.raw_log.clone());
        request
    }

    /// The raw log's lines, each parsed: the file must stay valid JSONL whatever the agent wrote.
    pub fn raw_lines(&self) -> Vec<serde_json::Value> {
        raw_lines(&self.raw_log)
    }

    /// Process groups the drivers started, from the raw log.
    pub fn pgids(&self) -> Vec<i32> {
        self.raw_lines()
            .iter()
            .filter(|l| l["type"] == "nightshift.process")
            .map(|l| l["pgid"].as_i64().unwrap() as i32)
            .collect()
    }
}

/// `name` inside `workspace`, as the absolute path string a tool call carries.
pub fn at(workspace: &Path, name: &str) -> String {
    workspace.join(name).display().to_string()
}

pub fn raw_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("raw log line is not JSON ({e}): {l:.200}"))
        })
        .collect()
}

/// Runs a driver to its end and collects every event.
pub async fn run(
    driver: &dyn AgentDriver,
    request: AgentRequest,
) -> (AgentOutcome, Vec<AgentEvent>) {
    let (tx, mut rx) = mpsc::channel(1024);
    let collect = tokio::spawn(async move {
        let mut events = vec![];
        while let Some(e) = rx.recv().await {
            events.push(e);
        }
        events
    });
    let outcome = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        driver.run(request, tx, CancellationToken::new()),
    )
    .await
    .expect("agent did not finish within 120 s")
    .unwrap();
    (outcome, collect.await.unwrap())
}

pub fn tool_results(events: &[AgentEvent]) -> Vec<(String, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolResult {
                output, is_error, ..
            } => Some((output.clone(), *is_error)),
            _ => None,
        })
        .collect()
}
