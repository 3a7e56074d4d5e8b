//! The Dataverse Web API v9.2 subset: `WhoAmI`, `contacts` (query, create, read by id),
//! `msdyn_liveworkstreams(id)`, `queues(id)`, `accounts(id)`, `systemusers(id)`, `teams(id)`,
//! `msdyn_ocliveworkitems` (deep-insert create with a client-chosen key, read by id with
//! `$expand`, list), `incidents` (create with the required customer, a generated
//! `ticketnumber`, `Prefer: return=representation`, notes deep-inserted; read by id; list),
//! `annotations` (a note on its own, bound to one parent that exists),
//! `msdyn_ApplyRoutingRuleEntityRecord`, and `RetrieveUserPrivileges`. Every request is
//! checked against the privileges of the app's role (`seed::App::privileges`) and refused
//! like Dataverse refuses (`0x80040220`, naming the privilege).

use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::schema::{
    self, Rejection, CONTACT, CONTACT_READABLE, INCIDENT, INCIDENT_READABLE, LIVE_WORK_ITEM,
    WORKSTREAM_READABLE,
};
use super::{odata, respond, DropSwitch, Handled, RequestMeta, SandboxState, Shared};

/// The conversation's notes relationship (deep insert of `annotation` rows).
const NOTES: &str = "msdyn_ocliveworkitem_Annotations";
const CONTEXT_ITEMS: &str =
    "msdyn_msdyn_ocliveworkitem_msdyn_ocliveworkitemcontextitem_ocliveworkitemid";
/// The incident's notes relationship.
const INCIDENT_NOTES: &str = "Incident_Annotation";
/// The bound function that lists a user's privileges.
const RETRIEVE_USER_PRIVILEGES: &str = "/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()";

/// The privileges of a full role (an app whose seed names none): every one a request here
/// can need.
pub const FULL_ROLE: &[&str] = &[
    "prvReadContact",
    "prvCreateContact",
    "prvReadmsdyn_liveworkstream",
    "prvReadQueue",
    "prvCreateActivity",
    "prvReadActivity",
    "prvCreatemsdyn_ocliveworkitemcontextitem",
    "prvCreateNote",
    "prvCreateIncident",
    "prvReadIncident",
    "prvReadAccount",
    "prvReadUser",
    "prvReadTeam",
];

fn kind_of(method: &Method, set: &str, key: Option<&str>) -> &'static str {
    match (method.as_str(), set, key.is_some()) {
        ("GET", "WhoAmI", false) => "whoami",
        ("GET", "contacts", false) => "contacts",
        ("POST", "contacts", false) => "create_contact",
        ("GET", "msdyn_liveworkstreams", true) => "workstream",
        ("GET", "queues", true) => "queue",
        ("POST", "msdyn_ocliveworkitems", false) => "create_work_item",
        ("GET", "msdyn_ocliveworkitems", true) => "get_work_item",
        ("GET", "msdyn_ocliveworkitems", false) => "list_work_items",
        ("POST", "incidents", false) => "create_incident",
        ("POST", "annotations", false) => "create_annotation",
        ("GET", "incidents", true) => "get_incident",
        ("GET", "incidents", false) => "list_incidents",
        ("POST", "msdyn_ApplyRoutingRuleEntityRecord", false) => "route_record",
        ("GET", "contacts", true) => "contact",
        ("GET", "accounts", true) => "account",
        ("GET", "systemusers", true) => "systemuser",
        ("GET", "teams", true) => "team",
        ("GET", "privileges", true) => "privileges",
        _ => "other",
    }
}

/// `entityset` or `entityset(key)`.
fn split_segment(path: &str) -> (String, Option<String>) {
    match path.split_once('(') {
        Some((set, rest)) => (set.to_owned(), Some(rest.trim_end_matches(')').to_owned())),
        None => (path.to_owned(), None),
    }
}

