//! The `codex` driver: `codex exec --json` with a generated `$CODEX_HOME/config.toml` pointing at
//! the configured provider. Codex retries forever when the server is down, so the caller's stop
//! token and timeouts are what end a hung session.

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
use crate::{AgentDriver, AgentEnd, AgentOutcome, AgentRequest, Result};

const CODEX_INSTALL_HINT: &str = "install the Codex CLI (`npm install -g @openai/codex`) or set the codex command to its absolute path";
const DEFAULT_MODEL: &str = "gpt-5.5";
const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

pub struct CodexDriver {
    sandbox: Sandbox,
    config: AgentConfig,
}

impl CodexDriver {
    pub fn new(sandbox: Sandbox, config: AgentConfig) -> Self {
        CodexDriver { sandbox, config }
    }

    /// Codex ignores `OPENAI_BASE_URL`: the endpoint must be a provider in its config file.
    fn config_toml(&self, request: &AgentRequest) -> String {
        let env = |key: &str| {
            request
                .env
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let base_url = env("OPENAI_BASE_URL").unwrap_or_else(|| DEFAULT_BASE_URL.into());
        let model = request
            .spec
            .model
            .clone()
            .or(self.config.codex.model.clone())
            .unwrap_or_else(|| DEFAULT_MODEL.into());
        // JSON string escapes are valid TOML basic-string escapes.
        let s = |v: &str| Value::String(v.to_string()).to_string();
        let retries = self.config.max_retries;
        let mut servers = String::new();
        for server in &request.mcp_servers {
            let args: Vec<String> = server.args.iter().map(|a| s(a)).collect();
            // A check run may take long: Codex's default tool timeout is a minute.
            servers.push_str(&format!(
                "\n[mcp_servers.{name}]\ncommand = {command}\nargs = [{args}]\n\
                 startup_timeout_sec = 30\ntool_timeout_sec = 3600\n",
                name = s(&server.name),
                command = s(&server.command),
                args = args.join(", "),
            ));
        }
        format!(
            "model = {model}\nmodel_provider = \"nightshift\"\napproval_policy = \"never\"\n\
             sandbox_mode = \"danger-full-access\"\ncheck_for_update_on_startup = false\n\n\
             [model_providers.nightshift]\nname = \"Nightshift\"\nbase_url = {base_url}\nenv_key = \"OPENAI_API_KEY\"\n\
             wire_api = \"responses\"\nrequest_max_retries = {retries}\nstream_max_retries = {retries}\n\n\
             [analytics]\nenabled = false\n\n[features]\nplugins = false\nremote_plugin = false\napps = false\n{servers}",
            model = s(&model),
            base_url = s(&base_url),
        )
    }

    fn process_spec(&self, request: &AgentRequest) -> Result<ProcessSpec> {
        let codex_home = request.home.join(".codex");
        std::fs::create_dir_all(&codex_home)?;
        std::fs::write(codex_home.join("config.toml"), self.config_toml(request))?;
        let program = self
            .config
            .codex
            .command
            .clone()
            .unwrap_or_else(|| "codex".into());
        let mut spec = ProcessSpec::new(program, &request.workspace).args([
            "exec",
            "--json",
            "--skip-git-repo-check",
        ]);
        spec = spec.args(
            self.config
                .codex
                .args
                .iter()
                .chain(&request.spec.args)
                .cloned(),
        );
        if let Some(thread) = &request.resume_session {
            spec = spec.args(["resume", thread]);
        }
        spec = spec.arg(request.prompt.clone());
        for (key, value) in &request.env {
            // The endpoint lives in config.toml; Codex would ignore the variable anyway.
            if key != "OPENAI_BASE_URL" {
                spec = spec.env(key.clone(), value.clone());
            }
        }
        Ok(spec
            .env("HOME", request.home.display().to_string())
            .env("CODEX_HOME", codex_home.display().to_string()))
    }
}

#[async_trait]
impl AgentDriver for CodexDriver {
    fn kind(&self) -> AgentKind {
        AgentKind::Codex
    }

    fn supports_resume(&self) -> bool {
        true
    }

    /// `turn.completed` of `codex exec resume` carries the thread's token totals.
    fn resumed_tokens_are_cumulative(&self) -> bool {
        true
    }

