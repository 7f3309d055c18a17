//! A run's checkout: what setup and the checks leave behind stays out of the change, and the
//! tracked files come back as the base has them.

use nightshift_core::RepoUrl;
use nightshift_test_support::git::RemoteRepo;
use nightshift_workspace::{Git, LocalRepos, Mirrors, RepoPolicy, Requester, Worktree};

async fn checkout(remote: &RemoteRepo, data: &std::path::Path) -> (Git, Worktree) {
    let mut policy = RepoPolicy::new(data.join("data"));
    policy.local = LocalRepos::ForServerAdmins;
    let repo = policy
        .admit(
            &RepoUrl::parse(&remote.url()).unwrap(),
            Requester::ServerAdmin,
        )
        .await
        .unwrap();
    let git = Git::new(data.join("git-home"));
    let mirrors = Mirrors::new(data.join("mirrors"), git.clone());
    let worktree = mirrors
        .add_worktree(&repo, "main", "nightshift/1-change", &data.join("work"))
        .await
        .unwrap();
    (git, worktree)
}

fn write(root: &std::path::Path, path: &str, text: &str) {
    let full = root.join(path);
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::write(full, text).unwrap();
}

/// An install the repository does not ignore (a `.venv`, `node_modules`, a cache beside the
/// sources, a name gitignore would read as a pattern) is never committed, diffed or counted as
/// a change; what comes after it is.
#[tokio::test]
async fn what_was_untracked_before_the_agent_never_enters_the_change() {
    let remote = RemoteRepo::with_files(&[("src/app.py", "x = 1\n"), ("README", "r\n")]);
    let scratch = tempfile::tempdir().unwrap();
    let (git, mut worktree) = checkout(&remote, scratch.path()).await;
    let work = worktree.path().to_path_buf();
    for path in [
        ".venv/bin/python",
        "node_modules/left-pad/index.js",
        "src/__pycache__/app.cpython-311.pyc",
        "we*ird [1]#.txt",
        "!bang",
    ] {
        write(&work, path, "made by setup\n");
    }
    let untracked = worktree.untracked(&git).await.unwrap();
    assert_eq!(
        untracked,
        [
            "!bang",
            ".venv/",
            "node_modules/",
            "src/__pycache__/",
            "we*ird [1]#.txt"
        ],
        "{untracked:?}"
    );
    assert!(worktree.has_changes(&git).await.unwrap());
    worktree
        .exclude(&untracked, &scratch.path().join("excludes"))
        .unwrap();
    assert!(
        !worktree.has_changes(&git).await.unwrap(),
        "what setup left counts as a change"
    );

    // The agent's change: a tracked file edited, a new file, and one beside the excluded ones.
    write(&work, "src/app.py", "x = 2\n");
    write(&work, "src/new.py", "y = 1\n");
    write(&work, "weird.txt", "not excluded: only its exact name is\n");
    write(
        &work,
        "node_modules/left-pad/index.js",
        "changed after setup\n",
    );
    let commit = worktree.commit(&git, "Change", &[]).await.unwrap();
    let files = nightshift_test_support::git::git(
        &remote.bare_path(),
        &[
            "--git-dir",
            &worktree.mirror().display().to_string(),
            "show",
            "--name-only",
            "--format=",
            &commit,
        ],
    );
    let files: Vec<&str> = files.lines().collect();
    assert_eq!(
        files,
        ["src/app.py", "src/new.py", "weird.txt"],
        "{files:?}"
    );
    let diff = worktree.diff(&git).await.unwrap();
    assert_eq!(diff.files, ["src/app.py", "src/new.py", "weird.txt"]);
    assert!(!worktree.has_changes(&git).await.unwrap());
}

/// What formatters change on the base is undone, and named; untracked files stay.
#[tokio::test]
async fn tracked_files_come_back_as_the_base_has_them() {
    let remote = RemoteRepo::with_files(&[("a.py", "x=1\n"), ("b.py", "y = 2\n")]);
    let scratch = tempfile::tempdir().unwrap();
    let (git, worktree) = checkout(&remote, scratch.path()).await;
    let work = worktree.path().to_path_buf();
    assert!(worktree.restore_tracked(&git).await.unwrap().is_empty());
    write(&work, "a.py", "x = 1\n");
    std::fs::remove_file(work.join("b.py")).unwrap();
    write(&work, ".cache/x", "kept\n");
    assert_eq!(
        worktree.restore_tracked(&git).await.unwrap(),
        ["a.py", "b.py"]
    );
    assert_eq!(std::fs::read_to_string(work.join("a.py")).unwrap(), "x=1\n");
    assert_eq!(
        std::fs::read_to_string(work.join("b.py")).unwrap(),
        "y = 2\n"
    );
    assert!(work.join(".cache/x").exists());
}
