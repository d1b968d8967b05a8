//! Secrets: the redacted [`Secret`] type, argon2 password hashes (on a bounded pool, so a burst
//! of sign-ins cannot take every core), generated one-time passwords and ids.
//!
//! A leaf: it imports nothing from the rest of the crate, so the configuration, the directory
//! core and access all use it without depending on each other.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use rand::Rng;
use rand::distr::Alphanumeric;

/// A secret: a password on its way to being hashed, or a credential from the configuration
/// (an LDAP bind password, an SMTP password, an API token, a header value). `Debug`, `Display`
/// and `Serialize` all show `***`, so it cannot reach a log line, an error text or the output
/// of `rosterd check-config` by accident; [`Secret::expose`] is the one way to the value.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
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

/// Argon2 at most one at a time per core: each hash or verification takes a core and 19 MiB
/// for tens of milliseconds, and a burst of sign-ins or a SCIM Bulk of passwords must neither
/// grow the blocking pool without bound nor starve everything else.
fn slots() -> std::sync::Arc<tokio::sync::Semaphore> {
    static SLOTS: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    SLOTS
        .get_or_init(|| {
            let n = std::thread::available_parallelism().map_or(2, |n| n.get());
            std::sync::Arc::new(tokio::sync::Semaphore::new(n))
        })
        .clone()
}

/// Too many password checks are waiting: the caller answers 429.
#[derive(Debug, thiserror::Error)]
#[error("too many password checks are waiting; try again in a moment")]
pub struct Busy;

/// Runs `work` on the blocking pool once a slot is free, waiting at most `wait` for one
/// (`None`: as long as it takes).
pub async fn bounded<T: Send + 'static>(
    wait: Option<std::time::Duration>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Busy> {
    let permit = match wait {
        None => slots().acquire_owned().await.map_err(|_| Busy)?,
        Some(d) => {
            tokio::time::timeout(d, slots().acquire_owned()).await.map_err(|_| Busy)?.map_err(|_| Busy)?
        }
    };
    // The permit goes with the work: a caller that gives up (a client hanging up, a timeout)
    // does not free the slot while argon2 still runs.
    tokio::task::spawn_blocking(move || {
        let _slot = permit;
        work()
    })
    .await
    .map_err(|_| Busy)
}

/// [`hash`] on the bounded blocking pool (waits for a slot).
pub async fn hash_bounded(password: String) -> Result<String, Busy> {
    bounded(None, move || hash(&password)).await
}

pub fn verify(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
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
