//! The fake's REST handlers for GitHub, Gitea and GitLab. GitHub answers are built on the
//! example payloads of GitHub's own description; every request and answer is checked.

use serde_json::{Value, json};

use super::contract::{Contract, Params};
use super::{
    Access, Caller, FakeKind, FakePull, FakeState, Label, Reply, Repo, Shared, lock, rev_parse,
};

const TIME: &str = "2026-01-01T00:00:00Z";

/// Handles one API request under the state lock; returns the answer and the operation id.
pub(super) fn dispatch(
    shared: &Shared,
    kind: FakeKind,
    method: &str,
    segments: &[String],
    query: &[(String, String)],
    body: &Value,
    caller: &Caller,
) -> (Reply, Option<String>) {
    let mut state = lock(shared);
    let origin = format!("http://{}", shared.addr);
    let cx = Cx {
        root: &shared.root,
        origin: &origin,
        caller,
        query,
        body,
    };
    let contract = match kind {
        FakeKind::GitHub => Contract::github(),
        FakeKind::Gitea => Contract::gitea(),
        FakeKind::GitLab => {
            let (reply, problems) = gitlab(&mut state, &cx, method, segments);
            state.violations.extend(problems);
            return (
                reply,
                Some(format!("gitlab {method} {}", segments.join("/"))),
            );
        }
    };
    let Some((op, params)) = contract.find(method, segments) else {
        state.violations.push(format!(
            "{method} /{}: no such operation in the API description",
            segments.join("/")
        ));
        return (
            Reply::new(
                404,
                json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
            ),
            None,
        );
    };
    let problems = contract.check_request(op, &params, query, (!body.is_null()).then_some(body));
    if !problems.is_empty() {
        state.violations.extend(problems);
        let reply = Reply::new(
            422,
            json!({"message": "Validation Failed", "documentation_url": "https://docs.github.com/rest"}),
        );
        return (reply, Some(op.id.clone()));
    }
    let reply = if matches!(caller, Caller::Invalid) {
        Reply::new(
            401,
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
        )
    } else if kind == FakeKind::GitHub {
        github(&mut state, &cx, &op.id, &params)
    } else {
        gitea(&mut state, &cx, &op.id, &params)
    };
    // 401 can answer any operation; the descriptions do not list it everywhere.
    if reply.status != 401 {
        let problems = contract.check_response(op, reply.status, &reply.body);
        state.violations.extend(problems);
    }
    (reply, Some(op.id.clone()))
}

pub(super) struct Cx<'a> {
    pub(super) root: &'a std::path::Path,
    pub(super) origin: &'a str,
    pub(super) caller: &'a Caller,
    pub(super) query: &'a [(String, String)],
    pub(super) body: &'a Value,
}

impl Cx<'_> {
    pub(super) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(super) fn sha(&self, repo: &str, branch: &str) -> String {
        rev_parse(&self.root.join(format!("{repo}.git")), branch).unwrap_or_default()
    }
}

pub(super) fn access(state: &FakeState, caller: &Caller, full_name: &str) -> Option<Access> {
    let repo = state.repos.iter().find(|r| r.full_name == full_name)?;
    match caller {
        Caller::User(user) => repo.grants.get(&user.login).copied(),
        Caller::Installation {
            account,
            permissions,
            repos,
            ..
        } => {
            let (owner, name) = full_name.split_once('/')?;
            if owner != account || !(repos.is_empty() || repos.iter().any(|r| r == name)) {
                return None;
            }
            Some(if permissions["contents"] == "write" {
                Access::Write
            } else {
                Access::Read
            })
        }
        _ => None,
    }
}

/// Whether `caller` may push to `full_name` (used for git smart HTTP too).
pub(super) fn can_push(state: &FakeState, caller: &Caller, full_name: &str) -> bool {
    access(state, caller, full_name).is_some_and(|a| a >= Access::Write)
}

pub(super) fn not_found() -> Reply {
    Reply::new(
        404,
        json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
    )
}

fn forbidden(message: &str) -> Reply {
    Reply::new(
        403,
        json!({"message": message, "documentation_url": "https://docs.github.com/rest"}),
    )
}

fn repo_of(params: &Params) -> String {
    format!(
        "{}/{}",
        params.get("owner").map_or("", String::as_str),
        params.get("repo").map_or("", String::as_str)
    )
}

pub(super) fn number_param(params: &Params, name: &str) -> u64 {
    params.get(name).and_then(|n| n.parse().ok()).unwrap_or(0)
}

pub(super) fn set(value: &mut Value, pointer: &str, new: Value) {
    if let Some(slot) = value.pointer_mut(pointer) {
        *slot = new;
    }
}

/// Creates the label if missing; returns it.
fn ensure_label(state: &mut FakeState, full_name: &str, name: &str, color: &str) -> Option<Label> {
    let id = state.next_id();
    let repo = state.repo_mut(full_name)?;
    if let Some(label) = repo.labels.iter().find(|l| l.name == name) {
        return Some(label.clone());
    }
    let label = Label {
        id,
        name: name.to_string(),
        color: color.to_string(),
    };
    repo.labels.push(label.clone());
    Some(label)
}

