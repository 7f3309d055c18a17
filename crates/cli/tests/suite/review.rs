//! The test-tampering guard from the command line: a task that "passes" its test by emptying it
//! ends `test_tampering` with nothing pushed; `--allow-test-changes` lets the same change through.

use nightshift_test_support::git::RemoteRepo;

use super::server::Server;

fn repo() -> RemoteRepo {
    RemoteRepo::with_files(&[
        (".nightshift.toml", "[checks]\ntest = [\"sh test.sh\"]\n"),
        ("greeting.txt", "hello world\n"),
        (
            "test.sh",
            "grep -q goodbye greeting.txt || { echo 'FAIL: no goodbye'; exit 1; }\n",
        ),
    ])
}

/// `task create … --wait --json` with a codemod that empties the test instead of the greeting.
fn create(server: &Server, remote: &RemoteRepo, allow: bool) -> (bool, serde_json::Value) {
    let url = remote.url();
    let mut args = vec![
        "task",
        "create",
        "--repo",
        &url,
        "--instructions",
        "Make the test pass",
        "--agent-command",
        "echo 'exit 0' > test.sh",
        "--wait",
        "--json",
    ];
    if allow {
        args.push("--allow-test-changes");
    }
    let out = server.cli(&args);
    (
        out.status.success(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

#[test]
fn an_emptied_test_ends_test_tampering_unless_the_task_allows_it() {
    let remote = repo();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), 1);

    let (ok, task) = create(&server, &remote, false);
    assert!(!ok, "a tampered run must not exit 0: {task}");
    assert_eq!(task["allow_test_changes"], false);
    let run = &task["runs"][0];
    assert_eq!(run["end_reason"], "test_tampering", "{task}");
    assert_eq!(run["failed_phase"], "validating");
    assert!(
        run["error"].as_str().unwrap().contains("test.sh:1"),
        "{run}"
    );
    assert_eq!(remote.branches(), vec!["main"]);
    let logs = server.cli(&["task", "logs", &task["id"].as_i64().unwrap().to_string()]);
    let logs = String::from_utf8_lossy(&logs.stdout);
    assert!(
        logs.contains("`test.sh` (a script the checks run) edited"),
        "{logs}"
    );

    let (ok, task) = create(&server, &remote, true);
    assert!(ok, "{task}");
    assert_eq!(task["allow_test_changes"], true);
    assert_eq!(task["runs"][0]["end_reason"], "succeeded", "{task}");
    assert_eq!(remote.branches().len(), 2, "{:?}", remote.branches());
}
