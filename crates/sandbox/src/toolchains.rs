//! Toolchains the server's user installed under a home — rustup, pyenv, nvm, asdf, mise, sdkman,
//! uv's Pythons, Go, and programs on `PATH` such as `cargo install` or pipx tools — found from
//! the server's environment so that runs, which have a HOME of their own and see no home
//! directory, can use them: what a sandbox shows read-only, and the variables that point each
//! tool at its installation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::programs::{self, Homes};

/// The server's environment, read by name only: it holds the server's secrets too.
#[derive(Clone, Default)]
pub struct HostEnv {
    vars: BTreeMap<String, String>,
}

/// Names only: the values are the server's, secrets included.
impl std::fmt::Debug for HostEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostEnv")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Where runs look for programs when the server has no `PATH`.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

impl HostEnv {
    /// This process's environment (variables whose name and value are UTF-8).
    pub fn current() -> HostEnv {
        HostEnv::from_vars(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    pub fn from_vars<I, K, V>(vars: I) -> HostEnv
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        HostEnv {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The variable's value, unless unset or empty.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The `PATH` runs get.
    pub fn path(&self) -> &str {
        self.var("PATH").unwrap_or(DEFAULT_PATH)
    }

    pub fn home(&self) -> Option<PathBuf> {
        self.dir_var("HOME")
    }

    /// An absolute directory named by `name`.
    fn dir_var(&self, name: &str) -> Option<PathBuf> {
        self.var(name)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    }

    /// `$HOME/relative`.
    fn in_home(&self, relative: &str) -> Option<PathBuf> {
        self.home().map(|home| home.join(relative))
    }

    /// `$XDG_<kind>_HOME/relative`, else `$HOME/<default>/relative`.
    fn xdg(&self, kind: &str, default: &str, relative: &str) -> Option<PathBuf> {
        self.dir_var(&format!("XDG_{kind}_HOME"))
            .or_else(|| self.in_home(default))
            .map(|dir| dir.join(relative))
    }
}

/// One toolchain runs can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    /// What it provides: `rust`, `python`, `node`, `go`, `jvm`, `tools`, or a program's name.
    pub name: String,
    /// How it was installed: `rustup`, `pyenv`, `nvm`, `asdf`, `mise`, `sdkman`, `uv`, `GOROOT`,
    /// or `PATH`.
    pub manager: String,
    /// Read from its files (the default toolchain, the global version), never by running it.
    pub version: Option<String>,
    /// Where it is installed.
    pub from: PathBuf,
    /// Shown read-only inside a sandbox (canonical paths).
    pub shown: Vec<PathBuf>,
    /// Variables that let it find its installation from a run with its own HOME.
    pub env: Vec<(String, String)>,
}

impl Toolchain {
    fn new(name: &str, manager: &str, from: PathBuf) -> Toolchain {
        Toolchain {
            name: name.into(),
            manager: manager.into(),
            version: None,
            shown: vec![from.clone()],
            from,
            env: Vec::new(),
        }
    }

    fn env(mut self, key: &str, value: impl AsRef<Path>) -> Toolchain {
        self.env
            .push((key.into(), value.as_ref().to_string_lossy().into_owned()));
        self
    }
}

/// The toolchains found in one environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Toolchains {
    pub list: Vec<Toolchain>,
}

/// Programs listed as toolchains of their own when they are on `PATH` but no manager's.
const WELL_KNOWN: &[&str] = &[
    "cargo", "go", "node", "deno", "bun", "python3", "uv", "poetry", "pipx", "java", "ruby",
];

impl Toolchains {
    /// Looks at the files the environment points to: a few directory reads, nothing is run.
    pub fn discover(host: &HostEnv) -> Toolchains {
        let mut list: Vec<Toolchain> = [rustup, pyenv, nvm, asdf, mise, sdkman, uv, go]
            .iter()
            .filter_map(|find| find(host))
            .collect();
        let homes = Homes::of(host);
        for toolchain in &mut list {
            toolchain.from = canonical(&toolchain.from);
            toolchain.shown = toolchain
                .shown
                .iter()
                .filter(|p| p.exists())
                .map(|p| canonical(p))
                .filter(|p| homes.may_show_root(p))
                .collect();
        }
        let mut covered: Vec<PathBuf> = list.iter().flat_map(|t| t.shown.clone()).collect();
        let mut path_dirs: Vec<PathBuf> = Vec::new();
        for dir in std::env::split_paths(host.path()).map(|d| canonical(&d)) {
            if !path_dirs.contains(&dir) {
                path_dirs.push(dir);
            }
        }
        for dir in path_dirs {
            let shown = programs::path_dir_roots(&dir, &homes, &covered, host.path());
            if !shown.is_empty() {
                covered.extend(shown.iter().cloned());
                list.push(Toolchain {
                    name: "tools".into(),
                    manager: "PATH".into(),
                    version: None,
                    from: dir,
                    shown,
                    env: Vec::new(),
                });
            }
        }
        for name in WELL_KNOWN {
            let Some(found) = std::env::split_paths(host.path())
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
            else {
                continue;
            };
            let real = canonical(&found);
            let managed = |p: &Path| {
                list.iter()
                    .any(|t| t.shown.iter().any(|s| p.starts_with(s)))
            };
            if !managed(&found) && !managed(&real) {
                list.push(Toolchain {
                    name: (*name).into(),
                    manager: "PATH".into(),
                    version: None,
                    from: found,
                    shown: Vec::new(),
                    env: Vec::new(),
                });
            }
        }
        Toolchains { list }
    }

