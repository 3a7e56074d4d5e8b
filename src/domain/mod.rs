//! Validated values that the rest of the code can hold without checking again.
//!
//! Each type is built by a fallible constructor ("parse, don't validate"); the error is a
//! plain sentence that names the rule, ready to be shown next to the offending field.

pub mod catalog;
pub mod handoff;
pub mod incident;
pub mod outcome;

pub use handoff::{
    ContactMatch, Customer, EmailRule, EventKind, HandoffRequest, HandoffState, QueuedHandoff,
    ThinHandoff, CHANNEL_NOT_FETCHED, QUEUED_PAYLOAD_VERSION, THIN_PAYLOAD_VERSION,
};
pub use outcome::{
    outbox_failure, Ended, Enrichment, NewCallback, NewEvent, Outcome, WRITE_BACK_EVENT,
};

use std::fmt;

use reqwest::Url;
use uuid::Uuid;

/// One OpenCX organization, the tenant of the bridge: 1–64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OrgId(String);

impl OrgId {
    /// Parses an org id. Errors name the rule that failed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > 64 {
            return Err("must be 1 to 64 characters long".into());
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err("may contain only letters, digits, '_' and '-'".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One widget chat session id: 1–100 printable ASCII characters (0x20–0x7E), usually a UUID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    /// Parses a session id. Errors name the rule that failed.
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > 100 {
            return Err("must be 1 to 100 characters long".into());
        }
        if !raw.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err("may contain only printable ASCII characters".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An email address that passed a syntax check: one local part (a dot-atom without spaces,
/// or an RFC 5321 quoted string such as `"jo smith"`), `@`, a dotted domain without spaces,
/// no control characters, at most 100 characters (the length of `contact.emailaddress1`).
/// Quotes, `+` and other legal characters are kept: they are escaped where used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.chars().count() > 100 {
            return Err(
                "must be at most 100 characters (the length of contact.emailaddress1)".into(),
            );
        }
        let Some((local, domain)) = raw.rsplit_once('@') else {
            return Err("is not an email address: it has no '@'".into());
        };
        if local.is_empty() || domain.is_empty() {
            return Err("is not an email address: text is needed on both sides of '@'".into());
        }
        if raw.chars().any(char::is_control) {
            return Err("is not an email address: it contains control characters".into());
        }
        let quoted = local.len() >= 2 && local.starts_with('"') && local.ends_with('"');
        if quoted {
            let inner = &local[1..local.len() - 1];
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if chars.next().is_some() => {}
                    '"' | '\\' => return Err("is not an email address: the quoted local part has an unescaped '\"' or '\\'".into()),
                    _ => {}
                }
            }
        } else if local.chars().any(|c| c.is_whitespace() || c == '"') {
            return Err("is not an email address: spaces and '\"' are allowed only inside a quoted local part".into());
        }
        if domain.chars().any(char::is_whitespace)
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err("is not an email address: the domain after '@' is not valid".into());
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An email address the widget backend marked as verified; the only kind used to look up a
/// Dynamics contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedEmail(EmailAddress);

impl VerifiedEmail {
    /// `Some` only when `verified` is true.
    pub fn from_contact(email: EmailAddress, verified: bool) -> Option<Self> {
        verified.then_some(Self(email))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// The GUID of a `msdyn_liveworkstream` row (OpenCX calls the setting `default_queue_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkstreamId(Uuid);

impl WorkstreamId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        parse_guid(raw).map(Self)
    }

    pub fn uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for WorkstreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.hyphenated())
    }
}

/// Parses a GUID in its hyphenated form, with or without braces.
pub fn parse_guid(raw: &str) -> Result<Uuid, String> {
    let trimmed = raw.trim_start_matches('{').trim_end_matches('}');
    if trimmed.len() != 36 {
        return Err("must be a GUID like 00000000-0000-0000-0000-000000000000".into());
    }
    Uuid::try_parse(trimmed)
        .map_err(|_| "must be a GUID like 00000000-0000-0000-0000-000000000000".into())
}

/// Hosts of Dataverse environments, by cloud: `*.crm.dynamics.com`, `*.crmN.dynamics.com`,
/// `*.crm.microsoftdynamics.us` (GCC High), `*.crm.appsplatform.us` (DoD),
/// `*.crm.dynamics.cn` (21Vianet). Source: docs/sources.md#clouds.
const DYNAMICS_HOST_SUFFIXES: &[&str] = &[
    ".crm.microsoftdynamics.us",
    ".crm.appsplatform.us",
    ".crm.dynamics.cn",
];

/// Whether `host` is `<label>.crm.dynamics.com` or `<label>.crm<digits>.dynamics.com` or one
/// of the sovereign suffixes, with exactly one non-empty label in front (anchored match).
fn is_dynamics_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let Some((label, rest)) = host.split_once('.') else {
        return false;
    };
    let label_ok = !label.is_empty()
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !label_ok {
        return false;
    }
    let rest = format!(".{rest}");
    if DYNAMICS_HOST_SUFFIXES.contains(&rest.as_str()) {
        return true;
    }
    // .crm.dynamics.com or .crmN.dynamics.com
    let Some(middle) = rest
        .strip_prefix(".crm")
        .and_then(|r| r.strip_suffix(".dynamics.com"))
    else {
        return false;
    };
    middle.bytes().all(|b| b.is_ascii_digit())
}

