//! How long the views take, and how much memory one adds, with 100,000 handoffs stored
//! over 1,000 orgs (issue 13, item 7).
//!
//! `cargo bench --bench status_page` (release profile): starts the sandbox and a bridge on a
//! SQLite file in-process (`STATUS_BENCH_DATABASE_URL=postgres://…` for PostgreSQL instead;
//! its schema is emptied first), then
//!
//! 1. hands off `STATUS_BENCH_HANDOFFS` sessions (default 1,000) through the demo org, for
//!    real (about 20 % refused by Dataverse with 403, 10 % on the email channel, the rest
//!    succeeded), and waits until none is queued;
//! 2. creates `STATUS_BENCH_ORGS` more orgs (default 1,000) through the admin API, one in
//!    four connected through test-and-save, and writes `STATUS_BENCH_SEEDED` handoffs
//!    (default 100,000) straight into the store, spread over them and over the last 48
//!    hours: 60 % queued (parked: their next attempt is an hour away), 20 % succeeded (one in
//!    ten with a callback the widget backend refused), 15 % failed, 5 % skipped;
//! 3. requests each view `STATUS_BENCH_REQUESTS` times (default 25) one after another and
//!    prints the median, the 90th percentile and the fastest, in ms, the size of the answer,
//!    and the most resident memory the view added (the peak RSS over one request less the
//!    RSS before it, peak reset through `/proc/self/clear_refs`; Linux).

#[path = "common/mod.rs"]
mod common;
use common::empty_postgres;

use std::time::{Duration, Instant};

use handoff_bridge::connection::crypto::EncryptionKey;
use handoff_bridge::demo::{connect_demo_org, demo_connection_body, post_signed, sandbox_config};
use handoff_bridge::sandbox::{Fault, FaultAction, Sandbox, Seed};
use handoff_bridge::webhook::signature::WebhookSecret;
use handoff_bridge::App;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A `/proc/self/status` figure in KiB (`VmRSS`, `VmHWM`); 0 where there is none.
fn proc_kib(field: &str) -> i64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// Resets the peak RSS (`VmHWM`) to the current RSS.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

