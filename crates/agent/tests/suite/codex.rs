//! Codex, the real CLI, against the scripted OpenAI Responses server.

use nightshift_agent::{AgentEnd, CodexDriver};
use nightshift_core::{AgentEvent, AgentKind, ToolKind};
use nightshift_sandbox::Sandbox;
use nightshift_test_support::model_server::Turn;

use super::common::{Harness, run};

#[tokio::test]
async fn codex_applies_a_patch_and_reports_usage() {
    let h = Harness::start(|_| {
        vec![
            Turn::custom_tool(
                "apply_patch",
                "*** Begin Patch\n*** Add File: hello.txt\n+hello from codex\n*** End Patch\n",
            )
            .usage(300, 20),
            Turn::text("Added hello.txt."),
        ]
    })
    .await;
    let driver = CodexDriver::new(Sandbox::new(), h.config());
    let (outcome, events) = run(&driver, h.request(AgentKind::Codex, "Add hello.txt")).await;

    assert!(outcome.succeeded(), "{outcome:?}\n{events:#?}");
    assert_eq!(
        std::fs::read_to_string(h.workspace.join("hello.txt")).unwrap(),
        "hello from codex\n"
    );
    assert_eq!(outcome.summary.as_deref(), Some("Added hello.txt."));
    let first = events
        .iter()
        .find(|e| !matches!(e, AgentEvent::Output { .. }));
    assert!(
        matches!(first, Some(AgentEvent::Started { session_id: Some(s), .. }) if Some(s) == outcome.session_id.as_ref()),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| matches!(
            e,
            AgentEvent::ToolCall {
                kind: ToolKind::Edit,
                ..
            }
        )),
        "{events:#?}"
    );
    assert!(
        outcome.usage.input_tokens >= 300 && outcome.usage.output_tokens >= 20,
        "{:?}",
        outcome.usage
    );
    let requests = h.server.scripted_requests();
    assert!(requests.len() >= 2);
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer test-key"))
    );
    assert!(h.raw_lines().iter().any(|l| l["type"] == "turn.completed"));
}

#[tokio::test]
async fn codex_rate_limited_by_the_model_server_fails_with_the_cause() {
    let h = Harness::start(|_| vec![Turn::failing(429)]).await;
    let driver = CodexDriver::new(Sandbox::new(), h.config());
    let (outcome, events) = run(&driver, h.request(AgentKind::Codex, "do it")).await;
    assert!(
        matches!(outcome.end, AgentEnd::Finished { success: false, .. }),
        "{outcome:?}"
    );
    let error = outcome.error.clone().unwrap();
    assert!(
        error.contains("429") || error.to_lowercase().contains("rate limit"),
        "{error}\n{events:#?}"
    );
}
