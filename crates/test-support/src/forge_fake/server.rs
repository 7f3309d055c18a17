//! The fake forge's HTTP side: who a request acts as, faults injected before or after the
//! API handles it, and the answer as the forge would send it.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State as AxumState};
use axum::http::{HeaderValue, Response, StatusCode};
use base64::Engine as _;
use serde_json::Value;

use super::{FakeKind, Fault, RecordedRequest, Shared, User, api, git_http, lock};

/// Who a request acts as.
#[derive(Debug, Clone)]
pub(super) enum Caller {
    Anonymous,
    Invalid,
    User(User),
    /// A GitHub App installation token.
    Installation {
        account: String,
        permissions: Value,
        repos: Vec<String>,
    },
    /// A GitHub App's own JWT.
    App,
}

/// Percent-decodes a path segment or query component.
pub(super) fn decode(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or(())
                {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub(super) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k, true), decode(v, true))
        })
        .collect()
}

pub(super) async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    request: Request,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let raw_query = parts.uri.query().unwrap_or_default().to_string();
    let method = parts.method.as_str().to_string();

    if path.contains(".git/") {
        return serve_git(&shared, &method, &path, &raw_query, &parts.headers, &body).await;
    }

    if path.starts_with("/_fake/logs/") {
        // GitHub's job-log storage, where its redirect points; not part of the API.
        let log = super::follow_api::github_job_log(&lock(&shared), &path);
        return match log {
            Some(log) => git_http::plain(StatusCode::OK, log),
            None => git_http::plain(StatusCode::NOT_FOUND, "no such log".into()),
        };
    }
    let kind = lock(&shared).kind;
    let query = parse_query(&raw_query);
    let request_body: Value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let Some(api_path) = path.strip_prefix(kind.api_prefix()) else {
        let mut state = lock(&shared);
        state
            .violations
            .push(format!("{method} {path}: not under {}", kind.api_prefix()));
        return json_response(404, &serde_json::json!({"message": "Not Found"}), &[]);
    };
    let segments: Vec<String> = api_path
        .trim_start_matches('/')
        .split('/')
        .map(|s| decode(s, false))
        .collect();
    let caller = identify(&shared, kind, &parts.headers);
    let who = header_token(&parts.headers, kind).unwrap_or_else(|| "anonymous".into());
    let if_none_match = parts
        .headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let seen = RecordedRequest {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        request_body: request_body.clone(),
        if_none_match: if_none_match.clone(),
        status: 0,
        response_body: Value::Null,
        response_headers: Vec::new(),
        fault: None,
        operation: None,
    };

    let fault = {
        let mut state = lock(&shared);
        let matching = state
            .targeted
            .iter()
            .position(|t| t.method == method && path.ends_with(t.path_suffix.as_str()));
        match matching {
            Some(i) if state.targeted[i].once => Some(state.targeted.remove(i).fault),
            Some(i) => Some(state.targeted[i].fault.clone()),
            None => state.draw_fault(),
        }
    };
    if let Some(fault) = fault.clone()
        && let Some(mut response) = fault_before(kind, &fault)
    {
        // A fault is an answer like any other: the forge's usual headers come with it.
        let usual = lock(&shared).standard_headers(&who, true);
        response.headers = merge_headers(usual, response.headers);
        return finish(&shared, seen, response, Some(fault), None);
    }

    let (mut reply, operation) = api::dispatch(
        &shared,
        kind,
        &method,
        &segments,
        &query,
        &request_body,
        &caller,
    );
    let etag = (method == "GET" && (200..300).contains(&reply.status))
        .then(|| super::headers::etag(kind, &reply.body))
        .flatten();
    let not_modified = etag.is_some() && etag == if_none_match;
    // GitHub does not count a 304 against the rate limit.
    let counted = !(not_modified && kind == FakeKind::GitHub);
    let usual = lock(&shared).standard_headers(&who, counted);
    reply.headers = merge_headers(usual, std::mem::take(&mut reply.headers));
    if let Some(etag) = etag {
        reply.headers.push(("etag".into(), etag));
    }
    if not_modified {
        reply.status = 304;
        reply.body = Value::Null;
    }
    match fault {
        Some(Fault::ServerErrorAfterHandling) => {
            finish(&shared, seen.clone(), reply, fault, operation);
            let usual = lock(&shared).standard_headers(&who, true);
            json_response(502, &serde_json::json!({"message": "Bad Gateway"}), &usual)
        }
        Some(Fault::SlowAfterHandling(delay)) => {
            let response = finish(&shared, seen, reply, fault, operation);
            tokio::time::sleep(delay).await;
            response
        }
        _ => finish(&shared, seen, reply, fault, operation),
    }
}

/// `specific` over `usual`: an answer's own headers win over the forge's defaults.
fn merge_headers(
    mut usual: Vec<(String, String)>,
    specific: Vec<(String, String)>,
) -> Vec<(String, String)> {
    usual.retain(|(name, _)| !specific.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)));
    usual.extend(specific);
    usual
}

/// Records the request with its answer, and turns the answer into HTTP.
fn finish(
    shared: &Shared,
    mut seen: RecordedRequest,
    reply: Reply,
    fault: Option<Fault>,
    operation: Option<String>,
) -> Response<Body> {
    let response = json_response(reply.status, &reply.body, &reply.headers);
    seen.status = reply.status;
    seen.response_body = reply.body;
    seen.response_headers = reply.headers;
    seen.fault = fault;
    seen.operation = operation;
    lock(shared).requests.push(seen);
    response
}

