//! Store benchmarks: queue throughput (claim → finish) with 1, 4 and 16 workers, event-follow
//! latency (polling vs LISTEN/NOTIFY, 1 and 1,000 followers) and the filtered task list over
//! 1,000,000 tasks, on SQLite and on a real PostgreSQL cluster from the machine's binaries.
//!
//! `cargo run --release -p nightshift-store --example queue_throughput -- [queue] [follow] [list]`
//! (no argument runs all three; `list-sqlite` or `list-postgres` runs one back end's list). Results go to docs/benchmarks.md by hand; nothing here asserts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use nightshift_core::{
    AgentSpec, BranchName, Budget, DEFAULT_PROJECT, EndReason, EventKind, Instructions, NewTask,
    RepoUrl, RunStatus, TaskFilter,
};
use nightshift_store::{NewEvent, Store, TaskAudit};
use nightshift_test_support::postgres::{Durability, PgCluster};
use sqlx::Executor;

const QUEUE_TASKS: usize = 2_000;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let want = |name: &str| args.is_empty() || args.iter().any(|a| a == name);
    // Durable settings (fsync on) so the PostgreSQL numbers are what production would see.
    let cluster = PgCluster::start_with(Durability::Full);
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    let mut sqlite_url = || {
        n += 1;
        format!(
            "sqlite://{}?mode=rwc",
            dir.path().join(format!("b{n}.db")).display()
        )
    };

    if want("queue") {
        println!("## queue: claim -> finish, {QUEUE_TASKS} tasks");
        for (name, backend) in [("sqlite", true), ("postgres", false)] {
            for workers in [1, 4, 16] {
                let url = if backend {
                    sqlite_url()
                } else {
                    cluster.fresh_database()
                };
                let store = Store::connect(&url).await.unwrap();
                let rate = queue_throughput(&store, workers).await;
                println!("{name:8} workers={workers:2}  {rate:8.0} tasks/s");
                store.close().await;
            }
        }
    }

    if want("follow") {
        println!("## follow: append -> follower latency (ms)");
        for followers in [1, 1000] {
            let url = cluster.fresh_database();
            let (p50, p99) = follow_latency(&url, followers, Mode::Poll).await;
            println!("postgres poll 100ms  followers={followers:4}  p50={p50:7.2} p99={p99:7.2}");
            let url = cluster.fresh_database();
            let (p50, p99) = follow_latency(&url, followers, Mode::Notify).await;
            println!("postgres notify      followers={followers:4}  p50={p50:7.2} p99={p99:7.2}");
            let url = sqlite_url();
            let (p50, p99) = follow_latency(&url, followers, Mode::InProcess).await;
            println!("sqlite in-process    followers={followers:4}  p50={p50:7.2} p99={p99:7.2}");
        }
    }

    if want("list") || want("list-sqlite") || want("list-postgres") {
        println!("## list: filtered task list over 1,000,000 tasks (ms)");
        if !want("list-postgres") || want("list") {
            let url = sqlite_url();
            list_benchmark("sqlite", &url).await;
        }
        if !want("list-sqlite") || want("list") {
            let url = cluster.fresh_database();
            list_benchmark("postgres", &url).await;
        }
    }
}

fn new_task(project_id: i64, i: usize) -> NewTask {
    let instructions = Instructions::parse(&format!("Bump dependency {i}")).unwrap();
    NewTask {
        project_id,
        title: instructions.summary(),
        instructions,
        repo: RepoUrl::parse("/srv/a.git").unwrap(),
        base_branch: BranchName::parse("main").unwrap(),
        agent: AgentSpec::command("true"),
        timeout_secs: 60,
        budget: Budget::default(),
        allow_test_changes: false,
        created_by: "bench".into(),
    }
}

/// Tasks come in through the intake's step in the store, as every door's do (the intake itself
/// lives in the engine, above the store).
async fn intake(store: &Store, task: &NewTask) -> nightshift_core::Run {
    let audit = TaskAudit {
        actor: "bench".into(),
        action: "task.create".into(),
        source: "benchmark".into(),
        detail: None,
    };
    store.intake_task(task, None, &audit).await.unwrap().1
}

