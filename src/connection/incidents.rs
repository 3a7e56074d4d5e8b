//! The connection's incident settings (`incidents` in `PUT …/connection`), validated into
//! [`IncidentSettings`], and the two test-and-save checks that prove what the configured
//! paths need before anything is saved: `privileges` (the application user's roles hold
//! every privilege a handoff will use) and `incidents` (the fallback customer and the owner
//! exist and can be read).

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::{Check, CheckStatus, ValidConnection};
use crate::domain::catalog::{self, Diagnosis};
use crate::domain::incident::{CaseRouting, CustomerRef, IncidentSettings, OwnerRef, Priority};
use crate::domain::{parse_guid, Channel};
use crate::dynamics::DataverseClient;

/// `incidents` in the connection body: what a session on a channel that is not a chat
/// (`email`, `phone_voice`, `web_voice`, `api`, …) becomes. Every field is optional; the
/// defaults are OpenCX's rule (such sessions become incidents), priority Normal, the stock
/// case origins, no owner, routed by Dataverse on create. Unknown fields are refused.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentsInput {
    /// Whether non-chat sessions become incidents (default `true`); `false` records them
    /// as `skipped / unsupported_channel`.
    pub enabled: Option<bool>,
    /// The account or contact an incident is bound to when the visitor has no linked
    /// contact (Dataverse requires a customer on every case). Without one, such sessions
    /// fail with `incident_customer_missing`.
    pub fallback_customer: Option<RecordInput>,
    /// `high`, `normal` (default) or `low`: `prioritycode` 1, 2, 3 (the numbers are
    /// accepted too; OpenCX's 4 is not a value in Dynamics).
    #[schema(value_type = Option<String>)]
    pub priority: Option<Value>,
    /// `caseorigincode` per channel over the defaults (`phone_voice` and `web_voice` 1
    /// Phone, `email` 2 Email, anything else 3 Web), e.g. `{"api": 700610000}`.
    pub case_origin: Option<BTreeMap<String, i64>>,
    /// A user or team that owns new incidents (`ownerid`); default: the application user,
    /// until routing assigns them.
    pub owner: Option<RecordInput>,
    /// `on_create` (default: Dataverse routes programmatically created cases, `routecase`
    /// true) or `routing_rule` (the bridge sends `routecase: false`, then calls
    /// `msdyn_ApplyRoutingRuleEntityRecord`).
    pub routing: Option<String>,
}

/// A row named by its table and GUID: `{"table": "account", "id": "…"}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordInput {
    pub table: Option<String>,
    pub id: Option<String>,
}

/// The settings in `input` (absent: the defaults), or `incident_settings_invalid` naming
/// the first field that breaks its rule.
pub fn validate(input: Option<&IncidentsInput>) -> Result<IncidentSettings, Diagnosis> {
    let invalid = |why: String| catalog::INCIDENT_SETTINGS_INVALID.diagnose(why);
    let Some(input) = input else {
        return Ok(IncidentSettings::default());
    };
    let record = |field: &str, r: &RecordInput| -> Result<(String, Uuid), Diagnosis> {
        let table = r.table.as_deref().map(str::trim).unwrap_or_default();
        let id = parse_guid(r.id.as_deref().map(str::trim).unwrap_or_default())
            .map_err(|why| invalid(format!("incidents.{field}.id {why}")))?;
        Ok((table.to_owned(), id))
    };
    let fallback_customer = match &input.fallback_customer {
        None => None,
        Some(r) => Some(match record("fallback_customer", r)? {
            (t, id) if t == "account" => CustomerRef::Account(id),
            (t, id) if t == "contact" => CustomerRef::Contact(id),
            (t, _) => {
                return Err(invalid(format!(
                    "incidents.fallback_customer.table '{t}' must be account or contact (the tables incident.customerid can name)"
                )))
            }
        }),
    };
    let owner = match &input.owner {
        None => None,
        Some(r) => Some(match record("owner", r)? {
            (t, id) if t == "systemuser" => OwnerRef::Systemuser(id),
            (t, id) if t == "team" => OwnerRef::Team(id),
            (t, _) => {
                return Err(invalid(format!(
                    "incidents.owner.table '{t}' must be systemuser or team"
                )))
            }
        }),
    };
    let priority = match &input.priority {
        None | Some(Value::Null) => Priority::Normal,
        Some(v) => match (v.as_str(), v.as_i64()) {
            (Some("high"), _) | (_, Some(1)) => Priority::High,
            (Some("normal"), _) | (_, Some(2)) => Priority::Normal,
            (Some("low"), _) | (_, Some(3)) => Priority::Low,
            (_, Some(4)) => return Err(invalid(
                "incidents.priority 4 is OpenCX's scale (1-4); Dynamics' prioritycode is 1 High, 2 Normal, 3 Low: use high, normal or low".into(),
            )),
            _ => return Err(invalid(format!(
                "incidents.priority {v} must be high, normal or low (prioritycode 1, 2 or 3)"
            ))),
        },
    };
    let mut case_origin = BTreeMap::new();
    for (channel, &code) in input.case_origin.iter().flatten() {
        let name_ok = !channel.is_empty()
            && channel.len() <= 50
            && channel
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !name_ok {
            return Err(invalid(format!(
                "incidents.case_origin key '{channel}' must be a channel name such as email or phone_voice (1 to 50 of a-z, 0-9, _)"
            )));
        }
        if Channel::parse(channel).is_chat() {
            return Err(invalid(format!(
                "incidents.case_origin.{channel}: {channel} is a chat channel; its sessions become live work items, not incidents"
            )));
        }
        if !(1..=i64::from(i32::MAX)).contains(&code) {
            return Err(invalid(format!(
                "incidents.case_origin.{channel} {code} must be a caseorigincode value from 1 to {} (1 Phone, 2 Email, 3 Web, or an option the org added)",
                i32::MAX
            )));
        }
        case_origin.insert(channel.clone(), code);
    }
    let routing = match input.routing.as_deref().map(str::trim) {
        None | Some("on_create") => CaseRouting::OnCreate,
        Some("routing_rule") => CaseRouting::RoutingRule,
        Some(other) => {
            return Err(invalid(format!(
                "incidents.routing '{other}' must be on_create or routing_rule"
            )))
        }
    };
    Ok(IncidentSettings {
        enabled: input.enabled.unwrap_or(true),
        fallback_customer,
        priority,
        case_origin,
        owner,
        routing,
    })
}

