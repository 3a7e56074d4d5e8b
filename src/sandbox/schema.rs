//! The columns and navigation properties the sandbox accepts, from Microsoft's table
//! reference as summarised in docs/sources.md#tables. Anything else is rejected the way Dataverse
//! rejects an unknown property (`0x80060888`).

/// Column types the sandbox checks.
#[derive(Debug, Clone, Copy)]
pub enum Column {
    Guid,
    /// A string of at most this many UTF-16 code units.
    Text(usize),
    Int,
    Bool,
    /// A multi-select choice sent as a string of comma-separated values.
    MultiChoice(&'static [i64]),
    Choice(&'static [i64]),
}

/// `msdyn_streamsource` values.
pub const STREAM_SOURCES: &[i64] = &[
    192_360_000,
    192_340_000,
    192_300_000,
    192_350_002,
    192_350_000,
    192_370_000,
    192_440_000,
    192_330_000,
    192_350_001,
    192_310_000,
    192_320_000,
    19_241_000,
    192_380_000,
    192_390_000,
    192_400_000,
    192_450_000,
    192_450_001,
];

pub struct Table {
    /// Logical name, for error messages.
    pub name: &'static str,
    pub columns: &'static [(&'static str, Column)],
    /// Writable required columns.
    pub required: &'static [&'static str],
    /// Single-valued navigation properties: (name, target entity set).
    pub lookups: &'static [(&'static str, &'static str)],
    /// Collection-valued navigation properties usable in a deep insert: (name, table).
    pub collections: &'static [(&'static str, &'static Table)],
}

pub static CONTEXT_ITEM: Table = Table {
    name: "msdyn_ocliveworkitemcontextitem",
    columns: &[
        ("msdyn_ocliveworkitemcontextitemid", Column::Guid),
        ("msdyn_name", Column::Text(100)),
        ("msdyn_value", Column::Text(4000)),
        (
            "msdyn_datatype",
            Column::Choice(&[192_350_000, 192_350_001, 192_350_100]),
        ),
        ("msdyn_isdisplayable", Column::Bool),
    ],
    required: &["msdyn_name"],
    lookups: &[("msdyn_ocliveworkitemid", "msdyn_ocliveworkitems")],
    collections: &[],
};

/// `annotation` (note), as deep-inserted with its parent (`../shared/DATAVERSE.md` part 2,
/// §2.1): `subject` is required, `notetext` holds 100,000 characters.
pub static ANNOTATION: Table = Table {
    name: "annotation",
    columns: &[
        ("annotationid", Column::Guid),
        ("subject", Column::Text(500)),
        ("notetext", Column::Text(100_000)),
        ("isdocument", Column::Bool),
        ("filename", Column::Text(255)),
        ("mimetype", Column::Text(256)),
    ],
    required: &["subject"],
    lookups: &[
        ("objectid_msdyn_ocliveworkitem", "msdyn_ocliveworkitems"),
        ("objectid_incident", "incidents"),
        ("objectid_contact", "contacts"),
    ],
    collections: &[],
};

pub static LIVE_WORK_ITEM: Table = Table {
    name: "msdyn_ocliveworkitem",
    columns: &[
        ("activityid", Column::Guid),
        ("subject", Column::Text(200)),
        ("msdyn_title", Column::Text(4000)),
        ("description", Column::Text(2000)),
        ("msdyn_channel", Column::MultiChoice(STREAM_SOURCES)),
        ("msdyn_isoutbound", Column::Bool),
        (
            "msdyn_workstreamworkdistributionmode",
            Column::Choice(&[192_350_000, 192_350_001]),
        ),
        ("msdyn_conversationsummaryfield", Column::Text(4000)),
        ("msdyn_customerlocale", Column::Text(100)),
        ("msdyn_ocliveworkitemid", Column::Text(100)),
        ("statecode", Column::Int),
        ("statuscode", Column::Int),
    ],
    required: &["subject"],
    lookups: &[
        (
            "msdyn_liveworkstreamid_msdyn_ocliveworkitem",
            "msdyn_liveworkstreams",
        ),
        ("msdyn_cdsqueueid_msdyn_ocliveworkitem", "queues"),
        ("msdyn_customer_msdyn_ocliveworkitem_contact", "contacts"),
        ("msdyn_customer_msdyn_ocliveworkitem_account", "accounts"),
        ("regardingobjectid_contact_msdyn_ocliveworkitem", "contacts"),
        (
            "regardingobjectid_incident_msdyn_ocliveworkitem",
            "incidents",
        ),
        ("ownerid_msdyn_ocliveworkitem", "systemusers"),
    ],
    collections: &[
        (
            "msdyn_msdyn_ocliveworkitem_msdyn_ocliveworkitemcontextitem_ocliveworkitemid",
            &CONTEXT_ITEM,
        ),
        ("msdyn_ocliveworkitem_Annotations", &ANNOTATION),
    ],
};

