//! What a Dataverse or Entra ID failure means, decided in one `match` per error type: the
//! catalog entry an admin reads (with the upstream's own words as detail) and whether
//! trying again can help.
//!
//! Sources: AADSTS codes from Microsoft Learn, "Microsoft Entra authentication and
//! authorization error codes"
//! (<https://learn.microsoft.com/entra/identity-platform/reference-error-codes>); Dataverse
//! codes from Microsoft Learn, "Web API error codes" and "Service protection API limits"
//! (<https://learn.microsoft.com/power-apps/developer/data-platform/reference/web-service-error-codes>,
//! <https://learn.microsoft.com/power-apps/developer/data-platform/api-limits>).

use std::time::Duration;

use super::client::NOT_FOUND;
use super::{DataverseError, TokenError};
use crate::domain::catalog::{self, Diagnosis, Failure};

/// Whether a failed request is worth trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryClass {
    /// Throttling, unavailability, a lost answer: try again, after `retry_after` when the
    /// service said so.
    Transient { retry_after: Option<Duration> },
    /// A refusal that will not change by itself (wrong secret, missing privilege…).
    Permanent,
    /// Nothing was sent: the environment or the connection's token requests are paused
    /// after a 429 for this long. A wait, not a failed request, so it does not count as
    /// an attempt.
    NotSent { wait: Duration },
}

/// A failure explained: what to tell the admin, and whether to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explained {
    pub diagnosis: Diagnosis,
    pub class: RetryClass,
}

fn transient(entry: Failure, detail: Option<String>, retry_after: Option<Duration>) -> Explained {
    Explained {
        diagnosis: entry.diagnose(detail),
        class: RetryClass::Transient { retry_after },
    }
}

fn not_sent(entry: Failure, detail: String, wait: Duration) -> Explained {
    Explained {
        diagnosis: entry.diagnose(detail),
        class: RetryClass::NotSent { wait },
    }
}

fn permanent(entry: Failure, detail: Option<String>) -> Explained {
    Explained {
        diagnosis: entry.diagnose(detail),
        class: RetryClass::Permanent,
    }
}

/// Codes of a missing privilege.
const PRIVILEGE_CODES: &[&str] = &["0x80040220", "0x80040231", "0x80048405"];
/// "The user is not a member of the organization." (HTTP 403).
const NOT_MEMBER_CODE: &str = "0x80072560";

impl TokenError {
    /// The catalog entry (Entra ID's own words as detail) and retry class of this failure.
    pub fn explain(&self) -> Explained {
        match self {
            TokenError::Refused {
                aadsts,
                error,
                description,
                ..
            } => {
                let entry = match aadsts {
                    Some(7_000_215) => catalog::ENTRA_WRONG_SECRET,
                    Some(7_000_222) => catalog::ENTRA_SECRET_EXPIRED,
                    Some(700_016) => catalog::ENTRA_UNKNOWN_CLIENT,
                    Some(90_002) => catalog::ENTRA_UNKNOWN_TENANT,
                    Some(500_011) => catalog::ENTRA_UNKNOWN_RESOURCE,
                    _ => catalog::ENTRA_REFUSED,
                };
                // Entra's description's first line names the cause; the rest is trace ids.
                let first_line = description.lines().next().unwrap_or_default();
                permanent(entry, Some(format!("{error}: {first_line}")))
            }
            TokenError::Throttled { retry_after } => transient(
                catalog::ENTRA_THROTTLED,
                retry_after.map(|d| format!("Retry-After: {} s", d.as_secs())),
                *retry_after,
            ),
            TokenError::Paused { wait } => not_sent(
                catalog::ENTRA_THROTTLED,
                format!(
                    "not sent: token requests for this connection are paused for {} ms more after a 429",
                    wait.as_millis()
                ),
                *wait,
            ),
            TokenError::Unavailable(detail) => {
                transient(catalog::ENTRA_UNAVAILABLE, Some(detail.clone()), None)
            }
        }
    }
}

