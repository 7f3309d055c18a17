//! The `verify` tool: the run's checks served to the agent as a Model Context Protocol tool over
//! stdio, so it can run them before it stops. The agent starts it inside its own sandbox (the
//! `nightshift` binary's `verify-mcp` subcommand); each call runs the plan — formatters in apply
//! mode, then lint and test — and answers the failures, trimmed. Each call is appended to a log
//! the engine turns into run events. Nightshift's own validation after the agent stays the gate.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nightshift_core::{CheckOutcome, CheckResult};
use nightshift_sandbox::Sandbox;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler, ServiceExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::{CheckPlan, CheckRunner, ChecksError, Stage};

/// The subcommand of the `nightshift` binary that serves the tool.
pub const SUBCOMMAND: &str = "verify-mcp";
/// The server's name as agents know it (Claude Code: `mcp__nightshift__verify`).
pub const SERVER: &str = "nightshift";
/// The tool's name.
pub const TOOL: &str = "verify";

const DESCRIPTION: &str = "Run this repository's own checks on the workspace as it is now: \
formatters (they rewrite files in place), then linters and tests. Answers which checks failed, \
with their output. Call it after changing code and before you finish; fix what it reports and \
call it again until everything passes. Takes no arguments.";

/// What one server runs, passed to it as its one argument (JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifySpec {
    /// The checkout the checks run in.
    pub dir: PathBuf,
    /// Where each call is appended as a JSON line ([`VerifyCall`]).
    pub log: PathBuf,
    pub format: Vec<String>,
    pub lint: Vec<String>,
    pub test: Vec<String>,
}

impl VerifySpec {
    /// The format, lint and test commands of `plan`, run in `dir`, each call logged to `log`.
    pub fn new(plan: &CheckPlan, dir: &Path, log: &Path) -> Self {
        VerifySpec {
            dir: dir.to_path_buf(),
            log: log.to_path_buf(),
            format: plan.format.clone(),
            lint: plan.lint.clone(),
            test: plan.test.clone(),
        }
    }

    /// The server's argument.
    pub fn to_arg(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Format, then lint, then test: the order validation runs them in.
    fn commands(&self) -> impl Iterator<Item = (Stage, &String)> {
        let format = self.format.iter().map(|c| (Stage::Format, c));
        let lint = self.lint.iter().map(|c| (Stage::Lint, c));
        format
            .chain(lint)
            .chain(self.test.iter().map(|c| (Stage::Test, c)))
    }
}

/// One call of the tool, as its log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyCall {
    /// 1 for the server's first call.
    pub call: u32,
    pub passed: bool,
    pub checks: Vec<CheckResult>,
}

impl VerifyCall {
    /// What the agent is answered: that all passed, or each failure with its trimmed output.
    pub fn answer(&self) -> String {
        let total = self.checks.len();
        if total == 0 {
            return "This repository has no checks to run.".to_string();
        }
        let failed: Vec<&CheckResult> = self
            .checks
            .iter()
            .filter(|c| c.outcome != CheckOutcome::Passed)
            .collect();
        if failed.is_empty() {
            return format!(
                "All {total} checks passed. Formatters ran in apply mode: what they changed is \
                 in the workspace."
            );
        }
        let mut out = format!("{} of {total} checks failed:\n", failed.len());
        for check in failed {
            let exit = match (check.exit_code, check.signal) {
                (Some(code), _) => format!("exit {code}"),
                (None, Some(signal)) => format!("signal {signal}"),
                (None, None) => check.outcome.as_str().to_string(),
            };
            out.push_str(&format!(
                "\n{} `{}` ({exit}):\n{}\n",
                check.stage,
                check.command,
                check.output.trim_end()
            ));
        }
        out.push_str("\nFix the code (not the checks or the tests) and call verify again.");
        out
    }
}

/// The tool's server for one agent session.
struct VerifyServer {
    spec: VerifySpec,
    runner: CheckRunner,
    /// One call at a time: two formatter runs must not write the same files at once.
    calls: Mutex<u32>,
    stop: CancellationToken,
}

impl VerifyServer {
    async fn verify(&self) -> Result<VerifyCall, ChecksError> {
        let mut calls = self.calls.lock().await;
        *calls += 1;
        let mut checks = Vec::new();
        for (stage, command) in self.spec.commands() {
            let mut ignore = |_: &nightshift_sandbox::OutputLine| -> crate::LineTaken {
                Box::pin(std::future::ready(()))
            };
            let result = self
                .runner
                .run(
                    stage,
                    command,
                    &self.spec.dir,
                    *calls,
                    &self.stop,
                    &mut ignore,
                )
                .await?;
            checks.push(result);
        }
        let call = VerifyCall {
            call: *calls,
            passed: checks.iter().all(|c| c.outcome == CheckOutcome::Passed),
            checks,
        };
        self.record(&call);
        Ok(call)
    }

    /// Appends the call to the log; a log that cannot be written costs the event, not the call.
    fn record(&self, call: &VerifyCall) {
        let written = serde_json::to_string(call)
            .map_err(std::io::Error::other)
            .and_then(|line| {
                if let Some(dir) = self.spec.log.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.spec.log)?;
                file.write_all(format!("{line}\n").as_bytes())
            });
        if let Err(e) = written {
            eprintln!(
                "verify: cannot record the call in {}: {e}",
                self.spec.log.display()
            );
        }
    }
}

fn tool() -> Tool {
    let schema =
        serde_json::json!({"type": "object", "properties": {}, "additionalProperties": false});
    let schema = match schema {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    Tool::new(TOOL, DESCRIPTION, Arc::new(schema))
}

impl ServerHandler for VerifyServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(SERVER, env!("CARGO_PKG_VERSION")))
            .with_instructions("`verify` runs the repository's own checks on the workspace.")
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(vec![tool()]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if request.name != TOOL {
            return Err(McpError::invalid_params(
                format!("no tool {:?}: this server has only `{TOOL}`", request.name),
                None,
            ));
        }
        Ok(match self.verify().await {
            Ok(call) => CallToolResult::success(vec![ContentBlock::text(call.answer())]),
            Err(e) => CallToolResult::error(vec![ContentBlock::text(format!(
                "the checks could not run: {e}"
            ))]),
        }
        .into())
    }
}

/// Serves the tool on stdin and stdout until the agent closes them. `args` is the server's
/// one argument, a [`VerifySpec`] as JSON. Returns the process's exit code.
pub async fn serve(args: Vec<String>) -> i32 {
    let spec = match args.as_slice() {
        [arg] => match serde_json::from_str::<VerifySpec>(arg) {
            Ok(spec) => spec,
            Err(e) => {
                eprintln!("{SUBCOMMAND}: the argument is not a verify spec: {e}");
                return 2;
            }
        },
        _ => {
            eprintln!("{SUBCOMMAND}: takes one argument, the checks to serve as JSON");
            return 2;
        }
    };
    // Already inside the agent's sandbox: the checks see what the agent sees.
    let env: Vec<(String, String)> = ["HOME", "TMPDIR"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
    let stop = CancellationToken::new();
    let server = VerifyServer {
        spec,
        runner: CheckRunner::new(Sandbox::new(), env),
        calls: Mutex::new(0),
        stop: stop.clone(),
    };
    let code = match server.serve(rmcp::transport::stdio()).await {
        Ok(running) => match running.waiting().await {
            Ok(_) => 0,
            Err(e) => {
                eprintln!("{SUBCOMMAND}: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("{SUBCOMMAND}: cannot start: {e}");
            1
        }
    };
    // A check still running when the agent went away is ended with it.
    stop.cancel();
    code
}
