//! What stops a run from outside its own work: a cancel request, its deadline, a lost lease, or
//! its worker shutting down. A watchdog beside the run renews the lease and notices each.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nightshift_core::{Run, now_millis};
use nightshift_store::StoreError;
use tokio_util::sync::CancellationToken;

use crate::Engine;

/// Why a run was stopped from outside its own work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StopCause {
    Cancelled,
    TimedOut,
    LeaseLost,
    /// The worker is shutting down and the run reached a checkpoint: handed back as it is.
    HandOver,
    /// The worker is shutting down and its grace period ran out before the next checkpoint.
    Shutdown,
    /// The run went past one of its disk limits; the message says which.
    OverLimit(String),
}

/// Renews the lease, notices cancel requests, enforces the deadline and worker shutdown.
pub(crate) async fn watch(
    engine: Arc<Engine>,
    run: Run,
    timeout_secs: u64,
    worker: String,
    stop: CancellationToken,
    cause: Arc<Mutex<Option<StopCause>>>,
    shutdown: CancellationToken,
) {
    let started = run.started_at.unwrap_or_else(now_millis);
    let remaining = (started + (timeout_secs as i64) * 1000 - now_millis()).max(0);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(remaining as u64);
    let stop_with = |c: StopCause| {
        cause
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(c);
        stop.cancel();
    };
    let mut grace_end = None;
    loop {
        let grace = async {
            match grace_end {
                Some(end) => tokio::time::sleep_until(end).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return stop_with(StopCause::TimedOut),
            _ = shutdown.cancelled(), if grace_end.is_none() => {
                grace_end = Some(tokio::time::Instant::now() + engine.config.shutdown_grace);
            }
            _ = grace => return stop_with(StopCause::Shutdown),
            _ = tokio::time::sleep(engine.config.heartbeat) => {
                match engine.store.heartbeat(run.id, &worker, engine.config.lease).await {
                    Ok(beat) if beat.cancel_requested => return stop_with(StopCause::Cancelled),
                    Ok(_) => {}
                    Err(StoreError::LeaseLost { .. }) => return stop_with(StopCause::LeaseLost),
                    Err(e) => tracing::warn!(run_id = run.id, error = %e, "heartbeat failed"),
                }
            }
        }
    }
}
