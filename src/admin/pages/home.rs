//! Home: the enterprise at a glance, and what needs attention.

use askama::Template;
use axum::extract::State;
use axum::response::IntoResponse;

use super::Reply;
use crate::admin::Console;
use crate::admin::Principal;
use crate::admin::views::{Chrome, html, when, when_opt};
use crate::directory::model::{Counts, Enterprise, Permission};
use crate::sync::store::SyncRun;

#[derive(Template)]
#[template(path = "home.html", config = "src/admin/askama.toml")]
pub struct HomePage {
    pub c: Chrome,
    pub e: Enterprise,
    pub counts: Counts,
    pub sms_balance: i64,
    pub runs: Vec<SyncRun>,
    pub held: usize,
    pub dead: i64,
    pub low_balance: bool,
    /// The SMS account is for those who send.
    pub show_sms: bool,
    pub expires: String,
}

impl HomePage {
    pub fn started(&self, r: &SyncRun) -> String {
        when(&r.started_at)
    }
}

pub async fn home(State(state): State<Console>, p: Principal) -> Reply {
    let r = crate::admin::ready(&state)?;
    let store = r.directory.store();
    let e = store.enterprise().await?.ok_or(crate::admin::Failure::Unavailable)?;
    let runs = if p.has(Permission::ManageSync) { r.runs.runs_recent(5).await? } else { Vec::new() };
    let held = runs.iter().filter(|r| r.status == crate::sync::store::RunStatus::Held).count();
    let dead = if p.has(Permission::SendSms) {
        r.delivery.delivery_counts().await?.iter().filter(|(_, s, _)| s == "dead").map(|(_, _, n)| n).sum()
    } else {
        0
    };
    let sms_balance = r.delivery.sms_balance().await?;
    let threshold =
        state.config.delivery.sms.as_ref().map_or_else(crate::config::default_low_balance, |s| s.low_balance);
    let page = HomePage {
        c: p.chrome(p.lang.t("home.welcome")).at("/admin"),
        counts: store.counts().await?,
        low_balance: p.has(Permission::SendSms) && sms_balance < threshold,
        show_sms: p.has(Permission::SendSms),
        expires: when_opt(&e.expires_at),
        e,
        sms_balance,
        runs,
        held,
        dead,
    };
    Ok(html(&page).into_response())
}
