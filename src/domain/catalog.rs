//! The failure catalog: every way a connection check or a handoff can go wrong, with a
//! stable `code`, the step it belongs to, a plain-language `message` and a `hint` that
//! names the setting to change. Test-and-save checks and handoff records draw their words
//! from this one table.
//!
//! This module imports nothing from the crate: it is the vocabulary. Which entry a Dataverse
//! or Entra ID error gets is decided in `dynamics::failure`, next to those errors.

use serde::Serialize;

/// Where in the flow a failure happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Input,
    Token,
    Dataverse,
    Workstream,
    Contact,
    WorkItem,
    /// A non-chat session's incident: its settings, its customer, its create and routing.
    Incident,
    Callback,
    Handoff,
    /// OpenCX's API: its test-and-save, fetching a thin event's session, the write-back.
    Opencx,
}

/// One catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Failure {
    pub code: &'static str,
    pub step: Step,
    pub message: &'static str,
    pub hint: &'static str,
}

macro_rules! catalog {
    ($($name:ident = ($code:literal, $step:ident, $message:literal, $hint:literal);)*) => {
        $(
            #[doc = concat!("`", $code, "`: ", $message)]
            pub const $name: Failure = Failure { code: $code, step: Step::$step, message: $message, hint: $hint };
        )*
        /// Every entry, in catalog order.
        pub const CATALOG: &[Failure] = &[$($name),*];
    };
}

