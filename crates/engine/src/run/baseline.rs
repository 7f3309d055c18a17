//! Before the agent: the repository's setup, then its checks on the unchanged base commit — or
//! their results from an earlier run on the same base, plan and setup inputs. A command that
//! cannot run here ends the run `setup_failed` before any agent time; a check that already
//! fails is a pre-existing failure the agent is told about (and must still pass before
//! anything is pushed). What setup and the checks leave in the checkout never enters the change.

use nightshift_checks::{Baseline, CannotRun, CheckPlan, SETUP_INPUTS, Stage};
use nightshift_core::{CheckResult, EventKind, Phase, format_duration, now_millis};

use super::validate::run_checks;
use super::{RunExecution, Step, Workspace, short_sha};
use crate::EngineError;
use crate::baseline::{BaselineCache, BaselineKey, CachedBaseline};

/// Progress shown once setup, then the baseline, are done (the agent starts at 15).
const SET_UP: u8 = 5;
const BASELINE_TAKEN: u8 = 12;

/// Runs the plan's setup; a command that fails ends the run, naming what is missing.
pub(crate) async fn setup(
    run: &mut RunExecution,
    workspace: &Workspace,
    plan: &CheckPlan,
) -> Step<()> {
    if plan.setup.is_empty() {
        return Ok(());
    }
    let results = run_checks(run, workspace, plan, &[Stage::Setup], 0).await?;
    cannot_run(workspace, &results)?;
    run.progress(SET_UP).await
}

/// Whether the checks on the base may be taken from an earlier run's results.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    Cached,
    /// Building a warm base: the checks run, so that what they build is there for every run.
    Never,
}

/// Runs setup again when the agent changed what it installs from (a lockfile, a manifest) since
/// setup last ran; its results join the round's checks, failures included.
pub(crate) async fn setup_again(
    run: &mut RunExecution,
    workspace: &Workspace,
    plan: &CheckPlan,
    round: u32,
) -> Step<Vec<CheckResult>> {
    if plan.setup.is_empty() {
        return Ok(Vec::new());
    }
    let changes = workspace
        .worktree
        .changes_among(&run.engine.git, SETUP_INPUTS)
        .await
        .map_err(EngineError::workspace("cannot read the workspace"))?;
    if changes.trim().is_empty() || changes == run.setup_changes {
        return Ok(Vec::new());
    }
    let files: Vec<String> = changes
        .lines()
        .filter_map(|l| {
            l.strip_prefix("diff --git a/")
                .and_then(|l| l.split(" b/").next())
                .or_else(|| {
                    l.strip_prefix("new file ")?
                        .rsplit_once(' ')
                        .map(|(p, _)| p)
                })
        })
        .map(str::to_string)
        .collect();
    run.events.emit(
        EventKind::Info,
        Some(run.phase),
        format!(
            "the change touches what setup installs from ({}): setup runs again before the checks",
            sample(&files)
        ),
        serde_json::json!({"setup_again": files}),
    );
    run.setup_changes = changes;
    run_checks(run, workspace, plan, &[Stage::Setup], round).await
}

/// The plan's checks on the base — run, or reused from the cache — then the checkout put back
/// as the base has it, with what setup and the checks left kept out of the change.
pub(crate) async fn on_base(
    run: &mut RunExecution,
    workspace: &mut Workspace,
    plan: &CheckPlan,
    reuse: Reuse,
) -> Step<()> {
    let commit = checked_out(&workspace.worktree).to_string();
    if plan.is_empty() {
        let setup_only = Baseline {
            commit,
            ..Baseline::default()
        };
        return keep_out_of_change(run, workspace, &setup_only).await;
    }
    let base = match workspace.worktree.upstream() {
        Some(head) => format!("{} at {}", workspace.worktree.branch(), short_sha(head)),
        None => format!("{} at {}", run.task.base_branch, short_sha(&commit)),
    };
    let key = key(run, workspace, plan);
    let cache = BaselineCache::new(&run.engine.config.data_dir);
    let cached = cache.load(&key).filter(|_| reuse == Reuse::Cached);
    let (baseline, cached_at) = match cached {
        Some(cached) => (cached.baseline, Some(cached.taken_at)),
        None => {
            let baseline = take(run, workspace, plan, &base, commit).await?;
            let cached = CachedBaseline {
                repo: run.events.redact(&run.task.repo),
                taken_at: now_millis(),
                baseline: baseline.clone(),
            };
            // A cache that cannot be written costs the next run time, not this one its result.
            if let Err(e) = cache.save(&key, &cached) {
                tracing::warn!(run_id = run.run.id, error = %e, "cannot keep the baseline");
            }
            (baseline, None)
        }
    };
    report(run, &baseline, &base, cached_at);
    keep_out_of_change(run, workspace, &baseline).await?;
    run.failing_on_base = baseline.failing().into_iter().cloned().collect();
    run.progress(BASELINE_TAKEN).await
}

/// Runs the checks on the base and puts back what the formatters changed.
async fn take(
    run: &mut RunExecution,
    workspace: &Workspace,
    plan: &CheckPlan,
    base: &str,
    commit: String,
) -> Step<Baseline> {
    run.events.info(
        Some(Phase::Preparing),
        format!("running the checks on the unchanged base ({base}) before the agent"),
    );
    // The base's results are not the change's: they stay out of its check table.
    let recorded = run.change.checks.len();
    let stages = [Stage::Format, Stage::Lint, Stage::Test];
    let results = run_checks(run, workspace, plan, &stages, 0).await;
    run.change.checks.truncate(recorded);
    let results = results?;
    cannot_run(workspace, &results)?;
    let git = &run.engine.git;
    let reformatted = workspace
        .worktree
        .restore_tracked(git)
        .await
        .map_err(EngineError::workspace("cannot put the base back"))?;
    let untracked = workspace
        .worktree
        .untracked(git)
        .await
        .map_err(EngineError::workspace("cannot read the workspace"))?;
    let mut results = results;
    // Kept on disk: masked like everything else the run records.
    for result in &mut results {
        result.output = run.events.redact(&result.output);
        result.command = run.events.redact(&result.command);
    }
    Ok(Baseline {
        commit,
        results,
        untracked,
        reformatted,
    })
}

