//! OpenCX as it really is: the thin `conversation.handoff_to_human` event, the org's OpenCX
//! connection, the session fetched from OpenCX's API (the sandbox plays it), which email
//! counts as verified, and the write-back of `dynamics365_chat_id` to the session. On
//! SQLite, and on Postgres when `HANDOFF_TEST_DATABASE_URL` is set.

use handoff_bridge::domain::catalog;
use handoff_bridge::sandbox::{Fault, FaultAction};
use handoff_bridge::webhook::WebhookSecret;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{events, TestApp};

/// The seed's OpenCX API key.
const KEY: &str = "ocx_sandbox_key_0123456789abcdef";

/// OpenCX's thin event for `session`.
fn thin_event(org: &str, session: &str) -> Value {
    json!({
        "event": "conversation.handoff_to_human",
        "organization_id": org,
        "data": {
            "conversation_id": session,
            "timestamp": "2026-11-23T09:04:10Z",
            "customer_id": "ctc-ada",
            "reason": "ai_decided_to_handoff_the_conversation",
        },
    })
}

/// Posts the thin event for `session`, signed with `secret`.
async fn post_thin(
    t: &TestApp,
    org: &str,
    secret: &WebhookSecret,
    session: &str,
) -> (StatusCode, Value) {
    t.send(
        org,
        secret,
        &format!("msg_thin_{session}"),
        &thin_event(org, session),
    )
    .await
}

/// Saves the org's OpenCX connection against the sandbox, with `changes`.
async fn connect_opencx(t: &TestApp, org: &str, changes: Value) -> (StatusCode, Value) {
    t.connect_opencx(org, changes).await
}

/// `acme`, connected to Dynamics and to OpenCX (with `changes`); its webhook secret.
async fn acme(t: &TestApp, changes: Value) -> WebhookSecret {
    let secret = t.connected_org("acme").await;
    let (status, body) = connect_opencx(t, "acme", changes).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    secret
}

/// OpenCX requests of `kind` about `session` (the connection check asks for another).
fn opencx_requests(t: &TestApp, kind: &str, session: &str) -> usize {
    t.requests_of(kind)
        .iter()
        .filter(|r| r.path.contains(&format!("/chat/sessions/{session}")))
        .count()
}

#[tokio::test]
async fn a_thin_event_is_enriched_from_opencx_and_becomes_exactly_one_work_item() {
    let t = TestApp::start().await;
    let secret = acme(&t, json!({})).await;

    let (status, body) = post_thin(&t, "acme", &secret, "ocx-web-1").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert_eq!(body["session_id"], "ocx-web-1");
    assert_eq!(body["state"], "queued");
    t.drain().await;

    let record = t.record("acme", "ocx-web-1").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(
        record["channel"], "web",
        "the fetched channel replaced 'unknown'"
    );
    // The session says `verified: true`: Ada's email links her contact.
    assert_eq!(record["contact_match"], "linked");
    let enriched = events(&record, "enriched");
    assert_eq!(enriched.len(), 1, "{record}");
    assert_eq!(enriched[0]["detail"]["history_items"], 3, "messages only");
    assert_eq!(enriched[0]["detail"]["email_rule"], "opencx_flag");
    assert_eq!(
        events(&record, "contact_resolved")[0]["detail"]["email_rule"],
        "opencx_flag"
    );

    let items = t.sandbox.work_items();
    assert_eq!(items.len(), 1);
    let create = &t.requests_of("create_work_item")[0];
    let body = create.body.as_ref().unwrap();
    assert_eq!(
        body["subject"],
        "Wants to change the delivery address of order 1042."
    );
    assert!(body["msdyn_channel"].is_string(), "{body}");
    // What OpenCX said about the handoff reaches the representative as context items.
    let items =
        &body["msdyn_msdyn_ocliveworkitem_msdyn_ocliveworkitemcontextitem_ocliveworkitemid"];
    let item = |name: &str| {
        items
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["msdyn_name"] == name)
            .map(|c| c["msdyn_value"].clone())
    };
    assert_eq!(item("sentiment"), Some(json!("angry")), "{items}");
    assert_eq!(
        item("reason"),
        Some(json!("ai_decided_to_handoff_the_conversation"))
    );
    assert_eq!(item("language"), Some(json!("en")));
    assert_eq!(item("customerEmail"), Some(json!("ada@example.com")));
    // Five history items in pages of two: three pages, one session read.
    assert_eq!(opencx_requests(&t, "opencx_session", "ocx-web-1"), 1);
    assert_eq!(opencx_requests(&t, "opencx_history", "ocx-web-1"), 3);

    // A redelivery is the same handoff; nothing is fetched or created again.
    let (status, body) = post_thin(&t, "acme", &secret, "ocx-web-1").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], true);
    t.drain().await;
    assert_eq!(t.sandbox.work_items().len(), 1);
    assert_eq!(opencx_requests(&t, "opencx_session", "ocx-web-1"), 1);
}

