//! A warm checkout: the run's copy-on-write layer over the base of its repository at the base
//! branch's tip, built first when there is none — setup and the checks run once in it, in the
//! sandbox, on behalf of every later run on the same commit and setup inputs. One build per
//! repository at a time; a run that finds one under way waits, and says so.

use nightshift_checks::{CheckPlan, SETUP_INPUTS};
use nightshift_core::{EventKind, Phase, format_duration, now_millis};
use nightshift_workspace::{BaseInfo, BaseLease, BuildLock, RepoBases, Worktree};

use super::prepare::Target;
use super::{Halt, RunExecution, Step, Workspace, baseline, short_sha};
use crate::EngineError;
use crate::baseline::BaselineKey;

/// The run's layer and the base under it (held: a base in use is never evicted).
pub(crate) struct Warm {
    pub(crate) worktree: Worktree,
    pub(crate) base: BaseLease,
}

/// The run's layer over the ready base of the base branch's tip, building that base first when
/// this worker has none for it.
pub(crate) async fn checkout(run: &mut RunExecution, target: &Target) -> Step<Warm> {
    let engine = run.engine.clone();
    let failed = EngineError::workspace("cannot prepare the workspace");
    let commit = engine
        .mirrors
        .refresh_base(&target.repo, &run.task.base_branch)
        .await
        .map_err(failed)?;
    let mirror = engine.mirrors.mirror_path(&target.repo);
    // Per project, as the download caches are: one tenant's runs never start from another's.
    let scope = format!(
        "{}/{}",
        run.task.project_id,
        mirror.file_stem().unwrap_or_default().to_string_lossy()
    );
    let bases = engine
        .bases
        .repo(&scope)
        .map_err(EngineError::workspace("cannot keep warm bases"))?;
    let key = base_key(run, &target.repo.to_string(), &commit)?;
    let ready = |bases: &RepoBases| {
        bases
            .ready(&key)
            .map_err(EngineError::workspace("cannot read the warm bases"))
    };
    let base = match ready(&bases)? {
        Some(base) => base,
        None => {
            let lock = lock_building(run, &bases, &commit).await?;
            // Whoever held the lock may have built this very base.
            match ready(&bases)? {
                Some(base) => base,
                None => {
                    let base = build(run, target, &bases, &lock, &key, &commit).await?;
                    drop(lock);
                    evict(run);
                    base
                }
            }
        }
    };
    let worktree = engine
        .mirrors
        .add_layer(
            &target.repo,
            &run.task.base_branch,
            &target.branch,
            &base,
            bases.mount_point(),
            &run.run_dir.join("layer"),
        )
        .await
        .map_err(EngineError::workspace("cannot prepare the workspace"))?;
    let age = (now_millis() - base.info().built_at).max(0) as u64;
    run.events.emit(
        EventKind::Info,
        Some(Phase::Preparing),
        format!(
            "workspace ready: a copy-on-write layer over the warm base of {} at {} (built {} ago)",
            run.task.base_branch,
            short_sha(&commit),
            format_duration(std::time::Duration::from_millis(age))
        ),
        serde_json::json!({"workspace": {"mode": "overlay", "base_commit": commit, "base_built_at": base.info().built_at}}),
    );
    Ok(Warm { worktree, base })
}

/// The right to build this repository's base, waited for (visibly) while another run has it.
async fn lock_building(run: &RunExecution, bases: &RepoBases, commit: &str) -> Step<BuildLock> {
    let failed = || EngineError::workspace("cannot lock the warm bases");
    if let Some(lock) = bases.try_lock_building().map_err(failed())? {
        return Ok(lock);
    }
    run.events.emit(
        EventKind::Info,
        Some(Phase::Preparing),
        format!(
            "waiting: another run is building the warm base of {} ({} at {}); this run starts \
             on it once it is ready",
            run.events.redact(&run.task.repo),
            run.task.base_branch,
            short_sha(commit)
        ),
        serde_json::json!({"waiting": "base_build"}),
    );
    tokio::select! {
        lock = bases.lock_building() => Ok(lock.map_err(failed())?),
        () = run.stop.cancelled() => Err(Halt::Stopped),
    }
}

