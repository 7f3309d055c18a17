//! Benchmark: validating (format, lint, test) a one-line change on a generated Rust crate with
//! a few dependencies, warm (the run's layer over a base whose checks built `target/`) against
//! cold (a fresh worktree, the base's results reused, so every check starts from nothing).
//!
//! cargo run --release -p nightshift-engine --example warm_validation [RUNS]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use nightshift_core::{EndReason, Phase, Run};
use nightshift_engine::{EngineConfig, WorkspaceMode};
use nightshift_store::Store;
use nightshift_test_support::git::RemoteRepo;

use common::{Bench, median};

/// A crate `app` using three path dependencies of generated code, with tests and a plan.
fn generated_crate() -> RemoteRepo {
    let mut files: Vec<(String, String)> = vec![(
        ".nightshift.toml".into(),
        "[checks]\nformat = [\"cargo fmt --all\"]\n\
         lint = [\"cargo clippy --offline --all-targets -- -D warnings\"]\n\
         test = [\"cargo test --offline\"]\n"
            .into(),
    )];
    let deps = ["parse", "render", "store"];
    let mut manifest = String::from(
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
    );
    for dep in deps {
        manifest.push_str(&format!("{dep} = {{ path = \"crates/{dep}\" }}\n"));
        let mut code = String::new();
        for i in 0..300 {
            code.push_str(&format!(
                "/// Step {i}.\npub fn step_{i}(x: u64) -> u64 {{\n    x.wrapping_mul({}).rotate_left({}) ^ {}\n}}\n\n",
                i * 7 + 3,
                i % 31 + 1,
                i + 1
            ));
        }
        code.push_str("/// All steps.\npub fn all(mut x: u64) -> u64 {\n");
        for i in 0..300 {
            code.push_str(&format!("    x = step_{i}(x);\n"));
        }
        code.push_str("    x\n}\n");
        files.push((
            format!("crates/{dep}/Cargo.toml"),
            format!("[package]\nname = \"{dep}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"),
        ));
        files.push((format!("crates/{dep}/src/lib.rs"), code));
    }
    files.push(("Cargo.toml".into(), manifest + "\n[workspace]\n"));
    files.push((
        "src/lib.rs".into(),
        "//! The app.\n\n/// The answer.\npub const ANSWER: u64 = 42;\n\n\
         /// Everything, once.\npub fn run() -> u64 {\n    store::all(render::all(parse::all(ANSWER)))\n}\n\n\
         #[cfg(test)]\nmod tests {\n    #[test]\n    fn runs() {\n        assert_ne!(super::run(), 0);\n    }\n}\n"
            .into(),
    ));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    RemoteRepo::with_files(&refs)
}

/// Milliseconds the run's format, lint and test took in validating.
fn validation_ms(run: &Run, events: &[nightshift_core::RunEvent]) -> f64 {
    assert_eq!(run.end_reason, Some(EndReason::Succeeded), "{run:?}");
    events
        .iter()
        .filter(|e| e.phase == Some(Phase::Validating))
        .filter_map(|e| e.data.get("duration_ms").and_then(|d| d.as_f64()))
        .sum()
}

async fn measure(remote: &RemoteRepo, mode: WorkspaceMode, runs: usize) -> (f64, f64) {
    let data = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&data.path().join("nightshift.db"))
        .await
        .unwrap();
    let mut config = EngineConfig::new(data.path());
    config.workspaces = mode;
    let bench = Bench::start(store, config, &remote.url()).await;
    let change = "sed -i 's/ANSWER: u64 = 42/ANSWER: u64 = 43/' src/lib.rs";
    // The first run takes the base's checks (warm: building the base; cold: the baseline
    // every later run reuses).
    let (first, _) = bench.run("first", change).await;
    let events = bench.store.events(first.id, 0, 100_000).await.unwrap();
    let first_ms = validation_ms(&first, &events);
    let mut later = Vec::new();
    for i in 0..runs {
        let (run, _) = bench.run(&format!("change {i}"), change).await;
        let events = bench.store.events(run.id, 0, 100_000).await.unwrap();
        later.push(validation_ms(&run, &events));
    }
    (first_ms, median(later))
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(3);
    let remote = generated_crate();
    let (cold_first, cold) = measure(&remote, WorkspaceMode::Worktree, runs).await;
    let (warm_first, warm) = measure(&remote, WorkspaceMode::Auto, runs).await;
    println!(
        "| workspace | validation of the first run | validation, median of {runs} later runs | warm ÷ cold |"
    );
    println!("|---|---:|---:|---:|");
    println!("| cold (worktree) | {cold_first:.0} ms | {cold:.0} ms | |");
    println!(
        "| warm (base + layer) | {warm_first:.0} ms | {warm:.0} ms | {:.0} % |",
        warm / cold * 100.0
    );
}
