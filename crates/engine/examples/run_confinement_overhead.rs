//! Benchmark: what confinement costs a run — the same task (setup commands, then format, lint
//! and test checks, a `command` agent) run N times confined (bubblewrap, setup behind the
//! egress proxy, checks without network) and N times with `sandbox = "none"`. Prints medians of
//! the setup time, the checks' time (as the run stored them) and the run end to end.
//!
//! cargo build --release -p nightshift-engine --bins &&
//! cargo run --release -p nightshift-engine --example run_confinement_overhead [RUNS]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use nightshift_core::EndReason;
use nightshift_engine::{EngineConfig, SandboxMode};
use nightshift_store::Store;
use nightshift_test_support::git::RemoteRepo;

use common::{Bench, median};

const CONFIG: &str = r#"[setup]
commands = ["sh setup.sh", "git status --porcelain"]
[checks]
format = ["sh fmt.sh"]
lint = ["grep -rn TODO src || true"]
test = ["sh test.sh", "git diff --stat HEAD"]
"#;

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
    let bench = Bench::start(store, config, &remote.url()).await;
    let store = &bench.store;
    let mut samples = Vec::new();
    for i in 0..runs {
        let (run, total_ms) = bench
            .run(
                &format!("{} {i}", mode.as_str()),
                "echo changed >> src/lib.txt",
            )
            .await;
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
