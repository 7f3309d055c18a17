//! The guard in front of every API route: resolves the caller, enforces the access the route
//! table declares, and records each successful change in the audit trail.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nightshift_core::{Project, Role};
use nightshift_store::NewAudit;

use super::identity::peer_of;
use super::{Access, CurrentUser, forbidden, resolve};
use crate::AppState;
use crate::api::{self, RouteSpec};

/// The project a project route runs in and the caller's role there, for handlers.
#[derive(Debug, Clone)]
pub struct ProjectAccess {
    pub project: Project,
    pub role: Role,
    pub user: CurrentUser,
}

/// What a handler adds to its audit event: the object it created, a detail, or (for sign-in)
/// the actor that the request did not carry yet. Put it in the response's extensions.
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub object: Option<String>,
    pub detail: Option<String>,
    pub actor: Option<String>,
    pub project_id: Option<i64>,
    /// The change's own transaction already wrote the event (the intake's does, for a task),
    /// so the guard writes none.
    pub recorded: bool,
}

/// The value of `{project}` in `path`, matching the route's template segment by segment.
/// Both may or may not carry the `/api/v1` prefix (nesting strips it from the URI only).
fn project_param<'p>(template: &str, path: &'p str) -> Option<&'p str> {
    let template = template.strip_prefix("/api/v1").unwrap_or(template);
    let path = path.strip_prefix("/api/v1").unwrap_or(path);
    template
        .split('/')
        .zip(path.split('/'))
        .find(|(t, _)| *t == "{project}")
        .map(|(_, p)| p)
}

pub async fn guard(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let identity = match resolve(&state, &parts.headers, peer_of(&parts)).await {
        Ok(identity) => identity,
        Err(e) => return e.into_response(),
    };
    let template = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let spec: Option<&RouteSpec> = api::spec_for(&parts.method, &template);
    let Some(spec) = spec else {
        // A route missing from the table is a bug; refuse rather than serve it unguarded.
        return forbidden("this route has no declared access").into_response();
    };
    let path = parts.uri.path().to_string();
    let mut project_id = None;
    match spec.access {
        Access::Public => {}
        Access::SignedIn | Access::ServerAdmin | Access::Project(_) => {
            let user = match CurrentUser::from_identity(&identity) {
                Ok(user) => user,
                Err(e) => return e.into_response(),
            };
            match spec.access {
                Access::ServerAdmin if !user.user.server_admin => {
                    return forbidden("this needs a server admin").into_response();
                }
                Access::Project(needed) => {
                    let name = project_param(&template, &path).unwrap_or_default();
                    match user.project(&state, name, needed).await {
                        Ok((project, role)) => {
                            project_id = Some(project.id);
                            parts.extensions.insert(ProjectAccess {
                                project,
                                role,
                                user: user.clone(),
                            });
                        }
                        Err(e) => return e.into_response(),
                    }
                }
                _ => {}
            }
        }
    }
    parts.extensions.insert(identity.clone());
    request = Request::from_parts(parts, body);
    let response = next.run(request).await;
    if let (Some(action), true) = (spec.action, response.status().is_success()) {
        let note = response
            .extensions()
            .get::<AuditNote>()
            .cloned()
            .unwrap_or_default();
        if note.recorded {
            return response;
        }
        let event = NewAudit {
            project_id: note.project_id.or(project_id),
            actor: note.actor.unwrap_or_else(|| identity.actor().to_string()),
            action: action.to_string(),
            object: note
                .object
                .unwrap_or_else(|| path.trim_start_matches("/api/v1").to_string()),
            source: identity.source.clone(),
            detail: note.detail,
        };
        // The change happened; failing to record it is logged loudly, not hidden from the caller.
        if let Err(e) = state.store.record_audit(&event).await {
            tracing::error!(error = %e, action, "cannot record audit event");
        }
    }
    response
}
