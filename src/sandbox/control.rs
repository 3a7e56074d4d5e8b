//! The test-control API (`/_sandbox/…`): injected faults, service protection limits, the
//! request log and statistics, as tests and the soak harness drive them.

use super::*;

/// What an injected fault does.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FaultAction {
    /// Answer with this status and a Dataverse- or Entra-shaped error.
    Status {
        status: u16,
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// Wait before handling.
    Delay { ms: u64 },
    /// Close the connection without an answer, before handling.
    Reset,
    /// Handle the request (commit), then close the connection without an answer.
    DropAfterCommit,
}

/// A fault for requests of `kind` (`any` matches every kind): the next `count` of them, or,
/// with `probability`, each one with that chance until `count` have been hit (`count` 0: no
/// limit). JSON: `{"kind":"contacts","action":"status","status":503,"probability":0.3,"count":0}`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct Fault {
    pub kind: String,
    #[serde(flatten)]
    pub action: FaultAction,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

impl FaultAction {
    /// An error answer with this HTTP status, and `Retry-After` when given (seconds).
    pub fn status(status: u16, retry_after_secs: Option<u64>) -> Self {
        Self::Status {
            status,
            retry_after_secs,
        }
    }
}

impl Fault {
    /// The next `count` requests of `kind`.
    pub fn next(kind: &str, action: FaultAction, count: u32) -> Self {
        Self {
            kind: kind.to_owned(),
            action,
            count,
            probability: None,
        }
    }
}

/// Dataverse service protection limits, scaled down for tests (docs/sources.md#service-protection: 6,000 requests
/// per 5-minute window, 52 concurrent, per user; the sandbox counts all Dataverse requests).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq)]
pub struct ServiceProtection {
    /// Sliding window, seconds.
    pub window_secs: u64,
    /// Requests allowed per window; past it, 429 `0x80072322` with `Retry-After`.
    pub max_requests: usize,
    /// Requests handled at once; past it, 429 `0x80072326`.
    pub max_concurrent: usize,
}

pub(crate) fn one() -> u32 {
    1
}

pub(crate) async fn admin_requests(State(state): State<Shared>) -> Json<Value> {
    Json(json!({ "requests": state.lock().expect("poisoned").requests }))
}

pub(crate) async fn admin_work_items(State(state): State<Shared>) -> Json<Value> {
    Json(
        json!({ "value": state.lock().expect("poisoned").work_items.values().collect::<Vec<_>>() }),
    )
}

/// `{"value": [{session_id, sender, message_id, message, custom_data}]}`: every message
/// OpenCX's `send` accepted, oldest first.
pub(crate) async fn admin_opencx_sent(State(state): State<Shared>) -> Json<Value> {
    Json(json!({ "value": state.lock().expect("poisoned").opencx_sent }))
}

/// `{"requests", "throttled", "work_items", "distinct_sessions", "peak_concurrency"}`: counts
/// for soak runs (`throttled`: requests answered 429), without transferring every row.
pub(crate) async fn admin_stats(State(state): State<Shared>) -> Json<Value> {
    let s = state.lock().expect("poisoned");
    let sessions: std::collections::HashSet<&str> = s
        .work_items
        .values()
        .filter_map(|w| {
            w[CONTEXT_ITEMS_NAV]
                .as_array()?
                .iter()
                .find(|c| c["msdyn_name"] == "sessionId")?["msdyn_value"]
                .as_str()
        })
        .collect();
    Json(json!({
        "requests": s.requests.len(),
        "throttled": s.requests.iter().filter(|r| r.status == 429).count(),
        "work_items": s.work_items.len(),
        "distinct_sessions": sessions.len(),
        "incidents": s.incidents.len(),
        "incidents_routed_more_than_once": s.incidents.values().filter(|i| i["routings"].as_u64() > Some(1)).count(),
        "annotations": s.annotations.len(),
        "distinct_note_parents": s.annotations.values().filter_map(|a| a["_objectid_value"].as_str()).collect::<std::collections::HashSet<_>>().len(),
        "peak_concurrency": s.peak_in_flight,
    }))
}

/// The context items' navigation property on a stored work item.
pub(crate) const CONTEXT_ITEMS_NAV: &str =
    "msdyn_msdyn_ocliveworkitem_msdyn_ocliveworkitemcontextitem_ocliveworkitemid";

pub(crate) async fn admin_limits(
    State(state): State<Shared>,
    Json(limits): Json<Option<ServiceProtection>>,
) -> StatusCode {
    state.lock().expect("poisoned").limits = limits;
    StatusCode::NO_CONTENT
}

pub(crate) async fn admin_fault(
    State(state): State<Shared>,
    Json(fault): Json<Fault>,
) -> StatusCode {
    state.lock().expect("poisoned").faults.push(fault);
    StatusCode::NO_CONTENT
}

/// Takes the first matching fault, counting it down.
pub(crate) fn take_fault(state: &Shared, kind: &str) -> Option<FaultAction> {
    use rand::Rng;
    let mut s = state.lock().expect("poisoned");
    let mut rng = rand::thread_rng();
    let i = s.faults.iter().position(|f| {
        (f.kind == kind || f.kind == "any")
            && f.probability
                .is_none_or(|p| rng.gen_bool(p.clamp(0.0, 1.0)))
    })?;
    let action = s.faults[i].action.clone();
    match s.faults[i].count {
        0 => {}
        1 => {
            s.faults.remove(i);
        }
        _ => s.faults[i].count -= 1,
    }
    Some(action)
}

/// A sliding window of request times: drops those `span` or more before `now`; when `max`
/// are still in it, the seconds (at least 1) until the oldest leaves, else `None`. The
/// caller records an admitted request with `push_back(now)`.
pub(crate) fn window_wait(
    window: &mut std::collections::VecDeque<tokio::time::Instant>,
    now: tokio::time::Instant,
    span: Duration,
    max: usize,
) -> Option<u64> {
    while window
        .front()
        .is_some_and(|t| now.duration_since(*t) >= span)
    {
        window.pop_front();
    }
    let oldest = *window.front().filter(|_| window.len() >= max)?;
    Some(
        (oldest + span)
            .duration_since(now)
            .as_secs_f64()
            .ceil()
            .max(1.0) as u64,
    )
}

/// Applies the service protection limits to one Dataverse request about to be handled:
/// `Some(answer)` when a limit refuses it.
pub(crate) fn over_limit(state: &Shared) -> Option<Handled> {
    let mut guard = state.lock().expect("poisoned");
    let s = &mut *guard;
    let limits = s.limits?;
    let now = s.clock.instant();
    let window = Duration::from_secs(limits.window_secs);
    let (code, message, retry_after) = if s.in_flight >= limits.max_concurrent {
        (
            "0x80072326",
            "Number of concurrent requests exceeded the limit of 52.",
            1,
        )
    } else if let Some(wait) = window_wait(&mut s.window, now, window, limits.max_requests) {
        (
            "0x80072322",
            "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
            wait,
        )
    } else {
        s.window.push_back(now);
        return None;
    };
    let mut h = Handled::dataverse_error(StatusCode::TOO_MANY_REQUESTS, code, message);
    h.response.headers_mut().insert(
        "retry-after",
        retry_after.to_string().parse().expect("digits"),
    );
    Some(h)
}
