//! A bridge + sandbox pair for one test.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use handoff_bridge::clock::Clock;
use handoff_bridge::connection::crypto::EncryptionKey;
use handoff_bridge::handoff::retry::RetryPolicy;
use handoff_bridge::http::server::HttpLimits;
use handoff_bridge::sandbox::{Sandbox, Seed};
use handoff_bridge::webhook::WebhookSecret;
use handoff_bridge::{App, Config, Settings};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Everything the bridge logged (debug level and up), from every test in this binary.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().unwrap()).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let _ = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .try_init();
        buffer
    })
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The variable naming a Postgres database to run the suite on instead of SQLite.
pub const POSTGRES_VAR: &str = "HANDOFF_TEST_DATABASE_URL";

/// Where a test's store lives.
pub enum TestDb {
    /// A SQLite file in the test's temporary directory.
    Sqlite(PathBuf),
    /// A fresh schema in the Postgres database named by `HANDOFF_TEST_DATABASE_URL`.
    Postgres { base_url: String, schema: String },
}

impl TestDb {
    /// A new, empty store location: Postgres when `HANDOFF_TEST_DATABASE_URL` is set,
    /// otherwise a SQLite file in `dir`.
    pub async fn new(dir: &std::path::Path) -> Self {
        match std::env::var(POSTGRES_VAR) {
            Ok(base_url) if !base_url.is_empty() => {
                sqlx::any::install_default_drivers();
                drop_leftover_schemas(&base_url);
                let (schema, _) = crate::postgres::create_schema(&base_url, "handoff_it_").await;
                TestDb::Postgres { base_url, schema }
            }
            _ => TestDb::Sqlite(dir.join("bridge.db")),
        }
    }

    /// The `HANDOFF_DATABASE_URL` for the bridge.
    pub fn url(&self) -> String {
        match self {
            TestDb::Sqlite(path) => format!("sqlite://{}", path.display()),
            TestDb::Postgres { base_url, schema } => crate::postgres::schema_url(base_url, schema),
        }
    }

    /// Everything stored, as text: the SQLite file and its WAL, or every row of every table.
    pub async fn raw_contents(&self) -> String {
        match self {
            TestDb::Sqlite(path) => {
                let mut bytes = std::fs::read(path).unwrap();
                if let Ok(wal) = std::fs::read(path.with_extension("db-wal")) {
                    bytes.extend(wal);
                }
                String::from_utf8_lossy(&bytes).into_owned()
            }
            TestDb::Postgres { .. } => {
                let pool = sqlx::AnyPool::connect(&self.url()).await.unwrap();
                let mut out = String::new();
                for table in [
                    "orgs",
                    "connections",
                    "handoffs",
                    "handoff_events",
                    "callbacks",
                ] {
                    let row = sqlx::query(&format!(
                        "SELECT COALESCE(string_agg(t::text, ' '), '') AS dump FROM {table} t"
                    ))
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                    out.push_str(&sqlx::Row::get::<String, _>(&row, "dump"));
                }
                pool.close().await;
                out
            }
        }
    }
}

/// Drops the schemas earlier runs of this suite left behind, once per test process (before
/// this process creates any). Two suites run at once against one database would clash.
fn drop_leftover_schemas(base_url: &str) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let base_url = base_url.to_owned();
        std::thread::spawn(move || {
            tokio::runtime::Runtime::new().unwrap().block_on(async move {
                let pool = sqlx::AnyPool::connect(&base_url).await.expect("the test Postgres database answers");
                let rows = sqlx::query("SELECT schema_name::text AS schema_name FROM information_schema.schemata WHERE schema_name LIKE 'handoff_it_%'")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
                for row in rows {
                    let name: String = sqlx::Row::get(&row, "schema_name");
                    sqlx::query(&format!("DROP SCHEMA {name} CASCADE")).execute(&pool).await.unwrap();
                }
                pool.close().await;
            })
        })
        .join()
        .unwrap();
    });
}

/// A running bridge (HTTP on a free port, worker drained by hand) and its sandbox.
pub struct TestApp {
    pub sandbox: Sandbox,
    pub app: App,
    pub url: String,
    pub http: reqwest::Client,
    pub admin_token: String,
    pub db: TestDb,
    encryption_key: String,
    pub options: TestOptions,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Drop for TestApp {
    /// Stops serving, so the router's hold on the store's pool ends with the test (tests
    /// that start many bridges would otherwise run Postgres out of connections).
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(TestOptions::default()).await
    }

