//! Rebase runs: a follow-up run of a task that replays its open pull request's branch onto the
//! base branch as it is now (the agent resolves what conflicts), and pushes it with a lease.

use nightshift_core::{FollowUp, FollowUpKind, Run};

use crate::followed::open_pull_request;
use crate::{Result, Store};

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
        let pr = open_pull_request(&mut tx, project_id, task_id, "a rebase run").await?;
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
