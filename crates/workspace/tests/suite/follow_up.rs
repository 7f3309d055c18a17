//! Follow-up runs on a branch Nightshift already pushed: checked out as it is on the remote,
//! rebased onto a base that moved, and force-pushed with a lease, so that a person's push in
//! between is never overwritten. Real git against a bare remote on disk.

use nightshift_test_support::git::RemoteRepo;
use nightshift_workspace::WorkspaceError;

use super::super::{allowed, setup};

#[tokio::test]
async fn a_pushed_branch_is_rebased_onto_a_moved_base_and_pushed_with_a_lease() {
    let remote = RemoteRepo::with_files(&[("a.txt", "one\n"), ("b.txt", "two\n")]);
    let repo = allowed(&remote.url()).await;
    let (data, mirrors, git) = setup();
    let branch = "nightshift/4-edit";

    // The first run: its branch pushed, its worktree gone.
    let first = mirrors
        .add_worktree(&repo, "main", branch, &data.path().join("runs/1/work"))
        .await
        .unwrap();
    let old_base = first.base_commit().to_string();
    std::fs::write(first.path().join("a.txt"), "ONE\n").unwrap();
    first.commit(&git, "Edit a", &[]).await.unwrap();
    let pushed = first.push(&git, "remote").await.unwrap();
    mirrors.remove_worktree(&first).await.unwrap();

    // The base moves; the follow-up starts from the branch as it is on the remote.
    let moved = remote.commit("main", &[("b.txt", "TWO\n")], "upstream");
    let dest = data.path().join("runs/2/work");
    let mut follow_up = mirrors
        .checkout_branch(&repo, "main", branch, &dest)
        .await
        .unwrap();
    assert_eq!(follow_up.head(&git).await.unwrap(), pushed);
    assert_eq!(follow_up.upstream(), Some(pushed.as_str()));
    assert_eq!(
        follow_up.base_commit(),
        old_base,
        "where the branch left main"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("a.txt")).unwrap(),
        "ONE\n"
    );

    let fresh = mirrors.refresh_base(&repo, "main").await.unwrap();
    assert_eq!(fresh, moved);
    follow_up.rebase_onto(&git, &fresh).await.unwrap();
    let rebased = follow_up
        .push_with_lease(&git, "remote", &pushed)
        .await
        .unwrap();
    assert_ne!(rebased, pushed);
    assert_eq!(remote.head(branch).as_deref(), Some(rebased.as_str()));
    assert_eq!(remote.parent(&rebased), moved);
    assert_eq!(remote.show(&rebased, "a.txt"), "ONE\n");
    assert_eq!(remote.show(&rebased, "b.txt"), "TWO\n");
    let diff = follow_up.diff(&git).await.unwrap();
    assert_eq!(
        diff.files,
        vec!["a.txt"],
        "the whole change, against the new base"
    );
}

#[tokio::test]
async fn a_push_by_someone_else_breaks_the_lease_and_is_kept() {
    let remote = RemoteRepo::with_files(&[("a.txt", "one\n")]);
    let repo = allowed(&remote.url()).await;
    let (data, mirrors, git) = setup();
    let branch = "nightshift/5-fix";
    let first = mirrors
        .add_worktree(&repo, "main", branch, &data.path().join("runs/1/work"))
        .await
        .unwrap();
    std::fs::write(first.path().join("a.txt"), "fixed\n").unwrap();
    first.commit(&git, "Fix", &[]).await.unwrap();
    let pushed = first.push(&git, "remote").await.unwrap();
    mirrors.remove_worktree(&first).await.unwrap();

    let follow_up = mirrors
        .checkout_branch(&repo, "main", branch, &data.path().join("runs/2/work"))
        .await
        .unwrap();
    std::fs::write(follow_up.path().join("a.txt"), "fixed again\n").unwrap();
    follow_up.commit(&git, "Fix again", &[]).await.unwrap();

    // A person pushes to the branch while the follow-up works.
    let theirs = remote.commit(branch, &[("theirs.txt", "mine\n")], "a person's commit");
    let err = follow_up
        .push_with_lease(&git, "remote", follow_up.upstream().unwrap())
        .await
        .unwrap_err();
    match &err {
        WorkspaceError::LeaseBroken {
            branch: b,
            expected,
            ..
        } => assert_eq!((b.as_str(), expected.as_str()), (branch, pushed.as_str())),
        other => panic!("expected a broken lease, got {other}"),
    }
    assert!(err.to_string().contains("someone else pushed"), "{err}");
    assert_eq!(
        remote.head(branch).as_deref(),
        Some(theirs.as_str()),
        "their commit is still the branch's head"
    );
}

#[tokio::test]
async fn a_branch_that_is_not_on_the_remote_cannot_be_followed_up() {
    let remote = RemoteRepo::with_files(&[("a.txt", "one\n")]);
    let repo = allowed(&remote.url()).await;
    let (data, mirrors, _git) = setup();
    let err = mirrors
        .checkout_branch(&repo, "main", "nightshift/9-gone", &data.path().join("w"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, WorkspaceError::MissingBranch { branch, .. } if branch == "nightshift/9-gone"),
        "{err}"
    );
}
