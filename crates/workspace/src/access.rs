//! Which repositories this machine's git may reach: local ones only where the operator allows
//! them and never inside the data directory; remote hosts only on public addresses unless the
//! operator lists them (configured forges are listed). Checked when a task is created and again
//! before each run touches the repository.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use nightshift_core::{RepoTarget, RepoUrl};

use crate::{Result, WorkspaceError};

/// How long a host name may take to resolve before the repository counts as unreachable.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the configuration is changed, for messages that tell what to do.
const WHERE: &str = "the [repositories] section of nightshift.toml";

/// The operator's rules for repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPolicy {
    /// Nightshift's own directory (database, mirrors, runs): never a repository.
    pub data_dir: PathBuf,
    pub local: LocalRepos,
    /// Hosts (`name`, `name:port`, an address) allowed even on loopback, private or
    /// link-local addresses.
    pub hosts: Vec<String>,
    /// Whether other hosts are allowed when every address they resolve to is public.
    pub public_hosts: bool,
}

/// Where local repositories (absolute paths, `file://` URLs) may be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalRepos {
    /// Under these directories only; nowhere when there are none.
    Under(Vec<PathBuf>),
    /// Anywhere outside the data directory, for the server's admins (and the runs of tasks
    /// they created): the default of a server only its own machine reaches.
    ForServerAdmins,
}

/// Whom a repository is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requester {
    /// A server admin creating a task.
    ServerAdmin,
    /// Anyone else creating a task.
    Member,
    /// A run of a task that was checked when it was created.
    Run,
}

/// A repository the policy let through, with what git needs to reach exactly the addresses that
/// were checked. The mirror cache takes only these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedRepo {
    url: RepoUrl,
    local: bool,
    /// `host:port:addr,…` for git's `http.curloptResolve`: an HTTP remote is reached at the
    /// addresses checked, not at what a second lookup answers.
    pin: Option<String>,
}

impl AllowedRepo {
    pub fn url(&self) -> &RepoUrl {
        &self.url
    }

    pub(crate) fn is_local(&self) -> bool {
        self.local
    }

    pub(crate) fn pin(&self) -> Option<&str> {
        self.pin.as_deref()
    }
}

impl std::ops::Deref for AllowedRepo {
    type Target = RepoUrl;
    fn deref(&self) -> &RepoUrl {
        &self.url
    }
}

impl fmt::Display for AllowedRepo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.url.fmt(f)
    }
}

