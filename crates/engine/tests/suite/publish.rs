//! Publishing against the contract-checked fake forges: one pull request per branch whatever
//! crashes, retries and flaky answers happen, pushed with the engine's credential only.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightshift_core::{
    AgentSpec, Budget, DEFAULT_PROJECT, EndReason, Phase, RepoUrl, Run, RunStatus,
};
use nightshift_engine::{Engine, EngineConfig, TaskRequest};
use nightshift_forge::{ForgeConfig, ForgeEntry, ForgeKind, RetryPolicy, Secret};
use nightshift_store::{ForgeCredential, SecretKey, Store};
use nightshift_test_support::forge_fake::{Access, FakeKind, FakePull, Fault, ForgeFake};
use nightshift_test_support::git::git;
use tokio_util::sync::CancellationToken;

use super::harness::{intake, request, tester};

/// The engine's forge token; it must show up nowhere a person or another process can read.
const CANARY: &str = "canary-engine-5c1d8e7a";
const PUBLIC_URL: &str = "https://nightshift.example.com";
const WIDGET: &str = "acme/widget";
const LOCKED: &str = "globex/locked";

const CHECKS: &str = r#"[checks]
test = ["sh test.sh"]
"#;

/// A fake forge with a writable and a read-only repository (both with a test check), a store,
/// and a directory outside every workspace where agents leave proof that they ran.
struct Site {
    fake: ForgeFake,
    data: tempfile::TempDir,
    markers: tempfile::TempDir,
    store: Store,
    project_id: i64,
}

/// Running workers of one engine; dropping them is a crash, not a shutdown.
struct Workers {
    engine: Arc<Engine>,
    handle: tokio::task::JoinHandle<()>,
    shutdown: CancellationToken,
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.handle.abort();
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 12,
        initial_backoff_ms: 5,
        max_backoff_ms: 50,
        max_total_ms: 30_000,
        request_timeout_ms: 2_000,
    }
}