    /// Every directory to show read-only.
    pub fn shown(&self) -> impl Iterator<Item = &Path> {
        self.list
            .iter()
            .flat_map(|t| t.shown.iter().map(PathBuf::as_path))
    }

    /// The variables of every toolchain.
    pub fn env(&self) -> Vec<(String, String)> {
        self.list.iter().flat_map(|t| t.env.clone()).collect()
    }

    /// Files inside the shown directories that may hold credentials (a Node install's global
    /// `etc/npmrc`, a `pip.conf`), to keep hidden.
    pub fn secrets_within(&self) -> Vec<PathBuf> {
        self.shown().flat_map(programs::secrets_within).collect()
    }
}

/// Variables that send a repository's downloads and build caches (cargo's registry and git
/// checkouts, Go's modules and builds, pip, uv, poetry, npm) into `cache`, one writable
/// directory per repository that outlives the run.
pub fn cache_env(cache: &Path) -> Vec<(String, String)> {
    let at = |sub: &str| cache.join(sub).to_string_lossy().into_owned();
    vec![
        ("CARGO_HOME".into(), at("cargo")),
        ("GOPATH".into(), at("go")),
        ("GOCACHE".into(), at("go-build")),
        ("XDG_CACHE_HOME".into(), at("cache")),
        ("npm_config_cache".into(), at("npm")),
    ]
}

/// The download caches within `cache` ([`cache_env`]'s directories): what setup fetched, which
/// the agent may read and never change, so no run can plant a package for the next one to
/// build. Build caches (Go's, cargo's locks, npm's logs) stay writable, and so does uv's cache,
/// which uv refuses to open read-only even offline.
pub fn download_dirs(cache: &Path) -> Vec<PathBuf> {
    [
        "cargo/registry",
        "cargo/git",
        "go/pkg/mod",
        "npm/_cacache",
        "cache/pip",
    ]
    .iter()
    .map(|sub| cache.join(sub))
    .collect()
}

fn canonical(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

fn first_line(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty())?;
    Some(line.to_string())
}

fn read_toml(path: &Path) -> Option<toml::Table> {
    std::fs::read_to_string(path).ok()?.parse().ok()
}

/// Names of the subdirectories of `dir`, sorted.
fn subdirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    names
}

fn joined(items: Vec<String>) -> Option<String> {
    (!items.is_empty()).then(|| items.join(", "))
}

