//! Live wake-ups for followers of a run's events: an in-process broadcast, fed on PostgreSQL by
//! `LISTEN/NOTIFY` so an API node wakes when a worker on another machine appends.
//!
//! Chosen over polling the event table by sequence number after measuring both
//! (docs/benchmarks.md, "Store"): a notification reaches a follower on another node in a few
//! milliseconds and costs nothing while a run is quiet, where polling every 100 ms waits 50 ms
//! on average and costs a query per follower per interval even when nothing happens.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use nightshift_core::{Run, RunEvent};
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, watch};
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

/// How many of a run's newest events a node keeps in memory for its followers.
const TAIL_WINDOW: usize = 1024;
/// And how much of them, roughly: a run of large events is followed from the database sooner
/// instead of held in memory.
const TAIL_BYTES: usize = 4 << 20;

/// Events of one run after `base`, contiguous and in order.
struct Window {
    base: i64,
    events: VecDeque<RunEvent>,
    /// What `events` take in memory, roughly (see [`weight`]).
    bytes: usize,
}

/// What an event takes in memory, roughly: its texts and a little per value.
fn weight(event: &RunEvent) -> usize {
    fn value(v: &serde_json::Value) -> usize {
        use serde_json::Value;
        16 + match v {
            Value::String(s) => s.len(),
            Value::Array(items) => items.iter().map(value).sum(),
            Value::Object(map) => map.iter().map(|(k, v)| k.len() + value(v)).sum(),
            Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        }
    }
    64 + event.message.len() + value(&event.data)
}

struct TailShared {
    window: RwLock<Window>,
    /// The newest sequence number in the window; followers wait for it to change.
    newest: watch::Sender<i64>,
    /// The run, once it ended and every one of its events was read: nothing more will come.
    ended: RwLock<Option<Run>>,
}

/// The newest events of one run, read once per wake-up and shared by every follower of the run
/// on this node: with 1,000 followers (browser tabs on one busy run) a wake-up costs one query,
/// not 1,000. Stops reading when its last follower is dropped.
pub(crate) struct RunTail {
    shared: Arc<TailShared>,
    task: JoinHandle<()>,
}

impl Drop for RunTail {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The live tails of this node, by run id; a tail lives as long as one of its followers.
pub(crate) type Tails = Arc<Mutex<HashMap<i64, Weak<RunTail>>>>;

/// Reads the run's new events into the window on every wake-up (and every [`FALLBACK_POLL`]
/// in case one was lost), until the run ended and its last event was read.
async fn read_tail(
    store: Store,
    run_id: i64,
    mut after: i64,
    shared: Arc<TailShared>,
    mut wake: broadcast::Receiver<i64>,
) {
    loop {
        // The status first: a run already ended then has appended its last event, so the
        // events read next are all of them. (Read after them, an end could hide a last event.)
        let ended = match store.run(run_id).await {
            Ok(Some(run)) if run.status.is_terminal() => Some(run),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(%error, run_id, "reading a followed run failed; retrying on the next wake-up");
                None
            }
        };
        let mut complete = true;
        loop {
            let events = match store.events(run_id, after, TAIL_WINDOW as u32).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%error, run_id, "reading new run events failed; retrying on the next wake-up");
                    complete = false;
                    break;
                }
            };
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            let full = events.len() == TAIL_WINDOW;
            {
                let mut window = write(&shared.window);
                window.bytes += events.iter().map(weight).sum::<usize>();
                window.events.extend(events);
                while window.events.len() > TAIL_WINDOW || window.bytes > TAIL_BYTES {
                    let Some(dropped) = window.events.pop_front() else {
                        break;
                    };
                    window.bytes -= weight(&dropped);
                    window.base = dropped.seq;
                }
            }
            after = last;
            shared.newest.send_replace(last);
            if !full {
                break;
            }
        }
        if let Some(run) = ended
            && complete
        {
            *shared.ended.write().unwrap_or_else(|e| e.into_inner()) = Some(run);
            // Wakes every follower, so those that have every event see the end.
            shared.newest.send_modify(|_| {});
            return;
        }
        wait_for_wake(&mut wake, run_id).await;
    }
}

