//! Typed calls to the Dataverse Web API v9.2 for one connection.
//!
//! Every call sends `Authorization: Bearer`, `Accept: application/json`,
//! `OData-MaxVersion: 4.0`, `OData-Version: 4.0`, and `Content-Type: application/json;
//! charset=utf-8` with a body (docs/sources.md#dataverse-web-api). A 401 drops the cached token
//! and the call is sent once more with a new one.

use std::sync::Arc;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

use super::odata;
use super::tables::{ContactCreate, IncidentCreate, LiveWorkItemCreate};
use super::token::{Credentials, TokenError};
use super::{Dataverse, Paused};

/// Dataverse error code for a duplicate primary key on create (docs/sources.md#dataverse-error-codes).
pub const DUPLICATE_RECORD: &str = "0x80040237";
/// How long an environment pauses after a 429 that carries no `Retry-After`.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(5);
/// Dataverse error code for "record not found" (docs/sources.md#dataverse-error-codes).
pub const NOT_FOUND: &str = "0x80040217";

/// Why a Dataverse call failed.
#[derive(Debug, thiserror::Error)]
pub enum DataverseError {
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Not sent: the environment is paused after a 429.
    #[error(transparent)]
    Paused(#[from] Paused),
    /// No HTTP answer: connect failure, timeout, reset, or the body was cut off.
    #[error("Dataverse request failed: {detail}")]
    Transport {
        detail: String,
        #[source]
        source: reqwest::Error,
    },
    /// An HTTP error answer. `code` is the Dataverse error code (`0x…`) when the body had one.
    #[error("Dataverse answered HTTP {status}{}: {message}", code.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    Status {
        status: u16,
        code: Option<String>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A success status with a body the bridge cannot read.
    #[error("Dataverse answered with an unexpected body: {0}")]
    UnexpectedBody(#[source] serde_json::Error),
}

impl DataverseError {
    /// The Dataverse error code, if the answer carried one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }

    /// The HTTP status, if there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `GET WhoAmI` answer.
#[derive(Debug, Clone, Deserialize)]
pub struct WhoAmI {
    #[serde(rename = "UserId")]
    pub user_id: Uuid,
    #[serde(rename = "BusinessUnitId")]
    pub business_unit_id: Uuid,
    #[serde(rename = "OrganizationId")]
    pub organization_id: Uuid,
}

/// An incident as read back: its key and case number.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct IncidentRef {
    pub incidentid: Uuid,
    /// The case number Dataverse generated, e.g. `CAS-01234-X1Y2Z3` (String(100)).
    pub ticketnumber: Option<String>,
}

#[derive(Deserialize)]
struct PrivilegesAnswer {
    #[serde(rename = "RolePrivileges")]
    role_privileges: Vec<RolePrivilege>,
}

#[derive(Deserialize)]
struct RolePrivilege {
    #[serde(rename = "PrivilegeName")]
    privilege_name: Option<String>,
}

/// A contact found by email.
#[derive(Debug, Clone, Deserialize)]
pub struct ContactRef {
    pub contactid: Uuid,
    pub fullname: Option<String>,
}

/// The columns of `msdyn_liveworkstream` the connection check reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Workstream {
    pub msdyn_liveworkstreamid: Uuid,
    pub msdyn_name: Option<String>,
    /// `msdyn_streamsource` choice value (192360000 live chat, 192350000 record, …).
    pub msdyn_streamsource: Option<i64>,
    /// 192350000 Push, 192350001 Pick.
    pub msdyn_workdistributionmode: Option<i64>,
    /// 0 Active, 1 Inactive.
    pub statecode: Option<i64>,
}

/// What a create with a client-chosen key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    /// The key already existed (a retry after a lost answer), confirmed by a read.
    AlreadyExisted,
}

/// One Dataverse request, as the handoff record and logs describe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    WhoAmI,
    Contacts,
    CreateContact,
    Workstream,
    Queue,
    CreateWorkItem,
    GetWorkItem,
    CreateIncident,
    GetIncident,
    /// `msdyn_ApplyRoutingRuleEntityRecord`.
    RouteRecord,
    /// `RetrieveUserPrivileges`.
    Privileges,
    /// A row read by id at test-and-save (the fallback customer, the incident owner).
    ReadRecord,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WhoAmI => "whoami",
            Self::Contacts => "contacts",
            Self::CreateContact => "create_contact",
            Self::Workstream => "workstream",
            Self::Queue => "queue",
            Self::CreateWorkItem => "create_work_item",
            Self::GetWorkItem => "get_work_item",
            Self::CreateIncident => "create_incident",
            Self::GetIncident => "get_incident",
            Self::RouteRecord => "route_record",
            Self::Privileges => "privileges",
            Self::ReadRecord => "read_record",
        }
    }
}

