#![allow(clippy::unwrap_used, clippy::expect_used)]
use base64::Engine as _;
use nightshift_core::RepoUrl;
use nightshift_test_support::forge_fake::{Access, FakeKind, ForgeFake};
use nightshift_test_support::git::RemoteRepo;
use nightshift_workspace::{
    AllowedRepo, Git, LocalRepos, Mirrors, RepoPolicy, Requester, WorkspaceError,
};

mod suite;

fn setup() -> (tempfile::TempDir, Mirrors, Git) {
    let data = tempfile::tempdir().unwrap();
    let git = Git::new(data.path());
    let mirrors = Mirrors::new(data.path().join("mirrors"), git.clone());
    (data, mirrors, git)
}

/// `url` let through the way an operator who keeps test repositories in the temp directory would.
async fn allowed(url: &str) -> AllowedRepo {
    let mut policy = RepoPolicy::new("/nonexistent/nightshift-data");
    policy.local = LocalRepos::Under(vec![std::env::temp_dir()]);
    policy
        .admit(&RepoUrl::parse(url).unwrap(), Requester::Run)
        .await
        .unwrap()
}

#[tokio::test]
async fn worktree_commit_rebase_push() {
    let remote = RemoteRepo::with_files(&[("a.txt", "one\n"), ("b.txt", "two\n")]);
    let repo = allowed(&remote.url()).await;
    let (data, mirrors, git) = setup();

    let info = mirrors.remote_info(&repo).await.unwrap();
    assert_eq!(info.default_branch.as_deref(), Some("main"));
    assert_eq!(info.branches, vec!["main"]);

    let dest = data.path().join("runs/1/work");
    let mut wt = mirrors
        .add_worktree(&repo, "main", "nightshift/1-edit", &dest)
        .await
        .unwrap();
    assert!(!wt.has_changes(&git).await.unwrap());
    std::fs::write(dest.join("a.txt"), "ONE\n").unwrap();
    std::fs::write(dest.join("new.txt"), "new\n").unwrap();
    assert!(wt.has_changes(&git).await.unwrap());
    let commit = wt
        .commit(
            &git,
            "Edit a",
            &[
                ("Nightshift-Task", "1".into()),
                ("Nightshift-Run", "1".into()),
            ],
        )
        .await
        .unwrap();

    // The base moves without touching our files: the rebase replays our commit on top.
    let moved = remote.commit("main", &[("b.txt", "TWO\n")], "upstream");
    let fresh = mirrors.refresh_base(&repo, "main").await.unwrap();
    assert_eq!(fresh, moved);
    wt.rebase_onto(&git, &fresh).await.unwrap();
    let pushed = wt.push(&git, "remote").await.unwrap();
    assert_ne!(pushed, commit, "rebased commit differs");
    assert_eq!(
        remote.head("nightshift/1-edit").as_deref(),
        Some(pushed.as_str())
    );
    assert_eq!(remote.parent(&pushed), moved);
    assert_eq!(remote.show(&pushed, "a.txt"), "ONE\n");
    assert_eq!(remote.show(&pushed, "b.txt"), "TWO\n");
    let message = remote.message(&pushed);
    assert!(
        message.contains("Nightshift-Task: 1") && message.contains("Nightshift-Run: 1"),
        "{message}"
    );

    let diff = wt.diff(&git).await.unwrap();
    assert_eq!(diff.files, vec!["a.txt", "new.txt"]);
    assert!(diff.stat.contains("2 files changed"), "{}", diff.stat);

    mirrors.remove_worktree(&wt).await.unwrap();
    assert!(!dest.exists());
    // A second run reuses the mirror (fetch, not clone) and can reuse the branch name.
    let again = mirrors
        .add_worktree(&repo, "main", "nightshift/1-edit", &dest)
        .await
        .unwrap();
    assert_eq!(again.base_commit(), moved);
}

#[tokio::test]
async fn conflicting_base_is_reported() {
    let remote = RemoteRepo::with_files(&[("a.txt", "one\n")]);
    let repo = allowed(&remote.url()).await;
    let (data, mirrors, git) = setup();
    let dest = data.path().join("w");
    let mut wt = mirrors
        .add_worktree(&repo, "main", "nightshift/2-x", &dest)
        .await
        .unwrap();
    std::fs::write(dest.join("a.txt"), "mine\n").unwrap();
    wt.commit(&git, "mine", &[]).await.unwrap();
    remote.commit("main", &[("a.txt", "theirs\n")], "theirs");
    let fresh = mirrors.refresh_base(&repo, "main").await.unwrap();
    let err = wt.rebase_onto(&git, &fresh).await.unwrap_err();
    assert!(matches!(err, WorkspaceError::Conflict { .. }), "{err}");
    assert!(
        !wt.has_changes(&git).await.unwrap(),
        "rebase aborted cleanly"
    );
}

