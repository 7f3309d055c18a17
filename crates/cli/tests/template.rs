#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `nightshift template …` and `task create --template` against a real `nightshift serve`.
//! (A separate test binary for now, to fold into `tests/all.rs` when the branches meet.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use nightshift_test_support::git::RemoteRepo;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_nightshift");

struct Server {
    child: Child,
    url: String,
    /// The first admin's API token, which the server writes on first start.
    token: String,
    /// Kept open so later lines the server prints do not hit a closed pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(data: &std::path::Path) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--data-dir", &data.to_string_lossy()])
            .args(["--listen", "127.0.0.1:0", "--workers", "1"])
            .env("NIGHTSHIFT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        // The first start announces the admin token's file before the address.
        let mut seen = String::new();
        let url = loop {
            let mut line = String::new();
            assert!(
                stdout.read_line(&mut line).unwrap() > 0,
                "no address in {seen:?}"
            );
            if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                break url.to_string();
            }
            seen.push_str(&line);
        };
        let token = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        Server {
            child,
            url,
            token,
            _stdout: stdout,
        }
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("NIGHTSHIFT_URL", &self.url)
            .env("NIGHTSHIFT_TOKEN", &self.token)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

#[test]
fn templates_from_the_command_line() {
    let data = tempfile::tempdir().unwrap();
    let repo = RemoteRepo::with_files(&[("a.txt", "hello\n")]);
    let server = Server::start(data.path());
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
        "--json",
    ]);
    assert_eq!(t["parameters"][1]["default"], "2");
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
}
