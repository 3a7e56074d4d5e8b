//! Every outcome of one attempt, against a fake Dataverse and a fixed clock, on a real
//! SQLite file. No sleeping: the clock never moves and the backoff base is zero.

use std::sync::Mutex;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};
use uuid::Uuid;

use super::job::{Connect, HandoffDataverse, JobContext};
use super::retry::RetryPolicy;
use crate::clock::Clock;
use crate::connection::crypto::{EncryptionKey, Keyring};
use crate::connection::vault::{SealTarget, Vault};
use crate::domain::{ContactMatch, EventKind, HandoffState, QUEUED_PAYLOAD_VERSION};
use crate::domain::{Ended, Outcome};
use crate::dynamics::{
    ContactCreate, CreateOutcome, Credentials, DataverseError, IncidentCreate, IncidentRef,
    LiveWorkItemCreate,
};
use crate::store::{Claim, ConnectionRow, NewHandoff, OrgRow, Store};
use crate::webhook::WebhookSecret;

/// The fixed "now" of every test, in Unix ms.
const NOW: i64 = 1_800_000_000_000;

/// The fixed clock of every test.
static FIXED: std::sync::LazyLock<Clock> = std::sync::LazyLock::new(|| Clock::fixed(NOW));

type Answer<T> = fn() -> Result<T, DataverseError>;

/// Scripted Dataverse answers, and the calls made.
struct FakeDataverse {
    contacts: Answer<Vec<Uuid>>,
    create_contact: Answer<CreateOutcome>,
    create_work_item: Answer<CreateOutcome>,
    create_incident: Answer<CreateOutcome>,
    route_incident: Answer<()>,
    /// The incident bodies sent.
    incidents: Mutex<Vec<IncidentCreate>>,
    calls: Mutex<Vec<&'static str>>,
}

impl Default for FakeDataverse {
    fn default() -> Self {
        Self {
            contacts: || Ok(vec![Uuid::from_u128(7)]),
            create_contact: || Ok(CreateOutcome::Created),
            create_work_item: || Ok(CreateOutcome::Created),
            create_incident: || Ok(CreateOutcome::Created),
            route_incident: || Ok(()),
            incidents: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
        }
    }
}

impl FakeDataverse {
    fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }
}

impl HandoffDataverse for &FakeDataverse {
    async fn find_contacts_by_email(&self, _email: &str) -> Result<Vec<Uuid>, DataverseError> {
        self.calls.lock().unwrap().push("contacts");
        (self.contacts)()
    }

    async fn create_contact(&self, _body: &ContactCreate) -> Result<CreateOutcome, DataverseError> {
        self.calls.lock().unwrap().push("create_contact");
        (self.create_contact)()
    }

    async fn create_live_work_item(
        &self,
        _body: &LiveWorkItemCreate,
    ) -> Result<CreateOutcome, DataverseError> {
        self.calls.lock().unwrap().push("create_work_item");
        (self.create_work_item)()
    }

    async fn create_incident(
        &self,
        body: &IncidentCreate,
    ) -> Result<(CreateOutcome, IncidentRef), DataverseError> {
        self.calls.lock().unwrap().push("create_incident");
        self.incidents.lock().unwrap().push(body.clone());
        let row = IncidentRef {
            incidentid: body.incidentid,
            ticketnumber: Some("CAS-01000-T3S7".into()),
        };
        (self.create_incident)().map(|outcome| (outcome, row))
    }

    async fn route_incident(&self, _incidentid: Uuid) -> Result<(), DataverseError> {
        self.calls.lock().unwrap().push("route_incident");
        (self.route_incident)()
    }
}

struct FakeConnect<'a>(&'a FakeDataverse);

impl<'a> Connect for FakeConnect<'a> {
    type Client = &'a FakeDataverse;
    fn connect(&self, _creds: Credentials) -> &'a FakeDataverse {
        self.0
    }
}

fn status(status: u16, retry_after: Option<u64>) -> DataverseError {
    DataverseError::Status {
        status,
        code: None,
        message: "refused".into(),
        retry_after: retry_after.map(Duration::from_secs),
    }
}

/// A store with org `acme` (a callback URL), optionally connected, and one handoff of
/// `session` claimed at `claimed_at`.
struct Setup {
    store: Store,
    vault: Vault,
    opencx: crate::opencx::OpenCx,
    claim: Claim,
    _dir: tempfile::TempDir,
}

