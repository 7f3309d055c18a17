//! Rebase runs: a follow-up run of a task that replays its open pull request's branch onto the
//! base branch as it is now (the agent resolves what conflicts), and pushes it with a lease.

use nightshift_core::{FollowUp, FollowUpKind, PrState, Run};

use crate::followed::{COLUMNS, followed};
use crate::{Result, Store, StoreError};

impl Store {
    /// Queues a rebase run of the task: run N+1, on its latest pull request, which must be
    /// open (else [`StoreError::NothingToFix`] says why). Refused as a conflict while a run of
    /// the task is active.
    pub async fn start_rebase(
        &self,
        project_id: i64,
        task_id: i64,
        requested_by: &str,
    ) -> Result<Run> {
        let mut tx = self.write_tx().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM followed_pull_requests WHERE project_id = $1 AND task_id = $2 \
             ORDER BY id DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(project_id)
            .bind(task_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(pr) = row.as_ref().map(followed).transpose()? else {
            drop(tx);
            return match self.task(project_id, task_id).await? {
                None => Err(crate::tasks::not_found("task", task_id)),
                Some(_) => Err(StoreError::NothingToFix(format!(
                    "task {task_id} has no pull request: a rebase run works on the pull request \
                     a run of the task opened"
                ))),
            };
        };
        if pr.state != PrState::Open {
            return Err(StoreError::NothingToFix(format!(
                "pull request #{} is {}: there is nothing left to rebase; retry the task to \
                 open a new one",
                pr.number, pr.state
            )));
        }
        let follow_up = FollowUp {
            kind: FollowUpKind::Rebase,
            pr_number: pr.number,
            pr_url: pr.url.clone(),
            branch: pr.branch.clone(),
            head_sha: pr.head_sha.clone(),
            requested_by: requested_by.to_string(),
            review: None,
        };
        self.queue_next_run(tx, project_id, task_id, Some(&follow_up), "rebasing")
            .await
    }
}
