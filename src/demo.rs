//! `demo`: bridge and sandbox in-process on free loopback ports; every fixture session goes
//! through the real HTTP path, signed; one line per session; exit 0 when every outcome is
//! the one its `NAME.expected.json` records. A fixture that is OpenCX's thin event (only
//! `data.conversation_id`) is fetched from the sandbox's OpenCX API, and its line says what
//! was fetched and how the work item id went back to the session. Also the signed post
//! `send` uses and the demo org `serve --sandbox` connects.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::connection::crypto::EncryptionKey;
use crate::handoff::retry::RetryPolicy;
use crate::sandbox::Sandbox;
use crate::webhook::send::signed_post;
use crate::webhook::WebhookSecret;
use crate::{App, Config, Settings};

/// What a command answers: an error is a message for the terminal.
type CliResult<T> = Result<T, String>;

/// `demo`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Folder of session fixtures (`NAME.json`, expectations in `NAME.expected.json`).
    #[arg(long, default_value = "fixtures/sessions")]
    pub fixtures: PathBuf,
    /// Sandbox seed [default: the built-in copy of fixtures/sandbox/seed.json].
    #[arg(long)]
    pub seed: Option<PathBuf>,
}

/// The org the demo and `serve --sandbox` connect.
pub const DEMO_ORG: &str = "demo";

/// What a fixture expects (`NAME.expected.json`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Expected {
    pub state: String,
    pub contact_match: Option<String>,
    /// The `last_error.code` expected, for skipped or failed handoffs.
    #[serde(default)]
    pub code: Option<String>,
}

/// One fixture: its path, the envelope bytes, and the expectation.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub body: Vec<u8>,
    pub session_id: String,
    /// Whether it is OpenCX's thin event (the session is fetched from OpenCX).
    pub thin: bool,
    pub expected: Expected,
}

/// The visitor-facing message the demo org's OpenCX write-back sends.
pub const DEMO_WRITE_BACK_MESSAGE: &str = "A member of our team will join you shortly.";

/// Reads `DIR/*.json` (not `*.expected.json`), sorted by name, with their expectations.
pub fn load_fixtures(dir: &Path) -> CliResult<Vec<Fixture>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".json") && !name.ends_with(".expected.json")
        })
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_owned();
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let body = crate::webhook::send::envelope_for(&text, DEMO_ORG)?;
            let value: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
            let thin = value["data"]["session"].is_null();
            let session_id = if thin {
                &value["data"]["conversation_id"]
            } else {
                &value["data"]["session"]["id"]
            };
            let session_id = session_id.as_str().unwrap_or_default().to_owned();
            let expected_path = path.with_file_name(format!("{name}.expected.json"));
            let expected_text = std::fs::read_to_string(&expected_path).map_err(|e| {
                format!(
                    "{}: {e} (each fixture needs its expectation)",
                    expected_path.display()
                )
            })?;
            let expected = serde_json::from_str(&expected_text)
                .map_err(|e| format!("{}: {e}", expected_path.display()))?;
            Ok(Fixture {
                name,
                body,
                session_id,
                thin,
                expected,
            })
        })
        .collect()
}

/// Posts `body` signed per Standard Webhooks; returns the status and the answer's text.
pub async fn post_signed(
    http: &reqwest::Client,
    url: &str,
    secret: &WebhookSecret,
    webhook_id: &str,
    body: &[u8],
) -> CliResult<(u16, String)> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url} is not a URL: {e}"))?;
    let response = signed_post(http, parsed, secret, webhook_id, body.to_vec())
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.unwrap_or_default()))
}

/// The body of `PUT /v1/orgs/{org}/connection` that connects an org to `sandbox` with the
/// seed's demo application user.
pub fn demo_connection_body(sandbox: &Sandbox) -> Value {
    let demo = sandbox.demo_connection();
    json!({
        "tenant_id": demo.tenant_id,
        "client_id": demo.client_id,
        "client_secret": demo.client_secret,
        "environment_url": sandbox.url(),
        "default_queue_id": demo.default_queue_id,
        "incidents": demo.incidents,
    })
}

