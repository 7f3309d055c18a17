//! Running one check command and condensing its output to the lines a person (or an agent
//! being sent back to work) needs.

use std::path::Path;
use std::time::Instant;

use nightshift_core::{CheckOutcome, CheckResult};
use nightshift_sandbox::{Exit, OutputLine, ProcessSpec, Sandbox};
use tokio_util::sync::CancellationToken;

use crate::{ChecksError, Result, Stage};

/// At most this much output is kept per check: the lines that matter, not 10 MB of log.
const MAX_TRIMMED_BYTES: usize = 8 * 1024;
const TAIL_LINES: usize = 20;
const MATCH_LINES: usize = 40;

pub struct CheckRunner {
    sandbox: Sandbox,
    env: Vec<(String, String)>,
}

impl CheckRunner {
    /// `env` is the whole environment checks get besides the sandbox's base (e.g. HOME).
    pub fn new(sandbox: Sandbox, env: Vec<(String, String)>) -> Self {
        CheckRunner { sandbox, env }
    }

    /// Runs `command` in `dir`, passing each output line to `on_line`. When `stop` fires the
    /// process group is killed and [`ChecksError::Stopped`] returned.
    pub async fn run(
        &self,
        stage: Stage,
        command: &str,
        dir: &Path,
        round: u32,
        stop: &CancellationToken,
        on_line: &mut (dyn FnMut(&OutputLine) + Send),
    ) -> Result<CheckResult> {
        let mut spec = ProcessSpec::shell(command, dir);
        for (k, v) in &self.env {
            spec = spec.env(k.clone(), v.clone());
        }
        let started = Instant::now();
        let mut process = self.sandbox.spawn(&spec)?;
        let mut lines = Vec::new();
        loop {
            tokio::select! {
                line = process.next_line() => match line {
                    Some(line) => {
                        on_line(&line);
                        lines.push(line.text);
                    }
                    None => break,
                },
                _ = stop.cancelled() => {
                    process.terminate().await?;
                    return Err(ChecksError::Stopped);
                }
            }
        }
        let exit = tokio::select! {
            exit = process.wait() => exit?,
            _ = stop.cancelled() => {
                process.terminate().await?;
                return Err(ChecksError::Stopped);
            }
        };
        Ok(CheckResult {
            stage: stage.as_str().into(),
            command: command.into(),
            outcome: if exit.success() {
                CheckOutcome::Passed
            } else {
                CheckOutcome::Failed
            },
            exit_code: match exit {
                Exit::Code(c) => Some(c),
                _ => None,
            },
            signal: match exit {
                Exit::Signal(s) => Some(s),
                _ => None,
            },
            duration_ms: started.elapsed().as_millis() as u64,
            output: trim_output(&lines),
            round,
        })
    }
}

/// The lines that explain a failure: those that look like errors, plus the tail, in order.
pub fn trim_output(lines: &[String]) -> String {
    const SIGNS: [&str; 10] = [
        "error",
        "fail",
        "panic",
        "assert",
        "expected",
        "warning:",
        "exception",
        "traceback",
        "not ok",
        "fatal",
    ];
    let tail_from = lines.len().saturating_sub(TAIL_LINES);
    let mut matched = 0;
    let mut keep = Vec::new();
    let mut skipped = false;
    for (i, line) in lines.iter().enumerate() {
        let lower = line.to_lowercase();
        let interesting = matched < MATCH_LINES && SIGNS.iter().any(|s| lower.contains(s));
        if i >= tail_from || interesting {
            if interesting && i < tail_from {
                matched += 1;
            }
            if skipped {
                keep.push("…".to_string());
                skipped = false;
            }
            keep.push(line.clone());
        } else {
            skipped = true;
        }
    }
    let mut out = keep.join("\n");
    if out.len() > MAX_TRIMMED_BYTES {
        let mut cut = out.len() - MAX_TRIMMED_BYTES;
        while !out.is_char_boundary(cut) {
            cut += 1;
        }
        out = format!("…{}", &out[cut..]);
    }
    out
}