pub(super) async fn handle(
    State(state): State<Shared>,
    Path(path): Path<String>,
    req: Request,
) -> Response {
    let switch = req.extensions().get::<DropSwitch>().cloned();
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 4 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let (set, key) = match path.strip_suffix(RETRIEVE_USER_PRIVILEGES) {
        Some(user) => ("privileges".to_owned(), split_segment(user).1),
        None => split_segment(&path),
    };
    let kind = kind_of(&parts.method, &set, key.as_deref());
    let body_json: Option<Value> = if parts.method == Method::POST {
        serde_json::from_slice(&bytes).ok()
    } else {
        None
    };
    let meta = RequestMeta::of(kind, &parts, body_json.clone());
    let state2 = state.clone();
    respond(&state, meta, switch, || async move {
        let mut s = state2.lock().expect("poisoned");
        match dispatch(&mut s, kind, &parts, key.as_deref(), &bytes, body_json) {
            Ok(h) => h,
            Err((status, code, message)) => Handled::dataverse_error(
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                code,
                message,
            ),
        }
    })
    .await
}

fn dispatch(
    s: &mut SandboxState,
    kind: &str,
    parts: &axum::http::request::Parts,
    key: Option<&str>,
    raw_body: &[u8],
    body: Option<Value>,
) -> Result<Handled, Rejection> {
    // Authentication: a bearer token the sandbox issued, not expired.
    let token = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let client_id = match token.and_then(|t| s.tokens.get(t)) {
        Some(t) if t.expires_at > s.clock.instant() => t.client_id.clone(),
        _ => {
            let mut response = StatusCode::UNAUTHORIZED.into_response();
            response.headers_mut().insert(
                "www-authenticate",
                format!("Bearer authorization_uri={}/common/oauth2/authorize", s.url)
                    .parse()
                    .expect("valid header"),
            );
            return Ok(Handled {
                response,
                status: 401,
                error_code: None,
            });
        }
    };
    let app = s
        .seed
        .app(&client_id)
        .cloned()
        .expect("tokens are issued to seeded apps");
    if !app.application_user {
        return Err((
            403,
            "0x80072560",
            "The user is not a member of the organization.".into(),
        ));
    }
    if !app.security_role {
        return Err((
            403,
            "0x80040220",
            format!("Principal user (Id={}, type=8, roleCount=0, privilegeCount=0, accessMode='4'), is missing prvReadmsdyn_ocliveworkitem privilege.", app.user_id),
        ));
    }
    let representation = parts
        .headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("return=representation"));
    if let Some(missing) = missing_privilege(&app, kind, body.as_ref(), representation) {
        return Err((
            403,
            "0x80040220",
            format!(
                "Principal user (Id={}, type=8, roleCount=1, privilegeCount={}, accessMode='4'), is missing {missing} privilege (Id={}).",
                app.user_id,
                app.privileges.as_ref().map_or(FULL_ROLE.len(), Vec::len),
                Uuid::new_v5(&Uuid::NAMESPACE_OID, missing.as_bytes())
            ),
        ));
    }
    let query: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    if parts.method == Method::POST
        && !parts
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"))
    {
        return Err((
            415,
            "0x80048d19",
            "Content-Type must be application/json.".into(),
        ));
    }
    if parts.method == Method::POST && body.is_none() {
        return Err((
            400,
            "0x80048d19",
            format!(
                "The request body is not valid JSON ({} bytes).",
                raw_body.len()
            ),
        ));
    }
    match kind {
        "whoami" => Ok(Handled::json(
            StatusCode::OK,
            json!({
                "@odata.context": format!("{}/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse", s.url),
                "BusinessUnitId": s.seed.business_unit_id,
                "UserId": app.user_id,
                "OrganizationId": s.seed.organization_id,
            }),
        )),
        "contacts" => query_contacts(s, &query),
        "create_contact" => create_contact(s, body.as_ref().expect("checked above")),
        "workstream" => {
            let rows = s.seed.workstreams.clone();
            read_by_id(
                &rows,
                "msdyn_liveworkstreamid",
                "msdyn_liveworkstream",
                WORKSTREAM_READABLE,
                key,
                &query,
            )
        }
        "queue" => {
            let rows = s.seed.queues.clone();
            read_by_id(&rows, "queueid", "queue", &["queueid", "name"], key, &query)
        }
        "create_work_item" => create_work_item(s, body.as_ref().expect("checked above")),
        "create_incident" => create_incident(
            s,
            body.as_ref().expect("checked above"),
            &query,
            representation,
        ),
        "get_incident" => {
            let rows: Vec<Value> = s.incidents.values().cloned().collect();
            read_by_id(
                &rows,
                "incidentid",
                "incident",
                INCIDENT_READABLE,
                key,
                &query,
            )
        }
        "list_incidents" => {
            let rows: Vec<Value> = s.incidents.values().cloned().collect();
            Ok(Handled::json(StatusCode::OK, json!({ "value": rows })))
        }
        "route_record" => route_record(s, body.as_ref().expect("checked above")),
        "create_annotation" => create_annotation(s, body.as_ref().expect("checked above")),
        "contact" => {
            let rows = s.contacts.clone();
            read_by_id(&rows, "contactid", "contact", CONTACT_READABLE, key, &query)
        }
        "account" => {
            let rows = s.seed.accounts.clone();
            read_by_id(
                &rows,
                "accountid",
                "account",
                &["accountid", "name", "statecode"],
                key,
                &query,
            )
        }
        "systemuser" => {
            let rows = s.seed.systemusers.clone();
            read_by_id(
                &rows,
                "systemuserid",
                "systemuser",
                &["systemuserid", "fullname"],
                key,
                &query,
            )
        }
        "team" => {
            let rows = s.seed.teams.clone();
            read_by_id(&rows, "teamid", "team", &["teamid", "name"], key, &query)
        }
        "privileges" => user_privileges(s, key),
        "get_work_item" => get_work_item(s, key, &query),
        "list_work_items" => {
            let expand = expand_option(&query)?;
            let rows: Vec<Value> = s
                .work_items
                .values()
                .map(|w| shape_work_item(w, expand))
                .collect();
            Ok(Handled::json(StatusCode::OK, json!({ "value": rows })))
        }
        _ => Err((
            404,
            "0x80060888",
            format!("Resource not found for the segment '{}'.", parts.uri.path()),
        )),
    }
}

