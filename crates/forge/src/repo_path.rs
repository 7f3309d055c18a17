//! Where a repository lives on a forge: the host (with port) and the project path, read from
//! any remote URL form (`https://`, `ssh://`, scp-like `git@host:path`).

use nightshift_core::RepoUrl;

use crate::{ForgeError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPath {
    /// Scheme of the remote (`https`, `http`, `ssh`), `ssh` for scp-like URLs.
    pub scheme: String,
    /// Host name with the port when the URL has one, e.g. `127.0.0.1:8080`.
    pub host: String,
    /// The project path without `.git`: `owner/repo`, or `group/sub/project` on GitLab.
    pub path: String,
}

impl RepoPath {
    pub fn parse(repo: &RepoUrl) -> Result<RepoPath> {
        let url = repo.as_str();
        let fail = |why: &str| {
            ForgeError::Config(format!("cannot read a forge project from {repo}: {why}"))
        };
        let (scheme, host, path) = if let Some((scheme, rest)) = url.split_once("://") {
            let (authority, path) = rest.split_once('/').ok_or_else(|| fail("no path"))?;
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            (scheme.to_string(), host.to_string(), path.to_string())
        } else {
            let (authority, path) = url.split_once(':').ok_or_else(|| fail("no path"))?;
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            ("ssh".to_string(), host.to_string(), path.to_string())
        };
        let path = path.trim_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path).to_string();
        if host.is_empty() || path.is_empty() || !path.contains('/') {
            return Err(fail("expected host/owner/repository"));
        }
        Ok(RepoPath { scheme, host, path })
    }

    /// The host without a port, for matching configuration written without one.
    pub fn hostname(&self) -> &str {
        match self.host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => &self.host,
        }
    }

    /// `(owner, repo)` for forges with exactly two levels (GitHub, Gitea).
    pub fn owner_repo(&self) -> Result<(&str, &str)> {
        match self.path.split_once('/') {
            Some((owner, name)) if !name.contains('/') => Ok((owner, name)),
            _ => Err(ForgeError::Config(format!(
                "{} is not an owner/repository path: GitHub and Gitea have exactly two levels",
                self.path
            ))),
        }
    }

    /// The origin git's `http.<url>.extraHeader` is scoped to. SSH remotes get none.
    pub fn http_origin(&self) -> Option<String> {
        matches!(self.scheme.as_str(), "https" | "http")
            .then(|| format!("{}://{}", self.scheme, self.host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> RepoPath {
        RepoPath::parse(&RepoUrl::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn reads_every_remote_form() {
        let https = parse("https://x:y@github.com/acme/widget.git");
        assert_eq!(
            (https.host.as_str(), https.path.as_str()),
            ("github.com", "acme/widget")
        );
        assert_eq!(https.owner_repo().unwrap(), ("acme", "widget"));
        let scp = parse("git@gitlab.example.com:group/sub/project.git");
        assert_eq!(
            (scp.host.as_str(), scp.path.as_str()),
            ("gitlab.example.com", "group/sub/project")
        );
        assert!(scp.owner_repo().is_err());
        assert_eq!(scp.http_origin(), None);
        let local = parse("http://127.0.0.1:8080/acme/widget.git");
        assert_eq!(
            (local.host.as_str(), local.hostname()),
            ("127.0.0.1:8080", "127.0.0.1")
        );
        assert_eq!(
            local.http_origin().as_deref(),
            Some("http://127.0.0.1:8080")
        );
    }
}
