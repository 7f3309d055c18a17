//! Sign-in for the pages: the sign-in form (an API token in, the API's session cookie out),
//! sign-out, and the middleware that keeps every page behind sign-in and project roles.

use axum::Form;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use nightshift_core::Role;
use nightshift_store::NewAudit;
use serde::Deserialize;

use super::{PageError, esc, field, see_other, url_component};
use crate::AppState;
use crate::api::tokens::{end_session, start_session};
use crate::auth::{CurrentUser, Identity, resolve};

/// Where to go after signing in: only a path on this site, so the form cannot be used to
/// bounce someone to another site (an open redirect).
fn local_target(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

/// The percent-decoded `{project}` of a `/p/{project}/…` path.
fn project_of(path: &str) -> Option<String> {
    let segment = path.strip_prefix("/p/")?.split('/').next()?;
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// In front of every page: no user → the sign-in page, with the way back in `next`; under
/// `/p/{project}/` the user needs the viewer role to read and editor to change anything
/// (the same roles the API asks for). Handlers then take `CurrentUser` without a second
/// lookup.
pub(crate) async fn require_user(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = crate::auth::peer_of_request(&request);
    let identity = match resolve(&state, request.headers(), peer).await {
        Ok(identity) => identity,
        Err(e) => return PageError(e).into_response(),
    };
    let Ok(user) = CurrentUser::from_identity(&identity) else {
        let uri = request.uri();
        let back = uri.path_and_query().map_or("/", |p| p.as_str());
        // After a refused POST, coming back means reloading the page the form was on.
        let back = if request.method() == Method::GET {
            back
        } else {
            "/"
        };
        return see_other(&format!("/signin?next={}", url_component(back)));
    };
    if let Some(project) = project_of(request.uri().path()) {
        // Marking one's own notifications read is a viewer's right, as in the API.
        let own_notifications = request
            .uri()
            .path()
            .split('/')
            .nth(3)
            .is_some_and(|section| section == "notifications");
        let needed = if matches!(*request.method(), Method::GET | Method::HEAD) || own_notifications
        {
            Role::Viewer
        } else {
            Role::Editor
        };
        if let Err(e) = user.project(&state, &project, needed).await {
            return PageError(e).into_response();
        }
    }
    request.extensions_mut().insert::<Identity>(identity);
    next.run(request).await
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SignInQuery {
    next: Option<String>,
}

fn form(next: &str, error: Option<&str>) -> Html<String> {
    let error = error.map_or(String::new(), |e| {
        format!(
            "<p class=\"error\" role=\"alert\" id=\"signin-error\">{}</p>",
            esc(e)
        )
    });
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\">\
<title>Sign in · Nightshift</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
<body><main id=\"main\"><h1>Sign in</h1>{error}\
<form method=\"post\" action=\"/signin\" class=\"signin\">\
<input type=\"hidden\" name=\"next\" value=\"{next}\">\
<label for=\"token\">API token</label>\
<input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required \
aria-describedby=\"token-help\">\
<p id=\"token-help\" class=\"help\">Create one with <code>nightshift token create</code>; \
the first admin's token is in <code>admin.token</code> in the server's data directory.</p>\
<button type=\"submit\">Sign in</button></form></main></body></html>",
        next = esc(next),
    ))
}

pub(crate) async fn page(Query(query): Query<SignInQuery>) -> Html<String> {
    form(local_target(query.next.as_deref()), None)
}

fn audit(identity: &str, source: &str, action: &str) -> NewAudit {
    NewAudit {
        project_id: None,
        actor: identity.to_string(),
        action: action.to_string(),
        object: format!("user {identity}"),
        source: source.to_string(),
        detail: Some("web UI".into()),
    }
}

pub(crate) async fn sign_in(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, PageError> {
    let peer = crate::auth::peer_of_request(&request);
    let source = peer.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    let secure = crate::auth::over_tls(&state, request.headers(), peer);
    let Form(form_data): Form<Vec<(String, String)>> =
        match Form::from_request(request, &state).await {
            Ok(f) => f,
            Err(e) => return Ok(e.into_response()),
        };
    let next = local_target(field(&form_data, "next")).to_string();
    let token = field(&form_data, "token").unwrap_or_default();
    match start_session(&state, token, secure).await {
        Ok((user, cookie)) => {
            // The API's guard audits `POST /session`; this path to the same session is too.
            if let Err(e) = state
                .store
                .record_audit(&audit(&user.name, &source, "session.create"))
                .await
            {
                tracing::error!(error = %e, "cannot record audit event");
            }
            let mut response = see_other(&next);
            if let Ok(value) = cookie.parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            Ok(response)
        }
        Err(e) if e.status.is_client_error() => Ok((
            e.status,
            form(&next, Some("That token is unknown or revoked.")),
        )
            .into_response()),
        Err(e) => Err(PageError(e)),
    }
}

/// The sign-out link's page: a GET must not change anything (a link on another site could
/// follow it), so the session ends only when this form is posted.
pub(crate) async fn sign_out_page(user: CurrentUser) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\">\
<title>Sign out · Nightshift</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
<body><main id=\"main\"><h1>Sign out</h1><p>Signed in as <strong>{}</strong>.</p>\
<form method=\"post\" action=\"/signout\" class=\"signin\">\
<button type=\"submit\">Sign out</button></form>\
<p><a href=\"/\">Back to the tasks</a></p></main></body></html>",
        esc(user.name())
    ))
}

pub(crate) async fn sign_out(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let expired = end_session(&state, &headers).await?;
    if let Err(e) = state
        .store
        .record_audit(&audit(user.name(), &user.source, "session.delete"))
        .await
    {
        tracing::error!(error = %e, "cannot record audit event");
    }
    let mut response = see_other("/signin");
    if let Ok(value) = expired.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            local_target(Some("/p/default/tasks?x=1")),
            "/p/default/tasks?x=1"
        );
        assert_eq!(local_target(Some("//evil.example/")), "/");
        assert_eq!(local_target(Some("https://evil.example/")), "/");
        assert_eq!(local_target(Some("/\\evil.example")), "/");
        assert_eq!(local_target(None), "/");
    }

    #[test]
    fn project_names_are_decoded() {
        assert_eq!(project_of("/p/my%20proj/tasks").as_deref(), Some("my proj"));
        assert_eq!(project_of("/p/default").as_deref(), Some("default"));
        assert_eq!(project_of("/static/app.css"), None);
    }
}
