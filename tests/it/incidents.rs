//! Sessions on channels that are not chats become incidents (issue 12): exactly one per
//! session whatever the retries, bound to the linked contact or the fallback customer, with
//! the transcript note; columns cut at their limits in UTF-16 units; routing only when the
//! org routes explicitly; the privilege probe at test-and-save. Runs on SQLite and, with
//! `HANDOFF_TEST_DATABASE_URL`, on Postgres.

use handoff_bridge::sandbox::{Fault, FaultAction};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{events, find, TestApp};

/// The seed's fallback account ("Unidentified visitor") and its team.
const FALLBACK_ACCOUNT: &str = "a1c0a801-0000-4000-8000-000000000001";
const TEAM: &str = "f6e5d4c3-0001-4b2c-9d3e-4f5a6b7c8d9e";
/// Ada Lovelace, a seeded contact.
const ADA: &str = "c0a80101-0000-4000-8000-000000000001";

fn ada() -> Value {
    json!({ "name": "Ada Lovelace", "email": "ada@example.com", "verified": true })
}

fn history(messages: &[(&str, &str)]) -> Value {
    messages
        .iter()
        .enumerate()
        .map(|(i, (sender, text))| {
            json!({ "created_at": format!("2026-11-20T10:00:{:02}Z", i % 60), "sender": sender, "text": text })
        })
        .collect()
}

/// The sandbox's incident for `record` (a handoff record), asserting there is one.
fn incident_of(t: &TestApp, record: &Value) -> Value {
    let id = record["dynamics365_incident_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no incident on {record}"));
    t.sandbox
        .incidents()
        .into_iter()
        .find(|i| i["incidentid"] == id)
        .unwrap_or_else(|| panic!("the sandbox has no incident {id}"))
}

/// The notes under the Dataverse row `parent`.
fn notes_of(t: &TestApp, parent: &str) -> Vec<Value> {
    t.sandbox
        .annotations()
        .into_iter()
        .filter(|n| n["_objectid_value"] == parent)
        .collect()
}

#[tokio::test]
async fn each_non_chat_channel_becomes_exactly_one_incident() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    // (channel, contact, expected caseorigincode, customer table)
    let cases = [
        ("email", Some(ada()), 2, "contact"),
        ("phone_voice", None, 1, "account"),
        ("web_voice", None, 1, "account"),
        ("api", Some(ada()), 3, "contact"),
        ("fax", None, 3, "account"), // a channel OpenCX may add later
    ];
    for (channel, contact, _, _) in &cases {
        let mut session = json!({
            "id": format!("case-{channel}"),
            "channel": { "type": channel },
            "history": history(&[("contact", "Hello"), ("ai", "One moment.")]),
        });
        if let Some(contact) = contact {
            session["contact"] = contact.clone();
        }
        t.hand_off("acme", &secret, session.clone()).await;
        // A redelivery of the same session creates nothing more.
        let (status, _) = t
            .send(
                "acme",
                &secret,
                &format!("again_{channel}"),
                &crate::helpers::envelope("acme", session),
            )
            .await;
        assert!(status.is_success(), "{status}");
    }
    t.drain().await;
    for (channel, _, origin, table) in cases {
        let record = t.record("acme", &format!("case-{channel}")).await;
        assert_eq!(record["state"], "succeeded", "{record}");
        let incident = incident_of(&t, &record);
        assert_eq!(incident["caseorigincode"], origin, "{channel}");
        assert_eq!(incident["customerid_type"], table, "{channel}");
        if table == "contact" {
            assert_eq!(incident["_customerid_value"], ADA);
            assert_eq!(record["contact_match"], "linked");
        } else {
            assert_eq!(incident["_customerid_value"], FALLBACK_ACCOUNT);
        }
        assert_eq!(
            record["dynamics365_ticket_number"],
            incident["ticketnumber"]
        );
        assert!(incident["ticketnumber"]
            .as_str()
            .unwrap()
            .starts_with("CAS-"));
        assert_eq!(
            incident["routings"], 1,
            "routed once, by Dataverse on create"
        );
        let notes = notes_of(&t, incident["incidentid"].as_str().unwrap());
        assert_eq!(notes.len(), 1, "{channel}: one transcript note");
        assert_eq!(notes[0]["objecttypecode"], "incident");
        assert!(notes[0]["notetext"]
            .as_str()
            .unwrap()
            .contains("One moment."));
        assert_eq!(events(&record, "incident_created").len(), 1, "{record}");
    }
    assert_eq!(t.sandbox.incidents().len(), 5, "one incident per session");
    assert!(
        t.sandbox.work_items().is_empty(),
        "no chat for a non-chat channel"
    );
    assert!(
        t.requests_of("route_record").is_empty(),
        "routing is not called"
    );
}

