//! The command line: `serve`, `demo`, `sandbox`, `send`, `keygen`. Every flag has a
//! `HANDOFF_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config};
use crate::connection::crypto::EncryptionKey;
use crate::handoff::retry::RetryPolicy;
use crate::http::server::HttpLimits;
use crate::sandbox::{Sandbox, Seed};
use crate::{App, Settings};

/// Hands AI chat-widget sessions (OpenCX) over to human representatives in Dynamics 365
/// Omnichannel.
#[derive(Debug, Parser)]
#[command(name = "handoff-bridge", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `handoff_bridge=debug`
    /// [default: info; `warn` for demo, which prints its own report]
    #[arg(long, env = "HANDOFF_LOG", global = true)]
    pub log: Option<String>,
    /// Log format.
    #[arg(long, env = "HANDOFF_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: webhooks, admin API and the worker.
    Serve(Box<ServeArgs>),
    /// Run bridge and sandbox in-process, send every fixture session, print the outcomes.
    Demo(crate::demo::DemoArgs),
    /// Run the Entra ID + Dataverse sandbox alone.
    Sandbox(SandboxArgs),
    /// Sign a session or envelope JSON file per Standard Webhooks and post it.
    Send(SendArgs),
    /// Print a new random encryption key (base64 of 32 bytes).
    Keygen,
    /// Print the OpenAPI 3.1 document of the HTTP API (what `GET /openapi.json` serves).
    Openapi,
    /// Re-seal every stored secret with HANDOFF_ENCRYPTION_KEY (the last step of a key
    /// rotation; the old keys go in HANDOFF_PREVIOUS_ENCRYPTION_KEYS).
    Rekey(RekeyArgs),
}

