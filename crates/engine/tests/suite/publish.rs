//! Publishing against the contract-checked fake forges: one pull request per branch whatever
//! crashes, retries and flaky answers happen, pushed with the engine's credential only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nightshift_core::{EndReason, Phase, RunStatus};
use nightshift_forge::RetryPolicy;
use nightshift_store::{ForgeCredential, SecretKey};
use nightshift_test_support::forge_fake::{Access, FakeKind, Fault};

use super::forge_site::{LOCKED, PUBLIC_URL, Site, WIDGET, fast_retries, wait_for};

/// One task end to end: one PR with the description's parts, the label and the marker; the
/// run and its change name it; CI and a person closing it show on the change afterwards.
async fn publishes_one_pull_request(kind: FakeKind) {
    let site = Site::start(kind).await;
    let workers = site.workers(1, site.config(fast_retries())).await;
    let task = site
        .create(&workers, WIDGET, "Say goodbye", &site.goodbye("agent"))
        .await;
    let run = site.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert!(site.marker("agent").exists(), "the agent ran");

    let pulls = site.fake.pulls(WIDGET);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let pr = &pulls[0];
    let branch = format!("nightshift/{task}-say-goodbye");
    assert_eq!(
        (pr.head.as_str(), pr.base.as_str()),
        (branch.as_str(), "main")
    );
    assert_eq!(pr.title, "Say goodbye");
    assert!(pr.labels.iter().any(|l| l == "nightshift"), "{pr:?}");
    for part in [
        "## Summary",
        "> Say goodbye",
        "## Files changed (1)",
        "greeting.txt",
        // The test asks for the change, so it fails on the base: a pre-existing failure.
        "| test | `sh test.sh` | ✅ passed (_failed on the base_) |",
        "a pre-existing failure, which this change makes pass",
        "Verified in 1 round.",
        "## Usage",
        &format!("[task {task}]({PUBLIC_URL}/tasks/{task})"),
        &format!("<!-- nightshift:task={task} run=1 -->"),
    ] {
        assert!(pr.body.contains(part), "missing {part:?} in:\n{}", pr.body);
    }

    let url = run.checkpoint.pr_url.clone().expect("the run names its PR");
    assert_eq!(run.checkpoint.pr_number, Some(pr.number));
    let change = site.store.change(run.id).await.unwrap().unwrap();
    assert_eq!(change.pr_url.as_deref(), Some(url.as_str()));
    assert_eq!(change.pr_number, Some(pr.number));

    let head = site
        .fake
        .branch_sha(WIDGET, &branch)
        .expect("branch pushed");
    assert_eq!(run.checkpoint.pushed_commit.as_deref(), Some(head.as_str()));
    match kind {
        FakeKind::GitLab => site.fake.set_pipeline(WIDGET, &head, "success"),
        _ => site
            .fake
            .set_commit_status(WIDGET, &head, "ci/test", "success"),
    }
    let ci_status = |expected: &'static str| {
        let store = site.store.clone();
        let run_id = run.id;
        async move || {
            let change = store.change(run_id).await.unwrap()?;
            (change.ci_status.as_deref() == Some(expected)).then_some(())
        }
    };
    wait_for("ci passing", ci_status("open · ci passing")).await;
    site.fake.close(WIDGET, pr.number);
    wait_for("closed", ci_status("closed · ci passing")).await;

    assert_eq!(site.fake.violations(), Vec::<String>::new());
    site.assert_no_leak(&[task]).await;
}

#[tokio::test]
async fn github_run_opens_exactly_one_pull_request_with_body_label_and_marker() {
    publishes_one_pull_request(FakeKind::GitHub).await;
}

#[tokio::test]
async fn gitlab_run_opens_exactly_one_merge_request() {
    publishes_one_pull_request(FakeKind::GitLab).await;
}

#[tokio::test]
async fn gitea_run_opens_exactly_one_pull_request() {
    publishes_one_pull_request(FakeKind::Gitea).await;
}

