//! Running a process for the engine: its own process group, a scrubbed environment, output
//! captured line by line, and a kill that escalates and is confirmed before it returns.

mod process;

pub use process::{Exit, OutputLine, ProcessSpec, RunningProcess, Sandbox, group_alive};

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("cannot start {program:?}: {source}{hint}")]
    Spawn {
        program: String,
        hint: String,
        #[source]
        source: std::io::Error,
    },
    #[error("working directory {0} does not exist")]
    MissingDir(PathBuf),
    #[error("waiting for {program:?} failed: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("processes of group {0} are still alive after SIGKILL")]
    Unkillable(i32),
}

pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