#[tokio::main]
async fn main() {
    let handoffs = env("STATUS_BENCH_HANDOFFS", 1000);
    let orgs = env("STATUS_BENCH_ORGS", 1000);
    let seeded = env("STATUS_BENCH_SEEDED", 100_000);
    let requests = env("STATUS_BENCH_REQUESTS", 25);
    let sandbox = Sandbox::start(Seed::builtin(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let admin_token = EncryptionKey::generate_base64();
    let mut config = sandbox_config(&sandbox, dir.path(), &admin_token);
    if let Ok(url) = std::env::var("STATUS_BENCH_DATABASE_URL") {
        empty_postgres(&url).await;
        config.database_url = url;
    }
    let database_url = config.database_url.clone();
    config.settings.concurrency = 8;
    // The sandbox sets no service protection limit: the pacing is not what this measures.
    config.settings.dataverse_pacing = handoff_bridge::dynamics::Pacing {
        requests: 1_000_000,
        window: Duration::from_secs(1),
    };
    let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = App::build(config).await.unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.serve(listener, shutdown.clone()));
    let secret = WebhookSecret::parse(
        &connect_demo_org(&url, &admin_token, &sandbox)
            .await
            .unwrap(),
    )
    .unwrap();
    let mut refused = Fault::next("create_work_item", FaultAction::status(403, None), 0);
    refused.probability = Some(0.2);
    sandbox.inject(refused);

    let http = reqwest::Client::new();
    let started = Instant::now();
    for i in 0..handoffs {
        let channel = if i % 10 == 3 { "email" } else { "web" };
        let body = json!({
            "event": "conversation.handoff_to_human",
            "organization_id": "demo",
            "data": { "session": {
                "id": format!("bench-{i:05}"),
                "channel": { "type": channel },
                "contact": { "name": "Ada Lovelace", "email": "ada@example.com", "verified": true },
                "handoff": { "summary": "Customer asks about an order that has not arrived." },
            } },
        });
        let body = serde_json::to_vec(&body).unwrap();
        let (status, answer) = post_signed(
            &http,
            &format!("{url}/v1/webhooks/demo"),
            &secret,
            &format!("msg_bench_{i}"),
            &body,
        )
        .await
        .unwrap();
        assert_eq!(status, 202, "{answer}");
    }
    loop {
        let status = get_json(&http, &format!("{url}/v1/status?org=demo"), &admin_token).await;
        if status["orgs"][0]["queue"]["depth"] == 0 {
            println!(
                "{handoffs} handoffs stored and settled in {:.1} s; counts {}",
                started.elapsed().as_secs_f64(),
                status["orgs"][0]["counts_24h"]
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let started = Instant::now();
    seed_orgs(&http, &url, &admin_token, &sandbox, orgs).await;
    seed_handoffs(&database_url, orgs, seeded).await;
    println!(
        "{orgs} more orgs ({} connected) and {seeded} handoffs seeded in {:.1} s",
        orgs.div_ceil(4),
        started.elapsed().as_secs_f64()
    );

    let first_org = "org-0000";
    let mut views = vec![
        "/status".to_owned(),
        format!("/status?org={first_org}"),
        format!("/status?org={first_org}&state=failed"),
        "/v1/status".to_owned(),
        format!("/v1/status?org={first_org}"),
        "/metrics".to_owned(),
    ];
    // The org's second page, through the cursor its first page links to.
    let first = get_json(
        &http,
        &format!("{url}/v1/status?org={first_org}"),
        &admin_token,
    )
    .await;
    if let Some(cursor) = first["orgs"][0]["next_before"].as_str() {
        views.push(format!("/status?org={first_org}&before={cursor}"));
        views.push(format!("/v1/status?org={first_org}&before={cursor}"));
    }
    for path in views {
        let mut times = Vec::new();
        let mut bytes = 0;
        let mut added_kib = 0;
        for _ in 0..requests {
            let before = proc_kib("VmRSS");
            reset_peak();
            let t0 = Instant::now();
            let response = http
                .get(format!("{url}{path}"))
                .bearer_auth(&admin_token)
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.status()
            );
            bytes = response.bytes().await.unwrap().len();
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
            added_kib = added_kib.max(proc_kib("VmHWM") - before);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "GET {path:<44} median {:>7.2} ms  p90 {:>7.2} ms  min {:>7.2} ms  {:>6} KiB  RSS +{:.1} MB  ({requests} requests)",
            times[times.len() / 2],
            times[times.len() * 9 / 10],
            times[0],
            bytes / 1024,
            added_kib as f64 / 1024.0,
        );
    }
    println!("process RSS at the end: {} MB", proc_kib("VmRSS") / 1024);
    shutdown.cancel();
    let _ = server.await;
}

/// The JSON answer of `GET url` with the admin token.
async fn get_json(http: &reqwest::Client, url: &str, admin_token: &str) -> Value {
    http.get(url)
        .bearer_auth(admin_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `count` orgs `org-0000`…, through the admin API; one in four connected to the sandbox.
async fn seed_orgs(
    http: &reqwest::Client,
    url: &str,
    admin_token: &str,
    sandbox: &Sandbox,
    count: usize,
) {
    for o in 0..count {
        let org = format!("org-{o:04}");
        let created = http
            .put(format!("{url}/v1/orgs/{org}"))
            .bearer_auth(admin_token)
            .json(&json!({ "name": format!("Org {o:04}") }))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{}", created.status());
        if o % 4 == 0 {
            let saved = http
                .put(format!("{url}/v1/orgs/{org}/connection"))
                .bearer_auth(admin_token)
                .json(&demo_connection_body(sandbox))
                .send()
                .await
                .unwrap();
            assert!(saved.status().is_success(), "{}", saved.status());
        }
    }
}

/// `count` handoffs written straight into the store, over `orgs` orgs and the last 48 hours
/// (the states as the module says), with the payload of one of the demo org's handoffs.
async fn seed_handoffs(database_url: &str, orgs: usize, count: usize) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(database_url).await.unwrap();
    let row = sqlx::query("SELECT payload, payload_version FROM handoffs LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    let payload: String = sqlx::Row::get(&row, "payload");
    let version: i64 = sqlx::Row::get(&row, "payload_version");
    let now = handoff_bridge::clock::now_ms();
    let error = r#"{"code":"work_item_rejected","message":"Dataverse refused the live work item","hint":"Read the Dataverse error in the detail.","detail":"403 0x80040220: Principal user is missing prvCreatemsdyn_ocliveworkitem privilege"}"#;
    let mut tx = pool.begin().await.unwrap();
    for i in 0..count {
        let org = format!("org-{:04}", i % orgs.max(1));
        let created = now - (i as i64 * 48 * 3600 * 1000 / count.max(1) as i64);
        let handoff_id = uuid::Uuid::new_v4().to_string();
        let (state, last_error, chat_id, next) = match i % 20 {
            0..=11 => ("queued", None, None, now + 3_600_000),
            12..=15 => (
                "succeeded",
                None,
                Some(uuid::Uuid::new_v4().to_string()),
                created,
            ),
            16..=18 => ("failed", Some(error), None, created),
            _ => ("skipped", None, None, created),
        };
        sqlx::query(
            "INSERT INTO handoffs (handoff_id, org_id, session_id, webhook_id, channel, payload_version, payload, \
             state, attempts, next_attempt_at, first_attempt_at, created_at, updated_at, last_error, dynamics365_chat_id, contact_match) \
             VALUES ($1, $2, $3, $3, 'web', $4, $5, $6, 1, $7, $8, $8, $8, $9, $10, 'linked')",
        )
        .bind(&handoff_id)
        .bind(&org)
        .bind(format!("seeded-{i:06}"))
        .bind(version)
        .bind(&payload)
        .bind(state)
        .bind(next)
        .bind(created)
        .bind(last_error)
        .bind(chat_id)
        .execute(&mut *tx)
        .await
        .unwrap();
        if i % 200 == 12 {
            sqlx::query(
                "INSERT INTO callbacks (webhook_id, handoff_id, org_id, event_type, payload, state, attempts, \
                 next_attempt_at, last_error, created_at, updated_at) \
                 VALUES ($1, $2, $3, 'handoff.succeeded', '{}', 'pending', 5, $4, 'HTTP 500', $5, $5)",
            )
            .bind(format!("msg_seeded_{i}"))
            .bind(&handoff_id)
            .bind(&org)
            .bind(now + 3_600_000)
            .bind(created)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
    }
    tx.commit().await.unwrap();
    pool.close().await;
}
