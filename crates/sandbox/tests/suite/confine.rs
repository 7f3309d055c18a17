//! What a confined process can see and write, and that stopping it leaves nothing behind.

use std::time::Duration;

use nightshift_sandbox::{Confinement, ProcessSpec, Sandbox, SandboxError, group_alive};

use super::{RunDirs, p, processes_with, text};

#[test]
fn bubblewrap_confinement_is_available_here() {
    // Fails (never skips) when bwrap is missing: scripts/install-system-deps.sh installs it.
    let support = Sandbox::detect().unwrap();
    assert!(support.bwrap_version.contains("bubblewrap"), "{support:?}");
}

#[tokio::test]
async fn host_secrets_and_other_runs_are_invisible() {
    let run = RunDirs::new();
    // The server user's ~/.ssh, with a canary the sandbox must not be able to read.
    let ssh = std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".ssh");
    let created_ssh = !ssh.exists();
    std::fs::create_dir_all(&ssh).unwrap();
    let canary = ssh.join(format!("nightshift-canary-{}", std::process::id()));
    std::fs::write(&canary, "ssh-secret").unwrap();

    let script = format!(
        "cat {db} {other} {key} {canary}; ls -A {runs} {ssh}; echo done",
        db = p(&run.data.join("nightshift.db")),
        other = p(&run.other_workspace.join("notes.txt")),
        key = p(&run.key_file),
        canary = p(&canary),
        runs = p(&run.data.join("runs")),
        ssh = p(&ssh),
    );
    let sandbox = Sandbox::confined(run.policy()).unwrap();
    let (_, lines) = sandbox
        .output(&ProcessSpec::shell(&script, &run.workspace))
        .await
        .unwrap();
    std::fs::remove_file(&canary).unwrap();
    if created_ssh {
        std::fs::remove_dir(&ssh).unwrap();
    }
    let out = text(&lines);
    assert!(out.contains("done"), "{out}");
    for secret in ["db-secret", "other-run-secret", "key-secret", "ssh-secret"] {
        assert!(
            !out.contains(secret),
            "{secret} is visible from the sandbox:\n{out}"
        );
    }
    // Listing the runs shows this run only (its mount point), never the other run.
    let listed: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    assert!(listed.contains(&"r1") && !listed.contains(&"r2"), "{out}");
}

#[tokio::test]
async fn only_workspace_home_and_private_tmp_are_writable() {
    let run = RunDirs::new();
    let host_tmp_canary =
        std::env::temp_dir().join(format!("nightshift-host-tmp-{}", std::process::id()));
    std::fs::write(&host_tmp_canary, "host").unwrap();
    let attempts = [
        ("workspace", format!("{}/made-inside", p(&run.workspace))),
        ("home", format!("{}/.cache-file", p(&run.home))),
        ("tmp", "/tmp/scratch".to_string()),
        ("usr", "/usr/nightshift-escape".to_string()),
        ("fixture-root", format!("{}/escape", p(run.root.path()))),
        ("hidden-data", format!("{}/escape", p(&run.data))),
        ("other-run", format!("{}/escape", p(&run.other_workspace))),
    ];
    let script: String = attempts
        .iter()
        .map(|(name, path)| {
            format!(
                "if echo x > {path}; then echo 'wrote {name}'; else echo 'refused {name}'; fi; "
            )
        })
        .chain([format!(
            "ls -A /tmp; test -e {} && echo 'host tmp visible'",
            p(&host_tmp_canary)
        )])
        .collect();
    let sandbox = Sandbox::confined(run.policy()).unwrap();
    let (_, lines) = sandbox
        .output(&ProcessSpec::shell(&script, &run.workspace))
        .await
        .unwrap();
    let out = text(&lines);
    std::fs::remove_file(&host_tmp_canary).unwrap();
    for allowed in ["workspace", "home", "tmp"] {
        assert!(out.contains(&format!("wrote {allowed}\n")), "{out}");
    }
    for refused in ["usr", "hidden-data", "other-run"] {
        assert!(out.contains(&format!("refused {refused}\n")), "{out}");
    }
    // Outside the workspace a write either fails or lands in the private /tmp (when the fixtures
    // themselves live under /tmp): it never reaches the host.
    assert!(!run.root.path().join("escape").exists(), "{out}");
    assert!(!out.contains("host tmp visible"), "{out}");
    // Workspace and home writes land on the host; the private /tmp and the hidden dirs do not.
    assert!(run.workspace.join("made-inside").is_file());
    assert!(run.home.join(".cache-file").is_file());
    assert!(!std::path::Path::new("/tmp/scratch").exists());
    assert!(!run.other_workspace.join("escape").exists());
    assert!(!run.root.path().join("escape").exists());
}