/// rustup: the toolchains read-only where they are (`RUSTUP_HOME`), the proxies in
/// `$CARGO_HOME/bin`; `CARGO_HOME` itself is the run's cache (it holds credentials too).
fn rustup(host: &HostEnv) -> Option<Toolchain> {
    let home = host
        .dir_var("RUSTUP_HOME")
        .or_else(|| host.in_home(".rustup"))?;
    if !home.join("toolchains").is_dir() {
        return None;
    }
    let cargo = host
        .dir_var("CARGO_HOME")
        .or_else(|| host.in_home(".cargo"));
    let mut toolchain = Toolchain::new("rust", "rustup", home.clone()).env("RUSTUP_HOME", &home);
    toolchain.shown.extend(cargo.map(|c| c.join("bin")));
    toolchain.version = read_toml(&home.join("settings.toml"))
        .and_then(|t| t.get("default_toolchain")?.as_str().map(String::from));
    Some(toolchain)
}

fn pyenv(host: &HostEnv) -> Option<Toolchain> {
    let root = host
        .dir_var("PYENV_ROOT")
        .or_else(|| host.in_home(".pyenv"))?;
    if !root.join("versions").is_dir() {
        return None;
    }
    let mut toolchain = Toolchain::new("python", "pyenv", root.clone()).env("PYENV_ROOT", &root);
    toolchain.version = match host.var("PYENV_VERSION") {
        Some(version) => {
            toolchain.env.push(("PYENV_VERSION".into(), version.into()));
            Some(version.to_string())
        }
        None => first_line(&root.join("version")),
    };
    Some(toolchain)
}

/// nvm: its Node versions (`nvm use` puts one on PATH); nvm itself is a shell function.
fn nvm(host: &HostEnv) -> Option<Toolchain> {
    let dir = host.dir_var("NVM_DIR").or_else(|| host.in_home(".nvm"))?;
    let versions = dir.join("versions");
    if !versions.join("node").is_dir() {
        return None;
    }
    let mut toolchain = Toolchain::new("node", "nvm", dir.clone()).env("NVM_DIR", &dir);
    toolchain.shown = vec![versions.clone(), dir.join("alias")];
    let on_path = std::env::split_paths(host.path()).find_map(|p| {
        let version = p.strip_prefix(versions.join("node")).ok()?;
        version
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
    });
    toolchain.version = on_path.or_else(|| first_line(&dir.join("alias/default")));
    Some(toolchain)
}

/// `(tool, version)` lines of a `.tool-versions` file.
fn tool_versions(path: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut words = line.split('#').next()?.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

/// `MISE_NODE_VERSION`-style name for a tool.
fn version_var(prefix: &str, tool: &str) -> String {
    let tool: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}_{tool}_VERSION")
}

/// asdf: its data directory read-only; the global versions of `~/.tool-versions`, which a run's
/// HOME lacks, as `ASDF_<TOOL>_VERSION`.
fn asdf(host: &HostEnv) -> Option<Toolchain> {
    let dir = host
        .dir_var("ASDF_DATA_DIR")
        .or_else(|| host.in_home(".asdf"))?;
    if !dir.join("installs").is_dir() {
        return None;
    }
    let mut toolchain = Toolchain::new("tools", "asdf", dir.clone()).env("ASDF_DATA_DIR", &dir);
    if let Some(asdf_dir) = host.dir_var("ASDF_DIR") {
        toolchain = toolchain.env("ASDF_DIR", &asdf_dir);
        toolchain.shown.push(asdf_dir);
    }
    let global = host
        .in_home(".tool-versions")
        .map(|p| tool_versions(&p))
        .unwrap_or_default();
    for (tool, version) in &global {
        toolchain
            .env
            .push((version_var("ASDF", tool), version.clone()));
    }
    toolchain.version = joined(global.iter().map(|(t, v)| format!("{t} {v}")).collect())
        .or_else(|| joined(subdirs(&dir.join("installs"))));
    Some(toolchain)
}

