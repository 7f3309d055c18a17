//! What the intake refuses or changes before anything is stored, through the API and the web
//! UI's forms: terminal escapes in one-line fields, budgets that are no limit, path-like
//! template names, empty credentials, configured secrets, and task floods.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use nightshift_server::{ServerConfig, TaskRateLimit};
use nightshift_test_support::git::RemoteRepo;
use serde_json::json;

use super::app::{Answer, App};

/// Creates a task in project alpha as `who` with `fields` added to a valid request.
async fn create(app: &App, remote: &RemoteRepo, who: &str, fields: serde_json::Value) -> Answer {
    let mut body = json!({"repo": remote.url(), "instructions": "Rename Foo to Bar"});
    for (k, v) in fields.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.call(
        Method::POST,
        "/projects/alpha/tasks",
        who,
        Some(&body.to_string()),
    )
    .await
}

fn refused(answer: &Answer, code: &str, words: &[&str]) {
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
    assert_eq!(answer.body["error"]["code"], code, "{}", answer.body);
    for word in words {
        assert!(answer.message().contains(word), "{}", answer.message());
    }
}

/// Posts the web UI's new-task form as the editor; the status and the page.
async fn post_form(app: &App, fields: &[(&str, &str)]) -> (StatusCode, String) {
    let session = app
        .call(
            Method::POST,
            "/session",
            "anonymous",
            Some(&format!(
                r#"{{"token":"{}"}}"#,
                app.token("editor").unwrap()
            )),
        )
        .await;
    let cookie = session.headers["set-cookie"].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_string();
    let body: String = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let request = Request::post("/p/alpha/tasks")
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let response = tower::ServiceExt::oneshot(app.router.clone(), request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

pub(super) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn terminal_escapes_are_refused_where_they_are_typed() {
    let app = App::start(ServerConfig::default(), 0).await;
    let remote = RemoteRepo::with_files(&[("README.md", "hello\n")]);
    // A title that would retitle the reader's terminal and clear it.
    let title = create(
        &app,
        &remote,
        "editor",
        json!({"title": "Fix\u{1b}]0;pwned\u{7}\u{1b}[2J"}),
    )
    .await;
    refused(&title, "control_character", &["title", "U+001B"]);
    let newline = create(&app, &remote, "editor", json!({"title": "two\nlines"})).await;
    refused(&newline, "control_character", &["title", "U+000A"]);
    let instructions = create(
        &app,
        &remote,
        "editor",
        json!({"instructions": "Fix it\n\u{1b}[8mhidden"}),
    )
    .await;
    refused(&instructions, "control_character", &["instructions"]);
    // Newlines and tabs stay fine in instructions.
    let fine = create(
        &app,
        &remote,
        "editor",
        json!({"instructions": "Rename Foo\n\tin every file"}),
    )
    .await;
    assert_eq!(fine.status, StatusCode::CREATED, "{}", fine.body);

    let template = json!({"name": "greet", "instructions": "Say {{word}}",
        "parameters": [{"name": "word", "type": "string", "required": true}]});
    let made = app
        .call(
            Method::POST,
            "/projects/alpha/templates",
            "editor",
            Some(&template.to_string()),
        )
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.body);
    let param = json!({"repo": remote.url(), "params": {"word": "hi\u{1b}[31m"}});
    let bound = app
        .call(
            Method::POST,
            "/projects/alpha/templates/greet/tasks",
            "editor",
            Some(&param.to_string()),
        )
        .await;
    refused(&bound, "invalid_parameter", &["parameter word", "U+001B"]);
    let token = app
        .call(
            Method::POST,
            "/tokens",
            "editor",
            Some(&json!({"name": "ci\u{1b}[2J"}).to_string()),
        )
        .await;
    refused(&token, "control_character", &["token name"]);

    let (status, page) = post_form(
        &app,
        &[
            ("instructions", "Rename Foo"),
            ("title", "Fix\u{1b}[2J"),
            ("repo", &remote.url()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.contains("invalid title") && page.contains("U+001B"),
        "{page}"
    );
    let tasks = app
        .call(Method::GET, "/projects/alpha/tasks", "editor", None)
        .await;
    assert_eq!(tasks.body["tasks"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn budgets_names_and_credentials_are_checked_at_the_edge() {
    let app = App::start(ServerConfig::default(), 0).await;
    let remote = RemoteRepo::with_files(&[("README.md", "hello\n")]);
    let zero = create(&app, &remote, "editor", json!({"budget": {"max_turns": 0}})).await;
    refused(&zero, "invalid_budget", &["max_turns", "1 to"]);
    let huge = create(
        &app,
        &remote,
        "editor",
        json!({"budget": {"max_cost_usd": 1e308}}),
    )
    .await;
    refused(&huge, "invalid_budget", &["max_cost_usd", "at most"]);
    let (status, page) = post_form(
        &app,
        &[
            ("instructions", "Rename Foo"),
            ("repo", &remote.url()),
            ("max_turns", "0"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("max_turns is 0"), "{page}");

    for name in ["..", ".", ".hidden", "a..b"] {
        let spec = json!({"name": name, "instructions": "Do it"});
        let answer = app
            .call(
                Method::POST,
                "/projects/alpha/templates",
                "editor",
                Some(&spec.to_string()),
            )
            .await;
        refused(
            &answer,
            "invalid_template",
            &["starting with a letter or digit"],
        );
    }
    let spec = json!({"name": "ok", "instructions": "Do it", "budget": {"max_turns": 0}});
    let answer = app
        .call(
            Method::POST,
            "/projects/alpha/templates",
            "editor",
            Some(&spec.to_string()),
        )
        .await;
    refused(&answer, "invalid_budget", &["max_turns"]);

    for (credential, field) in [
        (
            json!({"kind": "github_token", "token": ""}),
            "token is empty",
        ),
        (
            json!({"kind": "gitlab_token", "token": "  "}),
            "token is empty",
        ),
        (
            json!({"kind": "gitea_token", "token": "abc\r\nX-Evil: 1"}),
            "token contains spaces",
        ),
        (
            json!({"kind": "git", "username": "bot", "password": ""}),
            "password is empty",
        ),
        (
            json!({"kind": "github_app", "app_id": 0, "installation_id": 1, "private_key": "x"}),
            "app_id",
        ),
    ] {
        let answer = app
            .call(
                Method::PUT,
                "/projects/alpha/credentials/github.com",
                "admin",
                Some(&credential.to_string()),
            )
            .await;
        refused(&answer, "invalid_credential", &[field]);
        assert!(!answer.message().contains("X-Evil"), "{}", answer.message());
    }
    let listed = app
        .call(Method::GET, "/projects/alpha/credentials", "admin", None)
        .await;
    assert_eq!(listed.body["credentials"], json!([]));
}

/// A model key and a forge token as the server is configured with them: no token shape, so
/// only the configured-secret mask can catch them.
const MODEL_KEY: &str = "zq8Xc3VbN1mK7pL0wE5rT2yU9iO4aS6dF";
const FORGE_TOKEN: &str = "Hh3kLm9QrSt2UvWx5YzAb8CdEf";

#[tokio::test]
async fn configured_secrets_are_masked_before_the_task_is_stored() {
    let app = App::start_with(ServerConfig::default(), 0, |engine| {
        engine.agents.anthropic_api_key = Some(MODEL_KEY.into());
        engine.forges.entries.push(
            serde_json::from_value(json!({
                "kind": "gitea", "host": "git.example.com", "token": FORGE_TOKEN
            }))
            .unwrap(),
        );
    })
    .await;
    let remote = RemoteRepo::with_files(&[("README.md", "hello\n")]);
    // The key starts at character 66 of the first line: the 72-character title would keep
    // its first 6 characters, which no mask recognises once cut.
    let first = format!("Call the model API with this key so the test stays green {MODEL_KEY} ok");
    let instructions = format!("{first}\nand push with {FORGE_TOKEN} too");
    let created = create(
        &app,
        &remote,
        "editor",
        json!({"instructions": instructions}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let titled = create(
        &app,
        &remote,
        "editor",
        json!({"instructions": "Another change", "title": format!("Use {FORGE_TOKEN}")}),
    )
    .await;
    assert_eq!(titled.status, StatusCode::CREATED, "{}", titled.body);

    let listed = app
        .call(Method::GET, "/projects/alpha/tasks", "editor", None)
        .await;
    let text = listed.body.to_string();
    for secret in [MODEL_KEY, FORGE_TOKEN] {
        assert!(!text.contains(&secret[..6]), "{secret} in {text}");
    }
    let task = &listed.body["tasks"][1];
    assert!(
        task["instructions"]
            .as_str()
            .unwrap()
            .contains("key so the test stays green [REDACTED] ok"),
        "{task}"
    );
    assert_eq!(
        task["title"],
        "Call the model API with this key so the test stays green [REDACTED] ok"
    );
    assert_eq!(listed.body["tasks"][0]["title"], "Use [REDACTED]");
}

#[tokio::test]
async fn a_user_creating_tasks_too_fast_is_told_when_to_come_back() {
    let config = ServerConfig {
        task_rate: TaskRateLimit::new(1, 2).unwrap(),
        ..ServerConfig::default()
    };
    let app = App::start(config, 0).await;
    let remote = RemoteRepo::with_files(&[("README.md", "hello\n")]);
    for n in 0..2 {
        let ok = create(
            &app,
            &remote,
            "editor",
            json!({"instructions": format!("Change {n}")}),
        )
        .await;
        assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
    }
    let flood = create(&app, &remote, "editor", json!({"instructions": "Change 3"})).await;
    assert_eq!(
        flood.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        flood.body
    );
    assert_eq!(flood.body["error"]["code"], "too_many_tasks");
    let wait: u64 = flood.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert!(
        flood.message().contains(&format!(
            "2 at once, then 1 a minute per user): try again in {wait} s"
        )),
        "{}",
        flood.message()
    );
    // The web form says the same; and the limit is per user.
    let (status, page) = post_form(
        &app,
        &[("instructions", "Change 4"), ("repo", &remote.url())],
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("faster than this server allows"), "{page}");
    let other = create(&app, &remote, "admin", json!({"instructions": "Change 5"})).await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
}
