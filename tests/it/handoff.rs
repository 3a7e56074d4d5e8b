//! The handoff job against the sandbox: contacts, duplicates, lost answers, tokens,
//! callbacks.

use handoff_bridge::sandbox::{Fault, FaultAction};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{envelope, find, TestApp};

#[tokio::test]
async fn redelivery_and_a_second_webhook_for_the_same_session_yield_one_work_item() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let body = envelope("acme", json!({ "id": "session-dup" }));
    let (first, answer) = t.send("acme", &secret, "msg_1", &body).await;
    assert_eq!(first, StatusCode::ACCEPTED);
    assert_eq!(answer["state"], "queued");
    // The same delivery again, before and after the work item exists.
    let (again, record) = t.send("acme", &secret, "msg_1", &body).await;
    assert_eq!(again, StatusCode::OK);
    assert_eq!(record["duplicate"], true);
    assert_eq!(record["handoff_id"], answer["handoff_id"]);
    t.drain().await;
    let (other, record) = t.send("acme", &secret, "msg_2", &body).await;
    assert_eq!(other, StatusCode::OK);
    assert_eq!(record["duplicate"], true);
    assert_eq!(record["state"], "succeeded");
    t.drain().await;
    assert_eq!(t.sandbox.work_items().len(), 1);
    assert_eq!(t.requests_of("create_work_item").len(), 1);
    let kinds: Vec<String> = t.record("acme", "session-dup").await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    // msg_1's replay is the delivery already recorded: only msg_2 adds an event.
    assert_eq!(
        kinds.iter().filter(|k| *k == "duplicate_delivery").count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_create_committed_but_unanswered_is_retried_into_one_work_item() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    t.sandbox.inject(Fault::next(
        "create_work_item",
        FaultAction::DropAfterCommit,
        1,
    ));
    t.send(
        "acme",
        &secret,
        "msg_1",
        &envelope("acme", json!({ "id": "lost-answer" })),
    )
    .await;
    t.drain().await;
    let record = t.record("acme", "lost-answer").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["attempts"], 2);
    assert_eq!(t.sandbox.work_items().len(), 1);
    let creates = t.requests_of("create_work_item");
    assert_eq!(creates.len(), 2, "the retry sent the create again");
    assert_eq!(creates[1].status, 412);
    assert_eq!(creates[1].error_code.as_deref(), Some("0x80040237"));
    assert_eq!(
        t.requests_of("get_work_item").len(),
        1,
        "the duplicate was confirmed by a read"
    );
    let failed = find(&record["events"], "kind", "attempt_failed");
    assert_eq!(failed["detail"]["code"], "dataverse_unavailable");
    assert_eq!(failed["detail"]["transient"], true);
    let created = find(&record["events"], "kind", "work_item_created");
    assert_eq!(created["detail"]["already_existed"], true);
}

#[tokio::test]
async fn an_odata_injection_in_a_verified_email_links_no_contact_and_breaks_nothing() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;

    // The payload as the issue writes it is not an email address (unquoted spaces): it is
    // refused at intake with the field named, and nothing reaches Dataverse.
    let bare = "x' or 1 eq 1 or 'a'='a@example.com";
    let body = envelope(
        "acme",
        json!({ "id": "injection-bare", "contact": { "email": bare, "verified": true } }),
    );
    let (status, problem) = t.send("acme", &secret, "msg_bare", &body).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");
    assert_eq!(
        problem["errors"][0]["pointer"],
        "/data/session/contact/email"
    );

    // The same payload in a quoted local part is a valid address: it must reach the
    // lookup as one string literal and match nothing.
    let quoted = "\"x' or 1 eq 1 or 'a'='a\"@example.com";
    let body = envelope(
        "acme",
        json!({ "id": "injection", "contact": { "email": quoted, "verified": true } }),
    );
    let (status, answer) = t.send("acme", &secret, "msg_1", &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    t.drain().await;
    let record = t.record("acme", "injection").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(
        record["contact_match"], "not_found",
        "the seed has contacts; none may match"
    );
    let lookups = t.requests_of("contacts");
    assert_eq!(lookups.len(), 1);
    assert_eq!(lookups[0].status, 200);
    let query = lookups[0].raw_query.as_deref().unwrap();
    assert!(
        query.contains(
            "%27%22x%27%27%20or%201%20eq%201%20or%20%27%27a%27%27%3D%27%27a%22%40example.com%27"
        ),
        "{query}"
    );
    let item = &t.sandbox.work_items()[0];
    assert!(
        item.get("_msdyn_customer_value").is_none(),
        "no contact bound: {item}"
    );
    assert_eq!(
        t.stored_handoffs("acme").await,
        1,
        "the refused one was not stored"
    );
}

