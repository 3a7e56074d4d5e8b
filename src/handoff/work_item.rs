//! The `msdyn_ocliveworkitem` create body (ARCHITECTURE.md, "One handoff", step 7) and its deterministic key.

use minijinja::HtmlEscape;
use uuid::Uuid;

use crate::domain::handoff::QueuedMessage;
use crate::domain::HandoffRequest;
use crate::domain::{Channel, OrgId, SessionId, WorkstreamId};
use crate::dynamics::{AnnotationCreate, ContactCreate, ContextItemCreate};
use crate::dynamics::{LiveWorkItemCreate, StreamSource};

/// Namespace of the UUIDv5 keys the bridge chooses for Dataverse rows. Fixed forever: changing
/// it would let a replay create a second live work item for a session.
pub const KEY_NAMESPACE: Uuid = Uuid::from_u128(0x6f1c_2d8e_4b0a_5e7c_9a3d_1e2f_7b6c_5d40);

/// `activityid` of the live work item of one session: UUIDv5 of `"{org_id}/{session_id}"`
/// (an org id cannot contain `/`, so the name is unambiguous).
pub fn activity_id(org: &OrgId, session: &SessionId) -> Uuid {
    Uuid::new_v5(&KEY_NAMESPACE, format!("{org}/{session}").as_bytes())
}

/// `contactid` of a contact the bridge creates for an email in an org (UUIDv5 of
/// `"contact:{org_id}/{email}"`), so a retried create cannot make two.
pub fn contact_id(org: &OrgId, email: &str) -> Uuid {
    Uuid::new_v5(
        &KEY_NAMESPACE,
        format!("contact:{org}/{}", email.to_lowercase()).as_bytes(),
    )
}

/// Cuts `text` to at most `max` UTF-16 code units, at a character boundary. Dataverse
/// string lengths count UTF-16 code units (.NET `string.Length`), so an emoji takes two;
/// counting code units keeps every cut within the column's limit.
pub fn cut(text: &str, max: usize) -> String {
    let mut used = 0;
    let mut end = 0;
    for (i, c) in text.char_indices() {
        used += c.len_utf16();
        if used > max {
            break;
        }
        end = i + c.len_utf8();
    }
    text[..end].to_owned()
}

/// Column limits from the table reference (docs/sources.md#tables): `subject` String(200),
/// `msdyn_title` String(4000), `description` Memo(2000), context item `msdyn_value`
/// String(4000).
const SUBJECT_MAX: usize = 200;
const TITLE_MAX: usize = 4000;
const DESCRIPTION_MAX: usize = 2000;
const CONTEXT_VALUE_MAX: usize = 4000;
/// `annotation.subject`: String(500).
const NOTE_SUBJECT_MAX: usize = 500;
/// `annotation.notetext`: Memo(100,000), in UTF-16 code units.
pub const NOTE_TEXT_MAX: usize = 100_000;

/// The transcript note's deterministic `annotationid` for a session: created with its
/// live work item, so a retry that finds the work item finds the note too.
pub fn transcript_note_id(org: &OrgId, session: &SessionId) -> Uuid {
    Uuid::new_v5(
        &KEY_NAMESPACE,
        format!("transcript:{org}/{session}").as_bytes(),
    )
}