/// The settings stored on a connection (`connections.incidents`, JSON; `NULL` reads as the
/// defaults), or `incident_settings_invalid` when the stored text cannot be read.
pub fn stored(raw: Option<&str>) -> Result<IncidentSettings, Diagnosis> {
    match raw {
        None => Ok(IncidentSettings::default()),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            catalog::INCIDENT_SETTINGS_INVALID
                .diagnose(format!("the stored incident settings cannot be read: {e}"))
        }),
    }
}

/// The privileges a connection's handoffs use, each with what it is for: reading contacts,
/// creating live work items (an activity table: its privileges are the shared
/// `prv…Activity` ones), their context items and the transcript note; creating contacts
/// with `create_contact_if_missing`; creating and reading incidents when they are on, and
/// reading the fallback account. Append and AppendTo are not probed (a role that can create
/// these rows nearly always has them; a refusal still names the privilege on the record).
pub fn required_privileges(valid: &ValidConnection) -> Vec<(&'static str, &'static str)> {
    let mut needed = vec![
        (
            "prvReadContact",
            "find the visitor's contact by verified email",
        ),
        (
            "prvCreateActivity",
            "create live work items (a Conversation is an activity)",
        ),
        (
            "prvCreatemsdyn_ocliveworkitemcontextitem",
            "add the context items to a live work item",
        ),
        ("prvCreateNote", "add the transcript note"),
    ];
    if valid.create_contact_if_missing {
        needed.push((
            "prvCreateContact",
            "create a contact for a verified visitor (create_contact_if_missing)",
        ));
    }
    let incidents = &valid.incidents;
    if incidents.enabled {
        needed.push((
            "prvCreateIncident",
            "create incidents for non-chat sessions",
        ));
        needed.push(("prvReadIncident", "read back the incident's case number"));
        if matches!(incidents.fallback_customer, Some(CustomerRef::Account(_))) {
            needed.push(("prvReadAccount", "bind the fallback customer account"));
        }
    }
    needed
}

/// The `privileges` check: `RetrieveUserPrivileges` for the application user (`user_id`
/// from `WhoAmI`), compared with [`required_privileges`]; fails with `missing_privilege`
/// naming each one missing and what it is for.
pub async fn check_privileges(
    client: &DataverseClient,
    valid: &ValidConnection,
    user_id: Uuid,
) -> Check {
    let started = Instant::now();
    let held = match client.user_privileges(user_id).await {
        Ok(held) => held,
        Err(err) => {
            return Check::diagnosed(
                "privileges",
                CheckStatus::Fail,
                err.explain().diagnosis,
                started,
            )
        }
    };
    let needed = required_privileges(valid);
    let missing: Vec<String> = needed
        .iter()
        .filter(|(name, _)| !held.iter().any(|h| h.eq_ignore_ascii_case(name)))
        .map(|(name, why)| format!("{name} ({why})"))
        .collect();
    if missing.is_empty() {
        return Check::pass(
            "privileges",
            format!(
                "The application user's roles hold the {} privileges the handoffs use.",
                needed.len()
            ),
            started,
        );
    }
    Check::diagnosed(
        "privileges",
        CheckStatus::Fail,
        catalog::MISSING_PRIVILEGE.diagnose(format!(
            "RetrieveUserPrivileges for the application user (user id {user_id}) lacks: {}",
            missing.join(", ")
        )),
        started,
    )
}

