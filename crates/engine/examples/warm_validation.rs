//! Benchmark: validating (format, lint, test) a one-line change on a generated Rust crate with
//! a few dependencies, warm (the run's layer over a base whose checks built `target/`) against
//! cold (a fresh worktree, the base's results reused, so every check starts from nothing).
//!
//! cargo run --release -p nightshift-engine --example warm_validation [RUNS] [crates|path]
//!
//! `crates` (the default): the crate depends on serde (with its derive) and serde_json,
//! vendored into the repository from this machine's cargo cache (`cargo vendor --offline`:
//! build Nightshift once first, which fills it), as a repository that vendors its dependencies
//! has them. `path`: on three generated path dependencies of 300 small functions each, which
//! compile in a fraction of a second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use nightshift_core::{EndReason, Phase, Run};
use nightshift_engine::{EngineConfig, WorkspaceMode};
use nightshift_store::Store;
use nightshift_test_support::git::{RemoteRepo, git};

use common::{Bench, median};

const PLAN: &str = "[checks]\nformat = [\"cargo fmt --all\"]\n\
     lint = [\"cargo clippy --offline --all-targets -- -D warnings\"]\n\
     test = [\"cargo test --offline\"]\n";

/// The one line every run changes.
const ANSWER: &str = "pub const ANSWER: u64 = 42;";

/// A crate `app` using three path dependencies of generated code, with tests and a plan.
fn generated_crate() -> RemoteRepo {
    let mut files: Vec<(String, String)> = vec![(".nightshift.toml".into(), PLAN.into())];
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
        format!("//! The app.\n\n/// The answer.\n{ANSWER}\n\n\
         /// Everything, once.\npub fn run() -> u64 {{\n    store::all(render::all(parse::all(ANSWER)))\n}}\n\n\
         #[cfg(test)]\nmod tests {{\n    #[test]\n    fn runs() {{\n        assert_ne!(super::run(), 0);\n    }}\n}}\n"),
    ));
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    RemoteRepo::with_files(&refs)
}

/// A crate `app` on serde (derive) and serde_json, vendored, with generated types and tests.
fn crate_with_vendored_dependencies() -> RemoteRepo {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let write = |path: &str, text: &str| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(".nightshift.toml", PLAN);
    write(
        "Cargo.toml",
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\nserde = { version = \"1\", features = [\"derive\"] }\nserde_json = \"1\"\n\n\
         [workspace]\n",
    );
    let mut code = format!(
        "//! The app.\n\nuse serde::{{Deserialize, Serialize}};\n\n/// The answer.\n{ANSWER}\n\n"
    );
    for i in 0..40 {
        code.push_str(&format!(
            "/// Record {i}.\n#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]\n\
             pub struct Record{i} {{\n    pub id: u64,\n    pub name: String,\n    pub tags: Vec<String>,\n    pub score: Option<f64>,\n}}\n\n\
             /// Record {i} through JSON and back.\npub fn round_trip_{i}(id: u64) -> Record{i} {{\n    \
             let record = Record{i} {{ id: id + ANSWER, name: format!(\"r{i}-{{id}}\"), tags: vec![\"t\".into()], score: Some(1.5) }};\n    \
             serde_json::from_str(&serde_json::to_string(&record).unwrap()).unwrap()\n}}\n\n"
        ));
    }
    code.push_str("#[cfg(test)]\nmod tests {\n    use super::*;\n\n");
    for i in 0..40 {
        code.push_str(&format!(
            "    #[test]\n    fn record_{i}_survives_json() {{\n        assert_eq!(round_trip_{i}(1).id, 1 + ANSWER);\n    }}\n\n"
        ));
    }
    code.push_str("}\n");
    write("src/lib.rs", &code);
    git(dir, &["init", "--quiet", "--initial-branch=main"]);
    cargo(dir, &["generate-lockfile", "--offline"]);
    cargo(dir, &["vendor", "--offline", "--quiet", "vendor"]);
    write(
        ".cargo/config.toml",
        "[source.crates-io]\nreplace-with = \"vendored-sources\"\n\n\
         [source.vendored-sources]\ndirectory = \"vendor\"\n",
    );
    write(".gitignore", "/target\n");
    git(dir, &["add", "--all"]);
    git(dir, &["commit", "--quiet", "-m", "app on serde, vendored"]);
    RemoteRepo::from_checkout(dir)
}

fn cargo(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("cargo")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?}: {} (build Nightshift once first: its dependencies fill the cache \
         this vendors from)",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Milliseconds each of the run's checks (format, lint, test) took in validating.
fn validation_ms(run: &Run, events: &[nightshift_core::RunEvent]) -> Vec<f64> {
    assert_eq!(run.end_reason, Some(EndReason::Succeeded), "{run:?}");
    events
        .iter()
        .filter(|e| e.phase == Some(Phase::Validating))
        .filter_map(|e| e.data.get("duration_ms").and_then(|d| d.as_f64()))
        .collect()
}

/// Validation of the first run, and the medians of the later runs': in all, then per check.
struct Measured {
    first: f64,
    later: f64,
    checks: Vec<f64>,
}

async fn measure(remote: &RemoteRepo, mode: WorkspaceMode, runs: usize) -> Measured {
    let data = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&data.path().join("nightshift.db"))
        .await
        .unwrap();
    let mut config = EngineConfig::new(data.path());
    config.workspaces = mode;
    let bench = Bench::start(store, config, &remote.url()).await;
    let change = format!(
        "sed -i 's/{ANSWER}/{}/' src/lib.rs",
        ANSWER.replace("42", "43")
    );
    // The first run takes the base's checks (warm: building the base; cold: the baseline
    // every later run reuses).
    let (first, _) = bench.run("first", &change).await;
    let events = bench.store.events(first.id, 0, 100_000).await.unwrap();
    let first_ms = validation_ms(&first, &events).iter().sum();
    let mut later = Vec::new();
    for i in 0..runs {
        let (run, _) = bench.run(&format!("change {i}"), &change).await;
        let events = bench.store.events(run.id, 0, 100_000).await.unwrap();
        later.push(validation_ms(&run, &events));
    }
    Measured {
        first: first_ms,
        later: median(later.iter().map(|c| c.iter().sum()).collect()),
        checks: (0..3)
            .map(|i| median(later.iter().map(|c| c[i]).collect()))
            .collect(),
    }
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().unwrap())
        .unwrap_or(3);
    let remote = match std::env::args().nth(2).as_deref() {
        None | Some("crates") => crate_with_vendored_dependencies(),
        Some("path") => generated_crate(),
        Some(other) => panic!("{other}: say `crates` or `path`"),
    };
    let cold = measure(&remote, WorkspaceMode::Worktree, runs).await;
    let warm = measure(&remote, WorkspaceMode::Auto, runs).await;
    println!(
        "| workspace | validation of the first run | validation, median of {runs} later runs | \
         format | lint | test | warm ÷ cold |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, m) in [("cold (worktree)", &cold), ("warm (base + layer)", &warm)] {
        let ratio = if std::ptr::eq(m, &warm) {
            format!("{:.0} %", warm.later / cold.later * 100.0)
        } else {
            String::new()
        };
        println!(
            "| {name} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {ratio} |",
            m.first, m.later, m.checks[0], m.checks[1], m.checks[2]
        );
    }
}
