//! The REST API under `/api/v1`. Every task route is scoped by project.

mod stream;
mod tasks;

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
}

async fn health() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}
