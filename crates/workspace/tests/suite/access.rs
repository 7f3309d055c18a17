//! Which repositories git may reach, and what it may do there: local repositories where the
//! operator allows them (never in the data directory), no hooks of theirs, no internal hosts,
//! no transport helpers, no redirects.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nightshift_core::RepoUrl;
use nightshift_test_support::git::{RemoteRepo, git};
use nightshift_workspace::{Git, LocalRepos, Mirrors, RepoPolicy, Requester, WorkspaceError};

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn policy(data: &Path, local: LocalRepos) -> RepoPolicy {
    let mut policy = RepoPolicy::new(data);
    policy.local = local;
    policy
}

async fn refusal(policy: &RepoPolicy, url: &str, by: Requester) -> String {
    match policy.admit(&RepoUrl::parse(url).unwrap(), by).await {
        Err(e @ WorkspaceError::NotAllowed { .. }) => e.to_string(),
        other => panic!("{url} was not refused: {other:?}"),
    }
}

/// Everything a repository can do to the machine that fetches from it or pushes to it: every
/// hook of the receiving side, and the commands its config may name. Pushing to a local
/// repository makes git serve it on this machine, as the server's user.
#[tokio::test]
async fn a_local_repository_runs_nothing_of_its_own_when_fetched_from_and_pushed_to() {
    let remote = RemoteRepo::with_files(&[("a.txt", "one\n")]);
    let bare = remote.bare_path();
    let marker = remote
        .bare_path()
        .parent()
        .unwrap()
        .join("ran-on-the-server");
    let touch = format!(
        "#!/bin/sh\necho \"$0\" >> {}\ncat > /dev/null\n",
        marker.display()
    );
    for hook in [
        "pre-receive",
        "update",
        "post-receive",
        "post-update",
        "reference-transaction",
        "push-to-checkout",
        "proc-receive",
        "pre-auto-gc",
    ] {
        executable(&bare.join("hooks").join(hook), &touch);
    }
    // Hooks elsewhere, a command advertising an alternate's refs, and gc after every push.
    let other_hooks = bare.parent().unwrap().join("other-hooks");
    std::fs::create_dir_all(&other_hooks).unwrap();
    executable(&other_hooks.join("pre-receive"), &touch);
    let alternate = bare.parent().unwrap().join("alternate.git");
    git(
        bare.parent().unwrap(),
        &["init", "--quiet", "--bare", &alternate.to_string_lossy()],
    );
    std::fs::write(
        bare.join("objects/info/alternates"),
        format!("{}\n", alternate.join("objects").display()),
    )
    .unwrap();
    for (key, value) in [
        ("core.hooksPath", other_hooks.to_string_lossy().to_string()),
        (
            "core.alternateRefsCommand",
            format!("echo alternate >> {}; true", marker.display()),
        ),
        ("receive.autogc", "true".into()),
        ("gc.auto", "1".into()),
        (
            "core.fsmonitor",
            format!("echo fsmonitor >> {}", marker.display()),
        ),
    ] {
        git(&bare, &["config", key, &value]);
    }

    let data = tempfile::tempdir().unwrap();
    let git_ = Git::new(data.path());
    let mirrors = Mirrors::new(data.path().join("mirrors"), git_.clone());
    let repo = crate::allowed(&remote.url()).await;
    let info = mirrors.remote_info(&repo).await.unwrap();
    assert_eq!(info.branches, vec!["main"]);
    let dest = data.path().join("runs/1/work");
    let wt = mirrors
        .add_worktree(&repo, "main", "nightshift/1-edit", &dest)
        .await
        .unwrap();
    std::fs::write(dest.join("a.txt"), "two\n").unwrap();
    let commit = wt.commit(&git_, "Edit", &[]).await.unwrap();
    let pushed = wt.push(&git_, "remote").await.unwrap();
    assert_eq!(pushed, commit);
    assert_eq!(
        remote.head("nightshift/1-edit").as_deref(),
        Some(commit.as_str())
    );
    // A mirror made before Nightshift set this up gets it at its next fetch.
    for key in ["remote.origin.uploadpack", "remote.origin.receivepack"] {
        git(wt.mirror(), &["config", "--unset", key]);
    }
    mirrors.refresh_base(&repo, "main").await.unwrap();
    std::fs::write(dest.join("a.txt"), "three\n").unwrap();
    let again = wt.commit(&git_, "Edit again", &[]).await.unwrap();
    assert_eq!(wt.push(&git_, "remote").await.unwrap(), again);

    let ran = std::fs::read_to_string(&marker).unwrap_or_default();
    assert!(
        ran.is_empty(),
        "the repository ran commands on this machine:\n{ran}"
    );
}