#[tokio::test]
async fn plus_and_quote_in_emails_arrive_intact() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    for (id, email) in [
        ("plus", "jo+vip@example.com"),
        ("quote", "siobhan.o'brien@example.ie"),
    ] {
        let body = envelope(
            "acme",
            json!({ "id": id, "contact": { "email": email, "verified": true } }),
        );
        t.send("acme", &secret, &format!("msg_{id}"), &body).await;
    }
    t.drain().await;
    assert_eq!(
        t.record("acme", "plus").await["contact_id"],
        "c0a80101-0000-4000-8000-000000000005",
        "not 'jo vip@'"
    );
    assert_eq!(
        t.record("acme", "quote").await["contact_id"],
        "c0a80101-0000-4000-8000-000000000004"
    );
    let queries: Vec<String> = t
        .requests_of("contacts")
        .into_iter()
        .filter_map(|r| r.raw_query)
        .collect();
    assert!(
        queries.iter().any(|q| q.contains("jo%2Bvip%40example.com")),
        "{queries:?}"
    );
    assert!(
        queries
            .iter()
            .any(|q| q.contains("siobhan.o%27%27brien%40example.ie")),
        "{queries:?}"
    );
}

#[tokio::test]
async fn one_token_serves_many_handoffs_and_a_401_fetches_a_new_one_once() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let tokens_after_connect = t.requests_of("token").len();
    for i in 0..5 {
        let body = envelope(
            "acme",
            json!({ "id": format!("tok-{i}"), "contact": { "email": "ada@example.com", "verified": true } }),
        );
        t.send("acme", &secret, &format!("msg_{i}"), &body).await;
    }
    t.drain().await;
    assert_eq!(
        tokens_after_connect, 1,
        "test-and-save fetched one token and primed the cache"
    );
    assert_eq!(t.requests_of("token").len(), 1, "five handoffs reused it");
    assert_eq!(
        t.requests_of("contacts").len() + t.requests_of("create_work_item").len(),
        10,
        "two Dataverse requests per verified visitor"
    );

    t.sandbox.expire_tokens();
    t.send(
        "acme",
        &secret,
        "msg_x",
        &envelope("acme", json!({ "id": "after-expiry" })),
    )
    .await;
    t.drain().await;
    assert_eq!(t.record("acme", "after-expiry").await["state"], "succeeded");
    assert_eq!(
        t.requests_of("token").len(),
        2,
        "one new token after the 401"
    );
    let creates = t.requests_of("create_work_item");
    assert_eq!(creates.iter().filter(|r| r.status == 401).count(), 1);
}

