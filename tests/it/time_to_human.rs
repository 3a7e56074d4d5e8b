//! A waiting visitor: waits are not attempts, a handoff without a connection is parked
//! until one is saved, and fixing the setup (or an admin's retry) makes work due at once.

use handoff_bridge::sandbox::{Fault, FaultAction};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{envelope, events, TestApp};

type Received = std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>;

/// The callbacks the widget backend received, as JSON.
fn received(callbacks: &Received) -> Vec<Value> {
    callbacks
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| serde_json::from_str(body).unwrap())
        .collect()
}

#[tokio::test]
async fn handoffs_without_a_connection_are_parked_until_one_is_saved() {
    let t = TestApp::start().await;
    let (callback_url, callbacks) = crate::handoff::callback_receiver().await;
    let secret = t.create_org("acme", Some(&callback_url)).await;
    let sessions = ["early-1", "early-2", "early-3"];
    for s in sessions {
        let (status, body) = t
            .send("acme", &secret, s, &envelope("acme", json!({ "id": s })))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    assert_eq!(t.app.run_due().await.unwrap(), 3);
    for s in sessions {
        let record = t.record("acme", s).await;
        assert_eq!(record["state"], "queued", "{record}");
        assert_eq!(record["last_error"]["code"], "not_connected");
        assert_eq!(record["attempts"], 0, "waiting is not an attempt");
        assert_eq!(events(&record, "waiting")[0]["detail"]["parked"], true);
    }
    // Parked: not claimed again before the patience (a minute) ends.
    t.advance(std::time::Duration::from_secs(59));
    assert_eq!(t.app.run_due().await.unwrap(), 0);

    // At the patience, each is claimed once more, sends nothing to Dynamics, and tells
    // the widget backend it is delayed (once).
    t.advance(std::time::Duration::from_secs(1));
    assert_eq!(
        t.app.run_due().await.unwrap(),
        3 + 3,
        "3 handoffs, 3 callbacks"
    );
    for s in sessions {
        let record = t.record("acme", s).await;
        assert!(record["delayed_at"].is_string(), "{record}");
        assert_eq!(events(&record, "delayed").len(), 1);
        assert_eq!(record["attempts"], 0);
    }
    let delayed: Vec<Value> = received(&callbacks)
        .into_iter()
        .filter(|c| c["event"] == "handoff.delayed")
        .collect();
    assert_eq!(delayed.len(), 3, "{delayed:?}");
    assert_eq!(delayed[0]["data"]["reason"]["code"], "not_connected");
    assert!(t.requests_of("create_work_item").is_empty());
    t.advance(std::time::Duration::from_secs(600));
    assert_eq!(
        t.app.run_due().await.unwrap(),
        0,
        "parked until the chat expiry"
    );

    // Saving the connection makes them due at once.
    t.connect("acme").await;
    for s in sessions {
        let record = t.record("acme", s).await;
        assert_eq!(events(&record, "woken").len(), 1, "{record}");
        assert_eq!(
            events(&record, "woken")[0]["detail"]["reason"],
            "the connection was saved"
        );
    }
    t.drain().await;
    for s in sessions {
        let record = t.record("acme", s).await;
        assert_eq!(record["state"], "succeeded", "{record}");
        assert_eq!(record["attempts"], 1);
    }
    assert_eq!(t.sandbox.work_items().len(), 3);
}

#[tokio::test]
async fn a_handoff_nobody_could_take_fails_at_the_chat_expiry() {
    let t = TestApp::start().await;
    let (callback_url, callbacks) = crate::handoff::callback_receiver().await;
    let secret = t.create_org("acme", Some(&callback_url)).await;
    t.send(
        "acme",
        &secret,
        "m1",
        &envelope("acme", json!({ "id": "too-late" })),
    )
    .await;
    t.app.run_due().await.unwrap();
    t.advance(std::time::Duration::from_secs(60));
    t.drain().await;
    t.advance(std::time::Duration::from_secs(3600));
    t.drain().await;
    let record = t.record("acme", "too-late").await;
    assert_eq!(record["state"], "failed", "{record}");
    assert_eq!(record["last_error"]["code"], "chat_expired");
    let (_, status) = t.admin(Method::GET, "/v1/status?org=acme", None).await;
    assert_eq!(
        status["orgs"][0]["recent"][0]["last_error"]["code"],
        "chat_expired"
    );
    let events: Vec<String> = received(&callbacks)
        .iter()
        .map(|c| c["event"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["handoff.delayed", "handoff.failed"]);
}

#[tokio::test]
async fn retry_makes_a_waiting_handoff_due_now() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    // A 503 that asks for a minute: the handoff waits that long.
    t.sandbox.inject(Fault::next(
        "create_work_item",
        FaultAction::status(503, Some(60)),
        1,
    ));
    t.hand_off("acme", &secret, json!({ "id": "backing-off" }))
        .await;
    let record = t.record("acme", "backing-off").await;
    assert_eq!(record["state"], "queued", "{record}");
    assert_eq!(t.app.run_due().await.unwrap(), 0, "not due for a minute");
    let retry = || {
        t.admin(
            Method::POST,
            "/v1/orgs/acme/sessions/backing-off/retry",
            None,
        )
    };

    let (status, body) = retry().await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["requeued_handoffs"], 1);
    assert_eq!(t.app.run_due().await.unwrap(), 1);
    let record = t.record("acme", "backing-off").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(
        events(&record, "woken")[0]["detail"]["reason"],
        "an admin asked to retry"
    );

    // A settled handoff still has nothing to retry.
    let (status, body) = retry().await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["code"], "nothing_to_retry");
}

