use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nightshift_core::OutputStream;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::{Result, SandboxError};

/// Lines longer than this are cut; the cut is marked so nobody mistakes it for the whole line.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// What to run, where, and with exactly which environment (nothing is inherited).
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub env: Vec<(String, String)>,
}

impl ProcessSpec {
    pub fn new(program: impl Into<String>, cwd: impl Into<PathBuf>) -> Self {
        ProcessSpec {
            program: program.into(),
            args: Vec::new(),
            cwd: cwd.into(),
            env: Vec::new(),
        }
    }

    /// `sh -c <script>`: how repository checks and `command` agents are run.
    pub fn shell(script: &str, cwd: impl Into<PathBuf>) -> Self {
        ProcessSpec::new("sh", cwd).arg("-c").arg(script)
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.env.retain(|(k, _)| *k != key);
        self.env.push((key, value.into()));
        self
    }

    pub fn display(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// One line of a process's output. Invalid UTF-8 is replaced, never dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputLine {
    pub stream: OutputStream,
    pub text: String,
    pub truncated: bool,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    /// Nightshift stopped it (cancel, timeout, budget).
    Killed,
}

impl Exit {
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }

    pub fn code(self) -> Option<i32> {
        match self {
            Exit::Code(c) => Some(c),
            _ => None,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "killed by signal {s}"),
            Exit::Killed => f.write_str("stopped by Nightshift"),
        }
    }
}

/// Starts processes with a scrubbed environment: only `base_env` and the spec's own variables.
#[derive(Debug, Clone)]
pub struct Sandbox {
    base_env: Vec<(String, String)>,
    grace: Duration,
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

impl Sandbox {
    /// A sandbox whose processes see only `PATH` (from the server) and a UTF-8 locale.
    pub fn new() -> Self {
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        Sandbox {
            base_env: vec![("PATH".into(), path), ("LANG".into(), "C.UTF-8".into())],
            grace: Duration::from_secs(2),
        }
    }

    /// How long each signal of the SIGINT → SIGTERM → SIGKILL escalation waits.
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    pub fn spawn(&self, spec: &ProcessSpec) -> Result<RunningProcess> {
        Ok(self.start(spec, false)?.0)
    }

    /// Like [`Sandbox::spawn`], with a pipe to the process's stdin, for agents that speak a
    /// protocol on stdio (Agent Client Protocol).
    pub fn spawn_with_stdin(
        &self,
        spec: &ProcessSpec,
    ) -> Result<(RunningProcess, tokio::process::ChildStdin)> {
        let (process, stdin) = self.start(spec, true)?;
        match stdin {
            Some(stdin) => Ok((process, stdin)),
            None => Err(SandboxError::Spawn {
                program: spec.program.clone(),
                hint: String::new(),
                source: std::io::Error::other("stdin pipe was not created"),
            }),
        }
    }