catalog! {
    TENANT_ID_INVALID = ("tenant_id_invalid", Input,
        "The tenant ID is neither a GUID nor a domain name.",
        "Copy the Directory (tenant) ID from the app registration's Overview page in the Azure portal.");
    CLIENT_ID_INVALID = ("client_id_invalid", Input,
        "The client ID is not a GUID.",
        "Copy the Application (client) ID from the app registration's Overview page in the Azure portal.");
    CLIENT_SECRET_MISSING = ("client_secret_missing", Input,
        "No client secret was given.",
        "Paste the Value of a client secret from the app registration's Certificates & secrets page.");
    DEFAULT_QUEUE_ID_INVALID = ("default_queue_id_invalid", Input,
        "The default_queue_id is not a GUID.",
        "Set default_queue_id to the GUID of a messaging workstream (Customer Service admin center > Workstreams; the ID is in the URL).");
    CLIENT_SECRET_EXPIRY_INVALID = ("client_secret_expiry_invalid", Input,
        "The client_secret_expires_at is not a date.",
        "Give the secret's Expires date from the app registration's Certificates & secrets page as YYYY-MM-DD (or an RFC 3339 time), or leave it out.");
    ENVIRONMENT_URL_INVALID = ("environment_url_invalid", Input,
        "The environment URL is not the root URL of a Dynamics 365 environment; no request was sent to it.",
        "Use the environment URL from the Power Platform admin center, e.g. https://contoso.crm.dynamics.com, with no path after the host.");
    ENTRA_WRONG_SECRET = ("entra_wrong_secret", Token,
        "Entra ID refused the client secret (AADSTS7000215). Most often the secret's ID was pasted instead of its value.",
        "In Certificates & secrets, copy the Value column of the secret (not the Secret ID) and save the connection again.");
    ENTRA_SECRET_EXPIRED = ("entra_secret_expired", Token,
        "The client secret has expired (AADSTS7000222).",
        "Create a new client secret in Certificates & secrets, save the connection with its Value, then delete the old secret.");
    ENTRA_UNKNOWN_CLIENT = ("entra_unknown_client", Token,
        "Entra ID does not know this client ID in this tenant (AADSTS700016).",
        "Check the Application (client) ID and that the app registration lives in the tenant given as tenant_id.");
    ENTRA_UNKNOWN_TENANT = ("entra_unknown_tenant", Token,
        "Entra ID does not know this tenant (AADSTS90002).",
        "Use the Directory (tenant) ID from the app registration's Overview page.");
    ENTRA_UNKNOWN_RESOURCE = ("entra_unknown_resource", Token,
        "Entra ID does not know the environment URL as a resource in this tenant (AADSTS500011).",
        "Check the environment URL for typos: it must be the URL of a Dynamics 365 environment in the same tenant.");
    CLIENT_SECRET_EXPIRING = ("client_secret_expiring", Token,
        "The client secret expires within 30 days (by the client_secret_expires_at entered with the connection), or that date has passed.",
        "Create a new client secret in Certificates & secrets, save the connection with its Value and its expiry date, then delete the old secret; handoffs fail with entra_secret_expired once it expires.");
    ENTRA_THROTTLED = ("entra_throttled", Token,
        "Entra ID is throttling token requests for this app (HTTP 429).",
        "Nothing to change: the bridge waits for the time Entra ID asks and tries again.");
    ENTRA_UNAVAILABLE = ("entra_unavailable", Token,
        "The Entra ID token endpoint could not be reached or answered with a server error.",
        "Usually passes by itself; the bridge retries. If it persists, check outbound HTTPS access to the Entra authority (HANDOFF_ENTRA_AUTHORITY).");
    ENTRA_REFUSED = ("entra_refused", Token,
        "Entra ID refused the token request.",
        "Read the Entra error in the detail; check the tenant ID, client ID and client secret of the app registration.");
    NOT_APPLICATION_USER = ("not_application_user", Dataverse,
        "The app registration is not an application user of this Dataverse environment (0x80072560 \"The user is not a member of the organization\").",
        "In the Power Platform admin center, open the environment > Settings > Users + permissions > Application users, add the app by its client ID and give it a security role.");
    MISSING_PRIVILEGE = ("missing_privilege", Dataverse,
        "The application user lacks a privilege (0x80040220, 0x80040231 or 0x80048405): its security role does not allow this.",
        "Give the application user a security role that can read contacts and workstreams and create Conversations (msdyn_ocliveworkitem), their context items and notes (annotation, with Append and AppendTo), and incidents when non-chat channels are on, e.g. Omnichannel administrator with Customer Service representative; the privileges check of test-and-save names what is missing.");
    DATAVERSE_UNAUTHORIZED = ("dataverse_unauthorized", Dataverse,
        "Dataverse refused the access token (HTTP 401) even after a fresh one was fetched.",
        "Check that the environment URL belongs to the same tenant as the app registration.");
    DATAVERSE_UNAVAILABLE = ("dataverse_unavailable", Dataverse,
        "The Dataverse environment could not be reached or answered with a server error.",
        "Usually passes by itself; the bridge retries. If it persists, check the environment's state in the Power Platform admin center.");
    DATAVERSE_THROTTLED = ("dataverse_throttled", Dataverse,
        "Dataverse service protection limits were hit (HTTP 429).",
        "Nothing to change for a short burst: the bridge waits for Retry-After. If it is frequent, lower the bridge's concurrency or spread handoffs over more application users.");
    DATAVERSE_REJECTED = ("dataverse_rejected", Dataverse,
        "Dataverse rejected the request.",
        "Read the Dataverse error in the detail; it names the column or rule. Report it if it names a column the bridge sends.");
    WORKSTREAM_NOT_FOUND = ("workstream_not_found", Workstream,
        "No workstream with the ID given as default_queue_id exists in this environment (0x80040217).",
        "Set default_queue_id to the GUID of a messaging workstream (Customer Service admin center > Workstreams; the ID is in the URL).");
    WORKSTREAM_IS_QUEUE = ("workstream_is_queue", Workstream,
        "The ID given as default_queue_id is a queue, not a workstream.",
        "Despite its name, default_queue_id takes a workstream GUID. Open the workstream that feeds this queue and use its ID.");
    WORKSTREAM_INACTIVE = ("workstream_inactive", Workstream,
        "The workstream is deactivated.",
        "Activate the workstream in Customer Service admin center, or choose another one as default_queue_id.");
    WORKSTREAM_RECORD_ROUTING = ("workstream_record_routing", Workstream,
        "The workstream routes records, not conversations: handoffs would land as records (like incidents) instead of chats.",
        "Choose a messaging workstream (live chat, SMS, WhatsApp or custom) as default_queue_id.");
    WORKSTREAM_VOICE = ("workstream_voice", Workstream,
        "The workstream is a voice workstream; chat handoffs cannot be routed through it.",
        "Choose a messaging workstream (live chat, SMS, WhatsApp or custom) as default_queue_id.");
    WORKSTREAM_OTHER_CHANNEL = ("workstream_other_channel", Workstream,
        "The workstream serves a messaging channel other than live chat, SMS, WhatsApp or custom.",
        "Handoffs will still be created on it; if representatives expect them elsewhere, choose a live chat workstream.");
    WORKSTREAM_PICK_MODE = ("workstream_pick_mode", Workstream,
        "The workstream distributes work in pick mode: handoffs wait until a representative picks them.",
        "AI handoffs expect a push workstream; set Work distribution mode to Push if customers should be answered without delay.");
    CONTACT_AMBIGUOUS = ("contact_ambiguous", Contact,
        "Several active contacts have the visitor's email, so none was linked.",
        "Merge or deactivate the duplicate contacts in Dynamics; the conversation was created without a customer.");
    CONTACT_NOT_FOUND = ("contact_not_found", Contact,
        "No active contact has the visitor's verified email, so none was linked.",
        "Set create_contact_if_missing on the connection to create one, or add the contact in Dynamics.");
    EMAIL_UNVERIFIED = ("email_unverified", Contact,
        "The visitor's email is not verified, so it was not used to find a contact.",
        "Nothing to change: only verified emails link contacts, so a visitor cannot claim someone else's record.");
    UNSUPPORTED_CHANNEL = ("unsupported_channel", Handoff,
        "The session's channel is not web, sms or whatsapp, and the org's connection has incidents turned off (incidents.enabled = false), so nothing was created in Dynamics.",
        "To make such sessions cases, save the connection with incidents.enabled = true (the default); if the handoff was expected to arrive as a chat, check the widget's channel.");
    WORK_ITEM_REJECTED = ("work_item_rejected", WorkItem,
        "Dataverse refused to create the live work item.",
        "Read the Dataverse error in the detail; it names the column or rule that failed.");
    INCIDENT_SETTINGS_INVALID = ("incident_settings_invalid", Input,
        "The connection's incident settings are not valid (the detail names the field); nothing was sent.",
        "Fix the field the detail names: incidents.priority is high, normal or low; fallback_customer is {\"table\": \"account\" or \"contact\", \"id\": GUID}; owner is {\"table\": \"systemuser\" or \"team\", \"id\": GUID}; case_origin maps a channel to a caseorigincode; routing is on_create or routing_rule.");
    FALLBACK_CUSTOMER_MISSING = ("fallback_customer_missing", Incident,
        "Incidents are on but no fallback customer is set: a non-chat session whose visitor has no linked contact cannot become an incident, because Dataverse requires a customer on every case (0x80044410).",
        "Set incidents.fallback_customer to an account (or contact) such as \"Unidentified visitor\" and save the connection again; sessions whose verified email links a contact become incidents without it.");
    FALLBACK_CUSTOMER_NOT_FOUND = ("fallback_customer_not_found", Incident,
        "The fallback customer does not exist in this environment, or the application user cannot read it (0x80040217).",
        "Set incidents.fallback_customer to the GUID of an active account or contact (open the record in Dynamics: the id is in the URL) and check that the application user's role can read accounts and contacts.");
    INCIDENT_OWNER_NOT_FOUND = ("incident_owner_not_found", Incident,
        "The user or team given as the incidents' owner does not exist in this environment (0x80040217).",
        "Set incidents.owner to the GUID of an enabled user or a team (Power Platform admin center > Users or Teams), or leave it out so the application user owns new incidents until routing assigns them.");
    INCIDENT_CUSTOMER_MISSING = ("incident_customer_missing", Incident,
        "No incident was created: the visitor has no linked contact and the connection has no fallback customer, and Dataverse requires a customer on every case (0x80044410).",
        "Set incidents.fallback_customer on the connection (PUT /v1/orgs/{org}/connection), then replay the handoff (POST /v1/orgs/{org}/sessions/{session_id}/retry).");
    INCIDENT_REJECTED = ("incident_rejected", Incident,
        "Dataverse refused to create the incident.",
        "Read the Dataverse error in the detail; it names the column or rule that failed, e.g. a column the org made required, or a case origin value the org does not have (incidents.case_origin).");
    INCIDENT_ROUTING_FAILED = ("incident_routing_failed", Incident,
        "The incident exists, but unified routing's action msdyn_ApplyRoutingRuleEntityRecord refused to route it, so no representative or queue has it yet.",
        "Check that incidents are set up for unified routing (a record workstream with routing rules for incidents), or set incidents.routing to on_create to let Dataverse route on create; replaying the handoff routes the same incident again.");
    NOT_CONNECTED = ("not_connected", Handoff,
        "The org has no Dynamics connection, so the handoff waits.",
        "Connect Dynamics with PUT /v1/orgs/{org}/connection; waiting handoffs are then delivered.");
    CONNECTION_SECRET_UNREADABLE = ("connection_secret_unreadable", Handoff,
        "A stored secret of the org (the client secret, the webhook secret or the OpenCX API key) cannot be decrypted with the configured encryption key: the bridge runs with another HANDOFF_ENCRYPTION_KEY than the one it was saved with.",
        "Start the bridge with the HANDOFF_ENCRYPTION_KEY it was saved with (during a key rotation, put that key in HANDOFF_PREVIOUS_ENCRYPTION_KEYS), or save the connection again.");
    STORE_UNAVAILABLE = ("store_unavailable", Handoff,
        "The bridge's own database could not be reached.",
        "Check the database named by HANDOFF_DATABASE_URL (disk space, permissions, the Postgres server); work resumes by itself once it answers.");
    PAYLOAD_UNREADABLE = ("payload_unreadable", Handoff,
        "The stored session could not be read back; it was written by an incompatible version.",
        "Report this with the handoff id; the session has to be sent again by the widget backend.");
    INTERNAL_ERROR = ("internal_error", Handoff,
        "The bridge hit an internal error (a bug) during the attempt; the handoff is retried like after a temporary error.",
        "Report it with the handoff id and the bridge's log around that time (it names the error). If it repeats, the handoff ends with retries_exhausted.");
    CHAT_EXPIRED = ("chat_expired", Handoff,
        "No live work item could be created while the visitor could still be waiting (HANDOFF_CHAT_EXPIRY_SECS, an hour by default); the handoff was given up so the widget can offer another way.",
        "The widget backend received handoff.failed and can offer email or a ticket. The record's events say why it waited (no connection, throttling, an outage); fix that, and replay the handoff if the visitor is still there.");
    RETRIES_EXHAUSTED = ("retries_exhausted", Handoff,
        "The handoff kept failing with temporary errors for 24 hours and was given up.",
        "Read the earlier attempts in the record's events; fix the cause, then replay the handoff.");
    OPENCX_API_KEY_MISSING = ("opencx_api_key_missing", Input,
        "No OpenCX API key was given.",
        "Paste an API key from the OpenCX dashboard (Settings > API keys) as api_key.");
    OPENCX_BASE_URL_INVALID = ("opencx_base_url_invalid", Input,
        "The OpenCX base URL is not an https:// URL without query or fragment; no request was sent to it.",
        "Leave base_url out to use https://api.open.cx, or give the root URL of your OpenCX API region.");
    OPENCX_KEY_REFUSED = ("opencx_key_refused", Opencx,
        "OpenCX refused the API key (HTTP 401 or 403).",
        "Create an API key in the OpenCX dashboard (Settings > API keys) and save it with PUT /v1/orgs/{org}/opencx; then replay the failed handoffs.");
    OPENCX_UNREACHABLE = ("opencx_unreachable", Opencx,
        "OpenCX's API could not be reached or answered with a server error.",
        "Usually passes by itself; the bridge retries. If it persists, check the base_url of the org's OpenCX connection and outbound HTTPS access to it.");
    OPENCX_RATE_LIMITED = ("opencx_rate_limited", Opencx,
        "OpenCX's API rate limit was reached: OpenCX answered HTTP 429, or the bridge held the request back to stay under OpenCX's 100 requests a minute per API key.",
        "Nothing to change for a burst: the bridge waits for Retry-After. If it is frequent, check what else uses the same API key.");
    OPENCX_NOT_CONNECTED = ("opencx_not_connected", Handoff,
        "The handoff event carries only the conversation id, and the org has no OpenCX connection to fetch the session with, so the handoff waits.",
        "Connect OpenCX with PUT /v1/orgs/{org}/opencx (its API key); waiting handoffs are then fetched and delivered.");
    OPENCX_SESSION_NOT_FOUND = ("opencx_session_not_found", Opencx,
        "OpenCX has no session with the event's conversation_id (HTTP 404).",
        "Check that the webhook was sent by the OpenCX organization whose API key is saved for this org; a session deleted in OpenCX cannot be handed off.");
    OPENCX_SESSION_INCOMPLETE = ("opencx_session_incomplete", Opencx,
        "The session OpenCX returned cannot be handed off as it is (the detail names the fields), e.g. it has no handoff summary.",
        "Check the session in the OpenCX dashboard: it must have been handed off (with its summary) and have a channel. Replay the handoff once it has.");
    OPENCX_UNEXPECTED_ANSWER = ("opencx_unexpected_answer", Opencx,
        "OpenCX answered with something the bridge does not understand (the detail says what).",
        "Report it with the handoff id; check that base_url points at OpenCX's API and not at another service.");
    OPENCX_WRITE_BACK_FAILED = ("opencx_write_back_failed", Opencx,
        "The message that puts dynamics365_chat_id on the OpenCX session could not be sent; the live work item exists.",
        "Read the error in the record and check the org's OpenCX connection (PUT /v1/orgs/{org}/opencx); the representative already has the conversation, only the id on the OpenCX session is missing.");
    CALLBACK_FAILED = ("callback_failed", Callback,
        "The widget backend's callback endpoint did not accept the handoff event.",
        "Check the org's callback_url and that the endpoint verifies the Standard Webhooks signature with the org's webhook secret.");
}

