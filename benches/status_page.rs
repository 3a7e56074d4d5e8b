//! How long `GET /status` (and `GET /v1/status`) take with 1,000 handoffs stored.
//!
//! `cargo bench --bench status_page` (release profile): starts the sandbox and a bridge on a
//! SQLite file in-process, hands off `STATUS_BENCH_HANDOFFS` sessions (default 1,000; about
//! 20 % refused by Dataverse with 403, 10 % on the email channel, the rest succeeded), waits
//! until none is queued, then requests each view `STATUS_BENCH_REQUESTS` times (default 25)
//! one after another and prints the median, the 90th percentile and the fastest, in ms.

use std::time::{Duration, Instant};

use handoff_bridge::connection::crypto::EncryptionKey;
use handoff_bridge::demo::{connect_demo_org, post_signed, sandbox_config};
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

#[tokio::main]
async fn main() {
    let handoffs = env("STATUS_BENCH_HANDOFFS", 1000);
    let requests = env("STATUS_BENCH_REQUESTS", 25);
    let sandbox = Sandbox::start(Seed::builtin(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let admin_token = EncryptionKey::generate_base64();
    let mut config = sandbox_config(&sandbox, dir.path(), &admin_token);
    config.settings.concurrency = 8;
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
        let status: Value = http
            .get(format!("{url}/v1/status"))
            .bearer_auth(&admin_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
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

    for path in [
        "/status",
        "/status?limit=500",
        "/status?state=failed",
        "/v1/status",
        "/v1/status?limit=500",
    ] {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..requests {
            let t0 = Instant::now();
            let response = http
                .get(format!("{url}{path}"))
                .bearer_auth(&admin_token)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success());
            bytes = response.bytes().await.unwrap().len();
            times.push(t0.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "GET {path:<24} median {:>6.2} ms  p90 {:>6.2} ms  min {:>6.2} ms  ({requests} requests, {} KiB)",
            times[times.len() / 2],
            times[times.len() * 9 / 10],
            times[0],
            bytes / 1024
        );
    }
    shutdown.cancel();
    let _ = server.await;
}
