//! Whole runs under confinement: what a hostile agent — a plain command, and the real Claude
//! Code through its Bash tool — can read, write and reach from inside a run, and canary secrets
//! that must never surface. What checks may reach is in `check_limits`, masking in `masking`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nightshift_agent::{AgentConfig, AgentDefaults};
use nightshift_core::{
    AgentKind, AgentSpec, Budget, EventKind, ProjectSettings, Run, RunEvent, RunStatus,
};
use nightshift_engine::EngineConfig;
use nightshift_forge::{ForgeConfig, ForgeEntry, ForgeKind, Secret};
use nightshift_store::SecretKey;
use nightshift_test_support::git::RemoteRepo;
use nightshift_test_support::model_server::{ModelServer, Turn};
use nightshift_test_support::test_tool;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::Harness;

/// Not shaped like any well-known token: only the configured-secret filter can catch them.
pub(super) const MODEL_CANARY: &str = "nightshift-model-canary-7f3a9c";
pub(super) const FORGE_CANARY: &str = "nightshift-forge-canary-51e0b4";

/// The places of one test: a data directory outside /tmp (inside a sandbox /tmp is private
/// anyway, which would hide it whatever the engine does), a key file outside it, and a canary
/// in the server user's ~/.ssh.
pub(super) struct Site {
    data: Option<tempfile::TempDir>,
    pub(super) data_path: PathBuf,
    _keys: tempfile::TempDir,
    key_file: PathBuf,
    ssh_canary: PathBuf,
    created_ssh: Option<PathBuf>,
}

impl Site {
    pub(super) fn new() -> Site {
        let in_target = |prefix: &str| {
            tempfile::Builder::new()
                .prefix(prefix)
                .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
                .unwrap()
        };
        let data = in_target("confined-data-");
        let keys = in_target("confined-keys-");
        let key_file = keys.path().join("server.key");
        std::fs::write(&key_file, "key-file-secret").unwrap();
        let ssh = PathBuf::from(std::env::var("HOME").unwrap()).join(".ssh");
        let created_ssh = (!ssh.exists()).then(|| ssh.clone());
        std::fs::create_dir_all(&ssh).unwrap();
        let ssh_canary = ssh.join(format!("nightshift-canary-{}", std::process::id()));
        std::fs::write(&ssh_canary, "ssh-secret").unwrap();
        Site {
            data_path: data.path().to_path_buf(),
            data: Some(data),
            _keys: keys,
            key_file,
            ssh_canary,
            created_ssh,
        }
    }

