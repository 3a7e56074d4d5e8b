//! Request extraction with our own rejections (problem+json with JSON Pointers), instead of
//! axum's plain-text ones.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use crate::domain::{OrgId, SessionId};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::webhook::envelope::{parse_json, FieldError};

/// Largest admin request body, in bytes.
pub const ADMIN_BODY_LIMIT: usize = 64 * 1024;

/// Whether the request says its body is JSON (`application/json`, any parameters).
pub fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().eq_ignore_ascii_case("application/json"))
        .unwrap_or(false)
}

/// Reads a body of at most `limit` bytes within `deadline`.
///
/// A declared `Content-Length` over the limit is refused (413) before a byte is read; a
/// body still incomplete at the deadline is refused with 408 (the connection is then
/// closed), so a client that announces a body and never sends it holds nothing for long.
pub async fn read_body(body: Body, limit: usize, deadline: Duration) -> Result<Bytes, ApiError> {
    if http_body::Body::size_hint(&body).lower() > limit as u64 {
        return Err(ApiError::PayloadTooLarge { limit_bytes: limit });
    }
    let read = tokio::time::timeout(deadline, to_bytes(body, limit))
        .await
        .map_err(|_| ApiError::RequestTimeout {
            seconds: deadline.as_secs(),
        })?;
    read.map_err(|err| {
        let too_large = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
            .any(|e| e.is::<http_body_util::LengthLimitError>());
        if too_large {
            ApiError::PayloadTooLarge { limit_bytes: limit }
        } else {
            ApiError::BodyUnreadable
        }
    })
}

/// Parses JSON, telling broken JSON (400 `malformed_json`) from a wrong shape (400
/// `invalid_shape`), each with the pointer where parsing stopped.
pub fn parse_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    parse_json(bytes).map_err(|e| {
        if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
            ApiError::MalformedJson(FieldError::new("", e.message))
        } else {
            ApiError::InvalidShape(e)
        }
    })
}

/// A JSON request body: 415 without a JSON content type, 413 over [`ADMIN_BODY_LIMIT`], 408
/// when it is not received within the body-read timeout, 400 with a pointer when it does not
/// parse into `T`.
pub struct ApiJson<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<AppState>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, ctx: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let deadline = ctx.limits.body_read_timeout;
        let bytes = read_body(req.into_body(), ADMIN_BODY_LIMIT, deadline).await?;
        parse_body(&bytes).map(ApiJson)
    }
}

/// An optional JSON request body: `None` when the body is empty, whatever its content type;
/// otherwise as [`ApiJson`].
pub struct OptionalApiJson<T>(pub Option<T>);

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<AppState>> for OptionalApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, ctx: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let json = is_json(req.headers());
        let deadline = ctx.limits.body_read_timeout;
        let bytes = read_body(req.into_body(), ADMIN_BODY_LIMIT, deadline).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(None));
        }
        if !json {
            return Err(ApiError::UnsupportedMediaType);
        }
        parse_body(&bytes).map(|value| Self(Some(value)))
    }
}

/// The `{org_id}` of a route's path, parsed. One rule on every route: a value that is not a
/// valid org id is `422 validation_failed` with the pointer `/org_id` and the rule it broke.
pub struct OrgIdPath(pub OrgId);

/// The `{org_id}` and `{session_id}` of a route's path, parsed by the same rule
/// (`/session_id`: 1–100 printable ASCII characters).
pub struct SessionPath(pub OrgId, pub SessionId);

/// `raw` parsed by `parse`, or the validation error of the path parameter `name`.
fn path_value<T>(
    name: &str,
    raw: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|why| {
        ApiError::Validation(vec![FieldError::new(
            format!("/{name}"),
            format!("(in the URL) {why}"),
        )])
    })
}

/// The path's parameters as text; a segment that is not UTF-8 once percent-decoded names
/// no org or session.
async fn path_text<T, S>(parts: &mut Parts, state: &S) -> Result<T, ApiError>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    Path::<T>::from_request_parts(parts, state)
        .await
        .map(|Path(value)| value)
        .map_err(|e| ApiError::Validation(vec![FieldError::new("", format!("(the URL) {e}"))]))
}

impl<S: Send + Sync> FromRequestParts<S> for OrgIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let raw: String = path_text(parts, state).await?;
        path_value("org_id", &raw, OrgId::parse).map(Self)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let (org, session): (String, String) = path_text(parts, state).await?;
        Ok(Self(
            path_value("org_id", &org, OrgId::parse)?,
            path_value("session_id", &session, SessionId::parse)?,
        ))
    }
}
