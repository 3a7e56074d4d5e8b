//! How fast handoffs get in and through (issue 14): durable intake per second against the
//! same box's raw commit rate, acknowledgement latency at fixed rates, handoffs settled per
//! second against the sandbox, and the share of an emulated service protection ceiling the
//! worker reaches.
//!
//! `cargo bench --bench throughput` (release profile) runs it on a SQLite file;
//! `THROUGHPUT_BENCH_DATABASE_URL=postgres://…` on PostgreSQL (that database's `public`
//! schema is emptied before each phase). Everything runs in this one process on this box —
//! the loader, the bridge, the sandbox — as the targets say ("loader included"). Phases, each
//! on a fresh bridge and a fresh database:
//!
//! 1. **raw commits**: one single-row `INSERT` per transaction for `THROUGHPUT_BENCH_SECS`
//!    (default 5) on one connection (SQLite: WAL, `synchronous = FULL`, as the bridge runs
//!    it), and on PostgreSQL also from 16 connections at once;
//! 2. **intake**: `THROUGHPUT_BENCH_SENDERS` (default 64) senders post signed webhooks
//!    (about 1 KB, each a new session) back to back for `THROUGHPUT_BENCH_SECS` to an org that
//!    is not connected; the `202`s per second, then every `202`'s session looked up in the
//!    store;
//! 3. **ack latency**: an open-loop sender at each rate of `THROUGHPUT_BENCH_RATES` (default
//!    `250,1000` per second) for `THROUGHPUT_BENCH_SECS` after a 2 s warm-up: request *i* is
//!    sent at start + i/rate whatever the earlier ones did, and its latency counts from
//!    that due time (so a slow answer cannot hide the ones queued behind it); 15 s is a
//!    timeout; every `202` looked up in the store;
//! 4. **settled**: `THROUGHPUT_BENCH_BURST` handoffs (default 5,000; half with a verified
//!    email that finds a contact, half anonymous) posted by the senders to a connected org,
//!    settled per second = the burst ÷ (first post → the last handoff's `updated_at`);
//! 5. **ceiling**: the sandbox limited to 50 requests a second (sliding, 52 concurrent) and
//!    the bridge told so (`Pacing` 50 per 1 s); a backlog of anonymous handoffs, then the
//!    requests Dataverse admitted over `THROUGHPUT_BENCH_WINDOW_SECS` (default 20) as a share
//!    of 50 a second; then the backlog drains, and none may have failed.
//!
//! `THROUGHPUT_BENCH_PHASES` (default `intake,latency,settled,ceiling`) picks phases 2–5 to
//! run; phase 1 always runs, as intake is reported against it.
//!
//! The bridge runs with its defaults but for the pacing (raised in phases 1–4, where the
//! sandbox sets no limit). To see what the worker's slots do, `THROUGHPUT_BENCH_WORKERS`
//! sets `HANDOFF_WORKER_CONCURRENCY` (and the one org's share to all of it),
//! `THROUGHPUT_BENCH_ORG_WORKERS` the org's share, `THROUGHPUT_BENCH_DATAVERSE_CONCURRENCY`
//! `HANDOFF_DATAVERSE_CONCURRENCY`.

#[path = "common/mod.rs"]
mod common;
use common::empty_postgres;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff_bridge::config::Settings;
use handoff_bridge::connection::crypto::EncryptionKey;
use handoff_bridge::demo::{demo_connection_body, sandbox_config};
use handoff_bridge::dynamics::Pacing;
use handoff_bridge::sandbox::{Sandbox, Seed, ServiceProtection};
use handoff_bridge::webhook::send::signed_post;
use handoff_bridge::webhook::signature::WebhookSecret;
use handoff_bridge::App;
use serde_json::{json, Value};
use sqlx::AnyPool;
use tokio_util::sync::CancellationToken;

