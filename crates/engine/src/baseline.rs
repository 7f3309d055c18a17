//! The repository's checks on its unchanged base commit, in the sandbox a run uses: for
//! `nightshift checks baseline`, which tells a user before any task whether Nightshift can
//! validate a repository, and the cache of runs' baselines. The cache is per worker (in its
//! data directory, like its mirrors): what runs and passes depends on the machine's toolchains.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nightshift_checks::{Baseline, CannotRun, CheckPlan, CheckRunner, Stage};
use nightshift_core::{AgentSpec, CheckResult, Millis, Redactor, now_millis};
use nightshift_sandbox::{AllowedHost, OutputLine};
use nightshift_workspace::Worktree;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::confinement::{ConfinementStatus, RunConfinement, SandboxMode};
use crate::{EngineConfig, EngineError, Result};

/// Cached baselines older than this are removed when another is saved: a base that has not
/// moved for so long gets its checks run again.
const KEEP_UNUSED: Duration = Duration::from_secs(30 * 24 * 3600);

/// One command of the plan run on the base, and why it could not run, if it could not.
#[derive(Debug, Clone, Serialize)]
pub struct BaseCheck {
    pub result: CheckResult,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cannot_run: Option<CannotRun>,
}

/// Runs `plan` on the checkout `worktree` as a run would before its agent: setup with network to
/// the setup hosts, then format, lint and test without, all confined as the server's
/// configuration says. Stops after a setup command that cannot run (the checks would only
/// repeat it). `on_line` sees every line of output, `on_check` each command as it ends.
pub async fn check_base(
    config: &EngineConfig,
    worktree: &Worktree,
    plan: &CheckPlan,
    stop: &CancellationToken,
    on_line: &mut (dyn FnMut(Stage, &OutputLine) + Send),
    on_check: &mut (dyn FnMut(&BaseCheck) + Send),
) -> Result<Vec<BaseCheck>> {
    let status = ConfinementStatus::probe(&config.confinement);
    if status.sandbox == SandboxMode::Bubblewrap && !status.confined {
        return Err(EngineError::Unconfined(status.detail));
    }
    let home = config.data_dir.join("home");
    std::fs::create_dir_all(&home).map_err(EngineError::io("cannot create the checks' home"))?;
    let redactor = Redactor::new(config.confinement.secret_values())?;
    // No agent runs here: the command agent needs nothing shown besides the toolchains.
    let confinement = RunConfinement::new(
        config,
        0,
        &AgentSpec::command("true"),
        worktree,
        &home,
        redactor,
    )?;
    let path = confinement.checks_path();
    let mut checks = Vec::new();
    for stage in Stage::ALL {
        let hosts = hosts_for(stage == Stage::Setup, plan, &config.confinement.setup_hosts);
        let sandbox = confinement
            .with_hosts(&hosts)
            .map_err(EngineError::sandbox("cannot confine the checks"))?;
        let runner = CheckRunner::new(sandbox, vec![("HOME".into(), home.display().to_string())]);
        for command in plan.commands(stage) {
            let mut lines = |line: &OutputLine| -> nightshift_checks::LineTaken {
                on_line(stage, line);
                Box::pin(async {})
            };
            let result = runner
                .run(stage, command, worktree.path(), 0, stop, &mut lines)
                .await
                .map_err(EngineError::Checks)?;
            let cannot_run = CannotRun::of(&result, &path);
            let setup_blocked = stage == Stage::Setup && cannot_run.is_some();
            let check = BaseCheck { result, cannot_run };
            on_check(&check);
            checks.push(check);
            if setup_blocked {
                return Ok(checks);
            }
        }
    }
    Ok(checks)
}

/// Setup reaches the registries the server allows; checks what the repository asked for.
pub(crate) fn hosts_for(
    setup: bool,
    plan: &CheckPlan,
    setup_hosts: &[AllowedHost],
) -> Vec<AllowedHost> {
    if setup {
        setup_hosts.to_vec()
    } else {
        plan.network
            .iter()
            .filter_map(|h| AllowedHost::parse(h).ok())
            .collect()
    }
}

/// What a cached baseline holds besides the results: when it was taken and of what.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CachedBaseline {
    pub(crate) repo: String,
    pub(crate) taken_at: Millis,
    pub(crate) baseline: Baseline,
}

/// The baselines runs on this worker took, one file per key under `<data>/baselines`.
pub(crate) struct BaselineCache {
    dir: PathBuf,
}

/// What a baseline's results depend on. Values are hashed, never stored.
pub(crate) struct BaselineKey {
    hasher: Sha256,
}

impl BaselineKey {
    pub(crate) fn new() -> Self {
        let mut key = BaselineKey {
            hasher: Sha256::new(),
        };
        // A new version may detect, run or judge checks differently.
        key.add("nightshift baseline 1");
        key.add(env!("CARGO_PKG_VERSION"));
        key
    }

    pub(crate) fn add(&mut self, part: &str) -> &mut Self {
        // Length-prefixed, so that no two lists of parts hash alike.
        self.hasher.update((part.len() as u64).to_le_bytes());
        self.hasher.update(part.as_bytes());
        self
    }

    pub(crate) fn finish(&self) -> String {
        hex::encode(self.hasher.clone().finalize())
    }
}

impl BaselineCache {
    pub(crate) fn new(data_dir: &Path) -> Self {
        BaselineCache {
            dir: data_dir.join("baselines"),
        }
    }

    fn file(&self, key: &BaselineKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.finish()))
    }

    /// The baseline taken under `key`, if one was; an unreadable entry is no entry.
    pub(crate) fn load(&self, key: &BaselineKey) -> Option<CachedBaseline> {
        let text = std::fs::read_to_string(self.file(key)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Keeps `cached` under `key`, replacing the file whole (a reader never sees half of it),
    /// and removes old entries.
    pub(crate) fn save(&self, key: &BaselineKey, cached: &CachedBaseline) -> Result<()> {
        let io = |what: &str| EngineError::io(format!("{what} in {}", self.dir.display()));
        std::fs::create_dir_all(&self.dir).map_err(io("cannot create the baseline cache"))?;
        nightshift_store::restrict_to_owner(&self.dir)
            .map_err(io("cannot make the baseline cache private"))?;
        self.prune();
        let text = serde_json::to_vec(cached)
            .map_err(|e| EngineError::Invalid(format!("cannot write a baseline: {e}")))?;
        let mut file =
            tempfile::NamedTempFile::new_in(&self.dir).map_err(io("cannot write a baseline"))?;
        std::io::Write::write_all(&mut file, &text).map_err(io("cannot write a baseline"))?;
        file.persist(self.file(key))
            .map_err(|e| io("cannot write a baseline")(e.error))?;
        Ok(())
    }

    fn prune(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let cutoff = now_millis() - KEEP_UNUSED.as_millis() as i64;
        for entry in entries.flatten() {
            let taken = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as i64);
            if taken.is_some_and(|at| at < cutoff) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
