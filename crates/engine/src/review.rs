//! Address-review runs, started by a person (task page, CLI, API) or by a reviewer's
//! `/nightshift` comment: the pull request's review comments are read from the forge before
//! the run is queued, so a start with nothing to address is refused at the door.

use nightshift_core::{
    FollowedPr, Instructions, Millis, PrState, RepoUrl, ReviewRequest, Run, comment_command,
};
use nightshift_forge::{Forge, PrComment};
use nightshift_store::{CommandComment, StoreError};

use crate::{Engine, EngineError, Result};

/// A `/nightshift` comment that asks for the run.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub comment: CommandComment,
    pub url: Option<String>,
}

impl Engine {
    /// The forge of a followed pull request's repository, with the project's credential. Its
    /// retries are not logged: nobody reads them, and the caller reports the final error.
    pub(crate) async fn pull_request_forge(
        &self,
        pr: &FollowedPr,
    ) -> Result<(RepoUrl, Box<dyn Forge>)> {
        let repo = RepoUrl::parse(&pr.repo).map_err(EngineError::Core)?;
        let config = self.forge_config(pr.project_id, &repo).await?;
        let forge = nightshift_forge::resolve(&repo, &config, nightshift_forge::ignore_retries())
            .map_err(EngineError::ForgeSettings)?;
        Ok((repo, forge))
    }

    /// Queues an address-review run of the task on its open pull request, for `requested_by`,
    /// with their extra `instructions`. Refused when the task has no open pull request, when
    /// a run of it is active, and when there is neither a new review comment nor an
    /// instruction.
    pub async fn address_review(
        &self,
        project_id: i64,
        task_id: i64,
        requested_by: &str,
        instructions: Option<&str>,
    ) -> Result<Run> {
        let instructions = match instructions.map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) => Some(Instructions::parse(text)?.as_str().to_string()),
            None => None,
        };
        self.start_review(project_id, task_id, requested_by, instructions, None)
            .await
    }

    pub(crate) async fn start_review(
        &self,
        project_id: i64,
        task_id: i64,
        requested_by: &str,
        instructions: Option<String>,
        command: Option<Command>,
    ) -> Result<Run> {
        let review = ReviewRequest {
            instructions,
            comments_since: None,
            command_url: command.as_ref().and_then(|c| c.url.clone()),
        };
        let command = command.map(|c| c.comment);
        // Without an open pull request the store refuses it, saying why, before the forge is
        // asked anything.
        let pr = match self.store.task_pull_request(project_id, task_id).await? {
            Some(pr) if pr.state == PrState::Open => pr,
            _ => {
                return self
                    .queue_review(project_id, task_id, requested_by, review, None, command)
                    .await;
            }
        };
        let runs = self.store.task_runs(project_id, task_id).await?;
        if runs.last().is_some_and(|r| r.status.is_active()) {
            return Err(StoreError::Conflict(format!(
                "task {task_id} still has an active run: cancel it or wait for it to end before \
                 addressing the review"
            ))
            .into());
        }
        let (repo, forge) = self.pull_request_forge(&pr).await?;
        let comments = review_comments(forge.as_ref(), &repo, pr.number, pr.review_until).await?;
        if comments.is_empty() && review.instructions.is_none() {
            let since = match pr.review_until {
                Some(_) => " since the last address-review run",
                None => "",
            };
            return Err(EngineError::NothingToAddress(format!(
                "pull request #{} has no review comments{since} and no instructions were given: \
                 comment on the pull request, or say what to change",
                pr.number
            )));
        }
        let seen_until = comments.iter().map(|c| c.created_at).max();
        self.queue_review(
            project_id,
            task_id,
            requested_by,
            review,
            seen_until,
            command,
        )
        .await
    }

    async fn queue_review(
        &self,
        project_id: i64,
        task_id: i64,
        requested_by: &str,
        review: ReviewRequest,
        seen_until: Option<Millis>,
        command: Option<CommandComment>,
    ) -> Result<Run> {
        let run = self
            .store
            .start_address_review(
                project_id,
                task_id,
                requested_by,
                review,
                seen_until,
                command,
            )
            .await?;
        self.wake();
        Ok(run)
    }
}

/// The comments an address-review run answers: those written after `since`, oldest first,
/// without Nightshift's own, empty ones (an approval without words) and `/nightshift`
/// commands (their words come as instructions).
pub(crate) async fn review_comments(
    forge: &dyn Forge,
    repo: &RepoUrl,
    number: u64,
    since: Option<Millis>,
) -> Result<Vec<PrComment>> {
    let comments = forge
        .pull_request_comments(repo, number, since)
        .await
        .map_err(EngineError::Forge)?;
    let own = match forge.own_login(repo).await {
        Ok(own) => own,
        Err(e) => {
            // Not worth refusing the run for: Nightshift writes no comments of its own.
            tracing::warn!(error = %e, "cannot tell which forge user Nightshift acts as");
            None
        }
    };
    Ok(comments
        .into_iter()
        .filter(|c| {
            !own.as_deref()
                .is_some_and(|own| own.eq_ignore_ascii_case(&c.author))
        })
        .filter(|c| !c.body.trim().is_empty() && comment_command(&c.body).is_none())
        .collect())
}
