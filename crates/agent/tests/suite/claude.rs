//! Claude Code, the real CLI, against the scripted Anthropic server.

use nightshift_agent::{
    AgentDriver, AgentEnd, AgentError, BudgetLimits, ClaudeCodeDriver, run_with_budget,
};
use nightshift_core::{AgentEvent, AgentKind, ToolKind, Usage};
use nightshift_sandbox::{Sandbox, group_alive};
use nightshift_test_support::model_server::Turn;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::common::{Harness, at, run, tool_results};

#[tokio::test]
async fn claude_code_writes_and_edits_a_file_and_reports_usage_and_cost() {
    let h = Harness::start(|ws| {
        let file = at(ws, "hello.txt");
        vec![
            Turn::tool("Write", json!({"file_path": file, "content": "hello\n"})).usage(1000, 100),
            Turn::tool(
                "Edit",
                json!({"file_path": file, "old_string": "hello", "new_string": "hello world"}),
            ),
            Turn::text("Created hello.txt and greeted the world."),
        ]
    })
    .await;
    let file = h.path("hello.txt");
    let driver = ClaudeCodeDriver::new(Sandbox::new(), h.config());
    let (outcome, events) = run(
        &driver,
        h.request(AgentKind::ClaudeCode, "Create hello.txt"),
    )
    .await;

    assert!(outcome.succeeded(), "{outcome:?}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hello world\n");
    assert_eq!(
        outcome.summary.as_deref(),
        Some("Created hello.txt and greeted the world.")
    );
    let session = outcome.session_id.clone().unwrap();
    assert!(matches!(&events[0], AgentEvent::Started { session_id: Some(s), .. } if *s == session));
    let calls: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::ToolCall { name, kind, .. } => Some((name.as_str(), *kind)),
            _ => None,
        })
        .collect();
    assert_eq!(
        calls,
        vec![("Write", ToolKind::Edit), ("Edit", ToolKind::Edit)]
    );
    assert!(
        tool_results(&events).iter().all(|(_, is_error)| !is_error),
        "{events:#?}"
    );
    assert!(events.iter().any(|e| matches!(e, AgentEvent::FileDiff { path, diff } if *path == file && diff.contains("+hello world"))));
    assert!(matches!(
        events.last(),
        Some(AgentEvent::Final {
            is_error: false,
            ..
        })
    ));
    // Cost is computed by Claude Code from the usage the server reported.
    assert!(outcome.usage.cost_usd > 0.0, "{:?}", outcome.usage);
    assert!(
        outcome.usage.input_tokens >= 1000 && outcome.usage.turns >= 3,
        "{:?}",
        outcome.usage
    );
    let running: Vec<Usage> = events
        .iter()
        .filter_map(|e| {
            if let AgentEvent::Usage { usage } = e {
                Some(*usage)
            } else {
                None
            }
        })
        .collect();
    assert!(
        running.len() >= 3 && running.windows(2).all(|w| w[1].cost_usd >= w[0].cost_usd),
        "{running:?}"
    );

    let requests = h.server.scripted_requests();
    assert!(requests.len() >= 3);
    assert!(
        requests
            .iter()
            .all(|r| r.header("x-api-key") == Some("test-key"))
    );
    let raw = h.raw_lines();
    assert!(
        raw.iter()
            .any(|l| l["type"] == "result" && l["is_error"] == false)
    );
}

#[tokio::test]
async fn claude_code_resume_continues_the_same_session() {
    let h = Harness::start(|ws| {
        vec![
            Turn::tool(
                "Write",
                json!({"file_path": at(ws, "a.txt"), "content": "a\n"}),
            ),
            Turn::text("first round done"),
            Turn::tool(
                "Write",
                json!({"file_path": at(ws, "b.txt"), "content": "b\n"}),
            ),
            Turn::text("second round done"),
        ]
    })
    .await;
    let b = h.path("b.txt");
    let driver = ClaudeCodeDriver::new(Sandbox::new(), h.config());
    assert!(driver.supports_resume());
    let (first, _) = run(&driver, h.request(AgentKind::ClaudeCode, "Write a.txt")).await;
    assert!(first.succeeded(), "{first:?}");
    assert!(!std::path::Path::new(&b).exists());

    let mut again = h.request(AgentKind::ClaudeCode, "Now write b.txt");
    again.resume_session = first.session_id.clone();
    let (second, _) = run(&driver, again).await;
    assert!(second.succeeded(), "{second:?}");
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(second.summary.as_deref(), Some("second round done"));
    assert_eq!(std::fs::read_to_string(&b).unwrap(), "b\n");
    // The resumed request carried the first session's history.
    let last = h.server.scripted_requests().last().cloned().unwrap();
    assert!(last.body.to_string().contains("first round done"));
}

