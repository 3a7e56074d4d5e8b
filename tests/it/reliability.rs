//! Transient faults are retried, Retry-After is honored, and a connection never exceeds its
//! share of Dataverse.

use std::time::Duration;

use handoff_bridge::sandbox::{Fault, FaultAction};
use serde_json::{json, Value};

use crate::helpers::{envelope, events, TestApp, TestOptions};

fn fault(kind: &str, action: FaultAction) -> Fault {
    Fault::next(kind, action, 1)
}

#[tokio::test]
async fn each_transient_kind_is_retried_and_succeeds() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let verified = json!({ "email": "ada@example.com", "verified": true });
    let cases: Vec<(&str, Fault, &str)> = vec![
        (
            "http-500",
            fault("contacts", FaultAction::status(500, None)),
            "dataverse_unavailable",
        ),
        (
            "http-503",
            fault("create_work_item", FaultAction::status(503, None)),
            "dataverse_unavailable",
        ),
        (
            "http-429",
            fault("create_work_item", FaultAction::status(429, Some(0))),
            "dataverse_throttled",
        ),
        (
            "reset",
            fault("contacts", FaultAction::Reset),
            "dataverse_unavailable",
        ),
        (
            "lost-answer",
            fault("create_work_item", FaultAction::DropAfterCommit),
            "dataverse_unavailable",
        ),
        (
            "entra-503",
            fault("token", FaultAction::status(503, None)),
            "entra_unavailable",
        ),
        (
            "entra-429",
            fault("token", FaultAction::status(429, Some(0))),
            "entra_throttled",
        ),
    ];
    for (id, fault, code) in cases {
        if fault.kind == "token" {
            // The cached token must go for the token endpoint to be asked again.
            t.sandbox.expire_tokens();
        }
        t.sandbox.inject(fault);
        t.send(
            "acme",
            &secret,
            id,
            &envelope("acme", json!({ "id": id, "contact": verified })),
        )
        .await;
        t.drain().await;
        let record = t.record("acme", id).await;
        assert_eq!(record["state"], "succeeded", "{id}: {record}");
        assert_eq!(record["attempts"], 2, "{id}: {record}");
        let failed = events(&record, "attempt_failed");
        assert_eq!(failed.len(), 1, "{id}");
        assert_eq!(failed[0]["detail"]["code"], code, "{id}");
        assert_eq!(failed[0]["detail"]["transient"], true, "{id}");
        assert_eq!(failed[0]["detail"]["outcome"], "transient", "{id}");
        assert!(failed[0]["detail"]["duration_ms"].is_u64(), "{id}");
        assert!(failed[0]["detail"]["step"].is_string(), "{id}");
        assert_eq!(
            record["last_error"],
            Value::Null,
            "{id}: cleared on success"
        );
    }
    assert_eq!(
        t.sandbox.work_items().len(),
        7,
        "one work item per session, lost answer included"
    );
}

#[tokio::test]
async fn a_request_timeout_is_transient() {
    let t = TestApp::start_with(TestOptions {
        request_timeout: Duration::from_millis(300),
        ..Default::default()
    })
    .await;
    let secret = t.connected_org("acme").await;
    t.sandbox
        .inject(fault("create_work_item", FaultAction::Delay { ms: 1000 }));
    t.hand_off("acme", &secret, json!({ "id": "slow" })).await;
    let record = t.record("acme", "slow").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    let failed = events(&record, "attempt_failed");
    assert_eq!(failed[0]["detail"]["code"], "dataverse_unavailable");
    // The slow create still commits in the sandbox later; it must find the key taken.
    t.sandbox.until_idle().await;
    assert_eq!(t.sandbox.work_items().len(), 1);
}

