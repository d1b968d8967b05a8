//! Messages and SMS: the outbox by state, dead messages with retry, the SMS balance and its
//! ledger, broadcasts with their progress, mailbox bindings.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;

use super::{Errors, Reply, opt, uuid};
use crate::admin::Console;
use crate::admin::views::{Chrome, html, when};
use crate::admin::{Failure, Principal, directory, ready, see_other};
use crate::delivery::desk::{self, NewBroadcast};
use crate::delivery::store::{Broadcast, Delivery, MailboxBinding, SmsLedgerEntry};
use crate::directory::model::Permission;

pub struct BroadcastRow {
    pub b: Broadcast,
    pub progress: String,
}

#[derive(Template)]
#[template(path = "delivery.html", config = "src/admin/askama.toml")]
pub struct OverviewPage {
    pub c: Chrome,
    pub counts: Vec<(String, String, i64)>,
    /// The messages in the listed state (`dead` unless asked otherwise).
    pub dead: Vec<Delivery>,
    /// With the default list, the held messages too.
    pub held: Vec<Delivery>,
    pub listed: String,
    /// The state the bindings are filtered by (empty: all).
    pub mailbox_state: String,
    pub balance: i64,
    pub ledger: Vec<SmsLedgerEntry>,
    pub broadcasts: Vec<BroadcastRow>,
    pub mailboxes: Vec<MailboxBinding>,
    pub errors: Errors,
    /// What was typed into the refused form (`title`, `text`, `units`, `email`, `sms`,
    /// `amount`, `note`).
    pub typed: Vec<(String, String)>,
}

impl OverviewPage {
    pub fn typed(&self, field: &str) -> &str {
        self.typed.iter().find(|(f, _)| f == field).map(|(_, v)| v.as_str()).unwrap_or("")
    }
    /// A checkbox of the broadcast form: as ticked on a refused form, else its default.
    pub fn ticked(&self, field: &str, default: bool) -> bool {
        if self.typed.is_empty() { default } else { !self.typed(field).is_empty() }
    }
    pub fn ledger_at(&self, e: &SmsLedgerEntry) -> String {
        when(&e.at)
    }
    pub fn created(&self, b: &Broadcast) -> String {
        when(&b.created_at)
    }
}

async fn page(
    state: &Console,
    p: &Principal,
    errors: Errors,
    typed: Vec<(String, String)>,
    done: Option<&str>,
) -> Reply {
    page_with(state, p, errors, typed, done, Filter::default()).await
}

