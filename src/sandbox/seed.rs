//! The sandbox seed: tenants and their app registrations, contacts, workstreams, queues,
//! and a ready-made demo connection.

use serde::Deserialize;
use serde_json::Value;

/// The built-in seed (a copy of `fixtures/sandbox/seed.json` compiled in).
const BUILTIN: &str = include_str!("../../fixtures/sandbox/seed.json");

#[derive(Debug, Clone, Deserialize)]
pub struct Seed {
    /// `expires_in` of issued tokens, in seconds.
    #[serde(default = "default_lifetime")]
    pub token_lifetime_secs: u64,
    pub organization_id: String,
    pub business_unit_id: String,
    pub tenants: Vec<Tenant>,
    /// Contact rows (`contactid`, `fullname`, `emailaddress1`, `statecode`, …).
    pub contacts: Vec<Value>,
    /// Workstream rows (`msdyn_liveworkstreamid`, `msdyn_name`, `msdyn_streamsource`, …).
    pub workstreams: Vec<Value>,
    /// Queue rows (`queueid`, `name`).
    #[serde(default)]
    pub queues: Vec<Value>,
    /// Account rows (`accountid`, `name`, `statecode`): what an incident's fallback customer
    /// can name.
    #[serde(default)]
    pub accounts: Vec<Value>,
    /// User rows (`systemuserid`, `fullname`) and team rows (`teamid`, `name`): what an
    /// incident's owner can name.
    #[serde(default)]
    pub systemusers: Vec<Value>,
    #[serde(default)]
    pub teams: Vec<Value>,
    pub demo: DemoConnection,
    /// Faults in force from the start (see `Fault`).
    #[serde(default)]
    pub faults: Vec<super::Fault>,
    /// Service protection limits in force from the start.
    #[serde(default)]
    pub service_protection: Option<super::ServiceProtection>,
    /// OpenCX's API keys, sessions and histories.
    #[serde(default)]
    pub opencx: super::opencx::OpenCxSeed,
}

fn default_lifetime() -> u64 {
    3599
}

#[derive(Debug, Clone, Deserialize)]
pub struct Tenant {
    pub tenant_id: String,
    #[serde(default)]
    pub domains: Vec<String>,
    pub apps: Vec<App>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct App {
    pub client_id: String,
    pub secrets: Vec<ClientSecret>,
    /// Whether the app is an application user of the environment.
    pub application_user: bool,
    /// Whether the application user has a security role.
    #[serde(default = "yes")]
    pub security_role: bool,
    /// The user id WhoAmI reports.
    pub user_id: String,
    /// The privileges its security roles hold (`RetrieveUserPrivileges`, and what every
    /// request is checked against); absent: a full role (`dataverse::FULL_ROLE`).
    #[serde(default)]
    pub privileges: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
pub struct ClientSecret {
    /// The secret's ID (what admins paste by mistake).
    pub id: String,
    pub value: String,
    #[serde(default)]
    pub expired: bool,
}

/// Credentials the demo org connects with.
#[derive(Debug, Clone, Deserialize)]
pub struct DemoConnection {
    pub tenant_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub default_queue_id: String,
    /// The `incidents` settings the demo connection is saved with (the fallback customer).
    #[serde(default)]
    pub incidents: Option<Value>,
}

impl Seed {
    /// Loads a seed file, or the built-in seed when `path` is `None`.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, String> {
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("cannot read seed {}: {e}", p.display()))?;
                Self::from_json(&text).map_err(|e| format!("seed {}: {e}", p.display()))
            }
            None => Ok(Self::builtin()),
        }
    }

    pub fn from_json(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    pub fn builtin() -> Self {
        Self::from_json(BUILTIN).expect("the built-in seed parses")
    }

    pub(crate) fn tenant(&self, id_or_domain: &str) -> Option<&Tenant> {
        self.tenants.iter().find(|t| {
            t.tenant_id.eq_ignore_ascii_case(id_or_domain)
                || t.domains
                    .iter()
                    .any(|d| d.eq_ignore_ascii_case(id_or_domain))
        })
    }

    pub(crate) fn app(&self, client_id: &str) -> Option<&App> {
        self.tenants
            .iter()
            .flat_map(|t| t.apps.iter())
            .find(|a| a.client_id.eq_ignore_ascii_case(client_id))
    }
}
