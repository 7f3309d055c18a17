//! The `acp` driver: any Agent Client Protocol agent over stdio (claude-agent-acp, codex-acp,
//! gemini, goose…). The pinned `agent-client-protocol` crate speaks the protocol; everything it
//! says is turned into our events here, so its API churn stays inside this file.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use agent_client_protocol::schema::ProtocolVersion;
use agent_client_protocol::v1::ConnectionTo;
use agent_client_protocol::v1::schema::{
    ContentBlock, InitializeRequest, LoadSessionRequest, McpServer, McpServerStdio,
    NewSessionRequest, PermissionOptionKind, PromptRequest, RequestPermissionOutcome,
    RequestPermissionRequest, RequestPermissionResponse, SelectedPermissionOutcome,
    SessionNotification, StopReason, TextContent,
};
use agent_client_protocol::{Agent, Client, Lines};
use async_trait::async_trait;
use nightshift_core::{AgentEvent, AgentKind, OutputStream, ToolKind, Usage};
use nightshift_sandbox::{Exit, ProcessSpec, Sandbox};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::claude::claude_env;
use crate::config::AgentConfig;
use crate::raw::RawLog;
use crate::stream::{cut, spawn_error};
use crate::{AgentDriver, AgentEnd, AgentError, AgentOutcome, AgentRequest, Result};

const ACP_INSTALL_HINT: &str = "install an ACP agent (e.g. `npm install -g @zed-industries/claude-agent-acp`) \
     or set the acp command to the agent's command line";

/// How a background run answers an agent's permission requests: nobody is there to ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermissionPolicy {
    /// Allow running commands. Edits and reads are allowed when they stay inside the workspace.
    pub allow_execute: bool,
}

impl PermissionPolicy {
    /// Whether to allow the tool call of a `session/request_permission`, given as JSON so the
    /// decision does not depend on the protocol crate's types.
    pub fn allows(&self, tool_call: &Value, workspace: &Path) -> bool {
        let outside = tool_paths(tool_call).iter().any(|p| !inside(p, workspace));
        if outside {
            return false;
        }
        match tool_call["kind"].as_str() {
            Some("execute") => self.allow_execute,
            // No outside traffic from a background run beyond the model endpoint.
            Some("fetch") => false,
            _ => true,
        }
    }
}

fn tool_paths(tool_call: &Value) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = tool_call["locations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["path"].as_str().map(PathBuf::from))
        .collect();
    for key in ["file_path", "path", "notebook_path"] {
        if let Some(p) = tool_call["rawInput"][key].as_str() {
            paths.push(PathBuf::from(p));
        }
    }
    paths
}

/// Lexical containment: `..` components make a path count as outside.
fn inside(path: &Path, workspace: &Path) -> bool {
    path.is_absolute()
        && path.starts_with(workspace)
        && !path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
}

pub struct AcpDriver {
    sandbox: Sandbox,
    config: AgentConfig,
    policy: PermissionPolicy,
}

impl AcpDriver {
    pub fn new(sandbox: Sandbox, config: AgentConfig, policy: PermissionPolicy) -> Self {
        AcpDriver {
            sandbox,
            config,
            policy,
        }
    }

    fn process_spec(&self, request: &AgentRequest) -> Result<ProcessSpec> {
        let command = request
            .spec
            .command
            .clone()
            .or(self.config.acp.command.clone())
            .unwrap_or_default();
        // A plain whitespace split: agent command lines are program plus flags, no quoting.
        let mut words = command.split_whitespace();
        let Some(program) = words.next() else {
            return Err(AgentError::NotConfigured {
                kind: AgentKind::Acp,
                reason: "no agent command line given".into(),
            });
        };
        let mut spec = ProcessSpec::new(program, &request.workspace)
            .args(words)
            .args(
                self.config
                    .acp
                    .args
                    .iter()
                    .chain(&request.spec.args)
                    .cloned(),
            );
        for (key, value) in claude_env(&self.config, request) {
            spec = spec.env(key, value);
        }
        // claude-agent-acp otherwise runs an older bundled CLI that reaches outside hosts.
        if let Some(claude) = self
            .config
            .claude_code
            .command
            .as_ref()
            .filter(|c| Path::new(c).is_absolute())
        {
            spec = spec.env("CLAUDE_CODE_EXECUTABLE", claude.clone());
        }
        Ok(spec)
    }
}

/// What the notification handlers share with the driver.
struct AcpState {
    events: mpsc::UnboundedSender<AgentEvent>,
    usage: Usage,
    last_message: String,
    /// `session/load` replays the old conversation as updates: not news, so not forwarded.
    replaying: bool,
    denied: Vec<String>,
}

enum Ended {
    Stopped,
    Done(std::result::Result<SessionEnd, String>),
}

