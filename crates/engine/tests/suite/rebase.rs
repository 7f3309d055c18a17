//! Rebase runs: the base branch moves under an open pull request. Without a conflict the branch
//! is replayed, checked again and pushed with a lease (no agent); with one, the real agent CLI
//! (against the scripted model server) resolves it; a person's push in between is never
//! overwritten. The follower starts them by itself when the project says so.

use nightshift_core::{
    AUTOMATIC, AgentKind, AgentSpec, EndReason, FollowUpKind, Mergeability, PrState,
    ProjectSettings, RebasePolicy, RunStatus,
};
use nightshift_store::StoreError;
use nightshift_test_support::forge_fake::FakeKind;
use nightshift_test_support::git::git;
use nightshift_test_support::model_server::{ModelServer, Turn};
use serde_json::json;

use super::agents::{MODEL, agent_config, at, read_then_edit};
use super::follow::followed_when;
use super::forge_site::{Site, WIDGET, fast_retries, wait_for};

async fn set_policy(site: &Site, rebase: RebasePolicy, auto_fix_ci_attempts: u32) {
    let settings = ProjectSettings {
        rebase,
        auto_fix_ci_attempts,
        ..site.store.project_settings(site.project_id).await.unwrap()
    };
    site.store
        .set_project_settings(site.project_id, &settings)
        .await
        .unwrap();
}

async fn events_of(site: &Site, run: i64) -> String {
    let events = site.store.events(run, 0, 10_000).await.unwrap();
    events
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_base_that_moved_cleanly_is_replayed_checked_and_pushed_by_the_follower_on_github() {
    clean_rebase(FakeKind::GitHub).await;
}

#[tokio::test]
async fn a_base_that_moved_cleanly_is_replayed_checked_and_pushed_by_the_follower_on_gitlab() {
    clean_rebase(FakeKind::GitLab).await;
}

#[tokio::test]
async fn a_base_that_moved_cleanly_is_replayed_checked_and_pushed_by_the_follower_on_gitea() {
    clean_rebase(FakeKind::Gitea).await;
}

/// Each forge says in its own words that the pull request fell behind; the follower rebases it.
async fn clean_rebase(kind: FakeKind) {
    let site = Site::start(kind).await;
    set_policy(&site, RebasePolicy::Behind, 0).await;
    let workers = site.workers(1, site.config(fast_retries())).await;
    let task = site
        .create(&workers, WIDGET, "Say goodbye", &site.goodbye("agent"))
        .await;
    let first = site.wait_end(task).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:?}");
    let number = first.checkpoint.pr_number.expect("a pull request");
    let old_head = first.checkpoint.pushed_commit.clone().unwrap();
    followed_when(&site, task, "up to date", |pr| {
        pr.behind_base == Some(false)
    })
    .await;

    // Someone adds a file to main: the pull request falls behind, without a conflict.
    let main = site
        .fake
        .push_commit(WIDGET, "main", &[("README.md", "widget\n")]);
    let rebased = wait_for("a rebase run", async || {
        let runs = site.runs(task).await;
        runs.get(1).filter(|r| r.status.is_terminal()).cloned()
    })
    .await;
    assert_eq!(rebased.status, RunStatus::Succeeded, "{rebased:?}");
    let follow_up = rebased.follow_up.clone().unwrap();
    assert_eq!(follow_up.kind, FollowUpKind::Rebase);
    assert_eq!(follow_up.requested_by, AUTOMATIC);
    assert_eq!(follow_up.head_sha.as_deref(), Some(old_head.as_str()));
    // No agent: the command agent leaves a line each time it runs.
    let ran = std::fs::read_to_string(site.marker("agent")).unwrap();
    assert_eq!(ran.lines().count(), 1, "the agent ran again");
    let log = events_of(&site, rebased.id).await;
    assert!(log.contains("without conflicts"), "{log}");
    assert!(log.contains("no agent needed"), "{log}");
    assert!(
        log.contains("all 1 checks passed on the rebased branch"),
        "{log}"
    );

    // The same pull request, its branch now on top of main, the change kept.
    let pulls = site.fake.pulls(WIDGET);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(rebased.checkpoint.pr_number, Some(number));
    let head = rebased.checkpoint.pushed_commit.clone().unwrap();
    assert_ne!(head, old_head);
    assert_eq!(
        site.fake.branch_sha(WIDGET, &pulls[0].head),
        Some(head.clone())
    );
    let bare = site.fake.bare_path(WIDGET);
    assert_eq!(git(&bare, &["rev-parse", &format!("{head}^")]).trim(), main);
    assert_eq!(
        git(&bare, &["show", &format!("{head}:greeting.txt")]),
        "goodbye world\n"
    );
    assert_eq!(
        git(&bare, &["show", &format!("{head}:README.md")]),
        "widget\n"
    );
    let change = site.store.change(rebased.id).await.unwrap().unwrap();
    assert_eq!(change.files_changed, vec!["greeting.txt".to_string()]);

    // Up to date again: the follower starts nothing more.
    let pr = followed_when(&site, task, "the rebased head, up to date", |pr| {
        pr.head_sha.as_deref() == Some(head.as_str()) && pr.behind_base == Some(false)
    })
    .await;
    followed_when(&site, task, "more polls", |p| p.polls >= pr.polls + 3).await;
    assert_eq!(site.runs(task).await.len(), 2);
    assert_eq!(site.fake.violations(), Vec::<String>::new());
    site.assert_no_leak(&[task]).await;
}