async fn setup(session: Value, connected: bool, claimed_at: i64) -> Setup {
    setup_with(session, connected, claimed_at, QUEUED_PAYLOAD_VERSION).await
}

/// [`setup`] with the handoff's `payload_version` set to `version` (the payload is always
/// the bridge's own shape).
async fn setup_with(session: Value, connected: bool, claimed_at: i64, version: i64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
        .await
        .unwrap();
    let key = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap();
    let vault = Vault::new(Keyring::new(key, Vec::new()));
    store
        .create_org(&OrgRow::for_tests(
            "acme",
            vault.seal_webhook_secret("acme", &WebhookSecret::generate()),
            Some("https://hooks.example.com/handoffs"),
        ))
        .await
        .unwrap();
    if connected {
        store
            .save_connection(&ConnectionRow {
                org_id: "acme".into(),
                tenant_id: "contoso.onmicrosoft.com".into(),
                client_id: Uuid::from_u128(1).hyphenated().to_string(),
                client_secret_enc: vault.seal(
                    SealTarget::ClientSecret("acme"),
                    &SecretString::from("s3cr3t".to_owned()),
                ),
                environment_url: "https://contoso.crm.dynamics.com".into(),
                workstream_id: Uuid::from_u128(2).hyphenated().to_string(),
                create_contact_if_missing: session["create_contact"] == true,
                incidents: session
                    .get("incidents")
                    .map(|settings| settings.to_string()),
                last_success_at: None,
                last_failure_at: None,
                last_failure: None,
                failing_since: None,
                client_secret_expires_at: None,
                status: "active".into(),
                checks: "[]".into(),
                last_checked_at: 0,
                created_at: 0,
                updated_at: 0,
            })
            .await
            .unwrap();
    }
    // The bridge's own payload (`QueuedHandoff`), from the test's session-like `session`.
    let channel = session["channel"]["type"].as_str().unwrap_or("web");
    let payload = json!({
        "session_id": "s-1",
        "channel": channel,
        "customer": {
            "email": session["contact"]["email"],
            "email_verified": session["contact"]["verified"] == true,
        },
        "summary": "Customer needs help with an order.",
    })
    .to_string();
    let new = NewHandoff {
        org_id: "acme",
        session_id: "s-1",
        webhook_id: "msg_1",
        channel,
        payload_version: version,
        payload,
    };
    store.intake(new, claimed_at).await.unwrap();
    let claim = store
        .claim_handoff(claimed_at, 60_000, &[])
        .await
        .unwrap()
        .expect("due");
    Setup {
        store,
        vault,
        opencx: crate::opencx::OpenCx::new(reqwest::Client::new()),
        claim,
        _dir: dir,
    }
}

/// The job's context over `setup`'s store and vault, `connect`, a zero backoff base and
/// the fixed clock.
fn job<'a>(setup: &'a Setup, connect: &'a FakeConnect<'a>) -> JobContext<'a, FakeConnect<'a>> {
    JobContext {
        store: &setup.store,
        vault: &setup.vault,
        dataverse: connect,
        opencx: &setup.opencx,
        retry: RetryPolicy {
            base: Duration::ZERO,
            quick_base: Duration::ZERO,
            ..RetryPolicy::default()
        },
        allow_insecure: false,
        clock: &FIXED,
    }
}

async fn run(setup: &Setup, dataverse: &FakeDataverse) -> Outcome {
    let connect = FakeConnect(dataverse);
    super::attempt(&job(setup, &connect), &setup.claim).await
}

fn kinds(outcome: &Outcome) -> Vec<EventKind> {
    outcome.events.iter().map(|e| e.kind).collect()
}

fn code(outcome: &Outcome) -> &str {
    outcome.ended.error().map_or("", |d| d.code.as_str())
}

fn next_attempt_at(outcome: &Outcome) -> Option<i64> {
    match outcome.ended {
        Ended::RetryScheduled {
            next_attempt_at, ..
        }
        | Ended::Waiting {
            until: next_attempt_at,
            ..
        } => Some(next_attempt_at),
        _ => None,
    }
}

const VERIFIED: &str = "ada@example.com";

