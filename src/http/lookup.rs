//! What several routes look up the same way: the org and handoff a path names, and the
//! list options of `/status` and `/v1/status`.

use serde::Deserialize;

use crate::domain::{HandoffState, OrgId, SessionId};
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::{Cursor, HandoffRow, OrgRow};
use crate::webhook::FieldError;

/// The org `id` names; 404 `unknown_org` when there is none.
pub(super) async fn existing_org(ctx: &AppState, id: &OrgId) -> Result<OrgRow, ApiError> {
    ctx.store
        .org(id.as_str())
        .await?
        .ok_or_else(|| ApiError::UnknownOrg(id.to_string()))
}

/// The handoff of `session_id` in `org`; 404 `unknown_session` when there is none.
pub(super) async fn existing_handoff(
    ctx: &AppState,
    org: &OrgRow,
    session_id: &SessionId,
) -> Result<HandoffRow, ApiError> {
    ctx.store
        .handoff(&org.org_id, session_id.as_str())
        .await?
        .ok_or_else(|| ApiError::UnknownSession {
            org: org.org_id.clone(),
            session: session_id.to_string(),
        })
}

/// Query of `GET /v1/status` and `GET /status`.
#[derive(Debug, Deserialize)]
pub struct StatusQuery {
    pub org: Option<String>,
    pub state: Option<String>,
    pub session: Option<String>,
    pub customer: Option<String>,
    pub before: Option<String>,
    pub limit: Option<String>,
}

impl StatusQuery {
    /// The view this query asks for (`limit` 1–500, default 20); 400 naming each bad option.
    pub(super) fn filter(&self) -> Result<crate::diagnostics::Filter, ApiError> {
        let non_empty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let (state, before, limit) = list_options(
            self.state.as_deref(),
            self.before.as_deref(),
            self.limit.as_deref(),
            20,
        )?;
        Ok(crate::diagnostics::Filter {
            org: non_empty(&self.org),
            state,
            session: non_empty(&self.session),
            customer: non_empty(&self.customer),
            before,
            limit,
        })
    }
}

/// Parses the `state`, `before` and `limit` query options of the lists (`before` a cursor
/// from `next_before`, `limit` 1–500).
pub(super) fn list_options(
    state: Option<&str>,
    before: Option<&str>,
    limit: Option<&str>,
    default_limit: i64,
) -> Result<(Option<HandoffState>, Option<Cursor>, i64), ApiError> {
    let mut errors = Vec::new();
    let before = match before.filter(|b| !b.is_empty()) {
        None => None,
        Some(text) => {
            let cursor = Cursor::parse(text);
            if cursor.is_none() {
                errors.push(FieldError::new(
                    "/before",
                    "(query) must be the next_before of the page before (<created_at>.<handoff_id>)",
                ));
            }
            cursor
        }
    };
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
        Ok((state, before, limit))
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Query of the session list.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub state: Option<String>,
    pub before: Option<String>,
    pub limit: Option<String>,
}
