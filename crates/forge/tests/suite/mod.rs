//! Shared setup: a fake forge with a writable and a read-only repository, the driver resolved
//! from forge settings, retries recorded, and a canary token that must never leak.

mod contract;
mod drivers;
mod follow;
mod webhooks;

use std::path::Path;
use std::sync::{Arc, Mutex};

use nightshift_core::RepoUrl;
use nightshift_forge::{
    Forge, ForgeConfig, ForgeEntry, ForgeKind, GitHubAppConfig, RetryEvent, RetryObserver,
    RetryPolicy, Secret, resolve,
};
use nightshift_test_support::forge_fake::{Access, FakeKind, ForgeFake};
use serde_json::json;

/// The token every test uses; it must never show up in errors, Debug output or answers.
pub const CANARY: &str = "canary-7f3a9c2e51";
pub const APP_ID: u64 = 4242;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Credential {
    Token,
    App,
}

pub struct Harness {
    pub fake: ForgeFake,
    pub forge: Box<dyn Forge>,
    pub config: ForgeConfig,
    pub events: Arc<Mutex<Vec<RetryEvent>>>,
    pub repo: RepoUrl,
    pub locked: RepoUrl,
    _keys: tempfile::TempDir,
}

impl Harness {
    pub async fn start(kind: FakeKind, credential: Credential) -> Harness {
        let fake = ForgeFake::start(kind).await.expect("fake forge starts");
        fake.add_user("nightshift-bot", CANARY);
        fake.add_repo("acme/widget").unwrap();
        fake.grant("acme/widget", "nightshift-bot", Access::Write);
        fake.add_repo("globex/locked").unwrap();
        fake.grant("globex/locked", "nightshift-bot", Access::Read);

        let keys = tempfile::tempdir().unwrap();
        let app = if credential == Credential::App {
            let (private, public) = rsa_key_pair(keys.path());
            fake.add_app(APP_ID, &public);
            fake.install_app(
                "acme",
                json!({"contents": "write", "pull_requests": "write", "metadata": "read"}),
            );
            fake.install_app(
                "globex",
                json!({"contents": "read", "pull_requests": "write", "metadata": "read"}),
            );
            Some(GitHubAppConfig {
                app_id: APP_ID,
                private_key: Secret::new(private),
            })
        } else {
            None
        };
        let forge_kind = match kind {
            FakeKind::GitHub => ForgeKind::Github,
            FakeKind::GitLab => ForgeKind::Gitlab,
            FakeKind::Gitea => ForgeKind::Gitea,
        };
        let config = ForgeConfig {
            entries: vec![ForgeEntry {
                kind: forge_kind,
                host: fake.host(),
                api_url: Some(fake.api_url()),
                token: app.is_none().then(|| Secret::new(CANARY)),
                app,
                username: None,
            }],
            retry: RetryPolicy {
                max_attempts: 10,
                initial_backoff_ms: 5,
                max_backoff_ms: 50,
                max_total_ms: 30_000,
                request_timeout_ms: 400,
            },
        };
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let observer: RetryObserver =
            Arc::new(move |event: &RetryEvent| sink.lock().unwrap().push(event.clone()));
        let repo = RepoUrl::parse(&fake.repo_url("acme/widget")).unwrap();
        let locked = RepoUrl::parse(&fake.repo_url("globex/locked")).unwrap();
        let forge = resolve(&repo, &config, observer).expect("forge resolves");
        assert_eq!(
            forge.name(),
            match kind {
                FakeKind::GitHub => "github",
                FakeKind::GitLab => "gitlab",
                FakeKind::Gitea => "gitea",
            }
        );
        Harness {
            fake,
            forge,
            config,
            events,
            repo,
            locked,
            _keys: keys,
        }
    }

    pub fn retry_events(&self) -> Vec<RetryEvent> {
        self.events.lock().unwrap().clone()
    }

    /// Pushes a new commit on `branch` the way the engine does: the forge's credential in
    /// git's environment, nothing in argv or the remote URL. Returns git's exit and stderr.
    pub async fn push_branch(&self, repo: &RepoUrl, branch: &str) -> (bool, String) {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("clone");
        run_git(work.path(), &["clone", "-q", repo.as_str(), "clone"], &[]);
        std::fs::write(
            dir.join(format!("{}.txt", branch.replace('/', "-"))),
            branch,
        )
        .unwrap();
        run_git(&dir, &["checkout", "-q", "-b", branch], &[]);
        run_git(&dir, &["add", "."], &[]);
        run_git(
            &dir,
            &[
                "-c",
                "user.name=Nightshift",
                "-c",
                "user.email=ns@example.com",
                "commit",
                "-q",
                "-m",
                branch,
            ],
            &[],
        );
        let auth = self
            .forge
            .git_auth(repo)
            .await
            .expect("git auth")
            .expect("http remotes get auth");
        let out = std::process::Command::new("git")
            .args(["push", "origin", branch])
            .current_dir(&dir)
            .envs(auth.env())
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .unwrap();
        (
            out.status.success(),
            nightshift_core::Redactor::exact(auth.secrets().iter().map(Secret::expose))
                .unwrap()
                .redact(&String::from_utf8_lossy(&out.stderr))
                .into_owned(),
        )
    }

    /// Every way the drivers or the fake strayed from the API descriptions.
    pub fn assert_contract_kept(&self) {
        let violations = self.fake.violations();
        assert!(
            violations.is_empty(),
            "contract violations:\n{}",
            violations.join("\n")
        );
    }

    /// The canary token in no recorded answer and no recorded request body.
    pub fn assert_no_leak_in_recordings(&self) {
        for request in self.fake.requests() {
            let text = format!(
                "{} {} {:?}",
                request.response_body, request.request_body, request.query
            );
            assert!(
                !text.contains(CANARY),
                "canary leaked in {} {}",
                request.method,
                request.path
            );
        }
    }
}

fn run_git(dir: &Path, args: &[&str], env: &[(String, String)]) {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh RSA key pair (PKCS#1 private, SPKI public) from the machine's openssl.
fn rsa_key_pair(dir: &Path) -> (String, String) {
    let private = dir.join("app.pem");
    let status = std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&private)
        .arg("2048")
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "openssl genrsa");
    let public = std::process::Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&private)
        .output()
        .unwrap();
    assert!(public.status.success(), "openssl rsa -pubout");
    (
        std::fs::read_to_string(&private).unwrap(),
        String::from_utf8(public.stdout).unwrap(),
    )
}
