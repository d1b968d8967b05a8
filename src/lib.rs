//! Roster: `rosterd` keeps a company's account center in step with its directory.
//!
//! The map of the code is `ARCHITECTURE.md` at the top of the repository; a tour, from the core
//! outwards:
//!
//! - [`directory`]: the domain model and [`directory::DirectoryService`], the ONE write path for
//!   the enterprise, org units, members, groups, account numbers, roles and grants. It validates
//!   a change set and writes it in one transaction with its audit-log and outbox rows. Its store
//!   port ([`directory::store`]) is read-only for everyone else: only `directory` can open a write
//!   transaction.
//! - [`access`]: API tokens, console sessions, signing in for every client ([`access::signin`]:
//!   failure limits, the pass-through password check against a member's own directory, the
//!   sign-in policy of [`access::policy`], the login log).
//! - [`delivery`]: the outbox's consumers: e-mail (SMTP), SMS (providers, the SMS account and its
//!   ledger), broadcasts, templates, retries, mailbox bindings.
//! - [`sync`]: LDAP / Active Directory sources pulled into the directory: read, map, plan, apply;
//!   the record of runs.
//! - [`jobs`]: the one scheduler; every scheduled job runs under a leader lease.
//! - [`store`]: every owner's store trait implemented for SQLite and PostgreSQL. Only the store
//!   speaks SQL.
//! - [`scim`]: the SCIM 2.0 server identity providers provision into.
//! - [`admin`]: the account center console under `/admin`.
//! - [`ldap_server`]: Roster's tree served over LDAP to the company's apps (bind and search).
//! - [`http`]: middleware, health checks and `/metrics`, shared by the HTTP adapters.
//! - [`app`]: wiring; `run(listener, config, shutdown)` is what `rosterd serve` and the tests call.
//! - [`cli`]: the `rosterd` command line (and `rosterd import`).
//! - [`config`]: figment configuration, built-in defaults < file < `ROSTER_*` environment.
//! - Small modules every module may use: [`secret`] (redacted secrets, password hashing) and
//!   [`text`] (closed sets stored as text), both leaves; [`telemetry`] (metrics).

#[macro_use]
pub mod text;

pub mod access;
pub mod admin;
pub mod api;
pub mod app;
pub mod archive;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod directory;
#[cfg(test)]
mod fuzz;
pub mod http;
pub mod jobs;
pub mod ldap_server;
pub mod scim;
pub mod secret;
pub mod store;
pub mod sync;
pub mod telemetry;
