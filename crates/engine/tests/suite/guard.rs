//! The test-tampering guard through the engine, with the real Claude Code against the scripted
//! model server: a failing test "fixed" by deleting it, skipping it or silencing the linter goes
//! back to the agent; persisted, it ends the run `test_tampering` with nothing pushed; undone,
//! the run succeeds; allowed by the task, it is pushed and listed in the pull request.

use std::path::Path;
use std::time::Duration;

use nightshift_core::{
    AgentKind, AgentSpec, Budget, CheckOutcome, EndReason, GeneratedChange, GuardKind, Phase, Run,
    RunStatus,
};
use nightshift_engine::{EngineConfig, TaskRequest};
use nightshift_forge::{ForgeConfig, ForgeEntry, ForgeKind, Secret};
use nightshift_test_support::forge_fake::{Access, FakeKind, ForgeFake};
use nightshift_test_support::git::{RemoteRepo, git};
use nightshift_test_support::model_server::{ModelServer, Turn};
use serde_json::{Value, json};

use super::agents::{MODEL, agent_config, at};
use super::harness::{Harness, request};

const CHECKS: &str =
    "[checks]\nlint = [\"sh lint.sh\"]\ntest = [\"python3 -m unittest discover -s tests\"]\n";
const LINT: &str = "if grep -n 'print(' greeting.py | grep -v '# noqa'; then\n  echo 'lint: print() left in greeting.py'\n  exit 1\nfi\n";
const GREETING_TEST: &str = "import unittest\n\nfrom greeting import greet\n\n\nclass GreetingTest(unittest.TestCase):\n    def test_says_hello(self):\n        self.assertEqual(greet(), \"hello\")\n";
const OTHER_TEST: &str = "import unittest\n\n\nclass OtherTest(unittest.TestCase):\n    def test_truth(self):\n        self.assertTrue(True)\n";
const TEST_FILE: &str = "tests/test_greeting.py";

/// A Python project whose greeting test fails on the base (`helo`), with a lint that wants no
/// `print()` unless it says `# noqa`.
fn project(greeting: &str) -> Vec<(&'static str, String)> {
    vec![
        (".nightshift.toml", CHECKS.to_string()),
        ("lint.sh", LINT.to_string()),
        ("greeting.py", greeting.to_string()),
        (TEST_FILE, GREETING_TEST.to_string()),
        ("tests/test_other.py", OTHER_TEST.to_string()),
    ]
}

const MISSPELT: &str = "def greet():\n    return \"helo\"\n";

fn files<'a>(project: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    project.iter().map(|(p, t)| (*p, t.as_str())).collect()
}

struct GuardRig {
    h: Harness,
    server: ModelServer,
}

impl GuardRig {
    async fn start(
        script: impl FnOnce(&Path) -> Vec<Turn>,
        configure: impl FnOnce(&mut EngineConfig),
    ) -> GuardRig {
        let data = tempfile::tempdir().unwrap();
        let server = ModelServer::start(script(&data.path().join("bases/workspace")))
            .await
            .unwrap();
        let agents = agent_config(&server);
        let h = Harness::start_with(data, 1, |config| {
            config.agents = agents;
            config.verification_rounds = 1;
            configure(config);
        })
        .await;
        GuardRig { h, server }
    }

    async fn run(&self, repo: &str, instructions: &str, allow_test_changes: bool) -> Run {
        let agent = AgentSpec {
            kind: AgentKind::ClaudeCode,
            command: None,
            model: Some(MODEL.into()),
            args: vec![],
        };
        let request = TaskRequest {
            allow_test_changes: Some(allow_test_changes),
            ..request(
                repo,
                instructions,
                agent,
                Budget::default(),
                Duration::from_secs(300),
            )
        };
        let task = self.h.submit(request).await;
        let run = self.h.wait_end(task).await;
        assert_eq!(run.id, 1, "the script was written for run 1's workspace");
        run
    }

    async fn change(&self, run: &Run) -> GeneratedChange {
        self.h.store.change(run.id).await.unwrap().unwrap()
    }

    /// The first request of the second round: the resumed session with what it was sent back.
    fn second_round_request(&self, first_turn: usize) -> String {
        self.server
            .scripted_requests()
            .into_iter()
            .find(|r| r.turn == Some(first_turn))
            .expect("a request of the second round")
            .body
            .to_string()
    }

