//! Secrets never leak: not in logs, responses, or the database file in clear text.

use reqwest::Method;
use serde_json::json;

use crate::helpers::{captured_logs, envelope, TestApp};

#[tokio::test]
async fn no_secret_appears_in_logs_responses_or_the_database_file() {
    let t = TestApp::start().await;
    let mut responses = Vec::new();

    // The one response that carries the webhook secret by design (README, "Setting up an org": "shown this once").
    let (_, created) = t
        .admin(
            Method::PUT,
            "/v1/orgs/acme",
            Some(json!({ "name": "Acme" })),
        )
        .await;
    let webhook_secret =
        handoff_bridge::webhook::WebhookSecret::parse(created["webhook_secret"].as_str().unwrap())
            .unwrap();
    let client_secret = t.sandbox.demo_connection().client_secret;

    let input = t.connection_input(json!({}));
    responses.push(
        t.admin(
            Method::POST,
            "/v1/orgs/acme/connection/test",
            Some(input.clone()),
        )
        .await
        .1,
    );
    responses.push(
        t.admin(Method::PUT, "/v1/orgs/acme/connection", Some(input.clone()))
            .await
            .1,
    );
    // A failing save echoes nothing of the secret either.
    let wrong = t.connection_input(json!({ "client_secret": format!("{client_secret}-wrong") }));
    responses.push(
        t.admin(Method::PUT, "/v1/orgs/acme/connection", Some(wrong))
            .await
            .1,
    );
    responses.push(
        t.admin(Method::GET, "/v1/orgs/acme/connection", None)
            .await
            .1,
    );
    responses.push(t.admin(Method::GET, "/v1/orgs/acme", None).await.1);
    // The OpenCX API key: saved, refused, read back, checked again, used for a thin event and
    // the write-back.
    let opencx_key = t.sandbox.demo_opencx_api_key().unwrap();
    let opencx = json!({ "write_back_message": "Someone will join you shortly." });
    responses.push(t.connect_opencx("acme", opencx).await.1);
    responses.push(
        t.connect_opencx("acme", json!({ "api_key": format!("{opencx_key}-wrong") }))
            .await
            .1,
    );
    responses.push(t.admin(Method::GET, "/v1/orgs/acme/opencx", None).await.1);
    responses.push(
        t.admin(Method::POST, "/v1/orgs/acme/opencx/check", None)
            .await
            .1,
    );
    let thin = json!({
        "event": "conversation.handoff_to_human",
        "organization_id": "acme",
        "data": { "conversation_id": "ocx-web-1" },
    });
    responses.push(t.send("acme", &webhook_secret, "msg_thin", &thin).await.1);

    let session = json!({ "id": "leak-check", "contact": { "name": "Ada", "email": "ada@example.com", "verified": true } });
    let body = envelope("acme", session);
    responses.push(t.send("acme", &webhook_secret, "msg_leak", &body).await.1);
    responses.push(t.send("acme", &webhook_secret, "msg_leak", &body).await.1);
    t.drain().await;
    t.sandbox.expire_tokens();
    t.hand_off("acme", &webhook_secret, json!({ "id": "leak-check-2" }))
        .await;
    responses.push(t.record("acme", "leak-check").await);
    responses.push(t.record("acme", "ocx-web-1").await);
    responses.push(t.admin(Method::GET, "/v1/orgs/acme/sessions", None).await.1);
    responses.push(t.admin(Method::GET, "/v1/status", None).await.1);
    responses.push(t.admin(Method::GET, "/v1/status?org=acme", None).await.1);
    let html = t
        .http
        .get(format!("{}/status?org=acme", t.url))
        .basic_auth("admin", Some(&t.admin_token))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("leak-check"), "the status page was read");
    responses.push(serde_json::Value::String(html));
    let metrics = t.admin_text("/metrics").await;
    assert!(
        metrics.contains("handoff_token_requests_total{outcome=\"issued\"}"),
        "the metrics were read: {metrics}"
    );
    responses.push(serde_json::Value::String(metrics));
    responses.push(
        t.admin(Method::POST, "/v1/orgs/acme/connection/check", None)
            .await
            .1,
    );

    let access_tokens = t.sandbox.issued_tokens();
    assert_eq!(
        access_tokens.len(),
        4,
        "test, test-and-save, after expiry, and the re-check (which never uses the cache)"
    );
    let mut secrets: Vec<(&str, String)> = vec![
        ("client secret", client_secret.clone()),
        ("webhook secret", webhook_secret.expose().to_owned()),
        (
            "webhook secret key",
            webhook_secret
                .expose()
                .trim_start_matches("whsec_")
                .to_owned(),
        ),
        ("admin token", t.admin_token.clone()),
        ("OpenCX API key", opencx_key.clone()),
    ];
    for token in &access_tokens {
        secrets.push(("access token", token.clone()));
    }

    let logs = captured_logs();
    assert!(logs.contains("leak-check"), "the logs were captured");
    let responses = serde_json::to_string(&responses).unwrap();
    let db = t.db.raw_contents().await;
    assert!(db.contains("leak-check"), "the database was read");
    for (what, secret) in &secrets {
        assert!(!logs.contains(secret.as_str()), "the {what} is in the logs");
        assert!(
            !responses.contains(secret.as_str()),
            "the {what} is in a response"
        );
        assert!(
            !db.contains(secret.as_str()),
            "the {what} is in the database"
        );
    }
}