#[tokio::test]
async fn a_crash_between_push_and_pull_request_resumes_into_one_pull_request() {
    let site = Site::start(FakeKind::GitHub).await;
    // The first engine pushes, then finds opening pull requests down and keeps retrying.
    site.fake
        .fail_requests("POST", "/repos/acme/widget/pulls", Fault::ServerError(503));
    let patient = RetryPolicy {
        max_attempts: 10_000,
        initial_backoff_ms: 20,
        max_backoff_ms: 100,
        max_total_ms: 600_000,
        request_timeout_ms: 2_000,
    };
    let first = site.workers(1, site.config(patient)).await;
    let task = site
        .create(&first, WIDGET, "Say goodbye", &site.goodbye("agent"))
        .await;
    let branch = format!("nightshift/{task}-say-goodbye");
    wait_for("a refused pull request", async || {
        site.fake
            .requests()
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/pulls") && r.status == 503)
            .then_some(())
    })
    .await;
    let run = site.runs(task).await.pop().unwrap();
    assert!(run.checkpoint.pushed_commit.is_some(), "{run:?}");
    assert!(site.fake.branch_sha(WIDGET, &branch).is_some());
    assert!(site.fake.pulls(WIDGET).is_empty());

    // The worker dies mid-retry; another engine on the same store takes the lease over.
    drop(first);
    site.fake.clear_targeted_faults();
    let second = site.workers(1, site.config(fast_retries())).await;
    let run = site.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let pulls = site.fake.pulls(WIDGET);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(run.checkpoint.pr_number, Some(pulls[0].number));
    assert!(run.checkpoint.pr_url.is_some());
    let ran = std::fs::read_to_string(site.marker("agent")).unwrap();
    assert_eq!(
        ran.lines().count(),
        1,
        "the resumed run did not redo the agent's work"
    );
    let events = site.store.events(run.id, 0, 10_000).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.message.contains("going on with the pull request")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| e.message.contains("HTTP 503")),
        "retries show in the run's log"
    );

    // A retry of the succeeded task updates the branch's PR instead of opening another.
    site.store.retry_task(site.project_id, task).await.unwrap();
    second.engine.wake();
    let retried = site.wait_end(task).await;
    assert_eq!(retried.number, 2);
    assert_eq!(retried.status, RunStatus::Succeeded, "{retried:?}");
    let pulls = site.fake.pulls(WIDGET);
    assert_eq!(pulls.len(), 1, "never two pull requests: {pulls:?}");
    assert_eq!(retried.checkpoint.pr_number, Some(pulls[0].number));
    assert!(
        pulls[0]
            .body
            .contains(&format!("<!-- nightshift:task={task} run=2 -->")),
        "{}",
        pulls[0].body
    );
    assert_eq!(
        site.fake.branch_sha(WIDGET, &branch),
        retried.checkpoint.pushed_commit
    );
    assert_eq!(site.fake.violations(), Vec::<String>::new());
    site.assert_no_leak(&[task]).await;
}

#[tokio::test]
async fn without_write_access_the_run_is_denied_before_the_agent_starts() {
    let site = Site::start(FakeKind::GitHub).await;
    let workers = site.workers(1, site.config(fast_retries())).await;
    let task = site
        .create(&workers, LOCKED, "Say goodbye", &site.goodbye("agent"))
        .await;
    let started = Instant::now();
    let run = site.wait_end(task).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(run.end_reason, Some(EndReason::PermissionDenied), "{run:?}");
    assert_eq!(run.failed_phase, Some(Phase::Preparing));
    let error = run.error.clone().unwrap_or_default();
    assert!(error.contains("no write access"), "{error}");
    assert!(!site.marker("agent").exists(), "the agent never ran");
    let events = site.store.events(run.id, 0, 10_000).await.unwrap();
    assert!(
        events.iter().all(|e| e.phase != Some(Phase::Agent)),
        "{events:?}"
    );
    assert!(site.fake.pulls(LOCKED).is_empty());
    site.assert_no_leak(&[task]).await;
}