/// Whether a URL host is a loopback address or `localhost`.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The root URL of a Dataverse environment, e.g. `https://contoso.crm.dynamics.com`, without
/// a trailing slash or path. Only Dynamics hosts are accepted, so no request can be aimed at
/// another host (SSRF); `allow_insecure_loopback` also admits `http://` loopback URLs (the
/// sandbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentUrl(String);

impl EnvironmentUrl {
    pub fn parse(raw: &str, allow_insecure_loopback: bool) -> Result<Self, String> {
        let trimmed = raw.trim().trim_end_matches('/');
        let url = Url::parse(trimmed).map_err(|e| format!("is not a URL ({e})"))?;
        if url.path() != "/" && !url.path().is_empty() {
            return Err(format!(
                "must be the environment root with no path (found '{}'); use e.g. https://contoso.crm.dynamics.com",
                url.path()
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err("must not have a query or fragment".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain credentials".into());
        }
        let insecure_ok =
            allow_insecure_loopback && url.scheme() == "http" && is_loopback_host(&url);
        if !insecure_ok {
            if url.scheme() != "https" {
                return Err("must start with https://".into());
            }
            let host = url.host_str().unwrap_or_default();
            if url.port().is_some() || !is_dynamics_host(host) {
                return Err(format!(
                    "host '{host}' is not a Dynamics 365 environment host (expected e.g. contoso.crm.dynamics.com)"
                ));
            }
        }
        let mut s = url.to_string();
        while s.ends_with('/') {
            s.pop();
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `{environment_url}/api/data/v9.2/{path}`.
    pub fn api(&self, path: &str) -> String {
        format!("{}/api/data/v9.2/{}", self.0, path)
    }
}

impl fmt::Display for EnvironmentUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The widget channel of a session (`session.channel.type`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Channel {
    Web,
    Sms,
    Whatsapp,
    /// Any other channel (`email`, `phone_voice`, `web_voice`, `api`, or one OpenCX adds later):
    /// not a live chat; it becomes an incident (`domain::incident`).
    Other(String),
}

impl Channel {
    pub fn parse(raw: &str) -> Self {
        match raw {
            "web" => Self::Web,
            "sms" => Self::Sms,
            "whatsapp" => Self::Whatsapp,
            other => Self::Other(other.to_owned()),
        }
    }

    /// Whether sessions on this channel become live work items (web, sms, whatsapp); any
    /// other becomes an incident.
    pub fn is_chat(&self) -> bool {
        !matches!(self, Self::Other(_))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Web => "web",
            Self::Sms => "sms",
            Self::Whatsapp => "whatsapp",
            Self::Other(s) => s,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_url_accepts_dynamics_hosts_and_trims_slash() {
        let url = EnvironmentUrl::parse("https://contoso.crm.dynamics.com/", false).unwrap();
        assert_eq!(url.as_str(), "https://contoso.crm.dynamics.com");
        for ok in [
            "https://x.crm4.dynamics.com",
            "https://x.crm11.dynamics.com",
            "https://x.crm.microsoftdynamics.us",
            "https://x.crm.appsplatform.us",
            "https://x.crm.dynamics.cn",
        ] {
            assert!(EnvironmentUrl::parse(ok, false).is_ok(), "{ok}");
        }
    }

    #[test]
    fn environment_url_rejects_lookalikes_paths_and_http() {
        for bad in [
            "https://crm.dynamics.com",
            "https://x.crm.dynamics.com.evil.com",
            "https://a.b.crm.dynamics.com",
            "https://x.crmA.dynamics.com",
            "https://evil.com/x.crm.dynamics.com",
            "http://x.crm.dynamics.com",
            "https://x.crm.dynamics.com/main.aspx",
            "https://x.crm.dynamics.com:8443",
            "https://user:pw@x.crm.dynamics.com",
            "http://127.0.0.1:9000",
        ] {
            assert!(EnvironmentUrl::parse(bad, false).is_err(), "{bad}");
        }
        assert!(EnvironmentUrl::parse("http://127.0.0.1:9000", true).is_ok());
        assert!(EnvironmentUrl::parse("http://10.0.0.1:9000", true).is_err());
    }

    #[test]
    fn ids_follow_their_rules() {
        assert!(OrgId::parse("acme_1-x").is_ok());
        assert!(OrgId::parse("").is_err());
        assert!(OrgId::parse(&"a".repeat(65)).is_err());
        assert!(OrgId::parse("a/b").is_err());
        assert!(SessionId::parse(&"s".repeat(100)).is_ok());
        assert!(SessionId::parse(&"s".repeat(101)).is_err());
        assert!(SessionId::parse("é").is_err());
    }

    #[test]
    fn email_syntax() {
        assert!(EmailAddress::parse("o'brien+vip@example.co.uk").is_ok());
        assert!(EmailAddress::parse("\"x' or 1 eq 1 or 'a'='a\"@example.com").is_ok());
        for bad in [
            "no-at",
            "@x.com",
            "a@",
            "a b@x.com",
            "a@x",
            "a@x..com",
            "a@.x.com",
            "a@x y.com",
            "\"a\"b\"@x.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
    }
}
