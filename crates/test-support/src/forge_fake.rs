//! A fake forge for contract tests: a local HTTP server speaking the subset of the GitHub,
//! GitLab and Gitea REST APIs Nightshift uses, with state in memory and real bare git
//! repositories behind git smart HTTP. Every request and answer is checked against the
//! forges' published API descriptions; faults (429, 5xx, slow answers) can be injected.

mod api;
mod contract;
mod git_http;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, Response, StatusCode};
use base64::Engine as _;
use serde_json::Value;

pub use contract::Contract;

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
    pub status: u16,
    pub response_body: Value,
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
    /// Commit statuses by sha: (context, state).
    statuses: HashMap<String, Vec<(String, String)>>,
    /// Check runs by sha: (name, status, conclusion).
    check_runs: HashMap<String, Vec<(String, String, Option<String>)>>,
    /// GitLab pipelines by sha: status.
    pipelines: HashMap<String, String>,
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

    /// A commit status (GitHub/Gitea): `state` is `pending`, `success`, `failure` or `error`.
    pub fn set_commit_status(&self, full_name: &str, sha: &str, context: &str, state: &str) {
        if let Some(repo) = self.state().repo_mut(full_name) {
            let list = repo.statuses.entry(sha.to_string()).or_default();
            list.retain(|(c, _)| c != context);
            list.push((context.to_string(), state.to_string()));
        }
    }

    /// A GitHub check run: `status` `queued`/`in_progress`/`completed`, `conclusion` when completed.
    pub fn set_check_run(
        &self,
        full_name: &str,
        sha: &str,
        name: &str,
        status: &str,
        conclusion: Option<&str>,
    ) {
        if let Some(repo) = self.state().repo_mut(full_name) {
            let list = repo.check_runs.entry(sha.to_string()).or_default();
            list.retain(|(n, _, _)| n != name);
            list.push((
                name.to_string(),
                status.to_string(),
                conclusion.map(str::to_string),
            ));
        }
    }

    /// The GitLab pipeline of `sha`: `running`, `success`, `failed`, …
    pub fn set_pipeline(&self, full_name: &str, sha: &str, status: &str) {
        if let Some(repo) = self.state().repo_mut(full_name) {
            repo.pipelines.insert(sha.to_string(), status.to_string());
        }
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

/// Who a request acts as.
#[derive(Debug, Clone)]
enum Caller {
    Anonymous,
    Invalid,
    User(User),
    /// A GitHub App installation token.
    Installation {
        account: String,
        permissions: Value,
        repos: Vec<String>,
    },
    /// A GitHub App's own JWT.
    App,
}

/// Percent-decodes a path segment or query component.
fn decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(())
                {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k, true), decode(v, true))
        })
        .collect()
}

async fn handle(AxumState(shared): AxumState<Arc<Shared>>, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    let method = parts.method.as_str().to_string();

    if path.contains(".git/") {
        return serve_git(&shared, &method, &path, &raw_query, &parts.headers, &body).await;
    }

    let kind = lock(&shared).kind;
    let query = parse_query(&raw_query);
    let request_body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let Some(api_path) = path.strip_prefix(kind.api_prefix()) else {
        let mut state = lock(&shared);
        state
            .violations
            .push(format!("{method} {path}: not under {}", kind.api_prefix()));
        return json_response(404, &serde_json::json!({"message": "Not Found"}), &[]);
    };
    let segments: Vec<String> = api_path
        .trim_start_matches('/')
        .split('/')
        .map(|s| decode(s, false))
        .collect();
    let caller = identify(&shared, kind, &parts.headers);

    let fault = {
        let mut state = lock(&shared);
        let matching = state
            .targeted
            .iter()
            .position(|t| t.method == method && path.ends_with(t.path_suffix.as_str()));
        match matching {
            Some(i) if state.targeted[i].once => Some(state.targeted.remove(i).fault),
            Some(i) => Some(state.targeted[i].fault.clone()),
            None => state.draw_fault(),
        }
    };
    if let Some(fault) = fault.clone()
        && let Some(response) = fault_before(kind, &fault)
    {
        record(
            &shared,
            &method,
            &path,
            &query,
            &request_body,
            &response,
            Some(fault),
            None,
        );
        return json_response(response.status, &response.body, &response.headers);
    }

    let (reply, operation) = api::dispatch(
        &shared,
        kind,
        &method,
        &segments,
        &query,
        &request_body,
        &caller,
    );
    record(
        &shared,
        &method,
        &path,
        &query,
        &request_body,
        &reply,
        fault.clone(),
        operation,
    );
    match fault {
        Some(Fault::ServerErrorAfterHandling) => {
            json_response(502, &serde_json::json!({"message": "Bad Gateway"}), &[])
        }
        Some(Fault::SlowAfterHandling(delay)) => {
            tokio::time::sleep(delay).await;
            json_response(reply.status, &reply.body, &reply.headers)
        }
        _ => json_response(reply.status, &reply.body, &reply.headers),
    }
}

