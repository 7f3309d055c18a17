//! Webhook deliveries from the forges: checked against the shared secret in constant time
//! (GitHub `X-Hub-Signature-256` and Gitea `X-Gitea-Signature` are HMAC-SHA256 of the body,
//! GitLab's `X-Gitlab-Token` is the secret itself), then read into the few events a follower
//! acts on: a pull request closed, merged or pushed to, CI finishing, a comment.

use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::review::millis;
use crate::{CiState, CommentKind, ForgeError, ForgeKind, PrComment, Result, Secret};

/// What happened to a pull request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrChange {
    Opened,
    /// Its branch got new commits (GitHub `synchronize`, Gitea `synchronized`, GitLab an
    /// update with `oldrev`).
    Pushed,
    Closed,
    Merged,
    Reopened,
}

/// A delivery worth acting on. `repo` is the project path (`owner/repo`, `group/sub/project`)
/// as [`crate::RepoPath::path`] reads it from a repository URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WebhookEvent {
    PullRequest {
        repo: String,
        number: u64,
        change: PrChange,
        head_sha: Option<String>,
    },
    /// One check, status or pipeline moved on `head_sha`: its own verdict, not the combined one
    /// (poll the pull request for that).
    Ci {
        repo: String,
        head_sha: String,
        name: String,
        state: CiState,
        /// The pull requests the forge says the commit belongs to (may be empty).
        pulls: Vec<u64>,
    },
    Comment {
        repo: String,
        number: u64,
        comment: PrComment,
    },
}

/// Checks a delivery's signature with `secret` and reads it. `Ok(None)` for a genuine delivery
/// of something a follower does not act on (a ping, a push, an edited title);
/// [`ForgeError::WebhookRejected`] when it cannot be trusted, [`ForgeError::WebhookUnreadable`]
/// when it is genuine but cannot be read.
pub fn parse_webhook(
    kind: ForgeKind,
    secret: &Secret,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<WebhookEvent>> {
    let forge = kind.as_str();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let reject = |reason: &str| ForgeError::WebhookRejected {
        forge,
        reason: reason.to_string(),
    };
    match kind {
        ForgeKind::Github => {
            let signature = header("x-hub-signature-256")
                .and_then(|s| s.strip_prefix("sha256="))
                .ok_or_else(|| reject("no X-Hub-Signature-256 header"))?;
            verify_hmac(secret, body, signature)
                .map_err(|_| reject("the signature does not match"))?;
        }
        ForgeKind::Gitea => {
            let signature =
                header("x-gitea-signature").ok_or_else(|| reject("no X-Gitea-Signature header"))?;
            verify_hmac(secret, body, signature)
                .map_err(|_| reject("the signature does not match"))?;
        }
        ForgeKind::Gitlab => {
            let token =
                header("x-gitlab-token").ok_or_else(|| reject("no X-Gitlab-Token header"))?;
            if !bool::from(token.as_bytes().ct_eq(secret.expose().as_bytes())) {
                return Err(reject("the token does not match"));
            }
        }
        ForgeKind::Git => {
            return Err(ForgeError::Unsupported {
                forge,
                what: "webhooks",
            });
        }
    }
    let garbled = |reason: &str| ForgeError::WebhookUnreadable {
        forge,
        reason: reason.to_string(),
    };
    let payload: Value = serde_json::from_slice(body)
        .map_err(|_| garbled("the body is not JSON (send deliveries as application/json)"))?;
    let event = match kind {
        ForgeKind::Github => header("x-github-event").map(|e| github(e, &payload)),
        ForgeKind::Gitlab => header("x-gitlab-event").map(|e| gitlab(e, &payload)),
        _ => header("x-gitea-event-type")
            .or_else(|| header("x-gitea-event"))
            .map(|e| gitea(e, &payload)),
    };
    event.ok_or_else(|| garbled("no event header"))?
}

/// `signature` (hex) against HMAC-SHA256 of `body`; `verify_slice` compares in constant time.
fn verify_hmac(secret: &Secret, body: &[u8], signature: &str) -> std::result::Result<(), ()> {
    let expected = hex::decode(signature.trim()).map_err(|_| ())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).map_err(|_| ())?;
    mac.update(body);
    mac.verify_slice(&expected).map_err(|_| ())
}

