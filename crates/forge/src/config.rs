//! Which forge serves a repository: the server's `[[forge]]` settings matched against the
//! repository URL's host. Hosts without an entry get plain git.

use nightshift_core::RepoUrl;
use serde::Deserialize;

use crate::github::GitHubAuth;
use crate::http::{RetryObserver, RetryPolicy};
use crate::{
    Forge, ForgeError, GitForge, GitHubForge, GitLabForge, GiteaForge, RepoPath, Result, Secret,
};

/// The forge settings of the server's TOML config:
///
/// ```toml
/// [retry]
/// max_attempts = 6
///
/// [[forge]]
/// kind = "github"
/// host = "github.com"
/// app = { app_id = 123, private_key = "-----BEGIN RSA PRIVATE KEY-----…" }
///
/// [[forge]]
/// kind = "gitlab"
/// host = "gitlab.example.com"
/// token = "glpat-…"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ForgeConfig {
    #[serde(default, rename = "forge")]
    pub entries: Vec<ForgeEntry>,
    #[serde(default)]
    pub retry: RetryPolicy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ForgeKind {
    Github,
    Gitlab,
    /// Gitea and Forgejo, which keep the same API.
    #[serde(alias = "forgejo")]
    Gitea,
    Git,
}

impl ForgeKind {
    /// The name `kind = "…"` takes in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::Github => "github",
            ForgeKind::Gitlab => "gitlab",
            ForgeKind::Gitea => "gitea",
            ForgeKind::Git => "git",
        }
    }
}

/// One forge: which repository hosts it serves, its API and the credential.
#[derive(Debug, Clone, Deserialize)]
pub struct ForgeEntry {
    pub kind: ForgeKind,
    /// The host of repository URLs this entry serves, optionally with a port.
    pub host: String,
    /// The REST API base; defaults to `https://api.github.com` for github.com,
    /// `https://<host>/api/v3` for GitHub Enterprise, `/api/v4` (GitLab), `/api/v1` (Gitea).
    #[serde(default)]
    pub api_url: Option<String>,
    /// A fine-grained personal token, project/group token or Gitea token; for plain git over
    /// HTTPS, the password.
    #[serde(default)]
    pub token: Option<Secret>,
    /// For plain git over HTTPS: the user name that goes with `token`.
    #[serde(default)]
    pub username: Option<String>,
    /// GitHub App credentials (recommended on GitHub: short-lived installation tokens).
    #[serde(default)]
    pub app: Option<GitHubAppConfig>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GitHubAppConfig {
    pub app_id: u64,
    /// The App's RSA private key, PEM.
    pub private_key: Secret,
}

impl ForgeConfig {
    /// These settings with `entry` serving its host instead of a configured entry (a project's
    /// own credential wins over the server's). The configured entry's API URL is kept when
    /// `entry` names none: a self-hosted forge's address is the operator's to set.
    pub fn with_entry(&self, mut entry: ForgeEntry) -> ForgeConfig {
        let mut config = self.clone();
        let same_host = |e: &ForgeEntry| e.host.eq_ignore_ascii_case(&entry.host);
        if entry.api_url.is_none() {
            entry.api_url = config
                .entries
                .iter()
                .find(|e| same_host(e))
                .and_then(|e| e.api_url.clone());
        }
        config.entries.retain(|e| !same_host(e));
        config.entries.insert(0, entry);
        config
    }

    /// Reads the forge part of the server config from TOML text.
    pub fn from_toml(text: &str) -> Result<ForgeConfig> {
        // toml's messages quote the offending line, which may hold a token: keep only the kind.
        toml::from_str(text)
            .map_err(|e| ForgeError::Config(format!("invalid forge settings: {}", e.message())))
    }

