//! The sandbox: an in-process emulator of the Entra ID token endpoint, the Dataverse Web
//! API subset the bridge uses and the OpenCX public API subset (`opencx.rs`), on one
//! loopback port, seeded from `fixtures/sandbox/seed.json`.
//!
//! It records every request (`GET /_sandbox/requests`) and takes injected faults
//! (`POST /_sandbox/faults`): an error status, a delay, a reset before handling, or
//! "commit, then drop the response". Production code never calls into it; it shares no
//! request-building or parsing code with the Dataverse client.

mod control;
mod dataverse;
mod entra;
mod log;
pub mod odata;
pub mod opencx;
mod schema;
pub mod seed;
mod server;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use uuid::Uuid;

pub use control::{Fault, FaultAction, ServiceProtection};
pub use log::LoggedRequest;
pub use seed::{DemoConnection, Seed};

use control::*;
use log::*;
use server::*;

struct IssuedToken {
    client_id: String,
    expires_at: tokio::time::Instant,
}

/// The sandbox's data: the seed plus everything created since.
struct SandboxState {
    seed: Seed,
    url: String,
    tokens: HashMap<String, IssuedToken>,
    contacts: Vec<Value>,
    work_items: BTreeMap<Uuid, Value>,
    /// Notes (`annotation` rows) by `annotationid`, each with `_objectid_value`.
    annotations: BTreeMap<Uuid, Value>,
    /// Incidents by `incidentid`, each with its `ticketnumber` and `routings` (how many times
    /// it was routed: on create unless `routecase` was false, and once per routing action).
    incidents: BTreeMap<Uuid, Value>,
    requests: Vec<LoggedRequest>,
    faults: Vec<Fault>,
    next_seq: u64,
    /// Dataverse requests being handled now, and the most ever at once.
    in_flight: usize,
    peak_in_flight: usize,
    /// Service protection limits in force, and the request times in the current window.
    limits: Option<ServiceProtection>,
    window: std::collections::VecDeque<tokio::time::Instant>,
    /// The sandbox's time (token expiry, the limits' window): the system's, or the one a
    /// test shares with the bridge so both move forward together.
    clock: Arc<crate::clock::Clock>,
    /// OpenCX sessions by id (seeded; `send` merges `custom_data` into them).
    opencx_sessions: HashMap<String, opencx::SeededSession>,
    /// Every message OpenCX's `send` accepted: `{session_id, sender, message_id, message, custom_data}`.
    opencx_sent: Vec<Value>,
    /// Request times per OpenCX API key in the last minute (its rate limit).
    opencx_window: HashMap<String, std::collections::VecDeque<tokio::time::Instant>>,
}

type Shared = Arc<Mutex<SandboxState>>;

