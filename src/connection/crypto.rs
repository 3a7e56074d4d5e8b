//! Encryption of secrets at rest (client secrets, webhook secrets) with AES-256-GCM.
//!
//! Stored form: `v2:<key id>:` + base64(12-byte random nonce ‖ ciphertext ‖ 16-byte tag),
//! where the key id is the first 8 hex digits of SHA-256 over the key, so a value names the
//! key that opens it. Values written before key ids (`v1:` + base64) are opened by trying
//! each key. The associated data binds each value to its place (`client_secret:<org>`,
//! `webhook_secret:<org>`), so a ciphertext copied to another row does not decrypt.
//!
//! Key rotation: start the bridge with the new key as `HANDOFF_ENCRYPTION_KEY` and the old
//! one in `HANDOFF_PREVIOUS_ENCRYPTION_KEYS`; every value still opens, new ones are sealed
//! with the new key; `handoff-bridge rekey` re-seals the stored ones; then drop the old key.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use secrecy::SecretString;

const LEGACY_PREFIX: &str = "v1:";
const PREFIX: &str = "v2:";

/// The 32-byte key that encrypts stored secrets (`HANDOFF_ENCRYPTION_KEY`, base64). `Debug`
/// prints nothing of it.
#[derive(Clone)]
pub struct EncryptionKey(Key<Aes256Gcm>);

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EncryptionKey(redacted)")
    }
}

/// Why a key or a stored value could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the encryption key must be 32 bytes encoded as base64 (run `handoff-bridge keygen` to make one)")]
    BadKey,
    #[error("a stored secret could not be decrypted: it was written with another encryption key or is damaged")]
    Decrypt,
    #[error("a stored secret was sealed with a key this process does not have (set the old key in HANDOFF_PREVIOUS_ENCRYPTION_KEYS, then run `handoff-bridge rekey`)")]
    UnknownKey,
}

impl EncryptionKey {
    /// Parses base64 (standard alphabet, padding optional) of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = B64
            .decode(text.trim())
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text.trim()))
            .map_err(|_| CryptoError::BadKey)?;
        if bytes.len() != 32 {
            return Err(CryptoError::BadKey);
        }
        Ok(Self(*Key::<Aes256Gcm>::from_slice(&bytes)))
    }

    /// A new random key, as base64 (what `keygen` prints).
    pub fn generate_base64() -> String {
        B64.encode(Aes256Gcm::generate_key(OsRng))
    }

    /// The key id written into sealed values: the first 8 hex digits of SHA-256 over the
    /// key (names the key, reveals nothing usable about it).
    pub fn id(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(self.0.as_slice());
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Encrypts `plain` for the place named by `aad`: `v2:<key id>:<base64>`.
    pub fn seal(&self, aad: &str, plain: &str) -> String {
        let cipher = Aes256Gcm::new(&self.0);
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of a short value cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}:{}", self.id(), B64.encode(out))
    }

    /// Decrypts the base64 body of a sealed value (nonce ‖ ciphertext ‖ tag) for `aad`.
    fn open_body(&self, aad: &str, body: &str) -> Result<SecretString, CryptoError> {
        let raw = B64
            .decode(body)
            .ok()
            .filter(|raw| raw.len() > 12)
            .ok_or(CryptoError::Decrypt)?;
        let (nonce, sealed) = raw.split_at(12);
        let plain = Aes256Gcm::new(&self.0)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Decrypt)
    }
}

/// The current key, which seals, and the previous ones, which only open (during a key
/// rotation). `Debug` prints only key ids.
#[derive(Clone)]
pub struct Keyring {
    current: EncryptionKey,
    previous: Vec<EncryptionKey>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("current", &self.current.id())
            .field(
                "previous",
                &self
                    .previous
                    .iter()
                    .map(EncryptionKey::id)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Keyring {
    pub fn new(current: EncryptionKey, previous: Vec<EncryptionKey>) -> Self {
        Self { current, previous }
    }

    /// Seals with the current key.
    pub fn seal(&self, aad: &str, plain: &str) -> String {
        self.current.seal(aad, plain)
    }

    /// Opens a value sealed with the current or a previous key: a `v2:` value with the key
    /// its id names, a `v1:` value with each key in turn.
    pub fn open(&self, aad: &str, stored: &str) -> Result<SecretString, CryptoError> {
        let keys = std::iter::once(&self.current).chain(&self.previous);
        if let Some(rest) = stored.strip_prefix(PREFIX) {
            let (kid, body) = rest.split_once(':').ok_or(CryptoError::Decrypt)?;
            let key = keys
                .into_iter()
                .find(|k| k.id() == kid)
                .ok_or(CryptoError::UnknownKey)?;
            return key.open_body(aad, body);
        }
        let body = stored
            .strip_prefix(LEGACY_PREFIX)
            .ok_or(CryptoError::Decrypt)?;
        keys.into_iter()
            .find_map(|k| k.open_body(aad, body).ok())
            .ok_or(CryptoError::Decrypt)
    }

    /// Whether `stored` should be re-sealed: it is not a `v2:` value of the current key.
    pub fn is_stale(&self, stored: &str) -> bool {
        !stored.starts_with(&format!("{PREFIX}{}:", self.current.id()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn round_trip_with_fresh_nonce_and_bound_aad() {
        let key = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap();
        let a = key.seal("client_secret:acme", "s3cr3t");
        let b = key.seal("client_secret:acme", "s3cr3t");
        assert_ne!(a, b, "each value gets its own nonce");
        assert!(!a.contains("s3cr3t"));
        let ring = Keyring::new(key, Vec::new());
        assert_eq!(
            ring.open("client_secret:acme", &a).unwrap().expose_secret(),
            "s3cr3t"
        );
        assert!(ring.open("client_secret:other", &a).is_err());
        let other = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap();
        assert!(Keyring::new(other, Vec::new())
            .open("client_secret:acme", &a)
            .is_err());
    }

    #[test]
    fn a_keyring_opens_old_values_and_seals_with_the_current_key() {
        let old = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap();
        let new = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap();
        let sealed_old = old.seal("webhook_secret:acme", "whsec_x");
        assert!(sealed_old.starts_with(&format!("v2:{}:", old.id())));
        let ring = Keyring::new(new.clone(), vec![old.clone()]);
        assert_eq!(
            ring.open("webhook_secret:acme", &sealed_old)
                .unwrap()
                .expose_secret(),
            "whsec_x"
        );
        assert!(ring.is_stale(&sealed_old));
        let resealed = ring.seal("webhook_secret:acme", "whsec_x");
        assert!(!ring.is_stale(&resealed));
        let only_new = Keyring::new(new, Vec::new());
        assert!(matches!(
            only_new.open("webhook_secret:acme", &sealed_old),
            Err(CryptoError::UnknownKey)
        ));
        assert!(!format!("{ring:?}").contains(&EncryptionKey::generate_base64()[..4]));
    }

    #[test]
    fn legacy_v1_values_still_open() {
        let key = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap();
        let v2 = key.seal("client_secret:acme", "s3cr3t");
        let body = v2.rsplit(':').next().unwrap();
        let v1 = format!("v1:{body}");
        let ring = Keyring::new(
            EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap(),
            vec![key],
        );
        assert_eq!(
            ring.open("client_secret:acme", &v1)
                .unwrap()
                .expose_secret(),
            "s3cr3t"
        );
        assert!(ring.is_stale(&v1));
    }

    #[test]
    fn key_must_be_32_bytes() {
        assert!(EncryptionKey::from_base64("c2hvcnQ=").is_err());
        assert!(EncryptionKey::from_base64("not base64!").is_err());
    }
}