    /// Confinement as a server would set it up: the vault key in the data directory, a key
    /// file elsewhere hidden, the forwarder from this build.
    pub(super) async fn harness(
        &mut self,
        workers: usize,
        configure: impl FnOnce(&mut EngineConfig),
    ) -> Harness {
        let key = SecretKey::load_or_create(&self.data_path.join("secret.key")).unwrap();
        let key_file = self.key_file.clone();
        let h = Harness::start_with(self.data.take().unwrap(), workers, |config| {
            config.secret_key = Some(key);
            config.confinement.hidden.push(key_file);
            configure(config);
        })
        .await;
        let settings = ProjectSettings {
            max_active_runs_per_user: 4,
            ..ProjectSettings::default()
        };
        h.store
            .set_project_settings(h.project_id, &settings)
            .await
            .unwrap();
        h
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ssh_canary);
        if let Some(ssh) = &self.created_ssh {
            let _ = std::fs::remove_dir(ssh);
        }
    }
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// A one-line HTTP service on the host, answering `body`.
pub(super) async fn host_service(addr: &str, body: &'static str) -> u16 {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

/// A shell script that tries each `(name, command)` and prints `REACHED name` or `BLOCKED name`.
fn probe_script(probes: &[(&str, String)]) -> String {
    let mut script = String::from(
        "probe() { if sh -c \"$2\" >/dev/null 2>&1; then echo \"REACHED $1\"; else echo \"BLOCKED $1\"; fi; }\n",
    );
    for (name, command) in probes {
        assert!(!command.contains('\''), "{command}");
        script.push_str(&format!("probe {name} '{command}'\n"));
    }
    script
}

/// What a hostile agent tries against the server and other runs, with what must come of it.
fn hostile_probes(
    site: &Site,
    other_run: Option<i64>,
    host_port: u16,
) -> Vec<(&'static str, String, bool)> {
    let data = p(&site.data_path);
    let mut probes = vec![
        ("read-database", format!("cat {data}/nightshift.db"), false),
        ("read-vault-key", format!("cat {data}/secret.key"), false),
        ("read-key-file", format!("cat {}", p(&site.key_file)), false),
        (
            "read-server-ssh",
            format!("cat {}", p(&site.ssh_canary)),
            false,
        ),
        // The mirror is shown for git, but not its config (a remote URL may hold credentials).
        (
            "read-mirror-config",
            format!("grep -q url {data}/mirrors/*.git/config"),
            false,
        ),
        ("write-data-dir", format!("touch {data}/escape"), false),
        ("write-system", "touch /usr/nightshift-escape".into(), false),
        (
            "write-mirror",
            format!("touch {data}/mirrors/*.git/escape"),
            false,
        ),
        (
            "write-worktree-admin",
            "touch \"$(sed -n \"s/^gitdir: //p\" .git)/escape\"".into(),
            false,
        ),
        (
            "reach-host-port",
            format!("curl -sS --max-time 3 http://127.0.0.1:{host_port}/"),
            false,
        ),
        ("write-checkout", "echo inside > inside.txt".into(), true),
        ("write-home", "touch \"$HOME/inside\"".into(), true),
        ("git-status", "git status --porcelain".into(), true),
        ("git-diff", "git diff --stat HEAD".into(), true),
        ("git-log", "git log -1 --format=%H".into(), true),
    ];
    if let Some(id) = other_run {
        probes.push((
            "read-other-run",
            format!("cat {data}/runs/{id}/layer/upper/notes.txt"),
            false,
        ));
        probes.push((
            "read-other-logs",
            format!("ls {data}/logs/{id}/agent.jsonl"),
            false,
        ));
    }
    probes
}

/// `REACHED`/`BLOCKED` per probe name, from output text.
fn outcomes(text: &str) -> BTreeMap<String, bool> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("REACHED ")
                .map(|n| (n.to_string(), true))
                .or_else(|| l.strip_prefix("BLOCKED ").map(|n| (n.to_string(), false)))
        })
        .collect()
}

fn assert_outcomes(seen: &BTreeMap<String, bool>, expected: &[(&str, String, bool)], text: &str) {
    for (name, command, reached) in expected {
        assert_eq!(
            seen.get(*name),
            Some(reached),
            "{name} ({command}) should be {}:\n{text}",
            if *reached { "reached" } else { "blocked" }
        );
    }
}

/// The host side of the write probes: nothing landed outside the run.
fn assert_nothing_escaped(site: &Site) {
    let data = &site.data_path;
    assert!(!data.join("escape").exists());
    assert!(!Path::new("/usr/nightshift-escape").exists());
    for mirror in std::fs::read_dir(data.join("mirrors")).unwrap().flatten() {
        assert!(!mirror.path().join("escape").exists());
        for admin in std::fs::read_dir(mirror.path().join("worktrees"))
            .into_iter()
            .flatten()
            .flatten()
        {
            assert!(!admin.path().join("escape").exists());
        }
    }
}

fn agent_output(events: &[RunEvent]) -> String {
    events
        .iter()
        .filter(|e| e.kind == EventKind::Agent)
        .map(|e| format!("{}\n", e.message))
        .collect()
}

/// Runs a Claude Code task on `repo` to its end, which must be a success: the task, its run
/// and the run's events.
pub(super) async fn run_claude_code(
    h: &Harness,
    repo: &RemoteRepo,
    title: &str,
) -> (i64, Run, Vec<RunEvent>) {
    let agent = AgentSpec {
        kind: AgentKind::ClaudeCode,
        command: None,
        model: None,
        args: vec![],
    };
    let task = h
        .create_with(
            &repo.url(),
            title,
            agent,
            Budget::default(),
            Duration::from_secs(120),
        )
        .await;
    let run = h.wait_end(task).await;
    let events = h.events(&run).await;
    assert_eq!(
        run.status,
        RunStatus::Succeeded,
        "{run:?}\n{}",
        agent_output(&events)
    );
    (task, run, events)
}