    fn entry_for(&self, path: &RepoPath) -> Option<&ForgeEntry> {
        let wanted = |entry: &&ForgeEntry| entry.host.eq_ignore_ascii_case(&path.host);
        let without_port = |entry: &&ForgeEntry| entry.host.eq_ignore_ascii_case(path.hostname());
        self.entries
            .iter()
            .find(wanted)
            .or_else(|| self.entries.iter().find(without_port))
    }
}

fn default_api_url(kind: ForgeKind, host: &str) -> String {
    match kind {
        ForgeKind::Github if host.eq_ignore_ascii_case("github.com") => {
            "https://api.github.com".to_string()
        }
        ForgeKind::Github => format!("https://{host}/api/v3"),
        ForgeKind::Gitlab => format!("https://{host}/api/v4"),
        ForgeKind::Gitea | ForgeKind::Git => format!("https://{host}/api/v1"),
    }
}

/// The forge for `repo`: the entry whose host matches the URL's host, else plain git.
/// `events` hears about every retry the forge makes.
pub fn resolve(
    repo: &RepoUrl,
    config: &ForgeConfig,
    events: RetryObserver,
) -> Result<Box<dyn Forge>> {
    let Ok(path) = RepoPath::parse(repo) else {
        // Local paths and other URLs without a forge project are published with plain git.
        return Ok(Box::new(GitForge::default()));
    };
    let Some(entry) = config.entry_for(&path) else {
        return Ok(Box::new(GitForge::default()));
    };
    let api_url = entry
        .api_url
        .clone()
        .unwrap_or_else(|| default_api_url(entry.kind, &entry.host));
    let policy = config.retry;
    let missing = |what: &str| {
        ForgeError::Config(format!(
            "the {} forge for {} needs {what}",
            entry.kind.as_str(),
            entry.host
        ))
    };
    Ok(match entry.kind {
        ForgeKind::Git => Box::new(match (&entry.username, &entry.token) {
            (Some(username), Some(password)) => GitForge::with_password(username, password),
            _ => GitForge::default(),
        }),
        ForgeKind::Github => {
            let auth = match (&entry.app, &entry.token) {
                (Some(app), _) => GitHubAuth::app(app.app_id, &app.private_key)?,
                (None, Some(token)) => GitHubAuth::Token(token.clone()),
                (None, None) => return Err(missing("a token or app credentials")),
            };
            Box::new(GitHubForge::new(&api_url, auth, policy, events)?)
        }
        ForgeKind::Gitlab => {
            let token = entry.token.clone().ok_or_else(|| missing("a token"))?;
            Box::new(GitLabForge::new(&api_url, token, policy, events)?)
        }
        ForgeKind::Gitea => {
            let token = entry.token.clone().ok_or_else(|| missing("a token"))?;
            Box::new(GiteaForge::new(&api_url, token, policy, events)?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ignore_retries;

    #[test]
    fn resolves_by_host_and_defaults_to_git() {
        let config = ForgeConfig::from_toml(
            r#"
            [retry]
            max_attempts = 3

            [[forge]]
            kind = "gitlab"
            host = "gitlab.example.com"
            token = "glpat-canary"

            [[forge]]
            kind = "forgejo"
            host = "codeberg.org"
            token = "tok"
            "#,
        )
        .unwrap();
        assert_eq!(config.retry.max_attempts, 3);
        assert!(!format!("{config:?}").contains("canary"));
        let forge = |url: &str| {
            resolve(&RepoUrl::parse(url).unwrap(), &config, ignore_retries())
                .unwrap()
                .name()
        };
        assert_eq!(forge("https://gitlab.example.com/g/sub/p.git"), "gitlab");
        assert_eq!(forge("git@codeberg.org:me/p.git"), "gitea");
        assert_eq!(forge("https://github.com/acme/widget"), "git");
        assert_eq!(forge("/srv/repos/widget.git"), "git");

        let tokenless =
            ForgeConfig::from_toml("[[forge]]\nkind = \"gitlab\"\nhost = \"gitlab.example.com\"\n")
                .unwrap();
        let err = resolve(
            &RepoUrl::parse("https://gitlab.example.com/g/p.git").unwrap(),
            &tokenless,
            ignore_retries(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.contains("the gitlab forge for gitlab.example.com needs a token"),
            "{err}"
        );
    }
}