fn text(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn number(value: &Value, pointer: &str) -> Option<u64> {
    value.pointer(pointer).and_then(Value::as_u64)
}

/// A payload of a known event that lacks what it must carry.
fn unreadable(forge: &'static str, event: &str) -> ForgeError {
    ForgeError::WebhookUnreadable {
        forge,
        reason: format!("the {event} payload lacks the fields it documents"),
    }
}

/// A check conclusion (GitHub, Gitea statuses) as a verdict.
fn conclusion(status: Option<&str>, conclusion: Option<&str>) -> CiState {
    match (status, conclusion) {
        (Some(s), _) if s != "completed" => CiState::Pending,
        // `warning` is Gitea's passing-with-remarks.
        (_, Some("success" | "neutral" | "skipped" | "warning")) => CiState::Passing,
        (_, Some("pending")) => CiState::Pending,
        (_, None) => CiState::Pending,
        _ => CiState::Failing,
    }
}

fn github(event: &str, p: &Value) -> Result<Option<WebhookEvent>> {
    let bad = || unreadable("github", event);
    let repo = || text(p, "/repository/full_name").ok_or_else(bad);
    let pulls = |pointer: &str| -> Vec<u64> {
        p.pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|pr| number(pr, "/number"))
            .collect()
    };
    Ok(Some(match event {
        "pull_request" => {
            let change = match text(p, "/action").as_deref() {
                Some("opened") => PrChange::Opened,
                Some("synchronize") => PrChange::Pushed,
                Some("reopened") => PrChange::Reopened,
                Some("closed") if p.pointer("/pull_request/merged") == Some(&Value::Bool(true)) => {
                    PrChange::Merged
                }
                Some("closed") => PrChange::Closed,
                _ => return Ok(None),
            };
            WebhookEvent::PullRequest {
                repo: repo()?,
                number: number(p, "/pull_request/number").ok_or_else(bad)?,
                change,
                head_sha: text(p, "/pull_request/head/sha"),
            }
        }
        "check_suite" | "check_run" => {
            if text(p, "/action").as_deref() != Some("completed") {
                return Ok(None);
            }
            let at = format!("/{event}");
            let name = match event {
                "check_run" => text(p, "/check_run/name"),
                _ => text(p, "/check_suite/app/name"),
            };
            WebhookEvent::Ci {
                repo: repo()?,
                head_sha: text(p, &format!("{at}/head_sha")).ok_or_else(bad)?,
                name: name.unwrap_or_else(|| event.to_string()),
                state: conclusion(
                    text(p, &format!("{at}/status")).as_deref(),
                    text(p, &format!("{at}/conclusion")).as_deref(),
                ),
                pulls: pulls(&format!("{at}/pull_requests")),
            }
        }
        "status" => WebhookEvent::Ci {
            repo: repo()?,
            head_sha: text(p, "/sha").ok_or_else(bad)?,
            name: text(p, "/context").unwrap_or_default(),
            state: conclusion(None, text(p, "/state").as_deref()),
            pulls: Vec::new(),
        },
        "issue_comment" => {
            // Issues share the event; only comments on pull requests count.
            if text(p, "/action").as_deref() != Some("created")
                || p.pointer("/issue/pull_request").is_none_or(Value::is_null)
            {
                return Ok(None);
            }
            WebhookEvent::Comment {
                repo: repo()?,
                number: number(p, "/issue/number").ok_or_else(bad)?,
                comment: github_comment(&p["comment"], CommentKind::Conversation)
                    .ok_or_else(bad)?,
            }
        }
        "pull_request_review_comment" => {
            if text(p, "/action").as_deref() != Some("created") {
                return Ok(None);
            }
            WebhookEvent::Comment {
                repo: repo()?,
                number: number(p, "/pull_request/number").ok_or_else(bad)?,
                comment: github_comment(&p["comment"], CommentKind::Inline).ok_or_else(bad)?,
            }
        }
        "pull_request_review" => {
            if text(p, "/action").as_deref() != Some("submitted")
                || text(p, "/review/body").is_none()
            {
                return Ok(None);
            }
            WebhookEvent::Comment {
                repo: repo()?,
                number: number(p, "/pull_request/number").ok_or_else(bad)?,
                comment: github_comment(&p["review"], CommentKind::Review).ok_or_else(bad)?,
            }
        }
        _ => return Ok(None),
    }))
}

/// A GitHub comment, review comment or review (the same fields, `submitted_at` for reviews).
pub(crate) fn github_comment(c: &Value, kind: CommentKind) -> Option<PrComment> {
    let created = text(c, "/created_at").or_else(|| text(c, "/submitted_at"))?;
    Some(PrComment {
        id: number(c, "/id")?,
        kind,
        author: text(c, "/user/login")?,
        body: text(c, "/body").unwrap_or_default(),
        path: text(c, "/path"),
        line: number(c, "/line").or_else(|| number(c, "/original_line")),
        created_at: millis(&created),
        url: text(c, "/html_url"),
    })
}

