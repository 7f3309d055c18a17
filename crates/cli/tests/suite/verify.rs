//! `nightshift verify-mcp`: the repository's checks as a Model Context Protocol tool on stdio,
//! spoken to as an agent would: initialize, list the tools, call `verify`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::server::BIN;

#[test]
fn verify_mcp_serves_the_checks_and_records_each_call() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("code.txt"), "messy  \n").unwrap();
    let log = dir.path().join("home/.nightshift/verify.jsonl");
    let spec = json!({
        "dir": work, "log": log,
        // The formatter rewrites in place; the lint then sees its result.
        "format": ["sed -i 's/ *$//' code.txt"],
        "lint": ["if grep -q messy code.txt; then echo 'lint: messy code'; exit 1; fi"],
        "test": ["true"],
    });
    let mut child = Command::new(BIN)
        .args(["verify-mcp", &spec.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut ask = move |message: Value| -> Option<Value> {
        writeln!(stdin, "{message}").unwrap();
        stdin.flush().unwrap();
        message.get("id")?;
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        Some(serde_json::from_str(&line).unwrap())
    };
    let init = ask(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "test", "version": "0"}}}),
    )
    .unwrap();
    assert_eq!(init["result"]["serverInfo"]["name"], "nightshift", "{init}");
    ask(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    let tools = ask(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"})).unwrap();
    assert_eq!(tools["result"]["tools"][0]["name"], "verify", "{tools}");
    let call = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": "verify", "arguments": {}}})
    };
    let first = ask(call(3)).unwrap();
    let text = first["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("1 of 3 checks failed")
            && text.contains("lint `if grep -q messy")
            && text.contains("lint: messy code"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(work.join("code.txt")).unwrap(),
        "messy\n"
    );
    std::fs::write(work.join("code.txt"), "tidy\n").unwrap();
    let second = ask(call(4)).unwrap();
    let text = second["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("All 3 checks passed"), "{text}");
    let unknown = ask(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
        "params": {"name": "deploy", "arguments": {}}}))
    .unwrap();
    assert!(
        unknown["error"]["message"]
            .as_str()
            .unwrap()
            .contains("only `verify`"),
        "{unknown}"
    );

    let calls: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let outline: Vec<(u64, bool)> = calls
        .iter()
        .map(|c| (c["call"].as_u64().unwrap(), c["passed"] == true))
        .collect();
    assert_eq!(outline, vec![(1, false), (2, true)]);
    assert_eq!(calls[0]["checks"][1]["stage"], "lint");
    assert_eq!(calls[0]["checks"][1]["outcome"], "failed");

    // Closing stdin ends the server, cleanly.
    drop(ask);
    assert!(child.wait().unwrap().success());
}

#[test]
fn verify_mcp_refuses_an_argument_it_cannot_read() {
    let out = Command::new(BIN)
        .args(["verify-mcp", "not json"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("verify-mcp: the argument is not a verify spec"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "stdout is the protocol's");
}
