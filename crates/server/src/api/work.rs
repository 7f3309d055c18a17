//! The routes of a project's work: its runs, tasks, templates and notifications.

use axum::http::{Method, StatusCode};
use axum::routing::{MethodRouter, get, post, put};

use super::route::{change, spec};
use super::{EDITOR, RouteSpec, VIEWER};
use super::{audit, notifications, stream, tasks, templates};
use crate::AppState;
use crate::contract as c;

pub(super) fn routes() -> Vec<(RouteSpec, MethodRouter<AppState>)> {
    use Method as M;
    vec![
        (
            spec(
                M::GET,
                "/projects/{project}/runs",
                VIEWER,
                "Runs, filtered by status, newest first",
            )
            .query::<c::RunsQuery>()
            .answers::<c::RunList>(),
            get(audit::runs),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}/tasks",
                VIEWER,
                "Tasks with filters and a stable cursor",
            )
            .query::<c::TaskListQuery>()
            .answers::<c::TaskList>(),
            get(tasks::list),
        ),
        (
            change(
                M::POST,
                "/projects/{project}/tasks",
                EDITOR,
                "task.create",
                "Create a task; its first run is queued",
                Some(r#"{"repo":"https://example.com/repo.git","instructions":"Bump serde"}"#),
            )
            .body::<c::CreateTask>()
            .creates::<c::TaskView>(),
            post(tasks::create),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}/tasks/{id}",
                VIEWER,
                "A task with all its runs",
            )
            .answers::<c::TaskView>(),
            get(tasks::show),
        ),
        (
            change(
                M::POST,
                "/projects/{project}/tasks/{id}/cancel",
                EDITOR,
                "task.cancel",
                "Cancel the task's latest run",
                None,
            )
            .answers::<c::Cancelled>()
            .or_status(StatusCode::ACCEPTED),
            post(tasks::cancel),
        ),
        (
            change(
                M::POST,
                "/projects/{project}/tasks/{id}/retry",
                EDITOR,
                "task.retry",
                "Start a new run of an ended task",
                None,
            )
            .creates::<c::TaskView>(),
            post(tasks::retry),
        ),
        (
            change(
                M::POST,
                "/projects/{project}/tasks/{id}/fix-ci",
                EDITOR,
                "task.fix_ci",
                "Start a run that fixes the failing CI of the task's open pull request",
                None,
            )
            .creates::<c::TaskView>(),
            post(tasks::fix_ci),
        ),
        (
            change(
                M::POST,
                "/projects/{project}/tasks/{id}/address-review",
                EDITOR,
                "task.address_review",
                "Start a run that addresses the review comments on the task's open pull request, \
                 with extra instructions",
                Some(r#"{"instructions":"Keep the old name as a deprecated alias"}"#),
            )
            .optional_body::<c::AddressReview>()
            .creates::<c::TaskView>(),
            post(tasks::address_review),
        ),
        (
            change(
                M::POST,
                "/projects/{project}/tasks/{id}/rebase",
                EDITOR,
                "task.rebase",
                "Start a run that rebases the task's open pull request onto its base branch \
                 (the agent resolves conflicts)",
                None,
            )
            .creates::<c::TaskView>(),
            post(tasks::rebase),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}/tasks/{id}/runs/{number}/events",
                VIEWER,
                "A run's events, after a sequence number",
            )
            .query::<c::EventsQuery>()
            .answers::<c::EventsPage>(),
            get(tasks::events),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}/tasks/{id}/runs/{number}/change",
                VIEWER,
                "A run's generated change",
            )
            .answers::<nightshift_core::GeneratedChange>(),
            get(tasks::change),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}/tasks/{id}/runs/{number}/stream",
                VIEWER,
                "A run's events live (SSE)",
            )
            .query::<c::FollowQuery>()
            .streams(),
            get(stream::follow),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}/templates",
                VIEWER,
                "Templates with their use count and success rate",
            )
            .answers::<c::TemplateList>(),
            get(templates::list),
        ),
        (
            change(
                M::POST,
                "/projects/{project}/templates",
                EDITOR,
                "template.create",
                "Create a template (version 1)",
                Some(r#"{"name":"bump-deps","instructions":"Bump the dependencies"}"#),
            )
            .body::<nightshift_core::TemplateSpec>()
            .creates::<c::TemplateView>(),
            post(templates::create),
        ),
        (
            change(
                M::POST,
                "/projects/{project}/templates/from-task",
                EDITOR,
                "template.from_task",
                "Save a succeeded task as a template, marking parts of its instructions as parameters",
                Some(r#"{"task_id":1,"name":"from-task"}"#),
            )
            .body::<c::FromTask>()
            .creates::<c::TemplateView>(),
            post(templates::from_task),
        ),
        (
            spec(
                M::GET,
                "/projects/{project}/templates/{name}",
                VIEWER,
                "A template version with its versions and usage history",
            )
            .query::<c::TemplateQuery>()
            .answers::<c::TemplateDetail>(),
            get(templates::show),
        ),
        (
            change(
                M::PUT,
                "/projects/{project}/templates/{name}",
                EDITOR,
                "template.update",
                "Edit a template: stores the next version",
                Some(r#"{"name":"bump-deps","instructions":"Bump every dependency"}"#),
            )
            .body::<nightshift_core::TemplateSpec>()
            .answers::<c::TemplateView>(),
            put(templates::update),
        ),
        (
            change(
                M::POST,
                "/projects/{project}/templates/{name}/tasks",
                EDITOR,
                "template.instantiate",
                "Create a task from a template with parameter values",
                Some(r#"{"repo":"https://example.com/repo.git","params":{}}"#),
            )
            .body::<c::Instantiate>()
            .creates::<c::TaskView>(),
            post(templates::instantiate),
        ),
        (
            // Any member: notifications are the caller's own, so viewing needs no more.
            spec(
                M::GET,
                "/projects/{project}/notifications",
                VIEWER,
                "Your notifications in this project, with the unread count",
            )
            .query::<c::NotificationQuery>()
            .answers::<c::NotificationList>(),
            get(notifications::list),
        ),
        (
            change(
                M::POST,
                "/projects/{project}/notifications/read-all",
                VIEWER,
                "notification.read_all",
                "Mark all your notifications in this project read",
                None,
            )
            .answers::<c::MarkedRead>(),
            post(notifications::read_all),
        ),
        (
            change(
                M::POST,
                "/projects/{project}/notifications/{id}/read",
                VIEWER,
                "notification.read",
                "Mark one of your notifications read",
                None,
            )
            .answers::<c::NotificationView>(),
            post(notifications::read),
        ),
    ]
}
