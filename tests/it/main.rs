//! The one integration-test binary (one link for the whole suite).
//!
//! Fixtures start real servers on loopback: a private PostgreSQL cluster ([`pg`]), and the
//! `rosterd` binary itself ([`daemon`]). The behaviour suite ([`story`]) runs every store
//! operation against SQLite and PostgreSQL alike.

mod admin;
mod browser;
mod cli;
mod common;
mod console_e2e;
mod daemon;
mod delivery;
mod faults;
mod messy;
mod migrations;
mod nodes;
mod pg;
mod samba;
mod scim;
mod security;
mod slapd;
mod story;
mod sync;
mod sync_ad;
