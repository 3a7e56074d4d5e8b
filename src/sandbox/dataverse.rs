//! The Dataverse Web API v9.2 subset: `WhoAmI`, `contacts` (query and create),
//! `msdyn_liveworkstreams(id)`, `queues(id)`, and `msdyn_ocliveworkitems` (deep-insert
//! create with a client-chosen key, read by id with `$expand`, list).

use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::schema::{
    self, Rejection, CONTACT, CONTACT_READABLE, LIVE_WORK_ITEM, WORKSTREAM_READABLE,
};
use super::{odata, respond, DropSwitch, Handled, RequestMeta, SandboxState, Shared};

/// The conversation's notes relationship (deep insert of `annotation` rows).
const NOTES: &str = "msdyn_ocliveworkitem_Annotations";
const CONTEXT_ITEMS: &str =
    "msdyn_msdyn_ocliveworkitem_msdyn_ocliveworkitemcontextitem_ocliveworkitemid";

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
    let (set, key) = split_segment(&path);
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
    let id = match body.get("activityid").and_then(Value::as_str) {
        Some(id) => Uuid::try_parse(id).expect("checked as a GUID"),
        None => Uuid::new_v4(),
    };
    if s.work_items.contains_key(&id) {
        return Err((
            412,
            "0x80040237",
            "A record with matching key values already exists.".into(),
        ));
    }
    let mut notes = Vec::new();
    for (nav, rows) in nested.iter().filter(|(nav, _)| nav == NOTES) {
        for note in rows {
            let note_id = match note.get("annotationid").and_then(Value::as_str) {
                Some(id) => Uuid::try_parse(id).expect("checked as a GUID"),
                None => Uuid::new_v4(),
            };
            if s.annotations.contains_key(&note_id) || notes.iter().any(|(n, _)| *n == note_id) {
                return Err((
                    412,
                    "0x80040237",
                    format!("A record with matching key values already exists ({nav})."),
                ));
            }
            let mut note = note.clone();
            note["annotationid"] = json!(note_id);
            note["_objectid_value"] = json!(id);
            note["objecttypecode"] = json!("msdyn_ocliveworkitem");
            notes.push((note_id, note));
        }
    }
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
    let id = match body.get("contactid").and_then(Value::as_str) {
        Some(id) => Uuid::try_parse(id).expect("checked as a GUID"),
        None => Uuid::new_v4(),
    };
    if exists(s, "contacts", &id.to_string()) {
        return Err((
            412,
            "0x80040237",
            "A record with matching key values already exists.".into(),
        ));
    }
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
