//! `nightshift checks`: what Nightshift would do with a repository's checks, before any task is
//! created. `detect` prints the plan with the evidence each check was found from (the repository
//! is fetched into a temporary directory and only read: none of its code runs); `baseline` runs
//! the plan on the base commit in the sandbox a run uses, and says whether every check can run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use nightshift_core::{BranchName, CheckOutcome, RepoTarget, RepoUrl, printable};
use nightshift_engine::BaseCheck;
use nightshift_workspace::{Git, LocalRepos, Mirrors, RepoPolicy, Requester, Worktree};
use tokio_util::sync::CancellationToken;

#[derive(Subcommand)]
pub enum ChecksCommand {
    /// Print the checks a run would use on a repository (a URL or a local path) and why.
    Detect {
        /// A git URL (https://, ssh://, git@host:path, file://) or a local repository path.
        repo: String,
        /// The branch whose checks to read (default: the repository's default branch).
        #[arg(long)]
        base: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run a repository's checks on its base branch in the sandbox a run uses, and say whether
    /// each passes, already fails, or cannot run here (with the fix). Exits 1 when one cannot.
    Baseline {
        /// A git URL (https://, ssh://, git@host:path, file://) or a local repository path.
        repo: String,
        /// The branch to run the checks on (default: the repository's default branch).
        #[arg(long)]
        base: Option<String>,
        #[arg(long)]
        json: bool,
        /// The server's configuration file, whose sandbox, setup hosts and [env] the checks
        /// get (default: nightshift.toml in the data directory, when present).
        #[arg(long, env = "NIGHTSHIFT_CONFIG")]
        config: Option<PathBuf>,
        /// The server's data directory, where its nightshift.toml is (nothing is written there).
        #[arg(long, env = "NIGHTSHIFT_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
}

pub async fn run(command: ChecksCommand) -> anyhow::Result<ExitCode> {
    match command {
        ChecksCommand::Detect { repo, base, json } => detect(&repo, base.as_deref(), json).await,
        ChecksCommand::Baseline {
            repo,
            base,
            json,
            config,
            data_dir,
        } => baseline(&repo, base.as_deref(), json, config, data_dir).await,
    }
}

/// A local path becomes an absolute one, the form a repository URL takes for paths.
fn repo_url(repo: &str) -> anyhow::Result<RepoUrl> {
    let local = std::path::Path::new(repo);
    let text = if !repo.contains("://") && local.exists() {
        local
            .canonicalize()
            .with_context(|| format!("cannot resolve the path {repo}"))?
            .display()
            .to_string()
    } else {
        repo.to_string()
    };
    RepoUrl::parse(&text).map_err(|e| anyhow!(e))
}

/// The repository's base branch, checked out in a temporary directory.
struct Fetched {
    scratch: tempfile::TempDir,
    url: String,
    base: String,
    worktree: Worktree,
}

async fn fetch(repo: &str, base: Option<&str>) -> anyhow::Result<Fetched> {
    let url = repo_url(repo)?;
    if let Some(base) = base {
        BranchName::parse(base).map_err(|e| anyhow!("--base: {e}"))?;
    }
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    // The user's own git configuration and credentials reach the repository as in a clone of
    // theirs; the clone itself lives and dies in the temporary directory.
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let mirrors = Mirrors::new(scratch.path().join("mirrors"), Git::new(home));
    // The user's own choice on their own machine, as a `git clone` of theirs would be: any
    // local path, and the named host even on an internal address.
    let mut policy = RepoPolicy::new(scratch.path());
    policy.local = LocalRepos::ForServerAdmins;
    if let RepoTarget::Remote { host, .. } = url.target() {
        policy.hosts.push(host.to_string());
    }
    let url = policy.admit(&url, Requester::ServerAdmin).await?;
    let base = match base {
        Some(base) => base.to_string(),
        None => mirrors
            .remote_info(&url)
            .await?
            .default_branch
            .ok_or_else(|| anyhow!("{url} has no default branch: name one with --base"))?,
    };
    let work = scratch.path().join("work");
    let worktree = mirrors
        .add_worktree(&url, &base, "nightshift-checks", &work)
        .await?;
    Ok(Fetched {
        scratch,
        url: url.to_string(),
        base,
        worktree,
    })
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

async fn detect(repo: &str, base: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let fetched = fetch(repo, base).await?;
    let plan = nightshift_checks::discover(fetched.worktree.path())?;
    let commit = fetched.worktree.base_commit();
    if json {
        let out = serde_json::json!({
            "repo": fetched.url,
            "base": fetched.base,
            "commit": commit,
            "plan": plan,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "Checks for {} ({} at {})",
            fetched.url,
            fetched.base,
            short(commit)
        );
        println!();
        for line in plan.describe() {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn baseline(
    repo: &str,
    base: Option<&str>,
    json: bool,
    config_file: Option<PathBuf>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    let data_dir = data_dir.unwrap_or_else(crate::serve::default_data_dir);
    let config = crate::config::load_config(config_file.as_ref(), &data_dir)?;
    let fetched = fetch(repo, base).await?;
    // Everything the sandbox writes (caches, HOME) stays in the temporary directory.
    let engine = crate::config::engine_config(
        config,
        &fetched.scratch.path().join("data"),
        config_file.as_deref(),
        LocalRepos::ForServerAdmins,
    )?;
    let plan = nightshift_checks::discover(fetched.worktree.path())?;
    let commit = fetched.worktree.base_commit().to_string();
    if !json {
        println!(
            "Baseline of {} ({} at {}), in the sandbox a run uses\n",
            fetched.url,
            fetched.base,
            short(&commit)
        );
    }
    let stop = CancellationToken::new();
    let interrupted = stop.clone();
    // Ctrl-C stops the running command's whole process group before the temporary checkout goes.
    let watch = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            interrupted.cancel();
        }
    });
    let checks = nightshift_engine::check_base(
        &engine,
        &fetched.worktree,
        &plan,
        &stop,
        &mut |_, _| {},
        &mut |check| {
            if !json {
                print_check(check);
            }
        },
    )
    .await;
    watch.abort();
    let checks = checks?;
    let blocked = checks.iter().filter(|c| c.cannot_run.is_some()).count();
    let failing = checks
        .iter()
        .filter(|c| c.cannot_run.is_none() && c.result.outcome != CheckOutcome::Passed)
        .count();
    let ran_all = checks.len() == plan_len(&plan);
    if json {
        let out = serde_json::json!({
            "repo": fetched.url,
            "base": fetched.base,
            "commit": commit,
            "plan": plan,
            "checks": checks,
            "can_validate": blocked == 0,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!();
        println!(
            "{}",
            verdict(blocked, failing, ran_all, plan.is_empty(), &fetched.base)
        );
    }
    Ok(if blocked == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn plan_len(plan: &nightshift_checks::CheckPlan) -> usize {
    nightshift_checks::Stage::ALL
        .iter()
        .map(|s| plan.commands(*s).len())
        .sum()
}

/// One command's line: how it ended, and what to do when it cannot run.
fn print_check(check: &BaseCheck) {
    let result = &check.result;
    let took = match result.duration_ms {
        ms @ 0..1000 => format!("{ms}ms"),
        ms => nightshift_core::format_duration(std::time::Duration::from_millis(ms)),
    };
    let said = match (&check.cannot_run, result.outcome) {
        (Some(_), _) => "cannot run here".to_string(),
        (None, CheckOutcome::Passed) => format!("passes ({took})"),
        (None, _) => format!("fails ({took}): it {}", result.exit_text()),
    };
    println!(
        "{:<6} {}  {said}",
        result.stage,
        printable(&format!("`{}`", result.command), false)
    );
    match &check.cannot_run {
        Some(blocked) => println!("       {}", printable(&blocked.to_string(), false)),
        None if result.outcome != CheckOutcome::Passed => {
            let lines: Vec<&str> = result.output.lines().collect();
            for line in &lines[lines.len().saturating_sub(15)..] {
                println!("       {}", printable(line, false));
            }
        }
        None => {}
    }
}

/// The answer to the question the command is for: can Nightshift validate changes here?
fn verdict(blocked: usize, failing: usize, ran_all: bool, empty: bool, base: &str) -> String {
    if blocked > 0 {
        let rest = if ran_all {
            ""
        } else {
            " (setup could not run, so the checks did not)"
        };
        let (what, they) = match blocked {
            1 => ("1 command cannot".to_string(), "it can"),
            n => (format!("{n} commands cannot"), "they can"),
        };
        return format!(
            "{what} run here{rest}: Nightshift cannot validate changes to this repository on \
             this server until {they}; a run would end setup_failed before its agent starts."
        );
    }
    if empty {
        return "No checks found: a run would push any change unchecked. Name the checks in the \
                repository's .nightshift.toml."
            .to_string();
    }
    if failing > 0 {
        let what = match failing {
            1 => "1 already fails".to_string(),
            n => format!("{n} already fail"),
        };
        return format!(
            "Every check runs here; {what} on {base}. A run's agent is told which, and they must \
             pass before anything is pushed."
        );
    }
    format!(
        "Every check runs and passes on {base}: Nightshift can validate changes to this \
         repository here."
    )
}
