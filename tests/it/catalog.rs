//! Every failure catalog entry the sandbox can produce, driven for real, and the three
//! places that report it: test-and-save (`POST …/connection/test`), the handoff record
//! (`GET …/sessions/{id}`) and `GET /v1/status`. Each place must report the entry's `code`
//! with exactly the catalog's `hint`. The last test checks that the scenarios here cover
//! the whole catalog but for the entries listed in `NOT_PRODUCIBLE`, with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use handoff_bridge::domain::catalog::{self, CATALOG};
use handoff_bridge::sandbox::{Fault, FaultAction};
use handoff_bridge::webhook::signature::WebhookSecret;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{envelope, find, TestApp, TestOptions};

/// Where a catalog entry is reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Surface {
    /// A check of `POST /v1/orgs/{org}/connection/test`.
    TestAndSave,
    /// A check of `PUT /v1/orgs/{org}/opencx`.
    OpenCxSave,
    /// `last_error` or `notes` of the handoff record.
    Record,
    /// `GET /v1/status`: the connection card or a recent handoff.
    Status,
}
use Surface::*;

/// Entries no sandbox answer can cause, and why; each is tested where it can be.
const NOT_PRODUCIBLE: &[(&str, &str)] = &[
    (
        "store_unavailable",
        "the bridge's own database failing; see readyz_answers_while_the_store_does",
    ),
    (
        "payload_unreadable",
        "a stored row written by another version of the bridge",
    ),
    (
        "internal_error",
        "a bug (a panicking attempt); see hardening::a_panicking_attempt_is_recorded_and_retried",
    ),
];

/// Where each entry is expected; checked against what the scenarios below observed.
const EXPECTED: &[(&str, &[Surface])] = &[
    ("tenant_id_invalid", &[TestAndSave]),
    ("client_id_invalid", &[TestAndSave]),
    ("client_secret_missing", &[TestAndSave]),
    ("default_queue_id_invalid", &[TestAndSave]),
    ("environment_url_invalid", &[TestAndSave]),
    ("entra_wrong_secret", &[TestAndSave, Record, Status]),
    ("entra_secret_expired", &[TestAndSave, Record, Status]),
    ("entra_unknown_client", &[TestAndSave, Record, Status]),
    ("entra_unknown_tenant", &[TestAndSave, Record, Status]),
    ("entra_unknown_resource", &[TestAndSave]),
    ("entra_throttled", &[TestAndSave, Record, Status]),
    ("entra_unavailable", &[TestAndSave, Record, Status]),
    ("entra_refused", &[TestAndSave, Record, Status]),
    ("not_application_user", &[TestAndSave, Record, Status]),
    ("missing_privilege", &[TestAndSave, Record, Status]),
    ("dataverse_unauthorized", &[TestAndSave, Record, Status]),
    ("dataverse_unavailable", &[TestAndSave, Record, Status]),
    ("dataverse_throttled", &[TestAndSave, Record, Status]),
    ("dataverse_rejected", &[TestAndSave, Record, Status]),
    ("workstream_not_found", &[TestAndSave, Record, Status]),
    ("workstream_is_queue", &[TestAndSave]),
    ("workstream_inactive", &[TestAndSave, Status]),
    ("workstream_record_routing", &[TestAndSave, Status]),
    ("workstream_voice", &[TestAndSave, Status]),
    ("workstream_other_channel", &[TestAndSave, Status]),
    ("workstream_pick_mode", &[TestAndSave, Status]),
    ("contact_ambiguous", &[Record, Status]),
    ("contact_not_found", &[Record, Status]),
    ("email_unverified", &[Record, Status]),
    ("unsupported_channel", &[Record, Status]),
    ("work_item_rejected", &[Record, Status]),
    ("not_connected", &[Record, Status]),
    ("connection_secret_unreadable", &[Record, Status]),
    ("retries_exhausted", &[Record, Status]),
    ("chat_expired", &[Record, Status]),
    ("opencx_api_key_missing", &[OpenCxSave]),
    ("opencx_base_url_invalid", &[OpenCxSave]),
    ("opencx_key_refused", &[OpenCxSave, Record, Status]),
    ("opencx_unreachable", &[OpenCxSave, Record, Status]),
    ("opencx_rate_limited", &[OpenCxSave, Record, Status]),
    ("opencx_not_connected", &[Record, Status]),
    ("opencx_session_not_found", &[Record, Status]),
    ("opencx_session_incomplete", &[Record, Status]),
    ("opencx_unexpected_answer", &[Record, Status]),
    ("opencx_write_back_failed", &[Record, Status]),
    ("callback_failed", &[Record, Status]),
    ("incident_settings_invalid", &[TestAndSave]),
    ("client_secret_expiry_invalid", &[TestAndSave]),
    ("client_secret_expiring", &[TestAndSave, Status]),
    ("fallback_customer_missing", &[TestAndSave, Status]),
    ("fallback_customer_not_found", &[TestAndSave]),
    ("incident_owner_not_found", &[TestAndSave]),
    ("incident_customer_missing", &[Record, Status]),
    ("incident_rejected", &[Record, Status]),
    ("incident_routing_failed", &[Record, Status]),
];

