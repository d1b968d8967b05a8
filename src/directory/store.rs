//! The directory's persistence port: the traits its store implements, and the rows they carry.
//!
//! Adapters read through [`DirectoryRead`] (what [`super::DirectoryService::store`] hands out).
//! Writes happen only inside a [`DirectoryTx`], and only [`DirectoryWrite::begin`] opens one; it
//! takes a [`WriteKey`], which only this module can make. So no adapter can write the directory
//! except through [`super::DirectoryService::apply`]: the compiler refuses it. A `DirectoryTx`
//! dropped without `commit` rolls back, so an error or a cancelled task never leaves half a
//! change behind.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{
    self, AuditEntry, AuditRecord, Counts, Enterprise, Group, Member, OrgUnit, OutboxRecord, Reservation,
    Tombstone,
};
use super::query::{Page, Query};

/// Errors of the storage layer. Their text may name tables and constraints: it goes to the log,
/// never into an HTTP body.
#[derive(Debug, Clone, thiserror::Error)]
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

text_enum! {
    /// The objects that carry a version (optimistic concurrency: [`super::Change::ExpectVersion`]).
    pub enum Versioned as "versioned object kind" {
        Member = "member",
        OrgUnit = "org_unit",
        Group = "group",
        Role = "role",
    }
}

/// The two kinds of tree node a source anchors besides members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    OrgUnits,
    Groups,
}

/// Reads of the directory. One method per use case.
#[async_trait]
pub trait DirectoryRead: RecordRead + Send + Sync + 'static {
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
    /// The unit and its ancestors, nearest first (empty when there is no such unit).
    async fn org_unit_ancestors(&self, id: Uuid) -> Result<Vec<Uuid>>;
    async fn group(&self, id: Uuid) -> Result<Option<Group>>;
    async fn group_member_ids(&self, group: Uuid) -> Result<Vec<Uuid>>;
    /// The members of a source with these anchors (whole, e-mails and org units included).
    async fn members_by_anchors(&self, source: &str, anchors: &[String]) -> Result<Vec<Member>>;
    /// Every group a source owns, with its member ids.
    async fn groups_by_source(&self, source: &str) -> Result<Vec<(Group, Vec<Uuid>)>>;

    /// Every member a source owns, by key and digest: one light query, so a sync plans without
    /// loading every member whole.
    async fn member_keys_by_source(&self, source: &str) -> Result<Vec<MemberKey>>;
    async fn member_password_hash(&self, id: Uuid) -> Result<Option<String>>;
    /// The groups a member is in.
    async fn member_group_ids(&self, member: Uuid) -> Result<Vec<Uuid>>;
    /// Every group, and every membership of an active member as `(group, member, account
    /// number)` (the LDAP server's tree).
    async fn groups_all(&self) -> Result<(Vec<Group>, Vec<(Uuid, Uuid, i64)>)>;
    /// Every active member's units (primary and further) as `(unit, account number)`.
    async fn unit_memberships(&self) -> Result<Vec<(Uuid, i64)>>;
    /// A value that changes whenever a member, org unit or group is added, changed (a group's
    /// membership included) or deleted: a few index lookups, for caches of the tree.
    async fn tree_generation(&self) -> Result<String>;
}

/// Reads of what the directory keeps about its members besides their rows: tombstones, account
/// numbers, roles and grants, values kept aside, the audit log.
#[async_trait]
pub trait RecordRead: Send + Sync + 'static {
    async fn tombstone(&self, member_id: Uuid) -> Result<Option<Tombstone>>;
    async fn tombstones_for_number(&self, account_number: i64) -> Result<Vec<Tombstone>>;

    /// The most recently deleted members.
    async fn tombstones_recent(&self, limit: i64) -> Result<Vec<Tombstone>>;
    async fn reservations(&self) -> Result<Vec<Reservation>>;
    /// The highest account number ever handed out (0: none yet).
    async fn number_high_water(&self) -> Result<i64>;
    async fn roles(&self) -> Result<Vec<model::Role>>;
    async fn role(&self, id: Uuid) -> Result<Option<model::Role>>;
    async fn role_grants(&self, role_id: Uuid) -> Result<Vec<model::RoleGrant>>;
    async fn member_grants(&self, member_id: Uuid) -> Result<Vec<model::RoleGrant>>;

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
    /// Audit entries about one object, oldest first.
    async fn audit_for(&self, object_kind: &str, object_id: &str) -> Result<Vec<AuditEntry>>;
    async fn audit_count(&self) -> Result<i64>;
    async fn audit_search(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>>;
}

/// The proof that the caller is the directory core: only this module makes one, so only
/// `directory` can open a write transaction.
pub struct WriteKey(());

impl WriteKey {
    pub(super) fn new() -> WriteKey {
        WriteKey(())
    }
}

/// Opens the directory's write transaction (sealed by [`WriteKey`]).
#[async_trait]
pub trait DirectoryWrite: Send + Sync + 'static {
    /// Starts the one transaction a change set is written in.
    async fn begin(&self, key: WriteKey) -> Result<Box<dyn DirectoryTx>>;
}

