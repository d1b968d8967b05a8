//! Passwords: argon2 hashes, generated one-time passwords, strength rules.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rand::Rng;
use rand::distr::Alphanumeric;

use crate::directory::DirectoryError;

/// A password on its way to being hashed: never printed by `Debug`, never serialised back out.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl serde::Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

/// The shortest password accepted for the super admin.
pub const MIN_LEN: usize = 12;

/// A random password for first start: 20 letters and digits (about 119 bits).
pub fn generate() -> String {
    rand::rng().sample_iter(&Alphanumeric).take(20).map(char::from).collect()
}

/// A random 10-digit enterprise id (the super admin signs in with it).
pub fn enterprise_id() -> String {
    rand::rng().random_range(2_000_000_000u64..3_000_000_000).to_string()
}

/// An argon2id hash in PHC format, with its own random salt.
pub fn hash(password: &str) -> String {
    Argon2::default()
        .hash_password(password.as_bytes())
        .expect("argon2 with default parameters hashes any input")
        .to_string()
}

pub fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

pub fn check_strength(password: &str) -> Result<(), DirectoryError> {
    if password.chars().count() < MIN_LEN {
        return Err(DirectoryError::invalid("password", format!("must be at least {MIN_LEN} characters")));
    }
    if password.chars().any(char::is_control) {
        return Err(DirectoryError::invalid("password", "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn hashes_verify_and_differ() {
        let h1 = super::hash("correct horse battery");
        let h2 = super::hash("correct horse battery");
        assert_ne!(h1, h2, "each hash has its own salt");
        assert!(super::verify("correct horse battery", &h1));
        assert!(!super::verify("wrong horse battery", &h1));
        assert!(!super::verify("anything", "not a hash"));
    }
}
