//! Sign-in for the pages: the sign-in form (an API token in, the API's session cookie out) and
//! sign-out. The page guard keeps every other page behind sign-in and project roles.

use axum::Form;
use axum::extract::{FromRequest, Query, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{PageError, bare_page, field, see_other};
use crate::AppState;
use crate::api::tokens::{end_session, start_session};
use crate::auth::{AuditNote, CurrentUser};

/// Where to go after signing in: only a path on this site, so the form cannot be used to
/// bounce someone to another site (an open redirect).
fn local_target(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/",
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SignInQuery {
    next: Option<String>,
}

fn form(next: &str, error: Option<&str>) -> Markup {
    bare_page(
        "Sign in",
        html! {
            @if let Some(error) = error {
                p class="error" role="alert" id="signin-error" { (error) }
            }
            form method="post" action="/signin" class="signin" {
                input type="hidden" name="next" value=(next);
                label for="token" { "API token" }
                input id="token" name="token" type="password" autocomplete="current-password"
                    required aria-describedby="token-help";
                p id="token-help" class="help" {
                    "Create one with " code { "nightshift token create" } "; the first admin's \
                     token is in " code { "admin.token" } " in the server's data directory."
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

pub(crate) async fn page(Query(query): Query<SignInQuery>) -> Markup {
    form(local_target(query.next.as_deref()), None)
}

pub(crate) async fn sign_in(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, PageError> {
    let peer = crate::auth::peer_of_request(&request);
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
            let mut response = see_other(&next);
            if let Ok(value) = cookie.parse() {
                response.headers_mut().insert(header::SET_COOKIE, value);
            }
            // Signed in only now: the request carried no actor yet.
            let note = AuditNote {
                actor: Some(user.name.clone()),
                ..AuditNote::user(&user.name)
            };
            Ok(note.attach(response))
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
pub(crate) async fn sign_out_page(user: CurrentUser) -> Markup {
    bare_page(
        "Sign out",
        html! {
            p { "Signed in as " strong { (user.name()) } "." }
            form method="post" action="/signout" class="signin" {
                button type="submit" { "Sign out" }
            }
            p { a href="/" { "Back to the tasks" } }
        },
    )
}

pub(crate) async fn sign_out(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let expired = end_session(&state, &headers).await?;
    let mut response = see_other("/signin");
    if let Ok(value) = expired.parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(AuditNote::user(user.name()).attach(response))
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
}
