//! Fix-CI runs: a person starts a run of the task on its pull request whose CI fails; the real
//! agent CLI (against the scripted model server) gets the failing jobs' output from the fake
//! forge, and its commit goes on top of the same branch and pull request.

use nightshift_core::{
    AgentKind, AgentSpec, CiState, EndReason, FollowUpKind, Insights, PrState, RunStatus,
    now_millis,
};
use nightshift_store::StoreError;
use nightshift_test_support::forge_fake::{FakeCheck, FakeKind};
use nightshift_test_support::git::git;
use nightshift_test_support::model_server::{ModelServer, Turn};
use serde_json::json;

use super::agents::{MODEL, agent_config, at, read_then_edit};
use super::follow::followed_when;
use super::forge_site::{Site, WIDGET, fast_retries, wait_for};

/// A line of the failing job's log that only the forge knows.
const CI_LOG: &str = "test_farewell FAILED: expected a NOTES.md saying goodbye";

fn claude_code() -> AgentSpec {
    AgentSpec {
        kind: AgentKind::ClaudeCode,
        command: None,
        model: Some(MODEL.into()),
        args: vec![],
    }
}

fn nothing_to_fix(e: StoreError) -> String {
    match e {
        StoreError::NothingToFix(message) => message,
        other => panic!("not refused as nothing to fix: {other}"),
    }
}

fn conflict(e: StoreError) -> String {
    match e {
        StoreError::Conflict(message) => message,
        other => panic!("not refused as a conflict: {other}"),
    }
}

