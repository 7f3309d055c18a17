//! Installing bubblewrap when `serve` or `worker` starts on a machine without it — as root, or
//! with sudo that asks no password, through the system's package manager — so that a fresh
//! machine's first run is confined. Where that cannot be done, the log says the command to run;
//! the engine notices bubblewrap as soon as it is there, without a restart.

use std::time::Duration;

use nightshift_engine::SandboxMode;
use nightshift_sandbox::find_on_path;

/// The longest an installation may take (a slow mirror, a package index to refresh first).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

/// A package manager and how it installs bubblewrap without asking.
struct PackageManager {
    program: &'static str,
    install: &'static [&'static str],
    /// Refreshes the package index, tried when the first install fails (a fresh container's
    /// apt has no index at all).
    refresh: Option<&'static [&'static str]>,
}

const MANAGERS: &[PackageManager] = &[
    PackageManager {
        program: "apt-get",
        install: &[
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "bubblewrap",
        ],
        refresh: Some(&["update", "-qq"]),
    },
    PackageManager {
        program: "dnf",
        install: &["install", "-y", "bubblewrap"],
        refresh: None,
    },
    PackageManager {
        program: "zypper",
        install: &["--non-interactive", "install", "bubblewrap"],
        refresh: None,
    },
    PackageManager {
        program: "pacman",
        install: &["-S", "--noconfirm", "--needed", "bubblewrap"],
        refresh: None,
    },
    PackageManager {
        program: "apk",
        install: &["add", "bubblewrap"],
        refresh: None,
    },
];

/// How bubblewrap would be installed here: the command (with `sudo -n` unless root), or `None`
/// when there is no known package manager or no way to become root without a password.
fn plan(
    is_root: bool,
    sudo_works: impl FnOnce() -> bool,
    find: impl Fn(&str) -> bool,
) -> Option<(bool, &'static PackageManager)> {
    let manager = MANAGERS.iter().find(|m| find(m.program))?;
    let sudo = !is_root;
    if sudo && !(find("sudo") && sudo_works()) {
        return None;
    }
    Some((sudo, manager))
}

fn command_line(sudo: bool, program: &str, args: &[&str]) -> String {
    let mut words: Vec<&str> = Vec::new();
    if sudo {
        words.extend(["sudo", "-n"]);
    }
    words.push(program);
    words.extend(args);
    words.join(" ")
}

/// Installs bubblewrap when runs are to be confined and `bwrap` is not on PATH, if `allowed`
/// and this process can; else logs what to do. A bwrap that is there but cannot create
/// namespaces is the engine's to report: no package fixes that.
pub(crate) async fn bubblewrap_if_missing(mode: SandboxMode, allowed: bool) {
    if mode != SandboxMode::Bubblewrap || find_on_path("bwrap").is_some() {
        return;
    }
    let hint = "install bubblewrap (e.g. `sudo apt-get install bubblewrap`); runs are confined as \
                soon as it is there, without a restart";
    if !allowed {
        tracing::warn!("bubblewrap is not installed and --no-install-bubblewrap was given: {hint}");
        return;
    }
    let is_root = nix::unistd::geteuid().is_root();
    let sudo_works = || {
        std::process::Command::new("sudo")
            .args(["-n", "true"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let Some((sudo, manager)) = plan(is_root, sudo_works, |p| find_on_path(p).is_some()) else {
        tracing::warn!(
            "bubblewrap is not installed, and this process cannot install it (no known package \
             manager, or not root and no password-less sudo): {hint}"
        );
        return;
    };
    let install = command_line(sudo, manager.program, manager.install);
    tracing::warn!(
        "bubblewrap is not installed: installing it with `{install}` (--no-install-bubblewrap to skip)"
    );
    let mut result = run(sudo, manager.program, manager.install).await;
    if let (Err(_), Some(refresh)) = (&result, manager.refresh) {
        tracing::info!(
            "refreshing the package index with `{}`, then trying again",
            command_line(sudo, manager.program, refresh)
        );
        result = match run(sudo, manager.program, refresh).await {
            Ok(()) => run(sudo, manager.program, manager.install).await,
            Err(e) => Err(e),
        };
    }
    match result {
        Ok(()) if find_on_path("bwrap").is_some() => {
            tracing::info!("installed bubblewrap");
        }
        Ok(()) => tracing::warn!("`{install}` succeeded but bwrap is still not on PATH: {hint}"),
        Err(e) => tracing::warn!("could not install bubblewrap: {e}; {hint}"),
    }
}

/// Runs `program args` (through `sudo -n` when `sudo`), non-interactively; its output only
/// when it fails.
async fn run(sudo: bool, program: &str, args: &[&str]) -> Result<(), String> {
    let mut command = if sudo {
        let mut command = tokio::process::Command::new("sudo");
        command.args(["-n", program]);
        command
    } else {
        tokio::process::Command::new(program)
    };
    command
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let line = command_line(sudo, program, args);
    let output = tokio::time::timeout(INSTALL_TIMEOUT, command.output())
        .await
        .map_err(|_| {
            format!(
                "`{line}` did not finish within {} s",
                INSTALL_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("cannot run `{line}`: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last: Vec<&str> = stderr.lines().rev().take(3).collect();
    Err(format!(
        "`{line}` failed ({}): {}",
        output.status,
        last.into_iter().rev().collect::<Vec<_>>().join(" / ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_uses_the_package_manager_found_and_sudo_only_when_it_asks_no_password() {
        let have = |names: &'static [&'static str]| move |p: &str| names.contains(&p);
        let (sudo, manager) = plan(true, || false, have(&["apt-get"])).unwrap();
        assert!(!sudo);
        assert_eq!(
            command_line(sudo, manager.program, manager.install),
            "apt-get install -y -qq --no-install-recommends bubblewrap"
        );
        let (sudo, manager) = plan(false, || true, have(&["dnf", "sudo"])).unwrap();
        assert_eq!(
            command_line(sudo, manager.program, manager.install),
            "sudo -n dnf install -y bubblewrap"
        );
        assert!(
            plan(false, || false, have(&["apt-get", "sudo"])).is_none(),
            "sudo asks"
        );
        assert!(
            plan(false, || true, have(&["apt-get"])).is_none(),
            "no sudo"
        );
        assert!(
            plan(true, || true, have(&[])).is_none(),
            "no package manager"
        );
    }
}
