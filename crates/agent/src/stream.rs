//! Running an agent CLI that writes one JSON object per line: raw output kept, lines parsed into
//! events, stop honoured, and an agent that lingers after its final word killed after a grace.

use std::time::Duration;

use nightshift_core::{AgentEvent, OutputStream};
use nightshift_sandbox::{Exit, ProcessSpec, Sandbox, SandboxError};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::raw::RawLog;
use crate::{AgentError, Result};

/// Events longer than this are cut: the raw log keeps the whole line.
const MAX_EVENT_TEXT: usize = 8 * 1024;
const STDERR_TAIL_LINES: usize = 20;

/// Turns an agent's JSON lines into events, keeping what the outcome needs.
pub(crate) trait LineParser: Send {
    fn parse(&mut self, value: &Value) -> Vec<AgentEvent>;
    /// Whether the agent has said its last word (it may not have exited yet).
    fn finished(&self) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamEnd {
    /// The agent exited by itself.
    Exited(Exit),
    /// `stop` fired and the process group is gone.
    Stopped,
    /// The agent had finished (or closed its output) but did not exit within the grace; killed.
    Lingered,
}

pub(crate) struct StreamRun {
    pub(crate) end: StreamEnd,
    pub(crate) stderr_tail: Vec<String>,
}

impl StreamRun {
    /// The exit to report: a lingering agent was killed by us.
    pub(crate) fn exit(&self) -> Exit {
        match self.end {
            StreamEnd::Exited(exit) => exit,
            StreamEnd::Stopped | StreamEnd::Lingered => Exit::Killed,
        }
    }

    pub(crate) fn stderr_summary(&self) -> Option<String> {
        let text = self.stderr_tail.join("\n");
        let text = text.trim();
        (!text.is_empty()).then(|| cut(text, 2000))
    }
}

/// Maps a spawn failure for a missing program to an error that says how to install it.
pub(crate) fn spawn_error(err: SandboxError, install_hint: &str) -> AgentError {
    match err {
        SandboxError::Spawn {
            program, source, ..
        } if source.kind() == std::io::ErrorKind::NotFound => AgentError::MissingBinary {
            command: program,
            hint: install_hint.to_string(),
        },
        other => AgentError::Sandbox(other),
    }
}

pub(crate) struct StreamOptions<'a> {
    pub(crate) sandbox: &'a Sandbox,
    pub(crate) spec: &'a ProcessSpec,
    pub(crate) install_hint: &'a str,
    pub(crate) after_final_grace: Duration,
}

enum Step {
    Line(Option<nightshift_sandbox::OutputLine>),
    Stop,
    Linger,
}

pub(crate) async fn run_json_lines(
    options: StreamOptions<'_>,
    parser: &mut dyn LineParser,
    raw: &mut RawLog,
    events: &mpsc::Sender<AgentEvent>,
    stop: &CancellationToken,
) -> Result<StreamRun> {
    let mut process = options
        .sandbox
        .spawn(options.spec)
        .map_err(|e| spawn_error(e, options.install_hint))?;
    let pgid = process.pgid();
    raw.note(json!({"type": "nightshift.process", "pgid": pgid, "program": options.spec.program}))?;
    let mut stderr_tail: Vec<String> = Vec::new();
    let mut final_deadline = None;
    loop {
        if final_deadline.is_none() && parser.finished() {
            final_deadline = Some(tokio::time::Instant::now() + options.after_final_grace);
        }
        let step = tokio::select! {
            biased;
            _ = stop.cancelled() => Step::Stop,
            _ = sleep_until(final_deadline) => Step::Linger,
            line = process.next_line() => Step::Line(line),
        };
        let line = match step {
            Step::Stop => {
                process.terminate().await?;
                return Ok(StreamRun {
                    end: StreamEnd::Stopped,
                    stderr_tail,
                });
            }
            Step::Linger => {
                tracing::info!(
                    pgid,
                    "agent did not exit after its final message; stopping it"
                );
                process.terminate().await?;
                return Ok(StreamRun {
                    end: StreamEnd::Lingered,
                    stderr_tail,
                });
            }
            Step::Line(None) => break,
            Step::Line(Some(line)) => line,
        };
        raw.agent_line(line.stream, &line.text, line.truncated)?;
        for event in line_events(parser, &line, &mut stderr_tail) {
            let _ = events.send(event).await;
        }
    }
    // Output is closed; the process should be exiting. Do not trust it to.
    let grace = options.after_final_grace;
    let exited = tokio::select! {
        biased;
        _ = stop.cancelled() => None,
        exit = tokio::time::timeout(grace, process.wait()) => exit.ok(),
    };
    let end = match exited {
        Some(exit) => StreamEnd::Exited(exit?),
        None if stop.is_cancelled() => {
            process.terminate().await?;
            StreamEnd::Stopped
        }
        None => {
            process.terminate().await?;
            StreamEnd::Lingered
        }
    };
    Ok(StreamRun { end, stderr_tail })
}

fn line_events(
    parser: &mut dyn LineParser,
    line: &nightshift_sandbox::OutputLine,
    stderr_tail: &mut Vec<String>,
) -> Vec<AgentEvent> {
    if line.stream == OutputStream::Stderr {
        if stderr_tail.len() == STDERR_TAIL_LINES {
            stderr_tail.remove(0);
        }
        stderr_tail.push(cut(&line.text, 1000));
        return vec![AgentEvent::Output {
            stream: OutputStream::Stderr,
            line: cut(&line.text, MAX_EVENT_TEXT),
        }];
    }
    if line.truncated {
        return vec![AgentEvent::Error {
            message: format!(
                "the agent wrote a line of more than 16 MiB; it was cut and kept in the raw log: {}",
                cut(&line.text, 200)
            ),
        }];
    }
    if line.text.trim().is_empty() {
        return Vec::new();
    }
    match serde_json::from_str::<Value>(&line.text) {
        Ok(value) if value.is_object() => parser.parse(&value),
        // Not part of the structured stream (a warning, a half-written line before a crash).
        _ => vec![AgentEvent::Output {
            stream: OutputStream::Stdout,
            line: cut(&line.text, MAX_EVENT_TEXT),
        }],
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
pub(crate) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end)
}