#[tokio::test]
async fn a_fix_ci_run_reads_the_failing_jobs_and_updates_the_same_pull_request() {
    let site = Site::start(FakeKind::GitHub).await;
    // The first run starts warm, where every run sees its checkout at one path; the fix-CI run
    // checks out its pull request's branch in a worktree of its own.
    let ws = |run: u32| match run {
        1 => site.data.path().join("bases/workspace"),
        n => site.data.path().join(format!("runs/{n}/work")),
    };
    // The model server answers by the turns in a conversation: one script per run, each on
    // its own server, the second run on a restarted engine.
    let mut first_script = read_then_edit(&ws(1), "hello", "goodbye");
    first_script.push(Turn::text("Said goodbye."));
    let first_server = ModelServer::start(first_script).await.unwrap();
    let second_server = ModelServer::start(vec![
        Turn::tool(
            "Write",
            json!({"file_path": at(&ws(2), "NOTES.md"), "content": "Said goodbye.\n"}),
        ),
        Turn::text("Added the notes CI wants."),
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

    // Nothing to fix before CI fails.
    followed_when(&site, task, "a first poll", |pr| pr.polls >= 1).await;
    let early = nothing_to_fix(
        site.store
            .start_fix_ci(site.project_id, task, "tester")
            .await
            .unwrap_err(),
    );
    assert!(early.contains("not failing"), "{early}");

    site.fake.add_check_run(
        WIDGET,
        &head,
        FakeCheck {
            name: "test (ubuntu)".into(),
            status: "completed".into(),
            conclusion: Some("failure".into()),
            title: "1 test failed".into(),
            log: Some(format!("running 3 tests\n{CI_LOG}\nerror: 1 test failed\n")),
            ..FakeCheck::default()
        },
    );
    followed_when(&site, task, "ci failing", |pr| pr.ci == CiState::Failing).await;
    // The task shows it, and its creator is told.
    let change = site.store.change(first.id).await.unwrap().unwrap();
    assert_eq!(change.ci_status.as_deref(), Some("open · ci failing"));
    let notes = site
        .store
        .notifications(site.project_id, "tester", true, 10)
        .await
        .unwrap();
    assert!(notes.iter().any(|n| n.kind == "ci_failed"), "{notes:?}");

    // The server restarts between the red CI and the fix.
    workers.stop().await;
    let mut config = site.config(fast_retries());
    config.agents = agent_config(&second_server);
    let workers = site.workers(1, config).await;
    let queued = site
        .store
        .start_fix_ci(site.project_id, task, "tester")
        .await
        .unwrap();
    workers.engine.wake();
    assert_eq!(queued.number, 2);
    assert_eq!(
        queued.follow_up.as_ref().map(|f| (f.kind, f.pr_number)),
        Some((FollowUpKind::FixCi, number))
    );
    let twice = conflict(
        site.store
            .start_fix_ci(site.project_id, task, "tester")
            .await
            .unwrap_err(),
    );
    assert!(twice.contains("still has an active run"), "{twice}");

    let second = site.wait_end(task).await;
    assert_eq!(second.number, 2);
    assert_eq!(second.status, RunStatus::Succeeded, "{second:?}");
    // The agent's first request of run 2 carries the failing job and its log.
    let asked = second_server
        .scripted_requests()
        .into_iter()
        .find(|r| r.turn == Some(0))
        .expect("run 2's agent asked the model");
    let prompt = asked.body.to_string();
    assert!(prompt.contains(CI_LOG), "{prompt}");
    assert!(
        prompt.contains(&format!("pull request #{number}")),
        "{prompt}"
    );
    assert!(prompt.contains("test (ubuntu) (failure)"), "{prompt}");

    // The same pull request, its branch moved forward on top of run 1's commit.
    let pulls = site.fake.pulls(WIDGET);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(pulls[0].open);
    assert_eq!(second.checkpoint.pr_number, Some(number));
    let new_head = second.checkpoint.pushed_commit.clone().unwrap();
    let branch = pulls[0].head.clone();
    assert_eq!(
        site.fake.branch_sha(WIDGET, &branch),
        Some(new_head.clone())
    );
    let bare = site.fake.bare_path(WIDGET);
    let parent = git(&bare, &["rev-parse", &format!("{new_head}^")]);
    assert_eq!(
        parent.trim(),
        head,
        "pushed on top of the pull request's head"
    );
    assert_eq!(
        git(&bare, &["show", &format!("{new_head}:NOTES.md")]),
        "Said goodbye.\n"
    );
    let events = site.store.events(second.id, 0, 10_000).await.unwrap();
    assert!(
        events.iter().any(|e| e
            .message
            .contains(&format!("fixing the CI of pull request #{number}"))),
        "{events:?}"
    );

    // The follower now follows run 2's push; its green CI is recorded on run 2's change.
    site.fake.set_check_run(
        WIDGET,
        &new_head,
        "test (ubuntu)",
        "completed",
        Some("success"),
    );
    let green = followed_when(&site, task, "ci passing after the fix", |pr| {
        pr.run_id == second.id && pr.ci == CiState::Passing
    })
    .await;
    assert_eq!(green.state, PrState::Open);
    assert_eq!(green.head_sha.as_deref(), Some(new_head.as_str()));
    let change = site.store.change(second.id).await.unwrap().unwrap();
    assert_eq!(change.ci_status.as_deref(), Some("open · ci passing"));

    // Another restart, then the merge: the follower records it, and the project's insights
    // count one pull request opened and merged, two succeeded runs and no retry.
    workers.stop().await;
    let _workers = site.workers(1, site.config(fast_retries())).await;
    site.fake.merge(WIDGET, number);
    let merged = followed_when(&site, task, "the merge", |pr| pr.state == PrState::Merged).await;
    assert!(
        !merged.following,
        "a merged pull request is not followed any more"
    );
    let until = now_millis() + 1;
    let counts = site
        .store
        .outcome_counts(site.project_id, 0, until, None)
        .await
        .unwrap();
    let insights = Insights::new(0, until, counts);
    assert_eq!(
        (
            insights.pull_requests_opened,
            insights.pull_requests_merged,
            insights.merged_in_period
        ),
        (1, 1, 1)
    );
    assert_eq!(insights.merge_rate, Some(1.0));
    assert_eq!(insights.runs_by_end_reason, vec![(EndReason::Succeeded, 2)]);
    assert_eq!(insights.retries, 0, "a fix-CI run is not a retry");
    assert_eq!(site.fake.violations(), Vec::<String>::new());
    site.assert_no_leak(&[task]).await;
}

/// Fails CI on `sha` with one check run.
fn red(site: &Site, sha: &str) {
    site.fake.add_check_run(
        WIDGET,
        sha,
        FakeCheck {
            name: "test (ubuntu)".into(),
            status: "completed".into(),
            conclusion: Some("failure".into()),
            title: "1 test failed".into(),
            log: Some(format!("{CI_LOG}\n")),
            ..FakeCheck::default()
        },
    );
}

#[tokio::test]
async fn the_follower_fixes_ci_once_per_red_head_and_stops_at_the_bound() {
    let site = Site::start(FakeKind::GitHub).await;
    let settings = nightshift_core::ProjectSettings {
        auto_fix_ci_attempts: 2,
        ..site.store.project_settings(site.project_id).await.unwrap()
    };
    site.store
        .set_project_settings(site.project_id, &settings)
        .await
        .unwrap();
    // The agent counts its runs; from its third on, it adds a line to NOTES.md (a change to
    // push); its second changes nothing.
    let marker = site.marker("agent");
    let command = format!(
        "sed -i 's/hello/goodbye/' greeting.txt; echo ran >> {m}; n=$(wc -l < {m}); \
         if [ \"$n\" -ge 3 ]; then echo \"fix $n\" >> NOTES.md; fi",
        m = marker.display()
    );
    let workers = site.workers(1, site.config(fast_retries())).await;
    let task = site.create(&workers, WIDGET, "Say goodbye", &command).await;
    let first = site.wait_end(task).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:?}");
    let h1 = first.checkpoint.pushed_commit.clone().unwrap();

    // CI fails on the head: the follower starts one fix-CI run, which changes nothing.
    red(&site, &h1);
    let second = wait_for("an automatic fix-CI run", async || {
        site.runs(task)
            .await
            .get(1)
            .filter(|r| r.status.is_terminal())
            .cloned()
    })
    .await;
    let follow_up = second.follow_up.clone().unwrap();
    assert_eq!(
        (
            follow_up.kind,
            follow_up.requested_by.as_str(),
            follow_up.head_sha.as_deref()
        ),
        (
            FollowUpKind::FixCi,
            nightshift_core::AUTOMATIC,
            Some(h1.as_str())
        )
    );
    assert_eq!(
        second.end_reason,
        Some(nightshift_core::EndReason::NoChanges)
    );
    // The same red head is not tried again, however often it is polled.
    let pr = followed_when(&site, task, "a poll after run 2", |pr| {
        pr.ci == CiState::Failing && pr.last_polled_at > second.ended_at
    })
    .await;
    followed_when(&site, task, "more polls", |p| p.polls >= pr.polls + 3).await;
    assert_eq!(site.runs(task).await.len(), 2);

    // A person pushes; CI fails on their head too: a second attempt, which pushes a fix.
    let branch = site.fake.pulls(WIDGET)[0].head.clone();
    let h2 = site
        .fake
        .push_commit(WIDGET, &branch, &[("person.txt", "mine\n")]);
    red(&site, &h2);
    let third = wait_for("a second automatic fix-CI run", async || {
        site.runs(task)
            .await
            .get(2)
            .filter(|r| r.status.is_terminal())
            .cloned()
    })
    .await;
    assert_eq!(third.status, RunStatus::Succeeded, "{third:?}");
    assert_eq!(
        third.follow_up.as_ref().and_then(|f| f.head_sha.clone()),
        Some(h2.clone())
    );
    let h3 = third.checkpoint.pushed_commit.clone().unwrap();
    assert_eq!(site.fake.branch_sha(WIDGET, &branch), Some(h3.clone()));

    // Red again: the bound of two automatic attempts is reached; people may still start one.
    red(&site, &h3);
    let pr = followed_when(&site, task, "the fix's head failing", |pr| {
        pr.head_sha.as_deref() == Some(h3.as_str()) && pr.ci == CiState::Failing
    })
    .await;
    followed_when(&site, task, "more polls", |p| p.polls >= pr.polls + 3).await;
    assert_eq!(site.runs(task).await.len(), 3);
    let by_hand = site
        .store
        .start_fix_ci(site.project_id, task, "tester")
        .await
        .unwrap();
    assert_eq!(by_hand.number, 4);
}
