use nightshift_test_support::git::RemoteRepo;

use super::server::Server;

const CHECKED: &str = "[checks]\nformat = [\"sh fmt.sh\"]\ntest = [\"sh test.sh\"]\n";

fn checked_repo() -> RemoteRepo {
    RemoteRepo::with_files(&[
        (".nightshift.toml", CHECKED),
        ("greeting.txt", "hello world\n"),
        (
            "fmt.sh",
            "tr -s ' ' < greeting.txt > .f && mv .f greeting.txt\n",
        ),
        (
            "test.sh",
            "grep -q goodbye greeting.txt || { echo 'FAIL: no goodbye'; exit 1; }\n",
        ),
    ])
}

#[test]
fn create_wait_show_list_and_logs() {
    let remote = checked_repo();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), 1);
    let out = server.cli(&[
        "task",
        "create",
        "--repo",
        &remote.url(),
        "--instructions",
        "Say goodbye",
        "--agent-command",
        "sed -i 's/hello/goodbye   /' greeting.txt",
        "--timeout",
        "10m",
        "--wait",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = task["id"].as_i64().unwrap();
    assert_eq!(task["status"], "succeeded");
    assert_eq!(task["timeout"], "10m");
    let run = &task["runs"][0];
    assert_eq!(run["number"], 1);
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["end_reason"], "succeeded");
    assert_eq!(run["progress"], 100);
    assert_eq!(run["phase"], "publishing");
    let branch = run["branch"].as_str().unwrap();
    assert_eq!(branch, format!("nightshift/{id}-say-goodbye"));
    let commit = run["commit"].as_str().unwrap();
    assert_eq!(remote.head(branch).as_deref(), Some(commit));
    assert_eq!(remote.show(commit, "greeting.txt"), "goodbye world\n");

    let shown = server.json(&["task", "show", &id.to_string(), "--json"]);
    assert_eq!(shown["runs"], task["runs"]);
    let listed = server.json(&["task", "list", "--status", "succeeded", "--json"]);
    assert_eq!(listed[0]["id"], id);
    let none = server.json(&["task", "list", "--status", "failed", "--json"]);
    assert_eq!(none.as_array().unwrap().len(), 0);
    let by_repo = server.json(&["task", "list", "--repo", &remote.url(), "--json"]);
    assert_eq!(by_repo.as_array().unwrap().len(), 1);

    let logs = server.cli(&["task", "logs", &id.to_string()]);
    let text = String::from_utf8_lossy(&logs.stdout);
    for phase in ["preparing", "agent", "validating", "publishing"] {
        assert!(text.contains(phase), "{phase} missing from logs:\n{text}");
    }
    assert!(text.contains("test `sh test.sh` passed"), "{text}");
    let followed = server.cli(&["task", "logs", &id.to_string(), "--follow"]);
    let text = String::from_utf8_lossy(&followed.stdout);
    assert!(
        text.contains("run 1 ended: succeeded (succeeded)"),
        "{text}"
    );
}

#[test]
fn a_failed_wait_exits_non_zero_and_retry_makes_run_two() {
    let remote = checked_repo();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), 1);
    let out = server.cli(&[
        "task",
        "create",
        "--repo",
        &remote.url(),
        "--instructions",
        "Break it",
        "--agent-command",
        "echo broken > greeting.txt",
        "--wait",
        "--json",
    ]);
    assert!(!out.status.success(), "a failed run must not exit 0");
    let task: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["runs"][0]["end_reason"], "checks_failed");
    assert_eq!(task["runs"][0]["failed_phase"], "validating");
    assert!(task["runs"][0]["branch"].is_null(), "nothing pushed");
    assert_eq!(remote.branches(), vec!["main"]);
    let id = task["id"].as_i64().unwrap().to_string();
    let logs = server.cli(&["task", "logs", &id]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("FAIL: no goodbye"));

    let retried = server.cli(&["task", "retry", &id, "--wait", "--json"]);
    let task: serde_json::Value = serde_json::from_slice(&retried.stdout).unwrap();
    assert_eq!(task["runs"].as_array().unwrap().len(), 2);
    assert_eq!(task["runs"][1]["number"], 2);
    assert_eq!(task["runs"][1]["end_reason"], "checks_failed");

    // No pull request: nothing for a fix-CI run to work on, and the server says why.
    let refused = server.cli(&["task", "fix-ci", &id]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("has no pull request"), "{stderr}");
    // Nor for an address-review run, with or without instructions.
    let refused = server.cli(&[
        "task",
        "address-review",
        &id,
        "--instructions",
        "Keep the old name too",
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("an address-review run works on the pull request"),
        "{stderr}"
    );
    let refused = server.cli(&["task", "rebase", &id]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("a rebase run works on the pull request"),
        "{stderr}"
    );

    // Both runs count in the project's insights: one retry, which did not succeed.
    let insights = server.json(&["insights", "--json"]);
    assert_eq!(insights["runs"]["ended"], 2);
    assert_eq!(insights["runs"]["retries"], 1);
    assert_eq!(insights["runs"]["retry_success_rate"], 0.0);
    let text = server.cli(&["insights"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("runs ended           2: 2 checks_failed"),
        "{text}"
    );
    assert!(
        text.contains("retries              1 (0% succeeded)"),
        "{text}"
    );
}

#[test]
fn cancel_from_the_cli() {
    let remote = RemoteRepo::with_files(&[("a", "")]);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), 1);
    let task = server.json(&[
        "task",
        "create",
        "--repo",
        &remote.url(),
        "--instructions",
        "Sleep",
        "--agent-command",
        "sleep 765.43",
        "--json",
    ]);
    let id = task["id"].as_i64().unwrap();
    server.wait_phase(id, "agent");
    let out = server.cli(&["task", "cancel", &id.to_string()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("cancel requested"));
    let task = server.wait_end(id);
    assert_eq!(task["runs"][0]["status"], "cancelled");
    assert_eq!(task["runs"][0]["end_reason"], "cancelled");
    let again = server.cli(&["task", "cancel", &id.to_string()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already_ended"));
}

#[test]
fn a_queued_task_survives_killing_the_server() {
    let remote = RemoteRepo::with_files(&[("a", "")]);
    let data = tempfile::tempdir().unwrap();
    let mut server = Server::start(data.path(), 0);
    let task = server.json(&[
        "task",
        "create",
        "--repo",
        &remote.url(),
        "--instructions",
        "Touch b",
        "--agent-command",
        "touch b",
        "--json",
    ]);
    let id = task["id"].as_i64().unwrap();
    assert_eq!(task["runs"][0]["status"], "queued");
    server.kill_hard();

    let server = Server::start(data.path(), 1);
    let task = server.wait_end(id);
    assert_eq!(task["runs"][0]["end_reason"], "succeeded");
    assert!(remote.head(&format!("nightshift/{id}-touch-b")).is_some());
}
