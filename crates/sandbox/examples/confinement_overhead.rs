//! What confinement costs: the same short commands run unconfined and under bubblewrap (no
//! network, full network, no cgroups, the egress proxy), median wall time of N runs (spawn to
//! confirmed end, output captured), printed as a markdown table.
//!
//! `cargo build --release -p nightshift-sandbox --bins &&
//!  cargo run --release -p nightshift-sandbox --example confinement_overhead [N]`

use std::time::{Duration, Instant};

use nightshift_sandbox::{AllowedHost, ConfinementPolicy, Limits, Network, ProcessSpec, Sandbox};

type Error = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir()?;
    let workspace = dir.path().join("workspace");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&workspace)?;
    std::fs::create_dir_all(&home)?;
    for i in 0..200 {
        std::fs::write(workspace.join(format!("f{i}.txt")), "x\n")?;
    }
    let forwarder = std::env::current_exe()?
        .parent()
        .and_then(|examples| examples.parent())
        .map(|dir| dir.join("nightshift-netfwd"))
        .ok_or("no target dir")?;
    let policy = ConfinementPolicy::new(&workspace, &home)
        .forwarder([forwarder.to_string_lossy().into_owned()]);
    // Without memory and process caps no cgroup is created: shows what the cgroups cost.
    let rlimits_only = Limits {
        memory_bytes: None,
        processes: None,
        ..Limits::default()
    };
    let allow = Network::Allow(vec![AllowedHost::parse("example.com")?]);
    let mut sandboxes = vec![
        ("unconfined", Sandbox::new()),
        (
            "bwrap, network none",
            Sandbox::confined(policy.clone().network(Network::None))?,
        ),
        (
            "bwrap, network full",
            Sandbox::confined(policy.clone().network(Network::Full))?,
        ),
        (
            "bwrap, none, rlimits only",
            Sandbox::confined(policy.clone().limits(rlimits_only))?,
        ),
    ];
    // `cargo run --example` does not build the package's binaries; the proxy column needs one.
    if forwarder.is_file() {
        sandboxes.push((
            "bwrap, allow-list proxy",
            Sandbox::confined(policy.network(allow))?,
        ));
    } else {
        eprintln!(
            "{} is missing: run `cargo build --release -p nightshift-sandbox --bins` for the proxy column",
            forwarder.display()
        );
    }
    let commands = [
        ("true", ProcessSpec::new("true", &workspace)),
        ("sh -c 'echo hi'", ProcessSpec::shell("echo hi", &workspace)),
        (
            "grep -r x . | wc -l",
            ProcessSpec::shell("grep -r x . | wc -l", &workspace),
        ),
    ];
    println!(
        "| command | {} |",
        sandboxes
            .iter()
            .map(|(name, _)| *name)
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---:|".repeat(sandboxes.len()));
    for (label, spec) in &commands {
        let mut cells = Vec::new();
        for (_, sandbox) in &sandboxes {
            let mut times = Vec::with_capacity(runs);
            for _ in 0..runs {
                let started = Instant::now();
                let (exit, _) = sandbox.output(spec).await?;
                times.push(started.elapsed());
                if !exit.success() {
                    return Err(format!("{label} failed: {exit}").into());
                }
            }
            cells.push(format!(
                "{:.1} ms",
                median(&mut times).as_secs_f64() * 1000.0
            ));
        }
        println!("| `{label}` | {} |", cells.join(" | "));
    }
    println!("\nmedian of {runs} runs each");
    Ok(())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}
