use nightshift_test_support::git::RemoteRepo;

use super::server::Server;

fn refused(server: &Server, args: &[&str], code: &str) {
    let out = server.cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        stderr.contains(code),
        "{args:?}: expected {code} in {stderr}"
    );
}

#[test]
fn bad_input_gets_a_clear_error_and_nothing_is_created() {
    let remote = RemoteRepo::with_files(&[("a", "")]);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), 0);
    let url = remote.url();
    let create = |extra: &[&str]| {
        let mut args = vec!["task", "create", "--agent-command", "true"];
        args.extend_from_slice(extra);
        args.into_iter().map(str::to_string).collect::<Vec<_>>()
    };
    let run = |extra: &[&str], code: &str| {
        let args = create(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        refused(&server, &args, code);
    };
    run(
        &["--repo", &url, "--instructions", "   "],
        "empty_instructions",
    );
    let huge = "x".repeat(64 * 1024 + 1);
    run(
        &["--repo", &url, "--instructions", &huge],
        "instructions_too_long",
    );
    run(
        &["--repo", "file:///no/such/repo.git", "--instructions", "x"],
        "repo_unreachable",
    );
    run(
        &["--repo", "not a url", "--instructions", "x"],
        "invalid_repo",
    );
    run(
        &["--repo", &url, "--base", "develop", "--instructions", "x"],
        "base_not_found",
    );
    run(
        &["--repo", &url, "--instructions", "x", "--timeout", "2h"],
        "timeout_too_long",
    );
    run(
        &["--repo", &url, "--instructions", "x", "--timeout", "soon"],
        "invalid duration",
    );
    refused(
        &server,
        &[
            "task",
            "create",
            "--repo",
            &url,
            "--instructions",
            "x",
            "--agent",
            "command",
        ],
        "agent_command_required",
    );
    refused(&server, &["task", "show", "999"], "not_found");

    let listed = server.json(&["task", "list", "--json"]);
    assert_eq!(
        listed.as_array().unwrap().len(),
        0,
        "nothing was created: {listed}"
    );
}

/// The quick start's local repository works on a loopback server for its admin; an operator
/// who sets `local_roots` in `nightshift.toml` decides instead, and the refusal says how.
#[test]
fn the_operator_decides_where_local_repositories_may_be() {
    let remote = RemoteRepo::with_files(&[("a", "")]);
    let elsewhere = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("nightshift.toml"),
        format!(
            "[repositories]\nlocal_roots = [{:?}]\n",
            elsewhere.path().display().to_string()
        ),
    )
    .unwrap();
    let server = Server::start(data.path(), 0);
    let out = server.cli(&[
        "task",
        "create",
        "--repo",
        &remote.url(),
        "--instructions",
        "x",
        "--agent-command",
        "true",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("repo_not_allowed"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "must be under {}",
            elsewhere.path().canonicalize().unwrap().display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("local_roots"), "{stderr}");

    // Without the file, the admin of a loopback server names it as the quick start does.
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), 0);
    let created = server.json(&[
        "task",
        "create",
        "--repo",
        &remote.bare_path().display().to_string(),
        "--instructions",
        "x",
        "--agent-command",
        "true",
        "--json",
    ]);
    assert_eq!(created["repo"], remote.url(), "{created}");
}

#[tokio::test]
async fn the_api_names_what_is_wrong_with_a_body() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), 0);
    let http = authed(&server);
    let tasks = format!("{}/api/v1/projects/default/tasks", server.url);
    let post = |body: String| {
        http.post(&tasks)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let r = post("{not json".into()).await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(error_code(r).await, "invalid_json");

    let r = post(r#"{"repo": 5, "instructions": "x"}"#.into())
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_field");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("repo"),
        "{body}"
    );

    let r = post(format!(
        r#"{{"repo": "/x", "instructions": "{}"}}"#,
        "y".repeat(2 * 1024 * 1024)
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), 413);
    // The server closes a connection whose body it refused; start afresh.
    let http = authed(&server);

    let r = http
        .get(format!("{}/api/v1/projects/nope/tasks", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{tasks}?status=sleeping"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = http
        .get(format!("{}/api/v1/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A client that signs in with the server's admin token.
fn authed(server: &Server) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        "authorization",
        format!("Bearer {}", server.token).parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

async fn error_code(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