/// What the scenarios observed.
static OBSERVED: Mutex<BTreeMap<&'static str, BTreeSet<Surface>>> = Mutex::new(BTreeMap::new());

fn observed(code: &str, surface: Surface) {
    let code = catalog::entry(code).code;
    OBSERVED
        .lock()
        .unwrap()
        .entry(code)
        .or_default()
        .insert(surface);
}

/// Asserts that `found` (a `{code, hint, …}` object) is the catalog's entry `code`, its
/// hint naming `org` where the catalog's says `{org}`.
fn assert_entry(found: &Value, code: &str, org: &str, context: &str) {
    assert_eq!(found["code"], code, "{context}: {found}");
    assert_eq!(
        found["hint"],
        catalog::entry(code).hint_for_org(org),
        "{context}: the hint is the catalog's"
    );
}

// Seed values (fixtures/sandbox/seed.json).
const SECRET_ID: &str = "7c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f";
const EXPIRED_SECRET: &str = "Sbx8Q~old.expired-secret-value_2024";
const NOT_APP_USER: (&str, &str) = (
    "3e5f7081-2b4c-4d6e-9f0a-1b2c3d4e5f60",
    "Sbx8Q~not-an-application-user_2026",
);
const NO_ROLE: (&str, &str) = (
    "4f607182-3c5d-4e7f-a01b-2c3d4e5f6071",
    "Sbx8Q~user-without-a-security-role",
);
/// An app whose role can sign in and read, but create nothing.
const PARTIAL_ROLE: (&str, &str) = (
    "5a718293-4d6e-4f80-b12c-3d4e5f607182",
    "Sbx8Q~partial-role-reads-only_2026",
);
/// The seed's fallback account ("Unidentified visitor").
const FALLBACK_ACCOUNT: &str = "a1c0a801-0000-4000-8000-000000000001";
const RECORD_WORKSTREAM: &str = "b1e2c3d4-0003-4a5b-8c6d-7e8f9a0b1c2d";
const VOICE_WORKSTREAM: &str = "b1e2c3d4-0004-4a5b-8c6d-7e8f9a0b1c2d";
const INACTIVE_WORKSTREAM: &str = "b1e2c3d4-0005-4a5b-8c6d-7e8f9a0b1c2d";
const PICK_WORKSTREAM: &str = "b1e2c3d4-0006-4a5b-8c6d-7e8f9a0b1c2d";
const QUEUE: &str = "d4c3b2a1-0001-4e5f-8a9b-0c1d2e3f4a5b";
/// Added by a test: a messaging workstream of a channel outside live chat, SMS, WhatsApp
/// and custom.
const OTHER_CHANNEL_WORKSTREAM: &str = "b1e2c3d4-0007-4a5b-8c6d-7e8f9a0b1c2d";

/// Test-and-save with the demo connection changed by `changes`; asserts that check `name`
/// reports `code` with status `fail` (or `warn`).
async fn expect_check(t: &TestApp, changes: Value, name: &str, status: &str, code: &str) {
    let (http, body) = t
        .admin(
            Method::POST,
            "/v1/orgs/acme/connection/test",
            Some(t.connection_input(changes.clone())),
        )
        .await;
    assert_eq!(http, StatusCode::OK, "{body}");
    let check = find(&body["checks"], "name", name);
    assert_eq!(check["status"], status, "{changes}: {check}");
    assert_entry(check, code, "acme", &format!("test-and-save {changes}"));
    let overall = if status == "warn" { "passed" } else { "failed" };
    assert_eq!(body["status"], overall, "{changes}");
    if status == "fail" {
        let after = body["checks"]
            .as_array()
            .unwrap()
            .iter()
            .skip_while(|c| c["name"] != name)
            .skip(1);
        for c in after {
            assert_eq!(
                c["status"], "skip",
                "checks after a failure are not run: {body}"
            );
        }
    }
    observed(code, TestAndSave);
}

/// Asserts that the handoff record of `session` and its row in `/v1/status` report `code`,
/// as `last_error` or as one of the `notes`.
async fn expect_handoff(t: &TestApp, org: &str, session: &str, state: &str, code: &str) {
    let record = t.record(org, session).await;
    assert_eq!(record["state"], state, "{record}");
    assert_entry(find_code(&record, code), code, org, "handoff record");
    observed(code, Record);

    let (_, status) = t
        .admin(Method::GET, &format!("/v1/status?org={org}"), None)
        .await;
    let row = find(&status["orgs"][0]["recent"], "session_id", session);
    assert_entry(find_code(row, code), code, org, "/v1/status recent handoff");
    observed(code, Status);
}

