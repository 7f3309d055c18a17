//! The run's event sink: phases, agent events and check output are queued without waiting and
//! written in order, in batches, by one writer per run. Every event passes the run's secret
//! filter on the way in.

use std::sync::{Arc, RwLock};

use nightshift_core::{AgentEvent, EventKind, Phase};
use nightshift_sandbox::Redactor;
use nightshift_store::{NewEvent, Store};
use tokio::sync::{mpsc, oneshot};

enum Item {
    Event(NewEvent),
    Flush(oneshot::Sender<()>),
}

/// Cheap to clone; every clone feeds the same ordered log.
#[derive(Clone)]
pub struct EventSink {
    tx: mpsc::UnboundedSender<Item>,
    /// Token shapes from the start; the run's own secrets once it knows them.
    redactor: Arc<RwLock<Option<Arc<Redactor>>>>,
}

impl EventSink {
    /// Starts the writer for `run_id`. It ends when every sink is dropped.
    pub fn start(store: Store, run_id: i64) -> (EventSink, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
        let writer = tokio::spawn(async move {
            let mut batch = Vec::new();
            let mut waiters = Vec::new();
            while let Some(first) = rx.recv().await {
                let mut next = Some(first);
                // Take whatever else is already queued: one transaction per burst, not per line.
                while let Some(item) = next.take().or_else(|| rx.try_recv().ok()) {
                    match item {
                        Item::Event(e) => batch.push(e),
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
                    batch.clear();
                }
                for done in waiters.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        let redactor = Arc::new(RwLock::new(Redactor::shapes_only().ok().map(Arc::new)));
        (EventSink { tx, redactor }, writer)
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

    pub fn emit(
        &self,
        kind: EventKind,
        phase: Option<Phase>,
        message: impl Into<String>,
        data: serde_json::Value,
    ) {
        let mut message = message.into();
        let mut data = data;
        if let Some(redactor) = self.redactor() {
            if let std::borrow::Cow::Owned(masked) = redactor.redact(&message) {
                message = masked;
            }
            redact_json(&redactor, &mut data);
        }
        let _ = self.tx.send(Item::Event(NewEvent {
            kind,
            phase,
            message,
            data,
        }));
    }

    pub fn info(&self, phase: Option<Phase>, message: impl Into<String>) {
        self.emit(EventKind::Info, phase, message, serde_json::Value::Null);
    }

    pub fn error(&self, phase: Option<Phase>, message: impl Into<String>) {
        self.emit(EventKind::Error, phase, message, serde_json::Value::Null);
    }

    pub fn agent(&self, event: &AgentEvent) {
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
        self.emit(EventKind::Agent, Some(Phase::Agent), message, data);
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