async fn queue_throughput(store: &Store, workers: usize) -> f64 {
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    for i in 0..QUEUE_TASKS {
        intake(store, &new_task(project.id, i)).await;
    }
    let start = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let worker = format!("w{w}");
            let lease = Duration::from_secs(60);
            let mut done = 0usize;
            while let Some(claim) = store.claim_run(&worker, lease).await.unwrap() {
                store
                    .finish_run(claim.run.id, &worker, EndReason::Succeeded, None, None)
                    .await
                    .unwrap();
                done += 1;
            }
            done
        }));
    }
    let mut total = 0;
    for h in handles {
        total += h.await.unwrap();
    }
    assert_eq!(total, QUEUE_TASKS);
    total as f64 / start.elapsed().as_secs_f64()
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Each follower reads `events(after)` every 100 ms.
    Poll,
    /// Each follower waits on `Store::follow` (LISTEN/NOTIFY) on a second store, as an API node
    /// separate from the worker would.
    Notify,
    /// SQLite: the in-process broadcast of the same store.
    InProcess,
}

const FOLLOW_EVENTS: usize = 50;

async fn follow_latency(url: &str, followers: usize, mode: Mode) -> (f64, f64) {
    let writer = Store::connect(url).await.unwrap();
    let reader = match mode {
        Mode::InProcess => writer.clone(),
        _ => Store::connect(url).await.unwrap(),
    };
    let project = writer.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let run = intake(&writer, &new_task(project.id, 0)).await;
    let epoch = Arc::new(Instant::now());
    let mut handles = Vec::new();
    for _ in 0..followers {
        let reader = reader.clone();
        let epoch = epoch.clone();
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(FOLLOW_EVENTS);
            let mut follower = reader.follow(run.id, 0);
            let mut after = 0;
            while latencies.len() < FOLLOW_EVENTS {
                let events = match mode {
                    Mode::Poll => {
                        let events = reader.events(run.id, after, 100).await.unwrap();
                        if events.is_empty() {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        events
                    }
                    _ => follower.next(100).await.unwrap(),
                };
                let now = epoch.elapsed().as_nanos() as u64;
                for e in events {
                    after = e.seq;
                    let sent = e.data["t"].as_u64().unwrap();
                    latencies.push((now - sent) as f64 / 1e6);
                }
            }
            latencies
        }));
    }
    // Let every follower reach its first wait before appending.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for i in 0..FOLLOW_EVENTS {
        let t = epoch.elapsed().as_nanos() as u64;
        let event = NewEvent {
            kind: EventKind::Log,
            phase: None,
            message: format!("line {i}"),
            data: serde_json::json!({ "t": t }),
        };
        writer.append_events(run.id, &[event]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    writer.close().await;
    reader.close().await;
    percentiles(&mut all)
}

fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.50), at(0.99))
}

const LIST_TASKS: i64 = 1_000_000;

/// Loads 1,000,000 tasks with one run each straight through SQL (the API would take an hour),
/// shaped like a busy installation: 100 repositories, 50 creators, most runs succeeded, a few
/// failed, cancelled, queued or running.
async fn load(url: &str) {
    let store = Store::connect(url).await.unwrap();
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    store.ensure_project("other").await.unwrap();
    store.close().await;
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    let postgres = url.starts_with("postgres");
    let series = if postgres {
        format!("SELECT g AS n FROM generate_series(1, {LIST_TASKS}) AS g")
    } else {
        format!(
            "WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {LIST_TASKS}) SELECT n FROM s"
        )
    };
    let words = "CASE n % 7 WHEN 0 THEN 'Bump serde' WHEN 1 THEN 'Fix flaky test' WHEN 2 THEN 'Rename Foo to Bar' \
         WHEN 3 THEN 'Update docs' WHEN 4 THEN 'Remove dead code' WHEN 5 THEN 'Raise coverage' ELSE 'Add logging' END";
    let status = "CASE WHEN n % 1000 = 7 THEN 'queued' WHEN n % 1000 = 8 THEN 'running' WHEN n % 100 < 8 THEN 'failed' \
         WHEN n % 100 < 10 THEN 'cancelled' ELSE 'succeeded' END";
    let reason = "CASE WHEN n % 1000 IN (7, 8) THEN NULL WHEN n % 100 < 2 THEN 'timed_out' WHEN n % 100 < 8 THEN 'checks_failed' \
         WHEN n % 100 < 10 THEN 'cancelled' ELSE 'succeeded' END";
    let concat = |a: &str, b: &str| format!("{a} || {b}");
    // Task n gets run n (both tables start empty), so latest_run_id = id.
    let cast = "CAST(n AS TEXT)";
    let sep = if postgres { "chr(31)" } else { "char(31)" };
    let title = concat(&format!("({words})"), &concat("' in module '", cast));
    let tasks = format!(
        "INSERT INTO tasks (id, project_id, title, instructions, repo, base_branch, agent, timeout_secs, budget, \
         created_by, created_at, latest_run_id, status, end_reason, search_text) \
         SELECT n, {pid}, {title}, {title}, 'file:///srv/repo' || CAST(n % 100 AS TEXT) || '.git', 'main', \
         '{{\"kind\":\"command\",\"command\":\"true\"}}', 3600, '{{}}', 'user' || CAST(n % 50 AS TEXT), \
         1700000000000 + n * 1000, n, {status}, {reason}, LOWER({title}) || {sep} || LOWER({title}) FROM ({series}) AS s",
        pid = project.id,
    );
    let runs = format!(
        "INSERT INTO runs (id, project_id, task_id, number, status, end_reason, created_at, started_at, ended_at, \
         lease_owner, lease_expires_at) \
         SELECT n, {pid}, n, 1, {status}, {reason}, 1700000000000 + n * 1000, 1700000000000 + n * 1000 + 10, \
         CASE WHEN n % 1000 IN (7, 8) THEN NULL ELSE 1700000000000 + n * 1000 + 600000 END, \
         CASE WHEN n % 1000 = 8 THEN 'w' ELSE NULL END, \
         CASE WHEN n % 1000 = 8 THEN 9000000000000 ELSE NULL END FROM ({series}) AS s",
        pid = project.id,
    );
    let start = Instant::now();
    pool.execute(tasks.as_str()).await.unwrap();
    pool.execute(runs.as_str()).await.unwrap();
    if postgres {
        // Identity columns do not move on explicit ids; later inserts must not collide.
        pool.execute(
            "SELECT setval(pg_get_serial_sequence('tasks', 'id'), (SELECT MAX(id) FROM tasks))",
        )
        .await
        .unwrap();
        pool.execute(
            "SELECT setval(pg_get_serial_sequence('runs', 'id'), (SELECT MAX(id) FROM runs))",
        )
        .await
        .unwrap();
        pool.execute("VACUUM ANALYZE").await.unwrap();
    } else {
        pool.execute("ANALYZE").await.unwrap();
    }
    println!(
        "loaded {LIST_TASKS} tasks in {:.1}s",
        start.elapsed().as_secs_f64()
    );
    pool.close().await;
}

