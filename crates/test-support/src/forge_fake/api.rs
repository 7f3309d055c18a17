//! The fake's REST handlers for GitHub, Gitea and GitLab. GitHub answers are built on the
//! example payloads of GitHub's own description; every request and answer is checked.

mod gitea;
mod github;
mod gitlab;

pub(super) use gitea::gitea_user;
pub(super) use github::resolve_ref;

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
            let (reply, problems) = gitlab::gitlab(&mut state, &cx, method, segments);
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
        github::github(&mut state, &cx, &op.id, &params)
    } else {
        gitea::gitea(&mut state, &cx, &op.id, &params)
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
