//! The run's event sink: phases, agent events and check output are queued and written in order,
//! in batches, by one writer per run. Every event passes the run's secret filter on the way in
//! and is cut to the run's event size; past the bytes a run may store, the output of its agent
//! and checks is dropped (its own phases, checks and errors never are), and output waits while
//! the writer is behind, so a noisy run neither fills the database nor the server's memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use nightshift_core::{AgentEvent, EventKind, Phase, Run, format_size};
use nightshift_sandbox::Redactor;
use nightshift_store::{NewEvent, Store};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::limits::{RunLimits, setting};

enum Item {
    /// `paced`: the queue room the event took, given back once it is stored.
    Event {
        event: NewEvent,
        paced: u32,
    },
    Flush(oneshot::Sender<()>),
}

/// How much queued output makes the agent and the checks wait for the writer: a burst of
/// output waits instead of piling up in the server's memory. In bytes of text plus
/// [`EVENT_OVERHEAD`] per event.
const QUEUE_ROOM: usize = 4 << 20;
/// What a queued event takes in memory besides its text, roughly (its allocations).
const EVENT_OVERHEAD: usize = 512;

/// Cheap to clone; every clone feeds the same ordered log.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Item>,
    /// Token shapes from the start; the run's own secrets once it knows them.
    redactor: Arc<RwLock<Option<Arc<Redactor>>>>,
    bounds: Arc<Bounds>,
}

/// What the run may still store, shared by every clone of the sink.
struct Bounds {
    limits: RunLimits,
    /// Bytes of the run's events stored or queued, from what earlier workers stored on.
    admitted: AtomicU64,
    /// Output was dropped at the limit, and the event saying so is queued.
    capped: AtomicBool,
    room: Arc<Semaphore>,
}