fn verified() -> Value {
    json!({ "contact": { "email": VERIFIED, "verified": true } })
}

#[tokio::test]
async fn a_linked_contact_and_a_new_work_item_succeed_with_a_callback() {
    let setup = setup(verified(), true, NOW).await;
    let dataverse = FakeDataverse::default();
    let outcome = run(&setup, &dataverse).await;
    assert_eq!(outcome.ended.state(), HandoffState::Succeeded);
    assert_eq!(outcome.contact_match, Some(ContactMatch::Linked));
    assert_eq!(outcome.contact_id, Some(Uuid::from_u128(7)));
    assert!(matches!(
        outcome.ended,
        Ended::Succeeded { workstream_id, .. } if workstream_id == Uuid::from_u128(2)
    ));
    assert_eq!(outcome.ended.error(), None);
    assert_eq!(
        kinds(&outcome),
        [
            EventKind::AttemptStarted,
            EventKind::ContactResolved,
            EventKind::WorkItemCreated,
            EventKind::Succeeded
        ]
    );
    assert!(
        outcome.events.iter().all(|e| e.at == NOW),
        "the clock is the job's"
    );
    let callback = outcome.callback.expect("the org has a callback URL");
    assert_eq!(callback.event_type, "handoff.succeeded");
    assert!(callback.payload.contains(&crate::clock::rfc3339(NOW)));
    assert_eq!(dataverse.calls(), ["contacts", "create_work_item"]);
}

#[tokio::test]
async fn a_work_item_an_earlier_attempt_created_counts_as_created() {
    let setup = setup(json!({}), true, NOW).await;
    let dataverse = FakeDataverse {
        create_work_item: || Ok(CreateOutcome::AlreadyExisted),
        ..Default::default()
    };
    let outcome = run(&setup, &dataverse).await;
    assert_eq!(outcome.ended.state(), HandoffState::Succeeded);
    let created = &outcome.events[outcome.events.len() - 2];
    assert_eq!(created.kind, EventKind::WorkItemCreated);
    assert_eq!(created.detail["already_existed"], true);
}

#[tokio::test]
async fn each_contact_match_is_recorded_and_only_a_verified_email_is_looked_up() {
    let cases: [(Value, FakeDataverse, ContactMatch, &[&str]); 5] = [
        (
            verified(),
            FakeDataverse {
                contacts: || Ok(vec![Uuid::from_u128(7), Uuid::from_u128(8)]),
                ..Default::default()
            },
            ContactMatch::Ambiguous,
            &["contacts", "create_work_item"],
        ),
        (
            verified(),
            FakeDataverse {
                contacts: || Ok(Vec::new()),
                ..Default::default()
            },
            ContactMatch::NotFound,
            &["contacts", "create_work_item"],
        ),
        (
            json!({ "contact": { "email": VERIFIED, "verified": true }, "create_contact": true }),
            FakeDataverse {
                contacts: || Ok(Vec::new()),
                ..Default::default()
            },
            ContactMatch::Created,
            &["contacts", "create_contact", "create_work_item"],
        ),
        (
            json!({ "contact": { "email": VERIFIED, "verified": false } }),
            FakeDataverse::default(),
            ContactMatch::Unverified,
            &["create_work_item"],
        ),
        (
            json!({}),
            FakeDataverse::default(),
            ContactMatch::Anonymous,
            &["create_work_item"],
        ),
    ];
    for (session, dataverse, expected, calls) in cases {
        let setup = setup(session, true, NOW).await;
        let outcome = run(&setup, &dataverse).await;
        assert_eq!(outcome.ended.state(), HandoffState::Succeeded);
        assert_eq!(outcome.contact_match, Some(expected));
        assert_eq!(
            outcome.contact_id.is_some(),
            expected == ContactMatch::Created
        );
        assert_eq!(dataverse.calls(), calls, "{expected:?}");
    }
}

/// Incident settings as the store keeps them, with `changes`.
fn incident_settings(changes: Value) -> Value {
    let mut settings =
        serde_json::to_value(crate::domain::incident::IncidentSettings::default()).unwrap();
    for (k, v) in changes.as_object().unwrap() {
        settings[k] = v.clone();
    }
    settings
}

