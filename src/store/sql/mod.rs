//! The SQL both backends share, written once.
//!
//! `shared_sql!(Db, Store, Tx, err, MEMBER_CHILDREN, MEMBER_KEYS, GROUP_MEMBERSHIPS)` expands to the
//! implementations of every owner's store trait for one sqlx database, one `sql_*` macro a file and
//! an owner (`directory_read`, `records_read`, `members_tx`, `tree_tx`, `accounts_tx`, `directory_tx`, `delivery`,
//! `runs`, `access`, `login`, `attendance`, `leases`, `maintenance`, `archive`, `archive_upkeep`), so that no file of SQL grows past a few hundred lines. The backend supplies a `Store` struct with `read`
//! and `write` pools and the dialect-specific inherent methods `backend_name`, `run_migrations`
//! and `schema_state_impl`, a `Tx` struct wrapping `sqlx::Transaction<'static, Db>`, `err`, which
//! classifies its errors, `MEMBER_CHILDREN`, its SQL for a member's e-mails and further org
//! units as two JSON text columns (see [`MemberRow`]), and `MEMBER_KEYS` and `GROUP_MEMBERSHIPS`,
//! its SQL for a source's member keys and group memberships as JSON text (a sync loads 100,000
//! of each; a few rows are far cheaper than that many). It also supplies `mod bulk`: the writes
//! and checks of many rows at once (new members with their e-mails, conflicts, group members,
//! audit and outbox rows), which each database does best its own way.
//!
//! Multi-row statements (`VALUES` lists, `IN` lists) are sent with `.persistent(false)`: their
//! text changes with their length, and caching every prepared variant would keep hundreds of
//! megabytes of statements per connection for nothing. (SQLite's bulk inserts keep one variant
//! each, the full chunk; see `store::sqlite::bulk`.)

pub(crate) const MEMBER_COLS: &str = "id, account_number, login_name, display_name, given_name, \
    family_name, mobile, title, employee_number, primary_org_unit_id, manager_id, state, source, \
    anchor, version, created_at, updated_at, department, organization, division, cost_center";
pub(crate) const ORG_UNIT_COLS: &str =
    "id, parent_id, name, position, source, anchor, version, created_at, updated_at";
pub(crate) const GROUP_COLS: &str = "id, name, owner_id, source, anchor, version, created_at, updated_at";
pub(crate) const ENTERPRISE_COLS: &str = "enterprise_id, name, logo_url, address, contact_name, \
    contact_phone, contact_email, mail_domain, expires_at, password_must_change, created_at, updated_at";
pub(crate) const TOMBSTONE_COLS: &str =
    "member_id, account_number, login_name, profile, deleted_at, reason, source, deleted_by";
pub(crate) const DELIVERY_COLS: &str = "id, created_at, event_id, channel, kind, recipient, member_id, params, \
    idempotency_key, state, attempts, next_attempt_at, last_error, provider_id, sent_at, reserved, broadcast_id";
pub(crate) const MAILBOX_COLS: &str = "member_id, address, display_name, active, state, attempts, \
    next_attempt_at, last_error, remote_id, pushed_at, updated_at";
pub(crate) const BROADCAST_COLS: &str = "id, created_at, created_by, title, text, sms, scope, recipients";
pub(crate) const SMS_LEDGER_COLS: &str =
    "id, at, entry, amount, balance_after, delivery_id, recipient, segments, provider_id, actor, note";
pub(crate) const ROLE_COLS: &str = "id, name, permissions, version, created_at, updated_at";
pub(crate) const GRANT_COLS: &str = "role_id, member_id, scope_unit_id, granted_at, granted_by";
pub(crate) const AUDIT_COLS: &str = "id, at, actor, source, action, object_kind, object_id, before, after";

