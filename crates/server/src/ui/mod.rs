//! The web UI: server-rendered pages under `/p/{project}/…` (written with `maud`, which escapes
//! every value), live fragments the small script swaps in without reloads, and the embedded
//! static assets. No build step: CSS and JS are plain files compiled into the binary. The page
//! table routes every page and form through the same guard as the API.

mod insights;
mod layout;
mod notifications;
mod session;
mod tasks;
mod templates;

pub(crate) use layout::PageError;

use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{MethodRouter, get, post};
use maud::{PreEscaped, html};
use nightshift_core::{DEFAULT_PROJECT, Role};

use crate::AppState;
use crate::api::RouteSpec;
use crate::auth::Access;
use layout::{see_other, url_component};

const APP_CSS: &str = include_str!("static/app.css");
const APP_JS: &str = include_str!("static/app.js");

/// One page or form of the web UI. A form performs a route of the API's table and shares its
/// access and audit action, so a change is checked and recorded alike through either door.
#[derive(Debug, Clone)]
pub struct PageRoute {
    pub method: Method,
    pub path: &'static str,
    /// The API route (method and path under `/api/v1`) this form performs; `None` for a page,
    /// which reads only.
    pub performs: Option<(Method, &'static str)>,
}

fn shows(path: &'static str) -> PageRoute {
    PageRoute {
        method: Method::GET,
        path,
        performs: None,
    }
}

fn form(path: &'static str, method: Method, api_path: &'static str) -> PageRoute {
    PageRoute {
        method: Method::POST,
        path,
        performs: Some((method, api_path)),
    }
}

/// Every page and form with its handler.
fn table() -> Vec<(PageRoute, MethodRouter<AppState>)> {
    use Method as M;
    vec![
        (shows("/"), get(home)),
        (shows("/signin"), get(session::page)),
        (form("/signin", M::POST, "/session"), post(session::sign_in)),
        (shows("/signout"), get(session::sign_out_page)),
        (
            form("/signout", M::DELETE, "/session"),
            post(session::sign_out),
        ),
        (shows("/p/{project}/tasks"), get(tasks::list)),
        (shows("/p/{project}/insights"), get(insights::show)),
        (
            form("/p/{project}/tasks", M::POST, "/projects/{project}/tasks"),
            post(tasks::create),
        ),
        (shows("/p/{project}/tasks/rows"), get(tasks::rows)),
        (shows("/p/{project}/tasks/new"), get(tasks::new_form)),
        (shows("/p/{project}/tasks/{id}"), get(tasks::detail)),
        (shows("/p/{project}/tasks/{id}/live"), get(tasks::live)),
        (
            form(
                "/p/{project}/tasks/{id}/cancel",
                M::POST,
                "/projects/{project}/tasks/{id}/cancel",
            ),
            post(tasks::cancel),
        ),
        (
            form(
                "/p/{project}/tasks/{id}/retry",
                M::POST,
                "/projects/{project}/tasks/{id}/retry",
            ),
            post(tasks::retry),
        ),
        (
            form(
                "/p/{project}/tasks/{id}/fix-ci",
                M::POST,
                "/projects/{project}/tasks/{id}/fix-ci",
            ),
            post(tasks::fix_ci),
        ),
        (
            form(
                "/p/{project}/tasks/{id}/rebase",
                M::POST,
                "/projects/{project}/tasks/{id}/rebase",
            ),
            post(tasks::rebase),
        ),
        (
            form(
                "/p/{project}/tasks/{id}/address-review",
                M::POST,
                "/projects/{project}/tasks/{id}/address-review",
            ),
            post(tasks::address_review),
        ),
        (shows("/p/{project}/templates"), get(templates::list)),
        (
            form(
                "/p/{project}/templates",
                M::POST,
                "/projects/{project}/templates",
            ),
            post(templates::create),
        ),
        (
            shows("/p/{project}/templates/new"),
            get(templates::new_form),
        ),
        (
            shows("/p/{project}/templates/from-task"),
            get(templates::from_task_form),
        ),
        (
            form(
                "/p/{project}/templates/from-task",
                M::POST,
                "/projects/{project}/templates/from-task",
            ),
            post(templates::from_task),
        ),
        (
            shows("/p/{project}/templates/{name}"),
            get(templates::detail),
        ),
        (
            shows("/p/{project}/templates/{name}/edit"),
            get(templates::edit_form),
        ),
        (
            form(
                "/p/{project}/templates/{name}/edit",
                M::PUT,
                "/projects/{project}/templates/{name}",
            ),
            post(templates::edit),
        ),
        (
            shows("/p/{project}/notifications"),
            get(notifications::list),
        ),
        (
            form(
                "/p/{project}/notifications/read-all",
                M::POST,
                "/projects/{project}/notifications/read-all",
            ),
            post(notifications::read_all),
        ),
        // Following an old link changes nothing; reading takes the form below.
        (
            shows("/p/{project}/notifications/{id}"),
            get(notifications::show),
        ),
        (
            form(
                "/p/{project}/notifications/{id}",
                M::POST,
                "/projects/{project}/notifications/{id}/read",
            ),
            post(notifications::open),
        ),
    ]
}

/// The pages and forms without handlers.
pub fn page_table() -> Vec<PageRoute> {
    table().into_iter().map(|(route, _)| route).collect()
}

/// A page's access: the sign-in form is for anyone, the rest for signed-in people, under
/// `/p/{project}/` with the viewer role.
pub(crate) fn page_spec(method: Method, path: &'static str, access: Access) -> RouteSpec {
    RouteSpec {
        method,
        path,
        access,
        summary: "a page of the web UI",
        action: None,
        example: None,
        body: None,
        body_optional: false,
        query: None,
        answer: None,
    }
}

/// What guards the page or form axum matched: the API route a form performs, else the page's
/// own access. `None` for an address no page answers.
pub(crate) fn spec_for(method: &Method, template: &str) -> Option<RouteSpec> {
    static TABLE: std::sync::OnceLock<Vec<PageRoute>> = std::sync::OnceLock::new();
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let route = TABLE
        .get_or_init(page_table)
        .iter()
        .find(|r| r.method == *method && r.path == template)?;
    Some(match &route.performs {
        Some((method, path)) => crate::api::spec_for(method, path)?.clone(),
        None => {
            let access = if route.path == "/signin" {
                Access::Public
            } else if route.path.starts_with("/p/{project}/") {
                Access::Project(Role::Viewer)
            } else {
                Access::SignedIn
            };
            page_spec(route.method.clone(), route.path, access)
        }
    })
}

pub fn routes(state: AppState) -> Router<AppState> {
    let pages = table()
        .into_iter()
        .fold(Router::new(), |router, (route, handler)| {
            router.route(route.path, handler)
        })
        // The route table decides who may see each page and post each form, and audits forms
        // as the API routes they perform.
        .layer(axum::middleware::from_fn_with_state(
            state,
            crate::auth::page_guard,
        ));
    Router::new()
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .merge(pages)
}

/// Where a browser without a session goes: the sign-in form, with the way back in `next`.
/// After a refused POST, coming back means reloading the page the form was on.
pub(crate) fn to_sign_in(method: &Method, back: &str) -> Response {
    let back = if *method == Method::GET { back } else { "/" };
    see_other(&format!("/signin?next={}", url_component(back)))
}

async fn home() -> Redirect {
    Redirect::to(&format!("/p/{DEFAULT_PROJECT}/tasks"))
}

async fn css() -> impl IntoResponse {
    asset("text/css; charset=utf-8", APP_CSS)
}

async fn js() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", APP_JS)
}

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            // Assets change only with the binary; a short cache keeps upgrades visible.
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// Refuses state-changing requests whose `Origin` (or `Sec-Fetch-Site`) says they come from
/// another site. Together with SameSite session cookies this keeps forms CSRF-safe without
/// per-form tokens; requests without either header (scripts, the CLI) carry no ambient
/// browser credentials and pass.
pub(crate) async fn same_origin(request: Request, next: Next) -> Response {
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let headers = request.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return forbidden();
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest.trim_end_matches('/'));
        if host.is_none() || origin_host != host {
            return forbidden();
        }
    }
    next.run(request).await
}

fn forbidden() -> Response {
    let page = html! {
        (PreEscaped("<!doctype html>"))
        title { "Forbidden" }
        p { "Cross-site form submissions are refused." }
    };
    (StatusCode::FORBIDDEN, page).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A form that named a route the API does not have would be guarded as a mere page.
    #[test]
    fn every_form_performs_an_audited_api_route() {
        for route in page_table() {
            let Some((method, path)) = &route.performs else {
                assert_eq!(
                    route.method,
                    Method::GET,
                    "{} changes something",
                    route.path
                );
                continue;
            };
            let api = crate::api::spec_for(method, path).unwrap_or_else(|| {
                panic!("{} performs {method} {path}, not in the API", route.path)
            });
            assert!(
                api.action.is_some(),
                "{method} {path} records no audit action"
            );
            let guarded = spec_for(&route.method, route.path).map(|s| s.action);
            assert_eq!(guarded, Some(api.action), "{}", route.path);
        }
    }
}
