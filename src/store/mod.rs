//! Persistence: the [`Store`] trait and its SQLite and PostgreSQL implementations.
//!
//! The store knows SQL and nothing of the rules: [`crate::directory::DirectoryService`] opens a
//! [`StoreTx`], reads and writes through it, and commits once. A `StoreTx` dropped without
//! `commit` rolls back, so an error or a cancelled task never leaves half a change behind.
//!
//! Both backends run the same SQL text (`$1` placeholders, `WITH RECURSIVE`, `RETURNING` work in
//! both); [`sql`] holds it once and is expanded for each backend, because sqlx's generic bounds
//! over `Database` are too unwieldy to write by hand. Where the dialects differ (connection set-up,
//! migrations, error codes) each backend has its own code.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::sync::Arc;
use uuid::Uuid;

use crate::directory::model::{
    AuditEntry, AuditRecord, Counts, Enterprise, Group, Member, OrgUnit, OutboxMessage, OutboxRecord,
    Reservation, Tombstone,
};
use crate::directory::query::{Page, Query};

#[macro_use]
mod sql;
mod postgres;
mod sqlite;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

/// Errors of the storage layer. Their text may name tables and constraints: it goes to the log,
/// never into an HTTP body.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint refused a write; the key is `<table>_<columns>` (same on both backends).
    #[error("unique constraint {0} violated")]
    Unique(String),
    #[error("the database is read-only ({0}); check the permissions of the database file and its directory")]
    ReadOnly(String),
    #[error("the disk is full: {0}")]
    DiskFull(String),
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Other(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// An API token as listed (the secret itself is never stored).
/// A member of a source, as a sync plan needs it before it knows which members changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberKey {
    pub id: Uuid,
    pub anchor: Option<String>,
    pub login_name: String,
    /// [`Member::digest`] as stored with the member's last write (`members.sync_digest`);
    /// `None` when unknown (compare the member whole).
    pub digest: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct TokenInfo {
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The client may take over members that another source created, matching by userName.
    pub adopt_existing: bool,
    /// When its secret was last replaced ([`StoreTx::token_rotate`]).
    pub rotated_at: Option<DateTime<Utc>>,
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

/// A member's value kept aside because another member holds it (duplicate-attribute
/// resiliency): the member exists without it until the conflict is gone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct Quarantined {
    pub member_id: Uuid,
    pub login_name: String,
    /// `mobile` or `email`.
    pub field: String,
    pub value: String,
    /// The source that sent the value.
    pub source: String,
    pub since: DateTime<Utc>,
}

/// Failed sign-ins under one key (`login:<name>`, `ip:<address>`) in the current window.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SignInFailures {
    pub key: String,
    pub failures: i64,
    pub window_start: DateTime<Utc>,
    pub locked_until: Option<DateTime<Utc>>,
}

/// Which audit rows to list, newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// The actor, exactly.
    pub actor: Option<String>,
    /// The action, or its start (`member.` lists every member action).
    pub action: Option<String>,
    pub object_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Rows older than this id (the next page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// One message to one recipient on one channel (see `crate::delivery`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    /// The outbox event it came from, if any.
    pub event_id: Option<Uuid>,
    /// `email` or `sms`.
    pub channel: String,
    /// The template: `welcome`, `suspended`, `deleted`, `password_code`, `broadcast`, `test`, `low_balance`.
    pub kind: String,
    pub recipient: String,
    pub member_id: Option<Uuid>,
    /// Template parameters (and `language`).
    #[sqlx(json)]
    pub params: serde_json::Value,
    /// Sent along to the provider; a receiver de-duplicates on it.
    pub idempotency_key: String,
    /// `pending`, `sent`, `held` (waits for something, e.g. SMS balance; see `last_error`), `dead`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub provider_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    /// SMS segments taken from the balance for this message and not yet charged or given back.
    pub reserved: i64,
    /// The broadcast it is part of.
    pub broadcast_id: Option<Uuid>,
}

