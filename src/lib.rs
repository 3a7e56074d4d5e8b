//! handoff-bridge: hands AI chat-widget sessions (OpenCX) over to human representatives in
//! Microsoft Dynamics 365 Omnichannel.
//!
//! Data flows one way: `http → webhook → store → handoff worker → dynamics → store →
//! callback`. [`App::build`] makes the service from a [`Config`]; [`App::serve`] runs it on
//! a listener it is given, so tests bind port 0 and run everything in-process.

pub mod cli;
pub mod clock;
pub mod config;
pub mod connection;
pub mod demo;
pub mod diagnostics;
pub mod domain;
pub mod dynamics;
pub mod handoff;
pub mod http;
pub mod metrics;
pub mod opencx;
pub mod outbound;
pub mod sandbox;
pub mod store;
pub mod wake;
pub mod webhook;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use clock::Clock;
pub use config::{Config, Settings};
use connection::crypto::Keyring;
use connection::vault::Vault;
use dynamics::Dataverse;
use handoff::worker::Worker;
use http::AppState;
use metrics::Metrics;
use store::{Store, StoreError};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    /// Stored secrets do not open with the configured keys (see [`check_encryption_key`]).
    #[error("{0}")]
    UnreadableSecrets(String),
}

/// Tries to open each org's current webhook secret with `vault`: a bridge started with
/// another `HANDOFF_ENCRYPTION_KEY` than the one they were saved with would otherwise start
/// quietly and answer every webhook `401 signature_mismatch`, sending the widget team after
/// a secret that is right. Returns the sentence to refuse the start with (naming the first
/// org, how many fail and the variables to fix), or `None` when every one opens.
pub fn check_encryption_key(vault: &Vault, orgs: &[store::OrgRow]) -> Option<String> {
    let failing: Vec<&str> = orgs
        .iter()
        .filter(|org| vault.webhook_secret(org).is_err())
        .map(|org| org.org_id.as_str())
        .collect();
    let first = failing.first()?;
    Some(format!(
        "the stored webhook secret of org '{first}' ({} of {} orgs) cannot be decrypted with HANDOFF_ENCRYPTION_KEY or HANDOFF_PREVIOUS_ENCRYPTION_KEYS: the bridge was started with another key than the one its secrets were saved with. Start it with that key (during a rotation, the old one in HANDOFF_PREVIOUS_ENCRYPTION_KEYS), or set HANDOFF_ALLOW_UNREADABLE_SECRETS=true to start anyway: those orgs' webhooks are then answered 503 connection_secret_unreadable",
        failing.len(),
        orgs.len()
    ))
}

/// The built service: the HTTP routes' state and the worker, sharing one store, vault,
/// Dataverse client and metrics registry.
pub struct App {
    state: Arc<AppState>,
    worker: Arc<Worker>,
    settings: Settings,
}

impl App {
    /// Connects the store (running migrations) and builds the service on the system clock.
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        Self::build_with_clock(config, Arc::new(Clock::system())).await
    }

    /// [`App::build`] on `clock` (tests share one clock between replicas and the sandbox,
    /// and move it forward instead of sleeping).
    pub async fn build_with_clock(config: Config, clock: Arc<Clock>) -> Result<Self, StartupError> {
        let store = Store::connect(&config.database_url).await?;
        webhook::upgrade::upgrade_stored_sessions(&store).await?;
        let metrics = Arc::new(Metrics::new());
        let dataverse = Dataverse::new(
            outbound::http_client(config.request_timeout),
            &config.entra_authority,
            config.settings.dataverse_concurrency,
            config.settings.dataverse_pacing,
            metrics.clone(),
            clock.clone(),
        );
        // OpenCX's base URL is the admin's to set: its client keeps the callbacks' address
        // policy (public addresses only, checked when it connects).
        let opencx = Arc::new(
            opencx::OpenCx::paced(
                webhook::address::callback_client(
                    config.request_timeout,
                    webhook::address::AddressPolicy {
                        allow_loopback: config.settings.allow_insecure_dynamics,
                    },
                ),
                config.settings.opencx_requests_per_minute,
                config.settings.opencx_burst,
            )
            .with_metrics(metrics.clone()),
        );
        let vault = Vault::new(Keyring::new(
            config.encryption_key,
            config.previous_encryption_keys,
        ));
        if let Some(why) = check_encryption_key(&vault, &store.orgs().await?) {
            if !config.allow_unreadable_secrets {
                return Err(StartupError::UnreadableSecrets(why));
            }
            tracing::error!(error = %why, "starting anyway (HANDOFF_ALLOW_UNREADABLE_SECRETS)");
        }
        let wake = Arc::new(crate::wake::Wake::default());
        let settings = config.settings;
        let worker = Arc::new(Worker {
            store: match &settings.instance {
                Some(instance) => store.owned_by(instance),
                None => store.clone(),
            },
            vault: vault.clone(),
            dataverse: dataverse.clone(),
            opencx: opencx.clone(),
            callbacks: webhook::address::callback_client(
                config.request_timeout,
                webhook::address::AddressPolicy {
                    allow_loopback: settings.allow_insecure_dynamics,
                },
            ),
            metrics: metrics.clone(),
            clock: clock.clone(),
            settings: settings.worker(),
            wake: wake.clone(),
            paused_orgs: Default::default(),
        });
        let state = Arc::new(AppState {
            store,
            vault,
            dataverse,
            opencx,
            metrics,
            allow_insecure: settings.allow_insecure_dynamics,
            limits: settings.limits,
            admin_token: config.admin_token,
            viewer_token: config.viewer_token,
            clock,
            wake,
        });
        Ok(Self {
            state,
            worker,
            settings,
        })
    }

    /// The service's clock; tests move it forward instead of sleeping.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.worker.clock
    }

    /// The worker's parts (its store, vault and job context); tests reach the store here.
    pub fn worker(&self) -> &Arc<Worker> {
        &self.worker
    }

    /// The HTTP API.
    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// Runs every job that is due now and returns how many ran (tests drain with this).
    pub async fn run_due(&self) -> Result<usize, StoreError> {
        handoff::worker::run_due(&self.worker).await
    }

    /// Redacts the sessions whose retention period ended by `now` (Unix ms), as the worker
    /// does hourly; returns how many.
    pub async fn enforce_retention(&self, now: i64) -> Result<u64, StoreError> {
        handoff::worker::enforce_retention(&self.worker, now).await
    }

    /// Starts the background worker.
    pub fn spawn_worker(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(handoff::worker::run(self.worker.clone(), shutdown))
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
            self.settings.limits,
            shutdown,
            self.settings.shutdown_grace,
        )
        .await;
        let _ = worker.await;
        self.state.store.close().await;
        Ok(())
    }
}
