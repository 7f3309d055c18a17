//! Running a process for the engine: its own process group, a scrubbed environment, output
//! captured line by line (optionally redacted), a kill that escalates and is confirmed before it
//! returns, and confinement with bubblewrap — with the toolchains the server's user installed
//! under a home found and shown read-only ([`Toolchains`]).
//!
//! How a run uses it, one sandbox per phase (each with the network that phase needs):
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use nightshift_sandbox::{AllowedHost, ConfinementPolicy, Network, ProcessSpec, Redactor, Sandbox};
//! let run_dir = std::path::Path::new("/var/lib/nightshift/runs/42");
//! let policy = ConfinementPolicy::new(run_dir.join("workspace"), run_dir.join("home"))
//!     .hide("/var/lib/nightshift") // data dir: database, other runs, mirrors
//!     .hide("/etc/nightshift/server.key");
//! let redactor = Redactor::new(["<forge token>", "<model api key>"])?;
//! let agent = Sandbox::confined(
//!     policy.clone().network(Network::Allow(vec![AllowedHost::parse("api.anthropic.com")?])),
//! )?
//! .with_redactor(redactor.clone());
//! let checks = Sandbox::confined(policy.clone().network(Network::None))?
//!     .with_redactor(redactor);
//! let (exit, lines) = checks.output(&ProcessSpec::shell("cargo test", run_dir.join("workspace"))).await?;
//! // No network but one loopback port inside, relayed to a Unix socket outside (a gateway).
//! let gateway = Sandbox::confined(policy.forward(8401, "/run/nightshift/gateway.sock"))?;
//! # let _ = (agent, exit, lines, gateway);
//! # Ok(())
//! # }
//! ```

mod confine;
mod fds;
mod limits;
mod mount;
pub mod netfwd;
mod process;
mod programs;
mod proxy;
mod running;
mod tmp;
mod toolchains;

pub use confine::{
    Confinement, ConfinementPolicy, ConfinementSupport, Forward, Network, detect, find_on_path,
};
pub use limits::{LimitEnforcement, Limits};
pub use mount::{MountView, WorkspaceMount, overlay_support};
/// Every captured line passes through it (see [`Sandbox::with_redactor`]).
pub use nightshift_core::{MASK, MIN_SECRET_LEN, Redactor};
pub use process::{Exit, OutputLine, ProcessSpec, Sandbox};
pub use programs::{install_root, interpreter, resolve};
pub use proxy::AllowedHost;
pub use running::{RunningProcess, group_alive};
pub use toolchains::{HostEnv, Toolchain, Toolchains, cache_env, download_dirs};

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
    #[error("cannot create a /tmp for the process under {root}: {source}")]
    Tmp {
        root: PathBuf,
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