/// `last_error` when it has `code`, else the note with `code`.
fn find_code<'a>(handoff: &'a Value, code: &str) -> &'a Value {
    if handoff["last_error"]["code"] == code {
        return &handoff["last_error"];
    }
    handoff["notes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["code"] == code)
        .unwrap_or_else(|| panic!("{code} is neither last_error nor a note: {handoff}"))
}

/// Re-runs the saved connection's checks, then asserts the `/v1/status` card reports `code`
/// as its failing check (`fail`) or its warning (`warn`).
async fn expect_card(t: &TestApp, org: &str, status: &str, code: &str) {
    let (http, body) = t
        .admin(
            Method::POST,
            &format!("/v1/orgs/{org}/connection/check"),
            None,
        )
        .await;
    assert_eq!(http, StatusCode::OK, "{body}");
    let (_, body) = t
        .admin(Method::GET, &format!("/v1/status?org={org}"), None)
        .await;
    let card = &body["orgs"][0]["connection"];
    let (label, key) = match status {
        "fail" => ("Failing", "failing_check"),
        _ => ("Active", "warning"),
    };
    assert_eq!(card["label"], label, "{card}");
    assert_entry(&card[key], code, org, "/v1/status connection card");
    observed(code, Status);
}

/// A bridge with org `acme` connected to the sandbox.
async fn connected(options: TestOptions) -> (TestApp, WebhookSecret) {
    let t = TestApp::start_with(options).await;
    let secret = t.connected_org("acme").await;
    (t, secret)
}

/// Sends one handoff for `session` (merged over the defaults) and runs one worker pass.
async fn send_and_attempt(t: &TestApp, secret: &WebhookSecret, session: Value) {
    let (status, body) = t.submit("acme", secret, session).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    t.app.run_due().await.unwrap();
}

/// The demo app registration of the sandbox's tenant.
fn demo_app<'a>(
    seed: &'a mut handoff_bridge::sandbox::Seed,
    client_id: &str,
) -> &'a mut handoff_bridge::sandbox::seed::App {
    seed.tenants
        .iter_mut()
        .flat_map(|t| t.apps.iter_mut())
        .find(|a| a.client_id == client_id)
        .unwrap()
}

async fn test_and_save_reports_each_input_token_and_dataverse_failure() {
    let t = TestApp::start().await;
    t.create_org("acme", None).await;
    let sandbox_port = t.sandbox.url().rsplit(':').next().unwrap().to_owned();
    let cases = [
        (
            json!({ "tenant_id": "not a tenant!" }),
            "input",
            "tenant_id_invalid",
        ),
        (json!({ "client_id": "abc" }), "input", "client_id_invalid"),
        (
            json!({ "client_secret": "" }),
            "input",
            "client_secret_missing",
        ),
        (
            json!({ "default_queue_id": "queue-1" }),
            "input",
            "default_queue_id_invalid",
        ),
        (
            json!({ "environment_url": "https://contoso.crm.dynamics.com/main.aspx" }),
            "input",
            "environment_url_invalid",
        ),
        (
            json!({ "environment_url": "https://contoso.example.com" }),
            "input",
            "environment_url_invalid",
        ),
        // A typo in the host that still reaches the service: Entra ID knows no such
        // resource.
        (
            json!({ "environment_url": format!("http://localhost:{sandbox_port}") }),
            "token",
            "entra_unknown_resource",
        ),
    ];
    for (changes, name, code) in cases {
        expect_check(&t, changes, name, "fail", code).await;
    }

    // Faults, each for the next request of its kind only. Throttling last: a 429 pauses
    // the environment's requests for its Retry-After.
    let faults = [
        ("token", 503, None, "token", "entra_unavailable"),
        ("token", 400, None, "token", "entra_refused"),
        ("token", 429, Some(30), "token", "entra_throttled"),
        ("whoami", 503, None, "dataverse", "dataverse_unavailable"),
        ("whoami", 400, None, "dataverse", "dataverse_rejected"),
        ("whoami", 401, None, "dataverse", "dataverse_unauthorized"),
        ("whoami", 429, Some(30), "dataverse", "dataverse_throttled"),
    ];
    for (kind, status, retry_after, name, code) in faults {
        // Enough faults for any retry inside one check, and cleared afterwards.
        t.sandbox.inject(Fault::next(
            kind,
            FaultAction::status(status, retry_after),
            5,
        ));
        expect_check(&t, json!({}), name, "fail", code).await;
        t.sandbox.clear_faults();
    }
}

