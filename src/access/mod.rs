//! Access to the account center: API tokens, console sessions, sign-in failures, and the
//! pass-through check against a member's own directory ([`PassThrough`]). (The password
//! primitives are in [`crate::secret`].)
//!
//! [`Access`] owns the tokens: it creates, rotates and revokes them, each write audited in the
//! same transaction ([`store::AccessStore`]), and authenticates bearer tokens through a short
//! cache. Sessions and sign-in failures are bookkeeping the console keeps through the same store.

pub mod attendance;
pub mod login;
pub mod policy;
pub mod signin;
pub mod store;
pub mod tokens;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{SubsecRound, Utc};
use serde_json::json;

use crate::directory::model::{Actor, AuditRecord};
use crate::directory::{DirectoryError, DirectoryResult};
use store::{AccessStore, TokenInfo, TokenKind};

/// Checks a member's password against the directory the member came from (console sign-in by
/// pass-through). Implemented by the LDAP sync adapter, handed in by the wiring, so that the console never imports the sync adapter.
#[async_trait]
pub trait PassThrough: Send + Sync + 'static {
    /// `None` when `source` is not one this checker knows (the member signs in with a local
    /// password). `Some(Ok(false))`: wrong password or no such entry; `Some(Err(_))`: the
    /// directory could not be asked.
    async fn verify(&self, source: &str, anchor: &str, password: &str) -> Option<Result<bool, Unreachable>>;
}

/// A member's directory could not be asked for their password (its text is for the log).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unreachable(pub String);

/// No pass-through directory (tests, and deployments without LDAP sources).
pub struct NoPassThrough;

#[async_trait]
impl PassThrough for NoPassThrough {
    async fn verify(&self, _: &str, _: &str, _: &str) -> Option<Result<bool, Unreachable>> {
        None
    }
}

/// Access's scheduled job ([`crate::jobs`]): every hour, forget ended sessions and sign-in
/// failures older than a day that lock nothing.
pub fn jobs(access: &Access) -> Vec<crate::jobs::Job> {
    let store = access.store.clone();
    let hourly: cron::Schedule = "0 17 * * * *".parse().expect("a valid cron expression");
    vec![crate::jobs::Job::new("access:purge", hourly, move || {
        let store = store.clone();
        async move {
            let now = Utc::now();
            let sessions = store.sessions_purge(now).await?;
            let failures = store.sign_in_failures_purge(now - chrono::Duration::days(1)).await?;
            tracing::debug!(sessions, failures, "purged ended sessions and old sign-in failures");
            Ok(())
        }
    })]
}

/// API tokens and the access store. Cheap to clone.
#[derive(Clone)]
pub struct Access {
    store: Arc<dyn AccessStore>,
    tokens: Arc<tokens::Cache>,
}

impl Access {
    pub fn new(store: Arc<dyn AccessStore>) -> Access {
        Access { store, tokens: Default::default() }
    }

    /// Sessions and sign-in failures (bookkeeping; the console's sign-in keeps them).
    pub fn store(&self) -> &Arc<dyn AccessStore> {
        &self.store
    }

    /// Creates an API token; returns the secret (shown once, only its hash is stored). A name
    /// is a source's identity (`scim:<name>`): once used it is never handed out again, revoked
    /// or not, or a new client would inherit every member the old one provisioned.
    pub async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        adopt_existing: bool,
    ) -> DirectoryResult<String> {
        self.create_token_of(actor, name, TokenKind::Scim, adopt_existing).await
    }

    /// Creates a token of `kind` (see [`Self::create_token`]). Only a SCIM client may adopt
    /// members (`adopt_existing`). Names are unique over every kind.
    pub async fn create_token_of(
        &self,
        actor: &Actor,
        name: &str,
        kind: TokenKind,
        adopt_existing: bool,
    ) -> DirectoryResult<String> {
        self.insert_token(actor, name, kind, adopt_existing, &Default::default()).await
    }

    /// Creates an LDAP service account (a token of kind `ldap`): the secret is its bind
    /// password (shown once); it reads the whole tree or `limits.scope_unit_id`'s subtree.
    pub async fn create_ldap_client(
        &self,
        actor: &Actor,
        name: &str,
        limits: &store::TokenLimits,
    ) -> DirectoryResult<String> {
        if limits.size_limit.is_some_and(|n| n < 1) || limits.time_limit_secs.is_some_and(|n| n < 1) {
            return Err(DirectoryError::invalid("size_limit", "limits must be at least 1"));
        }
        self.insert_token(actor, name, TokenKind::Ldap, false, limits).await
    }

    async fn insert_token(
        &self,
        actor: &Actor,
        name: &str,
        kind: TokenKind,
        adopt_existing: bool,
        limits: &store::TokenLimits,
    ) -> DirectoryResult<String> {
        let name = tokens::check_name(name)?;
        if adopt_existing && kind != TokenKind::Scim {
            return Err(DirectoryError::invalid(
                "adopt_existing",
                "only a SCIM client's token may adopt members",
            ));
        }
        let (secret, hash) = tokens::generate();
        let at = Utc::now().trunc_subsecs(6);
        let after = json!({
            "name": name,
            "kind": kind,
            "adopt_existing": adopt_existing,
            "scope_unit_id": limits.scope_unit_id,
            "size_limit": limits.size_limit,
            "time_limit_secs": limits.time_limit_secs,
        });
        let audit =
            AuditRecord::new(actor, at, "token.create", ("token", Some(name.clone())), None, Some(&after));
        self.store
            .token_insert(&store::Sealed::new(), &name, &hash, kind, adopt_existing, limits, at, &audit)
            .await
            .map_err(DirectoryError::from_store)?;
        Ok(secret)
    }

    /// Replaces the secret of the token `name` and returns the new one (shown once). The name,
    /// and so the source `scim:<name>` and everything it provisioned, stays with the client; a
    /// revoked token is live again. Names are never handed out twice (see
    /// [`Self::create_token`]), so this is the only way to give a source a new secret.
    pub async fn rotate_token(&self, actor: &Actor, name: &str) -> DirectoryResult<String> {
        let (secret, hash) = tokens::generate();
        let at = Utc::now().trunc_subsecs(6);
        let audit =
            AuditRecord::new::<()>(actor, at, "token.rotate", ("token", Some(name.to_owned())), None, None);
        if !self.store.token_rotate(&store::Sealed::new(), name, &hash, at, &audit).await? {
            return Err(DirectoryError::NotFound { kind: "token", id: name.to_owned() });
        }
        self.tokens.clear();
        Ok(secret)
    }

    /// Revokes the live token `name`.
    pub async fn revoke_token(&self, actor: &Actor, name: &str) -> DirectoryResult<()> {
        let at = Utc::now().trunc_subsecs(6);
        let audit =
            AuditRecord::new::<()>(actor, at, "token.revoke", ("token", Some(name.to_owned())), None, None);
        if !self.store.token_revoke(&store::Sealed::new(), name, at, &audit).await? {
            return Err(DirectoryError::NotFound { kind: "token", id: name.to_owned() });
        }
        self.tokens.clear();
        Ok(())
    }

    /// The live token with this secret, if any (see [`tokens::Cache`]).
    pub async fn authenticate_token(&self, secret: &str) -> DirectoryResult<Option<TokenInfo>> {
        let hash = tokens::hash(secret);
        if let Some(info) = self.tokens.get(&hash) {
            return Ok(Some(info));
        }
        let info = self.store.token_by_hash(&hash).await?;
        if let Some(info) = &info {
            self.tokens.put(hash, info.clone());
        }
        Ok(info)
    }
}