#[tokio::test]
async fn a_dead_holders_handoff_is_taken_over_within_the_lease() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    t.submit("acme", &secret, json!({ "id": "orphan" })).await;
    // A process claims it and dies (SIGKILL: no release, no heartbeat).
    let lease = t.options.lease;
    let claimed_at = t.clock().now_ms();
    let store = &t.app.worker().store;
    let claim = store
        .claim_handoff(claimed_at, lease.as_millis() as i64, &[])
        .await
        .unwrap()
        .expect("due");
    assert_eq!(claim.lease.until, claimed_at + lease.as_millis() as i64);
    let other = t.replica().await;
    assert_eq!(
        other.run_due().await.unwrap(),
        0,
        "held by the dead process"
    );

    // Once the lease has run out, the other process finishes it.
    t.advance(lease);
    assert_eq!(other.run_due().await.unwrap(), 1);
    let record = t.record("acme", "orphan").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(t.sandbox.work_items().len(), 1);
}

#[tokio::test]
async fn a_live_worker_keeps_a_slow_job_past_its_lease() {
    let t = TestApp::start_with(crate::helpers::TestOptions {
        lease: std::time::Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let secret = t.connected_org("acme").await;
    t.sandbox.inject(Fault::next(
        "create_work_item",
        FaultAction::Delay { ms: 2500 },
        1,
    ));
    t.submit("acme", &secret, json!({ "id": "slow" })).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = t.app.spawn_worker(shutdown.clone());
    let other = t.replica().await;
    // For as long as the job runs (2.5 s against a 1 s lease), no other process claims it.
    let mut looks = 0;
    while t.record("acme", "slow").await["state"] != "succeeded" {
        assert_eq!(other.run_due().await.unwrap(), 0, "taken over while alive");
        looks += 1;
        tokio::task::yield_now().await;
    }
    shutdown.cancel();
    worker.await.unwrap();
    assert!(looks > 10, "the other process looked {looks} times");
    let record = t.record("acme", "slow").await;
    assert_eq!(record["attempts"], 1, "{record}");
    assert_eq!(t.sandbox.work_items().len(), 1);
    assert_eq!(
        t.requests_of("create_work_item").len(),
        1,
        "one create: the job was never run twice"
    );
}

#[tokio::test]
async fn a_blip_is_resent_within_the_attempt_and_costs_no_backoff() {
    let t = TestApp::start_with(crate::helpers::TestOptions {
        quick_retries: handoff_bridge::handoff::retry::RetryPolicy::default().quick_retries,
        ..Default::default()
    })
    .await;
    let secret = t.connected_org("acme").await;
    // One reset and one 503 on the create: both resent at once within the attempt.
    t.sandbox
        .inject(Fault::next("create_work_item", FaultAction::Reset, 1));
    t.sandbox.inject(Fault::next(
        "create_work_item",
        FaultAction::status(503, None),
        1,
    ));
    t.hand_off("acme", &secret, json!({ "id": "blip" })).await;
    let record = t.record("acme", "blip").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["attempts"], 1, "no second attempt, no backoff");
    assert_eq!(events(&record, "request_retried").len(), 2, "{record}");
    assert!(events(&record, "retry_scheduled").is_empty());
    assert_eq!(t.sandbox.work_items().len(), 1);

    // Three failures in a row exhaust the quick retries: the attempt ends and backs off
    // (zero in tests), and the next attempt goes through.
    t.sandbox.inject(Fault::next(
        "create_work_item",
        FaultAction::status(503, None),
        3,
    ));
    t.hand_off("acme", &secret, json!({ "id": "outage" })).await;
    let record = t.record("acme", "outage").await;
    assert_eq!(events(&record, "request_retried").len(), 2, "{record}");
    assert_eq!(events(&record, "retry_scheduled").len(), 1);
    assert_eq!(
        record["state"], "succeeded",
        "the next attempt went through"
    );
    assert_eq!(record["attempts"], 2);
}

#[tokio::test]
async fn a_restarted_instance_takes_back_its_held_work_at_once() {
    let t = TestApp::start_with(crate::helpers::TestOptions {
        instance: Some("bridge-1:8080".to_owned()),
        ..Default::default()
    })
    .await;
    let secret = t.connected_org("acme").await;
    t.submit("acme", &secret, json!({ "id": "held" })).await;
    // This instance claims the handoff and dies before finishing it.
    let lease_ms = t.options.lease.as_millis() as i64;
    let claim = t
        .app
        .worker()
        .store
        .claim_handoff(t.clock().now_ms(), lease_ms, &[])
        .await
        .unwrap()
        .expect("due");
    assert!(
        claim.lease.id.starts_with("bridge-1:8080/"),
        "{}",
        claim.lease.id
    );

    // Restarted under the same instance id, it resumes the handoff without waiting for the
    // lease (the clock does not move here).
    let restarted = t.replica().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let worker = restarted.spawn_worker(shutdown.clone());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while t.record("acme", "held").await["state"] != "succeeded" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the restart did not resume the held handoff"
        );
        tokio::task::yield_now().await;
    }
    shutdown.cancel();
    worker.await.unwrap();
    assert_eq!(t.sandbox.work_items().len(), 1);
}