    /// The guard's outcome per round, from the run's events: (round, findings' kinds, allowed).
    async fn guard_events(&self, run: &Run) -> Vec<(u64, Vec<String>, bool)> {
        self.h
            .events(run)
            .await
            .iter()
            .filter_map(|e| e.data.get("guard"))
            .map(|g| {
                let kinds = g["findings"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| {
                        format!(
                            "{} {}:{}",
                            f["kind"].as_str().unwrap(),
                            f["path"].as_str().unwrap(),
                            f["line"]
                        )
                    })
                    .collect();
                (
                    g["round"].as_u64().unwrap(),
                    kinds,
                    g["allowed"] == Value::Bool(true),
                )
            })
            .collect()
    }
}

fn guard_checks(change: &GeneratedChange) -> Vec<(u32, CheckOutcome)> {
    change
        .checks
        .iter()
        .filter(|c| c.stage == "guard")
        .map(|c| (c.round, c.outcome))
        .collect()
}

/// (a) The failing test deleted, twice: the second round is told what the guard found; the run
/// ends `test_tampering` and nothing is pushed.
#[tokio::test]
async fn a_deleted_test_goes_back_to_the_agent_and_persisting_ends_test_tampering() {
    let remote = RemoteRepo::with_files(&files(&project(MISSPELT)));
    let rig = GuardRig::start(
        |_| {
            vec![
                Turn::tool("Bash", json!({"command": format!("rm {TEST_FILE}")})),
                Turn::text("Removed the failing test."),
                Turn::text("The test was wrong, so it stays removed."),
            ]
        },
        |_| {},
    )
    .await;
    let run = rig.run(&remote.url(), "Make the tests pass", false).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(run.end_reason, Some(EndReason::TestTampering), "{run:?}");
    assert_eq!(run.failed_phase, Some(Phase::Validating));
    let error = run.error.clone().unwrap();
    assert!(
        error.contains("weakens the checks") && error.contains("tests/test_greeting.py:1"),
        "{error}"
    );
    assert!(
        remote.branches() == vec!["main".to_string()],
        "pushed: {:?}",
        remote.branches()
    );

    let sent_back = rig.second_round_request(2);
    assert!(
        sent_back.contains("test-tampering guard"),
        "{sent_back:.3000}"
    );
    assert!(
        sent_back.contains("tests/test_greeting.py:1: test file removed: deleted (1 test)"),
        "{sent_back:.3000}"
    );

    let expected = vec!["test_file_removed tests/test_greeting.py:1".to_string()];
    assert_eq!(
        rig.guard_events(&run).await,
        vec![(1, expected.clone(), false), (2, expected, false)]
    );
    let change = rig.change(&run).await;
    assert_eq!(change.rounds, 2);
    assert_eq!(
        guard_checks(&change),
        vec![(1, CheckOutcome::Failed), (2, CheckOutcome::Failed)]
    );
    assert_eq!(change.guard.len(), 1);
    assert_eq!(change.guard[0].kind, GuardKind::TestFileRemoved);
    assert!(change.diff.contains("deleted file"), "{}", change.diff);
}

/// (b) A skip marker on the failing test: sent back, the agent restores the test and fixes the
/// code, and the run succeeds with the fix pushed.
#[tokio::test]
async fn a_skipped_test_restored_with_the_code_fixed_succeeds() {
    const FIXED: &str = "Restored the test and fixed the greeting.";
    let remote = RemoteRepo::with_files(&files(&project(MISSPELT)));
    let rig = GuardRig::start(
        |ws| {
            let test = at(ws, TEST_FILE);
            let greeting = at(ws, "greeting.py");
            vec![
                Turn::tool("Read", json!({"file_path": test})),
                Turn::tool(
                    "Edit",
                    json!({"file_path": test, "old_string": "    def test_says_hello", "new_string": "    @unittest.skip(\"flaky\")\n    def test_says_hello"}),
                ),
                Turn::text("Skipped the flaky test."),
                Turn::tool("Read", json!({"file_path": test})),
                Turn::tool(
                    "Edit",
                    json!({"file_path": test, "old_string": "    @unittest.skip(\"flaky\")\n", "new_string": ""}),
                ),
                Turn::tool("Read", json!({"file_path": greeting})),
                Turn::tool("Edit", json!({"file_path": greeting, "old_string": "helo", "new_string": "hello"})),
                Turn::text(FIXED),
            ]
        },
        |_| {},
    )
    .await;
    let run = rig.run(&remote.url(), "Make the tests pass", false).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let branch = rig.h.branch_of(run.task_id, "Make the tests pass");
    let head = remote.head(&branch).expect("branch pushed");
    assert_eq!(remote.show(&head, TEST_FILE), GREETING_TEST);
    assert_eq!(
        remote.show(&head, "greeting.py"),
        "def greet():\n    return \"hello\"\n"
    );

    let sent_back = rig.second_round_request(3);
    assert!(
        sent_back.contains("tests/test_greeting.py:7: skip added"),
        "{sent_back:.3000}"
    );
    assert_eq!(
        rig.guard_events(&run).await,
        vec![
            (
                1,
                vec!["skip_added tests/test_greeting.py:7".to_string()],
                false
            ),
            (2, vec![], false)
        ]
    );
    let change = rig.change(&run).await;
    assert_eq!(change.rounds, 2);
    assert!(change.guard.is_empty(), "{:?}", change.guard);
    assert_eq!(
        guard_checks(&change),
        vec![(1, CheckOutcome::Failed), (2, CheckOutcome::Passed)]
    );
    assert!(change.summary.unwrap().contains(FIXED));
}

