//! The checks on the unchanged base before the agent: a check that cannot run ends the run
//! `setup_failed` before any model request, a check already failing there is a pre-existing
//! failure the agent is told about, a second run on the same base reuses the results, and what
//! setup and the checks leave in the checkout never enters the change.

use std::time::Duration;

use nightshift_core::{AgentKind, Budget, EndReason, EventKind, Phase, RunEvent, RunStatus};
use nightshift_test_support::git::{RemoteRepo, git};
use nightshift_test_support::model_server::Turn;
use serde_json::Value;

use super::agents::{FAILURE, Rig, greeting_repo, read_then_edit};
use super::harness::Harness;

fn text(events: &[RunEvent]) -> String {
    events
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The run's baseline event: which checks failed on the base, and whether it was reused.
fn baseline(events: &[RunEvent]) -> Value {
    events
        .iter()
        .find_map(|e| e.data.get("baseline").cloned())
        .unwrap_or_else(|| panic!("no baseline event in:\n{}", text(events)))
}

/// The commands that started in the preparing phase, stage by stage (`test sh test.sh`).
fn started_before_the_agent(events: &[RunEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Check && e.phase == Some(Phase::Preparing))
        .filter(|e| e.data["status"] == "running")
        .map(|e| {
            format!(
                "{} {}",
                e.data["stage"].as_str().unwrap(),
                e.data["command"].as_str().unwrap()
            )
        })
        .collect()
}

/// A lint whose program is installed nowhere: the run ends `setup_failed` in preparing, the
/// error names the program, the PATH it was looked for on and the fix — and Claude Code never
/// starts, so its model gets no request.
#[tokio::test]
async fn a_missing_check_program_ends_the_run_before_claude_code_asks_its_model() {
    let mut rig = Rig::start(
        |ws| {
            let mut script = read_then_edit(ws, "hello", "goodbye");
            script.push(Turn::text("Said goodbye."));
            script
        },
        |_| {},
    )
    .await;
    rig.remote = RemoteRepo::with_files(&[
        (
            ".nightshift.toml",
            "[checks]\nlint = [\"nightshift-absent-linter --strict .\"]\ntest = [\"sh test.sh\"]\n",
        ),
        ("greeting.txt", "hello world\n"),
        ("test.sh", "grep -q goodbye greeting.txt\n"),
    ]);
    let run = rig
        .run_task("Say goodbye", AgentKind::ClaudeCode, Budget::default())
        .await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(run.end_reason, Some(EndReason::SetupFailed), "{run:?}");
    assert_eq!(run.failed_phase, Some(Phase::Preparing));
    let error = run.error.clone().unwrap_or_default();
    let path = std::env::var("PATH").unwrap();
    for part in [
        "lint `nightshift-absent-linter --strict .` cannot run here",
        &format!("`nightshift-absent-linter` was not found on the run's PATH ({path})"),
        "exited with code 127",
        "Install it on the server",
        "sandbox_readonly",
        "[env]",
        "the repository's .nightshift.toml",
    ] {
        assert!(error.contains(part), "{part:?} is not in: {error}");
    }
    assert!(
        rig.server.requests().is_empty(),
        "the model was asked: {:?}",
        rig.server.requests()
    );
    let events = rig.h.events(&run).await;
    assert!(
        !events.iter().any(|e| e.phase == Some(Phase::Agent)),
        "{}",
        text(&events)
    );
    assert_eq!(run.usage.turns, 0);
    assert_eq!(
        rig.remote
            .head(&rig.h.branch_of(run.task_id, "Say goodbye")),
        None
    );
}

/// The test wants the change, so it fails on the base: the log says it is pre-existing, the
/// agent's first prompt names it with its output, and the change's check table marks it. A
/// check that passes on the base is not named.
#[tokio::test]
async fn a_check_failing_on_the_base_is_pre_existing_and_the_agent_is_told() {
    let mut rig = Rig::start(
        |ws| {
            let mut script = read_then_edit(ws, "hello", "goodbye");
            script.push(Turn::text("Said goodbye."));
            script
        },
        |_| {},
    )
    .await;
    let test = format!("grep -q goodbye greeting.txt || {{ echo '{FAILURE}'; exit 1; }}\n");
    rig.remote = RemoteRepo::with_files(&[
        (
            ".nightshift.toml",
            "[checks]\nlint = [\"test -s greeting.txt\"]\ntest = [\"sh test.sh\"]\n",
        ),
        ("greeting.txt", "hello world\n"),
        ("test.sh", &test),
    ]);
    let run = rig
        .run_task("Say goodbye", AgentKind::ClaudeCode, Budget::default())
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let events = rig.h.events(&run).await;
    let log = text(&events);
    let base = baseline(&events);
    assert_eq!(
        base["failing"],
        serde_json::json!(["test `sh test.sh`"]),
        "{log}"
    );
    assert_eq!(base["passing"], 1);
    assert_eq!(base["cached"], false);
    assert!(
        log.contains("already failing on the base (pre-existing"),
        "{log}"
    );

    let requests = rig.server.scripted_requests();
    let first = requests
        .first()
        .expect("the agent asked its model")
        .body
        .to_string();
    assert!(
        first.contains("## test check `sh test.sh` already fails on the base"),
        "{first:.4000}"
    );
    assert!(first.contains(FAILURE), "{first:.4000}");
    assert!(!first.contains("test -s greeting.txt"), "{first:.4000}");

    let change = rig.change(&run).await;
    let marked: Vec<(&str, bool)> = change
        .checks
        .iter()
        .filter(|c| c.stage != "guard")
        .map(|c| (c.command.as_str(), c.failed_on_base))
        .collect();
    assert_eq!(
        marked,
        [("test -s greeting.txt", false), ("sh test.sh", true)],
        "only the change's checks are in its table, the pre-existing failure marked"
    );
}

/// A second run on the same base, plan and setup reuses the first one's baseline (an event
/// says so) — its checks do not run before the agent — and still knows what failed there; a
/// base that moved gets its checks run again.
#[tokio::test]
async fn a_second_run_on_the_same_base_reuses_the_baseline() {
    let h = Harness::start(1).await;
    let remote = greeting_repo();
    let agent = "sed -i 's/hello/goodbye/' greeting.txt";
    let mut runs = Vec::new();
    for title in ["Say goodbye", "Say goodbye again"] {
        let task = h
            .create(&remote.url(), title, agent, Duration::from_secs(120))
            .await;
        let run = h.wait_end(task).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
        runs.push(h.events(&run).await);
    }
    let (first, second) = (&runs[0], &runs[1]);
    assert_eq!(started_before_the_agent(first), ["test sh test.sh"]);
    assert_eq!(baseline(first)["cached"], false);
    assert!(
        started_before_the_agent(second).is_empty(),
        "{}",
        text(second)
    );
    let reused = baseline(second);
    assert_eq!(reused["cached"], true, "{}", text(second));
    assert_eq!(reused["failing"], serde_json::json!(["test `sh test.sh`"]));
    assert!(
        text(second).contains("from an earlier run on the same base, plan and setup"),
        "{}",
        text(second)
    );
    let validated = second
        .iter()
        .find(|e| e.phase == Some(Phase::Validating) && e.data["outcome"] == "passed")
        .unwrap();
    assert_eq!(
        validated.data["failed_on_base"], true,
        "{:?}",
        validated.data
    );

    remote.commit("main", &[("other.txt", "moved\n")], "Move main");
    let task = h
        .create(
            &remote.url(),
            "Say goodbye on the new base",
            agent,
            Duration::from_secs(120),
        )
        .await;
    let run = h.wait_end(task).await;
    let third = h.events(&run).await;
    assert_eq!(baseline(&third)["cached"], false, "{}", text(&third));
    assert_eq!(started_before_the_agent(&third), ["test sh test.sh"]);
}

/// Setup installs into a directory the repository does not ignore and the checks leave a cache
/// beside the sources: neither is committed, and an agent that changes nothing ends
/// `no_changes` although the checkout holds them. What the formatter changed on the base is
/// put back before the agent starts, and named.
#[tokio::test]
async fn what_setup_and_the_checks_leave_never_enters_the_change() {
    let h = Harness::start(1).await;
    let remote = RemoteRepo::with_files(&[
        (
            ".nightshift.toml",
            "[setup]\ncommands = [\"mkdir -p vendor/lib && echo installed > vendor/lib/dep.js\"]\n\
             [checks]\nformat = [\"sed -i 's/  */ /g' greeting.txt\"]\n\
             test = [\"mkdir -p .check-cache && date > .check-cache/last && test -s greeting.txt\"]\n",
        ),
        ("greeting.txt", "hello   world\n"),
    ]);
    // Fails unless the agent finds the base as it was committed.
    let agent = "grep -q 'hello   world' greeting.txt && sed -i 's/hello/goodbye/' greeting.txt \
                 && echo new > notes.txt";
    let task = h
        .create(
            &remote.url(),
            "Say goodbye",
            agent,
            Duration::from_secs(120),
        )
        .await;
    let run = h.wait_end(task).await;
    let events = h.events(&run).await;
    assert_eq!(
        run.status,
        RunStatus::Succeeded,
        "{run:?}\n{}",
        text(&events)
    );
    assert!(
        text(&events).contains("the formatters change 1 file of the unchanged base (greeting.txt)"),
        "{}",
        text(&events)
    );
    let excluded = events
        .iter()
        .find_map(|e| e.data.get("excluded").cloned())
        .unwrap_or_else(|| panic!("{}", text(&events)));
    assert_eq!(excluded, serde_json::json!([".check-cache/", "vendor/"]));
    let head = remote.head(&h.branch_of(task, "Say goodbye")).unwrap();
    let files = git(
        &remote.bare_path(),
        &["show", "--name-only", "--format=", &head],
    );
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        ["greeting.txt", "notes.txt"]
    );
    assert_eq!(remote.show(&head, "greeting.txt"), "goodbye world\n");
    let change = h.store.change(run.id).await.unwrap().unwrap();
    assert_eq!(change.files_changed, ["greeting.txt", "notes.txt"]);

    let task = h
        .create(
            &remote.url(),
            "Change nothing",
            "true",
            Duration::from_secs(120),
        )
        .await;
    let run = h.wait_end(task).await;
    assert_eq!(run.end_reason, Some(EndReason::NoChanges), "{run:?}");
}