async fn test_and_save_reports_each_credential_and_workstream_failure() {
    let t = TestApp::start().await;
    t.create_org("acme", None).await;
    let cases = [
        (
            json!({ "client_secret": SECRET_ID }),
            "token",
            "fail",
            "entra_wrong_secret",
        ),
        (
            json!({ "client_secret": EXPIRED_SECRET }),
            "token",
            "fail",
            "entra_secret_expired",
        ),
        (
            json!({ "client_id": "11111111-2222-4333-8444-555555555555" }),
            "token",
            "fail",
            "entra_unknown_client",
        ),
        (
            json!({ "tenant_id": "99999999-8888-4777-8666-555555555555" }),
            "token",
            "fail",
            "entra_unknown_tenant",
        ),
        (
            json!({ "client_id": NOT_APP_USER.0, "client_secret": NOT_APP_USER.1 }),
            "dataverse",
            "fail",
            "not_application_user",
        ),
        (
            json!({ "client_id": NO_ROLE.0, "client_secret": NO_ROLE.1 }),
            "dataverse",
            "fail",
            "missing_privilege",
        ),
        (
            json!({ "default_queue_id": "00000000-0000-4000-8000-00000000dead" }),
            "workstream",
            "fail",
            "workstream_not_found",
        ),
        (
            json!({ "default_queue_id": QUEUE }),
            "workstream",
            "fail",
            "workstream_is_queue",
        ),
        (
            json!({ "default_queue_id": RECORD_WORKSTREAM }),
            "workstream",
            "fail",
            "workstream_record_routing",
        ),
        (
            json!({ "default_queue_id": VOICE_WORKSTREAM }),
            "workstream",
            "fail",
            "workstream_voice",
        ),
        (
            json!({ "default_queue_id": INACTIVE_WORKSTREAM }),
            "workstream",
            "fail",
            "workstream_inactive",
        ),
        (
            json!({ "default_queue_id": PICK_WORKSTREAM }),
            "workstream",
            "warn",
            "workstream_pick_mode",
        ),
        (
            json!({ "default_queue_id": OTHER_CHANNEL_WORKSTREAM }),
            "workstream",
            "warn",
            "workstream_other_channel",
        ),
    ];
    t.sandbox.edit_seed(|seed| {
        seed.workstreams.push(json!({
            "msdyn_liveworkstreamid": OTHER_CHANNEL_WORKSTREAM,
            "msdyn_name": "Messaging – other channel",
            "msdyn_streamsource": 192_310_000,
            "msdyn_workdistributionmode": 192_350_000,
            "msdyn_direction": 0,
            "statecode": 0,
        }))
    });
    for (changes, name, status, code) in cases {
        expect_check(&t, changes, name, status, code).await;
    }
}

/// Something an admin (or Microsoft) changes after the connection was saved.
type Change = fn(&TestApp);

/// A change to the saved connection's workstream row.
type WorkstreamEdit = fn(&mut Value);

fn demo_secret_deleted(t: &TestApp) {
    let demo = t.sandbox.demo_connection();
    t.sandbox.edit_seed(|seed| {
        demo_app(seed, &demo.client_id)
            .secrets
            .retain(|s| s.value != demo.client_secret)
    });
    t.sandbox.expire_tokens();
}

fn demo_secret_expired(t: &TestApp) {
    t.sandbox
        .expire_secret(&t.sandbox.demo_connection().client_secret);
    t.sandbox.expire_tokens();
}

fn app_registration_deleted(t: &TestApp) {
    let demo = t.sandbox.demo_connection();
    t.sandbox.edit_seed(|seed| {
        for tenant in &mut seed.tenants {
            tenant.apps.retain(|a| a.client_id != demo.client_id);
        }
    });
    t.sandbox.expire_tokens();
}

fn tenant_gone(t: &TestApp) {
    t.sandbox.edit_seed(|seed| {
        seed.tenants[0].tenant_id = "00000000-0000-4000-8000-000000000000".into();
    });
    t.sandbox.expire_tokens();
}

fn application_user_removed(t: &TestApp) {
    let demo = t.sandbox.demo_connection();
    t.sandbox
        .edit_seed(|seed| demo_app(seed, &demo.client_id).application_user = false);
}

fn security_role_removed(t: &TestApp) {
    let demo = t.sandbox.demo_connection();
    t.sandbox
        .edit_seed(|seed| demo_app(seed, &demo.client_id).security_role = false);
}

fn workstream_deleted(t: &TestApp) {
    let ws = t.sandbox.demo_connection().default_queue_id;
    t.sandbox.edit_seed(|seed| {
        seed.workstreams
            .retain(|w| w["msdyn_liveworkstreamid"] != ws.as_str())
    });
}

/// Faults on the next few requests of a kind; `token` faults need a token refresh, so
/// issued tokens are expired too.
fn faults(t: &TestApp, kind: &str, status: u16, retry_after: Option<u64>) {
    if kind == "token" {
        t.sandbox.expire_tokens();
    }
    t.sandbox.inject(Fault::next(
        kind,
        FaultAction::status(status, retry_after),
        5,
    ));
}

