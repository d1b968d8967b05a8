//! `POST /api/v1/sign-in`: an IM server (or any app that knows the user's address) checks a
//! member's account and password, with a token of kind `sign-in`. Every call is a sign-in
//! attempt: limited, checked against the sign-in policy, written to the login log.
//!
//! Answers: 200 with the member; 401 `invalid_credentials` for a wrong account or password
//! (one answer for both, and for a suspended account); 403 `denied_by_policy` with the
//! deciding rule; 429 `locked` or `busy`; 503 `directory_unavailable`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::{Api, authenticate, bearer};
use crate::access::policy::Client;
use crate::access::signin::{Attempt, Refused, Signed};
use crate::access::store::TokenKind;
use crate::http::ApiError;

pub fn router(api: Api) -> axum::Router {
    axum::Router::new()
        .route("/sign-in", post(sign_in))
        .layer(axum::extract::DefaultBodyLimit::max(16 * 1024))
        .with_state(api)
}

/// The request. `Debug` leaves the password out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInRequest {
    account: String,
    password: String,
    /// The user's address as the app saw it (IPv4 or IPv6).
    #[serde(default)]
    client_ip: Option<String>,
    /// What the user signs in with (`xmpp`, `web`, `mobile`...): policy rules name it.
    #[serde(default)]
    client_kind: Option<String>,
}

impl std::fmt::Debug for SignInRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignInRequest")
            .field("account", &self.account)
            .field("client_ip", &self.client_ip)
            .field("client_kind", &self.client_kind)
            .finish_non_exhaustive()
    }
}

async fn sign_in(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Result<Json<SignInRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let r = api.ready()?;
    let token = authenticate(&r.access, bearer(&headers), TokenKind::SignIn).await?;
    let Json(req) =
        body.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_json", e.body_text()))?;
    let ip = match req.client_ip.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => Some(s.parse::<std::net::IpAddr>().map_err(|_| {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid", "client_ip: not an IPv4 or IPv6 address")
        })?),
        None => None,
    };
    let kind = req.client_kind.unwrap_or_default().trim().to_lowercase();
    if kind.len() > 64 || !kind.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            "client_kind: at most 64 letters, digits, - _ .",
        ));
    }
    let attempt = Attempt {
        account: &req.account,
        password: &req.password,
        client: Client::Api { token: token.name.clone(), kind },
        ip,
        console: false,
    };
    let refused = |status, code: &'static str, message: &str| Err(ApiError::new(status, code, message));
    match r.sign_in.attempt(&attempt).await? {
        Ok(Signed::Member(m)) => Ok(Json(json!({
            "id": m.id,
            "account_number": m.account_number,
            "login_name": m.login_name,
            "display_name": m.display_name,
        }))
        .into_response()),
        // Only the console knows the super admin.
        Ok(Signed::Super) | Err(Refused::Failed { .. }) => {
            refused(StatusCode::UNAUTHORIZED, "invalid_credentials", "wrong account or password")
        }
        Err(Refused::Denied(rule)) => Ok((
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": "denied_by_policy",
                "message": "the sign-in policy does not allow this sign-in",
                "rule": rule,
            })),
        )
            .into_response()),
        Err(Refused::Locked) => {
            refused(StatusCode::TOO_MANY_REQUESTS, "locked", "too many failed sign-ins; try again later")
        }
        Err(Refused::Busy) => {
            refused(StatusCode::TOO_MANY_REQUESTS, "busy", "too many sign-ins at once; retry")
        }
        Err(Refused::DirectoryDown) => refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "directory_unavailable",
            "the member's directory could not be asked",
        ),
    }
}
