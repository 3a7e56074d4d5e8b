//! Dead letters and replay: a failed handoff or callback goes again, never twice.

use handoff_bridge::sandbox::{Fault, FaultAction};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{envelope, TestApp};

fn fault(kind: &str, action: FaultAction, count: u32) -> Fault {
    Fault::next(kind, action, count)
}

#[tokio::test]
async fn a_replayed_handoff_succeeds_once_fixed_and_never_creates_a_second_work_item() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    // The create commits but its answer is lost; the retry is then refused for good.
    t.sandbox
        .inject(fault("create_work_item", FaultAction::DropAfterCommit, 1));
    t.sandbox
        .inject(fault("create_work_item", FaultAction::status(403, None), 1));
    t.hand_off("acme", &secret, json!({ "id": "dead-letter" }))
        .await;
    let record = t.record("acme", "dead-letter").await;
    assert_eq!(record["state"], "failed", "{record}");
    assert_eq!(record["last_error"]["code"], "missing_privilege");
    assert_eq!(
        t.sandbox.work_items().len(),
        1,
        "the first create did commit"
    );

    let (status, body) = t
        .admin(
            Method::POST,
            "/v1/orgs/acme/sessions/dead-letter/retry",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["requeued_handoffs"], 1);
    t.drain().await;
    let record = t.record("acme", "dead-letter").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["attempts"], 3);
    assert!(record["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "replayed"));
    // What Dataverse said before the replay stays on the timeline.
    let refused = record["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "attempt_failed" && e["detail"]["code"] == "missing_privilege")
        .unwrap_or_else(|| panic!("{record}"));
    assert_eq!(
        refused["detail"]["error_detail"],
        "HTTP 403 0x80040216: injected fault"
    );
    assert_eq!(
        t.sandbox.work_items().len(),
        1,
        "the replay found the work item instead of making another"
    );

    let (status, problem) = t
        .admin(
            Method::POST,
            "/v1/orgs/acme/sessions/dead-letter/retry",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem["code"], "nothing_to_retry");
}

#[tokio::test]
async fn retry_failed_requeues_every_failed_handoff_of_the_org_only() {
    let t = TestApp::start().await;
    let acme = t.connected_org("acme").await;
    let other = t.connected_org("other").await;
    t.sandbox
        .inject(fault("create_work_item", FaultAction::status(400, None), 4));
    for i in 0..3 {
        t.send(
            "acme",
            &acme,
            &format!("m{i}"),
            &envelope("acme", json!({ "id": format!("f-{i}") })),
        )
        .await;
    }
    t.hand_off("other", &other, json!({ "id": "o-1" })).await;
    assert_eq!(t.record("other", "o-1").await["state"], "failed");

    let (status, body) = t
        .admin(Method::POST, "/v1/orgs/acme/handoffs/retry-failed", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["requeued_handoffs"], 3);
    t.drain().await;
    for i in 0..3 {
        assert_eq!(
            t.record("acme", &format!("f-{i}")).await["state"],
            "succeeded"
        );
    }
    assert_eq!(
        t.record("other", "o-1").await["state"],
        "failed",
        "another org's dead letters stay"
    );
    assert_eq!(t.sandbox.work_items().len(), 3);
}

#[tokio::test]
async fn a_failed_callback_is_replayed_under_the_same_webhook_id() {
    use std::sync::{Arc, Mutex};
    // Transient failures are given up at once, so the refused callback fails for good.
    let t = TestApp::start_with(crate::helpers::TestOptions {
        retry_window: std::time::Duration::ZERO,
        ..Default::default()
    })
    .await;
    // A widget backend that refuses until told otherwise.
    let accept = Arc::new(Mutex::new(false));
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let (accept2, seen2) = (accept.clone(), seen.clone());
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: axum::http::HeaderMap| {
            let (accept, seen) = (accept2.clone(), seen2.clone());
            async move {
                seen.lock()
                    .unwrap()
                    .push(headers["webhook-id"].to_str().unwrap().to_owned());
                if *accept.lock().unwrap() {
                    StatusCode::OK
                } else {
                    StatusCode::GONE
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let secret = t.create_org("acme", Some(&url)).await;
    t.admin(
        Method::PUT,
        "/v1/orgs/acme/connection",
        Some(t.connection_input(json!({}))),
    )
    .await;
    t.hand_off("acme", &secret, json!({ "id": "cb" })).await;
    let record = t.record("acme", "cb").await;
    assert_eq!(record["state"], "succeeded");
    assert_eq!(record["callbacks"][0]["state"], "failed", "{record}");

    *accept.lock().unwrap() = true;
    let (status, body) = t
        .admin(Method::POST, "/v1/orgs/acme/sessions/cb/retry", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["requeued_callbacks"], 1);
    t.drain().await;
    let record = t.record("acme", "cb").await;
    assert_eq!(record["callbacks"][0]["state"], "delivered");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2);
    assert!(
        seen.iter().all(|id| id == &seen[0]),
        "one logical event: {seen:?}"
    );
}