/// Creates org `demo` through the admin API and connects it to the sandbox's Dynamics with
/// the seed's demo credentials. Returns the org's webhook secret.
pub async fn connect_demo_org(
    bridge_url: &str,
    admin_token: &str,
    sandbox: &Sandbox,
) -> CliResult<String> {
    let http = reqwest::Client::new();
    let org = http
        .put(format!("{bridge_url}/v1/orgs/{DEMO_ORG}"))
        .bearer_auth(admin_token)
        .json(&json!({ "name": "Demo org (sandbox)" }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let org: Value = org.json().await.map_err(|e| e.to_string())?;
    let secret = org["webhook_secret"]
        .as_str()
        .ok_or("the demo org already existed; its secret is not shown again")?
        .to_owned();
    let saved = http
        .put(format!("{bridge_url}/v1/orgs/{DEMO_ORG}/connection"))
        .bearer_auth(admin_token)
        .json(&demo_connection_body(sandbox))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if !saved.status().is_success() {
        return Err(format!(
            "connecting the demo org failed: {}",
            saved.text().await.unwrap_or_default()
        ));
    }
    Ok(secret)
}

/// Connects org `demo` to the sandbox's OpenCX API with the seed's first API key, the
/// write-back on ([`DEMO_WRITE_BACK_MESSAGE`]). Nothing to do for a seed without a key.
pub async fn connect_demo_opencx(
    bridge_url: &str,
    admin_token: &str,
    sandbox: &Sandbox,
) -> CliResult<()> {
    let Some(api_key) = sandbox.demo_opencx_api_key() else {
        return Ok(());
    };
    let saved = reqwest::Client::new()
        .put(format!("{bridge_url}/v1/orgs/{DEMO_ORG}/opencx"))
        .bearer_auth(admin_token)
        .json(&json!({
            "api_key": api_key,
            "base_url": sandbox.url(),
            "write_back_message": DEMO_WRITE_BACK_MESSAGE,
        }))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if saved.status().is_success() {
        Ok(())
    } else {
        Err(format!(
            "connecting the demo org to OpenCX failed: {}",
            saved.text().await.unwrap_or_default()
        ))
    }
}

/// A bridge configuration for an in-process run against `sandbox`: a SQLite file in `dir`,
/// the given admin token, a fresh encryption key, loopback HTTP allowed, default retries.
pub fn sandbox_config(sandbox: &Sandbox, dir: &Path, admin_token: &str) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("valid"),
        database_url: format!("sqlite://{}", dir.join("bridge.db").display()),
        admin_token: secrecy::SecretString::from(admin_token.to_owned()),
        viewer_token: None,
        encryption_key: EncryptionKey::from_base64(&EncryptionKey::generate_base64())
            .expect("fresh key"),
        previous_encryption_keys: Vec::new(),
        entra_authority: sandbox.url(),
        request_timeout: Duration::from_secs(10),
        allow_unreadable_secrets: false,
        settings: Settings {
            allow_insecure_dynamics: true,
            retry: RetryPolicy::default(),
            lease: Duration::from_secs(15),
            concurrency: 4,
            org_concurrency: Settings::default_org_concurrency(4),
            dataverse_concurrency: crate::dynamics::throttle::DEFAULT_MAX_CONCURRENT,
            dataverse_pacing: crate::dynamics::Pacing::DATAVERSE,
            opencx_requests_per_minute: crate::opencx::PACE_PER_MINUTE,
            opencx_burst: crate::opencx::PACE_BURST,
            shutdown_grace: Duration::from_secs(5),
            limits: crate::http::server::HttpLimits::default(),
            retention: crate::store::DEFAULT_RETENTION,
            instance: None,
        },
    }
}