impl RepoPolicy {
    /// No local repositories; any host on a public address.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        RepoPolicy {
            data_dir: data_dir.into(),
            local: LocalRepos::Under(Vec::new()),
            hosts: Vec::new(),
            public_hosts: true,
        }
    }

    /// Whether any local repository can be allowed: git's `file` transport is refused otherwise.
    pub fn allows_local(&self) -> bool {
        !matches!(&self.local, LocalRepos::Under(roots) if roots.is_empty())
    }

    /// Lets `repo` through for `by`, or says why not and what the operator can change.
    pub async fn admit(&self, repo: &RepoUrl, by: Requester) -> Result<AllowedRepo> {
        match repo.target() {
            RepoTarget::Local(path) => {
                self.admit_local(repo, Path::new(path), by)?;
                Ok(AllowedRepo {
                    url: repo.clone(),
                    local: true,
                    pin: None,
                })
            }
            RepoTarget::Remote { scheme, host, port } => {
                let addrs = self.admit_remote(repo, host, port).await?;
                let pinned = matches!(scheme, "http" | "https") && host.parse::<IpAddr>().is_err();
                let pin = pinned.then(|| {
                    let list: Vec<String> = addrs
                        .iter()
                        .map(|a| match a.ip() {
                            IpAddr::V6(v6) => format!("[{v6}]"),
                            IpAddr::V4(v4) => v4.to_string(),
                        })
                        .collect();
                    format!("{host}:{port}:{}", list.join(","))
                });
                Ok(AllowedRepo {
                    url: repo.clone(),
                    local: false,
                    pin,
                })
            }
        }
    }

    fn admit_local(&self, repo: &RepoUrl, path: &Path, by: Requester) -> Result<()> {
        let refuse = |reason: String| WorkspaceError::NotAllowed {
            repo: repo.to_string(),
            reason,
        };
        let roots = match (&self.local, by) {
            (LocalRepos::ForServerAdmins, Requester::Member) => {
                return Err(refuse(format!(
                    "on this server only its admins may name local repositories (paths and \
                     file:// URLs); use the repository's https:// or ssh:// URL, or ask the \
                     operator to allow a directory for everyone with local_roots in {WHERE}"
                )));
            }
            (LocalRepos::ForServerAdmins, _) => None,
            (LocalRepos::Under(roots), _) if roots.is_empty() => {
                return Err(refuse(format!(
                    "this server allows no local repositories (paths and file:// URLs); use the \
                     repository's https:// or ssh:// URL, or ask the operator to allow a \
                     directory with local_roots in {WHERE}"
                )));
            }
            (LocalRepos::Under(roots), _) => Some(roots),
        };
        let outside_roots = || {
            let list: Vec<String> = roots
                .into_iter()
                .flatten()
                .map(|r| r.display().to_string())
                .collect();
            refuse(format!(
                "local repositories must be under {} on this server (local_roots in {WHERE})",
                list.join(", ")
            ))
        };
        let under_roots = |dir: &Path| {
            roots.is_none_or(|roots| {
                roots
                    .iter()
                    .any(|root| dir.starts_with(canonical(root).unwrap_or_else(|| root.clone())))
            })
        };
        // The written path first, so nothing outside the roots is even looked at.
        if !under_roots(&lexical(path)) {
            return Err(outside_roots());
        }
        let dirs = repository_dirs(path).ok_or_else(|| WorkspaceError::Unreachable {
            repo: repo.to_string(),
            detail: "there is no such directory on this machine".into(),
        })?;
        let data_dir = canonical(&self.data_dir).unwrap_or_else(|| lexical(&self.data_dir));
        for dir in &dirs {
            if dir.starts_with(&data_dir) {
                return Err(refuse(
                    "it is inside Nightshift's data directory, which holds the mirrors and runs \
                     of every project; name the repository itself"
                        .into(),
                ));
            }
            if !under_roots(dir) {
                return Err(outside_roots());
            }
        }
        Ok(())
    }

    async fn admit_remote(&self, repo: &RepoUrl, host: &str, port: u16) -> Result<Vec<SocketAddr>> {
        let listed = self
            .hosts
            .iter()
            .any(|entry| host_matches(entry, host, port));
        let refuse = |reason: String| WorkspaceError::NotAllowed {
            repo: repo.to_string(),
            reason,
        };
        if !listed && !self.public_hosts {
            return Err(refuse(format!(
                "this server reaches only its configured forges and the hosts its operator lists \
                 (hosts in {WHERE})"
            )));
        }
        let unreachable = |detail: &str| WorkspaceError::Unreachable {
            repo: repo.to_string(),
            detail: detail.to_string(),
        };
        let addrs: Vec<SocketAddr> =
            tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
                .await
                .map_err(|_| unreachable("its host name did not resolve in time"))?
                .map_err(|_| unreachable("its host name does not resolve"))?
                .collect();
        if addrs.is_empty() {
            return Err(unreachable("its host name does not resolve"));
        }
        if !listed && addrs.iter().any(|a| is_internal(a.ip())) {
            return Err(refuse(format!(
                "its host is on a loopback, private or link-local address, which this server \
                 reaches only for hosts its operator lists (hosts in {WHERE})"
            )));
        }
        Ok(addrs)
    }
}

/// Whether a `hosts` entry (`name`, `name:port`, `[v6]:port`) names `host` at `port`.
fn host_matches(entry: &str, host: &str, port: u16) -> bool {
    let entry = entry.trim();
    let (name, entry_port) = match entry.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((name, tail)) => (name, tail.strip_prefix(':')),
            None => return false,
        },
        None => match entry.split_once(':') {
            // More than one ':' is a bare IPv6 address.
            Some((name, p)) if !p.contains(':') => (name, Some(p)),
            _ => (entry, None),
        },
    };
    name.eq_ignore_ascii_case(host) && entry_port.is_none_or(|p| p.parse() == Ok(port))
}