/// The encryption keys (`serve`, `rekey`).
#[derive(Debug, Clone, Args)]
pub struct KeyArgs {
    /// Base64 32-byte key that encrypts stored secrets (make one with `keygen`). Required
    /// unless --sandbox, which makes up a key for its temporary database.
    #[arg(long, env = "HANDOFF_ENCRYPTION_KEY", hide_env_values = true)]
    pub encryption_key: Option<String>,
    /// File holding the encryption key, instead of HANDOFF_ENCRYPTION_KEY.
    #[arg(long, env = "HANDOFF_ENCRYPTION_KEY_FILE")]
    pub encryption_key_file: Option<PathBuf>,
    /// Earlier encryption keys, comma-separated: they still open stored secrets (never
    /// seal) until `rekey` has re-sealed everything with the current key.
    #[arg(long, env = "HANDOFF_PREVIOUS_ENCRYPTION_KEYS", hide_env_values = true)]
    pub previous_encryption_keys: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RekeyArgs {
    /// `sqlite://FILE` or `postgres://…`.
    #[arg(
        long,
        env = "HANDOFF_DATABASE_URL",
        default_value = "sqlite://handoff-bridge.db"
    )]
    pub database_url: String,
    #[command(flatten)]
    pub keys: KeyArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "HANDOFF_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// `sqlite://FILE` or `postgres://…` [default: sqlite://handoff-bridge.db; with --sandbox,
    /// a new SQLite file in a temporary directory]
    #[arg(long, env = "HANDOFF_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Bearer token for the admin API (at least 16 characters). Required unless --sandbox,
    /// which makes one up and prints it.
    #[arg(long, env = "HANDOFF_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// A token that can only read: the status page (as its sign-in password) and GET
    /// /v1/status. At least 16 characters, not the admin token. The admin token keeps full
    /// rights, the page's buttons included.
    #[arg(long, env = "HANDOFF_VIEWER_TOKEN", hide_env_values = true)]
    pub viewer_token: Option<String>,
    #[command(flatten)]
    pub keys: KeyArgs,
    /// Entra ID authority for tokens (sovereign clouds: `https://login.microsoftonline.us`, …).
    #[arg(
        long,
        env = "HANDOFF_ENTRA_AUTHORITY",
        default_value = "https://login.microsoftonline.com"
    )]
    pub entra_authority: String,
    /// Development only: allow http:// loopback authority, environment and callback URLs.
    #[arg(long, env = "HANDOFF_ALLOW_INSECURE_DYNAMICS")]
    pub allow_insecure_dynamics: bool,
    /// Start even when stored secrets do not open with HANDOFF_ENCRYPTION_KEY (and the
    /// previous keys): by default such a start is refused, naming the first org. With this,
    /// those orgs' webhooks are answered 503 connection_secret_unreadable until the bridge
    /// runs with the right key.
    #[arg(long, env = "HANDOFF_ALLOW_UNREADABLE_SECRETS")]
    pub allow_unreadable_secrets: bool,
    /// Handoffs and callbacks processed at once by this process (they wait on the network,
    /// not the CPU; each environment's gate still bounds its requests).
    #[arg(long, env = "HANDOFF_WORKER_CONCURRENCY", default_value_t = Settings::DEFAULT_CONCURRENCY, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_concurrency: u16,
    /// Concurrent Dataverse requests per environment from this process (service protection
    /// allows 52 per user; stay well under).
    #[arg(long, env = "HANDOFF_DATAVERSE_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=52))]
    pub dataverse_concurrency: u16,
    /// Dataverse requests per window (HANDOFF_DATAVERSE_WINDOW_SECS) this process sends to
    /// one environment: Dataverse allows 6,000 per 300 s per user. The bridge paces itself
    /// under it (96 % spread over the window plus a 2 % burst) and slows after a 429; with
    /// several replicas or other clients on the same application user, give each its share.
    #[arg(long, env = "HANDOFF_DATAVERSE_REQUESTS_PER_WINDOW", default_value_t = 6_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub dataverse_requests_per_window: u32,
    /// The window of HANDOFF_DATAVERSE_REQUESTS_PER_WINDOW, seconds (Dataverse: 300).
    #[arg(long, env = "HANDOFF_DATAVERSE_WINDOW_SECS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=3_600))]
    pub dataverse_window_secs: u32,
    /// OpenCX API requests a minute per API key, sustained (fetching thin events' sessions,
    /// the write-back). OpenCX documents 100 a minute; keep this plus the burst at or under
    /// your plan's limit.
    #[arg(long, env = "HANDOFF_OPENCX_REQUESTS_PER_MINUTE", default_value_t = crate::opencx::PACE_PER_MINUTE, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub opencx_requests_per_minute: u32,
    /// OpenCX API requests one API key may send at once after a quiet spell.
    #[arg(long, env = "HANDOFF_OPENCX_BURST", default_value_t = crate::opencx::PACE_BURST, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub opencx_burst: u32,
    /// On SIGTERM/Ctrl-C, seconds that handoffs in flight may take before they are given back
    /// to the queue.
    #[arg(long, env = "HANDOFF_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,
    /// Seconds a claimed job belongs to this process unless renewed; the worker renews it
    /// every third of that while the job runs, so after a crash another process takes the
    /// job within this time
    #[arg(long, env = "HANDOFF_LEASE_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=3600))]
    pub lease_secs: u64,
    /// Upper bound of the first retry's delay, in milliseconds (exponential backoff with full
    /// jitter doubles it per attempt).
    #[arg(long, env = "HANDOFF_RETRY_BASE_MS", default_value_t = 1000)]
    pub retry_base_ms: u64,
    /// Largest delay between two attempts once the early window has passed, in seconds.
    #[arg(long, env = "HANDOFF_RETRY_CAP_SECS", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub retry_cap_secs: u64,
    /// Largest delay between two attempts during the early window, in seconds (a visitor
    /// may still be waiting).
    #[arg(long, env = "HANDOFF_RETRY_EARLY_CAP_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub retry_early_cap_secs: u64,
    /// How long after a handoff's first attempt the early cap applies, in seconds.
    #[arg(long, env = "HANDOFF_RETRY_EARLY_WINDOW_SECS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(0..=86400))]
    pub retry_early_window_secs: u64,
    /// How often a transiently failing idempotent request is sent again within one attempt
    /// (after the quick delay, then 4 × it).
    #[arg(long, env = "HANDOFF_QUICK_RETRIES", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=5))]
    pub quick_retries: u32,
    /// Seconds a handoff may wait without a live work item before the widget backend is told
    /// once (`handoff.delayed`, with the reason and the next attempt's time).
    #[arg(long, env = "HANDOFF_DELAYED_AFTER_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub delayed_after_secs: u64,
    /// Seconds a chat handoff may wait without a live work item before it fails with
    /// `chat_expired` (`handoff.failed`), so the widget can offer another way.
    #[arg(long, env = "HANDOFF_CHAT_EXPIRY_SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..=86400))]
    pub chat_expiry_secs: u64,
    /// The delay before the first resend within an attempt, in milliseconds.
    #[arg(long, env = "HANDOFF_QUICK_RETRY_MS", default_value_t = 250, value_parser = clap::value_parser!(u64).range(0..=10000))]
    pub quick_retry_ms: u64,
    /// Timeout of each outbound request (Entra ID, Dataverse, callbacks), in seconds.
    #[arg(long, env = "HANDOFF_REQUEST_TIMEOUT_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub request_timeout_secs: u64,
    /// Jobs of one org processed at once by this process, so one org whose Dataverse hangs
    /// or who floods the queue cannot take every slot [default: half of
    /// HANDOFF_WORKER_CONCURRENCY, at least 1]
    #[arg(long, env = "HANDOFF_ORG_CONCURRENCY", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub org_concurrency: Option<u16>,
    /// This process's name among the replicas, carried by its leases, so that a restart of
    /// the same instance takes back at once the work it held; must be unique among live
    /// processes [default: `{hostname}:{port}`]
    #[arg(long, env = "HANDOFF_INSTANCE_ID", value_parser = instance_id)]
    pub instance_id: Option<String>,
    /// Open HTTP connections at most; past it new clients wait in the listen backlog.
    #[arg(long, env = "HANDOFF_HTTP_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub http_max_connections: u32,
    /// Seconds a client has to send a request head; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, env = "HANDOFF_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub http_header_timeout_secs: u64,
    /// Seconds a client has to send a request body (answered 408 past it).
    #[arg(long, env = "HANDOFF_HTTP_BODY_TIMEOUT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub http_body_timeout_secs: u64,
    /// Days a settled handoff keeps the visitor's session (summary, contact details,
    /// transcript) before it is redacted; ids, outcome and timeline are kept.
    #[arg(long, env = "HANDOFF_RETENTION_DAYS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub retention_days: u32,
    /// Start the sandbox in-process and connect a demo org `demo` to it.
    #[arg(long)]
    pub sandbox: bool,
}