#[tokio::test]
async fn retry_after_is_honored_and_pauses_the_whole_connection() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    t.sandbox
        .inject(fault("create_work_item", FaultAction::status(429, Some(1))));
    t.hand_off("acme", &secret, json!({ "id": "throttled" }))
        .await;
    let a = t.record("acme", "throttled").await;
    assert_eq!(a["state"], "queued");
    assert_eq!(a["last_error"]["code"], "dataverse_throttled");
    let scheduled = events(&a, "retry_scheduled");
    assert_eq!(
        scheduled[0]["detail"]["delay_ms"], 1000,
        "Retry-After as sent, not backoff"
    );
    assert_eq!(scheduled[0]["detail"]["retry_after_s"], 1);

    // Another handoff of the same connection is not sent while the pause lasts.
    t.hand_off("acme", &secret, json!({ "id": "during-pause" }))
        .await;
    let b = t.record("acme", "during-pause").await;
    assert_eq!(b["state"], "queued", "{b}");
    assert_eq!(b["last_error"]["code"], "dataverse_throttled");
    // Nothing was sent for it: a wait until the pause ends, not a failed attempt.
    let waiting = events(&b, "waiting");
    assert_eq!(waiting.len(), 1, "{b}");
    assert_eq!(waiting[0]["detail"]["parked"], false);
    assert!(events(&b, "retry_scheduled").is_empty());
    assert_eq!(
        b["attempts"], 0,
        "the paused gate did not raise the attempt count"
    );
    assert!(b["next_attempt_at"].is_string());
    assert_eq!(
        t.requests_of("create_work_item").len(),
        1,
        "nothing was sent during the pause"
    );
    assert_eq!(
        t.app.run_due().await.unwrap(),
        0,
        "nothing is due before Retry-After"
    );
    // A third handoff of the paused org is not even claimed while the pause lasts.
    t.submit("acme", &secret, json!({ "id": "not-claimed" }))
        .await;
    assert_eq!(t.app.run_due().await.unwrap(), 0);
    let c = t.record("acme", "not-claimed").await;
    assert!(events(&c, "attempt_started").is_empty(), "{c}");

    t.advance(Duration::from_millis(1050));
    t.drain().await;
    for id in ["throttled", "during-pause", "not-claimed"] {
        assert_eq!(t.record("acme", id).await["state"], "succeeded");
    }
    assert_eq!(t.requests_of("create_work_item").len(), 4);
}

#[tokio::test]
async fn the_per_connection_concurrency_limit_is_never_exceeded() {
    let t = TestApp::start_with(TestOptions {
        worker_concurrency: 16,
        dataverse_concurrency: 3,
        ..Default::default()
    })
    .await;
    let secret = t.connected_org("acme").await;
    t.sandbox
        .inject(Fault::next("any", FaultAction::Delay { ms: 30 }, 1000));
    for i in 0..24 {
        let session = json!({ "id": format!("c-{i}"), "contact": { "email": "ada@example.com", "verified": true } });
        t.send(
            "acme",
            &secret,
            &format!("m{i}"),
            &envelope("acme", session),
        )
        .await;
    }
    t.drain().await;
    assert_eq!(t.sandbox.work_items().len(), 24);
    assert_eq!(
        t.sandbox.peak_concurrency(),
        3,
        "the limit was reached and never exceeded"
    );
}

#[tokio::test]
async fn entra_throttling_pauses_token_requests_for_the_connection() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    t.sandbox.expire_tokens();
    t.sandbox
        .inject(fault("token", FaultAction::status(429, Some(1))));
    for i in 0..3 {
        t.send(
            "acme",
            &secret,
            &format!("m{i}"),
            &envelope("acme", json!({ "id": format!("e-{i}") })),
        )
        .await;
    }
    t.drain().await;
    let tokens = t.requests_of("token");
    assert_eq!(
        tokens.len(),
        2,
        "the connect, then one throttled request for three handoffs"
    );
    assert_eq!(tokens[1].status, 429);
    for i in 0..3 {
        let record = t.record("acme", &format!("e-{i}")).await;
        assert_eq!(record["state"], "queued");
        // Met the pause, or (claimed after another did) not claimed while it lasts.
        let code = &record["last_error"]["code"];
        assert!(code == "entra_throttled" || code.is_null(), "{record}");
        assert!(record["attempts"].as_u64().unwrap() <= 1, "{record}");
    }
    t.advance(Duration::from_millis(1050));
    t.drain().await;
    for i in 0..3 {
        assert_eq!(
            t.record("acme", &format!("e-{i}")).await["state"],
            "succeeded"
        );
    }
    assert_eq!(
        t.requests_of("token").len(),
        3,
        "one new token after the pause, shared by all"
    );
}

