//! The one event model every agent driver normalises into. The UI renders only these.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::run::string_enum;

string_enum!(
    /// What a tool call does to the workspace, so the UI can group and collapse them.
    ToolKind, "tool kind" {
        Read => "read",
        Edit => "edit",
        Execute => "execute",
        Search => "search",
        Other => "other",
    }
);

string_enum!(
    /// Which stream of a process a line came from.
    OutputStream, "stream" {
        Stdout => "stdout",
        Stderr => "stderr",
    }
);

/// Tokens, cost and turns an agent has used. Drivers report running totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: f64,
    pub turns: u64,
}

impl Usage {
    pub fn total_tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// Adds another session's totals, e.g. a later verification round.
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cost_usd += other.cost_usd;
        self.turns += other.turns;
    }
}

/// Something an agent did or said, normalised across drivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The agent session started; `session_id` is what resume needs.
    Started {
        session_id: Option<String>,
        model: Option<String>,
    },
    Message {
        text: String,
    },
    Thinking {
        text: String,
    },
    ToolCall {
        id: String,
        name: String,
        kind: ToolKind,
        input: serde_json::Value,
    },
    ToolResult {
        id: String,
        output: String,
        is_error: bool,
    },
    FileDiff {
        path: String,
        diff: String,
    },
    /// Running totals for the session so far.
    Usage {
        usage: Usage,
    },
    /// A line of a process's raw output that is not part of a structured stream.
    Output {
        stream: OutputStream,
        line: String,
    },
    Final {
        summary: Option<String>,
        is_error: bool,
    },
    Error {
        message: String,
    },
}
