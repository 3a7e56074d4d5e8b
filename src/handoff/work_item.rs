//! The `msdyn_ocliveworkitem` create body (ARCHITECTURE.md, "One handoff", step 7) and its deterministic key.

use uuid::Uuid;

use crate::domain::HandoffRequest;
use crate::domain::{Channel, OrgId, SessionId, WorkstreamId};
use crate::dynamics::{ContactCreate, ContextItemCreate, LiveWorkItemCreate, StreamSource};

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