/// Starts the worker, waits until the handoff of `session` is being processed, stops the
/// worker, and returns how long stopping took.
async fn stop_mid_attempt(t: &TestApp, session: &str) -> Duration {
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = t.app.spawn_worker(shutdown.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while t.record("acme", session).await["state"] != "processing" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker never took the handoff"
        );
        // Another task's progress, not time, is awaited here.
        tokio::task::yield_now().await;
    }
    let started = std::time::Instant::now();
    shutdown.cancel();
    worker.await.unwrap();
    started.elapsed()
}

#[tokio::test]
async fn shutdown_gives_back_a_handoff_that_outlasts_the_grace_period() {
    let t = TestApp::start_with(TestOptions {
        shutdown_grace: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let secret = t.connected_org("acme").await;
    t.sandbox
        .inject(fault("create_work_item", FaultAction::Delay { ms: 1500 }));
    t.send(
        "acme",
        &secret,
        "m1",
        &envelope("acme", json!({ "id": "slow" })),
    )
    .await;
    let took = stop_mid_attempt(&t, "slow").await;
    assert!(
        took < Duration::from_millis(1000),
        "stopped after the grace period, not the request: {took:?}"
    );
    let record = t.record("acme", "slow").await;
    assert_eq!(
        record["state"], "queued",
        "given back, not left leased: {record}"
    );
    assert_eq!(events(&record, "released").len(), 1);
    t.drain().await;
    assert_eq!(t.record("acme", "slow").await["state"], "succeeded");
    t.sandbox.until_idle().await;
    assert_eq!(t.sandbox.work_items().len(), 1);
}

#[tokio::test]
async fn shutdown_lets_a_handoff_finish_within_the_grace_period() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    t.sandbox
        .inject(fault("create_work_item", FaultAction::Delay { ms: 300 }));
    t.send(
        "acme",
        &secret,
        "m1",
        &envelope("acme", json!({ "id": "finishing" })),
    )
    .await;
    stop_mid_attempt(&t, "finishing").await;
    let record = t.record("acme", "finishing").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert!(events(&record, "released").is_empty());
}

/// Drains until every listed session has settled, moving the clock to the soonest retry
/// when nothing is due (no sleeping); bounded.
async fn settle_all(t: &TestApp, sessions: &[String]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        t.drain().await;
        let mut open = 0;
        for s in sessions {
            if !matches!(
                t.record("acme", s).await["state"].as_str(),
                Some("succeeded" | "failed" | "skipped")
            ) {
                open += 1;
            }
        }
        if open == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{open} handoffs never settled"
        );
        t.advance(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn the_request_limit_of_service_protection_is_waited_out() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    t.sandbox
        .set_limits(Some(handoff_bridge::sandbox::ServiceProtection {
            window_secs: 1,
            max_requests: 3,
            max_concurrent: 52,
        }));
    let sessions: Vec<String> = (0..4).map(|i| format!("limited-{i}")).collect();
    for s in &sessions {
        let session =
            json!({ "id": s, "contact": { "email": "ada@example.com", "verified": true } });
        t.send("acme", &secret, s, &envelope("acme", session)).await;
    }
    let started = t.clock().now_ms();
    settle_all(&t, &sessions).await;
    for s in &sessions {
        assert_eq!(t.record("acme", s).await["state"], "succeeded");
    }
    let refused = t
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.error_code.as_deref() == Some("0x80072322"))
        .count();
    assert!(refused > 0, "the limit was hit");
    assert!(
        t.clock().now_ms() - started >= 1000,
        "8 requests at 3 per second need more than a second (of the shared clock)"
    );
    assert_eq!(t.sandbox.work_items().len(), 4);
}

