//! GitHub (github.com and Enterprise Server, REST v3): pull requests, labels, push permission
//! and CI from combined status plus check runs. Authenticates with a fine-grained token or as
//! a GitHub App, whose installation tokens are minted per repository and refreshed early.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use nightshift_core::RepoUrl;
use reqwest::Method;
use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::http::{Api, Auth, RetryObserver, RetryPolicy, encode_segment, field_str, field_u64};
use crate::{
    CiReport, Forge, ForgeError, GitAuth, Permission, PollValidators, PrComment, PrPoll,
    PullRequest, PullRequestSpec, RepoPath, Result, Secret,
};

mod follow;

const FORGE: &str = "github";
/// Installation tokens live an hour; one is replaced when less than this is left, so a push
/// or API call never starts with a token about to expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// How Nightshift authenticates to GitHub.
#[derive(Debug)]
pub enum GitHubAuth {
    /// A fine-grained personal access token (or a classic one).
    Token(Secret),
    App(AppCredentials),
}

/// A GitHub App: its id and private key, with installation tokens cached per repository.
pub struct AppCredentials {
    app_id: u64,
    key: EncodingKey,
    tokens: Mutex<HashMap<String, InstallationToken>>,
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials")
            .field("app_id", &self.app_id)
            .field("key", &"***")
            .finish()
    }
}

#[derive(Debug, Clone)]
struct InstallationToken {
    token: Secret,
    expires_at: SystemTime,
    /// What the installation may do, e.g. `{"contents": "write", "pull_requests": "write"}`.
    permissions: Value,
}

impl GitHubAuth {
    /// App credentials from the App id and its PEM private key.
    pub fn app(app_id: u64, private_key: &Secret) -> Result<GitHubAuth> {
        // jsonwebtoken's errors do not quote the key, but say nothing more than needed anyway.
        let key = EncodingKey::from_rsa_pem(private_key.expose().as_bytes()).map_err(|_| {
            ForgeError::Config(format!(
                "the private key of GitHub App {app_id} is not an RSA PEM key"
            ))
        })?;
        Ok(GitHubAuth::App(AppCredentials {
            app_id,
            key,
            tokens: Mutex::new(HashMap::new()),
        }))
    }
}

/// The GitHub driver. `api_url` is `https://api.github.com` or `https://<host>/api/v3`.
#[derive(Debug)]
pub struct GitHubForge {
    api: Api,
    auth: GitHubAuth,
}

impl GitHubForge {
    pub fn new(
        api_url: &str,
        auth: GitHubAuth,
        policy: RetryPolicy,
        events: RetryObserver,
    ) -> Result<GitHubForge> {
        Ok(GitHubForge {
            api: Api::new(FORGE, api_url, policy, events)?,
            auth,
        })
    }

    fn bearer(token: &Secret) -> Auth {
        Auth {
            header: AUTHORIZATION,
            value: Secret::new(format!("Bearer {}", token.expose())),
        }
    }

    /// The token to act on `owner/repo` with: the configured one, or an installation token.
    async fn token(&self, owner: &str, repo: &str) -> Result<(Secret, Option<Value>)> {
        match &self.auth {
            GitHubAuth::Token(token) => Ok((token.clone(), None)),
            GitHubAuth::App(app) => {
                let token = self.installation_token(app, owner, repo).await?;
                Ok((token.token, Some(token.permissions)))
            }
        }
    }

