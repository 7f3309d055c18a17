//! What finding the server's toolchains costs a run: `Toolchains::discover` on this process's
//! environment (PATH directories read, links into the homes followed, managers' files read)
//! and `Toolchains::secrets_within` (credential files looked for in what is shown), median of
//! N calls each.
//!
//! `cargo run --release -p nightshift-sandbox --example toolchain_discovery [N]`

use std::time::{Duration, Instant};

use nightshift_sandbox::{HostEnv, Toolchains};

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(50)
        .max(1);
    let host = HostEnv::current();
    let mut discover = Vec::new();
    let mut secrets = Vec::new();
    let mut found = Toolchains::default();
    for _ in 0..runs {
        let started = Instant::now();
        found = Toolchains::discover(&host);
        discover.push(started.elapsed());
        let started = Instant::now();
        let _ = found.secrets_within();
        secrets.push(started.elapsed());
    }
    let names: Vec<String> = found
        .list
        .iter()
        .map(|t| format!("{} ({})", t.name, t.manager))
        .collect();
    println!("found: {}", names.join(", "));
    println!("| step | median of {runs} |\n|---|---:|");
    println!(
        "| discover | {:.1} ms |",
        median(discover).as_secs_f64() * 1e3
    );
    println!(
        "| secrets_within | {:.1} ms |",
        median(secrets).as_secs_f64() * 1e3
    );
}
