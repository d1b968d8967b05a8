//! Shared set-up: a configured directory on either backend.

#![allow(dead_code)]

use roster::config::Config;
use roster::directory::model::{Actor, Source};
use roster::directory::{Applied, Change, DirectoryService, NewMember, NewOrgUnit};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A store that lives as long as this value (the SQLite file is in a temp dir).
pub struct TestDb {
    pub cfg: Config,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::default();
        cfg.database.url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("roster.db").display()),
            Backend::Postgres => crate::pg::fresh_database(),
        };
        cfg.numbers.first = 1000;
        cfg.numbers.last = 1999;
        cfg.enterprise.mail_domain = "example.com".into();
        cfg.enterprise.name = "Example Corp".into();
        TestDb { cfg, dir }
    }

    /// Opens (migrating and creating the enterprise) with the configuration as it is now.
    pub async fn open(&self) -> DirectoryService {
        roster::app::open_directory(&self.cfg).await.expect("open the directory")
    }
}

pub fn console() -> Actor {
    Actor::new(Source::console(), "admin")
}

pub fn member(login: &str) -> NewMember {
    NewMember { login_name: login.into(), display_name: format!("{login} (test)"), ..Default::default() }
}

pub async fn create_member(
    d: &DirectoryService,
    actor: &Actor,
    n: NewMember,
) -> roster::directory::model::Member {
    match d.apply_one(actor, Change::CreateMember(n)).await.expect("create member") {
        Applied::Member(m) => m,
        other => panic!("unexpected {other:?}"),
    }
}

pub async fn create_unit(d: &DirectoryService, parent: Option<Uuid>, name: &str) -> Uuid {
    let change =
        Change::CreateOrgUnit(NewOrgUnit { parent_id: parent, name: name.into(), ..Default::default() });
    match d.apply_one(&console(), change).await.expect("create org unit") {
        Applied::OrgUnit(u) => u.id,
        other => panic!("unexpected {other:?}"),
    }
}

/// Generates `mod NAME { sqlite, postgres }` tests calling `NAME(Backend)`.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use crate::common::Backend;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        }
    )*};
}
pub(crate) use on_both_stores;

/// An HTTP client for the tests (reqwest needs the process-wide rustls provider rosterd uses).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
