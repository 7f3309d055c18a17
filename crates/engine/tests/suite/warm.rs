//! Warm workspaces through whole confined runs: the first run builds the base (setup and the
//! checks once), later ones start on it through a layer of their own, the change is exactly
//! what the agent did, the base never changes, a lockfile change runs setup again, a failed
//! setup leaves no base, a moved branch builds the next base from the last within the disk
//! budget, and a worker told to use worktrees does.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nightshift_core::{EndReason, EventKind, Phase, RunEvent, RunStatus};
use nightshift_engine::{CheckoutKind, WorkspaceMode};
use nightshift_test_support::git::{RemoteRepo, git};

use super::harness::Harness;

fn text(events: &[RunEvent]) -> String {
    events
        .iter()
        .map(|e| e.message.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The setup commands that started, in any phase.
fn setups(events: &[RunEvent]) -> usize {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Check && e.data["status"] == "running")
        .filter(|e| e.data["stage"] == "setup")
        .count()
}

/// The ready bases under the data directory: their trees.
fn base_trees(data: &Path) -> Vec<PathBuf> {
    let mut trees = Vec::new();
    for project in std::fs::read_dir(data.join("bases")).unwrap().flatten() {
        for repo in std::fs::read_dir(project.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            for base in std::fs::read_dir(repo.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                if base.path().join("base.json").is_file() {
                    trees.push(base.path().join("tree"));
                }
            }
        }
    }
    trees.sort();
    trees
}

/// A repository whose setup installs a dependency directory it does not ignore (and counts
/// its runs there), and whose test needs that install.
fn project() -> RemoteRepo {
    RemoteRepo::with_files(&[
        (
            ".nightshift.toml",
            "[setup]\ncommands = [\"mkdir -p deps && cat requirements.txt > deps/installed && echo once >> deps/setups\"]\n\
             [checks]\ntest = [\"cmp requirements.txt deps/installed && sh test.sh\"]\n",
        ),
        ("requirements.txt", "left-pad==1\n"),
        ("greeting.txt", "hello world\n"),
        ("README.md", "# greeting\n"),
        ("docs/old.md", "moved by the agent\n"),
        ("test.sh", "test -s greeting.txt\n"),
    ])
}

#[tokio::test]
async fn runs_start_warm_on_one_base_and_commit_exactly_what_the_agent_did() {
    let h = Harness::start(1).await;
    let remote = project();
    let base_path = h.data.path().join("bases");
    // The agent deletes, renames, adds and edits — and tries to write into the base itself,
    // which the sandbox does not even show.
    let agent = format!(
        "rm README.md && mv docs/old.md docs/new.md && echo added > added.txt \
         && sed -i 's/hello/goodbye/' greeting.txt \
         && {{ find {b} -path '*/tree/greeting.txt' -exec sh -c 'echo tampered > {{}}' \\; 2>/dev/null || true; }}",
        b = base_path.display()
    );
    let mut logs = Vec::new();
    for title in ["Say goodbye", "Say goodbye again"] {
        let task = h
            .create(&remote.url(), title, &agent, Duration::from_secs(120))
            .await;
        let run = h.wait_end(task).await;
        let events = h.events(&run).await;
        assert_eq!(
            run.status,
            RunStatus::Succeeded,
            "{run:?}\n{}",
            text(&events)
        );
        let head = remote.head(&h.branch_of(task, title)).unwrap();
        let status = git(
            &remote.bare_path(),
            &["diff", "--name-status", "-M", &format!("{head}~1"), &head],
        );
        let mut lines: Vec<&str> = status.lines().collect();
        lines.sort();
        assert_eq!(
            lines,
            [
                "A\tadded.txt",
                "D\tREADME.md",
                "M\tgreeting.txt",
                "R100\tdocs/old.md\tdocs/new.md"
            ],
            "{}",
            text(&events)
        );
        logs.push(events);
    }
    let (first, second) = (&logs[0], &logs[1]);
    assert!(
        text(first).contains("building the warm base of main"),
        "{}",
        text(first)
    );
    assert!(
        !text(second).contains("building the warm base"),
        "{}",
        text(second)
    );
    for events in [first, second] {
        assert!(
            text(events).contains("workspace ready: a copy-on-write layer over the warm base"),
            "{}",
            text(events)
        );
    }
    // Setup ran once, for the base; the second run found its install there.
    assert_eq!((setups(first), setups(second)), (1, 0));
    let trees = base_trees(h.data.path());
    assert_eq!(trees.len(), 1);
    let tree = &trees[0];
    assert_eq!(
        std::fs::read_to_string(tree.join("deps/setups")).unwrap(),
        "once\n"
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("greeting.txt")).unwrap(),
        "hello world\n",
        "a run changed its base"
    );
    assert!(tree.join("README.md").is_file() && tree.join("docs/old.md").is_file());
    assert!(!tree.join("added.txt").exists());
    // Each run's layer went with it.
    assert!(!h.data.path().join("runs/1/layer").exists());
}

