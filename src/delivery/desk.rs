//! What admins ask of delivery (the console and the CLI): SMS top-ups, broadcasts, retrying a
//! message, purging old ones. Each is validated here and written by [`DeliveryStore`] together
//! with its audit row, in one transaction.
//!
//! A broadcast is recorded with one outbox event (`broadcast.sent`); the dispatcher turns that
//! event into one message per recipient and channel, like every other event
//! ([`super::Dispatcher::run_once`]).

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::store::{Broadcast, DeliveryStore, Sealed};
use crate::directory::model::{Actor, AuditRecord, OutboxRecord};
use crate::directory::store::DirectoryRead;
use crate::directory::{DirectoryError, DirectoryResult, validate};

/// The outbox event a broadcast is fanned out from.
pub const BROADCAST_EVENT: &str = "broadcast.sent";

/// A message from an admin to every active member, or to those in the subtrees of `units`: an
/// e-mail to each member with an address when `email`, an SMS to each with a mobile when `sms`
/// (charged per recipient as it goes out).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewBroadcast {
    pub title: String,
    pub text: String,
    pub units: Vec<Uuid>,
    pub email: bool,
    pub sms: bool,
    /// `en` or `zh-CN`: the frame of the message (the text is the admin's own).
    pub language: String,
}

/// What the fan-out needs, as the outbox event carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct BroadcastEvent {
    pub broadcast_id: Uuid,
    pub units: Vec<Uuid>,
    pub email: bool,
    pub sms: bool,
    pub language: String,
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Adds segments to the company's SMS balance (a ledger line; held SMS go out again). Returns
/// the new balance.
pub async fn top_up(
    store: &dyn DeliveryStore,
    actor: &Actor,
    amount: i64,
    note: Option<String>,
) -> DirectoryResult<i64> {
    if !(1..=100_000_000).contains(&amount) {
        return Err(DirectoryError::invalid("amount", "must be between 1 and 100,000,000 segments"));
    }
    let note = validate::optional_text("note", note.as_deref(), 256)?;
    let at = now();
    let audit = |balance: i64| {
        let after = json!({"amount": amount, "balance": balance, "note": note});
        AuditRecord::new(actor, at, "sms.top_up", ("sms_account", None), None, Some(&after))
    };
    Ok(store.sms_top_up(&Sealed::new(), amount, &actor.who, note.as_deref(), at, &audit).await?)
}

/// Records a broadcast and queues it (through the outbox) to the active members of `units`'
/// subtrees (everybody when empty). Returns it with the number of messages it will send.
pub async fn broadcast(
    directory: &dyn DirectoryRead,
    store: &dyn DeliveryStore,
    actor: &Actor,
    n: NewBroadcast,
) -> DirectoryResult<(Broadcast, usize)> {
    let title = validate::text("title", &n.title, 128)?;
    let text = validate::text("text", &n.text, 2000)?;
    if !n.email && !n.sms {
        return Err(DirectoryError::invalid("channels", "choose e-mail, SMS or both"));
    }
    for unit in &n.units {
        if directory.org_unit(*unit).await?.is_none() {
            return Err(DirectoryError::NotFound { kind: "org unit", id: unit.to_string() });
        }
    }
    if directory.enterprise().await?.is_none() {
        return Err(DirectoryError::NoEnterprise);
    }
    // Counted, not loaded: the dispatcher loads the recipients when it fans the broadcast out.
    let (members, with_email, with_mobile) = store.broadcast_reach(&n.units).await?;
    let messages = (if n.email { with_email } else { 0 } + if n.sms { with_mobile } else { 0 }) as usize;
    let at = now();
    let b = Broadcast {
        id: Uuid::now_v7(),
        created_at: at,
        created_by: actor.who.clone(),
        title,
        text,
        sms: n.sms,
        scope: n.units.clone(),
        recipients: members,
    };
    let language = if n.language.is_empty() { "en".to_owned() } else { n.language };
    let event = BroadcastEvent { broadcast_id: b.id, units: n.units, email: n.email, sms: n.sms, language };
    let event = OutboxRecord {
        id: Uuid::now_v7(),
        created_at: at,
        kind: BROADCAST_EVENT.to_owned(),
        idempotency_key: format!("broadcast:{}", b.id),
        payload: serde_json::to_string(&event).unwrap_or_default(),
    };
    let audit =
        AuditRecord::new(actor, at, "broadcast.send", ("broadcast", Some(b.id.to_string())), None, Some(&b));
    store.broadcast_insert(&Sealed::new(), &b, &event, &audit).await?;
    Ok((b, messages))
}

/// Sends a dead or held message again (pending, attempts reset). False when there is no such
/// message.
pub async fn retry(store: &dyn DeliveryStore, actor: &Actor, id: Uuid) -> DirectoryResult<bool> {
    let at = now();
    let audit =
        AuditRecord::new::<()>(actor, at, "delivery.retry", ("delivery", Some(id.to_string())), None, None);
    Ok(store.delivery_retry(&Sealed::new(), id, at, &audit).await?)
}

/// Deletes sent and dead messages finished before `before`.
pub async fn purge(store: &dyn DeliveryStore, actor: &Actor, before: DateTime<Utc>) -> DirectoryResult<u64> {
    let at = now();
    let audit = |deleted: u64| {
        let detail = json!({ "before": before, "deleted": deleted });
        AuditRecord::new(actor, at, "delivery.purge", ("delivery", None), None, Some(&detail))
    };
    Ok(store.deliveries_purge(&Sealed::new(), before, &audit).await?)
}
