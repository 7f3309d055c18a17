//! A fake forge for contract tests: a local HTTP server speaking the subset of the GitHub,
//! GitLab and Gitea REST APIs Nightshift uses, with state in memory and real bare git
//! repositories behind git smart HTTP. Every request and answer is checked against the
//! forges' published API descriptions; faults (429, 5xx, slow answers) can be injected.

mod activity;
mod api;
mod contract;
mod follow_api;
mod git_http;
mod headers;
mod server;
pub mod webhook;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use serde_json::Value;

pub use activity::{FakeAnnotation, FakeCheck, FakeJob, FakeStatus, Review};
pub use contract::Contract;
use server::{Caller, Reply, handle};

/// Which forge the fake plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeKind {
    GitHub,
    GitLab,
    Gitea,
}

impl FakeKind {
    /// Where the REST API lives: GitHub Enterprise style `/api/v3`, GitLab `/api/v4`, Gitea `/api/v1`.
    pub fn api_prefix(self) -> &'static str {
        match self {
            FakeKind::GitHub => "/api/v3",
            FakeKind::GitLab => "/api/v4",
            FakeKind::Gitea => "/api/v1",
        }
    }
}

/// What a user may do on a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    Read,
    Write,
    Admin,
}

/// A fault answered instead of (or after) handling an API request.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// 429 with `Retry-After: secs`.
    TooManyRequests { retry_after_secs: u64 },
    /// Rate limit exhausted with a reset time `secs` from now: GitHub 403 +
    /// `X-RateLimit-Remaining: 0` + `X-RateLimit-Reset`, GitLab 429 + `RateLimit-Reset`, Gitea 429 + `X-RateLimit-Reset`.
    RateLimitReset { secs: u64 },
    /// This status before the request is handled (nothing happened).
    ServerError(u16),
    /// The request is handled, then answered with 502: the client cannot know it worked.
    ServerErrorAfterHandling,
    /// The request is handled, then the answer is held back this long (a client timeout).
    SlowAfterHandling(Duration),
}

#[derive(Debug, Clone)]
struct TargetedFault {
    method: String,
    path_suffix: String,
    fault: Fault,
    once: bool,
}

/// One request the fake received, with its answer.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub request_body: Value,
    /// The ETag a conditional request sent back.
    pub if_none_match: Option<String>,
    pub status: u16,
    pub response_body: Value,
    /// Every header of the answer, the forge's usual ones (rate limits, request id) included.
    pub response_headers: Vec<(String, String)>,
    /// The fault injected into this request, if any.
    pub fault: Option<Fault>,
    /// The operation of the API description the request matched (`pulls/create`, …).
    pub operation: Option<String>,
}

/// A pull request (merge request on GitLab) as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakePull {
    pub number: u64,
    pub id: u64,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub open: bool,
    pub merged: bool,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
struct User {
    id: u64,
    login: String,
    token: String,
}

#[derive(Debug, Clone)]
struct Label {
    id: u64,
    name: String,
    color: String,
}

#[derive(Debug, Clone, Default)]
struct Repo {
    id: u64,
    full_name: String,
    default_branch: String,
    grants: HashMap<String, Access>,
    labels: Vec<Label>,
    pulls: Vec<FakePull>,
    /// Commit statuses by sha.
    statuses: HashMap<String, Vec<FakeStatus>>,
    /// Check runs by sha: (name, status, conclusion).
    check_runs: HashMap<String, Vec<FakeCheck>>,
    /// GitLab pipelines by sha.
    pipelines: HashMap<String, activity::Pipeline>,
    /// Comments and reviews on the pull requests.
    comments: Vec<activity::StoredComment>,
}

#[derive(Debug, Clone)]
struct App {
    app_id: u64,
    public_key_pem: String,
    /// (installation id, account login, permissions).
    installations: Vec<(u64, String, Value)>,
}

#[derive(Debug, Clone)]
struct InstallationToken {
    installation: u64,
    repos: Vec<String>,
    expires_at_secs: u64,
}

struct FakeState {
    kind: FakeKind,
    users: Vec<User>,
    repos: Vec<Repo>,
    next_id: u64,
    app: Option<App>,
    installation_tokens: HashMap<String, InstallationToken>,
    token_lifetime: Duration,
    fault_rate: f64,
    rng: u64,
    random_faults: Vec<Fault>,
    scripted: VecDeque<Fault>,
    /// Faults for the API requests that match a method and path suffix.
    targeted: Vec<TargetedFault>,
    requests: Vec<RecordedRequest>,
    violations: Vec<String>,
    /// The last comment's time: comments get distinct, increasing seconds.
    clock_ms: i64,
    /// Rate-limit windows by caller, and a counter for request ids.
    rate: HashMap<String, headers::RateWindow>,
    request_seq: u64,
}