/// Whether a permanent failure with `code` is the connection's (its credentials, its
/// application user's role, its workstream, a secret that no longer opens) rather than the
/// session's or a passing outage's: such a failure turns the connection card Failing until
/// a handoff succeeds again. Throttling, outages and a refusal of one request's values are
/// not.
pub fn is_connection_level(code: &str) -> bool {
    let passing = [
        ENTRA_THROTTLED.code,
        ENTRA_UNAVAILABLE.code,
        DATAVERSE_THROTTLED.code,
        DATAVERSE_UNAVAILABLE.code,
        DATAVERSE_REJECTED.code,
    ];
    if passing.contains(&code) {
        return false;
    }
    code == CONNECTION_SECRET_UNREADABLE.code
        || CATALOG.iter().any(|f| {
            f.code == code && matches!(f.step, Step::Token | Step::Dataverse | Step::Workstream)
        })
}

/// The catalog as a Markdown table (`code`, step, what happened, what to change), the form
/// the README's Troubleshooting section holds; a test keeps the two the same.
pub fn markdown_table() -> String {
    let mut out =
        String::from("| code | step | what happened | what to change |\n|---|---|---|---|\n");
    for f in CATALOG {
        let step = serde_json::to_value(f.step)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            f.code,
            step,
            f.message.replace('|', "\\|"),
            f.hint.replace('|', "\\|")
        ));
    }
    out
}