/// `demo`.
pub async fn run(args: DemoArgs) -> CliResult<()> {
    let fixtures = load_fixtures(&args.fixtures)?;
    let seed = crate::sandbox::Seed::load(args.seed.as_deref())?;
    let sandbox = Sandbox::start(seed, "127.0.0.1:0".parse().expect("valid"))
        .await
        .map_err(|e| format!("cannot start the sandbox: {e}"))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let admin_token = EncryptionKey::generate_base64();
    let config = sandbox_config(&sandbox, dir.path(), &admin_token);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| e.to_string())?;
    let bridge_url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let app = App::build(config).await.map_err(|e| e.to_string())?;
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.serve(listener, shutdown.clone()));
    let secret =
        WebhookSecret::parse(&connect_demo_org(&bridge_url, &admin_token, &sandbox).await?)?;

    println!(
        "bridge {bridge_url}, sandbox {}, {} fixtures",
        sandbox.url(),
        fixtures.len()
    );
    let http = reqwest::Client::new();
    let mut failures = 0;
    let mut opencx_connected = false;
    let mut settle_ms = Vec::new();
    for fixture in &fixtures {
        // The pushed sessions need Dynamics only; OpenCX's own thin event needs the OpenCX
        // connection, saved the way an admin would, before the first one.
        if fixture.thin && !opencx_connected {
            connect_demo_opencx(&bridge_url, &admin_token, &sandbox).await?;
            println!(
                "{:<28} PUT /v1/orgs/{DEMO_ORG}/opencx: active (write-back on)",
                ""
            );
            opencx_connected = true;
        }
        let before = dataverse_requests(&sandbox);
        let opencx_before = sandbox.requests().len() - before;
        let webhook_id = format!("msg_demo_{}", fixture.name);
        let url = format!("{bridge_url}/v1/webhooks/{DEMO_ORG}");
        let (status, answer) =
            post_signed(&http, &url, &secret, &webhook_id, &fixture.body).await?;
        if status != 202 {
            println!("{:<28} HTTP {status}: {answer}", fixture.name);
            failures += 1;
            continue;
        }
        let record = wait_settled(&http, &bridge_url, &admin_token, &fixture.session_id).await?;
        let requests = dataverse_requests(&sandbox) - before;
        let got = Expected {
            state: record["state"].as_str().unwrap_or_default().to_owned(),
            contact_match: record["contact_match"].as_str().map(str::to_owned),
            code: record["last_error"]["code"].as_str().map(str::to_owned),
        };
        if let (Some(c), Some(u)) = (record["created_at"].as_str(), record["updated_at"].as_str()) {
            settle_ms.push(millis_between(c, u));
        }
        let ok = got == fixture.expected;
        if !ok {
            failures += 1;
        }
        println!(
            "{:<28} session={:<38} channel={:<11} contact={:<10} outcome={:<9}{} {} dataverse_requests={} {}",
            fixture.name,
            fixture.session_id,
            record["channel"].as_str().unwrap_or_default(),
            got.contact_match.as_deref().unwrap_or("-"),
            got.state,
            got.code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default(),
            created_record(&record),
            requests,
            if ok { "ok".to_owned() } else { format!("EXPECTED {:?}", fixture.expected) },
        );
        if let Some(line) = note_line(&record, &sandbox) {
            println!("{:<28} {line}", "");
        }
        if fixture.thin {
            let written =
                written_back(&http, &bridge_url, &admin_token, &fixture.session_id).await?;
            let opencx_requests =
                sandbox.requests().len() - dataverse_requests(&sandbox) - opencx_before;
            println!(
                "{:<28} {}",
                "",
                thin_line(&record, &written, &sandbox, opencx_requests)
            );
        }
    }
    settle_ms.sort_unstable();
    if !settle_ms.is_empty() {
        println!(
            "webhook 202 → settled: median {} ms, max {} ms; {} work items, {} incidents and {} transcript notes in the sandbox",
            settle_ms[settle_ms.len() / 2],
            settle_ms[settle_ms.len() - 1],
            sandbox.work_items().len(),
            sandbox.incidents().len(),
            sandbox.annotations().len()
        );
    }
    shutdown.cancel();
    let _ = server.await;
    if failures == 0 {
        println!("all {} fixtures had their expected outcome", fixtures.len());
        Ok(())
    } else {
        Err(format!(
            "{failures} of {} fixtures did not have their expected outcome",
            fixtures.len()
        ))
    }
}

/// Requests the sandbox saw that went to Dataverse (not Entra ID's token endpoint, not
/// OpenCX's API).
fn dataverse_requests(sandbox: &Sandbox) -> usize {
    sandbox
        .requests()
        .iter()
        .filter(|r| r.kind != "token" && !r.kind.starts_with("opencx_"))
        .count()
}

/// What the handoff created: `dynamics365_chat_id=…` for a chat, the incident's case number
/// and id for every other channel, `-` for neither.
fn created_record(record: &Value) -> String {
    match (
        record["dynamics365_chat_id"].as_str(),
        record["dynamics365_incident_id"].as_str(),
    ) {
        (Some(chat), _) => format!("dynamics365_chat_id={chat}"),
        (None, Some(incident)) => format!(
            "dynamics365_ticket_number={} dynamics365_incident_id={incident}",
            record["dynamics365_ticket_number"].as_str().unwrap_or("-")
        ),
        (None, None) => "dynamics365_chat_id=-".to_owned(),
    }
}

