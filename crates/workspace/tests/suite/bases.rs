//! Warm bases and the runs' copy-on-write layers over them, with real git and real mounts: a
//! run's change is exactly what it did, runs never see each other or change their base, a
//! build that dies leaves nothing usable, one build at a time, and eviction within a budget.

use std::path::{Path, PathBuf};

use nightshift_core::RepoUrl;
use nightshift_sandbox::{ProcessSpec, Sandbox};
use nightshift_test_support::git::RemoteRepo;
use nightshift_workspace::{
    AllowedRepo, BaseInfo, BaseLease, Bases, Git, LocalRepos, Mirrors, RepoBases, RepoPolicy,
    Requester, Worktree,
};

struct Env {
    remote: RemoteRepo,
    dir: tempfile::TempDir,
    repo: AllowedRepo,
    git: Git,
    mirrors: Mirrors,
    bases: Bases,
    repo_bases: RepoBases,
}

impl Env {
    async fn new(budget: Option<u64>) -> Env {
        let remote = RemoteRepo::with_files(&[
            ("README.md", "# demo\n"),
            ("src/lib.rs", "pub fn answer() -> u32 { 42 }\n"),
            ("docs/old-name.md", "renamed by the run\n"),
            ("Cargo.lock", "# lock v1\n"),
        ]);
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let mut policy = RepoPolicy::new(dir.path().join("data"));
        policy.local = LocalRepos::ForServerAdmins;
        let repo = policy
            .admit(
                &RepoUrl::parse(&remote.url()).unwrap(),
                Requester::ServerAdmin,
            )
            .await
            .unwrap();
        let git = Git::new(dir.path().join("git-home"));
        let mirrors = Mirrors::new(dir.path().join("data/mirrors"), git.clone());
        let bases = Bases::new(dir.path().join("data/bases"), budget);
        let repo_bases = bases.repo("1/demo").unwrap();
        Env {
            remote,
            dir,
            repo,
            git,
            mirrors,
            bases,
            repo_bases,
        }
    }

    /// Builds the base of the tip of main as a run would: checkout (from the last base when
    /// there is one), a "setup" that leaves untracked files, then ready.
    async fn build(&self, key: &str) -> (BaseLease, bool) {
        let commit = self.mirrors.refresh_base(&self.repo, "main").await.unwrap();
        let lock = self.repo_bases.lock_building().await.unwrap();
        let build = lock.start(key).unwrap();
        let last = self.repo_bases.latest().unwrap();
        let (worktree, refreshed) = self
            .mirrors
            .base_worktree(
                &self.repo,
                "main",
                &commit,
                &build,
                self.repo_bases.mount_point(),
                last.as_ref(),
            )
            .await
            .unwrap();
        drop(last);
        // Setup: an install directory the repository does not ignore, kept across bases.
        run_in(
            &worktree,
            &format!(
                "mkdir -p target && echo {key} >> target/builds && cat src/lib.rs > target/lib.copy"
            ),
        )
        .await;
        let untracked = worktree.untracked(&self.git).await.unwrap();
        let info = BaseInfo {
            key: key.to_string(),
            commit,
            setup_inputs: String::new(),
            untracked,
            built_at: nightshift_core::now_millis(),
            bytes: 0,
        };
        let base = build
            .finish_with_index(&worktree, &self.git, info)
            .await
            .unwrap();
        (base, refreshed)
    }

    async fn layer(&self, base: &BaseLease, run: &str) -> Worktree {
        let mut worktree = self
            .mirrors
            .add_layer(
                &self.repo,
                "main",
                &format!("nightshift/{run}"),
                base,
                self.repo_bases.mount_point(),
                &self.dir.path().join("data/runs").join(run).join("layer"),
            )
            .await
            .unwrap();
        let excludes = self.dir.path().join(format!("{run}-excludes"));
        worktree.exclude(&base.info().untracked, &excludes).unwrap();
        worktree
    }
}

/// Runs `script` in the checkout as a run's process sees it.
async fn run_in(worktree: &Worktree, script: &str) -> String {
    let sandbox = Sandbox::new().with_mount(worktree.view().unwrap().clone());
    let (exit, lines) = sandbox
        .output(&ProcessSpec::shell(script, worktree.path()))
        .await
        .unwrap();
    let out: String = lines.iter().map(|l| format!("{}\n", l.text)).collect();
    assert!(exit.success(), "{script}: {out}");
    out
}