#[tokio::test]
async fn the_data_directory_is_never_a_repository_however_it_is_named() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let remote = RemoteRepo::with_files(&[("a.txt", "one\n")]);
    // A mirror of another project's repository, where the server keeps it.
    let mirrors = Mirrors::new(data.join("mirrors"), Git::new(&data));
    let mirror = mirrors
        .sync(&crate::allowed(&remote.url()).await)
        .await
        .unwrap();
    let outside = scratch.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    // A link to it, a path through `..`, a worktree-style `.git` file and a repository that
    // borrows its objects.
    let link = outside.join("link.git");
    std::os::unix::fs::symlink(&mirror, &link).unwrap();
    let gitfile = outside.join("gitfile");
    std::fs::create_dir_all(&gitfile).unwrap();
    std::fs::write(
        gitfile.join(".git"),
        format!("gitdir: {}\n", mirror.display()),
    )
    .unwrap();
    let borrower = outside.join("borrower.git");
    git(
        &outside,
        &["init", "--quiet", "--bare", &borrower.to_string_lossy()],
    );
    std::fs::write(
        borrower.join("objects/info/alternates"),
        format!("{}\n", mirror.join("objects").display()),
    )
    .unwrap();
    let dotdot = format!("{}/../data/mirrors/../mirrors/{}", outside.display(), {
        mirror.file_name().unwrap().to_string_lossy()
    });
    let candidates = [
        mirror.display().to_string(),
        format!("file://{}", mirror.display()),
        format!("file://localhost{}", mirror.display()),
        link.display().to_string(),
        dotdot,
        gitfile.display().to_string(),
        borrower.display().to_string(),
    ];
    // Neither an admin on a laptop-style server nor an operator allowing the whole scratch
    // directory lets any of them through.
    for local in [
        LocalRepos::ForServerAdmins,
        LocalRepos::Under(vec![scratch.path().to_path_buf()]),
    ] {
        let policy = policy(&data, local);
        for url in &candidates {
            let err = refusal(&policy, url, Requester::ServerAdmin).await;
            assert!(
                err.contains("inside Nightshift's data directory"),
                "{url}: {err}"
            );
        }
    }
    // The repository itself is fine.
    let policy = policy(&data, LocalRepos::ForServerAdmins);
    let repo = policy
        .admit(
            &RepoUrl::parse(&remote.url()).unwrap(),
            Requester::ServerAdmin,
        )
        .await
        .unwrap();
    assert_eq!(repo.url().as_str(), remote.url());
}

#[tokio::test]
async fn local_repositories_are_where_the_operator_allows_them() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    let allowed = scratch.path().join("srv");
    std::fs::create_dir_all(allowed.join("team.git")).unwrap();
    git(&allowed.join("team.git"), &["init", "--quiet", "--bare"]);
    let elsewhere = tempfile::tempdir().unwrap();
    git(elsewhere.path(), &["init", "--quiet", "--bare"]);
    let url = |p: &Path| p.display().to_string();

    let none = policy(&data, LocalRepos::Under(Vec::new()));
    let err = refusal(
        &none,
        &url(&allowed.join("team.git")),
        Requester::ServerAdmin,
    )
    .await;
    assert!(err.contains("allows no local repositories"), "{err}");
    assert!(err.contains("local_roots"), "{err}");

    let roots = policy(&data, LocalRepos::Under(vec![allowed.clone()]));
    for by in [Requester::Member, Requester::ServerAdmin, Requester::Run] {
        roots
            .admit(
                &RepoUrl::parse(&url(&allowed.join("team.git"))).unwrap(),
                by,
            )
            .await
            .unwrap();
    }
    let err = refusal(&roots, &url(elsewhere.path()), Requester::ServerAdmin).await;
    assert!(
        err.contains(&format!("must be under {}", allowed.display())),
        "{err}"
    );
    // Climbing out by `..` or a link counts as outside.
    let climb = format!("{}/../../{}", allowed.display(), elsewhere.path().display());
    refusal(&roots, &climb, Requester::ServerAdmin).await;
    std::os::unix::fs::symlink(elsewhere.path(), allowed.join("link")).unwrap();
    let err = refusal(&roots, &url(&allowed.join("link")), Requester::ServerAdmin).await;
    assert!(err.contains("must be under"), "{err}");
    // Outside the roots nothing is looked at: a missing path is refused, not reported missing.
    refusal(&roots, "/nonexistent/repo.git", Requester::ServerAdmin).await;

    let admins = policy(&data, LocalRepos::ForServerAdmins);
    admins
        .admit(
            &RepoUrl::parse(&url(elsewhere.path())).unwrap(),
            Requester::ServerAdmin,
        )
        .await
        .unwrap();
    let err = refusal(&admins, &url(elsewhere.path()), Requester::Member).await;
    assert!(err.contains("only its admins"), "{err}");
}

