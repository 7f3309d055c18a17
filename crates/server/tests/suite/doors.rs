//! One change, one audit entry, whichever door it came through: the same story told once with
//! the web UI's forms and once with the API, on two fresh servers, leaves the same audit trail
//! (actor, action, object, detail and source), and every form of the UI is in the story.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use nightshift_core::EndReason;
use nightshift_server::{ServerConfig, page_table};
use nightshift_test_support::git::RemoteRepo;
use serde_json::{Value, json};

use super::app::App;
use super::intake::urlencode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    Forms,
    Api,
}

/// One audit entry as people read it.
type Entry = (String, String, String, Option<String>, String);

/// A server and the editor's browser session on it, making every change through one door.
struct World {
    app: App,
    door: Door,
    remote: RemoteRepo,
    cookie: String,
    /// The forms posted: method and route, as the page table names them.
    posted: BTreeSet<(String, &'static str)>,
}

impl World {
    async fn start(door: Door) -> World {
        World {
            app: App::start(ServerConfig::default(), 0).await,
            door,
            remote: RemoteRepo::with_files(&[("README.md", "hello\n")]),
            cookie: String::new(),
            posted: BTreeSet::new(),
        }
    }

    async fn send(&self, request: axum::http::request::Builder, body: Body) -> (StatusCode, Value) {
        let request = request.header(header::COOKIE, &self.cookie).body(body);
        let answer = self.app.send(request.unwrap()).await;
        (answer.status, answer.body)
    }

    /// Posts a form of the web UI: `route` as the page table names it.
    async fn form(
        &mut self,
        route: &'static str,
        path: &str,
        fields: &[(&str, &str)],
    ) -> StatusCode {
        self.posted.insert(("POST".into(), route));
        let body: String = fields
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let request =
            Request::post(path).header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        self.send(request, Body::from(body)).await.0
    }

    async fn api(&self, method: Method, path: &str, body: Value) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(format!("/api/v1{path}"))
            .header(header::CONTENT_TYPE, "application/json");
        self.send(request, Body::from(body.to_string())).await
    }

