//! The OpenCX webhook envelope (`conversation.handoff_to_human`) and its validation.
//!
//! Field names follow OpenCX's public API (README, "The webhook contract"). Parsing happens in two stages so that
//! every rejection can name its field: a type mismatch is a 400 with the JSON Pointer that
//! serde stopped at; content rules (empty summary, org mismatch, bad email…) are a 422 with
//! one entry per broken field.

use serde::{Deserialize, Serialize};

use crate::domain::handoff::QueuedMessage;
use crate::domain::{
    Channel, Customer, EmailAddress, EmailRule, HandoffRequest, OrgId, QueuedHandoff, SessionId,
    ThinHandoff, VerifiedEmail, CHANNEL_NOT_FETCHED, QUEUED_PAYLOAD_VERSION, THIN_PAYLOAD_VERSION,
};

/// The one event the bridge acts on; others are acknowledged and ignored.
pub const HANDOFF_EVENT: &str = "conversation.handoff_to_human";

/// One broken field: a JSON Pointer (RFC 6901) into the request body and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON Pointer, e.g. `/data/session/contact/email`.
    pub pointer: String,
    pub message: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// The head of any envelope: enough to decide whether the event is one the bridge handles.
#[derive(Debug, Deserialize)]
pub struct EnvelopeHead {
    pub event: String,
}

/// A `conversation.handoff_to_human` envelope, as sent, in either of its two shapes (README,
/// "The webhook contract"): OpenCX's own thin event, `data: {conversation_id, timestamp,
/// customer_id, reason}` (OpenCX's webhook reference, `../shared/OPENCX.md` §3.2), whose
/// session the worker fetches from OpenCX's API; or `data: {session}`, the whole session
/// pushed by a backend. With both, `data.session` is used.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Envelope {
    pub event: String,
    pub organization_id: Option<String>,
    pub data: EnvelopeData,
}

/// `data` of either shape; unknown fields are ignored (OpenCX may add some).
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
pub struct EnvelopeData {
    /// The whole session (pushed shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<Session>,
    /// The OpenCX session id (thin shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Why the AI handed off, e.g. `ai_decided_to_handoff_the_conversation`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When OpenCX handed off (as OpenCX sent it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// A validated envelope as the store keeps it: the session id, the channel (or
/// [`CHANNEL_NOT_FETCHED`]) and the payload with its version ([`QUEUED_PAYLOAD_VERSION`]
/// for a pushed session, [`THIN_PAYLOAD_VERSION`] for a thin event).
#[derive(Debug, Clone)]
pub struct ValidEnvelope {
    pub session_id: SessionId,
    pub channel: String,
    pub payload_version: i64,
    pub payload: String,
}

/// `data.session` as OpenCX sends it. Versions before payload version 2 stored it as the
/// handoff's payload (`webhook::upgrade` rewrites those).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct Session {
    pub id: Option<String>,
    pub channel: Option<ChannelRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<SessionContact>,
    pub handoff: Option<HandoffInfo>,
    #[serde(
        default,
        deserialize_with = "history_or_null",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<HistoryMessage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct ChannelRef {
    #[serde(rename = "type")]
    pub kind: Option<String>,
}

/// The visitor. Absent or null for an anonymous visitor; `verified` defaults to false.
#[derive(Debug, Clone, Default, Deserialize, Serialize, utoipa::ToSchema)]
pub struct SessionContact {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, deserialize_with = "bool_or_null")]
    pub verified: bool,
}

/// `verified`: `null` reads as absent (false), as for every other optional field.
fn bool_or_null<'de, D: serde::Deserializer<'de>>(de: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(de)?.unwrap_or_default())
}

/// `history`: `null` reads as absent (no messages), and so does a `null` message.
fn history_or_null<'de, D: serde::Deserializer<'de>>(
    de: D,
) -> Result<Vec<HistoryMessage>, D::Error> {
    let messages = Option::<Vec<Option<HistoryMessage>>>::deserialize(de)?;
    Ok(messages.into_iter().flatten().flatten().collect())
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct HandoffInfo {
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
pub struct HistoryMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// Parses JSON into `T`; on failure returns the JSON Pointer of the value serde stopped at
/// and serde's message (e.g. `invalid type: integer, expected a string`).
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, FieldError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let pointer = pointer_of(err.path());
        let inner = err.into_inner();
        FieldError::new(pointer, strip_position(&inner))
    })?;
    de.end()
        .map_err(|e| FieldError::new("", strip_position(&e)))?;
    Ok(value)
}

fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.find(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

fn pointer_of(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        out.push('/');
        match segment {
            Segment::Seq { index } => out.push_str(&index.to_string()),
            Segment::Map { key } => out.push_str(&key.replace('~', "~0").replace('/', "~1")),
            Segment::Enum { variant } => out.push_str(variant),
            Segment::Unknown => out.push('?'),
        }
    }
    out
}

