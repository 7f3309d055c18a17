//! Gitea and Forgejo (same API, `/api/v1`): pull requests, labels by id (created when
//! missing), push permission from the repository, CI from the head commit's combined status.

use async_trait::async_trait;
use nightshift_core::RepoUrl;
use reqwest::Method;
use reqwest::header::AUTHORIZATION;
use serde_json::{Value, json};

use crate::http::{Api, Auth, RetryObserver, RetryPolicy, encode_segment, field_str, field_u64};
use crate::{
    CiReport, Forge, ForgeError, GitAuth, Permission, PollValidators, PrComment, PrPoll,
    PullRequest, PullRequestSpec, RepoPath, Result, Secret,
};

mod follow;

const FORGE: &str = "gitea";
/// The colour new labels get (Gitea requires one).
const LABEL_COLOR: &str = "#5319e7";

#[derive(Debug)]
pub struct GiteaForge {
    api: Api,
    token: Secret,
    auth: Auth,
}

impl GiteaForge {
    pub fn new(
        api_url: &str,
        token: Secret,
        policy: RetryPolicy,
        events: RetryObserver,
    ) -> Result<GiteaForge> {
        let auth = Auth {
            header: AUTHORIZATION,
            value: Secret::new(format!("token {}", token.expose())),
        };
        Ok(GiteaForge {
            api: Api::new(FORGE, api_url, policy, events)?,
            token,
            auth,
        })
    }

    fn repo_base(path: &RepoPath) -> Result<String> {
        let (owner, repo) = path.owner_repo()?;
        Ok(format!(
            "/repos/{}/{}",
            encode_segment(owner),
            encode_segment(repo)
        ))
    }

    /// The open PR from `head` into `base`. Gitea's route takes the head as a wildcard, so a
    /// branch with slashes is sent as it is.
    async fn find_open(&self, repo_base: &str, base: &str, head: &str) -> Result<Option<Value>> {
        let head_path = head
            .split('/')
            .map(encode_segment)
            .collect::<Vec<_>>()
            .join("/");
        let path = format!("{repo_base}/pulls/{}/{head_path}", encode_segment(base));
        let answer = self
            .api
            .send(Method::GET, &path, &[], None, &self.auth)
            .await?;
        if answer.status.as_u16() == 404 {
            return Ok(None);
        }
        let pr = answer.into_body(FORGE, &format!("GET {path}"), "the pull request")?;
        Ok((field_str(&pr, "/state") == "open"
            && pr.get("merged").and_then(Value::as_bool) != Some(true))
        .then_some(pr))
    }

    /// Label ids for `names`, creating the labels the repository lacks.
    async fn label_ids(&self, repo_base: &str, names: &[String]) -> Result<Vec<u64>> {
        let path = format!("{repo_base}/labels");
        let mut known: Vec<(String, u64)> = Vec::new();
        for page in 1..=20 {
            let query = [("page", page.to_string()), ("limit", "50".to_string())];
            let list = self
                .api
                .json(Method::GET, &path, &query, None, &self.auth, "the labels")
                .await?;
            let items = list.as_array().cloned().unwrap_or_default();
            for label in &items {
                if let Some(id) = label.get("id").and_then(Value::as_u64) {
                    known.push((field_str(label, "/name"), id));
                }
            }
            if items.len() < 50 {
                break;
            }
        }
        let mut ids = Vec::new();
        for name in names {
            match known.iter().find(|(known_name, _)| known_name == name) {
                Some((_, id)) => ids.push(*id),
                None => {
                    let body = json!({ "name": name, "color": LABEL_COLOR, "description": "Opened by Nightshift" });
                    let label = self
                        .api
                        .json(
                            Method::POST,
                            &path,
                            &[],
                            Some(&body),
                            &self.auth,
                            "the labels",
                        )
                        .await?;
                    ids.push(field_u64(&label, "/id", FORGE, &format!("POST {path}"))?);
                }
            }
        }
        Ok(ids)
    }
}

#[async_trait]
impl Forge for GiteaForge {
    fn name(&self) -> &'static str {
        FORGE
    }

    async fn check_push_access(&self, repo: &RepoUrl) -> Result<()> {
        let path = RepoPath::parse(repo)?;
        let base = Self::repo_base(&path)?;
        let denied = |reason: String| ForgeError::PermissionDenied {
            repo: path.path.clone(),
            reason,
        };
        let repo_json = match self
            .api
            .json(Method::GET, &base, &[], None, &self.auth, "the repository")
            .await
        {
            Ok(json) => json,
            Err(ForgeError::NotFound { .. }) => {
                return Err(denied(
                    "the repository does not exist or the token cannot see it".into(),
                ));
            }
            Err(ForgeError::Unauthorized { status, .. }) => {
                return Err(denied(format!("Gitea rejected the token ({status})")));
            }
            Err(other) => return Err(other),
        };
        match repo_json
            .pointer("/permissions/push")
            .and_then(Value::as_bool)
        {
            Some(true) => Ok(()),
            Some(false) => Err(denied(
                "the token has read access only (permissions.push is false)".into(),
            )),
            None => Err(denied(
                "Gitea did not report the token's permissions on the repository".into(),
            )),
        }
    }

    async fn git_auth(&self, repo: &RepoUrl) -> Result<Option<GitAuth>> {
        let path = RepoPath::parse(repo)?;
        // Gitea takes any user name with a token as the password.
        Ok(path
            .http_origin()
            .map(|origin| GitAuth::basic(&origin, "nightshift", &self.token)))
    }

    async fn find_or_create_pull_request(
        &self,
        spec: &PullRequestSpec,
    ) -> Result<Option<PullRequest>> {
        let path = RepoPath::parse(&spec.repo)?;
        let base = Self::repo_base(&path)?;
        let labels = self.label_ids(&base, &spec.all_labels()).await?;

        let body = json!({ "title": spec.title, "head": spec.head, "base": spec.base, "body": spec.body, "labels": labels });
        // Gitea refuses a second pull request for a branch with 409.
        let (mut pr, adopted) = self
            .api
            .find_or_create(&format!("{base}/pulls"), &body, &self.auth, 409, || {
                self.find_open(&base, &spec.base, &spec.head)
            })
            .await?;
        let number = field_u64(&pr, "/number", FORGE, "pull request")?;
        if adopted {
            pr = self
                .api
                .refresh_title_and_body(&format!("{base}/pulls/{number}"), pr, spec, &self.auth)
                .await?;
        }
        let present: Vec<u64> = pr
            .get("labels")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|l| l.get("id").and_then(Value::as_u64))
            .collect();
        if labels.iter().any(|id| !present.contains(id)) {
            let body = json!({ "labels": labels });
            self.api
                .json(
                    Method::POST,
                    &format!("{base}/issues/{number}/labels"),
                    &[],
                    Some(&body),
                    &self.auth,
                    "the pull request",
                )
                .await?;
        }
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
        let user = self
            .api
            .json(
                Method::GET,
                "/user",
                &[],
                None,
                &self.auth,
                "the token's user",
            )
            .await?;
        Ok(Some(field_str(&user, "/login")).filter(|l| !l.is_empty()))
    }
}
