//! Who may do what: every route × every kind of caller, project isolation, the audit record of
//! every change, and the OpenAPI document.

use std::collections::HashSet;

use axum::http::{Method, StatusCode};
use nightshift_core::{
    AgentSpec, AuditFilter, BranchName, Budget, Instructions, NewTask, RepoUrl, Role,
};
use nightshift_server::{Access, RouteSpec, ServerConfig, route_table};
use nightshift_test_support::git::RemoteRepo;

use super::app::{Answer, App};

const PRINCIPALS: [&str; 6] = ["root", "admin", "editor", "viewer", "outsider", "anonymous"];

fn role_in_alpha(who: &str) -> Option<Role> {
    match who {
        "root" | "admin" => Some(Role::Admin),
        "editor" => Some(Role::Editor),
        "viewer" => Some(Role::Viewer),
        _ => None,
    }
}

#[derive(Debug, PartialEq)]
enum Expect {
    Unauthorized,
    Forbidden,
    Hidden,
    Allowed,
}

fn expect(access: Access, who: &str) -> Expect {
    let signed_in = who != "anonymous";
    match access {
        Access::Public => Expect::Allowed,
        // A forge proves itself with the webhook secret; no user's token stands in for it.
        Access::Forge => Expect::Unauthorized,
        _ if !signed_in => Expect::Unauthorized,
        Access::SignedIn => Expect::Allowed,
        Access::ServerAdmin if who == "root" => Expect::Allowed,
        Access::ServerAdmin => Expect::Forbidden,
        Access::Project(needed) => match role_in_alpha(who) {
            None => Expect::Hidden,
            Some(role) if role.covers(needed) => Expect::Allowed,
            Some(_) => Expect::Forbidden,
        },
    }
}

fn classify(answer: &Answer) -> Expect {
    match answer.status {
        StatusCode::UNAUTHORIZED => Expect::Unauthorized,
        StatusCode::FORBIDDEN => Expect::Forbidden,
        StatusCode::NOT_FOUND if answer.message().starts_with("project \"alpha\"") => {
            Expect::Hidden
        }
        _ => Expect::Allowed,
    }
}

pub(super) struct Fixture {
    pub(super) app: App,
    pub(super) remote: RemoteRepo,
    pub(super) task_id: i64,
    root_token_id: i64,
    /// A task of root's whose run succeeded: templates are saved from it, and its pull
    /// request's CI fails.
    done_task_id: i64,
    /// Root's notification about that run.
    notification_id: i64,
    /// A task of root's whose run succeeded, with an open pull request to address a review on.
    reviewed_task_id: i64,
    /// Another such task, on another repository: its pull request is rebased.
    stale_task_id: i64,
}

