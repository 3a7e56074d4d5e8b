//! The one owner of stored secrets: every seal and open goes through [`Vault`], each naming
//! where the secret lives ([`SealTarget`]), which becomes the AES-GCM associated data (so a
//! ciphertext copied to another row or column does not open).

use secrecy::{ExposeSecret, SecretString};

use super::crypto::{CryptoError, Keyring};
use crate::store::{ConnectionRow, OpenCxConnectionRow, OrgRow};
use crate::webhook::WebhookSecret;

/// Where a sealed secret is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealTarget<'a> {
    /// `connections.client_secret_enc` of an org.
    ClientSecret(&'a str),
    /// `orgs.webhook_secret_enc` (or `previous_webhook_secret_enc`) of an org.
    WebhookSecret(&'a str),
    /// `opencx_connections.api_key_enc` of an org.
    OpenCxApiKey(&'a str),
}

impl SealTarget<'_> {
    /// The associated data: `client_secret:<org>`, `webhook_secret:<org>` or
    /// `opencx_api_key:<org>`.
    fn aad(self) -> String {
        match self {
            Self::ClientSecret(org) => format!("client_secret:{org}"),
            Self::WebhookSecret(org) => format!("webhook_secret:{org}"),
            Self::OpenCxApiKey(org) => format!("opencx_api_key:{org}"),
        }
    }
}

/// Seals and opens the stored client and webhook secrets with the process's keyring.
/// `Debug` prints key ids only.
#[derive(Debug, Clone)]
pub struct Vault {
    keys: Keyring,
}

impl Vault {
    pub fn new(keys: Keyring) -> Self {
        Self { keys }
    }

    /// Seals `secret` for `target` with the current key.
    pub fn seal(&self, target: SealTarget<'_>, secret: &SecretString) -> String {
        self.keys.seal(&target.aad(), secret.expose_secret())
    }

    /// Opens a value sealed for `target` with the current or a previous key.
    pub fn open(&self, target: SealTarget<'_>, sealed: &str) -> Result<SecretString, CryptoError> {
        self.keys.open(&target.aad(), sealed)
    }

    /// Whether `sealed` is not sealed with the current key (`rekey` re-seals it).
    pub fn is_stale(&self, sealed: &str) -> bool {
        self.keys.is_stale(sealed)
    }

    /// Seals an org's webhook secret.
    pub fn seal_webhook_secret(&self, org_id: &str, secret: &WebhookSecret) -> String {
        self.keys
            .seal(&SealTarget::WebhookSecret(org_id).aad(), secret.expose())
    }

    /// The org's current webhook secret (callbacks are signed with it).
    pub fn webhook_secret(&self, org: &OrgRow) -> Result<WebhookSecret, String> {
        self.open_webhook_secret(&org.org_id, &org.webhook_secret_enc)
    }

    /// The secrets a delivery to `org` may be signed with at `now` (Unix ms): the current
    /// one, and the previous one until its grace period ends. A secret that does not open
    /// (another encryption key) is logged and left out.
    pub fn webhook_secrets(&self, org: &OrgRow, now: i64) -> Vec<WebhookSecret> {
        let mut sealed = vec![org.webhook_secret_enc.as_str()];
        if let (Some(previous), Some(until)) = (
            &org.previous_webhook_secret_enc,
            org.previous_secret_expires_at,
        ) {
            if now < until {
                sealed.push(previous);
            }
        }
        sealed
            .into_iter()
            .filter_map(|s| match self.open_webhook_secret(&org.org_id, s) {
                Ok(secret) => Some(secret),
                Err(e) => {
                    tracing::error!(org_id = %org.org_id, error = %e, "a webhook secret cannot be opened");
                    None
                }
            })
            .collect()
    }

    fn open_webhook_secret(&self, org_id: &str, sealed: &str) -> Result<WebhookSecret, String> {
        let text = self
            .open(SealTarget::WebhookSecret(org_id), sealed)
            .map_err(|e| e.to_string())?;
        WebhookSecret::parse(text.expose_secret())
    }

    /// The connection's client secret.
    pub fn client_secret(&self, conn: &ConnectionRow) -> Result<SecretString, CryptoError> {
        self.open(
            SealTarget::ClientSecret(&conn.org_id),
            &conn.client_secret_enc,
        )
    }

    /// The OpenCX connection's API key.
    pub fn opencx_api_key(&self, conn: &OpenCxConnectionRow) -> Result<SecretString, CryptoError> {
        self.open(SealTarget::OpenCxApiKey(&conn.org_id), &conn.api_key_enc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::crypto::EncryptionKey;

    fn vault() -> Vault {
        let key = EncryptionKey::from_base64(&EncryptionKey::generate_base64()).unwrap();
        Vault::new(Keyring::new(key, Vec::new()))
    }

    #[test]
    fn a_secret_opens_only_where_it_was_sealed() {
        let vault = vault();
        let secret = SecretString::from("s3cr3t".to_owned());
        let sealed = vault.seal(SealTarget::ClientSecret("acme"), &secret);
        assert_eq!(
            vault
                .open(SealTarget::ClientSecret("acme"), &sealed)
                .unwrap()
                .expose_secret(),
            "s3cr3t"
        );
        assert!(vault
            .open(SealTarget::ClientSecret("beta"), &sealed)
            .is_err());
        assert!(vault
            .open(SealTarget::WebhookSecret("acme"), &sealed)
            .is_err());
    }

    #[test]
    fn the_previous_webhook_secret_verifies_until_its_grace_ends() {
        let vault = vault();
        let (current, previous) = (WebhookSecret::generate(), WebhookSecret::generate());
        let org = OrgRow {
            org_id: "acme".into(),
            name: "Acme".into(),
            callback_url: None,
            webhook_secret_enc: vault.seal_webhook_secret("acme", &current),
            previous_webhook_secret_enc: Some(vault.seal_webhook_secret("acme", &previous)),
            previous_secret_expires_at: Some(1_000),
            created_at: 0,
            updated_at: 0,
        };
        let texts = |now| -> Vec<String> {
            vault
                .webhook_secrets(&org, now)
                .iter()
                .map(|s| s.expose().to_owned())
                .collect()
        };
        assert_eq!(texts(999), [current.expose(), previous.expose()]);
        assert_eq!(texts(1_000), [current.expose()]);
        assert_eq!(
            vault.webhook_secret(&org).unwrap().expose(),
            current.expose()
        );
    }
}
