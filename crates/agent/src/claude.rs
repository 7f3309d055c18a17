//! The `claude-code` driver: Claude Code in print mode with `stream-json` output, normalised
//! into events. Success comes from the `result` event's `is_error`, never from its `subtype`.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use nightshift_core::{AgentEvent, AgentKind, ToolKind, Usage};
use nightshift_sandbox::{ProcessSpec, Sandbox};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::AgentConfig;
use crate::raw::RawLog;
use crate::stream::{LineParser, StreamEnd, StreamOptions, cut, run_json_lines};
use crate::{AgentDriver, AgentEnd, AgentOutcome, AgentRequest, McpServer, Result};

pub(crate) const CLAUDE_INSTALL_HINT: &str = "install Claude Code (`npm install -g @anthropic-ai/claude-code`) or set the claude-code command to its absolute path";

pub struct ClaudeCodeDriver {
    sandbox: Sandbox,
    config: AgentConfig,
}

impl ClaudeCodeDriver {
    pub fn new(sandbox: Sandbox, config: AgentConfig) -> Self {
        ClaudeCodeDriver { sandbox, config }
    }

    fn process_spec(&self, request: &AgentRequest) -> ProcessSpec {
        let defaults = &self.config.claude_code;
        let program = defaults.command.clone().unwrap_or_else(|| "claude".into());
        let mut spec = ProcessSpec::new(program, &request.workspace).args([
            "-p",
            &request.prompt,
            "--output-format",
            "stream-json",
            "--verbose",
            "--dangerously-skip-permissions",
        ]);
        if let Some(model) = request.spec.model.as_ref().or(defaults.model.as_ref()) {
            spec = spec.args(["--model", model]);
        }
        if let Some(turns) = request.max_turns {
            spec = spec.args(["--max-turns".to_string(), turns.to_string()]);
        }
        if let Some(session) = &request.resume_session {
            spec = spec.args(["--resume", session]);
        }
        if !request.mcp_servers.is_empty() {
            // Only Nightshift's servers: none from the repository's `.mcp.json` or the user's.
            spec = spec.args([
                "--mcp-config".to_string(),
                mcp_config(&request.mcp_servers),
                "--strict-mcp-config".to_string(),
            ]);
        }
        spec = spec.args(defaults.args.iter().chain(&request.spec.args).cloned());
        for (key, value) in claude_env(&self.config, request) {
            spec = spec.env(key, value);
        }
        spec
    }
}

/// Claude Code's `--mcp-config` for `servers`, as JSON text.
fn mcp_config(servers: &[McpServer]) -> String {
    let servers: serde_json::Map<String, Value> = servers
        .iter()
        .map(|s| {
            let server = json!({"type": "stdio", "command": s.command, "args": s.args});
            (s.name.clone(), server)
        })
        .collect();
    json!({ "mcpServers": servers }).to_string()
}