/// CPU seconds this process has used so far (user and system; Linux, 100 ticks a second).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A bridge on a fresh database, serving on loopback.
struct Bridge {
    url: String,
    admin_token: String,
    database_url: String,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

impl Bridge {
    async fn start(sandbox: &Sandbox, postgres: Option<&str>, pacing: Pacing) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let admin_token = EncryptionKey::generate_base64();
        let mut config = sandbox_config(sandbox, dir.path(), &admin_token);
        if let Some(url) = postgres {
            empty_postgres(url).await;
            config.database_url = url.to_owned();
        }
        config.settings.dataverse_pacing = pacing;
        // `serve`'s defaults (the sandbox configuration runs the demo's 4 slots).
        let concurrency = usize::from(Settings::DEFAULT_CONCURRENCY);
        config.settings.concurrency = concurrency;
        config.settings.org_concurrency = Settings::default_org_concurrency(concurrency);
        if let Ok(n) =
            std::env::var("THROUGHPUT_BENCH_WORKERS").map(|v| v.parse::<usize>().unwrap_or(32))
        {
            config.settings.concurrency = n;
            config.settings.org_concurrency = n;
        }
        if let Ok(n) =
            std::env::var("THROUGHPUT_BENCH_ORG_WORKERS").map(|v| v.parse::<usize>().unwrap_or(16))
        {
            config.settings.org_concurrency = n;
        }
        if let Ok(n) = std::env::var("THROUGHPUT_BENCH_DATAVERSE_CONCURRENCY")
            .map(|v| v.parse::<usize>().unwrap_or(8))
        {
            config.settings.dataverse_concurrency = n;
        }
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let database_url = config.database_url.clone();
        let app = App::build(config).await.unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(app.serve(listener, shutdown.clone()));
        Self {
            url,
            admin_token,
            database_url,
            shutdown,
            server,
            _dir: dir,
        }
    }

