//! Configured secrets masked in everything a run stores, confined or not: events' messages and
//! data, the change, the run's error.

use std::time::Duration;

use nightshift_agent::{AgentConfig, AgentDefaults};
use nightshift_core::EventKind;
use nightshift_forge::{ForgeConfig, ForgeEntry, ForgeKind, Secret};
use nightshift_test_support::git::RemoteRepo;
use nightshift_test_support::model_server::{ModelServer, Turn};
use nightshift_test_support::test_tool;
use serde_json::json;

use super::confinement::{
    FORGE_CANARY, MODEL_CANARY, Site, assert_no_canary_under, run_claude_code, tool_results,
};
use super::harness::Harness;

/// With `sandbox = "none"` the agent holds the real key, so the filter is all that stands
/// between it and the records: what the agent prints and says is stored masked everywhere.
#[tokio::test]
async fn unconfined_runs_still_mask_configured_secrets_in_everything_stored() {
    let mut site = Site::new();
    let (f1, f2) = FORGE_CANARY.split_at(12);
    let server = ModelServer::start(vec![
        // The forge token as if the agent had found it somewhere, and the model key from env.
        Turn::tool(
            "Bash",
            json!({"command": format!("env | grep ANTHROPIC_API_KEY; echo found-{f1}{f2}; echo x > f.txt")}),
        ),
        Turn::text(format!("Done; the key was {MODEL_CANARY}.")),
    ])
    .await
    .unwrap();
    let agents = AgentConfig {
        claude_code: AgentDefaults {
            command: Some(test_tool("claude").display().to_string()),
            model: Some("claude-sonnet-4-5".into()),
            args: vec![],
        },
        anthropic_base_url: Some(server.url()),
        anthropic_api_key: Some(MODEL_CANARY.into()),
        max_retries: 0,
        after_final_grace_ms: 2000,
        ..AgentConfig::default()
    };
    let h = site
        .harness(1, |config| {
            config.confinement.mode = nightshift_engine::SandboxMode::None;
            config.agents = agents;
            config.forges = ForgeConfig {
                entries: vec![ForgeEntry {
                    kind: ForgeKind::Github,
                    host: "forge.invalid".into(),
                    api_url: None,
                    token: Some(Secret::new(FORGE_CANARY)),
                    app: None,
                    username: None,
                }],
                ..ForgeConfig::default()
            };
        })
        .await;
    let repo = RemoteRepo::with_files(&[("a.txt", "a\n")]);
    let (task, run, events) = run_claude_code(&h, &repo, "Leak").await;
    // Unconfined, the agent really had both: the model saw them in the tool result.
    let seen = tool_results(&server.scripted_requests()[1].body);
    assert!(
        seen.contains(MODEL_CANARY) && seen.contains(FORGE_CANARY),
        "{seen}"
    );

    let stored: String = events
        .iter()
        .map(|e| format!("{} {}\n", e.message, e.data))
        .collect();
    assert!(stored.contains("ANTHROPIC_API_KEY=[REDACTED]"), "{stored}");
    assert!(stored.contains("found-[REDACTED]"), "{stored}");
    let change = h.store.change(run.id).await.unwrap().unwrap();
    assert!(
        change
            .summary
            .as_deref()
            .is_some_and(|s| s.contains("[REDACTED]")),
        "{change:?}"
    );
    let head = repo.head(&h.branch_of(task, "Leak")).unwrap();
    let message = repo.message(&head);
    assert!(
        !message.contains(MODEL_CANARY) && message.contains("[REDACTED]"),
        "{message}"
    );
    for text in [stored, format!("{change:?}")] {
        assert!(
            !text.contains(MODEL_CANARY) && !text.contains(FORGE_CANARY),
            "{text}"
        );
    }
    assert_no_canary_under(h.data.path());
}

/// The run's event log masks on its own too: messages the engine writes itself (errors, forge
/// retries) never came through a sandbox's output filter.
#[tokio::test]
async fn the_event_log_masks_configured_secrets_in_messages_and_data() {
    let h = Harness::start(0).await;
    let repo = RemoteRepo::with_files(&[("a.txt", "a\n")]);
    let task = h
        .create(&repo.url(), "Queued", "true", Duration::from_secs(60))
        .await;
    let run = h.latest(task).await;
    let (sink, writer) = nightshift_engine::EventSink::start(
        h.store.clone(),
        &run,
        nightshift_engine::RunLimits::default(),
    );
    sink.set_redactor(nightshift_sandbox::Redactor::new([MODEL_CANARY]).unwrap());
    let pem = format!("-----BEGIN KEY-----\n{FORGE_CANARY}\n-----END KEY-----");
    sink.emit(
        EventKind::Error,
        None,
        format!("upstream said {MODEL_CANARY}; token ghp_0123456789abcdefghijABCDEFGHIJ012345"),
        json!({"nested": [{"text": MODEL_CANARY}], MODEL_CANARY: 1}),
    );
    sink.set_redactor(
        nightshift_sandbox::Redactor::new([MODEL_CANARY])
            .unwrap()
            .with_secrets([pem.as_str(), FORGE_CANARY])
            .unwrap(),
    );
    sink.emit(EventKind::Info, None, pem.clone(), json!({"pem": pem}));
    sink.flush().await;
    drop(sink);
    writer.await.unwrap();
    let events = h.events(&run).await;
    let text: String = events
        .iter()
        .map(|e| format!("{} {}\n", e.message, e.data))
        .collect();
    assert_eq!(events.len(), 2, "{text}");
    assert!(
        !text.contains(MODEL_CANARY) && !text.contains(FORGE_CANARY),
        "{text}"
    );
    assert!(
        !text.contains("ghp_0123456789"),
        "token shapes are masked too: {text}"
    );
    assert_eq!(text.matches("[REDACTED]").count(), 6, "{text}");
}
