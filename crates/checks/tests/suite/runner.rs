//! The runner: one check command, its outcome and the output lines that matter.

use nightshift_checks::{CheckRunner, ChecksError, Stage, trim_output};
use nightshift_core::CheckOutcome;
use nightshift_sandbox::Sandbox;
use tokio_util::sync::CancellationToken;

fn repo() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[tokio::test]
async fn runs_a_check_and_keeps_the_lines_that_matter() {
    let dir = repo();
    let runner = CheckRunner::new(Sandbox::new(), vec![]);
    let mut seen = 0;
    let script = "for i in $(seq 1 200); do echo noise $i; done; echo 'assertion failed: left == right'; for i in $(seq 1 30); do echo tail $i; done; exit 2";
    let result = runner
        .run(
            Stage::Test,
            script,
            dir.path(),
            1,
            &CancellationToken::new(),
            &mut |_| {
                seen += 1;
                Box::pin(async {})
            },
        )
        .await
        .unwrap();
    assert_eq!(seen, 231);
    assert_eq!(result.outcome, CheckOutcome::Failed);
    assert_eq!(result.exit_code, Some(2));
    assert!(result.output.contains("assertion failed"));
    assert!(result.output.contains("tail 30"));
    assert!(!result.output.contains("noise 5\n"));
    assert_eq!(result.stage, "test");

    let ok = runner
        .run(
            Stage::Lint,
            "true",
            dir.path(),
            1,
            &CancellationToken::new(),
            &mut |_| Box::pin(async {}),
        )
        .await
        .unwrap();
    assert_eq!(ok.outcome, CheckOutcome::Passed);
}

#[tokio::test]
async fn a_stopped_check_is_killed() {
    let dir = repo();
    let runner = CheckRunner::new(Sandbox::new(), vec![]);
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        s.cancel();
    });
    let err = runner
        .run(Stage::Test, "sleep 100", dir.path(), 1, &stop, &mut |_| {
            Box::pin(async {})
        })
        .await
        .unwrap_err();
    assert!(matches!(err, ChecksError::Stopped));
}

#[test]
fn trimming_caps_size() {
    let lines: Vec<String> = (0..100_000)
        .map(|i| format!("error line {i} {}", "x".repeat(50)))
        .collect();
    assert!(trim_output(&lines).len() <= 8 * 1024 + 4);
}
