//! Toolchains under a home, found from the server's environment: laid out on disk the way each
//! manager lays them out, then shown to a real sandbox — the toolchain runs, the home's secrets
//! stay hidden.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nightshift_sandbox::{HostEnv, ProcessSpec, Sandbox, Toolchain, Toolchains, cache_env};

use super::{RunDirs, p, text};

/// A home under the target dir with the files given (`path`, contents); `*.sh` are executable.
fn home_with(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("home-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    let home = dir.path().canonicalize().unwrap().join("alice");
    for (path, contents) in files {
        let path = home.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        if contents.starts_with("#!") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    (dir, home)
}

fn host(home: &Path, path: &[PathBuf], more: &[(&str, String)]) -> HostEnv {
    let path = std::env::join_paths(
        path.iter()
            .cloned()
            .chain(["/usr/bin".into(), "/bin".into()]),
    )
    .unwrap();
    let mut vars = vec![
        ("HOME".to_string(), p(home)),
        ("PATH".to_string(), path.to_string_lossy().into_owned()),
    ];
    vars.extend(more.iter().map(|(k, v)| (k.to_string(), v.clone())));
    HostEnv::from_vars(vars)
}

fn by_manager<'a>(found: &'a Toolchains, manager: &str) -> &'a Toolchain {
    found
        .list
        .iter()
        .find(|t| t.manager == manager)
        .unwrap_or_else(|| panic!("no {manager} in {found:#?}"))
}

fn env_of<'a>(toolchain: &'a Toolchain, key: &str) -> Option<&'a str> {
    toolchain
        .env
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[test]
fn each_manager_is_found_with_its_version_directories_and_variables() {
    let (_dir, home) = home_with(&[
        (
            ".rustup/toolchains/stable-x86_64-unknown-linux-gnu/bin/rustc",
            "#!/bin/sh\n",
        ),
        (
            ".rustup/settings.toml",
            "default_toolchain = \"stable-x86_64-unknown-linux-gnu\"\n",
        ),
        (".cargo/bin/cargo", "#!/bin/sh\n"),
        (
            ".cargo/credentials.toml",
            "[registry]\ntoken = \"cargo-secret\"\n",
        ),
        (".pyenv/versions/3.12.1/bin/python3", "#!/bin/sh\n"),
        (".pyenv/version", "3.12.1\n"),
        (".nvm/versions/node/v20.11.0/bin/node", "#!/bin/sh\n"),
        (
            ".nvm/versions/node/v20.11.0/etc/npmrc",
            "//registry.npmjs.org/:_authToken=npm-secret\n",
        ),
        (".asdf/installs/nodejs/20.11.0/bin/node", "#!/bin/sh\n"),
        (
            ".tool-versions",
            "nodejs 20.11.0\npython 3.12.1 # comment\n",
        ),
        (
            ".local/share/mise/installs/node/22.1.0/bin/node",
            "#!/bin/sh\n",
        ),
        (
            ".config/mise/config.toml",
            "[tools]\nnode = \"22\"\ngolang = [\"1.22\"]\n[env]\nTOKEN = \"mise-secret\"\n",
        ),
        (".sdkman/candidates/java/21.0.2-tem/bin/java", "#!/bin/sh\n"),
        (
            ".local/share/uv/python/cpython-3.12.1-linux-x86_64-gnu/bin/python3",
            "#!/bin/sh\n",
        ),
        ("sdk/go1.22.1/VERSION", "go1.22.1\ntime 2024-03-01\n"),
        ("sdk/go1.22.1/bin/go", "#!/bin/sh\n"),
    ]);
    symlink(
        home.join(".sdkman/candidates/java/21.0.2-tem"),
        home.join(".sdkman/candidates/java/current"),
    )
    .unwrap();
    let path = [
        home.join(".cargo/bin"),
        home.join(".nvm/versions/node/v20.11.0/bin"),
        home.join("sdk/go1.22.1/bin"),
    ];
    let found = Toolchains::discover(&host(&home, &path, &[]));

    let rust = by_manager(&found, "rustup");
    assert_eq!(rust.name, "rust");
    assert_eq!(
        rust.version.as_deref(),
        Some("stable-x86_64-unknown-linux-gnu")
    );
    assert_eq!(
        rust.shown,
        vec![home.join(".rustup"), home.join(".cargo/bin")]
    );
    assert_eq!(
        env_of(rust, "RUSTUP_HOME"),
        Some(p(&home.join(".rustup")).as_str())
    );
    // CARGO_HOME is the run's cache, never the server user's (credentials.toml is there).
    assert_eq!(env_of(rust, "CARGO_HOME"), None);

    let python = by_manager(&found, "pyenv");
    assert_eq!(python.version.as_deref(), Some("3.12.1"));
    assert_eq!(python.shown, vec![home.join(".pyenv")]);
    assert_eq!(
        env_of(python, "PYENV_ROOT"),
        Some(p(&home.join(".pyenv")).as_str())
    );

    let node = by_manager(&found, "nvm");
    assert_eq!(node.version.as_deref(), Some("v20.11.0"), "the one on PATH");
    assert_eq!(node.shown, vec![home.join(".nvm/versions")]);

    let asdf = by_manager(&found, "asdf");
    assert_eq!(
        asdf.version.as_deref(),
        Some("nodejs 20.11.0, python 3.12.1")
    );
    assert_eq!(env_of(asdf, "ASDF_NODEJS_VERSION"), Some("20.11.0"));
    assert_eq!(env_of(asdf, "ASDF_PYTHON_VERSION"), Some("3.12.1"));

    let mise = by_manager(&found, "mise");
    assert_eq!(mise.shown, vec![home.join(".local/share/mise")]);
    assert_eq!(env_of(mise, "MISE_NODE_VERSION"), Some("22"));
    assert_eq!(env_of(mise, "MISE_GOLANG_VERSION"), Some("1.22"));
    assert!(!format!("{mise:?}").contains("mise-secret"), "{mise:?}");

    let jvm = by_manager(&found, "sdkman");
    assert_eq!(jvm.version.as_deref(), Some("java 21.0.2-tem"));
    assert_eq!(jvm.shown, vec![home.join(".sdkman/candidates")]);

    let uv = by_manager(&found, "uv");
    assert_eq!(
        uv.version.as_deref(),
        Some("cpython-3.12.1-linux-x86_64-gnu")
    );

    let go = found.list.iter().find(|t| t.name == "go").unwrap();
    assert_eq!(go.version.as_deref(), Some("go1.22.1"));
    assert_eq!(go.from, home.join("sdk/go1.22.1"));
    assert_eq!(
        env_of(go, "GOROOT"),
        Some(p(&home.join("sdk/go1.22.1")).as_str())
    );

    // Nothing shown is a home, or holds one of its secrets.
    for shown in found.shown() {
        assert!(
            shown != home && !home.join(".cargo").starts_with(shown),
            "{shown:?}"
        );
    }
    assert_eq!(
        found.secrets_within(),
        vec![home.join(".nvm/versions/node/v20.11.0/etc/npmrc")]
    );
}