#[tokio::test]
async fn a_hostile_command_agent_reads_no_secrets_and_writes_only_its_run() {
    let mut site = Site::new();
    let h = site.harness(2, |_| {}).await;
    let host_port = host_service("127.0.0.1:0", "host-service").await;

    // Another run, busy in its own checkout.
    let other = RemoteRepo::with_files(&[("a.txt", "a\n")]);
    let busy = h
        .create(
            &other.url(),
            "Stay busy",
            "echo other-run-secret > notes.txt && sleep 300",
            Duration::from_secs(600),
        )
        .await;
    let busy_run = h.latest(busy).await;
    let notes = site
        .data_path
        .join(format!("runs/{}/layer/upper/notes.txt", busy_run.id));
    let started = Instant::now();
    while !notes.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the busy run never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let probes = hostile_probes(&site, Some(busy_run.id), host_port);
    let pairs: Vec<(&str, String)> = probes.iter().map(|(n, c, _)| (*n, c.clone())).collect();
    let tmp_escape = format!("/tmp/nightshift-escape-{}", std::process::id());
    let script = format!("{}touch {tmp_escape}\n", probe_script(&pairs));
    let hostile = RemoteRepo::with_files(&[("hostile.sh", &script)]);
    let task = h
        .create(
            &hostile.url(),
            "Probe",
            "sh hostile.sh",
            Duration::from_secs(120),
        )
        .await;
    let run = h.wait_end(task).await;
    let events = h.events(&run).await;
    let text = agent_output(&events);
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}\n{text}");

    assert_outcomes(&outcomes(&text), &probes, &text);
    assert_nothing_escaped(&site);
    assert!(
        !Path::new(&tmp_escape).exists(),
        "the run's /tmp is the host's"
    );
    // The checkout write is the run's change, pushed like any other.
    let change = h.store.change(run.id).await.unwrap().unwrap();
    assert!(
        change.files_changed.contains(&"inside.txt".to_string()),
        "{change:?}"
    );
    let branch = h.branch_of(task, "Probe");
    assert_eq!(
        hostile.show(&hostile.head(&branch).unwrap(), "inside.txt"),
        "inside\n"
    );

    h.store.cancel_task(h.project_id, busy).await.unwrap();
    assert_eq!(h.wait_end(busy).await.status, RunStatus::Cancelled);
}