pub(super) async fn fixture() -> Fixture {
    let app = App::start_with(ServerConfig::default(), 0, |config| {
        config.webhooks.secret = Some(nightshift_forge::Secret::new(super::webhooks::SECRET));
    })
    .await;
    let remote = RemoteRepo::with_files(&[("README.md", "hello\n")]);
    let alpha = app.store.project("alpha").await.unwrap().unwrap();
    let new_task = |created_by: &str, instructions: &str| NewTask {
        project_id: alpha.id,
        title: "existing".into(),
        instructions: Instructions::parse(instructions).unwrap(),
        repo: RepoUrl::parse(&remote.url()).unwrap(),
        base_branch: BranchName::parse("main").unwrap(),
        agent: AgentSpec::command("true"),
        timeout_secs: 60,
        budget: Budget::default(),
        allow_test_changes: false,
        created_by: created_by.into(),
    };
    // Created first, so it is the run a claim takes; it ends as a worker would end it.
    let (done, _) = app
        .store
        .create_task(&new_task("root", "A task that worked"))
        .await
        .unwrap();
    let claim = app
        .store
        .claim_run("test", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.task.id, done.id);
    app.store
        .finish_run(
            claim.run.id,
            "test",
            nightshift_core::EndReason::Succeeded,
            None,
            None,
        )
        .await
        .unwrap();
    // Its pull request's CI is red: a fix-CI run can be started on it.
    super::doors::red_pull_request(&app.store, done.id).await;
    // Another one, on its own repository, whose pull request is rebased.
    let other = RemoteRepo::with_files(&[("README.md", "hello\n")]);
    let (stale, _) = app
        .store
        .create_task(&NewTask {
            repo: RepoUrl::parse(&other.url()).unwrap(),
            ..new_task("root", "Another task that worked")
        })
        .await
        .unwrap();
    let claim = app
        .store
        .claim_run("test", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.task.id, stale.id);
    app.store
        .finish_run(
            claim.run.id,
            "test",
            nightshift_core::EndReason::Succeeded,
            None,
            None,
        )
        .await
        .unwrap();
    super::doors::red_pull_request(&app.store, stale.id).await;
    let notification_id = app
        .store
        .notifications(alpha.id, "root", false, 10)
        .await
        .unwrap()[0]
        .id;
    // Another, whose open pull request an address-review run can work on.
    let (reviewed, _) = app
        .store
        .create_task(&new_task("root", "A task to review"))
        .await
        .unwrap();
    let claim = app
        .store
        .claim_run("test", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.task.id, reviewed.id);
    app.store
        .finish_run(
            claim.run.id,
            "test",
            nightshift_core::EndReason::Succeeded,
            None,
            None,
        )
        .await
        .unwrap();
    app.store
        .follow_pull_request(&nightshift_core::NewFollow {
            project_id: alpha.id,
            task_id: reviewed.id,
            run_id: claim.run.id,
            repo: reviewed.repo.clone(),
            number: 18,
            url: "https://forge.example/acme/widget/pull/18".into(),
            branch: format!("nightshift/{}-review", reviewed.id),
            follow_until: nightshift_core::now_millis() + 3_600_000,
        })
        .await
        .unwrap();
    let (task, _) = app
        .store
        .create_task(&NewTask {
            project_id: alpha.id,
            title: "existing".into(),
            instructions: Instructions::parse("An existing task").unwrap(),
            repo: RepoUrl::parse(&remote.url()).unwrap(),
            base_branch: BranchName::parse("main").unwrap(),
            agent: AgentSpec::command("true"),
            timeout_secs: 60,
            budget: Budget::default(),
            allow_test_changes: false,
            created_by: "ada".into(),
        })
        .await
        .unwrap();
    let root = app.store.user_by_name("root").await.unwrap().unwrap();
    let (token, _) = app.store.create_token(root.id, "spare").await.unwrap();
    Fixture {
        app,
        remote,
        task_id: task.id,
        root_token_id: token.id,
        done_task_id: done.id,
        stale_task_id: stale.id,
        notification_id,
        reviewed_task_id: reviewed.id,
    }
}

impl Fixture {
    pub(super) fn path(&self, spec: &RouteSpec) -> String {
        let id = if spec.path.starts_with("/tokens/") {
            self.root_token_id
        } else if spec.path.starts_with("/projects/{project}/notifications/") {
            self.notification_id
        } else if spec.path.ends_with("/fix-ci") {
            self.done_task_id
        } else if spec.path.ends_with("/address-review") {
            self.reviewed_task_id
        } else if spec.path.ends_with("/rebase") {
            self.stale_task_id
        } else {
            self.task_id
        };
        spec.path
            .replace("{project}", "alpha")
            .replace("{id}", &id.to_string())
            .replace("{number}", "1")
            .replace("{user}", "someone")
            .replace("{group}", "devs")
            .replace("{host}", "github.com")
            .replace("{name}", "bump-deps")
            .replace("{forge}", "github")
    }