#[derive(Debug, Clone, Args)]
pub struct SandboxArgs {
    /// Address to listen on (loopback only).
    #[arg(long, env = "HANDOFF_SANDBOX_LISTEN", default_value = "127.0.0.1:9090")]
    pub listen: SocketAddr,
    /// Seed file [default: the built-in copy of fixtures/sandbox/seed.json].
    #[arg(long)]
    pub seed: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// A session (`data.session`) or a whole envelope, as JSON.
    pub file: PathBuf,
    /// Base URL of the bridge.
    #[arg(long, env = "HANDOFF_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The org to post to.
    #[arg(long, env = "HANDOFF_ORG")]
    pub org: String,
    /// The org's webhook secret (`whsec_…`).
    #[arg(long, env = "HANDOFF_WEBHOOK_SECRET", hide_env_values = true)]
    pub secret: String,
    /// The webhook-id to send [default: a new random one].
    #[arg(long)]
    pub webhook_id: Option<String>,
}

/// Result of a command: the error is a message for the terminal.
pub type CliResult<T> = Result<T, String>;

/// Builds the service configuration from `serve` flags. `generated` supplies the admin
/// token and key when running with `--sandbox`.
pub fn serve_config(
    args: &ServeArgs,
    generated: Option<(&str, &str, &str)>,
) -> Result<Config, config::ConfigError> {
    let (token, key, db) = match generated {
        Some((t, k, db)) => (
            Some(args.admin_token.clone().unwrap_or_else(|| t.to_owned())),
            Some(
                args.keys
                    .encryption_key
                    .clone()
                    .unwrap_or_else(|| k.to_owned()),
            ),
            args.database_url.clone().unwrap_or_else(|| db.to_owned()),
        ),
        None => (
            args.admin_token.clone(),
            args.keys.encryption_key.clone(),
            args.database_url
                .clone()
                .unwrap_or_else(|| "sqlite://handoff-bridge.db".into()),
        ),
    };
    let encryption_key =
        config::encryption_key(key.as_deref(), args.keys.encryption_key_file.as_deref())?;
    let admin_token = config::admin_token(token.as_deref())?;
    let viewer_token = config::viewer_token(args.viewer_token.as_deref(), &admin_token)?;
    Ok(Config {
        listen: args.listen,
        database_url: db,
        admin_token,
        viewer_token,
        encryption_key,
        previous_encryption_keys: config::previous_encryption_keys(
            args.keys.previous_encryption_keys.as_deref(),
        )?,
        entra_authority: config::entra_authority(
            &args.entra_authority,
            args.allow_insecure_dynamics,
        )?,
        request_timeout: Duration::from_secs(args.request_timeout_secs),
        allow_unreadable_secrets: args.allow_unreadable_secrets,
        settings: Settings {
            allow_insecure_dynamics: args.allow_insecure_dynamics,
            retry: RetryPolicy {
                base: Duration::from_millis(args.retry_base_ms),
                cap: Duration::from_secs(args.retry_cap_secs),
                early_cap: Duration::from_secs(args.retry_early_cap_secs),
                early_window: Duration::from_secs(args.retry_early_window_secs),
                quick_retries: args.quick_retries,
                quick_base: Duration::from_millis(args.quick_retry_ms),
                delayed_after: Duration::from_secs(args.delayed_after_secs),
                chat_expiry: Duration::from_secs(args.chat_expiry_secs),
                ..RetryPolicy::default()
            },
            lease: Duration::from_secs(args.lease_secs),
            concurrency: args.worker_concurrency as usize,
            org_concurrency: args.org_concurrency.map_or_else(
                || Settings::default_org_concurrency(args.worker_concurrency as usize),
                usize::from,
            ),
            dataverse_concurrency: args.dataverse_concurrency as usize,
            dataverse_pacing: crate::dynamics::Pacing {
                requests: args.dataverse_requests_per_window,
                window: std::time::Duration::from_secs(u64::from(args.dataverse_window_secs)),
            },
            opencx_requests_per_minute: args.opencx_requests_per_minute,
            opencx_burst: args.opencx_burst,
            shutdown_grace: Duration::from_secs(args.shutdown_grace_secs),
            limits: HttpLimits {
                max_connections: args.http_max_connections as usize,
                header_read_timeout: Duration::from_secs(args.http_header_timeout_secs),
                body_read_timeout: Duration::from_secs(args.http_body_timeout_secs),
            },
            retention: Duration::from_secs(u64::from(args.retention_days) * 86_400),
            instance: Some(
                args.instance_id
                    .clone()
                    .unwrap_or_else(|| default_instance_id(args.listen.port())),
            ),
        },
    })
}

