//! The guard in front of every API route and every web page: resolves the caller, enforces the
//! access the route table declares, and records each successful change in the audit trail. A
//! web form performs an API route of the table, so its roles and audit entry are that route's.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use nightshift_core::{Project, Role, Template};
use nightshift_store::NewAudit;

use super::identity::peer_of;
use super::{Access, CurrentUser, forbidden, resolve};
use crate::api::{self, RouteSpec};
use crate::ui::{self, PageError};
use crate::{ApiError, AppState};

/// The project a project route runs in and the caller's role there, for handlers.
#[derive(Debug, Clone)]
pub struct ProjectAccess {
    pub project: Project,
    pub role: Role,
    pub user: CurrentUser,
}

/// Who writes the audit event of a successful change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AuditBy {
    /// The guard, once the handler succeeded.
    #[default]
    Guard,
    /// The change's own transaction wrote it (the intake's does, for a task).
    Change,
    /// Nobody: nothing changed (a form cancelling a run that had already ended).
    Nobody,
}

/// What a handler adds to its audit event: the object it touched, a detail, or (for sign-in)
/// the actor that the request did not carry yet. Put it in the response's extensions; both
/// doors build it with the same constructors, so their entries are the same.
#[derive(Debug, Clone, Default)]
pub struct AuditNote {
    pub object: Option<String>,
    pub detail: Option<String>,
    pub actor: Option<String>,
    pub project_id: Option<i64>,
    pub by: AuditBy,
}

impl AuditNote {
    pub fn on(object: impl Into<String>) -> AuditNote {
        AuditNote {
            object: Some(object.into()),
            ..AuditNote::default()
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> AuditNote {
        self.detail = Some(detail.into());
        self
    }

    /// A change to run `run` of task `id`.
    pub fn task(id: i64, run: i64) -> AuditNote {
        AuditNote::on(format!("task {id}")).detail(format!("run {run}"))
    }

    /// A version of a template stored.
    pub fn template(template: &Template) -> AuditNote {
        AuditNote::on(format!("template {}", template.spec.name))
            .detail(format!("version {}", template.version))
    }

    pub fn notification(id: i64) -> AuditNote {
        AuditNote::on(format!("notification {id}"))
    }

    pub fn user(name: &str) -> AuditNote {
        AuditNote::on(format!("user {name}"))
    }

    /// The change's own transaction recorded it.
    pub fn written_with_change() -> AuditNote {
        AuditNote {
            by: AuditBy::Change,
            ..AuditNote::default()
        }
    }

    pub fn nothing_changed() -> AuditNote {
        AuditNote {
            by: AuditBy::Nobody,
            ..AuditNote::default()
        }
    }

    /// `response` carrying this note for the guard.
    pub fn attach(self, response: impl IntoResponse) -> Response {
        let mut response = response.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// Which door a request came through: the API answers refusals in JSON, pages as pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Door {
    Api,
    Pages,
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

/// In front of every API route.
pub async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    check(&state, Door::Api, request, next).await
}

/// In front of every page and form of the web UI.
pub(crate) async fn page_guard(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    check(&state, Door::Pages, request, next).await
}

/// The access a request needs: its route's in the table. An address no page answers still
/// needs a sign-in (and the viewer role under `/p/{project}/`) before it hears "not found".
fn spec_of(door: Door, method: &Method, template: &str, path: &str) -> Option<RouteSpec> {
    match door {
        Door::Api => api::spec_for(method, template).cloned(),
        Door::Pages => ui::spec_for(method, template).or_else(|| {
            let access = match path.strip_prefix("/p/") {
                Some(_) if matches!(*method, Method::GET | Method::HEAD) => {
                    Access::Project(Role::Viewer)
                }
                Some(_) => Access::Project(Role::Editor),
                None => Access::SignedIn,
            };
            Some(ui::page_spec(method.clone(), "/p/{project}", access))
        }),
    }
}

async fn check(state: &AppState, door: Door, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let refuse = |e: ApiError, method: &Method, uri: &axum::http::Uri| match door {
        Door::Api => e.into_response(),
        // A browser without a session goes to the sign-in form, with the way back.
        Door::Pages if e.status == StatusCode::UNAUTHORIZED => {
            ui::to_sign_in(method, uri.path_and_query().map_or("/", |p| p.as_str()))
        }
        Door::Pages => PageError(e).into_response(),
    };
    let identity = match resolve(state, &parts.headers, peer_of(&parts)).await {
        Ok(identity) => identity,
        Err(e) => return refuse(e, &parts.method, &parts.uri),
    };
    let template = parts
        .extensions
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let path = parts.uri.path().to_string();
    let Some(spec) = spec_of(door, &parts.method, &template, &path) else {
        // A route missing from the table is a bug; refuse rather than serve it unguarded.
        return forbidden("this route has no declared access").into_response();
    };
    let mut project_id = None;
    match spec.access {
        // A forge's proof is over the body: its handler checks it, before reading anything.
        Access::Public | Access::Forge => {}
        Access::SignedIn | Access::ServerAdmin | Access::Project(_) => {
            let user = match CurrentUser::from_identity(&identity) {
                Ok(user) => user,
                Err(e) => return refuse(e, &parts.method, &parts.uri),
            };
            match spec.access {
                Access::ServerAdmin if !user.user.server_admin => {
                    return refuse(
                        forbidden("this needs a server admin"),
                        &parts.method,
                        &parts.uri,
                    );
                }
                Access::Project(needed) => {
                    let name = project_param(&template, &path)
                        .or_else(|| path.strip_prefix("/p/")?.split('/').next())
                        .unwrap_or_default();
                    match user.project(state, name, needed).await {
                        Ok((project, role)) => {
                            project_id = Some(project.id);
                            parts.extensions.insert(ProjectAccess {
                                project,
                                role,
                                user: user.clone(),
                            });
                        }
                        Err(e) => return refuse(e, &parts.method, &parts.uri),
                    }
                }
                _ => {}
            }
        }
    }
    parts.extensions.insert(identity.clone());
    let response = next.run(Request::from_parts(parts, body)).await;
    // A form that worked answers with a redirect to what it changed.
    let done = response.status().is_success()
        || (door == Door::Pages && response.status().is_redirection());
    if let (Some(action), true) = (spec.action, done) {
        let note = response
            .extensions()
            .get::<AuditNote>()
            .cloned()
            .unwrap_or_default();
        if note.by != AuditBy::Guard {
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