/// `incident.caseorigincode` values of a stock org (1 Phone, 2 Email, 3 Web, 2483 Facebook,
/// 3986 Twitter, 700610000 IoT).
pub const CASE_ORIGINS: &[i64] = &[1, 2, 3, 2483, 3986, 700_610_000];

/// `incident` (`../shared/DATAVERSE.md` part 2, §1.1): `title` String(200) required,
/// `description` Memo(2000); the customer (`customerid_contact` or `customerid_account`)
/// is checked by the create itself (`0x80044410`, `0x8004440f`).
pub static INCIDENT: Table = Table {
    name: "incident",
    columns: &[
        ("incidentid", Column::Guid),
        ("title", Column::Text(200)),
        ("description", Column::Text(2000)),
        ("caseorigincode", Column::Choice(CASE_ORIGINS)),
        ("prioritycode", Column::Choice(&[1, 2, 3])),
        ("casetypecode", Column::Choice(&[1, 2, 3])),
        ("severitycode", Column::Choice(&[1])),
        ("routecase", Column::Bool),
    ],
    required: &["title"],
    lookups: &[
        ("customerid_contact", "contacts"),
        ("customerid_account", "accounts"),
        ("primarycontactid", "contacts"),
        ("ownerid", "systemusers"),
        ("ownerid", "teams"),
    ],
    collections: &[("Incident_Annotation", &ANNOTATION)],
};

/// Readable incident columns (writable ones plus the generated `ticketnumber` and the state).
pub const INCIDENT_READABLE: &[&str] = &[
    "incidentid",
    "title",
    "description",
    "caseorigincode",
    "prioritycode",
    "routecase",
    "ticketnumber",
    "statecode",
    "statuscode",
];

pub static CONTACT: Table = Table {
    name: "contact",
    columns: &[
        ("contactid", Column::Guid),
        ("firstname", Column::Text(50)),
        ("lastname", Column::Text(50)),
        ("emailaddress1", Column::Text(100)),
        ("emailaddress2", Column::Text(100)),
        ("emailaddress3", Column::Text(100)),
        ("telephone1", Column::Text(50)),
        ("mobilephone", Column::Text(50)),
    ],
    required: &["lastname"],
    lookups: &[],
    collections: &[],
};

/// Readable contact columns (writable ones plus read-only `fullname` and `statecode`).
pub const CONTACT_READABLE: &[&str] = &[
    "contactid",
    "fullname",
    "firstname",
    "lastname",
    "emailaddress1",
    "emailaddress2",
    "emailaddress3",
    "telephone1",
    "mobilephone",
    "statecode",
];

/// Readable workstream columns.
pub const WORKSTREAM_READABLE: &[&str] = &[
    "msdyn_liveworkstreamid",
    "msdyn_name",
    "msdyn_streamsource",
    "msdyn_workdistributionmode",
    "msdyn_direction",
    "msdyn_capacityrequired",
    "msdyn_autocloseafterinactivity",
    "statecode",
];

