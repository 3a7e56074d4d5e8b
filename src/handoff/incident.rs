//! The `incident` create body for a session on a channel that is not a chat (ARCHITECTURE.md,
//! "Every channel"), and its deterministic key. Column limits from the table reference
//! (`../shared/DATAVERSE.md` part 2, §1.1): `title` String(200), `description` Memo(2000),
//! both counted in UTF-16 code units.

use std::time::Instant;

use serde_json::json;
use uuid::Uuid;

use super::job::{Connect, HandoffDataverse, JobContext};
use super::work_item::{cut, transcript_note, KEY_NAMESPACE};
use super::{quickly, Progress};
use crate::domain::catalog::{self, Diagnosis};
use crate::domain::handoff::QueuedMessage;
use crate::domain::incident::{CaseRouting, CustomerRef, IncidentSettings};
use crate::domain::{EventKind, HandoffRequest, OrgId, SessionId};
use crate::dynamics::{CreateOutcome, DataverseError, Explained, IncidentCreate};

/// `incident.title`: String(200).
pub const TITLE_MAX: usize = 200;
/// `incident.description`: Memo(2000).
pub const DESCRIPTION_MAX: usize = 2000;

/// `incidentid` of the incident of one session: UUIDv5 of `"incident:{org_id}/{session_id}"`,
/// so a retry or a replay finds the incident an earlier attempt created instead of opening
/// a second case.
pub fn incident_id(org: &OrgId, session: &SessionId) -> Uuid {
    Uuid::new_v5(
        &KEY_NAMESPACE,
        format!("incident:{org}/{session}").as_bytes(),
    )
}

/// `"{summary} - {customer}"` within [`TITLE_MAX`]: the summary is cut so the customer's
/// name (else email, else phone, else `Anonymous`) always shows, as OpenCX's own titles do
/// (`<classification> - <name or email>`, fallback `Support - Anonymous`). OpenCX's
/// `reason` is a code such as `ai_decided_to_handoff_the_conversation` that tells a
/// representative nothing, so it goes in the description instead.
pub fn title(request: &HandoffRequest) -> String {
    let customer = &request.customer;
    let who = customer
        .name
        .as_deref()
        .or(customer.email.as_ref().map(|e| e.as_str()))
        .or(customer.phone.as_deref())
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .unwrap_or("Anonymous");
    let what = request.summary.trim();
    let what = if what.is_empty() { "Support" } else { what };
    let tail = format!(" - {}", cut(who, TITLE_MAX / 2));
    let room = TITLE_MAX.saturating_sub(tail.encode_utf16().count());
    format!("{}{tail}", cut(what, room))
}

/// The description within [`DESCRIPTION_MAX`]: the channel, the summary, then sentiment,
/// reason, language, the customer's details and the OpenCX session id, one per line. Only
/// the summary is cut (the rest is short and bounded), so the details survive a long
/// summary; the transcript goes in the note, never here.
pub fn description(request: &HandoffRequest) -> String {
    let customer = &request.customer;
    let mut after = Vec::new();
    for (label, value) in [
        ("Sentiment", request.sentiment.as_deref()),
        ("Reason", request.reason.as_deref()),
        ("Language", request.language.as_deref()),
        ("Customer", customer.name.as_deref()),
        ("Email", customer.email.as_ref().map(|e| e.as_str())),
        ("Phone", customer.phone.as_deref()),
        ("OpenCX session", Some(request.session_id.as_str())),
    ] {
        if let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) {
            after.push(format!("{label}: {}", cut(value, 200)));
        }
    }
    let head = format!("Channel: {}\nSummary: ", request.channel.as_str());
    let tail = format!("\n{}", after.join("\n"));
    let units = |s: &str| s.encode_utf16().count();
    let room = DESCRIPTION_MAX.saturating_sub(units(&head) + units(&tail));
    cut(
        &format!("{head}{}{tail}", cut(&request.summary, room)),
        DESCRIPTION_MAX,
    )
}

/// The incident for a session: its key, title, description, the org's case origin for the
/// channel and priority, `customer` (the linked contact or the fallback customer), the
/// owner, `routecase: false` when the bridge routes it itself, and the transcript note.
pub fn create_body(
    request: &HandoffRequest,
    incidentid: Uuid,
    customer: CustomerRef,
    settings: &IncidentSettings,
    history: &[QueuedMessage],
) -> IncidentCreate {
    IncidentCreate {
        incidentid,
        title: title(request),
        description: description(request),
        caseorigincode: settings.case_origin(&request.channel),
        prioritycode: settings.priority.value(),
        customer,
        owner: settings.owner,
        routecase: (settings.routing == CaseRouting::RoutingRule).then_some(false),
        notes: transcript_note(request, history).into_iter().collect(),
    }
}

/// The incident a handoff created or found: its key and case number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIncident {
    pub incidentid: Uuid,
    /// `ticketnumber`, e.g. `CAS-01234-X1Y2Z3`.
    pub ticketnumber: Option<String>,
}

/// Why no routed incident came of an attempt.
pub(super) enum IncidentStop {
    /// No linked contact and no fallback customer (`incident_customer_missing`).
    NoCustomer(Diagnosis),
    /// A Dataverse request at `step` (`incident` or `routing`) failed.
    Dataverse {
        step: &'static str,
        err: DataverseError,
        explained: Explained,
    },
}

