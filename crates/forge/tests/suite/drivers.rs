//! The same behaviour demanded of every driver: GitHub with a token and as an App, GitLab,
//! Gitea. Each test ends by checking that nothing strayed from the API descriptions.

use std::time::{Duration, Instant};

use nightshift_forge::{CiState, ForgeError, PrBody, PrState, PullRequestSpec, render_pr_body};
use nightshift_test_support::forge_fake::{FakeKind, Fault};

use super::{CANARY, Credential, Harness};

fn spec(h: &Harness, branch: &str, title: &str, task_id: i64, run: i64) -> PullRequestSpec {
    let body = render_pr_body(&PrBody {
        task_id,
        run_number: run,
        summary: Some(format!("Did {title}")),
        instructions: format!("Please {title}"),
        files_changed: vec!["README.md".into()],
        diff_stat: " README.md | 1 +\n 1 file changed".into(),
        rounds: 1,
        ..PrBody::default()
    });
    PullRequestSpec {
        repo: h.repo.clone(),
        base: "main".into(),
        head: branch.into(),
        title: title.into(),
        body,
        labels: vec![],
    }
}

pub async fn access_allowed_and_denied(kind: FakeKind, credential: Credential) {
    let h = Harness::start(kind, credential).await;
    h.forge
        .check_push_access(&h.repo)
        .await
        .expect("write access is allowed");
    let denied = h
        .forge
        .check_push_access(&h.locked)
        .await
        .expect_err("read-only access is refused");
    match &denied {
        ForgeError::PermissionDenied { reason, .. } => assert!(!reason.is_empty()),
        other => panic!("expected PermissionDenied, got {other:?}"),
    }
    let text = format!("{denied} {denied:?}");
    assert!(!text.contains(CANARY), "{text}");
    // The forge's own git endpoint agrees: the push is refused, and git's stderr is scrubbed.
    let (pushed, stderr) = h.push_branch(&h.locked, "nightshift/1-denied").await;
    assert!(!pushed, "push to a read-only repository must fail");
    assert!(!stderr.contains(CANARY), "{stderr}");
    h.assert_contract_kept();
}

pub async fn creates_then_adopts(kind: FakeKind, credential: Credential) {
    let h = Harness::start(kind, credential).await;
    let (pushed, stderr) = h.push_branch(&h.repo, "nightshift/7-rename").await;
    assert!(pushed, "push with the forge credential: {stderr}");
    assert!(
        h.fake
            .branch_sha("acme/widget", "nightshift/7-rename")
            .is_some()
    );

    let first = h
        .forge
        .find_or_create_pull_request(&spec(&h, "nightshift/7-rename", "Rename foo", 7, 1))
        .await
        .unwrap()
        .unwrap();
    assert!(!first.adopted);
    assert!(
        first.url.contains(&first.number.to_string()),
        "{}",
        first.url
    );
    let second = h
        .forge
        .find_or_create_pull_request(&spec(&h, "nightshift/7-rename", "Rename foo (retry)", 7, 2))
        .await
        .unwrap()
        .unwrap();
    assert!(second.adopted);
    assert_eq!(second.number, first.number);

    let pulls = h.fake.pulls("acme/widget");
    assert_eq!(pulls.len(), 1, "exactly one PR for the branch: {pulls:?}");
    let pr = &pulls[0];
    assert_eq!(pr.title, "Rename foo (retry)");
    assert!(
        pr.body.contains("<!-- nightshift:task=7 run=2 -->"),
        "{}",
        pr.body
    );
    assert!(
        pr.labels.contains(&"nightshift".to_string()),
        "{:?}",
        pr.labels
    );
    h.assert_contract_kept();
    h.assert_no_leak_in_recordings();
}

/// The forge created the pull request but its answer never arrived: the retried create is
/// refused as a duplicate, and the one that exists is adopted.
pub async fn adopts_a_create_whose_answer_was_lost(kind: FakeKind, credential: Credential) {
    let h = Harness::start(kind, credential).await;
    let branch = "nightshift/8-lost";
    assert!(h.push_branch(&h.repo, branch).await.0);
    let create = if kind == FakeKind::GitLab {
        "/merge_requests"
    } else {
        "/pulls"
    };
    h.fake
        .fail_request_once("POST", create, Fault::ServerErrorAfterHandling);
    let pr = h
        .forge
        .find_or_create_pull_request(&spec(&h, branch, "Lost answer", 8, 1))
        .await
        .unwrap()
        .unwrap();
    assert!(pr.adopted, "the existing pull request is adopted");
    let pulls = h.fake.pulls("acme/widget");
    assert_eq!(pulls.len(), 1, "exactly one PR: {pulls:?}");
    assert_eq!(pulls[0].number, pr.number);
    let creates = h
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with(create))
        .count();
    assert_eq!(creates, 2, "the create was retried once");
    h.assert_contract_kept();
}

