//! Confinement through the real `nightshift serve`: what the server says about it, refusing to
//! run unconfined by accident, `sandbox = "none"` on purpose, and setup reaching an allowed
//! host through the forwarder built into the `nightshift` binary itself.

use std::io::{Read, Write};
use std::path::Path;

use nightshift_test_support::git::RemoteRepo;
use serde_json::Value;

use super::server::Server;

fn create(server: &Server, repo: &RemoteRepo, command: &str) -> Value {
    let task = server.json(&[
        "task",
        "create",
        "--repo",
        &repo.url(),
        "--instructions",
        "Touch a file",
        "--agent-command",
        command,
        "--json",
    ]);
    server.wait_end(task["id"].as_i64().unwrap())
}

fn health(server: &Server) -> Value {
    let (status, body) = server.get("/api/v1/health");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn the_server_says_whether_runs_are_confined_and_none_must_be_chosen() {
    let confined = tempfile::tempdir().unwrap();
    let server = Server::start(confined.path(), 0);
    let answer = health(&server);
    assert_eq!(answer["confinement"]["sandbox"], "bubblewrap", "{answer}");
    assert_eq!(answer["confinement"]["confined"], true, "{answer}");
    let (status, page) = server.get("/p/default/tasks");
    assert_eq!(status, 200);
    assert!(!page.contains("not confined"), "{page}");
    drop(server);

    let open = tempfile::tempdir().unwrap();
    std::fs::write(open.path().join("nightshift.toml"), "sandbox = \"none\"\n").unwrap();
    let server = Server::start(open.path(), 1);
    let answer = health(&server);
    assert_eq!(answer["confinement"]["sandbox"], "none", "{answer}");
    assert_eq!(answer["confinement"]["confined"], false, "{answer}");
    let (_, page) = server.get("/p/default/tasks");
    assert!(
        page.contains("Runs on this server are not confined")
            && page.contains("sandbox = &quot;none&quot;"),
        "{page}"
    );
    // And it is in effect: the agent writes beside its checkout.
    let marker = open.path().join("written-from-the-run");
    let repo = RemoteRepo::with_files(&[("a", "")]);
    let task = create(&server, &repo, &format!("touch b {}", marker.display()));
    assert_eq!(task["runs"][0]["end_reason"], "succeeded", "{task}");
    assert!(marker.exists());
}

/// A machine without bubblewrap: runs fail at once, saying how to fix it, instead of quietly
/// running the agent with the server's own view of the machine. Once bubblewrap is installed
/// (here: put on the server's PATH) the server notices without a restart: health, the web UI's
/// notice and the next run are confined.
#[test]
fn without_bubblewrap_runs_fail_naming_the_fix_until_it_is_installed() {
    let data = tempfile::tempdir().unwrap();
    // Not under /tmp: inside a sandbox that is a fresh one, and the runs' PATH would be empty.
    // The build's own temporary directory, unless the checkout itself lies under /tmp.
    let target_tmp = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let outside_tmp = if target_tmp.starts_with("/tmp") {
        std::path::Path::new("/var/tmp")
    } else {
        target_tmp
    };
    let bin = tempfile::tempdir_in(outside_tmp).unwrap();
    for program in ["git", "sh", "touch"] {
        std::os::unix::fs::symlink(which(program), bin.path().join(program)).unwrap();
    }
    let server = Server::start_with(data.path(), 1, |command| {
        command.env("PATH", bin.path());
    });
    let answer = health(&server);
    assert_eq!(answer["confinement"]["confined"], false, "{answer}");
    let detail = answer["confinement"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("bwrap") && detail.contains("sandbox = \"none\""),
        "{detail}"
    );
    let (_, page) = server.get("/p/default/tasks");
    assert!(page.contains("not confined"), "{page}");

    let repo = RemoteRepo::with_files(&[("a", "")]);
    let task = create(&server, &repo, "touch b");
    let run = &task["runs"][0];
    assert_eq!(run["end_reason"], "infrastructure", "{task}");
    assert_eq!(run["failed_phase"], "preparing", "{task}");
    let error = run["error"].as_str().unwrap();
    assert!(
        error.contains("Install bubblewrap")
            && error.contains("without a restart")
            && error.contains("sandbox = \"none\""),
        "{error}"
    );
    assert_eq!(repo.branches(), vec!["main"], "nothing ran, nothing pushed");

    std::os::unix::fs::symlink(which("bwrap"), bin.path().join("bwrap")).unwrap();
    let answer = health(&server);
    assert_eq!(answer["confinement"]["confined"], true, "{answer}");
    let (_, page) = server.get("/p/default/tasks");
    assert!(!page.contains("not confined"), "{page}");
    let task = create(&server, &repo, "touch b");
    assert_eq!(task["runs"][0]["end_reason"], "succeeded", "{task}");
}

/// `GET /api/v1/health` lists the toolchains runs can use, found in the server's environment:
/// here a pyenv and a Go installation laid out where the environment says they are.
#[test]
fn health_lists_the_toolchains_runs_can_use() {
    let data = tempfile::tempdir().unwrap();
    let tools = tempfile::tempdir().unwrap();
    let tools = tools.path().canonicalize().unwrap();
    let pyenv = tools.join("pyenv");
    std::fs::create_dir_all(pyenv.join("versions/3.12.1/bin")).unwrap();
    std::fs::write(pyenv.join("version"), "3.12.1\n").unwrap();
    let go = tools.join("go");
    std::fs::create_dir_all(go.join("src/runtime")).unwrap();
    std::fs::write(go.join("VERSION"), "go1.22.1\ntime 2024-03-01\n").unwrap();
    let server = Server::start_with(data.path(), 0, |command| {
        command.env("PYENV_ROOT", &pyenv).env("GOROOT", &go);
    });
    let answer = health(&server);
    let toolchains = answer["toolchains"].as_array().unwrap();
    let find = |manager: &str| {
        toolchains
            .iter()
            .find(|t| t["manager"] == manager)
            .unwrap_or_else(|| panic!("no {manager} in {answer}"))
    };
    assert_eq!(
        find("pyenv"),
        &serde_json::json!({"name": "python", "manager": "pyenv", "version": "3.12.1",
                            "from": pyenv.display().to_string()})
    );
    assert_eq!(
        find("GOROOT"),
        &serde_json::json!({"name": "go", "manager": "GOROOT", "version": "go1.22.1",
                            "from": go.display().to_string()})
    );
}

/// Setup commands reach the registries the server allows, through the egress proxy and the
/// forwarder that `nightshift` itself provides inside the sandbox (`nightshift netfwd`).
#[test]
fn setup_reaches_an_allowed_host_through_the_nightshift_binary() {
    // 127.0.0.2 is the host's loopback but not in NO_PROXY: only the egress proxy gets there.
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nregistry",
            );
        }
    });
    let data = tempfile::tempdir().unwrap();
    std::fs::write(
        data.path().join("nightshift.toml"),
        format!("setup_hosts = [\"127.0.0.2:{port}\"]\n"),
    )
    .unwrap();
    let server = Server::start(data.path(), 1);
    let fetch = format!("curl -sS --max-time 5 http://127.0.0.2:{port}/ | grep -q registry");
    let repo = RemoteRepo::with_files(&[(
        ".nightshift.toml",
        &format!(
            "[setup]\ncommands = [\"{fetch}\"]\n[checks]\ntest = [\"{fetch} && exit 1 || true\"]\n"
        ),
    )]);
    let task = create(&server, &repo, "touch b");
    assert_eq!(task["runs"][0]["end_reason"], "succeeded", "{task}");
}

