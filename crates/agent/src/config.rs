//! Server-side agent defaults and how the engine builds a driver for a task's agent choice.

use std::time::Duration;

use nightshift_core::{AgentKind, AgentSpec};
use nightshift_sandbox::Sandbox;
use serde::{Deserialize, Serialize};

use crate::{
    AcpDriver, AgentDriver, ClaudeCodeDriver, CodexDriver, CommandDriver, PermissionPolicy, Result,
};

/// Defaults for one agent kind, from the server's configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentDefaults {
    /// The program (absolute path or a name on PATH); for `acp`, the agent's whole command line.
    pub command: Option<String>,
    /// The model used when the task names none.
    pub model: Option<String>,
    /// Extra arguments put before the task's own.
    pub args: Vec<String>,
}

/// How the server runs agents. Model endpoints and keys from the server environment
/// (`ANTHROPIC_BASE_URL`, `ANTHROPIC_API_KEY`, `OPENAI_BASE_URL`, `OPENAI_API_KEY`) win over the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AgentConfig {
    pub claude_code: AgentDefaults,
    pub codex: AgentDefaults,
    pub acp: AgentDefaults,
    pub anthropic_base_url: Option<String>,
    pub anthropic_api_key: Option<String>,
    pub openai_base_url: Option<String>,
    pub openai_api_key: Option<String>,
    /// Retries the agent itself makes on model API errors; Nightshift retries whole runs.
    pub max_retries: u32,
    /// How long an agent may linger after its final message before its process group is killed.
    pub after_final_grace_ms: u64,
    /// Whether ACP agents may run commands when they ask; edits inside the workspace are always allowed.
    pub acp_allow_execute: bool,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            claude_code: AgentDefaults::default(),
            codex: AgentDefaults::default(),
            acp: AgentDefaults {
                command: Some("claude-agent-acp".into()),
                ..AgentDefaults::default()
            },
            anthropic_base_url: None,
            anthropic_api_key: None,
            openai_base_url: None,
            openai_api_key: None,
            max_retries: 2,
            after_final_grace_ms: 3000,
            acp_allow_execute: true,
        }
    }
}

impl AgentConfig {
    /// Applies the model endpoint and key variables of the server's own environment.
    pub fn with_server_env(self) -> Self {
        self.with_env(|key| std::env::var(key).ok().filter(|v| !v.is_empty()))
    }

    /// Like [`AgentConfig::with_server_env`] with a given lookup, so it can be tested without
    /// touching the process environment.
    pub fn with_env(mut self, lookup: impl Fn(&str) -> Option<String>) -> Self {
        let slots = [
            ("ANTHROPIC_BASE_URL", &mut self.anthropic_base_url),
            ("ANTHROPIC_API_KEY", &mut self.anthropic_api_key),
            ("OPENAI_BASE_URL", &mut self.openai_base_url),
            ("OPENAI_API_KEY", &mut self.openai_api_key),
        ];
        for (key, slot) in slots {
            if let Some(value) = lookup(key) {
                *slot = Some(value);
            }
        }
        self
    }

    pub fn after_final_grace(&self) -> Duration {
        Duration::from_millis(self.after_final_grace_ms)
    }

    /// The model endpoint and key an agent of `kind` needs, and nothing else: the environment
    /// is built from scratch, so no server secret (a forge token above all) can reach the agent.
    /// The driver adds HOME (the run's own) and the agent's fixed switches.
    pub fn agent_env(&self, kind: AgentKind) -> Vec<(String, String)> {
        let anthropic = [
            ("ANTHROPIC_BASE_URL", &self.anthropic_base_url),
            ("ANTHROPIC_API_KEY", &self.anthropic_api_key),
        ];
        let openai = [
            ("OPENAI_BASE_URL", &self.openai_base_url),
            ("OPENAI_API_KEY", &self.openai_api_key),
        ];
        let pairs: Vec<(&str, &Option<String>)> = match kind {
            AgentKind::ClaudeCode => anthropic.to_vec(),
            AgentKind::Codex => openai.to_vec(),
            // An ACP agent may be backed by either provider.
            AgentKind::Acp => anthropic.into_iter().chain(openai).collect(),
            AgentKind::Command => Vec::new(),
        };
        pairs
            .into_iter()
            .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v)))
            .collect()
    }
}

/// The driver for a task's agent choice, with the server's defaults applied.
pub fn driver_for(
    spec: &AgentSpec,
    config: &AgentConfig,
    sandbox: Sandbox,
) -> Result<Box<dyn AgentDriver>> {
    let config = config.clone();
    Ok(match spec.kind {
        AgentKind::Command => Box::new(CommandDriver::new(sandbox)),
        AgentKind::ClaudeCode => Box::new(ClaudeCodeDriver::new(sandbox, config)),
        AgentKind::Codex => Box::new(CodexDriver::new(sandbox, config)),
        AgentKind::Acp => {
            let policy = PermissionPolicy {
                allow_execute: config.acp_allow_execute,
            };
            Box::new(AcpDriver::new(sandbox, config, policy))
        }
    })
}
