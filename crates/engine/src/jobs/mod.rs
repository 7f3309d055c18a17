//! The engine's background jobs, started with its workers and stopped after them: the retention
//! sweeper and the pull request follower, with the follow-up runs it starts by itself.

mod automatic;
mod commands;
mod follow;
mod retention;

pub use retention::sweep_workspaces;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::Engine;

/// A background task that ends with its owner.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs every job until `stop` fires.
pub(crate) async fn run(engine: Arc<Engine>, stop: CancellationToken) {
    tokio::join!(
        retention::sweep(engine.clone(), stop.clone()),
        follow::follow_pull_requests(engine, stop),
    );
}