fn which(name: &str) -> std::path::PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| Path::new(p).is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

/// Canaries configured as a forge token (in nightshift.toml) and as the model key (in the
/// server's environment): an agent looking for them finds nothing, and no API answer or file
/// under the data directory holds them afterwards.
#[test]
fn configured_secrets_reach_neither_the_run_nor_the_api() {
    const FORGE: &str = "nightshift-cli-forge-canary-93b1";
    const MODEL: &str = "nightshift-cli-model-canary-4d07";
    let data = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(
        data.path().join("nightshift.toml"),
        format!("[[forge]]\nkind = \"gitea\"\nhost = \"forge.invalid\"\ntoken = \"{FORGE}\"\n"),
    )
    .unwrap();
    let server = Server::start_with(data.path(), 1, |command| {
        command.env("ANTHROPIC_API_KEY", MODEL);
    });
    // The agent searches for both without ever holding them whole on its command line.
    let (f1, f2) = FORGE.split_at(10);
    let (m1, m2) = MODEL.split_at(10);
    let dir = data.path().display();
    let search = format!(
        "printf '%s%s\\n%s%s\\n' {f1} {f2} {m1} {m2} > /tmp/needles; \
         env | grep -F -f /tmp/needles; cat {dir}/nightshift.toml; \
         grep -rlsF -f /tmp/needles --exclude=needles \"$HOME\" . /etc {dir} /proc/[0-9]*/environ \
         && echo FOUND || echo NOT-FOUND; touch b"
    );
    let repo = RemoteRepo::with_files(&[("a", "")]);
    let task = create(&server, &repo, &search);
    assert_eq!(task["runs"][0]["end_reason"], "succeeded", "{task}");
    let id = task["id"].as_i64().unwrap();
    let logs = server.cli(&["task", "logs", &id.to_string()]);
    let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert!(logs.contains("NOT-FOUND"), "{logs}");

    let mut answers = vec![logs, task.to_string()];
    for path in [
        "/api/v1/health".to_string(),
        "/api/v1/openapi.json".to_string(),
        "/api/v1/projects/default".to_string(),
        "/api/v1/projects/default/runs".to_string(),
        format!("/api/v1/projects/default/tasks/{id}"),
        format!("/api/v1/projects/default/tasks/{id}/runs/1/events"),
        format!("/api/v1/projects/default/tasks/{id}/runs/1/change"),
        format!("/p/default/tasks/{id}"),
    ] {
        let (status, body) = server.get(&path);
        assert_eq!(status, 200, "{path}: {body}");
        answers.push(body);
    }
    for answer in &answers {
        assert!(
            !answer.contains(FORGE) && !answer.contains(MODEL),
            "{answer}"
        );
    }
    drop(server);
    let config = data.path().join("nightshift.toml");
    let mut dirs = vec![data.path().to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path != config {
                let bytes = std::fs::read(&path).unwrap_or_default();
                for canary in [FORGE, MODEL] {
                    assert!(
                        !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                        "{} holds {canary}",
                        path.display()
                    );
                }
            }
        }
    }
}

