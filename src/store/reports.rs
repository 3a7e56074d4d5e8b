//! Read-only queries for the troubleshooting views and metrics: an org's handoffs a page at
//! a time, counts by state, queue depths. Each reads indexes (`handoffs_recent`,
//! `handoffs_waiting`), not every handoff: the views stay fast with 100,000 handoffs over
//! 1,000 orgs (`benches/status_page.rs`).

use std::collections::HashMap;

use super::handoffs::{HandoffRow, HANDOFF_COLUMNS};
use super::{col, Backend, Store, StoreError};
use crate::domain::HandoffState;

/// One org's queue: handoffs `queued` or `processing`, and when the oldest queued one was
/// received (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub org_id: String,
    pub depth: i64,
    pub oldest_queued_at: Option<i64>,
}

/// Where a page of an org's handoffs starts: just older than the handoff received at
/// `created_at` (Unix ms) with id `handoff_id` (the newest-first order's tie-break). Written
/// as `<created_at>.<handoff_id>` (`next_before` of a page, `before=` of the next request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub created_at: i64,
    pub handoff_id: String,
}

impl Cursor {
    /// The cursor just past `h`.
    pub fn after(h: &HandoffRow) -> Self {
        Self {
            created_at: h.created_at,
            handoff_id: h.handoff_id.clone(),
        }
    }

    /// Parses `<created_at>.<handoff_id>`; `None` unless the time is a non-negative whole
    /// number and the id a UUID.
    pub fn parse(text: &str) -> Option<Self> {
        let (at, id) = text.split_once('.')?;
        let created_at = at.parse::<i64>().ok().filter(|t| *t >= 0)?;
        let id = uuid::Uuid::parse_str(id).ok()?;
        Some(Self {
            created_at,
            handoff_id: id.to_string(),
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at, self.handoff_id)
    }
}

/// Which of an org's handoffs a page lists: one state, a session id containing a text, a
/// customer whose name or email contains a text (both plain text, not patterns; the
/// customer's without regard to ASCII case), older than a cursor.
#[derive(Debug, Clone, Default)]
pub struct HandoffQuery<'a> {
    pub state: Option<HandoffState>,
    pub session: Option<&'a str>,
    pub customer: Option<&'a str>,
    pub before: Option<&'a Cursor>,
}

/// `%text%` with LIKE's `\`, `%` and `_` escaped (`ESCAPE '\'`); `None` for no text.
fn like_pattern(text: Option<&str>) -> Option<String> {
    text.filter(|s| !s.is_empty()).map(|s| {
        format!(
            "%{}%",
            s.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        )
    })
}

/// A page of an org's handoffs, newest first, and where the next, older page starts (`None`
/// on the last page).
#[derive(Debug, Clone)]
pub struct HandoffPage {
    pub handoffs: Vec<ListedHandoff>,
    pub next_before: Option<Cursor>,
}

/// A handoff in a list, with its newest outbox row in trouble, if any.
#[derive(Debug, Clone)]
pub struct ListedHandoff {
    pub handoff: HandoffRow,
    pub callback_trouble: Option<CallbackTrouble>,
}

/// An outbox row (a callback, or the write-back to the OpenCX session) that was given up
/// (`failed`), or that is still `pending` after a refused delivery (retrying): its
/// `event_type`, last error and attempts so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackTrouble {
    pub event_type: String,
    pub error: String,
    pub attempts: i64,
    /// `failed`: nothing retries it; otherwise it is retried with backoff.
    pub given_up: bool,
}

/// Which outbox rows are in trouble (SQL, over `callbacks c`), newest first.
const TROUBLE: &str = "c.handoff_id = handoffs.handoff_id AND (c.state = 'failed' \
     OR (c.state = 'pending' AND c.last_error IS NOT NULL)) \
     ORDER BY c.created_at DESC, c.webhook_id DESC LIMIT 1";