#[tokio::test]
async fn home_points_into_the_run_and_environment_stays_scrubbed() {
    let run = RunDirs::new();
    // SAFETY: set before spawning; the variable is only read by the child's scrubbed env.
    unsafe { std::env::set_var("NIGHTSHIFT_CONFINED_SECRET", "canary") };
    let sandbox = Sandbox::confined(run.policy()).unwrap();
    let (exit, lines) = sandbox
        .output(&ProcessSpec::shell("env; id -u; pwd", &run.workspace))
        .await
        .unwrap();
    let out = text(&lines);
    assert!(exit.success(), "{out}");
    assert!(out.contains(&format!("HOME={}\n", p(&run.home))), "{out}");
    assert!(out.contains(&format!("{}\n", p(&run.workspace))), "{out}");
    assert!(!out.contains("canary"), "{out}");
}

#[tokio::test]
async fn terminate_leaves_no_confined_process_behind() {
    let run = RunDirs::new();
    let marker = format!("98{}.5", std::process::id());
    let sleeping = format!("sleep {marker}");
    // A trapping shell, a background child and one that left the group with setsid: the PID
    // namespace has to take all of them down.
    let script =
        format!("trap '' INT TERM; sleep {marker} & setsid sleep {marker} & sleep {marker}; wait");
    let sandbox = Sandbox::confined(run.policy())
        .unwrap()
        .with_grace(Duration::from_millis(200));
    let mut process = sandbox
        .spawn(&ProcessSpec::shell(&script, &run.workspace))
        .unwrap();
    let pgid = process.pgid();
    for _ in 0..100 {
        if processes_with(&sleeping).len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(processes_with(&sleeping).len(), 3);
    assert!(group_alive(pgid));
    process.terminate().await.unwrap();
    assert!(!group_alive(pgid));
    assert!(
        processes_with(&sleeping).is_empty(),
        "left behind: {:?}",
        processes_with(&sleeping)
    );
}

#[tokio::test]
async fn sigint_reaches_the_confined_command_first() {
    let run = RunDirs::new();
    let script = "trap 'echo got-int; exit 0' INT; echo ready; while :; do sleep 0.05; done";
    let sandbox = Sandbox::confined(run.policy())
        .unwrap()
        .with_grace(Duration::from_secs(3));
    let mut process = sandbox
        .spawn(&ProcessSpec::shell(script, &run.workspace))
        .unwrap();
    assert_eq!(process.next_line().await.unwrap().text, "ready");
    process.terminate().await.unwrap();
    let mut rest = Vec::new();
    while let Some(line) = process.next_line().await {
        rest.push(line.text);
    }
    assert!(rest.contains(&"got-int".to_string()), "{rest:?}");
}

/// The namespace ends the moment the command exits: what it started must have had its own
/// graceful stop by then (an agent flushing its session file on SIGINT).
#[tokio::test]
async fn what_the_command_started_stops_gracefully_before_the_command() {
    let run = RunDirs::new();
    std::fs::write(
        run.workspace.join("inner.sh"),
        "trap 'sleep 0.3; echo flushed > flushed.txt; exit 0' INT; echo ready; \
         while :; do sleep 0.05; done\n",
    )
    .unwrap();
    std::fs::write(run.workspace.join("list"), "inner.sh\n").unwrap();
    // xargs, like an agent's node wrapper, dies of SIGINT at once; what it started takes its time.
    let sandbox = Sandbox::confined(run.policy())
        .unwrap()
        .with_grace(Duration::from_secs(3));
    let mut process = sandbox
        .spawn(&ProcessSpec::new("xargs", &run.workspace).args(["-a", "list", "sh"]))
        .unwrap();
    assert_eq!(process.next_line().await.unwrap().text, "ready");
    process.terminate().await.unwrap();
    assert!(!group_alive(process.pgid()));
    assert_eq!(
        std::fs::read_to_string(run.workspace.join("flushed.txt")).unwrap(),
        "flushed\n"
    );
}

#[tokio::test]
async fn wait_reaps_confined_background_children() {
    let run = RunDirs::new();
    let marker = format!("97{}.5", std::process::id());
    let sleeping = format!("sleep {marker}");
    let sandbox = Sandbox::confined(run.policy()).unwrap();
    let mut process = sandbox
        .spawn(&ProcessSpec::shell(
            &format!("sleep {marker} & echo started"),
            &run.workspace,
        ))
        .unwrap();
    assert_eq!(process.next_line().await.unwrap().text, "started");
    assert!(process.wait().await.unwrap().success());
    assert!(!group_alive(process.pgid()));
    assert!(processes_with(&sleeping).is_empty());
}

#[tokio::test]
async fn unconfined_must_be_chosen_and_bad_policies_are_refused() {
    assert!(
        !Sandbox::with_confinement(Confinement::None)
            .unwrap()
            .is_confined()
    );
    let run = RunDirs::new();
    let missing = run.policy();
    let missing = nightshift_sandbox::ConfinementPolicy {
        workspace: run.root.path().join("nope"),
        ..missing
    };
    assert!(matches!(
        Sandbox::confined(missing),
        Err(SandboxError::MissingDir(_))
    ));
    let hides_root = run.policy().hide("/");
    let sandbox = Sandbox::confined(hides_root).unwrap();
    let err = sandbox
        .spawn(&ProcessSpec::shell("true", &run.workspace))
        .err()
        .unwrap();
    assert!(matches!(err, SandboxError::Policy(_)), "{err}");
}

#[tokio::test]
async fn missing_program_says_so_when_confined() {
    let run = RunDirs::new();
    let sandbox = Sandbox::confined(run.policy()).unwrap();
    let err = sandbox
        .spawn(&ProcessSpec::new(
            "definitely-not-a-program",
            &run.workspace,
        ))
        .err()
        .unwrap();
    let text = err.to_string();
    assert!(
        text.contains("definitely-not-a-program") && text.contains("not found"),
        "{text}"
    );
}

#[tokio::test]
async fn a_program_under_a_hidden_path_is_refused_with_a_hint_until_shown() {
    let run = RunDirs::new();
    let tools = run.root.path().join("tools");
    std::fs::create_dir_all(&tools).unwrap();
    let tool = tools.join("hello-tool");
    std::fs::write(&tool, "#!/bin/sh\necho hello from tool\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let spec = ProcessSpec::new(p(&tool), &run.workspace);

    let hidden = Sandbox::confined(run.policy().hide(&tools)).unwrap();
    let err = hidden.spawn(&spec).err().unwrap();
    assert!(err.to_string().contains("extra_readonly"), "{err}");

    let shown = Sandbox::confined(run.policy().hide(&tools).readonly(&tools)).unwrap();
    let (exit, lines) = shown.output(&spec).await.unwrap();
    assert!(exit.success(), "{}", text(&lines));
    assert_eq!(text(&lines), "hello from tool\n");
    // Shown read-only: the tool cannot be changed from inside.
    let (_, lines) = shown
        .output(&ProcessSpec::shell(
            &format!("echo x >> {} || echo refused", p(&tool)),
            &run.workspace,
        ))
        .await
        .unwrap();
    assert!(text(&lines).contains("refused"), "{}", text(&lines));
}

#[tokio::test]
async fn a_program_under_the_hosts_tmp_is_refused_with_a_hint_until_shown() {
    let run = RunDirs::new();
    // The sandbox's /tmp is a fresh tmpfs: the host's /tmp is hidden like any covered path.
    let tools = tempfile::tempdir().unwrap();
    let tool = tools.path().join("tmp-tool");
    std::fs::write(&tool, "#!/bin/sh\necho hello from tmp\n").unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let spec = ProcessSpec::new(p(&tool), &run.workspace);
    let err = Sandbox::confined(run.policy())
        .unwrap()
        .spawn(&spec)
        .err()
        .unwrap();
    assert!(err.to_string().contains("extra_readonly"), "{err}");
    let shown = Sandbox::confined(run.policy().readonly(tools.path())).unwrap();
    let (exit, lines) = shown.output(&spec).await.unwrap();
    assert!(exit.success(), "{}", text(&lines));
    assert_eq!(text(&lines), "hello from tmp\n");
}

#[tokio::test]
async fn a_hidden_directory_inside_a_shown_one_stays_hidden_and_nesting_goes_both_ways() {
    let run = RunDirs::new();
    // data (hidden) ⊃ mirror (shown) ⊃ mirror/worktrees (hidden) ⊃ mirror/worktrees/mine (shown)
    let mirror = run.data.join("mirrors/repo.git");
    let mine = mirror.join("worktrees/mine");
    let theirs = mirror.join("worktrees/theirs");
    for dir in [&mine, &theirs] {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(mirror.join("HEAD"), "mirror-head").unwrap();
    std::fs::write(mine.join("HEAD"), "my-head").unwrap();
    std::fs::write(theirs.join("HEAD"), "their-head").unwrap();
    std::fs::write(mirror.join("config"), "url = secret-remote").unwrap();
    let empty = run.root.path().join("empty");
    std::fs::write(&empty, "").unwrap();
    // Listed shallow-last on purpose: the order given must not matter.
    let policy = run
        .policy()
        .readonly(&mine)
        .substitute(mirror.join("config"), &empty)
        .hide(mirror.join("worktrees"))
        .readonly(&mirror);
    let script = format!(
        "cat {m}/HEAD {mine}/HEAD {theirs}/HEAD; cat {db}; echo x > {mine}/HEAD || echo refused; \
         test -f {m}/config && ! test -s {m}/config && echo config-empty",
        m = p(&mirror),
        mine = p(&mine),
        theirs = p(&theirs),
        db = p(&run.data.join("nightshift.db")),
    );
    let sandbox = Sandbox::confined(policy).unwrap();
    let (_, lines) = sandbox
        .output(&ProcessSpec::shell(&script, &run.workspace))
        .await
        .unwrap();
    let out = text(&lines);
    assert!(
        out.contains("mirror-head") && out.contains("my-head"),
        "{out}"
    );
    assert!(
        !out.contains("their-head") && !out.contains("db-secret"),
        "{out}"
    );
    assert!(out.contains("refused"), "{out}");
    assert_eq!(
        std::fs::read_to_string(mine.join("HEAD")).unwrap(),
        "my-head"
    );
}

/// A descriptor the server holds without close-on-exec (inherited from whoever started it)
/// reaches no process it starts, confined or not: only stdin, stdout and stderr do.
#[tokio::test]
async fn only_stdin_stdout_and_stderr_reach_a_process() {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    let run = RunDirs::new();
    let secret = run.root.path().join("inherited-secret");
    std::fs::write(&secret, "inherited-descriptor-secret").unwrap();
    // Without O_CLOEXEC, as a parent process would pass it down.
    let fd = open(&secret, OFlag::O_RDONLY, Mode::empty()).unwrap();
    let script = format!(
        "if [ -e /proc/$$/fd/{fd} ]; then echo LEAKED; cat <&{fd}; else echo CLOSED; fi; \
         ls /proc/$$/fd"
    );
    for sandbox in [Sandbox::new(), Sandbox::confined(run.policy()).unwrap()] {
        let (exit, lines) = sandbox
            .output(&ProcessSpec::shell(&script, &run.workspace))
            .await
            .unwrap();
        let out = text(&lines);
        assert!(exit.success(), "{out}");
        assert!(
            out.starts_with("CLOSED\n") && !out.contains("secret"),
            "confined: {}: {out}",
            sandbox.is_confined()
        );
        let fds: Vec<&str> = lines[1..].iter().map(|l| l.text.as_str()).collect();
        assert_eq!(fds, ["0", "1", "2"], "confined: {}", sandbox.is_confined());
    }
    nix::unistd::close(fd).unwrap();
}

/// With `/tmp` on disk each process writes to a directory of its own under the policy's root:
/// measurable from outside while it runs, private to it, and removed once it is gone.
#[tokio::test]
async fn tmp_on_disk_is_each_processs_own_and_removed_after() {
    let run = RunDirs::new();
    let root = run.root.path().join("tmp");
    let sandbox = Sandbox::confined(run.policy().tmp_under(&root)).unwrap();
    let writer = "head -c 300000 /dev/urandom > /tmp/blob; echo written; sleep 60";
    let mut first = sandbox
        .spawn(&ProcessSpec::shell(writer, &run.workspace))
        .unwrap();
    assert_eq!(first.next_line().await.unwrap().text, "written");
    let dirs: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let blob = dirs[0].path().join("blob");
    assert_eq!(std::fs::metadata(&blob).unwrap().len(), 300_000);

    let (_, lines) = sandbox
        .output(&ProcessSpec::shell(
            "ls -A /tmp; echo listed",
            &run.workspace,
        ))
        .await
        .unwrap();
    assert_eq!(
        text(&lines),
        "listed\n",
        "another process's /tmp is its own"
    );
    first.terminate().await.unwrap();
    let gone = std::time::Instant::now();
    while std::fs::read_dir(&root).unwrap().next().is_some() {
        assert!(gone.elapsed() < Duration::from_secs(10), "{blob:?} stays");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