#[tokio::test]
async fn a_conflict_becomes_a_run_in_which_the_agent_resolves_it() {
    let site = Site::start(FakeKind::GitHub).await;
    set_policy(&site, RebasePolicy::Off, 0).await;
    let ws = |run: u32| match run {
        1 => site.data.path().join("bases/workspace"),
        n => site.data.path().join(format!("runs/{n}/work")),
    };
    let mut first_script = read_then_edit(&ws(1), "hello", "goodbye");
    first_script.push(Turn::text("Said goodbye."));
    let first_server = ModelServer::start(first_script).await.unwrap();
    let second_server = ModelServer::start(vec![
        // A first round that leaves the markers where they are goes back to the agent.
        Turn::text("Looked at the conflict."),
        // Claude Code writes a file it has read.
        Turn::tool("Read", json!({"file_path": at(&ws(2), "greeting.txt")})),
        Turn::tool(
            "Write",
            json!({"file_path": at(&ws(2), "greeting.txt"), "content": "goodbye there, world\n"}),
        ),
        Turn::text("Kept main's greeting and said goodbye in it."),
    ])
    .await
    .unwrap();
    let mut config = site.config(fast_retries());
    config.agents = agent_config(&first_server);
    let workers = site.workers(1, config).await;
    let agent = AgentSpec {
        kind: AgentKind::ClaudeCode,
        command: None,
        model: Some(MODEL.into()),
        args: vec![],
    };
    let task = site
        .create_with_agent(&workers, WIDGET, "Say goodbye", agent)
        .await;
    let first = site.wait_end(task).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:?}");
    let number = first.checkpoint.pr_number.unwrap();

    // main changes the same line: the pull request conflicts.
    let main = site
        .fake
        .push_commit(WIDGET, "main", &[("greeting.txt", "hello there, world\n")]);
    followed_when(&site, task, "conflicting", |pr| {
        pr.mergeable == Mergeability::Conflicting
    })
    .await;
    // The task's creator is told.
    let notes = site
        .store
        .notifications(site.project_id, "tester", true, 10)
        .await
        .unwrap();
    assert!(notes.iter().any(|n| n.kind == "pr_conflicts"), "{notes:?}");
    workers.stop().await;
    let mut config = site.config(fast_retries());
    config.agents = agent_config(&second_server);
    let workers = site.workers(1, config).await;
    let queued = site
        .store
        .start_rebase(site.project_id, task, "tester")
        .await
        .unwrap();
    workers.engine.wake();
    assert_eq!(queued.number, 2);
    let second = site.wait_end(task).await;
    assert_eq!(second.status, RunStatus::Succeeded, "{second:?}");
    let log = events_of(&site, second.id).await;
    assert!(log.contains("conflicts in greeting.txt"), "{log}");

    // The agent was told what conflicts, and what main did meanwhile.
    let asked = second_server
        .scripted_requests()
        .into_iter()
        .find(|r| r.turn == Some(0))
        .expect("run 2's agent asked the model");
    let prompt = asked.body.to_string();
    assert!(
        prompt.contains(&format!("pull request #{number}")),
        "{prompt}"
    );
    assert!(
        prompt.contains("Files with conflicts:\\n- greeting.txt"),
        "{prompt}"
    );
    assert!(prompt.contains("a person's commit"), "{prompt}");
    let second_round = second_server
        .scripted_requests()
        .into_iter()
        .find(|r| r.turn == Some(1))
        .expect("a second round");
    let told = second_round.body.to_string();
    assert!(
        told.contains("Conflict markers are still in the workspace at greeting.txt:1"),
        "{told:.3000}"
    );
    let change = site.store.change(second.id).await.unwrap().unwrap();
    assert_eq!(change.rounds, 2, "{change:?}");

    // The same pull request, one commit on top of main with the resolution.
    let pulls = site.fake.pulls(WIDGET);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert!(pulls[0].open);
    let head = second.checkpoint.pushed_commit.clone().unwrap();
    assert_eq!(
        site.fake.branch_sha(WIDGET, &pulls[0].head),
        Some(head.clone())
    );
    let bare = site.fake.bare_path(WIDGET);
    assert_eq!(git(&bare, &["rev-parse", &format!("{head}^")]).trim(), main);
    assert_eq!(
        git(&bare, &["show", &format!("{head}:greeting.txt")]),
        "goodbye there, world\n"
    );
    assert!(
        change.checks.iter().any(|c| c.command == "sh test.sh"),
        "{change:?}"
    );
    followed_when(&site, task, "mergeable again", |pr| {
        pr.head_sha.as_deref() == Some(head.as_str()) && pr.mergeable == Mergeability::Clean
    })
    .await;
    assert_eq!(site.fake.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn a_persons_force_push_during_a_rebase_is_kept_and_the_run_says_so() {
    let site = Site::start(FakeKind::GitHub).await;
    set_policy(&site, RebasePolicy::Off, 0).await;
    let workers = site.workers(1, site.config(fast_retries())).await;
    let task = site
        .create(&workers, WIDGET, "Say goodbye", &site.goodbye("agent"))
        .await;
    let first = site.wait_end(task).await;
    assert_eq!(first.status, RunStatus::Succeeded, "{first:?}");
    let branch = site.fake.pulls(WIDGET)[0].head.clone();

    // main moves; its test stops, once, while the marker says so, so that a person can push
    // to the branch after the rebase run checked it out and before it pushes.
    let (hold, waiting, go) = (
        site.marker("hold"),
        site.marker("waiting"),
        site.marker("go"),
    );
    let test = format!(
        "if [ -f {hold} ]; then rm {hold}; touch {waiting}; while [ ! -f {go} ]; do sleep 0.05; done; fi\n\
         grep -q goodbye greeting.txt || {{ echo 'greeting does not say goodbye'; exit 1; }}\n",
        hold = hold.display(),
        waiting = waiting.display(),
        go = go.display(),
    );
    std::fs::write(&hold, "").unwrap();
    site.fake.push_commit(
        WIDGET,
        "main",
        &[("test.sh", test.as_str()), ("README.md", "widget\n")],
    );
    let queued = site
        .store
        .start_rebase(site.project_id, task, "tester")
        .await
        .unwrap();
    workers.engine.wake();
    let twice = site
        .store
        .start_rebase(site.project_id, task, "tester")
        .await
        .unwrap_err();
    assert!(
        matches!(&twice, StoreError::Conflict(m) if m.contains("still has an active run")),
        "{twice}"
    );
    wait_for("the rebase run's checks", async || {
        waiting.exists().then_some(())
    })
    .await;
    // A person rewrites the branch with a force-push.
    let theirs = force_push(&site, &branch);
    std::fs::write(&go, "").unwrap();

    let second = site.wait_end(task).await;
    assert_eq!(second.id, queued.id);
    assert_eq!(second.status, RunStatus::Failed, "{second:?}");
    assert_eq!(second.end_reason, Some(EndReason::Conflict));
    let error = second.error.clone().unwrap_or_default();
    assert!(error.contains("someone else pushed"), "{error}");
    assert_eq!(site.fake.branch_sha(WIDGET, &branch), Some(theirs));
    let pulls = site.fake.pulls(WIDGET);
    assert_eq!(pulls.len(), 1);

    // Merged: nothing is left to rebase.
    site.fake.merge(WIDGET, pulls[0].number);
    followed_when(&site, task, "the merge", |pr| pr.state == PrState::Merged).await;
    let merged = site
        .store
        .start_rebase(site.project_id, task, "tester")
        .await
        .unwrap_err();
    assert!(
        matches!(&merged, StoreError::NothingToFix(m) if m.contains("is merged")),
        "{merged}"
    );
}

/// A person's commit that replaces the branch's history (a force-push).
fn force_push(site: &Site, branch: &str) -> String {
    let bare = site.fake.bare_path(WIDGET);
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("person");
    git(
        work.path(),
        &["clone", "--quiet", &bare.to_string_lossy(), "person"],
    );
    git(&dir, &["checkout", "--quiet", "-B", "mine", "origin/main"]);
    std::fs::write(dir.join("greeting.txt"), "goodbye, says a person\n").unwrap();
    git(&dir, &["commit", "--quiet", "-am", "a person's own take"]);
    git(
        &dir,
        &[
            "push",
            "--quiet",
            "--force",
            "origin",
            &format!("HEAD:refs/heads/{branch}"),
        ],
    );
    git(&dir, &["rev-parse", "HEAD"]).trim().to_string()
}