async fn handoff_records_and_the_card_report_what_changed_after_saving() {
    // (what changed, the handoff's state after one attempt, the code, whether checking
    // the connection again turns the card failing with the same code)
    let cases: [(Change, &str, &str, bool); 13] = [
        (demo_secret_deleted, "failed", "entra_wrong_secret", true),
        (demo_secret_expired, "failed", "entra_secret_expired", true),
        (
            app_registration_deleted,
            "failed",
            "entra_unknown_client",
            true,
        ),
        (tenant_gone, "failed", "entra_unknown_tenant", true),
        (
            |t| faults(t, "token", 429, Some(30)),
            "queued",
            "entra_throttled",
            false,
        ),
        (
            |t| faults(t, "token", 503, None),
            "queued",
            "entra_unavailable",
            false,
        ),
        (
            |t| faults(t, "token", 400, None),
            "failed",
            "entra_refused",
            false,
        ),
        (
            application_user_removed,
            "failed",
            "not_application_user",
            true,
        ),
        (security_role_removed, "failed", "missing_privilege", true),
        (
            |t| faults(t, "create_work_item", 401, None),
            "failed",
            "dataverse_unauthorized",
            false,
        ),
        (
            |t| faults(t, "create_work_item", 429, Some(30)),
            "queued",
            "dataverse_throttled",
            false,
        ),
        (
            |t| faults(t, "create_work_item", 400, None),
            "failed",
            "work_item_rejected",
            false,
        ),
        (workstream_deleted, "failed", "workstream_not_found", true),
    ];
    for (change, state, code, card) in cases {
        let (t, secret) = connected(TestOptions::default()).await;
        change(&t);
        let session = format!("after_{code}");
        send_and_attempt(&t, &secret, json!({ "id": session })).await;
        expect_handoff(&t, "acme", &session, state, code).await;
        if card {
            expect_card(&t, "acme", "fail", code).await;
        }
    }
}

async fn dataverse_unavailable_by_server_error_and_by_closed_connection() {
    for action in [FaultAction::status(503, None), FaultAction::Reset] {
        let (t, secret) = connected(TestOptions::default()).await;
        t.sandbox
            .inject(Fault::next("create_work_item", action.clone(), 5));
        send_and_attempt(&t, &secret, json!({ "id": "unavailable" })).await;
        expect_handoff(&t, "acme", "unavailable", "queued", "dataverse_unavailable").await;
    }
    // The checks of the saved connection, with every connection to the environment
    // closed unanswered.
    let (t, _) = connected(TestOptions::default()).await;
    t.sandbox
        .inject(Fault::next("whoami", FaultAction::Reset, 5));
    expect_card(&t, "acme", "fail", "dataverse_unavailable").await;
}

async fn a_rejected_contact_lookup_is_dataverse_rejected() {
    let (t, secret) = connected(TestOptions::default()).await;
    t.sandbox
        .inject(Fault::next("contacts", FaultAction::status(400, None), 5));
    let contact = json!({ "name": "Ann", "email": "ann@example.com", "verified": true });
    send_and_attempt(&t, &secret, json!({ "id": "lookup", "contact": contact })).await;
    expect_handoff(&t, "acme", "lookup", "failed", "dataverse_rejected").await;
}

async fn a_workstream_changed_after_saving_shows_on_the_card() {
    let edits: [(&str, &str, WorkstreamEdit); 5] = [
        ("fail", "workstream_inactive", |w| w["statecode"] = json!(1)),
        ("fail", "workstream_record_routing", |w| {
            w["msdyn_streamsource"] = json!(192_350_000)
        }),
        ("fail", "workstream_voice", |w| {
            w["msdyn_streamsource"] = json!(192_370_000)
        }),
        ("warn", "workstream_other_channel", |w| {
            w["msdyn_streamsource"] = json!(192_310_000)
        }),
        ("warn", "workstream_pick_mode", |w| {
            w["msdyn_workdistributionmode"] = json!(192_350_001)
        }),
    ];
    for (status, code, edit) in edits {
        let (t, _) = connected(TestOptions::default()).await;
        let ws = t.sandbox.demo_connection().default_queue_id;
        t.sandbox.edit_seed(|seed| {
            edit(
                seed.workstreams
                    .iter_mut()
                    .find(|w| w["msdyn_liveworkstreamid"] == ws.as_str())
                    .unwrap(),
            )
        });
        expect_card(&t, "acme", status, code).await;
    }
}

async fn contact_matches_that_link_no_contact_are_explained() {
    let (t, secret) = connected(TestOptions::default()).await;
    let cases = [
        ("twins@example.com", true, "contact_ambiguous"),
        ("nobody-here@example.com", true, "contact_not_found"),
        ("ann@example.com", false, "email_unverified"),
    ];
    for (email, verified, code) in cases {
        let contact = json!({ "name": "Visitor", "email": email, "verified": verified });
        send_and_attempt(&t, &secret, json!({ "id": code, "contact": contact })).await;
        expect_handoff(&t, "acme", code, "succeeded", code).await;
    }
    // A linked contact needs no words.
    let record = t.record("acme", "contact_ambiguous").await;
    assert_eq!(record["notes"].as_array().unwrap().len(), 1, "{record}");
}