    async fn run(
        &self,
        request: AgentRequest,
        events: mpsc::Sender<AgentEvent>,
        stop: CancellationToken,
    ) -> Result<AgentOutcome> {
        let mut raw = RawLog::open(request.raw_log.as_deref())?;
        let spec = self.process_spec(&request)?;
        let mut parser = CodexStream::default();
        let options = StreamOptions {
            sandbox: &self.sandbox,
            spec: &spec,
            install_hint: CODEX_INSTALL_HINT,
            after_final_grace: Duration::from_millis(self.config.after_final_grace_ms),
        };
        let run = run_json_lines(options, &mut parser, &mut raw, &events, &stop).await?;
        let session_id = parser.thread_id.clone().or(request.resume_session.clone());
        if run.end == StreamEnd::Stopped {
            return Ok(AgentOutcome::stopped(session_id, parser.usage));
        }
        let exit = run.exit();
        let success = parser.completed && parser.failure.is_none() && parser.turn_open == 0;
        let error = (!success).then(|| {
            let mut error = parser
                .failure
                .clone()
                .or_else(|| parser.last_error.clone())
                .unwrap_or_else(|| format!("Codex ended with {exit} before completing its turn"));
            if parser.failure.is_none()
                && let Some(stderr) = run.stderr_summary()
            {
                error.push_str(": ");
                error.push_str(&stderr);
            }
            error
        });
        if !parser.finished()
            && let Some(error) = &error
        {
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
        }
        Ok(AgentOutcome {
            end: AgentEnd::Finished { success, exit },
            session_id,
            summary: success.then(|| parser.last_message.clone()).flatten(),
            usage: parser.usage,
            error,
        })
    }
}

#[derive(Default)]
struct CodexStream {
    thread_id: Option<String>,
    usage: Usage,
    /// Turns started and not yet completed or failed.
    turn_open: u32,
    completed: bool,
    failure: Option<String>,
    last_error: Option<String>,
    last_message: Option<String>,
}

impl CodexStream {
    fn item(&mut self, started: bool, item: &Value, out: &mut Vec<AgentEvent>) {
        let id = item["id"].as_str().unwrap_or_default().to_string();
        match item["type"].as_str() {
            Some("command_execution") if started => out.push(AgentEvent::ToolCall {
                id,
                name: "exec_command".into(),
                kind: ToolKind::Execute,
                input: json!({"command": item["command"]}),
            }),
            Some("command_execution") => {
                let exit_code = item["exit_code"].as_i64();
                out.push(AgentEvent::ToolResult {
                    id,
                    output: cut(
                        item["aggregated_output"].as_str().unwrap_or_default(),
                        16 * 1024,
                    ),
                    is_error: exit_code != Some(0) || item["status"].as_str() == Some("failed"),
                });
            }
            Some("file_change") if !started => {
                let changes = item["changes"].clone();
                out.push(AgentEvent::ToolCall {
                    id: id.clone(),
                    name: "apply_patch".into(),
                    kind: ToolKind::Edit,
                    input: json!({"changes": changes}),
                });
                let failed = item["status"].as_str() == Some("failed");
                let summary = changes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| {
                        format!(
                            "{} {}",
                            c["kind"].as_str().unwrap_or("update"),
                            c["path"].as_str().unwrap_or("?")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                out.push(AgentEvent::ToolResult {
                    id,
                    output: summary,
                    is_error: failed,
                });
            }
            Some("mcp_tool_call") if started => out.push(AgentEvent::ToolCall {
                id,
                name: format!(
                    "{}.{}",
                    item["server"].as_str().unwrap_or("mcp"),
                    item["tool"].as_str().unwrap_or("?")
                ),
                kind: ToolKind::Other,
                input: item["arguments"].clone(),
            }),
            Some("agent_message") if !started => {
                let text = item["text"].as_str().unwrap_or_default().to_string();
                self.last_message = Some(text.clone());
                out.push(AgentEvent::Message { text });
            }
            Some("reasoning") if !started => {
                out.push(AgentEvent::Thinking {
                    text: item["text"].as_str().unwrap_or_default().to_string(),
                });
            }
            Some("error") if !started => {
                let message = item["message"].as_str().unwrap_or("error").to_string();
                self.last_error = Some(message.clone());
                out.push(AgentEvent::Error { message });
            }
            _ => {}
        }
    }
}

impl LineParser for CodexStream {
    fn parse(&mut self, value: &Value) -> Vec<AgentEvent> {
        let mut out = Vec::new();
        match value["type"].as_str() {
            Some("thread.started") => {
                self.thread_id = value["thread_id"].as_str().map(str::to_string);
                out.push(AgentEvent::Started {
                    session_id: self.thread_id.clone(),
                    model: None,
                });
            }
            Some("turn.started") => self.turn_open += 1,
            Some("item.started") => self.item(true, &value["item"], &mut out),
            Some("item.completed") => self.item(false, &value["item"], &mut out),
            Some("turn.completed") => {
                self.turn_open = self.turn_open.saturating_sub(1);
                let usage = &value["usage"];
                // Codex reports tokens, not cost; cost budgets need a price table (not kept here).
                self.usage.input_tokens += usage["input_tokens"].as_u64().unwrap_or(0);
                self.usage.output_tokens += usage["output_tokens"].as_u64().unwrap_or(0);
                self.usage.turns += 1;
                self.completed = true;
                out.push(AgentEvent::Usage { usage: self.usage });
                out.push(AgentEvent::Final {
                    summary: self.last_message.clone(),
                    is_error: false,
                });
            }
            Some("turn.failed") => {
                self.turn_open = self.turn_open.saturating_sub(1);
                let message = value["error"]["message"]
                    .as_str()
                    .unwrap_or("Codex turn failed")
                    .to_string();
                self.failure = Some(message.clone());
                out.push(AgentEvent::Error { message });
                out.push(AgentEvent::Final {
                    summary: None,
                    is_error: true,
                });
            }
            Some("error") => {
                let message = value["message"].as_str().unwrap_or("error").to_string();
                self.last_error = Some(message.clone());
                out.push(AgentEvent::Error { message });
            }
            _ => {}
        }
        out
    }

    fn finished(&self) -> bool {
        (self.completed || self.failure.is_some()) && self.turn_open == 0
    }
}