fn gitlab(event: &str, p: &Value) -> Result<Option<WebhookEvent>> {
    let bad = || unreadable("gitlab", event);
    let repo = || text(p, "/project/path_with_namespace").ok_or_else(bad);
    Ok(Some(match event {
        "Merge Request Hook" => {
            let change = match text(p, "/object_attributes/action").as_deref() {
                Some("open") => PrChange::Opened,
                Some("close") => PrChange::Closed,
                Some("reopen") => PrChange::Reopened,
                Some("merge") => PrChange::Merged,
                // An update carries `oldrev` only when it brought new commits.
                Some("update") if text(p, "/object_attributes/oldrev").is_some() => {
                    PrChange::Pushed
                }
                _ => return Ok(None),
            };
            WebhookEvent::PullRequest {
                repo: repo()?,
                number: number(p, "/object_attributes/iid").ok_or_else(bad)?,
                change,
                head_sha: text(p, "/object_attributes/last_commit/id"),
            }
        }
        "Pipeline Hook" => WebhookEvent::Ci {
            repo: repo()?,
            head_sha: text(p, "/object_attributes/sha").ok_or_else(bad)?,
            name: format!(
                "pipeline {}",
                number(p, "/object_attributes/id").unwrap_or_default()
            ),
            state: crate::gitlab::pipeline_state(text(p, "/object_attributes/status").as_deref()),
            pulls: number(p, "/merge_request/iid").into_iter().collect(),
        },
        "Note Hook" => {
            let note = &p["object_attributes"];
            if text(note, "/noteable_type").as_deref() != Some("MergeRequest")
                || note.get("system") == Some(&Value::Bool(true))
            {
                return Ok(None);
            }
            let inline = text(note, "/type").as_deref() == Some("DiffNote");
            WebhookEvent::Comment {
                repo: repo()?,
                number: number(p, "/merge_request/iid").ok_or_else(bad)?,
                comment: PrComment {
                    id: number(note, "/id").ok_or_else(bad)?,
                    kind: if inline {
                        CommentKind::Inline
                    } else {
                        CommentKind::Conversation
                    },
                    author: text(p, "/user/username").ok_or_else(bad)?,
                    body: text(note, "/note").unwrap_or_default(),
                    path: text(note, "/position/new_path"),
                    line: number(note, "/position/new_line"),
                    created_at: millis(&text(note, "/created_at").unwrap_or_default()),
                    url: text(note, "/url"),
                },
            }
        }
        _ => return Ok(None),
    }))
}

fn gitea(event: &str, p: &Value) -> Result<Option<WebhookEvent>> {
    let bad = || unreadable("gitea", event);
    let repo = || text(p, "/repository/full_name").ok_or_else(bad);
    Ok(Some(match event {
        "pull_request" | "pull_request_sync" => {
            let change = match text(p, "/action").as_deref() {
                Some("opened") => PrChange::Opened,
                Some("synchronized") => PrChange::Pushed,
                Some("reopened") => PrChange::Reopened,
                Some("closed") if p.pointer("/pull_request/merged") == Some(&Value::Bool(true)) => {
                    PrChange::Merged
                }
                Some("closed") => PrChange::Closed,
                _ => return Ok(None),
            };
            WebhookEvent::PullRequest {
                repo: repo()?,
                number: number(p, "/pull_request/number")
                    .or_else(|| number(p, "/number"))
                    .ok_or_else(bad)?,
                change,
                head_sha: text(p, "/pull_request/head/sha"),
            }
        }
        "issue_comment" | "pull_request_comment" => {
            let on_pull = p.get("is_pull") == Some(&Value::Bool(true))
                || p.pointer("/issue/pull_request")
                    .is_some_and(|v| !v.is_null());
            if text(p, "/action").as_deref() != Some("created") || !on_pull {
                return Ok(None);
            }
            WebhookEvent::Comment {
                repo: repo()?,
                number: number(p, "/issue/number").ok_or_else(bad)?,
                comment: github_comment(&p["comment"], CommentKind::Conversation)
                    .ok_or_else(bad)?,
            }
        }
        "pull_request_review_approved"
        | "pull_request_review_rejected"
        | "pull_request_review_comment" => {
            let Some(body) = text(p, "/review/content") else {
                return Ok(None);
            };
            WebhookEvent::Comment {
                repo: repo()?,
                number: number(p, "/pull_request/number")
                    .or_else(|| number(p, "/number"))
                    .ok_or_else(bad)?,
                comment: PrComment {
                    // The review payload carries no id of its own.
                    id: 0,
                    kind: CommentKind::Review,
                    author: text(p, "/sender/login").ok_or_else(bad)?,
                    body,
                    path: None,
                    line: None,
                    created_at: millis(&text(p, "/pull_request/updated_at").unwrap_or_default()),
                    url: text(p, "/pull_request/html_url"),
                },
            }
        }
        "status" => WebhookEvent::Ci {
            repo: repo()?,
            head_sha: text(p, "/sha").ok_or_else(bad)?,
            name: text(p, "/context").unwrap_or_default(),
            state: conclusion(None, text(p, "/state").as_deref()),
            pulls: Vec::new(),
        },
        _ => return Ok(None),
    }))
}