#[tokio::test]
async fn the_incident_and_its_note_exist_once_under_retries() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    // The create commits, its answer is lost; then a server error; then it goes through
    // (as a duplicate key, read back for its case number).
    t.sandbox.inject(Fault::next(
        "create_incident",
        FaultAction::DropAfterCommit,
        1,
    ));
    t.sandbox.inject(Fault::next(
        "create_incident",
        FaultAction::status(503, None),
        1,
    ));
    let session = json!({
        "id": "retried",
        "channel": { "type": "email" },
        "contact": ada(),
        "history": history(&[("contact", "My parcel arrived broken.")]),
    });
    t.hand_off("acme", &secret, session).await;
    let record = t.record("acme", "retried").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    assert!(t.requests_of("create_incident").len() >= 3);
    assert_eq!(t.sandbox.incidents().len(), 1);
    let incident = incident_of(&t, &record);
    assert_eq!(
        notes_of(&t, incident["incidentid"].as_str().unwrap()).len(),
        1
    );
    assert_eq!(
        record["dynamics365_ticket_number"],
        incident["ticketnumber"]
    );
    let created = events(&record, "incident_created");
    assert_eq!(created.last().unwrap()["detail"]["already_existed"], true);

    // A replay finds the same incident.
    let (status, body) = t
        .admin(Method::POST, "/v1/orgs/acme/sessions/retried/retry", None)
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "a succeeded handoff is not replayed: {body}"
    );
    assert_eq!(t.sandbox.incidents().len(), 1);
}

#[tokio::test]
async fn long_descriptions_and_transcripts_are_cut_at_the_limits_in_utf16_units() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    // 2,500 emoji are 5,000 UTF-16 units; 120 messages of 1,000 units are over a note.
    let summary = "😀".repeat(2500);
    let long = format!("{}{}", "😀".repeat(10), "x".repeat(980));
    let messages: Vec<(&str, &str)> = (0..120).map(|_| ("contact", long.as_str())).collect();
    let session = json!({
        "id": "long",
        "channel": { "type": "email" },
        "contact": ada(),
        "handoff": { "summary": summary, "sentiment": "angry", "reason": "ai_decided_to_handoff_the_conversation" },
        "history": history(&messages),
    });
    t.hand_off("acme", &secret, session).await;
    let record = t.record("acme", "long").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    let incident = incident_of(&t, &record);
    let units = |v: &Value| v.as_str().unwrap().encode_utf16().count();
    assert!(units(&incident["title"]) <= 200 && units(&incident["title"]) > 195);
    assert!(incident["title"]
        .as_str()
        .unwrap()
        .ends_with(" - Ada Lovelace"));
    assert!(units(&incident["description"]) <= 2000 && units(&incident["description"]) > 1990);
    let description = incident["description"].as_str().unwrap();
    assert!(description.starts_with("Channel: email\nSummary: 😀"));
    assert!(
        description.contains("\nSentiment: angry\n"),
        "{description}"
    );
    assert!(
        description.ends_with("OpenCX session: long"),
        "the details survive the cut"
    );
    let note = &notes_of(&t, incident["incidentid"].as_str().unwrap())[0];
    let text = note["notetext"].as_str().unwrap();
    assert!(units(&note["notetext"]) <= 100_000 && units(&note["notetext"]) > 98_000);
    assert!(
        text.starts_with("<p><i>Earlier messages are not shown"),
        "it says so"
    );
}

#[tokio::test]
async fn routing_is_called_only_when_the_org_routes_explicitly() {
    let t = TestApp::start().await;
    let secret = t.create_org("acme", None).await;
    let incidents = json!({
        "fallback_customer": { "table": "account", "id": FALLBACK_ACCOUNT },
        "routing": "routing_rule",
        "priority": "high",
        "owner": { "table": "team", "id": TEAM },
        "case_origin": { "email": 3 },
    });
    t.connect_with("acme", json!({ "incidents": incidents }))
        .await;
    t.hand_off(
        "acme",
        &secret,
        json!({ "id": "explicit", "channel": { "type": "email" } }),
    )
    .await;
    let record = t.record("acme", "explicit").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    let incident = incident_of(&t, &record);
    assert_eq!(incident["routecase"], false, "not routed on create");
    assert_eq!(incident["routings"], 1, "routed once, by the action");
    assert_eq!(incident["prioritycode"], 1);
    assert_eq!(incident["caseorigincode"], 3, "the org's own case origin");
    assert_eq!(incident["_ownerid_value"], TEAM);
    let routed = t.requests_of("route_record");
    assert_eq!(routed.len(), 1);
    assert_eq!(
        routed[0].body.as_ref().unwrap(),
        &json!({ "Target": format!("incidents({})", record["dynamics365_incident_id"].as_str().unwrap()) })
    );
    assert_eq!(events(&record, "incident_routed").len(), 1);

    // The settings are shown as saved.
    let (_, saved) = t.admin(Method::GET, "/v1/orgs/acme/connection", None).await;
    assert_eq!(saved["incidents"]["routing"], "routing_rule", "{saved}");
    assert_eq!(
        saved["incidents"]["owner"],
        json!({ "table": "team", "id": TEAM })
    );
}

