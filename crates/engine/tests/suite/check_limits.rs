//! Checks under confinement: no network unless the repository asks for a host, and limits that
//! stop a fork bomb and a huge write while another run finishes.

use std::time::{Duration, Instant};

use nightshift_core::{EndReason, EventKind, Phase};
use nightshift_sandbox::{AllowedHost, Limits, ProcessSpec, Sandbox};
use nightshift_test_support::git::RemoteRepo;

use super::confinement::{Site, host_service};

/// Checks get no network unless the repository asks for hosts in `.nightshift.toml`, and then
/// that shows in the run's events; setup reaches the hosts the server allows.
#[tokio::test]
async fn checks_reach_nothing_unless_the_repository_asks() {
    let mut site = Site::new();
    // 127.0.0.2 is the host's loopback but not in NO_PROXY: only the egress proxy gets there.
    let port = host_service("127.0.0.2:0", "checks-service").await;
    let allowed = format!("127.0.0.2:{port}");
    let h = site
        .harness(1, |config| {
            config.confinement.setup_hosts = vec![AllowedHost::parse(&allowed).unwrap()];
        })
        .await;
    let fetch = format!("curl -sS --max-time 5 http://{allowed}/ | grep -q checks-service");
    let config = |network: &str| {
        format!("[setup]\ncommands = [\"{fetch}\"]\n[checks]\ntest = [\"{fetch}\"]\n{network}")
    };
    let closed = RemoteRepo::with_files(&[(".nightshift.toml", &config(""))]);
    let open = RemoteRepo::with_files(&[(
        ".nightshift.toml",
        &config(&format!("network = [\"{allowed}\"]\n")),
    )]);

    let task = h
        .create(
            &closed.url(),
            "No network",
            "touch x",
            Duration::from_secs(60),
        )
        .await;
    let run = h.wait_end(task).await;
    assert_eq!(run.end_reason, Some(EndReason::ChecksFailed), "{run:?}");
    assert_eq!(
        run.failed_phase,
        Some(Phase::Validating),
        "setup reached its host: {run:?}"
    );

    let task = h
        .create(&open.url(), "Network", "touch x", Duration::from_secs(60))
        .await;
    let run = h.wait_end(task).await;
    assert_eq!(run.end_reason, Some(EndReason::Succeeded), "{run:?}");
    let events = h.events(&run).await;
    let asked = events
        .iter()
        .find(|e| e.data.get("checks_network").is_some())
        .expect("the checks' network shows in the run's events");
    assert!(asked.message.contains(&allowed), "{}", asked.message);
}

/// Limits from the server's configuration hold inside a check: a fork bomb cannot grow past
/// the process limit, a 10 GB write stops at the file size limit, the run fails naming them,
/// and meanwhile the machine starts processes and another run finishes.
#[tokio::test]
async fn a_fork_bomb_and_a_huge_write_in_checks_are_stopped_while_another_run_finishes() {
    let mut site = Site::new();
    const FILE_LIMIT: u64 = 8 * 1024 * 1024;
    let h = site
        .harness(2, |config| {
            config.keep_failed_workspaces = true;
            config.confinement.limits = Limits {
                processes: Some(128),
                file_size_bytes: Some(FILE_LIMIT),
                memory_bytes: Some(1024 * 1024 * 1024),
                ..Limits::default()
            };
        })
        .await;
    let greedy = RemoteRepo::with_files(&[
        (
            ".nightshift.toml",
            "[checks]\ntest = [\"sh bomb.sh\", \"head -c 10G /dev/zero > big\"]\n",
        ),
        // dash runs the builtin `:` before a function of that name, hence `bomb`.
        (
            "bomb.sh",
            "bomb() { bomb | bomb & }; bomb; sleep 3; echo bomb-over; exit 1\n",
        ),
    ]);
    let task = h
        .create(
            &greedy.url(),
            "Be greedy",
            "touch x",
            Duration::from_secs(120),
        )
        .await;
    // Wait for the bomb to go off, then start another run beside it.
    let started = Instant::now();
    let greedy_run = loop {
        let run = h.latest(task).await;
        let events = h.events(&run).await;
        if events
            .iter()
            .any(|e| e.message.contains("test `sh bomb.sh`"))
        {
            break run;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the bomb never went off"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let calm = RemoteRepo::with_files(&[("a.txt", "a\n")]);
    let other = h
        .create(
            &calm.url(),
            "Stay calm",
            "echo calm > a.txt",
            Duration::from_secs(120),
        )
        .await;
    let (exit, _) = Sandbox::new()
        .output(&ProcessSpec::new("true", h.data.path()))
        .await
        .unwrap();
    assert!(exit.success(), "the host cannot start processes");
    assert_eq!(
        h.wait_end(other).await.end_reason,
        Some(EndReason::Succeeded)
    );

    let run = h.wait_end(task).await;
    assert_eq!(run.id, greedy_run.id);
    assert_eq!(run.end_reason, Some(EndReason::ChecksFailed), "{run:?}");
    let events = h.events(&run).await;
    let logs: String = events
        .iter()
        .filter(|e| e.kind == EventKind::Log)
        .map(|e| format!("{}\n", e.message.to_lowercase()))
        .collect();
    assert!(logs.contains("fork"), "no refused fork in the log:\n{logs}");
    let change = h.store.change(run.id).await.unwrap().unwrap();
    let write = change
        .checks
        .iter()
        .find(|c| c.command.starts_with("head"))
        .unwrap();
    // 128 + SIGXFSZ: the kernel stopped the write at the limit.
    assert_eq!(write.exit_code, Some(128 + 25), "{write:?}");
    let big = site
        .data_path
        .join(format!("runs/{}/layer/upper/big", run.id));
    let size = std::fs::metadata(&big).unwrap().len();
    assert!(size <= FILE_LIMIT, "wrote {size} bytes");
}