/// A Dataverse client for one connection's credentials. Cheap to build per job.
pub struct DataverseClient {
    shared: Arc<Dataverse>,
    creds: Credentials,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
    message: Option<String>,
}

#[derive(Deserialize)]
struct Collection<T> {
    value: Vec<T>,
}

impl DataverseClient {
    pub fn new(shared: Arc<Dataverse>, creds: Credentials) -> Self {
        Self { shared, creds }
    }

    /// Sends one request (with the 401 → new token → resend rule) and returns the success
    /// answer; error answers become [`DataverseError::Status`]. Each send holds one of the
    /// environment's permits; a 429 pauses the whole environment for its `Retry-After`
    /// (5 s when absent).
    async fn send(
        &self,
        kind: RequestKind,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        prefer: Option<&'static str>,
    ) -> Result<bytes::Bytes, DataverseError> {
        let url = self.creds.environment_url.api(path_and_query);
        let mut token = self.shared.tokens.token(&self.creds).await?;
        let mut resent = false;
        loop {
            let started = std::time::Instant::now();
            let environment = self.creds.environment_url.as_str();
            let _permit = self.shared.gates.enter(environment).await?;
            let mut request = self
                .shared
                .http
                .request(method.clone(), &url)
                .bearer_auth(token.expose_secret())
                .header("Accept", "application/json")
                .header("OData-MaxVersion", "4.0")
                .header("OData-Version", "4.0");
            if let Some(prefer) = prefer {
                request = request.header("Prefer", prefer);
            }
            if let Some(body) = body {
                request = request
                    .header("Content-Type", "application/json; charset=utf-8")
                    .body(serde_json::to_vec(body).expect("a JSON value serializes"));
            }
            // The whole answer is read while the permit is held.
            let result = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = crate::outbound::retry_after(response.headers());
                    response
                        .bytes()
                        .await
                        .map(|body| (status, retry_after, body))
                }
                Err(e) => Err(e),
            };
            let duration_ms = started.elapsed().as_millis() as u64;
            self.shared.metrics.dataverse_request(
                kind.as_str(),
                result.as_ref().ok().map(|(status, ..)| status.as_u16()),
                started.elapsed().as_secs_f64(),
            );
            let (status, retry_after, answer) = match result {
                Ok(r) => r,
                Err(source) => {
                    tracing::info!(
                        kind = kind.as_str(),
                        duration_ms,
                        "Dataverse request failed"
                    );
                    return Err(DataverseError::Transport {
                        detail: crate::outbound::describe_transport_error(&source),
                        source,
                    });
                }
            };
            tracing::debug!(
                kind = kind.as_str(),
                status = status.as_u16(),
                duration_ms,
                "Dataverse answered"
            );
            if status == StatusCode::UNAUTHORIZED && !resent {
                self.shared.tokens.invalidate(&self.creds, &token).await;
                token = self.shared.tokens.token(&self.creds).await?;
                resent = true;
                continue;
            }
            if status == StatusCode::TOO_MANY_REQUESTS {
                let wait = retry_after.unwrap_or(DEFAULT_PAUSE);
                self.shared.gates.pause(environment, wait);
                tracing::warn!(
                    kind = kind.as_str(),
                    pause_ms = wait.as_millis() as u64,
                    "Dataverse throttled this environment; pausing it"
                );
            }
            if status.is_success() {
                return Ok(answer);
            }
            return Err(error_from(status.as_u16(), retry_after, &answer));
        }
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        kind: RequestKind,
        path_and_query: &str,
    ) -> Result<T, DataverseError> {
        let bytes = self
            .send(kind, Method::GET, path_and_query, None, None)
            .await?;
        serde_json::from_slice(&bytes).map_err(DataverseError::UnexpectedBody)
    }

    /// `GET WhoAmI`: proves the token is accepted by the environment.
    pub async fn who_am_i(&self) -> Result<WhoAmI, DataverseError> {
        self.get_json(RequestKind::WhoAmI, "WhoAmI").await
    }

    /// Active contacts whose `emailaddress1` equals `email`, at most two (two means
    /// "ambiguous"; the caller needs no more).
    pub async fn find_contacts_by_email(
        &self,
        email: &str,
    ) -> Result<Vec<ContactRef>, DataverseError> {
        let filter = format!(
            "emailaddress1 eq {} and statecode eq 0",
            odata::string_literal(email)
        );
        let path = format!(
            "contacts{}",
            odata::query(&[
                ("$select", "contactid,fullname"),
                ("$filter", &filter),
                ("$top", "2")
            ])
        );
        let found: Collection<ContactRef> = self.get_json(RequestKind::Contacts, &path).await?;
        Ok(found.value)
    }

    /// `GET msdyn_liveworkstreams(id)`; `None` when no such row exists.
    pub async fn workstream(&self, id: Uuid) -> Result<Option<Workstream>, DataverseError> {
        let path = format!(
            "msdyn_liveworkstreams({id}){}",
            odata::query(&[(
                "$select",
                "msdyn_liveworkstreamid,msdyn_name,msdyn_streamsource,msdyn_workdistributionmode,statecode"
            )])
        );
        not_found_as_none(self.get_json(RequestKind::Workstream, &path).await)
    }

    /// Whether a queue with this id exists (to explain a queue GUID pasted as a workstream).
    pub async fn queue_exists(&self, id: Uuid) -> Result<bool, DataverseError> {
        let path = format!("queues({id}){}", odata::query(&[("$select", "queueid")]));
        let found: Option<Value> =
            not_found_as_none(self.get_json(RequestKind::Queue, &path).await)?;
        Ok(found.is_some())
    }

    /// Whether a live work item with this `activityid` exists.
    pub async fn live_work_item_exists(&self, activityid: Uuid) -> Result<bool, DataverseError> {
        let path = format!(
            "msdyn_ocliveworkitems({activityid}){}",
            odata::query(&[("$select", "activityid")])
        );
        let found: Option<Value> =
            not_found_as_none(self.get_json(RequestKind::GetWorkItem, &path).await)?;
        Ok(found.is_some())
    }

    /// `POST msdyn_ocliveworkitems` with `body` (its client-chosen `activityid`). A
    /// duplicate-key answer (`0x80040237`, or HTTP 412) is confirmed with a read and reported
    /// as [`CreateOutcome::AlreadyExisted`].
    pub async fn create_live_work_item(
        &self,
        body: &LiveWorkItemCreate,
    ) -> Result<CreateOutcome, DataverseError> {
        let json = serde_json::to_value(body).expect("a live work item serializes");
        self.create_with_key(RequestKind::CreateWorkItem, "msdyn_ocliveworkitems", &json)
            .await?
            .confirm(|| self.live_work_item_exists(body.activityid))
            .await
    }

    /// `POST contacts` with a client-chosen `contactid`; a duplicate key means an earlier
    /// attempt created it.
    pub async fn create_contact(
        &self,
        body: &ContactCreate,
    ) -> Result<CreateOutcome, DataverseError> {
        let json = serde_json::to_value(body).expect("a contact serializes");
        match self
            .create_with_key(RequestKind::CreateContact, "contacts", &json)
            .await?
        {
            Created::New => Ok(CreateOutcome::Created),
            Created::Duplicate => Ok(CreateOutcome::AlreadyExisted),
        }
    }

    /// `POST incidents?$select=incidentid,ticketnumber` with `Prefer:
    /// return=representation` (`201` with the row), so the case number comes back in the
    /// same request. A duplicate key (an earlier attempt created it, its answer lost) is
    /// read back with `GET incidents(id)` for its case number and reported as
    /// [`CreateOutcome::AlreadyExisted`].
    pub async fn create_incident(
        &self,
        body: &IncidentCreate,
    ) -> Result<(CreateOutcome, IncidentRef), DataverseError> {
        let json = serde_json::to_value(body).expect("an incident serializes");
        let path = format!(
            "incidents{}",
            odata::query(&[("$select", "incidentid,ticketnumber")])
        );
        let sent = self
            .send(
                RequestKind::CreateIncident,
                Method::POST,
                &path,
                Some(&json),
                Some("return=representation"),
            )
            .await;
        match sent {
            Ok(answer) => {
                let row: IncidentRef =
                    serde_json::from_slice(&answer).map_err(DataverseError::UnexpectedBody)?;
                Ok((CreateOutcome::Created, row))
            }
            Err(err) if is_duplicate_key(&err) => match self.incident(body.incidentid).await? {
                Some(row) => Ok((CreateOutcome::AlreadyExisted, row)),
                None => Err(DataverseError::Status {
                    status: 412,
                    code: Some(DUPLICATE_RECORD.into()),
                    message:
                        "Dataverse reported a duplicate key, but the incident cannot be read back"
                            .into(),
                    retry_after: None,
                }),
            },
            Err(err) => Err(err),
        }
    }

    /// `GET incidents(id)?$select=incidentid,ticketnumber`; `None` when no such row exists.
    pub async fn incident(&self, incidentid: Uuid) -> Result<Option<IncidentRef>, DataverseError> {
        let path = format!(
            "incidents({incidentid}){}",
            odata::query(&[("$select", "incidentid,ticketnumber")])
        );
        not_found_as_none(self.get_json(RequestKind::GetIncident, &path).await)
    }

    /// `POST msdyn_ApplyRoutingRuleEntityRecord` with `{"Target": "{entity_set}({id})"}`:
    /// unified routing's documented entry point for a record (answers `204`, no body;
    /// `CS/develop/reference/actions/msdyn_ApplyRoutingRuleEntityRecord.md`).
    pub async fn apply_routing_rule(
        &self,
        entity_set: &str,
        id: Uuid,
    ) -> Result<(), DataverseError> {
        let body = serde_json::json!({ "Target": format!("{entity_set}({id})") });
        self.send(
            RequestKind::RouteRecord,
            Method::POST,
            "msdyn_ApplyRoutingRuleEntityRecord",
            Some(&body),
            None,
        )
        .await?;
        Ok(())
    }

    /// The names of the privileges the user holds through its roles and its teams' roles:
    /// `GET systemusers({user_id})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()`
    /// (`RolePrivileges[].PrivilegeName`, e.g. `prvCreateIncident`; Microsoft's
    /// `RetrieveUserPrivilegesRequest` and `RolePrivilege` references).
    pub async fn user_privileges(&self, user_id: Uuid) -> Result<Vec<String>, DataverseError> {
        let path =
            format!("systemusers({user_id})/Microsoft.Dynamics.CRM.RetrieveUserPrivileges()");
        let answer: PrivilegesAnswer = self.get_json(RequestKind::Privileges, &path).await?;
        Ok(answer
            .role_privileges
            .into_iter()
            .filter_map(|p| p.privilege_name)
            .collect())
    }

    /// `GET {entity_set}({id})?$select={columns}`: the row, or `None` when it does not
    /// exist (404 or `0x80040217`).
    pub async fn read_record(
        &self,
        entity_set: &str,
        id: Uuid,
        columns: &str,
    ) -> Result<Option<Value>, DataverseError> {
        let path = format!(
            "{entity_set}({id}){}",
            odata::query(&[("$select", columns)])
        );
        not_found_as_none(self.get_json(RequestKind::ReadRecord, &path).await)
    }

    async fn create_with_key(
        &self,
        kind: RequestKind,
        entity_set: &str,
        body: &Value,
    ) -> Result<Created, DataverseError> {
        match self
            .send(kind, Method::POST, entity_set, Some(body), None)
            .await
        {
            Ok(_) => Ok(Created::New),
            Err(err) if is_duplicate_key(&err) => Ok(Created::Duplicate),
            Err(err) => Err(err),
        }
    }

    pub fn environment_url(&self) -> &crate::domain::EnvironmentUrl {
        &self.creds.environment_url
    }
}

