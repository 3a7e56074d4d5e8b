//! The bodies the bridge creates Dataverse rows with, as types: column and navigation
//! property names live here once (docs/sources.md#tables).

use serde::Serialize;
use uuid::Uuid;

use super::StreamSource;
use crate::domain::incident::{CustomerRef, OwnerRef};

/// `msdyn_datatype` 192350000: Text.
const TEXT_DATATYPE: i64 = 192_350_000;

/// `POST msdyn_ocliveworkitems`: a live work item (Conversation) with a client-chosen
/// `activityid`, bound to its workstream and (optionally) contact, with its context items
/// deep-inserted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveWorkItemCreate {
    pub activityid: Uuid,
    /// String(200).
    pub subject: String,
    /// String(4000).
    pub msdyn_title: String,
    /// Memo(2000).
    pub description: String,
    /// The `msdyn_streamsource` value, sent as text (a multi-select choice).
    #[serde(serialize_with = "stream_source_text")]
    pub msdyn_channel: StreamSource,
    /// `/msdyn_liveworkstreams({id})`.
    #[serde(
        rename = "msdyn_liveworkstreamid_msdyn_ocliveworkitem@odata.bind",
        serialize_with = "workstream_bind"
    )]
    pub workstream: Uuid,
    /// `/contacts({id})`, when a contact is linked or created.
    #[serde(
        rename = "msdyn_customer_msdyn_ocliveworkitem_contact@odata.bind",
        serialize_with = "contact_bind",
        skip_serializing_if = "Option::is_none"
    )]
    pub contact: Option<Uuid>,
    #[serde(
        rename = "msdyn_msdyn_ocliveworkitem_msdyn_ocliveworkitemcontextitem_ocliveworkitemid"
    )]
    pub context_items: Vec<ContextItemCreate>,
    /// Notes created in the same transaction (the transcript), through the conversation's
    /// notes relationship `msdyn_ocliveworkitem_Annotations` (`../shared/DATAVERSE.md`
    /// part 2, §2.1).
    #[serde(
        rename = "msdyn_ocliveworkitem_Annotations",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub notes: Vec<AnnotationCreate>,
}

/// `POST incidents` (a case) with a client-chosen `incidentid` (`../shared/DATAVERSE.md`
/// part 2, §1.2): `title` String(200, required), `description` Memo(2000), the choices
/// `caseorigincode` and `prioritycode`, the required customer (`customerid_contact` or
/// `customerid_account`, never both: `0x8004440f`), an optional owner, `routecase: false`
/// when the bridge routes it itself, and the transcript note deep-inserted through
/// `Incident_Annotation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IncidentCreate {
    pub incidentid: Uuid,
    pub title: String,
    pub description: String,
    pub caseorigincode: i64,
    pub prioritycode: i64,
    #[serde(flatten, serialize_with = "customer_bind")]
    pub customer: CustomerRef,
    #[serde(
        rename = "ownerid@odata.bind",
        serialize_with = "owner_bind",
        skip_serializing_if = "Option::is_none"
    )]
    pub owner: Option<OwnerRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routecase: Option<bool>,
    #[serde(rename = "Incident_Annotation", skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<AnnotationCreate>,
}

/// One `annotation` (note), deep-inserted with its parent: a client-chosen `annotationid`,
/// `subject` (String(500), required) and `notetext` (Memo(100,000), rich text: HTML).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AnnotationCreate {
    pub annotationid: Uuid,
    pub subject: String,
    pub notetext: String,
}

/// One `msdyn_ocliveworkitemcontextitem`, deep-inserted with its live work item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContextItemCreate {
    pub msdyn_name: String,
    /// String(4000).
    pub msdyn_value: String,
    pub msdyn_datatype: i64,
    pub msdyn_isdisplayable: bool,
}

impl ContextItemCreate {
    /// A displayable text context item.
    pub fn text(name: &str, value: String) -> Self {
        Self {
            msdyn_name: name.to_owned(),
            msdyn_value: value,
            msdyn_datatype: TEXT_DATATYPE,
            msdyn_isdisplayable: true,
        }
    }
}

/// `POST contacts` with a client-chosen `contactid`. `lastname` is required on create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContactCreate {
    pub contactid: Uuid,
    /// String(50).
    pub lastname: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub firstname: Option<String>,
    pub emailaddress1: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telephone1: Option<String>,
}

fn stream_source_text<S: serde::Serializer>(
    source: &StreamSource,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(&source.value().to_string())
}

fn workstream_bind<S: serde::Serializer>(id: &Uuid, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("/msdyn_liveworkstreams({id})"))
}

fn contact_bind<S: serde::Serializer>(id: &Option<Uuid>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.serialize_str(&format!("/contacts({id})")),
        None => s.serialize_none(),
    }
}

fn customer_bind<S: serde::Serializer>(customer: &CustomerRef, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let (key, set, id) = match *customer {
        CustomerRef::Contact(id) => ("customerid_contact@odata.bind", "contacts", id),
        CustomerRef::Account(id) => ("customerid_account@odata.bind", "accounts", id),
    };
    let mut map = s.serialize_map(Some(1))?;
    map.serialize_entry(key, &format!("/{set}({id})"))?;
    map.end()
}

fn owner_bind<S: serde::Serializer>(owner: &Option<OwnerRef>, s: S) -> Result<S::Ok, S::Error> {
    match owner {
        Some(owner) => {
            let (set, id) = owner.entity_set();
            s.serialize_str(&format!("/{set}({id})"))
        }
        None => s.serialize_none(),
    }
}
