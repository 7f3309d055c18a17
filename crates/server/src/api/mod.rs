//! The REST API under `/api/v1`. Every task route is scoped by project.

mod notifications;
mod stream;
pub(crate) mod tasks;
pub(crate) mod templates;

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route(
            "/projects/{project}/tasks",
            get(tasks::list).post(tasks::create),
        )
        .route("/projects/{project}/tasks/{id}", get(tasks::show))
        .route("/projects/{project}/tasks/{id}/cancel", post(tasks::cancel))
        .route("/projects/{project}/tasks/{id}/retry", post(tasks::retry))
        .route(
            "/projects/{project}/tasks/{id}/runs/{number}/events",
            get(tasks::events),
        )
        .route(
            "/projects/{project}/tasks/{id}/runs/{number}/change",
            get(tasks::change),
        )
        .route(
            "/projects/{project}/tasks/{id}/runs/{number}/stream",
            get(stream::follow),
        )
        .merge(templates_and_notifications())
}

fn templates_and_notifications() -> Router<AppState> {
    Router::new()
        .route(
            "/projects/{project}/templates",
            get(templates::list).post(templates::create),
        )
        .route(
            "/projects/{project}/templates/from-task",
            post(templates::from_task),
        )
        .route(
            "/projects/{project}/templates/{name}",
            get(templates::show).put(templates::update),
        )
        .route(
            "/projects/{project}/templates/{name}/tasks",
            post(templates::instantiate),
        )
        .route(
            "/projects/{project}/notifications",
            get(notifications::list),
        )
        .route(
            "/projects/{project}/notifications/read-all",
            post(notifications::read_all),
        )
        .route(
            "/projects/{project}/notifications/{id}/read",
            post(notifications::read),
        )
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}