    /// Signs the editor in: the session cookie every later change rides on.
    async fn sign_in(&mut self) {
        let token = self.app.token("editor").unwrap().to_string();
        let request = match self.door {
            Door::Forms => {
                self.posted.insert(("POST".into(), "/signin"));
                Request::post("/signin")
                    .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(Body::from(format!(
                        "token={token}&next=%2Fp%2Falpha%2Ftasks"
                    )))
            }
            Door::Api => Request::post("/api/v1/session")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json!({ "token": token }).to_string())),
        };
        let answer = self.app.send(request.unwrap()).await;
        let cookie = answer.headers[header::SET_COOKIE].to_str().unwrap();
        self.cookie = cookie.split(';').next().unwrap().to_string();
    }

    async fn sign_out(&mut self) {
        let status = match self.door {
            Door::Forms => self.form("/signout", "/signout", &[]).await,
            Door::Api => self.api(Method::DELETE, "/session", Value::Null).await.0,
        };
        assert!(status.is_redirection() || status.is_success(), "{status}");
    }

    /// Creates a task; the answer's status (created, or refused with a reason).
    async fn create_task(&mut self, instructions: &str, max_turns: &str) -> StatusCode {
        let repo = self.remote.url();
        match self.door {
            Door::Forms => {
                let fields = [
                    ("instructions", instructions),
                    ("repo", &repo),
                    ("max_turns", max_turns),
                ];
                self.form("/p/{project}/tasks", "/p/alpha/tasks", &fields)
                    .await
            }
            Door::Api => {
                let body = json!({"repo": repo, "instructions": instructions,
                    "budget": {"max_turns": max_turns.parse::<u64>().unwrap()}});
                self.api(Method::POST, "/projects/alpha/tasks", body)
                    .await
                    .0
            }
        }
    }

    async fn cancel(&mut self, task: i64) -> StatusCode {
        match self.door {
            Door::Forms => {
                let path = format!("/p/alpha/tasks/{task}/cancel");
                self.form("/p/{project}/tasks/{id}/cancel", &path, &[])
                    .await
            }
            Door::Api => {
                let path = format!("/projects/alpha/tasks/{task}/cancel");
                self.api(Method::POST, &path, Value::Null).await.0
            }
        }
    }

    async fn retry(&mut self, task: i64) -> StatusCode {
        match self.door {
            Door::Forms => {
                let path = format!("/p/alpha/tasks/{task}/retry");
                self.form("/p/{project}/tasks/{id}/retry", &path, &[]).await
            }
            Door::Api => {
                let path = format!("/projects/alpha/tasks/{task}/retry");
                self.api(Method::POST, &path, Value::Null).await.0
            }
        }
    }

    async fn fix_ci(&mut self, task: i64) -> StatusCode {
        match self.door {
            Door::Forms => {
                let path = format!("/p/alpha/tasks/{task}/fix-ci");
                self.form("/p/{project}/tasks/{id}/fix-ci", &path, &[])
                    .await
            }
            Door::Api => {
                let path = format!("/projects/alpha/tasks/{task}/fix-ci");
                self.api(Method::POST, &path, Value::Null).await.0
            }
        }
    }

    async fn rebase(&mut self, task: i64) -> StatusCode {
        match self.door {
            Door::Forms => {
                let path = format!("/p/alpha/tasks/{task}/rebase");
                self.form("/p/{project}/tasks/{id}/rebase", &path, &[])
                    .await
            }
            Door::Api => {
                let path = format!("/projects/alpha/tasks/{task}/rebase");
                self.api(Method::POST, &path, Value::Null).await.0
            }
        }
    }

    async fn address_review(&mut self, task: i64, instructions: &str) -> StatusCode {
        match self.door {
            Door::Forms => {
                let path = format!("/p/alpha/tasks/{task}/address-review");
                let route = "/p/{project}/tasks/{id}/address-review";
                self.form(route, &path, &[("instructions", instructions)])
                    .await
            }
            Door::Api => {
                let path = format!("/projects/alpha/tasks/{task}/address-review");
                let body = json!({ "instructions": instructions });
                self.api(Method::POST, &path, body).await.0
            }
        }
    }

    async fn save_as_template(&mut self, task: i64, name: &str) -> StatusCode {
        match self.door {
            Door::Forms => {
                let task = task.to_string();
                let fields = [("task", task.as_str()), ("name", name)];
                let route = "/p/{project}/templates/from-task";
                self.form(route, "/p/alpha/templates/from-task", &fields)
                    .await
            }
            Door::Api => {
                let body = json!({"task_id": task, "name": name});
                let path = "/projects/alpha/templates/from-task";
                self.api(Method::POST, path, body).await.0
            }
        }
    }

    /// Stores template `greet` with `instructions` (a `{{word}}` in them): version 1 when
    /// `editing` is false, the next version when true.
    async fn save_template(&mut self, instructions: &str, editing: bool) -> StatusCode {
        match self.door {
            Door::Forms => {
                let fields = [
                    ("name", "greet"),
                    ("instructions", instructions),
                    ("p0_name", "word"),
                    ("p0_type", "string"),
                    ("p0_required", "true"),
                ];
                match editing {
                    true => {
                        let route = "/p/{project}/templates/{name}/edit";
                        self.form(route, "/p/alpha/templates/greet/edit", &fields)
                            .await
                    }
                    false => {
                        let route = "/p/{project}/templates";
                        self.form(route, "/p/alpha/templates", &fields).await
                    }
                }
            }
            Door::Api => {
                let spec = json!({"name": "greet", "instructions": instructions,
                    "parameters": [{"name": "word", "type": "string", "required": true}]});
                match editing {
                    true => {
                        let path = "/projects/alpha/templates/greet";
                        self.api(Method::PUT, path, spec).await.0
                    }
                    false => {
                        self.api(Method::POST, "/projects/alpha/templates", spec)
                            .await
                            .0
                    }
                }
            }
        }
    }

    async fn create_from_template(&mut self, word: &str) -> StatusCode {
        let repo = self.remote.url();
        match self.door {
            Door::Forms => {
                let fields = [
                    ("template", "greet"),
                    ("version", "2"),
                    ("param.word", word),
                    ("repo", &repo),
                ];
                self.form("/p/{project}/tasks", "/p/alpha/tasks", &fields)
                    .await
            }
            Door::Api => {
                let body = json!({"repo": repo, "params": {"word": word}, "version": 2});
                let path = "/projects/alpha/templates/greet/tasks";
                self.api(Method::POST, path, body).await.0
            }
        }
    }

    async fn read_notification(&mut self, id: i64) -> StatusCode {
        match self.door {
            Door::Forms => {
                let path = format!("/p/alpha/notifications/{id}");
                self.form("/p/{project}/notifications/{id}", &path, &[])
                    .await
            }
            Door::Api => {
                let path = format!("/projects/alpha/notifications/{id}/read");
                self.api(Method::POST, &path, Value::Null).await.0
            }
        }
    }

    async fn read_all(&mut self) -> StatusCode {
        match self.door {
            Door::Forms => {
                let route = "/p/{project}/notifications/read-all";
                self.form(route, "/p/alpha/notifications/read-all", &[])
                    .await
            }
            Door::Api => {
                let path = "/projects/alpha/notifications/read-all";
                self.api(Method::POST, path, Value::Null).await.0
            }
        }
    }

    /// Ends the next queued run the way a worker would.
    async fn finish_next(&self, reason: EndReason) {
        let claim = self
            .app
            .store
            .claim_run("test", std::time::Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        self.app
            .store
            .finish_run(claim.run.id, "test", reason, None, None)
            .await
            .unwrap();
    }

    /// Gives the task's latest run a pull request whose CI the follower saw fail.
    async fn red_pull_request(&self, task: i64) {
        red_pull_request(&self.app.store, task).await;
    }

    /// The editor's oldest notification.
    async fn first_notification(&self) -> i64 {
        let project = self.app.store.project("alpha").await.unwrap().unwrap();
        let list = self
            .app
            .store
            .notifications(project.id, "eddie", false, 100)
            .await
            .unwrap();
        list.last().unwrap().id
    }

    /// The audit trail as the admins read it through the API: the project's, then the events
    /// outside any project, each oldest first.
    async fn trail(&self) -> Vec<Entry> {
        let mut entries = Vec::new();
        for (path, who) in [
            ("/projects/alpha/audit?limit=1000", "admin"),
            ("/audit?limit=1000", "root"),
        ] {
            let answer = self.app.call(Method::GET, path, who, None).await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
            let events = answer.body["events"].as_array().unwrap();
            entries.extend(events.iter().rev().map(|e| {
                let text = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                let detail = e["detail"].as_str().map(str::to_string);
                (
                    text("actor"),
                    text("action"),
                    text("object"),
                    detail,
                    text("source"),
                )
            }));
        }
        entries
    }
}