/// A member's company mailbox, as pushed to the mail system (see `crate::delivery::mailbox`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct MailboxBinding {
    pub member_id: Uuid,
    pub address: String,
    pub display_name: String,
    /// Whether the mail system should have it enabled (suspended and deleted members: no).
    pub active: bool,
    /// `pending` (to push), `pushed`, `disabled` (pushed as disabled), `failed` (retried at
    /// `next_attempt_at`, see `last_error`).
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// The mail system's id for it.
    pub remote_id: Option<String>,
    pub pushed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// An admin's message to everybody or to org subtrees.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct Broadcast {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub title: String,
    pub text: String,
    /// Also as SMS.
    pub sms: bool,
    /// Org units whose subtrees receive it; empty: everybody.
    #[sqlx(json)]
    pub scope: Vec<Uuid>,
    /// Active members reached.
    pub recipients: i64,
}

/// An active member as a broadcast addresses them.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Recipient {
    pub id: Uuid,
    pub account_number: i64,
    pub login_name: String,
    pub display_name: String,
    pub mobile: Option<String>,
    /// The primary (else first) e-mail address.
    pub email: Option<String>,
}

/// A message the provider accepted, to be recorded (see [`Store::deliveries_sent`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    pub id: Uuid,
    pub provider_id: Option<String>,
    /// For an SMS: the recipient and the segments charged.
    pub sms: Option<(String, i64)>,
}

/// One line of the SMS account's ledger.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct SmsLedgerEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    /// `charge` or `top_up`.
    pub entry: String,
    pub amount: i64,
    pub balance_after: i64,
    pub delivery_id: Option<Uuid>,
    pub recipient: Option<String>,
    pub segments: Option<i64>,
    pub provider_id: Option<String>,
    pub actor: String,
    pub note: Option<String>,
}

/// One sync run as recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct SyncRun {
    pub id: i64,
    pub source: String,
    /// `cli`, `schedule:incremental`, `schedule:full`, `approve:<run id>`.
    pub trigger: String,
    pub full_read: bool,
    pub dry_run: bool,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `running`, `applied`, `held`, `failed`, `dry_run`, `approved`.
    pub status: String,
    #[sqlx(json)]
    pub counts: serde_json::Value,
    #[sqlx(json)]
    pub errors: serde_json::Value,
    pub message: String,
}

/// State of the schema compared with the migrations built into this binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaState {
    Current,
    /// Some built-in migrations are not applied yet.
    Behind,
    /// The database has migrations this binary does not know (a newer rosterd ran).
    Ahead,
}