/// A rejection: HTTP status, Dataverse error code, message.
pub type Rejection = (u16, &'static str, String);

fn unknown_property(table: &Table, name: &str) -> Rejection {
    (
        400,
        "0x80060888",
        format!(
            "The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{}'. Make sure to only use property names that are defined by the type.",
            table.name
        ),
    )
}

/// What a create body holds besides columns: lookups to resolve as `(navigation property,
/// entity set, id)`, and nested rows per collection-valued navigation property.
pub type CreateParts = (
    Vec<(String, String, String)>,
    Vec<(String, Vec<serde_json::Value>)>,
);

/// Checks a create body against `table`. Returns the lookups to resolve as
/// `(navigation property, entity set, id)` and the nested rows per collection.
pub fn check_create(table: &Table, body: &serde_json::Value) -> Result<CreateParts, Rejection> {
    use serde_json::Value;
    let Value::Object(map) = body else {
        return Err((
            400,
            "0x80048d19",
            "The request body must be a JSON object.".into(),
        ));
    };
    let mut binds = Vec::new();
    let mut nested = Vec::new();
    for (key, value) in map {
        if let Some(nav) = key.strip_suffix("@odata.bind") {
            let targets: Vec<&str> = table
                .lookups
                .iter()
                .filter(|(n, _)| *n == nav)
                .map(|(_, set)| *set)
                .collect();
            let Some(first) = targets.first() else {
                return Err((
                    400,
                    "0x80060888",
                    format!("An undeclared property '{nav}' which only has property annotations in the payload but no property value was found in the payload."),
                ));
            };
            // A lookup with several target tables (`ownerid`) names one of them.
            let named = value.as_str().and_then(|r| {
                let r = r.strip_prefix('/').unwrap_or(r);
                targets.iter().find(|t| r.starts_with(&format!("{t}(")))
            });
            let set = named.unwrap_or(first);
            let Some(reference) = value.as_str() else {
                return Err((
                    400,
                    "0x80048d19",
                    format!("The value of '{key}' must be a string like '/{set}(<guid>)'."),
                ));
            };
            let inner = reference
                .strip_prefix('/')
                .unwrap_or(reference)
                .strip_prefix(set)
                .and_then(|r| r.strip_prefix('('))
                .and_then(|r| r.strip_suffix(')'));
            match inner.filter(|id| uuid::Uuid::try_parse(id).is_ok()) {
                Some(id) => binds.push((nav.to_owned(), (*set).to_owned(), id.to_owned())),
                None => {
                    return Err((
                        400,
                        "0x80048d19",
                        format!(
                            "The value '{reference}' of '{key}' is not a valid reference to {set}."
                        ),
                    ))
                }
            }
        } else if let Some((_, child)) = table.collections.iter().find(|(n, _)| n == key) {
            let Some(rows) = value.as_array() else {
                return Err((
                    400,
                    "0x80048d19",
                    format!("'{key}' must be an array of objects."),
                ));
            };
            for row in rows {
                check_create(child, row)?;
            }
            nested.push((key.clone(), rows.clone()));
        } else if let Some((_, column)) = table.columns.iter().find(|(n, _)| n == key) {
            check_value(table, key, *column, value)?;
        } else {
            return Err(unknown_property(table, key));
        }
    }
    for required in table.required {
        if map.get(*required).is_none_or(|v| v.is_null()) {
            return Err((
                400,
                "0x80040203",
                format!(
                    "A value for '{required}' is required to create a {} record.",
                    table.name
                ),
            ));
        }
    }
    Ok((binds, nested))
}

fn check_value(
    table: &Table,
    name: &str,
    column: Column,
    value: &serde_json::Value,
) -> Result<(), Rejection> {
    let bad_type = |expected: &str| {
        Err((
            400,
            "0x80048d19",
            format!("Cannot convert the literal '{value}' to the expected type '{expected}' of '{name}'."),
        ))
    };
    if value.is_null() {
        return Ok(());
    }
    match column {
        Column::Guid => match value.as_str().map(uuid::Uuid::try_parse) {
            Some(Ok(_)) => Ok(()),
            _ => bad_type("Edm.Guid"),
        },
        Column::Text(max) => match value.as_str() {
            Some(s) if s.encode_utf16().count() <= max => Ok(()),
            Some(s) => Err((
                400,
                "0x80044331",
                format!(
                    "A validation error occurred. The length of the '{name}' attribute of the '{}' entity exceeded the maximum allowed length of '{max}' (got {}).",
                    table.name,
                    s.encode_utf16().count()
                ),
            )),
            None => bad_type("Edm.String"),
        },
        Column::Int => match value.as_i64() {
            Some(_) => Ok(()),
            None => bad_type("Edm.Int32"),
        },
        Column::Bool => match value.as_bool() {
            Some(_) => Ok(()),
            None => bad_type("Edm.Boolean"),
        },
        Column::Choice(allowed) => match value.as_i64() {
            Some(v) if allowed.contains(&v) => Ok(()),
            Some(v) => Err((400, "0x8004431a", format!("{v} is not a valid value for the choice column '{name}'."))),
            None => bad_type("Edm.Int32"),
        },
        Column::MultiChoice(allowed) => {
            let Some(text) = value.as_str() else {
                return bad_type("Edm.String (comma-separated choice values)");
            };
            for part in text.split(',') {
                match part.trim().parse::<i64>() {
                    Ok(v) if allowed.contains(&v) => {}
                    _ => {
                        return Err((400, "0x8004431a", format!("'{part}' is not a valid value for the choice column '{name}'.")))
                    }
                }
            }
            Ok(())
        }
    }
}