impl DataverseError {
    /// The catalog entry (the answer's status, code and message as detail) and retry class
    /// of this failure. A 401 is permanent: the client already fetched a new token and
    /// resent once.
    pub fn explain(&self) -> Explained {
        match self {
            DataverseError::Token(t) => t.explain(),
            DataverseError::Paused(p) => not_sent(
                catalog::DATAVERSE_THROTTLED,
                format!("not sent: {p}"),
                p.wait(),
            ),
            DataverseError::Transport { detail, .. } => {
                transient(catalog::DATAVERSE_UNAVAILABLE, Some(detail.clone()), None)
            }
            DataverseError::UnexpectedBody(e) => transient(
                catalog::DATAVERSE_REJECTED,
                Some(format!("unreadable answer: {e}")),
                None,
            ),
            DataverseError::Status {
                status,
                code,
                message,
                retry_after,
            } => {
                let code_str = code.as_deref().unwrap_or_default();
                let mut detail = format!("HTTP {status}");
                if !code_str.is_empty() {
                    detail.push_str(&format!(" {code_str}"));
                }
                if !message.is_empty() {
                    detail.push_str(&format!(": {message}"));
                }
                if let Some(wait) = retry_after {
                    detail.push_str(&format!(" (Retry-After: {} s)", wait.as_secs()));
                }
                let detail = Some(detail);
                match *status {
                    429 => transient(catalog::DATAVERSE_THROTTLED, detail, *retry_after),
                    408 | 500..=599 => {
                        transient(catalog::DATAVERSE_UNAVAILABLE, detail, *retry_after)
                    }
                    _ if code_str == NOT_MEMBER_CODE => {
                        permanent(catalog::NOT_APPLICATION_USER, detail)
                    }
                    403 => permanent(catalog::MISSING_PRIVILEGE, detail),
                    _ if PRIVILEGE_CODES.contains(&code_str) => {
                        permanent(catalog::MISSING_PRIVILEGE, detail)
                    }
                    401 => permanent(catalog::DATAVERSE_UNAUTHORIZED, detail),
                    _ => permanent(catalog::DATAVERSE_REJECTED, detail),
                }
            }
        }
    }

    /// [`explain`](Self::explain) with a refusal (`dataverse_rejected`, permanent) told as
    /// `entry` instead, keeping its detail: the request's own words for "Dataverse said no"
    /// (`incident_rejected`, `incident_routing_failed`).
    pub fn explain_as(&self, entry: Failure) -> Explained {
        let explained = self.explain();
        if explained.diagnosis.code == catalog::DATAVERSE_REJECTED.code
            && explained.class == RetryClass::Permanent
        {
            return permanent(entry, explained.diagnosis.detail);
        }
        explained
    }

    /// [`explain`](Self::explain) for a live work item create (`POST
    /// msdyn_ocliveworkitems`). Its only required lookup is the workstream, so a
    /// `0x80040217` ("does not exist") that does not name the contact means the workstream
    /// was deleted since the connection was saved; other refusals are `work_item_rejected`.
    pub fn explain_work_item(&self) -> Explained {
        let explained = self.explain();
        if explained.diagnosis.code != catalog::DATAVERSE_REJECTED.code
            || explained.class != RetryClass::Permanent
        {
            return explained;
        }
        let missing_workstream = matches!(self, DataverseError::Status { code: Some(code), message, .. }
            if code == NOT_FOUND && !message.contains("contact"));
        let entry = if missing_workstream {
            catalog::WORKSTREAM_NOT_FOUND
        } else {
            catalog::WORK_ITEM_REJECTED
        };
        permanent(entry, explained.diagnosis.detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, code: Option<&str>) -> DataverseError {
        DataverseError::Status {
            status,
            code: code.map(str::to_owned),
            message: String::new(),
            retry_after: None,
        }
    }

    #[test]
    fn each_status_has_one_entry_and_one_class() {
        let cases = [
            (status(503, None), "dataverse_unavailable", true),
            (status(408, None), "dataverse_unavailable", true),
            (status(429, None), "dataverse_throttled", true),
            (
                status(403, Some(NOT_MEMBER_CODE)),
                "not_application_user",
                false,
            ),
            (status(403, None), "missing_privilege", false),
            (status(400, Some("0x80040220")), "missing_privilege", false),
            (status(401, None), "dataverse_unauthorized", false),
            (status(400, None), "dataverse_rejected", false),
        ];
        for (err, code, is_transient) in cases {
            let explained = err.explain();
            assert_eq!(explained.diagnosis.code, code, "{err:?}");
            assert_eq!(
                matches!(explained.class, RetryClass::Transient { .. }),
                is_transient,
                "{err:?}"
            );
        }
    }

    #[test]
    fn a_missing_workstream_is_named_on_a_work_item_create() {
        let gone = DataverseError::Status {
            status: 404,
            code: Some(NOT_FOUND.into()),
            message: "msdyn_liveworkstream With Id = … Does Not Exist".into(),
            retry_after: None,
        };
        assert_eq!(
            gone.explain_work_item().diagnosis.code,
            "workstream_not_found"
        );
        assert_eq!(
            status(400, None).explain_work_item().diagnosis.code,
            "work_item_rejected"
        );
        assert_eq!(
            status(503, None).explain_work_item().diagnosis.code,
            "dataverse_unavailable"
        );
    }
}