    fn start(
        &self,
        spec: &ProcessSpec,
        with_stdin: bool,
    ) -> Result<(RunningProcess, Option<tokio::process::ChildStdin>)> {
        if !Path::new(&spec.cwd).is_dir() {
            return Err(SandboxError::MissingDir(spec.cwd.clone()));
        }
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .current_dir(&spec.cwd)
            .env_clear()
            .envs(self.base_env.iter().map(|(k, v)| (k, v)))
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(if with_stdin {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|source| SandboxError::Spawn {
            program: spec.program.clone(),
            hint: if source.kind() == std::io::ErrorKind::NotFound {
                " (not found on PATH: install it or give its absolute path)".into()
            } else {
                String::new()
            },
            source,
        })?;
        let pgid = child.id().map(|p| p as i32).unwrap_or_default();
        let (tx, rx) = mpsc::channel(1024);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(read_lines(out, OutputStream::Stdout, tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(read_lines(err, OutputStream::Stderr, tx));
        }
        let stdin = child.stdin.take();
        Ok((
            RunningProcess {
                child,
                pgid,
                lines: rx,
                program: spec.program.clone(),
                grace: self.grace,
                exit: None,
            },
            stdin,
        ))
    }

    /// Runs to the end and returns the exit and all output lines. For short commands (git).
    pub async fn output(&self, spec: &ProcessSpec) -> Result<(Exit, Vec<OutputLine>)> {
        let mut process = self.spawn(spec)?;
        let mut lines = Vec::new();
        while let Some(line) = process.next_line().await {
            lines.push(line);
        }
        let exit = process.wait().await?;
        Ok((exit, lines))
    }
}

/// A started process. Dropping it kills the direct child; [`RunningProcess::terminate`] kills
/// the whole group and confirms it is gone.
pub struct RunningProcess {
    child: Child,
    pgid: i32,
    lines: mpsc::Receiver<OutputLine>,
    program: String,
    grace: Duration,
    exit: Option<Exit>,
}

impl RunningProcess {
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// The next line from stdout or stderr, `None` once both are closed.
    pub async fn next_line(&mut self) -> Option<OutputLine> {
        self.lines.recv().await
    }

    /// Waits for the process to exit, then kills whatever it left behind in its group.
    pub async fn wait(&mut self) -> Result<Exit> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        let status = self
            .child
            .wait()
            .await
            .map_err(|source| SandboxError::Wait {
                program: self.program.clone(),
                source,
            })?;
        let exit = match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(c), _) => Exit::Code(c),
            (None, Some(s)) => Exit::Signal(s),
            (None, None) => Exit::Code(-1),
        };
        // Background children of a finished process must not outlive it.
        self.kill_group(Signal::SIGKILL).await?;
        self.exit = Some(exit);
        Ok(exit)
    }

    /// Stops the whole group: SIGINT, then SIGTERM, then SIGKILL, each after a grace period.
    /// Returns only when no process of the group is left.
    pub async fn terminate(&mut self) -> Result<Exit> {
        if self.exit.is_some() && !group_alive(self.pgid) {
            return Ok(Exit::Killed);
        }
        for signal in [Signal::SIGINT, Signal::SIGTERM] {
            let _ = killpg(Pid::from_raw(self.pgid), signal);
            if self.wait_gone(self.grace).await {
                let _ = self.child.wait().await;
                self.exit = Some(Exit::Killed);
                return Ok(Exit::Killed);
            }
        }
        self.kill_group(Signal::SIGKILL).await?;
        let _ = self.child.wait().await;
        self.exit = Some(Exit::Killed);
        Ok(Exit::Killed)
    }

    async fn kill_group(&mut self, signal: Signal) -> Result<()> {
        let _ = killpg(Pid::from_raw(self.pgid), signal);
        if self.wait_gone(Duration::from_secs(10)).await {
            Ok(())
        } else {
            Err(SandboxError::Unkillable(self.pgid))
        }
    }

    async fn wait_gone(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            // Reap our own child so it does not linger as a zombie of the group.
            let _ = self.child.try_wait();
            if !group_alive(self.pgid) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Whether any live (non-zombie) process belongs to process group `pgid`.
pub fn group_alive(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // Fields after the parenthesised command name: state, ppid, pgrp, …
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        state != "Z" && state != "X" && pgrp == Some(pgid)
    })
}

async fn read_lines(
    stream: impl AsyncRead + Unpin,
    which: OutputStream,
    tx: mpsc::Sender<OutputLine>,
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut truncated = false;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) | Err(_) => break,
            Ok(chunk) => chunk,
        };
        let (take, ended) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = MAX_LINE_BYTES.saturating_sub(line.len());
        let data = &chunk[..take];
        let body = if ended { &data[..data.len() - 1] } else { data };
        if body.len() > room {
            truncated = true;
        }
        line.extend_from_slice(&body[..body.len().min(room)]);
        reader.consume(take);
        if ended {
            let text = finish_line(&mut line);
            if tx
                .send(OutputLine {
                    stream: which,
                    text,
                    truncated,
                })
                .await
                .is_err()
            {
                return;
            }
            truncated = false;
        }
    }
    if !line.is_empty() {
        let text = finish_line(&mut line);
        let _ = tx
            .send(OutputLine {
                stream: which,
                text,
                truncated,
            })
            .await;
    }
}

fn finish_line(line: &mut Vec<u8>) -> String {
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    let text = String::from_utf8_lossy(line).into_owned();
    line.clear();
    text
}
