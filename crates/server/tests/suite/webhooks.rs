//! Webhook deliveries over HTTP to a listening server, from each fake forge's payloads signed
//! the way the forge signs them (the endpoint's own rules are in `webhook_door`). A genuine one about a followed pull request makes the follower
//! record its merge or CI change although its poll interval is an hour; a forged, unsigned or
//! wrongly tokened one is refused, counted and logged without its body, and changes nothing;
//! one about a pull request nobody follows is taken and ignored.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use nightshift_core::{CiState, FollowedPr, PrState};
use nightshift_forge::{ForgeConfig, ForgeEntry, ForgeKind, RetryPolicy, Secret};
use nightshift_server::ServerConfig;
use nightshift_test_support::forge_fake::webhook::delivery;
use nightshift_test_support::forge_fake::{Access, FakeKind, Fault, ForgeFake};
use nightshift_test_support::{Sample, sample_value};
use serde_json::{Value, json};

use super::app::{Answer, App, create, wait_end};

pub(super) const SECRET: &str = "whsec-3b9e0c1d7a5f4e28-test";
const FORGE_TOKEN: &str = "forge-token-0c7d";
const WIDGET: &str = "acme/widget";
/// So long that only a webhook's nudge explains a poll within a test.
const HOUR: Duration = Duration::from_secs(3600);

/// An answer from the listening server.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) body: Value,
}

impl Reply {
    pub(super) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or_default()
    }

    pub(super) fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

/// `app`'s router listening on a free loopback port, as `nightshift serve` listens.
pub(super) async fn listen(app: &App) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = app.router.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

fn forge_name(kind: FakeKind) -> &'static str {
    match kind {
        FakeKind::GitHub => "github",
        FakeKind::GitLab => "gitlab",
        FakeKind::Gitea => "gitea",
    }
}