/// Creates the session's incident (bound to the contact on `progress`, else the fallback
/// customer) with its transcript note in the same request, then routes it when the org
/// routes explicitly (`routing_rule`). Idempotent: the key is the session's, so a retry
/// finds the case an earlier attempt created and reads its case number back; routing is
/// sent again on such a retry (at least once, never on create as well).
pub(super) async fn hand_off<C: Connect>(
    ctx: &JobContext<'_, C>,
    client: &C::Client,
    request: &HandoffRequest,
    history: &[QueuedMessage],
    settings: &IncidentSettings,
    progress: &mut Progress<'_>,
) -> Result<NewIncident, IncidentStop> {
    let customer = match (progress.contact_id, settings.fallback_customer) {
        (Some(contact), _) => CustomerRef::Contact(contact),
        (None, Some(fallback)) => fallback,
        (None, None) => {
            let matched = progress.contact_match.map_or("unknown", |m| m.as_str());
            return Err(IncidentStop::NoCustomer(
                catalog::INCIDENT_CUSTOMER_MISSING
                    .diagnose(format!(
                        "contact_match {matched}, and the connection has no incidents.fallback_customer"
                    ))
                    .for_org(request.org_id.as_str()),
            ));
        }
    };
    let incidentid = incident_id(&request.org_id, &request.session_id);
    let body = create_body(request, incidentid, customer, settings, history);
    let started = Instant::now();
    let (outcome, row) = quickly(&ctx.retry, "incident", progress, || {
        client.create_incident(&body)
    })
    .await
    .map_err(|err| IncidentStop::Dataverse {
        step: "incident",
        explained: err.explain_as(catalog::INCIDENT_REJECTED),
        err,
    })?;
    let (customer_table, customer_id) = customer.entity_set();
    progress.event(
        EventKind::IncidentCreated,
        json!({
            "incidentid": incidentid,
            "ticketnumber": row.ticketnumber,
            "already_existed": outcome == CreateOutcome::AlreadyExisted,
            "customer": format!("/{customer_table}({customer_id})"),
            "fallback_customer": progress.contact_id.is_none(),
            "caseorigincode": body.caseorigincode,
            "transcript_note": !body.notes.is_empty(),
            "duration_ms": started.elapsed().as_millis() as u64,
        }),
    );
    if settings.routing == CaseRouting::RoutingRule {
        let started = Instant::now();
        quickly(&ctx.retry, "routing", progress, || {
            client.route_incident(incidentid)
        })
        .await
        .map_err(|err| IncidentStop::Dataverse {
            step: "routing",
            explained: err.explain_as(catalog::INCIDENT_ROUTING_FAILED),
            err,
        })?;
        progress.event(
            EventKind::IncidentRouted,
            json!({
                "incidentid": incidentid,
                "action": "msdyn_ApplyRoutingRuleEntityRecord",
                "duration_ms": started.elapsed().as_millis() as u64,
            }),
        );
    }
    Ok(NewIncident {
        incidentid,
        ticketnumber: row.ticketnumber,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Customer, EmailAddress};

    fn request(summary: &str, name: Option<&str>) -> HandoffRequest {
        HandoffRequest {
            org_id: OrgId::parse("acme").unwrap(),
            session_id: SessionId::parse("s1").unwrap(),
            channel: Channel::parse("email"),
            customer: Customer {
                name: name.map(str::to_owned),
                email: Some(EmailAddress::parse("ada@example.com").unwrap()),
                ..Default::default()
            },
            summary: summary.into(),
            language: Some("en".into()),
            sentiment: Some("angry".into()),
            reason: Some("ai_decided_to_handoff_the_conversation".into()),
        }
    }

    #[test]
    fn the_title_keeps_the_customer_when_the_summary_is_cut() {
        assert_eq!(
            title(&request("Damaged parcel", Some("Ada"))),
            "Damaged parcel - Ada"
        );
        assert_eq!(
            title(&request("Damaged parcel", None)),
            "Damaged parcel - ada@example.com"
        );
        let mut anonymous = request("", None);
        anonymous.customer.email = None;
        assert_eq!(title(&anonymous), "Support - Anonymous");
        let long = title(&request(&"😀".repeat(300), Some("Ada")));
        assert!(long.encode_utf16().count() <= TITLE_MAX);
        assert!(long.ends_with(" - Ada"));
    }

    #[test]
    fn the_description_is_cut_at_the_summary_within_the_column() {
        let short = description(&request("Damaged parcel", Some("Ada")));
        assert_eq!(
            short,
            "Channel: email\nSummary: Damaged parcel\nSentiment: angry\nReason: ai_decided_to_handoff_the_conversation\nLanguage: en\nCustomer: Ada\nEmail: ada@example.com\nOpenCX session: s1"
        );
        let long = description(&request(&"é😀".repeat(2000), Some("Ada")));
        assert!(long.encode_utf16().count() <= DESCRIPTION_MAX);
        assert!(long.encode_utf16().count() > DESCRIPTION_MAX - 3);
        assert!(long.ends_with("Email: ada@example.com\nOpenCX session: s1"));
    }

    #[test]
    fn the_key_is_stable_and_not_the_work_item_key() {
        let org = OrgId::parse("acme").unwrap();
        let s = SessionId::parse("s1").unwrap();
        assert_eq!(incident_id(&org, &s), incident_id(&org, &s));
        assert_ne!(
            incident_id(&org, &s),
            super::super::work_item::activity_id(&org, &s)
        );
    }
}
