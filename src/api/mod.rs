//! The JSON API for apps under `/api/v1`: the message record archive ([`archive`]): IM
//! servers post records with an `archive` token, compliance tools read them with an
//! `archive-read` token; sign-in ([`sign_in`]) with a `sign-in` token; attendance punches
//! ([`attendance`]) with an `attendance` token. An adapter: it checks the token's kind, translates requests,
//! and calls [`crate::archive::Archive`]; it never writes a table.

pub mod archive;
pub mod attendance;
pub mod sign_in;

use std::sync::{Arc, OnceLock};

use axum::http::{HeaderMap, StatusCode, header};

use crate::access::Access;
use crate::access::store::{TokenInfo, TokenKind};
use crate::http::ApiError;

/// Every route under `/api/v1`, each group with its own body limit.
pub fn router(api: Api, max_archive_request_bytes: usize) -> axum::Router {
    archive::router(api.clone(), max_archive_request_bytes)
        .merge(sign_in::router(api.clone()))
        .merge(attendance::router(api))
}

/// The API's state: the services once the store is ready.
#[derive(Clone)]
pub struct Api {
    pub ready: Arc<OnceLock<Ready>>,
}

/// What the API works with once the store is up.
pub struct Ready {
    pub access: Access,
    pub archive: crate::archive::Archive,
    pub sign_in: crate::access::signin::SignIn,
    pub attendance: crate::access::attendance::Attendance,
}

impl Api {
    pub fn new() -> Api {
        Api { ready: Default::default() }
    }

    fn ready(&self) -> Result<&Ready, ApiError> {
        self.ready.get().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "starting",
                "the service is starting; try again shortly",
            )
        })
    }
}

impl Default for Api {
    fn default() -> Self {
        Api::new()
    }
}

/// The bearer token in `Authorization`, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Checks a token and its kind: 401 for none or a bad one, 403 for a token of another kind.
async fn authenticate(access: &Access, secret: Option<&str>, kind: TokenKind) -> Result<TokenInfo, ApiError> {
    let Some(secret) = secret else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("a token of kind {kind} is required (rosterd token create --name NAME --kind {kind})"),
        ));
    };
    match access.authenticate_token(secret).await? {
        Some(info) if info.kind == kind => Ok(info),
        Some(info) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "wrong_token_kind",
            format!("this is a token of kind {}; this endpoint takes kind {kind}", info.kind.as_str()),
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the token is not valid or has been revoked",
        )),
    }
}
