//! Fixtures shared by the suites: a run directory laid out as the engine lays it out.

mod confine;
mod limits;
mod mount;
mod network;
mod process;
mod redact;
mod toolchains;

use std::path::{Path, PathBuf};

use nightshift_sandbox::{ConfinementPolicy, OutputLine};

/// A data directory with this run's workspace and home, another run's workspace, a database and
/// a key file outside it, all under the target dir (not /tmp, which the sandbox replaces anyway).
pub struct RunDirs {
    pub root: tempfile::TempDir,
    pub data: PathBuf,
    pub workspace: PathBuf,
    pub home: PathBuf,
    pub other_workspace: PathBuf,
    pub key_file: PathBuf,
}

impl RunDirs {
    pub fn new() -> RunDirs {
        let root = tempfile::Builder::new()
            .prefix("confine-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .unwrap();
        let data = root.path().join("data");
        let workspace = data.join("runs/r1/workspace");
        let home = data.join("runs/r1/home");
        let other_workspace = data.join("runs/r2/workspace");
        for dir in [
            &workspace,
            &home,
            &other_workspace,
            &root.path().join("keys"),
        ] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(data.join("nightshift.db"), "db-secret").unwrap();
        std::fs::write(other_workspace.join("notes.txt"), "other-run-secret").unwrap();
        let key_file = root.path().join("keys/server.key");
        std::fs::write(&key_file, "key-secret").unwrap();
        RunDirs {
            root,
            data,
            workspace,
            home,
            other_workspace,
            key_file,
        }
    }

    /// What the engine would give a run: data dir and key file hidden, forwarder from this build.
    pub fn policy(&self) -> ConfinementPolicy {
        ConfinementPolicy::new(&self.workspace, &self.home)
            .hide(&self.data)
            .hide(&self.key_file)
            .forwarder([env!("CARGO_BIN_EXE_nightshift-netfwd")])
    }
}

pub fn text(lines: &[OutputLine]) -> String {
    lines.iter().map(|l| format!("{}\n", l.text)).collect()
}

pub fn p(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

/// Live processes whose command line starts with `prefix`.
pub fn processes_with(marker: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let zombie = stat.rsplit(')').next()?.split_whitespace().next()? == "Z";
            (!zombie
                && String::from_utf8_lossy(&cmdline)
                    .replace('\0', " ")
                    .starts_with(marker))
            .then_some(pid)
        })
        .collect()
}

/// Live processes in group `pgid`.
pub fn group_size(pgid: i32) -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                return false;
            };
            let Some(rest) = stat.rsplit(')').next() else {
                return false;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.len() > 3 && f[0] != "Z" && f[2].parse::<i32>().ok() == Some(pgid)
        })
        .count()
}