fn option<'a>(query: &'a [(String, String)], name: &str) -> Option<&'a str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn only_options(query: &[(String, String)], allowed: &[&str]) -> Result<(), Rejection> {
    match query.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
        Some((k, _)) => Err((
            400,
            "0x80060888",
            format!("The query parameter {k} is not supported"),
        )),
        None => Ok(()),
    }
}

fn select(
    query: &[(String, String)],
    readable: &[&str],
    entity: &str,
) -> Result<Option<Vec<String>>, Rejection> {
    let Some(list) = option(query, "$select") else {
        return Ok(None);
    };
    let names: Vec<String> = list.split(',').map(|n| n.trim().to_owned()).collect();
    if let Some(bad) = names.iter().find(|n| !readable.contains(&n.as_str())) {
        return Err((
            400,
            "0x80060888",
            format!("Could not find a property named '{bad}' on type 'Microsoft.Dynamics.CRM.{entity}'."),
        ));
    }
    Ok(Some(names))
}

fn project(row: &Value, columns: &Option<Vec<String>>) -> Value {
    let mut out = Map::new();
    out.insert("@odata.etag".into(), json!("W/\"1000001\""));
    if let Value::Object(map) = row {
        for (k, v) in map {
            if columns.as_ref().is_none_or(|c| c.contains(k)) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(out)
}

fn query_contacts(s: &SandboxState, query: &[(String, String)]) -> Result<Handled, Rejection> {
    only_options(query, &["$select", "$filter", "$top"])?;
    let columns = select(query, CONTACT_READABLE, "contact")?;
    let filter = match option(query, "$filter") {
        Some(text) => {
            let expr = odata::parse_filter(text).map_err(|e| (400, "0x80060888", e))?;
            if let Some(bad) = expr
                .properties()
                .into_iter()
                .find(|p| !CONTACT_READABLE.contains(&p.as_str()))
            {
                return Err((400, "0x80060888", format!("Could not find a property named '{bad}' on type 'Microsoft.Dynamics.CRM.contact'.")));
            }
            Some(expr)
        }
        None => None,
    };
    let top = match option(query, "$top") {
        Some(t) => Some(t.parse::<usize>().map_err(|_| {
            (
                400,
                "0x80060888",
                format!("Invalid value '{t}' for $top query option."),
            )
        })?),
        None => None,
    };
    let rows: Vec<Value> = s
        .contacts
        .iter()
        .filter(|c| filter.as_ref().is_none_or(|f| f.matches(c)))
        .take(top.unwrap_or(5000))
        .map(|c| project(c, &columns))
        .collect();
    Ok(Handled::json(
        StatusCode::OK,
        json!({ "@odata.context": format!("{}/api/data/v9.2/$metadata#contacts", s.url), "value": rows }),
    ))
}

fn read_by_id(
    rows: &[Value],
    key_column: &str,
    entity: &str,
    readable: &[&str],
    key: Option<&str>,
    query: &[(String, String)],
) -> Result<Handled, Rejection> {
    only_options(query, &["$select"])?;
    let columns = select(query, readable, entity)?;
    let key = key.unwrap_or_default();
    let id = Uuid::try_parse(key).map_err(|_| {
        (
            400,
            "0x80060888",
            format!("Bad Request - Error in query syntax: '{key}' is not a GUID."),
        )
    })?;
    rows.iter()
        .find(|r| {
            r.get(key_column)
                .and_then(Value::as_str)
                .and_then(|v| Uuid::try_parse(v).ok())
                == Some(id)
        })
        .map(|row| Handled::json(StatusCode::OK, project(row, &columns)))
        .ok_or_else(|| {
            (
                404,
                "0x80040217",
                format!("{entity} With Id = {id} Does Not Exist"),
            )
        })
}

fn exists(s: &SandboxState, set: &str, id: &str) -> bool {
    let Ok(id) = Uuid::try_parse(id) else {
        return false;
    };
    let has = |rows: &[Value], col: &str| {
        rows.iter().any(|r| {
            r.get(col)
                .and_then(Value::as_str)
                .and_then(|v| Uuid::try_parse(v).ok())
                == Some(id)
        })
    };
    match set {
        "msdyn_liveworkstreams" => has(&s.seed.workstreams, "msdyn_liveworkstreamid"),
        "contacts" => has(&s.contacts, "contactid"),
        "queues" => has(&s.seed.queues, "queueid"),
        "accounts" => has(&s.seed.accounts, "accountid"),
        "systemusers" => has(&s.seed.systemusers, "systemuserid"),
        "teams" => has(&s.seed.teams, "teamid"),
        _ => false,
    }
}

fn entity_of(set: &str) -> &str {
    set.strip_suffix('s').unwrap_or(set)
}

fn create_work_item(s: &mut SandboxState, body: &Value) -> Result<Handled, Rejection> {
    let (binds, nested) = schema::check_create(&LIVE_WORK_ITEM, body)?;
    for (_, set, id) in &binds {
        if !exists(s, set, id) {
            return Err((
                404,
                "0x80040217",
                format!("{} With Id = {id} Does Not Exist", entity_of(set)),
            ));
        }
    }
    let id = client_key(body, "activityid", |id| s.work_items.contains_key(id))?;
    let notes = nested_notes(s, &nested, NOTES, id, "msdyn_ocliveworkitem")?;
    let mut row = Map::new();
    for (k, v) in body.as_object().expect("checked as an object") {
        if !k.ends_with("@odata.bind") && k != CONTEXT_ITEMS && k != NOTES {
            row.insert(k.clone(), v.clone());
        }
    }
    row.insert("activityid".into(), json!(id));
    row.insert("statecode".into(), json!(0));
    row.insert("statuscode".into(), json!(1));
    row.insert(
        "createdon".into(),
        json!(crate::clock::rfc3339(crate::clock::now_ms())),
    );
    for (nav, _, target) in &binds {
        let column = nav.split("_msdyn_ocliveworkitem").next().unwrap_or(nav);
        row.insert(format!("_{column}_value"), json!(target));
    }
    let items: Vec<Value> = nested
        .into_iter()
        .filter(|(nav, _)| nav == CONTEXT_ITEMS)
        .flat_map(|(_, rows)| rows)
        .map(|mut item| {
            item["msdyn_ocliveworkitemcontextitemid"] = json!(Uuid::new_v4());
            item["_msdyn_ocliveworkitemid_value"] = json!(id);
            item
        })
        .collect();
    row.insert(CONTEXT_ITEMS.into(), Value::Array(items));
    s.work_items.insert(id, Value::Object(row));
    s.annotations.extend(notes);
    Ok(created(&s.url, "msdyn_ocliveworkitems", id))
}

/// The primary key of a create: the client-chosen one in `column` (checked as a GUID by
/// the schema) or a new one; `taken` says whether a row has it already, answered as
/// Dataverse does (`412 0x80040237`).
fn client_key(
    body: &Value,
    column: &str,
    taken: impl FnOnce(&Uuid) -> bool,
) -> Result<Uuid, Rejection> {
    let id = match body.get(column).and_then(Value::as_str) {
        Some(id) => Uuid::try_parse(id).expect("checked as a GUID"),
        None => Uuid::new_v4(),
    };
    if taken(&id) {
        return Err((
            412,
            "0x80040237",
            "A record with matching key values already exists.".into(),
        ));
    }
    Ok(id)
}

/// The notes deep-inserted under `nav` with their parent `parent` (of table `parent_table`),
/// each with its id (given or new), `_objectid_value` and `objecttypecode`; a key that
/// exists already is refused as Dataverse refuses it (`0x80040237`).
fn nested_notes(
    s: &SandboxState,
    nested: &[(String, Vec<Value>)],
    nav: &str,
    parent: Uuid,
    parent_table: &str,
) -> Result<Vec<(Uuid, Value)>, Rejection> {
    let mut notes: Vec<(Uuid, Value)> = Vec::new();
    for note in nested
        .iter()
        .filter(|(n, _)| n == nav)
        .flat_map(|(_, rows)| rows)
    {
        let note_id = client_key(note, "annotationid", |id| {
            s.annotations.contains_key(id) || notes.iter().any(|(n, _)| n == id)
        })?;
        let mut note = note.clone();
        note["annotationid"] = json!(note_id);
        note["_objectid_value"] = json!(parent);
        note["objecttypecode"] = json!(parent_table);
        notes.push((note_id, note));
    }
    Ok(notes)
}

/// The privilege `app`'s role lacks for a request of `kind` (with `body`, and asking for
/// the created row back when `representation`), if any.
fn missing_privilege(
    app: &super::seed::App,
    kind: &str,
    body: Option<&Value>,
    representation: bool,
) -> Option<&'static str> {
    let has_nested = |nav: &str| {
        body.and_then(|b| b.get(nav))
            .and_then(Value::as_array)
            .is_some_and(|rows| !rows.is_empty())
    };
    let mut needed: Vec<&'static str> = match kind {
        "contacts" | "contact" => vec!["prvReadContact"],
        "create_contact" => vec!["prvCreateContact"],
        "workstream" => vec!["prvReadmsdyn_liveworkstream"],
        "queue" => vec!["prvReadQueue"],
        "create_work_item" => vec!["prvCreateActivity"],
        "get_work_item" | "list_work_items" => vec!["prvReadActivity"],
        "create_incident" => vec!["prvCreateIncident"],
        "create_annotation" => vec!["prvCreateNote"],
        "get_incident" | "list_incidents" | "route_record" => vec!["prvReadIncident"],
        "account" => vec!["prvReadAccount"],
        "systemuser" => vec!["prvReadUser"],
        "team" => vec!["prvReadTeam"],
        _ => vec![],
    };
    if kind == "create_work_item" && has_nested(CONTEXT_ITEMS) {
        needed.push("prvCreatemsdyn_ocliveworkitemcontextitem");
    }
    if (kind == "create_work_item" && has_nested(NOTES))
        || (kind == "create_incident" && has_nested(INCIDENT_NOTES))
    {
        needed.push("prvCreateNote");
    }
    if kind == "create_incident" && representation {
        needed.push("prvReadIncident");
    }
    let held = |p: &str| match &app.privileges {
        Some(list) => list.iter().any(|h| h == p),
        None => FULL_ROLE.contains(&p),
    };
    needed.into_iter().find(|p| !held(p))
}

