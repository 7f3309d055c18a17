//! A site for publishing tests: a contract-checked fake forge with a writable and a read-only
//! repository, a store, and engines started on it.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightshift_core::{AgentSpec, Budget, DEFAULT_PROJECT, RepoUrl, Run};
use nightshift_engine::{Engine, EngineConfig, TaskRequest};
use nightshift_forge::{ForgeConfig, ForgeEntry, ForgeKind, RetryPolicy, Secret};
use nightshift_store::Store;
use nightshift_test_support::forge_fake::{Access, FakeKind, FakePull, ForgeFake};
use nightshift_test_support::git::git;
use tokio_util::sync::CancellationToken;

use super::harness::{intake, request, tester};

/// The engine's forge token; it must show up nowhere a person or another process can read.
pub(crate) const CANARY: &str = "canary-engine-5c1d8e7a";
pub(crate) const PUBLIC_URL: &str = "https://nightshift.example.com";
pub(crate) const WIDGET: &str = "acme/widget";
pub(crate) const LOCKED: &str = "globex/locked";

const CHECKS: &str = r#"[checks]
test = ["sh test.sh"]
"#;

/// A fake forge with a writable and a read-only repository (both with a test check), a store,
/// and a directory outside every workspace where agents leave proof that they ran.
pub(crate) struct Site {
    pub(crate) fake: ForgeFake,
    pub(crate) data: tempfile::TempDir,
    pub(crate) markers: tempfile::TempDir,
    pub(crate) store: Store,
    pub(crate) project_id: i64,
}

/// Running workers of one engine; dropping them is a crash, not a shutdown.
pub(crate) struct Workers {
    pub(crate) engine: Arc<Engine>,
    pub(crate) handle: tokio::task::JoinHandle<()>,
    pub(crate) shutdown: CancellationToken,
}

impl Workers {
    /// Stops the workers as a shutdown does, letting what they do finish.
    pub(crate) async fn stop(mut self) {
        self.shutdown.cancel();
        let _ = (&mut self.handle).await;
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.handle.abort();
    }
}

pub(crate) fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 12,
        initial_backoff_ms: 5,
        max_backoff_ms: 50,
        max_total_ms: 30_000,
        request_timeout_ms: 2_000,
    }
}

impl Site {
    pub(crate) async fn start(kind: FakeKind) -> Site {
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

    pub(crate) fn config(&self, retry: RetryPolicy) -> EngineConfig {
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

    /// An engine with `count` workers on its own connections to the site's database, as
    /// another process would have: its crash (dropping it) leaves no lock behind in the pool
    /// the test reads with.
    pub(crate) async fn workers(&self, count: usize, config: EngineConfig) -> Workers {
        let store = Store::open_sqlite(&self.data.path().join("nightshift.db"))
            .await
            .unwrap();
        let engine = Engine::new(store, config);
        let shutdown = CancellationToken::new();
        let (e, s) = (engine.clone(), shutdown.clone());
        let handle = tokio::spawn(async move { e.run_workers(count, s).await });
        Workers {
            engine,
            handle,
            shutdown,
        }
    }

    pub(crate) async fn create(
        &self,
        workers: &Workers,
        repo: &str,
        title: &str,
        command: &str,
    ) -> i64 {
        self.create_with_agent(workers, repo, title, AgentSpec::command(command))
            .await
    }

    pub(crate) async fn create_with_agent(
        &self,
        workers: &Workers,
        repo: &str,
        title: &str,
        agent: AgentSpec,
    ) -> i64 {
        let request = TaskRequest {
            title: Some(title.to_string()),
            ..request(
                &self.fake.repo_url(repo),
                &format!("{title}\n\nKeep the test green."),
                agent,
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

    pub(crate) async fn runs(&self, task: i64) -> Vec<Run> {
        self.store.task_runs(self.project_id, task).await.unwrap()
    }

    pub(crate) async fn wait_end(&self, task: i64) -> Run {
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

    pub(crate) fn marker(&self, name: &str) -> std::path::PathBuf {
        self.markers.path().join(name)
    }

    /// The agent command: passes the repository's test and leaves a line in a marker file.
    pub(crate) fn goodbye(&self, name: &str) -> String {
        format!(
            "sed -i 's/hello/goodbye/' greeting.txt && echo ran >> {}",
            self.marker(name).display()
        )
    }

    pub(crate) fn open_pulls(&self, repo: &str) -> Vec<FakePull> {
        self.fake
            .pulls(repo)
            .into_iter()
            .filter(|p| p.open)
            .collect()
    }

    /// The canary in no event, run, change, task row or file under the data directory (the
    /// database included, in every form git could have been given it).
    pub(crate) async fn assert_no_leak(&self, tasks: &[i64]) {
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
    pub(crate) async fn credential_forms(&self) -> Vec<String> {
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

pub(crate) async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
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
