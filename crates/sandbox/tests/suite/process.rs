//! Process groups, line capture, environment scrubbing and kills, without confinement.

use std::time::{Duration, Instant};

use nightshift_core::OutputStream;
use nightshift_sandbox::{Exit, ProcessSpec, Sandbox, group_alive};

fn tmp() -> std::path::PathBuf {
    std::env::temp_dir()
}

#[tokio::test]
async fn captures_lines_from_both_streams_and_exit_code() {
    let spec = ProcessSpec::shell("echo out; echo err >&2; printf 'no newline'; exit 3", tmp());
    let (exit, lines) = Sandbox::new().output(&spec).await.unwrap();
    assert_eq!(exit, Exit::Code(3));
    let texts: Vec<_> = lines.iter().map(|l| (l.stream, l.text.as_str())).collect();
    assert!(texts.contains(&(OutputStream::Stdout, "out")));
    assert!(texts.contains(&(OutputStream::Stderr, "err")));
    assert!(texts.contains(&(OutputStream::Stdout, "no newline")));
}

#[tokio::test]
async fn environment_is_scrubbed() {
    // SAFETY: the test sets a variable before spawning; no other thread reads it.
    unsafe { std::env::set_var("NIGHTSHIFT_TEST_SECRET", "canary") };
    let spec = ProcessSpec::shell("env", tmp()).env("GIVEN", "yes");
    let (_, lines) = Sandbox::new().output(&spec).await.unwrap();
    let all: String = lines.iter().map(|l| format!("{}\n", l.text)).collect();
    assert!(!all.contains("canary"), "{all}");
    assert!(all.contains("GIVEN=yes"));
    assert!(all.contains("PATH="));
}

#[tokio::test]
async fn non_utf8_and_huge_lines_survive() {
    let spec = ProcessSpec::shell(
        "printf 'a\\377b\\n'; head -c 20000000 /dev/zero | tr '\\0' x; echo; echo after",
        tmp(),
    );
    let (exit, lines) = Sandbox::new().output(&spec).await.unwrap();
    assert!(exit.success());
    assert_eq!(lines[0].text, "a\u{FFFD}b");
    assert!(lines[1].truncated);
    assert_eq!(lines[1].text.len(), 16 * 1024 * 1024);
    assert_eq!(lines[2].text, "after");
}

#[tokio::test]
async fn terminate_kills_the_whole_group_and_confirms() {
    // The background sleep would survive a kill of only the shell.
    let spec = ProcessSpec::shell("trap '' INT TERM; sleep 1000 & sleep 1000; wait", tmp());
    let sandbox = Sandbox::new().with_grace(Duration::from_millis(200));
    let mut process = sandbox.spawn(&spec).unwrap();
    let pgid = process.pgid();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(group_alive(pgid));
    let started = Instant::now();
    assert_eq!(process.terminate().await.unwrap(), Exit::Killed);
    assert!(!group_alive(pgid), "processes of the group survived");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn wait_reaps_background_children() {
    let spec = ProcessSpec::shell("sleep 1000 & echo started", tmp());
    let mut process = Sandbox::new().spawn(&spec).unwrap();
    let pgid = process.pgid();
    assert_eq!(process.next_line().await.unwrap().text, "started");
    assert!(process.wait().await.unwrap().success());
    assert!(!group_alive(pgid));
}

#[tokio::test]
async fn missing_program_says_so() {
    let err = Sandbox::new()
        .spawn(&ProcessSpec::new("definitely-not-a-program", tmp()))
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(
        text.contains("definitely-not-a-program") && text.contains("not found"),
        "{text}"
    );
}