/// The environment Claude Code (and the ACP wrapper around it) runs with, on top of the
/// request's endpoint and key: no outside traffic, our retry policy, its own HOME.
pub(crate) fn claude_env(config: &AgentConfig, request: &AgentRequest) -> Vec<(String, String)> {
    let mut env = request.env.clone();
    env.push(("HOME".into(), request.home.display().to_string()));
    env.push((
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".into(),
        "1".into(),
    ));
    env.push((
        "CLAUDE_CODE_MAX_RETRIES".into(),
        config.max_retries.to_string(),
    ));
    env.push(("DISABLE_AUTOUPDATER".into(), "1".into()));
    // As root the permission bypass is refused unless the CLI is told it is sandboxed.
    if running_as_root() {
        env.push(("IS_SANDBOX".into(), "1".into()));
    }
    env
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[async_trait]
impl AgentDriver for ClaudeCodeDriver {
    fn kind(&self) -> AgentKind {
        AgentKind::ClaudeCode
    }

    fn supports_resume(&self) -> bool {
        true
    }

    async fn run(
        &self,
        request: AgentRequest,
        events: mpsc::Sender<AgentEvent>,
        stop: CancellationToken,
    ) -> Result<AgentOutcome> {
        let mut raw = RawLog::open(request.raw_log.as_deref())?;
        let spec = self.process_spec(&request);
        let mut parser = ClaudeStream::new(
            request
                .spec
                .model
                .clone()
                .or_else(|| self.config.claude_code.model.clone()),
        );
        let options = StreamOptions {
            sandbox: &self.sandbox,
            spec: &spec,
            install_hint: CLAUDE_INSTALL_HINT,
            after_final_grace: Duration::from_millis(self.config.after_final_grace_ms),
        };
        let run = run_json_lines(options, &mut parser, &mut raw, &events, &stop).await?;
        let usage = parser.usage();
        let session_id = parser.session_id.clone().or(request.resume_session.clone());
        if run.end == StreamEnd::Stopped {
            return Ok(AgentOutcome::stopped(session_id, usage));
        }
        let exit = run.exit();
        let outcome = match &parser.result {
            // Claude Code enforced the turn limit we gave it: that is the budget, not a failure.
            Some(result) if result.subtype == "error_max_turns" => AgentOutcome {
                end: AgentEnd::BudgetExceeded(format!(
                    "the agent reached its limit of {} turns",
                    request
                        .max_turns
                        .map_or_else(|| "?".to_string(), |t| t.to_string())
                )),
                session_id,
                summary: None,
                usage,
                error: None,
            },
            Some(result) => AgentOutcome {
                end: AgentEnd::Finished {
                    success: !result.is_error,
                    exit,
                },
                session_id,
                summary: (!result.is_error).then(|| result.text.clone()).flatten(),
                usage,
                error: result.is_error.then(|| result.error_text()),
            },
            None => {
                let mut error = format!("Claude Code ended with {exit} before its final result");
                if let Some(stderr) = run.stderr_summary() {
                    error.push_str(": ");
                    error.push_str(&stderr);
                }
                let _ = events
                    .send(AgentEvent::Error {
                        message: error.clone(),
                    })
                    .await;
                AgentOutcome {
                    end: AgentEnd::Finished {
                        success: false,
                        exit,
                    },
                    session_id,
                    summary: None,
                    usage,
                    error: Some(error),
                }
            }
        };
        Ok(outcome)
    }
}

#[derive(Debug, Clone)]
struct ResultEvent {
    is_error: bool,
    subtype: String,
    text: Option<String>,
    api_error_status: Option<u64>,
}

impl ResultEvent {
    fn error_text(&self) -> String {
        let mut parts = vec![format!("Claude Code reported an error ({})", self.subtype)];
        if let Some(status) = self.api_error_status {
            parts.push(format!("model API answered HTTP {status}"));
        }
        if let Some(text) = self.text.as_deref().filter(|t| !t.is_empty()) {
            parts.push(cut(text, 2000));
        }
        parts.join(": ")
    }
}

/// State kept while reading Claude Code's stream.
struct ClaudeStream {
    model: Option<String>,
    session_id: Option<String>,
    started: bool,
    /// Usage per assistant message id: every content block repeats its message's usage.
    messages: BTreeMap<String, (u64, u64)>,
    /// The exact totals from the `result` event, which replace the running estimate.
    exact: Option<Usage>,
    /// Edit/Write inputs waiting for their result, to report a diff once they succeed.
    pending_edits: BTreeMap<String, (String, Value)>,
    result: Option<ResultEvent>,
}

impl ClaudeStream {
    fn new(model: Option<String>) -> Self {
        ClaudeStream {
            model,
            session_id: None,
            started: false,
            messages: BTreeMap::new(),
            exact: None,
            pending_edits: BTreeMap::new(),
            result: None,
        }
    }

    fn usage(&self) -> Usage {
        if let Some(exact) = self.exact {
            return exact;
        }
        let (input, output) = self
            .messages
            .values()
            .fold((0, 0), |(i, o), (mi, mo)| (i + mi, o + mo));
        Usage {
            input_tokens: input,
            output_tokens: output,
            cost_usd: estimate_cost(self.model.as_deref(), input, output),
            turns: self.messages.len() as u64,
        }
    }

    fn assistant(&mut self, value: &Value, out: &mut Vec<AgentEvent>) {
        let message = &value["message"];
        if let Some(model) = message["model"].as_str() {
            self.model = Some(model.to_string());
        }
        for block in message["content"].as_array().into_iter().flatten() {
            match block["type"].as_str() {
                Some("text") => {
                    let text = block["text"].as_str().unwrap_or_default();
                    if !text.is_empty() {
                        out.push(AgentEvent::Message {
                            text: text.to_string(),
                        });
                    }
                }
                Some("thinking") => {
                    let text = block["thinking"].as_str().unwrap_or_default();
                    out.push(AgentEvent::Thinking {
                        text: text.to_string(),
                    });
                }
                Some("tool_use") => {
                    let id = block["id"].as_str().unwrap_or_default().to_string();
                    let name = block["name"].as_str().unwrap_or_default().to_string();
                    let input = block["input"].clone();
                    if tool_kind(&name) == ToolKind::Edit {
                        self.pending_edits
                            .insert(id.clone(), (name.clone(), input.clone()));
                    }
                    out.push(AgentEvent::ToolCall {
                        id,
                        kind: tool_kind(&name),
                        name,
                        input,
                    });
                }
                _ => {}
            }
        }
        // Usage is counted once per model message, however many blocks it was split into.
        if let (Some(id), Some(usage)) = (message["id"].as_str(), message.get("usage")) {
            let tokens = |k: &str| usage[k].as_u64().unwrap_or(0);
            let input = tokens("input_tokens")
                + tokens("cache_creation_input_tokens")
                + tokens("cache_read_input_tokens");
            let entry = (input, tokens("output_tokens"));
            if self.messages.insert(id.to_string(), entry) != Some(entry) {
                out.push(AgentEvent::Usage {
                    usage: self.usage(),
                });
            }
        }
    }

    fn user(&mut self, value: &Value, out: &mut Vec<AgentEvent>) {
        for block in value["message"]["content"].as_array().into_iter().flatten() {
            if block["type"].as_str() != Some("tool_result") {
                continue;
            }
            let id = block["tool_use_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let is_error = block["is_error"].as_bool().unwrap_or(false);
            let output = match &block["content"] {
                Value::String(s) => s.clone(),
                Value::Array(parts) => parts
                    .iter()
                    .filter_map(|p| p["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n"),
                _ => String::new(),
            };
            out.push(AgentEvent::ToolResult {
                id: id.clone(),
                output: cut(&output, 16 * 1024),
                is_error,
            });
            if let Some((name, input)) = self.pending_edits.remove(&id)
                && !is_error
                && let Some(diff) = edit_diff(&name, &input)
            {
                out.push(diff);
            }
        }
    }

    fn result(&mut self, value: &Value, out: &mut Vec<AgentEvent>) {
        let is_error = value["is_error"].as_bool().unwrap_or(true);
        let result = ResultEvent {
            is_error,
            subtype: value["subtype"].as_str().unwrap_or("unknown").to_string(),
            text: value["result"].as_str().map(str::to_string),
            api_error_status: value["api_error_status"].as_u64(),
        };
        let mut usage = self.usage();
        let tokens = |k: &str| value["usage"][k].as_u64();
        if let Some(input) = tokens("input_tokens") {
            usage.input_tokens = input
                + tokens("cache_creation_input_tokens").unwrap_or(0)
                + tokens("cache_read_input_tokens").unwrap_or(0);
        }
        if let Some(output) = tokens("output_tokens") {
            usage.output_tokens = output;
        }
        if let Some(cost) = value["total_cost_usd"].as_f64() {
            usage.cost_usd = cost;
        }
        if let Some(turns) = value["num_turns"].as_u64() {
            usage.turns = turns;
        }
        self.exact = Some(usage);
        if let Some(id) = value["session_id"].as_str() {
            self.session_id = Some(id.to_string());
        }
        out.push(AgentEvent::Usage { usage });
        if is_error {
            out.push(AgentEvent::Error {
                message: result.error_text(),
            });
        }
        out.push(AgentEvent::Final {
            summary: result.text.clone(),
            is_error,
        });
        self.result = Some(result);
    }
}

impl LineParser for ClaudeStream {
    fn parse(&mut self, value: &Value) -> Vec<AgentEvent> {
        let mut out = Vec::new();
        if !self.started
            && let Some(id) = value["session_id"].as_str()
        {
            self.started = true;
            self.session_id = Some(id.to_string());
            if let Some(model) = value["model"].as_str() {
                self.model = Some(model.to_string());
            }
            out.push(AgentEvent::Started {
                session_id: Some(id.to_string()),
                model: self.model.clone(),
            });
        }
        match value["type"].as_str() {
            Some("assistant") => self.assistant(value, &mut out),
            Some("user") => self.user(value, &mut out),
            Some("result") => self.result(value, &mut out),
            _ => {}
        }
        out
    }

    fn finished(&self) -> bool {
        self.result.is_some()
    }
}

/// Claude Code's tool names, grouped for the UI.
fn tool_kind(name: &str) -> ToolKind {
    match name {
        "Read" | "NotebookRead" | "LS" => ToolKind::Read,
        "Write" | "Edit" | "MultiEdit" | "NotebookEdit" => ToolKind::Edit,
        "Bash" | "BashOutput" | "KillShell" => ToolKind::Execute,
        "Grep" | "Glob" | "WebSearch" | "WebFetch" => ToolKind::Search,
        _ => ToolKind::Other,
    }
}

/// A small diff from an Edit or Write input, so the UI can show the change as it happens;
/// the authoritative diff is taken from git after the session.
fn edit_diff(name: &str, input: &Value) -> Option<AgentEvent> {
    let path = input["file_path"].as_str()?.to_string();
    let prefixed = |text: &str, sign: char| {
        text.lines()
            .map(|l| format!("{sign}{l}\n"))
            .collect::<String>()
    };
    let diff = match name {
        "Write" => prefixed(input["content"].as_str()?, '+'),
        "Edit" => {
            let old = input["old_string"].as_str()?;
            let new = input["new_string"].as_str()?;
            format!("{}{}", prefixed(old, '-'), prefixed(new, '+'))
        }
        _ => json!(input).to_string(),
    };
    Some(AgentEvent::FileDiff {
        path,
        diff: cut(&diff, 64 * 1024),
    })
}

/// USD per million input and output tokens. Only an estimate for live budget checks between
/// model turns; the `result` event's `total_cost_usd` replaces it at the end.
fn estimate_cost(model: Option<&str>, input: u64, output: u64) -> f64 {
    let model = model.unwrap_or("sonnet");
    let (input_price, output_price) = if model.contains("opus") {
        if model.contains("opus-4-5") || model.contains("opus-4-6") {
            (5.0, 25.0)
        } else {
            (15.0, 75.0)
        }
    } else if model.contains("haiku") {
        (1.0, 5.0)
    } else {
        (3.0, 15.0)
    };
    (input as f64 * input_price + output as f64 * output_price) / 1_000_000.0
}