#[tokio::test]
async fn what_was_fetched_is_kept_so_a_replay_needs_no_opencx() {
    let t = TestApp::start().await;
    let secret = acme(&t, json!({})).await;
    t.refuse_next_create(403, None);
    post_thin(&t, "acme", &secret, "ocx-web-1").await;
    t.drain().await;
    let record = t.record("acme", "ocx-web-1").await;
    assert_eq!(record["state"], "failed", "{record}");
    assert_eq!(record["channel"], "web");

    // OpenCX forgets the key: the replay must not need it.
    t.sandbox.edit_seed(|s| s.opencx.api_keys.clear());
    let (status, body) = t
        .admin(Method::POST, "/v1/orgs/acme/sessions/ocx-web-1/retry", None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    t.drain().await;
    let record = t.record("acme", "ocx-web-1").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(
        opencx_requests(&t, "opencx_session", "ocx-web-1"),
        1,
        "fetched once"
    );
    assert_eq!(t.sandbox.work_items().len(), 1);
}

#[tokio::test]
async fn a_thin_event_waits_without_an_opencx_connection_and_goes_when_one_is_saved() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let (status, _) = post_thin(&t, "acme", &secret, "ocx-web-1").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    t.app.run_due().await.unwrap();
    let record = t.record("acme", "ocx-web-1").await;
    assert_eq!(record["state"], "queued", "{record}");
    assert_eq!(record["channel"], "unknown");
    assert_eq!(record["last_error"]["code"], "opencx_not_connected");
    assert_eq!(
        record["last_error"]["hint"],
        catalog::OPENCX_NOT_CONNECTED.hint_for_org("acme")
    );
    assert!(record["last_error"]["hint"]
        .as_str()
        .unwrap()
        .contains("PUT /v1/orgs/acme/opencx"));
    assert_eq!(events(&record, "waiting")[0]["detail"]["parked"], true);
    assert_eq!(record["attempts"], 0, "a wait is not an attempt");
    // Parked: nothing is due until the connection is saved.
    assert_eq!(t.app.run_due().await.unwrap(), 0);

    let (status, body) = connect_opencx(&t, "acme", json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(t.app.run_due().await.unwrap(), 1, "due at once");
    let record = t.record("acme", "ocx-web-1").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert!(events(&record, "woken")
        .iter()
        .any(|e| e["detail"]["reason"] == "the OpenCX connection was saved"));
}

#[tokio::test]
async fn opencx_failures_end_with_their_catalog_codes() {
    let t = TestApp::start().await;
    let secret = acme(&t, json!({})).await;

    // 404: no such session in OpenCX: permanent.
    post_thin(&t, "acme", &secret, "ocx-nobody").await;
    t.drain().await;
    let record = t.record("acme", "ocx-nobody").await;
    assert_eq!(record["state"], "failed", "{record}");
    assert_eq!(record["last_error"]["code"], "opencx_session_not_found");
    assert!(record["last_error"]["detail"]
        .as_str()
        .unwrap()
        .contains("404"));

    // A session that was never handed off: permanent, naming what is missing.
    post_thin(&t, "acme", &secret, "ocx-web-open").await;
    t.drain().await;
    let record = t.record("acme", "ocx-web-open").await;
    assert_eq!(record["last_error"]["code"], "opencx_session_incomplete");
    let detail = record["last_error"]["detail"].as_str().unwrap();
    assert!(detail.contains("not been handed off"), "{detail}");
    assert!(detail.contains("/handoff/summary"), "{detail}");

    // 429 with Retry-After: transient, not before the time OpenCX asked for.
    t.sandbox.inject(Fault::next(
        "opencx_session",
        FaultAction::status(429, Some(7)),
        1,
    ));
    post_thin(&t, "acme", &secret, "ocx-web-1").await;
    t.drain().await;
    let record = t.record("acme", "ocx-web-1").await;
    assert_eq!(record["state"], "queued", "{record}");
    assert_eq!(record["last_error"]["code"], "opencx_rate_limited");
    assert_eq!(
        events(&record, "retry_scheduled")[0]["detail"]["retry_after_s"],
        7
    );

    // 5xx: transient; the next attempt goes through.
    t.sandbox.inject(Fault::next(
        "opencx_history",
        FaultAction::status(502, None),
        1,
    ));
    post_thin(&t, "acme", &secret, "ocx-wa-1").await;
    t.app.run_due().await.unwrap();
    let record = t.record("acme", "ocx-wa-1").await;
    assert_eq!(
        record["last_error"]["code"], "opencx_unreachable",
        "{record}"
    );
    t.drain().await;
    let record = t.record("acme", "ocx-wa-1").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["channel"], "whatsapp");

    // 401: the key was revoked in OpenCX after it was saved: permanent.
    t.sandbox.edit_seed(|s| s.opencx.api_keys.clear());
    post_thin(&t, "acme", &secret, "ocx-web-2").await;
    t.drain().await;
    let record = t.record("acme", "ocx-web-2").await;
    assert_eq!(record["state"], "failed", "{record}");
    assert_eq!(record["last_error"]["code"], "opencx_key_refused");
    assert_eq!(
        record["last_error"]["hint"],
        catalog::OPENCX_KEY_REFUSED.hint_for_org("acme")
    );
}

