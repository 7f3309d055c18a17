//! SSE benchmark: the time from `append_events` (a worker's store) to each of 1,000 subscribers
//! of one run's live stream (`GET …/runs/{n}/stream`) on a separate API process, and what those
//! subscribers cost that process: resident memory (VmRSS from /proc) and CPU time, idle and
//! while events flow. PostgreSQL from the machine's binaries, durable settings.
//!
//! `cargo run --release -p nightshift-server --example sse_latency -- [SUBSCRIBERS] [EVENTS]`
//! (defaults 1000 and 100). The API process is this program again (`… -- serve URL DIR`), so its
//! memory is the server's alone. Results go to docs/benchmarks.md by hand; nothing here asserts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use nightshift_core::{
    AgentSpec, BranchName, Budget, DEFAULT_PROJECT, EventKind, Instructions, NewTask, RepoUrl,
};
use nightshift_server::{AuthConfig, ServeOptions, ServerConfig};
use nightshift_store::{NewEvent, Store, TaskAudit};
use nightshift_test_support::postgres::{Durability, PgCluster};
use tokio_util::sync::CancellationToken;

/// Between appends, as a busy agent's log.
const INTERVAL: Duration = Duration::from_millis(50);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    if args.first().map(String::as_str) == Some("serve") {
        runtime.block_on(serve(&args[1], &args[2]));
        return;
    }
    let subscribers = args.first().map_or(1000, |a| a.parse().unwrap());
    let events = args.get(1).map_or(100, |a| a.parse().unwrap());
    runtime.block_on(bench(subscribers, events));
}

/// The API process: `serve --no-workers --no-auth` on the database.
async fn serve(url: &str, dir: &str) {
    let options = ServeOptions {
        data_dir: dir.into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        workers: 0,
        database: Some(url.to_string()),
        server: ServerConfig {
            auth: AuthConfig {
                disabled: true,
                ..AuthConfig::default()
            },
            ..ServerConfig::default()
        },
        engine: None,
        secret_key: None,
    };
    nightshift_server::serve(options, CancellationToken::new())
        .await
        .unwrap();
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// `VmRSS` and `VmHWM` of a process, in MiB.
fn memory(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(|kb| kb.parse::<f64>().unwrap() / 1024.0)
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// User + system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    // After the command: state is field 3, utime 14 and stime 15 (1-based, see proc(5)).
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

async fn bench(subscribers: usize, events: usize) {
    let cluster = PgCluster::start_with(Durability::Full);
    let url = cluster.fresh_database();
    let store = Store::connect(&url).await.unwrap();
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    // Through the intake's step in the store: no repository is needed to stream a run's events.
    let audit = TaskAudit {
        actor: "bench".into(),
        action: "task.create".into(),
        source: "benchmark".into(),
        detail: None,
    };
    let task = NewTask {
        project_id: project.id,
        title: "Stream".into(),
        instructions: Instructions::parse("Stream").unwrap(),
        repo: RepoUrl::parse("/srv/stream.git").unwrap(),
        base_branch: BranchName::parse("main").unwrap(),
        agent: AgentSpec::command("true"),
        timeout_secs: 3600,
        budget: Budget::default(),
        allow_test_changes: false,
        created_by: "bench".into(),
    };
    let (task, run) = store.intake_task(&task, None, &audit).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let server = Command::new(std::env::current_exe().unwrap())
        .args(["serve", &url, &dir.path().display().to_string()])
        .env("NIGHTSHIFT_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut server = KillOnDrop(server);
    let pid = server.0.id();
    let mut lines = BufReader::new(server.0.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(addr) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            break addr.to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_idle, _) = memory(pid);

    let stream = format!(
        "{base}/api/v1/projects/{DEFAULT_PROJECT}/tasks/{}/runs/{}/stream",
        task.id, run.number
    );
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let connected = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::new();
    for _ in 0..subscribers {
        let (client, stream, connected) = (client.clone(), stream.clone(), connected.clone());
        handles.push(tokio::spawn(async move {
            let response = client.get(&stream).send().await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            connected.fetch_add(1, Ordering::Relaxed);
            let mut body = response.bytes_stream();
            let mut buffer = String::new();
            let mut latencies = Vec::with_capacity(events);
            while latencies.len() < events {
                let Some(chunk) = body.next().await else {
                    break;
                };
                let now = micros_now();
                buffer.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                while let Some(end) = buffer.find('\n') {
                    let line: String = buffer.drain(..=end).collect();
                    if let Some(data) = line.strip_prefix("data:") {
                        let event: serde_json::Value = serde_json::from_str(data.trim()).unwrap();
                        if let Some(sent) = event["data"]["sent_us"].as_u64() {
                            latencies.push((now - sent) as f64 / 1000.0);
                        }
                    }
                }
            }
            latencies
        }));
    }
    let started = Instant::now();
    while connected.load(Ordering::Relaxed) < subscribers {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "subscribers did not connect"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every stream reaches its wait; then what a quiet run costs the server.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu_quiet_start = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu_quiet = cpu_seconds(pid) - cpu_quiet_start;
    let (rss_subscribed, _) = memory(pid);

    let cpu_start = cpu_seconds(pid);
    let flowing = Instant::now();
    for i in 0..events {
        let event = NewEvent {
            kind: EventKind::Log,
            phase: None,
            message: format!("line {i}"),
            data: serde_json::json!({ "sent_us": micros_now() }),
        };
        store.append_events(run.id, &[event]).await.unwrap();
        tokio::time::sleep(INTERVAL).await;
    }
    let mut all = Vec::new();
    let mut cut_short = 0;
    for handle in handles {
        let latencies = tokio::time::timeout(Duration::from_secs(120), handle)
            .await
            .expect("a subscriber neither got every event nor saw its stream end")
            .unwrap();
        // A stream the server closed early: counted, and its events still measured.
        if latencies.len() < events {
            cut_short += 1;
        }
        all.extend(latencies);
    }
    let flow_seconds = flowing.elapsed().as_secs_f64();
    let cpu_flow = cpu_seconds(pid) - cpu_start;
    let (rss_after, hwm) = memory(pid);
    assert!(
        !all.is_empty(),
        "no subscriber got an event ({cut_short} streams closed early)"
    );
    all.sort_by(f64::total_cmp);
    let at = |q: f64| all[((all.len() - 1) as f64 * q).round() as usize];
    println!(
        "subscribers={subscribers} events={events} samples={} streams closed early: {cut_short}\n\
         latency ms: p50 {:.1}  p99 {:.1}  max {:.1}\n\
         server RSS MiB: before subscribers {rss_idle:.1}  with subscribers {rss_subscribed:.1}  \
         after the events {rss_after:.1}  peak {hwm:.1}\n\
         server CPU: {:.0}% of a core while quiet (5 s), {:.0}% while events flow ({flow_seconds:.1} s)",
        all.len(),
        at(0.50),
        at(0.99),
        at(1.0),
        cpu_quiet / 5.0 * 100.0,
        cpu_flow / flow_seconds * 100.0,
    );
    drop(server);
    store.close().await;
}

/// The API process ends with the benchmark, whichever way it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