    async fn installation_token(
        &self,
        app: &AppCredentials,
        owner: &str,
        repo: &str,
    ) -> Result<InstallationToken> {
        let key = format!("{owner}/{repo}");
        // Held across the refresh so concurrent runs on one repository mint one token, not many.
        let mut cache = app.tokens.lock().await;
        if let Some(cached) = cache.get(&key)
            && cached.expires_at > SystemTime::now() + REFRESH_MARGIN
        {
            return Ok(cached.clone());
        }
        let jwt = Self::bearer(&self.app_jwt(app)?);
        let path = format!(
            "/repos/{}/{}/installation",
            encode_segment(owner),
            encode_segment(repo)
        );
        let installation = self.api.send(Method::GET, &path, &[], None, &jwt).await?;
        if installation.status.as_u16() == 404 {
            return Err(ForgeError::PermissionDenied {
                repo: key,
                reason: format!(
                    "GitHub App {} is not installed on this repository",
                    app.app_id
                ),
            });
        }
        let operation = format!("GET {path}");
        let installation = installation.into_body(FORGE, &operation, "the App installation")?;
        let id = field_u64(&installation, "/id", FORGE, &operation)?;
        let path = format!("/app/installations/{id}/access_tokens");
        let operation = format!("POST {path}");
        // Scoped to the one repository: a leaked token then reaches nothing else.
        let body = json!({ "repositories": [repo] });
        let answer = self
            .api
            .json(
                Method::POST,
                &path,
                &[],
                Some(&body),
                &jwt,
                "the App installation",
            )
            .await?;
        let token = field_str(&answer, "/token");
        let expires_at = nightshift_core::parse_timestamp(&field_str(&answer, "/expires_at"))
            .map_err(|_| ForgeError::Protocol {
                forge: FORGE,
                operation: operation.clone(),
                detail: "expires_at is not a timestamp".into(),
            })?;
        if token.is_empty() {
            return Err(ForgeError::Protocol {
                forge: FORGE,
                operation,
                detail: "the answer has no token".into(),
            });
        }
        let fresh = InstallationToken {
            token: Secret::new(token),
            expires_at: UNIX_EPOCH
                + Duration::from_millis(u64::try_from(expires_at).unwrap_or_default()),
            permissions: answer.get("permissions").cloned().unwrap_or(Value::Null),
        };
        cache.insert(key, fresh.clone());
        Ok(fresh)
    }

    /// The App's own JWT (RS256, ten minutes at most), used only to mint installation tokens.
    fn app_jwt(&self, app: &AppCredentials) -> Result<Secret> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        // Backdated a minute against clock drift, as GitHub recommends.
        let claims = json!({ "iat": now.saturating_sub(60), "exp": now + 540, "iss": app.app_id.to_string() });
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &app.key)
            .map(Secret::new)
            .map_err(|_| {
                ForgeError::Config(format!("cannot sign a JWT for GitHub App {}", app.app_id))
            })
    }

    fn repo_base(owner: &str, repo: &str) -> String {
        format!("/repos/{}/{}", encode_segment(owner), encode_segment(repo))
    }

    async fn find_open(
        &self,
        base: &str,
        owner: &str,
        head: &str,
        auth: &Auth,
    ) -> Result<Option<Value>> {
        let query = [
            ("head", format!("{owner}:{head}")),
            ("state", "open".to_string()),
            ("per_page", "100".to_string()),
        ];
        let list = self
            .api
            .json(
                Method::GET,
                &format!("{base}/pulls"),
                &query,
                None,
                auth,
                "pull requests",
            )
            .await?;
        Ok(list.as_array().and_then(|prs| {
            prs.iter()
                .find(|pr| field_str(pr, "/head/ref") == head)
                .cloned()
        }))
    }

    async fn push_access(&self, owner: &str, repo: &str) -> Result<()> {
        let full = format!("{owner}/{repo}");
        let denied = |reason: String| ForgeError::PermissionDenied {
            repo: full.clone(),
            reason,
        };
        let (token, app_permissions) = match self.token(owner, repo).await {
            Ok(found) => found,
            Err(ForgeError::Unauthorized { detail, .. }) => {
                return Err(denied(format!("GitHub rejected the App's JWT: {detail}")));
            }
            Err(other) => return Err(other),
        };
        if let Some(permissions) = app_permissions {
            let contents = field_str(&permissions, "/contents");
            let pulls = field_str(&permissions, "/pull_requests");
            if contents != "write" || pulls != "write" {
                return Err(denied(format!(
                    "the GitHub App's installation grants contents: {}, pull_requests: {}; both must be write",
                    or_none(&contents),
                    or_none(&pulls)
                )));
            }
            return Ok(());
        }
        let auth = Self::bearer(&token);
        let repo_json = match self
            .api
            .json(
                Method::GET,
                &Self::repo_base(owner, repo),
                &[],
                None,
                &auth,
                "the repository",
            )
            .await
        {
            Ok(json) => json,
            Err(ForgeError::NotFound { .. }) => {
                return Err(denied(
                    "the repository does not exist or the token cannot see it".into(),
                ));
            }
            Err(ForgeError::Unauthorized { status, .. }) => {
                return Err(denied(format!("GitHub rejected the token ({status})")));
            }
            Err(other) => return Err(other),
        };
        if let Some(push) = repo_json
            .pointer("/permissions/push")
            .and_then(Value::as_bool)
        {
            return if push {
                Ok(())
            } else {
                Err(denied(
                    "the token has read access only (permissions.push is false)".into(),
                ))
            };
        }
        // Some tokens get no `permissions` on the repository: ask for the caller's role instead.
        let user = self
            .api
            .json(
                Method::GET,
                "/user",
                &[],
                None,
                &auth,
                "the authenticated user",
            )
            .await?;
        let login = field_str(&user, "/login");
        let path = format!(
            "{}/collaborators/{}/permission",
            Self::repo_base(owner, repo),
            encode_segment(&login)
        );
        let permission = self
            .api
            .json(
                Method::GET,
                &path,
                &[],
                None,
                &auth,
                "the collaborator permission",
            )
            .await?;
        match field_str(&permission, "/permission").as_str() {
            "admin" | "write" => Ok(()),
            other => Err(denied(format!(
                "{login} has {} permission; write is needed",
                or_none(other)
            ))),
        }
    }
}