#[tokio::test]
async fn an_opencx_contact_email_counts_as_verified_only_by_a_flag_or_the_org_setting() {
    // ocx-web-2 carries no verified flag; Grace is a contact in Dynamics.
    let t = TestApp::start().await;
    let secret = acme(&t, json!({})).await;
    post_thin(&t, "acme", &secret, "ocx-web-2").await;
    t.drain().await;
    let record = t.record("acme", "ocx-web-2").await;
    assert_eq!(record["contact_match"], "unverified", "{record}");
    let note = &record["notes"][0];
    assert_eq!(note["code"], "email_unverified");
    assert!(note["detail"]
        .as_str()
        .unwrap()
        .contains("contact_emails_verified = false"));
    assert_eq!(t.requests_of("contacts").len(), 0, "no lookup");

    // The org says OpenCX contact emails are verified.
    let t = TestApp::start().await;
    let secret = acme(&t, json!({ "contact_emails_verified": true })).await;
    post_thin(&t, "acme", &secret, "ocx-web-2").await;
    t.drain().await;
    let record = t.record("acme", "ocx-web-2").await;
    assert_eq!(record["contact_match"], "linked", "{record}");
    assert_eq!(
        events(&record, "contact_resolved")[0]["detail"]["email_rule"],
        "org_setting"
    );

    // An explicit `verified: false` wins over the org setting.
    post_thin(&t, "acme", &secret, "ocx-email-1").await;
    t.drain().await;
    let record = t.record("acme", "ocx-email-1").await;
    assert_eq!(record["state"], "succeeded", "email becomes an incident");
    assert!(record["dynamics365_incident_id"].is_string(), "{record}");
    assert_eq!(
        events(&record, "enriched")[0]["detail"]["email_rule"],
        "opencx_flag"
    );
}