/// Write access taken away while the agent works: the push is refused by the forge itself, and
/// the run ends denied in publishing with the forge's reason, its change kept, nothing pushed.
#[tokio::test]
async fn a_push_refused_for_permission_is_denied_in_publishing() {
    let site = Site::start(FakeKind::GitHub).await;
    let workers = site.workers(1, site.config(fast_retries())).await;
    let go = site.marker("go");
    let agent = format!(
        "{} && while [ ! -e {} ]; do sleep 0.05; done",
        site.goodbye("agent"),
        go.display()
    );
    let task = site.create(&workers, WIDGET, "Say goodbye", &agent).await;
    wait_for("the agent to run", async || {
        site.marker("agent").exists().then_some(())
    })
    .await;
    site.fake.grant(WIDGET, "nightshift-bot", Access::Read);
    std::fs::write(&go, "").unwrap();
    let run = site.wait_end(task).await;
    assert_eq!(run.end_reason, Some(EndReason::PermissionDenied), "{run:?}");
    assert_eq!(run.failed_phase, Some(Phase::Publishing));
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains("was refused") && error.contains("403"),
        "{error}"
    );
    let change = site.store.change(run.id).await.unwrap().unwrap();
    assert_eq!(change.files_changed, vec!["greeting.txt"]);
    assert!(
        site.fake
            .branch_sha(WIDGET, &format!("nightshift/{task}-say-goodbye"))
            .is_none()
    );
    assert!(site.open_pulls(WIDGET).is_empty());
    site.assert_no_leak(&[task]).await;
}

/// A project's own credential (from the vault) is what its runs push and open pull requests
/// with: here it may write where the server's token may only read.
#[tokio::test]
async fn a_projects_stored_credential_publishes_in_place_of_the_servers() {
    const PROJECT_TOKEN: &str = "canary-project-9b2f41d3";
    let site = Site::start(FakeKind::GitHub).await;
    site.fake.add_user("project-bot", PROJECT_TOKEN);
    site.fake.grant(LOCKED, "project-bot", Access::Write);
    let key = SecretKey::from_base64("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=").unwrap();
    site.store
        .set_credential(
            &key,
            site.project_id,
            &site.fake.host(),
            &ForgeCredential::GithubToken {
                token: PROJECT_TOKEN.into(),
            },
            "admin",
        )
        .await
        .unwrap();
    let mut config = site.config(fast_retries());
    config.secret_key = Some(key);
    let workers = site.workers(1, config).await;
    let task = site
        .create(&workers, LOCKED, "Say goodbye", &site.goodbye("agent"))
        .await;
    let run = site.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let pulls = site.fake.pulls(LOCKED);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(
        site.fake
            .branch_sha(LOCKED, &format!("nightshift/{task}-say-goodbye"))
            .is_some()
    );
    let events = site.store.events(run.id, 0, 10_000).await.unwrap();
    assert!(
        !serde_json::to_string(&events)
            .unwrap()
            .contains(PROJECT_TOKEN)
    );
    site.assert_no_leak(&[task]).await;
}