#[tokio::test]
async fn without_a_fallback_customer_only_linked_visitors_become_incidents() {
    let t = TestApp::start().await;
    let secret = t.create_org("acme", None).await;
    let (_, tested) = t
        .admin(
            Method::POST,
            "/v1/orgs/acme/connection/test",
            Some(t.connection_input(json!({ "incidents": {} }))),
        )
        .await;
    let check = find(&tested["checks"], "name", "incidents");
    assert_eq!(check["status"], "warn", "{check}");
    assert_eq!(check["code"], "fallback_customer_missing");
    t.connect_with("acme", json!({ "incidents": {} })).await;
    t.hand_off(
        "acme",
        &secret,
        json!({ "id": "linked", "channel": { "type": "email" }, "contact": ada() }),
    )
    .await;
    t.hand_off(
        "acme",
        &secret,
        json!({ "id": "nobody", "channel": { "type": "phone_voice" } }),
    )
    .await;
    assert_eq!(t.record("acme", "linked").await["state"], "succeeded");
    let failed = t.record("acme", "nobody").await;
    assert_eq!(failed["state"], "failed");
    assert_eq!(failed["last_error"]["code"], "incident_customer_missing");
    assert!(failed["last_error"]["detail"]
        .as_str()
        .unwrap()
        .contains("contact_match anonymous"));
    assert!(
        t.requests_of("create_incident").len() == 1,
        "nothing sent for the one that cannot be made"
    );
}