#[tokio::test]
async fn a_channel_that_is_not_a_chat_is_skipped_without_a_request_when_incidents_are_off() {
    let session = json!({ "channel": { "type": "email" }, "incidents": incident_settings(json!({ "enabled": false })) });
    let setup = setup(session, true, NOW).await;
    let dataverse = FakeDataverse::default();
    let outcome = run(&setup, &dataverse).await;
    assert_eq!(outcome.ended.state(), HandoffState::Skipped);
    assert_eq!(code(&outcome), "unsupported_channel");
    assert!(dataverse.calls().is_empty());
}

#[tokio::test]
async fn a_non_chat_session_becomes_one_incident_bound_to_its_contact() {
    let mut session = verified();
    session["channel"] = json!({ "type": "phone_voice" });
    let setup = setup(session, true, NOW).await;
    let dataverse = FakeDataverse::default();
    let outcome = run(&setup, &dataverse).await;
    assert_eq!(
        dataverse.calls(),
        ["contacts", "create_incident"],
        "routed on create: no routing call"
    );
    let sent = dataverse.incidents.lock().unwrap()[0].clone();
    assert_eq!(
        sent.customer,
        crate::domain::incident::CustomerRef::Contact(Uuid::from_u128(7))
    );
    assert_eq!(sent.caseorigincode, 1, "a phone call is Phone");
    assert_eq!(sent.prioritycode, 2);
    assert_eq!(sent.routecase, None, "routecase keeps its default (true)");
    match &outcome.ended {
        Ended::IncidentCreated {
            dynamics365_incident_id,
            dynamics365_ticket_number,
        } => {
            assert_eq!(*dynamics365_incident_id, sent.incidentid);
            assert_eq!(dynamics365_ticket_number.as_deref(), Some("CAS-01000-T3S7"));
        }
        other => panic!("{other:?}"),
    }
    let callback: Value = serde_json::from_str(&outcome.callback.unwrap().payload).unwrap();
    assert_eq!(callback["data"]["record"], "incident");
    assert_eq!(
        callback["data"]["dynamics365_ticket_number"],
        "CAS-01000-T3S7"
    );
}

#[tokio::test]
async fn without_a_contact_the_incident_takes_the_fallback_customer_or_fails_clearly() {
    let account = Uuid::from_u128(0xacc);
    let fallback =
        incident_settings(json!({ "fallback_customer": { "table": "account", "id": account } }));
    let setup = setup(
        json!({ "channel": { "type": "email" }, "incidents": fallback }),
        true,
        NOW,
    )
    .await;
    let dataverse = FakeDataverse::default();
    let outcome = run(&setup, &dataverse).await;
    assert_eq!(outcome.ended.state(), HandoffState::Succeeded);
    let sent = dataverse.incidents.lock().unwrap()[0].clone();
    assert_eq!(
        sent.customer,
        crate::domain::incident::CustomerRef::Account(account)
    );
    assert_eq!(sent.caseorigincode, 2, "email is Email");

    let setup = self::setup(json!({ "channel": { "type": "email" } }), true, NOW).await;
    let dataverse = FakeDataverse::default();
    let outcome = run(&setup, &dataverse).await;
    assert_eq!(outcome.ended.state(), HandoffState::Failed);
    assert_eq!(code(&outcome), "incident_customer_missing");
    let diag = outcome.ended.error().unwrap();
    assert!(
        diag.hint.contains("/v1/orgs/acme/"),
        "the hint names the org: {}",
        diag.hint
    );
    assert!(
        dataverse.calls().is_empty(),
        "nothing is sent that Dataverse must refuse"
    );
}

#[tokio::test]
async fn routing_is_called_only_when_the_org_routes_explicitly() {
    let explicit = incident_settings(
        json!({ "routing": "routing_rule", "fallback_customer": { "table": "account", "id": Uuid::from_u128(1) } }),
    );
    let setup = setup(
        json!({ "channel": { "type": "api" }, "incidents": explicit }),
        true,
        NOW,
    )
    .await;
    let dataverse = FakeDataverse::default();
    let outcome = run(&setup, &dataverse).await;
    assert_eq!(dataverse.calls(), ["create_incident", "route_incident"]);
    assert_eq!(
        dataverse.incidents.lock().unwrap()[0].routecase,
        Some(false),
        "never routed twice"
    );
    assert!(kinds(&outcome).contains(&EventKind::IncidentRouted));

    let dataverse = FakeDataverse {
        route_incident: || Err(status(400, None)),
        ..FakeDataverse::default()
    };
    let outcome = run(&setup, &dataverse).await;
    assert_eq!(outcome.ended.state(), HandoffState::Failed);
    assert_eq!(code(&outcome), "incident_routing_failed");
}