#[tokio::test]
async fn claude_code_is_stopped_within_one_event_of_crossing_the_cost_budget() {
    let h = Harness::start(|ws| {
        vec![
            // 2M input tokens on a Sonnet-priced model is about $6: over a $1 budget.
            Turn::tool(
                "Bash",
                json!({"command": format!("echo one > {}; sleep 5", at(ws, "one.txt"))}),
            )
            .usage(2_000_000, 10),
            Turn::tool(
                "Write",
                json!({"file_path": at(ws, "two.txt"), "content": "two\n"}),
            ),
            Turn::text("done"),
        ]
    })
    .await;
    let two = h.path("two.txt");
    let driver = ClaudeCodeDriver::new(Sandbox::new(), h.config());
    let limits = BudgetLimits {
        max_cost_usd: 1.0,
        max_turns: 200,
        max_tokens: None,
    };
    let (tx, mut rx) = mpsc::channel(1024);
    let outcome = run_with_budget(
        &driver,
        h.request(AgentKind::ClaudeCode, "Write one and two"),
        limits,
        Usage::default(),
        tx,
        CancellationToken::new(),
    )
    .await
    .unwrap();
    let mut events = vec![];
    while let Ok(e) = rx.try_recv() {
        events.push(e);
    }
    assert!(
        matches!(&outcome.end, AgentEnd::BudgetExceeded(reason) if reason.contains("cost")),
        "{outcome:?}"
    );
    let crossing = events
        .iter()
        .position(|e| matches!(e, AgentEvent::Usage { usage } if usage.cost_usd > 1.0))
        .expect("a usage event crossing the budget");
    assert!(
        events.len() - crossing - 1 <= 1,
        "events after the crossing: {:#?}",
        &events[crossing..]
    );
    assert!(
        !std::path::Path::new(&two).exists(),
        "the agent went on after the budget was crossed"
    );
    let pgids = h.pgids();
    assert_eq!(pgids.len(), 1);
    assert!(!group_alive(pgids[0]), "agent process group still alive");
}

#[tokio::test]
async fn claude_code_bash_sees_no_forge_token_only_the_model_endpoint() {
    // The server process has a forge token; the agent must not see it.
    unsafe { std::env::set_var("GITHUB_TOKEN", "canary-forge-token") };
    let h = Harness::start(|_| {
        vec![
            Turn::tool("Bash", json!({"command": "env"})),
            Turn::text("printed"),
        ]
    })
    .await;
    let driver = ClaudeCodeDriver::new(Sandbox::new(), h.config());
    let (outcome, events) = run(&driver, h.request(AgentKind::ClaudeCode, "print env")).await;
    assert!(outcome.succeeded(), "{outcome:?}");
    let (output, _) = tool_results(&events)
        .into_iter()
        .next()
        .expect("the env output");
    assert!(
        output.contains(&format!("HOME={}", h.home.display())),
        "{output}"
    );
    assert!(
        output.contains(&format!("ANTHROPIC_BASE_URL={}", h.server.url())),
        "{output}"
    );
    for forbidden in [
        "canary-forge-token",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "GITLAB_TOKEN",
        "GITEA_TOKEN",
    ] {
        assert!(
            !output.contains(forbidden),
            "{forbidden} visible to the agent:\n{output}"
        );
    }
}

#[tokio::test]
async fn claude_code_model_server_500_fails_with_the_cause() {
    let h = Harness::start(|_| vec![Turn::failing(500)]).await;
    let driver = ClaudeCodeDriver::new(Sandbox::new(), h.config());
    let (outcome, events) = run(&driver, h.request(AgentKind::ClaudeCode, "do it")).await;
    assert!(
        matches!(outcome.end, AgentEnd::Finished { success: false, .. }),
        "{outcome:?}"
    );
    let error = outcome.error.unwrap();
    assert!(error.contains("500"), "{error}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::Final { is_error: true, .. }))
    );
}

#[tokio::test]
async fn claude_code_missing_binary_names_the_command_and_the_install() {
    let h = Harness::start(|_| vec![]).await;
    let mut config = h.config();
    config.claude_code.command = Some("/nonexistent/bin/claude".into());
    let driver = ClaudeCodeDriver::new(Sandbox::new(), config);
    let (tx, _rx) = mpsc::channel(16);
    let err = driver
        .run(
            h.request(AgentKind::ClaudeCode, "x"),
            tx,
            CancellationToken::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, AgentError::MissingBinary { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("/nonexistent/bin/claude") && text.contains("npm install"),
        "{text}"
    );
}

#[tokio::test]
async fn claude_code_reaching_its_turn_limit_is_a_budget_end() {
    let h = Harness::start(|ws| {
        vec![
            Turn::tool(
                "Write",
                json!({"file_path": at(ws, "a.txt"), "content": "a\n"}),
            ),
            Turn::tool(
                "Write",
                json!({"file_path": at(ws, "b.txt"), "content": "b\n"}),
            ),
            Turn::text("done"),
        ]
    })
    .await;
    let driver = ClaudeCodeDriver::new(Sandbox::new(), h.config());
    let mut request = h.request(AgentKind::ClaudeCode, "Write a and b");
    request.max_turns = Some(1);
    let (outcome, _) = run(&driver, request).await;
    assert!(
        matches!(&outcome.end, AgentEnd::BudgetExceeded(reason) if reason.contains("limit of 1 turns")),
        "{outcome:?}"
    );
    assert!(!std::path::Path::new(&h.path("b.txt")).exists());
}