#[tokio::test]
async fn internal_hosts_are_refused_unless_the_operator_lists_them() {
    let data = tempfile::tempdir().unwrap();
    let open = policy(data.path(), LocalRepos::Under(Vec::new()));
    for url in [
        "http://127.0.0.1:9/x.git",
        "https://localhost/x.git",
        "http://169.254.169.254/latest",
        "ssh://git@10.0.0.7/x.git",
        "git://192.168.1.1/x.git",
        "git@[::1]:x.git",
        "http://[::ffff:127.0.0.1]:8080/x",
        "http://0.0.0.0/x",
    ] {
        let err = refusal(&open, url, Requester::ServerAdmin).await;
        assert!(
            err.contains("loopback, private or link-local"),
            "{url}: {err}"
        );
    }
    let mut listed = open.clone();
    listed.hosts = vec!["127.0.0.1:9".into(), "localhost".into()];
    for url in ["http://127.0.0.1:9/x.git", "https://localhost/x.git"] {
        listed
            .admit(&RepoUrl::parse(url).unwrap(), Requester::Member)
            .await
            .unwrap();
    }
    refusal(&listed, "http://127.0.0.1:10/x.git", Requester::Member).await;

    let mut closed = open.clone();
    closed.public_hosts = false;
    let err = refusal(
        &closed,
        "https://example.com/o/r.git",
        Requester::ServerAdmin,
    )
    .await;
    assert!(err.contains("only its configured forges"), "{err}");
}

/// git itself refuses transport helpers, whatever reaches it: `fd::` would hold the command
/// on a file descriptor and `ext::` runs a command.
#[tokio::test]
async fn git_refuses_transport_helpers_and_local_paths_when_told() {
    let data = tempfile::tempdir().unwrap();
    let git_ = Git::new(data.path());
    for url in ["fd::17", "ext::sh -c touch% /tmp/x"] {
        let err = git_
            .run(data.path(), &["ls-remote", url])
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("not allowed"), "{url}: {err}");
    }
    let remote = RemoteRepo::with_files(&[("a.txt", "one\n")]);
    git_.run(data.path(), &["ls-remote", &remote.url()])
        .await
        .unwrap();
    let err = git_
        .without_local_transport()
        .run(data.path(), &["ls-remote", &remote.url()])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("transport 'file' not allowed"), "{err}");
}

/// A listed host that answers with a redirect to an internal one: git does not follow it, and
/// the error repeats nothing the other side said.
#[tokio::test]
async fn a_redirect_is_not_followed_and_the_answer_not_repeated() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let internal = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let internal_addr = internal.local_addr().unwrap();
    let (reached, mut internal_requests) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((socket, _)) = internal.accept().await {
            let _ = reached.send(socket.peer_addr().ok());
        }
    });
    let listed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listed.local_addr().unwrap();
    let (seen, mut requests) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listed.accept().await {
            let mut buf = vec![0u8; 4096];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let _ = seen.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let body = "internal-canary";
            let answer = format!(
                "HTTP/1.1 302 Found\r\nLocation: http://{internal_addr}/redirect-canary\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(answer.as_bytes()).await;
        }
    });
    let data = tempfile::tempdir().unwrap();
    let mut policy = policy(data.path(), LocalRepos::Under(Vec::new()));
    policy.hosts = vec![addr.to_string()];
    let repo = policy
        .admit(
            &RepoUrl::parse(&format!("http://{addr}/o/r.git")).unwrap(),
            Requester::Member,
        )
        .await
        .unwrap();
    let mirrors = Mirrors::new(data.path().join("mirrors"), Git::new(data.path()));
    let err = mirrors.remote_info(&repo).await.unwrap_err();
    assert!(matches!(err, WorkspaceError::Unreachable { .. }), "{err}");
    let text = err.to_string();
    assert!(!text.contains("canary"), "{text}");
    assert!(!text.contains(&internal_addr.port().to_string()), "{text}");
    let first = requests.recv().await.unwrap();
    assert!(first.contains("/o/r.git/info/refs"), "{first}");
    assert!(
        internal_requests.try_recv().is_err(),
        "git followed the redirect to the internal host"
    );
}
