//! `nightshift checks detect`: the checks Nightshift would run on a repository, with the
//! evidence each was found from, before any task is created. The repository is fetched into a
//! temporary directory and only read: none of its code runs.

use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Subcommand;
use nightshift_core::{BranchName, RepoTarget, RepoUrl};
use nightshift_workspace::{Git, LocalRepos, Mirrors, RepoPolicy, Requester};

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
}

pub async fn run(command: ChecksCommand) -> anyhow::Result<ExitCode> {
    match command {
        ChecksCommand::Detect { repo, base, json } => detect(&repo, base.as_deref(), json).await,
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

async fn detect(repo: &str, base: Option<&str>, json: bool) -> anyhow::Result<ExitCode> {
    let url = repo_url(repo)?;
    if let Some(base) = base {
        BranchName::parse(base).map_err(|e| anyhow!("--base: {e}"))?;
    }
    let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
    // The user's own git configuration and credentials reach the repository as in a clone of
    // theirs; the clone itself lives and dies in the temporary directory.
    let home = std::env::var_os("HOME")
        .map(std::path::PathBuf::from)
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
        .add_worktree(&url, &base, "nightshift-checks-detect", &work)
        .await?;
    let plan = nightshift_checks::discover(&work)?;
    let commit = worktree.base_commit().to_string();
    if json {
        let out = serde_json::json!({
            "repo": url.as_str(),
            "base": base,
            "commit": commit,
            "plan": plan,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "Checks for {url} ({base} at {})",
            commit.get(..12).unwrap_or(&commit)
        );
        println!();
        for line in plan.describe() {
            println!("{line}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
