//! Following published pull requests after their runs, against the fake forges: kept in the
//! store across restarts, with conditional polls, until merged or closed.

use std::time::{Duration, Instant};

use nightshift_core::{CiState, FollowedPr, PrState, RunStatus};
use nightshift_test_support::forge_fake::FakeKind;

use super::forge_site::{Site, WIDGET, fast_retries};

/// The task's followed pull request once `done` holds for it; on timeout, the row as it was.
pub(crate) async fn followed_when(
    site: &Site,
    task: i64,
    what: &str,
    done: impl Fn(&FollowedPr) -> bool,
) -> FollowedPr {
    let started = Instant::now();
    loop {
        let prs = site
            .store
            .task_pull_requests(site.project_id, task)
            .await
            .unwrap();
        if let Some(pr) = prs.iter().find(|pr| done(pr)) {
            return pr.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}: {prs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_restart_mid_follow_still_records_the_merge() {
    let site = Site::start(FakeKind::GitHub).await;
    let first = site.workers(1, site.config(fast_retries())).await;
    let task = site
        .create(&first, WIDGET, "Say goodbye", &site.goodbye("agent"))
        .await;
    let run = site.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let head = run.checkpoint.pushed_commit.clone().unwrap();
    site.fake
        .set_commit_status(WIDGET, &head, "ci/test", "success");
    let pr = followed_when(&site, task, "ci passing", |pr| pr.ci == CiState::Passing).await;
    assert_eq!(pr.state, PrState::Open);
    assert!(pr.following);
    assert_eq!(Some(pr.number), run.checkpoint.pr_number);

    // The process dies; the PR is merged while nobody follows it.
    drop(first);
    site.fake.merge(WIDGET, pr.number);
    // A request the dead follower sent just before it died may still be arriving; after a
    // moment, nothing more does.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let requests = site.fake.requests().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        site.fake.requests().len(),
        requests,
        "nobody asks the forge"
    );
    assert_eq!(
        site.store
            .task_pull_requests(site.project_id, task)
            .await
            .unwrap()[0]
            .state,
        PrState::Open
    );

    // A new process on the same database picks the follow up and records the merge.
    let _second = site.workers(1, site.config(fast_retries())).await;
    let merged = followed_when(&site, task, "the merge", |pr| pr.state == PrState::Merged).await;
    assert!(!merged.following, "a merged PR is no longer polled");
    assert!(merged.ended_at.is_some());
    assert_eq!(merged.opened_at, pr.opened_at);
    let change = site.store.change(run.id).await.unwrap().unwrap();
    assert_eq!(change.ci_status.as_deref(), Some("merged · ci passing"));
    let notes = site
        .store
        .notifications(site.project_id, "tester", false, 10)
        .await
        .unwrap();
    assert!(notes.iter().any(|n| n.kind == "pr_merged"), "{notes:?}");
    assert_eq!(site.fake.violations(), Vec::<String>::new());
}

/// Unchanged answers come back as 304s to the ETags of the last poll, and a change behind
/// them is still seen: CI turning red shows on the change and notifies the creator.
async fn polls_are_conditional_and_see_changes(kind: FakeKind) {
    let site = Site::start(kind).await;
    let workers = site.workers(1, site.config(fast_retries())).await;
    let task = site
        .create(&workers, WIDGET, "Say goodbye", &site.goodbye("agent"))
        .await;
    let run = site.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let head = run.checkpoint.pushed_commit.clone().unwrap();
    let pr = followed_when(&site, task, "three polls that found nothing new", |pr| {
        pr.unchanged_polls >= 3
    })
    .await;
    assert_eq!(pr.ci, CiState::None);
    let conditional: Vec<_> = site
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.if_none_match.is_some())
        .collect();
    assert!(
        conditional.iter().any(|r| r.status == 304),
        "unchanged answers are 304s: {:?}",
        conditional
            .iter()
            .map(|r| (&r.path, r.status))
            .collect::<Vec<_>>()
    );

    match kind {
        FakeKind::GitLab => site.fake.set_pipeline(WIDGET, &head, "failed"),
        _ => site
            .fake
            .set_commit_status(WIDGET, &head, "ci/test", "failure"),
    }
    let failing = followed_when(&site, task, "ci failing", |pr| pr.ci == CiState::Failing).await;
    assert!(
        failing.following,
        "an open PR with red CI is still followed"
    );
    let change = site.store.change(run.id).await.unwrap().unwrap();
    assert_eq!(change.ci_status.as_deref(), Some("open · ci failing"));
    let notes = site
        .store
        .notifications(site.project_id, "tester", false, 10)
        .await
        .unwrap();
    let red = notes
        .iter()
        .find(|n| n.kind == "ci_failed")
        .expect("notified");
    assert_eq!(red.run_id, run.id);
    assert!(
        red.message.contains(&format!("#{}", pr.number)),
        "{}",
        red.message
    );
    assert_eq!(site.fake.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn github_polls_are_conditional_and_see_ci_turn_red() {
    polls_are_conditional_and_see_changes(FakeKind::GitHub).await;
}

#[tokio::test]
async fn gitlab_polls_are_conditional_and_see_ci_turn_red() {
    polls_are_conditional_and_see_changes(FakeKind::GitLab).await;
}

#[tokio::test]
async fn a_pull_request_deleted_on_the_forge_is_let_go() {
    let site = Site::start(FakeKind::Gitea).await;
    let workers = site.workers(1, site.config(fast_retries())).await;
    let task = site
        .create(&workers, WIDGET, "Say goodbye", &site.goodbye("agent"))
        .await;
    let run = site.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let pr = followed_when(&site, task, "a first poll", |pr| pr.polls >= 1).await;
    site.fake.delete_pull(WIDGET, pr.number);
    let gone = followed_when(&site, task, "letting go", |pr| !pr.following).await;
    assert_eq!(gone.state, PrState::Open, "the last state seen stays");
    let error = gone.last_error.unwrap();
    assert!(error.contains("not found"), "{error}");
}