impl Site {
    async fn start(kind: FakeKind) -> Site {
        let fake = ForgeFake::start(kind).await.unwrap();
        fake.add_user("nightshift-bot", CANARY);
        for (repo, access) in [(WIDGET, Access::Write), (LOCKED, Access::Read)] {
            fake.add_repo(repo).unwrap();
            fake.grant(repo, "nightshift-bot", access);
            seed(&fake.bare_path(repo));
        }
        let data = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&data.path().join("nightshift.db"))
            .await
            .unwrap();
        let project_id = store.project(DEFAULT_PROJECT).await.unwrap().unwrap().id;
        Site {
            fake,
            data,
            markers: tempfile::tempdir().unwrap(),
            store,
            project_id,
        }
    }

    fn config(&self, retry: RetryPolicy) -> EngineConfig {
        let kind = match self.fake.kind() {
            FakeKind::GitHub => ForgeKind::Github,
            FakeKind::GitLab => ForgeKind::Gitlab,
            FakeKind::Gitea => ForgeKind::Gitea,
        };
        let mut config = EngineConfig::new(self.data.path());
        config.heartbeat = Duration::from_millis(200);
        config.lease = Duration::from_secs(1);
        config.poll = Duration::from_millis(100);
        config.public_url = format!("{PUBLIC_URL}/");
        config.ci_poll = Duration::from_millis(100);
        // The agents count their runs in a marker outside the checkout, which confinement
        // would rightly refuse; publishing is the subject here.
        config.confinement.mode = nightshift_engine::SandboxMode::None;
        config.forges = ForgeConfig {
            entries: vec![ForgeEntry {
                kind,
                host: self.fake.host(),
                api_url: Some(self.fake.api_url()),
                token: Some(Secret::new(CANARY)),
                app: None,
                username: None,
            }],
            retry,
        };
        config
    }

    fn workers(&self, count: usize, config: EngineConfig) -> Workers {
        let engine = Engine::new(self.store.clone(), config);
        let shutdown = CancellationToken::new();
        let (e, s) = (engine.clone(), shutdown.clone());
        let handle = tokio::spawn(async move { e.run_workers(count, s).await });
        Workers {
            engine,
            handle,
            shutdown,
        }
    }

    async fn create(&self, workers: &Workers, repo: &str, title: &str, command: &str) -> i64 {
        let request = TaskRequest {
            title: Some(title.to_string()),
            ..request(
                &self.fake.repo_url(repo),
                &format!("{title}\n\nKeep the test green."),
                AgentSpec::command(command),
                Budget::default(),
                Duration::from_secs(120),
            )
        };
        let project = self.store.project(DEFAULT_PROJECT).await.unwrap().unwrap();
        let (task, _) = intake(&workers.engine)
            .create(&project, &tester(), request)
            .await
            .unwrap();
        task.id
    }

    async fn runs(&self, task: i64) -> Vec<Run> {
        self.store.task_runs(self.project_id, task).await.unwrap()
    }

    async fn wait_end(&self, task: i64) -> Run {
        let started = Instant::now();
        loop {
            let run = self.runs(task).await.pop().unwrap();
            if run.status.is_terminal() {
                return run;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "run did not end: {run:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn marker(&self, name: &str) -> std::path::PathBuf {
        self.markers.path().join(name)
    }

    /// The agent command: passes the repository's test and leaves a line in a marker file.
    fn goodbye(&self, name: &str) -> String {
        format!(
            "sed -i 's/hello/goodbye/' greeting.txt && echo ran >> {}",
            self.marker(name).display()
        )
    }

    fn open_pulls(&self, repo: &str) -> Vec<FakePull> {
        self.fake
            .pulls(repo)
            .into_iter()
            .filter(|p| p.open)
            .collect()
    }

    /// The canary in no event, run, change, task row or file under the data directory (the
    /// database included, in every form git could have been given it).
    async fn assert_no_leak(&self, tasks: &[i64]) {
        let forms = self.credential_forms().await;
        let mut texts = Vec::new();
        for task in tasks {
            let row = self.store.task(self.project_id, *task).await.unwrap();
            texts.push(serde_json::to_string(&row).unwrap());
            for run in self.runs(*task).await {
                texts.push(serde_json::to_string(&run).unwrap());
                texts.push(format!("{:?}", run.error));
                let events = self.store.events(run.id, 0, 100_000).await.unwrap();
                texts.push(serde_json::to_string(&events).unwrap());
                let change = self.store.change(run.id).await.unwrap();
                texts.push(serde_json::to_string(&change).unwrap());
            }
        }
        for text in &texts {
            for form in &forms {
                assert!(!text.contains(form.as_str()), "credential leaked: {text}");
            }
        }
        let mut files = vec![self.data.path().to_path_buf()];
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in std::fs::read_dir(&path).unwrap().flatten() {
                    files.push(entry.path());
                }
            } else if let Ok(bytes) = std::fs::read(&path) {
                for form in &forms {
                    assert!(
                        !contains(&bytes, form.as_bytes()),
                        "credential leaked into {}",
                        path.display()
                    );
                }
            }
        }
    }

    /// The token and every encoding of it the forge hands to git.
    async fn credential_forms(&self) -> Vec<String> {
        let repo = RepoUrl::parse(&self.fake.repo_url(WIDGET)).unwrap();
        let config = self.config(fast_retries()).forges;
        let forge =
            nightshift_forge::resolve(&repo, &config, nightshift_forge::ignore_retries()).unwrap();
        let mut forms = vec![CANARY.to_string()];
        if let Some(auth) = forge.git_auth(&repo).await.unwrap() {
            forms.extend(auth.secrets().iter().map(|s| s.expose().to_string()));
        }
        forms
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Gives a fake's bare repository a greeting and a test that wants it to say goodbye.
fn seed(bare: &Path) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("seed");
    git(
        work.path(),
        &["clone", "--quiet", &bare.to_string_lossy(), "seed"],
    );
    std::fs::write(dir.join(".nightshift.toml"), CHECKS).unwrap();
    std::fs::write(dir.join("greeting.txt"), "hello world\n").unwrap();
    std::fs::write(
        dir.join("test.sh"),
        "grep -q goodbye greeting.txt || { echo 'greeting does not say goodbye'; exit 1; }\n",
    )
    .unwrap();
    git(&dir, &["add", "--all"]);
    git(&dir, &["commit", "--quiet", "-m", "greeting and its test"]);
    git(&dir, &["push", "--quiet", "origin", "HEAD:main"]);
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One task end to end: one PR with the description's parts, the label and the marker; the
/// run and its change name it; CI and a person closing it show on the change afterwards.
async fn publishes_one_pull_request(kind: FakeKind) {
    let site = Site::start(kind).await;
    let workers = site.workers(1, site.config(fast_retries()));
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
    let first = site.workers(1, site.config(patient));
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
    let second = site.workers(1, site.config(fast_retries()));
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
    let workers = site.workers(1, site.config(fast_retries()));
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
    let workers = site.workers(1, site.config(fast_retries()));
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
    let workers = site.workers(1, config);
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

#[tokio::test]
async fn flaky_forge_answers_still_publish_each_run_exactly_once() {
    let site = Site::start(FakeKind::GitHub).await;
    site.fake.inject_faults(
        0.3,
        17,
        vec![
            Fault::TooManyRequests {
                retry_after_secs: 0,
            },
            Fault::ServerError(502),
            Fault::ServerError(503),
            Fault::ServerErrorAfterHandling,
        ],
    );
    let workers = site.workers(2, site.config(fast_retries()));
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
    let faults = site
        .fake
        .requests()
        .iter()
        .filter(|r| r.fault.is_some())
        .count();
    assert!(faults > 0, "faults were injected");
    assert_eq!(site.open_pulls(WIDGET).len(), tasks.len());
    assert_eq!(site.fake.violations(), Vec::<String>::new());
    site.assert_no_leak(&tasks).await;
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
    let workers = site.workers(1, site.config(fast_retries()));
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