async fn bridge_side_entries_are_reported_on_the_record_and_the_status() {
    // unsupported_channel (incidents off) and not_connected.
    let t = TestApp::start().await;
    let secret = t.create_org("acme", None).await;
    t.connect_with("acme", json!({ "incidents": { "enabled": false } }))
        .await;
    send_and_attempt(
        &t,
        &secret,
        json!({ "id": "by_mail", "channel": { "type": "email" } }),
    )
    .await;
    expect_handoff(&t, "acme", "by_mail", "skipped", "unsupported_channel").await;
    let beta = t.create_org("beta", None).await;
    t.send(
        "beta",
        &beta,
        "b1",
        &envelope("beta", json!({ "id": "waits" })),
    )
    .await;
    t.app.run_due().await.unwrap();
    expect_handoff(&t, "beta", "waits", "queued", "not_connected").await;
    let (_, status) = t.admin(Method::GET, "/v1/status?org=beta", None).await;
    assert_eq!(
        status["orgs"][0]["connection"]["hint"],
        "Connect Dynamics with PUT /v1/orgs/beta/connection; waiting handoffs are then delivered."
    );
    // chat_expired: nobody connected beta within the chat expiry (an hour by default).
    t.advance(handoff_bridge::handoff::retry::RetryPolicy::default().chat_expiry);
    t.app.run_due().await.unwrap();
    expect_handoff(&t, "beta", "waits", "failed", "chat_expired").await;

    // connection_secret_unreadable: a replica started with another encryption key.
    let (status, _) = t
        .submit("acme", &secret, json!({ "id": "other_key" }))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    t.replica_with_other_key().await.run_due().await.unwrap();
    expect_handoff(
        &t,
        "acme",
        "other_key",
        "failed",
        "connection_secret_unreadable",
    )
    .await;
}

async fn incident_entries_are_reported_at_test_and_save_and_on_the_record() {
    let t = TestApp::start().await;
    let secret = t.create_org("acme", None).await;
    let account = json!({ "table": "account", "id": FALLBACK_ACCOUNT });
    let checks = [
        (
            json!({ "priority": 4 }),
            "input",
            "fail",
            "incident_settings_invalid",
        ),
        (
            json!({ "fallback_customer": { "table": "account", "id": "00000000-0000-4000-8000-0000000000ff" } }),
            "incidents",
            "fail",
            "fallback_customer_not_found",
        ),
        (
            json!({ "fallback_customer": account, "owner": { "table": "team", "id": "00000000-0000-4000-8000-0000000000ee" } }),
            "incidents",
            "fail",
            "incident_owner_not_found",
        ),
        (json!({}), "incidents", "warn", "fallback_customer_missing"),
    ];
    for (incidents, name, status, code) in checks {
        expect_check(&t, json!({ "incidents": incidents }), name, status, code).await;
    }
    // A role that can sign in and read workstreams, but create nothing.
    let partial = json!({ "client_id": PARTIAL_ROLE.0, "client_secret": PARTIAL_ROLE.1 });
    expect_check(&t, partial, "privileges", "fail", "missing_privilege").await;

    // Saved without a fallback customer: the card warns, and an anonymous email session
    // cannot become an incident.
    t.connect_with("acme", json!({ "incidents": {} })).await;
    expect_card(&t, "acme", "warn", "fallback_customer_missing").await;
    let mail = |id: &str| json!({ "id": id, "channel": { "type": "email" } });
    send_and_attempt(&t, &secret, mail("anonymous_mail")).await;
    expect_handoff(
        &t,
        "acme",
        "anonymous_mail",
        "failed",
        "incident_customer_missing",
    )
    .await;

    // incident_rejected: a case origin value the org does not have.
    let odd_origin = json!({ "fallback_customer": account, "case_origin": { "email": 99 } });
    t.connect_with("acme", json!({ "incidents": odd_origin }))
        .await;
    send_and_attempt(&t, &secret, mail("odd_origin")).await;
    expect_handoff(&t, "acme", "odd_origin", "failed", "incident_rejected").await;

    // incident_routing_failed: the org routes explicitly and the action is refused.
    let explicit = json!({ "fallback_customer": account, "routing": "routing_rule" });
    t.connect_with("acme", json!({ "incidents": explicit }))
        .await;
    fault_once(&t, "route_record", 400, None);
    send_and_attempt(&t, &secret, mail("unrouted")).await;
    expect_handoff(&t, "acme", "unrouted", "failed", "incident_routing_failed").await;
}

