//! Webhook intake: every refusal has its status and code, and stores nothing.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{envelope, TestApp};

fn signed(
    secret: &handoff_bridge::webhook::WebhookSecret,
    id: &str,
    ts: i64,
    body: &[u8],
) -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "application/json".into()),
        ("webhook-id", id.into()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", secret.sign(id, ts, body)),
    ]
}

async fn assert_refused(
    t: &TestApp,
    org: &str,
    body: &[u8],
    headers: &[(&str, String)],
    status: StatusCode,
    code: &str,
) -> Value {
    let (got, problem) = t.post_webhook(org, body, headers).await;
    assert_eq!(got, status, "{problem}");
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status.as_u16());
    problem
}

#[tokio::test]
async fn every_refusal_has_its_status_and_code_and_stores_nothing() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let now = handoff_bridge::clock::now_ms() / 1000;
    let good = serde_json::to_vec(&envelope("acme", json!({ "id": "refused" }))).unwrap();

    let forged = handoff_bridge::webhook::WebhookSecret::generate();
    assert_refused(
        &t,
        "acme",
        &good,
        &signed(&forged, "m1", now, &good),
        StatusCode::UNAUTHORIZED,
        "signature_mismatch",
    )
    .await;

    assert_refused(
        &t,
        "acme",
        &good,
        &signed(&secret, "m2", now - 301, &good),
        StatusCode::UNAUTHORIZED,
        "signature_timestamp_out_of_tolerance",
    )
    .await;

    let mut headers = signed(&secret, "m3", now, &good);
    headers.retain(|(k, _)| *k != "webhook-signature");
    assert_refused(
        &t,
        "acme",
        &good,
        &headers,
        StatusCode::UNAUTHORIZED,
        "signature_header_missing",
    )
    .await;

    let mut big = envelope("acme", json!({ "id": "big" }));
    big["data"]["session"]["handoff"]["summary"] = json!("x".repeat(256 * 1024));
    let big = serde_json::to_vec(&big).unwrap();
    assert_refused(
        &t,
        "acme",
        &big,
        &signed(&secret, "m4", now, &big),
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;

    let not_json = b"{\"event\": ".to_vec();
    assert_refused(
        &t,
        "acme",
        &not_json,
        &signed(&secret, "m5", now, &not_json),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;

    let mut text = signed(&secret, "m6", now, &good);
    text[0].1 = "text/plain".into();
    assert_refused(
        &t,
        "acme",
        &good,
        &text,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    assert_refused(
        &t,
        "nobody",
        &good,
        &signed(&secret, "m7", now, &good),
        StatusCode::NOT_FOUND,
        "unknown_org",
    )
    .await;

    let other = serde_json::to_vec(&envelope("other-org", json!({ "id": "mismatch" }))).unwrap();
    let problem = assert_refused(
        &t,
        "acme",
        &other,
        &signed(&secret, "m8", now, &other),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/organization_id");

    let empty = serde_json::to_vec(&envelope(
        "acme",
        json!({ "id": "empty", "handoff": { "summary": "" } }),
    ))
    .unwrap();
    let problem = assert_refused(
        &t,
        "acme",
        &empty,
        &signed(&secret, "m9", now, &empty),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(
        problem["errors"][0]["pointer"],
        "/data/session/handoff/summary"
    );

    let wrong_type = serde_json::to_vec(&json!({ "event": "conversation.handoff_to_human", "organization_id": "acme", "data": { "session": { "id": 42 } } })).unwrap();
    let problem = assert_refused(
        &t,
        "acme",
        &wrong_type,
        &signed(&secret, "m10", now, &wrong_type),
        StatusCode::BAD_REQUEST,
        "invalid_shape",
    )
    .await;
    assert_eq!(problem["errors"][0]["pointer"], "/data/session/id");

    let (_, problem) = t
        .post_webhook("acme", &good, &signed(&forged, "m11", now, &good))
        .await;
    assert!(problem["type"]
        .as_str()
        .unwrap()
        .starts_with("urn:handoff-bridge:problem:"));

    assert_eq!(t.stored_handoffs("acme").await, 0, "nothing was stored");
    t.drain().await;
    assert!(t.requests_of("create_work_item").is_empty());
}

#[tokio::test]
async fn problems_are_problem_json() {
    let t = TestApp::start().await;
    let response = t
        .http
        .post(format!("{}/v1/webhooks/acme", t.url))
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn other_events_are_acknowledged_and_stored_nowhere() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let (status, body) = t
        .send(
            "acme",
            &secret,
            "msg_other",
            &json!({ "event": "conversation.closed", "organization_id": "acme", "data": {} }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ignored");
    assert_eq!(t.stored_handoffs("acme").await, 0);
}

#[tokio::test]
async fn a_rotated_secret_is_accepted_alongside_the_new_one() {
    let t = TestApp::start().await;
    let old = t.connected_org("acme").await;
    let (status, body) = t
        .admin(reqwest::Method::POST, "/v1/orgs/acme/webhook-secret", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let new =
        handoff_bridge::webhook::WebhookSecret::parse(body["webhook_secret"].as_str().unwrap())
            .unwrap();
    let (a, _) = t
        .send(
            "acme",
            &old,
            "m1",
            &envelope("acme", json!({ "id": "old-secret" })),
        )
        .await;
    let (b, _) = t
        .send(
            "acme",
            &new,
            "m2",
            &envelope("acme", json!({ "id": "new-secret" })),
        )
        .await;
    assert_eq!((a, b), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
}

#[tokio::test]
async fn admin_routes_need_the_admin_token() {
    let t = TestApp::start().await;
    for token in [None, Some("wrong-token-of-some-length")] {
        let mut req = t.http.get(format!("{}/v1/orgs/acme", t.url));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let response = req.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "unauthorized");
    }
}

#[tokio::test]
async fn org_input_is_validated_with_pointers() {
    let t = TestApp::start().await;
    let (status, problem) = t
        .admin(
            reqwest::Method::PUT,
            "/v1/orgs/acme",
            Some(json!({ "name": "", "callback_url": "http://10.0.0.5/hook" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let pointers: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(pointers, ["/name", "/callback_url"]);
    let (status, _) = t
        .admin(
            reqwest::Method::PUT,
            "/v1/orgs/bad%20id",
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn an_id_in_the_url_that_breaks_its_rule_is_named_on_every_route() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let long_session = "s".repeat(101);
    let cases = [
        (
            reqwest::Method::GET,
            "/v1/orgs/bad%20id".to_owned(),
            "/org_id",
        ),
        (
            reqwest::Method::GET,
            "/v1/orgs/bad%20id/connection".to_owned(),
            "/org_id",
        ),
        (
            reqwest::Method::GET,
            format!("/v1/orgs/acme/sessions/{long_session}"),
            "/session_id",
        ),
        (
            reqwest::Method::POST,
            "/v1/orgs/acme/sessions/tab%09in/retry".to_owned(),
            "/session_id",
        ),
    ];
    for (method, path, pointer) in cases {
        let (status, problem) = t.admin(method.clone(), &path, None).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{method} {path}");
        assert_eq!(problem["code"], "validation_failed");
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{problem}");
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .starts_with("(in the URL)"),
            "{problem}"
        );
    }
    // The webhook route follows the same rule; a valid id that names nothing is a 404.
    let (status, problem) = t
        .send("bad%20id", &secret, "msg_1", &envelope("acme", json!({})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(problem["errors"][0]["pointer"], "/org_id");
    let (status, _) = t.admin(reqwest::Method::GET, "/v1/orgs/nobody", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn list_filters_by_state_and_validates_its_query() {
    let t = TestApp::start().await;
    let secret = t.create_org("acme", None).await;
    // Incidents off: the email session is skipped.
    t.connect_with("acme", json!({ "incidents": { "enabled": false } }))
        .await;
    t.send(
        "acme",
        &secret,
        "m1",
        &envelope("acme", json!({ "id": "a" })),
    )
    .await;
    t.hand_off(
        "acme",
        &secret,
        json!({ "id": "b", "channel": { "type": "email" } }),
    )
    .await;
    let (_, body) = t
        .admin(
            reqwest::Method::GET,
            "/v1/orgs/acme/sessions?state=skipped",
            None,
        )
        .await;
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["session_id"], "b");
    let (status, problem) = t
        .admin(
            reqwest::Method::GET,
            "/v1/orgs/acme/sessions?state=done&limit=0",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn an_unavailable_store_answers_503_and_asks_for_a_retry() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    t.app.worker().store.close().await;
    let body = serde_json::to_vec(&envelope("acme", json!({ "id": "store-down" }))).unwrap();
    let now = handoff_bridge::clock::now_ms() / 1000;
    let response = t
        .http
        .post(format!("{}/v1/webhooks/acme", t.url))
        .header("content-type", "application/json")
        .header("webhook-id", "m1")
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", secret.sign("m1", now, &body))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "5");
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "store_unavailable");
    assert!(
        !problem["detail"].as_str().unwrap().contains("pool"),
        "5xx bodies say nothing internal: {problem}"
    );
}

#[tokio::test]
async fn a_request_id_is_kept_when_given_and_made_when_not() {
    let t = TestApp::start().await;
    let get = |id: Option<&str>| {
        let mut request = t.http.get(format!("{}/healthz", t.url));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };
    let kept = get(Some("lb-7f3a.9_x")).await.unwrap();
    assert_eq!(kept.headers()["x-request-id"], "lb-7f3a.9_x");
    for refused in [Some("has space"), Some(&"x".repeat(65)[..]), None] {
        let answer = get(refused).await.unwrap();
        let id = answer.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(uuid::Uuid::parse_str(&id).is_ok(), "{refused:?} → {id}");
    }
}

/// The pointers of a problem's `errors`.
fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["pointer"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn a_secret_pasted_from_the_widget_backend_verifies_its_webhooks() {
    use handoff_bridge::webhook::WebhookSecret;
    let t = TestApp::start().await;
    // A plain secret, as an admin copies it, with the newline the paste brought along.
    let pasted = "opencx-signing-secret-1234";
    let (status, body) = t
        .admin(
            reqwest::Method::PUT,
            "/v1/orgs/acme",
            Some(json!({ "name": "Acme", "webhook_secret": format!("{pasted}\n") })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body.get("webhook_secret").is_none(), "not echoed: {body}");
    assert!(!body.to_string().contains(pasted));
    t.connect("acme").await;
    let theirs = WebhookSecret::import(pasted).unwrap();
    let (ok, _) = t
        .send(
            "acme",
            &theirs,
            "m1",
            &envelope("acme", json!({ "id": "s1" })),
        )
        .await;
    assert_eq!(ok, StatusCode::ACCEPTED);
    let (wrong, problem) = t
        .send(
            "acme",
            &WebhookSecret::import("another-secret-of-16b").unwrap(),
            "m2",
            &envelope("acme", json!({ "id": "s2" })),
        )
        .await;
    assert_eq!(wrong, StatusCode::UNAUTHORIZED);
    assert_eq!(problem["code"], "signature_mismatch");

    // Pasting a Standard Webhooks secret later makes it current; the old one is accepted
    // for the grace period, as after a rotation.
    let standard = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let (status, body) = t
        .admin(
            reqwest::Method::PUT,
            "/v1/orgs/acme",
            Some(json!({ "name": "Acme", "webhook_secret": standard })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new = WebhookSecret::parse(standard).unwrap();
    for (secret, id) in [(&new, "m3"), (&theirs, "m4")] {
        let (status, _) = t
            .send("acme", secret, id, &envelope("acme", json!({ "id": id })))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{id}");
    }
    // The same PUT again changes nothing: the previous secret keeps its grace period.
    let (status, _) = t
        .admin(
            reqwest::Method::PUT,
            "/v1/orgs/acme",
            Some(json!({ "name": "Acme", "webhook_secret": standard })),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = t
        .send(
            "acme",
            &theirs,
            "m4b",
            &envelope("acme", json!({ "id": "m4b" })),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "the previous secret still verifies"
    );

    // The rotation route takes one too, and shows nothing back; without a body it
    // generates one, shown this once.
    let (status, rotated) = t
        .admin(
            reqwest::Method::POST,
            "/v1/orgs/acme/webhook-secret",
            Some(json!({ "webhook_secret": pasted })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    assert!(rotated.get("webhook_secret").is_none());
    assert!(rotated["previous_secret_valid_until"].is_string());
    let (status, _) = t
        .send(
            "acme",
            &theirs,
            "m5",
            &envelope("acme", json!({ "id": "s5" })),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, generated) = t
        .admin(reqwest::Method::POST, "/v1/orgs/acme/webhook-secret", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(generated["webhook_secret"]
        .as_str()
        .unwrap()
        .starts_with("whsec_"));
    assert!(!crate::helpers::captured_logs().contains(pasted));
}

#[tokio::test]
async fn admin_bodies_refuse_unknown_fields_and_bad_secrets_with_a_pointer() {
    let t = TestApp::start().await;
    // A misspelt field is named, not ignored; nothing is saved.
    let (status, problem) = t
        .admin(
            reqwest::Method::PUT,
            "/v1/orgs/acme",
            Some(json!({ "name": "Acme", "webhook_secrt": "opencx-signing-secret-1234" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(problem["code"], "invalid_shape");
    assert_eq!(pointers(&problem), ["/webhook_secrt"], "{problem}");
    let (status, _) = t.admin(reqwest::Method::GET, "/v1/orgs/acme", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A secret that cannot be one says why, under its own pointer; nothing is saved.
    let (status, problem) = t
        .admin(
            reqwest::Method::PUT,
            "/v1/orgs/acme",
            Some(json!({ "name": "Acme", "webhook_secret": "too-short" })),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(pointers(&problem), ["/webhook_secret"]);
    assert!(problem["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("16 to 256 bytes"));
    assert!(!problem.to_string().contains("too-short"), "not echoed");
    let (status, _) = t.admin(reqwest::Method::GET, "/v1/orgs/acme", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The connection and the rotation bodies refuse unknown fields the same way.
    t.create_org("acme", None).await;
    let (status, problem) = t
        .admin(
            reqwest::Method::PUT,
            "/v1/orgs/acme/connection",
            Some(t.connection_input(json!({ "workstream_id": "not-a-field" }))),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(pointers(&problem), ["/workstream_id"]);
    let (status, problem) = t
        .admin(
            reqwest::Method::POST,
            "/v1/orgs/acme/webhook-secret",
            Some(json!({ "secret": "opencx-signing-secret-1234" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    assert_eq!(pointers(&problem), ["/secret"]);

    // The rotation body is optional: empty (whatever its type) generates a secret; text
    // that is not JSON is refused as such.
    let rotate = |content_type: &'static str, body: &'static str| {
        t.http
            .post(format!("{}/v1/orgs/acme/webhook-secret", t.url))
            .bearer_auth(&t.admin_token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let empty = rotate("application/json", "").await.unwrap();
    assert_eq!(empty.status(), StatusCode::OK);
    let generated: Value = empty.json().await.unwrap();
    assert!(generated["webhook_secret"]
        .as_str()
        .unwrap()
        .starts_with("whsec_"));
    let text = rotate("text/plain", "opencx-signing-secret-1234")
        .await
        .unwrap();
    assert_eq!(text.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

#[tokio::test]
async fn deliveries_sent_together_make_one_handoff_per_session() {
    // Sent at once, these commit in shared batches (multi-row inserts): 150 new sessions,
    // 50 of them delivered again under another webhook id and 30 replayed under the same
    // one, and 10 deliveries for a session stored before.
    let t = std::sync::Arc::new(TestApp::start().await);
    let secret = std::sync::Arc::new(t.connected_org("acme").await);
    let (status, first) = t.submit("acme", &secret, json!({ "id": "s-old" })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let deliveries: Vec<(String, String)> = (0..150)
        .map(|i| (format!("s-{i}"), format!("msg_{i}")))
        .chain((0..50).map(|i| (format!("s-{i}"), format!("msg_again_{i}"))))
        .chain((50..80).map(|i| (format!("s-{i}"), format!("msg_{i}"))))
        .chain((0..10).map(|i| ("s-old".to_owned(), format!("msg_old_{i}"))))
        .collect();
    let mut sent = tokio::task::JoinSet::new();
    for (session, webhook_id) in deliveries {
        let (t, secret) = (t.clone(), secret.clone());
        sent.spawn(async move {
            let body = envelope("acme", json!({ "id": session }));
            let (status, answer) = t.send("acme", &secret, &webhook_id, &body).await;
            (session, status, answer)
        });
    }
    let mut handoff_of = std::collections::HashMap::new();
    let mut accepted = std::collections::HashMap::<String, usize>::new();
    while let Some(joined) = sent.join_next().await {
        let (session, status, answer) = joined.unwrap();
        match status {
            StatusCode::ACCEPTED => *accepted.entry(session.clone()).or_default() += 1,
            StatusCode::OK => assert_eq!(answer["duplicate"], true, "{answer}"),
            other => panic!("{session}: {other} {answer}"),
        }
        let handoff_id = answer["handoff_id"].clone();
        assert!(handoff_id.is_string(), "{answer}");
        let known = handoff_of
            .entry(session.clone())
            .or_insert(handoff_id.clone());
        assert_eq!(*known, handoff_id, "{session} has one handoff");
    }
    assert_eq!(accepted.len(), 150, "each new session accepted once");
    assert!(accepted.values().all(|n| *n == 1));
    assert_eq!(handoff_of["s-old"], first["handoff_id"]);
    assert_eq!(t.stored_handoffs("acme").await, 151);
    // Each session's timeline: one `received`, and one `duplicate_delivery` per other
    // webhook id (a replay of the same id adds none).
    for (session, duplicates) in [("s-0", 1), ("s-60", 0), ("s-120", 0), ("s-old", 10)] {
        let record = t.record("acme", session).await;
        assert_eq!(
            crate::helpers::events(&record, "received").len(),
            1,
            "{record}"
        );
        assert_eq!(
            crate::helpers::events(&record, "duplicate_delivery").len(),
            duplicates,
            "{session}: {record}"
        );
    }
}