#[tokio::test]
async fn the_bridge_stays_under_the_concurrency_limit_of_service_protection() {
    let t = TestApp::start_with(TestOptions {
        worker_concurrency: 16,
        dataverse_concurrency: 4,
        ..Default::default()
    })
    .await;
    let secret = t.connected_org("acme").await;
    t.sandbox
        .set_limits(Some(handoff_bridge::sandbox::ServiceProtection {
            window_secs: 300,
            max_requests: 6000,
            max_concurrent: 4,
        }));
    t.sandbox
        .inject(Fault::next("any", FaultAction::Delay { ms: 20 }, 1000));
    let sessions: Vec<String> = (0..20).map(|i| format!("conc-{i}")).collect();
    for s in &sessions {
        t.send("acme", &secret, s, &envelope("acme", json!({ "id": s })))
            .await;
    }
    t.drain().await;
    let refused = t
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.status == 429)
        .count();
    assert_eq!(
        refused, 0,
        "never over the sandbox's concurrent-request limit"
    );
    assert_eq!(t.sandbox.work_items().len(), 20);
}

#[tokio::test]
async fn random_transient_faults_end_in_one_work_item_per_session() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    t.sandbox.inject(Fault {
        probability: Some(0.3),
        ..Fault::next("any", FaultAction::status(503, None), 0)
    });
    let sessions: Vec<String> = (0..30).map(|i| format!("random-{i}")).collect();
    for s in &sessions {
        let session =
            json!({ "id": s, "contact": { "email": "grace@example.com", "verified": true } });
        t.send("acme", &secret, s, &envelope("acme", session)).await;
    }
    settle_all(&t, &sessions).await;
    let faults = t
        .sandbox
        .requests()
        .into_iter()
        .filter(|r| r.status == 503)
        .count();
    assert!(faults > 5, "about 30% of the requests failed: {faults}");
    for s in &sessions {
        assert_eq!(t.record("acme", s).await["state"], "succeeded");
    }
    assert_eq!(t.sandbox.work_items().len(), 30);
}

#[tokio::test]
async fn paced_at_the_request_limit_the_bridge_is_never_refused() {
    // The bridge is told the sandbox's limit (20 a second) and paces itself under it.
    let t = TestApp::start_with(TestOptions {
        dataverse_pacing: handoff_bridge::dynamics::Pacing {
            requests: 20,
            window: Duration::from_secs(1),
        },
        ..Default::default()
    })
    .await;
    let secret = t.connected_org("acme").await;
    t.sandbox
        .set_limits(Some(handoff_bridge::sandbox::ServiceProtection {
            window_secs: 1,
            max_requests: 20,
            max_concurrent: 52,
        }));
    let before = t.sandbox.requests().len();
    let sessions: Vec<String> = (0..40).map(|i| format!("paced-{i}")).collect();
    for s in &sessions {
        t.send("acme", &secret, s, &envelope("acme", json!({ "id": s })))
            .await;
    }
    let started = std::time::Instant::now();
    t.drain().await;
    let sent: Vec<_> = t.sandbox.requests().into_iter().skip(before).collect();
    let refused = sent.iter().filter(|r| r.status == 429).count();
    assert_eq!(refused, 0, "paced under the limit, never over it");
    for s in &sessions {
        assert_eq!(t.record("acme", s).await["state"], "succeeded");
    }
    assert_eq!(t.sandbox.work_items().len(), 40);
    // 40 requests at 19 a second (96 % of 20) and a burst of 1 take about two seconds.
    assert!(
        started.elapsed() >= Duration::from_millis(1_800),
        "{:?} for {} requests",
        started.elapsed(),
        sent.len()
    );
}
