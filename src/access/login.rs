//! The sign-in policy's and the login log's persistence ([`LoginStore`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::directory::model::AuditRecord;
use crate::directory::store::Result;

use super::store::Sealed;

/// A policy rule as stored: its parts as the lines [`super::policy::Rule::parse`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRow {
    pub id: Uuid,
    pub position: i64,
    pub who_kind: String,
    pub who_id: Option<Uuid>,
    pub spec: super::policy::RuleSpec,
    pub updated_at: DateTime<Utc>,
}

/// One sign-in attempt as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct LoginEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The member the account resolved to, if any.
    pub member_id: Option<Uuid>,
    /// What was typed (the account as given, lower case).
    pub typed: String,
    /// `console`, `ldap`, `api`.
    pub client: String,
    /// The service account or token (and the API's client kind).
    pub app: String,
    /// The user's address when known (the console, the API); an LDAP bind's is the app's.
    pub ip: Option<String>,
    /// See [`Outcome`].
    pub outcome: String,
    /// The policy rule that decided, when one did.
    pub rule_id: Option<Uuid>,
    /// What the outcome does not say (never a password).
    pub reason: String,
    /// `/unit/.../unit/`: the member's primary unit and its ancestors (root first) then.
    pub unit_path: String,
}

text_enum! {
    /// How a sign-in attempt ended.
    pub enum Outcome as "login outcome" {
        Success = "success",
        /// Wrong account or password (or an account that may not sign in here).
        Failed = "failed",
        /// Suspended, deleted, or not allowed by state.
        Inactive = "inactive",
        /// A policy rule (or the default) refused it.
        Denied = "denied",
        /// Too many attempts: the account or address is locked for a while.
        Locked = "locked",
        /// The member's own directory could not be asked.
        Unavailable = "unavailable",
    }
}

/// What the log view asks for. Times are inclusive-exclusive; `before` pages back by id.
#[derive(Debug, Clone, Default)]
pub struct LoginFilter {
    pub member: Option<Uuid>,
    /// Attempts by members whose primary unit was then under this unit.
    pub unit: Option<Uuid>,
    pub outcome: Option<Outcome>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub before: Option<i64>,
    pub limit: i64,
}

#[async_trait]
pub trait LoginStore: Send + Sync + 'static {
    /// The default (allow?) and every rule, in order.
    async fn sign_in_policy(&self) -> Result<(bool, Vec<RuleRow>)>;
    /// Adds or replaces a rule, audited in the same transaction.
    async fn sign_in_rule_put(&self, key: &Sealed, rule: &RuleRow, audit: &AuditRecord) -> Result<()>;
    /// Deletes a rule, audited in the same transaction; false when there was none.
    async fn sign_in_rule_delete(&self, key: &Sealed, id: Uuid, audit: &AuditRecord) -> Result<bool>;
    /// Sets the rules' positions to their order in `ids`, audited in the same transaction.
    async fn sign_in_rules_order(&self, key: &Sealed, ids: &[Uuid], audit: &AuditRecord) -> Result<()>;
    async fn sign_in_default_set(
        &self,
        key: &Sealed,
        allow: bool,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> Result<()>;

    /// Logs an attempt (bookkeeping: the log is its own record, not audited twice).
    async fn login_log_insert(&self, entry: &LoginEntry) -> Result<i64>;
    /// Newest first.
    async fn login_log(&self, f: &LoginFilter) -> Result<Vec<LoginEntry>>;
    /// Forgets attempts before `before`; returns how many.
    async fn login_log_purge(&self, before: DateTime<Utc>) -> Result<u64>;
}
