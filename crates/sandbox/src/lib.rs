//! Running a process for the engine: its own process group, a scrubbed environment, output
//! captured line by line (optionally redacted), a kill that escalates and is confirmed before it
//! returns, and confinement with bubblewrap.

mod confine;
mod limits;
pub mod netfwd;
mod process;
mod proxy;
mod redact;

pub use confine::{Confinement, ConfinementPolicy, ConfinementSupport, Network, detect};
pub use limits::{LimitEnforcement, Limits};
pub use process::{Exit, OutputLine, ProcessSpec, RunningProcess, Sandbox, group_alive};
pub use proxy::AllowedHost;
pub use redact::{MASK, MIN_SECRET_LEN, Redactor};

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
    #[error(
        "confinement is not available: {0}. Install bubblewrap (scripts/install-system-deps.sh) \
         or choose Confinement::None explicitly"
    )]
    ConfinementUnavailable(String),
    #[error("invalid confinement policy: {0}")]
    Policy(String),
    #[error("{what}: {source}")]
    Limits {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("egress proxy: {what}: {source}")]
    Proxy {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = SandboxError> = std::result::Result<T, E>;