#[tokio::test]
async fn an_org_without_a_connection_is_parked_and_the_attempt_not_counted() {
    let setup = setup(json!({}), false, NOW).await;
    let dataverse = FakeDataverse::default();
    let outcome = run(&setup, &dataverse).await;
    assert_eq!(outcome.ended.state(), HandoffState::Queued);
    assert!(matches!(outcome.ended, Ended::Waiting { .. }));
    assert_eq!(code(&outcome), "not_connected");
    // Parked until the patience ends (a minute after the first attempt), to tell the widget.
    assert_eq!(next_attempt_at(&outcome), Some(NOW + 60_000));
    assert!(outcome.callback.is_none() && outcome.delayed_at.is_none());
    assert!(dataverse.calls().is_empty());

    // The store takes the claim's count back and no claim finds it due before then.
    assert!(setup
        .store
        .finish_handoff(&setup.claim, &outcome, NOW)
        .await
        .unwrap());
    let stored = setup.store.handoff("acme", "s-1").await.unwrap().unwrap();
    assert_eq!(stored.attempts, 0);
    let claim = |at| setup.store.claim_handoff(at, 60_000, &[]);
    assert!(claim(NOW + 59_999).await.unwrap().is_none());
    assert!(claim(NOW + 60_000).await.unwrap().is_some());
}

#[tokio::test]
async fn past_the_patience_the_widget_is_told_once_that_the_handoff_is_delayed() {
    // First attempted 61 s ago, still without a connection.
    let setup = setup(json!({}), false, NOW - 61_000).await;
    let outcome = run(&setup, &FakeDataverse::default()).await;
    assert!(matches!(outcome.ended, Ended::Waiting { .. }));
    assert_eq!(outcome.delayed_at, Some(NOW));
    let callback = outcome.callback.as_ref().expect("handoff.delayed");
    assert_eq!(callback.event_type, "handoff.delayed");
    let payload: Value = serde_json::from_str(&callback.payload).unwrap();
    assert_eq!(payload["data"]["reason"]["code"], "not_connected");
    assert_eq!(payload["data"]["session_id"], "s-1");
    assert!(kinds(&outcome).contains(&EventKind::Delayed));
    // Then it waits for a connection until the chat expiry.
    assert_eq!(next_attempt_at(&outcome), Some(NOW - 61_000 + 3_600_000));

    // Told once: a handoff whose record says so is not told again.
    let mut told = setup;
    told.claim.handoff.delayed_at = Some(NOW - 1);
    let again = run(&told, &FakeDataverse::default()).await;
    assert!(again.callback.is_none() && again.delayed_at.is_none());
}

#[tokio::test]
async fn past_the_chat_expiry_the_handoff_fails_without_a_request() {
    let setup = setup(json!({}), true, NOW - 3_600_000).await;
    let dataverse = FakeDataverse::default();
    let outcome = run(&setup, &dataverse).await;
    assert_eq!(outcome.ended.state(), HandoffState::Failed);
    assert_eq!(code(&outcome), "chat_expired");
    assert!(dataverse.calls().is_empty());
    let callback = outcome.callback.as_ref().expect("handoff.failed");
    assert_eq!(callback.event_type, "handoff.failed");
}

#[tokio::test]
async fn an_incident_is_not_ended_by_the_chat_expiry_nor_retried_at_once_past_it() {
    let mut session = verified();
    session["channel"] = json!({ "type": "email" });
    let setup = setup(session, true, NOW - 3_600_000).await;
    let unavailable = FakeDataverse {
        create_incident: || Err(status(503, Some(30))),
        ..Default::default()
    };
    let outcome = run(&setup, &unavailable).await;
    assert_eq!(outcome.ended.state(), HandoffState::Queued, "{outcome:?}");
    assert_eq!(code(&outcome), "dataverse_unavailable");
    assert_eq!(
        next_attempt_at(&outcome),
        Some(NOW + 30_000),
        "the Retry-After, not the chat expiry already past"
    );
}