struct Shared {
    root: PathBuf,
    addr: SocketAddr,
    state: Mutex<FakeState>,
}

/// The running fake. Dropping it stops serving (with the test's runtime) and deletes the repos.
pub struct ForgeFake {
    shared: Arc<Shared>,
    _dir: tempfile::TempDir,
}

impl ForgeFake {
    /// Starts a fake on 127.0.0.1 with a free port.
    pub async fn start(kind: FakeKind) -> std::io::Result<ForgeFake> {
        let dir = tempfile::tempdir()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            root: dir.path().join("repos"),
            addr,
            state: Mutex::new(FakeState {
                kind,
                users: Vec::new(),
                repos: Vec::new(),
                next_id: 1000,
                app: None,
                installation_tokens: HashMap::new(),
                token_lifetime: Duration::from_secs(3600),
                fault_rate: 0.0,
                rng: 0x9E37_79B9_7F4A_7C15,
                random_faults: Vec::new(),
                scripted: VecDeque::new(),
                targeted: Vec::new(),
                requests: Vec::new(),
                violations: Vec::new(),
                clock_ms: 0,
                rate: HashMap::new(),
                request_seq: 0,
            }),
        });
        std::fs::create_dir_all(&shared.root)?;
        let app = Router::new().fallback(handle).with_state(shared.clone());
        tokio::spawn(async move {
            // Serving ends with the test's runtime; an error here shows up as failed requests.
            let _ = axum::serve(listener, app).await;
        });
        Ok(ForgeFake { shared, _dir: dir })
    }

    fn state(&self) -> MutexGuard<'_, FakeState> {
        lock(&self.shared)
    }

    pub fn kind(&self) -> FakeKind {
        self.state().kind
    }

    /// `http://127.0.0.1:PORT`: the host repository URLs and git pushes use.
    pub fn origin(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// `127.0.0.1:PORT`, the host to put in forge settings.
    pub fn host(&self) -> String {
        self.shared.addr.to_string()
    }

    pub fn api_url(&self) -> String {
        format!("{}{}", self.origin(), self.kind().api_prefix())
    }

    /// The clone URL of `full_name`: `http://127.0.0.1:PORT/owner/repo.git`.
    pub fn repo_url(&self, full_name: &str) -> String {
        format!("{}/{full_name}.git", self.origin())
    }

    /// Where the bare repository of `full_name` lives on disk.
    pub fn bare_path(&self, full_name: &str) -> PathBuf {
        self.shared.root.join(format!("{full_name}.git"))
    }

    pub fn add_user(&self, login: &str, token: &str) {
        let mut state = self.state();
        let id = state.next_id();
        state.users.push(User {
            id,
            login: login.to_string(),
            token: token.to_string(),
        });
    }

    /// Creates `full_name` as a bare repository with one commit on `main`.
    pub fn add_repo(&self, full_name: &str) -> std::io::Result<()> {
        let bare = self.bare_path(full_name);
        let seed = tempfile::tempdir()?;
        git(seed.path(), &["init", "-q", "-b", "main"])?;
        std::fs::write(seed.path().join("README.md"), format!("# {full_name}\n"))?;
        git(seed.path(), &["add", "README.md"])?;
        git(
            seed.path(),
            &[
                "-c",
                "user.name=Fake",
                "-c",
                "user.email=fake@example.com",
                "commit",
                "-q",
                "-m",
                "initial",
            ],
        )?;
        std::fs::create_dir_all(&bare)?;
        git(&bare, &["init", "-q", "--bare", "-b", "main"])?;
        git(
            seed.path(),
            &["push", "-q", &bare.to_string_lossy(), "main"],
        )?;
        let mut state = self.state();
        let id = state.next_id();
        state.repos.push(Repo {
            id,
            full_name: full_name.to_string(),
            default_branch: "main".into(),
            ..Repo::default()
        });
        Ok(())
    }

    pub fn grant(&self, full_name: &str, login: &str, access: Access) {
        if let Some(repo) = self.state().repo_mut(full_name) {
            repo.grants.insert(login.to_string(), access);
        }
    }

    /// Registers a GitHub App whose JWTs are checked with `public_key_pem`.
    pub fn add_app(&self, app_id: u64, public_key_pem: &str) {
        self.state().app = Some(App {
            app_id,
            public_key_pem: public_key_pem.to_string(),
            installations: Vec::new(),
        });
    }

    /// Installs the App on every repository of `account` with `permissions`
    /// (e.g. `{"contents": "write", "pull_requests": "write"}`). Returns the installation id.
    pub fn install_app(&self, account: &str, permissions: Value) -> u64 {
        let mut state = self.state();
        let id = state.next_id();
        if let Some(app) = state.app.as_mut() {
            app.installations
                .push((id, account.to_string(), permissions));
        }
        id
    }

    /// How long minted installation tokens live (one hour by default).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state().token_lifetime = lifetime;
    }

    /// From now on, answer about `rate` of API requests with one of `faults`, in a seeded
    /// pseudo-random order (the same seed gives the same run).
    pub fn inject_faults(&self, rate: f64, seed: u64, faults: Vec<Fault>) {
        let mut state = self.state();
        state.fault_rate = rate;
        state.rng = seed | 1;
        state.random_faults = faults;
    }

    /// The next API requests get these faults, in order, before any random ones.
    pub fn fail_next(&self, faults: impl IntoIterator<Item = Fault>) {
        self.state().scripted.extend(faults);
    }

    /// Every API request with `method` whose path ends with `path_suffix` (e.g. `POST`,
    /// `/pulls`) gets `fault` until [`ForgeFake::clear_targeted_faults`]: one operation down
    /// while the rest of the forge works.
    pub fn fail_requests(&self, method: &str, path_suffix: &str, fault: Fault) {
        self.target(method, path_suffix, fault, false);
    }

    /// Only the next API request with `method` whose path ends with `path_suffix` gets `fault`.
    pub fn fail_request_once(&self, method: &str, path_suffix: &str, fault: Fault) {
        self.target(method, path_suffix, fault, true);
    }

    fn target(&self, method: &str, path_suffix: &str, fault: Fault, once: bool) {
        self.state().targeted.push(TargetedFault {
            method: method.to_string(),
            path_suffix: path_suffix.to_string(),
            fault,
            once,
        });
    }

    pub fn clear_targeted_faults(&self) {
        self.state().targeted.clear();
    }

    /// A person closes the pull request without merging it.
    pub fn close(&self, full_name: &str, number: u64) {
        if let Some(pr) = self
            .state()
            .repo_mut(full_name)
            .and_then(|r| r.pulls.iter_mut().find(|p| p.number == number))
        {
            pr.open = false;
        }
    }

    pub fn pulls(&self, full_name: &str) -> Vec<FakePull> {
        self.state()
            .repos
            .iter()
            .find(|r| r.full_name == full_name)
            .map(|r| r.pulls.clone())
            .unwrap_or_default()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Every way a request or an answer disagreed with the API description.
    pub fn violations(&self) -> Vec<String> {
        self.state().violations.clone()
    }

    /// The commit `branch` points at in the bare repository.
    pub fn branch_sha(&self, full_name: &str, branch: &str) -> Option<String> {
        rev_parse(&self.bare_path(full_name), branch)
    }

    pub fn merge(&self, full_name: &str, number: u64) {
        if let Some(pr) = self
            .state()
            .repo_mut(full_name)
            .and_then(|r| r.pulls.iter_mut().find(|p| p.number == number))
        {
            pr.open = false;
            pr.merged = true;
        }
    }

    /// Removes a pull request, as a forge admin deleting it (or the repository's) would.
    pub fn delete_pull(&self, full_name: &str, number: u64) {
        if let Some(repo) = self.state().repo_mut(full_name) {
            repo.pulls.retain(|p| p.number != number);
        }
    }
}

impl FakeState {
    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn repo_mut(&mut self, full_name: &str) -> Option<&mut Repo> {
        self.repos.iter_mut().find(|r| r.full_name == full_name)
    }

    /// The next fault to inject into an API request, if any.
    fn draw_fault(&mut self) -> Option<Fault> {
        if let Some(fault) = self.scripted.pop_front() {
            return Some(fault);
        }
        if self.fault_rate <= 0.0 || self.random_faults.is_empty() {
            return None;
        }
        // xorshift64: deterministic for a seed, good enough to spread faults.
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let roll = (x % 10_000) as f64 / 10_000.0;
        (roll < self.fault_rate)
            .then(|| self.random_faults[(x >> 32) as usize % self.random_faults.len()].clone())
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, FakeState> {
    // A panicking test thread must not hide the fake's state from the others.
    shared
        .state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn git(dir: &Path, args: &[&str]) -> std::io::Result<()> {
    let status = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "git {args:?} failed in {}",
            dir.display()
        )))
    }
}

fn rev_parse(bare: &Path, rev: &str) -> Option<String> {
    let out = std::process::Command::new("git")
        .args([
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{rev}"),
        ])
        .current_dir(bare)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