impl EventSink {
    /// Starts the writer for `run`, bounded by `limits`. It ends when every sink is dropped.
    pub fn start(
        store: Store,
        run: &Run,
        limits: RunLimits,
    ) -> (EventSink, tokio::task::JoinHandle<()>) {
        let run_id = run.id;
        let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
        let room = Arc::new(Semaphore::new(QUEUE_ROOM));
        let freed = room.clone();
        let writer = tokio::spawn(async move {
            let mut batch = Vec::new();
            let mut waiters = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                let mut paced = 0;
                // Take whatever else is already queued: one transaction per burst, not per line.
                while let Some(item) = next.take().or_else(|| rx.try_recv().ok()) {
                    match item {
                        Item::Event { event, paced: p } => {
                            batch.push(event);
                            paced += p as usize;
                        }
                        Item::Flush(done) => waiters.push(done),
                    }
                    if batch.len() >= 500 {
                        break;
                    }
                }
                if !batch.is_empty() {
                    if let Err(e) = store.append_events(run_id, &batch).await {
                        tracing::error!(run_id, error = %e, "cannot store run events");
                    }
                    // Dropped rather than cleared: a burst's buffer is not kept for good.
                    batch = Vec::new();
                }
                freed.add_permits(paced);
                for done in waiters.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        let redactor = Arc::new(RwLock::new(Redactor::shapes_only().ok().map(Arc::new)));
        let bounds = Arc::new(Bounds {
            limits,
            admitted: AtomicU64::new(run.event_bytes),
            capped: AtomicBool::new(false),
            room,
        });
        (
            EventSink {
                tx,
                redactor,
                bounds,
            },
            writer,
        )
    }

    /// Masks what `redactor` masks in every event from now on (every clone of this sink).
    pub fn set_redactor(&self, redactor: Redactor) {
        *self.redactor.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(redactor));
    }

    /// The filter events pass through, for the run's other stored text.
    pub fn redactor(&self) -> Option<Arc<Redactor>> {
        self.redactor
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// `text` with the run's secrets masked.
    pub fn redact(&self, text: &str) -> String {
        match self.redactor() {
            Some(r) => r.redact(text).into_owned(),
            None => text.to_string(),
        }
    }

    /// Queues an event of the run. Lines of the checks' output (`Log`) count as output: past
    /// the run's limit they are not stored. Everything else always is.
    pub fn emit(
        &self,
        kind: EventKind,
        phase: Option<Phase>,
        message: impl Into<String>,
        data: serde_json::Value,
    ) {
        let output = kind == EventKind::Log;
        if output && self.capped() {
            return;
        }
        let event = self.prepare(kind, phase, message.into(), data);
        if let Some((event, _)) = self.admit(event, output) {
            self.send(event, 0);
        }
    }

    /// Queues output of the run's processes (a line of a check, say): not stored past the
    /// run's limit, and waits while the writer is behind, so the output waits instead of piling
    /// up in memory.
    pub async fn output(
        &self,
        kind: EventKind,
        phase: Option<Phase>,
        message: impl Into<String>,
        data: serde_json::Value,
    ) {
        if self.capped() {
            return;
        }
        let event = self.prepare(kind, phase, message.into(), data);
        if let Some((event, bytes)) = self.admit(event, true) {
            self.queue_paced(event, bytes).await;
        }
    }

    pub fn info(&self, phase: Option<Phase>, message: impl Into<String>) {
        self.emit(EventKind::Info, phase, message, serde_json::Value::Null);
    }

    pub fn error(&self, phase: Option<Phase>, message: impl Into<String>) {
        self.emit(EventKind::Error, phase, message, serde_json::Value::Null);
    }

    /// Queues what the agent did. What it says and does counts as output (see [`Self::output`]);
    /// its start, usage, end and errors are always stored.
    pub async fn agent(&self, event: &AgentEvent) {
        let output = !matches!(
            event,
            AgentEvent::Started { .. }
                | AgentEvent::Usage { .. }
                | AgentEvent::Final { .. }
                | AgentEvent::Error { .. }
        );
        if output && self.capped() {
            return;
        }
        let message = match event {
            AgentEvent::Started { session_id, .. } => match session_id {
                Some(id) => format!("agent session {id} started"),
                None => "agent started".into(),
            },
            AgentEvent::Message { text } | AgentEvent::Thinking { text } => text.clone(),
            AgentEvent::ToolCall { name, input, .. } => {
                format!("{name} {}", short(&input.to_string()))
            }
            AgentEvent::ToolResult {
                output, is_error, ..
            } => {
                format!(
                    "{}{}",
                    if *is_error { "error: " } else { "" },
                    short(output)
                )
            }
            AgentEvent::FileDiff { path, .. } => format!("changed {path}"),
            AgentEvent::Usage { usage } => format!(
                "usage: {} in / {} out tokens, ${:.4}, {} turns",
                usage.input_tokens, usage.output_tokens, usage.cost_usd, usage.turns
            ),
            AgentEvent::Output { line, .. } => line.clone(),
            AgentEvent::Final { summary, .. } => {
                summary.clone().unwrap_or_else(|| "agent finished".into())
            }
            AgentEvent::Error { message } => message.clone(),
        };
        let data = serde_json::to_value(event).unwrap_or_default();
        let event = self.prepare(EventKind::Agent, Some(Phase::Agent), message, data);
        match self.admit(event, output) {
            Some((event, bytes)) if output => self.queue_paced(event, bytes).await,
            Some((event, _)) => self.send(event, 0),
            None => {}
        }
    }

    /// Whether output reached the run's limit: all later output is dropped unseen.
    fn capped(&self) -> bool {
        self.bounds.capped.load(Ordering::Relaxed)
    }

    /// The event as it may be stored: the run's secrets masked, then cut to the event size.
    fn prepare(
        &self,
        kind: EventKind,
        phase: Option<Phase>,
        mut message: String,
        mut data: serde_json::Value,
    ) -> NewEvent {
        let redactor = self.redactor();
        if let Some(redactor) = &redactor {
            if let std::borrow::Cow::Owned(masked) = redactor.redact(&message) {
                message = masked;
            }
            redact_json(redactor, &mut data);
        }
        let mut event = NewEvent {
            kind,
            phase,
            message,
            data,
        };
        if let Some(max) = self.bounds.limits.event_size {
            fit(&mut event, usize::try_from(max).unwrap_or(usize::MAX));
        }
        event
    }

    /// Counts `event` against what the run may store, and returns it to be queued — unless it
    /// is `output` past the limit: then it is dropped, and the first time that is said.
    /// The bytes it takes in the store come with it.
    fn admit(&self, event: NewEvent, output: bool) -> Option<(NewEvent, usize)> {
        let bounds = &self.bounds;
        let stored = event.stored_bytes();
        let bytes = stored as u64;
        let admitted = match (output, bounds.limits.stored_events) {
            (true, Some(limit)) => bounds
                .admitted
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n.saturating_add(bytes) <= limit).then_some(n + bytes)
                })
                .is_ok(),
            _ => {
                bounds.admitted.fetch_add(bytes, Ordering::Relaxed);
                true
            }
        };
        if !admitted {
            if !bounds.capped.swap(true, Ordering::Relaxed) {
                let limit = bounds.limits.stored_events.unwrap_or_default();
                let said = self.prepare(
                    EventKind::Info,
                    event.phase,
                    format!(
                        "this run's stored events reached {}, the limit ({}): later output of                          the agent and the checks is not stored, while the run goes on; raise                          the limit there to keep more",
                        format_size(limit),
                        setting("stored_events")
                    ),
                    serde_json::json!({"limit": {"name": "stored_events", "bytes": limit}}),
                );
                bounds
                    .admitted
                    .fetch_add(said.stored_bytes() as u64, Ordering::Relaxed);
                self.send(said, 0);
            }
            return None;
        }
        Some((event, stored))
    }

    fn send(&self, event: NewEvent, paced: u32) {
        let _ = self.tx.send(Item::Event { event, paced });
    }

    /// Queues `event` (`bytes` in the store) once there is room in the queue for it.
    async fn queue_paced(&self, event: NewEvent, bytes: usize) {
        let size = bytes + EVENT_OVERHEAD;
        let paced = size.min(QUEUE_ROOM) as u32;
        match self.bounds.room.acquire_many(paced).await {
            Ok(permit) => {
                permit.forget();
                self.send(event, paced);
            }
            // Never closed while a sink lives; queued without room rather than lost.
            Err(_) => self.send(event, 0),
        }
    }

    /// Waits until everything emitted so far is stored.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Item::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

