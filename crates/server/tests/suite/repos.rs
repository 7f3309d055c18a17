//! Which repositories a task may name, attacked through the API the way a hostile signed-in user
//! would: a repository an agent planted hooks in, another project's mirror, internal addresses,
//! transport helpers. Every refusal comes at task creation, with the reason in the answer.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use axum::http::{Method, StatusCode};
use nightshift_engine::LocalRepos;
use nightshift_server::ServerConfig;
use nightshift_test_support::git::RemoteRepo;
use serde_json::json;

use super::app::{Answer, App, create, wait_end};

fn refused(answer: &Answer, code: &str, says: &str) {
    assert_eq!(answer.body["error"]["code"], code, "{}", answer.body);
    assert!(answer.message().contains(says), "{}", answer.message());
}

/// A script that leaves a line in `marker` when anything runs it.
fn hook(marker: &Path) -> String {
    format!(
        "#!/bin/sh\necho \"$0\" >> {}\ncat > /dev/null\n",
        marker.display()
    )
}

fn only_dir(pattern_root: &Path, tail: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(pattern_root)
        .unwrap()
        .flatten()
        .map(|e| e.path().join(tail))
        .filter(|p| p.exists())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// The sandbox escape: a run's agent makes a bare repository with an executable pre-receive hook
/// in its own checkout, and a second task names it, so that publishing would push to it and
/// git would run the hook unconfined. Refused at creation, for every user and every way of
/// naming it, even where the operator allows the whole temp directory.
#[tokio::test]
async fn a_repository_an_agent_planted_in_its_checkout_is_never_a_task_repository() {
    let app = App::start_with(ServerConfig::default(), 1, |config| {
        config.keep_failed_workspaces = true;
    })
    .await;
    let remote = RemoteRepo::with_files(&[("a.txt", "a\n")]);
    let outside = tempfile::tempdir().unwrap();
    let marker = outside.path().join("hook-ran");
    let plant = format!(
        "git init --quiet --bare evil.git && printf '{}' > evil.git/hooks/pre-receive \
         && chmod +x evil.git/hooks/pre-receive && exit 1",
        hook(&marker).replace('\n', "\\n")
    );
    let first = create(&app, "alpha", "admin", &remote.url(), &plant).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let run = wait_end(&app, "alpha", first.body["id"].as_i64().unwrap()).await;
    assert_eq!(run["status"], "failed", "{run}");
    // What the agent wrote is in its run's layer (kept: the run failed).
    let evil = only_dir(&app.dir.path().join("runs"), "layer/upper/evil.git");
    assert!(
        evil.join("hooks/pre-receive")
            .metadata()
            .unwrap()
            .permissions()
            .mode()
            & 0o111
            != 0
    );
    let link = outside.path().join("innocent.git");
    std::os::unix::fs::symlink(&evil, &link).unwrap();

    for who in ["admin", "root"] {
        for repo in [
            evil.display().to_string(),
            format!("file://{}", evil.display()),
            link.display().to_string(),
        ] {
            let answer = create(&app, "alpha", who, &repo, "true").await;
            assert_eq!(
                answer.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{repo}: {}",
                answer.body
            );
            refused(
                &answer,
                "repo_not_allowed",
                "inside Nightshift's data directory",
            );
        }
    }
    let tasks = app
        .call(Method::GET, "/projects/alpha/tasks", "root", None)
        .await;
    assert_eq!(tasks.body["tasks"].as_array().unwrap().len(), 1);
    assert!(!marker.exists(), "the planted hook ran");
}

/// A local repository the operator allows, with hooks someone planted in it: a run pushes its
/// branch there and none of them runs on the server.
#[tokio::test]
async fn a_run_pushes_to_a_local_repository_without_running_its_hooks() {
    let app = App::start(ServerConfig::default(), 1).await;
    let remote = RemoteRepo::with_files(&[("a.txt", "a\n")]);
    let marker = remote.bare_path().parent().unwrap().join("hook-ran");
    for name in [
        "pre-receive",
        "update",
        "post-receive",
        "post-update",
        "reference-transaction",
    ] {
        let path = remote.bare_path().join("hooks").join(name);
        std::fs::write(&path, hook(&marker)).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let created = create(&app, "alpha", "editor", &remote.url(), "echo b > b.txt").await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let run = wait_end(&app, "alpha", created.body["id"].as_i64().unwrap()).await;
    assert_eq!(run["end_reason"], "succeeded", "{run}");
    let branch = run["branch"].as_str().unwrap();
    assert_eq!(remote.show(branch, "b.txt"), "b\n");
    let ran = std::fs::read_to_string(&marker).unwrap_or_default();
    assert!(
        ran.is_empty(),
        "hooks of the repository ran on the server:\n{ran}"
    );
}

/// Cross-project access: another project's mirror under the data directory, named as the
/// repository, would hand its code and branches to this project's tasks.
#[tokio::test]
async fn another_projects_mirror_is_refused_through_the_api_the_form_and_templates() {
    let app = App::start(ServerConfig::default(), 1).await;
    let remote = RemoteRepo::with_files(&[("secret.txt", "alpha's code\n")]);
    let created = create(&app, "alpha", "editor", &remote.url(), "echo b > b.txt").await;
    let run = wait_end(&app, "alpha", created.body["id"].as_i64().unwrap()).await;
    assert_eq!(run["end_reason"], "succeeded", "{run}");
    let mirror = only_dir(&app.dir.path().join("mirrors"), "");
    let mirror = mirror.to_string_lossy().trim_end_matches('/').to_string();
    let sideways = format!(
        "{}/../mirrors/./{}",
        app.dir.path().join("runs").display(),
        { Path::new(&mirror).file_name().unwrap().to_string_lossy() }
    );

    for repo in [mirror.clone(), format!("file://{mirror}"), sideways] {
        let answer = create(&app, "beta", "outsider", &repo, "true").await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{repo}: {}",
            answer.body
        );
        refused(
            &answer,
            "repo_not_allowed",
            "inside Nightshift's data directory",
        );
    }

    // The same through a template and through the web form.
    let template = json!({
        "name": "peek",
        "instructions": "Read what is there",
        "agent": {"kind": "command", "command": "true"},
    });
    let saved = app
        .call(
            Method::POST,
            "/projects/beta/templates",
            "outsider",
            Some(&template.to_string()),
        )
        .await;
    assert_eq!(saved.status, StatusCode::CREATED, "{}", saved.body);
    let answer = app
        .call(
            Method::POST,
            "/projects/beta/templates/peek/tasks",
            "outsider",
            Some(&json!({"repo": mirror}).to_string()),
        )
        .await;
    refused(
        &answer,
        "repo_not_allowed",
        "inside Nightshift's data directory",
    );

    let encoded: String = mirror.bytes().map(|b| format!("%{b:02X}")).collect();
    let mut form = axum::http::Request::post("/p/beta/tasks")
        .header("content-type", "application/x-www-form-urlencoded")
        .header(
            "authorization",
            format!("Bearer {}", app.token("outsider").unwrap()),
        )
        .body(axum::body::Body::from(format!(
            "repo={encoded}&instructions=Read+it&agent=command&agent_command=true"
        )))
        .unwrap();
    form.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40000,
        ))));
    let response = tower::ServiceExt::oneshot(app.router.clone(), form)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let page = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let page = String::from_utf8_lossy(&page);
    assert!(page.contains("data directory"), "{page}");

    let beta = app
        .call(Method::GET, "/projects/beta/tasks", "outsider", None)
        .await;
    assert_eq!(beta.body["tasks"].as_array().unwrap().len(), 0);
}

