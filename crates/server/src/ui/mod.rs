//! The web UI: server-rendered pages under `/p/{project}/…`, live fragments the small script
//! swaps in without reloads, and the embedded static assets. No build step: CSS and JS are
//! plain files compiled into the binary.

mod notifications;
mod review;
mod session;
mod tasks;
mod templates;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use nightshift_core::{DEFAULT_PROJECT, Millis, now_millis};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::ApiError;

const APP_CSS: &str = include_str!("static/app.css");
const APP_JS: &str = include_str!("static/app.js");
/// Drawn inline: an emoji needs a font the machine may not have.
const BELL_SVG: &str = "<svg aria-hidden=\"true\" focusable=\"false\" width=\"16\" height=\"16\" viewBox=\"0 0 16 16\">\
<path fill=\"currentColor\" d=\"M8 16a2 2 0 0 0 2-2H6a2 2 0 0 0 2 2zm5-5V7a5 5 0 0 0-4-4.9V1a1 1 0 0 0-2 0v1.1A5 5 0 0 0 3 7v4l-2 2h14z\"/></svg>";

pub fn routes(state: AppState) -> Router<AppState> {
    let pages = Router::new()
        .route("/p/{project}/tasks", get(tasks::list).post(tasks::create))
        .route("/p/{project}/tasks/rows", get(tasks::rows))
        .route("/p/{project}/tasks/new", get(tasks::new_form))
        .route("/p/{project}/tasks/{id}", get(tasks::detail))
        .route("/p/{project}/tasks/{id}/live", get(tasks::live))
        .route(
            "/p/{project}/tasks/{id}/cancel",
            axum::routing::post(tasks::cancel),
        )
        .route(
            "/p/{project}/tasks/{id}/retry",
            axum::routing::post(tasks::retry),
        )
        .route(
            "/p/{project}/templates",
            get(templates::list).post(templates::create),
        )
        .route("/p/{project}/templates/new", get(templates::new_form))
        .route(
            "/p/{project}/templates/from-task",
            get(templates::from_task_form).post(templates::from_task),
        )
        .route("/p/{project}/templates/{name}", get(templates::detail))
        .route(
            "/p/{project}/templates/{name}/edit",
            get(templates::edit_form).post(templates::edit),
        )
        .route("/p/{project}/notifications", get(notifications::list))
        .route(
            "/p/{project}/notifications/read-all",
            axum::routing::post(notifications::read_all),
        )
        // Forms change state; `router` refuses them when they come from another site (CSRF).
        .route(
            "/p/{project}/notifications/{id}",
            get(notifications::show).post(notifications::open),
        )
        .route("/", get(home))
        .route(
            "/signout",
            get(session::sign_out_page).post(session::sign_out),
        )
        // Every page needs a signed-in user with a role in the page's project.
        .layer(axum::middleware::from_fn_with_state(
            state,
            session::require_user,
        ));
    Router::new()
        .route("/signin", get(session::page).post(session::sign_in))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .merge(pages)
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
    (
        StatusCode::FORBIDDEN,
        Html("<!doctype html><title>Forbidden</title><p>Cross-site form submissions are refused."),
    )
        .into_response()
}

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a value for a URL query component.
pub(crate) fn url_component(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// "3m ago", as lists show ages.
pub(crate) fn age(at: Millis) -> String {
    let secs = ((now_millis() - at) / 1000).max(0);
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// What every page needs to know about who is looking and where.
pub(crate) struct Chrome {
    pub project: String,
    pub user: String,
    pub unread: i64,
    /// Why runs here are not confined, shown on every page; `None` when they are.
    pub unconfined: Option<String>,
}

impl Chrome {
    pub async fn load(
        state: &AppState,
        project: &str,
        user: &CurrentUser,
    ) -> Result<(Chrome, nightshift_core::Project), PageError> {
        let project = state.project(project).await?;
        let unread = state
            .store
            .unread_notifications(project.id, user.name())
            .await?;
        Ok((
            Chrome {
                project: project.name.clone(),
                user: user.name().to_string(),
                unread,
                unconfined: {
                    let status = state.engine.confinement();
                    (!status.confined).then(|| status.detail.clone())
                },
            },
            project,
        ))
    }

    /// The base path of this project's pages.
    pub fn base(&self) -> String {
        format!("/p/{}", url_component(&self.project))
    }
}

/// Which navigation entry is the current page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Tasks,
    NewTask,
    Templates,
    Notifications,
}

/// The page frame: skip link, header with navigation, project (the switcher's place once
/// projects come with sign-in), notification bell and user, then `body` in `<main>`.
pub(crate) fn page(chrome: &Chrome, nav: Nav, title: &str, body: &str) -> Html<String> {
    let base = chrome.base();
    let link = |target: Nav, href: String, label: &str| {
        let current = if target == nav {
            " aria-current=\"page\""
        } else {
            ""
        };
        format!("<li><a href=\"{href}\"{current}>{label}</a></li>")
    };
    let bell_label = format!("Notifications, {} unread", chrome.unread);
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"color-scheme\" content=\"light dark\">\
<title>{title} · Nightshift</title><link rel=\"stylesheet\" href=\"/static/app.css\">\
<script src=\"/static/app.js\" defer></script></head>\
<body data-project=\"{project_attr}\" data-base=\"{base}\">\
<a class=\"skip\" href=\"#main\">Skip to content</a>\
<header class=\"top\"><a class=\"brand\" href=\"{base}/tasks\">Nightshift</a>\
<nav aria-label=\"Main\"><ul>{tasks}{new}{templates}</ul></nav>\
<div class=\"who\"><span class=\"project\" title=\"Project\">Project: <strong>{project}</strong></span>\
<a class=\"bell\" id=\"bell\" href=\"{base}/notifications\" aria-label=\"{bell_label}\"{bell_current}>\
{BELL_SVG}<span class=\"count\" id=\"bell-count\" data-count=\"{unread}\">{unread}</span></a>\
<span class=\"user\" title=\"Signed in as\">{user}</span>\
<a class=\"signout\" href=\"/signout\">Sign out</a></div></header>\
{notice}<main id=\"main\" tabindex=\"-1\"><h1>{title}</h1>{body}</main></body></html>",
        notice = match &chrome.unconfined {
            Some(detail) => format!(
                "<div class=\"unconfined\" role=\"note\" id=\"unconfined\"><strong>Runs on this server are not \
confined.</strong> {}</div>",
                esc(detail)
            ),
            None => String::new(),
        },
        title = esc(title),
        project = esc(&chrome.project),
        project_attr = esc(&chrome.project),
        tasks = link(Nav::Tasks, format!("{base}/tasks"), "Tasks"),
        new = link(Nav::NewTask, format!("{base}/tasks/new"), "New task"),
        templates = link(Nav::Templates, format!("{base}/templates"), "Templates"),
        bell_current = if nav == Nav::Notifications {
            " aria-current=\"page\""
        } else {
            ""
        },
        unread = chrome.unread,
        user = esc(&chrome.user),
    ))
}