/// `POST incidents`: the table's columns and limits, exactly one customer
/// (`0x80044410` without, `0x8004440f` with both), binds that exist, a client-chosen key
/// (`0x80040237` when taken), a generated `ticketnumber`, notes deep-inserted through
/// `Incident_Annotation`. Routed once on create unless `routecase` is false (the stock
/// trigger for programmatically created cases). With `Prefer: return=representation`
/// answers `201` with the `$select`ed columns, else `204`.
fn create_incident(
    s: &mut SandboxState,
    body: &Value,
    query: &[(String, String)],
    representation: bool,
) -> Result<Handled, Rejection> {
    only_options(query, &["$select"])?;
    let columns = select(query, INCIDENT_READABLE, "incident")?;
    let (binds, nested) = schema::check_create(&INCIDENT, body)?;
    let customers: Vec<&(String, String, String)> = binds
        .iter()
        .filter(|(nav, _, _)| nav.starts_with("customerid_"))
        .collect();
    let (customer_nav, _, customer_id) = match customers.as_slice() {
        [] => {
            return Err((
                400,
                "0x80044410",
                "You should specify a parent contact or account.".into(),
            ))
        }
        [one] => *one,
        _ => {
            return Err((
                400,
                "0x8004440f",
                "You can either specify a parent contact or account, but not both.".into(),
            ))
        }
    };
    for (_, set, bound) in &binds {
        if !exists(s, set, bound) {
            return Err((
                404,
                "0x80040217",
                format!("{} With Id = {bound} Does Not Exist", entity_of(set)),
            ));
        }
    }
    let id = client_key(body, "incidentid", |id| s.incidents.contains_key(id))?;
    let notes = nested_notes(s, &nested, INCIDENT_NOTES, id, "incident")?;
    let mut row = Map::new();
    for (k, v) in body.as_object().expect("checked as an object") {
        if !k.ends_with("@odata.bind") && k != INCIDENT_NOTES {
            row.insert(k.clone(), v.clone());
        }
    }
    let routed_on_create = body.get("routecase").and_then(Value::as_bool) != Some(false);
    let number = s.incidents.len() + 1;
    row.insert("incidentid".into(), json!(id));
    row.insert(
        "ticketnumber".into(),
        json!(format!(
            "CAS-{number:05}-{}",
            id.simple().to_string()[..6].to_uppercase()
        )),
    );
    row.insert("statecode".into(), json!(0));
    row.insert("statuscode".into(), json!(1));
    row.insert("_customerid_value".into(), json!(customer_id));
    row.insert(
        "customerid_type".into(),
        json!(customer_nav.trim_start_matches("customerid_")),
    );
    row.insert("routings".into(), json!(u64::from(routed_on_create)));
    if let Some((_, set, owner)) = binds.iter().find(|(nav, _, _)| nav == "ownerid") {
        row.insert("_ownerid_value".into(), json!(owner));
        row.insert("owneridtype".into(), json!(entity_of(set)));
    }
    let row = Value::Object(row);
    s.incidents.insert(id, row.clone());
    s.annotations.extend(notes);
    if representation {
        Ok(Handled::json(StatusCode::CREATED, project(&row, &columns)))
    } else {
        Ok(created(&s.url, "incidents", id))
    }
}

