//! What a session on a channel that is not a chat becomes: an `incident` (a case), with the
//! org's settings for it. Facts from `../shared/DATAVERSE.md` part 2, §1 (the `incident`
//! table reference: `caseorigincode`, `prioritycode`, `customerid`, `routecase`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Channel;

/// `incident.caseorigincode` 1: Phone.
pub const ORIGIN_PHONE: i64 = 1;
/// `incident.caseorigincode` 2: Email.
pub const ORIGIN_EMAIL: i64 = 2;
/// `incident.caseorigincode` 3: Web.
pub const ORIGIN_WEB: i64 = 3;

/// `incident.prioritycode`: 1 High, 2 Normal, 3 Low (a stock org has no 4, whatever
/// OpenCX's own 1–4 setting says).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    High,
    #[default]
    Normal,
    Low,
}

impl Priority {
    /// The `prioritycode` value.
    pub fn value(self) -> i64 {
        match self {
            Self::High => 1,
            Self::Normal => 2,
            Self::Low => 3,
        }
    }
}

/// How a new incident reaches a queue or a representative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CaseRouting {
    /// Dataverse routes it when it is created: `routecase` is left at its default (true)
    /// and the environment's routing trigger runs ("If cases are created programmatically,
    /// the RouteCase field is set to Yes by default").
    #[default]
    OnCreate,
    /// The bridge sends `routecase: false` and then calls the unified routing action
    /// `msdyn_ApplyRoutingRuleEntityRecord` itself: never both, or the case is routed twice.
    RoutingRule,
}

/// A row the incident's `customerid` can name: an account or a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "table", content = "id", rename_all = "snake_case")]
pub enum CustomerRef {
    Account(Uuid),
    Contact(Uuid),
}

impl CustomerRef {
    /// The entity set and key, e.g. `accounts`, the GUID.
    pub fn entity_set(self) -> (&'static str, Uuid) {
        match self {
            Self::Account(id) => ("accounts", id),
            Self::Contact(id) => ("contacts", id),
        }
    }
}

/// A row the incident's `ownerid` can name: a user or a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "table", content = "id", rename_all = "snake_case")]
pub enum OwnerRef {
    Systemuser(Uuid),
    Team(Uuid),
}

impl OwnerRef {
    /// The entity set and key, e.g. `teams`, the GUID.
    pub fn entity_set(self) -> (&'static str, Uuid) {
        match self {
            Self::Systemuser(id) => ("systemusers", id),
            Self::Team(id) => ("teams", id),
        }
    }
}

/// An org's incident settings, validated (`connection::incidents` builds them from the
/// admin's input; the store keeps them as this JSON on the connection, `NULL` reading as
/// [`IncidentSettings::default`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentSettings {
    /// Whether non-chat sessions become incidents (default true); false records them as
    /// `skipped / unsupported_channel`.
    pub enabled: bool,
    /// The customer an incident is bound to when the visitor has no linked contact
    /// (`customerid` is required: `0x80044410`).
    pub fallback_customer: Option<CustomerRef>,
    pub priority: Priority,
    /// `caseorigincode` per channel, over [`default_case_origin`].
    #[serde(default)]
    pub case_origin: BTreeMap<String, i64>,
    pub owner: Option<OwnerRef>,
    pub routing: CaseRouting,
}

impl Default for IncidentSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            fallback_customer: None,
            priority: Priority::Normal,
            case_origin: BTreeMap::new(),
            owner: None,
            routing: CaseRouting::OnCreate,
        }
    }
}

impl IncidentSettings {
    /// The `caseorigincode` of a session on `channel`: the org's own value for it, else
    /// [`default_case_origin`].
    pub fn case_origin(&self, channel: &Channel) -> i64 {
        self.case_origin
            .get(channel.as_str())
            .copied()
            .unwrap_or_else(|| default_case_origin(channel))
    }
}

/// The stock `caseorigincode` of a channel: phone and web voice calls are Phone (1), email is
/// Email (2), anything else (`api`, a channel OpenCX adds later) is Web (3).
pub fn default_case_origin(channel: &Channel) -> i64 {
    match channel.as_str() {
        "phone_voice" | "web_voice" => ORIGIN_PHONE,
        "email" => ORIGIN_EMAIL,
        _ => ORIGIN_WEB,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_origins_default_by_channel_and_follow_the_org() {
        let mut settings = IncidentSettings::default();
        assert_eq!(settings.case_origin(&Channel::parse("email")), 2);
        assert_eq!(settings.case_origin(&Channel::parse("phone_voice")), 1);
        assert_eq!(settings.case_origin(&Channel::parse("web_voice")), 1);
        assert_eq!(settings.case_origin(&Channel::parse("api")), 3);
        settings.case_origin.insert("api".into(), 700_610_000);
        assert_eq!(settings.case_origin(&Channel::parse("api")), 700_610_000);
    }

    #[test]
    fn settings_round_trip_as_stored() {
        let settings = IncidentSettings {
            fallback_customer: Some(CustomerRef::Account(Uuid::from_u128(7))),
            owner: Some(OwnerRef::Team(Uuid::from_u128(8))),
            routing: CaseRouting::RoutingRule,
            priority: Priority::High,
            ..Default::default()
        };
        let json = serde_json::to_string(&settings).unwrap();
        assert!(json.contains(r#""fallback_customer":{"table":"account","id":"#));
        assert_eq!(
            serde_json::from_str::<IncidentSettings>(&json).unwrap(),
            settings
        );
    }
}
