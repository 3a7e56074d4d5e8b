//! `GET /metrics`: Prometheus (OpenMetrics) text with the counts the issue names.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{envelope, TestApp};

/// The value of the sample `name{labels}` (labels as rendered, in order), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_count_webhooks_attempts_requests_tokens_and_the_queue() {
    let t = TestApp::start().await;
    let acme = t.connected_org("acme").await;
    let beta = t.create_org("beta", None).await;
    t.hand_off("acme", &acme, json!({ "id": "ok" })).await;
    t.refuse_next_create(403, None);
    t.hand_off("acme", &acme, json!({ "id": "denied" })).await;
    // A redelivery (200), a bad signature (401), and a handoff that waits for a connection.
    let (status, _) = t.submit("acme", &acme, json!({ "id": "ok" })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = t
        .send(
            "acme",
            &beta,
            "m3",
            &envelope("acme", json!({ "id": "forged" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    t.send(
        "beta",
        &beta,
        "b1",
        &envelope("beta", json!({ "id": "waits" })),
    )
    .await;
    // A delivery for an org that does not exist (404).
    let (status, _) = t
        .send(
            "no-such-org",
            &beta,
            "x1",
            &envelope("no-such-org", json!({ "id": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let unauthenticated = t
        .http
        .get(format!("{}/metrics", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    let response = t
        .http
        .get(format!("{}/metrics", t.url))
        .bearer_auth(&t.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    assert!(text.ends_with("# EOF\n"), "{text}");

    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
    };
    expect(
        "handoff_webhooks_received_total{org_id=\"acme\",status=\"202\"}",
        2.0,
    );
    expect(
        "handoff_webhooks_received_total{org_id=\"beta\",status=\"202\"}",
        1.0,
    );
    expect(
        "handoff_webhooks_received_total{org_id=\"acme\",status=\"200\"}",
        1.0,
    );
    expect(
        "handoff_webhooks_received_total{org_id=\"acme\",status=\"401\"}",
        1.0,
    );
    expect(
        "handoff_webhooks_received_total{org_id=\"unknown\",status=\"404\"}",
        1.0,
    );
    expect(
        "handoff_attempts_total{org_id=\"acme\",outcome=\"succeeded\",code=\"none\"}",
        1.0,
    );
    expect(
        "handoff_attempts_total{org_id=\"acme\",outcome=\"failed\",code=\"missing_privilege\"}",
        1.0,
    );
    assert!(
        !text.contains("no-such-org"),
        "an org id that does not exist adds no series"
    );
    expect(
        "handoff_attempt_duration_seconds_count{outcome=\"succeeded\"}",
        1.0,
    );
    expect(
        "handoff_dataverse_requests_total{kind=\"create_work_item\",status=\"403\"}",
        1.0,
    );
    let created = t
        .requests_of("create_work_item")
        .iter()
        .filter(|r| r.status < 300)
        .count() as f64;
    assert_eq!(created, 1.0);
    let all_dataverse: f64 = text
        .lines()
        .filter(|l| l.starts_with("handoff_dataverse_requests_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    let sandbox_saw = t
        .sandbox
        .requests()
        .iter()
        .filter(|r| r.kind != "token")
        .count() as f64;
    assert_eq!(
        all_dataverse, sandbox_saw,
        "every Dataverse request is counted"
    );
    expect(
        "handoff_dataverse_request_duration_seconds_count{kind=\"create_work_item\"}",
        2.0,
    );
    let tokens = t.sandbox.issued_tokens().len() as f64;
    expect("handoff_token_requests_total{outcome=\"issued\"}", tokens);
    expect("handoff_queue_depth{org_id=\"beta\"}", 1.0);
    expect("handoff_queue_depth{org_id=\"acme\"}", 0.0);
    assert!(sample(&text, "handoff_queue_oldest_age_seconds{org_id=\"beta\"}").unwrap() >= 0.0);
}

#[tokio::test]
async fn metrics_count_opencx_requests_by_kind_and_status() {
    let t = TestApp::start_with(crate::helpers::TestOptions {
        opencx_requests_per_minute: 1,
        opencx_burst: 6,
        ..Default::default()
    })
    .await;
    let acme = t.connected_org("acme").await;
    let (status, body) = t
        .connect_opencx(
            "acme",
            json!({ "write_back_message": "Someone joins you soon." }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let thin = |session: &str| {
        json!({
            "event": "conversation.handoff_to_human",
            "organization_id": "acme",
            "data": { "conversation_id": session },
        })
    };
    t.send("acme", &acme, "m1", &thin("ocx-web-1")).await;
    t.drain().await;
    // The burst of six is spent (the check, a session, three history pages, the send): the
    // next thin event's read is held back, not sent.
    t.send("acme", &acme, "m2", &thin("ocx-web-2")).await;
    t.app.run_due().await.unwrap();
    let text = t.admin_text("/metrics").await;
    let count = |labels: &str| {
        sample(&text, &format!("handoff_opencx_requests_total{{{labels}}}")).unwrap_or(0.0)
    };
    assert_eq!(count(r#"kind="session",status="404""#), 1.0, "{text}");
    assert_eq!(count(r#"kind="session",status="200""#), 1.0, "{text}");
    assert_eq!(count(r#"kind="history",status="200""#), 3.0, "{text}");
    assert_eq!(count(r#"kind="send",status="201""#), 1.0, "{text}");
    assert_eq!(count(r#"kind="session",status="paced""#), 1.0, "{text}");
    assert!(text.contains("handoff_opencx_request_duration_seconds_count{kind=\"history\"} 3"));
}
