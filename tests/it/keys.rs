//! A wrong encryption key is loud (issue 13, item 5): a bridge started with another
//! `HANDOFF_ENCRYPTION_KEY` than the one its secrets were saved with refuses to start,
//! naming the variable; told to start anyway, it answers those orgs' webhooks `503
//! connection_secret_unreadable` (never `401`, which would send the widget team after a
//! secret that is right) and its status card says so.

use std::time::Duration;

use handoff_bridge::{App, StartupError};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{envelope, TestApp};

/// Serves `app` on a loopback port; returns its URL.
async fn serve(app: &App) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(handoff_bridge::http::server::serve(
        listener,
        app.router(),
        handoff_bridge::http::server::HttpLimits::default(),
        tokio_util::sync::CancellationToken::new(),
        Duration::ZERO,
    ));
    url
}

#[tokio::test]
async fn a_bridge_started_with_another_key_refuses_to_start_naming_the_variable() {
    let t = TestApp::start().await;
    t.connected_org("acme").await;
    t.create_org("beta", None).await;
    let refused = t.build_with_other_key(false).await;
    let Err(StartupError::UnreadableSecrets(why)) = refused else {
        panic!("it started: {:?}", refused.err());
    };
    for words in [
        "org 'acme' (2 of 2 orgs)",
        "HANDOFF_ENCRYPTION_KEY",
        "HANDOFF_PREVIOUS_ENCRYPTION_KEYS",
        "HANDOFF_ALLOW_UNREADABLE_SECRETS=true",
        "503 connection_secret_unreadable",
    ] {
        assert!(why.contains(words), "{words}: {why}");
    }
    // The right key as a previous one (a rotation in progress) starts.
    let other = handoff_bridge::connection::crypto::EncryptionKey::generate_base64();
    t.replica_with_keys(&other, &[t.encryption_key()]).await;
}

#[tokio::test]
async fn told_to_start_anyway_it_answers_webhooks_503_with_the_code_and_the_card_shows_it() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let replica = t.build_with_other_key(true).await.unwrap();
    let url = serve(&replica).await;

    let body = serde_json::to_vec(&envelope("acme", json!({ "id": "s-1" }))).unwrap();
    let timestamp = t.clock().now_ms() / 1000;
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/webhooks/acme"))
        .header("content-type", "application/json")
        .header("webhook-id", "msg_1")
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", secret.sign("msg_1", timestamp, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        response.headers().get("retry-after").unwrap(),
        "60",
        "the sender retries"
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "connection_secret_unreadable", "{problem}");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("HANDOFF_ENCRYPTION_KEY"));
    assert_eq!(t.stored_handoffs("acme").await, 0, "nothing stored");

    // The bridge with the right key takes the same delivery.
    let (status, _) = t
        .send(
            "acme",
            &secret,
            "msg_1",
            &envelope("acme", json!({ "id": "s-1" })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Its card says why, on the replica; the right bridge's card stays active.
    let card = |url: String| {
        let token = t.admin_token.clone();
        async move {
            let status: Value = reqwest::Client::new()
                .get(format!("{url}/v1/status?org=acme"))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            status["orgs"][0].clone()
        }
    };
    let wrong = card(url).await;
    assert_eq!(wrong["connection"]["label"], "Failing", "{wrong}");
    assert_eq!(wrong["needs_attention"], true);
    let check = &wrong["connection"]["failing_check"];
    assert_eq!(check["code"], "connection_secret_unreadable", "{check}");
    assert!(check["detail"].as_str().unwrap().contains("webhook secret"));
    let right = card(t.url.clone()).await;
    assert_eq!(right["connection"]["label"], "Active", "{right}");
}