    /// Creates org `org` (connected to the sandbox when `connect`) and returns its secret.
    async fn org(
        &self,
        http: &reqwest::Client,
        sandbox: &Sandbox,
        org: &str,
        connect: bool,
    ) -> WebhookSecret {
        let created: Value = http
            .put(format!("{}/v1/orgs/{org}", self.url))
            .bearer_auth(&self.admin_token)
            .json(&json!({ "name": org }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if connect {
            let saved = http
                .put(format!("{}/v1/orgs/{org}/connection", self.url))
                .bearer_auth(&self.admin_token)
                .json(&demo_connection_body(sandbox))
                .send()
                .await
                .unwrap();
            assert!(
                saved.status().is_success(),
                "{}",
                saved.text().await.unwrap()
            );
        }
        WebhookSecret::parse(created["webhook_secret"].as_str().unwrap()).unwrap()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
    }
}

/// A webhook body of about 1 KB for session `id`: verified Ada (who has a contact in the
/// seed) when `verified`, else anonymous.
fn body(org: &str, id: &str, verified: bool) -> Vec<u8> {
    let mut session = json!({
        "id": id,
        "channel": { "type": "web" },
        "handoff": {
            "summary": "The customer asks about an order that has not arrived after two weeks; the tracking page shows it stuck in a depot, and the AI could not reroute it.",
            "sentiment": "negative",
            "reason": "ai_decided_to_handoff_the_conversation",
        },
        "language": "en",
        "metadata": { "page": "https://shop.example.com/orders/123456789/tracking?ref=widget&campaign=winter-sale-2026", "plan": "premium", "order": "123456789" },
    });
    if verified {
        session["contact"] =
            json!({ "name": "Ada Lovelace", "email": "ada@example.com", "verified": true });
    }
    serde_json::to_vec(&json!({
        "event": "conversation.handoff_to_human",
        "organization_id": org,
        "data": { "session": session, "padding": "x".repeat(300) },
    }))
    .unwrap()
}

/// Posts one signed webhook; its status, or `None` on a transport error or a timeout.
async fn post(
    http: &reqwest::Client,
    url: &reqwest::Url,
    secret: &WebhookSecret,
    id: &str,
    body: Vec<u8>,
) -> Option<u16> {
    signed_post(http, url.clone(), secret, &format!("msg_{id}"), body)
        .timeout(Duration::from_secs(15))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

/// The session ids of `org` in the store.
async fn stored_sessions(database_url: &str, org: &str) -> HashSet<String> {
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(database_url).await.unwrap();
    let rows = sqlx::query("SELECT session_id FROM handoffs WHERE org_id = $1")
        .bind(org)
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.iter()
        .map(|r| sqlx::Row::get(r, "session_id"))
        .collect()
}

/// Asserts that every acknowledged session is stored; returns how many were.
async fn check_stored(database_url: &str, org: &str, acknowledged: &[String]) -> usize {
    let stored = stored_sessions(database_url, org).await;
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !stored.contains(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged webhooks are not stored: {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    acknowledged.len()
}

#[tokio::main]
async fn main() {
    let secs = env("THROUGHPUT_BENCH_SECS", 5);
    let senders = env("THROUGHPUT_BENCH_SENDERS", 64) as usize;
    let burst = env("THROUGHPUT_BENCH_BURST", 5_000) as usize;
    let window = env("THROUGHPUT_BENCH_WINDOW_SECS", 20);
    let rates: Vec<u64> = std::env::var("THROUGHPUT_BENCH_RATES")
        .unwrap_or_else(|_| "250,1000".to_owned())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let postgres = std::env::var("THROUGHPUT_BENCH_DATABASE_URL").ok();
    let phases = std::env::var("THROUGHPUT_BENCH_PHASES")
        .unwrap_or_else(|_| "intake,latency,settled,ceiling".to_owned());
    let runs = |phase: &str| phases.split(',').any(|p| p.trim() == phase);
    let backend = if postgres.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    println!(
        "backend {backend}, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let sandbox = Sandbox::start(Seed::builtin(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .build()
        .unwrap();

    // 1. The raw commit rate of this box.
    let raw = raw_commits(postgres.as_deref(), Duration::from_secs(secs)).await;
    for (label, rate) in &raw {
        println!("raw commits, {label}: {rate:.0}/s");
    }

    let bench = Bench {
        sandbox,
        postgres,
        http,
        secs,
        senders,
    };
    if runs("intake") {
        bench.intake(&raw).await;
    }
    if runs("latency") {
        bench.ack_latency(&rates).await;
    }
    if runs("settled") {
        bench.settled(burst).await;
    }
    if runs("ceiling") {
        bench.ceiling_share(window).await;
    }
}

/// Pacing far above anything sent: the phases where the sandbox sets no limit.
const UNPACED: Pacing = Pacing {
    requests: 1_000_000,
    window: Duration::from_secs(1),
};

/// What every phase runs with: the sandbox, the backend (`None`: a SQLite file per
/// phase), the loader's client, the length of a timed phase and the closed-loop senders.
struct Bench {
    sandbox: Sandbox,
    postgres: Option<String>,
    http: reqwest::Client,
    secs: u64,
    senders: usize,
}

impl Bench {
    /// 2. Intake, closed loop, reported against the `raw` commit rates.
    async fn intake(&self, raw: &[(String, f64)]) {
        let (sandbox, postgres, http) = (&self.sandbox, self.postgres.as_deref(), &self.http);
        let (secs, senders) = (self.secs, self.senders);
        let bridge = Bridge::start(sandbox, postgres, UNPACED).await;
        let secret = Arc::new(bridge.org(http, sandbox, "perf", false).await);
        let url: reqwest::Url = format!("{}/v1/webhooks/perf", bridge.url).parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(secs);
        let started = Instant::now();
        let cpu = cpu_secs();
        let mut tasks = Vec::new();
        for s in 0..senders {
            let (http, url, secret) = (http.clone(), url.clone(), secret.clone());
            tasks.push(tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                let mut i = 0;
                while Instant::now() < deadline {
                    let id = format!("in-{s}-{i}");
                    i += 1;
                    if post(&http, &url, &secret, &id, body("perf", &id, false)).await == Some(202)
                    {
                        acknowledged.push(id);
                    }
                }
                acknowledged
            }));
        }
        let mut acknowledged = Vec::new();
        for task in tasks {
            acknowledged.extend(task.await.unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        let cores = (cpu_secs() - cpu) / elapsed;
        let stored = check_stored(&bridge.database_url, "perf", &acknowledged).await;
        let intake = acknowledged.len() as f64 / elapsed;
        let (best, best_rate) = raw
            .iter()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .cloned()
            .unwrap_or_default();
        println!(
        "intake: {intake:.0} durable webhooks/s ({} in {elapsed:.1} s, {senders} senders, {cores:.2} cores busy), {:.0} % of the highest raw commit rate ({best}); all {stored} stored",
        acknowledged.len(),
        intake / best_rate * 100.0,
    );
        bridge.stop().await;
    }

    /// 3. Ack latency, open loop, at each of `rates` (per second).
    async fn ack_latency(&self, rates: &[u64]) {
        let (sandbox, postgres, http) = (&self.sandbox, self.postgres.as_deref(), &self.http);
        let secs = self.secs;
        for rate in rates {
            let bridge = Bridge::start(sandbox, postgres, UNPACED).await;
            let secret = Arc::new(bridge.org(http, sandbox, "perf", false).await);
            let url: reqwest::Url = format!("{}/v1/webhooks/perf", bridge.url).parse().unwrap();
            let (latencies, acknowledged, errors) =
                open_loop(http, &url, &secret, *rate, secs).await;
            let stored = check_stored(&bridge.database_url, "perf", &acknowledged).await;
            let at = |q: f64| {
                latencies
                    [((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))]
            };
            println!(
            "ack latency at {rate}/s for {secs} s: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {errors} errors or timeouts; all {stored} stored",
            at(0.5), at(0.9), at(0.99), latencies.last().copied().unwrap_or(0.0)
        );
            bridge.stop().await;
        }
    }

    /// 4. Settled against the sandbox: a `burst` of handoffs.
    async fn settled(&self, burst: usize) {
        let (sandbox, postgres, http) = (&self.sandbox, self.postgres.as_deref(), &self.http);
        let senders = self.senders;
        let bridge = Bridge::start(sandbox, postgres, UNPACED).await;
        let secret = Arc::new(bridge.org(http, sandbox, "perf", true).await);
        let url: reqwest::Url = format!("{}/v1/webhooks/perf", bridge.url).parse().unwrap();
        let first_post = handoff_bridge::clock::now_ms();
        let cpu = cpu_secs();
        send_all(http, &url, &secret, "e2e", burst, senders, |i| i % 2 == 0).await;
        let (states, last) = wait_settled(&bridge.database_url, "perf").await;
        let seconds = (last - first_post) as f64 / 1000.0;
        println!(
        "settled: {:.0} handoffs/s ({burst} in {seconds:.1} s from the first post to the last settled, {:.2} cores busy; states {states:?})",
        burst as f64 / seconds,
        (cpu_secs() - cpu) / seconds
    );
        bridge.stop().await;
    }

    /// 5. The share of an emulated ceiling, over `window` seconds.
    async fn ceiling_share(&self, window: u64) {
        let (sandbox, postgres, http) = (&self.sandbox, self.postgres.as_deref(), &self.http);
        let senders = self.senders;
        let ceiling = 50;
        let bridge = Bridge::start(
            sandbox,
            postgres,
            Pacing {
                requests: ceiling,
                window: Duration::from_secs(1),
            },
        )
        .await;
        let secret = Arc::new(bridge.org(http, sandbox, "perf", true).await);
        sandbox.set_limits(Some(ServiceProtection {
            window_secs: 1,
            max_requests: ceiling as usize,
            max_concurrent: 52,
        }));
        let url: reqwest::Url = format!("{}/v1/webhooks/perf", bridge.url).parse().unwrap();
        let backlog = (ceiling as u64 * (window + 10)) as usize;
        send_all(http, &url, &secret, "ceil", backlog, senders, |_| false).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let admitted = |sandbox: &Sandbox| {
            sandbox
                .requests()
                .iter()
                .filter(|r| r.status != 429)
                .count()
        };
        let refused = |sandbox: &Sandbox| {
            sandbox
                .requests()
                .iter()
                .filter(|r| r.status == 429)
                .count()
        };
        let (a0, r0) = (admitted(sandbox), refused(sandbox));
        tokio::time::sleep(Duration::from_secs(window)).await;
        let (a1, r1) = (admitted(sandbox), refused(sandbox));
        let (states, _) = wait_settled(&bridge.database_url, "perf").await;
        let share = (a1 - a0) as f64 / (ceiling as f64 * window as f64) * 100.0;
        println!(
        "ceiling: {} requests admitted in {window} s = {share:.1} % of {ceiling}/s; {} refused with 429 in the window, {} over the run; states after the drain {states:?}",
        a1 - a0,
        r1 - r0,
        refused(sandbox)
    );
        assert_eq!(
            states
                .iter()
                .find(|(s, _)| s == "failed")
                .map_or(0, |(_, n)| *n),
            0,
            "a handoff failed"
        );
        sandbox.set_limits(None);
        bridge.stop().await;
    }
}

/// Single-row commits per second for `length`: one connection, and (PostgreSQL) 16.
async fn raw_commits(postgres: Option<&str>, length: Duration) -> Vec<(String, f64)> {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let url = match postgres {
        Some(url) => {
            empty_postgres(url).await;
            url.to_owned()
        }
        None => format!("sqlite://{}?mode=rwc", dir.path().join("raw.db").display()),
    };
    let sqlite = postgres.is_none();
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(16)
        .after_connect(move |conn, _| {
            Box::pin(async move {
                if sqlite {
                    sqlx::Executor::execute(
                        conn,
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect(&url)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE raw (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    let body = "x".repeat(1000);
    let mut figures = Vec::new();
    let clients: &[usize] = if postgres.is_some() { &[1, 16] } else { &[1] };
    let next = Arc::new(std::sync::atomic::AtomicI64::new(0));
    for &n in clients {
        let deadline = Instant::now() + length;
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (pool, body, next) = (pool.clone(), body.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < deadline {
                    let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    sqlx::query("INSERT INTO raw (id, body) VALUES ($1, $2)")
                        .bind(id)
                        .bind(&body)
                        .execute(&pool)
                        .await
                        .unwrap();
                    done += 1;
                }
                done
            }));
        }
        let mut done = 0;
        for task in tasks {
            done += task.await.unwrap();
        }
        figures.push((
            format!("{n} connection{}", if n == 1 { "" } else { "s" }),
            done as f64 / started.elapsed().as_secs_f64(),
        ));
    }
    pool.close().await;
    if postgres.is_none() {
        figures.extend(python_sqlite_commits(dir.path(), length));
    }
    figures
}

/// The same loop in Python's `sqlite3` (no async layer between the loop and SQLite: the
/// disk's own rate, as the performance review measured it); `None` without `python3`.
fn python_sqlite_commits(dir: &std::path::Path, length: Duration) -> Option<(String, f64)> {
    let script = r#"
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode = WAL"); db.execute("PRAGMA synchronous = FULL")
db.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
body, n, end = "x" * 1000, 0, time.monotonic() + float(sys.argv[2])
start = time.monotonic()
while time.monotonic() < end:
    db.execute("BEGIN"); db.execute("INSERT INTO raw (id, body) VALUES (?, ?)", (n, body)); db.execute("COMMIT"); n += 1
print(n / (time.monotonic() - start))
"#;
    let output = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("python.db"))
        .arg(length.as_secs_f64().to_string())
        .output()
        .ok()?;
    let rate = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .ok()?;
    Some(("Python's sqlite3, 1 connection".to_owned(), rate))
}

/// An open-loop run at `rate` a second for `secs` after a 2 s warm-up: each request's
/// latency from its due time (ms, sorted; the warm-up's left out), the acknowledged
/// sessions, and how many failed or timed out.
async fn open_loop(
    http: &reqwest::Client,
    url: &reqwest::Url,
    secret: &Arc<WebhookSecret>,
    rate: u64,
    secs: u64,
) -> (Vec<f64>, Vec<String>, usize) {
    let warm_up = rate * 2;
    let total = warm_up + rate * secs;
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
        let (http, url, secret) = (http.clone(), url.clone(), secret.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("ol-{rate}-{i}");
            let status = post(&http, &url, &secret, &id, body("perf", &id, false)).await;
            (i, id, status, due.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut latencies = Vec::new();
    let mut acknowledged = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (i, id, status, latency) = task.await.unwrap();
        if status == Some(202) {
            acknowledged.push(id);
        } else {
            errors += 1;
        }
        if i >= warm_up {
            latencies.push(latency);
        }
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, acknowledged, errors)
}

/// Posts `count` webhooks from `senders` tasks; `verified(i)` says which carry Ada.
async fn send_all(
    http: &reqwest::Client,
    url: &reqwest::Url,
    secret: &Arc<WebhookSecret>,
    prefix: &str,
    count: usize,
    senders: usize,
    verified: fn(usize) -> bool,
) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (http, url, secret, next, prefix) = (
            http.clone(),
            url.clone(),
            secret.clone(),
            next.clone(),
            prefix.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let id = format!("{prefix}-{i}");
                let status = post(&http, &url, &secret, &id, body("perf", &id, verified(i))).await;
                assert_eq!(status, Some(202), "{id}");
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Waits until none of `org`'s handoffs is queued or processing; its handoffs by state and
/// the last `updated_at` (Unix ms).
async fn wait_settled(database_url: &str, org: &str) -> (Vec<(String, i64)>, i64) {
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(database_url).await.unwrap();
    loop {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n, MAX(updated_at) AS last FROM handoffs WHERE org_id = $1 GROUP BY state")
            .bind(org)
            .fetch_all(&pool)
            .await
            .unwrap();
        let states: Vec<(String, i64, i64)> = rows
            .iter()
            .map(|r| {
                (
                    sqlx::Row::get(r, "state"),
                    sqlx::Row::get(r, "n"),
                    sqlx::Row::get(r, "last"),
                )
            })
            .collect();
        if !states
            .iter()
            .any(|(s, _, _)| s == "queued" || s == "processing")
        {
            pool.close().await;
            let last = states.iter().map(|(_, _, l)| *l).max().unwrap_or(0);
            return (states.into_iter().map(|(s, n, _)| (s, n)).collect(), last);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
