//! The API's error type, mapped once to `application/problem+json` (RFC 9457).
//!
//! Every problem carries a stable snake_case `code`; validation problems list
//! `errors: [{pointer, message}]` with JSON Pointers into the request body. 5xx bodies say
//! nothing internal; their cause is logged once, inside the request's span.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;
use crate::webhook::{FieldError, SignatureError};

/// Everything an API route can refuse with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("the request body is larger than {limit_bytes} bytes")]
    PayloadTooLarge { limit_bytes: usize },
    #[error("the request body could not be read")]
    BodyUnreadable,
    #[error("the request body was not received within {seconds} s")]
    RequestTimeout { seconds: u64 },
    #[error("the request body is not valid JSON: {}", .0.message)]
    MalformedJson(FieldError),
    #[error("the request body does not have the expected shape: {} {}", .0.pointer, .0.message)]
    InvalidShape(FieldError),
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Signature(#[from] SignatureError),
    #[error("a valid admin token is required (Authorization: Bearer <HANDOFF_ADMIN_TOKEN>)")]
    Unauthorized,
    #[error("there is no org '{0}'")]
    UnknownOrg(String),
    #[error("org '{org}' has no handoff for session '{session}'")]
    UnknownSession { org: String, session: String },
    #[error("org '{0}' has no Dynamics connection")]
    NotConnected(String),
    /// 403 `forbidden`: a status page form that is not the admin's own (the sentence says
    /// why).
    #[error("refused: {0}")]
    Forbidden(String),
    #[error("org '{0}' has no OpenCX connection")]
    OpenCxNotConnected(String),
    #[error(
        "session '{session}' has nothing to retry: the handoff is {state} and no callback failed"
    )]
    NothingToRetry {
        session: String,
        state: &'static str,
    },
    #[error("session '{session}' cannot be retried: its retention period ended and the session was removed; the widget backend must send it again")]
    SessionRedacted { session: String },
    /// 503 `store_unavailable` (with `Retry-After: 5`) when trying again can succeed; 500
    /// `store_refused` when the database refused the values themselves or a stored row is
    /// unreadable, which no retry changes (see [`StoreError::is_retryable`]).
    #[error("{}", if .0.is_retryable() { "the store is unavailable; nothing was stored, try again" } else { "the store refused the request; nothing was stored, and sending it again will not help" })]
    StoreUnavailable(#[from] StoreError),
    #[error("the page could not be rendered")]
    Render(String),
    /// 503 `connection_secret_unreadable` (with `Retry-After: 60`): none of the org's stored
    /// webhook secrets opens with this process's encryption key, so no signature can be
    /// checked. Never a 401: the sender's secret is not the one at fault, and it retries.
    #[error("org '{0}': its stored webhook secret cannot be decrypted with this bridge's HANDOFF_ENCRYPTION_KEY (started with another key than the one it was saved with); nothing was stored, send again once the bridge runs with the right key")]
    SecretUnreadable(String),
}

impl ApiError {
    /// The HTTP status and stable `code` of each error: the one table of codes.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::UnsupportedMediaType => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            Self::PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::BodyUnreadable => (StatusCode::BAD_REQUEST, "body_unreadable"),
            Self::RequestTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            Self::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            Self::InvalidShape(_) => (StatusCode::BAD_REQUEST, "invalid_shape"),
            Self::Validation(_) => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
            Self::Signature(e) => (StatusCode::UNAUTHORIZED, e.code()),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::UnknownOrg(_) => (StatusCode::NOT_FOUND, "unknown_org"),
            Self::UnknownSession { .. } => (StatusCode::NOT_FOUND, "unknown_session"),
            Self::NotConnected(_) => (StatusCode::NOT_FOUND, "not_connected"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::OpenCxNotConnected(_) => (StatusCode::NOT_FOUND, "opencx_not_connected"),
            Self::NothingToRetry { .. } => (StatusCode::CONFLICT, "nothing_to_retry"),
            Self::SessionRedacted { .. } => (StatusCode::CONFLICT, "session_redacted"),
            Self::StoreUnavailable(e) if !e.is_retryable() => {
                (StatusCode::INTERNAL_SERVER_ERROR, "store_refused")
            }
            Self::StoreUnavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
            Self::Render(_) => (StatusCode::INTERNAL_SERVER_ERROR, "render_failed"),
            Self::SecretUnreadable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                crate::domain::catalog::CONNECTION_SECRET_UNREADABLE.code,
            ),
        }
    }
}

/// An error answer (`application/problem+json`, RFC 9457), as sent.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:handoff-bridge:problem:{code}`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// The HTTP status's reason phrase.
    pub title: String,
    pub status: u16,
    /// The stable error code, e.g. `validation_failed`.
    pub code: String,
    pub detail: String,
    /// For validation errors: each rejected field, as a JSON Pointer into the request body.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// Writes an `application/problem+json` response.
pub fn problem(
    status: StatusCode,
    code: &str,
    detail: &str,
    errors: Option<&[FieldError]>,
) -> Response {
    let body = Problem {
        type_uri: format!("urn:handoff-bridge:problem:{code}"),
        title: status.canonical_reason().unwrap_or("Error").to_owned(),
        status: status.as_u16(),
        code: code.to_owned(),
        detail: detail.to_owned(),
        errors: errors.map(<[FieldError]>::to_vec),
    };
    let mut response = (
        status,
        serde_json::to_string(&body).expect("a problem serializes"),
    )
        .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

impl From<crate::connection::orgs::OrgError> for ApiError {
    fn from(e: crate::connection::orgs::OrgError) -> Self {
        use crate::connection::orgs::OrgError;
        match e {
            OrgError::Invalid(errors) => Self::Validation(errors),
            OrgError::Store(e) => Self::StoreUnavailable(e),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() {
            tracing::error!(code, error = %self, cause = ?std::error::Error::source(&self).map(ToString::to_string), "request failed");
        }
        let single;
        let errors = match &self {
            Self::Validation(errors) => Some(errors.as_slice()),
            Self::MalformedJson(e) | Self::InvalidShape(e) => {
                single = [e.clone()];
                Some(&single[..])
            }
            _ => None,
        };
        let mut response = problem(status, code, &self.to_string(), errors);
        match self {
            Self::StoreUnavailable(e) if e.is_retryable() => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            }
            Self::SecretUnreadable(_) => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("60"));
            }
            // The rest of the body may still be on its way: close rather than read it.
            Self::RequestTimeout { .. } => {
                response
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            Self::Unauthorized => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}
