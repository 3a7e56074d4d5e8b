//! Encryption of secrets at rest (client secrets, webhook secrets) with AES-256-GCM.
//!
//! Stored form: `v1:` + base64(12-byte random nonce ‖ ciphertext ‖ 16-byte tag). The
//! associated data binds each value to its place (`client_secret:<org>`,
//! `webhook_secret:<org>`), so a ciphertext copied to another row does not decrypt.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

const PREFIX: &str = "v1:";

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

    /// Encrypts `plain` for the place named by `aad`.
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
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Decrypts a value written by [`seal`](Self::seal) for the same `aad`.
    pub fn open(&self, aad: &str, stored: &str) -> Result<SecretString, CryptoError> {
        let raw = stored
            .strip_prefix(PREFIX)
            .and_then(|b| B64.decode(b).ok())
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

/// Convenience for the sealed form of a secret held as `SecretString`.
pub fn seal_secret(key: &EncryptionKey, aad: &str, secret: &SecretString) -> String {
    key.seal(aad, secret.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_fresh_nonce_and_bound_aad() {
        let key = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap();
        let a = key.seal("client_secret:acme", "s3cr3t");
        let b = key.seal("client_secret:acme", "s3cr3t");
        assert_ne!(a, b, "each value gets its own nonce");
        assert!(!a.contains("s3cr3t"));
        assert_eq!(
            key.open("client_secret:acme", &a).unwrap().expose_secret(),
            "s3cr3t"
        );
        assert!(key.open("client_secret:other", &a).is_err());
        let other = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap();
        assert!(other.open("client_secret:acme", &a).is_err());
    }

    #[test]
    fn key_must_be_32_bytes() {
        assert!(EncryptionKey::from_base64("c2hvcnQ=").is_err());
        assert!(EncryptionKey::from_base64("not base64!").is_err());
    }
}
