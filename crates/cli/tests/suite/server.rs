use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_nightshift");

/// A `nightshift serve` process on a free port; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    /// The admin token the server wrote on its first start.
    pub token: String,
}

impl Server {
    pub fn start(data: &Path, workers: usize) -> Server {
        Server::start_with(data, workers, |_| {})
    }

    /// Like [`Server::start`], with the command adjusted first (environment, arguments).
    pub fn start_with(data: &Path, workers: usize, adjust: impl FnOnce(&mut Command)) -> Server {
        let mut command = Command::new(BIN);
        command
            .args([
                "serve",
                "--data-dir",
                &data.to_string_lossy(),
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--workers", &workers.to_string()])
            .env("NIGHTSHIFT_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        adjust(&mut command);
        let mut child = command.spawn().unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let url = loop {
            let mut line = String::new();
            assert!(
                reader.read_line(&mut line).unwrap() > 0,
                "serve exited before listening"
            );
            if line.contains("listening on") {
                break line
                    .split_whitespace()
                    .find(|w| w.starts_with("http://"))
                    .unwrap_or_else(|| panic!("no address in {line:?}"))
                    .to_string();
            }
        };
        // Keep reading so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let token = std::fs::read_to_string(data.join("admin.token"))
            .unwrap()
            .trim()
            .to_string();
        Server { child, url, token }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill_hard(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("NIGHTSHIFT_URL", &self.url)
            .env("NIGHTSHIFT_TOKEN", &self.token)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs the CLI, expects success and parses its stdout as JSON.
    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Polls `task show` until the latest run ended.
    pub fn wait_end(&self, id: i64) -> Value {
        let start = Instant::now();
        loop {
            let task = self.json(&["task", "show", &id.to_string(), "--json"]);
            let status = task["runs"].as_array().unwrap().last().unwrap()["status"]
                .as_str()
                .unwrap()
                .to_string();
            if ["succeeded", "failed", "cancelled"].contains(&status.as_str()) {
                return task;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "task {id} did not end: {task}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn wait_phase(&self, id: i64, phase: &str) {
        let start = Instant::now();
        loop {
            let task = self.json(&["task", "show", &id.to_string(), "--json"]);
            if task["runs"].as_array().unwrap().last().unwrap()["phase"] == phase {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "task {id} never reached {phase}: {task}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Server {
    /// GET `path` with the admin token; the status and the body as text.
    pub fn get(&self, path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.url);
        let token = self.token.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_hard();
    }
}
