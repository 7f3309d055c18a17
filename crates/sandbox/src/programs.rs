//! Where an installed program lives, as far as a sandbox must show it: the npm tree, Python
//! virtual environment or install prefix around an executable, the interpreter of a script, and
//! the credentials a shown directory may hold, which stay hidden.

use std::path::{Path, PathBuf};

use crate::toolchains::HostEnv;

/// Directories never shown, wherever they are: what they hold is credentials.
const SECRET_DIRS: &[&str] = &[
    ".ssh",
    ".gnupg",
    ".aws",
    ".azure",
    ".kube",
    ".docker",
    ".password-store",
    "keyrings",
    "gcloud",
];

/// Files hidden inside a shown directory: registry tokens and passwords.
const SECRET_FILES: &[&str] = &[
    "credentials",
    "credentials.toml",
    ".credentials.toml",
    ".npmrc",
    "npmrc",
    ".yarnrc.yml",
    ".netrc",
    ".pypirc",
    "pip.conf",
    "auth.toml",
    ".git-credentials",
];

/// How deep [`secrets_within`] looks: a Node install's `versions/node/v20/etc/npmrc` is four down.
const SECRETS_DEPTH: usize = 4;

/// The home directories a sandbox hides: the server user's, `/root` and those in `/home`.
pub(crate) struct Homes(Vec<PathBuf>);

impl Homes {
    pub(crate) fn of(host: &HostEnv) -> Homes {
        let users = std::fs::read_dir("/home")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path());
        let mut homes: Vec<PathBuf> = host
            .home()
            .into_iter()
            .chain([PathBuf::from("/root")])
            .chain(users)
            .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
            .collect();
        homes.sort();
        homes.dedup();
        Homes(homes)
    }

    /// Whether `path` is inside a home (and so hidden unless shown).
    fn contain(&self, path: &Path) -> bool {
        path.starts_with("/home") || self.0.iter().any(|home| path.starts_with(home))
    }

    /// How many levels inside a home `dir` is, if it is in one.
    fn depth(&self, dir: &Path) -> Option<usize> {
        self.0
            .iter()
            .filter_map(|home| dir.strip_prefix(home).ok())
            .map(|rest| rest.components().count())
            .min()
    }

    /// Whether a toolchain manager's own directory may be shown: inside a home (`~/.rustup`)
    /// or outside all of them, but never a home itself nor a place of credentials.
    pub(crate) fn may_show_root(&self, dir: &Path) -> bool {
        let is_or_holds_home =
            self.0.iter().any(|home| home.starts_with(dir)) || Path::new("/home").starts_with(dir);
        !is_or_holds_home && !named_secret(dir)
    }

    /// Whether `dir` may be shown: at least two levels inside a home (not the home, nor a
    /// catch-all like `~/.local` or `~/.config`), neither holding nor inside a directory of
    /// credentials.
    fn may_show(&self, dir: &Path) -> bool {
        let holds_secret = SECRET_DIRS
            .iter()
            .chain(SECRET_FILES)
            .any(|name| dir.join(name).exists());
        self.depth(dir).is_some_and(|d| d >= 2) && !named_secret(dir) && !holds_secret
    }
}

fn named_secret(dir: &Path) -> bool {
    dir.components()
        .any(|c| SECRET_DIRS.iter().any(|s| c.as_os_str() == *s))
}

