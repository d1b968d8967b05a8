//! The one integration-test binary (one link for the whole suite).
//!
//! [`fixtures`] start real servers on loopback (a private PostgreSQL cluster, slapd, Samba AD,
//! Chromium) and hold the shared set-up; [`daemon`] starts the `rosterd` binary itself. The behaviour suite ([`story`]) runs every store
//! operation against SQLite and PostgreSQL alike.

mod admin;
mod archive;
mod backup;
mod cli;
mod console_e2e;
mod crash;
mod daemon;
mod delivery;
mod faults;
mod fixtures;
mod group_commit;
mod house;
mod ldap_server;
mod messy;
mod migrations;
mod nodes;
mod oneshot;
mod package;
mod scim;
mod security;
mod story;
mod sync;
mod sync_ad;

use fixtures::{browser, common, pg, samba, slapd};
