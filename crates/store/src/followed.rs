//! Followed pull requests: registered when a run publishes one, claimed for each poll under a
//! lease (so one node asks at a time), and updated with what the forge answered — the run's
//! change and its creator's notifications in the same transaction.

use std::time::Duration;

use nightshift_core::{
    CiState, FollowUp, FollowUpKind, FollowedPr, GeneratedChange, Mergeability, Millis, NewFollow,
    PrState, Run, now_millis,
};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Backend, Result, Store, StoreError};

pub(crate) const COLUMNS: &str = "id, project_id, task_id, run_id, repo, number, url, branch, state, ci, \
     mergeable, behind_base, head_sha, validators, opened_at, changed_at, ended_at, follow_until, \
     following, next_poll_at, polls, unchanged_polls, last_polled_at, last_error, failures, \
     nudged_at, review_until, last_command_at, last_command_id, command_note";

/// What one poll of a followed pull request found.
#[derive(Debug, Clone, PartialEq)]
pub struct PrSeen {
    pub state: PrState,
    pub ci: CiState,
    pub mergeable: Mergeability,
    pub behind_base: Option<bool>,
    pub head_sha: Option<String>,
    /// The validators for the next poll (JSON), when the forge sent any.
    pub validators: Option<String>,
    /// Nothing differed from the previous poll (the forge's 304s say so for free).
    pub unchanged: bool,
}

/// How a poll ended.
#[derive(Debug, Clone, PartialEq)]
pub enum PollOutcome {
    /// The forge answered; polled again at `next_poll_at` while it stays open.
    Seen { seen: PrSeen, next_poll_at: Millis },
    /// The forge did not answer usefully; `gone` when the pull request no longer exists there,
    /// which ends the following.
    Failed {
        error: String,
        gone: bool,
        next_poll_at: Millis,
    },
}

pub(crate) fn followed(row: &AnyRow) -> Result<FollowedPr> {
    Ok(FollowedPr {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        task_id: row.try_get("task_id")?,
        run_id: row.try_get("run_id")?,
        repo: row.try_get("repo")?,
        number: row.try_get::<i64, _>("number")?.max(0) as u64,
        url: row.try_get("url")?,
        branch: row.try_get("branch")?,
        state: row.try_get::<String, _>("state")?.parse()?,
        ci: row.try_get::<String, _>("ci")?.parse()?,
        mergeable: row.try_get::<String, _>("mergeable")?.parse()?,
        behind_base: row
            .try_get::<Option<i64>, _>("behind_base")?
            .map(|b| b != 0),
        head_sha: row.try_get("head_sha")?,
        validators: row.try_get("validators")?,
        opened_at: row.try_get("opened_at")?,
        changed_at: row.try_get("changed_at")?,
        ended_at: row.try_get("ended_at")?,
        follow_until: row.try_get("follow_until")?,
        following: row.try_get::<i64, _>("following")? != 0,
        next_poll_at: row.try_get("next_poll_at")?,
        polls: row.try_get::<i64, _>("polls")?.max(0) as u64,
        unchanged_polls: row.try_get::<i64, _>("unchanged_polls")?.max(0) as u64,
        last_polled_at: row.try_get("last_polled_at")?,
        last_error: row.try_get("last_error")?,
        failures: row.try_get::<i64, _>("failures")?.clamp(0, u32::MAX as i64) as u32,
        review_until: row.try_get("review_until")?,
        last_command: match (
            row.try_get::<Option<i64>, _>("last_command_at")?,
            row.try_get::<Option<i64>, _>("last_command_id")?,
        ) {
            (Some(at), Some(id)) => Some((at, id.max(0) as u64)),
            _ => None,
        },
        command_note: row.try_get("command_note")?,
        nudged_at: row.try_get("nudged_at")?,
    })
}

