//! Access's persistence: API tokens, console sessions and sign-in failures.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::directory::model::AuditRecord;
use crate::directory::store::Result;

text_enum! {
    /// What a token lets its holder do.
    pub enum TokenKind as "token kind" {
        /// An identity provider's SCIM client; its source is `scim:<name>`.
        Scim = "scim",
        /// An IM server posting message records; its source is `im:<name>`.
        Archive = "archive",
        /// A compliance tool reading the message archive.
        ArchiveRead = "archive-read",
        /// An app (an IM server) checking members' passwords through the sign-in API.
        SignIn = "sign-in",
        /// A time clock or app posting attendance punches.
        Attendance = "attendance",
        /// An app binding to the LDAP server as a service account (`rosterd ldap-client`).
        Ldap = "ldap",
    }
}

impl TokenKind {
    /// The source a token of this kind writes as, if it writes (`scim:<name>`, `im:<name>`).
    pub fn source(self, name: &str) -> Option<crate::directory::model::Source> {
        match self {
            TokenKind::Scim => crate::directory::model::Source::parse(&format!("scim:{name}")),
            TokenKind::Archive => crate::directory::model::Source::parse(&format!("im:{name}")),
            TokenKind::ArchiveRead | TokenKind::SignIn | TokenKind::Attendance | TokenKind::Ldap => None,
        }
    }
}

/// An API token as listed (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The client may take over members that another source created, matching by userName.
    pub adopt_existing: bool,
    #[sqlx(try_from = "String")]
    pub kind: TokenKind,
    /// When its secret was last replaced ([`AccessStore::token_rotate`]).
    pub rotated_at: Option<DateTime<Utc>>,
    /// An LDAP service account's subtree (`None`: the whole tree).
    pub scope_unit_id: Option<Uuid>,
    /// An LDAP service account's own size limit (entries a search returns without paging).
    pub size_limit: Option<i64>,
    /// An LDAP service account's own time limit for a search, in seconds.
    pub time_limit_secs: Option<i64>,
}

/// What an LDAP service account may read, and how much at once (other kinds: all `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenLimits {
    pub scope_unit_id: Option<Uuid>,
    pub size_limit: Option<i64>,
    pub time_limit_secs: Option<i64>,
}

/// A console session (the cookie carries a secret; only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AdminSession {
    pub id_hash: String,
    /// `None`: the super admin.
    pub member_id: Option<Uuid>,
    pub csrf: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub ip: String,
}

/// The proof that the caller is `access` itself: the audited token writes take one, and only
/// this module makes it, so they are reachable only through [`super::Access`].
pub struct Sealed(());

impl Sealed {
    pub(super) fn new() -> Sealed {
        Sealed(())
    }
}

#[async_trait]
pub trait AccessStore: Send + Sync + 'static {
    async fn tokens(&self) -> Result<Vec<TokenInfo>>;
    /// The live (not revoked) token with this hash; records its use.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>>;
    /// Console sessions and sign-in failures: bookkeeping, like token use times.
    async fn session_insert(&self, s: &AdminSession) -> Result<()>;
    async fn session(&self, id_hash: &str) -> Result<Option<AdminSession>>;
    async fn session_touch(&self, id_hash: &str, seen: DateTime<Utc>, expires: DateTime<Utc>) -> Result<()>;
    async fn session_delete(&self, id_hash: &str) -> Result<()>;
    async fn sessions_purge(&self, before: DateTime<Utc>) -> Result<u64>;
    /// Counts one more failure under `key` (starting a new window at `now` when the current one
    /// began before `window_from`), in one statement; returns the failures in the window and
    /// the key's lock, if any.
    async fn sign_in_failure_add(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window_from: DateTime<Utc>,
    ) -> Result<(i64, Option<DateTime<Utc>>)>;
    /// Takes back one attempt counted under `key` (it succeeded, or was never evaluated).
    async fn sign_in_failure_undo(&self, key: &str) -> Result<()>;
    async fn sign_in_lock(&self, key: &str, until: DateTime<Utc>) -> Result<()>;
    async fn sign_in_failures_clear(&self, key: &str) -> Result<()>;
    /// Forgets failures whose window began before `before` and that lock nothing.
    async fn sign_in_failures_purge(&self, before: DateTime<Utc>) -> Result<u64>;

    /// Adds a token, audited in the same transaction.
    async fn token_insert(
        &self,
        key: &Sealed,
        name: &str,
        hash: &str,
        kind: TokenKind,
        adopt_existing: bool,
        limits: &TokenLimits,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> Result<()>;
    /// Replaces the secret of the token `name` (live or revoked; a revoked one is live again),
    /// audited in the same transaction; false (and nothing written) when there is no such token.
    async fn token_rotate(
        &self,
        key: &Sealed,
        name: &str,
        hash: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> Result<bool>;
    /// Marks the live token `name` revoked, audited in the same transaction; false (and nothing
    /// written) when there is none.
    async fn token_revoke(
        &self,
        key: &Sealed,
        name: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> Result<bool>;
}