/// The `incidents` check: with incidents on, the fallback customer and the owner exist
/// (read by id); no fallback customer is a warning (`fallback_customer_missing`: sessions
/// without a linked contact will fail), a missing row a failure.
pub async fn check_incidents(client: &DataverseClient, settings: &IncidentSettings) -> Check {
    let started = Instant::now();
    if !settings.enabled {
        return Check::pass(
            "incidents",
            "Incidents are off (incidents.enabled = false): non-chat sessions are recorded as skipped.".into(),
            started,
        );
    }
    let fail = |diag: Diagnosis| Check::diagnosed("incidents", CheckStatus::Fail, diag, started);
    let fallback = match settings.fallback_customer {
        None => None,
        Some(customer) => {
            let (set, id) = customer.entity_set();
            let (columns, name) = match customer {
                CustomerRef::Account(_) => ("accountid,name", "name"),
                CustomerRef::Contact(_) => ("contactid,fullname", "fullname"),
            };
            match client.read_record(set, id, columns).await {
                Ok(Some(row)) => Some(display(&row, name, id)),
                Ok(None) => {
                    return fail(catalog::FALLBACK_CUSTOMER_NOT_FOUND.diagnose(format!(
                        "incidents.fallback_customer: no {} {id}",
                        set.trim_end_matches('s')
                    )))
                }
                Err(err) => return fail(err.explain().diagnosis),
            }
        }
    };
    if let Some(owner) = settings.owner {
        let (set, id) = owner.entity_set();
        let columns = match owner {
            OwnerRef::Systemuser(_) => "systemuserid,fullname",
            OwnerRef::Team(_) => "teamid,name",
        };
        match client.read_record(set, id, columns).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                return fail(catalog::INCIDENT_OWNER_NOT_FOUND.diagnose(format!(
                    "incidents.owner: no {} {id}",
                    set.trim_end_matches('s')
                )))
            }
            Err(err) => return fail(err.explain().diagnosis),
        }
    }
    let routing = match settings.routing {
        CaseRouting::OnCreate => "routed by Dataverse on create",
        CaseRouting::RoutingRule => "routed by the bridge with msdyn_ApplyRoutingRuleEntityRecord",
    };
    match fallback {
        Some(name) => Check::pass(
            "incidents",
            format!("Non-chat sessions become incidents ({routing}); without a linked contact they name the fallback customer '{name}'."),
            started,
        ),
        None => Check::diagnosed(
            "incidents",
            CheckStatus::Warn,
            catalog::FALLBACK_CUSTOMER_MISSING.diagnose(format!(
                "non-chat sessions become incidents ({routing}) only when the visitor's verified email links a contact"
            )),
            started,
        ),
    }
}

/// A row's display name (`column`), else its id.
fn display(row: &Value, column: &str, id: Uuid) -> String {
    row[column]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(json: serde_json::Value) -> IncidentsInput {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn absent_settings_are_the_defaults() {
        assert_eq!(validate(None).unwrap(), IncidentSettings::default());
        assert!(IncidentSettings::default().enabled);
    }

    #[test]
    fn each_bad_field_is_named() {
        for (json, field) in [
            (
                serde_json::json!({"priority": 4}),
                "incidents.priority 4 is OpenCX's scale",
            ),
            (
                serde_json::json!({"priority": "urgent"}),
                "incidents.priority \"urgent\"",
            ),
            (
                serde_json::json!({"fallback_customer": {"table": "lead", "id": "00000000-0000-0000-0000-000000000001"}}),
                "incidents.fallback_customer.table 'lead'",
            ),
            (
                serde_json::json!({"fallback_customer": {"table": "account", "id": "x"}}),
                "incidents.fallback_customer.id",
            ),
            (
                serde_json::json!({"owner": {"table": "queue", "id": "00000000-0000-0000-0000-000000000001"}}),
                "incidents.owner.table 'queue'",
            ),
            (
                serde_json::json!({"case_origin": {"web": 3}}),
                "incidents.case_origin.web: web is a chat channel",
            ),
            (
                serde_json::json!({"case_origin": {"email": 0}}),
                "incidents.case_origin.email 0",
            ),
            (
                serde_json::json!({"case_origin": {"E-mail": 2}}),
                "incidents.case_origin key 'E-mail'",
            ),
            (
                serde_json::json!({"routing": "both"}),
                "incidents.routing 'both'",
            ),
        ] {
            let diag = validate(Some(&input(json.clone()))).unwrap_err();
            assert_eq!(diag.code, "incident_settings_invalid");
            let detail = diag.detail.unwrap();
            assert!(detail.starts_with(field), "{json}: {detail}");
        }
    }

    #[test]
    fn good_settings_are_kept() {
        let settings = validate(Some(&input(serde_json::json!({
            "fallback_customer": {"table": "account", "id": "{0A0B0C0D-0000-4000-8000-000000000001}"},
            "priority": "high",
            "case_origin": {"api": 700610000},
            "owner": {"table": "team", "id": "0a0b0c0d-0000-4000-8000-000000000002"},
            "routing": "routing_rule",
        }))))
        .unwrap();
        assert_eq!(
            settings.fallback_customer,
            Some(CustomerRef::Account(Uuid::from_u128(
                0x0a0b0c0d_0000_4000_8000_000000000001
            )))
        );
        assert_eq!(settings.priority, Priority::High);
        assert_eq!(settings.case_origin(&Channel::parse("api")), 700_610_000);
        assert_eq!(settings.routing, CaseRouting::RoutingRule);
    }
}
