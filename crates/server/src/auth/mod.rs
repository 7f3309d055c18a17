//! Sign-in and authorisation. Every request is mapped to one identity (API token, session
//! cookie, or headers from a trusted proxy), then checked against the access its route
//! declares in the route table; successful changes are written to the audit trail.

mod guard;
mod identity;

pub(crate) use guard::page_guard;
pub use guard::{AuditBy, AuditNote, ProjectAccess, guard};
pub(crate) use identity::session_cookie as identity_session;
pub use identity::{CurrentUser, Identity, SESSION_COOKIE, resolve};
pub(crate) use identity::{OverTls, over_tls, peer_of_request};

use std::net::IpAddr;
use std::time::Duration;

use axum::http::StatusCode;
use nightshift_core::Role;

use crate::ApiError;
use crate::contract::ErrorCode;

/// How people sign in.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// No sign-in: every request acts as the local server admin. Loopback addresses only.
    pub disabled: bool,
    /// Accept `X-Forwarded-User`/`-Email`/`-Groups` from these proxies.
    pub proxy: Option<ProxyConfig>,
    /// How long a browser session cookie lasts.
    pub session_ttl: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            disabled: false,
            proxy: None,
            session_ttl: Duration::from_secs(12 * 3600),
        }
    }
}

/// A reverse proxy that authenticates people and names them in headers.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// Only requests from these addresses may carry identity headers.
    pub trusted: Vec<IpAddr>,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in user.
    SignedIn,
    /// Users who administer the server (create users).
    ServerAdmin,
    /// Members of the route's `{project}` with at least this role.
    Project(Role),
    /// A forge delivering a webhook: no sign-in, but the delivery's signature (or GitLab's
    /// token) must match the configured secret. The handler checks it, since it signs the body.
    Forge,
}

/// The user name that acts when sign-in is disabled.
pub const LOCAL_USER: &str = "local";

pub(crate) fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
        message,
    )
}

pub(crate) fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message)
}

/// The same answer for a project that does not exist and one the caller may not see, so
/// names of other tenants' projects do not leak.
pub(crate) fn project_not_found(name: &str) -> ApiError {
    ApiError::not_found(format!("project {name:?} not found"))
}