/// (c) The linter silenced with `# noqa`, twice: `test_tampering`, nothing pushed.
#[tokio::test]
async fn a_silenced_linter_goes_back_and_persisting_ends_test_tampering() {
    let noisy = "def greet():\n    print(\"debug\")\n    return \"hello\"\n";
    let remote = RemoteRepo::with_files(&files(&project(noisy)));
    let rig = GuardRig::start(
        |ws| {
            let greeting = at(ws, "greeting.py");
            vec![
                Turn::tool("Read", json!({"file_path": greeting})),
                Turn::tool(
                    "Edit",
                    json!({"file_path": greeting, "old_string": "print(\"debug\")", "new_string": "print(\"debug\")  # noqa"}),
                ),
                Turn::text("Silenced the lint."),
                Turn::text("The print is needed."),
            ]
        },
        |_| {},
    )
    .await;
    let run = rig.run(&remote.url(), "Make the lint pass", false).await;
    assert_eq!(run.end_reason, Some(EndReason::TestTampering), "{run:?}");
    assert!(
        remote.branches() == vec!["main".to_string()],
        "pushed: {:?}",
        remote.branches()
    );
    let sent_back = rig.second_round_request(3);
    assert!(
        sent_back.contains("greeting.py:2: suppression added: `# noqa` added"),
        "{sent_back:.3000}"
    );
    let expected = vec!["suppression_added greeting.py:2".to_string()];
    assert_eq!(
        rig.guard_events(&run).await,
        vec![(1, expected.clone(), false), (2, expected, false)]
    );
}

/// (c) The linter silenced with `eslint-disable` in JavaScript: sent back, the agent removes the
/// suppression with what it silenced, and the run succeeds.
#[tokio::test]
async fn a_silenced_eslint_rule_undone_in_round_two_succeeds() {
    const APP: &str = "export function greet() {\n  console.log('debug');\n  return 'hello';\n}\n";
    const CLEAN: &str = "export function greet() {\n  return 'hello';\n}\n";
    let remote = RemoteRepo::with_files(&[
        (".nightshift.toml", "[checks]\nlint = [\"sh lint.sh\"]\n"),
        (
            "lint.sh",
            "if grep -q 'console.log' app.js && ! grep -q 'eslint-disable' app.js; then\n  echo 'lint: console.log left in app.js'\n  exit 1\nfi\n",
        ),
        ("app.js", APP),
    ]);
    let rig = GuardRig::start(
        |ws| {
            let app = at(ws, "app.js");
            vec![
                Turn::tool("Read", json!({"file_path": app})),
                Turn::tool(
                    "Edit",
                    json!({"file_path": app, "old_string": "  console.log", "new_string": "  // eslint-disable-next-line no-console\n  console.log"}),
                ),
                Turn::text("Silenced the lint."),
                Turn::tool("Read", json!({"file_path": app})),
                Turn::tool(
                    "Edit",
                    json!({"file_path": app, "old_string": "  // eslint-disable-next-line no-console\n  console.log('debug');\n", "new_string": ""}),
                ),
                Turn::text("Removed the debug output instead."),
            ]
        },
        |_| {},
    )
    .await;
    let run = rig.run(&remote.url(), "Make the lint pass", false).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let head = remote
        .head(&rig.h.branch_of(run.task_id, "Make the lint pass"))
        .expect("branch pushed");
    assert_eq!(remote.show(&head, "app.js"), CLEAN);
    let sent_back = rig.second_round_request(3);
    assert!(
        sent_back.contains("app.js:2: suppression added"),
        "{sent_back:.3000}"
    );
    assert_eq!(
        rig.guard_events(&run).await,
        vec![
            (1, vec!["suppression_added app.js:2".to_string()], false),
            (2, vec![], false)
        ]
    );
}