/// GitHub and GitLab send their rate-limit headers (reset time included) on every answer, Gitea
/// its own; with 30 % of the answers a 429 or a 5xx, every run still publishes exactly one PR.
async fn flaky_forge_answers_still_publish_each_run_exactly_once(kind: FakeKind) {
    let site = Site::start(kind).await;
    site.fake.inject_faults(
        0.3,
        17,
        vec![
            Fault::TooManyRequests {
                retry_after_secs: 0,
            },
            Fault::RateLimitReset { secs: 0 },
            Fault::ServerError(500),
            Fault::ServerError(502),
            Fault::ServerError(503),
            Fault::ServerErrorAfterHandling,
        ],
    );
    let mut config = site.config(fast_retries());
    // The subject is the forge: a lease long enough that a loaded machine does not hand a run
    // to the other worker mid-phase.
    config.lease = Duration::from_secs(5);
    let workers = site.workers(2, config).await;
    let mut tasks = Vec::new();
    for (n, title) in ["Say goodbye", "Wave goodbye", "Bid goodbye"]
        .iter()
        .enumerate()
    {
        let marker = format!("agent-{n}");
        tasks.push(
            site.create(&workers, WIDGET, title, &site.goodbye(&marker))
                .await,
        );
    }
    for task in &tasks {
        let run = site.wait_end(*task).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
        assert!(run.checkpoint.pr_url.is_some());
    }
    let pulls = site.fake.pulls(WIDGET);
    assert_eq!(pulls.len(), tasks.len(), "one PR per task: {pulls:?}");
    for task in &tasks {
        let marker = format!("<!-- nightshift:task={task} run=1 -->");
        assert_eq!(
            pulls.iter().filter(|p| p.body.contains(&marker)).count(),
            1,
            "{pulls:?}"
        );
    }
    let requests = site.fake.requests();
    let faults: Vec<_> = requests.iter().filter(|r| r.fault.is_some()).collect();
    assert!(
        faults.iter().any(|r| r.status >= 500) && faults.iter().any(|r| r.status == 429),
        "429s and 5xx were injected"
    );
    // What an operator sees of it: the answers by class, and the retries they caused.
    let metrics = nightshift_test_support::parse_prometheus(
        &nightshift_engine::telemetry::render(&site.store)
            .await
            .unwrap(),
    );
    let count = |name: &str, answer: Option<&str>| -> f64 {
        metrics
            .iter()
            .filter(|s| match answer {
                Some(a) => s.is(name, &[("answer", a)]),
                None => s.is(name, &[]),
            })
            .map(|s| s.value)
            .sum()
    };
    assert!(count("nightshift_forge_requests_total", Some("4xx")) >= 1.0);
    assert!(count("nightshift_forge_requests_total", Some("5xx")) >= 1.0);
    assert!(count("nightshift_forge_requests_total", Some("2xx")) >= tasks.len() as f64);
    assert!(count("nightshift_forge_retries_total", None) >= 1.0);
    // The forge's usual headers came with every answer, the faults included.
    let usual = match kind {
        FakeKind::GitHub => "x-ratelimit-reset",
        FakeKind::GitLab => "ratelimit-reset",
        FakeKind::Gitea => "set-cookie",
    };
    for request in &requests {
        assert!(
            request
                .response_headers
                .iter()
                .any(|(name, _)| name == usual),
            "{} {} -> {} lacks {usual}",
            request.method,
            request.path,
            request.status
        );
    }
    assert_eq!(site.open_pulls(WIDGET).len(), tasks.len());
    assert_eq!(site.fake.violations(), Vec::<String>::new());
    site.assert_no_leak(&tasks).await;
}

#[tokio::test]
async fn flaky_github_answers_still_publish_each_run_exactly_once() {
    flaky_forge_answers_still_publish_each_run_exactly_once(FakeKind::GitHub).await;
}

#[tokio::test]
async fn flaky_gitlab_answers_still_publish_each_run_exactly_once() {
    flaky_forge_answers_still_publish_each_run_exactly_once(FakeKind::GitLab).await;
}

#[tokio::test]
async fn flaky_gitea_answers_still_publish_each_run_exactly_once() {
    flaky_forge_answers_still_publish_each_run_exactly_once(FakeKind::Gitea).await;
}

/// Everything the engine and its libraries log, at every level, for one test thread.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_forge_token_shows_nowhere_a_person_or_a_log_can_read() {
    let logs = Logs::default();
    let writer = logs.clone();
    // The test runtime has one thread, so a thread-local subscriber hears every task.
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let site = Site::start(FakeKind::GitHub).await;
    site.fake.inject_faults(
        0.3,
        5,
        vec![Fault::ServerError(503), Fault::ServerErrorAfterHandling],
    );
    let workers = site.workers(1, site.config(fast_retries())).await;
    let published = site
        .create(&workers, WIDGET, "Say goodbye", &site.goodbye("agent"))
        .await;
    assert_eq!(site.wait_end(published).await.status, RunStatus::Succeeded);
    let denied = site
        .create(&workers, LOCKED, "Say goodbye", &site.goodbye("locked"))
        .await;
    assert_eq!(
        site.wait_end(denied).await.end_reason,
        Some(EndReason::PermissionDenied)
    );
    site.assert_no_leak(&[published, denied]).await;
    let logged = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(!logged.is_empty(), "the libraries logged something");
    for form in site.credential_forms().await {
        assert!(!logged.contains(&form), "credential in the logs:\n{logged}");
    }
}
