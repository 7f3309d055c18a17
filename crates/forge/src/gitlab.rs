//! GitLab (gitlab.com and self-managed, REST v4): merge requests with labels, push access
//! from the project access level, CI from the merge request's head pipeline.

use async_trait::async_trait;
use nightshift_core::RepoUrl;
use reqwest::Method;
use reqwest::header::HeaderName;
use serde_json::{Value, json};

use crate::http::{Api, Auth, RetryObserver, RetryPolicy, encode_segment, field_str, field_u64};
use crate::{
    CiReport, CiState, Forge, ForgeError, GitAuth, Permission, PollValidators, PrComment, PrPoll,
    PullRequest, PullRequestSpec, RepoPath, Result, Secret,
};

mod follow;

const FORGE: &str = "gitlab";
/// Developer: the lowest access level that may push to unprotected branches and open MRs.
const DEVELOPER: u64 = 30;

#[derive(Debug)]
pub struct GitLabForge {
    api: Api,
    token: Secret,
    auth: Auth,
}

impl GitLabForge {
    pub fn new(
        api_url: &str,
        token: Secret,
        policy: RetryPolicy,
        events: RetryObserver,
    ) -> Result<GitLabForge> {
        let auth = Auth {
            header: HeaderName::from_static("private-token"),
            value: token.clone(),
        };
        Ok(GitLabForge {
            api: Api::new(FORGE, api_url, policy, events)?,
            token,
            auth,
        })
    }

    /// `/projects/group%2Fsub%2Fproject`: GitLab takes the URL-encoded path as the id.
    fn project(path: &RepoPath) -> String {
        format!("/projects/{}", encode_segment(&path.path))
    }

    async fn find_open(&self, project: &str, head: &str) -> Result<Option<Value>> {
        let query = [
            ("source_branch", head.to_string()),
            ("state", "opened".to_string()),
            ("per_page", "100".to_string()),
        ];
        let list = self
            .api
            .json(
                Method::GET,
                &format!("{project}/merge_requests"),
                &query,
                None,
                &self.auth,
                "merge requests",
            )
            .await?;
        Ok(list.as_array().and_then(|mrs| {
            mrs.iter()
                .find(|mr| field_str(mr, "/source_branch") == head)
                .cloned()
        }))
    }

    async fn access_level(&self, project: &str, project_json: &Value) -> Result<Option<u64>> {
        let levels = [
            "/permissions/project_access/access_level",
            "/permissions/group_access/access_level",
        ];
        let best = levels
            .iter()
            .filter_map(|p| project_json.pointer(p).and_then(Value::as_u64))
            .max();
        if best.is_some() {
            return Ok(best);
        }
        // Both are null when access comes through an invited group or an ancestor group:
        // ask for this token's user's effective membership instead.
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
        let id = field_u64(&user, "/id", FORGE, "GET /user")?;
        let member = self
            .api
            .send(
                Method::GET,
                &format!("{project}/members/all/{id}"),
                &[],
                None,
                &self.auth,
            )
            .await?;
        if member.status.as_u16() == 404 {
            return Ok(None);
        }
        let member = member.into_body(FORGE, "GET members", "the membership")?;
        Ok(member.get("access_level").and_then(Value::as_u64))
    }
}

#[async_trait]
impl Forge for GitLabForge {
    fn name(&self) -> &'static str {
        FORGE
    }

    async fn check_push_access(&self, repo: &RepoUrl) -> Result<()> {
        let path = RepoPath::parse(repo)?;
        let project = Self::project(&path);
        let denied = |reason: String| ForgeError::PermissionDenied {
            repo: path.path.clone(),
            reason,
        };
        let project_json = match self
            .api
            .json(Method::GET, &project, &[], None, &self.auth, "the project")
            .await
        {
            Ok(json) => json,
            Err(ForgeError::NotFound { .. }) => {
                return Err(denied(
                    "the project does not exist or the token cannot see it".into(),
                ));
            }
            Err(ForgeError::Unauthorized { status, .. }) => {
                return Err(denied(format!("GitLab rejected the token ({status})")));
            }
            Err(other) => return Err(other),
        };
        if project_json.get("archived").and_then(Value::as_bool) == Some(true) {
            return Err(denied("the project is archived".into()));
        }
        match self.access_level(&project, &project_json).await? {
            Some(level) if level >= DEVELOPER => Ok(()),
            Some(level) => Err(denied(format!(
                "the token's access level is {level}; Developer (30) or higher is needed"
            ))),
            None => Err(denied(
                "the token's user is not a member of the project".into(),
            )),
        }
    }

    async fn git_auth(&self, repo: &RepoUrl) -> Result<Option<GitAuth>> {
        let path = RepoPath::parse(repo)?;
        // GitLab documents `oauth2` as the user name for token pushes over HTTPS.
        Ok(path
            .http_origin()
            .map(|origin| GitAuth::basic(&origin, "oauth2", &self.token)))
    }

    async fn find_or_create_pull_request(
        &self,
        spec: &PullRequestSpec,
    ) -> Result<Option<PullRequest>> {
        let path = RepoPath::parse(&spec.repo)?;
        let project = Self::project(&path);
        let labels = spec.all_labels().join(",");

        let body = json!({
            "source_branch": spec.head, "target_branch": spec.base, "title": spec.title,
            "description": spec.body, "labels": labels,
        });
        // GitLab refuses a second open merge request for a branch with 409.
        let (mut mr, adopted) = self
            .api
            .find_or_create(
                &format!("{project}/merge_requests"),
                &body,
                &self.auth,
                409,
                || self.find_open(&project, &spec.head),
            )
            .await?;
        let iid = field_u64(&mr, "/iid", FORGE, "merge request")?;
        let has_labels = {
            let present: Vec<&str> = mr
                .get("labels")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            spec.all_labels()
                .iter()
                .all(|l| present.contains(&l.as_str()))
        };
        if adopted
            && (field_str(&mr, "/title") != spec.title
                || field_str(&mr, "/description") != spec.body
                || !has_labels)
        {
            // `add_labels` keeps labels people added by hand; GitLab creates missing ones.
            let update =
                json!({ "title": spec.title, "description": spec.body, "add_labels": labels });
            mr = self
                .api
                .json(
                    Method::PUT,
                    &format!("{project}/merge_requests/{iid}"),
                    &[],
                    Some(&update),
                    &self.auth,
                    "the merge request",
                )
                .await?;
        }
        Ok(Some(PullRequest {
            number: iid,
            url: field_str(&mr, "/web_url"),
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
        Ok(Some(field_str(&user, "/username")).filter(|l| !l.is_empty()))
    }
}

/// A pipeline status as a verdict.
pub(crate) fn pipeline_state(status: Option<&str>) -> CiState {
    match status {
        None => CiState::None,
        Some("success") => CiState::Passing,
        Some("failed" | "canceled") => CiState::Failing,
        // A pipeline that only skipped jobs or waits for a manual one will not move by itself.
        Some("skipped" | "manual") => CiState::None,
        Some(_) => CiState::Pending,
    }
}