struct SessionEnd {
    session_id: String,
    stop_reason: StopReason,
}

#[async_trait]
impl AgentDriver for AcpDriver {
    fn kind(&self) -> AgentKind {
        AgentKind::Acp
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
        let raw = Arc::new(Mutex::new(RawLog::open(request.raw_log.as_deref())?));
        let spec = self.process_spec(&request)?;
        let (mut process, stdin) = self
            .sandbox
            .spawn_with_stdin(&spec)
            .map_err(|e| spawn_error(e, ACP_INSTALL_HINT))?;
        lock(&raw).note(
            json!({"type": "nightshift.process", "pgid": process.pgid(), "program": spec.program}),
        )?;

        let (event_tx, mut event_rx) = mpsc::unbounded_channel();
        let state = Arc::new(Mutex::new(AcpState {
            events: event_tx,
            usage: Usage::default(),
            last_message: String::new(),
            replaying: false,
            denied: Vec::new(),
        }));
        let (line_tx, line_rx) = mpsc::channel::<String>(256);
        // Dropped when the agent's output closes, which ends the connection's input stream.
        let mut line_tx = Some(line_tx);
        let incoming = futures::stream::unfold(line_rx, |mut rx| async move {
            rx.recv().await.map(|l| (Ok(l), rx))
        });
        let sink_raw = raw.clone();
        let outgoing = futures::sink::unfold(stdin, move |mut stdin, line: String| {
            let raw = sink_raw.clone();
            async move {
                let message = serde_json::from_str(&line).unwrap_or(Value::String(line.clone()));
                let _ = lock(&raw).note(json!({"type": "nightshift.sent", "message": message}));
                stdin.write_all(line.as_bytes()).await?;
                stdin.write_all(b"\n").await?;
                stdin.flush().await?;
                Ok::<_, std::io::Error>(stdin)
            }
        });
        let transport = Lines::new(Box::pin(outgoing), Box::pin(incoming));

        let connection = session(SessionParams {
            transport,
            state: state.clone(),
            policy: self.policy,
            workspace: request.workspace.clone(),
            prompt: request.prompt.clone(),
            resume: request.resume_session.clone(),
            mcp_servers: request
                .mcp_servers
                .iter()
                .map(|s| {
                    McpServer::Stdio(McpServerStdio::new(&s.name, &s.command).args(s.args.clone()))
                })
                .collect(),
        });
        let mut connection = std::pin::pin!(connection);
        let mut stderr_tail: Vec<String> = Vec::new();
        let ended = loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => break Ended::Stopped,
                Some(event) = event_rx.recv() => {
                    let _ = events.send(event).await;
                }
                result = &mut connection => break Ended::Done(result),
                line = process.next_line(), if line_tx.is_some() => match line {
                    None => line_tx = None,
                    Some(line) => {
                        lock(&raw).agent_line(line.stream, &line.text, line.truncated)?;
                        if line.stream == OutputStream::Stdout {
                            if let Some(tx) = &line_tx {
                                // A closed connection means the session already ended; nothing to deliver.
                                let _ = tx.send(line.text).await;
                            }
                        } else {
                            if stderr_tail.len() == 20 {
                                stderr_tail.remove(0);
                            }
                            stderr_tail.push(cut(&line.text, 1000));
                            let _ = events.send(AgentEvent::Output { stream: line.stream, line: cut(&line.text, 8192) }).await;
                        }
                    }
                },
            }
        };
        // ACP agents do not exit when their input closes: the whole group is killed, always.
        process.terminate().await?;
        while let Ok(event) = event_rx.try_recv() {
            let _ = events.send(event).await;
        }
        let (usage, last_message, denied) = {
            let s = lock_state(&state);
            (s.usage, s.last_message.clone(), s.denied.clone())
        };
        let outcome = match ended {
            Ended::Stopped => AgentOutcome::stopped(request.resume_session.clone(), usage),
            Ended::Done(Ok(end)) => {
                let success = end.stop_reason == StopReason::EndTurn;
                let error = (!success).then(|| {
                    let mut e = format!("the agent {}", stopped_because(end.stop_reason));
                    if !denied.is_empty() {
                        e.push_str(&format!("; denied by policy: {}", denied.join(", ")));
                    }
                    e
                });
                let summary =
                    (!last_message.trim().is_empty()).then(|| last_message.trim().to_string());
                let _ = events
                    .send(AgentEvent::Final {
                        summary: summary.clone(),
                        is_error: !success,
                    })
                    .await;
                AgentOutcome {
                    end: AgentEnd::Finished {
                        success,
                        exit: Exit::Killed,
                    },
                    session_id: Some(end.session_id),
                    summary,
                    usage,
                    error,
                }
            }
            Ended::Done(Err(message)) => {
                let mut error = format!("ACP session failed: {message}");
                if !stderr_tail.is_empty() {
                    error.push_str(": ");
                    error.push_str(&cut(stderr_tail.join("\n").trim(), 2000));
                }
                let _ = events
                    .send(AgentEvent::Error {
                        message: error.clone(),
                    })
                    .await;
                let _ = events
                    .send(AgentEvent::Final {
                        summary: None,
                        is_error: true,
                    })
                    .await;
                AgentOutcome {
                    end: AgentEnd::Finished {
                        success: false,
                        exit: Exit::Killed,
                    },
                    session_id: request.resume_session.clone(),
                    summary: None,
                    usage,
                    error: Some(error),
                }
            }
        };
        Ok(outcome)
    }
}

