//! Hostile clients and hostile upstreams (the security review of 6617ffe): each test is one
//! finding, driven over real sockets against the running bridge.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use handoff_bridge::clock::now_ms;
use handoff_bridge::connection::crypto::EncryptionKey;
use handoff_bridge::http::server::HttpLimits;
use handoff_bridge::sandbox::{Fault, FaultAction, Seed};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{envelope, TestApp, TestOptions};

/// The bridge's `host:port`.
fn addr(t: &TestApp) -> String {
    t.url.trim_start_matches("http://").to_owned()
}

/// Reads from `stream` until the server closes it or `limit` passes; returns what was read
/// and whether the server closed the connection.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&out).into_owned(), false),
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&out).into_owned(), true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// A bridge serving with these HTTP limits.
async fn with_limits(http_limits: HttpLimits) -> TestApp {
    TestApp::start_with(TestOptions {
        http_limits,
        ..Default::default()
    })
    .await
}

/// A webhook request head for `org` with well-formed, current signature headers and the
/// given `webhook-signature` and `Content-Length`, and no body.
fn webhook_head(org: &str, signature: &str, content_length: usize) -> String {
    format!(
        "POST /v1/webhooks/{org} HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\n\
         webhook-id: msg_probe\r\nwebhook-timestamp: {}\r\nwebhook-signature: {signature}\r\n\
         Content-Length: {content_length}\r\n\r\n",
        now_ms() / 1000
    )
}

#[tokio::test]
async fn a_padded_signature_header_is_refused_before_the_body_is_read() {
    let t = TestApp::start().await;
    t.create_org("acme", None).await;
    let padded = vec!["v1,"; 50_000].join(" ");
    // The body is announced and never sent: an answer proves no MAC ran over it.
    let attack = || async {
        let mut stream = TcpStream::connect(addr(&t)).await.unwrap();
        stream
            .write_all(webhook_head("acme", &padded, 256 * 1024).as_bytes())
            .await
            .unwrap();
        let started = Instant::now();
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
        (answer, started.elapsed())
    };
    let healthz = async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let started = Instant::now();
        let response = reqwest::get(format!("{}/healthz", t.url)).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        started.elapsed()
    };
    let ((a, a_took), (b, b_took), health_took) = tokio::join!(attack(), attack(), healthz);
    for answer in [&a, &b] {
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        assert!(answer.contains("signature_header_invalid"), "{answer}");
        assert!(answer.contains("is longer than 1024 bytes"), "{answer}");
    }
    println!(
        "50,000-entry signature headers answered in {a_took:?} and {b_took:?}; /healthz meanwhile in {health_took:?}"
    );

    // Headers are checked before the org is looked up; a well-formed delivery to an org
    // that does not exist is still told so (documented: 404 unknown_org).
    let bare = t
        .post_webhook(
            "nobody",
            b"{}",
            &[("content-type", "application/json".into())],
        )
        .await;
    assert_eq!(bare.0, StatusCode::UNAUTHORIZED, "{}", bare.1);
    assert_eq!(bare.1["code"], "signature_header_missing");
    let secret = handoff_bridge::webhook::WebhookSecret::generate();
    let (status, body) = t
        .send("nobody", &secret, "msg_1", &envelope("nobody", json!({})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["code"], "unknown_org");
}

#[tokio::test]
async fn announced_bodies_that_never_arrive_are_refused_and_the_connection_closed() {
    let t = with_limits(HttpLimits {
        body_read_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    })
    .await;
    t.create_org("acme", None).await;
    let signature = format!("v1,{}", "A".repeat(43) + "=");

    // 10 MB announced: refused from the Content-Length alone.
    let mut stream = TcpStream::connect(addr(&t)).await.unwrap();
    stream
        .write_all(webhook_head("acme", &signature, 10_000_000).as_bytes())
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    // 100 bytes announced, 10 sent: 408 when the body-read timeout ends, then closed.
    let mut stream = TcpStream::connect(addr(&t)).await.unwrap();
    stream
        .write_all(webhook_head("acme", &signature, 100).as_bytes())
        .await
        .unwrap();
    stream.write_all(b"{\"event\":1").await.unwrap();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    assert!(closed, "the connection is closed after a 408");
}

