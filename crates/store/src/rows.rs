//! Mapping rows to domain types. Every column read is checked; a bad value is `Corrupt`, not a panic.

use nightshift_core::{Checkpoint, Run, RunEvent, Task, Usage};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, StoreError};

pub(crate) const TASK_COLUMNS: &str = "t.id, t.project_id, t.title, t.instructions, t.repo, t.base_branch, \
     t.agent, t.timeout_secs, t.budget, t.allow_test_changes, t.created_by, t.created_at";

pub(crate) const RUN_COLUMNS: &str = "r.id, r.project_id, r.task_id, r.number, r.status, r.phase, r.progress, \
     r.end_reason, r.failed_phase, r.error, r.waiting_reason, r.checkpoint, r.input_tokens, r.output_tokens, \
     r.cost_usd, r.turns, r.cancel_requested, r.lease_owner, r.lease_expires_at, r.created_at, r.started_at, \
     r.ended_at, r.event_bytes, r.follow_up";

fn parse_opt<T: std::str::FromStr<Err = nightshift_core::CoreError>>(
    v: Option<String>,
) -> Result<Option<T>> {
    Ok(v.map(|s| s.parse()).transpose()?)
}

pub(crate) fn task(row: &AnyRow) -> Result<Task> {
    Ok(Task {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        title: row.try_get("title")?,
        instructions: row.try_get("instructions")?,
        repo: row.try_get("repo")?,
        base_branch: row.try_get("base_branch")?,
        agent: serde_json::from_str(&row.try_get::<String, _>("agent")?)?,
        timeout_secs: row.try_get::<i64, _>("timeout_secs")?.max(0) as u64,
        budget: serde_json::from_str(&row.try_get::<String, _>("budget")?)?,
        allow_test_changes: row.try_get::<i64, _>("allow_test_changes")? != 0,
        created_by: row.try_get("created_by")?,
        created_at: row.try_get("created_at")?,
    })
}

pub(crate) fn run(row: &AnyRow) -> Result<Run> {
    let checkpoint: Checkpoint = serde_json::from_str(&row.try_get::<String, _>("checkpoint")?)?;
    Ok(Run {
        id: row.try_get("id")?,
        task_id: row.try_get("task_id")?,
        project_id: row.try_get("project_id")?,
        number: row.try_get("number")?,
        status: row.try_get::<String, _>("status")?.parse()?,
        phase: parse_opt(row.try_get("phase")?)?,
        progress: row.try_get::<i64, _>("progress")?.clamp(0, 100) as u8,
        end_reason: parse_opt(row.try_get("end_reason")?)?,
        failed_phase: parse_opt(row.try_get("failed_phase")?)?,
        error: row.try_get("error")?,
        waiting_reason: row.try_get("waiting_reason")?,
        checkpoint,
        usage: Usage {
            input_tokens: row.try_get::<i64, _>("input_tokens")?.max(0) as u64,
            output_tokens: row.try_get::<i64, _>("output_tokens")?.max(0) as u64,
            cost_usd: row.try_get("cost_usd")?,
            turns: row.try_get::<i64, _>("turns")?.max(0) as u64,
        },
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        lease_owner: row.try_get("lease_owner")?,
        lease_expires_at: row.try_get("lease_expires_at")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        event_bytes: row.try_get::<i64, _>("event_bytes")?.max(0) as u64,
        follow_up: row
            .try_get::<Option<String>, _>("follow_up")?
            .map(|text| serde_json::from_str(&text))
            .transpose()?,
    })
}

pub(crate) fn event(row: &AnyRow) -> Result<RunEvent> {
    let data: Option<String> = row.try_get("data")?;
    let message: String = row.try_get("message")?;
    let mut data = match data {
        Some(text) => serde_json::from_str(&text)?,
        None => serde_json::Value::Null,
    };
    // The message was stored once, in its own column (see NewEvent::stored).
    if let Some(key) = row.try_get::<Option<String>, _>("message_key")? {
        let serde_json::Value::Object(map) = &mut data else {
            return Err(StoreError::Corrupt(format!(
                "event data names {key:?} as its message but is not an object"
            )));
        };
        map.insert(key, serde_json::Value::String(message.clone()));
    }
    Ok(RunEvent {
        run_id: row.try_get("run_id")?,
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        kind: row.try_get::<String, _>("kind")?.parse()?,
        phase: parse_opt(row.try_get("phase")?)?,
        message,
        data,
    })
}