/// The transcript as a note for the representative, `None` without a message: one
/// paragraph per message (time, who, text; HTML-escaped, the note is rich text), the newest
/// kept within [`NOTE_TEXT_MAX`] with a first line saying earlier ones were left out.
pub fn transcript_note(
    request: &HandoffRequest,
    history: &[QueuedMessage],
) -> Option<AnnotationCreate> {
    let customer = request.customer.name.as_deref().unwrap_or("Customer");
    let lines: Vec<String> = history
        .iter()
        .filter_map(|m| {
            let text = m.text.as_deref().map(str::trim).filter(|t| !t.is_empty())?;
            let who = match m.sender.as_deref() {
                Some("contact") => customer,
                Some("ai") => "AI",
                Some("human_agent") => "Agent",
                Some(other) => other,
                None => "?",
            };
            let at = m.created_at.as_deref().unwrap_or("");
            Some(format!(
                "<p>{} <b>{}</b>: {}</p>",
                HtmlEscape(at),
                HtmlEscape(who),
                HtmlEscape(text).to_string().replace('\n', "<br>")
            ))
        })
        .collect();
    if lines.is_empty() {
        return None;
    }
    let units = |s: &str| s.encode_utf16().count();
    let cut_line = format!(
        "<p><i>Earlier messages are not shown: the transcript is longer than a note holds ({NOTE_TEXT_MAX} characters).</i></p>"
    );
    let mut room = NOTE_TEXT_MAX - units(&cut_line);
    let mut kept = Vec::new();
    for line in lines.iter().rev() {
        let size = units(line);
        if size > room {
            break;
        }
        room -= size;
        kept.push(line.as_str());
    }
    let mut notetext = String::new();
    if kept.len() < lines.len() {
        notetext.push_str(&cut_line);
    }
    for line in kept.iter().rev() {
        notetext.push_str(line);
    }
    Some(AnnotationCreate {
        annotationid: transcript_note_id(&request.org_id, &request.session_id),
        subject: cut(
            &format!(
                "AI conversation transcript (OpenCX session {})",
                request.session_id.as_str()
            ),
            NOTE_SUBJECT_MAX,
        ),
        notetext,
    })
}
/// The `msdyn_streamsource` a channel's live work item carries; `None` for channels the
/// bridge does not hand off as chats (web → Live chat, sms → SMS, whatsapp → WhatsApp).
pub fn stream_source(channel: &Channel) -> Option<StreamSource> {
    match channel {
        Channel::Web => Some(StreamSource::LiveChat),
        Channel::Sms => Some(StreamSource::Sms),
        Channel::Whatsapp => Some(StreamSource::WhatsApp),
        Channel::Other(_) => None,
    }
}

/// The live work item for a handoff on channel `source`: client-chosen `activityid`,
/// summary as subject/title, a description that keeps the customer's details even when the
/// summary is cut, the workstream and (when linked or created) contact bindings, and the
/// context items.
pub fn create_body(
    request: &HandoffRequest,
    source: StreamSource,
    activityid: Uuid,
    workstream: WorkstreamId,
    contact: Option<Uuid>,
    history: &[QueuedMessage],
) -> LiveWorkItemCreate {
    let customer = &request.customer;

    let mut details = Vec::new();
    if let Some(name) = &customer.name {
        details.push(format!("Customer: {name}"));
    }
    if let Some(email) = &customer.email {
        details.push(format!("Email: {}", email.as_str()));
    }
    if let Some(phone) = &customer.phone {
        details.push(format!("Phone: {phone}"));
    }
    let details = details.join("\n");
    let description = if details.is_empty() {
        cut(&request.summary, DESCRIPTION_MAX)
    } else {
        let tail = format!("\n\n{details}");
        let room = DESCRIPTION_MAX.saturating_sub(tail.encode_utf16().count());
        cut(
            &format!("{}{tail}", cut(&request.summary, room)),
            DESCRIPTION_MAX,
        )
    };

    let context_item =
        |name: &str, value: &str| ContextItemCreate::text(name, cut(value, CONTEXT_VALUE_MAX));
    let mut items = vec![
        context_item("sessionId", request.session_id.as_str()),
        context_item("channel", request.channel.as_str()),
    ];
    if let Some(name) = &customer.name {
        items.push(context_item("customerName", name));
    }
    if let Some(email) = &customer.email {
        items.push(context_item("customerEmail", email.as_str()));
    }
    if let Some(phone) = &customer.phone {
        items.push(context_item("customerPhone", phone));
    }
    // For the representative and for routing rules (issue 12): how the visitor feels, why
    // the AI handed off, and the conversation's language, when OpenCX gave them.
    for (name, value) in [
        ("sentiment", &request.sentiment),
        ("reason", &request.reason),
        ("language", &request.language),
    ] {
        if let Some(value) = value {
            items.push(context_item(name, value));
        }
    }

    LiveWorkItemCreate {
        activityid,
        subject: cut(&request.summary, SUBJECT_MAX),
        msdyn_title: cut(&request.summary, TITLE_MAX),
        description,
        msdyn_channel: source,
        workstream: workstream.uuid(),
        contact,
        context_items: items,
        notes: transcript_note(request, history).into_iter().collect(),
    }
}