#[tokio::test]
async fn silent_and_idle_clients_are_disconnected() {
    let t = with_limits(HttpLimits {
        header_read_timeout: Duration::from_secs(1),
        ..HttpLimits::default()
    })
    .await;
    // Half a request head, then silence.
    let mut stream = TcpStream::connect(addr(&t)).await.unwrap();
    stream
        .write_all(b"POST /v1/webhooks/acme HTTP/1.1\r\nHost: bridge\r\n")
        .await
        .unwrap();
    let (_, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(
        closed,
        "a client that never finishes its head is disconnected"
    );

    // A kept-alive connection that goes quiet after one request.
    let mut stream = TcpStream::connect(addr(&t)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")
        .await
        .unwrap();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle keep-alive connection is closed");
}

#[tokio::test]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let t = with_limits(HttpLimits {
        max_connections: 2,
        ..HttpLimits::default()
    })
    .await;
    let parked_a = TcpStream::connect(addr(&t)).await.unwrap();
    let _parked_b = TcpStream::connect(addr(&t)).await.unwrap();
    let client = reqwest::Client::new();
    let healthz = || {
        client
            .get(format!("{}/healthz", t.url))
            .timeout(Duration::from_millis(700))
            .send()
    };
    assert!(
        healthz().await.is_err(),
        "a third connection is not served while two are open"
    );
    drop(parked_a);
    let answer = healthz().await.expect("served once a slot is free");
    assert_eq!(answer.status(), StatusCode::OK);
}

