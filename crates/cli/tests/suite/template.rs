//! `nightshift template …` and `task create --template` against a real `nightshift serve`.

use nightshift_test_support::git::RemoteRepo;

use super::server::Server;

#[test]
fn templates_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let repo = RemoteRepo::with_files(&[("a.txt", "hello\n")]);
    let server = Server::start(data.path(), 1);
    let url = repo.url();

    let task = server.json(&[
        "task",
        "create",
        "--repo",
        &url,
        "--instructions",
        "Replace hello with bye in a.txt",
        "--agent-command",
        "sed -i s/hello/bye/ a.txt",
        "--wait",
        "--json",
    ]);
    let id = task["id"].as_i64().unwrap().to_string();
    let t = server.json(&[
        "template",
        "from-task",
        &id,
        "--name",
        "replace",
        "--param",
        "bye=word",
        "--json",
    ]);
    assert_eq!(t["instructions"], "Replace hello with {{word}} in a.txt");

    let t = server.json(&[
        "template",
        "create",
        "--name",
        "greet",
        "--instructions",
        "Greet {{who}} {{times}} times",
        "--param",
        "who",
        "--param",
        "times:number=2",
        "--manual-effort",
        "45",
        "--json",
    ]);
    assert_eq!(t["parameters"][1]["default"], "2");
    assert_eq!(t["manual_effort_minutes"], 45);
    let list = server.json(&["template", "list", "--json"]);
    assert_eq!(list.as_array().unwrap().len(), 2);

    // An invalid value is refused, naming the parameter.
    let out = server.cli(&[
        "task",
        "create",
        "--template",
        "greet",
        "--param",
        "who=x",
        "--param",
        "times=many",
        "--repo",
        &url,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("parameter times"), "{stderr}");

    let task = server.json(&[
        "task",
        "create",
        "--template",
        "replace",
        "--param",
        "word=ciao",
        "--repo",
        &url,
        "--wait",
        "--json",
    ]);
    assert_eq!(task["instructions"], "Replace hello with ciao in a.txt");
    assert_eq!(task["runs"][0]["status"], "succeeded");
    let shown = server.json(&["template", "show", "replace", "--json"]);
    assert_eq!(shown["usage"][0]["params"]["word"], "ciao");
    assert_eq!(shown["success_rate"], 1.0);
    let text = server.cli(&["template", "show", "replace"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("success rate 100%"));

    // The template's tasks in the project's insights, alone and on a line of their own.
    let insights = server.json(&["insights", "--template", "replace", "--json"]);
    assert_eq!(insights["template"], "replace");
    assert_eq!(insights["tasks_created"], 1);
    assert_eq!(
        insights["runs"]["by_end_reason"][0]["end_reason"],
        "succeeded"
    );
    let out = server.cli(&["insights"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("tasks created        2"), "{text}");
    assert!(
        text.contains("\nby template\n  replace                  1 tasks, 1 runs (100% succeeded)"),
        "{text}"
    );
    let out = server.cli(&["insights", "--template", "nope"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no template named \"nope\""), "{stderr}");
}