async fn a_secret_about_to_expire_is_warned_at_test_and_save_and_on_the_card() {
    let t = TestApp::start().await;
    t.create_org("acme", None).await;
    let soon =
        handoff_bridge::clock::rfc3339(handoff_bridge::clock::now_ms() + 10 * 24 * 3600 * 1000);
    let later =
        handoff_bridge::clock::rfc3339(handoff_bridge::clock::now_ms() + 90 * 24 * 3600 * 1000);
    expect_check(
        &t,
        json!({ "client_secret_expires_at": "next tuesday" }),
        "input",
        "fail",
        "client_secret_expiry_invalid",
    )
    .await;
    let expiring = json!({ "client_secret_expires_at": soon });
    expect_check(
        &t,
        expiring.clone(),
        "token",
        "warn",
        "client_secret_expiring",
    )
    .await;
    t.connect_with("acme", expiring).await;
    expect_card(&t, "acme", "warn", "client_secret_expiring").await;
    let (_, status) = t.admin(Method::GET, "/v1/status?org=acme", None).await;
    let warning = &status["orgs"][0]["connection"]["warning"];
    assert!(
        warning["detail"].as_str().unwrap().contains("(in 9 days)")
            || warning["detail"].as_str().unwrap().contains("(in 10 days)"),
        "{warning}"
    );
    // Far enough: no warning.
    t.connect_with("acme", json!({ "client_secret_expires_at": later }))
        .await;
    let (_, status) = t.admin(Method::GET, "/v1/status?org=acme", None).await;
    assert!(
        status["orgs"][0]["connection"]["warning"].is_null(),
        "{status}"
    );
    // The date is shown as saved.
    let (_, saved) = t.admin(Method::GET, "/v1/orgs/acme/connection", None).await;
    assert!(saved["client_secret_expires_at"].is_string(), "{saved}");
}

async fn given_up_handoffs_and_callbacks_are_reported() {
    // No retry window: the first temporary failure is the last.
    let options = TestOptions {
        retry_window: std::time::Duration::ZERO,
        ..TestOptions::default()
    };
    let t = TestApp::start_with(options).await;
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/hook", listener.local_addr().unwrap())
    };
    let secret = t.create_org("acme", Some(&closed)).await;
    t.connect("acme").await;
    t.refuse_next_create(503, None);
    send_and_attempt(&t, &secret, json!({ "id": "gave_up" })).await;
    t.drain().await;
    expect_handoff(&t, "acme", "gave_up", "failed", "retries_exhausted").await;
    // Its failed callback (handoff.failed) to the closed port is given up too.
    expect_handoff(&t, "acme", "gave_up", "failed", "callback_failed").await;
    let record = t.record("acme", "gave_up").await;
    assert_eq!(record["callbacks"][0]["state"], "failed", "{record}");
}

