//! The publishing phase: the validated change is committed (trailer `Nightshift-Task`), rebased
//! onto the base branch if it moved (and checked again), pushed with the engine's own
//! credential, and its pull request opened — or the open one adopted, so a run resumed after a
//! crash never opens a second.

use nightshift_checks::{CheckPlan, Stage};
use nightshift_core::{CheckOutcome, EventKind, NewFollow, Phase, now_millis};
use nightshift_forge::{PrBody, PullRequestSpec, render_pr_body};

use super::prepare::Target;
use super::validate::{Validated, run_checks};
use super::{RunExecution, Step, Workspace, short_sha};
use crate::EngineError;

/// The branch on the remote, holding the change.
pub(crate) struct Pushed {
    pub(crate) branch: String,
    pub(crate) commit: String,
}

/// The change is on the remote for people to review: in its pull request, opened (or adopted)
/// and followed from now on, or as the pushed branch where the forge has none (plain git).
pub(crate) struct Published;

/// Commits the validated change, brings it onto the base branch's tip and pushes it.
pub(crate) async fn push(
    run: &mut RunExecution,
    target: &Target,
    workspace: &mut Workspace,
    plan: &CheckPlan,
    validated: Validated,
) -> Step<Pushed> {
    run.enter(Phase::Publishing).await?;
    // A rebase run's clean replay is committed already.
    if workspace.has_changes(&run.engine).await? {
        commit(run, workspace).await?;
    }
    rebase_if_moved(run, target, workspace, plan, validated.round).await?;
    run.progress(90).await?;
    let git = &run.engine.git;
    // The engine's own credential, fetched now because App tokens are short-lived; it goes
    // to git through environment config, never argv or the remote URL.
    let auth = target
        .forge
        .git_auth(&target.repo)
        .await
        .map_err(EngineError::Forge)?;
    let push_git = match &auth {
        Some(auth) => git.with_config_env(&auth.env()),
        None => git.clone(),
    };
    // A short-lived App token exists only from here on: masked like the others.
    if let (Some(auth), Some(current)) = (&auth, run.events.redactor()) {
        let more = current
            .with_secrets(auth.secrets().iter().map(|s| s.expose()))
            .map_err(EngineError::Core)?;
        run.events.set_redactor(more);
    }
    let worktree = &workspace.worktree;
    // On top of a pull request's head (a follow-up run): only while the branch is still where
    // the checkout found it, so a person's push in between is never overwritten.
    let pushed = match worktree.upstream() {
        Some(head) => {
            worktree
                .push_with_lease(&push_git, &target.repo.to_string(), head)
                .await
        }
        None => worktree.push(&push_git, &target.repo.to_string()).await,
    }
    .map_err(EngineError::Push)?;
    let branch = worktree.branch().to_string();
    run.events.info(
        Some(Phase::Publishing),
        format!("pushed {} to {branch}", short_sha(&pushed)),
    );
    run.change.commit = Some(pushed.clone());
    if let Ok(diff) = worktree.diff(git).await {
        run.change.diff = diff.patch;
        run.change.diff_stat = diff.stat;
        run.change.files_changed = diff.files;
    }
    // Stored before the checkpoint that names the push, so a run resumed after a crash
    // finds what the pull request description needs.
    run.save_change().await?;
    run.checkpoint.pushed_commit = Some(pushed.clone());
    run.save_checkpoint(Phase::Publishing).await?;
    Ok(Pushed {
        branch,
        commit: pushed,
    })
}

/// For a run taken over after its push: straight on to the pull request.
pub(crate) async fn after_takeover(
    run: &mut RunExecution,
    target: &Target,
    pushed: Pushed,
) -> Step<Published> {
    run.events.info(
        Some(Phase::Publishing),
        format!(
            "{} was pushed to {} before the interruption: going on with the pull request",
            short_sha(&pushed.commit),
            pushed.branch
        ),
    );
    run.enter(Phase::Publishing).await?;
    pull_request(run, target, pushed).await
}

