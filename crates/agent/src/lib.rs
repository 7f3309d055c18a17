//! Agent drivers. Every agent — a plain command, Claude Code, Codex, any Agent Client Protocol
//! agent — runs behind [`AgentDriver`] and reports what it does as [`AgentEvent`]s.

mod acp;
mod budget;
mod claude;
mod codex;
mod command;
mod config;
mod frame;
mod permission;
mod raw;
mod stream;

pub use acp::AcpDriver;
pub use budget::{BudgetLimits, run_with_budget};
pub use claude::ClaudeCodeDriver;
pub use codex::CodexDriver;
pub use command::CommandDriver;
pub use config::{AgentConfig, AgentDefaults, driver_for};
pub use frame::{
    base_failures_prompt, compose_prompt, compose_prompt_reading, feedback_prompt, guard_prompt,
    judge_prompt, takeover_prompt,
};
pub use permission::PermissionPolicy;

use std::path::PathBuf;

use async_trait::async_trait;
use nightshift_core::{AgentEvent, AgentKind, AgentSpec, Usage};
use nightshift_sandbox::Exit;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent {kind} is not configured: {reason}")]
    NotConfigured { kind: AgentKind, reason: String },
    #[error(transparent)]
    Sandbox(#[from] nightshift_sandbox::SandboxError),
    #[error("agent I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("agent command {command:?} was not found: {hint}")]
    MissingBinary { command: String, hint: String },
    #[error("cannot keep the agent's raw output in {path}: {source}")]
    RawLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("agent protocol failed: {0}")]
    Protocol(String),
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;

/// Everything a driver needs for one agent session.
#[derive(Debug, Clone)]
pub struct AgentRequest {
    pub spec: AgentSpec,
    /// The checkout the agent works in; its current directory.
    pub workspace: PathBuf,
    /// The agent's own HOME, inside the run's directory (sessions, caches, config).
    pub home: PathBuf,
    pub prompt: String,
    /// Continue this session instead of starting a new one (verification rounds, resume).
    pub resume_session: Option<String>,
    /// Variables the agent needs (model endpoint and key). Nothing else reaches it.
    pub env: Vec<(String, String)>,
    /// Where the agent's raw output is appended as JSONL; `None` keeps it nowhere.
    pub raw_log: Option<PathBuf>,
    /// Stop after this many model turns, for agents that can enforce it themselves.
    pub max_turns: Option<u64>,
    /// Model Context Protocol servers the agent starts (stdio) and may call: Nightshift's
    /// `verify` tool.
    pub mcp_servers: Vec<McpServer>,
}

/// A Model Context Protocol server the agent starts over stdio, inside its own sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpServer {
    /// The name the agent knows it by; Claude Code calls its tools `mcp__<name>__<tool>`.
    pub name: String,
    /// An absolute path: the agent's own PATH may not have it.
    pub command: String,
    pub args: Vec<String>,
}

impl AgentRequest {
    /// A request for a new session with no extra environment, raw log or turn limit.
    pub fn new(
        spec: AgentSpec,
        workspace: impl Into<PathBuf>,
        home: impl Into<PathBuf>,
        prompt: impl Into<String>,
    ) -> Self {
        AgentRequest {
            spec,
            workspace: workspace.into(),
            home: home.into(),
            prompt: prompt.into(),
            resume_session: None,
            env: Vec::new(),
            raw_log: None,
            max_turns: None,
            mcp_servers: Vec::new(),
        }
    }
}

/// Why an agent session ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEnd {
    /// The agent exited by itself; `success` says whether it considered its work done.
    Finished { success: bool, exit: Exit },
    /// Stopped from outside (cancel, timeout).
    Stopped,
    /// Stopped because usage crossed a limit; the text names the limit.
    BudgetExceeded(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentOutcome {
    pub end: AgentEnd,
    pub session_id: Option<String>,
    pub summary: Option<String>,
    pub usage: Usage,
    /// Why the agent failed, in its own words, when it did.
    pub error: Option<String>,
}

impl AgentOutcome {
    /// A session stopped from outside (cancel, timeout, budget): no summary, no error of its own.
    pub fn stopped(session_id: Option<String>, usage: Usage) -> Self {
        AgentOutcome {
            end: AgentEnd::Stopped,
            session_id,
            summary: None,
            usage,
            error: None,
        }
    }

    pub fn succeeded(&self) -> bool {
        matches!(self.end, AgentEnd::Finished { success: true, .. })
    }
}

/// A way to run an agent. Capabilities are methods so the engine can ask before relying on them.
#[async_trait]
pub trait AgentDriver: Send + Sync {
    fn kind(&self) -> AgentKind;

    /// Whether `resume_session` continues a previous session with its context.
    fn supports_resume(&self) -> bool {
        false
    }

    /// Whether a resumed session reports token totals that include the earlier sessions of
    /// the same thread (Codex does) instead of its own, so the caller must not add them twice.
    fn resumed_tokens_are_cumulative(&self) -> bool {
        false
    }

    /// Runs one session to its end, sending events as they happen. When `stop` fires the driver
    /// kills the agent's whole process group and returns [`AgentEnd::Stopped`].
    async fn run(
        &self,
        request: AgentRequest,
        events: mpsc::Sender<AgentEvent>,
        stop: CancellationToken,
    ) -> Result<AgentOutcome>;
}