pub async fn survives_injected_faults(kind: FakeKind, credential: Credential) {
    let h = Harness::start(kind, credential).await;
    let branches = ["nightshift/1-a", "nightshift/2-b", "nightshift/3-c"];
    for branch in branches {
        assert!(h.push_branch(&h.repo, branch).await.0);
    }
    h.fake.inject_faults(
        0.3,
        7,
        vec![
            Fault::TooManyRequests {
                retry_after_secs: 0,
            },
            Fault::RateLimitReset { secs: 0 },
            Fault::ServerError(502),
            Fault::ServerError(503),
            Fault::ServerErrorAfterHandling,
            Fault::SlowAfterHandling(Duration::from_millis(700)),
        ],
    );
    for (i, branch) in branches.iter().enumerate() {
        // Twice per branch, as a resumed run would.
        for run in 1..=2 {
            let pr = h
                .forge
                .find_or_create_pull_request(&spec(&h, branch, &format!("Task {i}"), i as i64, run))
                .await;
            pr.unwrap_or_else(|e| panic!("{branch} run {run}: {e}"));
        }
    }
    let pulls = h.fake.pulls("acme/widget");
    for branch in branches {
        let count = pulls.iter().filter(|p| p.head == branch).count();
        assert_eq!(count, 1, "exactly one PR for {branch}: {pulls:?}");
    }
    assert!(
        pulls
            .iter()
            .all(|p| p.labels.contains(&"nightshift".to_string())),
        "{pulls:?}"
    );
    let faults = h
        .fake
        .requests()
        .iter()
        .filter(|r| r.fault.is_some())
        .count();
    assert!(faults >= 3, "faults were injected ({faults})");
    let events = h.retry_events();
    assert!(!events.is_empty(), "retries were reported");
    assert!(events.iter().all(|e| !format!("{e:?}").contains(CANARY)));
    h.assert_contract_kept();
    h.assert_no_leak_in_recordings();
}

pub async fn honours_retry_after(kind: FakeKind, credential: Credential) {
    let h = Harness::start(kind, credential).await;
    // Warm the App's token cache first so the one fault hits the API call under test.
    h.forge.check_push_access(&h.repo).await.unwrap();
    h.fake.fail_next([Fault::TooManyRequests {
        retry_after_secs: 1,
    }]);
    let started = Instant::now();
    // Asking about a PR that does not exist always reaches the API (no cached answer).
    let err = h
        .forge
        .pull_request_status(&h.repo, 999)
        .await
        .expect_err("no PR 999");
    assert!(matches!(err, ForgeError::NotFound { .. }), "{err:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited {:?}",
        started.elapsed()
    );
    let events = h.retry_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].delay, Duration::from_secs(1));
    assert!(
        events[0].server_delay && events[0].reason.contains("429"),
        "{events:?}"
    );
    h.assert_contract_kept();
}

pub async fn gives_up_within_bounds(kind: FakeKind, credential: Credential) {
    let h = Harness::start(kind, credential).await;
    h.forge.check_push_access(&h.repo).await.unwrap();
    h.fake
        .fail_next(std::iter::repeat_n(Fault::ServerError(503), 20));
    let err = h
        .forge
        .pull_request_status(&h.repo, 999)
        .await
        .expect_err("keeps failing");
    assert!(
        matches!(err, ForgeError::RetriesExhausted { attempts: 10, .. }),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?} {:?}", h.forge).contains(CANARY));
    assert_eq!(h.retry_events().len(), 9);
    h.assert_contract_kept();
}