#[tokio::test]
async fn the_privilege_probe_names_what_a_partial_role_lacks() {
    let t = TestApp::start().await;
    t.create_org("acme", None).await;
    let partial = json!({
        "client_id": "5a718293-4d6e-4f80-b12c-3d4e5f607182",
        "client_secret": "Sbx8Q~partial-role-reads-only_2026",
    });
    let (status, body) = t
        .admin(
            Method::PUT,
            "/v1/orgs/acme/connection",
            Some(t.connection_input(partial.clone())),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let check = find(&body["checks"], "name", "privileges");
    assert_eq!(check["status"], "fail");
    assert_eq!(check["code"], "missing_privilege");
    let detail = check["detail"].as_str().unwrap();
    for missing in [
        "prvCreateActivity",
        "prvCreatemsdyn_ocliveworkitemcontextitem",
        "prvCreateNote",
        "prvCreateIncident",
        "prvReadIncident",
    ] {
        assert!(detail.contains(missing), "{missing}: {detail}");
    }
    assert!(
        !detail.contains("prvReadContact"),
        "it holds that one: {detail}"
    );
    assert!(
        !detail.contains("prvCreateContact"),
        "create_contact_if_missing is off"
    );
    let (_, saved) = t.admin(Method::GET, "/v1/orgs/acme/connection", None).await;
    assert_eq!(saved["status"], "not_connected", "nothing saved");

    // With incidents off and contacts created, the list follows the settings.
    let mut changes = partial;
    changes["incidents"] = json!({ "enabled": false });
    changes["create_contact_if_missing"] = json!(true);
    let (_, body) = t
        .admin(
            Method::POST,
            "/v1/orgs/acme/connection/test",
            Some(t.connection_input(changes)),
        )
        .await;
    let detail = find(&body["checks"], "name", "privileges")["detail"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(detail.contains("prvCreateContact"), "{detail}");
    assert!(!detail.contains("prvCreateIncident"), "{detail}");

    // A full role passes, and says how many it checked.
    let (_, body) = t
        .admin(
            Method::POST,
            "/v1/orgs/acme/connection/test",
            Some(t.connection_input(json!({}))),
        )
        .await;
    assert_eq!(
        find(&body["checks"], "name", "privileges")["status"],
        "pass",
        "{body}"
    );
}

#[tokio::test]
async fn the_write_back_carries_the_incident_and_its_case_number() {
    let t = TestApp::start().await;
    let secret = t.connected_org("acme").await;
    let (status, body) = t
        .connect_opencx(
            "acme",
            json!({ "write_back_message": "A colleague will follow up by email." }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    t.hand_off(
        "acme",
        &secret,
        json!({ "id": "ocx-email-1", "channel": { "type": "email" }, "contact": ada() }),
    )
    .await;
    let record = t.record("acme", "ocx-email-1").await;
    assert_eq!(record["state"], "succeeded", "{record}");
    let sent = t.sandbox.opencx_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(
        sent[0]["custom_data"],
        json!({
            "dynamics365_incident_id": record["dynamics365_incident_id"],
            "dynamics365_ticket_number": record["dynamics365_ticket_number"],
        })
    );
}

/// A bearer token from the sandbox's Entra ID for `client_id` / `secret`.
async fn sandbox_token(t: &TestApp, client_id: &str, secret: &str) -> String {
    let demo = t.sandbox.demo_connection();
    let answer: Value = reqwest::Client::new()
        .post(format!(
            "{}/{}/oauth2/v2.0/token",
            t.sandbox.url(),
            demo.tenant_id
        ))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", &format!("{}/.default", t.sandbox.url())),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

/// `POST {sandbox}/api/data/v9.2/{set}` with `body`: the status and the Dataverse error code.
async fn sandbox_post(t: &TestApp, token: &str, set: &str, body: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/api/data/v9.2/{set}", t.sandbox.url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    (status, body["error"].clone())
}

#[tokio::test]
async fn the_sandbox_refuses_incidents_and_notes_as_dataverse_does() {
    let t = TestApp::start().await;
    let demo = t.sandbox.demo_connection();
    let token = sandbox_token(&t, &demo.client_id, &demo.client_secret).await;
    let contact = json!(format!("/contacts({ADA})"));
    let account = json!(format!("/accounts({FALLBACK_ACCOUNT})"));
    for (body, status, code) in [
        (json!({ "title": "No customer" }), 400, "0x80044410"),
        (
            json!({ "title": "Both", "customerid_contact@odata.bind": contact, "customerid_account@odata.bind": account }),
            400,
            "0x8004440f",
        ),
        (
            json!({ "title": "x".repeat(201), "customerid_contact@odata.bind": contact }),
            400,
            "0x80044331",
        ),
        (
            json!({ "title": "Odd priority", "prioritycode": 4, "customerid_contact@odata.bind": contact }),
            400,
            "0x8004431a",
        ),
        (
            json!({ "customerid_contact@odata.bind": contact }),
            400,
            "0x80040203",
        ),
    ] {
        let (got, error) = sandbox_post(&t, &token, "incidents", body.clone()).await;
        assert_eq!(
            (got, error["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
    }
    let case = "0a0b0c0d-0000-4000-8000-0000000000c1";
    let (got, _) = sandbox_post(
        &t,
        &token,
        "incidents",
        json!({ "incidentid": case, "title": "Fine", "customerid_contact@odata.bind": contact }),
    )
    .await;
    assert_eq!(got, 204);

    // A note on its own: bound to one parent that exists, its key once.
    let note = "0a0b0c0d-0000-4000-8000-0000000000d1";
    let on_case = json!({ "annotationid": note, "subject": "Call notes", "notetext": "…",
        "objectid_incident@odata.bind": format!("/incidents({case})") });
    assert_eq!(
        sandbox_post(&t, &token, "annotations", on_case.clone())
            .await
            .0,
        204
    );
    let (got, error) = sandbox_post(&t, &token, "annotations", on_case).await;
    assert_eq!((got, error["code"].as_str()), (412, Some("0x80040237")));
    let (got, error) = sandbox_post(
        &t,
        &token,
        "annotations",
        json!({ "subject": "Lost", "objectid_msdyn_ocliveworkitem@odata.bind": "/msdyn_ocliveworkitems(0a0b0c0d-0000-4000-8000-0000000000e1)" }),
    )
    .await;
    assert_eq!((got, error["code"].as_str()), (404, Some("0x80040217")));
    let (got, _) = sandbox_post(&t, &token, "annotations", json!({ "subject": "Nowhere" })).await;
    assert_eq!(got, 400);
    assert_eq!(notes_of(&t, case).len(), 1);

    // The partial role is refused the create, naming the privilege.
    let partial = sandbox_token(
        &t,
        "5a718293-4d6e-4f80-b12c-3d4e5f607182",
        "Sbx8Q~partial-role-reads-only_2026",
    )
    .await;
    let (got, error) = sandbox_post(
        &t,
        &partial,
        "incidents",
        json!({ "title": "Refused", "customerid_contact@odata.bind": contact }),
    )
    .await;
    assert_eq!((got, error["code"].as_str()), (403, Some("0x80040220")));
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("is missing prvCreateIncident privilege"));
}
