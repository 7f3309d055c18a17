//! Rebase runs' replay of a pushed branch onto the base's tip: up to date, clean commit by
//! commit, clean only as a whole, or conflicting with markers for the agent. Real git against a
//! bare remote on disk.

use nightshift_test_support::git::RemoteRepo;
use nightshift_workspace::Replayed;

use super::super::{allowed, setup};

const BRANCH: &str = "nightshift/3-edit";

#[tokio::test]
async fn a_branch_that_has_the_base_needs_nothing() {
    let remote = RemoteRepo::with_files(&[("a.txt", "one\n")]);
    let repo = allowed(&remote.url()).await;
    let (data, mirrors, git) = setup();
    let tip = remote.commit(BRANCH, &[("a.txt", "ONE\n")], "Edit a");
    let worktree = mirrors
        .checkout_for_rebase(&repo, "main", BRANCH, &data.path().join("w"))
        .await
        .unwrap();
    assert_eq!(worktree.upstream(), Some(tip.as_str()));
    assert_eq!(
        worktree.replay(&git, &tip).await.unwrap(),
        Replayed::UpToDate
    );
}

#[tokio::test]
async fn commits_that_apply_are_replayed_one_by_one_onto_the_tip() {
    let remote = RemoteRepo::with_files(&[("a.txt", "one\n"), ("b.txt", "two\n")]);
    let repo = allowed(&remote.url()).await;
    let (data, mirrors, git) = setup();
    remote.commit(BRANCH, &[("a.txt", "ONE\n")], "Edit a");
    let tip = remote.commit(BRANCH, &[("c.txt", "three\n")], "Add c");
    let main = remote.commit("main", &[("b.txt", "TWO\n")], "upstream");
    let worktree = mirrors
        .checkout_for_rebase(&repo, "main", BRANCH, &data.path().join("w"))
        .await
        .unwrap();
    assert_eq!(
        worktree.base_commit(),
        main,
        "the checkout is the base's tip"
    );
    assert_eq!(worktree.replay(&git, &tip).await.unwrap(), Replayed::Clean);
    let head = worktree.head(&git).await.unwrap();
    let pushed = worktree
        .push_with_lease(&git, "remote", worktree.upstream().unwrap())
        .await
        .unwrap();
    assert_eq!(pushed, head);
    assert_eq!(remote.head(BRANCH).as_deref(), Some(head.as_str()));
    // Both commits, on top of main, with their messages.
    assert_eq!(remote.message(&head).trim(), "Add c");
    let first = remote.parent(&head);
    assert_eq!(remote.message(&first).trim(), "Edit a");
    assert_eq!(remote.parent(&first), main);
    assert_eq!(remote.show(&head, "a.txt"), "ONE\n");
    assert_eq!(remote.show(&head, "b.txt"), "TWO\n");
}

#[tokio::test]
async fn commits_that_conflict_one_by_one_but_not_as_a_whole_become_one_change() {
    let remote = RemoteRepo::with_files(&[("a.txt", "one\n")]);
    let repo = allowed(&remote.url()).await;
    let (data, mirrors, git) = setup();
    // The branch changes a.txt and changes it back: only c.txt is its change.
    remote.commit(BRANCH, &[("a.txt", "mine\n")], "Try a");
    let tip = remote.commit(
        BRANCH,
        &[("a.txt", "one\n"), ("c.txt", "three\n")],
        "Undo a, add c",
    );
    remote.commit("main", &[("a.txt", "theirs\n")], "upstream");
    let worktree = mirrors
        .checkout_for_rebase(&repo, "main", BRANCH, &data.path().join("w"))
        .await
        .unwrap();
    assert_eq!(
        worktree.replay(&git, &tip).await.unwrap(),
        Replayed::Squashed
    );
    assert!(worktree.has_changes(&git).await.unwrap(), "uncommitted");
    let read = |f: &str| std::fs::read_to_string(worktree.path().join(f)).unwrap();
    assert_eq!(read("a.txt"), "theirs\n");
    assert_eq!(read("c.txt"), "three\n");
}

#[tokio::test]
async fn a_conflict_leaves_the_change_with_its_markers_and_says_where() {
    let remote = RemoteRepo::with_files(&[("a.txt", "one\n"), ("b.txt", "two\n")]);
    let repo = allowed(&remote.url()).await;
    let (data, mirrors, git) = setup();
    let fork = remote.head("main").unwrap();
    let tip = remote.commit(
        BRANCH,
        &[("a.txt", "mine\n"), ("c.txt", "three\n")],
        "Edit a",
    );
    remote.commit("main", &[("a.txt", "theirs\n")], "Theirs instead");
    let worktree = mirrors
        .checkout_for_rebase(&repo, "main", BRANCH, &data.path().join("w"))
        .await
        .unwrap();
    let Replayed::Conflicts {
        files,
        fork_point,
        base_commits,
    } = worktree.replay(&git, &tip).await.unwrap()
    else {
        panic!("no conflict reported");
    };
    assert_eq!(files, vec!["a.txt".to_string()]);
    assert_eq!(fork_point, fork);
    assert_eq!(base_commits.len(), 1);
    assert!(
        base_commits[0].ends_with(" Theirs instead"),
        "{base_commits:?}"
    );
    // The whole change is there, uncommitted, on the base's tip.
    assert_eq!(worktree.head(&git).await.unwrap(), worktree.base_commit());
    let text = std::fs::read_to_string(worktree.path().join("a.txt")).unwrap();
    assert!(text.contains("mine") && text.contains("theirs"), "{text}");
    assert_eq!(
        std::fs::read_to_string(worktree.path().join("c.txt")).unwrap(),
        "three\n"
    );
    assert_eq!(
        worktree.conflict_markers(&files),
        vec![
            "a.txt:1".to_string(),
            "a.txt:3".to_string(),
            "a.txt:5".to_string()
        ]
    );
    std::fs::write(worktree.path().join("a.txt"), "mine and theirs\n").unwrap();
    assert!(worktree.conflict_markers(&files).is_empty());
}