#[tokio::test]
async fn create_contact_if_missing_creates_one_contact_and_links_it() {
    let t = TestApp::start().await;
    let secret = t.create_org("acme", None).await;
    let (status, body) = t
        .admin(
            reqwest::Method::PUT,
            "/v1/orgs/acme/connection",
            Some(t.connection_input(json!({ "create_contact_if_missing": true }))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = json!({ "id": "new-contact", "contact": { "name": "Marie Curie", "email": "marie@example.fr", "phone_number": "+33 1 55 55 55 55", "verified": true } });
    t.send("acme", &secret, "msg_1", &envelope("acme", session))
        .await;
    t.drain().await;
    let record = t.record("acme", "new-contact").await;
    assert_eq!(record["contact_match"], "created", "{record}");
    let contact = t
        .sandbox
        .contacts()
        .into_iter()
        .find(|c| c["emailaddress1"] == "marie@example.fr")
        .unwrap();
    assert_eq!(contact["firstname"], "Marie");
    assert_eq!(contact["lastname"], "Curie");
    assert_eq!(record["contact_id"], contact["contactid"]);
    assert_eq!(
        t.sandbox.work_items()[0]["_msdyn_customer_value"],
        contact["contactid"]
    );
}

#[tokio::test]
async fn a_permanent_dataverse_error_fails_with_code_and_hint_and_is_not_retried() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    t.refuse_next_create(403, None);
    t.send(
        "acme",
        &secret,
        "msg_1",
        &envelope("acme", json!({ "id": "denied" })),
    )
    .await;
    t.drain().await;
    let record = t.record("acme", "denied").await;
    assert_eq!(record["state"], "failed");
    assert_eq!(record["attempts"], 1);
    assert_eq!(record["last_error"]["code"], "missing_privilege");
    assert!(record["last_error"]["hint"]
        .as_str()
        .unwrap()
        .contains("security role"));
    // Nothing retries it, so the log says so as a warning.
    let logs = crate::helpers::captured_logs();
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains("session_id=denied")
            && l.contains("handoff failed for good")),
        "no warning for the failed handoff"
    );
}

#[tokio::test]
async fn a_waiting_handoff_is_delivered_once_the_org_connects() {
    let t = TestApp::start().await;
    let secret = t.create_org("acme", None).await;
    t.send(
        "acme",
        &secret,
        "msg_1",
        &envelope("acme", json!({ "id": "early" })),
    )
    .await;
    t.app.run_due().await.unwrap();
    let record = t.record("acme", "early").await;
    assert_eq!(record["state"], "queued");
    assert_eq!(record["last_error"]["code"], "not_connected");
    let (status, _) = t
        .admin(
            reqwest::Method::PUT,
            "/v1/orgs/acme/connection",
            Some(t.connection_input(json!({}))),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    t.drain().await;
    let record = t.record("acme", "early").await;
    assert_eq!(record["state"], "succeeded");
    assert_eq!(record["last_error"], Value::Null);
}

/// A widget backend that records signed callbacks.
pub(crate) async fn callback_receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>,
) {
    use axum::routing::post;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = seen.clone();
    let app = axum::Router::new().route(
        "/hooks",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push((headers, body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test]
async fn success_is_called_back_signed_with_a_deterministic_webhook_id() {
    let t = TestApp::start().await;
    let (url, seen) = callback_receiver().await;
    let secret = t.create_org("acme", Some(&url)).await;
    t.admin(
        reqwest::Method::PUT,
        "/v1/orgs/acme/connection",
        Some(t.connection_input(json!({}))),
    )
    .await;
    let session =
        json!({ "id": "called-back", "contact": { "email": "ada@example.com", "verified": true } });
    t.send("acme", &secret, "msg_1", &envelope("acme", session))
        .await;
    t.drain().await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let (headers, body) = &seen[0];
    let header = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_owned();
    let (id, timestamp, signature) = (
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    );
    let verified = handoff_bridge::webhook::signature::verify(
        &[secret],
        handoff_bridge::webhook::signature::SignatureHeaders {
            id: Some(&id),
            timestamp: Some(&timestamp),
            signature: Some(&signature),
        },
        body.as_bytes(),
        handoff_bridge::clock::now_ms() / 1000,
    );
    assert!(
        verified.is_ok(),
        "the callback verifies with the org secret"
    );
    assert_eq!(
        header("webhook-id"),
        handoff_bridge::handoff::callback::webhook_id("acme", "called-back", "handoff.succeeded")
    );
    let event: Value = serde_json::from_str(body).unwrap();
    let record = t.record("acme", "called-back").await;
    assert_eq!(event["event"], "handoff.succeeded");
    assert_eq!(
        event["data"]["dynamics365_chat_id"],
        record["dynamics365_chat_id"]
    );
    assert_eq!(event["data"]["contact_match"], "linked");
    assert_eq!(record["callbacks"][0]["state"], "delivered");
}

#[tokio::test]
async fn two_replicas_on_one_store_never_run_a_handoff_twice() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let replica = t.replica().await;
    // Slow creates widen the window in which both replicas look for work.
    t.sandbox.inject(Fault::next(
        "create_work_item",
        FaultAction::Delay { ms: 20 },
        1000,
    ));
    for i in 0..40 {
        t.send(
            "acme",
            &secret,
            &format!("m{i}"),
            &envelope("acme", json!({ "id": format!("r-{i}") })),
        )
        .await;
    }
    let (a, b) = tokio::join!(t.app.run_due(), replica.run_due());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a + b, 40, "every handoff ran once: {a} + {b}");
    assert!(a > 0 && b > 0, "both replicas took work: {a} + {b}");
    assert_eq!(t.requests_of("create_work_item").len(), 40);
    assert_eq!(t.sandbox.work_items().len(), 40);
    let (_, list) = t
        .admin(
            reqwest::Method::GET,
            "/v1/orgs/acme/sessions?limit=500",
            None,
        )
        .await;
    for s in list["sessions"].as_array().unwrap() {
        assert_eq!(s["state"], "succeeded");
        assert_eq!(s["attempts"], 1, "{s}");
    }
}

#[tokio::test]
async fn a_session_stored_by_an_older_version_is_upgraded_at_start_and_handed_off() {
    let t = TestApp::start().await;
    t.connected_org("acme").await;
    // What an older version wrote: the OpenCX session itself, as payload version 1.
    let session = json!({
        "id": "from-before",
        "channel": { "type": "web" },
        "contact": { "email": "ada@example.com", "verified": true },
        "handoff": { "summary": "Wants to change a delivery address." },
    });
    t.app
        .worker()
        .store
        .intake(
            handoff_bridge::store::NewHandoff {
                org_id: "acme",
                session_id: "from-before",
                webhook_id: "msg_old",
                channel: "web",
                payload_version: 1,
                payload: session.to_string(),
            },
            handoff_bridge::clock::now_ms(),
        )
        .await
        .unwrap();

    // A process of this version starts on that store and works the handoff.
    let upgraded = t.replica().await;
    let stored = upgraded
        .worker()
        .store
        .handoff("acme", "from-before")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.payload_version,
        handoff_bridge::domain::QUEUED_PAYLOAD_VERSION
    );
    upgraded.run_due().await.unwrap();
    let record = t.record("acme", "from-before").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["contact_match"], "linked");
    let create = t.requests_of("create_work_item")[0].body.clone().unwrap();
    assert_eq!(create["subject"], "Wants to change a delivery address.");
}