/// The body of `POST contacts` for a verified visitor with no contact
/// (`create_contact_if_missing`): `lastname` is required on create, so a one-word name (or
/// none) goes there.
pub fn contact_body(
    contactid: Uuid,
    name: Option<&str>,
    email: &str,
    phone: Option<&str>,
) -> ContactCreate {
    let name = name.map(str::trim).unwrap_or_default();
    let (first, last) = match name.rsplit_once(' ') {
        Some((first, last)) => (Some(first.trim()), last),
        None if !name.is_empty() => (None, name),
        None => (None, email.split('@').next().unwrap_or(email)),
    };
    ContactCreate {
        contactid,
        lastname: cut(last, 50),
        firstname: first.map(|f| cut(f, 50)),
        emailaddress1: email.to_owned(),
        telephone1: phone.map(|p| cut(p, 50)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_counts_utf16_units_and_never_splits_a_character() {
        assert_eq!(cut("héllo", 2), "hé");
        assert_eq!(cut("a😀b", 2), "a", "the emoji needs two units");
        assert_eq!(cut("a😀b", 3), "a😀");
        assert_eq!(cut("日本語", 10), "日本語");
    }

    fn request() -> HandoffRequest {
        HandoffRequest {
            org_id: OrgId::parse("acme").unwrap(),
            session_id: SessionId::parse("s1").unwrap(),
            channel: Channel::parse("web"),
            customer: crate::domain::Customer {
                name: Some("Ada <Lovelace>".into()),
                ..Default::default()
            },
            summary: "help".into(),
            language: None,
            sentiment: None,
            reason: None,
        }
    }

    fn message(sender: &str, text: &str) -> QueuedMessage {
        QueuedMessage {
            created_at: Some("2026-11-23T09:00:05Z".into()),
            sender: Some(sender.into()),
            text: Some(text.into()),
        }
    }

    #[test]
    fn the_transcript_note_is_escaped_html_with_a_stable_id() {
        assert!(
            transcript_note(&request(), &[]).is_none(),
            "no messages, no note"
        );
        let note = transcript_note(
            &request(),
            &[
                message("contact", "<script>alert(1)</script>\nsecond line"),
                message("ai", "Let me get a colleague & check."),
                message("contact", "   "),
            ],
        )
        .unwrap();
        assert_eq!(
            note.notetext,
            "<p>2026-11-23T09:00:05Z <b>Ada &lt;Lovelace&gt;</b>: &lt;script&gt;alert(1)&lt;&#x2f;script&gt;<br>second line</p>\
             <p>2026-11-23T09:00:05Z <b>AI</b>: Let me get a colleague &amp; check.</p>"
        );
        assert_eq!(
            note.annotationid,
            transcript_note_id(&request().org_id, &request().session_id)
        );
        assert!(note.subject.contains("s1"));
    }

    #[test]
    fn a_long_transcript_keeps_its_newest_messages_within_the_note_limit() {
        let long = "é".repeat(30_000);
        let history: Vec<_> = (0..5)
            .map(|i| message("ai", &format!("{i}{long}")))
            .collect();
        let note = transcript_note(&request(), &history).unwrap();
        assert!(note.notetext.encode_utf16().count() <= NOTE_TEXT_MAX);
        assert!(note
            .notetext
            .starts_with("<p><i>Earlier messages are not shown"));
        assert!(note.notetext.contains("<b>AI</b>: 4"), "the newest is kept");
        assert!(!note.notetext.contains("<b>AI</b>: 0"), "the oldest is cut");
    }

    #[test]
    fn keys_are_stable_and_distinct() {
        let org = OrgId::parse("acme").unwrap();
        let a = activity_id(&org, &SessionId::parse("s1").unwrap());
        assert_eq!(a, activity_id(&org, &SessionId::parse("s1").unwrap()));
        assert_ne!(a, activity_id(&org, &SessionId::parse("s2").unwrap()));
        assert_ne!(
            a,
            activity_id(
                &OrgId::parse("acme2").unwrap(),
                &SessionId::parse("s1").unwrap()
            )
        );
        assert_eq!(a.get_version_num(), 5);
    }
}
