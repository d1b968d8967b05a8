//! The enterprise profile and the super-admin password (super admin only).

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::{Done, Errors, Reply, opt};
use crate::admin::Console;
use crate::admin::views::{Chrome, html, when, when_opt};
use crate::admin::{Principal, directory, see_other};
use crate::directory::model::Enterprise;
use crate::directory::{Change, EnterprisePatch};

#[derive(Debug, Default, Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub logo_url: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub contact_name: String,
    #[serde(default)]
    pub contact_phone: String,
    #[serde(default)]
    pub contact_email: String,
    #[serde(default)]
    pub mail_domain: String,
    /// When the form was read: refused if the profile changed since.
    #[serde(default)]
    pub updated_at: String,
}

#[derive(Template)]
#[template(path = "enterprise.html", config = "src/admin/askama.toml")]
pub struct ProfilePage {
    pub c: Chrome,
    pub e: Enterprise,
    pub f: ProfileForm,
    pub errors: Errors,
    pub expires: String,
}

impl ProfilePage {
    /// `(field, label key, value)` of each text field.
    pub fn fields(&self) -> Vec<(&'static str, &'static str, &str)> {
        let f = &self.f;
        vec![
            ("name", "ent.name", f.name.as_str()),
            ("logo_url", "ent.logo", f.logo_url.as_str()),
            ("address", "ent.address", f.address.as_str()),
            ("contact_name", "ent.contact_name", f.contact_name.as_str()),
            ("contact_phone", "ent.contact_phone", f.contact_phone.as_str()),
            ("contact_email", "ent.contact_email", f.contact_email.as_str()),
            ("mail_domain", "ent.mail_domain", f.mail_domain.as_str()),
        ]
    }
}

fn form_of(e: &Enterprise) -> ProfileForm {
    ProfileForm {
        name: e.name.clone(),
        logo_url: e.logo_url.clone().unwrap_or_default(),
        address: e.address.clone().unwrap_or_default(),
        contact_name: e.contact_name.clone().unwrap_or_default(),
        contact_phone: e.contact_phone.clone().unwrap_or_default(),
        contact_email: e.contact_email.clone().unwrap_or_default(),
        mail_domain: e.mail_domain.clone(),
        updated_at: e.updated_at.to_rfc3339(),
    }
}

pub async fn profile_page(State(state): State<Console>, p: Principal, Query(q): Query<Done>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.is_super(), "enterprise.view").await?;
    let e = d.store().enterprise().await?.ok_or(crate::admin::Failure::Unavailable)?;
    let c = p.chrome(p.lang.t("menu.enterprise")).at("/admin/enterprise").flash(q.done.as_deref());
    let page =
        ProfilePage { c, f: form_of(&e), expires: when_opt(&e.expires_at), e, errors: Errors::default() };
    Ok(html(&page).into_response())
}

pub async fn profile(State(state): State<Console>, p: Principal, Form(f): Form<ProfileForm>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.is_super(), "enterprise.update").await?;
    let e = d.store().enterprise().await?.ok_or(crate::admin::Failure::Unavailable)?;
    let refuse = |f: ProfileForm, errors: Errors, e: Enterprise| {
        let c = p.chrome(p.lang.t("menu.enterprise")).at("/admin/enterprise");
        let page = ProfilePage { c, f, expires: when_opt(&e.expires_at), e, errors };
        Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response())
    };
    if f.updated_at != e.updated_at.to_rfc3339() {
        let msg = format!(
            "the profile was changed by someone else at {}; reload and try again",
            when(&e.updated_at)
        );
        return refuse(f, Errors::general(msg), e);
    }
    let patch = EnterprisePatch {
        name: Some(f.name.clone()),
        logo_url: Some(opt(&f.logo_url)),
        address: Some(opt(&f.address)),
        contact_name: Some(opt(&f.contact_name)),
        contact_phone: Some(opt(&f.contact_phone)),
        contact_email: Some(opt(&f.contact_email)),
        mail_domain: Some(f.mail_domain.clone()),
        expires_at: None,
    };
    match d.apply_one(&p.actor(), Change::UpdateEnterprise(patch)).await {
        Ok(_) => Ok(see_other("/admin/enterprise?done=ent.saved")),
        Err(err) => refuse(f, Errors::from_directory(err)?, e),
    }
}