/// Opens the pull request for the pushed branch, or adopts and updates the open one (this
/// run before a crash, or an earlier run of the task), and records it.
pub(crate) async fn pull_request(
    run: &mut RunExecution,
    target: &Target,
    pushed: Pushed,
) -> Step<Published> {
    let public_url = run.engine.config.public_url.trim_end_matches('/');
    let change = &run.change;
    let body = render_pr_body(&PrBody {
        task_id: run.task.id,
        run_number: run.run.number,
        summary: change.summary.clone(),
        instructions: run.task.instructions.clone(),
        files_changed: change.files_changed.clone(),
        diff_stat: change.diff_stat.clone(),
        checks: change.checks.clone(),
        rounds: change.rounds,
        guard: change.guard.clone(),
        verdicts: change.verdicts.clone(),
        usage: Some(run.usage),
        task_url: (!public_url.is_empty()).then(|| format!("{public_url}/tasks/{}", run.task.id)),
    });
    let spec = PullRequestSpec {
        repo: target.repo.url().clone(),
        base: run.task.base_branch.clone(),
        head: pushed.branch.clone(),
        title: run.events.redact(&run.task.title),
        body: run.events.redact(&body),
        labels: Vec::new(),
    };
    let found = target
        .forge
        .find_or_create_pull_request(&spec)
        .await
        .map_err(EngineError::Forge)?;
    let Some(pr) = found else {
        // Plain git: the branch is the result; the review page is Nightshift's own.
        return Ok(Published);
    };
    run.events.emit(
        EventKind::Info,
        Some(Phase::Publishing),
        format!(
            "{} pull request #{}: {}",
            if pr.adopted {
                "updated the open"
            } else {
                "opened"
            },
            pr.number,
            pr.url
        ),
        serde_json::json!({"pr_number": pr.number, "pr_url": pr.url, "adopted": pr.adopted}),
    );
    run.checkpoint.pr_number = Some(pr.number);
    run.checkpoint.pr_url = Some(pr.url.clone());
    run.change.pr_number = Some(pr.number);
    run.change.pr_url = Some(pr.url.clone());
    run.save_checkpoint(Phase::Publishing).await?;
    // From here the pull request is followed whatever happens to this run or its worker.
    let follow_for = run.engine.config.follow_for.as_millis() as i64;
    run.engine
        .store
        .follow_pull_request(&NewFollow {
            project_id: run.task.project_id,
            task_id: run.task.id,
            run_id: run.run.id,
            repo: run.task.repo.clone(),
            number: pr.number,
            url: pr.url,
            branch: pushed.branch.clone(),
            follow_until: now_millis().saturating_add(follow_for),
        })
        .await
        .map_err(EngineError::Store)?;
    Ok(Published)
}

/// Commits everything in the checkout with the task's trailers.
async fn commit(run: &mut RunExecution, workspace: &Workspace) -> Step<()> {
    let message = run.events.redact(&commit_message(run));
    let trailers = [
        ("Nightshift-Task", run.task.id.to_string()),
        ("Nightshift-Run", run.run.number.to_string()),
    ];
    let commit = workspace
        .worktree
        .commit(&run.engine.git, &message, &trailers)
        .await
        .map_err(EngineError::workspace("cannot commit"))?;
    run.change.commit_message = message;
    run.events.info(
        Some(Phase::Publishing),
        format!("committed {}", short_sha(&commit)),
    );
    run.checkpoint.commit = Some(commit);
    Ok(())
}

/// The task's title, with the agent's summary as the body when it says more.
fn commit_message(run: &RunExecution) -> String {
    let title = &run.task.title;
    match &run.change.summary {
        Some(summary) if !summary.trim().is_empty() && summary.trim() != title => {
            format!("{title}\n\n{}", summary.trim())
        }
        _ => title.clone(),
    }
}

/// Replays the commit onto the base branch's tip when it moved, and proves the result again
/// before it leaves the machine.
async fn rebase_if_moved(
    run: &mut RunExecution,
    target: &Target,
    workspace: &mut Workspace,
    plan: &CheckPlan,
    round: u32,
) -> Step<()> {
    let base = &run.task.base_branch;
    let fresh = run
        .engine
        .mirrors
        .refresh_base(&target.repo, base)
        .await
        .map_err(EngineError::workspace("cannot fetch the base branch"))?;
    let old = workspace.worktree.base_commit().to_string();
    if fresh == old {
        return Ok(());
    }
    run.events.info(
        Some(Phase::Publishing),
        format!(
            "{base} moved from {} to {}: rebasing",
            short_sha(&old),
            short_sha(&fresh)
        ),
    );
    workspace
        .worktree
        .rebase_onto(&run.engine.git, &fresh)
        .await
        .map_err(|e| match e {
            conflict @ nightshift_workspace::WorkspaceError::Conflict { .. } => {
                EngineError::Conflict(conflict)
            }
            other => EngineError::workspace("cannot rebase")(other),
        })?;
    let results = run_checks(run, workspace, plan, &[Stage::Lint, Stage::Test], round).await?;
    if let Some(failed) = results.iter().find(|r| r.outcome != CheckOutcome::Passed) {
        return Err(EngineError::RecheckFailed {
            base: run.task.base_branch.to_string(),
            check: format!("{} `{}`", failed.stage, failed.command),
        }
        .into());
    }
    Ok(())
}
