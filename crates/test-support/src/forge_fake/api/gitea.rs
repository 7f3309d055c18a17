//! Gitea's REST endpoints.

use super::*;

pub(super) fn gitea(state: &mut FakeState, cx: &Cx, op: &str, params: &Params) -> Reply {
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
        _ => super::super::follow_api::gitea(state, cx, op, params, &repo),
    }
}

pub(in crate::forge_fake) fn gitea_user(id: u64, login: &str) -> Value {
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
    let comparison = super::super::activity::compare(
        &cx.root.join(format!("{full}.git")),
        &pull.base,
        &pull.head,
    )
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
