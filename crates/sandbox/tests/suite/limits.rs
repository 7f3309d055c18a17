//! Resource limits: a fork bomb and a huge write are stopped, and the host stays fine.

use std::time::{Duration, Instant};

use nightshift_sandbox::{LimitEnforcement, Limits, ProcessSpec, Sandbox, group_alive};

use super::{RunDirs, group_size, text};

#[tokio::test]
async fn fork_bomb_is_contained_and_stopped() {
    let run = RunDirs::new();
    let limits = Limits {
        processes: Some(64),
        ..Limits::default()
    };
    let sandbox = Sandbox::confined(run.policy().limits(limits))
        .unwrap()
        .with_grace(Duration::from_millis(100));
    let how = sandbox.limit_enforcement().unwrap().clone();
    // As root an rlimit does not bind and the bomb would take the machine: fail instead.
    let is_root =
        std::os::unix::fs::MetadataExt::uid(&std::fs::metadata("/proc/self").unwrap()) == 0;
    assert!(
        how != LimitEnforcement::Rlimit || !is_root,
        "process limits cannot be enforced here: {how:?}"
    );

    // dash runs the builtin `:` before a function of that name, hence `bomb`.
    let mut process = sandbox
        .spawn(&ProcessSpec::shell(
            "bomb() { bomb | bomb & }; bomb; sleep 30",
            &run.workspace,
        ))
        .unwrap();
    let pgid = process.pgid();
    let mut largest = 0;
    let mut refused = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    // Sample the group until the shell reports a refused fork, then a little longer for the peak.
    let mut after_refusal = 0;
    while after_refusal < 25 && Instant::now() < deadline {
        largest = largest.max(group_size(pgid));
        if let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_millis(20), process.next_line()).await
        {
            refused |= line.text.to_lowercase().contains("fork");
        }
        if refused {
            after_refusal += 1;
        }
    }
    assert!(
        refused,
        "the process limit never refused a fork (peak {largest} processes)"
    );
    // The host can still start processes while the bomb runs.
    let (exit, _) = Sandbox::new()
        .output(&ProcessSpec::new("true", &run.workspace))
        .await
        .unwrap();
    assert!(exit.success());
    // The limit counts the tree inside the cgroup; bwrap and its init come on top.
    assert!(largest <= 64 + 2, "the bomb grew to {largest} processes");
    process.terminate().await.unwrap();
    assert!(!group_alive(pgid));
}

#[tokio::test]
async fn large_write_is_stopped_by_the_file_size_limit() {
    let run = RunDirs::new();
    let limits = Limits {
        file_size_bytes: Some(1024 * 1024),
        ..Limits::default()
    };
    let sandbox = Sandbox::confined(run.policy().limits(limits)).unwrap();
    let script = "head -c 10G /dev/zero > big; echo status=$?";
    let started = Instant::now();
    let (exit, lines) = sandbox
        .output(&ProcessSpec::shell(script, &run.workspace))
        .await
        .unwrap();
    let out = text(&lines);
    assert!(exit.success(), "{out}");
    assert!(!out.contains("status=0"), "{out}");
    let size = std::fs::metadata(run.workspace.join("big")).unwrap().len();
    assert!(size <= 1024 * 1024, "wrote {size} bytes");
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn memory_hog_is_stopped_by_the_memory_limit() {
    let run = RunDirs::new();
    let limits = Limits {
        memory_bytes: Some(64 * 1024 * 1024),
        ..Limits::default()
    };
    let sandbox = Sandbox::confined(run.policy().limits(limits)).unwrap();
    // `tail -c N` of a pipe holds the last N bytes in memory.
    let script = "head -c 512M /dev/zero | tail -c 500M > /dev/null; echo status=$?";
    let (_, lines) = sandbox
        .output(&ProcessSpec::shell(script, &run.workspace))
        .await
        .unwrap();
    let out = text(&lines);
    assert!(
        out.contains("status=") && !out.contains("status=0"),
        "{out}"
    );
}
