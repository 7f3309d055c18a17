//! Address-review runs: a person (or a reviewer's `/nightshift` comment) sends the agent back
//! to the task's pull request with its review comments; the real agent CLI (against the
//! scripted model server) reads them from the fake forge, and its commit goes on top of the
//! same branch and pull request.

use nightshift_core::{AgentKind, AgentSpec, FollowUpKind, PrState, ProjectSettings, RunStatus};
use nightshift_engine::EngineError;
use nightshift_store::StoreError;
use nightshift_test_support::forge_fake::{Access, FakeKind, Review};
use nightshift_test_support::git::git;
use nightshift_test_support::model_server::{ModelServer, Turn};
use serde_json::json;

use super::agents::{MODEL, agent_config, at, read_then_edit};
use super::follow::followed_when;
use super::forge_site::{Site, WIDGET, fast_retries, wait_for};

/// What only the reviewer wrote: it reaches the agent through the forge alone.
const ASKED: &str = "Please add a NOTES.md that says what changed.";
const INLINE: &str = "Say it warmly: goodbye, world.";
/// Written by Nightshift's own forge user: never the agent's input.
const OWN: &str = "Nightshift's own remark, not a review";

fn claude_code() -> AgentSpec {
    AgentSpec {
        kind: AgentKind::ClaudeCode,
        command: None,
        model: Some(MODEL.into()),
        args: vec![],
    }
}

#[tokio::test]
async fn an_address_review_run_reads_the_review_and_pushes_to_the_same_pull_request() {
    let site = Site::start(FakeKind::GitHub).await;
    // Run 1 starts warm, at the warm base's path; the follow-up run checks out its pull
    // request's branch in a worktree of its own.
    let ws = |run: u32| match run {
        1 => site.data.path().join("bases/workspace"),
        n => site.data.path().join(format!("runs/{n}/work")),
    };
    let mut first_script = read_then_edit(&ws(1), "hello", "goodbye");
    first_script.push(Turn::text("Said goodbye."));
    let first_server = ModelServer::start(first_script).await.unwrap();
    let second_server = ModelServer::start(vec![
        Turn::tool(
            "Write",
            json!({"file_path": at(&ws(2), "NOTES.md"), "content": "Said goodbye, warmly.\n"}),
        ),
        Turn::text("Added the notes the reviewer asked for."),
    ])
    .await
    .unwrap();
    let mut config = site.config(fast_retries());
    config.agents = agent_config(&first_server);
    let workers = site.workers(1, config).await;
    let task = site
        .create_with_agent(&workers, WIDGET, "Say goodbye", claude_code())
        .await;
    let first = site.wait_end(task).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:?}");
    let number = first.checkpoint.pr_number.expect("a pull request");
    let head = first.checkpoint.pushed_commit.clone().unwrap();

    // Nothing to address before anyone commented, unless a person says what.
    let early = workers
        .engine
        .address_review(site.project_id, task, "tester", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&early, EngineError::NothingToAddress(m) if m.contains(&format!("#{number} has no review comments"))),
        "{early:?}"
    );

    site.fake.comment(WIDGET, number, "nightshift-bot", OWN);
    site.fake.review(
        WIDGET,
        number,
        Review {
            author: "rita".into(),
            state: "CHANGES_REQUESTED".into(),
            body: ASKED.into(),
            inline: vec![("greeting.txt".into(), 1, INLINE.into())],
        },
    );
    workers.stop().await;
    let mut config = site.config(fast_retries());
    config.agents = agent_config(&second_server);
    let workers = site.workers(1, config).await;
    let queued = workers
        .engine
        .address_review(
            site.project_id,
            task,
            "tester",
            Some("Keep the greeting on one line."),
        )
        .await
        .unwrap();
    assert_eq!(queued.number, 2);
    let follow_up = queued.follow_up.clone().unwrap();
    assert_eq!(
        (follow_up.kind, follow_up.pr_number),
        (FollowUpKind::AddressReview, number)
    );
    // The repository lock: one follow-up at a time.
    let twice = workers
        .engine
        .address_review(site.project_id, task, "tester", Some("again"))
        .await
        .unwrap_err();
    assert!(
        matches!(&twice, EngineError::Store(StoreError::Conflict(m)) if m.contains("still has an active run")),
        "{twice:?}"
    );

    let second = site.wait_end(task).await;
    assert_eq!(second.number, 2);
    assert_eq!(second.status, RunStatus::Succeeded, "{second:?}");
    // The agent's first request of run 2 carries the review, placed, and the instructions.
    let asked = second_server
        .scripted_requests()
        .into_iter()
        .find(|r| r.turn == Some(0))
        .expect("run 2's agent asked the model");
    let prompt = asked.body.to_string();
    assert!(prompt.contains(ASKED), "{prompt}");
    assert!(prompt.contains("rita on greeting.txt:1"), "{prompt}");
    assert!(prompt.contains(INLINE), "{prompt}");
    assert!(
        prompt.contains("Keep the greeting on one line."),
        "{prompt}"
    );
    assert!(
        prompt.contains(&format!("pull request #{number}")),
        "{prompt}"
    );
    assert!(!prompt.contains(OWN), "{prompt}");

    // The same pull request, its branch moved on top of run 1's commit.
    let pulls = site.fake.pulls(WIDGET);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(second.checkpoint.pr_number, Some(number));
    let new_head = second.checkpoint.pushed_commit.clone().unwrap();
    assert_ne!(new_head, head);
    assert_eq!(
        site.fake.branch_sha(WIDGET, &pulls[0].head),
        Some(new_head.clone())
    );
    let bare = site.fake.bare_path(WIDGET);
    let parent = git(&bare, &["rev-parse", &format!("{new_head}^")]);
    assert_eq!(parent.trim(), head, "pushed on top of the pull request");
    assert_eq!(
        git(&bare, &["show", &format!("{new_head}:NOTES.md")]),
        "Said goodbye, warmly.\n"
    );
    let events = site.store.events(second.id, 0, 10_000).await.unwrap();
    assert!(
        events.iter().any(|e| e.message.contains(&format!(
            "addressing the review of pull request #{number}, asked by tester: 2 review comments by rita, and instructions"
        ))),
        "{events:?}"
    );
    // The comments went to run 2: a new start needs new ones or instructions.
    let again = workers
        .engine
        .address_review(site.project_id, task, "tester", None)
        .await
        .unwrap_err();
    assert!(
        matches!(&again, EngineError::NothingToAddress(m) if m.contains("since the last address-review run")),
        "{again:?}"
    );

    // Merged: nothing more to do on it.
    site.fake.merge(WIDGET, number);
    followed_when(&site, task, "merged", |pr| pr.state == PrState::Merged).await;
    let merged = workers
        .engine
        .address_review(site.project_id, task, "tester", Some("one more thing"))
        .await
        .unwrap_err();
    assert!(
        matches!(&merged, EngineError::Store(StoreError::NothingToFix(m)) if m.contains("is merged")),
        "{merged:?}"
    );
    assert_eq!(site.runs(task).await.len(), 2);
    assert_eq!(site.fake.violations(), Vec::<String>::new());
    site.assert_no_leak(&[task]).await;
}