impl Store {
    /// Starts (or, for a pull request a run of the task pushed to again, restarts) following a
    /// pull request: due at once, CI pending for the new head. Idempotent, so a run resumed
    /// after a crash registers the same row again.
    pub async fn follow_pull_request(&self, new: &NewFollow) -> Result<FollowedPr> {
        let now = now_millis();
        let sql = format!(
            "INSERT INTO followed_pull_requests (project_id, task_id, run_id, repo, number, url, branch, \
             state, ci, mergeable, opened_at, changed_at, follow_until, following, next_poll_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'open', 'pending', 'unknown', $8, $8, $9, 1, $8) \
             ON CONFLICT (project_id, repo, number) DO UPDATE SET run_id = excluded.run_id, \
             url = excluded.url, branch = excluded.branch, state = 'open', ci = 'pending', \
             changed_at = excluded.changed_at, ended_at = NULL, follow_until = excluded.follow_until, \
             following = 1, next_poll_at = excluded.next_poll_at, failures = 0, last_error = NULL \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(new.project_id)
            .bind(new.task_id)
            .bind(new.run_id)
            .bind(&new.repo)
            .bind(new.number as i64)
            .bind(&new.url)
            .bind(&new.branch)
            .bind(now)
            .bind(new.follow_until)
            .fetch_one(&self.pool)
            .await?;
        followed(&row)
    }

    /// Takes the pull request whose poll is most overdue for `follower`, for `lease`. A lease
    /// that lapsed (its follower died mid-poll) is taken over.
    pub async fn claim_pull_request_poll(
        &self,
        follower: &str,
        lease: Duration,
    ) -> Result<Option<FollowedPr>> {
        let now = now_millis();
        // As for runs: concurrent claimers skip each other's locked rows on PostgreSQL; on
        // SQLite the one statement runs under the database's write lock.
        let lock = match self.backend {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE followed_pull_requests SET lease_owner = $1, lease_expires_at = $2 \
             WHERE id = (SELECT q.id FROM followed_pull_requests q WHERE q.following = 1 \
                AND q.next_poll_at <= $3 AND (q.lease_owner IS NULL OR q.lease_expires_at < $3) \
                ORDER BY q.next_poll_at LIMIT 1 {lock}) \
             RETURNING {COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(follower)
            .bind(now + lease.as_millis() as i64)
            .bind(now)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(followed).transpose()
    }

    /// Records a poll `follower` holds the lease of and releases it. When the state, CI
    /// verdict or mergeability changed, the run's change says so, and a CI turning red, a merge
    /// or a close notifies the task's creator, all in one transaction. Fails with
    /// [`StoreError::FollowLeaseLost`] when another follower took the poll over.
    pub async fn record_pull_request_poll(
        &self,
        id: i64,
        follower: &str,
        outcome: &PollOutcome,
    ) -> Result<FollowedPr> {
        let now = now_millis();
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM followed_pull_requests WHERE id = $1 AND lease_owner = $2"
        );
        let Some(before) = sqlx::query(&sql)
            .bind(id)
            .bind(follower)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Err(StoreError::FollowLeaseLost { id });
        };
        let before = followed(&before)?;
        match outcome {
            PollOutcome::Seen { seen, next_poll_at } => {
                let changed = seen.state != before.state
                    || seen.ci != before.ci
                    || seen.mergeable != before.mergeable
                    || seen.behind_base != before.behind_base;
                let following = seen.state == PrState::Open && now < before.follow_until;
                sqlx::query(
                    "UPDATE followed_pull_requests SET state = $2, ci = $3, mergeable = $4, \
                     behind_base = $5, head_sha = $6, validators = COALESCE($7, validators), \
                     changed_at = CASE WHEN $8 = 1 THEN $9 ELSE changed_at END, \
                     ended_at = CASE WHEN $2 = 'open' THEN NULL ELSE COALESCE(ended_at, $9) END, \
                     following = $10, next_poll_at = $11, polls = polls + 1, \
                     unchanged_polls = unchanged_polls + $12, last_polled_at = $9, last_error = NULL, \
                     failures = 0, lease_owner = NULL, lease_expires_at = NULL WHERE id = $1",
                )
                .bind(id)
                .bind(seen.state.as_str())
                .bind(seen.ci.as_str())
                .bind(seen.mergeable.as_str())
                .bind(seen.behind_base.map(i64::from))
                .bind(seen.head_sha.as_deref())
                .bind(seen.validators.as_deref())
                .bind(i64::from(changed))
                .bind(now)
                .bind(i64::from(following))
                .bind(*next_poll_at)
                .bind(i64::from(seen.unchanged))
                .execute(&mut *tx)
                .await?;
                if changed {
                    record_on_change(&mut tx, &before, seen).await?;
                }
            }
            PollOutcome::Failed {
                error,
                gone,
                next_poll_at,
            } => {
                sqlx::query(
                    "UPDATE followed_pull_requests SET last_error = $2, failures = failures + 1, \
                     following = CASE WHEN $3 = 1 OR follow_until <= $4 THEN 0 ELSE following END, \
                     next_poll_at = $5, polls = polls + 1, last_polled_at = $4, \
                     lease_owner = NULL, lease_expires_at = NULL WHERE id = $1",
                )
                .bind(id)
                .bind(error)
                .bind(i64::from(*gone))
                .bind(now)
                .bind(*next_poll_at)
                .execute(&mut *tx)
                .await?;
            }
        }
        let sql = format!("SELECT {COLUMNS} FROM followed_pull_requests WHERE id = $1");
        let after = followed(&sqlx::query(&sql).bind(id).fetch_one(&mut *tx).await?)?;
        tx.commit().await?;
        Ok(after)
    }

    /// Queues a fix-CI run of the task: run N+1, on its latest pull request, which must be open
    /// with failing CI (else [`StoreError::NothingToFix`] says why). Refused as a conflict
    /// while a run of the task is active.
    pub async fn start_fix_ci(
        &self,
        project_id: i64,
        task_id: i64,
        requested_by: &str,
    ) -> Result<Run> {
        let mut tx = self.write_tx().await?;
        let pr = open_pull_request(&mut tx, project_id, task_id, "a fix-CI run").await?;
        let number = pr.number;
        if pr.ci != CiState::Failing {
            return Err(StoreError::NothingToFix(format!(
                "CI on pull request #{number} is {}, not failing: there is nothing to fix yet",
                match pr.ci {
                    CiState::None => "not reported",
                    other => other.as_str(),
                }
            )));
        }
        let follow_up = FollowUp {
            kind: FollowUpKind::FixCi,
            pr_number: number,
            pr_url: pr.url.clone(),
            branch: pr.branch.clone(),
            head_sha: pr.head_sha.clone(),
            requested_by: requested_by.to_string(),
            review: None,
        };
        self.queue_next_run(tx, project_id, task_id, Some(&follow_up), "fixing CI")
            .await
    }

    /// The pull requests a task's runs published, newest first.
    pub async fn task_pull_requests(
        &self,
        project_id: i64,
        task_id: i64,
    ) -> Result<Vec<FollowedPr>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM followed_pull_requests WHERE project_id = $1 AND task_id = $2 \
             ORDER BY id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(project_id)
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(followed).collect()
    }
}