#[tokio::test]
async fn a_request_the_paused_environment_did_not_send_is_a_wait() {
    let setup = setup(json!({}), true, NOW).await;
    let paused = FakeDataverse {
        create_work_item: || {
            Err(DataverseError::Paused(crate::dynamics::Paused::After429(
                Duration::from_millis(700),
            )))
        },
        ..Default::default()
    };
    let outcome = run(&setup, &paused).await;
    assert!(
        matches!(outcome.ended, Ended::Waiting { .. }),
        "{outcome:?}"
    );
    assert_eq!(code(&outcome), "dataverse_throttled");
    assert_eq!(next_attempt_at(&outcome), Some(NOW + 700));
    assert_eq!(kinds(&outcome).last(), Some(&EventKind::Waiting));
}

#[tokio::test]
async fn transient_failures_are_retried_when_the_service_says() {
    let setup = setup(json!({}), true, NOW).await;
    let unavailable = FakeDataverse {
        create_work_item: || Err(status(503, None)),
        ..Default::default()
    };
    let outcome = run(&setup, &unavailable).await;
    assert_eq!(outcome.ended.state(), HandoffState::Queued);
    assert_eq!(code(&outcome), "dataverse_unavailable");
    assert_eq!(next_attempt_at(&outcome), Some(NOW), "backoff base is zero");
    assert!(outcome.callback.is_none());
    assert_eq!(kinds(&outcome).last(), Some(&EventKind::RetryScheduled));
    // The create (idempotent by its key) was sent three times within the attempt.
    assert_eq!(
        unavailable.calls(),
        ["create_work_item", "create_work_item", "create_work_item"]
    );
    let resent = kinds(&outcome)
        .into_iter()
        .filter(|k| *k == EventKind::RequestRetried)
        .count();
    assert_eq!(resent, 2);

    let throttled = FakeDataverse {
        create_work_item: || Err(status(429, Some(7))),
        ..Default::default()
    };
    let outcome = run(&setup, &throttled).await;
    assert_eq!(code(&outcome), "dataverse_throttled");
    assert_eq!(next_attempt_at(&outcome), Some(NOW + 7_000));
    assert_eq!(
        throttled.calls().len(),
        1,
        "a Retry-After is not resent at once"
    );
}

#[tokio::test]
async fn a_refusal_fails_at_once_with_a_callback() {
    let setup = setup(verified(), true, NOW).await;
    let forbidden = FakeDataverse {
        contacts: || Err(status(403, None)),
        ..Default::default()
    };
    let outcome = run(&setup, &forbidden).await;
    assert_eq!(outcome.ended.state(), HandoffState::Failed);
    assert_eq!(code(&outcome), "missing_privilege");
    assert_eq!(
        forbidden.calls(),
        ["contacts"],
        "no work item after a refusal"
    );
    assert_eq!(outcome.callback.unwrap().event_type, "handoff.failed");

    let rejected = FakeDataverse {
        create_work_item: || Err(status(400, None)),
        ..Default::default()
    };
    let outcome = run(&setup, &rejected).await;
    assert_eq!(code(&outcome), "work_item_rejected");
}

#[tokio::test]
async fn transient_failures_past_the_window_are_given_up() {
    // A retry window shorter than the chat expiry: it ends first.
    let setup = setup(json!({}), true, NOW - 600_000).await;
    let unavailable = FakeDataverse {
        create_work_item: || Err(status(503, None)),
        ..Default::default()
    };
    let connect = FakeConnect(&unavailable);
    let mut ctx = job(&setup, &connect);
    ctx.retry.give_up_after = Duration::from_secs(300);
    let outcome = super::attempt(&ctx, &setup.claim).await;
    assert_eq!(outcome.ended.state(), HandoffState::Failed);
    assert_eq!(code(&outcome), "retries_exhausted");
    assert!(outcome
        .ended
        .error()
        .and_then(|d| d.detail.as_deref())
        .unwrap()
        .contains("dataverse_unavailable"));
}

