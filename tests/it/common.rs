//! Shared set-up: a configured directory on either backend.

#![allow(dead_code)]

use roster::config::Config;
use roster::directory::model::{Actor, Source};
use roster::directory::{Applied, Change, DirectoryService, NewMember, NewOrgUnit};
#[allow(unused_imports)]
use roster::store::prelude::*;
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
    pub async fn open(&self) -> Opened {
        Opened(roster::app::open(&self.cfg).await.expect("open the directory"))
    }
}

/// An opened store: the directory (what it derefs to) and, for the tests' own checks, the
/// whole store and the other owners' operations.
#[derive(Clone)]
pub struct Opened(pub roster::app::Services);

impl std::ops::Deref for Opened {
    type Target = DirectoryService;
    fn deref(&self) -> &DirectoryService {
        &self.0.directory
    }
}

impl Opened {
    /// Every owner's store (reads and their own writes; never the directory's writes).
    pub fn store(&self) -> &std::sync::Arc<dyn roster::store::Store> {
        &self.0.store
    }

    pub fn access(&self) -> &roster::access::Access {
        &self.0.access
    }

    pub async fn create_token(
        &self,
        actor: &Actor,
        name: &str,
        adopt: bool,
    ) -> Result<String, roster::directory::DirectoryError> {
        self.0.access.create_token(actor, name, adopt).await
    }

    pub async fn revoke_token(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<(), roster::directory::DirectoryError> {
        self.0.access.revoke_token(actor, name).await
    }

    pub async fn rotate_token(
        &self,
        actor: &Actor,
        name: &str,
    ) -> Result<String, roster::directory::DirectoryError> {
        self.0.access.rotate_token(actor, name).await
    }

    pub async fn authenticate_token(
        &self,
        secret: &str,
    ) -> Result<Option<roster::access::store::TokenInfo>, roster::directory::DirectoryError> {
        self.0.access.authenticate_token(secret).await
    }

    pub async fn retry_delivery(
        &self,
        actor: &Actor,
        id: Uuid,
    ) -> Result<bool, roster::directory::DirectoryError> {
        roster::delivery::desk::retry(self.0.delivery.as_ref(), actor, id).await
    }

    pub async fn purge_deliveries(
        &self,
        actor: &Actor,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, roster::directory::DirectoryError> {
        roster::delivery::desk::purge(self.0.delivery.as_ref(), actor, before).await
    }

    pub async fn sms_top_up(
        &self,
        actor: &Actor,
        amount: i64,
        note: Option<String>,
    ) -> Result<i64, roster::directory::DirectoryError> {
        roster::delivery::desk::top_up(self.0.delivery.as_ref(), actor, amount, note).await
    }

    pub async fn broadcast(
        &self,
        actor: &Actor,
        n: roster::delivery::desk::NewBroadcast,
    ) -> Result<(roster::delivery::store::Broadcast, usize), roster::directory::DirectoryError> {
        roster::delivery::desk::broadcast(
            self.0.directory.store().as_ref(),
            self.0.delivery.as_ref(),
            actor,
            n,
        )
        .await
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
