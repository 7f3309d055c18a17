//! The test-tampering guard on a 50 MB change made with real git: 2,500 Python, JavaScript,
//! Go and Rust files of about 20 kB each rewritten, a few skips and suppressions among them,
//! plus a binary file and a vendored directory. Times `git diff` (what the engine runs first)
//! and the guard's two passes over its output, median of N runs.
//!
//! `cargo run --release -p nightshift-checks --example guard_huge_diff -- [runs]`
//! Results go to docs/benchmarks.md by hand; nothing here asserts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use nightshift_checks::guard::{self, Contents, GuardInput};
use nightshift_test_support::git::git;

const FILES: usize = 2_500;
const LINES_PER_FILE: usize = 220;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5);
    let repo = tempfile::tempdir().unwrap();
    let root = repo.path();
    git(root, &["init", "--quiet", "-b", "main"]);
    write_tree(root, "old");
    git(root, &["add", "--all"]);
    git(root, &["commit", "--quiet", "-m", "base"]);
    write_tree(root, "new");
    git(root, &["add", "--all"]);

    let mut diff_times = Vec::new();
    let mut needed_times = Vec::new();
    let mut inspect_times = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let started = Instant::now();
        let diff = git(
            root,
            &[
                "-c",
                "core.quotePath=false",
                "diff",
                "--cached",
                "-M",
                "--no-color",
                "--no-ext-diff",
                "--src-prefix=a/",
                "--dst-prefix=b/",
                "HEAD",
            ],
        );
        diff_times.push(started.elapsed());
        let started = Instant::now();
        let needed = guard::files_needed(&diff);
        needed_times.push(started.elapsed());
        let contents = Contents::default();
        let started = Instant::now();
        let report = guard::inspect(&GuardInput {
            diff: &diff,
            check_files: &[],
            contents: &contents,
        });
        inspect_times.push(started.elapsed());
        last = Some((diff.len(), needed, report));
    }
    let (bytes, needed, report) = last.unwrap();
    println!(
        "diff: {:.1} MB, {FILES} text files + 1 binary + 1 vendored",
        bytes as f64 / (1 << 20) as f64
    );
    println!("git diff        median {:>8.1?}", median(diff_times));
    println!(
        "files_needed    median {:>8.1?}  ({} base, {} change files asked for)",
        median(needed_times),
        needed.base.len(),
        needed.change.len()
    );
    println!("inspect         median {:>8.1?}", median(inspect_times));
    println!(
        "findings: {} listed, {} more counted, {} files left alone",
        report.findings.len(),
        report.omitted,
        report.left_alone
    );
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The tree in its `old` or `new` state: every line of every file differs between the two.
fn write_tree(root: &Path, state: &str) {
    for n in 0..FILES {
        let (dir, ext) = match n % 4 {
            0 => ("app", "py"),
            1 => ("web/src", "test.js"),
            2 => ("svc", "go"),
            _ => ("core/src", "rs"),
        };
        let path = root.join(format!("{dir}/module_{n}.{ext}"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut text = String::with_capacity(LINES_PER_FILE * 50);
        for i in 0..LINES_PER_FILE {
            text.push_str(&format!(
                "    value_{i} = compute({i}, \"{state}\", {n})  # ok\n"
            ));
        }
        // One file in fifty gains a skip and a suppression.
        if state == "new" && n % 50 == 0 {
            text.push_str(
                "@pytest.mark.skip\nx = 1  # noqa\nit.skip('a', f)\n// eslint-disable-line\n",
            );
        }
        std::fs::write(path, text).unwrap();
    }
    std::fs::write(root.join("logo.bin"), format!("\0binary {state}\0")).unwrap();
    std::fs::create_dir_all(root.join("vendor/lib")).unwrap();
    std::fs::write(
        root.join("vendor/lib/a_test.go"),
        format!("// {state}\nt.Skip()\n"),
    )
    .unwrap();
}