#[test]
fn programs_on_path_in_a_home_bring_their_installation_and_nothing_more() {
    let (_dir, home) = home_with(&[
        // pipx: a link into a virtual environment whose python is a link into an install prefix.
        (".local/share/pipx/venvs/black/pyvenv.cfg", "home = x\n"),
        (
            ".local/share/pipx/venvs/black/bin/black",
            "#!/bin/sh\necho black\n",
        ),
        (".local/share/pythons/3.12/bin/python3.12", "#!/bin/sh\n"),
        (".local/share/pythons/3.12/lib/python3.12/os.py", ""),
        (".local/share/keyrings/login.keyring", "keyring-secret"),
        (".config/gh/hosts.yml", "oauth_token: gh-secret"),
        (".aws/bin/aws", "#!/bin/sh\n"),
    ]);
    std::fs::create_dir_all(home.join(".local/bin")).unwrap();
    symlink(
        home.join(".local/share/pythons/3.12/bin/python3.12"),
        home.join(".local/share/pipx/venvs/black/bin/python"),
    )
    .unwrap();
    symlink(
        home.join(".local/share/pipx/venvs/black/bin/black"),
        home.join(".local/bin/black"),
    )
    .unwrap();
    let path = [
        home.join(".local/bin"),
        home.clone(),
        home.join(".config"),
        home.join(".aws/bin"),
    ];
    let found = Toolchains::discover(&host(&home, &path, &[]));
    // This machine's own toolchains (on /usr/bin) may be found too: only the home's matter.
    let shown: Vec<&Path> = found.shown().filter(|s| s.starts_with(&home)).collect();
    assert_eq!(
        shown,
        vec![
            home.join(".local/bin").as_path(),
            home.join(".local/share/pipx/venvs/black").as_path(),
            home.join(".local/share/pythons/3.12").as_path(),
        ],
        "the home, a catch-all like ~/.config and a place of credentials are never shown: {found:#?}"
    );
    let tools = found.list.iter().find(|t| t.name == "tools").unwrap();
    assert_eq!(tools.manager, "PATH");
    assert_eq!(tools.from, home.join(".local/bin"));
}

