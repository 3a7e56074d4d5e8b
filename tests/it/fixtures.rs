//! Every fixture in `fixtures/sessions/` through the real HTTP path, with the outcome its
//! `NAME.expected.json` records, and the Dataverse bodies users see (snapshots).

use std::path::Path;

use handoff_bridge::demo::{load_fixtures, DEMO_ORG};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::TestApp;

#[tokio::test]
async fn every_fixture_has_its_expected_outcome() {
    let t = TestApp::start().await;
    let secret = t.connected_org(DEMO_ORG).await;
    let (status, body) = t.connect_opencx(DEMO_ORG, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let fixtures = load_fixtures(Path::new("fixtures/sessions")).unwrap();
    assert!(
        fixtures.len() >= 12,
        "the issue asks for at least 12 fixtures"
    );
    for f in &fixtures {
        let body: Value = serde_json::from_slice(&f.body).unwrap();
        let (status, answer) = t
            .send(DEMO_ORG, &secret, &format!("msg_{}", f.name), &body)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{}: {answer}", f.name);
    }
    t.drain().await;
    for f in &fixtures {
        let record = t.record(DEMO_ORG, &f.session_id).await;
        assert_eq!(
            record["state"].as_str(),
            Some(f.expected.state.as_str()),
            "{}: {record}",
            f.name
        );
        assert_eq!(
            record["contact_match"].as_str(),
            f.expected.contact_match.as_deref(),
            "{}: {record}",
            f.name
        );
        assert_eq!(
            record["last_error"]["code"].as_str(),
            f.expected.code.as_deref(),
            "{}: {record}",
            f.name
        );
        if let Some(incident_id) = record["dynamics365_incident_id"].as_str() {
            let incident = t
                .sandbox
                .incidents()
                .into_iter()
                .find(|i| i["incidentid"] == incident_id)
                .unwrap_or_else(|| panic!("{}: no incident {incident_id}", f.name));
            assert_eq!(
                record["dynamics365_ticket_number"], incident["ticketnumber"],
                "{}: the case number is read back",
                f.name
            );
            assert!(
                incident["description"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("OpenCX session: {}", f.session_id)),
                "{}: {incident}",
                f.name
            );
            assert!(record["dynamics365_chat_id"].is_null());
        } else if f.expected.state == "succeeded" {
            let chat_id = record["dynamics365_chat_id"].as_str().unwrap();
            let item = t
                .sandbox
                .work_items()
                .into_iter()
                .find(|w| w["activityid"] == chat_id)
                .unwrap_or_else(|| panic!("{}: no work item {chat_id} in the sandbox", f.name));
            let contexts = item
                ["msdyn_msdyn_ocliveworkitem_msdyn_ocliveworkitemcontextitem_ocliveworkitemid"]
                .as_array()
                .unwrap();
            let session_item = contexts
                .iter()
                .find(|c| c["msdyn_name"] == "sessionId")
                .unwrap();
            assert_eq!(session_item["msdyn_value"], f.session_id.as_str());
        }
    }
    let records = t.sandbox.work_items().len() + t.sandbox.incidents().len();
    let succeeded = fixtures
        .iter()
        .filter(|f| f.expected.state == "succeeded")
        .count();
    assert_eq!(
        records, succeeded,
        "one work item or incident per succeeded session, no more"
    );
}

/// Creates and connects the demo org (its connection changed by `changes`), then sends the
/// fixture `name` and settles it.
async fn hand_off_fixture(t: &TestApp, name: &str, changes: Value) {
    let secret = t.create_org(DEMO_ORG, None).await;
    t.connect_with(DEMO_ORG, changes).await;
    let f = load_fixtures(Path::new("fixtures/sessions"))
        .unwrap()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap();
    let body: Value = serde_json::from_slice(&f.body).unwrap();
    t.send(DEMO_ORG, &secret, "msg_snapshot", &body).await;
    t.drain().await;
}

/// The exact body of `POST msdyn_ocliveworkitems` for a fixture.
async fn work_item_body(fixture: &str) -> Value {
    let t = TestApp::start().await;
    hand_off_fixture(&t, fixture, json!({})).await;
    let creates = t.requests_of("create_work_item");
    assert_eq!(creates.len(), 1);
    let request = &creates[0];
    assert_eq!(request.status, 204);
    assert_eq!(
        request.headers.get("odata-version").map(String::as_str),
        Some("4.0")
    );
    assert_eq!(
        request.headers.get("odata-maxversion").map(String::as_str),
        Some("4.0")
    );
    assert_eq!(
        request.headers.get("accept").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(
        request.headers.get("content-type").map(String::as_str),
        Some("application/json; charset=utf-8")
    );
    request.body.clone().unwrap()
}

#[tokio::test]
async fn work_item_body_for_a_linked_contact() {
    insta::assert_json_snapshot!(
        "work_item_linked",
        work_item_body("01-verified-linked").await
    );
}

#[tokio::test]
async fn work_item_body_for_an_anonymous_visitor() {
    insta::assert_json_snapshot!("work_item_anonymous", work_item_body("05-anonymous").await);
}

#[tokio::test]
async fn work_item_body_for_sms() {
    insta::assert_json_snapshot!("work_item_sms", work_item_body("10-sms").await);
}

#[tokio::test]
async fn long_unicode_summaries_are_cut_at_character_boundaries_within_column_limits() {
    let body = work_item_body("09-long-summary").await;
    let units = |k: &str| body[k].as_str().unwrap().encode_utf16().count();
    assert!(
        units("subject") <= 200 && units("subject") > 190,
        "{}",
        units("subject")
    );
    assert!(units("msdyn_title") <= 4000 && units("msdyn_title") > 3990);
    assert!(units("description") <= 2000);
    // The customer's details survive the cut of the description.
    assert!(body["description"]
        .as_str()
        .unwrap()
        .ends_with("Email: grace@example.com"));
}

/// The exact body of `POST incidents` for a fixture, with the org's connection changed by
/// `changes`; asserts it asks for the row back (`Prefer: return=representation`, `$select`).
async fn incident_body(fixture: &str, changes: Value) -> Value {
    let t = TestApp::start().await;
    hand_off_fixture(&t, fixture, changes).await;
    let creates = t.requests_of("create_incident");
    assert_eq!(creates.len(), 1);
    let request = &creates[0];
    assert_eq!(request.status, 201, "answered with the row");
    assert_eq!(
        request.headers.get("prefer").map(String::as_str),
        Some("return=representation")
    );
    assert_eq!(
        request.raw_query.as_deref(),
        Some("$select=incidentid%2Cticketnumber")
    );
    request.body.clone().unwrap()
}

#[tokio::test]
async fn incident_body_for_an_email_with_a_linked_contact() {
    insta::assert_json_snapshot!(
        "incident_linked",
        incident_body("12-email-channel", json!({})).await
    );
}

#[tokio::test]
async fn incident_body_for_an_anonymous_call_routed_by_the_bridge() {
    let incidents = json!({
        "fallback_customer": { "table": "account", "id": "a1c0a801-0000-4000-8000-000000000001" },
        "priority": "high",
        "owner": { "table": "team", "id": "f6e5d4c3-0001-4b2c-9d3e-4f5a6b7c8d9e" },
        "routing": "routing_rule",
    });
    insta::assert_json_snapshot!(
        "incident_fallback_routed",
        incident_body("14-phone-voice", json!({ "incidents": incidents })).await
    );
}