/// `POST annotations`: a note on its own, bound to exactly one parent that exists (a live
/// work item, an incident or a contact, through `objectid_<table>`), with the table's
/// limits and a client-chosen key (`0x80040237` when taken).
fn create_annotation(s: &mut SandboxState, body: &Value) -> Result<Handled, Rejection> {
    let (binds, _) = schema::check_create(&schema::ANNOTATION, body)?;
    let [(nav, set, parent)] = binds.as_slice() else {
        return Err((
            400,
            "0x80040203",
            "A note must be bound to exactly one parent record (objectid).".into(),
        ));
    };
    let parent_id = Uuid::try_parse(parent).expect("checked as a GUID");
    let found = match set.as_str() {
        "msdyn_ocliveworkitems" => s.work_items.contains_key(&parent_id),
        "incidents" => s.incidents.contains_key(&parent_id),
        other => exists(s, other, parent),
    };
    if !found {
        return Err((
            404,
            "0x80040217",
            format!("{} With Id = {parent} Does Not Exist", entity_of(set)),
        ));
    }
    let id = client_key(body, "annotationid", |id| s.annotations.contains_key(id))?;
    let mut note = body.clone();
    let map = note.as_object_mut().expect("checked as an object");
    map.retain(|k, _| !k.ends_with("@odata.bind"));
    map.insert("annotationid".into(), json!(id));
    map.insert("_objectid_value".into(), json!(parent_id));
    map.insert(
        "objecttypecode".into(),
        json!(nav.trim_start_matches("objectid_")),
    );
    s.annotations.insert(id, note);
    Ok(created(&s.url, "annotations", id))
}