/// A running sandbox. Dropping it stops the server.
pub struct Sandbox {
    state: Shared,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Sandbox {
    /// Binds `addr` (use port 0 for a free port) and serves until dropped.
    pub async fn start(seed: Seed, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let url = format!("http://{addr}");
        let contacts = seed.contacts.clone();
        let faults = seed.faults.clone();
        let limits = seed.service_protection;
        let opencx_sessions = seed
            .opencx
            .sessions
            .iter()
            .filter_map(|s| Some((s.session["id"].as_str()?.to_owned(), s.clone())))
            .collect();
        let state = Arc::new(Mutex::new(SandboxState {
            seed,
            url,
            tokens: HashMap::new(),
            contacts,
            work_items: BTreeMap::new(),
            annotations: BTreeMap::new(),
            incidents: BTreeMap::new(),
            requests: Vec::new(),
            faults,
            next_seq: 1,
            in_flight: 0,
            peak_in_flight: 0,
            limits,
            window: std::collections::VecDeque::new(),
            clock: Arc::default(),
            opencx_sessions,
            opencx_sent: Vec::new(),
            opencx_window: HashMap::new(),
        }));
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, router(state.clone()), stop.clone()));
        Ok(Self { state, addr, stop })
    }

    /// Runs the sandbox on `clock` (tests give it the bridge's, then move both forward with
    /// `Clock::advance` instead of sleeping).
    pub fn set_clock(&self, clock: Arc<crate::clock::Clock>) {
        self.state.lock().expect("poisoned").clock = clock;
    }

    /// `http://127.0.0.1:PORT`: both the Entra authority and the environment URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The seed's ready-made connection for the demo org.
    pub fn demo_connection(&self) -> DemoConnection {
        self.state.lock().expect("poisoned").seed.demo.clone()
    }

    /// Every note (`annotation`) created, by `annotationid`, each with `_objectid_value`
    /// (its parent's id) and `objecttypecode`.
    pub fn annotations(&self) -> Vec<Value> {
        let s = self.state.lock().expect("poisoned");
        s.annotations.values().cloned().collect()
    }

    /// Every incident created, by `incidentid`: its columns, `ticketnumber`,
    /// `_customerid_value`, `customerid_type` (`contact` or `account`) and `routings`.
    pub fn incidents(&self) -> Vec<Value> {
        let s = self.state.lock().expect("poisoned");
        s.incidents.values().cloned().collect()
    }

    /// The OpenCX API key the demo org connects with: the seed's first.
    pub fn demo_opencx_api_key(&self) -> Option<String> {
        let s = self.state.lock().expect("poisoned");
        s.seed.opencx.api_keys.first().cloned()
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.lock().expect("poisoned").requests.clone()
    }

    /// Every live work item, with its context items under
    /// `msdyn_msdyn_ocliveworkitem_msdyn_ocliveworkitemcontextitem_ocliveworkitemid`.
    pub fn work_items(&self) -> Vec<Value> {
        self.state
            .lock()
            .expect("poisoned")
            .work_items
            .values()
            .cloned()
            .collect()
    }

    /// Every contact (seeded and created).
    pub fn contacts(&self) -> Vec<Value> {
        self.state.lock().expect("poisoned").contacts.clone()
    }

    /// Every message OpenCX's `send` accepted, oldest first:
    /// `{session_id, sender, message_id, message, custom_data}`.
    pub fn opencx_sent(&self) -> Vec<Value> {
        self.state.lock().expect("poisoned").opencx_sent.clone()
    }

    /// An OpenCX session as it is now (with the `custom_data` sends merged in).
    pub fn opencx_session(&self, id: &str) -> Option<Value> {
        let s = self.state.lock().expect("poisoned");
        s.opencx_sessions
            .get(id)
            .map(|seeded| seeded.session.clone())
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        self.state.lock().expect("poisoned").faults.push(fault);
    }

    /// The most Dataverse requests (token requests excluded) the sandbox was handling at once.
    pub fn peak_concurrency(&self) -> usize {
        self.state.lock().expect("poisoned").peak_in_flight
    }

    /// Every access token issued so far (tests check none leaks).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state
            .lock()
            .expect("poisoned")
            .tokens
            .keys()
            .cloned()
            .collect()
    }

    /// Marks the client secret with this value as expired (as Entra ID does at its end date).
    pub fn expire_secret(&self, value: &str) {
        let mut s = self.state.lock().expect("poisoned");
        for tenant in &mut s.seed.tenants {
            for app in &mut tenant.apps {
                for secret in app.secrets.iter_mut().filter(|sec| sec.value == value) {
                    secret.expired = true;
                }
            }
        }
    }

    /// Changes the tenant or the environment the way an admin would after the bridge was
    /// connected (delete an app or a secret, take away a security role, deactivate or
    /// delete a workstream). Requests see the change at once; tokens already issued stay
    /// valid until they expire (see [`Sandbox::expire_tokens`]).
    pub fn edit_seed<T>(&self, edit: impl FnOnce(&mut Seed) -> T) -> T {
        edit(&mut self.state.lock().expect("poisoned").seed)
    }

    /// Waits until no Dataverse request is being handled (a delayed one has committed or
    /// been cancelled), polling every 10 ms.
    ///
    /// # Panics
    /// After 10 s with a request still in flight.
    pub async fn until_idle(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.state.lock().expect("poisoned").in_flight > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a sandbox request is still in flight after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Drops every fault not yet used up.
    pub fn clear_faults(&self) {
        self.state.lock().expect("poisoned").faults.clear();
    }

    /// Sets (or, with `None`, lifts) the service protection limits.
    pub fn set_limits(&self, limits: Option<ServiceProtection>) {
        self.state.lock().expect("poisoned").limits = limits;
    }

    /// Makes every token issued so far expire now (Dataverse then answers 401).
    pub fn expire_tokens(&self) {
        let now = tokio::time::Instant::now();
        for t in self.state.lock().expect("poisoned").tokens.values_mut() {
            t.expires_at = now;
        }
    }
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(entra::token))
        .route("/api/data/v9.2/{*path}", any(dataverse::handle))
        .route("/chat/sessions/{id}", get(opencx::session))
        .route("/chat/sessions/{id}/history", get(opencx::history))
        .route("/chat/sessions/{id}/send", post(opencx::send))
        .route("/_sandbox/requests", get(admin_requests))
        .route("/_sandbox/work-items", get(admin_work_items))
        .route("/_sandbox/faults", post(admin_fault))
        .route("/_sandbox/limits", post(admin_limits))
        .route("/_sandbox/stats", get(admin_stats))
        .route("/_sandbox/opencx/sent", get(admin_opencx_sent))
        .with_state(state)
}

