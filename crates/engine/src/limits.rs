//! Per-run bounds on what a run leaves behind: the bytes of its events in the database, the
//! size of one event, and the disk its checkout, HOME and `/tmp` may fill while it runs.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nightshift_core::{EventKind, format_size};

use crate::EventSink;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// `[run_limits]` in nightshift.toml. `None` lifts a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunLimits {
    /// Bytes of events one run stores (messages, data and rows, as the store counts them). Past
    /// it, the output of the agent and of the checks is no longer stored; the run's own phases,
    /// checks and errors still are.
    pub stored_events: Option<u64>,
    /// The longest message, and the longest text in the data, of one event: longer is cut, and
    /// the cut says how much is missing.
    pub event_size: Option<u64>,
    /// Disk the run's checkout and its HOME may use together; past it the run is stopped.
    pub checkout_disk: Option<u64>,
    /// Disk the `/tmp` of a run's confined processes may use together; past it the run is stopped.
    pub tmp_disk: Option<u64>,
}

impl Default for RunLimits {
    /// Room for a large build and a chatty agent, not for a runaway one.
    fn default() -> Self {
        RunLimits {
            stored_events: Some(32 * MIB),
            event_size: Some(64 * KIB),
            checkout_disk: Some(32 * GIB),
            tmp_disk: Some(4 * GIB),
        }
    }
}

impl RunLimits {
    pub fn unlimited() -> Self {
        RunLimits {
            stored_events: None,
            event_size: None,
            checkout_disk: None,
            tmp_disk: None,
        }
    }
}

/// What a limit's message names: the setting, so an operator knows what to raise.
pub(crate) fn setting(name: &str) -> String {
    format!("{name} in [run_limits] of nightshift.toml")
}

/// A disk limit the run went past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OverLimit {
    pub(crate) name: &'static str,
    pub(crate) limit: u64,
    pub(crate) used: u64,
    /// What it says to people: which limit, its size, and how to raise it.
    pub(crate) message: String,
}

/// The run directory's parts each disk limit covers, as the run lays them out.
fn measured(
    run_dir: &Path,
    limits: &RunLimits,
) -> Vec<(&'static str, &'static str, Vec<PathBuf>, u64)> {
    let mut parts = Vec::new();
    if let Some(limit) = limits.checkout_disk {
        // A warm run's writes are all in its layer; the base under it is shared, not the run's,
        // but the run that builds a base answers for what the build writes (through the link
        // the build leaves in the run's directory while it lasts).
        let dirs = vec![
            run_dir.join("work"),
            run_dir.join("layer"),
            run_dir.join("home"),
            run_dir.join(BASE_BUILD),
        ];
        parts.push(("checkout_disk", "the run's checkout and HOME", dirs, limit));
    }
    if let Some(limit) = limits.tmp_disk {
        parts.push((
            "tmp_disk",
            "the /tmp of the run's processes",
            vec![tmp_root(run_dir)],
            limit,
        ));
    }
    parts
}

/// In a run's directory, the link to the warm base the run builds, while it builds one.
pub(crate) const BASE_BUILD: &str = "base";

/// Where the confined processes of the run in `run_dir` get their `/tmp`.
pub(crate) fn tmp_root(run_dir: &Path) -> PathBuf {
    run_dir.join("tmp")
}

/// Measures the run's disk until a limit is passed, and returns which. Each measurement walks
/// the directories, so the next waits twenty times as long as it took (between 1 and 15 s): a
/// run may write past a limit for that long before it is stopped.
async fn watch_disk(run_dir: PathBuf, limits: RunLimits) -> OverLimit {
    let parts = measured(&run_dir, &limits);
    if parts.is_empty() {
        return std::future::pending().await;
    }
    let mut pause = Duration::from_secs(1);
    loop {
        tokio::time::sleep(pause).await;
        let parts = parts.clone();
        let started = Instant::now();
        let over = tokio::task::spawn_blocking(move || {
            parts.into_iter().find_map(|(name, what, dirs, limit)| {
                let used: u64 = dirs.iter().map(|d| disk_use(d)).sum();
                (used > limit).then(|| OverLimit {
                    name,
                    limit,
                    used,
                    message: format!(
                        "{what} took {} of disk, over the limit of {} ({}): the run was stopped; \
                         raise the limit there if runs of this repository need more",
                        format_size(used),
                        format_size(limit),
                        setting(name)
                    ),
                })
            })
        })
        .await;
        match over {
            Ok(Some(over)) => return over,
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "measuring a run's disk failed"),
        }
        pause = (started.elapsed() * 20).clamp(Duration::from_secs(1), Duration::from_secs(15));
    }
}

/// Stops the run in `run_dir` (through `stop`, with the message people read) when it goes past
/// a disk limit, saying so in its events first.
pub(crate) async fn stop_over_disk(
    run_dir: PathBuf,
    limits: RunLimits,
    events: EventSink,
    stop: impl FnOnce(String),
) {
    let over = watch_disk(run_dir, limits).await;
    events.emit(
        EventKind::Error,
        None,
        format!(
            "{} of disk used, over the limit {} of {}: stopping the run",
            format_size(over.used),
            over.name,
            format_size(over.limit)
        ),
        serde_json::json!({"limit": {"name": over.name, "bytes": over.limit, "used": over.used}}),
    );
    stop(over.message);
}

/// The disk the files under `root` take (allocated blocks, as `du` counts them), each file once
/// however many links it has. Symbolic links are not followed; what vanishes meanwhile is skipped.
pub(crate) fn disk_use(root: &Path) -> u64 {
    let mut total = 0;
    let mut linked = HashSet::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                dirs.push(entry.path());
            } else if meta.nlink() > 1 && !linked.insert((meta.dev(), meta.ino())) {
                continue;
            }
            total += meta.blocks() * 512;
        }
    }
    total
}

/// Hands back to the system the memory a run's events passed through. glibc keeps what is freed
/// in its per-thread arenas for reuse, so after a noisy run the server would otherwise hold tens
/// of megabytes it no longer uses (docs/benchmarks.md, "A noisy run").
pub(crate) fn give_back_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
