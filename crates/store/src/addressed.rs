//! Address-review runs on a task's pull request: queued for a person or for a reviewer's
//! `/nightshift` comment, with how far the review comments went to a run and which command
//! comment was handled last, so that each command starts at most one run.

use nightshift_core::{FollowUp, FollowUpKind, FollowedPr, Millis, ReviewRequest, Run};

use crate::followed::open_pull_request;
use crate::{Result, Store, StoreError};

/// A `/nightshift` comment, as its pull request remembers the last one handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandComment {
    /// When it was written (milliseconds since the epoch).
    pub at: Millis,
    /// The forge's id of the comment.
    pub id: u64,
}

/// Moves the pull request's last handled command to `command` when it is newer, in `conn`'s
/// transaction. False when it (or a later one) was handled already.
async fn advance_command(
    conn: &mut sqlx::AnyConnection,
    pr: i64,
    command: CommandComment,
    note: Option<&str>,
) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE followed_pull_requests SET last_command_at = $2, last_command_id = $3, \
         command_note = $4 WHERE id = $1 AND (last_command_at IS NULL OR last_command_at < $2 \
         OR (last_command_at = $2 AND last_command_id < $3))",
    )
    .bind(pr)
    .bind(command.at)
    .bind(command.id as i64)
    .bind(note)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

impl Store {
    /// The pull request a task's runs published last, if any.
    pub async fn task_pull_request(
        &self,
        project_id: i64,
        task_id: i64,
    ) -> Result<Option<FollowedPr>> {
        Ok(self
            .task_pull_requests(project_id, task_id)
            .await?
            .into_iter()
            .next())
    }

    /// Queues an address-review run of the task: run N+1, on its latest pull request, which
    /// must be open (else [`StoreError::NothingToFix`] says why). `seen_until` is the newest
    /// review comment the caller found, so the next such run reads only later ones. For a
    /// `command`, the pull request's last handled command moves to it in the same transaction,
    /// and a command handled already is refused as a conflict, as is any start while a run of
    /// the task is active.
    pub async fn start_address_review(
        &self,
        project_id: i64,
        task_id: i64,
        requested_by: &str,
        mut review: ReviewRequest,
        seen_until: Option<Millis>,
        command: Option<CommandComment>,
    ) -> Result<Run> {
        let mut tx = self.write_tx().await?;
        let pr = open_pull_request(&mut tx, project_id, task_id, "an address-review run").await?;
        if let Some(command) = command
            && !advance_command(&mut tx, pr.id, command, None).await?
        {
            return Err(StoreError::Conflict(format!(
                "the comment {} on pull request #{} was handled already",
                command.id, pr.number
            )));
        }
        sqlx::query(
            "UPDATE followed_pull_requests SET review_until = $2, command_note = NULL WHERE id = $1",
        )
        .bind(pr.id)
        .bind(seen_until.max(pr.review_until))
        .execute(&mut *tx)
        .await?;
        review.comments_since = pr.review_until;
        let follow_up = FollowUp {
            kind: FollowUpKind::AddressReview,
            pr_number: pr.number,
            pr_url: pr.url.clone(),
            branch: pr.branch.clone(),
            head_sha: pr.head_sha.clone(),
            requested_by: requested_by.to_string(),
            review: Some(review),
        };
        self.queue_next_run(
            tx,
            project_id,
            task_id,
            Some(&follow_up),
            "addressing the review",
        )
        .await
    }

    /// Records that a `/nightshift` comment on the pull request `pr` started no run, and why:
    /// the task shows `note`, and its creator is told. False (and nothing recorded) when that
    /// comment or a later one was handled already.
    pub async fn ignore_command(
        &self,
        pr: &FollowedPr,
        command: CommandComment,
        note: &str,
    ) -> Result<bool> {
        let mut tx = self.write_tx().await?;
        if !advance_command(&mut tx, pr.id, command, Some(note)).await? {
            return Ok(false);
        }
        crate::notifications::insert_notification(
            &mut tx,
            pr.task_id,
            pr.run_id,
            "command_ignored",
            note,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