/// An API answer before it becomes HTTP.
pub(crate) struct Reply {
    pub(super) status: u16,
    pub(super) body: Value,
    pub(super) headers: Vec<(String, String)>,
}

impl Reply {
    pub(super) fn new(status: u16, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }
}

fn fault_before(kind: FakeKind, fault: &Fault) -> Option<Reply> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let message = serde_json::json!({"message": "injected fault"});
    Some(match fault {
        Fault::TooManyRequests { retry_after_secs } => Reply {
            status: 429,
            body: message,
            headers: vec![("retry-after".into(), retry_after_secs.to_string())],
        },
        Fault::RateLimitReset { secs } => match kind {
            FakeKind::GitHub => Reply {
                status: 403,
                body: serde_json::json!({"message": "API rate limit exceeded"}),
                headers: vec![
                    ("x-ratelimit-remaining".into(), "0".into()),
                    ("x-ratelimit-reset".into(), (now + secs).to_string()),
                ],
            },
            FakeKind::GitLab => Reply {
                status: 429,
                body: message,
                headers: vec![
                    ("ratelimit-remaining".into(), "0".into()),
                    ("ratelimit-reset".into(), (now + secs).to_string()),
                ],
            },
            FakeKind::Gitea => Reply {
                status: 429,
                body: message,
                headers: vec![("x-ratelimit-reset".into(), (now + secs).to_string())],
            },
        },
        Fault::ServerError(status) => Reply::new(*status, message),
        Fault::ServerErrorAfterHandling | Fault::SlowAfterHandling(_) => return None,
    })
}

pub(super) fn json_response(
    status: u16,
    body: &Value,
    headers: &[(String, String)],
) -> Response<Body> {
    let plain = headers
        .iter()
        .any(|(n, v)| n.eq_ignore_ascii_case("content-type") && v.starts_with("text/plain"));
    let text = match body {
        Value::Null => String::new(),
        Value::String(text) if plain => text.clone(),
        other => other.to_string(),
    };
    let mut response = Response::new(Body::from(text));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if !plain && status != 304 {
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
    }
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::try_from(name.as_str()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}

pub(super) fn header_token(headers: &axum::http::HeaderMap, kind: FakeKind) -> Option<String> {
    if kind == FakeKind::GitLab
        && let Some(token) = headers.get("private-token").and_then(|v| v.to_str().ok())
    {
        return Some(token.to_string());
    }
    let value = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "token" => Some(token.to_string()),
        _ => None,
    }
}

pub(super) fn identify(shared: &Shared, kind: FakeKind, headers: &axum::http::HeaderMap) -> Caller {
    match header_token(headers, kind) {
        None => Caller::Anonymous,
        Some(token) => caller_for_token(shared, &token),
    }
}

pub(super) fn caller_for_token(shared: &Shared, token: &str) -> Caller {
    let state = lock(shared);
    if let Some(user) = state.users.iter().find(|u| u.token == token) {
        return Caller::User(user.clone());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if let Some(minted) = state.installation_tokens.get(token) {
        if minted.expires_at_secs <= now {
            return Caller::Invalid;
        }
        if let Some((_, account, permissions)) = state.app.as_ref().and_then(|app| {
            app.installations
                .iter()
                .find(|(id, _, _)| *id == minted.installation)
        }) {
            return Caller::Installation {
                account: account.clone(),
                permissions: permissions.clone(),
                repos: minted.repos.clone(),
            };
        }
    }
    if let Some(app) = &state.app {
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(app.public_key_pem.as_bytes());
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_issuer(&[app.app_id.to_string()]);
        validation.set_required_spec_claims(&["exp", "iat", "iss"]);
        if let Ok(key) = key
            && jsonwebtoken::decode::<Value>(token, &key, &validation).is_ok()
        {
            return Caller::App;
        }
    }
    Caller::Invalid
}

pub(super) async fn serve_git(
    shared: &Shared,
    method: &str,
    path: &str,
    query: &str,
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Response<Body> {
    let Some((repo_path, _)) = path.split_once(".git/") else {
        return git_http::plain(StatusCode::NOT_FOUND, "not a repository".into());
    };
    let full_name = repo_path.trim_start_matches('/').to_string();
    let push = git_http::is_push(path, query);
    let credential = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| pair.split_once(':').map(|(_, token)| token.to_string()));
    let mut user = None;
    if push {
        let Some(token) = credential else {
            let mut response =
                git_http::plain(StatusCode::UNAUTHORIZED, "authentication required".into());
            response.headers_mut().insert(
                "www-authenticate",
                HeaderValue::from_static("Basic realm=\"fake forge\""),
            );
            return response;
        };
        let caller = caller_for_token(shared, &token);
        if !api::can_push(&lock(shared), &caller, &full_name) {
            return git_http::plain(
                StatusCode::FORBIDDEN,
                format!("no write access to {full_name}"),
            );
        }
        user = Some(match caller {
            Caller::User(u) => u.login,
            _ => "x-access-token".to_string(),
        });
    }
    git_http::serve(
        &shared.root,
        method,
        path,
        query,
        headers,
        body,
        user.as_deref(),
    )
    .await
}
