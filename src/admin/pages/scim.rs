//! SCIM clients: their API tokens, created (the secret shown once), revoked, and rotated (the
//! super admin only: a rotation hands a source and everything it provisioned a new secret).

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::{Done, Errors, Reply};
use crate::access::store::TokenInfo;
use crate::admin::Console;
use crate::admin::views::{Chrome, html, when, when_opt};
use crate::admin::{Failure, Principal, directory, see_other};
use crate::directory::model::Permission;

#[derive(Template)]
#[template(path = "scim.html", config = "src/admin/askama.toml")]
pub struct TokensPage {
    pub c: Chrome,
    pub tokens: Vec<TokenInfo>,
    /// A token just created: its secret, shown this once.
    pub secret: Option<(String, String)>,
    pub errors: Errors,
    /// The refused token name.
    pub typed: String,
    /// The super admin may rotate.
    pub can_rotate: bool,
}

impl TokensPage {
    pub fn created(&self, t: &TokenInfo) -> String {
        when(&t.created_at)
    }
    pub fn used(&self, t: &TokenInfo) -> String {
        when_opt(&t.last_used_at)
    }
    pub fn revoked(&self, t: &TokenInfo) -> String {
        when_opt(&t.revoked_at)
    }
    pub fn rotated(&self, t: &TokenInfo) -> String {
        when_opt(&t.rotated_at)
    }
}

async fn page(
    state: &Console,
    p: &Principal,
    secret: Option<(String, String)>,
    errors: Errors,
    typed: String,
    done: Option<&str>,
) -> Reply {
    let status = if errors.is_empty() {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::UNPROCESSABLE_ENTITY
    };
    let c = p.chrome(p.lang.t("menu.scim")).at("/admin/scim").flash(done);
    let page = TokensPage {
        c,
        tokens: crate::admin::ready(state)?.access.store().tokens().await?,
        secret,
        errors,
        typed,
        can_rotate: p.is_super(),
    };
    let mut res = (status, html(&page)).into_response();
    res.headers_mut().insert(axum::http::header::CACHE_CONTROL, "no-store".parse().expect("valid"));
    Ok(res)
}

pub async fn tokens(State(state): State<Console>, p: Principal, Query(q): Query<Done>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has(Permission::ManageScim), "token.view").await?;
    page(&state, &p, None, Errors::default(), String::new(), q.done.as_deref()).await
}

#[derive(Debug, Deserialize)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    adopt_existing: Option<String>,
}

pub async fn create_token(State(state): State<Console>, p: Principal, Form(f): Form<CreateForm>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has(Permission::ManageScim), "token.create").await?;
    // A token that may take over members other sources created acts on the whole directory.
    p.require(d, p.is_super() || f.adopt_existing.is_none(), "token.create_adopting").await?;
    match crate::admin::ready(&state)?
        .access
        .create_token(&p.actor(), &f.name, f.adopt_existing.is_some())
        .await
    {
        Ok(secret) => {
            page(&state, &p, Some((f.name.trim().to_owned(), secret)), Errors::default(), String::new(), None)
                .await
        }
        Err(e) => page(&state, &p, None, Errors::from_directory(e)?, f.name.clone(), None).await,
    }
}

pub async fn revoke_token(State(state): State<Console>, p: Principal, Path(name): Path<String>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has(Permission::ManageScim), "token.revoke").await?;
    crate::admin::ready(&state)?
        .access
        .revoke_token(&p.actor(), &name)
        .await
        .map_err(|e| Failure::from_directory(&e))?;
    Ok(see_other("/admin/scim?done=scim.revoked"))
}

/// Gives the token `name` a new secret, shown once. The super admin only: whoever holds the new
/// secret acts as the source and changes every member it provisioned.
pub async fn rotate_token(State(state): State<Console>, p: Principal, Path(name): Path<String>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.is_super(), "token.rotate").await?;
    match crate::admin::ready(&state)?.access.rotate_token(&p.actor(), &name).await {
        Ok(secret) => page(&state, &p, Some((name, secret)), Errors::default(), String::new(), None).await,
        Err(e) => Err(Failure::from_directory(&e)),
    }
}
