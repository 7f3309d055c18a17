//! A started process tree: its output read line by line, its end awaited, and its whole group
//! stopped and confirmed gone.

use std::sync::Arc;
use std::time::Duration;

use nightshift_core::{OutputStream, Redactor};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Child;
use tokio::sync::mpsc;

use crate::limits::CgroupLease;
use crate::process::{Exit, OutputLine};
use crate::tmp::ProcessTmp;
use crate::{Result, SandboxError};

/// Lines longer than this are cut; the cut is marked so nobody mistakes it for the whole line.
const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// A started process. Dropping it kills the direct child; [`RunningProcess::terminate`] kills
/// the whole group and confirms it is gone.
pub struct RunningProcess {
    child: Child,
    pgid: i32,
    lines: mpsc::Receiver<OutputLine>,
    program: String,
    grace: Duration,
    exit: Option<Exit>,
    /// The group leader is bwrap and its child the namespace's init; see `terminate`.
    confined: bool,
    held: Held,
}

/// What a confined process holds until it is gone: its cgroups and its own `/tmp`.
#[derive(Debug, Default)]
pub(crate) struct Held {
    pub(crate) cgroup: Option<CgroupLease>,
    pub(crate) tmp: Option<ProcessTmp>,
}

impl RunningProcess {
    /// Watches a spawned child: its output is read line by line (through `redactor`) until
    /// both streams close.
    pub(crate) fn watch(
        mut child: Child,
        program: String,
        grace: Duration,
        confined: bool,
        held: Held,
        redactor: Option<Arc<Redactor>>,
    ) -> Self {
        let pgid = child.id().map(|p| p as i32).unwrap_or_default();
        let (tx, rx) = mpsc::channel(1024);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(read_lines(
                out,
                OutputStream::Stdout,
                tx.clone(),
                redactor.clone(),
            ));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(read_lines(err, OutputStream::Stderr, tx, redactor));
        }
        RunningProcess {
            child,
            pgid,
            lines: rx,
            program,
            grace,
            exit: None,
            confined,
            held,
        }
    }

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
        self.release();
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
            let mut grace = self.grace;
            if self.confined {
                // bwrap dies of SIGINT and takes the namespace with it at once, so the graceful
                // signals go to the sandboxed processes only, not to bwrap or its init. The
                // namespace also ends the moment the command itself exits, killing what it
                // started mid-way (an agent's session file half written): what the command
                // started gets the signal first, the command once they are gone (or half the
                // grace has passed).
                let pgid = self.pgid;
                let members: Vec<(i32, i32)> = group_members(pgid).collect();
                let inits: Vec<i32> = members
                    .iter()
                    .filter(|(_, ppid)| *ppid == pgid)
                    .map(|(pid, _)| *pid)
                    .collect();
                // Recorded now: an orphan reparented to init later is not the command.
                let commands: Vec<i32> = members
                    .iter()
                    .filter(|(_, ppid)| inits.contains(ppid))
                    .map(|(pid, _)| *pid)
                    .collect();
                let bwrap = |pid: i32, ppid: i32| pid == pgid || ppid == pgid;
                let spared = |pid: i32, ppid: i32| bwrap(pid, ppid) || commands.contains(&pid);
                signal_group_except(pgid, signal, spared);
                let half = grace / 2;
                let deadline = tokio::time::Instant::now() + half;
                let mut pause = Duration::from_millis(1);
                while group_members(pgid).any(|(pid, ppid)| !spared(pid, ppid))
                    && tokio::time::Instant::now() < deadline
                {
                    let _ = self.child.try_wait();
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                signal_group_except(pgid, signal, bwrap);
                grace -= half;
            } else {
                let _ = killpg(Pid::from_raw(self.pgid), signal);
            }
            if self.wait_gone(grace).await {
                let _ = self.child.wait().await;
                self.release();
                self.exit = Some(Exit::Killed);
                return Ok(Exit::Killed);
            }
        }
        self.kill_group(Signal::SIGKILL).await?;
        let _ = self.child.wait().await;
        self.release();
        self.exit = Some(Exit::Killed);
        Ok(Exit::Killed)
    }

    fn release(&mut self) {
        if let Some(mut cgroup) = self.held.cgroup.take() {
            cgroup.remove();
        }
        if let Some(mut tmp) = self.held.tmp.take() {
            tmp.remove();
        }
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
        // A killed tree is usually gone within a millisecond or two: poll fast first, then back
        // off, so a short command does not pay a fixed 20 ms.
        let mut pause = Duration::from_millis(1);
        loop {
            // Reap our own child so it does not linger as a zombie of the group.
            let _ = self.child.try_wait();
            if !group_alive(self.pgid) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}

/// Whether any live (non-zombie) process belongs to process group `pgid`. A confined tree's
/// group holds bwrap and the PID namespace's init, whose death kills everything inside.
pub fn group_alive(pgid: i32) -> bool {
    group_members(pgid).next().is_some()
}

/// Live members of group `pgid` as (pid, ppid).
fn group_members(pgid: i32) -> impl Iterator<Item = (i32, i32)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(move |entry| {
            let pid = entry.file_name().to_str()?.parse::<i32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // Fields after the parenthesised command name: state, ppid, pgrp, …
            let rest = stat.rfind(')').map(|i| &stat[i + 1..])?;
            let mut fields = rest.split_whitespace();
            let state = fields.next()?;
            let ppid = fields.next()?.parse::<i32>().ok()?;
            let pgrp = fields.next()?.parse::<i32>().ok()?;
            (state != "Z" && state != "X" && pgrp == pgid).then_some((pid, ppid))
        })
}

fn signal_group_except(pgid: i32, signal: Signal, spare: impl Fn(i32, i32) -> bool) {
    for (pid, ppid) in group_members(pgid) {
        if !spare(pid, ppid) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
    }
}

async fn read_lines(
    stream: impl AsyncRead + Unpin,
    which: OutputStream,
    tx: mpsc::Sender<OutputLine>,
    redactor: Option<Arc<Redactor>>,
) {
    let redact = |text: String| match &redactor {
        Some(r) => match r.redact(&text) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(masked) => masked,
        },
        None => text,
    };
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
            let text = redact(finish_line(&mut line));
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
        let text = redact(finish_line(&mut line));
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