/// An API answer before it becomes HTTP.
pub(crate) struct Reply {
    status: u16,
    body: Value,
    headers: Vec<(String, String)>,
}

impl Reply {
    fn new(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }
}

fn fault_before(kind: FakeKind, fault: &Fault) -> Option<Reply> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let message = serde_json::json!({"message": "injected fault"});
    Some(match fault {
        Fault::TooManyRequests { retry_after_secs } => Reply {
            status: 429,
            body: message,
            headers: vec![("retry-after".into(), retry_after_secs.to_string())],
        },
        Fault::RateLimitReset { secs } => match kind {
            FakeKind::GitHub => Reply {
                status: 403,
                body: serde_json::json!({"message": "API rate limit exceeded"}),
                headers: vec![
                    ("x-ratelimit-remaining".into(), "0".into()),
                    ("x-ratelimit-reset".into(), (now + secs).to_string()),
                ],
            },
            FakeKind::GitLab => Reply {
                status: 429,
                body: message,
                headers: vec![("ratelimit-reset".into(), (now + secs).to_string())],
            },
            FakeKind::Gitea => Reply {
                status: 429,
                body: message,
                headers: vec![("x-ratelimit-reset".into(), (now + secs).to_string())],
            },
        },
        Fault::ServerError(status) => Reply::new(*status, message),
        Fault::ServerErrorAfterHandling | Fault::SlowAfterHandling(_) => return None,
    })
}

#[allow(clippy::too_many_arguments)]
fn record(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &[(String, String)],
    request_body: &Value,
    reply: &Reply,
    fault: Option<Fault>,
    operation: Option<String>,
) {
    lock(shared).requests.push(RecordedRequest {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_vec(),
        request_body: request_body.clone(),
        status: reply.status,
        response_body: reply.body.clone(),
        fault,
        operation,
    });
}

fn json_response(status: u16, body: &Value, headers: &[(String, String)]) -> Response<Body> {
    let text = if body.is_null() {
        String::new()
    } else {
        body.to_string()
    };
    let mut response = Response::new(Body::from(text));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

fn header_token(headers: &axum::http::HeaderMap, kind: FakeKind) -> Option<String> {
    if kind == FakeKind::GitLab
        && let Some(token) = headers.get("private-token").and_then(|v| v.to_str().ok())
    {
        return Some(token.to_string());
    }
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "token" => Some(token.to_string()),
        _ => None,
    }
}

fn identify(shared: &Shared, kind: FakeKind, headers: &axum::http::HeaderMap) -> Caller {
    match header_token(headers, kind) {
        None => Caller::Anonymous,
        Some(token) => caller_for_token(shared, &token),
    }
}

fn caller_for_token(shared: &Shared, token: &str) -> Caller {
    let state = lock(shared);
    if let Some(user) = state.users.iter().find(|u| u.token == token) {
        return Caller::User(user.clone());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if let Some(minted) = state.installation_tokens.get(token) {
        if minted.expires_at_secs <= now {
            return Caller::Invalid;
        }
        if let Some((_, account, permissions)) = state.app.as_ref().and_then(|app| {
            app.installations
                .iter()
                .find(|(id, _, _)| *id == minted.installation)
        }) {
            return Caller::Installation {
                account: account.clone(),
                permissions: permissions.clone(),
                repos: minted.repos.clone(),
            };
        }
    }
    if let Some(app) = &state.app {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes());
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&[app.app_id.to_string()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        if let Ok(key) = key
            && jsonwebtoken::decode::<Value>(token, &key, &validation).is_ok()
        {
            return Caller::App;
        }
    }
    Caller::Invalid
}

async fn serve_git(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Response<Body> {
    let Some((repo_path, _)) = path.split_once(".git/") else {
        return git_http::plain(StatusCode::NOT_FOUND, "not a repository".into());
    };
    let full_name = repo_path.trim_start_matches('/').to_string();
    let push = git_http::is_push(path, query);
    let credential = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(_, token)| token.to_string()));
    let mut user = None;
    if push {
        let Some(token) = credential else {
            let mut response =
                git_http::plain(StatusCode::UNAUTHORIZED, "authentication required".into());
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Basic realm=\"fake forge\""),
            );
            return response;
        };
        let caller = caller_for_token(shared, &token);
        if !api::can_push(&lock(shared), &caller, &full_name) {
            return git_http::plain(
                StatusCode::FORBIDDEN,
                format!("no write access to {full_name}"),
            );
        }
        user = Some(match caller {
            Caller::User(u) => u.login,
            _ => "x-access-token".to_string(),
        });
    }
    git_http::serve(
        &shared.root,
        method,
        path,
        query,
        headers,
        body,
        user.as_deref(),
    )
    .await
}
