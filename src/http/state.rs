//! What the HTTP handlers share: the store, the vault, Dataverse (for test-and-save), the
//! metrics, the admin token, and the worker's wake-up. Shared as `Arc<AppState>`.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;

use super::server::HttpLimits;
use crate::clock::Clock;
use crate::connection::orgs::OrgRules;
use crate::connection::vault::Vault;
use crate::dynamics::Dataverse;
use crate::metrics::Metrics;
use crate::opencx::OpenCx;
use crate::store::Store;
use crate::wake::Wake;

/// What a presented token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The admin token: everything.
    Admin,
    /// The viewer token: `/status` and `GET /v1/status`, no action.
    Viewer,
}

/// The state of every route.
pub struct AppState {
    pub store: Store,
    /// Seals secrets on save and opens the webhook secrets that verify an incoming webhook.
    pub vault: Vault,
    /// Test-and-save and re-checks talk to Dataverse through it (the same token cache and
    /// per-environment gates as the worker).
    pub dataverse: Arc<Dataverse>,
    /// OpenCX's API (test-and-save of the OpenCX connection), paced per API key with the
    /// worker's calls.
    pub opencx: Arc<OpenCx>,
    /// What `GET /metrics` reports.
    pub metrics: Arc<Metrics>,
    /// Development mode: loopback `http://` environment, authority and callback URLs are
    /// admitted.
    pub allow_insecure: bool,
    /// Limits on inbound connections and request reads (the body-read deadline is applied
    /// by the routes that read a body).
    pub limits: HttpLimits,
    /// The bearer token of `/v1/*` and the password of `/status`.
    pub admin_token: SecretString,
    /// A token that only reads `/status` and `GET /v1/status`.
    pub viewer_token: Option<SecretString>,
    /// The service's clock (intake and admin timestamps).
    pub clock: Arc<Clock>,
    /// Wakes the worker when an org's work arrives, naming the org.
    pub wake: Arc<Wake>,
}

impl AppState {
    /// The org and connection rules over this process's store, vault and Dataverse.
    pub fn org_rules(&self) -> OrgRules<'_> {
        OrgRules {
            store: &self.store,
            vault: &self.vault,
            dataverse: &self.dataverse,
            opencx: &self.opencx,
            allow_insecure: self.allow_insecure,
        }
    }

    /// Whether `given` is the admin token (constant-time comparison).
    pub fn admin_token_matches(&self, given: &str) -> bool {
        given
            .as_bytes()
            .ct_eq(self.admin_token.expose_secret().as_bytes())
            .into()
    }

    /// What `given` may do: everything (the admin token), read (the viewer token), or
    /// nothing (`None`). Constant-time comparisons.
    pub fn role(&self, given: &str) -> Option<Role> {
        if self.admin_token_matches(given) {
            return Some(Role::Admin);
        }
        let viewer = self.viewer_token.as_ref()?;
        bool::from(given.as_bytes().ct_eq(viewer.expose_secret().as_bytes()))
            .then_some(Role::Viewer)
    }

    /// The token the status page's forms carry against cross-site requests: HMAC-SHA256
    /// of a fixed label under the admin token, hex. A page only an admin can load shows it;
    /// another site cannot read it.
    pub fn csrf_token(&self) -> String {
        use hmac::Mac;
        let mut mac =
            hmac::Hmac::<sha2::Sha256>::new_from_slice(self.admin_token.expose_secret().as_bytes())
                .expect("HMAC takes a key of any length");
        mac.update(b"handoff-bridge status page forms v1");
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `given` is [`AppState::csrf_token`] (constant-time comparison).
    pub fn csrf_matches(&self, given: &str) -> bool {
        given.as_bytes().ct_eq(self.csrf_token().as_bytes()).into()
    }
}
