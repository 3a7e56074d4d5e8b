//! Standard Webhooks (<https://www.standardwebhooks.com/>, "Signature scheme"):
//! `webhook-signature` holds space-separated `v1,<base64 HMAC-SHA256>` entries over the raw
//! bytes `{webhook-id}.{webhook-timestamp}.{body}`, keyed with the base64 decoding of the
//! secret after its `whsec_` prefix. Any matching entry passes; the timestamp (Unix seconds)
//! must be within ±5 minutes of now.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Allowed distance between `webhook-timestamp` and now, in seconds (Standard Webhooks
/// recommends 5 minutes).
pub const TIMESTAMP_TOLERANCE_SECS: i64 = 5 * 60;

/// A webhook signing secret, `whsec_<base64 of 32 random bytes>`. Its `Debug` prints nothing
/// of the value.
#[derive(Clone)]
pub struct WebhookSecret {
    text: SecretString,
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(redacted)")
    }
}

impl WebhookSecret {
    /// A new random secret (32 bytes from the OS generator).
    pub fn generate() -> Self {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        Self::parse(&format!("whsec_{}", B64.encode(key))).expect("generated secret is valid")
    }

    /// Parses `whsec_<base64>`; the prefix is optional, as in the reference libraries.
    pub fn parse(text: &str) -> Result<Self, String> {
        let encoded = text.strip_prefix("whsec_").unwrap_or(text);
        let key = B64
            .decode(encoded)
            .map_err(|_| "webhook secret is not whsec_ followed by base64".to_owned())?;
        if key.len() < 16 {
            return Err("webhook secret is shorter than 16 bytes".into());
        }
        Ok(Self {
            text: SecretString::from(text.to_owned()),
            key,
        })
    }

    /// The secret as text, for the one response that hands it to the admin and for storage
    /// (encrypted).
    pub fn expose(&self) -> &str {
        self.text.expose_secret()
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header value for a message: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", B64.encode(tag))
    }
}

/// Why a delivery's signature was refused. Each maps to HTTP 401 with its own `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {0} header is missing")]
    MissingHeader(&'static str),
    #[error("the {0} header is not valid: {1}")]
    InvalidHeader(&'static str, &'static str),
    #[error("webhook-timestamp is {0} seconds away from the server clock (tolerance ±300 s)")]
    TimestampOutOfTolerance(i64),
    #[error("no v1 signature in webhook-signature matches the body")]
    Mismatch,
}

impl SignatureError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader(_) => "signature_header_missing",
            Self::InvalidHeader(..) => "signature_header_invalid",
            Self::TimestampOutOfTolerance(_) => "signature_timestamp_out_of_tolerance",
            Self::Mismatch => "signature_mismatch",
        }
    }
}

/// The three Standard Webhooks headers of one delivery, as received.
#[derive(Debug, Clone, Copy)]
pub struct SignatureHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Verifies a delivery against any of `secrets` (the current one and, during rotation, the
/// previous one) at time `now` (Unix seconds). Returns the `webhook-id` on success. The
/// comparison is constant-time (`Mac::verify_slice`).
pub fn verify<'a>(
    secrets: &[WebhookSecret],
    headers: SignatureHeaders<'a>,
    body: &[u8],
    now: i64,
) -> Result<&'a str, SignatureError> {
    let id = headers
        .id
        .ok_or(SignatureError::MissingHeader("webhook-id"))?;
    if id.is_empty() || id.len() > 256 {
        return Err(SignatureError::InvalidHeader(
            "webhook-id",
            "must be 1 to 256 characters",
        ));
    }
    let timestamp: i64 = headers
        .timestamp
        .ok_or(SignatureError::MissingHeader("webhook-timestamp"))?
        .trim()
        .parse()
        .map_err(|_| SignatureError::InvalidHeader("webhook-timestamp", "must be Unix seconds"))?;
    let signature = headers
        .signature
        .ok_or(SignatureError::MissingHeader("webhook-signature"))?;
    let drift = timestamp - now;
    if drift.abs() > TIMESTAMP_TOLERANCE_SECS {
        return Err(SignatureError::TimestampOutOfTolerance(drift));
    }
    let candidates: Vec<Vec<u8>> = signature
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|b64| B64.decode(b64).ok())
        .collect();
    if candidates.is_empty() {
        return Err(SignatureError::InvalidHeader(
            "webhook-signature",
            "has no v1,<base64> entry",
        ));
    }
    for secret in secrets {
        for candidate in &candidates {
            if secret
                .mac(id, timestamp, body)
                .verify_slice(candidate)
                .is_ok()
            {
                return Ok(id);
            }
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> SignatureHeaders<'a> {
        SignatureHeaders {
            id: Some(id),
            timestamp: Some(ts),
            signature: Some(sig),
        }
    }

    #[test]
    fn matches_the_standard_webhooks_reference_vector() {
        // Test vector published with the Standard Webhooks reference libraries.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let header = format!("v0,abc {sig}");
        let ok = verify(
            &[secret],
            headers("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", &header),
            body,
            1614265330 + 299,
        );
        assert_eq!(ok, Ok("msg_p5jXN8AQM9LWM0D4loKWxJek"));
    }

    #[test]
    fn refuses_tampering_staleness_and_other_secrets() {
        let secret = WebhookSecret::generate();
        let other = WebhookSecret::generate();
        let sig = secret.sign("m1", 1000, b"{}");
        assert_eq!(
            verify(
                std::slice::from_ref(&secret),
                headers("m1", "1000", &sig),
                b"{ }",
                1000
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                std::slice::from_ref(&other),
                headers("m1", "1000", &sig),
                b"{}",
                1000
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(
                std::slice::from_ref(&secret),
                headers("m1", "1000", &sig),
                b"{}",
                1301
            ),
            Err(SignatureError::TimestampOutOfTolerance(-301))
        );
        assert!(verify(&[other, secret], headers("m1", "1000", &sig), b"{}", 1000).is_ok());
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let secret = WebhookSecret::generate();
        assert!(!format!("{secret:?}").contains(&secret.expose()[6..]));
    }
}
