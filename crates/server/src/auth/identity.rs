//! Who is calling: a bearer token, else a session cookie, else a trusted proxy's headers.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use nightshift_core::{Project, Role, User};
use nightshift_engine::Creator;
use nightshift_store::NewAudit;

use super::{LOCAL_USER, forbidden, project_not_found, unauthenticated};
use crate::{ApiError, AppState};

/// The cookie a browser session rides on (HttpOnly, SameSite=Strict).
pub const SESSION_COOKIE: &str = "nightshift_session";

/// The caller of one request. `user` is `None` for anonymous callers and bad credentials.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: Option<User>,
    /// Groups a trusted proxy named; they may bind to project roles.
    pub groups: Vec<String>,
    /// The client address, as audit events record it.
    pub source: String,
    /// Why credentials that were sent did not sign in (revoked token, expired session).
    pub rejected: Option<&'static str>,
}

impl Identity {
    pub fn actor(&self) -> &str {
        self.user.as_ref().map_or("anonymous", |u| u.name.as_str())
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Works out who is calling. Errors are the store's; bad credentials are not errors here but
/// an anonymous identity with `rejected` set, so public routes still answer.
pub async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Result<Identity, ApiError> {
    let source = peer.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    let mut identity = Identity {
        user: None,
        groups: Vec::new(),
        source,
        rejected: None,
    };
    let auth = &state.config.auth;
    let proxy_user = header(headers, "x-forwarded-user");
    let trusted = match (&auth.proxy, peer) {
        (Some(proxy), Some(ip)) => proxy.trusted.contains(&ip),
        _ => false,
    };
    if trusted && let Some(client) = header(headers, "x-forwarded-for") {
        // Behind a trusted proxy the audit trail wants the client, not the proxy.
        let client = client.split(',').next().unwrap_or_default().trim();
        identity.source = format!("{client} via {}", identity.source);
    }
    if let Some(claimed) = proxy_user.filter(|_| !trusted)
        && state.throttle.record_noise(&identity.source)
    {
        // Someone may be trying to pass as another user: ignore the header, keep a record
        // (a bounded number of them: a flood of such requests must not fill the audit trail).
        let claimed: String = claimed.chars().take(100).collect();
        tracing::warn!(source = %identity.source, "identity headers from an untrusted address ignored");
        state
            .store
            .record_audit(&NewAudit {
                project_id: None,
                actor: "anonymous".into(),
                action: "auth.untrusted_proxy_header".into(),
                object: format!("user {claimed}"),
                source: identity.source.clone(),
                detail: Some("X-Forwarded-User from an address that is not a trusted proxy".into()),
            })
            .await?;
    }
    if auth.disabled {
        identity.user = state.store.user_by_name(LOCAL_USER).await?;
        return Ok(identity);
    }
    if let Some(token) = bearer(headers) {
        identity.user = state.store.user_by_token(token).await?;
        if identity.user.is_none() {
            identity.rejected = Some(
                "the API token is unknown or revoked: create a new one with `nightshift token create`",
            );
        }
        return Ok(identity);
    }
    if let Some(session) = session_cookie(headers) {
        identity.user = state.store.user_by_session(session).await?;
        if identity.user.is_some() {
            return Ok(identity);
        }
        identity.rejected =
            Some("the session has ended (it expired, or its API token was revoked): sign in again");
    }
    if let (true, Some(name)) = (trusted, proxy_user) {
        let email = header(headers, "x-forwarded-email");
        identity.user = Some(state.store.ensure_user(name, email).await?);
        identity.groups = header(headers, "x-forwarded-groups")
            .map(|g| {
                g.split(',')
                    .map(|g| g.trim().to_string())
                    .filter(|g| !g.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        identity.rejected = None;
    }
    Ok(identity)
}

/// Whether the browser reached this server over TLS: the public URL is `https://`, or a
/// trusted proxy says so in `X-Forwarded-Proto` (from anyone else the header proves nothing).
pub(crate) fn over_tls(state: &AppState, headers: &HeaderMap, peer: Option<IpAddr>) -> bool {
    if state
        .engine
        .config()
        .public_url
        .to_ascii_lowercase()
        .starts_with("https://")
    {
        return true;
    }
    let trusted = match (&state.config.auth.proxy, peer) {
        (Some(proxy), Some(ip)) => proxy.trusted.contains(&ip),
        _ => false,
    };
    trusted
        && header(headers, "x-forwarded-proto")
            .and_then(|p| p.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

/// Whether the request came over TLS (see [`over_tls`]), as an extractor for handlers.
pub struct OverTls(pub bool);

impl FromRequestParts<AppState> for OverTls {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(OverTls(over_tls(state, &parts.headers, peer_of(parts))))
    }
}

/// The client address of a whole request, for middleware that has not split it.
pub(crate) fn peer_of_request(request: &axum::extract::Request) -> Option<IpAddr> {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

pub(crate) fn peer_of(parts: &Parts) -> Option<IpAddr> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// The signed-in user of a request: 401 when there is none. Usable by any handler, API or
/// web UI, whether or not the route sits behind the guard.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    pub groups: Vec<String>,
    pub source: String,
}

impl CurrentUser {
    /// The user's name, as `created_by`, member lists and audit events show it.
    pub fn name(&self) -> &str {
        &self.user.name
    }

    pub fn from_identity(identity: &Identity) -> Result<CurrentUser, ApiError> {
        match &identity.user {
            Some(user) => Ok(CurrentUser {
                user: user.clone(),
                groups: identity.groups.clone(),
                source: identity.source.clone(),
            }),
            None => Err(unauthenticated(identity.rejected.unwrap_or(
                "sign in: send `Authorization: Bearer <token>` (CLI: NIGHTSHIFT_TOKEN) or a session cookie",
            ))),
        }
    }

    /// This user as the intake records a task's creator.
    pub fn creator(&self) -> Creator {
        Creator {
            name: self.user.name.clone(),
            server_admin: self.user.server_admin,
            source: self.source.clone(),
        }
    }

    /// The project named `name` if this user holds at least `needed` in it: 404 when the
    /// project is missing or not theirs to see, 403 when their role is too weak.
    pub async fn project(
        &self,
        state: &AppState,
        name: &str,
        needed: Role,
    ) -> Result<(Project, Role), ApiError> {
        let project = state
            .store
            .project(name)
            .await?
            .ok_or_else(|| project_not_found(name))?;
        let role = state
            .store
            .role_in(project.id, &self.user, &self.groups)
            .await?
            .ok_or_else(|| project_not_found(name))?;
        if !role.covers(needed) {
            return Err(forbidden(format!(
                "this needs the {needed} role in project {name:?}; you are {role}"
            )));
        }
        Ok((project, role))
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(identity) = parts.extensions.get::<Identity>() {
            return CurrentUser::from_identity(identity);
        }
        let identity = resolve(state, &parts.headers, peer_of(parts)).await?;
        CurrentUser::from_identity(&identity)
    }
}
