//! API bearer tokens: `rst_` + 64 hex digits. Only the SHA-256 of a token is stored; tokens are
//! random and long, so a fast hash is enough (no dictionary to guess from).

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::directory::DirectoryError;

pub const PREFIX: &str = "rst_";

/// A new token and the hash to store.
pub fn generate() -> (String, String) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!("{PREFIX}{}", hex::encode(bytes));
    let hash = hash(&secret);
    (secret, hash)
}

pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Token names become sources (`scim:<name>`, `im:<name>`): 1-64 of `[A-Za-z0-9._-]`.
pub fn check_name(name: &str) -> Result<String, DirectoryError> {
    let name = name.trim();
    if crate::directory::model::Source::parse(&format!("scim:{name}")).is_none() {
        return Err(DirectoryError::invalid("name", "must be 1-64 characters of letters, digits, . _ -"));
    }
    Ok(name.to_owned())
}

/// How long a verified token is believed without asking the store again.
pub const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);
const CACHE_MAX: usize = 256;

/// Tokens verified in the last [`CACHE_TTL`], by hash, so that a provisioning burst of
/// thousands of requests a second does not look its token up for each one. A revocation
/// through this process empties it at once; one made by another process (`rosterd token
/// revoke`) takes effect within [`CACHE_TTL`].
#[derive(Default)]
pub struct Cache {
    entries: std::sync::Mutex<
        std::collections::HashMap<String, (crate::access::store::TokenInfo, std::time::Instant)>,
    >,
}

impl Cache {
    pub fn get(&self, hash: &str) -> Option<crate::access::store::TokenInfo> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.get(hash).filter(|(_, at)| at.elapsed() < CACHE_TTL).map(|(info, _)| info.clone())
    }

    pub fn put(&self, hash: String, info: crate::access::store::TokenInfo) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CACHE_MAX {
            entries.retain(|_, (_, at)| at.elapsed() < CACHE_TTL);
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
        }
        entries.insert(hash, (info, std::time::Instant::now()));
    }

    pub fn clear(&self) {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}