/// `POST msdyn_ApplyRoutingRuleEntityRecord` `{"Target": "incidents(<id>)"}`: counts a
/// routing on the incident and answers `204` (the action returns nothing). Only incidents
/// are routable here; an unknown record is `0x80040217`.
fn route_record(s: &mut SandboxState, body: &Value) -> Result<Handled, Rejection> {
    let target = body.get("Target").and_then(Value::as_str).ok_or_else(|| {
        (
            400,
            "0x80048d19",
            "The parameter 'Target' is required: a string such as 'incidents(<guid>)'.".to_owned(),
        )
    })?;
    if let Some(extra) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| *k != "Target"))
    {
        return Err((
            400,
            "0x80048d19",
            format!(
                "The parameter '{extra}' is not a parameter of msdyn_ApplyRoutingRuleEntityRecord."
            ),
        ));
    }
    let (set, key) = split_segment(target);
    if set != "incidents" {
        return Err((
            400,
            "0x80040203",
            format!(
                "The table of '{target}' is not enabled for unified routing in this environment."
            ),
        ));
    }
    let id = key
        .as_deref()
        .and_then(|k| Uuid::try_parse(k).ok())
        .ok_or_else(|| {
            (
                400,
                "0x80048d19",
                format!("'{target}' does not name a record by its GUID."),
            )
        })?;
    let row = s.incidents.get_mut(&id).ok_or_else(|| {
        (
            404,
            "0x80040217",
            format!("incident With Id = {id} Does Not Exist"),
        )
    })?;
    let routings = row["routings"].as_u64().unwrap_or(0);
    row["routings"] = json!(routings + 1);
    Ok(Handled {
        response: StatusCode::NO_CONTENT.into_response(),
        status: 204,
        error_code: None,
    })
}

