//! Benchmark: what confinement costs a run — the same task (setup commands, then format, lint
//! and test checks, a `command` agent) run N times confined (bubblewrap, setup behind the
//! egress proxy, checks without network) and N times with `sandbox = "none"`. Prints medians of
//! the setup time, the checks' time (as the run stored them) and the run end to end.
//!
//! cargo build --release -p nightshift-engine --bins &&
//! cargo run --release -p nightshift-engine --example run_confinement_overhead [RUNS]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use nightshift_core::{AgentSpec, Budget, EndReason, Instructions, NewTask, RepoUrl};
use nightshift_engine::{Engine, EngineConfig, SandboxMode};
use nightshift_store::Store;
use nightshift_test_support::git::RemoteRepo;
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"[setup]
commands = ["sh setup.sh", "git status --porcelain"]
[checks]
format = ["sh fmt.sh"]
lint = ["grep -rn TODO src || true"]
test = ["sh test.sh", "git diff --stat HEAD"]
"#;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

struct Sample {
    setup_ms: f64,
    checks_ms: f64,
    total_ms: f64,
}

async fn measure(mode: SandboxMode, runs: usize, remote: &RemoteRepo) -> Vec<Sample> {
    // Outside /tmp (in the target directory), like a server's data directory.
    let data = tempfile::Builder::new()
        .prefix("confinement-bench-")
        .tempdir_in(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
        .unwrap();
    let store = Store::open_sqlite(&data.path().join("nightshift.db"))
        .await
        .unwrap();
    let mut config = EngineConfig::new(data.path());
    config.poll = Duration::from_millis(20);
    config.confinement.mode = mode;
    let forwarder = std::env::current_exe()
        .unwrap()
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join("nightshift-engine-netfwd"))
        .unwrap();
    if forwarder.is_file() {
        config.confinement.forwarder = Some(vec![forwarder.display().to_string()]);
    } else {
        eprintln!(
            "{} is missing (cargo build --release -p nightshift-engine --bins): setup runs without network",
            forwarder.display()
        );
        config.confinement.setup_hosts.clear();
    }
    let engine = Engine::new(store.clone(), config);
    let stop = CancellationToken::new();
    let (e, s) = (engine.clone(), stop.clone());
    tokio::spawn(async move { e.run_workers(1, s).await });
    let project = store.project("default").await.unwrap().unwrap();
    let repo = RepoUrl::parse(&remote.url()).unwrap();
    let base = engine.resolve_base(&repo, None).await.unwrap();
    let mut samples = Vec::new();
    for i in 0..runs {
        let instructions = Instructions::parse(&format!("{} {i}", mode.as_str())).unwrap();
        let new = NewTask {
            project_id: project.id,
            title: instructions.summary(),
            instructions,
            repo: repo.clone(),
            base_branch: base.clone(),
            agent: AgentSpec::command("echo changed >> src/lib.txt"),
            timeout_secs: 600,
            budget: Budget::default(),
            created_by: "bench".into(),
        };
        let start = Instant::now();
        let (task, _) = store.create_task(&new).await.unwrap();
        engine.wake();
        let run = loop {
            let run = store
                .task_runs(project.id, task.id)
                .await
                .unwrap()
                .pop()
                .unwrap();
            if run.status.is_terminal() {
                break run;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let total_ms = start.elapsed().as_secs_f64() * 1e3;
        assert_eq!(run.end_reason, Some(EndReason::Succeeded), "{run:?}");
        let change = store.change(run.id).await.unwrap().unwrap();
        let sum = |setup: bool| {
            change
                .checks
                .iter()
                .filter(|c| (c.stage == "setup") == setup)
                .map(|c| c.duration_ms as f64)
                .sum::<f64>()
        };
        samples.push(Sample {
            setup_ms: sum(true),
            checks_ms: sum(false),
            total_ms,
        });
    }
    stop.cancel();
    samples
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(10);
    let files: Vec<(String, String)> = (0..200)
        .map(|i| (format!("src/f{i}.txt"), format!("line {i}\n")))
        .collect();
    let mut all: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    all.extend([
        (".nightshift.toml", CONFIG),
        ("src/lib.txt", "start\n"),
        (
            "setup.sh",
            "mkdir -p \"$HOME/.cache/deps\" && for i in $(seq 50); do echo dep > \"$HOME/.cache/deps/$i\"; done\n",
        ),
        ("fmt.sh", "for f in src/*.txt; do tr -s ' ' < \"$f\" > /dev/null; done\n"),
        ("test.sh", "grep -c line src/*.txt | wc -l\n"),
    ]);
    let remote = RemoteRepo::with_files(&all);
    println!(
        "| sandbox | runs | setup (2 commands), median | checks (4 commands), median | run end to end, median |"
    );
    println!("|---|---:|---:|---:|---:|");
    for mode in [SandboxMode::None, SandboxMode::Bubblewrap] {
        let samples = measure(mode, runs, &remote).await;
        let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        println!(
            "| {} | {runs} | {:.0} ms | {:.0} ms | {:.0} ms |",
            mode.as_str(),
            m(|s| s.setup_ms),
            m(|s| s.checks_ms),
            m(|s| s.total_ms)
        );
    }
}
