//! The archive's persistence: groups, conversations, messages with their parties and search
//! terms, attachment blobs, exports, retention rules and holds.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::directory::model::AuditRecord;
use crate::directory::store::Result;

/// The proof that the caller is `archive` itself: the archive's writes take one, and only this
/// module makes it, so they are reachable only through [`super::Archive`].
pub struct Sealed(());

impl Sealed {
    pub(super) fn new() -> Sealed {
        Sealed(())
    }
}

/// A group as an ingest names it, with the owner the archive decided on.
#[derive(Debug, Clone)]
pub struct GroupIn {
    pub ext_id: String,
    pub name: Option<String>,
    pub owner_member: Option<Uuid>,
    pub owner_external: Option<String>,
    /// Kept: the owner is an employee.
    pub kept: bool,
    /// The owner was named by the sender (it replaces a stored one); otherwise a stored group
    /// keeps what it has.
    pub explicit: bool,
}

/// A conversation as an ingest names it (see the `key` column in the migration).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConversationIn {
    pub kind: ConversationKind,
    pub key: String,
    pub group_id: Option<i64>,
}

text_enum! {
    pub enum ConversationKind as "conversation kind" {
        Direct = "direct",
        Group = "group",
    }
}

/// A message to store; `conversation` indexes the batch's conversations.
#[derive(Debug, Clone)]
pub struct MessageIn {
    pub ext_id: String,
    pub conversation: usize,
    pub sender_member: Option<Uuid>,
    pub sender_external: Option<String>,
    /// Microseconds since the Unix epoch.
    pub sent_at: i64,
    pub kind: String,
    pub body: String,
    /// JSON array of attachments.
    pub attachments: String,
    /// Search terms ([`super::grams::message_terms`]).
    pub terms: Vec<i64>,
    /// The member identities it belongs to.
    pub parties: Vec<Uuid>,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct MessageRow {
    pub id: i64,
    pub source: String,
    pub ext_id: String,
    pub conversation: i64,
    pub sender_member: Option<Uuid>,
    pub sender_external: Option<String>,
    pub sent_at: i64,
    pub kind: String,
    pub body: String,
    pub attachments: String,
}

/// A conversation with what a list of them shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ConversationRow {
    pub id: i64,
    pub source: String,
    #[sqlx(try_from = "String")]
    pub kind: ConversationKind,
    pub key: String,
    pub group_id: Option<i64>,
    pub group_name: Option<String>,
    pub group_ext_id: Option<String>,
    pub messages: i64,
    pub first_at: Option<i64>,
    pub last_at: Option<i64>,
}

/// A group the archive has seen.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct GroupRow {
    pub id: i64,
    pub source: String,
    pub ext_id: String,
    pub name: Option<String>,
    pub owner_member: Option<Uuid>,
    pub owner_external: Option<String>,
    pub kept: bool,
    pub conversation: Option<i64>,
    pub messages: i64,
}

/// What a search asks for. Everything is optional; `terms` are the query's
/// ([`super::grams::query_terms`]): the store returns the messages holding all of them, and
/// the caller checks the text itself.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub member: Option<Uuid>,
    pub conversation: Option<i64>,
    /// Direct conversations with this party key (`m:<uuid>` or `x:<address>`) on either side.
    pub counterpart: Option<String>,
    pub group: Option<i64>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub kind: Option<String>,
    pub terms: Vec<i64>,
    /// Only messages with a member party whose primary unit is under one of these.
    pub units: Option<Vec<Uuid>>,
    /// Only messages of this source.
    pub source: Option<String>,
    /// Exclusive position `(sent_at, id)`; with `before`, the page ends there (newest first
    /// from the store), otherwise it starts after it.
    pub cursor: Option<(i64, i64)>,
    pub before: bool,
    pub limit: i64,
}

/// A stored attachment.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Blob {
    pub sha256: String,
    pub mime: String,
    pub size: i64,
    pub bytes: Vec<u8>,
}

/// An export job and its progress.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct ExportRow {
    pub id: Uuid,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    /// JSON: the filter it exports.
    pub scope: String,
    pub format: String,
    pub state: String,
    pub total: i64,
    pub done: i64,
    pub file: Option<String>,
    pub size: Option<i64>,
    pub sha256: Option<String>,
    pub manifest: Option<String>,
    pub error: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Retention for an org subtree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct RetentionRow {
    pub unit_id: Uuid,
    pub days: i64,
    pub set_by: String,
    pub set_at: DateTime<Utc>,
}

/// A legal hold on a member or a unit.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct HoldRow {
    pub id: Uuid,
    pub target_kind: String,
    pub target_id: Uuid,
    pub reason: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub released_at: Option<DateTime<Utc>>,
}

/// How a party string resolved: `(what was asked, member)`. Numbers are asked as their digits.
pub type Resolved = (String, Uuid);

/// The archive's store: its records ([`ArchiveRecords`]) and their upkeep ([`ArchiveUpkeep`]).
pub trait ArchiveStore: ArchiveRecords + ArchiveUpkeep {}
impl<T: ArchiveRecords + ArchiveUpkeep> ArchiveStore for T {}