/// What the base already had — a skipped test, a silenced line — is not the change's doing,
/// even where the change rewords those very lines.
#[tokio::test]
async fn what_the_base_already_skips_and_silences_is_not_the_agents() {
    let skipping = GREETING_TEST.replace(
        "    def test_says_hello",
        "    @unittest.skip(\"slow\")\n    def test_slow(self):\n        pass\n\n    def test_says_hello",
    );
    let noisy = "def greet():\n    print(\"debug\")  # noqa\n    return \"helo\"\n";
    let mut files = project(noisy);
    files.retain(|(p, _)| *p != TEST_FILE);
    files.push((TEST_FILE, skipping));
    let remote = RemoteRepo::with_files(&self::files(&files));
    let rig = GuardRig::start(|_| vec![], |_| {}).await;
    let task = rig
        .h
        .create(
            &remote.url(),
            "Fix the greeting",
            // Rewords the skipped and the silenced lines too: reworded, they are not new.
            "sed -i 's/helo/hello/; s/\"debug\"/\"debugging\"/; s/\"slow\"/\"too slow\"/' greeting.py tests/test_greeting.py",
            Duration::from_secs(120),
        )
        .await;
    let run = rig.h.wait_end(task).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(rig.guard_events(&run).await, vec![(1, vec![], false)]);
    let change = rig.change(&run).await;
    assert!(change.guard.is_empty(), "{:?}", change.guard);
    assert_eq!(guard_checks(&change), vec![(1, CheckOutcome::Passed)]);
}

/// (a) with `allow_test_changes`: the deletion is pushed and the pull request lists it.
#[tokio::test]
async fn a_deletion_the_task_allows_is_pushed_and_listed_in_the_pull_request() {
    const REPO: &str = "acme/greeting";
    const TOKEN: &str = "ghp_guardTestToken0123456789";
    let fake = ForgeFake::start(FakeKind::GitHub).await.unwrap();
    fake.add_user("nightshift-bot", TOKEN);
    fake.add_repo(REPO).unwrap();
    fake.grant(REPO, "nightshift-bot", Access::Write);
    seed(&fake.bare_path(REPO), &project(MISSPELT));
    let forges = ForgeConfig {
        entries: vec![ForgeEntry {
            kind: ForgeKind::Github,
            host: fake.host(),
            api_url: Some(fake.api_url()),
            token: Some(Secret::new(TOKEN)),
            app: None,
            username: None,
        }],
        ..ForgeConfig::default()
    };
    let rig = GuardRig::start(
        |_| {
            vec![
                Turn::tool("Bash", json!({"command": format!("rm {TEST_FILE}")})),
                Turn::text("Removed the obsolete greeting test, as asked."),
            ]
        },
        |config| config.forges = forges,
    )
    .await;
    let run = rig
        .run(
            &fake.repo_url(REPO),
            "Remove the obsolete greeting test",
            true,
        )
        .await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let pulls = fake.pulls(REPO);
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    let body = &pulls[0].body;
    assert!(body.contains("## Test changes"), "{body}");
    assert!(
        body.contains("- `tests/test_greeting.py:1` test file removed: deleted (1 test)"),
        "{body}"
    );
    assert!(
        body.contains("| guard | `test-tampering guard` | ✅ passed |"),
        "{body}"
    );
    let branch = rig
        .h
        .branch_of(run.task_id, "Remove the obsolete greeting test");
    let head = fake.branch_sha(REPO, &branch).expect("branch pushed");
    let listed = git(
        &fake.bare_path(REPO),
        &["ls-tree", "-r", "--name-only", &head],
    );
    assert!(
        !listed.contains(TEST_FILE) && listed.contains("tests/test_other.py"),
        "{listed}"
    );
    assert_eq!(
        rig.guard_events(&run).await,
        vec![(
            1,
            vec!["test_file_removed tests/test_greeting.py:1".to_string()],
            true
        )]
    );
    let change = rig.change(&run).await;
    assert_eq!(change.rounds, 1);
    assert_eq!(change.guard.len(), 1);
}

/// Gives a fake forge's bare repository the project's files on `main`.
fn seed(bare: &Path, files: &[(&'static str, String)]) {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("seed");
    git(
        work.path(),
        &["clone", "--quiet", &bare.to_string_lossy(), "seed"],
    );
    for (path, text) in files {
        let file = dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, text).unwrap();
    }
    git(&dir, &["add", "--all"]);
    git(&dir, &["commit", "--quiet", "-m", "greeting and its tests"]);
    git(&dir, &["push", "--quiet", "origin", "HEAD:main"]);
}