#[tokio::test]
async fn a_changed_lockfile_runs_setup_again_in_the_run_s_layer_before_the_checks() {
    let h = Harness::start(1).await;
    let remote = project();
    // Without setup again, `deps/installed` would still hold the base's requirements and the
    // test would fail.
    let agent = "echo right-pad==2 >> requirements.txt";
    let task = h
        .create(
            &remote.url(),
            "Add right-pad",
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
    let again = events
        .iter()
        .find_map(|e| e.data.get("setup_again").cloned())
        .unwrap_or_else(|| panic!("{}", text(&events)));
    assert_eq!(again, serde_json::json!(["requirements.txt"]));
    let validating_setup = events.iter().any(|e| {
        e.phase == Some(Phase::Validating)
            && e.data["stage"] == "setup"
            && e.data["outcome"] == "passed"
    });
    assert!(validating_setup, "{}", text(&events));
    // In the run's layer: the base keeps its own install.
    let tree = &base_trees(h.data.path())[0];
    assert_eq!(
        std::fs::read_to_string(tree.join("deps/installed")).unwrap(),
        "left-pad==1\n"
    );
    let head = remote.head(&h.branch_of(task, "Add right-pad")).unwrap();
    assert_eq!(
        remote.show(&head, "requirements.txt"),
        "left-pad==1\nright-pad==2\n"
    );
}

#[tokio::test]
async fn a_base_whose_setup_fails_is_not_kept_and_the_run_says_why() {
    let h = Harness::start(1).await;
    let remote = RemoteRepo::with_files(&[
        (
            ".nightshift.toml",
            "[setup]\ncommands = [\"mkdir -p deps && nightshift-absent-installer\"]\n\
             [checks]\ntest = [\"true\"]\n",
        ),
        ("greeting.txt", "hello world\n"),
    ]);
    let task = h
        .create(
            &remote.url(),
            "Say goodbye",
            "true",
            Duration::from_secs(120),
        )
        .await;
    let run = h.wait_end(task).await;
    assert_eq!(run.end_reason, Some(EndReason::SetupFailed), "{run:?}");
    assert!(
        run.error.as_deref().unwrap_or_default().contains("setup"),
        "{run:?}"
    );
    assert!(
        base_trees(h.data.path()).is_empty(),
        "a failed base was kept"
    );
    let leftovers: Vec<_> = walk_names(&h.data.path().join("bases"))
        .into_iter()
        .filter(|n| n.starts_with(".building"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn walk_names(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        names.push(entry.file_name().to_string_lossy().into_owned());
        if entry.file_type().is_ok_and(|t| t.is_dir()) && names.len() < 10_000 {
            names.extend(walk_names(&entry.path()));
        }
    }
    names
}

#[tokio::test]
async fn a_moved_branch_builds_the_next_base_from_the_last_and_the_budget_evicts_the_old() {
    let data = tempfile::tempdir().unwrap();
    let h = Harness::start_with(data, 1, |config| config.bases_budget = Some(1)).await;
    let remote = project();
    let agent = "sed -i 's/hello/goodbye/' greeting.txt";
    let task = h
        .create(
            &remote.url(),
            "Say goodbye",
            agent,
            Duration::from_secs(120),
        )
        .await;
    assert_eq!(h.wait_end(task).await.status, RunStatus::Succeeded);
    let first = base_trees(h.data.path());
    assert_eq!(first.len(), 1);

    remote.commit(
        "main",
        &[("test.sh", "test -s greeting.txt && true\n")],
        "Move main",
    );
    let task = h
        .create(
            &remote.url(),
            "Say goodbye later",
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
    let log = text(&events);
    assert!(log.contains("(from the last one, of "), "{log}");
    assert!(
        log.contains(
            "setup skipped: its commands, lockfiles and manifests are those of the last base"
        ),
        "{log}"
    );
    assert_eq!(setups(&events), 0, "{log}");
    assert!(
        log.contains("removed the least recently used warm base"),
        "{log}"
    );
    let now = base_trees(h.data.path());
    assert_eq!(now.len(), 1);
    assert_ne!(now, first);
    // The install came along from the last base.
    assert_eq!(
        std::fs::read_to_string(now[0].join("deps/setups")).unwrap(),
        "once\n"
    );
    assert_eq!(
        std::fs::read_to_string(now[0].join("test.sh")).unwrap(),
        "test -s greeting.txt && true\n"
    );
}

#[tokio::test]
async fn a_worker_told_to_use_worktrees_checks_out_one_per_run_and_says_so() {
    let data = tempfile::tempdir().unwrap();
    let h = Harness::start_with(data, 1, |config| {
        config.workspaces = WorkspaceMode::Worktree;
    })
    .await;
    let status = h.engine.workspaces().await;
    assert_eq!(status.mode, CheckoutKind::Worktree);
    assert!(
        status.detail.contains("workspaces = \"worktree\""),
        "{status:?}"
    );
    let remote = project();
    let agent = "rm README.md && echo added > added.txt";
    let task = h
        .create(&remote.url(), "Tidy up", agent, Duration::from_secs(120))
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
        !text(&events).contains("copy-on-write"),
        "{}",
        text(&events)
    );
    assert_eq!(setups(&events), 1);
    assert!(base_trees(h.data.path()).is_empty());
    let head = remote.head(&h.branch_of(task, "Tidy up")).unwrap();
    let files = git(
        &remote.bare_path(),
        &["show", "--name-status", "--format=", &head],
    );
    assert_eq!(
        files.lines().collect::<Vec<_>>(),
        ["D\tREADME.md", "A\tadded.txt"]
    );
    // Where overlays work, the default is warm.
    let warm = Harness::start(1).await;
    assert_eq!(warm.engine.workspaces().await.mode, CheckoutKind::Overlay);
}