#[derive(Template)]
#[template(path = "password.html", config = "src/admin/askama.toml")]
pub struct PasswordPage {
    pub c: Chrome,
    pub errors: Errors,
    pub must_change: bool,
    /// A member from a directory: the password is changed there.
    pub directory_password: bool,
}

pub async fn password_page(State(state): State<Console>, p: Principal, Query(q): Query<Done>) -> Reply {
    let d = directory(&state)?;
    let must_change = p.is_super() && d.store().enterprise().await?.is_some_and(|e| e.password_must_change);
    let c = p.chrome(p.lang.t("menu.password")).flash(q.done.as_deref());
    let directory_password = own_member(d, &p).await?.is_some_and(|m| m.source.as_str().starts_with("ldap:"));
    Ok(html(&PasswordPage { c, errors: Errors::default(), must_change, directory_password }).into_response())
}

/// The signed-in member (none for the super admin).
async fn own_member(
    d: &crate::directory::DirectoryService,
    p: &Principal,
) -> Result<Option<crate::directory::model::Member>, crate::admin::Failure> {
    match &p.who {
        crate::admin::auth::Who::SuperAdmin => Ok(None),
        crate::admin::auth::Who::Member { id, .. } => Ok(d.store().member(*id).await?),
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current: String,
    #[serde(default)]
    new: String,
    #[serde(default)]
    confirm: String,
}

/// Changes the signed-in person's own password: the super password, or a member's console
/// password (members from a directory change theirs there). The current one is asked again,
/// and the person's other sessions end.
pub async fn password(State(state): State<Console>, p: Principal, Form(f): Form<PasswordForm>) -> Reply {
    let d = directory(&state)?;
    let member = own_member(d, &p).await?;
    let must_change = p.is_super() && d.store().enterprise().await?.is_some_and(|e| e.password_must_change);
    let directory_password = member.as_ref().is_some_and(|m| m.source.as_str().starts_with("ldap:"));
    let refuse = |errors: Errors| {
        let c = p.chrome(p.lang.t("menu.password"));
        let page = PasswordPage { c, errors, must_change, directory_password };
        Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response())
    };
    if directory_password {
        return refuse(Errors::general(p.lang.t("password.directory")));
    }
    let hash = match &member {
        None => d.store().super_password_hash().await?.unwrap_or_default(),
        Some(m) => d.store().member_password_hash(m.id).await?.unwrap_or_default(),
    };
    if !crate::admin::auth::check_hash(&f.current, hash).await? {
        return refuse(Errors::field("current", p.lang.t("password.wrong")));
    }
    if f.new != f.confirm {
        return refuse(Errors::field("confirm", p.lang.t("password.mismatch")));
    }
    // The directory names the field `password`; this form calls it `new`.
    let as_new = |mut e: Errors| {
        for (field, _) in &mut e.fields {
            *field = "new".into();
        }
        e
    };
    let result = match &member {
        None => {
            d.set_super_password(&p.actor(), &state.config.enterprise.seed(), &f.new, Some(p.session_hash()))
                .await
        }
        Some(m) => {
            if let Err(e) = crate::directory::validate::password(&f.new) {
                return refuse(as_new(Errors::from_directory(e)?));
            }
            let patch = crate::directory::MemberPatch {
                password: Some(crate::secret::Secret(f.new.clone())),
                keep_session: Some(p.session_hash().to_owned()),
                ..Default::default()
            };
            d.apply_one(&p.actor(), Change::UpdateMember { id: m.id, patch }).await.map(|_| ())
        }
    };
    if let Err(e) = result {
        return refuse(as_new(Errors::from_directory(e)?));
    }
    Ok(see_other("/admin/password?done=password.changed"))
}