#[test]
fn cache_variables_point_into_the_repository_cache() {
    let cache = Path::new("/data/caches/1/demo");
    let env = cache_env(cache);
    for (key, sub) in [
        ("CARGO_HOME", "cargo"),
        ("GOPATH", "go"),
        ("GOCACHE", "go-build"),
        ("XDG_CACHE_HOME", "cache"),
        ("npm_config_cache", "npm"),
    ] {
        assert!(
            env.contains(&(key.to_string(), p(&cache.join(sub)))),
            "{key} in {env:?}"
        );
    }
}

/// This machine's own toolchains, as the server finds them: whatever `cargo` and `python3`
/// are on PATH (rustup's and pyenv's under the home where they are so installed) run in a
/// sandbox shown only what discovery found, with downloads in a writable cache; the home's
/// credential files stay unreadable.
#[tokio::test]
async fn this_machines_rust_and_python_run_confined_and_the_homes_secrets_do_not() {
    let host = HostEnv::current();
    let found = Toolchains::discover(&host);
    let run = RunDirs::new();
    let cache = run.root.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let home = host.home().unwrap();
    let canary = home.join(format!(".nightshift-canary-{}", std::process::id()));
    std::fs::write(&canary, "home-secret").unwrap();

    let mut policy = run.policy().writable(&cache);
    for dir in found.shown() {
        policy = policy.readonly(dir);
    }
    for secret in found.secrets_within() {
        policy = policy.hide(secret);
    }
    let sandbox = Sandbox::confined(policy)
        .unwrap()
        .with_env([("PATH".to_string(), host.path().to_string())])
        .with_env(found.env())
        .with_env(cache_env(&cache));
    std::fs::write(
        run.workspace.join("Cargo.toml"),
        "[package]\nname = \"probe\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[workspace]\n",
    )
    .unwrap();
    std::fs::create_dir_all(run.workspace.join("src")).unwrap();
    std::fs::write(run.workspace.join("src/main.rs"), "fn main() {}\n").unwrap();
    let script = format!(
        "cargo build -q && echo BUILT; \
         python3 -c 'import sys; print(\"PREFIX\", sys.prefix)'; \
         cat {canary} {home}/.npmrc {home}/.cargo/credentials.toml 2>/dev/null; \
         ls -A {home}; echo CARGO_HOME=$CARGO_HOME",
        canary = p(&canary),
        home = p(&home),
    );
    let (exit, lines) = sandbox
        .output(&ProcessSpec::shell(&script, &run.workspace))
        .await
        .unwrap();
    std::fs::remove_file(&canary).unwrap();
    let out = text(&lines);
    assert!(exit.success(), "{out}");
    assert!(out.contains("BUILT"), "{out}");
    let prefix = lines
        .iter()
        .find_map(|l| l.text.strip_prefix("PREFIX "))
        .unwrap_or_else(|| panic!("python3 did not run: {out}"));
    assert!(!out.contains("home-secret"), "{out}");
    // Only what was shown is listed: no dotfile, nothing but toolchain directories.
    for line in &lines {
        assert!(
            !line.text.starts_with(".nightshift-canary")
                && line.text != ".ssh"
                && line.text != ".npmrc",
            "{out}"
        );
    }
    assert_eq!(
        out.lines().last().unwrap(),
        format!("CARGO_HOME={}", p(&cache.join("cargo")))
    );
    if Path::new(prefix).starts_with(&home) {
        assert!(
            found
                .list
                .iter()
                .any(|t| Path::new(prefix).starts_with(&t.from)),
            "python from {prefix} is no toolchain found: {found:#?}"
        );
    }
}
