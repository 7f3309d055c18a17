//! The `[repositories]` part of `nightshift.toml`: where local repositories may be and which
//! hosts the server may reach, turned into the engine's repository policy.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nightshift_engine::{LocalRepos, RepoPolicy};

/// `[repositories]`, as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RepositorySettings {
    /// Directories local repositories (absolute paths, `file://` URLs) may be under. Absent:
    /// the default of the shape the process runs in; `[]`: none at all.
    pub local_roots: Option<Vec<PathBuf>>,
    /// Hosts repository URLs may name even on loopback, private or link-local addresses.
    pub hosts: Vec<String>,
    /// Whether other hosts on public addresses are allowed too (the default).
    pub public_hosts: Option<bool>,
}

impl RepositorySettings {
    /// The engine's policy. `default_local` applies when `local_roots` is absent.
    pub fn policy(&self, data_dir: &Path, default_local: LocalRepos) -> anyhow::Result<RepoPolicy> {
        let mut policy = RepoPolicy::new(data_dir);
        policy.local = match &self.local_roots {
            None => default_local,
            Some(roots) => LocalRepos::Under(
                roots
                    .iter()
                    .map(|root| {
                        if !root.is_absolute() {
                            bail!(
                                "repositories.local_roots: {} is not an absolute path",
                                root.display()
                            );
                        }
                        root.canonicalize().with_context(|| {
                            format!("repositories.local_roots: cannot open {}", root.display())
                        })
                    })
                    .collect::<anyhow::Result<_>>()?,
            ),
        };
        for host in &self.hosts {
            if host.trim().is_empty() || host.contains(['/', '@']) {
                bail!("repositories.hosts: {host:?} is not a host name, address or host:port");
            }
        }
        policy.hosts = self.hosts.clone();
        policy.public_hosts = self.public_hosts.unwrap_or(true);
        Ok(policy)
    }
}

/// The default for local repositories of `nightshift serve`: on a server only its own machine
/// reaches (a loopback address, no proxy trusted to name people), its admins may name local
/// repositories anywhere outside the data directory; anywhere else, nobody may.
pub fn serve_default(listen: &std::net::SocketAddr, trusts_proxies: bool) -> LocalRepos {
    if listen.ip().is_loopback() && !trusts_proxies {
        LocalRepos::ForServerAdmins
    } else {
        LocalRepos::Under(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> RepositorySettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn roots_are_resolved_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let policy = settings(&format!("local_roots = [{:?}]", link.display().to_string()))
            .policy(&data, LocalRepos::ForServerAdmins)
            .unwrap();
        assert_eq!(
            policy.local,
            LocalRepos::Under(vec![dir.path().canonicalize().unwrap()])
        );
        assert!(policy.public_hosts);

        let none = settings("local_roots = []\npublic_hosts = false\nhosts = [\"git.lan:8443\"]")
            .policy(&data, LocalRepos::ForServerAdmins)
            .unwrap();
        assert_eq!(none.local, LocalRepos::Under(Vec::new()));
        assert!(!none.allows_local());
        assert!(!none.public_hosts);
        assert_eq!(none.hosts, vec!["git.lan:8443"]);

        let default = settings("")
            .policy(&data, LocalRepos::ForServerAdmins)
            .unwrap();
        assert_eq!(default.local, LocalRepos::ForServerAdmins);

        for (bad, why) in [
            ("local_roots = [\"srv/git\"]", "not an absolute path"),
            (
                "local_roots = [\"/nonexistent/git\"]",
                "cannot open /nonexistent/git",
            ),
            ("hosts = [\"https://git.lan\"]", "not a host name"),
        ] {
            let err = settings(bad)
                .policy(&data, LocalRepos::ForServerAdmins)
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert!(toml::from_str::<RepositorySettings>("local_root = []").is_err());
    }

    #[test]
    fn only_a_server_its_own_machine_reaches_defaults_to_local_repositories() {
        let loopback = "127.0.0.1:8080".parse().unwrap();
        let public = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(serve_default(&loopback, false), LocalRepos::ForServerAdmins);
        assert_eq!(
            serve_default(&loopback, true),
            LocalRepos::Under(Vec::new())
        );
        assert_eq!(serve_default(&public, false), LocalRepos::Under(Vec::new()));
    }
}
