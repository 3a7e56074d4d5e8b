//! Request extraction with our own rejections (problem+json with JSON Pointers), instead of
//! axum's plain-text ones.

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap};

use crate::error::ApiError;
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

/// Reads a body of at most `limit` bytes.
pub async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    to_bytes(body, limit).await.map_err(|err| {
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

/// A JSON request body: 415 without a JSON content type, 413 over [`ADMIN_BODY_LIMIT`], 400
/// with a pointer when it does not parse into `T`.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(req.into_body(), ADMIN_BODY_LIMIT).await?;
        parse_body(&bytes).map(ApiJson)
    }
}
