//! GitLab's REST endpoints.

use super::*;

/// GitLab's endpoints as the reference table lists them; its generated schema mistypes
/// fields, so this checks leniently: known routes, documented query and body fields, the
/// required fields present as strings, the documented answer fields present.
pub(super) fn gitlab(
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
        return super::super::follow_api::gitlab_users(state, cx);
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
        let comparison = super::super::activity::compare(
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
        _ => super::super::follow_api::gitlab(state, cx, route, seg, &repo),
    }
}