/// `PUT /v1/orgs/acme/opencx` against the sandbox with `changes`; asserts that check `name`
/// fails with `code` and the checks after it are skipped.
async fn expect_opencx_check(t: &TestApp, changes: Value, name: &str, code: &str) {
    let mut input = json!({ "api_key": OPENCX_KEY, "base_url": t.sandbox.url() });
    for (k, v) in changes.as_object().unwrap() {
        input[k] = v.clone();
    }
    let (http, body) = t
        .admin(Method::PUT, "/v1/orgs/acme/opencx", Some(input))
        .await;
    assert_eq!(http, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let check = find(&body["checks"], "name", name);
    assert_eq!(check["status"], "fail", "{changes}: {check}");
    assert_entry(
        check,
        code,
        "acme",
        &format!("OpenCX test-and-save {changes}"),
    );
    if name == "input" {
        assert_eq!(find(&body["checks"], "name", "api_key")["status"], "skip");
    }
    observed(code, OpenCxSave);
}

/// The seed's OpenCX API key.
const OPENCX_KEY: &str = "ocx_sandbox_key_0123456789abcdef";

/// OpenCX's thin handoff event for `session`, posted and attempted once.
async fn thin_and_attempt(t: &TestApp, secret: &WebhookSecret, session: &str) {
    let event = json!({
        "event": "conversation.handoff_to_human",
        "organization_id": "acme",
        "data": { "conversation_id": session, "reason": "ai_decided_to_handoff_the_conversation" },
    });
    let (status, body) = t
        .send("acme", secret, &format!("msg_{session}"), &event)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    t.app.run_due().await.unwrap();
}

async fn opencx_entries_are_reported_at_its_test_and_save_and_on_the_record() {
    // More requests than the default pace allows in a burst (pacing has its own test).
    let (t, secret) = connected(TestOptions {
        opencx_requests_per_minute: 100_000,
        ..TestOptions::default()
    })
    .await;
    // Before any OpenCX connection, a thin event waits.
    thin_and_attempt(&t, &secret, "ocx-web-1").await;
    expect_handoff(&t, "acme", "ocx-web-1", "queued", "opencx_not_connected").await;

    expect_opencx_check(
        &t,
        json!({ "api_key": "  " }),
        "input",
        "opencx_api_key_missing",
    )
    .await;
    expect_opencx_check(
        &t,
        json!({ "base_url": "ftp://api.open.cx" }),
        "input",
        "opencx_base_url_invalid",
    )
    .await;
    expect_opencx_check(
        &t,
        json!({ "api_key": "ocx_revoked" }),
        "api_key",
        "opencx_key_refused",
    )
    .await;
    fault_once(&t, "opencx_session", 503, None);
    expect_opencx_check(&t, json!({}), "api_key", "opencx_unreachable").await;
    fault_once(&t, "opencx_session", 429, Some(5));
    expect_opencx_check(&t, json!({}), "api_key", "opencx_rate_limited").await;
    let (http, body) = t
        .admin(
            Method::PUT,
            "/v1/orgs/acme/opencx",
            Some(json!({
                "api_key": OPENCX_KEY,
                "base_url": t.sandbox.url(),
                "write_back_message": "Someone will join you shortly.",
            })),
        )
        .await;
    assert_eq!(http, StatusCode::OK, "{body}");
    t.drain().await;

    thin_and_attempt(&t, &secret, "ocx-gone").await;
    expect_handoff(&t, "acme", "ocx-gone", "failed", "opencx_session_not_found").await;
    thin_and_attempt(&t, &secret, "ocx-web-open").await;
    expect_handoff(
        &t,
        "acme",
        "ocx-web-open",
        "failed",
        "opencx_session_incomplete",
    )
    .await;
    t.sandbox.inject(Fault::next(
        "opencx_session",
        FaultAction::status(400, None),
        1,
    ));
    thin_and_attempt(&t, &secret, "ocx-api-1").await;
    expect_handoff(
        &t,
        "acme",
        "ocx-api-1",
        "failed",
        "opencx_unexpected_answer",
    )
    .await;
    fault_once(&t, "opencx_session", 502, None);
    thin_and_attempt(&t, &secret, "ocx-wa-1").await;
    expect_handoff(&t, "acme", "ocx-wa-1", "queued", "opencx_unreachable").await;
    t.drain().await;
    fault_once(&t, "opencx_history", 429, Some(30));
    thin_and_attempt(&t, &secret, "ocx-web-2").await;
    expect_handoff(&t, "acme", "ocx-web-2", "queued", "opencx_rate_limited").await;

    // The write-back refused: the work item stands, the note says what is missing.
    t.sandbox.inject(Fault::next(
        "opencx_send",
        FaultAction::status(403, None),
        1,
    ));
    let (_, body) = t
        .submit(
            "acme",
            &secret,
            json!({ "id": "ocx-sms-1", "channel": { "type": "sms" } }),
        )
        .await;
    assert_eq!(body["state"], "queued", "{body}");
    t.drain().await;
    expect_handoff(
        &t,
        "acme",
        "ocx-sms-1",
        "succeeded",
        "opencx_write_back_failed",
    )
    .await;

    // The key revoked in OpenCX after it was saved.
    t.sandbox.edit_seed(|s| s.opencx.api_keys.clear());
    thin_and_attempt(&t, &secret, "ocx-email-1").await;
    expect_handoff(&t, "acme", "ocx-email-1", "failed", "opencx_key_refused").await;
}

/// The next request of `kind` answers `status` (with `Retry-After`).
fn fault_once(t: &TestApp, kind: &str, status: u16, retry_after: Option<u64>) {
    t.sandbox.inject(Fault::next(
        kind,
        FaultAction::status(status, retry_after),
        1,
    ));
}

/// One test runs every scenario, so that what they observed can be compared with
/// `EXPECTED` at the end (about a second in all).
#[tokio::test]
async fn every_catalog_entry_is_reported_where_it_belongs() {
    let expected: BTreeSet<&str> = EXPECTED.iter().map(|(c, _)| *c).collect();
    let excluded: BTreeSet<&str> = NOT_PRODUCIBLE.iter().map(|(c, _)| *c).collect();
    for f in CATALOG {
        assert!(
            expected.contains(f.code) != excluded.contains(f.code),
            "{} must be in exactly one of EXPECTED and NOT_PRODUCIBLE",
            f.code
        );
    }
    assert_eq!(expected.len() + excluded.len(), CATALOG.len());

    test_and_save_reports_each_input_token_and_dataverse_failure().await;
    test_and_save_reports_each_credential_and_workstream_failure().await;
    handoff_records_and_the_card_report_what_changed_after_saving().await;
    dataverse_unavailable_by_server_error_and_by_closed_connection().await;
    a_rejected_contact_lookup_is_dataverse_rejected().await;
    a_workstream_changed_after_saving_shows_on_the_card().await;
    contact_matches_that_link_no_contact_are_explained().await;
    bridge_side_entries_are_reported_on_the_record_and_the_status().await;
    given_up_handoffs_and_callbacks_are_reported().await;
    opencx_entries_are_reported_at_its_test_and_save_and_on_the_record().await;
    incident_entries_are_reported_at_test_and_save_and_on_the_record().await;
    a_secret_about_to_expire_is_warned_at_test_and_save_and_on_the_card().await;

    let observed = OBSERVED.lock().unwrap().clone();
    for (code, surfaces) in EXPECTED {
        let seen: Vec<Surface> = observed
            .get(code)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        assert_eq!(&seen, surfaces, "{code}: reported on");
    }
    assert_eq!(observed.len(), EXPECTED.len(), "{observed:?}");
}
