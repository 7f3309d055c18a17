//! `POST /api/v1/webhooks/{forge}`: deliveries from GitHub, GitLab and Gitea/Forgejo. No
//! sign-in: the engine checks the forge's proof against the configured secret, and a genuine
//! delivery about a pull request Nightshift follows makes it poll that pull request now.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use nightshift_engine::telemetry::{self, DeliveryOutcome};
use tracing::Instrument;

use crate::auth::peer_of_request;
use crate::contract::{ErrorCode, WebhookAccepted};
use crate::{ApiError, AppState};

/// The most of one delivery the server reads. Deliveries about pull requests, CI and comments
/// are tens of KiB; GitHub's largest (pushes of many commits) are nothing the follower reads.
pub(crate) const MAX_DELIVERY_BYTES: usize = 1024 * 1024;

pub(super) async fn deliver(
    State(state): State<AppState>,
    Path(forge): Path<String>,
    request: Request,
) -> Result<(StatusCode, Json<WebhookAccepted>), ApiError> {
    // What the engine logs of the delivery says where it came from.
    let peer = peer_of_request(&request).map_or_else(|| "-".to_string(), |ip| ip.to_string());
    let span = tracing::info_span!("webhook", peer = %peer);
    let (parts, body) = request.into_parts();
    receive(state, &forge, parts.headers, body)
        .instrument(span)
        .await
}

async fn receive(
    state: AppState,
    forge: &str,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<WebhookAccepted>), ApiError> {
    let source = state.engine.webhook_source(forge)?;
    let too_large = || {
        telemetry::webhook_delivery(source.forge(), DeliveryOutcome::TooLarge);
        tracing::warn!(forge = source.forge(), "webhook delivery too large");
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!(
                "the delivery could not be read whole: it is larger than the {} KiB this server \
                 reads of one, or the connection broke off",
                MAX_DELIVERY_BYTES / 1024
            ),
        )
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    // Refused before a byte of it is read when the forge says how large it is.
    if announced.is_some_and(|n| n > MAX_DELIVERY_BYTES as u64) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, MAX_DELIVERY_BYTES)
        .await
        .map_err(|_| too_large())?;
    let receipt = state.engine.take_webhook(&source, &headers, &body).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(WebhookAccepted {
            event: receipt.event,
            pull_requests: receipt.pull_requests,
        }),
    ))
}