/// A failed page request: the API's error, shown as a page with the same status.
pub(crate) struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        PageError(e)
    }
}

impl From<nightshift_store::StoreError> for PageError {
    fn from(e: nightshift_store::StoreError) -> Self {
        PageError(e.into())
    }
}

impl From<nightshift_core::CoreError> for PageError {
    fn from(e: nightshift_core::CoreError) -> Self {
        PageError(e.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.status.is_server_error() {
            tracing::error!(code = e.code, message = %e.message, "page failed");
        }
        (
            e.status,
            Html(format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Error · Nightshift</title>\
<link rel=\"stylesheet\" href=\"/static/app.css\"></head><body><main id=\"main\"><h1>{}</h1>\
<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/\">Back to the tasks</a></p></main></body></html>",
                e.status,
                esc(&e.message)
            )),
        )
            .into_response()
    }
}

/// A form shown again with what was typed and why it was refused.
pub(crate) fn refused(html: Html<String>) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, html).into_response()
}

/// `303 See Other` to a page, after a form succeeded.
pub(crate) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// The value of a form field (the last one, as browsers send them in order).
pub(crate) fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A form field trimmed, `None` when empty.
pub(crate) fn filled<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    field(form, name).map(str::trim).filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(url_component("a b/ü"), "a%20b%2F%C3%BC");
    }
}
