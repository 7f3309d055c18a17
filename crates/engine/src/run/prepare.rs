//! The preparing phase: the run's secret filter, its forge with push access checked (so a run
//! that could never publish fails in seconds), then its checkout — fresh, or with the agent's
//! restored result — with its sandboxes, the repository's checks, their setup and their
//! baseline on the base commit (see `baseline`); warm, over a base, where it can (see `warm`).

use nightshift_checks::{CheckPlan, Stage};
use nightshift_core::{EventKind, FollowUpKind, Phase, Redactor};
use nightshift_forge::{Forge, RepoPath};
use nightshift_workspace::{AllowedRepo, Worktree};

use super::agent::FirstRound;
use super::baseline;
use super::resume::{self, Checkout};
use super::validate::Validated;
use super::{RunExecution, Step, Workspace, short_sha};
use crate::EngineError;
use crate::confinement::{RunConfinement, SandboxMode};

/// Where the run's change goes: the repository, its forge (push access checked), the branch.
pub(crate) struct Target {
    pub(crate) repo: AllowedRepo,
    pub(crate) forge: Box<dyn Forge>,
    pub(crate) branch: String,
}

/// What the phases after preparing work with.
pub(crate) struct Prepared<'w> {
    pub(crate) workspace: &'w mut Workspace,
    pub(crate) plan: CheckPlan,
    pub(crate) start: Start,
}

/// Where the run goes on from once its checkout is ready.
pub(crate) enum Start {
    /// The agent's rounds: the first one, or validating a restored one.
    Agent(FirstRound),
    /// The restored change had passed its checks: publishing.
    Validated(Validated),
    /// A rebase run whose branch replayed onto the base without conflicts: checked again,
    /// then pushed.
    Rebased,
    /// A rebase run whose branch already has the base's tip: nothing to do.
    UpToDate,
}

/// The run's secret filter and its target. Everything the run records is masked from here on.
pub(crate) async fn target(run: &mut RunExecution) -> Step<Target> {
    // Checked again, not only at creation: the operator's rules may have changed since.
    let repo = run.engine.task_repo(&run.task.repo).await?;
    let host = RepoPath::parse(&repo).ok().map(|p| p.host);
    let redactor = run
        .engine
        .run_redactor(run.task.project_id, host.as_deref())
        .await?;
    run.events.set_redactor(redactor);
    run.enter(Phase::Preparing).await?;
    // Never unconfined by accident: only an explicit `sandbox = "none"` runs without it.
    let status = run.engine.confinement();
    if status.sandbox == SandboxMode::Bubblewrap && !status.confined {
        return Err(EngineError::Unconfined(status.detail.clone()).into());
    }
    let forge = run
        .engine
        .forge(run.task.project_id, &repo, &run.events)
        .await?;
    // A follow-up run pushes to its pull request's branch, whatever the task's name gives now.
    let branch = match &run.run.follow_up {
        Some(follow_up) => follow_up.branch.clone(),
        None => run.task.branch_name(),
    };
    if branch == run.task.base_branch {
        return Err(EngineError::BaseIsTarget(branch).into());
    }
    forge
        .check_push_access(&repo)
        .await
        .map_err(EngineError::Forge)?;
    run.events.info(
        Some(Phase::Preparing),
        format!("{} grants push access to {repo}", forge.name()),
    );
    Ok(Target {
        repo,
        forge,
        branch,
    })
}

