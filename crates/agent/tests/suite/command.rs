use nightshift_agent::{AgentDriver, AgentEnd, AgentRequest, CommandDriver};
use nightshift_core::{AgentEvent, AgentSpec};
use nightshift_sandbox::Sandbox;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn request(dir: &std::path::Path, command: &str) -> AgentRequest {
    AgentRequest {
        spec: AgentSpec::command(command),
        workspace: dir.to_path_buf(),
        home: dir.to_path_buf(),
        prompt: "do it".into(),
        resume_session: None,
        env: vec![],
        raw_log: None,
        max_turns: None,
        mcp_servers: vec![],
    }
}

#[tokio::test]
async fn command_driver_streams_output_and_reports_failure() {
    let dir = tempfile::tempdir().unwrap();
    let driver = CommandDriver::new(Sandbox::new());
    let (tx, mut rx) = mpsc::channel(64);
    let outcome = driver
        .run(
            request(
                dir.path(),
                "echo hello; echo $NIGHTSHIFT_INSTRUCTIONS; exit 4",
            ),
            tx,
            CancellationToken::new(),
        )
        .await
        .unwrap();
    assert!(matches!(
        outcome.end,
        AgentEnd::Finished { success: false, .. }
    ));
    assert!(outcome.error.unwrap().contains("exit code 4"));
    let mut lines = vec![];
    while let Some(e) = rx.recv().await {
        if let AgentEvent::Output { line, .. } = e {
            lines.push(line);
        }
    }
    assert_eq!(lines, vec!["hello", "do it"]);
}

#[tokio::test]
async fn command_driver_stops_on_cancel() {
    let dir = tempfile::tempdir().unwrap();
    let driver = CommandDriver::new(Sandbox::new());
    let (tx, _rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        s.cancel();
    });
    let outcome = driver
        .run(request(dir.path(), "sleep 100"), tx, stop)
        .await
        .unwrap();
    assert_eq!(outcome.end, AgentEnd::Stopped);
}