/// Read access and transactions. One method per use case.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;
    /// Applies pending migrations.
    async fn migrate(&self) -> Result<()>;
    async fn schema_state(&self) -> Result<SchemaState>;
    /// A cheap round trip to the database.
    async fn ping(&self) -> Result<()>;
    /// Proves the store takes writes (a write that is rolled back): a read-only file or a
    /// standby server fails here, at start, rather than at the first change.
    async fn probe_write(&self) -> Result<()>;
    /// Closes the connections (SQLite then checkpoints and removes its WAL file).
    async fn close(&self);
    /// Starts the one transaction a change set is written in.
    async fn begin(&self) -> Result<Box<dyn StoreTx>>;

    async fn enterprise(&self) -> Result<Option<Enterprise>>;
    async fn super_password_hash(&self) -> Result<Option<String>>;
    async fn counts(&self) -> Result<Counts>;

    async fn member(&self, id: Uuid) -> Result<Option<Member>>;
    async fn member_by_login(&self, login_name: &str) -> Result<Option<Member>>;
    async fn member_by_number(&self, account_number: i64) -> Result<Option<Member>>;
    /// Members ordered by account number, after `after_number`, at most `limit`.
    async fn members_page(&self, after_number: i64, limit: i64) -> Result<Vec<Member>>;
    /// Members matching a query, in the query's order.
    async fn search_members(&self, q: &Query) -> Result<Page<Member>>;
    async fn search_groups(&self, q: &Query) -> Result<Page<Group>>;
    async fn org_unit(&self, id: Uuid) -> Result<Option<OrgUnit>>;
    /// Every org unit, parents before children are not guaranteed; ordered by creation.
    async fn org_units_all(&self) -> Result<Vec<OrgUnit>>;
    /// Children of `parent` (roots for `None`) in sibling order.
    async fn org_unit_children(&self, parent: Option<Uuid>) -> Result<Vec<OrgUnit>>;
    async fn group(&self, id: Uuid) -> Result<Option<Group>>;
    async fn group_member_ids(&self, group: Uuid) -> Result<Vec<Uuid>>;
    async fn tombstone(&self, member_id: Uuid) -> Result<Option<Tombstone>>;
    async fn tombstones_for_number(&self, account_number: i64) -> Result<Vec<Tombstone>>;
    async fn reservations(&self) -> Result<Vec<Reservation>>;
    /// Audit entries about one object, oldest first.
    async fn audit_for(&self, object_kind: &str, object_id: &str) -> Result<Vec<AuditEntry>>;
    async fn audit_count(&self) -> Result<i64>;
    async fn outbox_pending(&self, limit: i64) -> Result<Vec<OutboxMessage>>;

    async fn tokens(&self) -> Result<Vec<TokenInfo>>;

    /// Every member a source owns, by key and digest: one light query, so a sync plans without
    /// loading every member whole.
    async fn member_keys_by_source(&self, source: &str) -> Result<Vec<MemberKey>>;
    /// Stores the digests of members that have none ([`MemberKey::digest`]), unless the member
    /// changed since it was read (`version`): a cache of [`Member::digest`], not a change to
    /// the member. Returns how many were stored.
    async fn member_digests_fill(&self, members: &[(Uuid, i64, i64)]) -> Result<u64>;
    /// The members of a source with these anchors (whole, e-mails and org units included).
    async fn members_by_anchors(&self, source: &str, anchors: &[String]) -> Result<Vec<Member>>;
    /// Every group a source owns, with its member ids.
    async fn groups_by_source(&self, source: &str) -> Result<Vec<(Group, Vec<Uuid>)>>;

    /// Records the start of a sync run; returns its id.
    async fn run_start(&self, source: &str, trigger: &str, full_read: bool, dry_run: bool) -> Result<i64>;
    async fn run_finish(
        &self,
        id: i64,
        status: &str,
        counts: &serde_json::Value,
        errors: &serde_json::Value,
        message: &str,
    ) -> Result<()>;
    async fn run(&self, id: i64) -> Result<Option<SyncRun>>;
    /// Keeps a run's plan (its steps as lines) for the console.
    async fn run_set_plan(&self, id: i64, plan: &[String]) -> Result<()>;
    async fn run_plan(&self, id: i64) -> Result<Vec<String>>;
    /// The most recent runs, newest first.
    async fn runs_recent(&self, limit: i64) -> Result<Vec<SyncRun>>;
    /// Takes (or renews) the lease on `source` for `holder` until `until`; false when another
    /// holder's lease is still live.
    async fn lease_acquire(&self, source: &str, holder: &str, until: DateTime<Utc>) -> Result<bool>;
    async fn lease_release(&self, source: &str, holder: &str) -> Result<()>;
    /// Where the source's next incremental read resumes.
    async fn sync_cursor(&self, source: &str) -> Result<Option<String>>;
    /// The live (not revoked) token with this hash; records its use.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>>;

    // Delivery (bookkeeping of the outbox's consumers; the directory is not touched).
    /// Inserts messages (skipping idempotency keys already present) and marks the outbox events
    /// they came from done, in one transaction. Returns how many messages were new.
    async fn deliveries_enqueue(
        &self,
        events_done: &[Uuid],
        messages: &[Delivery],
        bindings: &[MailboxBinding],
    ) -> Result<u64>;
    /// Claims up to `limit` bindings to push (pending, or failed and due).
    async fn mailbox_claim(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<MailboxBinding>>;
    async fn mailbox_pushed(
        &self,
        member_id: Uuid,
        holder: &str,
        remote_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()>;
    async fn mailbox_failed(
        &self,
        member_id: Uuid,
        holder: &str,
        error: &str,
        next: DateTime<Utc>,
    ) -> Result<()>;
    /// Every binding pushed again (the full reconcile).
    async fn mailbox_reconcile(&self, at: DateTime<Utc>) -> Result<u64>;
    async fn mailbox_bindings(&self, state: Option<&str>, limit: i64) -> Result<Vec<MailboxBinding>>;
    /// Claims up to `limit` due pending messages for `holder` until `until`.
    async fn deliveries_claim(
        &self,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<Delivery>>;
    /// Records messages as sent, with a ledger line for each SMS (whose segments
    /// [`Store::sms_reserve`] took), those that `holder` still holds, in one transaction.
    /// Returns the SMS balance when it just fell below `low_balance` (once until a top-up).
    async fn deliveries_sent(
        &self,
        holder: &str,
        sent: &[Sent],
        at: DateTime<Utc>,
        low_balance: i64,
    ) -> Result<Option<i64>>;
    /// Records a failed attempt: pending again at `next`, or `dead` when `next` is `None`.
    async fn delivery_failed(
        &self,
        id: Uuid,
        holder: &str,
        error: &str,
        next: Option<DateTime<Utc>>,
    ) -> Result<()>;
    /// Puts a message back without counting an attempt: pending at `at` (quiet hours), or
    /// `held` when `at` is `None` (no SMS balance), with the reason.
    async fn delivery_defer(
        &self,
        id: Uuid,
        holder: &str,
        reason: &str,
        at: Option<DateTime<Utc>>,
    ) -> Result<()>;
    async fn deliveries_list(&self, state: Option<&str>, limit: i64) -> Result<Vec<Delivery>>;
    /// `(channel, state, count)`.
    async fn delivery_counts(&self) -> Result<Vec<(String, String, i64)>>;
    async fn sms_balance(&self) -> Result<i64>;
    /// Takes `segments` from the balance for the SMS `id` before it is sent, if the balance has
    /// them (atomically, so nodes sending at once never overdraw), and notes them on the
    /// message, so that a node that crashed mid-send leaves them with it for the next attempt.
    /// Returns the balance left.
    async fn sms_reserve(&self, id: Uuid, holder: &str, segments: i64) -> Result<Option<i64>>;
    /// Gives back what [`Store::sms_reserve`] took for an SMS that was not sent.
    async fn sms_refund(&self, id: Uuid) -> Result<()>;
    /// [`Store::sms_reserve`] for many messages at once, all or none (false: not enough balance
    /// for all of them; then nothing was taken).
    async fn sms_reserve_many(&self, holder: &str, items: &[(Uuid, i64)]) -> Result<bool>;
    async fn sms_ledger(&self, limit: i64) -> Result<Vec<SmsLedgerEntry>>;
    async fn broadcast(&self, id: Uuid) -> Result<Option<Broadcast>>;
    async fn broadcasts(&self, limit: i64) -> Result<Vec<Broadcast>>;
    /// A broadcast's messages by `(channel, state, count)`.
    async fn broadcast_progress(&self, id: Uuid) -> Result<Vec<(String, String, i64)>>;

    /// The values kept aside for a member ([`Quarantined`]).
    async fn member_quarantine(&self, member_id: Uuid) -> Result<Vec<Quarantined>>;
    /// The values kept aside for members of `source` (every source when `None`) since `since`,
    /// oldest first.
    async fn quarantined(
        &self,
        source: Option<&str>,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> Result<Vec<Quarantined>>;
    /// `(field, count)` of the values kept aside.
    async fn quarantine_counts(&self) -> Result<Vec<(String, i64)>>;
    /// How many values are kept aside for members of `source`.
    async fn quarantine_counts_for(&self, source: &str) -> Result<i64>;

    /// The most recently deleted members.
    async fn tombstones_recent(&self, limit: i64) -> Result<Vec<Tombstone>>;
    /// The highest account number ever handed out (0: none yet).
    async fn number_high_water(&self) -> Result<i64>;
    async fn roles(&self) -> Result<Vec<crate::directory::model::Role>>;
    async fn role(&self, id: Uuid) -> Result<Option<crate::directory::model::Role>>;
    async fn role_grants(&self, role_id: Uuid) -> Result<Vec<crate::directory::model::RoleGrant>>;
    async fn member_grants(&self, member_id: Uuid) -> Result<Vec<crate::directory::model::RoleGrant>>;
    /// The unit and its ancestors, nearest first (empty when there is no such unit).
    async fn org_unit_ancestors(&self, id: Uuid) -> Result<Vec<Uuid>>;
    async fn member_password_hash(&self, id: Uuid) -> Result<Option<String>>;
    async fn audit_search(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>>;
    /// Console sessions and sign-in failures: bookkeeping, like token use times.
    async fn session_insert(&self, s: &AdminSession) -> Result<()>;
    async fn session(&self, id_hash: &str) -> Result<Option<AdminSession>>;
    async fn session_touch(&self, id_hash: &str, seen: DateTime<Utc>, expires: DateTime<Utc>) -> Result<()>;
    async fn session_delete(&self, id_hash: &str) -> Result<()>;
    /// Ends every session of a member (or of the super admin when `None`), but `keep`.
    async fn sessions_end(&self, member_id: Option<Uuid>, keep: Option<&str>) -> Result<u64>;
    async fn sessions_purge(&self, before: DateTime<Utc>) -> Result<u64>;
    async fn sign_in_failures(&self, key: &str) -> Result<Option<SignInFailures>>;
    /// Counts one more failure under `key` (starting a new window at `now` when the current one
    /// began before `window_from`), in one statement; returns the failures in the window.
    async fn sign_in_failure_add(
        &self,
        key: &str,
        now: DateTime<Utc>,
        window_from: DateTime<Utc>,
    ) -> Result<i64>;
    /// Takes back one attempt counted under `key` (it succeeded, or was never evaluated).
    async fn sign_in_failure_undo(&self, key: &str) -> Result<()>;
    async fn sign_in_lock(&self, key: &str, until: DateTime<Utc>) -> Result<()>;
    async fn sign_in_failures_clear(&self, key: &str) -> Result<()>;
    /// Forgets failures whose window began before `before` and that lock nothing.
    async fn sign_in_failures_purge(&self, before: DateTime<Utc>) -> Result<u64>;
}

/// One open transaction. Reads see the transaction's own writes.
#[async_trait]
pub trait StoreTx: Send {
    async fn commit(self: Box<Self>) -> Result<()>;

    async fn enterprise(&mut self) -> Result<Option<Enterprise>>;
    async fn enterprise_insert(&mut self, e: &Enterprise, password_hash: &str) -> Result<()>;
    async fn enterprise_update(&mut self, e: &Enterprise) -> Result<()>;
    async fn super_password_set(&mut self, hash: &str, must_change: bool) -> Result<()>;

    async fn org_unit(&mut self, id: Uuid) -> Result<Option<OrgUnit>>;
    async fn org_unit_by_anchor(&mut self, source: &str, anchor: &str) -> Result<Option<Uuid>>;
    async fn org_unit_sibling_named(&mut self, parent: Option<Uuid>, name: &str) -> Result<Option<Uuid>>;
    /// `id` and all its ancestors up to the root.
    async fn org_unit_path(&mut self, id: Uuid) -> Result<Vec<Uuid>>;
    async fn org_unit_next_position(&mut self, parent: Option<Uuid>) -> Result<i64>;
    async fn org_unit_has_children(&mut self, id: Uuid) -> Result<bool>;
    async fn org_unit_has_members(&mut self, id: Uuid) -> Result<bool>;
    /// Inserts org units in multi-row statements; a parent comes before its children.
    async fn org_units_insert(&mut self, us: &[OrgUnit]) -> Result<()>;
    /// `(parent, name, position)` of every child of `parents` (`None`: the root units).
    async fn org_units_children(
        &mut self,
        parents: &[Option<Uuid>],
    ) -> Result<Vec<(Option<Uuid>, String, i64)>>;
    /// `(anchor, id)` of the org units (`groups` false) or groups (`true`) of `source` that
    /// hold one of `anchors`.
    async fn anchors_held(
        &mut self,
        groups: bool,
        source: &str,
        anchors: &[String],
    ) -> Result<Vec<(String, Uuid)>>;
    async fn org_unit_update(&mut self, u: &OrgUnit) -> Result<()>;
    async fn org_unit_delete(&mut self, id: Uuid) -> Result<()>;

    async fn member(&mut self, id: Uuid) -> Result<Option<Member>>;
    async fn member_id_by_login(&mut self, login_name: &str) -> Result<Option<Uuid>>;
    async fn member_id_by_email(&mut self, address: &str) -> Result<Option<Uuid>>;
    async fn member_id_by_mobile(&mut self, mobile: &str) -> Result<Option<Uuid>>;
    async fn member_id_by_anchor(&mut self, source: &str, anchor: &str) -> Result<Option<Uuid>>;
    async fn member_id_by_number(&mut self, number: i64) -> Result<Option<Uuid>>;
    async fn member_count(&mut self) -> Result<i64>;
    /// Active members in the subtrees of `units` (everybody when empty).
    async fn broadcast_recipients(&mut self, units: &[Uuid]) -> Result<Vec<Recipient>>;
    /// Records a broadcast and queues its messages (many rows per statement).
    async fn broadcast_insert(&mut self, b: &Broadcast, messages: &[Delivery]) -> Result<()>;
    /// The first of the member's unique values that another member already holds, as
    /// `(field, value)`: login name, an e-mail, the mobile, or the anchor in its source. One
    /// query for all of them.
    async fn member_conflict(&mut self, m: &Member) -> Result<Option<(String, String)>>;
    /// For new members: every unique value of theirs that another member already holds, as
    /// `(field, value)` with field `login_name`, `email`, `mobile` or `anchor` (within each
    /// member's source), and which of `ids` (chosen by the caller, not generated) a member or a
    /// tombstone already has (field `id`). A few queries for any number of members.
    async fn members_conflicts(&mut self, ms: &[Member], ids: &[Uuid]) -> Result<Vec<(String, String)>>;
    /// Inserts new members with their e-mails and further org units, each with its password
    /// hash, in multi-row statements.
    async fn members_insert(&mut self, ms: &[Member], password_hashes: &[Option<String>]) -> Result<()>;
    /// Sets (or with `None` clears) a member's console password hash, with the source that set it.
    async fn member_set_password(
        &mut self,
        id: Uuid,
        password_hash: Option<&str>,
        set_by: Option<&str>,
    ) -> Result<()>;
    /// When the member has a console password: the source that set it last (`""`: unknown).
    async fn member_password_set_by(&mut self, id: Uuid) -> Result<Option<String>>;
    /// Whether the member holds any role.
    async fn member_holds_role(&mut self, id: Uuid) -> Result<bool>;
    /// Ends every console session of the member (a new password was set) but `keep`.
    async fn member_sessions_end(&mut self, id: Uuid, keep: Option<&str>) -> Result<u64>;
    /// Hands a member to another source (explicit adoption).
    async fn member_set_source(&mut self, id: Uuid, source: &str, anchor: Option<&str>) -> Result<()>;
    /// Which of `ids` are org units (one query a thousand).
    async fn org_units_existing(&mut self, ids: &[Uuid]) -> Result<Vec<Uuid>>;
    /// Which of `ids` are members (one query, for large group changes).
    async fn members_existing(&mut self, ids: &[Uuid]) -> Result<Vec<Uuid>>;
    /// Rewrites the member's row, e-mails and further org units.
    async fn member_update(&mut self, m: &Member) -> Result<()>;
    /// Removes the member and its group memberships; clears it as manager and group owner.
    async fn member_delete(&mut self, id: Uuid) -> Result<()>;
    async fn tombstone_insert(&mut self, t: &Tombstone) -> Result<()>;
    /// The member that has waited longest for `value` in `field` (kept aside), if any.
    async fn quarantine_waiting(&mut self, field: &str, value: &str) -> Result<Option<Uuid>>;
    /// Forgets one value kept aside for a member (it was stored).
    async fn quarantine_release(&mut self, member_id: Uuid, field: &str, value: &str) -> Result<()>;
    /// Locks the member's row until the transaction ends (PostgreSQL; SQLite's single writer
    /// already serialises), so that checks and writes about it in two transactions cannot
    /// interleave.
    async fn member_lock(&mut self, id: Uuid) -> Result<()>;
    /// Sets the values kept aside for a member in the `fields` a write carried: those in
    /// `entries` (`(field, value)`) are kept (their `since` unchanged when already there), every
    /// other one of those fields is released.
    async fn quarantine_set(
        &mut self,
        member_id: Uuid,
        fields: &[&str],
        entries: &[(String, String)],
        source: &str,
        at: DateTime<Utc>,
    ) -> Result<u64>;

    /// The next number after the highest ever issued, within `first..=last`; `None` when the
    /// block is used up. Serialises concurrent allocators (a row lock / the single writer).
    async fn number_next_fresh(&mut self, first: i64, last: i64) -> Result<Option<i64>>;
    async fn number_reserved(&mut self, number: i64) -> Result<bool>;
    /// Advances the counter by up to `count` within `first..=last` and returns the numbers taken
    /// (`from..=to`); `None` when the block is used up. Holds the counter's lock like
    /// [`number_next_fresh`](Self::number_next_fresh).
    async fn number_take_block(&mut self, first: i64, last: i64, count: i64) -> Result<Option<(i64, i64)>>;
    /// Whether no number above the highest ever issued is held, reserved or in quarantine.
    async fn numbers_clear_above_high_water(&mut self) -> Result<bool>;
    /// Whether `number` is held by a member, reserved, or in quarantine.
    async fn number_taken(&mut self, number: i64) -> Result<bool>;
    async fn number_reserve(&mut self, r: &Reservation) -> Result<()>;
    async fn number_unreserve(&mut self, number: i64) -> Result<bool>;
    /// Puts a released number in quarantine.
    async fn number_release(&mut self, number: i64, at: DateTime<Utc>) -> Result<()>;
    /// When `number` was released, if it is in quarantine.
    async fn number_released_at(&mut self, number: i64) -> Result<Option<DateTime<Utc>>>;
    /// The lowest quarantined number released at or before `before` that is not reserved.
    async fn number_reusable(&mut self, before: DateTime<Utc>) -> Result<Option<i64>>;
    async fn number_unrelease(&mut self, number: i64) -> Result<()>;

    async fn group(&mut self, id: Uuid) -> Result<Option<Group>>;
    async fn group_id_by_anchor(&mut self, source: &str, anchor: &str) -> Result<Option<Uuid>>;
    /// Inserts groups with their members in multi-row statements.
    async fn groups_insert(&mut self, gs: &[(Group, Vec<Uuid>)]) -> Result<()>;
    async fn group_update(&mut self, g: &Group) -> Result<()>;
    /// Bumps a group's version after a membership change, without rewriting its members.
    async fn group_touch(&mut self, id: Uuid, at: DateTime<Utc>) -> Result<()>;
    async fn group_delete(&mut self, id: Uuid) -> Result<()>;
    /// Adds members; returns how many were not members before.
    async fn group_members_add(&mut self, group: Uuid, members: &[Uuid]) -> Result<u64>;
    /// Removes members; returns how many were members.
    async fn group_members_remove(&mut self, group: Uuid, members: &[Uuid]) -> Result<u64>;

    /// Appends audit rows (many rows per statement).
    async fn audit_insert(&mut self, entries: &[AuditRecord]) -> Result<()>;
    async fn sync_cursor_set(&mut self, source: &str, cursor: &str) -> Result<()>;
    /// Queues outbox rows (many rows per statement).
    async fn outbox_insert(&mut self, messages: &[OutboxRecord]) -> Result<()>;
    /// Adds to the SMS balance with a ledger line; held SMS become pending again. Returns the
    /// new balance.
    async fn sms_top_up(
        &mut self,
        amount: i64,
        actor: &str,
        note: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<i64>;

    async fn token_insert(
        &mut self,
        name: &str,
        hash: &str,
        adopt_existing: bool,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// A dead or held message pending again, attempts reset. False when there is no such message.
    async fn delivery_retry(&mut self, id: Uuid, at: DateTime<Utc>) -> Result<bool>;
    /// Deletes sent and dead messages finished before `before`.
    async fn deliveries_purge(&mut self, before: DateTime<Utc>) -> Result<u64>;
    /// Replaces the secret of the token `name` (live or revoked; a revoked one is live again);
    /// false when there is no token of that name.
    async fn token_rotate(&mut self, name: &str, hash: &str, at: DateTime<Utc>) -> Result<bool>;
    /// Marks the live token `name` revoked; false when there is none.
    async fn token_revoke(&mut self, name: &str, at: DateTime<Utc>) -> Result<bool>;

    async fn role(&mut self, id: Uuid) -> Result<Option<crate::directory::model::Role>>;
    async fn role_insert(&mut self, r: &crate::directory::model::Role) -> Result<()>;
    async fn role_update(&mut self, r: &crate::directory::model::Role) -> Result<()>;
    async fn role_delete(&mut self, id: Uuid) -> Result<()>;
    async fn grant(
        &mut self,
        role_id: Uuid,
        member_id: Uuid,
    ) -> Result<Option<crate::directory::model::RoleGrant>>;
    /// Every grant of a role (to audit them when the role goes).
    async fn grants_of_role(&mut self, role_id: Uuid) -> Result<Vec<crate::directory::model::RoleGrant>>;
    /// Inserts or replaces the grant of a role to a member.
    async fn grant_set(&mut self, g: &crate::directory::model::RoleGrant) -> Result<()>;
    async fn grant_delete(&mut self, role_id: Uuid, member_id: Uuid) -> Result<bool>;
    async fn org_unit_has_grants(&mut self, id: Uuid) -> Result<bool>;
    /// The version of a member, org unit, group or role (`None`: no such object).
    async fn version_of(&mut self, kind: &str, id: Uuid) -> Result<Option<i64>>;
}

/// A member's ordered contact value as its table keeps it: `(member, position, value, kind,
/// primary)`, an e-mail address or a phone number.
pub(crate) type Listed<'a> = (Uuid, i64, &'a str, &'a str, bool);

/// The e-mail and phone rows of members, for the backends' multi-row inserts.
pub(crate) fn listed_children<'a>(ms: &[&'a Member]) -> (Vec<Listed<'a>>, Vec<Listed<'a>>) {
    let emails = ms
        .iter()
        .flat_map(|mb| {
            mb.emails
                .iter()
                .enumerate()
                .map(|(i, e)| (mb.id, i as i64, e.address.as_str(), e.kind.as_str(), e.primary))
        })
        .collect();
    let phones = ms
        .iter()
        .flat_map(|mb| {
            mb.phones
                .iter()
                .enumerate()
                .map(|(i, p)| (mb.id, i as i64, p.number.as_str(), p.kind.as_str(), p.primary))
        })
        .collect();
    (emails, phones)
}

/// Opens the store a `database.url` names, creating an SQLite file (and its directory) on first
/// use. Does not migrate.
pub async fn open(cfg: &crate::config::DatabaseConfig) -> Result<Arc<dyn Store>> {
    let url = cfg.url.as_str();
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(cfg).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::open(cfg).await?))
    } else {
        Err(StoreError::Other("database.url must start with sqlite: or postgres://".into()))
    }
}

/// Maps a sqlx error to a [`StoreError`]; each backend supplies how to read its error codes.
pub(crate) fn classify(
    err: sqlx::Error,
    db_kind: fn(&dyn sqlx::error::DatabaseError) -> Option<StoreError>,
) -> StoreError {
    match err {
        sqlx::Error::Database(db) => {
            db_kind(db.as_ref()).unwrap_or_else(|| StoreError::Other(db.message().to_owned()))
        }
        sqlx::Error::Io(e) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => StoreError::Unavailable(err.to_string()),
        sqlx::Error::Tls(e) => StoreError::Unavailable(e.to_string()),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(err.to_string())
        }
        other => StoreError::Other(other.to_string()),
    }
}

/// Compares the applied migration versions with the ones built in.
pub(crate) fn schema_state(
    migrator: &sqlx::migrate::Migrator,
    applied: impl Iterator<Item = i64>,
) -> SchemaState {
    let known: std::collections::BTreeSet<i64> = migrator.iter().map(|m| m.version).collect();
    let applied: std::collections::BTreeSet<i64> = applied.collect();
    if applied.iter().any(|v| !known.contains(v)) {
        SchemaState::Ahead
    } else if known.iter().any(|v| !applied.contains(v)) {
        SchemaState::Behind
    } else {
        SchemaState::Current
    }
}
