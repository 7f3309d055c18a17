//! Live wake-ups for followers of a run's events: an in-process broadcast, fed on PostgreSQL by
//! `LISTEN/NOTIFY` so an API node wakes when a worker on another machine appends.
//!
//! Measured against polling the event table by sequence number (docs/benchmarks.md, "Store"):
//! a notification reaches a follower in about a millisecond and costs nothing while a run is
//! quiet, where polling trades latency for a query per follower per interval.

use std::sync::Arc;
use std::time::Duration;

use nightshift_core::RunEvent;
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::{Result, Store};

/// The notification channel `append_events` signals on PostgreSQL; the payload is the run id.
pub(crate) const CHANNEL: &str = "nightshift_run_events";

/// Sent instead of a run id when wake-ups may have been lost (the listening connection dropped
/// and was re-established): every follower should look again.
pub const ANY_RUN: i64 = 0;

/// How often a follower looks even without a wake-up, in case one was lost anyway.
const FALLBACK_POLL: Duration = Duration::from_secs(2);

/// Stops the relay task when the last clone of the store is dropped.
pub(crate) struct Relay(JoinHandle<()>);

impl Drop for Relay {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Listens on its own connection (a pooled `Any` connection cannot) and forwards every
/// notification into the store's broadcast. Listening starts before this returns, so nothing
/// appended after `Store::connect` is missed.
pub(crate) async fn start_relay(url: &str, wake: broadcast::Sender<i64>) -> Result<Arc<Relay>> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(CHANNEL).await?;
    let task = tokio::spawn(async move {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match notification.payload().parse::<i64>() {
                    Ok(run_id) => {
                        let _ = wake.send(run_id);
                    }
                    Err(_) => tracing::warn!(
                        payload = notification.payload(),
                        "ignoring a run-event notification that is not a run id"
                    ),
                },
                Ok(None) => {
                    tracing::warn!("event listener connection lost; reconnecting");
                    let _ = wake.send(ANY_RUN);
                }
                Err(error) => {
                    tracing::warn!(%error, "event listener failed; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = wake.send(ANY_RUN);
                }
            }
        }
    });
    Ok(Arc::new(Relay(task)))
}

/// Follows one run's events from a sequence number on: each [`next`](RunFollower::next) returns
/// the events appended since the last, waiting for a wake-up when there are none yet.
pub struct RunFollower {
    store: Store,
    run_id: i64,
    after: i64,
    wake: broadcast::Receiver<i64>,
}

impl RunFollower {
    /// The sequence number of the last event returned.
    pub fn position(&self) -> i64 {
        self.after
    }

    /// The next events (at most `limit`), waiting until there is at least one.
    pub async fn next(&mut self, limit: u32) -> Result<Vec<RunEvent>> {
        loop {
            let events = self.store.events(self.run_id, self.after, limit).await?;
            if let Some(last) = events.last() {
                self.after = last.seq;
                return Ok(events);
            }
            self.wait().await;
        }
    }

    async fn wait(&mut self) {
        let deadline = tokio::time::sleep(FALLBACK_POLL);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                woke = self.wake.recv() => match woke {
                    Ok(id) if id == self.run_id || id == ANY_RUN => return,
                    Ok(_) => continue,
                    // Missed some wake-ups: ours may be among them.
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    // The store is gone; the fallback poll still ends the wait.
                    Err(broadcast::error::RecvError::Closed) => {
                        deadline.as_mut().await;
                        return;
                    }
                },
            }
        }
    }
}

impl Store {
    /// Follows the events of `run_id` with `seq > after`, in order, as they are appended by
    /// any worker (any process on PostgreSQL, this process on SQLite).
    pub fn follow(&self, run_id: i64, after: i64) -> RunFollower {
        // Subscribe before the first read, so an append in between still wakes us.
        RunFollower {
            wake: self.subscribe(),
            store: self.clone(),
            run_id,
            after,
        }
    }
}