async fn page_with(
    state: &Console,
    p: &Principal,
    errors: Errors,
    typed: Vec<(String, String)>,
    done: Option<&str>,
    filter: Filter,
) -> Reply {
    let s = &ready(state)?.delivery;
    let mut broadcasts = Vec::new();
    for b in s.broadcasts(20).await? {
        let progress = s
            .broadcast_progress(b.id)
            .await?
            .into_iter()
            .map(|(ch, st, n)| format!("{ch} {st}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        broadcasts.push(BroadcastRow { b, progress });
    }
    let status = if errors.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = OverviewPage {
        c: p.chrome(p.lang.t("menu.delivery")).at("/admin/delivery").flash(done),
        counts: s.delivery_counts().await?,
        dead: s.deliveries_list(Some(filter.state.as_deref().unwrap_or("dead")), 100).await?,
        held: match &filter.state {
            Some(_) => Vec::new(),
            None => s.deliveries_list(Some("held"), 100).await?,
        },
        listed: filter.state.clone().unwrap_or_else(|| "dead".into()),
        mailbox_state: filter.mailbox.clone().unwrap_or_default(),
        balance: s.sms_balance().await?,
        ledger: s.sms_ledger(50).await?,
        broadcasts,
        mailboxes: s.mailbox_bindings(filter.mailbox.as_deref(), 100).await?,
        errors,
        typed,
    };
    Ok((status, html(&page)).into_response())
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct OverviewQuery {
    #[serde(default)]
    done: Option<String>,
    /// Messages in this state are listed (`pending`, `sent`, `held`, `dead`); by default the
    /// dead and held ones.
    #[serde(default)]
    state: Option<String>,
    /// Mailbox bindings in this state (`pending`, `pushed`, `disabled`, `failed`).
    #[serde(default)]
    mailbox: Option<String>,
}

const MESSAGE_STATES: [&str; 4] = ["pending", "sent", "held", "dead"];
const MAILBOX_STATES: [&str; 4] = ["pending", "pushed", "disabled", "failed"];

pub async fn overview(State(state): State<Console>, p: Principal, Query(q): Query<OverviewQuery>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has(Permission::SendSms), "delivery.view").await?;
    let filter = Filter {
        state: q.state.filter(|s| MESSAGE_STATES.contains(&s.as_str())),
        mailbox: q.mailbox.filter(|s| MAILBOX_STATES.contains(&s.as_str())),
    };
    page_with(&state, &p, Errors::default(), Default::default(), q.done.as_deref(), filter).await
}

/// Which messages and bindings the page lists.
#[derive(Debug, Default)]
struct Filter {
    state: Option<String>,
    mailbox: Option<String>,
}

pub async fn retry(State(state): State<Console>, p: Principal, Path(id): Path<String>) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has(Permission::SendSms), "delivery.retry").await?;
    let id = uuid(&id)?;
    // The retry and its audit row are one transaction.
    if !desk::retry(r.delivery.as_ref(), &p.actor(), id).await.map_err(|e| Failure::from_directory(&e))? {
        return Err(Failure::NotFound);
    }
    Ok(see_other("/admin/delivery?done=delivery.retry"))
}

#[derive(Debug, serde::Deserialize)]
pub struct TopUpForm {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    note: String,
}

pub async fn top_up(
    State(state): State<Console>,
    p: Principal,
    axum::Form(f): axum::Form<TopUpForm>,
) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has(Permission::SendSms), "sms.top_up").await?;
    let typed = vec![("amount".to_owned(), f.amount.clone()), ("note".to_owned(), f.note.clone())];
    let Ok(amount) = f.amount.trim().parse::<i64>() else {
        return page(&state, &p, Errors::field("amount", "must be a whole number"), typed, None).await;
    };
    match desk::top_up(r.delivery.as_ref(), &p.actor(), amount, opt(&f.note)).await {
        Ok(_) => Ok(see_other("/admin/delivery?done=delivery.top_up")),
        Err(e) => page(&state, &p, Errors::from_directory(e)?, typed, None).await,
    }
}

/// A broadcast: title, text, units as paths (one a line; none: everybody), channels.
pub async fn broadcast(
    State(state): State<Console>,
    p: Principal,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> Reply {
    let r = ready(&state)?;
    let d = &r.directory;
    p.require(d, p.has(Permission::SendSms), "broadcast.send").await?;
    let get = |k: &str| form.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone()).unwrap_or_default();
    let typed: Vec<(String, String)> =
        ["title", "text", "units", "email", "sms"].iter().map(|k| ((*k).to_owned(), get(k))).collect();
    let mut units = Vec::new();
    for path in get("units").lines().map(str::trim).filter(|l| !l.is_empty()) {
        match super::org::resolve_path(d, path).await? {
            Ok(Some(u)) => units.push(u),
            Ok(None) => {}
            Err(msg) => return page(&state, &p, Errors::field("units", msg), typed, None).await,
        }
    }
    let b = NewBroadcast {
        title: get("title"),
        text: get("text"),
        units,
        email: !get("email").is_empty(),
        sms: !get("sms").is_empty(),
        language: p.lang.code().to_owned(),
    };
    match desk::broadcast(d.store().as_ref(), r.delivery.as_ref(), &p.actor(), b).await {
        Ok(_) => Ok(see_other("/admin/delivery?done=delivery.broadcast_sent")),
        Err(e) => page(&state, &p, Errors::from_directory(e)?, typed, None).await,
    }
}
