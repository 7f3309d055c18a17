//! Credentials that must never leak: a wrapper whose Debug and Display hide the value, and the
//! git push credential handed to `git` through its environment. Text that may echo one is
//! masked with [`nightshift_core::Redactor`], given [`GitAuth::secrets`].

use base64::Engine as _;
use serde::Deserialize;

/// A credential (token, private key, header value). Debug and Display print `***`; only
/// [`Secret::expose`] gives the value, at the one place it is put on the wire.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// How `git push` authenticates as the engine: an HTTP `Authorization` header scoped to the
/// forge's origin. Handed to git through `GIT_CONFIG_*` environment variables, never argv.
#[derive(Clone)]
pub struct GitAuth {
    origin: String,
    header: Secret,
    /// Every form of the credential that could show up in git's output.
    secrets: Vec<Secret>,
}

impl GitAuth {
    /// Basic auth as the forges document for token pushes over HTTPS
    /// (GitHub `x-access-token`, GitLab `oauth2`, Gitea any user name).
    pub fn basic(origin: &str, username: &str, token: &Secret) -> GitAuth {
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(format!("{username}:{}", token.expose()));
        GitAuth {
            origin: origin.trim_end_matches('/').to_string(),
            header: Secret::new(format!("Authorization: Basic {encoded}")),
            secrets: vec![token.clone(), Secret::new(encoded)],
        }
    }

    /// The environment for the `git push` child: one `http.<origin>/.extraHeader` entry.
    /// `GIT_CONFIG_COUNT` is set here, so callers that add their own entries must merge.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("GIT_CONFIG_COUNT".to_string(), "1".to_string()),
            (
                "GIT_CONFIG_KEY_0".to_string(),
                format!("http.{}/.extraHeader", self.origin),
            ),
            (
                "GIT_CONFIG_VALUE_0".to_string(),
                self.header.expose().to_string(),
            ),
        ]
    }

    /// The URL prefix the header is limited to, e.g. `https://github.com`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Every form of the credential, for the secret filter of whatever may echo it.
    pub fn secrets(&self) -> Vec<Secret> {
        let mut all = self.secrets.clone();
        all.push(self.header.clone());
        all
    }
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitAuth")
            .field("origin", &self.origin)
            .field("header", &self.header)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let token = Secret::new("canary-123456");
        assert_eq!(format!("{token} {token:?}"), "*** Secret(***)");
        let auth = GitAuth::basic("https://example.com/", "oauth2", &token);
        assert!(!format!("{auth:?}").contains("canary"));
        let env = auth.env();
        assert_eq!(env[1].1, "http.https://example.com/.extraHeader");
        assert!(env[2].1.starts_with("Authorization: Basic "));
        let stderr = format!("fatal: {} and {}", token.expose(), env[2].1);
        let secrets = auth.secrets();
        let redactor =
            nightshift_core::Redactor::exact(secrets.iter().map(Secret::expose)).unwrap();
        let clean = redactor.redact(&stderr);
        assert!(
            !clean.contains("canary") && !clean.contains(&env[2].1[21..]),
            "{clean}"
        );
    }
}
