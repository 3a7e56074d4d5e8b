//! `POST /v1/webhooks/{org_id}`: verify, validate, store, answer.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{is_json, parse_body, read_body, OrgIdPath};
use super::views::HandoffSummary;
use crate::domain::HandoffState;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::{Intake, NewHandoff};
use crate::webhook::envelope::EnvelopeHead;
use crate::webhook::signature::SignatureHeaders;
use crate::webhook::{Envelope, HANDOFF_EVENT};

/// Largest webhook body, in bytes (README, "The webhook contract").
pub const WEBHOOK_BODY_LIMIT: usize = 256 * 1024;

/// The answer to a new handoff: committed and queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    pub handoff_id: String,
    pub session_id: String,
    /// Always `queued`.
    pub state: HandoffState,
}

/// The answer to an event the bridge does not act on.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ignored {
    /// Always `ignored`.
    pub status: &'static str,
    /// The event's name, at most 100 characters of it.
    pub event: String,
}

/// The answer to a redelivery or a repeated session: the existing record.
#[derive(Debug, Serialize, ToSchema)]
pub struct Duplicate {
    #[serde(flatten)]
    pub handoff: HandoffSummary,
    /// Always `true`.
    pub duplicate: bool,
}

/// Receives a handoff webhook. Answers 202 only after the handoff is committed.
#[utoipa::path(post, path = "/v1/webhooks/{org_id}", tag = "webhooks",
    params(("org_id" = String, Path, description = super::openapi::ORG_ID_DOC),
        ("webhook-id" = String, Header, description = "Standard Webhooks message id"),
        ("webhook-timestamp" = String, Header, description = "Unix seconds (1 to 12 digits, no sign or leading zero); within 5 minutes"),
        ("webhook-signature" = String, Header, description = "`v1,<base64 HMAC-SHA256>`, space-separated; at most 8 entries in 1024 bytes"),
    ),
    request_body(content = crate::webhook::Envelope, description = "`{event: conversation.handoff_to_human, organization_id, data: {conversation_id, timestamp, customer_id, reason}}` (OpenCX's thin event: the session is fetched with the org's OpenCX connection) or `data: {session}` (the whole session pushed); other events are acknowledged and dropped", content_type = "application/json"),
    responses(
        (status = 202, description = "Committed and queued", body = Accepted),
        (status = 200, description = "A redelivery or repeated session: the existing record with `duplicate: true`; or an event the bridge does not act on (`status: ignored`)", body = Duplicate),
        (status = 400, description = "`body_unreadable`, `malformed_json` or `invalid_shape`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 401, description = "`signature_header_missing`, `signature_header_invalid`, `signature_timestamp_out_of_tolerance` or `signature_mismatch`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown_org`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 408, description = "`request_timeout`: the body did not arrive within the body-read timeout; the connection is closed", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 413, description = "`payload_too_large`, also from the announced `Content-Length` alone", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 415, description = "`unsupported_media_type`", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 422, description = "`validation_failed`: the org id in the URL, or the session's fields", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 500, description = "`store_refused`: the database refused the values; nothing stored, and a retry will not help", body = super::openapi::Problem, content_type = "application/problem+json"),
        (status = 503, description = "`store_unavailable`: nothing stored, retry; or `connection_secret_unreadable`: the org's stored webhook secret does not open with this bridge's encryption key (it runs with another key than the one the secret was saved with), nothing stored, retry once it runs with the right key (`Retry-After: 60`)", body = super::openapi::Problem, content_type = "application/problem+json"),
    ))]
pub async fn receive(
    State(ctx): State<Arc<AppState>>,
    OrgIdPath(org_id): OrgIdPath,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let mut known = false;
    let mut response = accept(&ctx, &org_id, &headers, body, &mut known)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    if known {
        response
            .extensions_mut()
            .insert(KnownOrg(org_id.to_string()));
    }
    response
}

/// The org a webhook delivery was for, on the answer once the org was found: the metrics
/// count deliveries by it (others under `unknown`, so a flood of made-up org ids adds no
/// series).
#[derive(Debug, Clone)]
pub struct KnownOrg(pub String);

/// [`receive`]'s work; sets `known` once the org is found.
async fn accept(
    ctx: &AppState,
    org_id: &crate::domain::OrgId,
    headers: &HeaderMap,
    body: Body,
    known: &mut bool,
) -> Result<Response, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    // Everything that needs neither the body nor a secret is checked first, so a malformed
    // or stale delivery costs no store query and no body read.
    let now = ctx.clock.now_ms();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signature = SignatureHeaders {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    }
    .check(now / 1000)?;
    let org = ctx
        .store
        .org(org_id.as_str())
        .await?
        .ok_or_else(|| ApiError::UnknownOrg(org_id.to_string()))?;
    *known = true;
    let body = read_body(body, WEBHOOK_BODY_LIMIT, ctx.limits.body_read_timeout).await?;
    let secrets = ctx.vault.webhook_secrets(&org, now);
    if secrets.is_empty() {
        return Err(ApiError::SecretUnreadable(org.org_id));
    }
    let webhook_id = signature.verify(&secrets, &body)?;

    let head: EnvelopeHead = parse_body(&body)?;
    if head.event != HANDOFF_EVENT {
        // The sender chose this text: log and echo a bounded prefix only.
        let event: String = head.event.chars().take(100).collect();
        tracing::info!(%event, "ignored an event the bridge does not handle");
        return Ok((
            StatusCode::OK,
            Json(Ignored {
                status: "ignored",
                event,
            }),
        )
            .into_response());
    }
    let envelope: Envelope = parse_body(&body)?;
    let valid = envelope.validate(org_id).map_err(ApiError::Validation)?;

    let intake = ctx
        .store
        .intake(
            NewHandoff {
                org_id: org_id.as_str(),
                session_id: valid.session_id.as_str(),
                webhook_id,
                channel: &valid.channel,
                payload_version: valid.payload_version,
                payload: valid.payload,
            },
            now,
        )
        .await?;
    match intake {
        Intake::Stored(h) => {
            tracing::info!(session_id = %h.session_id, handoff_id = %h.handoff_id, "handoff queued");
            ctx.wake.org(&h.org_id);
            Ok((
                StatusCode::ACCEPTED,
                Json(Accepted {
                    handoff_id: h.handoff_id,
                    session_id: h.session_id,
                    state: HandoffState::Queued,
                }),
            )
                .into_response())
        }
        Intake::Duplicate(h) => {
            tracing::info!(session_id = %h.session_id, handoff_id = %h.handoff_id, "duplicate delivery");
            // The answer goes to the widget backend, the callbacks' receiver: their
            // delivery is not reported back to it here.
            let answer = Duplicate {
                handoff: HandoffSummary::new(&h, None),
                duplicate: true,
            };
            Ok((StatusCode::OK, Json(answer)).into_response())
        }
    }
}
