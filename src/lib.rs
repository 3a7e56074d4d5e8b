//! handoff-bridge: hands AI chat-widget sessions (OpenCX) over to human representatives in
//! Microsoft Dynamics 365 Omnichannel.
//!
//! Data flows one way: `http → webhook → store → handoff worker → dynamics → store →
//! callback`. [`App::build`] makes the service from a [`Config`]; [`App::serve`] runs it on
//! a listener it is given, so tests bind port 0 and run everything in-process.

pub mod catalog;
pub mod cli;
pub mod config;
pub mod connection;
pub mod demo;
pub mod diagnostics;
pub mod domain;
pub mod dynamics;
pub mod error;
pub mod handoff;
pub mod http;
pub mod metrics;
pub mod outbound;
pub mod sandbox;
pub mod store;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use config::Config;
use connection::crypto::Keyring;
use connection::orgs::OrgRules;
use connection::vault::Vault;
use dynamics::Dataverse;
use handoff::retry::RetryPolicy;
use metrics::Metrics;
use store::{Store, StoreError};

/// Worker and safety settings that the handoff code reads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Admits `http://` loopback environment, authority and callback URLs (development).
    pub allow_insecure_dynamics: bool,
    pub retry: RetryPolicy,
    /// How long a claimed job is owned before another worker may take it.
    pub lease: Duration,
    /// Jobs run at once by this process's worker.
    pub concurrency: usize,
    /// Jobs of one org run at once by this process's worker (default half of
    /// `concurrency`, at least 1), so an org whose Dataverse hangs or who floods the queue
    /// leaves slots for the others.
    pub org_concurrency: usize,
    /// Concurrent Dataverse requests per environment from this process (default 8).
    pub dataverse_concurrency: usize,
    /// On shutdown, how long jobs in flight may take before they are given back.
    pub shutdown_grace: Duration,
    /// Limits on inbound HTTP connections and request reads.
    pub limits: http::server::HttpLimits,
    /// How long a settled handoff keeps the visitor's session (summary, contact details,
    /// transcript) before it is redacted; ids, outcome and timeline stay (default 30 days).
    pub retention: Duration,
}

impl Settings {
    /// The default per-org share of `concurrency`: half, at least 1.
    pub fn default_org_concurrency(concurrency: usize) -> usize {
        (concurrency / 2).max(1)
    }
}

/// Everything a request handler or a job needs. Shared as `Arc<Context>`.
pub struct Context {
    pub store: Store,
    /// The stored secrets: sealed with the current encryption key, opened with it or a
    /// previous one.
    pub vault: Vault,
    /// Outbound HTTP for callbacks: its own pool, timeouts set, no redirects, and the
    /// address policy applied when it connects (`handoff::address`).
    pub callbacks: reqwest::Client,
    /// Entra ID tokens and Dataverse traffic (the same HTTP client, the token cache, the
    /// per-environment gates).
    pub dataverse: Arc<Dataverse>,
    /// What `GET /metrics` reports; shared with `dataverse`.
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub admin_token: SecretString,
    /// Wakes the worker when work arrives.
    pub wake: Notify,
    /// Signalled each time a job's outcome is recorded (tests and `demo` wait on it).
    pub settled: Notify,
}

impl Context {
    /// What a handoff attempt works with: this process's store, vault and Dataverse, its
    /// retry policy, and the system clock.
    pub fn job(&self) -> handoff::job::JobContext<'_, Arc<Dataverse>> {
        handoff::job::JobContext {
            store: &self.store,
            vault: &self.vault,
            dataverse: &self.dataverse,
            retry: self.settings.retry,
            allow_insecure: self.settings.allow_insecure_dynamics,
            clock: &handoff::job::SystemClock,
        }
    }

    /// The org and connection rules over this process's store, vault and Dataverse.
    pub fn org_rules(&self) -> OrgRules<'_> {
        OrgRules {
            store: &self.store,
            vault: &self.vault,
            dataverse: &self.dataverse,
            allow_insecure: self.settings.allow_insecure_dynamics,
        }
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
}

/// The built service.
pub struct App {
    ctx: Arc<Context>,
}

impl App {
    /// Connects the store (running migrations) and builds the service.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        let store = Store::connect(&config.database_url).await?;
        let http = outbound::http_client(config.request_timeout);
        let metrics = Arc::new(Metrics::new());
        let dataverse = Dataverse::new(
            http,
            &config.entra_authority,
            config.settings.dataverse_concurrency,
            metrics.clone(),
        );
        Ok(Self {
            ctx: Arc::new(Context {
                store,
                vault: Vault::new(Keyring::new(
                    config.encryption_key,
                    config.previous_encryption_keys,
                )),
                callbacks: handoff::address::callback_client(
                    config.request_timeout,
                    handoff::address::AddressPolicy {
                        allow_loopback: config.settings.allow_insecure_dynamics,
                    },
                ),
                dataverse,
                metrics,
                settings: config.settings,
                admin_token: config.admin_token,
                wake: Notify::new(),
                settled: Notify::new(),
            }),
        })
    }

    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// The HTTP API.
    pub fn router(&self) -> axum::Router {
        http::router(self.ctx.clone())
    }

    /// Runs every job that is due now and returns how many ran (tests drain with this).
    pub async fn run_due(&self) -> Result<usize, StoreError> {
        handoff::worker::run_due(&self.ctx).await
    }

    /// Redacts the sessions whose retention period ended by `now` (Unix ms), as the worker
    /// does hourly; returns how many.
    pub async fn enforce_retention(&self, now: i64) -> Result<u64, StoreError> {
        handoff::worker::enforce_retention(&self.ctx, now).await
    }

    /// Starts the background worker.
    pub fn spawn_worker(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(handoff::worker::run(self.ctx.clone(), shutdown))
    }

    /// Serves the API on `listener` and runs the worker until `shutdown` is cancelled.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        let worker = self.spawn_worker(shutdown.clone());
        http::server::serve(
            listener,
            self.router(),
            self.ctx.settings.limits,
            shutdown,
            self.ctx.settings.shutdown_grace,
        )
        .await;
        let _ = worker.await;
        self.ctx.store.close().await;
        Ok(())
    }
}
