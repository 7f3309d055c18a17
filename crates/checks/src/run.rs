//! Running one check command and condensing its output to the lines a person (or an agent
//! being sent back to work) needs.

use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Instant;

use nightshift_core::{CheckOutcome, CheckResult};
use nightshift_sandbox::{Exit, OutputLine, ProcessSpec, Sandbox};
use tokio_util::sync::CancellationToken;

use crate::{ChecksError, Result, Stage};

/// At most this much output is kept per check: the lines that matter, not 10 MB of log.
const MAX_TRIMMED_BYTES: usize = 8 * 1024;
const TAIL_LINES: usize = 20;
const MATCH_LINES: usize = 40;

/// What `on_line` returns: ready once the line is taken. The run's event log answers late while
/// it is behind, so a check printing without pause waits instead of piling lines up in memory.
pub type LineTaken = Pin<Box<dyn Future<Output = ()> + Send>>;

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
        on_line: &mut (dyn FnMut(&OutputLine) -> LineTaken + Send),
    ) -> Result<CheckResult> {
        let mut spec = ProcessSpec::shell(command, dir);
        for (k, v) in &self.env {
            spec = spec.env(k.clone(), v.clone());
        }
        let started = Instant::now();
        let mut process = self.sandbox.spawn(&spec)?;
        let mut kept = Trimmer::default();
        loop {
            tokio::select! {
                line = process.next_line() => match line {
                    Some(line) => {
                        on_line(&line).await;
                        kept.push(line.text);
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
            output: kept.finish(),
            round,
            failed_on_base: false,
        })
    }
}

/// The lines that explain a failure: those that look like errors, plus the tail, in order.
pub fn trim_output(lines: &[String]) -> String {
    let mut kept = Trimmer::default();
    for line in lines {
        kept.push(line.clone());
    }
    kept.finish()
}

/// The lines [`trim_output`] keeps, gathered as they come: the first lines that look like errors
/// and the last [`TAIL_LINES`], never the whole log (a check may print gigabytes).
#[derive(Default)]
struct Trimmer {
    /// The first [`MATCH_LINES`] lines that look like errors, with their line numbers.
    matched: Vec<(usize, String)>,
    tail: VecDeque<(usize, String)>,
    seen: usize,
}

impl Trimmer {
    fn push(&mut self, mut line: String) {
        // Lines naming a program that could not start are kept too: they tell a check that
        // cannot run here from one that fails (see `baseline`).
        const SIGNS: [&str; 14] = [
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
            "not found",
            "no such file",
            "permission denied",
            "no module named",
        ];
        let n = self.seen;
        self.seen += 1;
        // Only the end of the joined lines is kept, so no line needs more than its own end.
        if line.len() > MAX_TRIMMED_BYTES + 4 {
            let mut from = line.len() - MAX_TRIMMED_BYTES - 4;
            while !line.is_char_boundary(from) {
                from -= 1;
            }
            if self.matched.len() < MATCH_LINES && looks_like(&line, &SIGNS) {
                self.matched.push((n, line[from..].to_string()));
            }
            line.drain(..from);
        } else if self.matched.len() < MATCH_LINES && looks_like(&line, &SIGNS) {
            self.matched.push((n, line.clone()));
        }
        self.tail.push_back((n, line));
        if self.tail.len() > TAIL_LINES {
            self.tail.pop_front();
        }
    }

    fn finish(self) -> String {
        let tail_from = self.seen.saturating_sub(TAIL_LINES);
        let mut keep = Vec::new();
        let mut next = 0;
        let lines = self
            .matched
            .into_iter()
            .filter(|(n, _)| *n < tail_from)
            .chain(self.tail);
        for (n, line) in lines {
            if n > next {
                keep.push("…".to_string());
            }
            keep.push(line);
            next = n + 1;
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
}

fn looks_like(line: &str, signs: &[&str]) -> bool {
    let lower = line.to_lowercase();
    signs.iter().any(|s| lower.contains(s))
}
