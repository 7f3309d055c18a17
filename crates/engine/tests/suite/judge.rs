//! The judge through the engine: one request to a scripted model after the checks and the guard
//! pass. With Claude Code, a rejected out-of-scope edit goes back to the agent's session and is
//! reverted; rejected twice, the run ends `judge_rejected`. A judge that gives no verdict follows
//! the server's `on_error`; a project that switched the judge off is not reviewed.

use std::path::Path;
use std::time::Duration;

use nightshift_core::{
    AgentKind, AgentSpec, Budget, EndReason, GeneratedChange, JudgeDecision, Run, RunStatus,
};
use nightshift_engine::{EngineConfig, JudgeConfig, JudgeProvider, OnJudgeError};
use nightshift_test_support::git::RemoteRepo;
use nightshift_test_support::model_server::{ModelServer, RecordedRequest, Turn};
use serde_json::json;

use super::agents::{MODEL, agent_config, at};
use super::harness::Harness;

/// The judge's model: requests naming it are answered from the judge's script.
const JUDGE_MODEL: &str = "judge-scripted";
const README: &str = "# Greeting\n";
const OUT_OF_SCOPE: &str = "README.md: the new badge is unrelated to the task; revert it.";

fn repo() -> RemoteRepo {
    RemoteRepo::with_files(&[
        (".nightshift.toml", "[checks]\ntest = [\"sh test.sh\"]\n"),
        ("greeting.txt", "hello world\n"),
        ("README.md", README),
        (
            "test.sh",
            "grep -q goodbye greeting.txt || { echo 'no goodbye'; exit 1; }\n",
        ),
    ])
}

fn verdict(decision: &str, reasons: &[&str]) -> Turn {
    Turn::tool("verdict", json!({"decision": decision, "reasons": reasons})).usage(2_000, 100)
}

struct JudgeRig {
    h: Harness,
    server: ModelServer,
    remote: RemoteRepo,
}

impl JudgeRig {
    async fn start(
        agent: impl FnOnce(&Path) -> Vec<Turn>,
        judge: Vec<Turn>,
        configure: impl FnOnce(&mut EngineConfig),
    ) -> JudgeRig {
        let data = tempfile::tempdir().unwrap();
        let script = agent(&data.path().join("bases/workspace"));
        let server = ModelServer::start_with_models(script, vec![(JUDGE_MODEL.into(), judge)])
            .await
            .unwrap();
        let agents = agent_config(&server);
        let h = Harness::start_with(data, 1, |config| {
            config.agents = agents;
            config.verification_rounds = 1;
            let mut judge = JudgeConfig::new(JudgeProvider::Anthropic, JUDGE_MODEL);
            judge.price = Some((1.0, 5.0));
            config.judge = Some(judge);
            configure(config);
        })
        .await;
        JudgeRig {
            h,
            server,
            remote: repo(),
        }
    }

    async fn run(&self, agent: AgentSpec) -> Run {
        let task = self
            .h
            .create_with(
                &self.remote.url(),
                "Say goodbye",
                agent,
                Budget::default(),
                Duration::from_secs(300),
            )
            .await;
        let run = self.h.wait_end(task).await;
        assert_eq!(run.id, 1, "the script was written for run 1's workspace");
        run
    }

    async fn change(&self, run: &Run) -> GeneratedChange {
        self.h.store.change(run.id).await.unwrap().unwrap()
    }

    fn judge_requests(&self) -> Vec<RecordedRequest> {
        self.server
            .requests()
            .into_iter()
            .filter(|r| r.model_turn.is_some())
            .collect()
    }

    fn pushed(&self, run: &Run) -> Option<String> {
        self.remote
            .head(&self.h.branch_of(run.task_id, "Say goodbye"))
    }
}

fn claude() -> AgentSpec {
    AgentSpec {
        kind: AgentKind::ClaudeCode,
        command: None,
        model: Some(MODEL.into()),
        args: vec![],
    }
}

fn codemod() -> AgentSpec {
    AgentSpec::command("sed -i 's/hello/goodbye/' greeting.txt")
}

/// Round 1 (turns 0–4) says goodbye and adds a badge to the README; `second` is round 2.
fn out_of_scope_then(ws: &Path, second: Vec<Turn>) -> Vec<Turn> {
    let greeting = at(ws, "greeting.txt");
    let mut script = vec![
        Turn::tool("Read", json!({"file_path": greeting})),
        Turn::tool(
            "Edit",
            json!({"file_path": greeting, "old_string": "hello", "new_string": "goodbye"}),
        ),
        Turn::tool("Read", json!({"file_path": at(ws, "README.md")})),
        Turn::tool(
            "Write",
            json!({"file_path": at(ws, "README.md"), "content": "# Greeting\n\n![badge](https://example.com/badge.svg)\n"}),
        ),
        Turn::text("Said goodbye and added a badge."),
    ];
    script.extend(second);
    script
}