#[tokio::test]
async fn test_and_save_of_opencx_reports_each_check_and_saves_nothing_on_failure() {
    let t = TestApp::start().await;
    t.create_org("acme", None).await;

    let (status, body) = connect_opencx(&t, "acme", json!({ "api_key": "ocx_wrong" })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["status"], "failed");
    assert_eq!(body["checks"][0]["status"], "pass");
    assert_eq!(body["checks"][1]["code"], "opencx_key_refused");
    let (_, view) = t.admin(Method::GET, "/v1/orgs/acme/opencx", None).await;
    assert_eq!(view["status"], "not_connected", "nothing saved: {view}");

    let (status, body) = connect_opencx(&t, "acme", json!({ "api_key": null })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["checks"][0]["code"], "opencx_api_key_missing");
    assert_eq!(body["checks"][1]["status"], "skip");

    let (_, body) = connect_opencx(&t, "acme", json!({ "base_url": "http://example.com" })).await;
    assert_eq!(body["checks"][0]["code"], "opencx_base_url_invalid");

    let (status, body) = connect_opencx(&t, "acme", json!({ "write_back_message": "  " })).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["code"], "validation_failed");
    assert_eq!(body["errors"][0]["pointer"], "/write_back_message");

    let (status, body) = connect_opencx(&t, "acme", json!({ "apikey": KEY })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["code"], "invalid_shape");

    t.sandbox.inject(Fault::next(
        "opencx_session",
        FaultAction::status(429, Some(3)),
        1,
    ));
    let (_, body) = connect_opencx(&t, "acme", json!({})).await;
    assert_eq!(body["checks"][1]["code"], "opencx_rate_limited");
    t.sandbox
        .inject(Fault::next("opencx_session", FaultAction::Reset, 1));
    let (_, body) = connect_opencx(&t, "acme", json!({})).await;
    assert_eq!(body["checks"][1]["code"], "opencx_unreachable");

    let (status, body) = connect_opencx(
        &t,
        "acme",
        json!({ "write_back_message": "A member of our team will join you shortly." }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active");
    let (_, view) = t.admin(Method::GET, "/v1/orgs/acme/opencx", None).await;
    assert_eq!(view["status"], "active");
    assert_eq!(view["api_key_set"], true);
    assert_eq!(
        view["write_back_message"],
        "A member of our team will join you shortly."
    );
    assert!(!view.to_string().contains(KEY), "the key is never returned");
    let stored = t.db.raw_contents().await;
    assert!(!stored.contains(KEY), "the key is stored sealed");

    let (status, _) = t.admin(Method::DELETE, "/v1/orgs/acme/opencx", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = t.admin(Method::DELETE, "/v1/orgs/acme/opencx", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["code"], "opencx_not_connected");
}

const WRITE_BACK: &str = "A member of our team will join you shortly.";

#[tokio::test]
async fn the_write_back_puts_the_work_item_id_on_the_session_once() {
    let t = TestApp::start().await;
    let secret = acme(&t, json!({ "write_back_message": WRITE_BACK })).await;

    // The first send arrives but its answer is lost (as if the worker died after
    // sending): the retry finds the id on the session and does not send again.
    t.sandbox
        .inject(Fault::next("opencx_send", FaultAction::DropAfterCommit, 1));
    post_thin(&t, "acme", &secret, "ocx-web-1").await;
    t.drain().await;
    let record = t.record("acme", "ocx-web-1").await;
    let chat_id = record["dynamics365_chat_id"].as_str().unwrap().to_owned();
    let sent = t.sandbox.opencx_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["session_id"], "ocx-web-1");
    assert_eq!(sent[0]["sender"], "agent");
    assert_eq!(sent[0]["message"]["text"], WRITE_BACK);
    assert_eq!(sent[0]["custom_data"]["dynamics365_chat_id"], chat_id);
    let session = t.sandbox.opencx_session("ocx-web-1").unwrap();
    assert_eq!(session["custom_data"]["dynamics365_chat_id"], chat_id);
    let write_back = record["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["event"] == "opencx.write_back")
        .unwrap_or_else(|| panic!("{record}"));
    assert_eq!(write_back["state"], "delivered");
    assert_eq!(write_back["attempts"], 2);

    // A pushed session of the same org is written back too, once; a replay of a failed
    // handoff writes back once it succeeds, never twice.
    t.refuse_next_create(403, None);
    t.hand_off(
        "acme",
        &secret,
        json!({ "id": "ocx-sms-1", "channel": { "type": "sms" } }),
    )
    .await;
    assert_eq!(
        t.sandbox.opencx_sent().len(),
        1,
        "nothing before the work item"
    );
    t.admin(Method::POST, "/v1/orgs/acme/sessions/ocx-sms-1/retry", None)
        .await;
    t.drain().await;
    t.admin(Method::POST, "/v1/orgs/acme/sessions/ocx-sms-1/retry", None)
        .await;
    t.drain().await;
    let sent = t.sandbox.opencx_sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1]["session_id"], "ocx-sms-1");
}