/// The task's latest pull request, which `run` (`a fix-CI run`, …) works on, read in the
/// transaction that queues it: refused with [`StoreError::NothingToFix`] when the task has
/// none or it is merged or closed.
pub(crate) async fn open_pull_request(
    conn: &mut sqlx::AnyConnection,
    project_id: i64,
    task_id: i64,
    run: &str,
) -> Result<FollowedPr> {
    let sql = format!(
        "SELECT {COLUMNS} FROM followed_pull_requests WHERE project_id = $1 AND task_id = $2 \
         ORDER BY id DESC LIMIT 1"
    );
    let row = sqlx::query(&sql)
        .bind(project_id)
        .bind(task_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(pr) = row.as_ref().map(followed).transpose()? else {
        let task = sqlx::query("SELECT id FROM tasks WHERE project_id = $1 AND id = $2")
            .bind(project_id)
            .bind(task_id)
            .fetch_optional(&mut *conn)
            .await?;
        return Err(match task {
            None => crate::tasks::not_found("task", task_id),
            Some(_) => StoreError::NothingToFix(format!(
                "task {task_id} has no pull request: {run} works on the pull request a run of \
                 the task opened"
            )),
        });
    };
    if pr.state != PrState::Open {
        return Err(StoreError::NothingToFix(format!(
            "pull request #{} is {}: there is nothing left to change on it; retry the task to \
             open a new one",
            pr.number, pr.state
        )));
    }
    Ok(pr)
}

/// What a change in a pull request's state leaves behind: the run's change reads the new
/// state, and CI turning red, a conflict with the base, a merge or a close is told to the
/// task's creator.
async fn record_on_change(
    conn: &mut sqlx::AnyConnection,
    before: &FollowedPr,
    seen: &PrSeen,
) -> Result<()> {
    let row = sqlx::query("SELECT data FROM generated_changes WHERE run_id = $1")
        .bind(before.run_id)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = row {
        let mut change: GeneratedChange = serde_json::from_str(&row.try_get::<String, _>("data")?)?;
        change.ci_status = Some(nightshift_core::describe_pr(seen.state, seen.ci));
        sqlx::query("UPDATE generated_changes SET data = $2, updated_at = $3 WHERE run_id = $1")
            .bind(before.run_id)
            .bind(serde_json::to_string(&change)?)
            .bind(now_millis())
            .execute(&mut *conn)
            .await?;
    }
    let number = before.number;
    let news = match seen.state {
        PrState::Merged if before.state != PrState::Merged => {
            Some(("pr_merged", format!("pull request #{number} was merged")))
        }
        PrState::Closed if before.state != PrState::Closed => Some((
            "pr_closed",
            format!("pull request #{number} was closed without merging"),
        )),
        PrState::Open if seen.ci == CiState::Failing && before.ci != CiState::Failing => Some((
            "ci_failed",
            format!("CI fails on pull request #{number}: a fix-CI run can take it on"),
        )),
        PrState::Open
            if seen.mergeable == Mergeability::Conflicting
                && before.mergeable != Mergeability::Conflicting =>
        {
            Some((
                "pr_conflicts",
                format!(
                    "pull request #{number} conflicts with its base branch: a rebase run can \
                     resolve it"
                ),
            ))
        }
        _ => None,
    };
    if let Some((kind, message)) = news {
        crate::notifications::insert_notification(
            conn,
            before.task_id,
            before.run_id,
            kind,
            &message,
        )
        .await?;
    }
    Ok(())
}