/// Builds the base of `commit`: from the last base (setup again only if what it installs from
/// changed), else afresh; then the checks, once. A setup that fails leaves no base behind.
async fn build(
    run: &mut RunExecution,
    target: &Target,
    bases: &RepoBases,
    lock: &BuildLock,
    key: &str,
    commit: &str,
) -> Step<BaseLease> {
    let engine = run.engine.clone();
    let failed = || EngineError::workspace("cannot build the warm base");
    let build = lock.start(key).map_err(failed())?;
    let _counted = CountedBuild::link(&run.run_dir, &build.tree()).map_err(EngineError::io(
        "cannot link the base being built from the run's directory",
    ))?;
    let last = bases.latest().map_err(failed())?;
    let (worktree, refreshed) = engine
        .mirrors
        .base_worktree(
            &target.repo,
            &run.task.base_branch,
            commit,
            &build,
            bases.mount_point(),
            last.as_ref(),
        )
        .await
        .map_err(failed())?;
    let from = match (&last, refreshed) {
        (Some(last), true) => format!("from the last one, of {}", short_sha(&last.info().commit)),
        _ => "checked out afresh".to_string(),
    };
    run.events.emit(
        EventKind::Info,
        Some(Phase::Preparing),
        format!(
            "building the warm base of {} at {} ({from}): setup and the checks run once, for \
             every run on it",
            run.task.base_branch,
            short_sha(commit)
        ),
        serde_json::json!({"base_build": {"commit": commit, "refreshed": refreshed}}),
    );
    let confinement = super::prepare::confine(run, &worktree)?;
    let mut workspace = Workspace {
        worktree,
        confinement,
        base: None,
    };
    // The repository's own plan: a template's checks are the run's, taken in its layer.
    let plan = nightshift_checks::discover(workspace.worktree.unchanged_tree())
        .map_err(EngineError::ChecksConfig)?;
    let inputs = setup_inputs(run, &workspace, &plan).await?;
    let unchanged = refreshed
        && last
            .as_ref()
            .is_some_and(|l| l.info().setup_inputs == inputs);
    drop(last);
    if unchanged && !plan.setup.is_empty() {
        run.events.info(
            Some(Phase::Preparing),
            "setup skipped: its commands, lockfiles and manifests are those of the last base",
        );
    } else {
        baseline::setup(run, &workspace, &plan).await?;
    }
    baseline::on_base(run, &mut workspace, &plan, baseline::Reuse::Never).await?;
    let untracked = workspace
        .worktree
        .untracked(&engine.git)
        .await
        .map_err(failed())?;
    let info = BaseInfo {
        key: key.to_string(),
        commit: commit.to_string(),
        setup_inputs: inputs,
        untracked,
        built_at: now_millis(),
        bytes: 0,
    };
    let base = build
        .finish_with_index(&workspace.worktree, &engine.git, info)
        .await
        .map_err(failed())?;
    run.events.info(
        Some(Phase::Preparing),
        format!(
            "the warm base of {} at {} is ready ({} MiB)",
            run.task.base_branch,
            short_sha(commit),
            base.info().bytes >> 20
        ),
    );
    Ok(base)
}

/// What the base being built writes counts under the building run's `checkout_disk`: its
/// directory is linked from the run's own (`<run>/base`, which the run's disk watcher measures
/// through the link) for as long as the build lasts.
struct CountedBuild(std::path::PathBuf);

impl CountedBuild {
    fn link(run_dir: &std::path::Path, tree: &std::path::Path) -> std::io::Result<CountedBuild> {
        std::fs::create_dir_all(run_dir)?;
        let link = run_dir.join(crate::limits::BASE_BUILD);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(tree.parent().unwrap_or(tree), &link)?;
        Ok(CountedBuild(link))
    }
}

impl Drop for CountedBuild {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Keeps this worker's bases within their budget, after a new one took its place.
fn evict(run: &RunExecution) {
    for dir in run.engine.bases.evict_over_budget() {
        run.events.info(
            Some(Phase::Preparing),
            format!(
                "removed the least recently used warm base {} to keep within bases_budget",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ),
        );
    }
}

/// What a base depends on besides its tree: the repository and commit, and everything setup
/// and the checks get from the server (sandbox, registries, variables, toolchain versions).
fn base_key(run: &RunExecution, repo: &str, commit: &str) -> Step<String> {
    let config = &run.engine.config;
    let mirror = run
        .engine
        .mirrors
        .mirror_path(&nightshift_core::RepoUrl::parse(repo).map_err(EngineError::Core)?);
    let (env, _, _) = crate::confinement::phase_env(config, run.task.project_id, &mirror)?;
    // Values are hashed, never stored.
    let mut key = BaselineKey::new();
    key.add("warm base")
        .add(repo)
        .add(commit)
        .add(config.confinement.mode.as_str());
    for host in &config.confinement.setup_hosts {
        key.add(&host.to_string());
    }
    for (name, value) in &env.checks {
        key.add(name).add(value);
    }
    for line in &env.log {
        key.add(line);
    }
    Ok(key.finish()[..32].to_string())
}

/// A hash of what setup installs from: its commands and the committed lockfiles and manifests.
async fn setup_inputs(run: &RunExecution, workspace: &Workspace, plan: &CheckPlan) -> Step<String> {
    let tracked = workspace
        .worktree
        .tracked_contents(&run.engine.git, SETUP_INPUTS)
        .await
        .map_err(EngineError::workspace("cannot read the lockfiles"))?;
    let mut key = BaselineKey::new();
    for command in &plan.setup {
        key.add(command);
    }
    Ok(key.add(&tracked).finish())
}