/// The run's checkout with its sandboxes, checks and setup; the workspace goes into `slot`,
/// where `conclude` finds it whatever happens next.
pub(crate) async fn workspace<'w>(
    run: &mut RunExecution,
    target: &Target,
    from: Checkout,
    slot: &'w mut Option<Workspace>,
) -> Step<Prepared<'w>> {
    // A first attempt starts warm where this worker mounts overlays; restoring a snapshot
    // takes a worktree on the commit it was made on, and a follow-up one on its pull
    // request's branch.
    let warm = matches!(from, Checkout::Base { .. })
        && run.run.follow_up.is_none()
        && run.engine.workspaces().await.overlay();
    let (worktree, from, base, path) = if warm {
        let warm = super::warm::checkout(run, target).await?;
        (
            warm.worktree,
            from,
            Some(warm.base),
            run.run_dir.join("layer"),
        )
    } else {
        let work = run.run_dir.join("work");
        let (worktree, from) = resume::checkout(run, target, from, &work).await?;
        (worktree, from, None, work)
    };
    let checked_out = match worktree.upstream() {
        Some(head) => format!(
            "checked out {} at {}, the pull request's head ({} left {} at {})",
            target.branch,
            short_sha(head),
            target.branch,
            run.task.base_branch,
            short_sha(worktree.base_commit())
        ),
        None => format!(
            "checked out {} at {} on branch {}",
            run.task.base_branch,
            short_sha(worktree.base_commit()),
            target.branch
        ),
    };
    run.events.info(Some(Phase::Preparing), checked_out);
    run.checkpoint.workspace = Some(path.display().to_string());
    run.checkpoint.branch = Some(target.branch.clone());
    run.checkpoint.base_commit = Some(worktree.base_commit().to_string());
    run.change.branch = Some(target.branch.clone());
    let confinement = confine(run, &worktree)?;
    for line in confinement.log() {
        run.events.info(Some(Phase::Preparing), line.clone());
    }
    let warm = base.is_some();
    let workspace = slot.insert(Workspace {
        worktree,
        confinement,
        _base: base,
    });
    let plan = plan(run, workspace).await?;
    // Before any agent time: a check that cannot run here ends the run now. A warm base had
    // its setup done when it was built.
    if !warm {
        baseline::setup(run, workspace, &plan).await?;
    }
    baseline::on_base(run, workspace, &plan, baseline::Reuse::Cached).await?;
    // Applied after the plan is read and set up: as in a first run, the checks are the ones
    // the repository had before the agent touched it.
    let rebasing = run
        .run
        .follow_up
        .as_ref()
        .is_some_and(|f| f.kind == FollowUpKind::Rebase);
    let start = if rebasing {
        super::rebase::replay(run, workspace).await?
    } else {
        resume::restore(run, target, workspace, from).await?
    };
    run.save_checkpoint(Phase::Preparing).await?;
    run.hand_over_if_stopping()?;
    Ok(Prepared {
        workspace,
        plan,
        start,
    })
}

/// The repository's checks, or a template's in their place.
async fn plan(run: &mut RunExecution, workspace: &Workspace) -> Step<CheckPlan> {
    let mut plan = nightshift_checks::discover(workspace.worktree.unchanged_tree())
        .map_err(EngineError::ChecksConfig)?;
    // A template's checks override replaces the repository's format, lint and test commands.
    if let Some((source, commands)) = run
        .engine
        .store
        .task_checks_override(run.task.project_id, run.task.id)
        .await
        .map_err(EngineError::record("cannot read the template's checks"))?
    {
        plan.format.clear();
        plan.lint.clear();
        plan.test = commands;
        plan.source = source;
        plan.evidence.retain(|e| e.stage == Stage::Setup);
    }
    run.change.checks_source = plan.source.clone();
    // Each check with the evidence it was found from, one per line.
    run.events.emit(
        EventKind::Check,
        Some(Phase::Preparing),
        plan.describe().join("\n"),
        serde_json::to_value(&plan).unwrap_or_default(),
    );
    if !plan.network.is_empty() {
        run.events.emit(
            EventKind::Check,
            Some(Phase::Preparing),
            format!(
                "{} asks for network in its checks: they may reach {}",
                nightshift_checks::CONFIG_FILE,
                plan.network.join(", ")
            ),
            serde_json::json!({"checks_network": plan.network}),
        );
    }
    Ok(plan)
}

/// The sandboxes over the run's checkout, with the run's secret filter.
pub(crate) fn confine(run: &RunExecution, worktree: &Worktree) -> Step<RunConfinement> {
    let redactor = match run.events.redactor() {
        Some(redactor) => Redactor::clone(&redactor),
        None => Redactor::shapes_only().map_err(EngineError::Core)?,
    };
    let home = run.home()?;
    Ok(RunConfinement::new(
        &run.engine.config,
        run.task.project_id,
        &run.task.agent,
        worktree,
        &home,
        redactor,
    )?)
}
