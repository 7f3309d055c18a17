//! The prompt frame and the feedback prompt of verification rounds.

use nightshift_agent::{AgentConfig, base_failures_prompt, compose_prompt, feedback_prompt};
use nightshift_core::{AgentKind, CheckOutcome, CheckResult};

#[test]
fn the_frame_wraps_the_instructions_and_names_the_repository_conventions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("AGENTS.md"), "secret conventions text").unwrap();
    let prompt = compose_prompt("  Rename foo to bar.  ", dir.path());
    assert!(
        prompt.ends_with("Rename foo to bar.\n")
            || prompt.trim_end().ends_with("Rename foo to bar.")
    );
    assert!(prompt.contains(&dir.path().display().to_string()));
    assert!(prompt.contains("AGENTS.md") && !prompt.contains("CLAUDE.md"));
    assert!(
        !prompt.contains("secret conventions text"),
        "conventions are named, not inlined"
    );
    assert!(prompt.contains("Do not commit, push"));
    let bare = compose_prompt("x", tempfile::tempdir().unwrap().path());
    assert!(!bare.contains("AGENTS.md"));
}

#[test]
fn feedback_lists_failing_checks_with_the_end_of_their_output() {
    let check = |command: &str, outcome, output: String| CheckResult {
        stage: "test".into(),
        command: command.into(),
        outcome,
        exit_code: Some(101),
        signal: None,
        duration_ms: 5,
        output,
        round: 1,
        failed_on_base: false,
    };
    let long = format!(
        "{}\nassertion failed: left == right",
        "noise\n".repeat(5000)
    );
    let prompt = feedback_prompt(&[
        check("cargo test", CheckOutcome::Failed, long),
        check("cargo fmt --check", CheckOutcome::Passed, "fine".into()),
    ]);
    assert!(prompt.contains("`cargo test` failed: it exited with code 101"));
    assert!(prompt.contains("assertion failed: left == right"));
    assert!(!prompt.contains("cargo fmt --check"));
    assert!(prompt.len() < 10 * 1024);
}

/// Checks that already fail on the base are named with their output, and the rule stays: they
/// must pass too.
#[test]
fn checks_failing_on_the_base_are_named_with_the_end_of_their_output() {
    let check = |command: &str, outcome, output: &str| CheckResult {
        stage: "lint".into(),
        command: command.into(),
        outcome,
        exit_code: Some(1),
        signal: None,
        duration_ms: 5,
        output: format!("{}{output}", "noise\n".repeat(2000)),
        round: 0,
        failed_on_base: false,
    };
    let prompt = base_failures_prompt(&[
        check(
            "uv run mypy",
            CheckOutcome::Failed,
            "tally.py:3: error: Missing return",
        ),
        check("uv run ruff check --no-fix .", CheckOutcome::Passed, "ok"),
    ]);
    assert!(
        prompt.contains(
            "## lint check `uv run mypy` already fails on the base: it exited with code 1"
        ),
        "{prompt}"
    );
    assert!(
        prompt.contains("tally.py:3: error: Missing return"),
        "{prompt}"
    );
    assert!(
        prompt.contains("only when every check passes, these included"),
        "{prompt}"
    );
    assert!(!prompt.contains("ruff"), "{prompt}");
    assert!(prompt.len() < 4 * 1024, "{}", prompt.len());
}

#[test]
fn agent_env_holds_the_model_endpoint_and_key_only_and_the_server_env_wins() {
    let file = AgentConfig {
        anthropic_base_url: Some("http://from-file".into()),
        anthropic_api_key: Some("file-key".into()),
        ..AgentConfig::default()
    };
    let config = file.with_env(|k| match k {
        "ANTHROPIC_BASE_URL" => Some("http://from-env".into()),
        "GITHUB_TOKEN" => Some("forge".into()),
        _ => None,
    });
    assert_eq!(
        config.agent_env(AgentKind::ClaudeCode),
        vec![
            (
                "ANTHROPIC_BASE_URL".to_string(),
                "http://from-env".to_string()
            ),
            ("ANTHROPIC_API_KEY".to_string(), "file-key".to_string())
        ]
    );
    assert!(config.agent_env(AgentKind::Codex).is_empty());
    assert!(config.agent_env(AgentKind::Command).is_empty());
}