#[tokio::test]
async fn an_out_of_scope_edit_is_rejected_reverted_and_the_run_succeeds_with_both_verdicts() {
    const REVERTED: &str = "Reverted the README.";
    let rig = JudgeRig::start(
        |ws| {
            out_of_scope_then(
                ws,
                vec![
                    Turn::tool("Read", json!({"file_path": at(ws, "README.md")})),
                    Turn::tool(
                        "Write",
                        json!({"file_path": at(ws, "README.md"), "content": README}),
                    ),
                    Turn::text(REVERTED),
                ],
            )
        },
        vec![
            verdict("reject", &[OUT_OF_SCOPE]),
            verdict("approve", &["Says goodbye as asked, nothing else."]),
        ],
        |_| {},
    )
    .await;
    let run = rig.run(claude()).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let head = rig.pushed(&run).expect("branch pushed");
    assert_eq!(rig.remote.show(&head, "greeting.txt"), "goodbye world\n");
    assert_eq!(rig.remote.show(&head, "README.md"), README);

    let change = rig.change(&run).await;
    assert_eq!(change.rounds, 2);
    let verdicts: Vec<(u32, JudgeDecision, Vec<String>)> = change
        .verdicts
        .iter()
        .map(|v| (v.round, v.decision, v.reasons.clone()))
        .collect();
    assert_eq!(
        verdicts,
        vec![
            (1, JudgeDecision::Reject, vec![OUT_OF_SCOPE.to_string()]),
            (
                2,
                JudgeDecision::Approve,
                vec!["Says goodbye as asked, nothing else.".to_string()]
            ),
        ]
    );
    assert!(
        change
            .verdicts
            .iter()
            .all(|v| v.provider == "anthropic" && v.model == JUDGE_MODEL && v.problem.is_none())
    );
    assert!(
        change
            .summary
            .as_deref()
            .unwrap()
            .contains(&format!("Round 2, after the judge's review: {REVERTED}")),
        "{change:?}"
    );

    // The judge saw the task and the change; the agent's second round saw the judge's reason.
    let judged = rig.judge_requests();
    assert_eq!(judged.len(), 2);
    let first = judged[0].body.to_string();
    assert!(
        first.contains("Say goodbye")
            && first.contains("badge.svg")
            && first.contains("README.md | +"),
        "{first:.3000}"
    );
    assert_eq!(judged[0].body["tool_choice"]["name"], "verdict");
    assert_eq!(judged[0].header("x-api-key"), Some("test-key"));
    assert!(
        !judged[1].body.to_string().contains("badge.svg"),
        "the second review saw the badge"
    );
    let sent_back = rig
        .server
        .scripted_requests()
        .into_iter()
        .find(|r| r.turn == Some(5))
        .expect("a request of the second round")
        .body
        .to_string();
    assert!(
        sent_back.contains("rejected it") && sent_back.contains("the new badge is unrelated"),
        "{sent_back:.3000}"
    );

    // The judge's tokens count toward the run: 2 reviews of 2,000 + 100 tokens at $1/$5.
    let judge_cost: f64 = change.verdicts.iter().map(|v| v.usage.cost_usd).sum();
    assert!((judge_cost - 2.0 * 0.0025).abs() < 1e-9, "{judge_cost}");
    assert!(run.usage.input_tokens >= 4_000, "{:?}", run.usage);
    let events = rig.h.events(&run).await;
    let judged: Vec<bool> = events
        .iter()
        .filter_map(|e| e.data.get("judge"))
        .map(|v| v["decision"] == "approve")
        .collect();
    assert_eq!(judged, vec![false, true]);
}

#[tokio::test]
async fn rejected_twice_ends_judge_rejected_and_nothing_is_pushed() {
    let rig = JudgeRig::start(
        |ws| out_of_scope_then(ws, vec![Turn::text("The badge helps; I kept it.")]),
        vec![
            verdict("reject", &[OUT_OF_SCOPE]),
            verdict("reject", &[OUT_OF_SCOPE]),
        ],
        |_| {},
    )
    .await;
    let run = rig.run(claude()).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(run.end_reason, Some(EndReason::JudgeRejected), "{run:?}");
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .contains("the new badge is unrelated"),
        "{run:?}"
    );
    assert!(rig.pushed(&run).is_none());
    let change = rig.change(&run).await;
    assert_eq!(change.verdicts.len(), 2);
    assert!(
        change
            .verdicts
            .iter()
            .all(|v| v.decision == JudgeDecision::Reject)
    );
    assert!(
        change.diff.contains("badge.svg"),
        "the failed run keeps its diff"
    );
}

