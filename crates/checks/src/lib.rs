//! The repository's own checks: found in `.nightshift.toml` or detected from what the
//! repository and its CI files say, each with the evidence it was found from; run in order
//! (setup, then format in apply mode, lint and test in check mode), each reported with its
//! command, exit status, duration and the output lines that matter. The baseline — the plan on
//! the unchanged base commit — tells a check that cannot run here from one that already fails.
//! The test-tampering guard (`guard`) reads the change itself for what makes checks pass
//! without fixing anything; the `verify` tool serves the checks to the agent while it works.

mod baseline;
mod config;
mod detect;
pub mod guard;
mod plan;
mod run;
pub mod verify;

pub use baseline::{Baseline, Blocker, CannotRun, LookedIn};
pub use config::{CONFIG_FILE, discover};
pub use plan::{CheckPlan, Evidence, SETUP_INPUTS, Stage};
pub use run::{CheckRunner, LineTaken, trim_output};

#[derive(Debug, thiserror::Error)]
pub enum ChecksError {
    #[error("{file} is not valid: {message}")]
    InvalidConfig { file: String, message: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Sandbox(#[from] nightshift_sandbox::SandboxError),
    #[error("stopped")]
    Stopped,
}

pub type Result<T, E = ChecksError> = std::result::Result<T, E>;