#[tokio::test]
async fn an_incident_is_called_back_with_its_case_number_and_counted_by_org_and_event() {
    let t = TestApp::start().await;
    let (url, seen) = callback_receiver().await;
    let secret = t.create_org("acme", Some(&url)).await;
    t.connect("acme").await;
    let session = json!({ "id": "by-mail", "channel": { "type": "email" },
        "contact": { "email": "ada@example.com", "verified": true } });
    t.send("acme", &secret, "msg_1", &envelope("acme", session))
        .await;
    t.drain().await;
    let record = t.record("acme", "by-mail").await;
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let event: Value = serde_json::from_str(&seen[0].1).unwrap();
    assert_eq!(event["event"], "handoff.succeeded");
    assert_eq!(event["data"]["record"], "incident");
    assert_eq!(
        event["data"]["dynamics365_incident_id"],
        record["dynamics365_incident_id"]
    );
    assert_eq!(
        event["data"]["dynamics365_ticket_number"],
        record["dynamics365_ticket_number"]
    );
    assert!(event["data"]["dynamics365_chat_id"].is_null());
    let metrics = t.admin_text("/metrics").await;
    assert!(
        metrics.contains(
            "handoff_callbacks_total{org_id=\"acme\",event=\"handoff.succeeded\",outcome=\"delivered\"} 1"
        ),
        "{metrics}"
    );
}
