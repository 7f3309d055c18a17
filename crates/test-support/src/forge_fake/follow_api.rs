//! The fake's answers to what a follower asks once a pull request is open: CI (combined status,
//! check runs, annotations, job logs, GitLab pipeline jobs and traces), comparisons with the
//! base, comments and reviews, and GitLab users. Built like the rest of the fake: on the
//! forges' own example payloads where they publish them, checked against their descriptions.

use serde_json::{Value, json};

use super::activity::{CommentPlace, StoredComment, compare};
use super::api::{Cx, gitea_user, not_found, number_param, resolve_ref, set};
use super::contract::{Contract, Params};
use super::{FakeKind, FakeState, Reply, Repo};

const TIME: &str = "2026-01-01T00:00:00Z";

/// A page of `items` as `page` and `per_page_name` ask.
fn page_of(cx: &Cx, items: Vec<Value>, per_page_name: &str, default: usize) -> Value {
    let per_page: usize = cx
        .query(per_page_name)
        .and_then(|l| l.parse().ok())
        .unwrap_or(default)
        .clamp(1, 100);
    let page: usize = cx
        .query("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    Value::Array(
        items
            .into_iter()
            .skip((page - 1) * per_page)
            .take(per_page)
            .collect(),
    )
}

/// The comments on pull `number` created at or after `since` (RFC 3339), when given.
fn comments_of<'a>(
    repo: &'a Repo,
    number: u64,
    since: Option<&str>,
) -> impl Iterator<Item = &'a StoredComment> {
    let since = since.and_then(|s| nightshift_core::parse_timestamp(s).ok());
    repo.comments
        .iter()
        .filter(move |c| c.pull == number && since.is_none_or(|s| c.created_ms >= s))
}

