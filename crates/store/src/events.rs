//! Run events (append-only, gap-free sequence numbers) and generated changes.

use nightshift_core::{EventKind, GeneratedChange, Phase, RunEvent, now_millis};
use sqlx::Row;
use tokio::sync::broadcast;

use crate::live::CHANNEL;
use crate::rows;
use crate::{Backend, Result, Store, StoreError};

/// An event before it has its sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub phase: Option<Phase>,
    pub message: String,
    pub data: serde_json::Value,
}

/// What an event's row takes besides its message and data: its run, sequence, time, kind and
/// phase, and its entries in the table's two indexes. Measured on SQLite (a run of small lines
/// grew the file by about this much per line beyond their text); PostgreSQL's rows are similar.
pub const EVENT_ROW_BYTES: usize = 80;

/// An event as it goes into `run_events`.
struct Stored<'a> {
    message_key: Option<&'a str>,
    data: Option<String>,
}

impl NewEvent {
    /// The message once: a top-level string of `data` equal to the message (an output line,
    /// an agent's text) is left out of the stored data and its key kept, so reading puts it back.
    fn stored(&self) -> Result<Stored<'_>> {
        let key = match &self.data {
            serde_json::Value::Object(map) if !self.message.is_empty() => map
                .iter()
                .find(|(_, v)| v.as_str() == Some(self.message.as_str()))
                .map(|(k, _)| k.as_str()),
            _ => None,
        };
        let data = match (key, &self.data) {
            (Some(key), serde_json::Value::Object(map)) => {
                Some(serde_json::to_string(&Without { map, key })?)
            }
            (_, serde_json::Value::Null) => None,
            (_, data) => Some(data.to_string()),
        };
        Ok(Stored {
            message_key: key,
            data,
        })
    }

    /// The bytes this event takes in the store: its message, its data as stored, and its row.
    pub fn stored_bytes(&self) -> usize {
        let data = self
            .stored()
            .ok()
            .and_then(|s| s.data)
            .map_or(0, |d| d.len());
        self.message.len() + data + EVENT_ROW_BYTES
    }
}

/// A JSON object without one of its keys, serialised without copying the rest.
struct Without<'a> {
    map: &'a serde_json::Map<String, serde_json::Value>,
    key: &'a str,
}

impl serde::Serialize for Without<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = serializer.serialize_map(Some(self.map.len().saturating_sub(1)))?;
        for (k, v) in self.map.iter().filter(|(k, _)| k.as_str() != self.key) {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }
}

impl Store {
    /// Appends events in order and returns the last sequence number. The counter and the rows
    /// change in one transaction, so sequences have no gaps even when a worker dies mid-append.
    pub async fn append_events(&self, run_id: i64, events: &[NewEvent]) -> Result<i64> {
        if events.is_empty() {
            return Ok(0);
        }
        let now = now_millis();
        let stored = events
            .iter()
            .map(NewEvent::stored)
            .collect::<Result<Vec<_>>>()?;
        let bytes: usize = events
            .iter()
            .zip(&stored)
            .map(|(e, s)| {
                e.message.len() + s.data.as_ref().map_or(0, String::len) + EVENT_ROW_BYTES
            })
            .sum();
        let mut tx = self.write_tx().await?;
        let last: i64 = sqlx::query(
            "UPDATE runs SET event_seq = event_seq + $2, event_bytes = event_bytes + $3 \
             WHERE id = $1 RETURNING event_seq",
        )
        .bind(run_id)
        .bind(events.len() as i64)
        .bind(bytes as i64)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound {
            what: "run",
            id: run_id.to_string(),
        })?
        .try_get("event_seq")?;
        let first = last - events.len() as i64 + 1;
        for (i, (event, stored)) in events.iter().zip(stored).enumerate() {
            sqlx::query(
                "INSERT INTO run_events (run_id, seq, at, kind, phase, message, data, message_key) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(run_id)
            .bind(first + i as i64)
            .bind(now)
            .bind(event.kind.as_str())
            .bind(event.phase.map(|p| p.as_str()))
            .bind(&event.message)
            .bind(stored.data)
            .bind(stored.message_key)
            .execute(&mut *tx)
            .await?;
        }
        self.commit_and_wake(tx, run_id).await?;
        Ok(last)
    }

    /// Commits `tx`, which added events to `run_id` or ended it, and wakes the run's followers.
    pub(crate) async fn commit_and_wake(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        run_id: i64,
    ) -> Result<()> {
        match self.backend {
            // Delivered at commit to every node listening, this one included (see live.rs).
            Backend::Postgres => {
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CHANNEL)
                    .bind(run_id.to_string())
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
            }
            Backend::Sqlite => {
                tx.commit().await?;
                let _ = self.appended.send(run_id);
            }
        }
        Ok(())
    }

    /// Events of a run with `seq > after`, oldest first, at most `limit`.
    pub async fn events(&self, run_id: i64, after: i64, limit: u32) -> Result<Vec<RunEvent>> {
        let rows = sqlx::query(
            "SELECT run_id, seq, at, kind, phase, message, data, message_key FROM run_events \
             WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(run_id)
        .bind(after)
        .bind(i64::from(limit.clamp(1, 10_000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::event).collect()
    }

    /// Wakes when events of any run are appended: in this process on SQLite, on any node on
    /// PostgreSQL. Carries the run id, or [`ANY_RUN`](crate::ANY_RUN) when wake-ups may have
    /// been lost. [`Store::follow`] builds a follower on top of it.
    pub fn subscribe(&self) -> broadcast::Receiver<i64> {
        self.appended.subscribe()
    }

    pub async fn save_change(&self, change: &GeneratedChange) -> Result<()> {
        sqlx::query(
            "INSERT INTO generated_changes (run_id, data, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (run_id) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
        )
        .bind(change.run_id)
        .bind(serde_json::to_string(change)?)
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn change(&self, run_id: i64) -> Result<Option<GeneratedChange>> {
        let row = sqlx::query("SELECT data FROM generated_changes WHERE run_id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| -> Result<GeneratedChange> {
            Ok(serde_json::from_str(&r.try_get::<String, _>("data")?)?)
        })
        .transpose()
    }
}