/// What to show so the programs of `dir`, a directory on the server's PATH, run inside a
/// sandbox: `dir` itself when it lies in a home, and for each program that is (or links to) a
/// file in a home, its installation. Nothing already under `covered`.
pub(crate) fn path_dir_roots(
    dir: &Path,
    homes: &Homes,
    covered: &[PathBuf],
    path: &str,
) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Vec::new();
    };
    let mut shown: Vec<PathBuf> = Vec::new();
    let is_covered =
        |p: &Path, shown: &[PathBuf]| covered.iter().chain(shown).any(|c| p.starts_with(c));
    let in_home = homes.contain(&dir);
    if in_home && !is_covered(&dir, &shown) && homes.may_show(&dir) {
        shown.push(dir.clone());
    }
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        // Outside the homes only a link can lead into one (its first hop is looked at: a
        // system directory has hundreds of links, to system programs).
        if !in_home {
            let into_home = entry.file_type().is_ok_and(|t| t.is_symlink())
                && std::fs::read_link(entry.path()).is_ok_and(|to| homes.contain(&dir.join(to)));
            if !into_home {
                continue;
            }
        }
        let Ok(program) = std::fs::canonicalize(entry.path()) else {
            continue;
        };
        if !program.is_file() {
            continue;
        }
        let mut roots = vec![install_root(&program)];
        if let Some(python) = venv_python(&roots[0]) {
            roots.push(install_root(&python));
        }
        if let Some(interpreter) = interpreter(&program, Some(path)) {
            roots.push(install_root(&interpreter));
        }
        for root in roots {
            let root = match prefix(&root) {
                Some(prefix) if homes.may_show(prefix) => prefix.to_path_buf(),
                _ => root,
            };
            if homes.contain(&root) && !is_covered(&root, &shown) && homes.may_show(&root) {
                shown.retain(|s| !s.starts_with(&root));
                shown.push(root);
            }
        }
    }
    shown
}

/// The directory that holds everything `program` (canonical) needs: its npm package tree, its
/// Python virtual environment, else its own directory.
pub fn install_root(program: &Path) -> PathBuf {
    if let Some(tree) = program
        .ancestors()
        .find(|dir| dir.file_name().is_some_and(|n| n == "node_modules"))
    {
        return tree.to_path_buf();
    }
    if let Some(venv) = program
        .ancestors()
        .skip(1)
        .take(3)
        .find(|dir| dir.join("pyvenv.cfg").is_file())
    {
        return venv.to_path_buf();
    }
    program.parent().unwrap_or(program).to_path_buf()
}

/// The install prefix around a `bin` directory that has a `lib` beside it (an interpreter's
/// standard library).
fn prefix(dir: &Path) -> Option<&Path> {
    let prefix = dir.parent()?;
    (dir.ends_with("bin") && prefix.join("lib").is_dir()).then_some(prefix)
}

/// The interpreter a virtual environment at `root` was made from.
fn venv_python(root: &Path) -> Option<PathBuf> {
    if !root.join("pyvenv.cfg").is_file() {
        return None;
    }
    std::fs::canonicalize(root.join("bin/python")).ok()
}

/// `command` as a canonical path: as given when it has a slash, else found on `path`.
pub fn resolve(command: &str, path: &str) -> Option<PathBuf> {
    let found = if command.contains('/') {
        PathBuf::from(command)
    } else {
        std::env::split_paths(path)
            .map(|dir| dir.join(command))
            .find(|p| p.is_file())?
    };
    std::fs::canonicalize(found).ok()
}

/// The interpreter of a `#!` script: `#!/usr/bin/env node` → node on `path` (not looked up
/// without one), `#!/opt/x/bin/python` → that.
pub fn interpreter(program: &Path, path: Option<&str>) -> Option<PathBuf> {
    use std::io::Read;
    let mut head = [0u8; 256];
    let n = std::fs::File::open(program).ok()?.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?.strip_prefix("#!")?;
    let line = line.lines().next()?;
    let mut words = line.split_whitespace();
    let first = words.next()?;
    if first.ends_with("/env") {
        let name = words.find(|w| !w.starts_with('-'))?;
        resolve(name, path?)
    } else {
        resolve(first, "")
    }
}

/// Credential files and directories inside `dir`, a few levels down.
pub(crate) fn secrets_within(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut level = vec![dir.to_path_buf()];
    for _ in 0..SECRETS_DEPTH {
        let mut next = Vec::new();
        for dir in level {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name();
                let secret = SECRET_FILES
                    .iter()
                    .chain(SECRET_DIRS)
                    .any(|s| name == std::ffi::OsStr::new(s));
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if secret {
                    found.push(entry.path());
                } else if kind.is_dir() {
                    next.push(entry.path());
                }
            }
        }
        level = next;
    }
    found
}
