//! The `verify` tool during the agent phase: the server the agent is given (the run's check
//! plan, run in the agent's own sandbox), and its calls read back from the tool's log as run
//! events while the session runs.

use std::io::{BufRead, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use nightshift_agent::McpServer;
use nightshift_checks::CheckPlan;
use nightshift_checks::verify::{self, VerifyCall, VerifySpec};
use nightshift_core::{AgentKind, CheckOutcome, EventKind, Phase};

use crate::EventSink;

/// The tool of one run's agent phase.
pub(crate) struct VerifyTool {
    server: McpServer,
    log: PathBuf,
    /// Calls seen so far in the run's agent phase, for their numbers.
    calls: u32,
}

impl VerifyTool {
    /// The tool for an agent of `kind`, when the server has a program to serve it and the
    /// repository has checks; a plain command is no agent that calls tools.
    pub(crate) fn new(
        program: Option<&[String]>,
        kind: AgentKind,
        plan: &CheckPlan,
        workspace: &Path,
        home: &Path,
    ) -> Option<VerifyTool> {
        let (command, leading) = program?.split_first()?;
        if kind == AgentKind::Command || plan.is_empty() {
            return None;
        }
        // In the agent's HOME: outside the checkout (so not part of the change), writable
        // inside the sandbox.
        let log = home.join(".nightshift").join("verify.jsonl");
        let spec = VerifySpec::new(plan, workspace, &log);
        let mut args = leading.to_vec();
        args.push(spec.to_arg());
        Some(VerifyTool {
            server: McpServer {
                name: verify::SERVER.to_string(),
                command: command.clone(),
                args,
            },
            log,
            calls: 0,
        })
    }

    pub(crate) fn server(&self) -> McpServer {
        self.server.clone()
    }

    /// A session starts with an empty log: what an earlier one (or worker) left was told.
    pub(crate) fn clear(&self) {
        let _ = std::fs::remove_file(&self.log);
    }

    /// Turns the calls logged since `offset` into run events; returns the new offset. Only
    /// whole lines are read: a call being written is read next time.
    pub(crate) fn drain(&mut self, offset: u64, round: u32, events: &EventSink) -> u64 {
        let Ok(mut file) = std::fs::File::open(&self.log) else {
            return offset;
        };
        if file.seek(SeekFrom::Start(offset)).is_err() {
            return offset;
        }
        let mut reader = std::io::BufReader::new(file);
        let mut offset = offset;
        let mut line = String::new();
        while let Ok(n) = reader.read_line(&mut line) {
            if n == 0 || !line.ends_with('\n') {
                break;
            }
            offset += n as u64;
            match serde_json::from_str::<VerifyCall>(&line) {
                Ok(call) => {
                    self.calls += 1;
                    emit(events, self.calls, round, &call);
                }
                Err(e) => events.info(
                    Some(Phase::Agent),
                    format!("verify: a call's record cannot be read ({e})"),
                ),
            }
            line.clear();
        }
        offset
    }
}

fn emit(events: &EventSink, number: u32, round: u32, call: &VerifyCall) {
    let failed: Vec<String> = call
        .checks
        .iter()
        .filter(|c| c.outcome != CheckOutcome::Passed)
        .map(|c| format!("{} `{}`", c.stage, c.command))
        .collect();
    let message = if failed.is_empty() {
        format!(
            "verify (call {number}): all {} checks passed",
            call.checks.len()
        )
    } else {
        format!("verify (call {number}): {} failed", failed.join(", "))
    };
    events.emit(
        EventKind::Check,
        Some(Phase::Agent),
        message,
        serde_json::json!({"verify": {
            "call": number, "round": round, "passed": call.passed, "failed": failed,
            "checks": call.checks,
        }}),
    );
}
