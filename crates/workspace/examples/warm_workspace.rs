//! Benchmark: a run's workspace ready over a warm base (its copy-on-write layer, and the first
//! `git status` through it) vs a fresh `git clone` of the same remote, on a generated
//! repository of 20,000 files.
//!
//! cargo run --release -p nightshift-workspace --example warm_workspace [FILES] [ROUNDS]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use nightshift_core::RepoUrl;
use nightshift_test_support::git::git;
use nightshift_workspace::{BaseInfo, Bases, Git, LocalRepos, Mirrors, RepoPolicy, Requester};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
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
            &format!("file://{}", src.display()),
            &bare.to_string_lossy(),
        ],
    );
    let url = format!("file://{}", bare.display());
    let data = dir.path().join("data");
    let mut policy = RepoPolicy::new(&data);
    policy.local = LocalRepos::Under(vec![dir.path().to_path_buf()]);
    let repo = policy
        .admit(&RepoUrl::parse(&url).unwrap(), Requester::Run)
        .await
        .unwrap();
    let git_ = Git::new(&data);
    let mirrors = Mirrors::new(data.join("mirrors"), git_.clone());
    let bases = Bases::new(data.join("bases"), None);
    let repo_bases = bases.repo("1/bench").unwrap();

    // The base, once: fetch, checkout, ready.
    let built = Instant::now();
    let commit = mirrors.refresh_base(&repo, "main").await.unwrap();
    let lock = repo_bases.lock_building().await.unwrap();
    let build = lock.start("bench").unwrap();
    let (worktree, _) = mirrors
        .base_worktree(
            &repo,
            "main",
            &commit,
            &build,
            repo_bases.mount_point(),
            None,
        )
        .await
        .unwrap();
    let info = BaseInfo {
        key: "bench".into(),
        commit,
        setup_inputs: String::new(),
        untracked: Vec::new(),
        built_at: 0,
        bytes: 0,
    };
    let base = build
        .finish_with_index(&worktree, &git_, info)
        .await
        .unwrap();
    drop(lock);
    let base_time = built.elapsed();

    let (mut fetch, mut layer, mut status, mut clone) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        // What a run does: fetch (nothing new), find the base, put its layer on.
        let start = Instant::now();
        mirrors.refresh_base(&repo, "main").await.unwrap();
        fetch.push(start.elapsed());
        let start = Instant::now();
        let base_again = repo_bases.ready("bench").unwrap().unwrap();
        let worktree = mirrors
            .add_layer(
                &repo,
                "main",
                &format!("nightshift/{round}-bench"),
                &base_again,
                repo_bases.mount_point(),
                &data.join(format!("runs/{round}/layer")),
            )
            .await
            .unwrap();
        layer.push(start.elapsed());
        let start = Instant::now();
        assert!(!worktree.has_changes(&git_).await.unwrap());
        status.push(start.elapsed());
        mirrors.remove_worktree(&worktree).await.unwrap();

        let target = dir.path().join(format!("clone-{round}"));
        let start = Instant::now();
        git(
            dir.path(),
            &["clone", "--quiet", &url, &target.to_string_lossy()],
        );
        clone.push(start.elapsed());
        std::fs::remove_dir_all(&target).unwrap();
    }
    drop(base);
    let (fetch, layer, status, clone) =
        (median(fetch), median(layer), median(status), median(clone));
    println!(
        "| files | base built once (checkout, index settled) | workspace ready: layer over the base | `git fetch` before it | first `git status` through the layer | fresh `git clone` | clone ÷ ready |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {files} | {} | {} | {} | {} | {} | {:.0}× |",
        ms(base_time),
        ms(layer),
        ms(fetch),
        ms(status),
        ms(clone),
        clone.as_secs_f64() / layer.as_secs_f64()
    );
    println!("(medians of {rounds} rounds)");
}
