//! Delivery: the outbox's consumers.
//!
//! The directory writes an event row into the outbox in the same transaction as each change
//! (`member.created`, `member.updated.suspend`, `member.deleted`). A dispatcher round
//!
//! 1. turns pending events into messages, one per channel and recipient (`deliveries`), and
//!    marks the events done, in one transaction (idempotency keys make a repeat harmless);
//! 2. claims due messages with a lease (two nodes on one PostgreSQL never both claim one),
//!    sends each with its idempotency key, and records it as sent (an SMS is charged in the same
//!    transaction), retried later with exponential backoff and jitter, or dead after the last
//!    attempt with its last error.
//!
//! A crash between sending and recording leaves the message claimed; when the lease runs out it
//! is sent again with the same idempotency key (at least once, de-duplicated by the receiver).

pub mod channels;
pub mod desk;
pub mod mailbox;
pub mod store;
pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::config::{ConfigError, DeliveryConfig, parse_offset, parse_quiet_hours};
use crate::directory::model::OutboxMessage;
use crate::directory::store::StoreError;
use channels::{Mailer, SendError, SmsProvider};
use store::{Delivery, DeliveryStore, Sent};
use templates::Templates;

/// Spaces sends out to at most `per_sec` a second (shared by a dispatcher's concurrent sends).
pub struct RateLimit {
    interval: Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl RateLimit {
    pub fn new(per_sec: f64) -> RateLimit {
        RateLimit {
            interval: Duration::from_secs_f64(1.0 / per_sec),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Waits for this send's slot.
    pub async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(tokio::time::Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// What one mailbox push did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MailboxRound {
    pub pushed: usize,
    pub failed: usize,
}

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Round {
    pub events: usize,
    pub queued: u64,
    pub sent: usize,
    pub retried: usize,
    pub dead: usize,
    pub deferred: usize,
}

pub struct Dispatcher {
    /// What the dispatcher and each of its concurrent sends share.
    parts: Arc<Sender>,
    mailbox: Option<Arc<dyn mailbox::MailboxProvider>>,
}

impl Dispatcher {
    pub fn new(store: Arc<dyn DeliveryStore>, cfg: &DeliveryConfig) -> Result<Dispatcher, ConfigError> {
        let templates = Templates::load(cfg.templates_dir.as_deref())?;
        let mailer = cfg.smtp.as_ref().map(Mailer::new).transpose()?;
        let sms = cfg.sms.as_ref().map(channels::sms_provider).transpose()?;
        let quiet = cfg.sms.as_ref().and_then(|s| s.quiet_hours.as_deref()).and_then(parse_quiet_hours);
        let offset = cfg
            .sms
            .as_ref()
            .and_then(|s| parse_offset(&s.utc_offset))
            .unwrap_or(chrono::FixedOffset::east_opt(0).unwrap());
        let holder = crate::jobs::holder();
        let rate = |r: Option<f64>| r.map(|r| Arc::new(RateLimit::new(r)));
        let parts = Sender {
            store,
            cfg: cfg.clone(),
            templates,
            mailer,
            sms,
            quiet,
            offset,
            holder,
            email_rate: rate(cfg.smtp.as_ref().and_then(|s| s.rate_per_sec)),
            sms_rate: rate(cfg.sms.as_ref().and_then(|s| s.rate_per_sec)),
        };
        Ok(Dispatcher { parts: Arc::new(parts), mailbox: None })
    }

    /// Also keeps mailbox bindings and pushes them ([`Dispatcher::push_mailboxes`]).
    pub fn with_mailbox(mut self, cfg: &crate::config::MailboxConfig) -> Result<Dispatcher, ConfigError> {
        self.mailbox = mailbox::provider(cfg)?;
        Ok(self)
    }

    /// Pushes the bindings that changed (or failed and are due) to the mail system.
    pub async fn push_mailboxes(&self) -> Result<MailboxRound, StoreError> {
        let mut round = MailboxRound::default();
        let Some(provider) = &self.mailbox else { return Ok(round) };
        loop {
            let now = Utc::now();
            let until = now + chrono::Duration::seconds(self.parts.cfg.lease_secs as i64);
            let batch =
                self.parts.store.mailbox_claim(&self.parts.holder, now, until, self.parts.cfg.batch).await?;
            if batch.is_empty() {
                return Ok(round);
            }
            for b in batch {
                match provider.push(&b).await {
                    Ok(remote_id) => {
                        self.parts
                            .store
                            .mailbox_pushed(b.member_id, &self.parts.holder, remote_id.as_deref(), Utc::now())
                            .await?;
                        round.pushed += 1;
                    }
                    Err(SendError::Retry(e) | SendError::Permanent(e)) => {
                        let e = crate::config::scrub_urls(&e);
                        tracing::warn!(member = %b.member_id, address = %b.address, error = %e, "mailbox push failed");
                        let next = Utc::now() + backoff(&self.parts.cfg, b.attempts + 1);
                        self.parts.store.mailbox_failed(b.member_id, &self.parts.holder, &e, next).await?;
                        round.failed += 1;
                    }
                }
            }
        }
    }

    /// The full reconcile: every binding pushed again.
    pub async fn reconcile_mailboxes(&self) -> Result<MailboxRound, StoreError> {
        if self.mailbox.is_none() {
            return Ok(MailboxRound::default());
        }
        self.parts.store.mailbox_reconcile(Utc::now()).await?;
        self.push_mailboxes().await
    }

    /// The binding an event calls for, when mailboxes are pushed.
    fn binding_for(&self, event: &OutboxMessage) -> Option<crate::delivery::store::MailboxBinding> {
        self.mailbox.as_ref()?;
        let p = &event.payload;
        let deleted = match event.kind.as_str() {
            "member.deleted" => true,
            k if k == "member.created" || k.starts_with("member.updated") => false,
            _ => return None,
        };
        // The company mailbox: an address the source gave the member in the company's mail
        // domain (the login name's), else the login name itself.
        let login = p["login_name"].as_str()?;
        let domain = login.rsplit_once('@').map(|(_, d)| d.to_owned()).unwrap_or_default();
        let from_source = p["emails"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["address"].as_str())
            .find(|a| a.rsplit_once('@').is_some_and(|(_, d)| d.eq_ignore_ascii_case(&domain)));
        Some(crate::delivery::store::MailboxBinding {
            member_id: p["member_id"].as_str()?.parse().ok()?,
            address: from_source.unwrap_or(login).to_owned(),
            display_name: p["display_name"].as_str().unwrap_or_default().to_owned(),
            active: !deleted && p["state"] == "active",
            state: store::BindingState::Pending,
            attempts: 0,
            next_attempt_at: event.created_at,
            last_error: None,
            remote_id: None,
            pushed_at: None,
            updated_at: event.created_at,
        })
    }

    /// One round: events to messages, then every due message sent (claimed in batches).
    pub async fn run_once(&self) -> Result<Round, StoreError> {
        let mut round = Round::default();
        self.expand(&mut round).await?;
        loop {
            let before = round.clone();
            let claimed = self.dispatch(&mut round).await?;
            if claimed < self.parts.cfg.batch as usize || round == before {
                break;
            }
        }
        Ok(round)
    }

    /// Turns pending outbox events into messages (and mailbox bindings) without sending any:
    /// the first step of [`Self::run_once`].
    pub async fn fan_out(&self) -> Result<Round, StoreError> {
        let mut round = Round::default();
        self.expand(&mut round).await?;
        Ok(round)
    }

    /// Turns pending outbox events into messages.
    async fn expand(&self, round: &mut Round) -> Result<(), StoreError> {
        let enterprise = self.parts.store.enterprise_profile().await?.map(|e| e.name).unwrap_or_default();
        loop {
            let events = self.parts.store.outbox_pending(self.parts.cfg.batch.max(1)).await?;
            if events.is_empty() {
                return Ok(());
            }
            let mut messages: Vec<Delivery> =
                events.iter().flat_map(|e| self.messages_for(e, &enterprise)).collect();
            for event in events.iter().filter(|e| e.kind == desk::BROADCAST_EVENT) {
                messages.extend(self.broadcast_messages(event, &enterprise).await?);
            }
            let bindings: Vec<_> = events.iter().filter_map(|e| self.binding_for(e)).collect();
            let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
            round.events += events.len();
            round.queued += self.parts.store.deliveries_enqueue(&ids, &messages, &bindings).await?;
        }
    }

    /// A broadcast's messages: to its recipients as they are now (active, in its subtrees), an
    /// e-mail to each with an address and an SMS to each with a mobile, as the admin chose.
    /// Their idempotency keys name the broadcast and the member, so a second expansion of the
    /// same event (a crash before it was marked done) queues nothing twice.
    async fn broadcast_messages(
        &self,
        event: &OutboxMessage,
        enterprise: &str,
    ) -> Result<Vec<Delivery>, StoreError> {
        let b: desk::BroadcastEvent = match serde_json::from_value(event.payload.clone()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(event = %event.id, error = %e, "broadcast event is not readable; skipped");
                return Ok(Vec::new());
            }
        };
        let Some(broadcast) = self.parts.store.broadcast(b.broadcast_id).await? else {
            tracing::error!(event = %event.id, broadcast = %b.broadcast_id, "broadcast event names no broadcast; skipped");
            return Ok(Vec::new());
        };
        let recipients = self.parts.store.broadcast_recipients(&b.units).await?;
        if recipients.len() as i64 != broadcast.recipients {
            // Members joined, left or moved since it was sent: it reaches them as they are now.
            tracing::info!(broadcast = %broadcast.id, sent_to = broadcast.recipients, now = recipients.len(),
                "broadcast recipients changed between sending and fan-out");
        }
        let mut messages = Vec::with_capacity(recipients.len() * 2);
        for r in &recipients {
            let params = json!({
                "enterprise": enterprise, "title": broadcast.title, "text": broadcast.text, "language": b.language,
                "display_name": r.display_name, "account_number": r.account_number, "login_name": r.login_name,
            });
            let key = format!("broadcast:{}:{}", broadcast.id, r.id);
            let mut queue = |channel: store::Channel, to: &str| {
                let mut d =
                    new_delivery(Some(event.id), channel, "broadcast", to, Some(r.id), params.clone(), &key);
                d.broadcast_id = Some(broadcast.id);
                messages.push(d);
            };
            if let (true, Some(email)) = (b.email, &r.email) {
                queue(store::Channel::Email, email);
            }
            if let (true, Some(mobile)) = (b.sms, &r.mobile) {
                queue(store::Channel::Sms, mobile);
            }
        }
        Ok(messages)
    }

    /// The messages an event calls for: an e-mail to the member's primary address and, for
    /// the kinds in `delivery.sms_kinds`, an SMS to the mobile. A channel that is not
    /// configured sends nothing (and queues nothing: configuring it later does not send old news).
    pub fn messages_for(&self, event: &OutboxMessage, enterprise: &str) -> Vec<Delivery> {
        let kind = match event.kind.as_str() {
            "member.created" => "welcome",
            "member.updated.suspend" => "suspended",
            "member.deleted" => "deleted",
            _ => return Vec::new(),
        };
        let p = &event.payload;
        let member_id = p["member_id"].as_str().and_then(|s| s.parse().ok());
        let params = json!({
            "enterprise": enterprise,
            "display_name": p["display_name"],
            "account_number": p["account_number"],
            "login_name": p["login_name"],
            "language": self.parts.cfg.language,
        });
        let emails = p["emails"].as_array().cloned().unwrap_or_default();
        let email = emails
            .iter()
            .find(|e| e["primary"] == true)
            .or(emails.first())
            .and_then(|e| e["address"].as_str());
        let mut out = Vec::new();
        if let (Some(address), Some(_)) = (email, &self.parts.mailer) {
            out.push(new_delivery(
                Some(event.id),
                store::Channel::Email,
                kind,
                address,
                member_id,
                params.clone(),
                &event.idempotency_key,
            ));
        }
        if let (Some(mobile), Some(_)) = (p["mobile"].as_str(), &self.parts.sms)
            && self.parts.cfg.sms_kinds.iter().any(|k| k == kind)
        {
            out.push(new_delivery(
                Some(event.id),
                store::Channel::Sms,
                kind,
                mobile,
                member_id,
                params,
                &event.idempotency_key,
            ));
        }
        out
    }

    /// Claims one batch and sends it; returns how many were claimed. The batch's SMS segments
    /// are reserved together and its sent messages recorded together (a few statements a batch,
    /// not a few a message).
    async fn dispatch(&self, round: &mut Round) -> Result<usize, StoreError> {
        let now = Utc::now();
        let until = now + chrono::Duration::seconds(self.parts.cfg.lease_secs as i64);
        let mut batch =
            self.parts.store.deliveries_claim(&self.parts.holder, now, until, self.parts.cfg.batch).await?;
        let claimed = batch.len();
        let sender = self.parts.clone();
        let quiet = quiet_until(self.parts.quiet, self.parts.offset, now).is_some();
        let needs: Vec<(Uuid, i64)> = batch
            .iter()
            .filter(|d| d.channel == "sms" && d.reserved == 0 && (!quiet || d.kind == "password_code"))
            .map(|d| (d.id, templates::sms_segments(&sender.sms_text(d))))
            .collect();
        if self.parts.sms.is_some()
            && !needs.is_empty()
            && self.parts.store.sms_reserve_many(&self.parts.holder, &needs).await?
        {
            let taken: std::collections::HashMap<Uuid, i64> = needs.into_iter().collect();
            for d in &mut batch {
                if let Some(segments) = taken.get(&d.id) {
                    d.reserved = *segments;
                }
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        let limit = Arc::new(tokio::sync::Semaphore::new(32));
        for d in batch {
            let permit = limit.clone().acquire_owned().await.expect("never closed");
            let this = sender.clone();
            tasks.spawn(async move {
                let _permit = permit;
                this.deliver(d).await
            });
        }
        let mut sent = Vec::new();
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
            match done.expect("a delivery task panicked") {
                Ok((Outcome::Sent, s)) => {
                    round.sent += 1;
                    sent.extend(s);
                }
                Ok((Outcome::Retry, _)) => round.retried += 1,
                Ok((Outcome::Dead, _)) => round.dead += 1,
                Ok((Outcome::Deferred, _)) => round.deferred += 1,
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        // Recorded even when another message's bookkeeping failed: these did go out.
        let low_balance = self.parts.cfg.sms.as_ref().map_or(0, |s| s.low_balance);
        let low =
            self.parts.store.deliveries_sent(&self.parts.holder, &sent, Utc::now(), low_balance).await?;
        for s in &sent {
            crate::telemetry::delivery_sent(if s.sms.is_some() { "sms" } else { "email" });
        }
        if let Some(balance) = low {
            sender.warn_low_balance(balance).await?;
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(claimed),
        }
    }
}

enum Outcome {
    Sent,
    Retry,
    Dead,
    Deferred,
}

/// What a dispatcher's concurrent sends share: the store, the channels and the settings.
struct Sender {
    store: Arc<dyn DeliveryStore>,
    cfg: DeliveryConfig,
    templates: Templates,
    mailer: Option<Mailer>,
    sms: Option<Arc<dyn SmsProvider>>,
    quiet: Option<(NaiveTime, NaiveTime)>,
    offset: chrono::FixedOffset,
    holder: String,
    email_rate: Option<Arc<RateLimit>>,
    sms_rate: Option<Arc<RateLimit>>,
}

impl Sender {
    fn sms_text(&self, d: &Delivery) -> String {
        let lang = d.params["language"].as_str().unwrap_or("en");
        self.templates.sms(lang, &d.kind, &d.params)
    }

    /// Sends one message; a sent one comes back to be recorded with its batch.
    async fn deliver(&self, d: Delivery) -> Result<(Outcome, Option<Sent>), StoreError> {
        let lang = d.params["language"].as_str().unwrap_or("en").to_owned();
        let now = Utc::now();
        let (result, charge) = match d.channel {
            store::Channel::Email => {
                let Some(mailer) = &self.mailer else {
                    return self.defer(&d, "e-mail is not configured (delivery.smtp)", None).await;
                };
                let email = self.templates.email(&lang, &d.kind, &d.params);
                if let Some(rate) = &self.email_rate {
                    rate.wait().await;
                }
                (mailer.send(d.id, &d.recipient, &email, &d.idempotency_key).await, None)
            }
            store::Channel::Sms => {
                let Some(sms) = &self.sms else {
                    return self.defer(&d, "SMS is not configured (delivery.sms)", None).await;
                };
                if d.kind != "password_code"
                    && let Some(end) = quiet_until(self.quiet, self.offset, now)
                {
                    return self.defer(&d, "quiet hours", Some(end)).await;
                }
                let text = self.sms_text(&d);
                let segments = templates::sms_segments(&text);
                // Reserved with the batch, or left with the message by a node that crashed
                // mid-send; otherwise reserved here.
                if d.reserved < segments
                    && self.store.sms_reserve(d.id, &self.holder, segments).await?.is_none()
                {
                    let balance = self.store.sms_balance().await?;
                    let why = format!(
                        "SMS balance is {balance}; this message needs {segments} (rosterd sms top-up)"
                    );
                    return self.defer(&d, &why, None).await;
                }
                if let Some(rate) = &self.sms_rate {
                    rate.wait().await;
                }
                let sent = sms.send(&d.recipient, &text, &d.idempotency_key).await;
                if sent.is_err() {
                    self.store.sms_refund(d.id).await?;
                }
                (sent, Some((d.recipient.clone(), segments)))
            }
        };
        match result {
            Ok(provider_id) => Ok((Outcome::Sent, Some(Sent { id: d.id, provider_id, sms: charge }))),
            Err(e) => {
                let (text, permanent) = match e {
                    SendError::Retry(t) => (t, false),
                    SendError::Permanent(t) => (t, true),
                };
                // Logged, stored and shown on the console: no credentials in URLs.
                let text = crate::config::scrub_urls(&text);
                let attempts = d.attempts + 1;
                let next = (!permanent && attempts < self.cfg.max_attempts)
                    .then(|| Utc::now() + backoff(&self.cfg, attempts));
                tracing::warn!(id = %d.id, channel = %d.channel, kind = %d.kind, attempts, error = %text,
                    dead = next.is_none(), "delivery failed");
                self.store.delivery_failed(d.id, &self.holder, &text, next).await?;
                Ok((if next.is_some() { Outcome::Retry } else { Outcome::Dead }, None))
            }
        }
    }

    async fn defer(
        &self,
        d: &Delivery,
        why: &str,
        until: Option<DateTime<Utc>>,
    ) -> Result<(Outcome, Option<Sent>), StoreError> {
        if d.reserved > 0 {
            // Reserved with the batch, not sent: given back.
            self.store.sms_refund(d.id).await?;
        }
        self.store.delivery_defer(d.id, &self.holder, why, until).await?;
        Ok((Outcome::Deferred, None))
    }

    /// Once a charge takes the balance below `delivery.sms.low_balance`: a warning in the log
    /// and an e-mail to the enterprise's contact address, when there is one.
    async fn warn_low_balance(&self, balance: i64) -> Result<(), StoreError> {
        tracing::warn!(balance, "the SMS balance is low; top it up with `rosterd sms top-up AMOUNT`");
        let Some(e) = self.store.enterprise_profile().await? else { return Ok(()) };
        if let (Some(to), Some(_)) = (e.contact_email.as_deref(), &self.mailer) {
            let params = json!({"enterprise": e.name, "balance": balance, "language": self.cfg.language});
            let key = format!("sms.low_balance:{}", Uuid::now_v7());
            let d = new_delivery(None, store::Channel::Email, "low_balance", to, None, params, &key);
            self.store.deliveries_enqueue(&[], &[d], &[]).await?;
        }
        Ok(())
    }
}

/// A new pending message.
pub fn new_delivery(
    event_id: Option<Uuid>,
    channel: store::Channel,
    kind: &str,
    recipient: &str,
    member_id: Option<Uuid>,
    params: serde_json::Value,
    key: &str,
) -> Delivery {
    let now = Utc::now();
    Delivery {
        id: Uuid::now_v7(),
        created_at: now,
        event_id,
        channel,
        kind: kind.into(),
        recipient: recipient.into(),
        member_id,
        params,
        idempotency_key: format!("{key}:{channel}"),
        state: store::DeliveryState::Pending,
        attempts: 0,
        next_attempt_at: now,
        last_error: None,
        provider_id: None,
        sent_at: None,
        reserved: 0,
        broadcast_id: None,
    }
}

/// The wait before attempt `attempts + 1`: `backoff_secs * 2^(attempts-1)`, at most
/// `backoff_max_secs`, times a random factor in 0.8..1.2 (so retries of a burst spread out).
pub fn backoff(cfg: &DeliveryConfig, attempts: i64) -> chrono::Duration {
    let base = cfg.backoff_secs.max(1) as f64 * 2f64.powi((attempts - 1).clamp(0, 30) as i32);
    let capped = base.min(cfg.backoff_max_secs.max(1) as f64);
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    chrono::Duration::milliseconds((capped * jitter * 1000.0) as i64)
}

/// When quiet hours are on at `now`, their end.
pub fn quiet_until(
    quiet: Option<(NaiveTime, NaiveTime)>,
    offset: chrono::FixedOffset,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let (from, to) = quiet?;
    let local = now.with_timezone(&offset);
    let t = local.time();
    let inside = if from < to { t >= from && t < to } else { t >= from || t < to };
    if !inside {
        return None;
    }
    let mut end = local.date_naive().and_time(to);
    if end <= local.naive_local() {
        end += chrono::Duration::days(1);
    }
    end.and_local_timezone(offset).single().map(|e| e.with_timezone(&Utc))
}

/// Delivery's scheduled jobs ([`crate::jobs`]): dispatch on `delivery.schedule` and, when a
/// mailbox provider is set, the push on `mailbox.schedule` and the full reconcile on
/// `mailbox.full_schedule`.
pub fn jobs(
    d: Arc<Dispatcher>,
    cfg: &DeliveryConfig,
    mailbox: &crate::config::MailboxConfig,
) -> Result<Vec<crate::jobs::Job>, ConfigError> {
    use crate::jobs::Job;
    let parse = |key: &str, expr: &str| -> Result<cron::Schedule, ConfigError> {
        expr.parse().map_err(|e| ConfigError::new(key, format!("not a cron expression: {e}")))
    };
    let dispatcher = d.clone();
    let mut jobs =
        vec![Job::new("delivery:dispatch", parse("delivery.schedule", &cfg.schedule)?, move || {
            let d = dispatcher.clone();
            async move {
                let r = d.run_once().await?;
                if r != Round::default() {
                    tracing::info!(?r, "delivery round");
                }
                if let Ok(counts) = d.parts.store.delivery_counts().await {
                    crate::telemetry::delivery_counts(&counts);
                }
                if let Ok(balance) = d.parts.store.sms_balance().await {
                    metrics::gauge!("roster_sms_balance").set(balance as f64);
                }
                Ok(())
            }
        })];
    if d.mailbox.is_some() {
        let push = d.clone();
        jobs.push(Job::new("mailbox:push", parse("mailbox.schedule", &mailbox.schedule)?, move || {
            let d = push.clone();
            async move {
                let r = d.push_mailboxes().await?;
                if r != MailboxRound::default() {
                    tracing::info!(?r, "mailbox push");
                }
                Ok(())
            }
        }));
        let full = d;
        jobs.push(Job::new(
            "mailbox:reconcile",
            parse("mailbox.full_schedule", &mailbox.full_schedule)?,
            move || {
                let d = full.clone();
                async move {
                    let r = d.reconcile_mailboxes().await?;
                    tracing::info!(?r, "mailbox reconcile");
                    Ok(())
                }
            },
        ));
    }
    Ok(jobs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn quiet_hours_across_midnight() {
        let q = parse_quiet_hours("22:00-08:00");
        let cn = parse_offset("+08:00").unwrap();
        // 15:00 UTC = 23:00 in +08:00: quiet until 08:00 local = 00:00 UTC next day.
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 15, 0, 0).unwrap();
        assert_eq!(quiet_until(q, cn, at), Some(Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()));
        // 23:30 UTC = 07:30 local: quiet until 08:00 local, 30 minutes later.
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 23, 30, 0).unwrap();
        assert_eq!(quiet_until(q, cn, at), Some(Utc.with_ymd_and_hms(2026, 11, 26, 0, 0, 0).unwrap()));
        // 04:00 UTC = 12:00 local: not quiet.
        assert_eq!(quiet_until(q, cn, Utc.with_ymd_and_hms(2026, 11, 25, 4, 0, 0).unwrap()), None);
        let day = parse_quiet_hours("12:00-13:00");
        assert!(
            quiet_until(
                day,
                parse_offset("+00:00").unwrap(),
                Utc.with_ymd_and_hms(2026, 1, 1, 12, 30, 0).unwrap()
            )
            .is_some()
        );
        assert_eq!(parse_quiet_hours("22:00"), None);
        assert_eq!(parse_quiet_hours("25:00-08:00"), None);
        assert_eq!(parse_offset("08:00"), None);
        assert_eq!(parse_offset("-05:30").unwrap().local_minus_utc(), -(5 * 3600 + 1800));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let cfg = DeliveryConfig { backoff_secs: 10, backoff_max_secs: 60, ..Default::default() };
        for (attempts, base) in [(1, 10.0), (2, 20.0), (3, 40.0), (4, 60.0), (9, 60.0)] {
            let secs = backoff(&cfg, attempts).num_milliseconds() as f64 / 1000.0;
            assert!(secs >= base * 0.8 && secs <= base * 1.2, "attempt {attempts}: {secs}");
        }
    }
}
