//! This node: whether it is alive and how runs are confined here, and its metrics.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::contract::Health;
use crate::error::ApiError;

/// The content type of Prometheus' text exposition format.
pub(crate) const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Liveness, whether runs here are confined (an unconfined server should be noticed), how they
/// get their checkout (warm bases with an overlay, or worktrees), and the toolchains they can use.
pub(super) async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        confinement: state.engine.confinement(),
        workspaces: state.engine.workspaces().await,
        toolchains: state.engine.toolchains(),
    })
}

/// What this node's engine recorded, with the queue as the store has it now.
pub(super) async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = nightshift_engine::telemetry::render(&state.store).await?;
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response())
}

/// A worker's own metrics listener (`nightshift worker --metrics-listen`): `GET /metrics` and
/// nothing else, without sign-in — the operator chooses who can reach the address. Binds now
/// (a taken address is an error at once) and serves when the returned future is awaited.
pub async fn serve_metrics(
    addr: std::net::SocketAddr,
    store: nightshift_store::Store,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<impl Future<Output = Result<(), crate::ServerError>>, crate::ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::ServerError::Bind { addr, source })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || async move {
            match nightshift_engine::telemetry::render(&store).await {
                Ok(text) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], text).into_response(),
                Err(e) => ApiError::from(e).into_response(),
            }
        }),
    );
    tracing::info!(%addr, "metrics listening");
    Ok(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(crate::ServerError::Serve)
    })
}