struct SessionParams<T> {
    transport: T,
    state: Arc<Mutex<AcpState>>,
    policy: PermissionPolicy,
    workspace: PathBuf,
    prompt: String,
    resume: Option<String>,
    mcp_servers: Vec<McpServer>,
}

/// One ACP session: initialize, new or loaded session, one prompt.
async fn session<T>(params: SessionParams<T>) -> std::result::Result<SessionEnd, String>
where
    T: agent_client_protocol::ConnectTo<Client> + 'static,
{
    let SessionParams {
        transport,
        state,
        policy,
        workspace,
        prompt,
        resume,
        mcp_servers,
    } = params;
    let notify_state = state.clone();
    let permission_state = state.clone();
    let permission_workspace = workspace.clone();
    Client
        .v1()
        .on_receive_notification(
            async move |notification: SessionNotification, _cx| {
                let update = serde_json::to_value(&notification.update).unwrap_or(Value::Null);
                lock_state(&notify_state).update(&update);
                Ok(())
            },
            agent_client_protocol::on_receive_notification!(),
        )
        .on_receive_request(
            async move |request: RequestPermissionRequest, responder, _cx| {
                let tool_call = serde_json::to_value(&request.tool_call).unwrap_or(Value::Null);
                let allowed = policy.allows(&tool_call, &permission_workspace);
                let wanted: &[PermissionOptionKind] = if allowed {
                    &[
                        PermissionOptionKind::AllowOnce,
                        PermissionOptionKind::AllowAlways,
                    ]
                } else {
                    &[
                        PermissionOptionKind::RejectOnce,
                        PermissionOptionKind::RejectAlways,
                    ]
                };
                // Options are chosen by kind, never by position or label.
                let option = wanted.iter().find_map(|kind| {
                    request
                        .options
                        .iter()
                        .find(|o| o.kind == *kind)
                        .map(|o| o.option_id.clone())
                });
                if !allowed {
                    let title = tool_call["title"]
                        .as_str()
                        .unwrap_or("a tool call")
                        .to_string();
                    lock_state(&permission_state).denied.push(title);
                }
                let outcome = match option {
                    Some(id) => {
                        RequestPermissionOutcome::Selected(SelectedPermissionOutcome::new(id))
                    }
                    None => RequestPermissionOutcome::Cancelled,
                };
                responder.respond(RequestPermissionResponse::new(outcome))
            },
            agent_client_protocol::on_receive_request!(),
        )
        .connect_with(transport, async move |cx: ConnectionTo<Agent>| {
            let init = cx
                .send_request(InitializeRequest::new(ProtocolVersion::V1))
                .block_task()
                .await?;
            let session_id = match resume {
                Some(id) if init.agent_capabilities.load_session => {
                    lock_state(&state).replaying = true;
                    let loaded = cx
                        .send_request(
                            LoadSessionRequest::new(id.clone(), workspace.clone())
                                .mcp_servers(mcp_servers.clone()),
                        )
                        .block_task()
                        .await;
                    lock_state(&state).replaying = false;
                    loaded?;
                    id
                }
                _ => cx
                    .send_request(
                        NewSessionRequest::new(workspace.clone()).mcp_servers(mcp_servers),
                    )
                    .block_task()
                    .await?
                    .session_id
                    .to_string(),
            };
            lock_state(&state).push(AgentEvent::Started {
                session_id: Some(session_id.clone()),
                model: None,
            });
            let prompt = PromptRequest::new(
                session_id.clone(),
                vec![ContentBlock::Text(TextContent::new(prompt))],
            );
            let response = cx.send_request(prompt).block_task().await?;
            // Token usage in the prompt response is still an unstable part of the protocol.
            let usage = serde_json::to_value(&response)
                .map(|r| r["usage"].clone())
                .unwrap_or(Value::Null);
            if usage.is_object() {
                lock_state(&state).prompt_usage(&usage);
            }
            Ok(SessionEnd {
                session_id,
                stop_reason: response.stop_reason,
            })
        })
        .await
        .map_err(|e| e.to_string())
}