/// What each `on_error` does with an answer that is not a verdict (text, no tool call).
#[tokio::test]
async fn a_malformed_verdict_follows_the_configured_policy() {
    let malformed = || vec![Turn::text("Looks fine to me: approve.")];
    let with = |policy: OnJudgeError| {
        move |config: &mut EngineConfig| {
            if let Some(judge) = &mut config.judge {
                judge.on_error = policy;
            }
        }
    };

    let rig = JudgeRig::start(|_| vec![], malformed(), with(OnJudgeError::Approve)).await;
    let run = rig.run(codemod()).await;
    assert_eq!(run.end_reason, Some(EndReason::Succeeded), "{run:?}");
    assert!(rig.pushed(&run).is_some());
    let verdict = &rig.change(&run).await.verdicts[0];
    assert_eq!(verdict.decision, JudgeDecision::Approve);
    assert!(
        verdict
            .problem
            .as_deref()
            .unwrap()
            .contains("no `verdict` tool call"),
        "{verdict:?}"
    );

    let rig = JudgeRig::start(|_| vec![], malformed(), with(OnJudgeError::Reject)).await;
    let run = rig.run(codemod()).await;
    assert_eq!(run.end_reason, Some(EndReason::JudgeRejected), "{run:?}");
    assert!(rig.pushed(&run).is_none());
    let verdict = &rig.change(&run).await.verdicts[0];
    assert_eq!(verdict.decision, JudgeDecision::Reject);
    assert!(verdict.problem.is_some(), "{verdict:?}");

    let rig = JudgeRig::start(|_| vec![], malformed(), with(OnJudgeError::Fail)).await;
    let run = rig.run(codemod()).await;
    assert_eq!(run.end_reason, Some(EndReason::Infrastructure), "{run:?}");
    assert!(
        run.error
            .as_deref()
            .unwrap()
            .contains("the judge could not review the change"),
        "{run:?}"
    );
    assert!(rig.pushed(&run).is_none());

    // An error from the model's API is no verdict either.
    let rig = JudgeRig::start(
        |_| vec![],
        vec![Turn::failing(500)],
        with(OnJudgeError::Reject),
    )
    .await;
    let run = rig.run(codemod()).await;
    assert_eq!(run.end_reason, Some(EndReason::JudgeRejected), "{run:?}");
    let verdict = &rig.change(&run).await.verdicts[0];
    assert!(
        verdict.problem.as_deref().unwrap().contains("HTTP 500"),
        "{verdict:?}"
    );
}

/// A judge that does not answer within its timeout gives no verdict: `on_error` decides, and the
/// verdict says how long was waited.
#[tokio::test]
async fn a_judge_that_answers_too_late_follows_the_configured_policy() {
    let late = vec![verdict("approve", &[]).after(Duration::from_secs(10))];
    let rig = JudgeRig::start(
        |_| vec![],
        late,
        |config| {
            if let Some(judge) = &mut config.judge {
                judge.timeout = Duration::from_millis(500);
                judge.on_error = OnJudgeError::Reject;
            }
        },
    )
    .await;
    let run = rig.run(codemod()).await;
    assert_eq!(run.end_reason, Some(EndReason::JudgeRejected), "{run:?}");
    assert!(rig.pushed(&run).is_none());
    let verdict = &rig.change(&run).await.verdicts[0];
    assert_eq!(verdict.decision, JudgeDecision::Reject);
    assert!(
        verdict
            .problem
            .as_deref()
            .unwrap()
            .contains("no answer within 500ms"),
        "{verdict:?}"
    );
}

#[tokio::test]
async fn a_project_that_switched_the_judge_off_is_not_reviewed() {
    let rig = JudgeRig::start(|_| vec![], vec![verdict("reject", &[OUT_OF_SCOPE])], |_| {}).await;
    let mut settings = rig
        .h
        .store
        .project_settings(rig.h.project_id)
        .await
        .unwrap();
    settings.judge = false;
    rig.h
        .store
        .set_project_settings(rig.h.project_id, &settings)
        .await
        .unwrap();
    let run = rig.run(codemod()).await;
    assert_eq!(run.end_reason, Some(EndReason::Succeeded), "{run:?}");
    assert!(rig.judge_requests().is_empty());
    assert!(rig.change(&run).await.verdicts.is_empty());
}
