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
use subtle::ConstantTimeEq;

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

    /// Imports a secret an admin pasted from the widget backend (OpenCX: Settings →
    /// Integrations → Webhooks). Surrounding whitespace is dropped. `whsec_<base64>` is a
    /// Standard Webhooks secret (the key is the decoded bytes, at least 16); any other text
    /// is used as the HMAC key as it is (16 to 256 bytes, no control characters). Either way
    /// the result is kept in the `whsec_` form, so [`WebhookSecret::parse`] reads it back
    /// with the same key.
    ///
    /// # Errors
    /// Why the text cannot be a secret, in words for the field `webhook_secret`.
    pub fn import(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with("whsec_") {
            return Self::parse(text);
        }
        if text.len() < 16 || text.len() > 256 {
            return Err(format!(
                "is {} bytes; a plain secret must be 16 to 256 bytes (or paste a whsec_ value)",
                text.len()
            ));
        }
        if text.chars().any(char::is_control) {
            return Err("must not contain control characters".into());
        }
        Self::parse(&format!("whsec_{}", B64.encode(text.as_bytes())))
    }

    /// The secret as text, for the one response that hands it to the admin and for storage
    /// (encrypted).
    pub fn expose(&self) -> &str {
        self.text.expose_secret()
    }

    fn mac(&self, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header value for a message: `v1,<base64>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self
            .mac(id, &timestamp.to_string(), body)
            .finalize()
            .into_bytes();
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

/// Longest `webhook-signature` header accepted, in bytes. A sender signs with at most a few
/// secrets at once (rotation); 1 KiB holds 20 `v1,` entries.
pub const MAX_SIGNATURE_HEADER_LEN: usize = 1024;

/// Most `webhook-signature` entries accepted. Each candidate costs only a constant-time
/// comparison (the MAC is computed once per secret), but the bound keeps the header cheap
/// to parse and refuses a padded header outright.
pub const MAX_SIGNATURE_ENTRIES: usize = 8;

/// Longest `webhook-id` accepted, in bytes.
pub const MAX_WEBHOOK_ID_LEN: usize = 256;

/// The three Standard Webhooks headers of one delivery, as received.
#[derive(Debug, Clone, Copy)]
pub struct SignatureHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Headers whose shape and timestamp passed [`SignatureHeaders::check`]: what is left is
/// one HMAC per secret over the body.
#[derive(Debug, Clone)]
pub struct CheckedHeaders<'a> {
    id: &'a str,
    /// The `webhook-timestamp` header exactly as received (digits only, no leading zero).
    timestamp: &'a str,
    /// The decoded `v1` entries that have the length of an HMAC-SHA256 tag.
    candidates: Vec<[u8; 32]>,
}

impl<'a> SignatureHeaders<'a> {
    /// Checks everything that does not need the body or a secret: presence, sizes, the
    /// timestamp's form (`[1-9][0-9]{0,11}`, Unix seconds) and its distance from `now`
    /// (Unix seconds), and the `v1,<base64>` entries (at most [`MAX_SIGNATURE_ENTRIES`] in
    /// at most [`MAX_SIGNATURE_HEADER_LEN`] bytes). Cheap and bounded, so the webhook route
    /// runs it before reading the body or touching the store.
    pub fn check(self, now: i64) -> Result<CheckedHeaders<'a>, SignatureError> {
        let id = self.id.ok_or(SignatureError::MissingHeader("webhook-id"))?;
        if id.is_empty() || id.len() > MAX_WEBHOOK_ID_LEN {
            return Err(SignatureError::InvalidHeader(
                "webhook-id",
                "must be 1 to 256 characters",
            ));
        }
        let timestamp = self
            .timestamp
            .ok_or(SignatureError::MissingHeader("webhook-timestamp"))?;
        let seconds = parse_timestamp(timestamp).ok_or(SignatureError::InvalidHeader(
            "webhook-timestamp",
            "must be Unix seconds (1 to 12 digits, no sign, spaces or leading zeros)",
        ))?;
        let signature = self
            .signature
            .ok_or(SignatureError::MissingHeader("webhook-signature"))?;
        if signature.len() > MAX_SIGNATURE_HEADER_LEN {
            return Err(SignatureError::InvalidHeader(
                "webhook-signature",
                "is longer than 1024 bytes",
            ));
        }
        if seconds.abs_diff(now) > TIMESTAMP_TOLERANCE_SECS.unsigned_abs() {
            return Err(SignatureError::TimestampOutOfTolerance(
                seconds.saturating_sub(now),
            ));
        }
        let entries: Vec<&str> = signature.split_whitespace().collect();
        if entries.len() > MAX_SIGNATURE_ENTRIES {
            return Err(SignatureError::InvalidHeader(
                "webhook-signature",
                "has more than 8 entries",
            ));
        }
        let v1: Vec<&str> = entries
            .iter()
            .filter_map(|entry| entry.strip_prefix("v1,"))
            .collect();
        if v1.is_empty() {
            return Err(SignatureError::InvalidHeader(
                "webhook-signature",
                "has no v1,<base64> entry",
            ));
        }
        let candidates = v1
            .into_iter()
            .filter_map(|b64| B64.decode(b64).ok())
            .filter_map(|tag| <[u8; 32]>::try_from(tag).ok())
            .collect();
        Ok(CheckedHeaders {
            id,
            timestamp,
            candidates,
        })
    }
}

/// `webhook-timestamp` as Unix seconds: 1 to 12 ASCII digits without a leading zero, so
/// the text signed is the text a sender formats from the number (no parser differential).
fn parse_timestamp(text: &str) -> Option<i64> {
    let well_formed = (1..=12).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    if well_formed {
        text.parse().ok()
    } else {
        None
    }
}

impl<'a> CheckedHeaders<'a> {
    /// Verifies the body against any of `secrets` (the current one and, during rotation,
    /// the previous one): one HMAC per secret over `{id}.{timestamp}.{body}` with the
    /// timestamp as received, compared in constant time with every candidate. Returns the
    /// `webhook-id` on success.
    pub fn verify(
        &self,
        secrets: &[WebhookSecret],
        body: &[u8],
    ) -> Result<&'a str, SignatureError> {
        for secret in secrets {
            let expected = secret
                .mac(self.id, self.timestamp, body)
                .finalize()
                .into_bytes();
            let matched = self
                .candidates
                .iter()
                .any(|candidate| bool::from(expected.as_slice().ct_eq(candidate)));
            if matched {
                return Ok(self.id);
            }
        }
        Err(SignatureError::Mismatch)
    }
}

/// Verifies a delivery: [`SignatureHeaders::check`] then [`CheckedHeaders::verify`].
pub fn verify<'a>(
    secrets: &[WebhookSecret],
    headers: SignatureHeaders<'a>,
    body: &[u8],
    now: i64,
) -> Result<&'a str, SignatureError> {
    headers.check(now)?.verify(secrets, body)
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_imported_secret_signs_with_the_key_it_was_given() {
        let body = br#"{"event":"x"}"#;
        // A Standard Webhooks secret: the key is the decoded bytes.
        let standard = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let imported = WebhookSecret::import(&format!("  {standard}\n")).unwrap();
        assert_eq!(
            imported.sign("m", 1, body),
            WebhookSecret::parse(standard).unwrap().sign("m", 1, body)
        );
        // A plain string is the HMAC key itself, and reads back the same from storage.
        let plain = WebhookSecret::import("opencx-signing-secret-1234").unwrap();
        let mut mac = HmacSha256::new_from_slice(b"opencx-signing-secret-1234").unwrap();
        mac.update(b"m.1.");
        mac.update(body);
        let expected = format!("v1,{}", B64.encode(mac.finalize().into_bytes()));
        assert_eq!(plain.sign("m", 1, body), expected);
        let stored = WebhookSecret::parse(plain.expose()).unwrap();
        assert_eq!(stored.sign("m", 1, body), expected);
        // What cannot be a secret says why.
        assert!(WebhookSecret::import("short")
            .unwrap_err()
            .contains("16 to 256 bytes"));
        assert!(WebhookSecret::import("whsec_***").is_err());
        assert!(WebhookSecret::import("sixteen-or-more\u{7}chars")
            .unwrap_err()
            .contains("control"));
        assert_eq!(format!("{plain:?}"), "WebhookSecret(redacted)");
    }

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
        let refused: [(&WebhookSecret, &[u8], i64, SignatureError); 3] = [
            (&secret, b"{ }", 1000, SignatureError::Mismatch),
            (&other, b"{}", 1000, SignatureError::Mismatch),
            (
                &secret,
                b"{}",
                1301,
                SignatureError::TimestampOutOfTolerance(-301),
            ),
        ];
        for (key, body, now, why) in refused {
            let headers = headers("m1", "1000", &sig);
            assert_eq!(
                verify(std::slice::from_ref(key), headers, body, now),
                Err(why)
            );
        }
        assert!(verify(&[other, secret], headers("m1", "1000", &sig), b"{}", 1000).is_ok());
    }

    /// Verifies `{}` sent as `m1` at `timestamp` with `signature`, against `secret` at `now`.
    fn verify_empty<'a>(
        secret: &WebhookSecret,
        timestamp: &'a str,
        signature: &'a str,
        now: i64,
    ) -> Result<&'a str, SignatureError> {
        verify(
            std::slice::from_ref(secret),
            headers("m1", timestamp, signature),
            b"{}",
            now,
        )
    }

    #[test]
    fn timestamp_must_be_plain_digits_and_near_now_without_overflow() {
        let secret = WebhookSecret::generate();
        let sig = secret.sign("m1", 1000, b"{}");
        let malformed = Err(SignatureError::InvalidHeader(
            "webhook-timestamp",
            "must be Unix seconds (1 to 12 digits, no sign, spaces or leading zeros)",
        ));
        for bad in [
            " 1000",
            "1000 ",
            "+1000",
            "01000",
            "-1000",
            "1e3",
            "",
            "1234567890123",
        ] {
            assert_eq!(verify_empty(&secret, bad, &sig, 1000), malformed, "{bad:?}");
        }
        // i64::MIN + now used to wrap `abs()` and pass; now it is simply far away.
        for (timestamp, now) in [
            ("999999999999", i64::MIN + 1_795_393_253),
            ("1000", i64::MAX),
        ] {
            assert!(matches!(
                verify_empty(&secret, timestamp, &sig, now),
                Err(SignatureError::TimestampOutOfTolerance(_))
            ));
        }
    }

    #[test]
    fn the_signature_header_is_bounded_before_any_mac() {
        let secret = WebhookSecret::generate();
        let good = secret.sign("m1", 1000, b"{}");
        let padded = format!("{} {good}", vec!["v1,"; 50_000].join(" "));
        let too_long = Err(SignatureError::InvalidHeader(
            "webhook-signature",
            "is longer than 1024 bytes",
        ));
        assert_eq!(verify_empty(&secret, "1000", &padded, 1000), too_long);
        let nine = format!("{} {good}", ["v1,AAAA"; 8].join(" "));
        assert!(nine.len() < MAX_SIGNATURE_HEADER_LEN);
        let too_many = Err(SignatureError::InvalidHeader(
            "webhook-signature",
            "has more than 8 entries",
        ));
        assert_eq!(verify_empty(&secret, "1000", &nine, 1000), too_many);
        let eight = format!("{} {good}", ["v1,"; 7].join(" "));
        assert_eq!(verify_empty(&secret, "1000", &eight, 1000), Ok("m1"));
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let secret = WebhookSecret::generate();
        assert!(!format!("{secret:?}").contains(&secret.expose()[6..]));
    }
}
