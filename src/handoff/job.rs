//! What a handoff attempt works with, and nothing more: the store, the vault, Dataverse
//! behind a small trait, the retry policy and a clock. The worker builds it from the
//! service's `Context`; unit tests build it with a fake Dataverse and a fixed clock.

use std::future::Future;
use std::sync::Arc;

use uuid::Uuid;

use super::retry::RetryPolicy;
use crate::clock::Clock;
use crate::connection::vault::Vault;
use crate::dynamics::{
    ContactCreate, CreateOutcome, Credentials, Dataverse, DataverseClient, DataverseError,
    IncidentCreate, IncidentRef, LiveWorkItemCreate,
};
use crate::store::Store;

/// The Dataverse operations an attempt needs, on one connection.
pub trait HandoffDataverse: Send + Sync {
    /// The `contactid`s of active contacts with this `emailaddress1`, at most two.
    fn find_contacts_by_email(
        &self,
        email: &str,
    ) -> impl Future<Output = Result<Vec<Uuid>, DataverseError>> + Send;

    /// `POST contacts` with a client-chosen `contactid`.
    fn create_contact(
        &self,
        body: &ContactCreate,
    ) -> impl Future<Output = Result<CreateOutcome, DataverseError>> + Send;

    /// `POST msdyn_ocliveworkitems` with a client-chosen `activityid`; a row an earlier
    /// attempt created is [`CreateOutcome::AlreadyExisted`].
    fn create_live_work_item(
        &self,
        body: &LiveWorkItemCreate,
    ) -> impl Future<Output = Result<CreateOutcome, DataverseError>> + Send;

    /// `POST incidents` with a client-chosen `incidentid`, read back with its case number; a
    /// row an earlier attempt created is [`CreateOutcome::AlreadyExisted`].
    fn create_incident(
        &self,
        body: &IncidentCreate,
    ) -> impl Future<Output = Result<(CreateOutcome, IncidentRef), DataverseError>> + Send;

    /// `POST msdyn_ApplyRoutingRuleEntityRecord` for the incident `incidentid`.
    fn route_incident(
        &self,
        incidentid: Uuid,
    ) -> impl Future<Output = Result<(), DataverseError>> + Send;
}

/// Opens a [`HandoffDataverse`] for one connection's credentials.
pub trait Connect: Send + Sync {
    type Client: HandoffDataverse;
    fn connect(&self, creds: Credentials) -> Self::Client;
}

impl HandoffDataverse for DataverseClient {
    async fn find_contacts_by_email(&self, email: &str) -> Result<Vec<Uuid>, DataverseError> {
        let found = DataverseClient::find_contacts_by_email(self, email).await?;
        Ok(found.into_iter().map(|c| c.contactid).collect())
    }

    async fn create_contact(&self, body: &ContactCreate) -> Result<CreateOutcome, DataverseError> {
        DataverseClient::create_contact(self, body).await
    }

    async fn create_live_work_item(
        &self,
        body: &LiveWorkItemCreate,
    ) -> Result<CreateOutcome, DataverseError> {
        DataverseClient::create_live_work_item(self, body).await
    }

    async fn create_incident(
        &self,
        body: &IncidentCreate,
    ) -> Result<(CreateOutcome, IncidentRef), DataverseError> {
        DataverseClient::create_incident(self, body).await
    }

    async fn route_incident(&self, incidentid: Uuid) -> Result<(), DataverseError> {
        self.apply_routing_rule("incidents", incidentid).await
    }
}

impl Connect for Arc<Dataverse> {
    type Client = DataverseClient;
    fn connect(&self, creds: Credentials) -> DataverseClient {
        self.client(creds)
    }
}

/// What one attempt talks to.
pub struct JobContext<'a, C> {
    pub store: &'a Store,
    pub vault: &'a Vault,
    pub dataverse: &'a C,
    /// OpenCX's API, for thin events (fetching the session).
    pub opencx: &'a crate::opencx::OpenCx,
    pub retry: RetryPolicy,
    /// Development mode: loopback `http://` environments are admitted.
    pub allow_insecure: bool,
    pub clock: &'a Clock,
}