/// A unit and its ancestors, nearest first. Bounded depth: a corrupt cycle in stored data cannot
/// loop forever.
pub(crate) const UNIT_PATH: &str = "WITH RECURSIVE path (id, parent_id, depth) AS ( \
    SELECT id, parent_id, 0 FROM org_units WHERE id = $1 \
    UNION ALL \
    SELECT o.id, o.parent_id, p.depth + 1 FROM org_units o JOIN path p ON o.id = p.parent_id \
    WHERE p.depth < 10000) \
    SELECT id FROM path ORDER BY depth";

/// SQL text built once from the column constants and kept for the life of the process (sqlx
/// accepts only `&'static str` as SQL, which keeps values out of query text).
macro_rules! sql {
    ($fmt:literal $(, $arg:expr)*) => {{
        static S: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
        *S.get_or_init(|| Box::leak(format!($fmt $(, $arg)*).into_boxed_str()))
    }};
}

/// A member row with its e-mails and further org units as JSON text, from the backend's
/// `MEMBER_CHILDREN` columns: one statement reads a whole member.
#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    #[sqlx(flatten)]
    member: crate::directory::model::Member,
    emails_json: String,
    units_json: String,
    /// `[[number, kind, primary], ...]` in order.
    phones_json: String,
}

impl MemberRow {
    /// `emails_json`: `[[address, kind, primary], ...]` in order (primary as a boolean or 0/1);
    /// `units_json`: `["uuid" (any form Uuid parses), ...]`.
    pub(crate) fn into_member(self) -> super::Result<crate::directory::model::Member> {
        use crate::directory::model::Email;
        let id = self.member.id;
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            super::StoreError::Corrupt(format!("member {id}: {what}: {e}"))
        };
        let emails: Vec<(String, String, serde_json::Value)> =
            serde_json::from_str(&self.emails_json).map_err(|e| bad("e-mails", &e))?;
        let units: Vec<String> = serde_json::from_str(&self.units_json).map_err(|e| bad("org units", &e))?;
        let phones: Vec<(String, String, serde_json::Value)> =
            serde_json::from_str(&self.phones_json).map_err(|e| bad("phones", &e))?;
        let mut m = self.member;
        m.emails = emails
            .into_iter()
            .map(|(address, kind, p)| Email { address, kind, primary: p == true || p == 1 })
            .collect();
        m.phones = phones
            .into_iter()
            .map(|(number, kind, p)| crate::directory::model::Phone {
                number,
                kind,
                primary: p == true || p == 1,
            })
            .collect();
        m.org_unit_ids = units
            .iter()
            .map(|u| uuid::Uuid::parse_str(u))
            .collect::<Result<_, _>>()
            .map_err(|e| bad("org units", &e))?;
        m.org_unit_ids.sort();
        Ok(m)
    }
}

#[macro_use]
mod archive;
#[macro_use]
mod attendance;
#[macro_use]
mod archive_upkeep;
#[macro_use]
mod common;
#[macro_use]
mod search;
#[macro_use]
mod directory_read;
#[macro_use]
mod records_read;
#[macro_use]
mod members_tx;
#[macro_use]
mod tree_tx;
#[macro_use]
mod accounts_tx;
#[macro_use]
mod directory_tx;
#[macro_use]
mod delivery;
#[macro_use]
mod runs;
#[macro_use]
mod access;
#[macro_use]
mod leases;
#[macro_use]
mod login;
#[macro_use]
mod maintenance;

/// Every owner's store trait for one backend (see the module's documentation).
macro_rules! shared_sql {
    ($($args:tt)*) => {
        sql_common!($($args)*);
        sql_search!($($args)*);
        sql_directory_read!($($args)*);
        sql_records_read!($($args)*);
        sql_members_tx!($($args)*);
        sql_tree_tx!($($args)*);
        sql_accounts_tx!($($args)*);
        sql_directory_tx!($($args)*);
        sql_delivery!($($args)*);
        sql_runs!($($args)*);
        sql_access!($($args)*);
        sql_leases!($($args)*);
        sql_login!($($args)*);
        sql_attendance!($($args)*);
        sql_maintenance!($($args)*);
        sql_archive!($($args)*);
        sql_archive_upkeep!($($args)*);
    };
}