async fn wait_for_wake(wake: &mut broadcast::Receiver<i64>, run_id: i64) {
    let deadline = tokio::time::sleep(FALLBACK_POLL);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            woke = wake.recv() => match woke {
                Ok(id) if id == run_id || id == ANY_RUN => return,
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

// A panic while holding the lock cannot leave the window half-written (each change is one
// push or pop), so a poisoned lock is still safe to use.
fn read(lock: &RwLock<Window>) -> std::sync::RwLockReadGuard<'_, Window> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write(lock: &RwLock<Window>) -> std::sync::RwLockWriteGuard<'_, Window> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// What [`RunFollower::next_or_end`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Followed {
    /// Events appended since the last call, in order.
    Events(Vec<RunEvent>),
    /// The run ended and every one of its events was returned: nothing more will come.
    Ended(Box<Run>),
}

/// Follows one run's events from a sequence number on: each [`next`](RunFollower::next) returns
/// the events appended since the last, waiting until there is one.
pub struct RunFollower {
    store: Store,
    run_id: i64,
    after: i64,
    tail: Option<Arc<RunTail>>,
}

impl RunFollower {
    /// The sequence number of the last event returned.
    pub fn position(&self) -> i64 {
        self.after
    }

    /// The next events (at most `limit`), waiting until there is at least one.
    pub async fn next(&mut self, limit: u32) -> Result<Vec<RunEvent>> {
        loop {
            if let Followed::Events(events) = self.follow(limit, false).await? {
                return Ok(events);
            }
        }
    }

    /// The next events (at most `limit`), waiting until there is at least one — or the run's
    /// end, once every event was returned. An ended run is noticed within [`FALLBACK_POLL`]
    /// on any node, at once on the node (SQLite) or database (PostgreSQL) that ended it.
    pub async fn next_or_end(&mut self, limit: u32) -> Result<Followed> {
        self.follow(limit, true).await
    }

    async fn follow(&mut self, limit: u32, until_end: bool) -> Result<Followed> {
        let limit = limit.max(1) as usize;
        let tail = self.attach();
        let mut newest = tail.shared.newest.subscribe();
        loop {
            // Mark what we have seen before looking, so a change while we look still wakes us.
            newest.borrow_and_update();
            // Read before the window: the end is set only once the window holds the last event.
            let ended = if until_end {
                tail.shared
                    .ended
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
            } else {
                None
            };
            let behind = {
                let window = read(&tail.shared.window);
                if self.after >= window.base {
                    let events: Vec<RunEvent> = window
                        .events
                        .iter()
                        .filter(|e| e.seq > self.after)
                        .take(limit)
                        .cloned()
                        .collect();
                    if let Some(last) = events.last() {
                        self.after = last.seq;
                        return Ok(Followed::Events(events));
                    }
                    false
                } else {
                    true
                }
            };
            if behind {
                // Older than the node keeps in memory: read the history from the database.
                let events = self
                    .store
                    .events(self.run_id, self.after, limit as u32)
                    .await?;
                if let Some(last) = events.last() {
                    self.after = last.seq;
                    return Ok(Followed::Events(events));
                }
            }
            if let Some(run) = ended {
                // This follower has every event up to the last one.
                return Ok(Followed::Ended(Box::new(run)));
            }
            // The tail (this follower holds it) outlives the wait; the sender cannot be gone.
            let _ = newest.changed().await;
        }
    }

    /// Joins the run's tail on this node, starting it when this is the first follower.
    fn attach(&mut self) -> Arc<RunTail> {
        if let Some(tail) = &self.tail {
            return tail.clone();
        }
        let mut tails = self.store.tails.lock().unwrap_or_else(|e| e.into_inner());
        tails.retain(|_, tail| tail.strong_count() > 0);
        let tail = match tails.get(&self.run_id).and_then(Weak::upgrade) {
            Some(tail) => tail,
            None => {
                let shared = Arc::new(TailShared {
                    window: RwLock::new(Window {
                        base: self.after,
                        events: VecDeque::new(),
                        bytes: 0,
                    }),
                    newest: watch::channel(self.after).0,
                    ended: RwLock::new(None),
                });
                // Subscribe before the first read, so an append in between still wakes it.
                let wake = self.store.subscribe();
                let task = tokio::spawn(read_tail(
                    self.store.clone(),
                    self.run_id,
                    self.after,
                    shared.clone(),
                    wake,
                ));
                let tail = Arc::new(RunTail { shared, task });
                tails.insert(self.run_id, Arc::downgrade(&tail));
                tail
            }
        };
        self.tail = Some(tail.clone());
        tail
    }
}

impl Store {
    /// Follows the events of `run_id` with `seq > after`, in order, as they are appended by
    /// any worker (any process on PostgreSQL, this process on SQLite). Followers of one run on
    /// one node share a single reader.
    pub fn follow(&self, run_id: i64, after: i64) -> RunFollower {
        RunFollower {
            store: self.clone(),
            run_id,
            after,
            tail: None,
        }
    }
}
