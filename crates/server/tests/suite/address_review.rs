//! Starting an address-review run through the API and the task page, against a fake GitHub that
//! holds the pull request's comments: who may, what is refused and why, and what the task then
//! shows; and the project setting that lets `/nightshift` comments start such runs.

use axum::http::{Method, StatusCode};
use nightshift_core::EndReason;
use nightshift_forge::{ForgeConfig, ForgeEntry, ForgeKind, Secret};
use nightshift_server::ServerConfig;
use nightshift_store::CommandComment;
use nightshift_test_support::forge_fake::{Access, FakeKind, ForgeFake};
use serde_json::json;

use super::app::App;
use super::doors::red_pull_request;

const WIDGET: &str = "acme/widget";
const TOKEN: &str = "token-of-the-server";

#[tokio::test]
async fn an_address_review_run_needs_an_open_pull_request_and_something_to_address() {
    let fake = ForgeFake::start(FakeKind::GitHub).await.unwrap();
    fake.add_user("nightshift-bot", TOKEN);
    fake.add_repo(WIDGET).unwrap();
    fake.grant(WIDGET, "nightshift-bot", Access::Write);
    let entry = ForgeEntry {
        kind: ForgeKind::Github,
        host: fake.host(),
        api_url: Some(fake.api_url()),
        token: Some(Secret::new(TOKEN)),
        app: None,
        username: None,
    };
    let app = App::start_with(ServerConfig::default(), 0, |config| {
        config.forges = ForgeConfig {
            entries: vec![entry],
            retry: Default::default(),
        };
    })
    .await;
    let body = json!({"repo": fake.repo_url(WIDGET), "instructions": "Rename Foo to Bar"});
    let created = app
        .call(
            Method::POST,
            "/projects/alpha/tasks",
            "editor",
            Some(&body.to_string()),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let task = created.body["id"].as_i64().unwrap();
    let address = format!("/projects/alpha/tasks/{task}/address-review");

    // No pull request yet.
    let refused = app.call(Method::POST, &address, "editor", None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "nothing_to_fix");
    assert!(
        refused.message().contains("has no pull request"),
        "{}",
        refused.body
    );

    let claim = app
        .store
        .claim_run("w", std::time::Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    app.store
        .finish_run(claim.run.id, "w", EndReason::Succeeded, None, None)
        .await
        .unwrap();
    red_pull_request(&app.store, task).await;

    // The page offers it; a viewer may not start it.
    let page = app.page(&format!("/p/alpha/tasks/{task}"), "editor").await;
    assert!(page.contains("id=\"address-review\""), "{page}");
    assert!(page.contains("name=\"instructions\""), "{page}");
    let denied = app.call(Method::POST, &address, "viewer", None).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    // Nobody commented and nobody said what: nothing to address.
    let empty = app.call(Method::POST, &address, "editor", Some("{}")).await;
    assert_eq!(
        empty.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        empty.body
    );
    assert_eq!(empty.body["error"]["code"], "nothing_to_address");
    assert!(
        empty.message().contains("#17 has no review comments"),
        "{}",
        empty.body
    );
    let unknown = app
        .call(
            Method::POST,
            &address,
            "editor",
            Some(r#"{"instruction":"x"}"#),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    let form = app
        .send(
            axum::http::Request::post(format!("/api/v1{address}"))
                .header(
                    "authorization",
                    format!("Bearer {}", app.token("editor").unwrap()),
                )
                .header("content-type", "application/x-www-form-urlencoded")
                .body(axum::body::Body::from("instructions=x"))
                .unwrap(),
        )
        .await;
    assert_eq!(
        form.status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{}",
        form.body
    );

    // A reviewer's comment is enough.
    fake.comment(WIDGET, 17, "rita", "Please keep Foo as an alias.");
    let started = app.call(Method::POST, &address, "editor", None).await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let run = &started.body["runs"][1];
    assert_eq!(run["number"], 2);
    assert_eq!(run["follow_up"]["kind"], "address_review");
    assert_eq!(run["follow_up"]["pr_number"], 17);
    assert_eq!(run["follow_up"]["requested_by"], "eddie");
    // While it runs, the page offers no second one, and the API refuses it.
    let page = app.page(&format!("/p/alpha/tasks/{task}"), "editor").await;
    assert!(!page.contains("id=\"address-review\""), "{page}");
    let again = app
        .call(
            Method::POST,
            &address,
            "editor",
            Some(r#"{"instructions":"More"}"#),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.message().contains("still has an active run"),
        "{}",
        again.body
    );
    let audit = app
        .call(Method::GET, "/projects/alpha/audit", "admin", None)
        .await;
    assert!(
        audit.body["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "task.address_review" && e["actor"] == "eddie"),
        "{}",
        audit.body
    );

    // With the run ended, instructions alone are enough: the comment went to run 2.
    app.store
        .cancel_task(app.store.project("alpha").await.unwrap().unwrap().id, task)
        .await
        .unwrap();
    let empty = app.call(Method::POST, &address, "editor", None).await;
    assert_eq!(empty.body["error"]["code"], "nothing_to_address");
    let instructed = app
        .call(
            Method::POST,
            &address,
            "editor",
            Some(r#"{"instructions":"Also update the changelog"}"#),
        )
        .await;
    assert_eq!(
        instructed.status,
        StatusCode::CREATED,
        "{}",
        instructed.body
    );
    assert_eq!(instructed.body["runs"][2]["number"], 3);

    // A reader's `/nightshift` comment started nothing: the task says why.
    let project = app.store.project("alpha").await.unwrap().unwrap();
    let pr = app
        .store
        .task_pull_request(project.id, task)
        .await
        .unwrap()
        .unwrap();
    let note = "/nightshift from rhea ignored: rhea has read access only on the repository";
    let command = CommandComment { at: 9_000, id: 99 };
    assert!(app.store.ignore_command(&pr, command, note).await.unwrap());
    let shown = app
        .call(
            Method::GET,
            &format!("/projects/alpha/tasks/{task}"),
            "viewer",
            None,
        )
        .await;
    assert_eq!(shown.body["pull_request"]["command_note"], note);
    let page = app.page(&format!("/p/alpha/tasks/{task}"), "viewer").await;
    assert!(page.contains("id=\"command-note\""), "{page}");
    assert!(page.contains("rhea has read access only"), "{page}");
}

#[tokio::test]
async fn a_project_lets_comment_commands_start_runs() {
    let app = App::start(ServerConfig::default(), 0).await;
    // The route's body is documented, and documented as one that may be left out.
    let doc = app.call(Method::GET, "/openapi.json", "viewer", None).await;
    let body =
        &doc.body["paths"]["/projects/{project}/tasks/{id}/address-review"]["post"]["requestBody"];
    assert!(body["content"]["application/json"].is_object(), "{body}");
    assert_ne!(body["required"], true, "{body}");
    let project = app
        .call(Method::GET, "/projects/alpha", "admin", None)
        .await;
    assert_eq!(project.body["settings"]["comment_commands"], false);
    let patch = |body: serde_json::Value| {
        let app = &app;
        async move {
            app.call(
                Method::PATCH,
                "/projects/alpha",
                "admin",
                Some(&body.to_string()),
            )
            .await
        }
    };
    let on = patch(json!({"comment_commands": true})).await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.body);
    assert_eq!(on.body["settings"]["comment_commands"], true);
    let id = app.store.project("alpha").await.unwrap().unwrap().id;
    assert!(
        app.store
            .project_settings(id)
            .await
            .unwrap()
            .comment_commands
    );
    let editor = app
        .call(
            Method::PATCH,
            "/projects/alpha",
            "editor",
            Some(r#"{"comment_commands":false}"#),
        )
        .await;
    assert_eq!(editor.status, StatusCode::FORBIDDEN);
    let off = patch(json!({"comment_commands": false})).await;
    assert_eq!(off.body["settings"]["comment_commands"], false);
}