#[tokio::test]
async fn a_write_back_opencx_refuses_is_reported_and_the_work_item_stands() {
    let t = TestApp::start().await;
    let secret = acme(&t, json!({ "write_back_message": WRITE_BACK })).await;
    t.sandbox.inject(Fault::next(
        "opencx_send",
        FaultAction::status(403, None),
        1,
    ));
    post_thin(&t, "acme", &secret, "ocx-web-1").await;
    t.drain().await;
    let record = t.record("acme", "ocx-web-1").await;
    assert_eq!(record["state"], "succeeded");
    let note = record["notes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["code"] == "opencx_write_back_failed")
        .unwrap_or_else(|| panic!("{record}"));
    assert!(note["detail"].as_str().unwrap().contains("403"), "{note}");
    assert_eq!(
        events(&record, "callback_failed")[0]["detail"]["code"],
        "opencx_write_back_failed"
    );
}

#[tokio::test]
async fn the_status_shows_the_opencx_card_and_how_the_id_reaches_opencx() {
    let t = TestApp::start().await;
    t.connected_org("acme").await;
    let org = org_status(&t).await;
    assert_eq!(org["opencx"]["status"], "not_connected", "{org}");
    assert!(org["opencx"]["hint"]
        .as_str()
        .unwrap()
        .contains("PUT /v1/orgs/acme/opencx"));
    assert_eq!(org["write_back"]["callback"], false);
    assert_eq!(org["write_back"]["opencx_session"], false);
    assert!(org["write_back"]["summary"]
        .as_str()
        .unwrap()
        .contains("only recorded here"));

    let (status_code, body) =
        connect_opencx(&t, "acme", json!({ "write_back_message": WRITE_BACK })).await;
    assert_eq!(status_code, StatusCode::OK, "{body}");
    let org = org_status(&t).await;
    assert_eq!(org["opencx"]["status"], "active", "{org}");
    assert_eq!(org["opencx"]["contact_emails_verified"], false);
    assert_eq!(org["write_back"]["opencx_session"], true);
    assert!(!org.to_string().contains(KEY), "the key is never shown");

    // The key revoked in OpenCX: checking again says so on the card.
    t.sandbox.edit_seed(|s| s.opencx.api_keys.clear());
    let (code, body) = t
        .admin(Method::POST, "/v1/orgs/acme/opencx/check", None)
        .await;
    assert_eq!(code, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "failing");
    let org = org_status(&t).await;
    assert_eq!(org["opencx"]["label"], "Failing");
    assert_eq!(org["opencx"]["failing_check"]["code"], "opencx_key_refused");

    let page = t.admin_text("/status?org=acme").await;
    assert!(page.contains("OpenCX connection:"), "{page}");
    assert!(page.contains("opencx_key_refused"));
    assert!(page.contains("through the write-back message"));

    // A new key in OpenCX: checking again makes the card active.
    t.sandbox
        .edit_seed(|s| s.opencx.api_keys.push(KEY.to_owned()));
    let (_, body) = t
        .admin(Method::POST, "/v1/orgs/acme/opencx/check", None)
        .await;
    assert_eq!(body["status"], "active", "{body}");
}

/// `acme` in `GET /v1/status`.
async fn org_status(t: &TestApp) -> Value {
    let (_, body) = t.admin(Method::GET, "/v1/status?org=acme", None).await;
    body["orgs"][0].clone()
}

#[tokio::test]
async fn thin_events_beyond_the_burst_wait_their_turn_and_all_go() {
    // Two requests a second after a burst of ten: the connection check and four thin
    // events (a session and history pages each) need more than the burst.
    let t = TestApp::start_with(crate::helpers::TestOptions {
        opencx_requests_per_minute: 120,
        opencx_burst: 10,
        ..Default::default()
    })
    .await;
    let secret = acme(&t, json!({})).await;
    for session in ["ocx-web-1", "ocx-web-2", "ocx-wa-1", "ocx-api-1"] {
        let (status, body) = post_thin(&t, "acme", &secret, session).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
    t.drain().await;
    for session in ["ocx-web-1", "ocx-web-2", "ocx-wa-1"] {
        let record = t.record("acme", session).await;
        assert_eq!(record["state"], "succeeded", "{record}");
    }
    let api = t.record("acme", "ocx-api-1").await;
    assert_eq!(
        api["state"], "succeeded",
        "an api session becomes an incident: {api}"
    );
    assert!(api["dynamics365_ticket_number"].is_string(), "{api}");
    assert_eq!(
        t.requests_of("opencx_session").len(),
        5,
        "each session read once"
    );
}

#[tokio::test]
async fn an_opencx_blip_is_resent_within_the_attempt() {
    let t = TestApp::start_with(crate::helpers::TestOptions {
        quick_retries: 2,
        ..Default::default()
    })
    .await;
    let secret = acme(&t, json!({})).await;
    t.sandbox.inject(Fault::next(
        "opencx_session",
        FaultAction::status(503, None),
        1,
    ));
    t.sandbox
        .inject(Fault::next("opencx_history", FaultAction::Reset, 1));
    post_thin(&t, "acme", &secret, "ocx-web-1").await;
    t.drain().await;
    let record = t.record("acme", "ocx-web-1").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["attempts"], 1, "no backoff: {record}");
    let resent: Vec<_> = events(&record, "request_retried")
        .iter()
        .map(|e| {
            (
                e["detail"]["step"].as_str().unwrap().to_owned(),
                e["detail"]["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        resent,
        [
            ("opencx_session".to_owned(), "opencx_unreachable".to_owned()),
            ("opencx_history".to_owned(), "opencx_unreachable".to_owned()),
        ]
    );
}

#[tokio::test]
async fn the_transcript_becomes_one_note_on_the_conversation_even_when_the_create_is_retried() {
    let t = TestApp::start().await;
    let secret = acme(&t, json!({})).await;
    // The create is committed but its answer lost: the retry finds the work item, and the
    // note that came with it.
    t.sandbox.inject(Fault::next(
        "create_work_item",
        FaultAction::DropAfterCommit,
        1,
    ));
    post_thin(&t, "acme", &secret, "ocx-web-1").await;
    t.drain().await;
    let record = t.record("acme", "ocx-web-1").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(t.requests_of("create_work_item").len(), 2, "sent twice");
    let notes = t.sandbox.annotations();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = &notes[0];
    assert_eq!(note["_objectid_value"], record["dynamics365_chat_id"]);
    assert_eq!(note["objecttypecode"], "msdyn_ocliveworkitem");
    let text = note["notetext"].as_str().unwrap();
    assert!(
        text.contains("My order 1042 is going to the wrong address."),
        "{text}"
    );
    assert!(text.contains("<b>Ada Lovelace</b>"), "{text}");
    assert!(text.contains("<b>AI</b>"), "{text}");
    assert!(
        !text.contains("internal"),
        "the agent's internal comment is left out"
    );
    assert!(note["subject"].as_str().unwrap().contains("ocx-web-1"));
}