/// Records: ingest, reads, attachments, and the audit rows of views.
#[async_trait]
pub trait ArchiveRecords: Send + Sync + 'static {
    /// The current members named by these account numbers, login names and e-mail addresses
    /// (folded to lower case); each found key once.
    async fn archive_resolve(
        &self,
        numbers: &[i64],
        logins: &[String],
        emails: &[String],
    ) -> Result<Vec<Resolved>>;
    /// Stores the groups not yet known (updating the owner of those named `explicit`), and
    /// returns each one's `(id, kept)` in order.
    async fn archive_groups_ensure(
        &self,
        key: &Sealed,
        source: &str,
        groups: &[GroupIn],
        at: DateTime<Utc>,
    ) -> Result<Vec<(i64, bool)>>;
    /// Stores a batch in one transaction with its audit row (made from the result): the conversations (created when
    /// new), then each message unless its source already has its id. Returns, in order, whether
    /// each message was stored (false: a duplicate).
    async fn archive_ingest(
        &self,
        key: &Sealed,
        source: &str,
        conversations: &[ConversationIn],
        messages: &[MessageIn],
        ingested_at: i64,
        audit: &(dyn for<'s> Fn(&'s [bool]) -> AuditRecord + Send + Sync),
    ) -> Result<Vec<bool>>;
    /// One page of messages in `(sent_at, id)` order (newest first when `before`).
    async fn archive_messages(&self, f: &MessageFilter) -> Result<Vec<MessageRow>>;
    /// How many messages match (terms as candidates, no text check).
    async fn archive_count(&self, f: &MessageFilter) -> Result<i64>;
    /// Ids of messages whose text is `LIKE '%pattern%'` (lower-cased on both sides), in id
    /// order: the oracle the search is tested and measured against.
    async fn archive_like(&self, pattern: &str, limit: i64) -> Result<Vec<i64>>;
    async fn archive_message(&self, id: i64) -> Result<Option<MessageRow>>;
    /// A member's conversations, the latest first.
    async fn archive_conversations_of(&self, member: Uuid) -> Result<Vec<ConversationRow>>;
    async fn archive_conversation(&self, id: i64) -> Result<Option<ConversationRow>>;
    /// Conversations by id, without their counts (`messages` 0, no times): for rendering.
    async fn archive_conversations_by_ids(&self, ids: &[i64]) -> Result<Vec<ConversationRow>>;
    /// Current members by id: `(id, display name, account number, login name)`.
    async fn archive_people(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, String, i64, String)>>;
    /// Groups, by name; with `units`, only those owned by members under them.
    async fn archive_groups(&self, units: Option<&[Uuid]>) -> Result<Vec<GroupRow>>;
    /// Records under member identities that are no longer members (deleted accounts):
    /// `(identity, messages)`, the most recently deleted first.
    async fn archive_deleted_accounts(&self, limit: i64) -> Result<Vec<(Uuid, i64)>>;
    /// The member parties of these messages: `(message, member)`.
    async fn archive_parties(&self, messages: &[i64]) -> Result<Vec<(i64, Uuid)>>;

    async fn archive_blob(&self, sha256: &str) -> Result<Option<Blob>>;
    async fn archive_blob_exists(&self, sha256: &str) -> Result<bool>;
    /// Stores a blob unless it is there; true when it was new.
    async fn archive_blob_put(&self, key: &Sealed, blob: &Blob, at: DateTime<Utc>) -> Result<bool>;

    /// Writes an audit row alone (a view, a search, an export's download).
    async fn archive_audit(&self, key: &Sealed, audit: &AuditRecord) -> Result<()>;
}

/// Upkeep: exports, retention rules, legal holds, and the purge.
#[async_trait]
pub trait ArchiveUpkeep: Send + Sync + 'static {
    async fn archive_export_insert(&self, key: &Sealed, e: &ExportRow, audit: &AuditRecord) -> Result<()>;
    async fn archive_export_update(&self, key: &Sealed, e: &ExportRow) -> Result<()>;
    async fn archive_export(&self, id: Uuid) -> Result<Option<ExportRow>>;
    async fn archive_exports(&self, limit: i64) -> Result<Vec<ExportRow>>;
    /// The oldest export waiting to run, claimed as `running`.
    async fn archive_export_claim(&self, key: &Sealed) -> Result<Option<ExportRow>>;

    async fn archive_retention(&self) -> Result<Vec<RetentionRow>>;
    /// Sets (days > 0) or clears a subtree's retention, audited.
    async fn archive_retention_set(
        &self,
        key: &Sealed,
        unit: Uuid,
        days: Option<i64>,
        by: &str,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> Result<()>;
    async fn archive_holds(&self) -> Result<Vec<HoldRow>>;
    async fn archive_hold_insert(&self, key: &Sealed, h: &HoldRow, audit: &AuditRecord) -> Result<()>;
    async fn archive_hold_release(
        &self,
        key: &Sealed,
        id: Uuid,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> Result<bool>;
    /// Messages with a member party in `members` sent before `before` and after the position
    /// `after` (`(sent_at, message)`): `(message, sent_at)`, oldest first, at most `limit`.
    async fn archive_purge_candidates(
        &self,
        members: &[Uuid],
        before: i64,
        after: (i64, i64),
        limit: i64,
    ) -> Result<Vec<(i64, i64)>>;
    /// Deletes messages (parties and index terms with them) with the purge's audit row.
    async fn archive_delete(&self, key: &Sealed, messages: &[i64], audit: &AuditRecord) -> Result<u64>;
}
