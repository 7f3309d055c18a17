//! Who is asking. Until sign-in lands every request is the local user `local`; this extractor
//! is the one place that changes when it does (pages and API handlers only call `name()`).

use std::convert::Infallible;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

/// The user the request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestUser {
    name: String,
}

/// The name every request gets while Nightshift has no sign-in.
pub const LOCAL_USER: &str = "local";

impl RequestUser {
    pub fn local() -> Self {
        RequestUser {
            name: LOCAL_USER.to_string(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestUser {
    type Rejection = Infallible;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestUser::local())
    }
}
