//! Request extraction with our own rejections (problem+json with JSON Pointers), instead of
//! axum's plain-text ones.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};

use crate::error::ApiError;
use crate::http::AppState;
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
