//! The request log: every request the sandbox answered, for tests to assert on.

use super::*;

/// One request as the sandbox saw it.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedRequest {
    pub seq: u64,
    /// `token`, `whoami`, `contacts`, `contact`, `create_contact`, `workstream`, `queue`,
    /// `create_work_item`, `get_work_item`, `list_work_items`, `create_incident`,
    /// `get_incident`, `list_incidents`, `route_record`, `account`, `systemuser`, `team`,
    /// `privileges`, `other`, or (OpenCX) `opencx_session`, `opencx_history`, `opencx_send`.
    pub kind: String,
    pub method: String,
    pub path: String,
    /// The query string as sent (still percent-encoded).
    pub raw_query: Option<String>,
    pub status: u16,
    /// Dataverse error code of the answer, if any.
    pub error_code: Option<String>,
    /// The JSON body of a POST to Dataverse.
    pub body: Option<Value>,
    /// `OData-Version`, `OData-MaxVersion`, `Accept`, `Content-Type`, `Prefer` as sent.
    pub headers: BTreeMap<String, String>,
}

/// The parts of a request the log keeps.
pub(crate) struct RequestMeta {
    pub(crate) kind: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) raw_query: Option<String>,
    pub(crate) body: Option<Value>,
    pub(crate) headers: BTreeMap<String, String>,
}

impl RequestMeta {
    pub(crate) fn of(kind: &str, parts: &axum::http::request::Parts, body: Option<Value>) -> Self {
        let headers = [
            "odata-version",
            "odata-maxversion",
            "accept",
            "content-type",
            "prefer",
        ]
        .iter()
        .filter_map(|h| {
            parts
                .headers
                .get(*h)
                .and_then(|v| v.to_str().ok())
                .map(|v| (h.to_string(), v.to_owned()))
        })
        .collect();
        Self {
            kind: kind.to_owned(),
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            raw_query: parts.uri.query().map(str::to_owned),
            body,
            headers,
        }
    }
}

pub(crate) fn log(state: &Shared, meta: &RequestMeta, status: u16, error_code: Option<String>) {
    let mut s = state.lock().expect("poisoned");
    let seq = s.next_seq;
    s.next_seq += 1;
    s.requests.push(LoggedRequest {
        seq,
        kind: meta.kind.clone(),
        method: meta.method.clone(),
        path: meta.path.clone(),
        raw_query: meta.raw_query.clone(),
        status,
        error_code,
        body: meta.body.clone(),
        headers: meta.headers.clone(),
    });
}