/// `GET systemusers(<id>)/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()`: the privileges
/// of the app whose application user has this id (`RolePrivileges[]` with `Depth`,
/// `PrivilegeId`, `BusinessUnitId`, `PrivilegeName`).
fn user_privileges(s: &SandboxState, key: Option<&str>) -> Result<Handled, Rejection> {
    let id = key.and_then(|k| Uuid::try_parse(k).ok()).ok_or_else(|| {
        (
            400,
            "0x80060888",
            "The systemuser key is not a GUID.".to_owned(),
        )
    })?;
    let app = s
        .seed
        .tenants
        .iter()
        .flat_map(|t| t.apps.iter())
        .find(|a| Uuid::try_parse(&a.user_id).ok() == Some(id) && a.application_user)
        .ok_or_else(|| {
            (
                404,
                "0x80040217",
                format!("systemuser With Id = {id} Does Not Exist"),
            )
        })?;
    let names: Vec<String> = match (&app.privileges, app.security_role) {
        (_, false) => Vec::new(),
        (Some(list), true) => list.clone(),
        (None, true) => FULL_ROLE.iter().map(|p| (*p).to_owned()).collect(),
    };
    let privileges: Vec<Value> = names
        .iter()
        .map(|name| {
            json!({
                "Depth": "Global",
                "PrivilegeId": Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()),
                "BusinessUnitId": s.seed.business_unit_id,
                "PrivilegeName": name,
            })
        })
        .collect();
    Ok(Handled::json(
        StatusCode::OK,
        json!({
            "@odata.context": format!("{}/api/data/v9.2/$metadata#Microsoft.Dynamics.CRM.RetrieveUserPrivilegesResponse", s.url),
            "RolePrivileges": privileges,
        }),
    ))
}

