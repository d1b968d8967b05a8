//! What every page shares: the frame (menus by permission, language, CSRF token, flash
//! messages) and the sign-in and error pages.

use askama::Template;
use axum::response::Html;
use chrono::{DateTime, Utc};

use super::auth::{Principal, Who};
use super::i18n::Lang;
use crate::directory::model::Permission;

/// Renders a template; a template error (a bug) is logged and shown as a plain error.
pub fn html<T: Template>(t: &T) -> Html<String> {
    match t.render() {
        Ok(s) => Html(s),
        Err(e) => {
            tracing::error!(error = %e, "console: template failed");
            Html("<!doctype html><title>error</title><p>The page could not be shown.</p>".into())
        }
    }
}

pub struct MenuItem {
    pub href: &'static str,
    pub key: &'static str,
    pub active: bool,
}

/// The frame around every signed-in page.
pub struct Chrome {
    pub lang: Lang,
    pub title: String,
    pub who: String,
    pub csrf: String,
    pub menu: Vec<MenuItem>,
    /// A message after a successful change (`?done=` on the page a form redirected to).
    pub flash: Option<String>,
    pub is_super: bool,
}

impl Chrome {
    pub fn new(p: &Principal, title: &str) -> Chrome {
        let mut menu = vec![("/admin", "menu.home", true)];
        let org = p.has(Permission::ManageOrg) || p.has(Permission::ManageMembers);
        menu.push(("/admin/org", "menu.org", org));
        menu.push(("/admin/members", "menu.members", p.has(Permission::ManageMembers)));
        menu.push(("/admin/import", "menu.import", p.has_everywhere(Permission::ManageMembers)));
        menu.push(("/admin/accounts", "menu.accounts", p.has_everywhere(Permission::ManageMembers)));
        menu.push(("/admin/roles", "menu.roles", p.is_super()));
        menu.push(("/admin/sync", "menu.sync", p.has(Permission::ManageSync)));
        menu.push(("/admin/scim", "menu.scim", p.has(Permission::ManageScim)));
        menu.push(("/admin/delivery", "menu.delivery", p.has(Permission::SendSms)));
        menu.push(("/admin/records", "menu.records", p.has(Permission::ViewMessages)));
        menu.push(("/admin/sign-in", "menu.sign_in", p.has_everywhere(Permission::ManageLoginPolicy)));
        menu.push(("/admin/sign-in/log", "menu.sign_in_log", p.has(Permission::ManageLoginPolicy)));
        menu.push(("/admin/attendance", "menu.attendance", p.has(Permission::ManageLoginPolicy)));
        menu.push(("/admin/audit", "menu.audit", p.has(Permission::ViewAudit)));
        menu.push(("/admin/enterprise", "menu.enterprise", p.is_super()));
        Chrome {
            lang: p.lang,
            title: title.to_owned(),
            who: p.name(),
            csrf: p.csrf.clone(),
            menu: menu
                .into_iter()
                .filter(|(_, _, shown)| *shown)
                .map(|(href, key, _)| MenuItem { href, key, active: false })
                .collect(),
            flash: None,
            is_super: matches!(p.who, Who::SuperAdmin),
        }
    }

    /// Marks the menu entry of the current page.
    pub fn at(mut self, href: &str) -> Chrome {
        for m in &mut self.menu {
            m.active = m.href == href;
        }
        self
    }

    pub fn flash(mut self, done: Option<&str>) -> Chrome {
        self.flash = done.filter(|d| d.contains('.')).map(|d| self.lang.t(d).to_owned());
        self
    }

    pub fn t(&self, key: &str) -> &'static str {
        self.lang.t(key)
    }

    pub fn other_lang(&self) -> (&'static str, &'static str) {
        match self.lang {
            Lang::En => ("zh-CN", "中文"),
            Lang::ZhCn => ("en", "English"),
        }
    }
}

/// A time as the console shows it (UTC, to the second).
pub fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

pub fn when_opt(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map(when).unwrap_or_default()
}

#[derive(Template)]
#[template(path = "login.html", config = "src/admin/askama.toml")]
pub struct Login {
    pub lang: Lang,
    pub token: String,
    pub next: String,
    pub account: String,
    pub error: Option<&'static str>,
}

impl Login {
    pub fn new(
        lang: Lang,
        token: &str,
        next: Option<&str>,
        account: &str,
        error: Option<&'static str>,
    ) -> Login {
        Login {
            lang,
            token: token.to_owned(),
            next: next.unwrap_or("/admin").to_owned(),
            account: account.to_owned(),
            error,
        }
    }

    pub fn t(&self, key: &str) -> &'static str {
        self.lang.t(key)
    }
}

#[derive(Template)]
#[template(path = "error.html", config = "src/admin/askama.toml")]
pub struct ErrorPage {
    pub status: u16,
    pub en: &'static str,
    pub zh: &'static str,
    pub detail: String,
}