pub async fn reads_status_and_ci(kind: FakeKind, credential: Credential) {
    let h = Harness::start(kind, credential).await;
    assert!(h.push_branch(&h.repo, "nightshift/9-ci").await.0);
    let pr = h
        .forge
        .find_or_create_pull_request(&spec(&h, "nightshift/9-ci", "CI", 9, 1))
        .await
        .unwrap()
        .unwrap();
    let status = h
        .forge
        .pull_request_status(&h.repo, pr.number)
        .await
        .unwrap();
    assert_eq!((status.state, status.ci), (PrState::Open, CiState::None));
    let sha = h.fake.branch_sha("acme/widget", "nightshift/9-ci").unwrap();
    assert_eq!(status.head_sha.as_deref(), Some(sha.as_str()));

    let set = |state: &str| match kind {
        FakeKind::GitLab => h.fake.set_pipeline(
            "acme/widget",
            &sha,
            match state {
                "pending" => "running",
                "failure" => "failed",
                other => other,
            },
        ),
        _ => h
            .fake
            .set_commit_status("acme/widget", &sha, "ci/test", state),
    };
    set("pending");
    assert_eq!(
        h.forge
            .pull_request_status(&h.repo, pr.number)
            .await
            .unwrap()
            .ci,
        CiState::Pending
    );
    set("failure");
    assert_eq!(
        h.forge
            .pull_request_status(&h.repo, pr.number)
            .await
            .unwrap()
            .ci,
        CiState::Failing
    );
    set("success");
    assert_eq!(
        h.forge
            .pull_request_status(&h.repo, pr.number)
            .await
            .unwrap()
            .ci,
        CiState::Passing
    );
    if kind == FakeKind::GitHub {
        // Check runs count too: one still running keeps the verdict pending.
        h.fake
            .set_check_run("acme/widget", &sha, "build", "in_progress", None);
        assert_eq!(
            h.forge
                .pull_request_status(&h.repo, pr.number)
                .await
                .unwrap()
                .ci,
            CiState::Pending
        );
        h.fake
            .set_check_run("acme/widget", &sha, "build", "completed", Some("failure"));
        assert_eq!(
            h.forge
                .pull_request_status(&h.repo, pr.number)
                .await
                .unwrap()
                .ci,
            CiState::Failing
        );
    }
    h.fake.merge("acme/widget", pr.number);
    assert_eq!(
        h.forge
            .pull_request_status(&h.repo, pr.number)
            .await
            .unwrap()
            .state,
        PrState::Merged
    );
    h.assert_contract_kept();
    h.assert_no_leak_in_recordings();
}

pub async fn canary_never_leaks(kind: FakeKind, credential: Credential) {
    let h = Harness::start(kind, credential).await;
    let debug = format!("{:?} {:?}", h.forge, h.config);
    assert!(!debug.contains(CANARY), "{debug}");
    let auth = h.forge.git_auth(&h.repo).await.unwrap().unwrap();
    assert!(!format!("{auth:?}").contains(CANARY));
    // A PR for a branch that was never pushed fails: the error must not carry the token.
    let err = h
        .forge
        .find_or_create_pull_request(&spec(&h, "nightshift/404-missing", "Missing", 404, 1))
        .await
        .expect_err("no such branch");
    assert!(!format!("{err} {err:?}").contains(CANARY), "{err:?}");
    h.assert_no_leak_in_recordings();
    h.assert_contract_kept();
}

macro_rules! driver_suite {
    ($name:ident, $kind:expr, $credential:expr) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn access_allowed_and_denied() {
                super::access_allowed_and_denied($kind, $credential).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn creates_pr_with_label_and_marker_then_adopts() {
                super::creates_then_adopts($kind, $credential).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn adopts_a_create_whose_answer_was_lost() {
                super::adopts_a_create_whose_answer_was_lost($kind, $credential).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn thirty_percent_faults_still_one_pr_per_branch() {
                super::survives_injected_faults($kind, $credential).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn honours_retry_after() {
                super::honours_retry_after($kind, $credential).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn gives_up_within_bounds() {
                super::gives_up_within_bounds($kind, $credential).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reads_pr_state_and_ci() {
                super::reads_status_and_ci($kind, $credential).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn canary_token_never_leaks() {
                super::canary_never_leaks($kind, $credential).await;
            }
        }
    };
}

driver_suite!(github_token, FakeKind::GitHub, Credential::Token);
driver_suite!(github_app, FakeKind::GitHub, Credential::App);
driver_suite!(gitlab, FakeKind::GitLab, Credential::Token);
driver_suite!(gitea, FakeKind::Gitea, Credential::Token);
