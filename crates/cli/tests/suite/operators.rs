//! What an operator wires up: logs as JSON lines for a collector, and a worker's metrics for
//! Prometheus.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nightshift_core::{
    AgentSpec, BranchName, Budget, DEFAULT_PROJECT, Instructions, NewTask, RepoUrl,
};
use nightshift_store::Store;
use nightshift_test_support::git::{RemoteRepo, repos_root};
use nightshift_test_support::{parse_prometheus, sample_value};
use serde_json::Value;

use super::server::{BIN, Server};

#[test]
fn json_logs_are_one_object_per_line() {
    let data = tempfile::tempdir().unwrap();
    let log = data.path().join("serve.log");
    let file = std::fs::File::create(&log).unwrap();
    let server = Server::start_with(data.path(), 0, |command| {
        command
            .args(["--log-format", "json"])
            .env("NIGHTSHIFT_LOG", "info")
            .stderr(file);
    });
    drop(server);

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(!lines.is_empty(), "{text}");
    for line in &lines {
        for field in ["timestamp", "level", "target"] {
            assert!(line[field].is_string(), "no {field}: {line}");
        }
    }
    assert!(
        lines.iter().any(|l| l["message"] == "nightshift listening"
            && l["addr"]
                .as_str()
                .is_some_and(|a| a.starts_with("127.0.0.1:"))),
        "{text}"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn get(url: &str) -> Option<(u16, String)> {
    let response = reqwest::get(url).await.ok()?;
    Some((response.status().as_u16(), response.text().await.ok()?))
}

/// A worker has no API: with `--metrics-listen` it serves what it recorded itself, and the
/// queue as the shared database has it.
#[tokio::test]
async fn a_worker_serves_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nightshift.db");
    let store = Store::open_sqlite(&db).await.unwrap();
    let project = store.project(DEFAULT_PROJECT).await.unwrap().unwrap();
    let remote = RemoteRepo::with_files(&[("a.txt", "a\n")]);
    let (task, _) = store
        .create_task(&NewTask {
            project_id: project.id,
            title: "t".into(),
            instructions: Instructions::parse("write b").unwrap(),
            repo: RepoUrl::parse(&remote.url()).unwrap(),
            base_branch: BranchName::parse("main").unwrap(),
            agent: AgentSpec::command("echo b > b.txt"),
            timeout_secs: 60,
            budget: Budget::default(),
            allow_test_changes: false,
            created_by: "tester".into(),
        })
        .await
        .unwrap();
    let config = dir.path().join("nightshift.toml");
    std::fs::write(
        &config,
        format!(
            "[repositories]\nlocal_roots = [{:?}]\n",
            repos_root().to_string_lossy()
        ),
    )
    .unwrap();
    let port = free_port();
    let log = dir.path().join("worker.log");
    let out = std::fs::File::create(&log).unwrap();
    let mut worker = Command::new(BIN)
        .args([
            "worker",
            "--database",
            &format!("sqlite://{}", db.display()),
        ])
        .args(["--data-dir", &dir.path().join("worker").to_string_lossy()])
        .args(["--workers", "1", "--config", &config.to_string_lossy()])
        .args(["--metrics-listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let started = Instant::now();
    let samples = loop {
        if let Some((200, text)) = get(&url).await {
            let samples = parse_prometheus(&text);
            let ended = samples.iter().any(|s| {
                s.is(
                    "nightshift_runs_ended_total",
                    &[("end_reason", "succeeded")],
                )
            });
            if ended {
                break samples;
            }
        }
        if let Some(status) = worker.try_wait().unwrap() {
            panic!(
                "the worker exited ({status}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "task {} did not end in the worker's metrics:\n{}",
            task.id,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let value = |name: &str, label: (&str, &str)| sample_value(&samples, name, &[label]);
    assert_eq!(
        value("nightshift_runs_ended_total", ("end_reason", "succeeded")),
        Some(1.0)
    );
    assert_eq!(value("nightshift_runs", ("status", "succeeded")), Some(1.0));
    assert_eq!(
        value(
            "nightshift_phase_duration_seconds_count",
            ("phase", "agent")
        ),
        Some(1.0)
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(worker.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(worker.wait().unwrap().success());
}