/// The same story through one door: sign in, create tasks (one refused), cancel one (and one
/// that already ended), retry, fix the CI of its pull request and rebase it, save one as a template, create and edit a template, create a
/// task from it, read notifications, sign out.
async fn tell(door: Door) -> World {
    let mut w = World::start(door).await;
    let created =
        |status: StatusCode| status == StatusCode::CREATED || status == StatusCode::SEE_OTHER;
    w.sign_in().await;
    // Refused before anything is stored: no entry.
    let refused = w.create_task("Rename Foo to Bar", "0").await;
    assert_eq!(refused, StatusCode::UNPROCESSABLE_ENTITY, "{door:?}");
    assert!(created(w.create_task("Rename Foo to Bar", "5").await));
    w.finish_next(EndReason::NoChanges).await;
    assert!(created(w.create_task("Rename Baz to Qux", "5").await));
    let cancelled = w.cancel(2).await;
    assert!(
        cancelled == StatusCode::OK || cancelled == StatusCode::SEE_OTHER,
        "{door:?}"
    );
    // Task 1's run already ended: the API says so, the page shows it; nothing is recorded.
    let ended = w.cancel(1).await;
    let expected = match door {
        Door::Forms => StatusCode::SEE_OTHER,
        Door::Api => StatusCode::CONFLICT,
    };
    assert_eq!(ended, expected);
    assert!(created(w.retry(1).await));
    w.finish_next(EndReason::ChecksFailed).await;
    w.red_pull_request(1).await;
    assert!(created(w.fix_ci(1).await));
    w.finish_next(EndReason::Succeeded).await;
    assert!(created(w.address_review(1, "Keep the old name too").await));
    w.finish_next(EndReason::Succeeded).await;
    assert!(created(w.rebase(1).await));
    w.finish_next(EndReason::NoChanges).await;
    assert!(created(w.save_as_template(1, "from-first").await));
    assert!(created(w.save_template("Say {{word}}", false).await));
    let edited = w.save_template("Shout {{word}}", true).await;
    assert!(
        edited == StatusCode::OK || edited == StatusCode::SEE_OTHER,
        "{door:?}"
    );
    assert!(created(w.create_from_template("hello").await));
    let first = w.first_notification().await;
    let read = w.read_notification(first).await;
    assert!(
        read == StatusCode::OK || read == StatusCode::SEE_OTHER,
        "{door:?}"
    );
    let read_all = w.read_all().await;
    assert!(
        read_all == StatusCode::OK || read_all == StatusCode::SEE_OTHER,
        "{door:?}"
    );
    w.sign_out().await;
    w
}

