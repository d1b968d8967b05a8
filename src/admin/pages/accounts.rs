//! Accounts: the number block, the next number, reservations, deleted accounts (tombstones).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::{Done, Errors, Reply};
use crate::admin::Console;
use crate::admin::views::{Chrome, html, when};
use crate::admin::{Failure, Principal, directory, see_other};
use crate::directory::Change;
use crate::directory::model::{Permission, Reservation, Tombstone};

#[derive(Template)]
#[template(path = "accounts.html", config = "src/admin/askama.toml")]
pub struct AccountsPage {
    pub c: Chrome,
    pub first: i64,
    pub last: i64,
    pub next: i64,
    pub quarantine: String,
    pub reservations: Vec<Reservation>,
    pub tombstones: Vec<Tombstone>,
    pub errors: Errors,
    /// The refused reservation's number and note.
    pub typed: (String, String),
}

impl AccountsPage {
    pub fn reserved_at(&self, r: &Reservation) -> String {
        when(&r.reserved_at)
    }
    pub fn deleted_at(&self, t: &Tombstone) -> String {
        when(&t.deleted_at)
    }
}

async fn page(
    state: &Console,
    p: &Principal,
    errors: Errors,
    typed: (String, String),
    done: Option<&str>,
) -> Reply {
    let d = directory(state)?;
    let n = &state.config.numbers;
    let high = d.store().number_high_water().await?;
    let status = if errors.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    };
    let page = AccountsPage {
        c: p.chrome(p.lang.t("menu.accounts")).at("/admin/accounts").flash(done),
        first: n.first,
        last: n.last,
        next: high.max(n.first - 1) + 1,
        quarantine: n.reuse_after_days.map(|d| d.to_string()).unwrap_or_else(|| "∞".into()),
        reservations: d.store().reservations().await?,
        tombstones: d.store().tombstones_recent(100).await?,
        errors,
        typed,
    };
    Ok((status, html(&page)).into_response())
}

pub async fn accounts(State(state): State<Console>, p: Principal, Query(q): Query<Done>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has_everywhere(Permission::ManageMembers), "accounts.view").await?;
    page(&state, &p, Errors::default(), Default::default(), q.done.as_deref()).await
}

#[derive(Debug, Deserialize)]
pub struct ReserveForm {
    #[serde(default)]
    number: String,
    #[serde(default)]
    note: String,
}

pub async fn reserve(
    State(state): State<Console>,
    p: Principal,
    axum::Form(f): axum::Form<ReserveForm>,
) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has_everywhere(Permission::ManageMembers), "number.reserve").await?;
    let Ok(number) = f.number.trim().parse::<i64>() else {
        let typed = (f.number.clone(), f.note.clone());
        return page(&state, &p, Errors::field("number", "must be a whole number"), typed, None).await;
    };
    match d.apply_one(&p.actor(), Change::ReserveNumber { number, note: f.note.clone() }).await {
        Ok(_) => Ok(see_other("/admin/accounts?done=accounts.reserve")),
        Err(e) => {
            let mut errors = Errors::from_directory(e)?;
            if let Some(g) = errors.general.take() {
                errors.fields.push(("number".into(), g));
            }
            page(&state, &p, errors, (f.number.clone(), f.note.clone()), None).await
        }
    }
}

pub async fn release(State(state): State<Console>, p: Principal, Path(number): Path<i64>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has_everywhere(Permission::ManageMembers), "number.release").await?;
    d.apply_one(&p.actor(), Change::ReleaseReservation { number })
        .await
        .map_err(|e| Failure::from_directory(&e))?;
    Ok(see_other("/admin/accounts?done=accounts.release"))
}