    pub(super) fn body(&self, spec: &RouteSpec, n: usize) -> Option<String> {
        match (spec.method.clone(), spec.path) {
            (Method::POST, "/session") => Some(format!(
                r#"{{"token":"{}"}}"#,
                self.app.token("root").unwrap()
            )),
            (Method::POST, "/projects/{project}/tasks") => Some(format!(
                r#"{{"repo":"{}","instructions":"Change number {n}"}}"#,
                self.remote.url()
            )),
            (Method::POST, "/projects/{project}/templates/from-task") => Some(format!(
                r#"{{"task_id":{},"name":"from-task-{n}"}}"#,
                self.done_task_id
            )),
            (Method::POST, "/projects/{project}/templates/{name}/tasks") => Some(format!(
                r#"{{"repo":"{}","title":"From a template {n}"}}"#,
                self.remote.url()
            )),
            (Method::POST, "/users") => Some(format!(r#"{{"name":"user{n}"}}"#)),
            (Method::POST, "/projects") => Some(format!(r#"{{"name":"p{n}"}}"#)),
            _ => spec.example.map(str::to_string),
        }
    }
}

#[tokio::test]
async fn every_route_answers_every_caller_as_its_access_declares() {
    let f = fixture().await;
    let mut n = 0;
    let mut failures = Vec::new();
    for spec in route_table() {
        for who in PRINCIPALS {
            n += 1;
            // Revoking root's spare token or ending a session would change later answers.
            let answer = f
                .app
                .call(
                    spec.method.clone(),
                    &f.path(&spec),
                    who,
                    f.body(&spec, n).as_deref(),
                )
                .await;
            let want = expect(spec.access, who);
            let got = classify(&answer);
            if got != want {
                failures.push(format!(
                    "{} {} as {who}: want {want:?}, got {} {}",
                    spec.method, spec.path, answer.status, answer.body
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn every_change_leaves_an_audit_event() {
    let f = fixture().await;
    let mut missing = Vec::new();
    for (n, spec) in route_table().into_iter().enumerate() {
        let Some(action) = spec.action else {
            // A forge's delivery changes nothing by itself: the poll it asks for does.
            assert!(
                spec.method == Method::GET || spec.access == Access::Forge,
                "{} {} changes something but records no audit action",
                spec.method,
                spec.path
            );
            continue;
        };
        let answer = f
            .app
            .call(
                spec.method.clone(),
                &f.path(&spec),
                "root",
                f.body(&spec, n).as_deref(),
            )
            .await;
        assert!(
            answer.status.is_success(),
            "{} {}: {} {}",
            spec.method,
            spec.path,
            answer.status,
            answer.body
        );
        let alpha = f.app.store.project("alpha").await.unwrap().unwrap();
        let filter = AuditFilter {
            action: Some(action.into()),
            ..Default::default()
        };
        let mut events = f
            .app
            .store
            .audit_events(Some(alpha.id), &filter)
            .await
            .unwrap();
        events.extend(f.app.store.audit_events(None, &filter).await.unwrap());
        let root = f.app.store.user_by_name("root").await.unwrap().unwrap();
        for (project, _) in f.app.store.projects_for(&root, &[]).await.unwrap() {
            if project.id != alpha.id {
                events.extend(
                    f.app
                        .store
                        .audit_events(Some(project.id), &filter)
                        .await
                        .unwrap(),
                );
            }
        }
        match events.first() {
            Some(event) => {
                assert_eq!(event.actor, "root", "{action}");
                assert_eq!(event.source, "127.0.0.1", "{action}");
                // The object is what was touched (`task 3`), never the address asked for.
                assert!(!event.object.starts_with('/'), "{action}: {}", event.object);
            }
            None => missing.push(format!("{} {} ({action})", spec.method, spec.path)),
        }
    }
    assert!(missing.is_empty(), "no audit event for: {missing:?}");
}

#[tokio::test]
async fn nothing_of_one_project_is_visible_from_another() {
    let f = fixture().await;
    let beta_tasks = f
        .app
        .call(Method::GET, "/projects/beta/tasks", "outsider", None)
        .await;
    assert_eq!(beta_tasks.status, StatusCode::OK);
    assert_eq!(beta_tasks.body["tasks"].as_array().unwrap().len(), 0);
    let projects = f.app.call(Method::GET, "/projects", "outsider", None).await;
    let names: Vec<&str> = projects.body["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["beta"]);
    // The task id exists, in alpha: from beta it is simply not there.
    let cross = f
        .app
        .call(
            Method::GET,
            &format!("/projects/beta/tasks/{}", f.task_id),
            "outsider",
            None,
        )
        .await;
    assert_eq!(cross.status, StatusCode::NOT_FOUND);
    let hidden = f
        .app
        .call(Method::GET, "/projects/alpha", "outsider", None)
        .await;
    let missing = f
        .app
        .call(Method::GET, "/projects/nosuch", "outsider", None)
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert_eq!(hidden.body["error"]["code"], missing.body["error"]["code"]);
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let f = fixture().await;
    let doc = f
        .app
        .call(Method::GET, "/openapi.json", "anonymous", None)
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"], "3.1.0");
    let mut seen = HashSet::new();
    for spec in route_table() {
        let op = &doc.body["paths"][spec.path][spec.method.as_str().to_lowercase()];
        assert!(op.is_object(), "{} {} undocumented", spec.method, spec.path);
        assert!(
            seen.insert(op["operationId"].as_str().unwrap().to_string()),
            "unique operation ids"
        );
        assert_eq!(
            op["x-audit-action"].as_str(),
            spec.action,
            "{} {} audit action",
            spec.method,
            spec.path
        );
        assert_eq!(
            op["security"] == serde_json::json!([]),
            spec.access == Access::Public,
            "{} {} needs no sign-in exactly when it is public",
            spec.method,
            spec.path
        );
    }
}