#[tokio::test]
async fn a_nightshift_comment_starts_one_run_from_a_writer_and_none_from_a_reader() {
    let site = Site::start(FakeKind::Gitea).await;
    site.fake.add_user("rhea", "token-rhea");
    site.fake.add_user("wes", "token-wes");
    site.fake.grant(WIDGET, "rhea", Access::Read);
    site.fake.grant(WIDGET, "wes", Access::Write);
    let settings = ProjectSettings {
        comment_commands: true,
        ..site.store.project_settings(site.project_id).await.unwrap()
    };
    site.store
        .set_project_settings(site.project_id, &settings)
        .await
        .unwrap();
    let workers = site.workers(1, site.config(fast_retries())).await;
    let task = site
        .create(&workers, WIDGET, "Say goodbye", &site.goodbye("runs"))
        .await;
    let first = site.wait_end(task).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:?}");
    let number = first.checkpoint.pr_number.expect("a pull request");

    // A reader's command is ignored, and the task says why.
    site.fake
        .comment(WIDGET, number, "rhea", "/nightshift rewrite it all in Rust");
    let ignored = followed_when(&site, task, "the reader's command ignored", |pr| {
        pr.command_note.is_some()
    })
    .await;
    let note = ignored.command_note.unwrap();
    assert!(note.contains("/nightshift from rhea ignored"), "{note}");
    assert!(note.contains("read access only"), "{note}");
    assert_eq!(site.runs(task).await.len(), 1);
    let notes = site
        .store
        .notifications(site.project_id, "tester", true, 10)
        .await
        .unwrap();
    assert!(
        notes.iter().any(|n| n.kind == "command_ignored"),
        "{notes:?}"
    );

    // A writer's starts one run, with the rest of the comment as its instructions.
    site.fake
        .comment(WIDGET, number, "wes", "The greeting could be friendlier.");
    site.fake
        .comment(WIDGET, number, "wes", "/nightshift make it friendlier");
    let runs = wait_for("the writer's command to start run 2", async || {
        let runs = site.runs(task).await;
        (runs.len() == 2).then_some(runs)
    })
    .await;
    let follow_up = runs[1].follow_up.clone().unwrap();
    assert_eq!(follow_up.kind, FollowUpKind::AddressReview);
    assert_eq!(follow_up.requested_by, "wes");
    let review = follow_up.review.unwrap();
    assert_eq!(review.instructions.as_deref(), Some("make it friendlier"));
    assert!(review.command_url.is_some(), "{review:?}");
    let second = site.wait_end(task).await;
    assert_eq!(second.number, 2);
    assert!(second.status.is_terminal(), "{second:?}");
    assert_eq!(
        std::fs::read_to_string(site.marker("runs"))
            .unwrap()
            .lines()
            .count(),
        2,
        "the agent ran once per run"
    );

    // Later polls, and a restart, never take the same comment up again.
    let polled = followed_when(&site, task, "a poll after run 2", |pr| pr.polls > 0)
        .await
        .polls;
    followed_when(&site, task, "more polls", |pr| pr.polls >= polled + 5).await;
    workers.stop().await;
    let _workers = site.workers(1, site.config(fast_retries())).await;
    followed_when(&site, task, "polls after the restart", |pr| {
        pr.polls >= polled + 10
    })
    .await;
    assert_eq!(site.runs(task).await.len(), 2);
    assert_eq!(site.fake.violations(), Vec::<String>::new());
}