/// `HANDOFF_INSTANCE_ID`: 1–100 printable ASCII characters without `/` (the lease id's
/// separator).
fn instance_id(raw: &str) -> Result<String, String> {
    let ok = (1..=100).contains(&raw.len())
        && raw.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b'/');
    if ok {
        Ok(raw.to_owned())
    } else {
        Err("must be 1 to 100 printable ASCII characters, without spaces or '/'".to_owned())
    }
}

/// `{hostname}:{port}`: stable across a restart of the same process on the same host, and
/// different for replicas on other hosts or ports.
fn default_instance_id(port: u16) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{port}")
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler installs");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
        }
        tracing::info!("shutting down");
        token.cancel();
    });
}

/// `serve`: runs until Ctrl-C / SIGTERM.
pub async fn serve(args: ServeArgs) -> CliResult<()> {
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let mut args = args;
    let mut sandbox_setup = None;
    let _tempdir;
    let config = if args.sandbox {
        let sandbox = Sandbox::start(Seed::builtin(), "127.0.0.1:0".parse().expect("valid"))
            .await
            .map_err(|e| format!("cannot start the sandbox: {e}"))?;
        args.allow_insecure_dynamics = true;
        args.entra_authority = sandbox.url();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let db = format!(
            "sqlite://{}",
            dir.path().join("handoff-bridge.db").display()
        );
        _tempdir = dir;
        let token = EncryptionKey::generate_base64();
        let key = EncryptionKey::generate_base64();
        let config = serve_config(&args, Some((&token, &key, &db))).map_err(|e| e.to_string())?;
        sandbox_setup = Some(sandbox);
        config
    } else {
        serve_config(&args, None).map_err(|e| e.to_string())?
    };
    if config.settings.allow_insecure_dynamics && !config.listen.ip().is_loopback() {
        tracing::warn!(
            listen = %config.listen,
            "HANDOFF_ALLOW_INSECURE_DYNAMICS is on while listening on a non-loopback address: \
             http:// and loopback environment, authority and callback URLs are accepted. \
             This is for development only; turn it off in production."
        );
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let admin_token = secrecy::ExposeSecret::expose_secret(&config.admin_token).to_owned();
    let app = App::build(config).await.map_err(|e| e.to_string())?;
    let bridge_url = format!("http://{local}");
    tracing::info!(%bridge_url, "handoff-bridge listening");
    let server = tokio::spawn(app.serve(listener, shutdown.clone()));
    if let Some(sandbox) = &sandbox_setup {
        let secret = crate::demo::connect_demo_org(&bridge_url, &admin_token, sandbox).await?;
        crate::demo::connect_demo_opencx(&bridge_url, &admin_token, sandbox).await?;
        println!("handoff-bridge with sandbox");
        println!("  bridge:          {bridge_url}");
        println!("  sandbox:         {}", sandbox.url());
        println!("  admin token:     {admin_token}");
        println!("  org:             demo");
        println!("  webhook secret:  {secret}");
        println!("  try:             handoff-bridge send fixtures/sessions/01-verified-linked.json --url {bridge_url} --org demo --secret {secret}");
        println!("  then:            GET {bridge_url}/v1/orgs/demo/sessions (Authorization: Bearer <admin token>)");
    }
    server
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// `rekey`: re-seals every stored secret with the current key and prints what it did.
/// Fails if a stored secret opens with none of the keys (nothing else is left undone).
pub async fn rekey(args: RekeyArgs) -> CliResult<()> {
    let current = config::encryption_key(
        args.keys.encryption_key.as_deref(),
        args.keys.encryption_key_file.as_deref(),
    )
    .map_err(|e| e.to_string())?;
    let previous = config::previous_encryption_keys(args.keys.previous_encryption_keys.as_deref())
        .map_err(|e| e.to_string())?;
    let vault = crate::connection::vault::Vault::new(crate::connection::crypto::Keyring::new(
        current, previous,
    ));
    let store = crate::store::Store::connect(&args.database_url)
        .await
        .map_err(|e| e.to_string())?;
    let done = crate::connection::rekey::rekey(&store, &vault)
        .await
        .map_err(|e| e.to_string())?;
    store.close().await;
    println!(
        "re-sealed {} secret(s); {} already used the current key",
        done.resealed, done.current
    );
    if done.unreadable.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} secret(s) open with none of the keys (add the key they were sealed with to HANDOFF_PREVIOUS_ENCRYPTION_KEYS): {}",
            done.unreadable.len(),
            done.unreadable.join(", ")
        ))
    }
}