/// `204 No Content` with `OData-EntityId: {env}/api/data/v9.2/{set}({id})`, the answer to a
/// create without `Prefer: return=representation`.
fn created(url: &str, set: &str, id: Uuid) -> Handled {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        "odata-entityid",
        format!("{url}/api/data/v9.2/{set}({id})")
            .parse()
            .expect("valid header"),
    );
    Handled {
        response,
        status: 204,
        error_code: None,
    }
}

fn expand_option(query: &[(String, String)]) -> Result<bool, Rejection> {
    match option(query, "$expand") {
        None => Ok(false),
        Some(e) if e.split('(').next() == Some(CONTEXT_ITEMS) => Ok(true),
        Some(e) => Err((400, "0x80060888", format!("Could not find a property named '{e}' on type 'Microsoft.Dynamics.CRM.msdyn_ocliveworkitem'."))),
    }
}

fn shape_work_item(row: &Value, expand: bool) -> Value {
    let mut row = row.clone();
    if !expand {
        row.as_object_mut()
            .expect("rows are objects")
            .remove(CONTEXT_ITEMS);
    }
    row
}

fn get_work_item(
    s: &SandboxState,
    key: Option<&str>,
    query: &[(String, String)],
) -> Result<Handled, Rejection> {
    only_options(query, &["$select", "$expand"])?;
    let expand = expand_option(query)?;
    let mut readable: Vec<&str> = LIVE_WORK_ITEM.columns.iter().map(|(n, _)| *n).collect();
    readable.extend([
        "createdon",
        "_msdyn_liveworkstreamid_value",
        "_msdyn_customer_value",
    ]);
    let columns = select(query, &readable, "msdyn_ocliveworkitem")?;
    let key = key.unwrap_or_default();
    let id =
        Uuid::try_parse(key).map_err(|_| (400, "0x80060888", format!("'{key}' is not a GUID.")))?;
    let row = s.work_items.get(&id).ok_or_else(|| {
        (
            404,
            "0x80040217",
            format!("msdyn_ocliveworkitem With Id = {id} Does Not Exist"),
        )
    })?;
    let mut shaped = project(&shape_work_item(row, expand), &columns);
    if expand {
        shaped[CONTEXT_ITEMS] = row[CONTEXT_ITEMS].clone();
    }
    Ok(Handled::json(StatusCode::OK, shaped))
}

fn create_contact(s: &mut SandboxState, body: &Value) -> Result<Handled, Rejection> {
    schema::check_create(&CONTACT, body)?;
    let id = client_key(body, "contactid", |id| {
        exists(s, "contacts", &id.to_string())
    })?;
    let mut row = body.clone();
    let first = body
        .get("firstname")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let last = body
        .get("lastname")
        .and_then(Value::as_str)
        .unwrap_or_default();
    row["contactid"] = json!(id);
    row["fullname"] = json!(format!("{first} {last}").trim());
    row["statecode"] = json!(0);
    s.contacts.push(row);
    Ok(created(&s.url, "contacts", id))
}
