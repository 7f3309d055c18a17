//! What every page shares: the frame (skip link, navigation, project, the bell, who is signed
//! in, the notice when runs are not confined), the error page, and the small helpers forms,
//! links and redirects need. Markup is written with `maud`, which escapes every value.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, PreEscaped, html};
use nightshift_core::{Millis, now_millis};

use crate::AppState;
use crate::auth::CurrentUser;
use crate::error::ApiError;

/// The doctype line every page starts with.
pub(crate) const DOCTYPE: PreEscaped<&str> = PreEscaped("<!doctype html>\n");

/// Drawn inline: an emoji needs a font the machine may not have.
const BELL_SVG: PreEscaped<&str> = PreEscaped(
    "<svg aria-hidden=\"true\" focusable=\"false\" width=\"16\" height=\"16\" viewBox=\"0 0 16 16\">\
<path fill=\"currentColor\" d=\"M8 16a2 2 0 0 0 2-2H6a2 2 0 0 0 2 2zm5-5V7a5 5 0 0 0-4-4.9V1a1 1 0 0 0-2 0v1.1A5 5 0 0 0 3 7v4l-2 2h14z\"/></svg>",
);

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
        project_base(&self.project)
    }
}

/// The base path of a project's pages.
pub(crate) fn project_base(project: &str) -> String {
    format!("/p/{}", url_component(project))
}

/// Which navigation entry is the current page.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Tasks,
    NewTask,
    Templates,
    Insights,
    Notifications,
}

/// The page frame: skip link, header with navigation, project (the switcher's place once
/// projects come with sign-in), notification bell and user, then `body` in `<main>`.
pub(crate) fn page(chrome: &Chrome, nav: Nav, title: &str, body: Markup) -> Markup {
    let base = chrome.base();
    let current = |target: Nav| (target == nav).then_some("page");
    let link = |target: Nav, href: String, label: &str| {
        html! { li { a href=(href) aria-current=[current(target)] { (label) } } }
    };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Nightshift" }
                link rel="stylesheet" href="/static/app.css";
                script src="/static/app.js" defer {}
            }
            body data-project=(chrome.project) data-base=(base) {
                a class="skip" href="#main" { "Skip to content" }
                header class="top" {
                    a class="brand" href={ (base) "/tasks" } { "Nightshift" }
                    nav aria-label="Main" {
                        ul {
                            (link(Nav::Tasks, format!("{base}/tasks"), "Tasks"))
                            (link(Nav::NewTask, format!("{base}/tasks/new"), "New task"))
                            (link(Nav::Templates, format!("{base}/templates"), "Templates"))
                            (link(Nav::Insights, format!("{base}/insights"), "Insights"))
                        }
                    }
                    div class="who" {
                        span class="project" title="Project" {
                            "Project: " strong { (chrome.project) }
                        }
                        a class="bell" id="bell" href={ (base) "/notifications" }
                            aria-label={ "Notifications, " (chrome.unread) " unread" }
                            aria-current=[current(Nav::Notifications)] {
                            (BELL_SVG)
                            span class="count" id="bell-count" data-count=(chrome.unread) {
                                (chrome.unread)
                            }
                        }
                        span class="user" title="Signed in as" { (chrome.user) }
                        a class="signout" href="/signout" { "Sign out" }
                    }
                }
                @if let Some(detail) = &chrome.unconfined {
                    div class="unconfined" role="note" id="unconfined" {
                        strong { "Runs on this server are not confined." } " " (detail)
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

/// A page outside any project (signing in and out): the stylesheet, a heading and `body`.
pub(crate) fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · Nightshift" }
                link rel="stylesheet" href="/static/app.css";
            }
            body { main id="main" { h1 { (title) } (body) } }
        }
    }
}

/// A form's error, announced and pointed at by the fields it is about.
pub(crate) fn form_error(error: Option<&str>) -> Markup {
    html! {
        @if let Some(error) = error {
            p class="error" role="alert" id="form-error" { (error) }
        }
    }
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

/// Escapes a value for a URL query component or path segment.
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
        let status = self.0.status;
        // `reported` logs a server error and keeps its internals out of the page.
        let message = self.0.reported().message;
        let page = html! {
            (PreEscaped("<!doctype html>"))
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "Error · Nightshift" }
                    link rel="stylesheet" href="/static/app.css";
                }
                body {
                    main id="main" {
                        h1 { (status) }
                        p class="error" role="alert" { (message) }
                        p { a href="/" { "Back to the tasks" } }
                    }
                }
            }
        };
        (status, page).into_response()
    }
}

/// A form shown again with what was typed and why it was refused.
pub(crate) fn refused(page: Markup) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, page).into_response()
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
    fn values_are_escaped_and_urls_encoded() {
        let chrome = Chrome {
            project: "default".into(),
            user: "<b>eve</b>".into(),
            unread: 2,
            unconfined: Some("bwrap is <missing> & \"so\"".into()),
        };
        let html = page(&chrome, Nav::Tasks, "<script>alert('x')</script>", html! {}).into_string();
        assert!(html.contains("<title>&lt;script&gt;alert('x')&lt;/script&gt; · Nightshift"));
        assert!(
            html.contains("<span class=\"user\" title=\"Signed in as\">&lt;b&gt;eve&lt;/b&gt;")
        );
        assert!(html.contains("bwrap is &lt;missing&gt; &amp; &quot;so&quot;"));
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("<li><a href=\"/p/default/tasks\" aria-current=\"page\">Tasks</a>"));
        assert_eq!(url_component("a b/ü"), "a%20b%2F%C3%BC");
    }
}