/// The transcript note the sandbox holds under the record's work item or incident, as the
/// representative finds it: where, how many messages and characters.
fn note_line(record: &Value, sandbox: &Sandbox) -> Option<String> {
    let parent = record["dynamics365_chat_id"]
        .as_str()
        .or(record["dynamics365_incident_id"].as_str())?;
    let notes: Vec<Value> = sandbox
        .annotations()
        .into_iter()
        .filter(|n| n["_objectid_value"] == parent)
        .collect();
    let note = notes.first()?;
    let text = note["notetext"].as_str().unwrap_or_default();
    Some(format!(
        "↳ transcript note on the {}: {} messages, {} characters ({} note{})",
        note["objecttypecode"].as_str().unwrap_or("?"),
        text.matches("<p>").count(),
        text.encode_utf16().count(),
        notes.len(),
        if notes.len() == 1 { "" } else { "s" }
    ))
}

/// What a thin fixture's record says about the fetch, and the write-back that followed.
fn thin_line(
    record: &Value,
    write_back: &Value,
    sandbox: &Sandbox,
    opencx_requests: usize,
) -> String {
    let enriched = record["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["kind"] == "enriched"));
    let fetched = match enriched {
        Some(e) => format!(
            "fetched from OpenCX: channel={} history_messages={} email_rule={}",
            e["detail"]["channel"].as_str().unwrap_or("-"),
            e["detail"]["history_items"],
            e["detail"]["email_rule"].as_str().unwrap_or("-"),
        ),
        None => "nothing fetched from OpenCX".to_owned(),
    };
    let session = record["session_id"].as_str().unwrap_or_default();
    let key = if record["dynamics365_incident_id"].is_string() {
        "dynamics365_ticket_number"
    } else {
        "dynamics365_chat_id"
    };
    let on_session = sandbox
        .opencx_session(session)
        .map(|s| s["custom_data"][key].clone())
        .filter(|v| !v.is_null());
    let written = match (write_back["state"].as_str(), on_session) {
        (Some("delivered"), Some(id)) => {
            format!("write-back: sent once, session custom_data.{key}={id}")
        }
        (Some(state), _) => format!("write-back: {state}"),
        (None, _) => "write-back: none (no work item)".to_owned(),
    };
    format!("↳ {fetched}; {written}; opencx_requests={opencx_requests}")
}

/// The record's `opencx.write_back` outbox row once it is no longer pending (at most 10 s),
/// or `null` when the handoff has none.
async fn written_back(
    http: &reqwest::Client,
    bridge: &str,
    token: &str,
    session: &str,
) -> CliResult<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let record = fetch_record(http, bridge, token, session).await?;
        let row = record["callbacks"]
            .as_array()
            .and_then(|c| {
                c.iter()
                    .find(|c| c["event"] == crate::domain::WRITE_BACK_EVENT)
            })
            .cloned()
            .unwrap_or(Value::Null);
        if row["state"] != "pending" || Instant::now() > deadline {
            return Ok(row);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn millis_between(from: &str, to: &str) -> i64 {
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
            .map(|d| (d.unix_timestamp_nanos() / 1_000_000) as i64)
            .unwrap_or_default()
    };
    parse(to) - parse(from)
}

async fn wait_settled(
    http: &reqwest::Client,
    bridge: &str,
    token: &str,
    session: &str,
) -> CliResult<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let record = fetch_record(http, bridge, token, session).await?;
        if matches!(
            record["state"].as_str(),
            Some("succeeded" | "failed" | "skipped")
        ) {
            return Ok(record);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "session {session} did not settle within 30 s: {record}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The demo org's record of `session`.
async fn fetch_record(
    http: &reqwest::Client,
    bridge: &str,
    token: &str,
    session: &str,
) -> CliResult<Value> {
    let url = format!(
        "{bridge}/v1/orgs/{DEMO_ORG}/sessions/{}",
        percent_encoding::utf8_percent_encode(session, percent_encoding::NON_ALPHANUMERIC)
    );
    http.get(&url)
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())
}