impl Store {
    /// A page of an org's handoffs, newest first: at most `limit`, those `query` selects,
    /// and the cursor of the next page when there is one. Reads `handoffs_recent` (or
    /// `handoffs_waiting` for one state) from the cursor on, so the thousandth page costs
    /// what the first does.
    pub async fn recent_handoffs(
        &self,
        org_id: &str,
        query: &HandoffQuery<'_>,
        limit: i64,
    ) -> Result<HandoffPage, StoreError> {
        let limit = limit.max(0);
        enum Value {
            Text(String),
            Int(i64),
        }
        // One more than the page, to know whether an older page exists.
        let mut values = vec![Value::Text(org_id.to_owned()), Value::Int(limit + 1)];
        let mut clauses = String::new();
        let mut bind = |clause: &str, value: Value| {
            values.push(value);
            clauses.push_str(&clause.replace('?', &format!("${}", values.len())));
        };
        if let Some(state) = query.state {
            bind(" AND state = ?", Value::Text(state.as_str().to_owned()));
        }
        if let Some(pattern) = like_pattern(query.session) {
            bind(" AND session_id LIKE ? ESCAPE '\\'", Value::Text(pattern));
        }
        if let Some(pattern) = like_pattern(query.customer) {
            // The customer's name and email in the stored session (`QueuedHandoff`; a
            // redacted one has neither), without regard to ASCII case on both backends.
            let clause = match self.backend() {
                Backend::Sqlite => {
                    " AND (json_extract(payload, '$.customer.name') LIKE ? ESCAPE '\\' \
                     OR json_extract(payload, '$.customer.email') LIKE ? ESCAPE '\\')"
                }
                Backend::Postgres => {
                    " AND ((payload::jsonb #>> '{customer,name}') ILIKE ? ESCAPE '\\' \
                     OR (payload::jsonb #>> '{customer,email}') ILIKE ? ESCAPE '\\')"
                }
            };
            bind(clause, Value::Text(pattern));
        }
        if let Some(cursor) = query.before {
            bind(
                " AND (created_at < ? OR (created_at = ? AND handoff_id < ",
                Value::Int(cursor.created_at),
            );
            bind("?))", Value::Text(cursor.handoff_id.clone()));
        }
        let sql = format!(
            "SELECT {HANDOFF_COLUMNS}, \
             (SELECT c.last_error FROM callbacks c WHERE {TROUBLE}) AS trouble_error, \
             (SELECT c.event_type FROM callbacks c WHERE {TROUBLE}) AS trouble_event_type, \
             (SELECT c.attempts FROM callbacks c WHERE {TROUBLE}) AS trouble_attempts, \
             (SELECT c.state FROM callbacks c WHERE {TROUBLE}) AS trouble_state \
             FROM handoffs WHERE org_id = $1{clauses} \
             ORDER BY created_at DESC, handoff_id DESC LIMIT $2"
        );
        let mut select = sqlx::query(&sql);
        for value in values {
            select = match value {
                Value::Text(text) => select.bind(text),
                Value::Int(n) => select.bind(n),
            };
        }
        let rows = select.fetch_all(self.pool()).await?;
        let mut handoffs = rows
            .iter()
            .map(|row| {
                let error: Option<String> = col(row, "trouble_error")?;
                let event_type: Option<String> = col(row, "trouble_event_type")?;
                let attempts: Option<i64> = col(row, "trouble_attempts")?;
                let state: Option<String> = col(row, "trouble_state")?;
                Ok(ListedHandoff {
                    handoff: HandoffRow::from_row(row)?,
                    callback_trouble: error.zip(event_type).map(|(error, event_type)| {
                        CallbackTrouble {
                            event_type,
                            error,
                            attempts: attempts.unwrap_or(0),
                            given_up: state.as_deref() == Some("failed"),
                        }
                    }),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let more = handoffs.len() as i64 > limit;
        handoffs.truncate(usize::try_from(limit).unwrap_or(0));
        let next_before = handoffs
            .last()
            .filter(|_| more)
            .map(|last| Cursor::after(&last.handoff));
        Ok(HandoffPage {
            handoffs,
            next_before,
        })
    }

    /// How many handoffs were received since `since` (Unix ms), by org and state: every
    /// org's, or only `org_id`'s. Orgs without one are absent.
    pub async fn counts_since(
        &self,
        org_id: Option<&str>,
        since: i64,
    ) -> Result<HashMap<String, Vec<(HandoffState, i64)>>, StoreError> {
        // One org reads its range of `handoffs_recent`; every org, `handoffs_waiting`.
        let only = if org_id.is_some() {
            " AND org_id = $2"
        } else {
            ""
        };
        let sql = format!(
            "SELECT org_id, state, COUNT(*) AS n FROM handoffs \
             WHERE created_at >= $1{only} GROUP BY org_id, state"
        );
        let mut query = sqlx::query(&sql).bind(since);
        if let Some(org) = org_id {
            query = query.bind(org);
        }
        let rows = query.fetch_all(self.pool()).await?;
        let mut counts: HashMap<String, Vec<(HandoffState, i64)>> = HashMap::new();
        for row in &rows {
            let state: String = col(row, "state")?;
            let state = HandoffState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown handoff state '{state}'")))?;
            counts
                .entry(col(row, "org_id")?)
                .or_default()
                .push((state, col(row, "n")?));
        }
        Ok(counts)
    }
    /// Every org's queue (or only `org_id`'s): handoffs `queued` or `processing`, and when
    /// the oldest queued one was received; orgs with an empty queue included, by org id. One
    /// range of `handoffs_waiting` (the waiting handoffs' index entries, no table row) and
    /// the org ids.
    pub async fn queue_depths(&self, org_id: Option<&str>) -> Result<Vec<QueueDepth>, StoreError> {
        let only = if org_id.is_some() {
            " AND org_id = $1"
        } else {
            ""
        };
        let sql = format!(
            "SELECT state, org_id, COUNT(*) AS depth, MIN(created_at) AS oldest FROM handoffs \
             WHERE state IN ('queued', 'processing'){only} GROUP BY state, org_id"
        );
        let mut query = sqlx::query(&sql);
        if let Some(org) = org_id {
            query = query.bind(org);
        }
        let rows = query.fetch_all(self.pool()).await?;
        let mut waiting: HashMap<String, QueueDepth> = HashMap::new();
        for row in &rows {
            let org_id: String = col(row, "org_id")?;
            let state: String = col(row, "state")?;
            let depth: i64 = col(row, "depth")?;
            let oldest: Option<i64> = col(row, "oldest")?;
            let queue = waiting.entry(org_id.clone()).or_insert(QueueDepth {
                org_id,
                depth: 0,
                oldest_queued_at: None,
            });
            queue.depth += depth;
            if state == HandoffState::Queued.as_str() {
                queue.oldest_queued_at = oldest;
            }
        }
        let sql = format!("SELECT org_id FROM orgs WHERE TRUE{only} ORDER BY org_id");
        let mut ids = sqlx::query(&sql);
        if let Some(org) = org_id {
            ids = ids.bind(org);
        }
        let ids = ids.fetch_all(self.pool()).await?;
        ids.iter()
            .map(|row| {
                let org_id: String = col(row, "org_id")?;
                Ok(waiting.remove(&org_id).unwrap_or(QueueDepth {
                    org_id,
                    depth: 0,
                    oldest_queued_at: None,
                }))
            })
            .collect()
    }
}