/// Server-side requests from task creation: a URL on this machine or a private network is
/// refused before anything connects to it; a host the operator lists is tried, but a redirect
/// elsewhere is not followed and nothing the other side answered comes back.
#[tokio::test]
async fn internal_addresses_are_refused_and_answers_never_echoed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, mut connections) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let _ = seen.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let answer = "HTTP/1.1 302 Found\r\nLocation: http://10.9.9.9/admin-canary\r\n\
                          Content-Length: 13\r\nConnection: close\r\n\r\nsecret-canary";
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });

    let app = App::start(ServerConfig::default(), 0).await;
    for repo in [
        format!("http://{addr}/o/r.git"),
        format!("http://localhost:{}/o/r.git", addr.port()),
        "http://169.254.169.254/latest/meta-data".to_string(),
        "https://10.0.0.1/o/r.git".to_string(),
        "ssh://git@192.168.0.1/o/r.git".to_string(),
        "git@[::1]:o/r.git".to_string(),
    ] {
        let answer = create(&app, "alpha", "editor", &repo, "true").await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{repo}: {}",
            answer.body
        );
        refused(
            &answer,
            "repo_not_allowed",
            "loopback, private or link-local",
        );
    }
    assert!(
        connections.try_recv().is_err(),
        "the server connected to it"
    );

    // The operator lists the host: it is asked, and the error says only that it is unreachable.
    let listed = App::start_with(ServerConfig::default(), 0, |config| {
        config.repositories.hosts = vec![addr.to_string()];
    })
    .await;
    let answer = create(
        &listed,
        "alpha",
        "editor",
        &format!("http://{addr}/o/r.git"),
        "true",
    )
    .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
    refused(&answer, "repo_unreachable", "unreachable");
    assert!(!answer.message().contains("canary"), "{}", answer.message());
    assert!(
        !answer.message().contains("10.9.9.9"),
        "{}",
        answer.message()
    );
    let request = connections.recv().await.unwrap();
    assert!(request.contains("/o/r.git/info/refs"), "{request}");
}

/// `fd::` would hold the request and a git process on a file descriptor; `ext::` runs a command.
/// Both are refused before git is asked.
#[tokio::test]
async fn transport_helpers_are_refused_at_once() {
    let app = App::start(ServerConfig::default(), 0).await;
    for repo in ["fd::17", "fd::0,1/x", "ext::id", "user@fd::3"] {
        let answer = create(&app, "alpha", "editor", repo, "true").await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{repo}: {}",
            answer.body
        );
        refused(&answer, "invalid_repo", "transport helper");
    }
}

/// The default of a server only its own machine reaches: its admins may name local
/// repositories, other users may not.
#[tokio::test]
async fn by_default_only_server_admins_name_local_repositories() {
    let app = App::start_with(ServerConfig::default(), 0, |config| {
        config.repositories.local = LocalRepos::ForServerAdmins;
    })
    .await;
    let remote = RemoteRepo::with_files(&[("a.txt", "a\n")]);
    let answer = create(&app, "alpha", "admin", &remote.url(), "true").await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
    refused(
        &answer,
        "repo_not_allowed",
        "only its admins may name local repositories",
    );
    let answer = create(&app, "alpha", "root", &remote.url(), "true").await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
}