async fn list_benchmark(name: &str, url: &str) {
    load(url).await;
    let store = Store::connect(url).await.unwrap();
    let project = store.ensure_project(DEFAULT_PROJECT).await.unwrap();
    let t0 = 1_700_000_000_000i64;
    let cases: Vec<(&str, TaskFilter)> = vec![
        ("newest 50 (no filter)", TaskFilter::default()),
        (
            "status = failed",
            TaskFilter {
                status: Some(RunStatus::Failed),
                ..Default::default()
            },
        ),
        (
            "status = queued (0.1%)",
            TaskFilter {
                status: Some(RunStatus::Queued),
                ..Default::default()
            },
        ),
        (
            "end_reason = timed_out",
            TaskFilter {
                end_reason: Some(EndReason::TimedOut),
                ..Default::default()
            },
        ),
        (
            "repo",
            TaskFilter {
                repo: Some("file:///srv/repo42.git".into()),
                ..Default::default()
            },
        ),
        (
            "creator + status = failed",
            TaskFilter {
                created_by: Some("user7".into()),
                status: Some(RunStatus::Failed),
                ..Default::default()
            },
        ),
        (
            "created in one old hour",
            TaskFilter {
                since: Some(t0 + 100_000_000),
                until: Some(t0 + 103_600_000),
                ..Default::default()
            },
        ),
        (
            "created in the last day (86,400)",
            TaskFilter {
                since: Some(t0 + (LIST_TASKS - 86_400) * 1000),
                ..Default::default()
            },
        ),
        (
            "page deep (before = 500,000)",
            TaskFilter {
                before: Some(500_000),
                ..Default::default()
            },
        ),
        (
            "text, common (\"serde\")",
            TaskFilter {
                text: Some("serde".into()),
                ..Default::default()
            },
        ),
        (
            "text, one match (\"module 123456\")",
            TaskFilter {
                text: Some("module 123456".into()),
                ..Default::default()
            },
        ),
    ];
    for (label, filter) in cases {
        let mut samples = Vec::new();
        let mut found = 0;
        let deadline = Instant::now() + Duration::from_secs(10);
        for i in 0..200 {
            let start = Instant::now();
            found = store.list_tasks(project.id, &filter).await.unwrap().len();
            samples.push(start.elapsed().as_secs_f64() * 1e3);
            if i >= 10 && Instant::now() > deadline {
                break;
            }
        }
        let (p50, p99) = percentiles(&mut samples);
        println!(
            "{name:8} {label:36} rows={found:3} n={:3}  p50={p50:8.2} p99={p99:8.2}",
            samples.len()
        );
    }
    store.close().await;
}