#[tokio::test]
async fn bad_remotes_and_refused_pushes() {
    let (data, mirrors, git) = setup();
    let missing = RepoUrl::parse(&format!("file://{}/nope.git", data.path().display())).unwrap();
    let mut policy = RepoPolicy::new(data.path().join("data"));
    policy.local = LocalRepos::ForServerAdmins;
    assert!(matches!(
        policy.admit(&missing, Requester::ServerAdmin).await,
        Err(WorkspaceError::Unreachable { .. })
    ));

    let remote = RemoteRepo::with_files(&[("a.txt", "one\n")]);
    let repo = allowed(&remote.url()).await;
    let err = mirrors
        .add_worktree(&repo, "develop", "nightshift/3-x", &data.path().join("w3"))
        .await
        .unwrap_err();
    assert!(matches!(err, WorkspaceError::MissingBranch { .. }), "{err}");

    // A forge where the pusher may only read (the remote's own hooks never run here, so a
    // refusal has to come from the other side of the network).
    let forge = ForgeFake::start(FakeKind::Gitea).await.unwrap();
    forge.add_user("reader", "read-only-token");
    forge.add_repo("acme/locked").unwrap();
    forge.grant("acme/locked", "reader", Access::Read);
    let mut policy = RepoPolicy::new(data.path());
    policy.hosts = vec![forge.host()];
    let locked = policy
        .admit(
            &RepoUrl::parse(&forge.repo_url("acme/locked")).unwrap(),
            Requester::Member,
        )
        .await
        .unwrap();
    let wt = mirrors
        .add_worktree(&locked, "main", "nightshift/3-x", &data.path().join("w3"))
        .await
        .unwrap();
    std::fs::write(wt.path().join("README.md"), "two\n").unwrap();
    wt.commit(&git, "x", &[]).await.unwrap();
    let basic = base64::engine::general_purpose::STANDARD.encode("reader:read-only-token");
    let reader = git.with_secret_config(
        &format!("http.{}/.extraHeader", forge.origin()),
        &format!("Authorization: Basic {basic}"),
    );
    match wt.push(&reader, "remote").await.unwrap_err() {
        WorkspaceError::PushRefused { permission, .. } => assert!(permission),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn secrets_in_git_config_are_masked_in_errors() {
    let (data, _mirrors, git) = setup();
    let git = git.with_secret_config("http.extraHeader", "Authorization: Bearer canary-123");
    let err = git
        .run(
            data.path(),
            &["push", "https://user:canary-123@127.0.0.1:1/x.git"],
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(!text.contains("canary-123"), "{text}");
}

#[tokio::test]
async fn config_from_environment_pairs_merges_with_earlier_settings() {
    let (data, _mirrors, git) = setup();
    let env = vec![
        ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
        (
            "GIT_CONFIG_KEY_0".to_string(),
            "http.https://forge.example/.extraHeader".to_string(),
        ),
        (
            "GIT_CONFIG_VALUE_0".to_string(),
            "Authorization: Basic canary-456".to_string(),
        ),
    ];
    let git = git
        .with_secret_config("nightshift.first", "one")
        .with_config_env(&env);
    let first = git
        .run(data.path(), &["config", "--get", "nightshift.first"])
        .await
        .unwrap();
    assert_eq!(first.trim(), "one");
    let header = git
        .run(
            data.path(),
            &["config", "--get", "http.https://forge.example/.extraHeader"],
        )
        .await
        .unwrap();
    assert_eq!(header.trim(), "Authorization: Basic canary-456");
}

/// What a hostile agent can leave in its checkout: `.git` pointing at a repository of its own
/// whose config runs a command on every `git status`, and hooks. Nightshift's own git (which
/// runs outside the sandbox) must neither run them nor commit into that repository.
#[tokio::test]
async fn a_checkout_cannot_redirect_nightshifts_own_git() {
    let remote = RemoteRepo::with_files(&[("a.txt", "one\n")]);
    let repo = allowed(&remote.url()).await;
    let (data, mirrors, git) = setup();
    let dest = data.path().join("runs/9/work");
    let wt = mirrors
        .add_worktree(&repo, "main", "nightshift/9-x", &dest)
        .await
        .unwrap();
    assert!(wt.git_dir().starts_with(wt.mirror()), "{:?}", wt.git_dir());

    let marker = data.path().join("ran-outside");
    // In the run's HOME, which the sandbox lets it write to; and one nested in the checkout.
    let planted = data.path().join("runs/9/home/planted");
    let nested = dest.join("nested");
    for repo in [&planted, &nested] {
        std::fs::create_dir_all(repo).unwrap();
        std::fs::write(repo.join("f"), "x").unwrap();
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .args(["-c", "user.name=a", "-c", "user.email=a@b"])
                .args(args)
                .current_dir(repo)
                .output()
                .unwrap()
        };
        git(&["init", "--quiet"]);
        git(&["add", "f"]);
        git(&["commit", "--quiet", "-m", "f"]);
    }
    let evil = format!("touch {}", marker.display());
    for repo in [&planted, &nested] {
        std::fs::write(
            repo.join(".git/config"),
            format!("[core]\n\tfsmonitor = {evil}\n\thooksPath = hooks\n"),
        )
        .unwrap();
        let hooks = repo.join(".git/hooks");
        std::fs::create_dir_all(&hooks).unwrap();
        for hook in ["pre-commit", "post-commit", "commit-msg"] {
            let path = hooks.join(hook);
            std::fs::write(&path, format!("#!/bin/sh\n{evil}\n")).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
    }
    std::fs::write(
        dest.join(".git"),
        format!("gitdir: {}\n", planted.join(".git").display()),
    )
    .unwrap();
    std::fs::write(dest.join("a.txt"), "two\n").unwrap();

    assert!(wt.has_changes(&git).await.unwrap());
    let commit = wt.commit(&git, "edit", &[]).await.unwrap();
    wt.diff(&git).await.unwrap();
    assert!(!marker.exists(), "a command planted in the checkout ran");
    // The commit landed in the mirror on the run's branch, not in the planted repository.
    let in_mirror = git
        .run(wt.mirror(), &["rev-parse", "refs/heads/nightshift/9-x"])
        .await
        .unwrap();
    assert_eq!(in_mirror.trim(), commit);
}

#[tokio::test]
async fn a_patch_restores_uncommitted_work_on_another_machine_at_the_old_base() {
    use std::os::unix::fs::PermissionsExt;
    let remote = RemoteRepo::with_files(&[
        ("a.txt", "one\n"),
        ("gone.txt", "bye\n"),
        ("run.sh", "echo hi\n"),
    ]);
    let repo = allowed(&remote.url()).await;
    let (data, mirrors, git) = setup();
    let dest = data.path().join("runs/1/work");
    let wt = mirrors
        .add_worktree(&repo, "main", "nightshift/1-edit", &dest)
        .await
        .unwrap();
    let base = wt.base_commit().to_string();
    // Bytes that are not UTF-8 and a NUL: only a binary patch carries them.
    let blob: Vec<u8> = (0..=255u8).rev().cycle().take(5000).collect();
    std::fs::write(dest.join("a.txt"), "ONE\n").unwrap();
    std::fs::create_dir_all(dest.join("new/dir")).unwrap();
    std::fs::write(dest.join("new/dir/file.txt"), "new\n").unwrap();
    std::fs::write(dest.join("blob.bin"), &blob).unwrap();
    std::fs::remove_file(dest.join("gone.txt")).unwrap();
    std::fs::set_permissions(dest.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let patch = data.path().join("work.patch");
    wt.save_patch(&git, &patch).await.unwrap();

    // The base moves on; another machine (its own mirror) restores on the old base.
    let moved = remote.commit("main", &[("a.txt", "upstream\n")], "upstream");
    let (other, other_mirrors, other_git) = setup();
    let restored_at = other.path().join("runs/1/work");
    let restored = other_mirrors
        .add_worktree_at(&repo, "main", "nightshift/1-edit", &restored_at, &base)
        .await
        .unwrap();
    assert_eq!(restored.base_commit(), base);
    assert_ne!(base, moved);
    restored.apply(&other_git, &patch).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(restored_at.join("a.txt")).unwrap(),
        "ONE\n"
    );
    assert_eq!(
        std::fs::read_to_string(restored_at.join("new/dir/file.txt")).unwrap(),
        "new\n"
    );
    assert_eq!(std::fs::read(restored_at.join("blob.bin")).unwrap(), blob);
    assert!(!restored_at.join("gone.txt").exists());
    let mode = std::fs::metadata(restored_at.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "the executable bit is restored");
    // Committed work restores the same way.
    restored.commit(&other_git, "Edit", &[]).await.unwrap();
    let again = other.path().join("again.patch");
    restored.save_patch(&other_git, &again).await.unwrap();
    assert_eq!(
        std::fs::read(&again).unwrap(),
        std::fs::read(&patch).unwrap()
    );

    let missing = other_mirrors
        .add_worktree_at(
            &repo,
            "main",
            "nightshift/2-edit",
            &other.path().join("runs/2/work"),
            "0123456789abcdef0123456789abcdef01234567",
        )
        .await;
    assert!(
        matches!(missing, Err(WorkspaceError::MissingCommit { .. })),
        "{missing:?}"
    );
}
