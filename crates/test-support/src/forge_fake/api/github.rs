//! GitHub's REST endpoints, answered with the example payloads of GitHub's own description.

use super::*;

pub(super) fn github(state: &mut FakeState, cx: &Cx, op: &str, params: &Params) -> Reply {
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
        _ => super::super::follow_api::github(state, cx, op, params, &repo),
    }
}

/// A branch name or a sha, as the status endpoints accept.
pub(in crate::forge_fake) fn resolve_ref(cx: &Cx, full_name: &str, reference: &str) -> String {
    let sha = cx.sha(full_name, reference);
    if sha.is_empty() {
        reference.to_string()
    } else {
        sha
    }
}

/// The App endpoints, which take the App's JWT rather than a token.
pub(super) fn github_app(
    state: &mut FakeState,
    cx: &Cx,
    op: &str,
    params: &Params,
) -> Option<Reply> {
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
        super::super::InstallationToken {
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
            super::super::activity::compare(
                &cx.root.join(format!("{full}.git")),
                &pull.base,
                &pull.head,
            )
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