fn open_pull<'a>(repo: &'a Repo, head: &str, base: Option<&str>) -> Option<&'a FakePull> {
    repo.pulls
        .iter()
        .find(|p| p.open && p.head == head && base.is_none_or(|b| b == p.base))
}

fn create_pull(
    state: &mut FakeState,
    full_name: &str,
    title: &str,
    body: &str,
    head: &str,
    base: &str,
) -> Option<FakePull> {
    let id = state.next_id();
    let repo = state.repo_mut(full_name)?;
    let number = repo.pulls.len() as u64 + 1;
    let pull = FakePull {
        number,
        id,
        title: title.to_string(),
        body: body.to_string(),
        head: head.to_string(),
        base: base.to_string(),
        open: true,
        merged: false,
        labels: Vec::new(),
    };
    repo.pulls.push(pull.clone());
    Some(pull)
}

// ---------------------------------------------------------------- GitHub

fn github(state: &mut FakeState, cx: &Cx, op: &str, params: &Params) -> Reply {
    let contract = Contract::github();
    if let Some(reply) = github_app(state, cx, op, params) {
        return reply;
    }
    if matches!(cx.caller, Caller::App | Caller::Anonymous) {
        return Reply::new(
            401,
            json!({"message": "Requires authentication", "documentation_url": "https://docs.github.com/rest"}),
        );
    }
    if op == "users/get-authenticated" {
        let Caller::User(user) = cx.caller else {
            return forbidden("Resource not accessible by integration");
        };
        let mut me =
            contract.example("private-user-response-with-public-and-private-profile-information");
        set(&mut me, "/login", json!(user.login));
        set(&mut me, "/id", json!(user.id));
        return Reply::new(200, me);
    }
    if op == "rate-limit/get" {
        return Reply::new(200, contract.example("rate-limit-overview"));
    }
    let full_name = repo_of(params);
    let Some(level) = access(state, cx.caller, &full_name) else {
        return not_found();
    };
    let Some(repo) = state
        .repos
        .iter()
        .find(|r| r.full_name == full_name)
        .cloned()
    else {
        return not_found();
    };
    match op {
        "repos/get" => {
            let mut out = contract.example("full-repository-default-response");
            let (owner, name) = full_name.split_once('/').unwrap_or_default();
            set(&mut out, "/id", json!(repo.id));
            set(&mut out, "/name", json!(name));
            set(&mut out, "/full_name", json!(full_name));
            set(&mut out, "/owner/login", json!(owner));
            set(&mut out, "/default_branch", json!(repo.default_branch));
            set(
                &mut out,
                "/html_url",
                json!(format!("{}/{full_name}", cx.origin)),
            );
            set(
                &mut out,
                "/clone_url",
                json!(format!("{}/{full_name}.git", cx.origin)),
            );
            if let Some(map) = out.as_object_mut() {
                // GitHub's example predates `language` becoming required; the nested
                // source/parent repositories are optional and left out.
                map.insert("language".into(), Value::Null);
                map.remove("source");
                map.remove("parent");
                map.remove("template_repository");
                match cx.caller {
                    Caller::User(_) => {
                        let write = level >= Access::Write;
                        let admin = level == Access::Admin;
                        map.insert("permissions".into(), json!({"admin": admin, "maintain": admin, "push": write, "triage": write, "pull": true}));
                    }
                    // Installation tokens see no per-user permissions on the repository.
                    _ => {
                        map.remove("permissions");
                    }
                }
            }
            Reply::new(200, out)
        }
        "repos/get-collaborator-permission-level" => {
            let login = params.get("username").cloned().unwrap_or_default();
            let Some(granted) = repo.grants.get(&login) else {
                return not_found();
            };
            let mut out = contract.example(
                "repository-collaborator-permission-response-if-user-has-admin-permissions",
            );
            let word = match granted {
                Access::Read => "read",
                Access::Write => "write",
                Access::Admin => "admin",
            };
            set(&mut out, "/permission", json!(word));
            set(&mut out, "/role_name", json!(word));
            set(&mut out, "/user/login", json!(login));
            // The example predates `user.role_name` becoming required.
            if let Some(user) = out.get_mut("user").and_then(Value::as_object_mut) {
                user.insert("role_name".into(), json!(word));
            }
            Reply::new(200, out)
        }
        "pulls/list" => {
            let wanted_state = cx.query("state").unwrap_or("open");
            let head = cx
                .query("head")
                .map(|h| h.split_once(':').map_or(h, |(_, b)| b).to_string());
            let list: Vec<Value> = repo
                .pulls
                .iter()
                .filter(|p| match wanted_state {
                    "open" => p.open,
                    "closed" => !p.open,
                    _ => true,
                })
                .filter(|p| head.as_deref().is_none_or(|h| h == p.head))
                .filter(|p| cx.query("base").is_none_or(|b| b == p.base))
                .map(|p| github_pull(state, cx, &repo, p, true))
                .collect();
            Reply::new(200, Value::Array(list))
        }
        "pulls/create" => {
            if level < Access::Write {
                return forbidden("Resource not accessible by personal access token");
            }
            let field = |name: &str| {
                cx.body
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (head, base) = (field("head"), field("base"));
            let invalid = |message: String| {
                Reply::new(
                    422,
                    json!({"message": message, "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request"}),
                )
            };
            if cx.sha(&full_name, &head).is_empty() || cx.sha(&full_name, &base).is_empty() {
                return invalid("Validation Failed: head or base branch does not exist".into());
            }
            if open_pull(&repo, &head, Some(&base)).is_some() {
                return invalid(format!(
                    "Validation Failed: A pull request already exists for {}:{head}.",
                    full_name.split('/').next().unwrap_or_default()
                ));
            }
            let Some(pull) = create_pull(
                state,
                &full_name,
                &field("title"),
                &field("body"),
                &head,
                &base,
            ) else {
                return not_found();
            };
            let repo = state
                .repos
                .iter()
                .find(|r| r.full_name == full_name)
                .cloned()
                .unwrap_or_default();
            Reply::new(201, github_pull(state, cx, &repo, &pull, false))
        }
        "pulls/get" | "pulls/update" => {
            let number = number_param(params, "pull_number");
            if op == "pulls/update" {
                if level < Access::Write {
                    return forbidden("Resource not accessible by personal access token");
                }
                let Some(pull) = state
                    .repo_mut(&full_name)
                    .and_then(|r| r.pulls.iter_mut().find(|p| p.number == number))
                else {
                    return not_found();
                };
                if let Some(title) = cx.body.get("title").and_then(Value::as_str) {
                    pull.title = title.to_string();
                }
                if let Some(body) = cx.body.get("body").and_then(Value::as_str) {
                    pull.body = body.to_string();
                }
                if let Some(s) = cx.body.get("state").and_then(Value::as_str) {
                    pull.open = s == "open";
                }
            }
            let repo = state
                .repos
                .iter()
                .find(|r| r.full_name == full_name)
                .cloned()
                .unwrap_or_default();
            let Some(pull) = repo.pulls.iter().find(|p| p.number == number) else {
                return not_found();
            };
            Reply::new(200, github_pull(state, cx, &repo, pull, false))
        }
        "issues/add-labels" => {
            if level < Access::Write {
                return forbidden("Resource not accessible by personal access token");
            }
            let number = number_param(params, "issue_number");
            let names: Vec<String> = match cx.body {
                Value::Array(items) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect(),
                other => other
                    .get("labels")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|v| {
                        v.as_str()
                            .or_else(|| v.get("name").and_then(Value::as_str))
                            .map(str::to_string)
                    })
                    .collect(),
            };
            for name in &names {
                // GitHub creates labels that do not exist yet.
                ensure_label(state, &full_name, name, "ededed");
            }
            let Some(pull) = state
                .repo_mut(&full_name)
                .and_then(|r| r.pulls.iter_mut().find(|p| p.number == number))
            else {
                return not_found();
            };
            for name in names {
                if !pull.labels.contains(&name) {
                    pull.labels.push(name);
                }
            }
            let pull = pull.clone();
            let labels: Vec<Value> = pull
                .labels
                .iter()
                .map(|n| github_label(state, cx, &full_name, n))
                .collect();
            Reply::new(200, Value::Array(labels))
        }
        _ => super::follow_api::github(state, cx, op, params, &repo),
    }
}