/// `sandbox`: runs the emulator until Ctrl-C / SIGTERM.
pub async fn sandbox(args: SandboxArgs) -> CliResult<()> {
    if !args.listen.ip().is_loopback() {
        return Err("the sandbox listens on loopback addresses only".into());
    }
    let seed = Seed::load(args.seed.as_deref())?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let sandbox = Sandbox::start(seed, args.listen)
        .await
        .map_err(|e| e.to_string())?;
    println!("sandbox listening on {}", sandbox.url());
    println!(
        "  token endpoint:  {}/{{tenant}}/oauth2/v2.0/token",
        sandbox.url()
    );
    println!("  environment URL: {}", sandbox.url());
    println!("  request log:     GET {}/_sandbox/requests", sandbox.url());
    shutdown.cancelled().await;
    Ok(())
}

/// `send`: posts a signed session or envelope and prints the answer.
pub async fn send(args: SendArgs) -> CliResult<()> {
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| format!("cannot read {}: {e}", args.file.display()))?;
    let body = crate::webhook::send::envelope_for(&text, &args.org)?;
    let secret =
        crate::webhook::WebhookSecret::parse(&args.secret).map_err(|e| format!("--secret: {e}"))?;
    let webhook_id = args
        .webhook_id
        .clone()
        .unwrap_or_else(|| format!("msg_{}", uuid::Uuid::new_v4().simple()));
    let url = format!(
        "{}/v1/webhooks/{}",
        args.url.trim_end_matches('/'),
        args.org
    );
    let (status, answer) =
        crate::demo::post_signed(&reqwest::Client::new(), &url, &secret, &webhook_id, &body)
            .await?;
    println!("HTTP {status}");
    println!("{answer}");
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("the bridge answered HTTP {status}"))
    }
}