/// Addresses a server must not be sent to on a user's word: this machine, private networks,
/// link-local (cloud metadata), and ranges that are not routed on the internet.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (b & 0xc0) == 64)
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b & 0xfe) == 18)
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                is_internal(IpAddr::V4(std::net::Ipv4Addr::from(
                    (u32::from(hi) << 16) | u32::from(lo),
                )))
            };
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || (s[0] & 0xffc0) == 0xfec0
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || (s[0] == 0x64 && s[1] == 0xff9b && embedded(s[6], s[7]))
                || (s[0] == 0x2002 && embedded(s[1], s[2]))
        }
    }
}

fn canonical(path: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(path).ok()
}

/// `path` with `.` and `..` resolved as written (symbolic links are not followed).
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The directories git reads when it opens the repository at `path`, with every link
/// followed: the repository itself, what a `.git` file (or a `.git` link) points to, a
/// worktree's `commondir`, and the object stores named in `alternates`. `None` when `path` is
/// not a directory.
fn repository_dirs(path: &Path) -> Option<Vec<PathBuf>> {
    let repo = canonical(path).filter(|p| p.is_dir())?;
    let mut dirs = vec![repo.clone()];
    let mut git_dirs = vec![repo.clone()];
    let dot_git = repo.join(".git");
    if let Some(target) = canonical(&dot_git) {
        dirs.push(target.clone());
        if target.is_file() {
            git_dirs.extend(pointer(&target, "gitdir:"));
        } else {
            git_dirs.push(target);
        }
    }
    for git_dir in git_dirs {
        dirs.push(git_dir.clone());
        let common = pointer(&git_dir.join("commondir"), "").unwrap_or(git_dir.clone());
        dirs.push(common.clone());
        let objects = common.join("objects");
        let alternates =
            std::fs::read_to_string(objects.join("info/alternates")).unwrap_or_default();
        for line in alternates.lines().map(str::trim) {
            if !line.is_empty() && !line.starts_with('#') {
                dirs.extend(canonical(&objects.join(line)));
            }
        }
    }
    Some(dirs)
}

/// The directory a pointer file names after `prefix` (relative to the file's directory).
fn pointer(file: &Path, prefix: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(file).ok()?;
    let target = text.trim().strip_prefix(prefix)?.trim();
    canonical(&file.parent()?.join(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(is_internal(internal.parse().unwrap()), "{internal}");
        }
        for public in [
            "140.82.121.4",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_internal(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn host_entries() {
        assert!(host_matches("git.internal", "GIT.internal", 443));
        assert!(host_matches("127.0.0.1:8080", "127.0.0.1", 8080));
        assert!(!host_matches("127.0.0.1:8080", "127.0.0.1", 8081));
        assert!(host_matches("[::1]:22", "::1", 22));
        assert!(host_matches("fd00::5", "fd00::5", 22));
        assert!(!host_matches("git.internal", "git.internal.evil.com", 443));
    }

    #[tokio::test]
    async fn http_remotes_are_pinned_to_the_checked_addresses() {
        let mut policy = RepoPolicy::new("/nonexistent");
        policy.hosts = vec!["localhost".into(), "127.0.0.1".into()];
        let admit = |url: &str| {
            let policy = policy.clone();
            let url = RepoUrl::parse(url).unwrap();
            async move { policy.admit(&url, Requester::Member).await.unwrap() }
        };
        let http = admit("http://localhost:8080/o/r.git").await;
        let pin = http.pin().unwrap();
        assert!(pin.starts_with("localhost:8080:"), "{pin}");
        assert!(pin.contains("127.0.0.1"), "{pin}");
        // Addresses need no pin; ssh and git connect by themselves.
        assert_eq!(admit("http://127.0.0.1:8080/o/r.git").await.pin(), None);
        assert_eq!(admit("ssh://git@localhost/o/r.git").await.pin(), None);
    }

    #[test]
    fn lexical_paths() {
        assert_eq!(
            lexical(Path::new("/srv/git/../../data/x")),
            Path::new("/data/x")
        );
        assert_eq!(lexical(Path::new("/srv/./git")), Path::new("/srv/git"));
    }
}