/// What a handler hands back to [`respond`]: the answer plus what to log.
struct Handled {
    response: Response,
    status: u16,
    error_code: Option<String>,
}

impl Handled {
    fn json(status: StatusCode, body: Value) -> Self {
        Self {
            response: (status, Json(body)).into_response(),
            status: status.as_u16(),
            error_code: None,
        }
    }

    /// A Dataverse error: `{"error":{"code":"0x…","message":…}}`.
    fn dataverse_error(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            response: (
                status,
                Json(json!({ "error": { "code": code, "message": message.into() } })),
            )
                .into_response(),
            status: status.as_u16(),
            error_code: Some(code.to_owned()),
        }
    }
}

/// Applies faults around `handle`, logs the request, and answers (or drops the connection).
async fn respond<F, Fut>(
    state: &Shared,
    req_meta: RequestMeta,
    switch: Option<DropSwitch>,
    handle: F,
) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Handled>,
{
    let fault = take_fault(state, &req_meta.kind);
    let is_dataverse = req_meta.kind != "token" && !opencx::is_opencx(&req_meta.kind);
    if is_dataverse {
        if let Some(refused) = over_limit(state) {
            log(state, &req_meta, refused.status, refused.error_code.clone());
            return refused.response;
        }
    }
    let _in_flight = is_dataverse.then(|| InFlight::enter(state));
    if let Some(FaultAction::Delay { ms }) = &fault {
        tokio::time::sleep(Duration::from_millis(*ms)).await;
    }
    let handled = match &fault {
        Some(FaultAction::Reset) => {
            log(state, &req_meta, 0, None);
            if let Some(s) = &switch {
                s.pull();
            }
            return std::future::pending().await;
        }
        Some(FaultAction::Status {
            status,
            retry_after_secs,
        }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let mut h = if req_meta.kind == "token" {
                entra::error_body(status, "temporarily_unavailable", 0, "injected fault")
            } else if opencx::is_opencx(&req_meta.kind) {
                opencx::error(status, "injected fault")
            } else {
                let code = if status == StatusCode::TOO_MANY_REQUESTS {
                    "0x80072322"
                } else {
                    "0x80040216"
                };
                Handled::dataverse_error(status, code, "injected fault")
            };
            if let Some(secs) = retry_after_secs {
                if let Ok(v) = secs.to_string().parse() {
                    h.response.headers_mut().insert("retry-after", v);
                }
            }
            h
        }
        _ => handle().await,
    };
    log(state, &req_meta, handled.status, handled.error_code.clone());
    if fault == Some(FaultAction::DropAfterCommit) {
        if let Some(s) = &switch {
            s.pull();
            return std::future::pending().await;
        }
    }
    handled.response
}

/// Counts a Dataverse request as in flight until dropped (also when its connection is
/// dropped mid-request).
struct InFlight(Shared);

impl InFlight {
    fn enter(state: &Shared) -> Self {
        let mut s = state.lock().expect("poisoned");
        s.in_flight += 1;
        s.peak_in_flight = s.peak_in_flight.max(s.in_flight);
        Self(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.lock().expect("poisoned").in_flight -= 1;
    }
}
