//! Handoffs stored by older versions, brought to the current payload once at startup.
//!
//! Version 1 rows hold the OpenCX session as it was received. `App::build` runs
//! [`upgrade_stored_sessions`] before the worker starts: each such session is validated as
//! at intake and rewritten as the bridge's own [`QueuedHandoff`](crate::domain::QueuedHandoff) (version 2), so the worker
//! reads only its own type and never the OpenCX envelope. A session that no longer passes
//! validation is left as it is and logged; its attempt fails as `payload_unreadable`.

use super::envelope::Session;
use crate::domain::{HandoffRequest, OrgId, QUEUED_PAYLOAD_VERSION};
use crate::store::{Store, StoreError};

/// The payload version that held the OpenCX session as received.
pub const SESSION_PAYLOAD_VERSION: i64 = 1;

/// Rows read per page.
const PAGE: i64 = 500;

/// What an upgrade did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Upgraded {
    /// Rows rewritten as version 2 by this call.
    pub upgraded: u64,
    /// Rows left at version 1 because their session does not validate.
    pub unreadable: u64,
}

/// Rewrites every unredacted version 1 handoff as version 2, a page at a time. Several
/// replicas running it at once is harmless: each row is rewritten only while it is still
/// version 1.
pub async fn upgrade_stored_sessions(store: &Store) -> Result<Upgraded, StoreError> {
    let mut done = Upgraded::default();
    let mut after = String::new();
    loop {
        let page = store
            .payloads_of_version(SESSION_PAYLOAD_VERSION, &after, PAGE)
            .await?;
        let Some(last) = page.last() else {
            break;
        };
        after = last.handoff_id.clone();
        for row in &page {
            match queued_payload(&row.org_id, &row.payload) {
                Ok(payload) => {
                    let upgraded = store
                        .upgrade_payload(
                            &row.handoff_id,
                            SESSION_PAYLOAD_VERSION,
                            QUEUED_PAYLOAD_VERSION,
                            &payload,
                        )
                        .await?;
                    done.upgraded += u64::from(upgraded);
                }
                Err(reason) => {
                    tracing::warn!(
                        handoff_id = %row.handoff_id,
                        org_id = %row.org_id,
                        %reason,
                        "a handoff stored by an older version does not validate; its attempt will fail as payload_unreadable"
                    );
                    done.unreadable += 1;
                }
            }
        }
    }
    if done != Upgraded::default() {
        tracing::info!(
            upgraded = done.upgraded,
            unreadable = done.unreadable,
            "upgraded handoffs stored by an older version"
        );
    }
    Ok(done)
}

/// The version 2 payload (JSON) of a version 1 row: its session validated for `org_id`.
fn queued_payload(org_id: &str, payload: &str) -> Result<String, String> {
    let org = OrgId::parse(org_id)?;
    let session: Session = serde_json::from_str(payload).map_err(|e| e.to_string())?;
    let request = HandoffRequest::from_session(&org, &session).map_err(|errors| {
        errors
            .iter()
            .map(|e| format!("{} {}", e.pointer, e.message))
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    serde_json::to_string(&session.queued(&request)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::domain::QueuedHandoff;
    use crate::store::{NewHandoff, OrgRow};

    async fn store_with(dir: &tempfile::TempDir, rows: &[(&str, serde_json::Value)]) -> Store {
        let store = Store::connect(&format!("sqlite://{}", dir.path().join("t.db").display()))
            .await
            .unwrap();
        store
            .create_org(&OrgRow::for_tests("acme", "sealed".into(), None))
            .await
            .unwrap();
        for (session_id, session) in rows {
            let new = NewHandoff {
                org_id: "acme",
                session_id,
                webhook_id: session_id,
                channel: "web",
                payload_version: SESSION_PAYLOAD_VERSION,
                payload: session.to_string(),
            };
            store.intake(new, 1_000).await.unwrap();
        }
        store
    }

    #[tokio::test]
    async fn sessions_stored_by_older_versions_become_queued_handoffs() {
        let dir = tempfile::tempdir().unwrap();
        let valid = json!({
            "id": "s-ok",
            "channel": { "type": "web" },
            "contact": { "name": "Ada", "email": "ada@example.com", "verified": true },
            "handoff": { "summary": "Needs a refund." },
            "history": [{ "sender": "user", "text": "hello" }],
        });
        let broken = json!({ "id": "s-bad", "channel": { "type": "web" }, "handoff": {} });
        let store = store_with(&dir, &[("s-ok", valid), ("s-bad", broken)]).await;

        let first = upgrade_stored_sessions(&store).await.unwrap();
        assert_eq!(
            first,
            Upgraded {
                upgraded: 1,
                unreadable: 1
            }
        );

        let ok = store.handoff("acme", "s-ok").await.unwrap().unwrap();
        assert_eq!(ok.payload_version, QUEUED_PAYLOAD_VERSION);
        let queued: QueuedHandoff = serde_json::from_str(&ok.payload).unwrap();
        assert_eq!(queued.summary, "Needs a refund.");
        assert_eq!(queued.customer.email.as_deref(), Some("ada@example.com"));
        assert!(queued.customer.email_verified);
        assert_eq!(queued.history.len(), 1);
        let request = queued.into_request(&OrgId::parse("acme").unwrap()).unwrap();
        assert!(request.customer.verified_email.is_some());

        // The broken one is left as it was, and a second run finds nothing new to do.
        let bad = store.handoff("acme", "s-bad").await.unwrap().unwrap();
        assert_eq!(bad.payload_version, SESSION_PAYLOAD_VERSION);
        let second = upgrade_stored_sessions(&store).await.unwrap();
        assert_eq!(
            second,
            Upgraded {
                upgraded: 0,
                unreadable: 1
            }
        );
    }

    #[tokio::test]
    async fn pages_past_the_first_are_upgraded_too() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<(String, serde_json::Value)> = (0..PAGE + 3)
            .map(|i| {
                let id = format!("s-{i:04}");
                let session = json!({
                    "id": id,
                    "channel": { "type": "web" },
                    "handoff": { "summary": "Help." },
                });
                (id, session)
            })
            .collect();
        let borrowed: Vec<(&str, serde_json::Value)> = rows
            .iter()
            .map(|(id, s)| (id.as_str(), s.clone()))
            .collect();
        let store = store_with(&dir, &borrowed).await;
        let done = upgrade_stored_sessions(&store).await.unwrap();
        assert_eq!(done.upgraded, (PAGE + 3) as u64);
        assert!(store
            .payloads_of_version(SESSION_PAYLOAD_VERSION, "", 10)
            .await
            .unwrap()
            .is_empty());
    }
}
