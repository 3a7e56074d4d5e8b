//! Connection test-and-save against the sandbox: each failure names its check, code and hint.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{find, TestApp};

const NOT_APP_USER: (&str, &str) = (
    "3e5f7081-2b4c-4d6e-9f0a-1b2c3d4e5f60",
    "Sbx8Q~not-an-application-user_2026",
);

async fn test(t: &TestApp, changes: Value) -> Value {
    let (status, body) = t
        .admin(
            Method::POST,
            "/v1/orgs/acme/connection/test",
            Some(t.connection_input(changes)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn check<'a>(body: &'a Value, name: &str) -> &'a Value {
    find(&body["checks"], "name", name)
}

#[tokio::test]
async fn good_credentials_pass_every_check() {
    let t = TestApp::start().await;
    t.create_org("acme", None).await;
    let body = test(&t, json!({})).await;
    assert_eq!(body["status"], "passed");
    let names: Vec<&str> = body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "input",
            "token",
            "dataverse",
            "workstream",
            "privileges",
            "incidents"
        ]
    );
    for c in body["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "pass", "{c}");
        assert!(c["duration_ms"].is_u64());
    }
    let (status, saved) = t.admin(Method::GET, "/v1/orgs/acme/connection", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(saved["status"], "not_connected", "test saves nothing");
}

#[tokio::test]
async fn an_environment_url_off_the_allow_list_gets_no_request() {
    let t = TestApp::start().await;
    t.create_org("acme", None).await;
    // A listener standing in for an internal host: it must see no connection.
    let trap = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let trap_url = format!("https://{}", trap.local_addr().unwrap());
    for url in [
        trap_url.as_str(),
        "https://contoso.crm.dynamics.com.evil.example",
        "https://contoso.crm.dynamics.com/main.aspx",
        "http://169.254.169.254",
    ] {
        let before = t.sandbox.requests().len();
        let body = test(&t, json!({ "environment_url": url })).await;
        let input = check(&body, "input");
        assert_eq!(input["status"], "fail", "{url}: {body}");
        assert_eq!(input["code"], "environment_url_invalid");
        assert!(input["hint"].as_str().unwrap().contains("crm.dynamics.com"));
        for name in ["token", "dataverse", "workstream"] {
            assert_eq!(check(&body, name)["status"], "skip");
        }
        assert_eq!(
            t.sandbox.requests().len(),
            before,
            "{url}: no token request either"
        );
    }
    let accepted = tokio::time::timeout(std::time::Duration::from_millis(200), trap.accept()).await;
    assert!(accepted.is_err(), "the trap saw a connection");
}

#[tokio::test]
async fn a_failed_save_keeps_the_previous_connection() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let (_, before) = t.admin(Method::GET, "/v1/orgs/acme/connection", None).await;
    assert_eq!(before["status"], "active");
    assert_eq!(before["client_secret_set"], true);

    let (status, body) = t
        .admin(
            Method::PUT,
            "/v1/orgs/acme/connection",
            Some(t.connection_input(
                json!({ "client_id": NOT_APP_USER.0, "client_secret": NOT_APP_USER.1 }),
            )),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["status"], "failed");
    assert_eq!(check(&body, "dataverse")["code"], "not_application_user");

    let (_, after) = t.admin(Method::GET, "/v1/orgs/acme/connection", None).await;
    assert_eq!(after, before, "unchanged, down to last_checked_at");
    // And it still works.
    t.send(
        "acme",
        &secret,
        "m1",
        &crate::helpers::envelope("acme", json!({ "id": "still-works" })),
    )
    .await;
    t.drain().await;
    assert_eq!(t.record("acme", "still-works").await["state"], "succeeded");
}

#[tokio::test]
async fn disconnecting_forgets_the_credentials() {
    let t = TestApp::start().await;
    t.connected_org("acme").await;
    let (status, _) = t
        .admin(Method::DELETE, "/v1/orgs/acme/connection", None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, body) = t.admin(Method::GET, "/v1/orgs/acme/connection", None).await;
    assert_eq!(body["status"], "not_connected");
    let (status, problem) = t
        .admin(Method::DELETE, "/v1/orgs/acme/connection", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["code"], "not_connected");
}

#[tokio::test]
async fn checking_again_turns_the_card_failing_when_the_secret_expires() {
    let t = TestApp::start().await;
    t.connected_org("acme").await;
    let (status, body) = t
        .admin(Method::POST, "/v1/orgs/acme/connection/check", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active");

    t.sandbox
        .expire_secret(&t.sandbox.demo_connection().client_secret);
    let (_, body) = t
        .admin(Method::POST, "/v1/orgs/acme/connection/check", None)
        .await;
    assert_eq!(body["status"], "failing");
    let token = check(&body, "token");
    assert_eq!(token["code"], "entra_secret_expired");
    assert!(token["hint"]
        .as_str()
        .unwrap()
        .contains("new client secret"));
    let (_, card) = t.admin(Method::GET, "/v1/orgs/acme/connection", None).await;
    assert_eq!(card["status"], "failing");
    assert_eq!(card["checks"], body["checks"]);
    assert_eq!(card["last_checked_at"], body["last_checked_at"]);

    t.create_org("empty", None).await;
    let (status, problem) = t
        .admin(Method::POST, "/v1/orgs/empty/connection/check", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem["code"], "not_connected");
}

#[tokio::test]
async fn readyz_answers_while_the_store_does() {
    let t = TestApp::start().await;
    let ready = t
        .http
        .get(format!("{}/readyz", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    t.app.worker().store.close().await;
    let down = t
        .http
        .get(format!("{}/readyz", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), StatusCode::SERVICE_UNAVAILABLE);
    let live = t
        .http
        .get(format!("{}/healthz", t.url))
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK, "the process is still up");
}