/// What [`super::DirectoryService`] holds: reads and the sealed writes.
pub trait DirectoryStore: DirectoryRead + DirectoryWrite {}
impl<T: DirectoryRead + DirectoryWrite + ?Sized> DirectoryStore for T {}

/// One open write transaction. Reads see the transaction's own writes.
#[async_trait]
pub trait DirectoryTx: MemberTx + TreeTx + AccountTx + Send {
    async fn commit(self: Box<Self>) -> Result<()>;
    /// A savepoint before one change set of several in the transaction (group commit).
    async fn mark(&mut self) -> Result<()>;
    /// Keeps what was written since [`Self::mark`].
    async fn release_mark(&mut self) -> Result<()>;
    /// Undoes what was written since [`Self::mark`] and drops the savepoint; the transaction
    /// goes on (on PostgreSQL also after a failed statement).
    async fn rollback_to_mark(&mut self) -> Result<()>;

    /// Appends audit rows (many rows per statement).
    async fn audit_insert(&mut self, entries: &[AuditRecord]) -> Result<()>;
    /// Queues outbox rows (many rows per statement).
    async fn outbox_insert(&mut self, messages: &[OutboxRecord]) -> Result<()>;
    async fn sync_cursor_set(&mut self, source: &str, cursor: &str) -> Result<()>;
    /// The version of a member, org unit, group or role (`None`: no such object).
    async fn version_of(&mut self, kind: Versioned, id: Uuid) -> Result<Option<i64>>;
}

/// Members, their kept-aside values and tombstones, inside the write transaction.
#[async_trait]
pub trait MemberTx: Send {
    async fn member(&mut self, id: Uuid) -> Result<Option<Member>>;
    async fn member_count(&mut self) -> Result<i64>;
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
    /// Ends every console session of the member (or of the super admin when `None`) but `keep`:
    /// a new password was set, or the member was suspended.
    async fn member_sessions_end(&mut self, id: Option<Uuid>, keep: Option<&str>) -> Result<u64>;
    /// Hands a member to another source (explicit adoption).
    async fn member_set_source(&mut self, id: Uuid, source: &str, anchor: Option<&str>) -> Result<()>;
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
    async fn member_id_by_anchor(&mut self, source: &str, anchor: &str) -> Result<Option<Uuid>>;
    async fn member_id_by_number(&mut self, number: i64) -> Result<Option<Uuid>>;
    /// Stores the digests of members that have none ([`MemberKey::digest`]), unless the member
    /// changed since it was read (`version`): a cache of [`Member::digest`], not a change to
    /// the member. Returns how many were stored.
    async fn member_digests_fill(&mut self, members: &[(Uuid, i64, i64)]) -> Result<u64>;
}

/// Org units and groups, inside the write transaction.
#[async_trait]
pub trait TreeTx: Send {
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
    /// `(anchor, id)` of the org units or groups (`tree`) of `source` that hold one of `anchors`.
    async fn anchors_held(
        &mut self,
        tree: Tree,
        source: &str,
        anchors: &[String],
    ) -> Result<Vec<(String, Uuid)>>;
    async fn org_unit_update(&mut self, u: &OrgUnit) -> Result<()>;
    async fn org_unit_delete(&mut self, id: Uuid) -> Result<()>;
    /// Which of `ids` are org units (one query a thousand).
    async fn org_units_existing(&mut self, ids: &[Uuid]) -> Result<Vec<Uuid>>;

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
}

/// The enterprise, account numbers, roles and grants, inside the write transaction.
#[async_trait]
pub trait AccountTx: Send {
    async fn enterprise(&mut self) -> Result<Option<Enterprise>>;
    async fn enterprise_insert(&mut self, e: &Enterprise, password_hash: &str) -> Result<()>;
    async fn enterprise_update(&mut self, e: &Enterprise) -> Result<()>;
    async fn super_password_set(&mut self, hash: &str, must_change: bool) -> Result<()>;

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

    async fn role(&mut self, id: Uuid) -> Result<Option<model::Role>>;
    async fn role_insert(&mut self, r: &model::Role) -> Result<()>;
    async fn role_update(&mut self, r: &model::Role) -> Result<()>;
    async fn role_delete(&mut self, id: Uuid) -> Result<()>;
    async fn grant(&mut self, role_id: Uuid, member_id: Uuid) -> Result<Option<model::RoleGrant>>;
    /// Every grant of a role (to audit them when the role goes).
    async fn grants_of_role(&mut self, role_id: Uuid) -> Result<Vec<model::RoleGrant>>;
    /// Inserts or replaces the grant of a role to a member.
    async fn grant_set(&mut self, g: &model::RoleGrant) -> Result<()>;
    async fn grant_delete(&mut self, role_id: Uuid, member_id: Uuid) -> Result<bool>;
    async fn org_unit_has_grants(&mut self, id: Uuid) -> Result<bool>;
}