    pub async fn start_with(options: TestOptions) -> Self {
        log_buffer();
        let seed = options.seed.clone().unwrap_or_else(Seed::builtin);
        let sandbox = Sandbox::start(seed, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = TestDb::new(dir.path()).await;
        let admin_token = format!("admin-{}", uuid::Uuid::new_v4().simple());
        let encryption_key = EncryptionKey::generate_base64();
        let config = test_config(&sandbox, &db, &admin_token, &encryption_key, &options);
        // One clock for the bridge, its replicas and the sandbox: tests move it forward
        // (`TestApp::advance`) instead of sleeping.
        let clock = Arc::new(Clock::system());
        sandbox.set_clock(clock.clone());
        let app = App::build_with_clock(config, clock).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let router = app.router();
        let limits = options.http_limits;
        let server = tokio::spawn(handoff_bridge::http::server::serve(
            listener,
            router,
            limits,
            tokio_util::sync::CancellationToken::new(),
            Duration::ZERO,
        ));
        Self {
            sandbox,
            app,
            url,
            http: reqwest::Client::new(),
            admin_token,
            db,
            encryption_key,
            options,
            server,
            _dir: dir,
        }
    }

    /// The clock the bridge, its replicas and the sandbox share.
    pub fn clock(&self) -> Arc<Clock> {
        self.app.clock().clone()
    }

    /// Lets `by` pass for the bridge and the sandbox, without sleeping.
    pub fn advance(&self, by: Duration) {
        self.app.clock().advance(by);
    }

    /// Another bridge process on the same store (same key and token), not serving HTTP:
    /// a second replica's worker.
    pub async fn replica(&self) -> App {
        App::build_with_clock(
            test_config(
                &self.sandbox,
                &self.db,
                &self.admin_token,
                &self.encryption_key,
                &self.options,
            ),
            self.clock(),
        )
        .await
        .unwrap()
    }

    /// A replica in production mode (`HANDOFF_ALLOW_INSECURE_DYNAMICS` off) on the same
    /// store: loopback environments and callbacks are refused.
    pub async fn secure_replica(&self) -> App {
        let mut config = test_config(
            &self.sandbox,
            &self.db,
            &self.admin_token,
            &self.encryption_key,
            &self.options,
        );
        config.settings.allow_insecure_dynamics = false;
        App::build_with_clock(config, self.clock()).await.unwrap()
    }

    /// The `HANDOFF_ENCRYPTION_KEY` the store's secrets were saved with (base64).
    pub fn encryption_key(&self) -> &str {
        &self.encryption_key
    }

    /// A replica with this current key and these previous keys (base64).
    pub async fn replica_with_keys(&self, current: &str, previous: &[&str]) -> App {
        let mut config = test_config(
            &self.sandbox,
            &self.db,
            &self.admin_token,
            current,
            &self.options,
        );
        config.previous_encryption_keys = previous
            .iter()
            .map(|k| EncryptionKey::from_base64(k).unwrap())
            .collect();
        App::build_with_clock(config, self.clock()).await.unwrap()
    }

    /// A replica started with another `HANDOFF_ENCRYPTION_KEY` than the one the store's
    /// secrets were saved with, told to start anyway (`HANDOFF_ALLOW_UNREADABLE_SECRETS`).
    pub async fn replica_with_other_key(&self) -> App {
        self.build_with_other_key(true).await.unwrap()
    }

    /// [`TestApp::replica_with_other_key`], with `allow_unreadable_secrets` as given.
    pub async fn build_with_other_key(
        &self,
        allow_unreadable_secrets: bool,
    ) -> Result<App, handoff_bridge::StartupError> {
        let mut config = test_config(
            &self.sandbox,
            &self.db,
            &self.admin_token,
            &EncryptionKey::generate_base64(),
            &self.options,
        );
        config.allow_unreadable_secrets = allow_unreadable_secrets;
        App::build_with_clock(config, self.clock()).await
    }

    /// An admin API call; returns the status and the JSON body (Null when empty).
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(&self.admin_token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Creates an org; returns its webhook secret.
    pub async fn create_org(&self, org: &str, callback_url: Option<&str>) -> WebhookSecret {
        let (status, body) = self
            .admin(
                reqwest::Method::PUT,
                &format!("/v1/orgs/{org}"),
                Some(json!({ "name": org, "callback_url": callback_url })),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        WebhookSecret::parse(body["webhook_secret"].as_str().unwrap()).unwrap()
    }

    /// The seed's demo credentials for this sandbox, with changes.
    pub fn connection_input(&self, changes: Value) -> Value {
        let demo = self.sandbox.demo_connection();
        let mut input = json!({
            "tenant_id": demo.tenant_id,
            "client_id": demo.client_id,
            "client_secret": demo.client_secret,
            "environment_url": self.sandbox.url(),
            "default_queue_id": demo.default_queue_id,
        });
        if let Some(incidents) = demo.incidents {
            input["incidents"] = incidents;
        }
        for (k, v) in changes.as_object().unwrap() {
            input[k] = v.clone();
        }
        input
    }

    /// Creates `org` connected to the sandbox; returns its webhook secret.
    pub async fn connected_org(&self, org: &str) -> WebhookSecret {
        let secret = self.create_org(org, None).await;
        self.connect(org).await;
        secret
    }

    /// Saves the sandbox's demo connection for the existing `org` (test-and-save passes).
    pub async fn connect(&self, org: &str) {
        self.connect_with(org, json!({})).await;
    }

    /// Saves the sandbox's demo connection, with `changes`, for the existing `org`
    /// (test-and-save must pass).
    pub async fn connect_with(&self, org: &str, changes: Value) {
        let (status, body) = self
            .admin(
                reqwest::Method::PUT,
                &format!("/v1/orgs/{org}/connection"),
                Some(self.connection_input(changes)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// `PUT /v1/orgs/{org}/opencx` with the seed's API key against the sandbox, changed by
    /// `changes`; returns the status and body.
    pub async fn connect_opencx(&self, org: &str, changes: Value) -> (StatusCode, Value) {
        let key = self
            .sandbox
            .demo_opencx_api_key()
            .expect("the seed has an API key");
        let mut input = json!({ "api_key": key, "base_url": self.sandbox.url() });
        for (k, v) in changes.as_object().unwrap() {
            input[k] = v.clone();
        }
        self.admin(
            reqwest::Method::PUT,
            &format!("/v1/orgs/{org}/opencx"),
            Some(input),
        )
        .await
    }

    /// Posts a signed webhook with `webhook_id`; returns status and JSON body.
    pub async fn send(
        &self,
        org: &str,
        secret: &WebhookSecret,
        webhook_id: &str,
        body: &Value,
    ) -> (StatusCode, Value) {
        let bytes = serde_json::to_vec(body).unwrap();
        // Signed at the shared clock's time: the sender lives through the same time as the bridge.
        let timestamp = self.clock().now_ms() / 1000;
        self.post_webhook(
            org,
            &bytes,
            &[
                ("content-type", "application/json".into()),
                ("webhook-id", webhook_id.into()),
                ("webhook-timestamp", timestamp.to_string()),
                (
                    "webhook-signature",
                    secret.sign(webhook_id, timestamp, &bytes),
                ),
            ],
        )
        .await
    }

    /// Posts raw bytes with exactly these headers.
    pub async fn post_webhook(
        &self,
        org: &str,
        body: &[u8],
        headers: &[(&str, String)],
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}/v1/webhooks/{org}", self.url))
            .body(body.to_vec());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let response = req.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Sends a handoff webhook for `session` (merged over [`envelope`]'s defaults) with
    /// `webhook-id` `msg_{id}`; returns the status and JSON body.
    pub async fn submit(
        &self,
        org: &str,
        secret: &WebhookSecret,
        session: Value,
    ) -> (StatusCode, Value) {
        let id = session["id"]
            .as_str()
            .expect("the session has an id")
            .to_owned();
        self.send(org, secret, &format!("msg_{id}"), &envelope(org, session))
            .await
    }

    /// [`TestApp::submit`], asserting it was accepted, then drains the queue.
    pub async fn hand_off(&self, org: &str, secret: &WebhookSecret, session: Value) {
        let (status, body) = self.submit(org, secret, session).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        self.drain().await;
    }

    /// Makes the next live work item create answer `status` (with `Retry-After`).
    pub fn refuse_next_create(&self, status: u16, retry_after_secs: Option<u64>) {
        self.sandbox.inject(handoff_bridge::sandbox::Fault::next(
            "create_work_item",
            handoff_bridge::sandbox::FaultAction::status(status, retry_after_secs),
            1,
        ));
    }

    /// Two orgs with handoffs in every settled and waiting state: `acme` (connected,
    /// incidents off) with `ok_1` succeeded, `mail_1` skipped (email channel), `fail_1`
    /// failed (403: `missing_privilege`) and `wait_1` queued (429, Retry-After 300 s);
    /// `beta` (not connected) with `beta_1` queued (`not_connected`).
    pub async fn two_orgs_in_every_state(&self) {
        let acme = self.create_org("acme", None).await;
        self.connect_with("acme", json!({ "incidents": { "enabled": false } }))
            .await;
        let beta = self.create_org("beta", None).await;
        self.hand_off("acme", &acme, json!({ "id": "ok_1" })).await;
        self.hand_off(
            "acme",
            &acme,
            json!({ "id": "mail_1", "channel": { "type": "email" } }),
        )
        .await;
        self.refuse_next_create(403, None);
        self.hand_off("acme", &acme, json!({ "id": "fail_1" }))
            .await;
        self.refuse_next_create(429, Some(300));
        self.hand_off("acme", &acme, json!({ "id": "wait_1" }))
            .await;
        // beta has no connection: its handoff waits, due again at once with the tests'
        // zero backoff, so one pass of the worker rather than a drain.
        let (status, body) = self.submit("beta", &beta, json!({ "id": "beta_1" })).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        self.app.run_due().await.unwrap();
    }

    /// Runs every due job until none is left.
    pub async fn drain(&self) {
        for _ in 0..50 {
            if self.app.run_due().await.unwrap() == 0 {
                return;
            }
        }
        panic!("the queue did not drain in 50 rounds");
    }

    /// The text of `GET {path}` with the admin token as a Bearer token (`/status`,
    /// `/metrics`).
    pub async fn admin_text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.admin_token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The handoff record of a session.
    pub async fn record(&self, org: &str, session: &str) -> Value {
        let (status, body) = self
            .admin(
                reqwest::Method::GET,
                &format!("/v1/orgs/{org}/sessions/{session}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Dataverse requests the sandbox saw of a kind.
    pub fn requests_of(&self, kind: &str) -> Vec<handoff_bridge::sandbox::LoggedRequest> {
        self.sandbox
            .requests()
            .into_iter()
            .filter(|r| r.kind == kind)
            .collect()
    }

    /// How many handoffs the store holds for an org.
    pub async fn stored_handoffs(&self, org: &str) -> usize {
        let (_, body) = self
            .admin(
                reqwest::Method::GET,
                &format!("/v1/orgs/{org}/sessions?limit=500"),
                None,
            )
            .await;
        body["sessions"].as_array().map(Vec::len).unwrap_or(0)
    }
}

/// What a test may change about the bridge it runs.
#[derive(Clone)]
pub struct TestOptions {
    /// The sandbox seed [default: the built-in one].
    pub seed: Option<Seed>,
    /// How long transient failures are retried (zero: given up at once).
    pub retry_window: Duration,
    /// Timeout of each outbound request.
    pub request_timeout: Duration,
    /// Jobs the worker runs at once.
    pub worker_concurrency: usize,
    /// Concurrent Dataverse requests per environment.
    pub dataverse_concurrency: usize,
    /// Dataverse requests per window per environment [default: a million a second, so no test
    /// waits for the pacer unless it is about it; the bridge's default is 6,000 per 300 s].
    pub dataverse_pacing: handoff_bridge::dynamics::Pacing,
    /// OpenCX requests a minute per API key, and at once [default: the bridge's].
    pub opencx_requests_per_minute: u32,
    pub opencx_burst: u32,
    /// How long a stopping worker lets jobs finish.
    pub shutdown_grace: Duration,
    /// Jobs of one org at once [default: the bridge's default share].
    pub org_concurrency: Option<usize>,
    /// Inbound HTTP limits.
    pub http_limits: HttpLimits,
    /// How long a claim is held unless renewed [default: the bridge's, 15 s].
    pub lease: Duration,
    /// Resends of a transiently failing request within one attempt [default: 0, so a test's
    /// fault reaches the between-attempt retry it is about; the bridge's default is 2].
    pub quick_retries: u32,
    /// `HANDOFF_INSTANCE_ID` [default: none].
    pub instance: Option<String>,
    /// `HANDOFF_VIEWER_TOKEN` [default: none].
    pub viewer_token: Option<String>,
}

impl Default for TestOptions {
    fn default() -> Self {
        Self {
            seed: None,
            retry_window: RetryPolicy::default().give_up_after,
            request_timeout: Duration::from_secs(5),
            worker_concurrency: 4,
            dataverse_concurrency: 8,
            dataverse_pacing: handoff_bridge::dynamics::Pacing {
                requests: 1_000_000,
                window: Duration::from_secs(1),
            },
            opencx_requests_per_minute: handoff_bridge::opencx::PACE_PER_MINUTE,
            opencx_burst: handoff_bridge::opencx::PACE_BURST,
            shutdown_grace: Duration::from_secs(5),
            org_concurrency: None,
            http_limits: HttpLimits::default(),
            lease: Duration::from_secs(15),
            quick_retries: 0,
            instance: None,
            viewer_token: None,
        }
    }
}

fn test_config(
    sandbox: &Sandbox,
    db: &TestDb,
    admin_token: &str,
    key: &str,
    options: &TestOptions,
) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: db.url(),
        admin_token: secrecy::SecretString::from(admin_token.to_owned()),
        viewer_token: options
            .viewer_token
            .clone()
            .map(secrecy::SecretString::from),
        encryption_key: EncryptionKey::from_base64(key).unwrap(),
        previous_encryption_keys: Vec::new(),
        entra_authority: sandbox.url(),
        request_timeout: options.request_timeout,
        allow_unreadable_secrets: false,
        settings: Settings {
            allow_insecure_dynamics: true,
            // Backoff delays are zero, so draining the queue runs retries at once;
            // Retry-After is still honored as sent.
            retry: RetryPolicy {
                base: Duration::ZERO,
                give_up_after: options.retry_window,
                quick_retries: options.quick_retries,
                quick_base: Duration::from_millis(10),
                ..RetryPolicy::default()
            },
            lease: options.lease,
            concurrency: options.worker_concurrency,
            org_concurrency: options
                .org_concurrency
                .unwrap_or_else(|| Settings::default_org_concurrency(options.worker_concurrency)),
            dataverse_concurrency: options.dataverse_concurrency,
            dataverse_pacing: options.dataverse_pacing,
            opencx_requests_per_minute: options.opencx_requests_per_minute,
            opencx_burst: options.opencx_burst,
            shutdown_grace: options.shutdown_grace,
            limits: options.http_limits,
            retention: handoff_bridge::store::DEFAULT_RETENTION,
            instance: options.instance.clone(),
        },
    }
}

/// The first element of the JSON array `list` whose `key` is `value`; panics, showing the
/// array, when there is none.
pub fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list}"))
        .iter()
        .find(|item| item[key] == value)
        .unwrap_or_else(|| panic!("no element with {key} = {value:?} in {list}"))
}

/// A handoff envelope for `org` with a session built from `session` (merged over defaults).
pub fn envelope(org: &str, session: Value) -> Value {
    let mut s = json!({
        "id": format!("s-{}", uuid::Uuid::new_v4()),
        "channel": { "type": "web" },
        "handoff": { "summary": "Customer needs help with an order." },
    });
    for (k, v) in session.as_object().unwrap() {
        s[k] = v.clone();
    }
    json!({ "event": "conversation.handoff_to_human", "organization_id": org, "data": { "session": s } })
}

/// The events of `kind` on a handoff record's timeline.
pub fn events<'a>(record: &'a Value, kind: &str) -> Vec<&'a Value> {
    record["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .collect()
}

/// A widget backend whose answer a test sets: `refuse` answers 500 with `Retry-After: 300`,
/// otherwise 204.
pub async fn switchable_receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use axum::response::IntoResponse;
    use axum::routing::post;
    let refuse = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = refuse.clone();
    let app = axum::Router::new().route(
        "/hooks",
        post(move || {
            let flag = flag.clone();
            async move {
                if flag.load(std::sync::atomic::Ordering::SeqCst) {
                    (StatusCode::INTERNAL_SERVER_ERROR, [("retry-after", "300")]).into_response()
                } else {
                    StatusCode::NO_CONTENT.into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, refuse)
}