#[tokio::test]
async fn every_form_is_audited_as_the_api_route_it_performs() {
    let forms = tell(Door::Forms).await;
    let api = tell(Door::Api).await;

    let first = forms.first_notification().await;
    let entry = |action: &str, object: &str, detail: Option<&str>| -> Entry {
        (
            "eddie".into(),
            action.into(),
            object.into(),
            detail.map(str::to_string),
            "127.0.0.1".into(),
        )
    };
    let expected = vec![
        entry("task.create", "task 1", None),
        entry("task.create", "task 2", None),
        entry("task.cancel", "task 2", Some("run 1")),
        entry("task.retry", "task 1", Some("run 2")),
        entry("task.fix_ci", "task 1", Some("run 3")),
        entry("task.address_review", "task 1", Some("run 4")),
        entry("task.rebase", "task 1", Some("run 5")),
        entry(
            "template.from_task",
            "template from-first",
            Some("version 1 from task 1"),
        ),
        entry("template.create", "template greet", Some("version 1")),
        entry("template.update", "template greet", Some("version 2")),
        entry("template.instantiate", "task 3", Some("template greet v2")),
        entry("notification.read", &format!("notification {first}"), None),
        entry(
            "notification.read_all",
            "notifications of eddie",
            // The red CI's, the fix-CI run's, the rebase run's and the address-review run's
            // notifications besides the one read before.
            Some("5 marked read"),
        ),
        entry("session.create", "user eddie", None),
        entry("session.delete", "user eddie", None),
    ];
    assert_eq!(forms.trail().await, expected);
    assert_eq!(api.trail().await, expected);

    // Every form the page table lists was posted in the story.
    let all: BTreeSet<(String, &'static str)> = page_table()
        .into_iter()
        .filter(|route| route.performs.is_some())
        .map(|route| (route.method.to_string(), route.path))
        .collect();
    assert_eq!(forms.posted, all);
}

/// Gives task `task`'s latest run (in project `alpha`) a pull request whose CI the follower
/// saw fail, as a worker's follower would record it.
pub(super) async fn red_pull_request(store: &nightshift_store::Store, task: i64) -> i64 {
    use nightshift_core::{CiState, PrState};
    pull_request_seen(store, task, PrState::Open, CiState::Failing).await
}

/// Gives task `task`'s latest run (in project `alpha`) a pull request the follower saw in
/// `state` with CI `ci`.
pub(super) async fn pull_request_seen(
    store: &nightshift_store::Store,
    task: i64,
    state: nightshift_core::PrState,
    ci: nightshift_core::CiState,
) -> i64 {
    use nightshift_core::{Mergeability, NewFollow, now_millis};
    use nightshift_store::{PollOutcome, PrSeen};
    let project = store.project("alpha").await.unwrap().unwrap();
    let run = store
        .task_runs(project.id, task)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let task = store.task(project.id, task).await.unwrap().unwrap();
    let pr = store
        .follow_pull_request(&NewFollow {
            project_id: project.id,
            task_id: task.id,
            run_id: run.id,
            repo: task.repo.clone(),
            // Pull request 17 for the first task, 18 for the second, …
            number: 16 + task.id as u64,
            url: format!("https://forge.example/acme/widget/pull/{}", 16 + task.id),
            branch: format!("nightshift/{}-fix", task.id),
            follow_until: now_millis() + 3_600_000,
        })
        .await
        .unwrap();
    let claimed = store
        .claim_pull_request_poll("follower", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, pr.id);
    let red = PollOutcome::Seen {
        seen: PrSeen {
            state,
            ci,
            mergeable: Mergeability::Clean,
            behind_base: Some(false),
            head_sha: Some("0123456789abcdef0123456789abcdef01234567".into()),
            validators: None,
            unchanged: false,
        },
        next_poll_at: now_millis() + 3_600_000,
    };
    store
        .record_pull_request_poll(pr.id, "follower", &red)
        .await
        .unwrap();
    pr.id
}
