//! Nudges: a forge's webhook delivery asking for followed pull requests to be polled now
//! instead of at their next turn. A nudge only moves a poll earlier; what the poll finds is
//! still the only thing that changes a pull request's recorded state.

use std::time::Duration;

use nightshift_core::{FollowedPr, now_millis};

use crate::followed::{COLUMNS, followed};
use crate::{Result, Store};

/// At most this many followed pull requests are read for one delivery.
const MAX_CANDIDATES: i64 = 100;

impl Store {
    /// The followed pull requests (of every project) numbered one of `numbers`, or whose head
    /// is `head_sha`: those a delivery may be about, before its repository is compared.
    pub async fn followed_by_number_or_head(
        &self,
        numbers: &[u64],
        head_sha: Option<&str>,
    ) -> Result<Vec<FollowedPr>> {
        let mut conditions = Vec::new();
        for n in 1..=numbers.len() {
            conditions.push(format!("number = ${n}"));
        }
        if head_sha.is_some() {
            conditions.push(format!("head_sha = ${}", numbers.len() + 1));
        }
        if conditions.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM followed_pull_requests WHERE following = 1 AND ({}) \
             ORDER BY id LIMIT {MAX_CANDIDATES}",
            conditions.join(" OR ")
        );
        let mut query = sqlx::query(&sql);
        for number in numbers {
            query = query.bind(*number as i64);
        }
        if let Some(sha) = head_sha {
            query = query.bind(sha);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(followed).collect()
    }

    /// Asks for a poll of followed pull request `id` now, but no sooner than `gap` after its
    /// last one, so a burst of deliveries (or one replayed over and over) costs the forge one
    /// poll per `gap`. A poll due sooner anyway is left as it is. Returns whether the pull
    /// request is still followed.
    pub async fn nudge_pull_request_poll(&self, id: i64, gap: Duration) -> Result<bool> {
        let now = now_millis();
        let gap = gap.as_millis() as i64;
        let done = sqlx::query(
            "UPDATE followed_pull_requests SET nudged_at = $2, \
             next_poll_at = CASE \
                WHEN COALESCE(last_polled_at, 0) + $3 > $2 \
                    AND next_poll_at > COALESCE(last_polled_at, 0) + $3 \
                    THEN COALESCE(last_polled_at, 0) + $3 \
                WHEN COALESCE(last_polled_at, 0) + $3 <= $2 AND next_poll_at > $2 THEN $2 \
                ELSE next_poll_at END \
             WHERE id = $1 AND following = 1",
        )
        .bind(id)
        .bind(now)
        .bind(gap)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }
}