fn non_empty(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl Session {
    /// The bridge's own queued payload for this session, once validated as `request`: the
    /// request and the transcript.
    pub fn queued(&self, request: &HandoffRequest) -> QueuedHandoff {
        let history = self
            .history
            .iter()
            .map(|m| QueuedMessage {
                created_at: m.created_at.clone(),
                sender: m.sender.clone(),
                text: m.text.clone(),
            })
            .collect();
        QueuedHandoff::new(request, history)
    }
}

impl HandoffRequest {
    /// Checks the content rules of the webhook contract (README) for a session of `org_id`. Every broken field is
    /// reported, each with its JSON Pointer in the envelope.
    pub fn from_session(org_id: &OrgId, session: &Session) -> Result<Self, Vec<FieldError>> {
        Self::from_session_at(org_id, session, "/data/session/")
    }

    /// As [`from_session`](Self::from_session), with every pointer under `prefix` (e.g. `/`
    /// for a session fetched from OpenCX's API).
    pub fn from_session_at(
        org_id: &OrgId,
        session: &Session,
        prefix: &str,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let at = |field: &str| format!("{prefix}{field}");

        let session_id = match session.id.as_deref().map(SessionId::parse) {
            Some(Ok(id)) => Some(id),
            Some(Err(why)) => {
                errors.push(FieldError::new(at("id"), why));
                None
            }
            None => {
                errors.push(FieldError::new(at("id"), "is required"));
                None
            }
        };

        let channel = match session.channel.as_ref().and_then(|c| c.kind.as_deref()) {
            Some(kind) if kind.chars().any(char::is_control) => {
                errors.push(FieldError::new(
                    at("channel/type"),
                    "must not contain control characters",
                ));
                None
            }
            Some(kind) if !kind.is_empty() && kind.len() <= 50 => Some(Channel::parse(kind)),
            Some(_) => {
                errors.push(FieldError::new(
                    at("channel/type"),
                    "must be 1 to 50 characters",
                ));
                None
            }
            None => {
                errors.push(FieldError::new(
                    at("channel/type"),
                    "is required (web, sms, whatsapp, email, phone_voice, web_voice or api)",
                ));
                None
            }
        };

        let contact = session.contact.clone().unwrap_or_default();
        let name = non_empty(&contact.name);
        if name.as_ref().is_some_and(|n| n.chars().count() > 160) {
            errors.push(FieldError::new(
                at("contact/name"),
                "must be at most 160 characters (the length of contact.fullname)",
            ));
        }
        let phone = non_empty(&contact.phone_number);
        if phone.as_ref().is_some_and(|p| p.chars().count() > 50) {
            errors.push(FieldError::new(
                at("contact/phone_number"),
                "must be at most 50 characters (the length of contact.telephone1)",
            ));
        }
        let email = match non_empty(&contact.email).map(|e| EmailAddress::parse(&e)) {
            Some(Ok(email)) => Some(email),
            Some(Err(why)) => {
                errors.push(FieldError::new(at("contact/email"), why));
                None
            }
            None => None,
        };

        let summary = session.handoff.as_ref().and_then(|h| non_empty(&h.summary));
        if summary.is_none() {
            errors.push(FieldError::new(
                at("handoff/summary"),
                "is required and must not be empty: it becomes the live work item's subject",
            ));
        }

        match (session_id, channel, summary) {
            (Some(session_id), Some(channel), Some(summary)) if errors.is_empty() => Ok(Self {
                org_id: org_id.clone(),
                session_id,
                channel,
                customer: Customer {
                    name,
                    verified_email: email
                        .clone()
                        .and_then(|e| VerifiedEmail::from_contact(e, contact.verified)),
                    email,
                    phone,
                    email_rule: EmailRule::WebhookFlag,
                },
                summary,
                language: non_empty(&session.language),
                sentiment: session
                    .handoff
                    .as_ref()
                    .and_then(|h| non_empty(&h.sentiment)),
                reason: session.handoff.as_ref().and_then(|h| non_empty(&h.reason)),
            }),
            _ => Err(errors),
        }
    }
}

impl Envelope {
    /// Validates a handoff envelope posted to `path_org`, including that
    /// `organization_id` names the same org; every broken field is reported.
    pub fn validate(&self, path_org: &OrgId) -> Result<ValidEnvelope, Vec<FieldError>> {
        let mut errors = Vec::new();
        match self.organization_id.as_deref() {
            Some(org) if org == path_org.as_str() => {}
            Some(org) => errors.push(FieldError::new(
                "/organization_id",
                format!("is '{org}' but the webhook was posted to org '{path_org}'"),
            )),
            None => errors.push(FieldError::new("/organization_id", "is required")),
        }
        let valid = match &self.data.session {
            Some(session) => match HandoffRequest::from_session(path_org, session) {
                Ok(request) => Some(ValidEnvelope {
                    session_id: request.session_id.clone(),
                    channel: request.channel.as_str().to_owned(),
                    payload_version: QUEUED_PAYLOAD_VERSION,
                    payload: serde_json::to_string(&session.queued(&request))
                        .expect("a queued handoff serializes"),
                }),
                Err(more) => {
                    errors.extend(more);
                    None
                }
            },
            None => self.data.thin(&mut errors),
        };
        match valid {
            Some(valid) if errors.is_empty() => Ok(valid),
            _ => Err(errors),
        }
    }
}

impl EnvelopeData {
    /// The thin shape's payload; a missing or broken `conversation_id` goes to `errors`.
    fn thin(&self, errors: &mut Vec<FieldError>) -> Option<ValidEnvelope> {
        let session_id = match self.conversation_id.as_deref().map(SessionId::parse) {
            Some(Ok(id)) => id,
            Some(Err(why)) => {
                errors.push(FieldError::new("/data/conversation_id", why));
                return None;
            }
            None => {
                errors.push(FieldError::new(
                    "/data/conversation_id",
                    "is required: OpenCX's event carries the session id here (or push the whole session as /data/session)",
                ));
                return None;
            }
        };
        // Kept as sent, bounded: they are shown to admins and passed to the representative.
        let bounded = |v: &Option<String>| non_empty(v).map(|v| v.chars().take(200).collect());
        let thin = ThinHandoff {
            session_id: session_id.as_str().to_owned(),
            customer_id: bounded(&self.customer_id),
            reason: bounded(&self.reason),
            timestamp: bounded(&self.timestamp),
        };
        Some(ValidEnvelope {
            session_id,
            channel: CHANNEL_NOT_FETCHED.to_owned(),
            payload_version: THIN_PAYLOAD_VERSION,
            payload: serde_json::to_string(&thin).expect("a thin handoff serializes"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(json: &str) -> Envelope {
        parse_json(json.as_bytes()).unwrap()
    }

    #[test]
    fn type_errors_carry_a_pointer() {
        let err = parse_json::<Envelope>(
            br#"{"event":"x","organization_id":"a","data":{"session":{"id":5}}}"#,
        )
        .unwrap_err();
        assert_eq!(err.pointer, "/data/session/id");
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn content_errors_are_all_reported() {
        let env = envelope(
            r#"{"event":"conversation.handoff_to_human","organization_id":"other",
               "data":{"session":{"id":"s1","channel":{"type":"web"},
               "contact":{"email":"not-an-email"},"handoff":{"summary":"  "}}}}"#,
        );
        let errors = env.validate(&OrgId::parse("acme").unwrap()).unwrap_err();
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            [
                "/organization_id",
                "/data/session/contact/email",
                "/data/session/handoff/summary"
            ]
        );
    }

    #[test]
    fn only_a_verified_email_is_a_lookup_key() {
        let org = OrgId::parse("acme").unwrap();
        let make = |verified: bool| {
            envelope(&format!(
                r#"{{"event":"conversation.handoff_to_human","organization_id":"acme",
                   "data":{{"session":{{"id":"s1","channel":{{"type":"sms"}},
                   "contact":{{"email":"a@example.com","verified":{verified}}},
                   "handoff":{{"summary":"help"}}}}}}}}"#
            ))
            .validate(&org)
            .unwrap()
        };
        let queued =
            |v: ValidEnvelope| -> QueuedHandoff { serde_json::from_str(&v.payload).unwrap() };
        assert!(queued(make(true)).customer.email_verified);
        let unverified = queued(make(false));
        assert!(!unverified.customer.email_verified);
        assert!(unverified.customer.email.is_some());
    }

    #[test]
    fn a_thin_event_is_kept_as_sent_and_needs_its_conversation_id() {
        let org = OrgId::parse("acme").unwrap();
        let valid = envelope(
            r#"{"event":"conversation.handoff_to_human","organization_id":"acme",
               "data":{"conversation_id":"c-1","timestamp":"2026-11-23T10:00:00Z",
               "customer_id":"ctc-9","reason":"ai_decided_to_handoff_the_conversation","new":1}}"#,
        )
        .validate(&org)
        .unwrap();
        assert_eq!(valid.session_id.as_str(), "c-1");
        assert_eq!(valid.payload_version, THIN_PAYLOAD_VERSION);
        assert_eq!(valid.channel, CHANNEL_NOT_FETCHED);
        let thin: ThinHandoff = serde_json::from_str(&valid.payload).unwrap();
        assert_eq!(thin.customer_id.as_deref(), Some("ctc-9"));
        assert_eq!(
            thin.reason.as_deref(),
            Some("ai_decided_to_handoff_the_conversation")
        );

        let errors = envelope(
            r#"{"event":"conversation.handoff_to_human","organization_id":"acme",
               "data":{"conversation_id":null,"customer_id":"ctc-9"}}"#,
        )
        .validate(&org)
        .unwrap_err();
        assert_eq!(errors[0].pointer, "/data/conversation_id");
        assert!(errors[0].message.contains("is required"), "{:?}", errors);
    }
}