enum Created {
    New,
    Duplicate,
}

impl Created {
    async fn confirm<F, Fut>(self, read: F) -> Result<CreateOutcome, DataverseError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<bool, DataverseError>>,
    {
        match self {
            Self::New => Ok(CreateOutcome::Created),
            Self::Duplicate => match read().await? {
                true => Ok(CreateOutcome::AlreadyExisted),
                // A duplicate answer but no row: not something to paper over.
                false => Err(DataverseError::Status {
                    status: 412,
                    code: Some(DUPLICATE_RECORD.into()),
                    message: "Dataverse reported a duplicate key, but the live work item cannot be read back".into(),
                    retry_after: None,
                }),
            },
        }
    }
}

fn is_duplicate_key(err: &DataverseError) -> bool {
    err.code() == Some(DUPLICATE_RECORD) || err.status() == Some(412)
}

fn not_found_as_none<T>(result: Result<T, DataverseError>) -> Result<Option<T>, DataverseError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(err) if err.status() == Some(404) || err.code() == Some(NOT_FOUND) => Ok(None),
        Err(err) => Err(err),
    }
}

fn error_from(status: u16, retry_after: Option<Duration>, body: &[u8]) -> DataverseError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => (b.error.code, b.error.message.unwrap_or_default()),
        Err(_) => (
            None,
            String::from_utf8_lossy(&body[..body.len().min(300)])
                .trim()
                .to_owned(),
        ),
    };
    DataverseError::Status {
        status,
        code,
        message,
        retry_after,
    }
}