/// The entry for `code`. Panics on a code not in the table: codes are constants of this
/// module, so that is a programming error caught by the tests.
pub fn entry(code: &str) -> Failure {
    CATALOG
        .iter()
        .copied()
        .find(|f| f.code == code)
        .unwrap_or_else(|| panic!("failure code {code} is not in the catalog"))
}

/// A failure as reported to admins: the catalog's words plus what this occurrence adds
/// (the upstream error text, the field, the value that failed). Shape:
/// `{"code","message","hint","detail"?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Diagnosis {
    pub code: String,
    pub message: String,
    pub hint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Diagnosis {
    /// This diagnosis with `{org}` in its hint replaced by `org_id`, so an admin can copy the
    /// route it names as it stands.
    pub fn for_org(mut self, org_id: &str) -> Self {
        self.hint = self.hint.replace("{org}", org_id);
        self
    }
}

impl Failure {
    /// The hint with `{org}` replaced by `org_id` (see [`Diagnosis::for_org`]).
    pub fn hint_for_org(self, org_id: &str) -> String {
        self.hint.replace("{org}", org_id)
    }

    pub fn diagnose(self, detail: impl Into<Option<String>>) -> Diagnosis {
        Diagnosis {
            code: self.code.to_owned(),
            message: self.message.to_owned(),
            hint: self.hint.to_owned(),
            detail: detail.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_every_entry_has_words() {
        let mut seen = std::collections::HashSet::new();
        for f in CATALOG {
            assert!(seen.insert(f.code), "duplicate code {}", f.code);
            assert!(f
                .code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
            assert!(
                f.message.ends_with('.') && f.hint.ends_with('.'),
                "{}",
                f.code
            );
        }
    }
}
