//! `/nightshift` comments on followed pull requests, read on the follower's polls where the
//! project enables them: one from someone with write access on the forge starts an
//! address-review run (the rest of the comment is its instructions); any other is ignored, and
//! the task says why. The store remembers the last comment handled, so none starts two runs.

use nightshift_core::{FollowedPr, Instructions, PrState, comment_command};
use nightshift_forge::Permission;
use nightshift_store::{CommandComment, StoreError};

use crate::review::Command;
use crate::{Engine, EngineError, Result};

/// Handles the `/nightshift` comments written on `pr` since the last one handled, oldest
/// first, until one starts a run. A command met while a run of the task is active waits for
/// a later poll.
pub(super) async fn read(engine: &Engine, pr: &FollowedPr) -> Result<()> {
    if pr.state != PrState::Open
        || !engine
            .store
            .project_settings(pr.project_id)
            .await?
            .comment_commands
    {
        return Ok(());
    }
    let (repo, forge) = engine.pull_request_forge(pr).await?;
    // A second early: forges compare `since` by the second, and a later comment may share the
    // last handled one's.
    let since = pr.last_command.map(|(at, _)| at - 1000);
    let comments = forge
        .pull_request_comments(&repo, pr.number, since)
        .await
        .map_err(EngineError::Forge)?;
    let mut own = None;
    for comment in comments {
        let Some(rest) = comment_command(&comment.body) else {
            continue;
        };
        if pr
            .last_command
            .is_some_and(|last| (comment.created_at, comment.id) <= last)
        {
            continue;
        }
        if own.is_none() {
            own = Some(forge.own_login(&repo).await.ok().flatten());
        }
        if own
            .as_ref()
            .and_then(Option::as_deref)
            .is_some_and(|own| own.eq_ignore_ascii_case(&comment.author))
        {
            continue;
        }
        let command = CommandComment {
            at: comment.created_at,
            id: comment.id,
        };
        let who = &comment.author;
        let permission = forge
            .permission(&repo, who)
            .await
            .map_err(EngineError::Forge)?;
        if !permission.can_write() {
            let note = format!(
                "/nightshift from {who} ignored: {who} has {} on the repository, and only \
                 people with write access may start runs",
                access(permission)
            );
            ignore(engine, pr, command, &note).await?;
            continue;
        }
        let instructions = match rest {
            "" => None,
            text => match Instructions::parse(text) {
                Ok(text) => Some(text.as_str().to_string()),
                Err(e) => {
                    let note = format!("/nightshift from {who} started no run: {e}");
                    ignore(engine, pr, command, &note).await?;
                    continue;
                }
            },
        };
        let asked = Command {
            comment: command,
            url: comment.url.clone(),
        };
        let started = engine
            .start_review(pr.project_id, pr.task_id, who, instructions, Some(asked))
            .await;
        match started {
            Ok(run) => {
                tracing::info!(
                    pr = pr.number, repo = %pr.repo, task = pr.task_id, run = run.number, by = %who,
                    "a /nightshift comment started an address-review run"
                );
                return Ok(());
            }
            // A run of the task is going (or this comment was just handled): a later poll
            // takes the command up once it ended.
            Err(EngineError::Store(StoreError::Conflict(_))) => return Ok(()),
            Err(
                e @ (EngineError::NothingToAddress(_)
                | EngineError::Store(StoreError::NothingToFix(_))),
            ) => {
                let note = format!("/nightshift from {who} started no run: {e}");
                ignore(engine, pr, command, &note).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn ignore(
    engine: &Engine,
    pr: &FollowedPr,
    command: CommandComment,
    note: &str,
) -> Result<()> {
    if engine.store.ignore_command(pr, command, note).await? {
        tracing::info!(pr = pr.number, repo = %pr.repo, task = pr.task_id, "{note}");
    }
    Ok(())
}

/// A permission as the task page says it.
fn access(permission: Permission) -> &'static str {
    match permission {
        Permission::None => "no access",
        Permission::Read => "read access only",
        Permission::Write => "write access",
        Permission::Admin => "admin access",
    }
}