/// Posts `headers` and `body` to `/api/v1/webhooks/{forge}` as the forge would.
pub(super) async fn post(
    addr: SocketAddr,
    forge: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> Reply {
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/webhooks/{forge}"))
        .body(body);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let answer = request.send().await.unwrap();
    let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
    let body = answer.json().await.unwrap_or(Value::Null);
    Reply { status, body }
}

/// `payload` as a delivery of `event` from `kind`, signed with `secret`.
pub(super) async fn deliver(
    addr: SocketAddr,
    kind: FakeKind,
    secret: &str,
    event: &str,
    payload: &Value,
) -> Reply {
    let (headers, body) = delivery(kind, secret, event, payload);
    post(addr, forge_name(kind), &headers, body).await
}

/// A fake forge with a repository the server's token may push to, and a server with one
/// worker that follows pull requests every hour and takes webhooks signed with [`SECRET`].
struct Site {
    fake: ForgeFake,
    app: App,
    addr: SocketAddr,
}

impl Site {
    async fn start(kind: FakeKind) -> Site {
        let fake = ForgeFake::start(kind).await.unwrap();
        fake.add_user("nightshift-bot", FORGE_TOKEN);
        fake.add_repo(WIDGET).unwrap();
        fake.grant(WIDGET, "nightshift-bot", Access::Write);
        let entry = ForgeEntry {
            kind: match kind {
                FakeKind::GitHub => ForgeKind::Github,
                FakeKind::GitLab => ForgeKind::Gitlab,
                FakeKind::Gitea => ForgeKind::Gitea,
            },
            host: fake.host(),
            api_url: Some(fake.api_url()),
            token: Some(Secret::new(FORGE_TOKEN)),
            app: None,
            username: None,
        };
        let app = App::start_with(ServerConfig::default(), 1, |config| {
            config.forges = ForgeConfig {
                entries: vec![entry],
                retry: RetryPolicy {
                    max_attempts: 4,
                    initial_backoff_ms: 5,
                    max_backoff_ms: 50,
                    max_total_ms: 10_000,
                    request_timeout_ms: 2_000,
                },
            };
            config.ci_poll = HOUR;
            config.webhooks.secret = Some(Secret::new(SECRET));
        })
        .await;
        let addr = listen(&app).await;
        Site { fake, app, addr }
    }

    /// A task's run published a pull request, and the follower polled it once; the next
    /// poll is an hour away.
    async fn followed_pull_request(&self) -> FollowedPr {
        let created = create(
            &self.app,
            "alpha",
            "editor",
            &self.fake.repo_url(WIDGET),
            "echo goodbye > greeting.txt",
        )
        .await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let task = created.body["id"].as_i64().unwrap();
        let run = wait_end(&self.app, "alpha", task).await;
        assert_eq!(run["end_reason"], "succeeded", "{run}");
        let pr = self
            .followed_when(task, "a first poll", |pr| pr.polls >= 1)
            .await;
        assert!(pr.following);
        assert!(
            pr.next_poll_at > pr.last_polled_at.unwrap() + HOUR.as_millis() as i64 / 2,
            "the next poll is an hour away: {pr:?}"
        );
        pr
    }

    async fn followed(&self, task: i64) -> FollowedPr {
        let project = self.app.store.project("alpha").await.unwrap().unwrap();
        self.app
            .store
            .task_pull_requests(project.id, task)
            .await
            .unwrap()
            .remove(0)
    }

    async fn followed_when(
        &self,
        task: i64,
        what: &str,
        done: impl Fn(&FollowedPr) -> bool,
    ) -> FollowedPr {
        let started = Instant::now();
        loop {
            let pr = self.followed(task).await;
            if done(&pr) {
                return pr;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}: {pr:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What the forge was asked about pull requests so far.
    fn polls_seen_by_forge(&self) -> usize {
        self.fake
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains(&format!("/{}", pulls(&self.fake))))
            .count()
    }

    /// Forged, unsigned and wrongly tokened versions of `event`: each refused with 401, and
    /// neither the pull request nor the forge hears of them.
    async fn forged_deliveries_change_nothing(
        &self,
        pr: &FollowedPr,
        event: &str,
        payload: &Value,
    ) {
        let kind = self.fake.kind();
        let asked = self.polls_seen_by_forge();
        let (signed, body) = delivery(kind, SECRET, event, payload);
        let proof = |name: &str| name.contains("signature") || name == "x-gitlab-token";
        let unsigned: Vec<_> = signed.iter().filter(|(n, _)| !proof(n)).cloned().collect();
        let mut tampered = body.clone();
        tampered.extend_from_slice(b" ");
        let refusals = [
            deliver(self.addr, kind, "not-the-secret-at-all", event, payload).await,
            post(self.addr, forge_name(kind), &unsigned, body.clone()).await,
            match kind {
                // GitLab's token proves the sender, not the body: a wrong token instead.
                FakeKind::GitLab => {
                    let mut wrong = unsigned.clone();
                    wrong.push(("x-gitlab-token".into(), format!("{SECRET}x")));
                    post(self.addr, "gitlab", &wrong, body.clone()).await
                }
                _ => post(self.addr, forge_name(kind), &signed, tampered).await,
            },
        ];
        for refused in &refusals {
            assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
            assert_eq!(refused.code(), "webhook_refused", "{}", refused.body);
            assert!(refused.message().contains("refused"), "{}", refused.body);
            assert!(!refused.message().contains(SECRET), "{}", refused.body);
        }
        // The follower runs every 100 ms: a nudge would have shown by now.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = self.followed(pr.task_id).await;
        assert_eq!(
            (
                after.state,
                after.ci,
                after.polls,
                after.next_poll_at,
                after.nudged_at
            ),
            (pr.state, pr.ci, pr.polls, pr.next_poll_at, None),
            "a refused delivery moved nothing"
        );
        assert_eq!(self.polls_seen_by_forge(), asked, "nobody asked the forge");
    }

    /// Genuine deliveries about pull requests Nightshift does not follow (another number and
    /// commit, another repository): taken, ignored.
    async fn unknown_pull_requests_are_ignored(
        &self,
        pr: &FollowedPr,
        event: &str,
        payload: impl Fn(&str, u64, &str) -> Value,
    ) {
        let kind = self.fake.kind();
        let head = pr.head_sha.clone().unwrap();
        let other_sha = "0123456789abcdef0123456789abcdef01234567";
        for payload in [
            payload(WIDGET, pr.number + 100, other_sha),
            payload("acme/other", pr.number, &head),
        ] {
            let taken = deliver(self.addr, kind, SECRET, event, &payload).await;
            assert_eq!(taken.status, StatusCode::ACCEPTED, "{}", taken.body);
            assert_eq!(taken.body["pull_requests"], 0, "{}", taken.body);
            assert!(taken.body["event"].is_string(), "{}", taken.body);
        }
        // A ping is genuine and about nothing.
        let (ping, ping_payload) = match kind {
            FakeKind::GitHub => ("ping", json!({"zen": "Design for failure.", "hook_id": 1})),
            FakeKind::GitLab => ("Push Hook", json!({"object_kind": "push"})),
            FakeKind::Gitea => ("push", json!({"ref": "refs/heads/main"})),
        };
        let taken = deliver(self.addr, kind, SECRET, ping, &ping_payload).await;
        assert_eq!(taken.status, StatusCode::ACCEPTED, "{}", taken.body);
        assert_eq!(taken.body, json!({"event": null, "pull_requests": 0}));
        assert_eq!(self.followed(pr.task_id).await.nudged_at, None);
    }
}

/// The path segment the fake serves pull requests under.
fn pulls(fake: &ForgeFake) -> &'static str {
    match fake.kind() {
        FakeKind::GitLab => "merge_requests",
        _ => "pulls",
    }
}

pub(super) async fn scrape(app: &App) -> Vec<Sample> {
    super::metrics::scrape(app).await
}

pub(super) fn deliveries(samples: &[Sample], forge: &str, outcome: &str) -> f64 {
    sample_value(
        samples,
        "nightshift_webhook_deliveries_total",
        &[("forge", forge), ("outcome", outcome)],
    )
    .unwrap_or(0.0)
}

#[tokio::test]
async fn a_signed_github_delivery_records_the_merge_without_waiting_for_the_poll() {
    let site = Site::start(FakeKind::GitHub).await;
    let pr = site.followed_pull_request().await;
    let before = scrape(&site.app).await;
    site.fake.merge(WIDGET, pr.number);
    let payload = |repo: &str, number: u64, sha: &str| {
        json!({
            "action": "closed",
            "number": number,
            "pull_request": {"number": number, "state": "closed", "merged": true, "head": {"sha": sha}},
            "repository": {"full_name": repo},
            "sender": {"login": "alice"},
        })
    };
    let merged = payload(WIDGET, pr.number, pr.head_sha.as_deref().unwrap());
    site.forged_deliveries_change_nothing(&pr, "pull_request", &merged)
        .await;
    site.unknown_pull_requests_are_ignored(&pr, "pull_request", payload)
        .await;

    let taken = deliver(site.addr, FakeKind::GitHub, SECRET, "pull_request", &merged).await;
    assert_eq!(taken.status, StatusCode::ACCEPTED, "{}", taken.body);
    assert_eq!(taken.body["pull_requests"], 1, "{}", taken.body);
    assert_eq!(
        taken.body["event"],
        format!("pull request {WIDGET}#{} merged", pr.number)
    );
    let recorded = site
        .followed_when(pr.task_id, "the merge", |p| p.state == PrState::Merged)
        .await;
    assert!(!recorded.following);
    assert_eq!(recorded.polls, pr.polls + 1, "one poll, the nudged one");
    let change = site.app.store.change(pr.run_id).await.unwrap().unwrap();
    assert!(
        change
            .ci_status
            .as_deref()
            .unwrap_or_default()
            .starts_with("merged"),
        "{change:?}"
    );

    let after = scrape(&site.app).await;
    let grew = |outcome: &str| {
        deliveries(&after, "github", outcome) - deliveries(&before, "github", outcome)
    };
    assert!(grew("refused") >= 3.0, "{}", grew("refused"));
    assert!(grew("ignored") >= 3.0, "{}", grew("ignored"));
    assert!(grew("nudged") >= 1.0, "{}", grew("nudged"));
    assert_eq!(site.fake.violations(), Vec::<String>::new());
}

/// A delivery that arrives while the follower is asking the forge (whose answer predates what
/// the delivery is about) is not lost in that poll's record: the pull request is asked again.
#[tokio::test]
async fn a_delivery_during_a_poll_gets_a_poll_of_its_own() {
    let site = Site::start(FakeKind::GitHub).await;
    let pr = site.followed_pull_request().await;
    let slow = Duration::from_millis(1500);
    site.fake.fail_request_once(
        "GET",
        &format!("/pulls/{}", pr.number),
        Fault::SlowAfterHandling(slow),
    );
    let comment = json!({
        "action": "created",
        "issue": {"number": pr.number, "pull_request": {"url": "https://api.github.com/repos/acme/widget/pulls/1"}},
        "comment": {"id": 99, "body": "Looks good", "user": {"login": "rita"}, "created_at": "2026-01-01T10:00:00Z"},
        "repository": {"full_name": WIDGET},
    });
    let taken = deliver(
        site.addr,
        FakeKind::GitHub,
        SECRET,
        "issue_comment",
        &comment,
    )
    .await;
    assert_eq!(taken.body["pull_requests"], 1, "{}", taken.body);
    // The poll the comment asked for has read the pull request (open) and waits for its answer.
    let started = Instant::now();
    while !site
        .fake
        .requests()
        .iter()
        .any(|r| matches!(r.fault, Some(Fault::SlowAfterHandling(_))))
    {
        assert!(started.elapsed() < Duration::from_secs(30), "no poll");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    site.fake.merge(WIDGET, pr.number);
    let merged = json!({
        "action": "closed",
        "number": pr.number,
        "pull_request": {"number": pr.number, "merged": true},
        "repository": {"full_name": WIDGET},
    });
    let taken = deliver(site.addr, FakeKind::GitHub, SECRET, "pull_request", &merged).await;
    assert_eq!(taken.body["pull_requests"], 1, "{}", taken.body);
    let recorded = site
        .followed_when(pr.task_id, "the merge", |p| p.state == PrState::Merged)
        .await;
    assert_eq!(
        recorded.polls,
        pr.polls + 2,
        "the comment's poll saw it open; the one after saw the merge"
    );
}

#[tokio::test]
async fn a_signed_gitlab_pipeline_delivery_records_red_ci_and_a_comment_nudges() {
    let site = Site::start(FakeKind::GitLab).await;
    let pr = site.followed_pull_request().await;
    let head = pr.head_sha.clone().unwrap();
    site.fake.set_pipeline(WIDGET, &head, "failed");
    let payload = |repo: &str, number: u64, sha: &str| {
        json!({
            "object_kind": "pipeline",
            "object_attributes": {"id": 31, "sha": sha, "status": "failed", "ref": "feature"},
            "merge_request": {"iid": number},
            "project": {"path_with_namespace": repo},
        })
    };
    let pipeline = payload(WIDGET, pr.number, &head);
    site.forged_deliveries_change_nothing(&pr, "Pipeline Hook", &pipeline)
        .await;
    site.unknown_pull_requests_are_ignored(&pr, "Pipeline Hook", payload)
        .await;

    let taken = deliver(
        site.addr,
        FakeKind::GitLab,
        SECRET,
        "Pipeline Hook",
        &pipeline,
    )
    .await;
    assert_eq!(taken.status, StatusCode::ACCEPTED, "{}", taken.body);
    assert_eq!(taken.body["pull_requests"], 1, "{}", taken.body);
    let red = site
        .followed_when(pr.task_id, "ci failing", |p| p.ci == CiState::Failing)
        .await;
    assert!(
        red.following,
        "an open pull request with red CI is still followed"
    );
    assert_eq!(red.polls, pr.polls + 1);

    // A reviewer's comment nudges the poll too (what it asks for is read by that poll).
    let note = json!({
        "object_kind": "note",
        "user": {"username": "rita"},
        "project": {"path_with_namespace": WIDGET},
        "object_attributes": {"id": 99, "note": "Please also update the docs", "noteable_type": "MergeRequest", "created_at": "2026-01-01 10:00:00 UTC", "system": false, "type": null},
        "merge_request": {"iid": pr.number},
    });
    let taken = deliver(site.addr, FakeKind::GitLab, SECRET, "Note Hook", &note).await;
    assert_eq!(taken.status, StatusCode::ACCEPTED, "{}", taken.body);
    assert_eq!(taken.body["pull_requests"], 1, "{}", taken.body);
    site.followed_when(pr.task_id, "the comment's poll", |p| p.polls > red.polls)
        .await;
    assert_eq!(site.fake.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_signed_gitea_status_delivery_finds_the_pull_request_by_its_head() {
    let site = Site::start(FakeKind::Gitea).await;
    let pr = site.followed_pull_request().await;
    let head = pr.head_sha.clone().unwrap();
    site.fake
        .set_commit_status(WIDGET, &head, "ci/test", "success");
    // A commit status names no pull request: only its commit says which one it is about.
    let status = json!({
        "sha": head,
        "state": "success",
        "context": "ci/test",
        "target_url": "https://ci.example.com/1",
        "repository": {"full_name": WIDGET},
        "sender": {"login": "ci"},
    });
    site.forged_deliveries_change_nothing(&pr, "status", &status)
        .await;
    let taken = deliver(site.addr, FakeKind::Gitea, SECRET, "status", &status).await;
    assert_eq!(taken.status, StatusCode::ACCEPTED, "{}", taken.body);
    assert_eq!(taken.body["pull_requests"], 1, "{}", taken.body);
    let green = site
        .followed_when(pr.task_id, "ci passing", |p| p.ci == CiState::Passing)
        .await;
    assert_eq!(green.polls, pr.polls + 1);
    // Another commit's status is about no followed pull request.
    let mut other = status.clone();
    other["sha"] = json!("0000000000000000000000000000000000000000");
    let taken = deliver(site.addr, FakeKind::Gitea, SECRET, "status", &other).await;
    assert_eq!(taken.body["pull_requests"], 0, "{}", taken.body);
    assert_eq!(site.fake.violations(), Vec::<String>::new());
}

/// `example` delivered to `/api/v1{path}` as a GitHub `pull_request` event signed with
/// [`SECRET`], through the router.
pub(super) async fn signed_github_call(app: &App, path: &str, example: Option<&str>) -> Answer {
    let payload: Value = serde_json::from_str(example.unwrap_or("{}")).unwrap();
    let (headers, body) = delivery(FakeKind::GitHub, SECRET, "pull_request", &payload);
    let mut request = axum::http::Request::post(format!("/api/v1{path}"));
    for (name, value) in &headers {
        request = request.header(name, value);
    }
    app.send(request.body(axum::body::Body::from(body)).unwrap())
        .await
}
