//! Delivery's persistence: the outbox's consumers' bookkeeping (messages, mailbox bindings, the
//! SMS account and its ledger, broadcasts). Only `delivery` writes these rows; each write that an
//! admin asks for is audited in the same transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::directory::model::{AuditRecord, OutboxMessage, OutboxRecord};
use crate::directory::store::Result;

text_enum! {
    /// How a message travels.
    pub enum Channel as "channel" {
        Email = "email",
        Sms = "sms",
    }
}

text_enum! {
    /// Where a message is in its life.
    pub enum DeliveryState as "delivery state" {
        /// To send (at `next_attempt_at`).
        Pending = "pending",
        Sent = "sent",
        /// Waits for something (the SMS balance; see `last_error`).
        Held = "held",
        /// Failed its last attempt.
        Dead = "dead",
    }
}

text_enum! {
    /// Where a mailbox binding is.
    pub enum BindingState as "mailbox binding state" {
        /// To push.
        Pending = "pending",
        Pushed = "pushed",
        /// Pushed as disabled.
        Disabled = "disabled",
        /// Retried at `next_attempt_at` (see `last_error`).
        Failed = "failed",
    }
}

/// One message to one recipient on one channel (see `crate::delivery`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, sqlx::FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    /// The outbox event it came from, if any.
    pub event_id: Option<Uuid>,
    #[sqlx(try_from = "String")]
    pub channel: Channel,
    /// The template: `welcome`, `suspended`, `deleted`, `password_code`, `broadcast`, `test`, `low_balance`.
    pub kind: String,
    pub recipient: String,
    pub member_id: Option<Uuid>,
    /// Template parameters (and `language`).
    #[sqlx(json)]
    pub params: serde_json::Value,
    /// Sent along to the provider; a receiver de-duplicates on it.
    pub idempotency_key: String,
    #[sqlx(try_from = "String")]
    pub state: DeliveryState,
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
    #[sqlx(try_from = "String")]
    pub state: BindingState,
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

/// A message the provider accepted, to be recorded (see [`DeliveryStore::deliveries_sent`]).
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

/// The proof that the caller is `delivery` itself: the audited writes an admin asks for (retry,
/// purge, top-up, broadcast) take one, and only this module makes it, so they are reachable only
/// through [`super::desk`].
pub struct Sealed(());

impl Sealed {
    pub(super) fn new() -> Sealed {
        Sealed(())
    }
}

#[async_trait]
pub trait DeliveryStore: Send + Sync + 'static {
    async fn outbox_pending(&self, limit: i64) -> Result<Vec<OutboxMessage>>;

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
    /// [`DeliveryStore::sms_reserve`] took), those that `holder` still holds, in one transaction.
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
    /// Gives back what [`DeliveryStore::sms_reserve`] took for an SMS that was not sent.
    async fn sms_refund(&self, id: Uuid) -> Result<()>;
    /// [`DeliveryStore::sms_reserve`] for many messages at once, all or none (false: not enough balance
    /// for all of them; then nothing was taken).
    async fn sms_reserve_many(&self, holder: &str, items: &[(Uuid, i64)]) -> Result<bool>;
    async fn sms_ledger(&self, limit: i64) -> Result<Vec<SmsLedgerEntry>>;
    async fn broadcast(&self, id: Uuid) -> Result<Option<Broadcast>>;
    async fn broadcasts(&self, limit: i64) -> Result<Vec<Broadcast>>;
    /// A broadcast's messages by `(channel, state, count)`.
    async fn broadcast_progress(&self, id: Uuid) -> Result<Vec<(String, String, i64)>>;

    /// The enterprise (its name for templates, its contact for warnings).
    async fn enterprise_profile(&self) -> Result<Option<crate::directory::model::Enterprise>>;
    /// A dead or held message pending again, attempts reset, audited in the same transaction.
    /// False (and nothing written) when there is no such message.
    async fn delivery_retry(
        &self,
        key: &Sealed,
        id: Uuid,
        at: DateTime<Utc>,
        audit: &AuditRecord,
    ) -> Result<bool>;
    /// Deletes sent and dead messages finished before `before`, with the audit row `audit`
    /// makes of the count, in one transaction.
    async fn deliveries_purge(
        &self,
        key: &Sealed,
        before: DateTime<Utc>,
        audit: &(dyn Fn(u64) -> AuditRecord + Send + Sync),
    ) -> Result<u64>;
    /// Adds to the SMS balance with a ledger line; held SMS become pending again; the audit row
    /// `audit` makes of the new balance is written in the same transaction. Returns the balance.
    async fn sms_top_up(
        &self,
        key: &Sealed,
        amount: i64,
        actor: &str,
        note: Option<&str>,
        at: DateTime<Utc>,
        audit: &(dyn Fn(i64) -> AuditRecord + Send + Sync),
    ) -> Result<i64>;
    /// Active members in the subtrees of `units` (everybody when empty).
    async fn broadcast_recipients(&self, units: &[Uuid]) -> Result<Vec<Recipient>>;
    /// How many [`Self::broadcast_recipients`] there are, and how many of them have an e-mail
    /// address and a mobile: `(members, with e-mail, with mobile)`, counted in the database.
    async fn broadcast_reach(&self, units: &[Uuid]) -> Result<(i64, i64, i64)>;
    /// Records a broadcast with the outbox event that fans it out to its recipients and its
    /// audit row, in one transaction.
    async fn broadcast_insert(
        &self,
        key: &Sealed,
        b: &Broadcast,
        event: &OutboxRecord,
        audit: &AuditRecord,
    ) -> Result<()>;
}
