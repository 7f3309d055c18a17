//! Nothing another person typed, or an agent printed, reaches the reader's terminal as a
//! control sequence: refused at the edge, escaped when printed.

use nightshift_core::{AgentSpec, BranchName, Budget, Instructions, NewTask, RepoUrl};
use nightshift_store::Store;
use nightshift_test_support::git::RemoteRepo;

use super::server::Server;

const ESC: u8 = 0x1b;

fn stdout_of(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.stdout.contains(&ESC) && !out.stderr.contains(&ESC),
        "a raw escape reached the terminal: {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn escapes_never_reach_the_terminal() {
    let remote = RemoteRepo::with_files(&[("greeting.txt", "hello\n")]);
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), 1);
    let url = remote.url();

    // Typed in a title: refused, and the refusal itself carries no escape.
    let out = server.cli(&[
        "task",
        "create",
        "--repo",
        &url,
        "--instructions",
        "Say goodbye",
        "--title",
        "Say goodbye\u{1b}]0;owned\u{7}\u{1b}[2J",
        "--agent-command",
        "true",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("control_character") && stderr.contains("invalid title"),
        "{stderr}"
    );
    assert!(!out.stderr.contains(&ESC), "{stderr}");

    // Printed by an agent: the log shows the escape as text.
    let out = server.cli(&[
        "task",
        "create",
        "--repo",
        &url,
        "--instructions",
        "Say goodbye",
        "--agent-command",
        "printf 'before \\033]0;owned\\007\\033[2J after\\n' && sed -i s/hello/goodbye/ greeting.txt",
        "--wait",
    ]);
    stdout_of(&out);
    let logs = stdout_of(&server.cli(&["task", "logs", "1"]));
    assert!(logs.contains("before \\u{1b}]0;owned"), "{logs}");

    // Stored by an older version that let escapes in: shown escaped, also when shortened.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let id = runtime.block_on(async {
        let store = Store::open_sqlite(&data.path().join("nightshift.db"))
            .await
            .unwrap();
        let project = store.project("default").await.unwrap().unwrap();
        let (task, _) = store
            .create_task(&NewTask {
                project_id: project.id,
                title: format!("{}\u{1b}[31mred", "x".repeat(35)),
                instructions: Instructions::parse("Old instructions").unwrap(),
                repo: RepoUrl::parse(&url).unwrap(),
                base_branch: BranchName::parse("main").unwrap(),
                agent: AgentSpec::command("true"),
                timeout_secs: 60,
                budget: Budget::default(),
                allow_test_changes: false,
                created_by: "admin".into(),
            })
            .await
            .unwrap();
        store.close().await;
        task.id
    });
    let shown = stdout_of(&server.cli(&["task", "show", &id.to_string()]));
    assert!(shown.contains("xxx\\u{1b}[31mred"), "{shown}");
    let listed = stdout_of(&server.cli(&["task", "list"]));
    assert!(listed.contains("xxxxx\\u{1b"), "{listed}");
}