/// The verdict of a list of statuses as GitHub and Gitea combine it.
fn combined_state(statuses: &[super::FakeStatus], empty: &'static str) -> &'static str {
    if statuses.is_empty() {
        empty
    } else if statuses
        .iter()
        .any(|s| s.state == "failure" || s.state == "error")
    {
        "failure"
    } else if statuses.iter().any(|s| s.state == "pending") {
        "pending"
    } else {
        "success"
    }
}

// ---------------------------------------------------------------- GitHub

pub(super) fn github(
    state: &mut FakeState,
    cx: &Cx,
    op: &str,
    params: &Params,
    repo: &Repo,
) -> Reply {
    let contract = Contract::github();
    let full = &repo.full_name;
    let api = format!("{}/api/v3/repos/{full}", cx.origin);
    let user = |login: &str| {
        let mut user = contract
            .example("pull-request")
            .pointer("/user")
            .cloned()
            .unwrap_or(Value::Null);
        set(&mut user, "/login", json!(login));
        user
    };
    match op {
        "repos/get-combined-status-for-ref" => {
            let sha = resolve_ref(cx, full, params.get("ref").map_or("", String::as_str));
            let statuses = repo.statuses.get(&sha).cloned().unwrap_or_default();
            let mut out = contract.example("combined-commit-status");
            let template = out.pointer("/statuses/0").cloned().unwrap_or(Value::Null);
            let list: Vec<Value> = statuses
                .iter()
                .map(|s| {
                    let mut status = template.clone();
                    set(&mut status, "/context", json!(s.context));
                    set(&mut status, "/state", json!(s.state));
                    set(&mut status, "/description", json!(s.description));
                    set(&mut status, "/target_url", json!(s.target_url));
                    status
                })
                .collect();
            set(
                &mut out,
                "/state",
                json!(combined_state(&statuses, "pending")),
            );
            set(&mut out, "/sha", json!(sha));
            set(&mut out, "/total_count", json!(list.len()));
            set(&mut out, "/statuses", Value::Array(list));
            Reply::new(200, out)
        }
        "checks/list-for-ref" => {
            let sha = resolve_ref(cx, full, params.get("ref").map_or("", String::as_str));
            let template = contract
                .example("check-run-paginated")
                .pointer("/check_runs/0")
                .cloned()
                .unwrap_or(Value::Null);
            let runs: Vec<Value> = repo
                .check_runs
                .get(&sha)
                .into_iter()
                .flatten()
                .map(|check| {
                    let mut run = template.clone();
                    set(&mut run, "/id", json!(check.id));
                    set(&mut run, "/name", json!(check.name));
                    set(&mut run, "/head_sha", json!(sha));
                    set(&mut run, "/status", json!(check.status));
                    set(&mut run, "/conclusion", json!(check.conclusion));
                    set(
                        &mut run,
                        "/html_url",
                        json!(format!("{}/{full}/runs/{}", cx.origin, check.id)),
                    );
                    set(&mut run, "/output/title", json!(check.title));
                    set(&mut run, "/output/summary", json!(check.summary));
                    set(&mut run, "/output/text", Value::Null);
                    set(
                        &mut run,
                        "/output/annotations_count",
                        json!(check.annotations.len()),
                    );
                    set(
                        &mut run,
                        "/output/annotations_url",
                        json!(format!("{api}/check-runs/{}/annotations", check.id)),
                    );
                    // A check with a log is a GitHub Actions job.
                    if check.log.is_some() {
                        set(&mut run, "/app/slug", json!("github-actions"));
                        set(&mut run, "/app/name", json!("GitHub Actions"));
                    }
                    run
                })
                .collect();
            Reply::new(200, json!({"total_count": runs.len(), "check_runs": runs}))
        }
        "checks/list-annotations" => {
            let id = number_param(params, "check_run_id");
            let Some(check) = repo.check_runs.values().flatten().find(|c| c.id == id) else {
                return not_found();
            };
            let template = contract
                .example("check-annotation-items")
                .get(0)
                .cloned()
                .unwrap_or(Value::Null);
            let items = check
                .annotations
                .iter()
                .map(|a| {
                    let mut item = template.clone();
                    set(&mut item, "/path", json!(a.path));
                    set(&mut item, "/start_line", json!(a.line));
                    set(&mut item, "/end_line", json!(a.line));
                    set(&mut item, "/annotation_level", json!(a.level));
                    set(&mut item, "/title", json!(check.name));
                    set(&mut item, "/message", json!(a.message));
                    set(&mut item, "/raw_details", Value::Null);
                    item
                })
                .collect();
            Reply::new(200, page_of(cx, items, "per_page", 30))
        }
        "actions/download-job-logs-for-workflow-run" => {
            let id = number_param(params, "job_id");
            let found = repo
                .check_runs
                .values()
                .flatten()
                .any(|c| c.id == id && c.log.is_some());
            if !found {
                return not_found();
            }
            // GitHub answers with a short-lived link to its log storage.
            let mut reply = Reply::new(302, Value::Null);
            reply.headers.push((
                "location".into(),
                format!("{}/_fake/logs/{full}/{id}?signature=fake", cx.origin),
            ));
            reply
        }
        "repos/compare-commits" => {
            let base = resolve_ref(cx, full, params.get("base").map_or("", String::as_str));
            let head = resolve_ref(cx, full, params.get("head").map_or("", String::as_str));
            let bare = cx.root.join(format!("{full}.git"));
            let Some(comparison) = compare(&bare, &base, &head) else {
                return not_found();
            };
            let mut out = contract.example("commit-comparison");
            let status = match (comparison.ahead_by, comparison.behind_by) {
                (0, 0) => "identical",
                (_, 0) => "ahead",
                (0, _) => "behind",
                _ => "diverged",
            };
            set(&mut out, "/status", json!(status));
            set(&mut out, "/ahead_by", json!(comparison.ahead_by));
            set(&mut out, "/behind_by", json!(comparison.behind_by));
            set(&mut out, "/total_commits", json!(comparison.ahead_by));
            set(&mut out, "/base_commit/sha", json!(base));
            set(
                &mut out,
                "/merge_base_commit/sha",
                json!(comparison.merge_base),
            );
            set(&mut out, "/commits", json!([]));
            set(&mut out, "/files", json!([]));
            Reply::new(200, out)
        }
        "issues/list-comments" => {
            let number = number_param(params, "issue_number");
            let template = contract
                .example("issue-comment-items")
                .get(0)
                .cloned()
                .unwrap_or(Value::Null);
            let items = comments_of(repo, number, cx.query("since"))
                .filter(|c| c.place == CommentPlace::Conversation)
                .map(|c| {
                    let mut item = template.clone();
                    set(&mut item, "/id", json!(c.id));
                    set(&mut item, "/body", json!(c.body));
                    set(&mut item, "/user", user(&c.author));
                    set(&mut item, "/created_at", json!(c.created()));
                    set(&mut item, "/updated_at", json!(c.created()));
                    set(
                        &mut item,
                        "/html_url",
                        json!(format!(
                            "{}/{full}/pull/{number}#issuecomment-{}",
                            cx.origin, c.id
                        )),
                    );
                    item
                })
                .collect();
            Reply::new(200, page_of(cx, items, "per_page", 30))
        }
        "pulls/list-review-comments" => {
            let number = number_param(params, "pull_number");
            let template = contract
                .example("pull-request-review-comment-items")
                .get(0)
                .cloned()
                .unwrap_or(Value::Null);
            let items = comments_of(repo, number, cx.query("since"))
                .filter_map(|c| match &c.place {
                    CommentPlace::Inline { path, line, review } => {
                        let mut item = template.clone();
                        set(&mut item, "/id", json!(c.id));
                        set(&mut item, "/pull_request_review_id", json!(review));
                        set(&mut item, "/path", json!(path));
                        set(&mut item, "/line", json!(line));
                        set(&mut item, "/original_line", json!(line));
                        set(&mut item, "/body", json!(c.body));
                        set(&mut item, "/user", user(&c.author));
                        set(&mut item, "/created_at", json!(c.created()));
                        set(&mut item, "/updated_at", json!(c.created()));
                        set(
                            &mut item,
                            "/html_url",
                            json!(format!(
                                "{}/{full}/pull/{number}#discussion_r{}",
                                cx.origin, c.id
                            )),
                        );
                        Some(item)
                    }
                    _ => None,
                })
                .collect();
            Reply::new(200, page_of(cx, items, "per_page", 30))
        }
        "pulls/list-reviews" => {
            let number = number_param(params, "pull_number");
            let template = contract
                .example("pull-request-review-items")
                .get(0)
                .cloned()
                .unwrap_or(Value::Null);
            let items = comments_of(repo, number, None)
                .filter_map(|c| match &c.place {
                    CommentPlace::Review { state, .. } => {
                        let mut item = template.clone();
                        set(&mut item, "/id", json!(c.id));
                        set(&mut item, "/body", json!(c.body));
                        set(&mut item, "/state", json!(state));
                        set(&mut item, "/user", user(&c.author));
                        set(&mut item, "/submitted_at", json!(c.created()));
                        set(
                            &mut item,
                            "/html_url",
                            json!(format!(
                                "{}/{full}/pull/{number}#pullrequestreview-{}",
                                cx.origin, c.id
                            )),
                        );
                        Some(item)
                    }
                    _ => None,
                })
                .collect();
            Reply::new(200, page_of(cx, items, "per_page", 30))
        }
        _ => {
            let _ = state;
            not_found()
        }
    }
}

// ---------------------------------------------------------------- Gitea

pub(super) fn gitea(
    state: &mut FakeState,
    cx: &Cx,
    op: &str,
    params: &Params,
    repo: &Repo,
) -> Reply {
    let _ = state;
    let full = &repo.full_name;
    let not_found = || {
        Reply::new(
            404,
            json!({"message": "The target couldn't be found.", "url": "", "errors": []}),
        )
    };
    let number = number_param(params, "index");
    match op {
        "repoGetCombinedStatusByRef" => {
            let sha = resolve_ref(cx, full, params.get("ref").map_or("", String::as_str));
            let statuses = repo.statuses.get(&sha).cloned().unwrap_or_default();
            // Real Gitea sends "" with no statuses, which its own description does not allow;
            // the fake keeps to the description and sends pending with a count of 0.
            let combined = combined_state(&statuses, "pending");
            let list: Vec<Value> = statuses
                .iter()
                .enumerate()
                .map(|(i, s)| json!({"id": i + 1, "context": s.context, "status": s.state, "description": s.description, "target_url": s.target_url, "created_at": TIME, "updated_at": TIME}))
                .collect();
            Reply::new(
                200,
                json!({"state": combined, "sha": sha, "total_count": list.len(), "statuses": list, "commit_url": "", "url": ""}),
            )
        }
        "issueGetComments" => {
            let list: Vec<Value> = comments_of(repo, number, cx.query("since"))
                .filter(|c| c.place == CommentPlace::Conversation)
                .map(|c| {
                    json!({
                        "id": c.id, "body": c.body, "user": gitea_user(1, &c.author),
                        "created_at": c.created(), "updated_at": c.created(),
                        "html_url": format!("{}/{full}/pulls/{number}#issuecomment-{}", cx.origin, c.id),
                        "issue_url": format!("{}/{full}/issues/{number}", cx.origin),
                        "pull_request_url": format!("{}/{full}/pulls/{number}", cx.origin),
                        "original_author": "", "original_author_id": 0, "assets": [],
                    })
                })
                .collect();
            Reply::new(200, Value::Array(list))
        }
        "repoListPullReviews" => {
            let items = comments_of(repo, number, None)
                .filter_map(|c| match &c.place {
                    CommentPlace::Review { state, inline } => Some(json!({
                        "id": c.id, "user": gitea_user(1, &c.author), "team": null,
                        "state": gitea_review_state(state), "body": c.body,
                        "commit_id": "", "stale": false, "official": false, "dismissed": false,
                        "comments_count": inline, "submitted_at": c.created(), "updated_at": c.created(),
                        "html_url": format!("{}/{full}/pulls/{number}#issuecomment-{}", cx.origin, c.id),
                        "pull_request_url": format!("{}/{full}/pulls/{number}", cx.origin),
                    })),
                    _ => None,
                })
                .collect();
            Reply::new(200, page_of(cx, items, "limit", 30))
        }
        "repoGetPullReviewComments" => {
            let review_id = number_param(params, "id");
            let is_review = comments_of(repo, number, None)
                .any(|c| c.id == review_id && matches!(c.place, CommentPlace::Review { .. }));
            if !is_review {
                return not_found();
            }
            let list: Vec<Value> = comments_of(repo, number, None)
                .filter_map(|c| match &c.place {
                    CommentPlace::Inline { path, line, review } if *review == review_id => {
                        Some(json!({
                            "id": c.id, "body": c.body, "user": gitea_user(1, &c.author), "resolver": null,
                            "pull_request_review_id": review, "created_at": c.created(), "updated_at": c.created(),
                            "path": path, "commit_id": "", "original_commit_id": "", "diff_hunk": "",
                            "position": line, "original_position": 0,
                            "html_url": format!("{}/{full}/pulls/{number}/files#issuecomment-{}", cx.origin, c.id),
                            "pull_request_url": format!("{}/{full}/pulls/{number}", cx.origin),
                        }))
                    }
                    _ => None,
                })
                .collect();
            Reply::new(200, Value::Array(list))
        }
        _ => not_found(),
    }
}

/// GitHub's review words in Gitea's.
fn gitea_review_state(state: &str) -> &str {
    match state {
        "CHANGES_REQUESTED" => "REQUEST_CHANGES",
        "COMMENTED" => "COMMENT",
        other => other,
    }
}

// ---------------------------------------------------------------- GitLab

pub(super) fn gitlab_users(state: &FakeState, cx: &Cx) -> Reply {
    let wanted = cx.query("username");
    let list: Vec<Value> = state
        .users
        .iter()
        .filter(|u| wanted.is_none_or(|w| w.eq_ignore_ascii_case(&u.login)))
        .map(|u| {
            json!({"id": u.id, "username": u.login, "name": u.login, "state": "active",
                   "avatar_url": "", "web_url": format!("{}/{}", cx.origin, u.login)})
        })
        .collect();
    Reply::new(200, Value::Array(list))
}

pub(super) fn gitlab(
    state: &mut FakeState,
    cx: &Cx,
    route: &str,
    seg: &[&str],
    repo: &Repo,
) -> Reply {
    let full = &repo.full_name;
    let not_found =
        |what: &str| Reply::new(404, json!({"message": format!("404 {what} Not Found")}));
    let id_at = |i: usize| seg.get(i).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    match route {
        "mr_notes" => {
            let iid = id_at(3);
            let Some(pull) = repo.pulls.iter().find(|p| p.number == iid) else {
                return not_found("Merge Request");
            };
            let user_id = |login: &str| {
                state
                    .users
                    .iter()
                    .find(|u| u.login == login)
                    .map_or(0, |u| u.id)
            };
            let head = cx.sha(full, &pull.head);
            let base = cx.sha(full, &pull.base);
            let mut notes: Vec<Value> = comments_of(repo, iid, None)
                .map(|c| {
                    let mut note = json!({
                        "id": c.id, "type": null, "body": c.body,
                        "author": {"id": user_id(&c.author), "username": c.author, "name": c.author},
                        "created_at": c.created(), "updated_at": c.created(), "system": false,
                        "noteable_id": pull.id, "noteable_type": "MergeRequest", "noteable_iid": iid,
                        "resolvable": false,
                    });
                    if let CommentPlace::Inline { path, line, .. } = &c.place {
                        note["type"] = json!("DiffNote");
                        note["resolvable"] = json!(true);
                        note["position"] = json!({
                            "base_sha": base, "start_sha": base, "head_sha": head,
                            "old_path": path, "new_path": path, "position_type": "text",
                            "old_line": null, "new_line": line,
                        });
                    }
                    note
                })
                .collect();
            // GitLab records events on the merge request as system notes.
            notes.insert(
                0,
                json!({
                    "id": 1, "type": null, "body": "added 1 commit", "author": {"id": 1, "username": "nightshift", "name": "nightshift"},
                    "created_at": TIME, "updated_at": TIME, "system": true, "noteable_id": pull.id,
                    "noteable_type": "MergeRequest", "noteable_iid": iid, "resolvable": false,
                }),
            );
            if cx.query("sort") == Some("desc") {
                notes.reverse();
            }
            Reply::new(200, page_of(cx, notes, "per_page", 20))
        }
        "pipeline_jobs" => {
            let pipeline_id = id_at(3);
            let Some((sha, pipeline)) = repo.pipelines.iter().find(|(_, p)| p.id == pipeline_id)
            else {
                return not_found("Pipeline");
            };
            let scopes: Vec<&str> = cx
                .query
                .iter()
                .filter(|(k, _)| k == "scope[]" || k == "scope")
                .map(|(_, v)| v.as_str())
                .collect();
            let jobs = pipeline
                .jobs
                .iter()
                .filter(|j| scopes.is_empty() || scopes.contains(&j.status.as_str()))
                .map(|j| {
                    let mut job = json!({
                        "id": j.id, "name": j.name, "stage": j.stage, "status": j.status, "ref": "main",
                        "allow_failure": j.allow_failure, "created_at": TIME, "started_at": TIME, "finished_at": TIME,
                        "duration": 1.5, "web_url": format!("{}/{full}/-/jobs/{}", cx.origin, j.id),
                        "pipeline": {"id": pipeline.id, "sha": sha, "ref": "main", "status": pipeline.status},
                    });
                    if j.status == "failed" {
                        job["failure_reason"] = json!("script_failure");
                    }
                    job
                })
                .collect();
            Reply::new(200, page_of(cx, jobs, "per_page", 20))
        }
        "job_trace" => {
            let job_id = id_at(3);
            let Some(job) = repo
                .pipelines
                .values()
                .flat_map(|p| p.jobs.iter())
                .find(|j| j.id == job_id)
            else {
                return not_found("Job");
            };
            let mut reply = Reply::new(200, Value::String(job.trace.clone()));
            reply
                .headers
                .push(("content-type".into(), "text/plain; charset=utf-8".into()));
            reply
        }
        _ => not_found("Route"),
    }
}

/// The log a `/_fake/logs/<owner>/<repo>/<job>` link (from GitHub's job-log redirect) serves.
pub(super) fn github_job_log(state: &FakeState, path: &str) -> Option<String> {
    if state.kind != FakeKind::GitHub {
        return None;
    }
    let rest = path.strip_prefix("/_fake/logs/")?;
    let (full, id) = rest.rsplit_once('/')?;
    let id: u64 = id.parse().ok()?;
    state
        .repos
        .iter()
        .find(|r| r.full_name == full)?
        .check_runs
        .values()
        .flatten()
        .find(|c| c.id == id)?
        .log
        .clone()
}
