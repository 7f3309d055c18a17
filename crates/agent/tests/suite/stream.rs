//! How the stream drivers survive broken output. The "agent" here is a shell script standing in
//! for the CLI at the process boundary: the point is our stream handling, not an agent's behaviour.

use nightshift_agent::{AgentEnd, ClaudeCodeDriver};
use nightshift_core::{AgentEvent, AgentKind};
use nightshift_sandbox::{Exit, Sandbox, group_alive};

use super::common::{Harness, run};

fn script(h: &Harness, body: &str) -> String {
    let path = h.home.join("fake-claude.sh");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&path)
        .status()
        .unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn broken_lines_and_a_crash_mid_stream_end_in_a_failure_with_the_raw_output_kept() {
    let h = Harness::start(|_| vec![]).await;
    let body = r#"echo '{"type":"system","subtype":"init","session_id":"s-1","model":"m"}'
echo '{"type":"assistant","message":{"id":"m1","content":[{"type":"text","text":"hi"}]'
printf 'bad \377\376 bytes\n'
head -c 10485760 /dev/zero | tr '\0' 'x'; echo
echo 'segfault: core dumped' >&2
kill -SEGV $$"#;
    let mut config = h.config();
    config.claude_code.command = Some(script(&h, body));
    let driver = ClaudeCodeDriver::new(Sandbox::new(), config);
    let (outcome, events) = run(&driver, h.request(AgentKind::ClaudeCode, "x")).await;

    assert!(
        matches!(
            outcome.end,
            AgentEnd::Finished {
                success: false,
                exit: Exit::Signal(11)
            }
        ),
        "{outcome:?}"
    );
    let error = outcome.error.unwrap();
    assert!(
        error.contains("before its final result") && error.contains("core dumped"),
        "{error}"
    );
    assert_eq!(outcome.session_id.as_deref(), Some("s-1"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::Output { line, .. } if line.contains("bad \u{FFFD}")))
    );
    // The 10 MB line reaches the raw log whole; the event carrying it is cut.
    let raw = h.raw_lines();
    assert!(raw.iter().any(|l| {
        l["text"]
            .as_str()
            .is_some_and(|t| t.len() == 10 * 1024 * 1024)
    }));
    assert!(
        events
            .iter()
            .all(|e| serde_json::to_string(e).unwrap().len() < 64 * 1024)
    );
    assert!(raw.iter().any(|l| {
        l["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("{\"type\":\"assistant\""))
    }));
}

#[tokio::test]
async fn an_agent_that_never_exits_after_its_result_is_killed_after_the_grace() {
    let h = Harness::start(|_| vec![]).await;
    let body = r#"echo '{"type":"system","subtype":"init","session_id":"s-2"}'
echo '{"type":"result","subtype":"success","is_error":false,"result":"all done","session_id":"s-2","total_cost_usd":0.01,"num_turns":1,"usage":{"input_tokens":5,"output_tokens":2}}'
sleep 1000 &
sleep 1000"#;
    let mut config = h.config();
    config.claude_code.command = Some(script(&h, body));
    config.after_final_grace_ms = 300;
    let driver = ClaudeCodeDriver::new(Sandbox::new(), config);
    let started = std::time::Instant::now();
    let (outcome, _) = run(&driver, h.request(AgentKind::ClaudeCode, "x")).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert_eq!(
        outcome.end,
        AgentEnd::Finished {
            success: true,
            exit: Exit::Killed
        }
    );
    assert_eq!(outcome.summary.as_deref(), Some("all done"));
    assert_eq!(outcome.usage.cost_usd, 0.01);
    for pgid in h.pgids() {
        assert!(!group_alive(pgid));
    }
}