/// The real Claude Code, steered by the scripted model into running the hostile script with
/// its Bash tool: it reaches its model only through the gateway (which holds the key), nothing
/// else; and canary secrets configured as the model key and a forge token are nowhere.
#[tokio::test]
async fn claude_code_reaches_only_its_model_and_no_canary_surfaces_anywhere() {
    let mut site = Site::new();
    let host_port = host_service("127.0.0.1:0", "host-service").await;
    let server = ModelServer::start(vec![
        Turn::tool("Bash", json!({"command": "sh hostile.sh"})),
        Turn::text("Probed the sandbox."),
    ])
    .await
    .unwrap();
    let model_port = server.url().rsplit(':').next().unwrap().to_string();

    let mut probes = hostile_probes(&site, None, host_port);
    probes.extend([
        (
            "reach-model-directly",
            format!("curl -sS --max-time 3 http://127.0.0.1:{model_port}/"),
            false,
        ),
        (
            "reach-model-gateway",
            "curl -sS --max-time 10 -o /dev/null \"$ANTHROPIC_BASE_URL/v1/models\"".into(),
            true,
        ),
    ]);
    let pairs: Vec<(&str, String)> = probes.iter().map(|(n, c, _)| (*n, c.clone())).collect();
    // The canaries are searched for without ever being written whole into the checkout.
    let (m1, m2) = MODEL_CANARY.split_at(12);
    let (f1, f2) = FORGE_CANARY.split_at(12);
    let data = p(&site.data_path);
    let script = format!(
        "{probes}env | sort | sed 's/^/ENV /'\n\
         printf '%s%s\\n%s%s\\n' {m1} {m2} {f1} {f2} > /tmp/needles\n\
         if grep -rlsF -f /tmp/needles --exclude=needles \"$HOME\" \"$PWD\" /tmp /etc {data} \
         /proc/[0-9]*/environ /proc/[0-9]*/cmdline; then echo CANARY-FOUND; else echo CANARY-NOT-FOUND; fi\n",
        probes = probe_script(&pairs),
    );
    let repo = RemoteRepo::with_files(&[("hostile.sh", &script)]);

    let agents = AgentConfig {
        claude_code: AgentDefaults {
            command: Some(test_tool("claude").display().to_string()),
            model: Some("claude-sonnet-4-5".into()),
            args: vec![],
        },
        anthropic_base_url: Some(server.url()),
        anthropic_api_key: Some(MODEL_CANARY.into()),
        max_retries: 0,
        after_final_grace_ms: 2000,
        ..AgentConfig::default()
    };
    let h = site
        .harness(1, |config| {
            config.agents = agents;
            config.forges = ForgeConfig {
                entries: vec![ForgeEntry {
                    kind: ForgeKind::Github,
                    host: "forge.invalid".into(),
                    api_url: None,
                    token: Some(Secret::new(FORGE_CANARY)),
                    app: None,
                    username: None,
                }],
                ..ForgeConfig::default()
            };
        })
        .await;
    let (task, run, events) = run_claude_code(&h, &repo, "Probe the sandbox").await;

    // What the Bash tool printed, as the model received it.
    let requests = server.scripted_requests();
    let seen = tool_results(
        &requests
            .iter()
            .find(|r| r.turn == Some(1))
            .expect("the request carrying the tool result")
            .body,
    );
    assert_outcomes(&outcomes(&seen), &probes, &seen);
    assert!(seen.contains("CANARY-NOT-FOUND"), "{seen}");
    assert!(
        seen.contains("ENV ANTHROPIC_BASE_URL=http://127.0.0.1:")
            && seen.contains("ENV ANTHROPIC_API_KEY=nightshift-gateway-placeholder"),
        "{seen}"
    );
    assert_nothing_escaped(&site);

    // The key reached the model, from the gateway; the agent's own curl went the same way.
    let all = server.requests();
    let messages: Vec<_> = all
        .iter()
        .filter(|r| r.uri.starts_with("/v1/messages"))
        .collect();
    assert!(!messages.is_empty());
    for request in &messages {
        assert_eq!(
            request.header("x-api-key"),
            Some(MODEL_CANARY),
            "{:?}",
            request.uri
        );
    }
    assert!(
        all.iter().any(|r| r.uri.starts_with("/v1/models")),
        "{all:?}"
    );
    for request in &all {
        let body = request.body.to_string();
        assert!(!body.contains(MODEL_CANARY) && !body.contains(FORGE_CANARY));
    }

    // Nothing stored holds a canary: events, the database and every file under the data dir.
    for event in &events {
        let text = format!("{} {}", event.message, event.data);
        assert!(
            !text.contains(MODEL_CANARY) && !text.contains(FORGE_CANARY),
            "canary in a stored event: {event:?}"
        );
    }
    let change = h.store.change(run.id).await.unwrap().unwrap();
    let stored = format!(
        "{change:?} {:?} {:?}",
        h.latest(task).await,
        h.store.task(h.project_id, task).await
    );
    assert!(!stored.contains(MODEL_CANARY) && !stored.contains(FORGE_CANARY));
    assert_no_canary_under(h.data.path());
}

/// The text of every tool result in a Messages request, as the model reads it.
pub(super) fn tool_results(body: &serde_json::Value) -> String {
    let mut out = String::new();
    let blocks = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["content"].as_array().into_iter().flatten());
    for block in blocks.filter(|b| b["type"] == "tool_result") {
        match &block["content"] {
            serde_json::Value::String(text) => out.push_str(text),
            serde_json::Value::Array(parts) => {
                for part in parts {
                    out.push_str(part["text"].as_str().unwrap_or_default());
                }
            }
            _ => {}
        }
        out.push('\n');
    }
    out
}

pub(super) fn assert_no_canary_under(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            assert_no_canary_under(&path);
        } else if kind.is_file() {
            let bytes = std::fs::read(&path).unwrap();
            for canary in [MODEL_CANARY, FORGE_CANARY] {
                assert!(
                    !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                    "{} holds {canary}",
                    path.display()
                );
            }
        }
    }
}