/// A branch name or a sha, as the status endpoints accept.
pub(super) fn resolve_ref(cx: &Cx, full_name: &str, reference: &str) -> String {
    let sha = cx.sha(full_name, reference);
    if sha.is_empty() {
        reference.to_string()
    } else {
        sha
    }
}

/// The App endpoints, which take the App's JWT rather than a token.
fn github_app(state: &mut FakeState, cx: &Cx, op: &str, params: &Params) -> Option<Reply> {
    if op != "apps/get-repo-installation" && op != "apps/create-installation-access-token" {
        return None;
    }
    if !matches!(cx.caller, Caller::App) {
        return Some(Reply::new(
            401,
            json!({"message": "A JSON web token could not be decoded", "documentation_url": "https://docs.github.com/rest"}),
        ));
    }
    let contract = Contract::github();
    let app = state.app.clone()?;
    if op == "apps/get-repo-installation" {
        let full_name = repo_of(params);
        let owner = full_name.split('/').next().unwrap_or_default().to_string();
        let exists = state.repos.iter().any(|r| r.full_name == full_name);
        let Some((id, account, permissions)) = app
            .installations
            .iter()
            .find(|(_, a, _)| *a == owner)
            .filter(|_| exists)
        else {
            return Some(not_found());
        };
        let mut out = contract.example("installation");
        set(&mut out, "/id", json!(id));
        set(&mut out, "/app_id", json!(app.app_id));
        set(&mut out, "/account/login", json!(account));
        set(&mut out, "/permissions", permissions.clone());
        return Some(Reply::new(200, out));
    }
    let id = number_param(params, "installation_id");
    let Some((_, _, permissions)) = app.installations.iter().find(|(i, _, _)| *i == id) else {
        return Some(not_found());
    };
    let token = format!("ghs_fake{}", state.next_id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let expires = now + state.token_lifetime;
    let repos: Vec<String> = cx
        .body
        .get("repositories")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    state.installation_tokens.insert(
        token.clone(),
        super::InstallationToken {
            installation: id,
            repos: repos.clone(),
            expires_at_secs: expires.as_secs(),
        },
    );
    let mut out = contract.example("installation-token");
    set(&mut out, "/token", json!(token));
    let millis = i64::try_from(expires.as_millis()).unwrap_or_default();
    set(
        &mut out,
        "/expires_at",
        json!(nightshift_core::format_timestamp(millis)),
    );
    set(&mut out, "/permissions", permissions.clone());
    if let Some(map) = out.as_object_mut() {
        map.insert(
            "repository_selection".into(),
            json!(if repos.is_empty() { "all" } else { "selected" }),
        );
        map.remove("repositories");
    }
    Some(Reply::new(201, out))
}

pub(super) fn github_label(state: &FakeState, cx: &Cx, full_name: &str, name: &str) -> Value {
    let label = state
        .repos
        .iter()
        .find(|r| r.full_name == full_name)
        .and_then(|r| r.labels.iter().find(|l| l.name == name));
    let (id, color) = label.map_or((0, "ededed".to_string()), |l| (l.id, l.color.clone()));
    json!({
        "id": id, "node_id": format!("LA_{id}"), "url": format!("{}/api/v3/repos/{full_name}/labels/{name}", cx.origin),
        "name": name, "description": "", "color": color, "default": false,
    })
}

fn github_pull(state: &FakeState, cx: &Cx, repo: &Repo, pull: &FakePull, simple: bool) -> Value {
    let contract = Contract::github();
    let mut out = if simple {
        contract
            .example("pull-request-simple-items")
            .get(0)
            .cloned()
            .unwrap_or(Value::Null)
    } else {
        contract.example("pull-request")
    };
    let full = &repo.full_name;
    let owner = full.split('/').next().unwrap_or_default();
    set(&mut out, "/id", json!(pull.id));
    set(&mut out, "/node_id", json!(format!("PR_{}", pull.id)));
    set(&mut out, "/number", json!(pull.number));
    set(&mut out, "/title", json!(pull.title));
    set(&mut out, "/body", json!(pull.body));
    set(
        &mut out,
        "/state",
        json!(if pull.open { "open" } else { "closed" }),
    );
    set(&mut out, "/locked", json!(false));
    set(
        &mut out,
        "/html_url",
        json!(format!("{}/{full}/pull/{}", cx.origin, pull.number)),
    );
    set(
        &mut out,
        "/url",
        json!(format!(
            "{}/api/v3/repos/{full}/pulls/{}",
            cx.origin, pull.number
        )),
    );
    set(
        &mut out,
        "/closed_at",
        if pull.open { Value::Null } else { json!(TIME) },
    );
    set(
        &mut out,
        "/merged_at",
        if pull.merged {
            json!(TIME)
        } else {
            Value::Null
        },
    );
    set(&mut out, "/merged", json!(pull.merged));
    set(&mut out, "/head/ref", json!(pull.head));
    set(&mut out, "/head/sha", json!(cx.sha(full, &pull.head)));
    set(
        &mut out,
        "/head/label",
        json!(format!("{owner}:{}", pull.head)),
    );
    set(&mut out, "/head/repo/full_name", json!(full));
    set(&mut out, "/base/ref", json!(pull.base));
    set(&mut out, "/base/sha", json!(cx.sha(full, &pull.base)));
    set(
        &mut out,
        "/base/label",
        json!(format!("{owner}:{}", pull.base)),
    );
    set(&mut out, "/base/repo/full_name", json!(full));
    let labels: Vec<Value> = pull
        .labels
        .iter()
        .map(|n| github_label(state, cx, full, n))
        .collect();
    set(&mut out, "/labels", Value::Array(labels));
    // The example's team lacks the now-required `type`; Nightshift requests no reviewers.
    set(&mut out, "/requested_teams", json!([]));
    // GitHub works mergeability out for open pull requests only.
    let comparison = pull
        .open
        .then(|| {
            super::activity::compare(&cx.root.join(format!("{full}.git")), &pull.base, &pull.head)
        })
        .flatten();
    let (mergeable, mergeable_state) = match &comparison {
        Some(c) if c.conflicting => (json!(false), "dirty"),
        Some(c) if c.behind_by > 0 => (json!(true), "behind"),
        Some(_) => (json!(true), "clean"),
        None => (Value::Null, "unknown"),
    };
    set(&mut out, "/mergeable", mergeable);
    set(&mut out, "/mergeable_state", json!(mergeable_state));
    out
}

// ---------------------------------------------------------------- Gitea

fn gitea(state: &mut FakeState, cx: &Cx, op: &str, params: &Params) -> Reply {
    let not_found = || {
        Reply::new(
            404,
            json!({"message": "The target couldn't be found.", "url": "", "errors": []}),
        )
    };
    let forbidden = || {
        Reply::new(
            403,
            json!({"message": "user should have write permission", "url": ""}),
        )
    };
    let Caller::User(user) = cx.caller else {
        return Reply::new(401, json!({"message": "token is required", "url": ""}));
    };
    if op == "userGetCurrent" {
        return Reply::new(200, gitea_user(user.id, &user.login));
    }
    let full_name = repo_of(params);
    let Some(level) = access(state, cx.caller, &full_name) else {
        return not_found();
    };
    let Some(repo) = state
        .repos
        .iter()
        .find(|r| r.full_name == full_name)
        .cloned()
    else {
        return not_found();
    };
    let write = level >= Access::Write;
    let paged = |items: Vec<Value>| {
        let limit: usize = cx
            .query("limit")
            .and_then(|l| l.parse().ok())
            .unwrap_or(30)
            .clamp(1, 50);
        let page: usize = cx
            .query("page")
            .and_then(|p| p.parse().ok())
            .unwrap_or(1)
            .max(1);
        Value::Array(
            items
                .into_iter()
                .skip((page - 1) * limit)
                .take(limit)
                .collect(),
        )
    };
    match op {
        "repoGet" => Reply::new(200, gitea_repo(cx, &repo, Some(level))),
        "repoGetRepoPermissions" => {
            let login = params.get("collaborator").cloned().unwrap_or_default();
            let word = match repo.grants.get(&login) {
                Some(Access::Admin) => "admin",
                Some(Access::Write) => "write",
                Some(Access::Read) => "read",
                None => return not_found(),
            };
            Reply::new(
                200,
                json!({"permission": word, "role_name": word, "user": gitea_user(0, &login)}),
            )
        }
        "repoListPullRequests" => {
            let wanted = cx.query("state").unwrap_or("open");
            let list = repo
                .pulls
                .iter()
                .filter(|p| match wanted {
                    "open" => p.open,
                    "closed" => !p.open,
                    _ => true,
                })
                .map(|p| gitea_pull(cx, &repo, p))
                .collect();
            Reply::new(200, paged(list))
        }
        "repoGetPullRequestByBaseHead" => {
            let base = params.get("base").cloned().unwrap_or_default();
            let head = params.get("head").cloned().unwrap_or_default();
            match open_pull(&repo, &head, Some(&base)) {
                Some(pull) => Reply::new(200, gitea_pull(cx, &repo, pull)),
                None => not_found(),
            }
        }
        "repoCreatePullRequest" => {
            if !write {
                return forbidden();
            }
            let field = |name: &str| {
                cx.body
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (head, base) = (field("head"), field("base"));
            if cx.sha(&full_name, &head).is_empty() || cx.sha(&full_name, &base).is_empty() {
                return not_found();
            }
            if open_pull(&repo, &head, Some(&base)).is_some() {
                return Reply::new(
                    409,
                    json!({"message": "pull request already exists for these targets", "url": ""}),
                );
            }
            let Some(mut pull) = create_pull(
                state,
                &full_name,
                &field("title"),
                &field("body"),
                &head,
                &base,
            ) else {
                return not_found();
            };
            let ids: Vec<u64> = cx
                .body
                .get("labels")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .collect();
            pull.labels = repo
                .labels
                .iter()
                .filter(|l| ids.contains(&l.id))
                .map(|l| l.name.clone())
                .collect();
            if let Some(stored) = state
                .repo_mut(&full_name)
                .and_then(|r| r.pulls.iter_mut().find(|p| p.number == pull.number))
            {
                stored.labels = pull.labels.clone();
            }
            Reply::new(201, gitea_pull(cx, &repo, &pull))
        }
        "repoGetPullRequest" | "repoEditPullRequest" => {
            let number = number_param(params, "index");
            if op == "repoEditPullRequest" {
                if !write {
                    return forbidden();
                }
                let Some(pull) = state
                    .repo_mut(&full_name)
                    .and_then(|r| r.pulls.iter_mut().find(|p| p.number == number))
                else {
                    return not_found();
                };
                if let Some(title) = cx.body.get("title").and_then(Value::as_str) {
                    pull.title = title.to_string();
                }
                if let Some(body) = cx.body.get("body").and_then(Value::as_str) {
                    pull.body = body.to_string();
                }
            }
            let repo = state
                .repos
                .iter()
                .find(|r| r.full_name == full_name)
                .cloned()
                .unwrap_or_default();
            let Some(pull) = repo.pulls.iter().find(|p| p.number == number) else {
                return not_found();
            };
            // Gitea answers an edit with 201.
            Reply::new(
                if op == "repoEditPullRequest" {
                    201
                } else {
                    200
                },
                gitea_pull(cx, &repo, pull),
            )
        }
        "issueListLabels" => Reply::new(200, paged(repo.labels.iter().map(gitea_label).collect())),
        "issueCreateLabel" => {
            if !write {
                return forbidden();
            }
            let name = cx
                .body
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let color = cx
                .body
                .get("color")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let id = state.next_id();
            let label = Label {
                id,
                name: name.to_string(),
                color: color.trim_start_matches('#').to_string(),
            };
            if let Some(repo) = state.repo_mut(&full_name) {
                repo.labels.push(label.clone());
            }
            Reply::new(201, gitea_label(&label))
        }
        "issueAddLabel" => {
            if !write {
                return forbidden();
            }
            let number = number_param(params, "index");
            let ids: Vec<u64> = cx
                .body
                .get("labels")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .collect();
            let names: Vec<String> = repo
                .labels
                .iter()
                .filter(|l| ids.contains(&l.id))
                .map(|l| l.name.clone())
                .collect();
            let Some(pull) = state
                .repo_mut(&full_name)
                .and_then(|r| r.pulls.iter_mut().find(|p| p.number == number))
            else {
                return not_found();
            };
            for name in names {
                if !pull.labels.contains(&name) {
                    pull.labels.push(name);
                }
            }
            let on_pull: Vec<Value> = repo
                .labels
                .iter()
                .filter(|l| pull.labels.contains(&l.name))
                .map(gitea_label)
                .collect();
            Reply::new(200, Value::Array(on_pull))
        }
        _ => super::follow_api::gitea(state, cx, op, params, &repo),
    }
}

pub(super) fn gitea_user(id: u64, login: &str) -> Value {
    json!({"id": id, "login": login, "username": login, "full_name": login, "email": format!("{login}@example.com")})
}

fn gitea_label(label: &Label) -> Value {
    json!({"id": label.id, "name": label.name, "color": label.color, "description": "", "exclusive": false, "is_archived": false, "url": ""})
}

fn gitea_repo(cx: &Cx, repo: &Repo, level: Option<Access>) -> Value {
    let (owner, name) = repo.full_name.split_once('/').unwrap_or_default();
    let mut out = json!({
        "id": repo.id, "name": name, "full_name": repo.full_name, "owner": gitea_user(1, owner),
        "default_branch": repo.default_branch, "private": true, "fork": false, "empty": false, "archived": false,
        "html_url": format!("{}/{}", cx.origin, repo.full_name), "clone_url": format!("{}/{}.git", cx.origin, repo.full_name),
    });
    if let (Some(level), Some(map)) = (level, out.as_object_mut()) {
        map.insert(
            "permissions".into(),
            json!({"admin": level == Access::Admin, "push": level >= Access::Write, "pull": true}),
        );
    }
    out
}

fn gitea_pull(cx: &Cx, repo: &Repo, pull: &FakePull) -> Value {
    let full = &repo.full_name;
    let labels: Vec<Value> = repo
        .labels
        .iter()
        .filter(|l| pull.labels.contains(&l.name))
        .map(gitea_label)
        .collect();
    let branch = |name: &str| json!({"label": name, "ref": name, "sha": cx.sha(full, name), "repo_id": repo.id, "repo": gitea_repo(cx, repo, None)});
    let comparison =
        super::activity::compare(&cx.root.join(format!("{full}.git")), &pull.base, &pull.head)
            .unwrap_or_default();
    json!({
        "id": pull.id, "number": pull.number, "title": pull.title, "body": pull.body,
        "state": if pull.open { "open" } else { "closed" }, "merged": pull.merged,
        "mergeable": !comparison.conflicting, "merge_base": comparison.merge_base, "draft": false, "is_locked": false,
        "html_url": format!("{}/{full}/pulls/{}", cx.origin, pull.number), "url": format!("{}/{full}/pulls/{}", cx.origin, pull.number),
        "head": branch(&pull.head), "base": branch(&pull.base), "labels": labels, "user": gitea_user(1, "nightshift"),
        "created_at": TIME, "updated_at": TIME, "comments": 0,
    })
}

// ---------------------------------------------------------------- GitLab

/// GitLab's endpoints as the reference table lists them; its generated schema mistypes
/// fields, so this checks leniently: known routes, documented query and body fields, the
/// required fields present as strings, the documented answer fields present.
fn gitlab(
    state: &mut FakeState,
    cx: &Cx,
    method: &str,
    segments: &[String],
) -> (Reply, Vec<String>) {
    let mut problems = Vec::new();
    let at = format!("gitlab {method} /{}", segments.join("/"));
    let seg: Vec<&str> = segments.iter().map(String::as_str).collect();
    let route = match (method, seg.as_slice()) {
        ("GET", ["user"]) => "user",
        ("GET", ["projects", _]) => "project",
        ("GET", ["projects", _, "merge_requests"]) => "mr_list",
        ("POST", ["projects", _, "merge_requests"]) => "mr_create",
        ("GET", ["projects", _, "merge_requests", _]) => "mr_get",
        ("PUT", ["projects", _, "merge_requests", _]) => "mr_update",
        ("GET", ["projects", _, "members", "all", _]) => "member",
        ("GET", ["users"]) => "users",
        ("GET", ["projects", _, "merge_requests", _, "notes"]) => "mr_notes",
        ("GET", ["projects", _, "pipelines", _, "jobs"]) => "pipeline_jobs",
        ("GET", ["projects", _, "jobs", _, "trace"]) => "job_trace",
        _ => {
            problems.push(format!(
                "{at}: not an endpoint of the GitLab reference table"
            ));
            return (
                Reply::new(404, json!({"message": "404 Not Found"})),
                problems,
            );
        }
    };
    let (allowed_query, required_body, allowed_body): (&[&str], &[&str], &[&str]) = match route {
        "mr_list" => (
            &[
                "state",
                "source_branch",
                "target_branch",
                "labels",
                "order_by",
                "sort",
                "page",
                "per_page",
                "view",
            ],
            &[],
            &[],
        ),
        "mr_create" => (
            &[],
            &["source_branch", "target_branch", "title"],
            &[
                "source_branch",
                "target_branch",
                "title",
                "description",
                "labels",
                "remove_source_branch",
                "squash",
                "target_project_id",
            ],
        ),
        "mr_update" => (
            &[],
            &[],
            &[
                "title",
                "description",
                "target_branch",
                "state_event",
                "labels",
                "add_labels",
                "remove_labels",
            ],
        ),
        "mr_get" => (
            &[
                "render_html",
                "include_diverged_commits_count",
                "include_rebase_in_progress",
            ],
            &[],
            &[],
        ),
        "mr_notes" => (&["sort", "order_by", "page", "per_page"], &[], &[]),
        "pipeline_jobs" => (
            &["scope", "scope[]", "include_retried", "page", "per_page"],
            &[],
            &[],
        ),
        "users" => (&["username", "page", "per_page"], &[], &[]),
        "project" => (
            &["statistics", "license", "with_custom_attributes"],
            &[],
            &[],
        ),
        _ => (&[], &[], &[]),
    };
    for (name, _) in cx.query {
        if !allowed_query.contains(&name.as_str()) {
            problems.push(format!(
                "{at}: query parameter {name} not in the reference table"
            ));
        }
    }
    for name in required_body {
        if !cx.body.get(*name).is_some_and(Value::is_string) {
            problems.push(format!(
                "{at}: required body field {name} missing or not a string"
            ));
        }
    }
    if let Some(map) = cx.body.as_object() {
        for (name, value) in map {
            if !allowed_body.contains(&name.as_str()) {
                problems.push(format!(
                    "{at}: body field {name} not in the reference table"
                ));
            } else if !value.is_string() && !value.is_boolean() && !value.is_number() {
                problems.push(format!("{at}: body field {name} has an unexpected type"));
            }
        }
    }
    let reply = gitlab_handle(state, cx, route, &seg);
    let required: &[&str] = match (route, reply.status) {
        ("project", 200) => &[
            "id",
            "path_with_namespace",
            "default_branch",
            "web_url",
            "http_url_to_repo",
            "permissions",
        ],
        ("mr_create" | "mr_get" | "mr_update", 200 | 201) => &[
            "id",
            "iid",
            "project_id",
            "title",
            "description",
            "state",
            "source_branch",
            "target_branch",
            "sha",
            "web_url",
            "labels",
            "head_pipeline",
        ],
        ("user", 200) => &["id", "username", "name", "state", "bot", "web_url"],
        ("member", 200) => &["id", "username", "access_level"],
        _ => &[],
    };
    for name in required {
        if reply.body.get(*name).is_none() {
            problems.push(format!("{at}: answer lacks {name}"));
        }
    }
    // The fields each listed item must carry, as the reference table documents them.
    let listed: &[&str] = match route {
        "mr_list" => &[
            "id",
            "iid",
            "project_id",
            "title",
            "state",
            "source_branch",
            "target_branch",
            "sha",
            "web_url",
            "labels",
        ],
        "mr_notes" => &[
            "id",
            "type",
            "body",
            "author",
            "created_at",
            "updated_at",
            "system",
            "noteable_id",
            "noteable_type",
            "noteable_iid",
            "resolvable",
        ],
        "pipeline_jobs" => &[
            "id",
            "name",
            "stage",
            "status",
            "ref",
            "allow_failure",
            "created_at",
            "web_url",
            "pipeline",
        ],
        "users" => &["id", "username", "name", "state", "avatar_url", "web_url"],
        _ => &[],
    };
    if reply.status == 200 && !listed.is_empty() {
        for item in reply.body.as_array().into_iter().flatten() {
            for name in listed {
                if item.get(*name).is_none() {
                    problems.push(format!("{at}: a listed item lacks {name}"));
                }
            }
        }
    }
    (reply, problems)
}

fn gitlab_level(access: Option<Access>) -> Option<u64> {
    access.map(|a| match a {
        Access::Read => 20,
        Access::Write => 30,
        Access::Admin => 40,
    })
}

fn gitlab_handle(state: &mut FakeState, cx: &Cx, route: &str, seg: &[&str]) -> Reply {
    let not_found =
        |what: &str| Reply::new(404, json!({"message": format!("404 {what} Not Found")}));
    let user = match cx.caller {
        Caller::User(user) => user.clone(),
        _ => return Reply::new(401, json!({"message": "401 Unauthorized"})),
    };
    if route == "user" {
        return Reply::new(
            200,
            json!({"id": user.id, "username": user.login, "name": user.login, "state": "active", "bot": true, "web_url": format!("{}/{}", cx.origin, user.login)}),
        );
    }
    if route == "users" {
        return super::follow_api::gitlab_users(state, cx);
    }
    let full_name = seg.get(1).copied().unwrap_or_default().to_string();
    let Some(level) = access(state, cx.caller, &full_name) else {
        return not_found("Project");
    };
    let Some(repo) = state
        .repos
        .iter()
        .find(|r| r.full_name == full_name)
        .cloned()
    else {
        return not_found("Project");
    };
    let mr_json = |pull: &FakePull, repo: &Repo| {
        let sha = cx.sha(&repo.full_name, &pull.head);
        let pipeline = repo.pipelines.get(&sha).map(|p| {
            json!({"id": p.id, "status": p.status, "sha": sha, "web_url": format!("{}/{}/-/pipelines/{}", cx.origin, repo.full_name, p.id)})
        });
        let comparison = super::activity::compare(
            &cx.root.join(format!("{}.git", repo.full_name)),
            &pull.base,
            &pull.head,
        )
        .unwrap_or_default();
        let merge_status = if !pull.open {
            "not_open"
        } else if comparison.conflicting {
            "conflict"
        } else {
            "mergeable"
        };
        let mut mr = json!({
            "id": pull.id, "iid": pull.number, "project_id": repo.id, "title": pull.title, "description": pull.body,
            "state": if pull.merged { "merged" } else if pull.open { "opened" } else { "closed" },
            "source_branch": pull.head, "target_branch": pull.base, "source_project_id": repo.id, "target_project_id": repo.id,
            "sha": sha, "web_url": format!("{}/{}/-/merge_requests/{}", cx.origin, repo.full_name, pull.number),
            "labels": pull.labels, "draft": false, "head_pipeline": pipeline, "detailed_merge_status": merge_status,
            "has_conflicts": comparison.conflicting,
        });
        if cx.query("include_diverged_commits_count") == Some("true") {
            mr["diverged_commits_count"] = json!(comparison.behind_by);
        }
        mr
    };
    match route {
        "project" => Reply::new(
            200,
            json!({
                "id": repo.id, "path_with_namespace": repo.full_name, "default_branch": repo.default_branch,
                "web_url": format!("{}/{}", cx.origin, repo.full_name), "http_url_to_repo": format!("{}/{}.git", cx.origin, repo.full_name),
                "archived": false, "visibility": "private",
                "permissions": {"project_access": {"access_level": gitlab_level(Some(level)), "notification_level": 3}, "group_access": null},
            }),
        ),
        "member" => {
            let id: u64 = seg.get(4).and_then(|s| s.parse().ok()).unwrap_or(0);
            let login = state
                .users
                .iter()
                .find(|u| u.id == id)
                .map(|u| u.login.clone())
                .unwrap_or_default();
            match gitlab_level(repo.grants.get(&login).copied()) {
                Some(level) => Reply::new(
                    200,
                    json!({"id": id, "username": login, "name": login, "state": "active", "access_level": level}),
                ),
                None => not_found("Member"),
            }
        }
        "mr_list" => {
            let wanted = cx.query("state").unwrap_or("all");
            let list: Vec<Value> = repo
                .pulls
                .iter()
                .filter(|p| match wanted {
                    "opened" => p.open,
                    "closed" => !p.open && !p.merged,
                    "merged" => p.merged,
                    _ => true,
                })
                .filter(|p| cx.query("source_branch").is_none_or(|b| b == p.head))
                .filter(|p| cx.query("target_branch").is_none_or(|b| b == p.base))
                .map(|p| mr_json(p, &repo))
                .collect();
            Reply::new(200, Value::Array(list))
        }
        "mr_create" => {
            if level < Access::Write {
                return Reply::new(403, json!({"message": "403 Forbidden"}));
            }
            let field = |name: &str| {
                cx.body
                    .get(name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let (head, base) = (field("source_branch"), field("target_branch"));
            if cx.sha(&full_name, &head).is_empty() || cx.sha(&full_name, &base).is_empty() {
                return Reply::new(400, json!({"message": "Invalid source or target branch"}));
            }
            if let Some(existing) = open_pull(&repo, &head, Some(&base)) {
                return Reply::new(
                    409,
                    json!({"message": [format!("Another open merge request already exists for this source branch: !{}", existing.number)]}),
                );
            }
            let Some(mut pull) = create_pull(
                state,
                &full_name,
                &field("title"),
                &field("description"),
                &head,
                &base,
            ) else {
                return not_found("Project");
            };
            pull.labels = field("labels")
                .split(',')
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect();
            if let Some(stored) = state
                .repo_mut(&full_name)
                .and_then(|r| r.pulls.iter_mut().find(|p| p.number == pull.number))
            {
                stored.labels = pull.labels.clone();
            }
            Reply::new(201, mr_json(&pull, &repo))
        }
        "mr_get" | "mr_update" => {
            let iid: u64 = seg.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
            if route == "mr_update" {
                if level < Access::Write {
                    return Reply::new(403, json!({"message": "403 Forbidden"}));
                }
                let Some(pull) = state
                    .repo_mut(&full_name)
                    .and_then(|r| r.pulls.iter_mut().find(|p| p.number == iid))
                else {
                    return not_found("Merge Request");
                };
                if let Some(title) = cx.body.get("title").and_then(Value::as_str) {
                    pull.title = title.to_string();
                }
                if let Some(description) = cx.body.get("description").and_then(Value::as_str) {
                    pull.body = description.to_string();
                }
                for label in cx
                    .body
                    .get("add_labels")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                {
                    if !label.is_empty() && !pull.labels.iter().any(|l| l == label) {
                        pull.labels.push(label.to_string());
                    }
                }
            }
            let repo = state
                .repos
                .iter()
                .find(|r| r.full_name == full_name)
                .cloned()
                .unwrap_or_default();
            match repo.pulls.iter().find(|p| p.number == iid) {
                Some(pull) => Reply::new(200, mr_json(pull, &repo)),
                None => not_found("Merge Request"),
            }
        }
        _ => super::follow_api::gitlab(state, cx, route, seg, &repo),
    }
}
