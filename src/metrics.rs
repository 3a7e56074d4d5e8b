//! Prometheus metrics (`GET /metrics`), kept with the `prometheus-client` crate and rendered
//! in the OpenMetrics text format, which Prometheus scrapes natively.
//!
//! Labels never carry secrets or visitor data: HTTP status codes, catalog codes, Dataverse
//! request kinds, handoff outcomes and org ids (which admins choose and which already appear
//! in URLs).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `handoff_webhooks_received_total` | counter | `org_id` (`unknown` for a delivery refused before its org was found), `status` (HTTP status the bridge answered) |
//! | `handoff_attempts_total` | counter | `org_id`, `outcome` (`succeeded`, `failed`, `skipped`, `retry_scheduled`, `waiting`), `code` (catalog code or `none`) |
//! | `handoff_attempt_duration_seconds` | histogram | `outcome` |
//! | `handoff_dataverse_requests_total` | counter | `kind` (`whoami`, `contacts`, `create_contact`, `workstream`, `queue`, `create_work_item`, `get_work_item`), `status` (HTTP status, or `transport_error`) |
//! | `handoff_dataverse_request_duration_seconds` | histogram | `kind` |
//! | `handoff_opencx_requests_total` | counter | `kind` (`session`, `history`, `send`), `status` (HTTP status, `transport_error`, or `paced`: held back by the bridge's pacing, not sent) |
//! | `handoff_opencx_request_duration_seconds` | histogram | `kind` |
//! | `handoff_token_requests_total` | counter | `outcome` (`issued`, or the catalog code of the failure) |
//! | `handoff_token_request_duration_seconds` | histogram | — |
//! | `handoff_callbacks_total` | counter | `org_id`, `event` (`handoff.succeeded`, `handoff.failed`, `handoff.delayed`, `opencx.write_back`), `outcome` (`delivered`, `retry_scheduled`, `failed`) |
//!
//! `org_id` labels stay bounded: orgs are created by the admin, and a webhook for an org
//! id that does not exist counts under `unknown`.
//! | `handoff_queue_depth` | gauge | `org_id`: handoffs `queued` or `processing` |
//! | `handoff_queue_oldest_age_seconds` | gauge | `org_id`: age of the oldest queued one (0 when none) |

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    org_id: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttemptLabels {
    org_id: String,
    outcome: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallbackLabels {
    org_id: String,
    event: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    kind: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OrgLabel {
    org_id: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Request and attempt durations: 5 ms to about 41 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Registers `metric` under `name` and returns it (metrics are handles onto shared state,
/// so the registry's copy and the returned one count together).
fn register<M>(registry: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    registry.register(name, help, metric.clone());
    metric
}

/// One bridge process's metrics. Cheap to update from any task.
pub struct Metrics {
    registry: Registry,
    webhooks: Family<WebhookLabels, Counter>,
    attempts: Family<AttemptLabels, Counter>,
    attempt_duration: Histograms<OutcomeLabel>,
    dataverse_requests: Family<RequestLabels, Counter>,
    dataverse_duration: Histograms<KindLabel>,
    opencx_requests: Family<RequestLabels, Counter>,
    opencx_duration: Histograms<KindLabel>,
    token_requests: Family<OutcomeLabel, Counter>,
    token_duration: Histogram,
    callbacks: Family<CallbackLabels, Counter>,
    queue_depth: Family<OrgLabel, Gauge>,
    oldest_queued: Family<OrgLabel, Gauge<f64, AtomicU64>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("handoff");
        Self {
            webhooks: register(
                &mut registry,
                "webhooks_received",
                "Webhook deliveries, by org and the HTTP status the bridge answered",
                Family::default(),
            ),
            attempts: register(
                &mut registry,
                "attempts",
                "Handoff attempts, by org, outcome and failure catalog code",
                Family::default(),
            ),
            attempt_duration: register(
                &mut registry,
                "attempt_duration_seconds",
                "Duration of one handoff attempt (token, contact lookup, work item create)",
                Family::new_with_constructor(duration_histogram),
            ),
            dataverse_requests: register(
                &mut registry,
                "dataverse_requests",
                "Dataverse Web API requests, by kind and HTTP status",
                Family::default(),
            ),
            dataverse_duration: register(
                &mut registry,
                "dataverse_request_duration_seconds",
                "Duration of one Dataverse request, answer read",
                Family::new_with_constructor(duration_histogram),
            ),
            opencx_requests: register(
                &mut registry,
                "opencx_requests",
                "OpenCX API requests, by kind and HTTP status (paced: held back, not sent)",
                Family::default(),
            ),
            opencx_duration: register(
                &mut registry,
                "opencx_request_duration_seconds",
                "Duration of one OpenCX API request, answer read",
                Family::new_with_constructor(duration_histogram),
            ),
            token_requests: register(
                &mut registry,
                "token_requests",
                "Entra ID token requests (refreshes), by outcome",
                Family::default(),
            ),
            token_duration: register(
                &mut registry,
                "token_request_duration_seconds",
                "Duration of one Entra ID token request",
                duration_histogram(),
            ),
            callbacks: register(
                &mut registry,
                "callbacks",
                "Callback and write-back deliveries, by org, event and outcome",
                Family::default(),
            ),
            queue_depth: register(
                &mut registry,
                "queue_depth",
                "Handoffs queued or being processed, per org (read at scrape time)",
                Family::default(),
            ),
            oldest_queued: register(
                &mut registry,
                "queue_oldest_age_seconds",
                "Age of the oldest queued handoff, per org (read at scrape time)",
                Family::default(),
            ),
            registry,
        }
    }

    /// A webhook delivery for `org_id` (`None`: refused before its org was found, counted as
    /// `unknown`) answered with `status`.
    pub fn webhook_answered(&self, org_id: Option<&str>, status: u16) {
        self.webhooks
            .get_or_create(&WebhookLabels {
                org_id: org_id.unwrap_or("unknown").to_owned(),
                status: status.to_string(),
            })
            .inc();
    }

    /// A finished handoff attempt of `org_id`: `outcome` is `succeeded`, `failed`,
    /// `skipped`, `retry_scheduled` or `waiting`, `code` the catalog code of its failure.
    pub fn attempt_finished(&self, org_id: &str, outcome: &str, code: Option<&str>, seconds: f64) {
        self.attempts
            .get_or_create(&AttemptLabels {
                org_id: org_id.to_owned(),
                outcome: outcome.to_owned(),
                code: code.unwrap_or("none").to_owned(),
            })
            .inc();
        self.attempt_duration
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .observe(seconds);
    }

    /// A Dataverse request of `kind` answered with `status` (`None`: no answer).
    pub fn dataverse_request(&self, kind: &str, status: Option<u16>, seconds: f64) {
        let status = status.map_or_else(|| "transport_error".to_owned(), |s| s.to_string());
        self.dataverse_requests
            .get_or_create(&RequestLabels {
                kind: kind.to_owned(),
                status,
            })
            .inc();
        self.dataverse_duration
            .get_or_create(&KindLabel {
                kind: kind.to_owned(),
            })
            .observe(seconds);
    }

    /// An OpenCX API request of `kind` answered with `status` (`transport_error`: no
    /// answer; `paced`: not sent, no duration observed).
    pub fn opencx_request(&self, kind: &str, status: &str, seconds: Option<f64>) {
        self.opencx_requests
            .get_or_create(&RequestLabels {
                kind: kind.to_owned(),
                status: status.to_owned(),
            })
            .inc();
        if let Some(seconds) = seconds {
            self.opencx_duration
                .get_or_create(&KindLabel {
                    kind: kind.to_owned(),
                })
                .observe(seconds);
        }
    }

    /// An Entra ID token request: `outcome` is `issued` or a catalog code.
    pub fn token_request(&self, outcome: &str, seconds: f64) {
        self.token_requests
            .get_or_create(&OutcomeLabel {
                outcome: outcome.to_owned(),
            })
            .inc();
        self.token_duration.observe(seconds);
    }

    /// A delivery attempt of an outbox row of `org_id` and `event` (its event type):
    /// `delivered`, `retry_scheduled` or `failed`.
    pub fn callback_attempted(&self, org_id: &str, event: &str, outcome: &str) {
        self.callbacks
            .get_or_create(&CallbackLabels {
                org_id: org_id.to_owned(),
                event: event.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// Sets the queue gauges from `queues` (read from the store by the caller), then
    /// renders every metric as OpenMetrics text.
    pub fn render(&self, queues: &[QueueGauge]) -> String {
        self.queue_depth.clear();
        self.oldest_queued.clear();
        for queue in queues {
            let label = OrgLabel {
                org_id: queue.org_id.clone(),
            };
            self.queue_depth.get_or_create(&label).set(queue.depth);
            self.oldest_queued
                .get_or_create(&label)
                .set(queue.oldest_age_secs);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// One org's queue gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueGauge {
    pub org_id: String,
    /// Handoffs `queued` or `processing`.
    pub depth: i64,
    /// Age of the oldest `queued` one, in seconds (0 when none).
    pub oldest_age_secs: f64,
}
