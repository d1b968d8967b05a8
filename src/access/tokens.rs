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

/// Token names become SCIM sources (`scim:<name>`): 1-64 of `[A-Za-z0-9._-]`.
pub fn check_name(name: &str) -> Result<String, DirectoryError> {
    let name = name.trim();
    if crate::directory::model::Source::parse(&format!("scim:{name}")).is_none() {
        return Err(DirectoryError::invalid("name", "must be 1-64 characters of letters, digits, . _ -"));
    }
    Ok(name.to_owned())
}
