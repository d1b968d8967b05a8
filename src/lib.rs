//! Roster: `rosterd` keeps a company's account center in step with its directory.
//!
//! Layout (see `../shared/DESIGN.md` for the whole map):
//! - [`config`]: figment configuration, built-in defaults < file < `ROSTER_*` environment.
//! - [`store`]: the `Store` trait and its SQLite and PostgreSQL implementations. Only the store
//!   speaks SQL.
//! - [`directory`]: the domain model and [`directory::DirectoryService`], the ONE write path for
//!   enterprise, org units, members, groups and account numbers. It validates a change set, writes
//!   it in one transaction with its audit-log and outbox rows, and returns typed errors.
//! - [`sync`]: LDAP / Active Directory sources pulled into the directory on a schedule.
//! - [`delivery`]: the outbox's consumers: e-mail (SMTP), SMS (provider plugins, the SMS
//!   account and its ledger), templates, retries, leases.
//! - [`access`]: API tokens and the super-admin password.
//! - [`http`]: the router, middleware (request ids, limits, timeouts, metrics) and health checks.
//! - [`scim`]: the SCIM 2.0 endpoint identity providers provision into.
//! - [`app`]: wiring; `run(listener, config, shutdown)` is what `rosterd serve` and the tests call.
//! - [`cli`]: the `rosterd` command line.

pub mod access;
pub mod admin;
pub mod app;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod directory;
pub mod http;
pub mod jobs;
pub mod scim;
pub mod secret;
pub mod store;
pub mod sync;
pub mod telemetry;
