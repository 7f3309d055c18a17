//! Retention: run events and generated changes of ended runs go after a window (90 days by
//! default), audit events after a longer one (400 days). Runs and tasks stay, so history
//! still lists them; only the bulky detail goes.

use std::time::Duration;

use nightshift_core::Millis;

use crate::{Result, Store};

/// How long things are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub events: Duration,
    pub audit: Duration,
    /// Workspaces of ended runs kept for debugging (failed runs, with
    /// `keep_failed_workspaces`) are removed after this.
    pub workspaces: Duration,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        RetentionPolicy {
            events: Duration::from_secs(90 * DAY),
            audit: Duration::from_secs(400 * DAY),
            workspaces: Duration::from_secs(7 * DAY),
        }
    }
}

/// What one sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    pub events: u64,
    pub changes: u64,
    pub audit: u64,
}

impl Store {
    /// Deletes what is older than the policy's windows as of `now`, and nothing newer.
    pub async fn sweep(&self, policy: &RetentionPolicy, now: Millis) -> Result<Swept> {
        let events_cutoff = now - policy.events.as_millis() as i64;
        let audit_cutoff = now - policy.audit.as_millis() as i64;
        // Only ended runs: a long-running run's early events are still its live log.
        let events = sqlx::query(
            "DELETE FROM run_events WHERE at < $1 AND run_id IN \
             (SELECT id FROM runs WHERE status IN ('succeeded', 'failed', 'cancelled'))",
        )
        .bind(events_cutoff)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let changes = sqlx::query("DELETE FROM generated_changes WHERE updated_at < $1")
            .bind(events_cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        let audit = sqlx::query("DELETE FROM audit_events WHERE at < $1")
            .bind(audit_cutoff)
            .execute(&self.pool)
            .await?
            .rows_affected();
        // A snapshot outlives its run only when the run was cancelled while queued after a handover.
        sqlx::query(
            "DELETE FROM run_snapshots WHERE run_id IN \
             (SELECT id FROM runs WHERE status IN ('succeeded', 'failed', 'cancelled'))",
        )
        .execute(&self.pool)
        .await?;
        // Expired sessions are dead weight (they no longer sign anyone in).
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(Swept {
            events,
            changes,
            audit,
        })
    }
}