fn files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn the_committed_change_is_exactly_what_the_run_deleted_renamed_added_and_edited() {
    let env = Env::new(None).await;
    let (base, refreshed) = env.build("k1").await;
    assert!(!refreshed);
    let before = files(&base.tree());
    let worktree = env.layer(&base, "r1").await;
    assert!(
        !worktree.has_changes(&env.git).await.unwrap(),
        "a fresh layer is clean"
    );
    // The agent's git (inside) sees the run's own branch, and the base's setup output is there.
    let inside = run_in(
        &worktree,
        "git rev-parse --abbrev-ref HEAD && cat target/builds",
    )
    .await;
    assert_eq!(inside, "nightshift/r1\nk1\n");
    run_in(
        &worktree,
        "rm README.md && mv docs/old-name.md docs/new-name.md && echo 'pub fn more() {}' >> src/lib.rs \
         && mkdir -p tests && echo 'added' > tests/new.txt && echo built >> target/builds",
    )
    .await;
    let commit = worktree
        .commit(&env.git, "Change", &[("Nightshift-Task", "1".to_string())])
        .await
        .unwrap();
    let diff = worktree.diff(&env.git).await.unwrap();
    let mut changed = diff.files.clone();
    changed.sort();
    // A rename is listed by its new name (the status below shows both).
    assert_eq!(
        changed,
        [
            "README.md",
            "docs/new-name.md",
            "src/lib.rs",
            "tests/new.txt"
        ]
    );
    let status = env
        .git
        .run(
            &env.mirrors.mirror_path(&env.repo),
            &[
                "diff",
                "--name-status",
                "-M",
                &format!("{commit}~1"),
                &commit,
            ],
        )
        .await
        .unwrap();
    assert!(status.contains("D\tREADME.md"), "{status}");
    assert!(
        status.contains("R100\tdocs/old-name.md\tdocs/new-name.md"),
        "{status}"
    );
    assert!(status.contains("M\tsrc/lib.rs"), "{status}");
    assert!(status.contains("A\ttests/new.txt"), "{status}");
    assert!(
        !status.contains("target"),
        "setup's files stay out: {status}"
    );
    // Pushed, the remote has exactly that tree.
    worktree.push(&env.git, "demo").await.unwrap();
    assert_eq!(
        env.remote.head("nightshift/r1").as_deref(),
        Some(commit.as_str())
    );
    assert!(!worktree.has_changes(&env.git).await.unwrap());
    assert_eq!(files(&base.tree()), before, "the base changed");
    // Removing the run removes its layer only.
    env.mirrors.remove_worktree(&worktree).await.unwrap();
    assert!(!env.dir.path().join("data/runs/r1/layer").exists());
    assert_eq!(files(&base.tree()), before);
}

#[tokio::test]
async fn two_runs_on_one_base_see_only_their_own_changes() {
    let env = Env::new(None).await;
    let (base, _) = env.build("k1").await;
    let one = env.layer(&base, "r1").await;
    let two = env.layer(&base, "r2").await;
    run_in(&one, "echo one > README.md && echo one > one.txt").await;
    run_in(&two, "rm README.md && echo two > two.txt").await;
    assert_eq!(
        run_in(&one, "cat README.md; ls two.txt 2>&1 || true")
            .await
            .lines()
            .next(),
        Some("one")
    );
    assert!(
        run_in(&two, "ls")
            .await
            .lines()
            .all(|f| f != "README.md" && f != "one.txt")
    );
    let c1 = one.commit(&env.git, "one", &[]).await.unwrap();
    let c2 = two.commit(&env.git, "two", &[]).await.unwrap();
    let mut f1 = one.diff(&env.git).await.unwrap().files;
    let mut f2 = two.diff(&env.git).await.unwrap().files;
    f1.sort();
    f2.sort();
    assert_eq!(f1, ["README.md", "one.txt"]);
    assert_eq!(f2, ["README.md", "two.txt"]);
    assert_ne!(c1, c2);
    assert_eq!(
        std::fs::read_to_string(base.tree().join("README.md")).unwrap(),
        "# demo\n"
    );
}

