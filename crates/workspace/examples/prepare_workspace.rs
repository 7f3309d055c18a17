//! Benchmark: preparing a run's workspace from the warm mirror vs a fresh `git clone`, on a
//! generated repository of 20,000 files.
//!
//! cargo run --release -p nightshift-workspace --example prepare_workspace [FILES] [ROUNDS]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use nightshift_core::RepoUrl;
use nightshift_test_support::git::git;
use nightshift_workspace::{Git, LocalRepos, Mirrors, RepoPolicy, Requester};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let files: usize = args.next().map(|a| a.parse().unwrap()).unwrap_or(20_000);
    let rounds: usize = args.next().map(|a| a.parse().unwrap()).unwrap_or(10);
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    git(&src, &["init", "--quiet", "--initial-branch=main"]);
    for i in 0..files {
        let sub = src.join(format!("d{:03}", i % 200));
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(
            sub.join(format!("f{i}.txt")),
            format!("file {i}\n{}\n", "x".repeat(i % 300)),
        )
        .unwrap();
    }
    git(&src, &["add", "--all"]);
    git(&src, &["commit", "--quiet", "-m", "generated"]);
    let bare = dir.path().join("remote.git");
    git(
        dir.path(),
        &[
            "clone",
            "--quiet",
            "--bare",
            // Over file:// like any remote, instead of git's local copying shortcut.
            &format!("file://{}", src.display()),
            &bare.to_string_lossy(),
        ],
    );
    let url = format!("file://{}", bare.display());
    let data = dir.path().join("data");
    // The operator allows the benchmark's own directory for local repositories.
    let mut policy = RepoPolicy::new(&data);
    policy.local = LocalRepos::Under(vec![dir.path().to_path_buf()]);
    let repo = policy
        .admit(&RepoUrl::parse(&url).unwrap(), Requester::Run)
        .await
        .unwrap();

    let mirrors = Mirrors::new(data.join("mirrors"), Git::new(&data));
    let git_ = Git::new(&data);
    let cold_start = Instant::now();
    let first = mirrors
        .add_worktree(&repo, "main", "nightshift/0-bench", &data.join("runs/0"))
        .await
        .unwrap();
    let cold = cold_start.elapsed();
    mirrors.remove_worktree(&first).await.unwrap();

    let mut warm = Vec::new();
    let mut clone = Vec::new();
    for round in 1..=rounds {
        let start = Instant::now();
        let wt = mirrors
            .add_worktree(
                &repo,
                "main",
                &format!("nightshift/{round}-bench"),
                &data.join(format!("runs/{round}")),
            )
            .await
            .unwrap();
        warm.push(start.elapsed());
        assert!(!wt.has_changes(&git_).await.unwrap());
        mirrors.remove_worktree(&wt).await.unwrap();

        let target = dir.path().join(format!("clone-{round}"));
        let start = Instant::now();
        // `file://` forces the same transport a remote clone uses, not hard links.
        git(
            dir.path(),
            &["clone", "--quiet", &url, &target.to_string_lossy()],
        );
        clone.push(start.elapsed());
        std::fs::remove_dir_all(&target).unwrap();
    }
    let (warm, clone) = (median(warm), median(clone));
    println!(
        "| files | first run (mirror clone + worktree) | warm mirror (fetch + worktree), median of {rounds} | fresh `git clone`, median of {rounds} | clone ÷ warm |"
    );
    println!("|---:|---:|---:|---:|---:|");
    println!(
        "| {files} | {:.0} ms | {:.0} ms | {:.0} ms | {:.1}× |",
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3,
        clone.as_secs_f64() * 1e3,
        clone.as_secs_f64() / warm.as_secs_f64()
    );
}
