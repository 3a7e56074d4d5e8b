//! What several routes look up the same way: the org and handoff a path names, and the
//! list options of `/status` and `/v1/status`.

use serde::Deserialize;

use crate::domain::{HandoffState, OrgId};
use crate::error::ApiError;
use crate::http::AppState;
use crate::store::{HandoffRow, OrgRow};
use crate::webhook::FieldError;

pub(super) fn org_id(raw: &str) -> Result<OrgId, ApiError> {
    OrgId::parse(raw).map_err(|why| {
        ApiError::Validation(vec![FieldError::new(
            "/org_id",
            format!("(in the URL) {why}"),
        )])
    })
}

pub(super) async fn existing_org(ctx: &AppState, raw: &str) -> Result<OrgRow, ApiError> {
    let id = OrgId::parse(raw).map_err(|_| ApiError::UnknownOrg(raw.to_owned()))?;
    ctx.store
        .org(id.as_str())
        .await?
        .ok_or_else(|| ApiError::UnknownOrg(raw.to_owned()))
}

pub(super) async fn existing_handoff(
    ctx: &AppState,
    org: &OrgRow,
    session_id: &str,
) -> Result<HandoffRow, ApiError> {
    ctx.store
        .handoff(&org.org_id, session_id)
        .await?
        .ok_or_else(|| ApiError::UnknownSession {
            org: org.org_id.clone(),
            session: session_id.to_owned(),
        })
}

/// Query of `GET /v1/status`.
#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    pub org: Option<String>,
    pub state: Option<String>,
    pub session: Option<String>,
    pub limit: Option<String>,
}

/// Parses the `state` and `limit` query options of the lists (`limit` 1–500).
pub(super) fn list_options(
    state: Option<&str>,
    limit: Option<&str>,
    default_limit: i64,
) -> Result<(Option<HandoffState>, i64), ApiError> {
    let mut errors = Vec::new();
    let state = match state.filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => match HandoffState::parse(s) {
            Some(state) => Some(state),
            None => {
                errors.push(FieldError::new(
                    "/state",
                    "(query) must be one of queued, processing, succeeded, failed, skipped",
                ));
                None
            }
        },
    };
    let limit = match limit {
        None => default_limit,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=500).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "/limit",
                    "(query) must be a whole number from 1 to 500",
                ));
                default_limit
            }
        },
    };
    if errors.is_empty() {
        Ok((state, limit))
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Query of the session list.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub state: Option<String>,
    pub limit: Option<String>,
}
