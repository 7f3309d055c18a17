//! The credentials vault over HTTP: admins set and delete; nobody reads a secret back.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use nightshift_store::ForgeCredential;

use crate::AppState;
use crate::auth::{AuditNote, ProjectAccess};
use crate::contract::{CredentialList, CredentialView, ErrorCode};
use crate::error::ApiError;

const KINDS: &str = "github_app {app_id, installation_id, private_key}, github_token {token}, \
     gitlab_token {token}, gitea_token {token}, git {username, password}";

fn valid_host(host: &str) -> Result<&str, ApiError> {
    let ok = (1..=253).contains(&host.len())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c));
    if ok {
        Ok(host)
    } else {
        Err(ApiError::invalid(
            ErrorCode::InvalidHost,
            "host: a host name such as github.com or git.example.com:8443",
        ))
    }
}

pub async fn list(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
) -> Result<Json<CredentialList>, ApiError> {
    let list = state.store.credentials(access.project.id).await?;
    Ok(Json(CredentialList {
        credentials: list.iter().map(CredentialView::new).collect(),
    }))
}

pub async fn set(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    Path((_, host)): Path<(String, String)>,
    request: Result<Json<ForgeCredential>, JsonRejection>,
) -> Result<Response, ApiError> {
    let host = valid_host(host.trim())?.to_ascii_lowercase();
    // serde's messages quote the offending value, which here may be the secret: name the
    // field only.
    let credential = request.map(|Json(c)| c).map_err(|rejection| {
        let status = rejection.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
            return super::tasks::body::<()>(Err(rejection))
                .err()
                .unwrap_or_else(|| {
                    ApiError::invalid(ErrorCode::InvalidCredential, "invalid credential")
                });
        }
        let text = rejection.body_text();
        let detail = text
            .strip_prefix("Failed to deserialize the JSON body into the target type: ")
            .and_then(|rest| rest.split(':').next())
            .filter(|field| !field.contains(' ') && !field.is_empty())
            .map(|field| format!("check field `{field}`; "))
            .unwrap_or_default();
        ApiError::invalid(
            ErrorCode::InvalidCredential,
            format!("invalid credential: {detail}kinds: {KINDS}"),
        )
    })?;
    credential.validate().map_err(|reason| {
        ApiError::invalid(
            ErrorCode::InvalidCredential,
            format!("invalid credential: {reason}"),
        )
    })?;
    let info = state
        .store
        .set_credential(
            &state.secret_key,
            access.project.id,
            &host,
            &credential,
            &access.user.user.name,
        )
        .await?;
    let mut response = Json(CredentialView::new(&info)).into_response();
    response.extensions_mut().insert(AuditNote {
        object: Some(format!("credential {host}")),
        detail: Some(format!("{} {}", info.kind, info.fingerprint)),
        ..Default::default()
    });
    Ok(response)
}

pub async fn remove(
    State(state): State<AppState>,
    Extension(access): Extension<ProjectAccess>,
    Path((_, host)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let host = host.trim().to_ascii_lowercase();
    if !state
        .store
        .delete_credential(access.project.id, &host)
        .await?
    {
        return Err(ApiError::not_found(format!("no credential for {host}")));
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(AuditNote {
        object: Some(format!("credential {host}")),
        ..Default::default()
    });
    Ok(response)
}