fn short(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut cut = MAX;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &text[..cut])
}

/// The longest marker [`cut`] appends.
const MARKER_ROOM: usize = 48;

/// Cuts `text` to at most `max` bytes, ending with a marker saying how much was not kept.
fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut keep = max.saturating_sub(MARKER_ROOM);
    while !text.is_char_boundary(keep) {
        keep -= 1;
    }
    let dropped = text.len() - keep;
    text.truncate(keep);
    text.push_str(&format!("… [{dropped} more bytes not stored]"));
}

/// Cuts every string of a JSON value, keys included, to `max` bytes.
fn cut_json(value: &mut serde_json::Value, max: usize) {
    use serde_json::Value;
    match value {
        Value::String(s) => cut(s, max),
        Value::Array(items) => items.iter_mut().for_each(|v| cut_json(v, max)),
        Value::Object(map) if map.keys().any(|k| k.len() > max) => {
            let entries = std::mem::take(map);
            for (mut key, mut v) in entries {
                cut_json(&mut v, max);
                cut(&mut key, max);
                map.insert(key, v);
            }
        }
        Value::Object(map) => map.values_mut().for_each(|v| cut_json(v, max)),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Fits an event into `max` bytes of message and `max` bytes of stored data: the message and
/// every text in the data cut to `max`, then the data's texts shorter still while it is too
/// large, and as a last resort the data replaced by a note of its size (keeping its `type`).
fn fit(event: &mut NewEvent, max: usize) {
    cut(&mut event.message, max);
    let data_bytes = |e: &NewEvent| e.stored_bytes() - e.message.len();
    let mut each = max;
    while data_bytes(event) > max && each > 64 {
        cut_json(&mut event.data, each);
        each /= 2;
    }
    let bytes = data_bytes(event);
    if bytes > max {
        let kind = event.data.get("type").cloned();
        event.data = serde_json::json!({
            "type": kind,
            "truncated": format!("{bytes} bytes of data not stored"),
        });
    }
}

/// Masks secrets in every string of a JSON value, keys included. Done on the values rather
/// than the serialised text so an escaped secret (a PEM key's newlines) is found too.
fn redact_json(redactor: &Redactor, value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(masked) = redactor.redact(s) {
                *s = masked;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact_json(redactor, v)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut v) in entries {
                redact_json(redactor, &mut v);
                map.insert(redactor.redact(&key).into_owned(), v);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}