impl AcpState {
    fn push(&mut self, event: AgentEvent) {
        if !self.replaying {
            // The driver outlives the handlers; a closed channel only means the run is over.
            let _ = self.events.send(event);
        }
    }

    fn update(&mut self, update: &Value) {
        match update["sessionUpdate"].as_str() {
            Some("agent_message_chunk") => {
                if let Some(text) = update["content"]["text"].as_str() {
                    if !self.replaying {
                        self.last_message.push_str(text);
                    }
                    self.push(AgentEvent::Message {
                        text: text.to_string(),
                    });
                }
            }
            Some("agent_thought_chunk") => {
                if let Some(text) = update["content"]["text"].as_str() {
                    self.push(AgentEvent::Thinking {
                        text: text.to_string(),
                    });
                }
            }
            Some("tool_call") => {
                // A new message starts after a tool call: the summary is the last one.
                self.last_message.clear();
                let id = update["toolCallId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let name = update["title"].as_str().unwrap_or("tool").to_string();
                let kind = acp_tool_kind(update["kind"].as_str());
                let input = update.get("rawInput").cloned().unwrap_or(json!({}));
                self.push(AgentEvent::ToolCall {
                    id,
                    name,
                    kind,
                    input,
                });
            }
            Some("tool_call_update") => self.tool_call_update(update),
            Some("usage_update") => {
                if let Some(cost) = update["cost"]["amount"].as_f64() {
                    self.usage.cost_usd = cost;
                }
                self.usage.turns = self.usage.turns.max(1);
                let usage = self.usage;
                self.push(AgentEvent::Usage { usage });
            }
            _ => {}
        }
    }

    fn tool_call_update(&mut self, update: &Value) {
        let id = update["toolCallId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut text = Vec::new();
        for item in update["content"].as_array().into_iter().flatten() {
            match item["type"].as_str() {
                Some("diff") => {
                    let path = item["path"].as_str().unwrap_or_default().to_string();
                    let lines = |t: &Value, sign: char| {
                        t.as_str()
                            .unwrap_or_default()
                            .lines()
                            .map(|l| format!("{sign}{l}\n"))
                            .collect::<String>()
                    };
                    let diff = format!(
                        "{}{}",
                        lines(&item["oldText"], '-'),
                        lines(&item["newText"], '+')
                    );
                    self.push(AgentEvent::FileDiff {
                        path,
                        diff: cut(&diff, 64 * 1024),
                    });
                }
                Some("content") => {
                    if let Some(t) = item["content"]["text"].as_str() {
                        text.push(t.to_string());
                    }
                }
                _ => {}
            }
        }
        if let Some(status @ ("completed" | "failed")) = update["status"].as_str() {
            let output = cut(&text.join("\n"), 16 * 1024);
            self.push(AgentEvent::ToolResult {
                id,
                output,
                is_error: status == "failed",
            });
        }
    }

    fn prompt_usage(&mut self, usage: &Value) {
        let tokens = |k: &str| usage[k].as_u64().unwrap_or(0);
        self.usage.input_tokens =
            tokens("inputTokens") + tokens("cachedReadTokens") + tokens("cachedWriteTokens");
        self.usage.output_tokens = tokens("outputTokens");
        let usage = self.usage;
        self.push(AgentEvent::Usage { usage });
    }
}

fn acp_tool_kind(kind: Option<&str>) -> ToolKind {
    match kind {
        Some("read") => ToolKind::Read,
        Some("edit" | "delete" | "move") => ToolKind::Edit,
        Some("execute") => ToolKind::Execute,
        Some("search" | "fetch") => ToolKind::Search,
        _ => ToolKind::Other,
    }
}

// A handler that panicked must not take the others down with a poisoned lock.
fn lock_state(state: &Mutex<AcpState>) -> std::sync::MutexGuard<'_, AcpState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn lock(raw: &Mutex<RawLog>) -> std::sync::MutexGuard<'_, RawLog> {
    raw.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why an agent's turn ended, in words.
fn stopped_because(reason: StopReason) -> &'static str {
    match reason {
        StopReason::EndTurn => "ended its turn",
        StopReason::MaxTokens => "stopped at its output token limit",
        StopReason::MaxTurnRequests => "stopped at its limit of requests in one turn",
        StopReason::Refusal => "refused to continue",
        StopReason::Cancelled => "was cancelled",
        _ => "stopped for a reason this version of Nightshift does not know",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_reasons_read_as_words() {
        assert_eq!(
            format!("the agent {}", stopped_because(StopReason::MaxTokens)),
            "the agent stopped at its output token limit"
        );
        assert_eq!(stopped_because(StopReason::Refusal), "refused to continue");
    }
}