#[tokio::test]
async fn unreadable_sessions_and_secrets_fail_with_their_code() {
    let mut setup1 = setup(json!({}), true, NOW).await;
    setup1.claim.handoff.redacted_at = Some(NOW);
    let outcome = run(&setup1, &FakeDataverse::default()).await;
    assert_eq!(outcome.ended.state(), HandoffState::Failed);
    assert_eq!(code(&outcome), "payload_unreadable");

    let mut setup2 = setup(json!({}), true, NOW).await;
    let other = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap();
    setup2.vault = Vault::new(Keyring::new(other, Vec::new()));
    let dataverse = FakeDataverse::default();
    let outcome = run(&setup2, &dataverse).await;
    assert_eq!(code(&outcome), "connection_secret_unreadable");
    assert!(dataverse.calls().is_empty());
}

#[tokio::test]
async fn a_panic_is_recorded_as_a_transient_internal_error() {
    let setup = setup(json!({}), true, NOW).await;
    let dataverse = FakeDataverse::default();
    let connect = FakeConnect(&dataverse);
    let outcome = super::panicked(&job(&setup, &connect), &setup.claim, "boom");
    assert_eq!(outcome.ended.state(), HandoffState::Queued);
    assert_eq!(code(&outcome), "internal_error");
    assert_eq!(next_attempt_at(&outcome), Some(NOW));
    assert_eq!(kinds(&outcome)[0], EventKind::AttemptPanicked);
}

#[tokio::test]
async fn a_payload_version_this_build_does_not_read_fails_as_payload_unreadable() {
    // Version 1 rows that are still version 1 did not validate at the startup upgrade.
    for version in [1, 9] {
        let setup = setup_with(verified(), true, NOW, version).await;
        let dataverse = FakeDataverse::default();
        let outcome = run(&setup, &dataverse).await;
        assert_eq!(outcome.ended.state(), HandoffState::Failed, "{version}");
        assert_eq!(code(&outcome), "payload_unreadable");
        assert!(dataverse.calls().is_empty());
    }
}

#[tokio::test]
async fn a_later_attempt_takes_the_contact_the_earlier_one_resolved_until_a_replay() {
    let verified = json!({ "contact": { "email": "ada@example.com", "verified": true } });
    let mut setup = setup(verified, true, NOW).await;
    // The lookup succeeds; the create meets a paused environment.
    let paused = FakeDataverse {
        create_work_item: || {
            Err(DataverseError::Paused(crate::dynamics::Paused::After429(
                Duration::from_millis(700),
            )))
        },
        ..Default::default()
    };
    let first = run(&setup, &paused).await;
    assert_eq!(paused.calls(), ["contacts", "create_work_item"]);
    assert_eq!(first.contact_match, Some(ContactMatch::Linked));
    assert!(setup
        .store
        .finish_handoff(&setup.claim, &first, NOW)
        .await
        .unwrap());

    // The next attempt sends no second lookup, links the same contact, and says so.
    setup.claim = setup
        .store
        .claim_handoff(NOW + 700, 60_000, &[])
        .await
        .unwrap()
        .expect("due after the pause");
    let dataverse = FakeDataverse {
        contacts: || panic!("looked up again"),
        ..Default::default()
    };
    let second = run(&setup, &dataverse).await;
    assert_eq!(dataverse.calls(), ["create_work_item"]);
    assert_eq!(second.ended.state(), HandoffState::Succeeded);
    assert_eq!(second.contact_match, Some(ContactMatch::Linked));
    assert_eq!(second.contact_id, Some(Uuid::from_u128(7)));
    let resolved = second
        .events
        .iter()
        .find(|e| e.kind == EventKind::ContactResolved)
        .expect("on the timeline");
    assert_eq!(resolved.detail["reused"], true);

    // A replay (after the admin fixed something) looks the contact up again.
    let failed = Outcome {
        ended: Ended::Failed(crate::domain::catalog::MISSING_PRIVILEGE.diagnose(None)),
        ..second
    };
    assert!(setup
        .store
        .finish_handoff(&setup.claim, &failed, NOW + 60_000)
        .await
        .unwrap());
    setup
        .store
        .replay_failed("acme", None, NOW + 61_000)
        .await
        .unwrap();
    setup.claim = setup
        .store
        .claim_handoff(NOW + 61_000, 60_000, &[])
        .await
        .unwrap()
        .expect("replayed");
    let dataverse = FakeDataverse::default();
    run(&setup, &dataverse).await;
    assert_eq!(dataverse.calls(), ["contacts", "create_work_item"]);
}
