//! The Dataverse Web API client (v9.2), its Entra ID token cache and OData helpers.
//!
//! This module knows Dataverse and Entra ID; it knows nothing about OpenCX sessions.

pub mod choices;
pub mod client;
pub mod failure;
pub mod odata;
pub mod tables;
pub mod throttle;
pub mod token;

use std::sync::Arc;

use crate::clock::Clock;
use crate::metrics::Metrics;

pub use choices::StreamSource;
pub use client::{CreateOutcome, DataverseClient, DataverseError, IncidentRef, Workstream};
pub use failure::{Explained, RetryClass};
pub use tables::{
    AnnotationCreate, ContactCreate, ContextItemCreate, IncidentCreate, LiveWorkItemCreate,
};
pub use throttle::{Gates, Pacing, Paused};
pub use token::{Credentials, TokenError, TokenProvider};

/// What every Dataverse client of this process shares: the HTTP client, the token cache and
/// the per-environment gates.
pub struct Dataverse {
    pub http: reqwest::Client,
    pub tokens: TokenProvider,
    pub gates: Gates,
    /// Counts and times every Dataverse and token request.
    pub metrics: Arc<Metrics>,
}

impl Dataverse {
    /// `authority` is the Entra ID authority; `max_concurrent` the requests per environment
    /// at once, `pacing` how many it may be sent in a window; pauses after a 429 and token
    /// lifetimes are measured by `clock`.
    pub fn new(
        http: reqwest::Client,
        authority: &str,
        max_concurrent: usize,
        pacing: Pacing,
        metrics: Arc<Metrics>,
        clock: Arc<Clock>,
    ) -> Arc<Self> {
        Arc::new(Self {
            tokens: TokenProvider::new(http.clone(), authority, metrics.clone(), clock.clone()),
            gates: Gates::new(max_concurrent, pacing, clock),
            http,
            metrics,
        })
    }

    /// A client for one connection's credentials.
    pub fn client(self: &Arc<Self>, creds: Credentials) -> DataverseClient {
        DataverseClient::new(self.clone(), creds)
    }
}