fn or_none(text: &str) -> &str {
    if text.is_empty() { "none" } else { text }
}

#[async_trait]
impl Forge for GitHubForge {
    fn name(&self) -> &'static str {
        FORGE
    }

    async fn check_push_access(&self, repo: &RepoUrl) -> Result<()> {
        let path = RepoPath::parse(repo)?;
        let (owner, name) = path.owner_repo()?;
        self.push_access(owner, name).await
    }

    async fn git_auth(&self, repo: &RepoUrl) -> Result<Option<GitAuth>> {
        let path = RepoPath::parse(repo)?;
        let Some(origin) = path.http_origin() else {
            return Ok(None);
        };
        let (owner, name) = path.owner_repo()?;
        let (token, _) = self.token(owner, name).await?;
        Ok(Some(GitAuth::basic(&origin, "x-access-token", &token)))
    }

    async fn find_or_create_pull_request(
        &self,
        spec: &PullRequestSpec,
    ) -> Result<Option<PullRequest>> {
        let path = RepoPath::parse(&spec.repo)?;
        let (owner, name) = path.owner_repo()?;
        let (token, _) = self.token(owner, name).await?;
        let auth = Self::bearer(&token);
        let base = Self::repo_base(owner, name);

        let body =
            json!({ "title": spec.title, "head": spec.head, "base": spec.base, "body": spec.body });
        // GitHub refuses a second pull request for a branch with 422.
        let (mut pr, adopted) = self
            .api
            .find_or_create(&format!("{base}/pulls"), &body, &auth, 422, || {
                self.find_open(&base, owner, &spec.head, &auth)
            })
            .await?;
        let number = field_u64(&pr, "/number", FORGE, "pull request")?;
        if adopted {
            pr = self
                .api
                .refresh_title_and_body(&format!("{base}/pulls/{number}"), pr, spec, &auth)
                .await?;
        }
        // Adding labels creates missing ones on GitHub and is a no-op for present ones.
        let labels = json!({ "labels": spec.all_labels() });
        self.api
            .json(
                Method::POST,
                &format!("{base}/issues/{number}/labels"),
                &[],
                Some(&labels),
                &auth,
                "the pull request",
            )
            .await?;
        Ok(Some(PullRequest {
            number,
            url: field_str(&pr, "/html_url"),
            adopted,
        }))
    }

    async fn poll_pull_request(
        &self,
        repo: &RepoUrl,
        number: u64,
        previous: Option<&PollValidators>,
    ) -> Result<PrPoll> {
        self.poll(repo, number, previous).await
    }

    async fn ci_failures(&self, repo: &RepoUrl, number: u64) -> Result<CiReport> {
        self.failures(repo, number).await
    }

    async fn pull_request_comments(
        &self,
        repo: &RepoUrl,
        number: u64,
        since: Option<i64>,
    ) -> Result<Vec<PrComment>> {
        self.comments(repo, number, since).await
    }

    async fn permission(&self, repo: &RepoUrl, user: &str) -> Result<Permission> {
        self.user_permission(repo, user).await
    }

    async fn own_login(&self, _repo: &RepoUrl) -> Result<Option<String>> {
        let GitHubAuth::Token(token) = &self.auth else {
            return Ok(None);
        };
        let user = self
            .api
            .json(
                Method::GET,
                "/user",
                &[],
                None,
                &Self::bearer(token),
                "the authenticated user",
            )
            .await?;
        Ok(Some(field_str(&user, "/login")).filter(|l| !l.is_empty()))
    }
}