/// mise: its data directory read-only; the global tools of its config file (read here, never
/// shown: it may set secret variables) as `MISE_<TOOL>_VERSION`.
fn mise(host: &HostEnv) -> Option<Toolchain> {
    let data = host
        .dir_var("MISE_DATA_DIR")
        .or_else(|| host.xdg("DATA", ".local/share", "mise"))?;
    if !data.join("installs").is_dir() {
        return None;
    }
    let mut toolchain = Toolchain::new("tools", "mise", data.clone()).env("MISE_DATA_DIR", &data);
    let config = host
        .dir_var("MISE_GLOBAL_CONFIG_FILE")
        .or_else(|| {
            host.dir_var("MISE_CONFIG_DIR")
                .map(|d| d.join("config.toml"))
        })
        .or_else(|| host.xdg("CONFIG", ".config", "mise/config.toml"));
    let tools = config
        .and_then(|c| read_toml(&c))
        .and_then(|t| t.get("tools")?.as_table().cloned())
        .unwrap_or_default();
    let mut installed = Vec::new();
    for (tool, spec) in &tools {
        let version = match spec {
            toml::Value::String(v) => Some(v.clone()),
            toml::Value::Array(a) => a.first().and_then(|v| v.as_str()).map(String::from),
            toml::Value::Table(t) => t.get("version").and_then(|v| v.as_str()).map(String::from),
            _ => None,
        };
        if let Some(version) = version {
            toolchain
                .env
                .push((version_var("MISE", tool), version.clone()));
            installed.push(format!("{tool} {version}"));
        }
    }
    toolchain.version = joined(installed).or_else(|| joined(subdirs(&data.join("installs"))));
    Some(toolchain)
}

/// sdkman: its candidates (`candidates/<tool>/current` is what PATH points at).
fn sdkman(host: &HostEnv) -> Option<Toolchain> {
    let dir = host
        .dir_var("SDKMAN_DIR")
        .or_else(|| host.in_home(".sdkman"))?;
    let candidates = dir.join("candidates");
    if !candidates.is_dir() {
        return None;
    }
    let mut toolchain = Toolchain::new("jvm", "sdkman", dir.clone())
        .env("SDKMAN_DIR", &dir)
        .env("SDKMAN_CANDIDATES_DIR", &candidates);
    toolchain.shown = vec![candidates.clone()];
    if let Some(java_home) = host.dir_var("JAVA_HOME") {
        toolchain = toolchain.env("JAVA_HOME", java_home);
    }
    let current = subdirs(&candidates)
        .into_iter()
        .filter_map(|tool| {
            let target = std::fs::read_link(candidates.join(&tool).join("current")).ok()?;
            let version = target.file_name()?.to_string_lossy().into_owned();
            Some(format!("{tool} {version}"))
        })
        .collect();
    toolchain.version = joined(current);
    Some(toolchain)
}

/// Pythons installed with `uv python install`.
fn uv(host: &HostEnv) -> Option<Toolchain> {
    let dir = host
        .dir_var("UV_PYTHON_INSTALL_DIR")
        .or_else(|| host.xdg("DATA", ".local/share", "uv/python"))?;
    let installs = subdirs(&dir);
    if installs.is_empty() {
        return None;
    }
    let mut toolchain =
        Toolchain::new("python", "uv", dir.clone()).env("UV_PYTHON_INSTALL_DIR", &dir);
    toolchain.version = joined(installs);
    Some(toolchain)
}

/// Go: `GOROOT`, else the installation of `go` on PATH; its module and build caches are the
/// run's (see [`cache_env`]).
fn go(host: &HostEnv) -> Option<Toolchain> {
    let (root, manager) = match host.dir_var("GOROOT") {
        Some(root) => (root, "GOROOT"),
        None => {
            let go = std::env::split_paths(host.path())
                .map(|dir| dir.join("go"))
                .find(|p| p.is_file())?;
            let real = std::fs::canonicalize(go).ok()?;
            (real.parent()?.parent()?.to_path_buf(), "PATH")
        }
    };
    if !root.join("VERSION").is_file() && !root.join("src/runtime").is_dir() {
        return None;
    }
    let mut toolchain = Toolchain::new("go", manager, root.clone()).env("GOROOT", &root);
    toolchain.version = first_line(&root.join("VERSION"));
    Some(toolchain)
}
