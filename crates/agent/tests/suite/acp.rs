//! claude-agent-acp, the real ACP agent wrapping the real Claude Code, against the scripted server.

use nightshift_agent::{AcpDriver, PermissionPolicy};
use nightshift_core::{AgentEvent, AgentKind, ToolKind};
use nightshift_sandbox::{Sandbox, group_alive};
use nightshift_test_support::model_server::Turn;
use serde_json::json;

use super::common::{Harness, at, run};

#[tokio::test]
async fn acp_agent_edits_with_permission_granted_by_policy_and_is_killed_at_the_end() {
    let h = Harness::start(|ws| {
        vec![
            Turn::tool(
                "Write",
                json!({"file_path": at(ws, "notes.md"), "content": "# Notes\n"}),
            ),
            Turn::text("Wrote notes.md."),
        ]
    })
    .await;
    let driver = AcpDriver::new(
        Sandbox::new(),
        h.config(),
        PermissionPolicy {
            allow_execute: false,
        },
    );
    let (outcome, events) = run(&driver, h.request(AgentKind::Acp, "Write notes.md")).await;

    assert!(outcome.succeeded(), "{outcome:?}\n{events:#?}");
    assert_eq!(
        std::fs::read_to_string(h.workspace.join("notes.md")).unwrap(),
        "# Notes\n"
    );
    assert!(outcome.session_id.is_some());
    assert_eq!(outcome.summary.as_deref(), Some("Wrote notes.md."));
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
    let raw = h.raw_lines();
    // The agent asked, and the policy's answer went back selecting an allow option.
    assert!(
        raw.iter()
            .any(|l| l["method"] == "session/request_permission"),
        "no permission request in the raw log"
    );
    assert!(
        raw.iter().any(|l| l["type"] == "nightshift.sent"
            && l["message"]["result"]["outcome"]["outcome"] == "selected"),
        "no permission answer in the raw log"
    );
    for pgid in h.pgids() {
        assert!(!group_alive(pgid), "ACP agent group {pgid} still alive");
    }
}