/// A descriptor `nightshift serve` inherited without close-on-exec (a secret file its parent
/// had open) reaches none of a run's processes: setup, the agent and the checks each find only
/// stdin, stdout and stderr.
#[test]
fn a_descriptor_the_server_inherited_reaches_no_run() {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    const SECRET: &str = "inherited-descriptor-canary-5e21";
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    // Without O_CLOEXEC, so the spawned server holds it as its parent left it; at a number of
    // its own, not one a shell reuses for its pipes.
    let opened = open(&secret, OFlag::O_RDONLY, Mode::empty()).unwrap();
    let fd = nix::unistd::dup2(opened, 37).unwrap();
    nix::unistd::close(opened).unwrap();
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path(), 1);
    let held = std::fs::read_link(format!("/proc/{}/fd/{fd}", server.pid())).unwrap();
    assert_eq!(held, secret, "the server did not inherit the descriptor");

    let closed = format!("test ! -e /proc/$$/fd/{fd}");
    let repo = RemoteRepo::with_files(&[(
        ".nightshift.toml",
        &format!("[setup]\ncommands = [\"{closed}\"]\n[checks]\ntest = [\"{closed}\"]\n"),
    )]);
    let agent = format!(
        "if [ -e /proc/$$/fd/{fd} ]; then echo LEAKED; cat <&{fd}; else echo CLOSED; fi; \
         printf fds:; for f in /proc/$$/fd/*; do printf ' %s' ${{f##*/}}; done; echo; touch b"
    );
    let task = create(&server, &repo, &agent);
    let id = task["id"].as_i64().unwrap();
    let logs = server.cli(&["task", "logs", &id.to_string()]);
    let logs = String::from_utf8_lossy(&logs.stdout).into_owned();
    assert_eq!(task["runs"][0]["end_reason"], "succeeded", "{task}\n{logs}");
    assert!(logs.contains("CLOSED") && !logs.contains(SECRET), "{logs}");
    // The shell's own descriptors: stdio, and the directory its glob is reading.
    let listed = logs.lines().find_map(|l| l.split_once("fds:")).unwrap().1;
    assert_eq!(
        listed.split_whitespace().collect::<Vec<_>>(),
        ["0", "1", "2", "3"],
        "{logs}"
    );
    nix::unistd::close(fd).unwrap();
}