#[tokio::test]
async fn hostile_retry_after_values_are_clamped_and_the_environment_stays_usable() {
    for retry_after in [u64::MAX, 1_000_000_000] {
        let t = TestApp::start().await;
        let secret = t.connected_org("acme").await;
        t.sandbox.inject(Fault::next(
            "create_work_item",
            FaultAction::Status {
                status: 429,
                retry_after_secs: Some(retry_after),
            },
            1,
        ));
        let before = now_ms();
        t.hand_off("acme", &secret, json!({ "id": "throttled" }))
            .await;
        let record = t.record("acme", "throttled").await;
        assert_eq!(record["state"], "queued", "{record}");
        assert_eq!(record["last_error"]["code"], "dataverse_throttled");
        let next = time::OffsetDateTime::parse(
            record["next_attempt_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let next_ms = (next.unix_timestamp_nanos() / 1_000_000) as i64;
        assert!(
            next_ms <= before + 3_600_000 + 60_000,
            "retry within the 1-hour clamp, not {next}"
        );
        // The environment is paused for at most the clamp, and still answers the gate
        // (a poisoned gate would panic here and leave the handoff processing).
        t.hand_off("acme", &secret, json!({ "id": "during-pause" }))
            .await;
        let record = t.record("acme", "during-pause").await;
        assert_eq!(record["state"], "queued", "{record}");
        let detail = record["last_error"]["detail"].as_str().unwrap();
        let paused_ms: u64 = detail
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no pause length in {detail}"));
        assert!(paused_ms <= 3_600_000, "{detail}");
    }
}

#[tokio::test]
async fn a_token_lifetime_past_any_clock_is_clamped() {
    let mut seed = Seed::builtin();
    seed.token_lifetime_secs = u64::MAX;
    let t = TestApp::start_with(TestOptions {
        seed: Some(seed),
        ..Default::default()
    })
    .await;
    let secret = t.connected_org("acme").await;
    t.hand_off("acme", &secret, json!({ "id": "long-token" }))
        .await;
    assert_eq!(t.record("acme", "long-token").await["state"], "succeeded");
}

#[tokio::test]
async fn a_callback_host_that_resolves_to_loopback_is_refused_when_it_connects() {
    let t = TestApp::start().await;
    let canary = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = canary.local_addr().unwrap().port();
    let reached = Arc::new(AtomicUsize::new(0));
    let count = reached.clone();
    tokio::spawn(async move {
        while canary.accept().await.is_ok() {
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    // Saved by a development process, where loopback callbacks are allowed…
    let secret = t
        .create_org("acme", Some(&format!("https://localhost:{port}/hooks")))
        .await;
    t.admin(
        reqwest::Method::PUT,
        "/v1/orgs/acme/connection",
        Some(t.connection_input(json!({}))),
    )
    .await;
    let (status, _) = t.submit("acme", &secret, json!({ "id": "rebound" })).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    // …delivered by a production one: the name resolves to 127.0.0.1 when it connects.
    let production = t.secure_replica().await;
    for _ in 0..5 {
        production.run_due().await.unwrap();
    }
    let record = t.record("acme", "rebound").await;
    let callback = &record["callbacks"][0];
    assert!(callback["attempts"].as_i64().unwrap() >= 1, "{record}");
    assert_eq!(
        callback["last_error"],
        "the callback host resolves to a loopback, private, link-local or reserved address",
        "{record}"
    );
    assert_eq!(
        reached.load(Ordering::SeqCst),
        0,
        "nothing reached the host"
    );
}

#[tokio::test]
async fn a_hanging_tenant_does_not_delay_another_orgs_handoff() {
    let t = TestApp::start().await;
    let slow = t.connected_org("slow").await;
    let quick = t.connected_org("quick").await;
    // The slow org's sessions have verified emails, so each waits 2 s on its contact
    // lookup; the quick org's visitor is anonymous and needs no lookup.
    t.sandbox.inject(Fault::next(
        "contacts",
        FaultAction::Delay { ms: 2000 },
        100,
    ));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let _worker = t.app.spawn_worker(shutdown.clone());
    for i in 0..6 {
        let session = json!({ "id": format!("slow-{i}"), "contact": { "email": "ada@example.com", "verified": true } });
        assert_eq!(
            t.submit("slow", &slow, session).await.0,
            StatusCode::ACCEPTED
        );
    }
    let sent = Instant::now();
    assert_eq!(
        t.submit("quick", &quick, json!({ "id": "quick-1" }))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while t.record("quick", "quick-1").await["state"] != "succeeded" {
        assert!(
            Instant::now() < deadline,
            "the quick org's handoff never settled"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "the quick org's handoff settled {:?} after its webhook, behind 6 slow ones",
        sent.elapsed()
    );
    let mut slow_settled = 0;
    for i in 0..6 {
        if t.record("slow", &format!("slow-{i}")).await["state"] == "succeeded" {
            slow_settled += 1;
        }
    }
    shutdown.cancel();
    assert_eq!(
        slow_settled, 0,
        "the quick handoff did not wait for any of the slow org's handoffs"
    );
}

#[tokio::test]
async fn text_the_store_cannot_hold_is_refused_with_422() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let (status, body) = t
        .submit(
            "acme",
            &secret,
            json!({ "id": "nul", "channel": { "type": "we\u{0}b" } }),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/data/session/channel/type");
    assert_eq!(
        body["errors"][0]["message"],
        "must not contain control characters"
    );
    let (status, _) = t
        .admin(reqwest::Method::GET, "/v1/orgs/acme/sessions/nul", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    let (status, body) = t
        .admin(
            reqwest::Method::PUT,
            "/v1/orgs/other",
            Some(json!({ "name": "Other\u{0}Org" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/name");
    // A NUL inside the session's JSON payload is stored escaped and is fine.
    let (status, body) = t
        .submit(
            "acme",
            &secret,
            json!({ "id": "nul-summary", "handoff": { "summary": "a\u{0}b" } }),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn null_for_optional_fields_reads_as_absent() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    for session in [
        json!({ "id": "null-verified", "contact": { "email": "ada@example.com", "verified": null } }),
        json!({ "id": "null-history", "history": null }),
        json!({ "id": "null-message", "history": [null, { "sender": "user", "text": "hi" }] }),
    ] {
        let (status, body) = t.submit("acme", &secret, session).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    t.drain().await;
    let record = t.record("acme", "null-verified").await;
    assert_eq!(record["state"], "succeeded");
    assert_eq!(
        record["contact_match"], "unverified",
        "null is not verified"
    );
    for id in ["null-history", "null-message"] {
        assert_eq!(t.record("acme", id).await["state"], "succeeded");
    }
}

#[tokio::test]
async fn retention_removes_the_session_but_keeps_the_record() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let summary = "Retention probe: the customer's parcel 7f3c9a never arrived";
    let session = json!({
        "id": "kept-for-a-while",
        "contact": { "name": "Grace Retention", "email": "ada@example.com", "verified": true },
        "handoff": { "summary": summary },
        "history": [{ "sender": "user", "text": "where is parcel 7f3c9a" }],
    });
    t.hand_off("acme", &secret, session).await;
    let before = t.record("acme", "kept-for-a-while").await;
    assert_eq!(before["state"], "succeeded");
    assert!(t.db.raw_contents().await.contains("7f3c9a"));

    let day = 24 * 3600 * 1000;
    assert_eq!(
        t.app.enforce_retention(now_ms() + 29 * day).await.unwrap(),
        0
    );
    assert_eq!(
        t.app.enforce_retention(now_ms() + 31 * day).await.unwrap(),
        1
    );
    assert_eq!(
        t.app.enforce_retention(now_ms() + 31 * day).await.unwrap(),
        0,
        "nothing is redacted twice"
    );

    let after = t.record("acme", "kept-for-a-while").await;
    for kept in [
        "state",
        "handoff_id",
        "dynamics365_chat_id",
        "contact_id",
        "contact_match",
    ] {
        assert_eq!(after[kept], before[kept], "{kept} is kept");
    }
    assert!(after["redacted_at"].is_string(), "{after}");
    assert!(after["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "redacted"));
    let stored = t
        .app
        .worker()
        .store
        .handoff("acme", "kept-for-a-while")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.payload, handoff_bridge::store::REDACTED_PAYLOAD);
    let raw = t.db.raw_contents().await;
    for gone in ["7f3c9a", "Grace Retention"] {
        assert!(
            !raw.contains(gone),
            "{gone} is gone from the database files"
        );
    }
    // A redacted handoff cannot be replayed: there is nothing left to send.
    let (status, body) = t
        .admin(
            reqwest::Method::POST,
            "/v1/orgs/acme/sessions/kept-for-a-while/retry",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

#[tokio::test]
async fn a_replayed_delivery_adds_no_event_and_redeliveries_are_bounded() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let body = envelope("acme", json!({ "id": "replayed" }));
    for _ in 0..20 {
        t.send("acme", &secret, "msg_same", &body).await;
    }
    for i in 0..30 {
        t.send("acme", &secret, &format!("msg_{i}"), &body).await;
    }
    let record = t.record("acme", "replayed").await;
    let count = |kind: &str| {
        record["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind)
            .count()
    };
    assert_eq!(count("received"), 1);
    assert_eq!(
        count("duplicate_delivery") as i64,
        handoff_bridge::store::handoffs::MAX_DUPLICATE_EVENTS
    );
}

#[tokio::test]
async fn a_revoked_previous_secret_stops_verifying_at_once() {
    let t = TestApp::start().await;
    let old = t.connected_org("acme").await;
    let (status, rotated) = t
        .admin(reqwest::Method::POST, "/v1/orgs/acme/webhook-secret", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let new =
        handoff_bridge::webhook::WebhookSecret::parse(rotated["webhook_secret"].as_str().unwrap())
            .unwrap();
    assert_eq!(
        t.submit("acme", &old, json!({ "id": "during-grace" }))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    let revoke = "/v1/orgs/acme/webhook-secret/previous";
    let (status, body) = t.admin(reqwest::Method::DELETE, revoke, None).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "revoked": true })));
    let (status, body) = t
        .submit("acme", &old, json!({ "id": "after-revoke" }))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "signature_mismatch");
    assert_eq!(
        t.submit("acme", &new, json!({ "id": "new-secret" }))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    let (_, body) = t.admin(reqwest::Method::DELETE, revoke, None).await;
    assert_eq!(body, json!({ "revoked": false }));
}

#[tokio::test]
async fn a_key_rotation_keeps_every_secret_readable_and_rekey_reseals_them() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let (status, body) = t.connect_opencx("acme", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let old_key = t.encryption_key().to_owned();
    let new_key = EncryptionKey::generate_base64();
    let rekey = |previous: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_handoff-bridge"))
            .arg("rekey")
            .env("HANDOFF_DATABASE_URL", t.db.url())
            .env("HANDOFF_ENCRYPTION_KEY", &new_key)
            .env("HANDOFF_PREVIOUS_ENCRYPTION_KEYS", previous)
            .output()
            .unwrap()
    };
    // Without the old key, rekey refuses and names what it cannot open.
    let out = rekey("");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("3 secret(s) open with none of the keys"),
        "{stderr}"
    );
    assert!(!stderr.contains(&old_key) && !stderr.contains(&new_key));

    // Handoffs received before the rotation, handled after it: a pushed session, and
    // OpenCX's thin event (its session fetched with the OpenCX API key).
    let (status, _) = t
        .submit("acme", &secret, json!({ "id": "after-rekey" }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let thin = json!({
        "event": "conversation.handoff_to_human",
        "organization_id": "acme",
        "data": { "conversation_id": "ocx-web-1" },
    });
    let (status, _) = t.send("acme", &secret, "msg_thin", &thin).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let out = rekey(&old_key);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("re-sealed 3 secret(s); 0 already"),
        "{stdout}"
    );
    let out = rekey(&old_key);
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-sealed 0 secret(s); 3 already"));

    // A process with only the new key handles the org: its client secret opens.
    let new_only = t.replica_with_keys(&new_key, &[]).await;
    new_only.run_due().await.unwrap();
    assert_eq!(t.record("acme", "after-rekey").await["state"], "succeeded");
    // The OpenCX API key opens with it too: the thin event's session was fetched.
    assert_eq!(t.record("acme", "ocx-web-1").await["state"], "succeeded");
    // And the webhook secret opens with it too.
    let ctx = new_only.worker();
    let org = ctx.store.org("acme").await.unwrap().unwrap();
    assert!(ctx.vault.webhook_secret(&org).is_ok());
}

#[tokio::test]
async fn status_links_encode_each_path_segment_and_html_carries_security_headers() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    for id in ["../../../metrics", "a/b?c#d"] {
        assert_eq!(
            t.submit("acme", &secret, json!({ "id": id })).await.0,
            StatusCode::ACCEPTED
        );
    }
    let response = t
        .http
        .get(format!("{}/status?org=acme", t.url))
        .bearer_auth(&t.admin_token)
        .send()
        .await
        .unwrap();
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
    ] {
        assert_eq!(response.headers()[name], value);
    }
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"));
    // One script runs (the local times), allowed by its hash: no inline script of another.
    assert!(
        csp.contains("script-src 'sha256-") && !csp.contains("unsafe-inline';  script"),
        "{csp}"
    );
    let html = response.text().await.unwrap();
    for href in [
        "/status/acme/sessions/%2E%2E%2F%2E%2E%2F%2E%2E%2Fmetrics",
        "/status/acme/sessions/a%2Fb%3Fc%23d",
    ] {
        assert!(html.contains(&format!("href=\"{href}\"")), "{href}");
        let page = t
            .http
            .get(format!("{}{href}", t.url))
            .bearer_auth(&t.admin_token)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), StatusCode::OK, "{href} opens its session");
    }
    let challenge = t
        .http
        .get(format!("{}/status", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(challenge.headers()["x-frame-options"], "DENY");
}

#[tokio::test]
async fn a_panicking_attempt_is_recorded_and_retried() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    t.submit("acme", &secret, json!({ "id": "panicky" })).await;
    let ctx = t.app.worker();
    let claim = ctx
        .store
        .claim_handoff(now_ms(), 60_000, &[])
        .await
        .unwrap()
        .expect("the handoff is due");
    let outcome =
        handoff_bridge::handoff::panicked(&ctx.job(), &claim, "overflow when adding duration");
    assert!(ctx
        .store
        .finish_handoff(&claim, &outcome, now_ms())
        .await
        .unwrap());
    let record = t.record("acme", "panicky").await;
    assert_eq!(record["state"], "queued", "never left processing: {record}");
    assert_eq!(record["last_error"]["code"], "internal_error");
    assert!(record["last_error"]["detail"]
        .as_str()
        .unwrap()
        .contains("overflow when adding duration"));
    t.drain().await;
    assert_eq!(t.record("acme", "panicky").await["state"], "succeeded");
}
