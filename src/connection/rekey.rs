//! `handoff-bridge rekey`: re-seals every stored secret with the current encryption key,
//! the last step of a key rotation (see [`crypto`](super::crypto)).

use super::vault::{SealTarget, Vault};
use crate::store::{SealedValue, Store, StoreError};

/// What a rekey did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rekeyed {
    /// Values re-sealed with the current key.
    pub resealed: usize,
    /// Values already sealed with the current key.
    pub current: usize,
    /// Values no key opens, as `table.column of org` (left as they are).
    pub unreadable: Vec<String>,
}

fn target(value: &SealedValue) -> SealTarget<'_> {
    match value.column {
        "client_secret_enc" => SealTarget::ClientSecret(&value.org_id),
        "api_key_enc" => SealTarget::OpenCxApiKey(&value.org_id),
        _ => SealTarget::WebhookSecret(&value.org_id),
    }
}

/// Re-seals every stored secret that is not sealed with the vault's current key. A value
/// no key opens is reported and left alone; a value changed meanwhile (a rotation by the
/// admin API) is left to its newer writer.
pub async fn rekey(store: &Store, vault: &Vault) -> Result<Rekeyed, StoreError> {
    let mut done = Rekeyed::default();
    for value in store.sealed_values().await? {
        if !vault.is_stale(&value.sealed) {
            done.current += 1;
            continue;
        }
        match vault.open(target(&value), &value.sealed) {
            Ok(plain) => {
                let resealed = vault.seal(target(&value), &plain);
                if store.replace_sealed(&value, &resealed).await? {
                    done.resealed += 1;
                }
            }
            Err(_) => done.unreadable.push(format!(
                "{}.{} of org {}",
                value.table, value.column, value.org_id
            )),
        }
    }
    Ok(done)
}