#[tokio::test]
async fn a_build_that_dies_leaves_nothing_usable_and_the_next_one_starts_clean() {
    let env = Env::new(None).await;
    let lock = env.repo_bases.lock_building().await.unwrap();
    let build = lock.start("k1").unwrap();
    std::fs::write(build.tree().join("half-installed"), "").unwrap();
    // The process dies mid-build: nothing of the build is cleaned up, the lock goes with it.
    std::mem::forget(build);
    drop(lock);
    assert!(env.repo_bases.ready("k1").unwrap().is_none());
    assert!(env.repo_bases.latest().unwrap().is_none());
    let (base, refreshed) = env.build("k1").await;
    assert!(!refreshed, "a dead build is never built on");
    assert!(!base.tree().join("half-installed").exists());
    let leftovers: Vec<_> = std::fs::read_dir(base.dir().parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A build dropped on an error is removed at once.
    let lock = env.repo_bases.lock_building().await.unwrap();
    let failed = lock.start("k2").unwrap();
    let dir = failed.tree();
    drop(failed);
    assert!(!dir.exists());
    assert!(env.repo_bases.ready("k2").unwrap().is_none());
}

#[tokio::test]
async fn one_build_at_a_time_per_repository() {
    let env = Env::new(None).await;
    let first = env.repo_bases.lock_building().await.unwrap();
    assert!(env.repo_bases.try_lock_building().unwrap().is_none());
    let other = env.repo_bases.clone();
    let waiting = tokio::spawn(async move { other.lock_building().await.map(|_| ()) });
    tokio::task::yield_now().await;
    assert!(!waiting.is_finished());
    // Another repository builds meanwhile.
    let elsewhere = env.bases.repo("1/other").unwrap();
    assert!(elsewhere.try_lock_building().unwrap().is_some());
    drop(first);
    waiting.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_moved_branch_builds_the_next_base_from_the_last_one() {
    let env = Env::new(None).await;
    let (first, _) = env.build("k1").await;
    drop(first);
    env.remote.commit(
        "main",
        &[("src/lib.rs", "pub fn answer() -> u32 { 43 }\n")],
        "move main",
    );
    let (second, refreshed) = env.build("k2").await;
    assert!(refreshed);
    // The last base's setup output came along; the tracked files are the new commit's.
    assert_eq!(
        std::fs::read_to_string(second.tree().join("target/builds")).unwrap(),
        "k1\nk2\n"
    );
    assert_eq!(
        std::fs::read_to_string(second.tree().join("src/lib.rs")).unwrap(),
        "pub fn answer() -> u32 { 43 }\n"
    );
    let worktree = env.layer(&second, "r1").await;
    assert!(!worktree.has_changes(&env.git).await.unwrap());
    assert!(env.repo_bases.ready("k1").unwrap().is_some());
}

#[tokio::test]
async fn eviction_keeps_the_budget_with_the_least_recently_used_first_and_never_a_base_in_use() {
    let env = Env::new(Some(1)).await;
    let (oldest, _) = env.build("k1").await;
    let oldest_dir = oldest.dir().to_path_buf();
    let (middle, _) = env.build("k2").await;
    let middle_dir = middle.dir().to_path_buf();
    drop(middle);
    let (newest, _) = env.build("k3").await;
    let newest_dir = newest.dir().to_path_buf();
    drop(newest);
    // k1 is in use by a run: with a budget of one byte everything else goes, k1 stays.
    let evicted = env.bases.evict_over_budget();
    assert_eq!(evicted, [middle_dir.clone(), newest_dir.clone()]);
    assert!(oldest_dir.join("tree/README.md").is_file());
    assert!(!middle_dir.exists() && !newest_dir.exists());
    assert!(env.repo_bases.ready("k2").unwrap().is_none());
    drop(oldest);
    assert_eq!(env.bases.evict_over_budget(), [oldest_dir]);
}

#[tokio::test]
async fn within_the_budget_nothing_is_evicted_and_the_least_recently_used_goes_first() {
    let env = Env::new(None).await;
    let (a, _) = env.build("k1").await;
    let size = a.info().bytes;
    assert!(size > 0);
    drop(a);
    let (b, _) = env.build("k2").await;
    drop(b);
    // k1 taken again: k2 is now the least recently used.
    drop(env.repo_bases.ready("k1").unwrap().unwrap());
    let budget = Bases::new(env.bases.root(), Some(size * 3 / 2));
    let evicted = budget.evict_over_budget();
    assert_eq!(evicted.len(), 1);
    assert!(evicted[0].ends_with("k2"), "{evicted:?}");
    assert!(env.repo_bases.ready("k1").unwrap().is_some());
    assert!(
        Bases::new(env.bases.root(), Some(size * 3 / 2))
            .evict_over_budget()
            .is_empty()
    );
}
