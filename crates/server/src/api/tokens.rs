//! Sign-in and people: sessions, API tokens, users.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use nightshift_core::format_timestamp;
use nightshift_store::ApiToken;

use super::tasks::body;
use crate::AppState;
use crate::auth::{AuditNote, CurrentUser, OverTls, SESSION_COOKIE};
use crate::contract::{
    CreateToken, CreateUser, ErrorCode, Me, ProjectRole, SignIn, SignedIn, TokenCreated, TokenList,
    TokenView, UserCreated, UserList, UserView,
};
use crate::error::ApiError;

fn token_view(token: &ApiToken) -> TokenView {
    TokenView {
        id: token.id,
        name: token.name.clone(),
        prefix: token.prefix.clone(),
        created_at: format_timestamp(token.created_at),
        last_used_at: token.last_used_at.map(format_timestamp),
        revoked_at: token.revoked_at.map(format_timestamp),
    }
}

/// A person's name: what audit events, `created_by` and member lists show.
pub(crate) fn valid_user_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || "._@+-".contains(c));
    if ok {
        Ok(name)
    } else {
        Err(ApiError::invalid(
            ErrorCode::InvalidName,
            "name: use 1 to 100 letters, digits or . _ @ + -",
        ))
    }
}

/// Checks an API token and opens a browser session for its user, bound to that token (it ends
/// when the token is revoked): the user and the `Set-Cookie` value. Shared by the API's
/// `POST /session` and the sign-in page, so both set the very same cookie. `secure` when the
/// browser reached the server over TLS.
pub(crate) async fn start_session(
    state: &AppState,
    token: &str,
    secure: bool,
) -> Result<(nightshift_core::User, String), ApiError> {
    let ttl = state.config.auth.session_ttl;
    let (user, session) = state
        .store
        .create_session(token.trim(), ttl.as_millis() as i64)
        .await?
        .ok_or_else(|| crate::auth::unauthenticated("the API token is unknown or revoked"))?;
    let cookie = format!(
        "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        ttl.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    Ok((user, cookie))
}

/// Ends the request's session, if any: the `Set-Cookie` value that clears the cookie.
pub(crate) async fn end_session(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(session) = crate::auth::identity_session(headers) {
        state.store.delete_session(session).await?;
    }
    Ok(format!(
        "{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
    ))
}

pub async fn sign_in(
    State(state): State<AppState>,
    OverTls(secure): OverTls,
    request: Result<Json<SignIn>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let (user, cookie) = start_session(&state, &request.token, secure).await?;
    let mut response = (
        StatusCode::CREATED,
        [(header::SET_COOKIE, cookie)],
        Json(SignedIn {
            user: user.name.clone(),
        }),
    )
        .into_response();
    // Signed in only now: the request carried no actor yet.
    response.extensions_mut().insert(AuditNote {
        actor: Some(user.name.clone()),
        ..AuditNote::user(&user.name)
    });
    Ok(response)
}

pub async fn sign_out(
    State(state): State<AppState>,
    user: CurrentUser,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let expired = end_session(&state, &headers).await?;
    Ok(AuditNote::user(user.name())
        .attach((StatusCode::NO_CONTENT, [(header::SET_COOKIE, expired)])))
}

pub async fn me(State(state): State<AppState>, user: CurrentUser) -> Result<Json<Me>, ApiError> {
    let projects = state
        .store
        .projects_for(&user.user, &user.groups)
        .await?
        .into_iter()
        .map(|(p, role)| ProjectRole { name: p.name, role })
        .collect();
    Ok(Json(Me {
        name: user.user.name,
        email: user.user.email,
        server_admin: user.user.server_admin,
        groups: user.groups,
        projects,
    }))
}

pub async fn list(
    State(state): State<AppState>,
    user: CurrentUser,
) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.store.tokens(user.user.id).await?;
    Ok(Json(TokenList {
        tokens: tokens.iter().map(token_view).collect(),
    }))
}

pub async fn create(
    State(state): State<AppState>,
    user: CurrentUser,
    request: Result<Json<CreateToken>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let name = request.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(ApiError::invalid(
            ErrorCode::InvalidName,
            "name: 1 to 100 characters",
        ));
    }
    nightshift_core::single_line("token name", name)?;
    let (token, secret) = state.store.create_token(user.user.id, name).await?;
    let view = TokenCreated {
        info: token_view(&token),
        token: secret,
    };
    let mut response = (StatusCode::CREATED, Json(view)).into_response();
    response.extensions_mut().insert(AuditNote {
        object: Some(format!("token {} ({})", token.id, token.prefix)),
        ..Default::default()
    });
    Ok(response)
}

pub async fn revoke(
    State(state): State<AppState>,
    user: CurrentUser,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    if !state.store.revoke_token(user.user.id, id).await? {
        return Err(ApiError::not_found(format!("token {id} not found")));
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(AuditNote {
        object: Some(format!("token {id}")),
        ..Default::default()
    });
    Ok(response)
}

pub async fn users(State(state): State<AppState>) -> Result<Json<UserList>, ApiError> {
    let users = state
        .store
        .users()
        .await?
        .into_iter()
        .map(|u| UserView {
            name: u.name,
            email: u.email,
            server_admin: u.server_admin,
            created_at: format_timestamp(u.created_at),
        })
        .collect();
    Ok(Json(UserList { users }))
}

pub async fn create_user(
    State(state): State<AppState>,
    request: Result<Json<CreateUser>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(request)?;
    let name = valid_user_name(&request.name)?;
    if let Some(email) = &request.email {
        nightshift_core::single_line("email", email)?;
    }
    let user = state
        .store
        .create_user(name, request.email.as_deref(), request.server_admin)
        .await?;
    let (_, secret) = state.store.create_token(user.id, "first token").await?;
    let mut response = (
        StatusCode::CREATED,
        Json(UserCreated {
            name: user.name.clone(),
            email: user.email.clone(),
            server_admin: user.server_admin,
            token: secret,
        }),
    )
        .into_response();
    response.extensions_mut().insert(AuditNote {
        object: Some(format!("user {}", user.name)),
        ..Default::default()
    });
    Ok(response)
}