/// Ends the run, before any agent time, when one of `results` could not run at all.
fn cannot_run(workspace: &Workspace, results: &[CheckResult]) -> Step<()> {
    let path = workspace.confinement.checks_path();
    match results.iter().find_map(|r| CannotRun::of(r, &path)) {
        Some(blocked) => Err(EngineError::CannotRun(Box::new(blocked)).into()),
        None => Ok(()),
    }
}

/// The commit the checkout started from: the base's, or for a follow-up run the pull
/// request's head, whose baseline is not the base's.
fn checked_out(worktree: &nightshift_workspace::Worktree) -> &str {
    worktree.upstream().unwrap_or(worktree.base_commit())
}

/// What the baseline's results depend on: the repository at its base commit, the plan, and
/// everything setup and the checks get from the server — toolchains, variables, hosts.
fn key(run: &RunExecution, workspace: &Workspace, plan: &CheckPlan) -> BaselineKey {
    let mut key = BaselineKey::new();
    key.add(&run.task.repo)
        .add(checked_out(&workspace.worktree))
        .add(run.engine.config.confinement.mode.as_str());
    for stage in Stage::ALL {
        key.add(stage.as_str());
        for command in plan.commands(stage) {
            key.add(command);
        }
    }
    for host in &plan.network {
        key.add(host);
    }
    for host in &run.engine.config.confinement.setup_hosts {
        key.add(&host.to_string());
    }
    for (name, value) in workspace.confinement.checks_env() {
        key.add(name).add(value);
    }
    // Names the toolchains with their versions.
    for line in workspace.confinement.log() {
        key.add(line);
    }
    key
}

/// The baseline in the run's log: which checks pass on the base and which already fail.
fn report(run: &RunExecution, baseline: &Baseline, base: &str, cached_at: Option<i64>) {
    let failing: Vec<String> = baseline
        .failing()
        .iter()
        .map(|r| format!("{} `{}`", r.stage, r.command))
        .collect();
    let passing = baseline.results.len() - failing.len();
    let source = match cached_at {
        Some(at) => format!(
            "from an earlier run on the same base, plan and setup ({} ago)",
            format_duration(std::time::Duration::from_millis(
                (now_millis() - at).max(0) as u64
            ))
        ),
        None => "run before the agent".to_string(),
    };
    let verdict = if failing.is_empty() {
        format!("all {passing} checks pass")
    } else {
        format!(
            "{passing} pass; already failing on the base (pre-existing, so the agent is told; \
             they must pass before anything is pushed): {}",
            failing.join(", ")
        )
    };
    run.events.emit(
        EventKind::Check,
        Some(Phase::Preparing),
        format!("baseline on {base}, {source}: {verdict}"),
        serde_json::json!({"baseline": {
            "commit": baseline.commit,
            "cached": cached_at.is_some(),
            "taken_at": cached_at,
            "passing": passing,
            "failing": failing,
            "reformatted": baseline.reformatted,
        }}),
    );
    if !baseline.reformatted.is_empty() {
        run.events.info(
            Some(Phase::Preparing),
            format!(
                "the formatters change {} of the unchanged base ({}): a change carries their \
                 formatting",
                match baseline.reformatted.len() {
                    1 => "1 file".to_string(),
                    n => format!("{n} files"),
                },
                sample(&baseline.reformatted)
            ),
        );
    }
}

/// Leaves what setup and the checks left untracked (an install the repository does not
/// ignore) out of the change, through an excludes file beside the checkout.
async fn keep_out_of_change(
    run: &RunExecution,
    workspace: &mut Workspace,
    baseline: &Baseline,
) -> Step<()> {
    let worktree = &mut workspace.worktree;
    let mut untracked = match &workspace.base {
        // A run's layer, before anything ran in it, shows its base as it is: what setup and
        // the checks left untracked there was listed when the base was built (what the
        // baseline's checks leave if they ran in the layer comes below).
        Some(base) => base.info().untracked.clone(),
        None => worktree
            .untracked(&run.engine.git)
            .await
            .map_err(EngineError::workspace("cannot read the workspace"))?,
    };
    // A reused baseline's checks did not run here: what they leave comes when validating does.
    for path in &baseline.untracked {
        if !untracked.contains(path) {
            untracked.push(path.clone());
        }
    }
    untracked.sort();
    worktree
        .exclude(&untracked, &run.run_dir.join("excludes"))
        .map_err(EngineError::workspace(
            "cannot keep setup's files out of the change",
        ))?;
    if !untracked.is_empty() {
        run.events.emit(
            EventKind::Info,
            Some(Phase::Preparing),
            format!(
                "kept out of the change: {} (left by setup and the checks; the repository does \
                 not ignore them)",
                sample(&untracked)
            ),
            serde_json::json!({"excluded": untracked}),
        );
    }
    Ok(())
}

/// The first few of `paths`, and how many more.
fn sample(paths: &[String]) -> String {
    const SHOWN: usize = 8;
    let mut text = paths
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN {
        text.push_str(&format!(" and {} more", paths.len() - SHOWN));
    }
    text
}
