//! Wiring: the store and its owners, the HTTP surface, the scheduler, systemd notifications.
//!
//! [`open`] opens the one store and hands each owner its own trait of it ([`Services`]);
//! [`AppState`] holds each HTTP adapter's state, filled once the store is ready. Nothing below
//! `app` imports it: the adapters (`scim`, `admin`) get their own state types, and `http` is
//! plumbing they share.
//!
//! [`run`] is `rosterd serve` minus argument parsing: the tests call it with a listener on port 0.
//! The listener is served at once; the store is connected in the background with backoff, so
//! `/healthz` answers while the database is still down and `/readyz` says 503 until it is up and
//! migrated. systemd hears READY=1 only then.

use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use std::sync::Arc;

use crate::access::Access;
use crate::config::{Config, LogFormat, redact_url};
use crate::delivery::store::DeliveryStore;
use crate::directory::DirectoryService;
use crate::http;
use crate::jobs::LeaseStore;
use crate::store::{self, SchemaState, Store, StoreError};
use crate::sync::store::RunStore;

/// The opened store, each owner with its own handle on it. Cheap to clone.
#[derive(Clone)]
pub struct Services {
    /// The directory: reads, and the one write path.
    pub directory: DirectoryService,
    /// API tokens, sessions, sign-in failures.
    pub access: Access,
    pub delivery: Arc<dyn DeliveryStore>,
    pub runs: Arc<dyn RunStore>,
    pub leases: Arc<dyn LeaseStore>,
    /// The message record archive.
    pub archive: crate::archive::Archive,
    /// The sign-in policy and the login log.
    pub login: Arc<dyn crate::access::login::LoginStore>,
    /// Office attendance (shifts, punches, results).
    pub attendance: crate::access::attendance::Attendance,
    /// The store itself, for its upkeep (health, shutdown) and the wiring.
    pub store: Arc<dyn Store>,
}

impl Services {
    fn new(store: Arc<dyn Store>, cfg: &Config) -> Services {
        let directory = DirectoryService::new(store.clone(), cfg.numbers.rules())
            .with_group_commit(cfg.database.group_commit);
        Services {
            archive: crate::archive::Archive::new(store.clone(), directory.clone(), cfg.archive.clone()),
            access: Access::new(store.clone()),
            delivery: store.clone(),
            runs: store.clone(),
            leases: store.clone(),
            login: store.clone(),
            attendance: crate::access::attendance::Attendance::new(
                directory.clone(),
                store.clone(),
                cfg.access.attendance_grace_minutes,
            ),
            directory,
            store,
        }
    }

    /// Signing in for every client: local passwords, pass-through to the sync sources'
    /// directories, the failure limits of `admin.*`, the policy and the login log.
    pub fn sign_in(&self, cfg: &Config, sync: &crate::sync::SyncService) -> crate::access::signin::SignIn {
        let pass_through = Arc::new(crate::sync::PassThroughLdap::new(sync.sources().to_vec()));
        let a = &cfg.admin;
        let limits = crate::access::signin::Limits {
            max_failures: a.max_failures,
            max_failures_per_address: a.max_failures_per_address,
            failure_window_minutes: a.failure_window_minutes,
            lockout_minutes: a.lockout_minutes,
        };
        crate::access::signin::SignIn::new(
            self.directory.clone(),
            self.access.store().clone(),
            self.login.clone(),
            pass_through,
            limits,
        )
    }

    /// The sync service over the configured LDAP sources.
    pub fn sync(&self, cfg: &Config) -> crate::sync::SyncService {
        crate::sync::SyncService::new(self.directory.clone(), self.runs.clone(), cfg.sync.ldap.clone())
    }
}

/// Each HTTP adapter's state; the services arrive once the store is ready.
#[derive(Clone)]
pub struct AppState {
    pub health: http::Health,
    pub scim: crate::scim::Scim,
    pub console: crate::admin::Console,
    pub api: crate::api::Api,
}

impl AppState {
    pub fn new(cfg: &Config) -> AppState {
        AppState {
            health: http::Health::new(),
            scim: crate::scim::Scim {
                ready: Default::default(),
                cfg: Arc::new(cfg.scim.clone()),
                max_body_bytes: cfg.http.max_body_bytes,
            },
            console: crate::admin::Console::new(cfg),
            api: crate::api::Api::new(),
        }
    }

    /// Hands the services to every adapter.
    pub fn ready(
        &self,
        services: &Services,
        sync: crate::sync::SyncService,
        sign_in: crate::access::signin::SignIn,
    ) {
        let _ = self.health.store.set(services.store.clone());
        let _ = self.scim.ready.set(crate::scim::Ready {
            directory: services.directory.clone(),
            access: services.access.clone(),
        });
        let _ = self.api.ready.set(crate::api::Ready {
            access: services.access.clone(),
            archive: services.archive.clone(),
            sign_in: sign_in.clone(),
            attendance: services.attendance.clone(),
        });
        let _ = self.console.ready.set(crate::admin::Ready {
            directory: services.directory.clone(),
            access: services.access.clone(),
            delivery: services.delivery.clone(),
            runs: services.runs.clone(),
            sync,
            sign_in,
            attendance: services.attendance.clone(),
            archive: services.archive.clone(),
        });
    }

    /// The whole HTTP surface: health and metrics, SCIM under `/scim/v2`, the console under
    /// `/admin` when `admin.enabled`, the API under `/api/v1` (with its own body limit,
    /// `archive.max_request_bytes`; everything else has `http.max_body_bytes`), with the
    /// middleware every request passes.
    pub fn router(&self, cfg: &Config) -> axum::Router {
        let mut router = axum::Router::new()
            .merge(http::routes(self.health.clone()))
            .nest("/scim/v2", crate::scim::router(self.scim.clone()));
        if cfg.admin.enabled {
            router = router
                .route(
                    "/admin/",
                    axum::routing::get(|| async { axum::response::Redirect::permanent("/admin") }),
                )
                .nest("/admin", crate::admin::router(self.console.clone()));
        }
        let router = router
            .layer(tower_http::limit::RequestBodyLimitLayer::new(cfg.http.max_body_bytes))
            .nest("/api/v1", crate::api::router(self.api.clone(), cfg.archive.max_request_bytes));
        const FORMS: &[http::ErrorForm] = &[("/scim/", crate::scim::error_form)];
        http::with_layers(router.fallback(http::not_found), &cfg.http, FORMS)
    }
}

/// Sets up logging to stderr as `log.format` and `log.level` say.
pub fn init_tracing(cfg: &crate::config::LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&cfg.level).unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match cfg.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

/// Opens the store, applies pending migrations and creates the enterprise on first start
/// (logging its one-time super-admin password, once). What every command that uses the
/// directory starts with.
pub async fn open(cfg: &Config) -> Result<Services, StoreOpenError> {
    let services = open_migrated(cfg).await?;
    bootstrap(&services.directory, cfg).await?;
    Ok(services)
}

/// Opens and migrates the store without creating the enterprise (for commands that set the
/// super-admin password themselves).
pub async fn open_migrated(cfg: &Config) -> Result<Services, StoreOpenError> {
    let store = store::open(&cfg.database).await.map_err(StoreOpenError::Open)?;
    if store.schema_state().await.map_err(StoreOpenError::Migrate)? == SchemaState::Ahead {
        return Err(StoreOpenError::SchemaAhead);
    }
    store.migrate().await.map_err(StoreOpenError::Migrate)?;
    store.probe_write().await.map_err(StoreOpenError::Migrate)?;
    Ok(Services::new(store, cfg))
}

/// Why the store could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    #[error("cannot open the database: {0}")]
    Open(StoreError),
    #[error("cannot prepare the database: {0}")]
    Migrate(StoreError),
    #[error("the database schema is newer than this rosterd; upgrade rosterd")]
    SchemaAhead,
    #[error("cannot create the enterprise: {0}")]
    Bootstrap(crate::directory::DirectoryError),
}

impl StoreOpenError {
    /// Worth retrying: the database may come back.
    fn transient(&self) -> bool {
        matches!(
            self,
            StoreOpenError::Open(StoreError::Unavailable(_))
                | StoreOpenError::Migrate(StoreError::Unavailable(_))
        )
    }
}

async fn bootstrap(directory: &DirectoryService, cfg: &Config) -> Result<(), StoreOpenError> {
    if let Some(password) =
        directory.ensure_enterprise(&cfg.enterprise.seed()).await.map_err(StoreOpenError::Bootstrap)?
    {
        let e = directory.store().enterprise().await.ok().flatten();
        let id = e.map(|e| e.enterprise_id).unwrap_or_default();
        // The one place a secret is logged: the operator needs it to sign in the first time.
        tracing::warn!(
            enterprise_id = %id,
            "created the enterprise; one-time super-admin password: {password} \
             (sign in with the enterprise id, then change it, or run `rosterd admin reset-password`)"
        );
    }
    Ok(())
}

/// The HTTP server loop: accepts at most `http.max_connections` connections at once (the rest
/// wait in the listen backlog), gives each client `http.header_read_timeout_secs` to send a
/// request's headers (slowloris), serves HTTP/1.1 and HTTP/2, and on `shutdown` stops accepting
/// and waits for the connections to finish their requests. Each request carries the peer's
/// address as axum's `ConnectInfo`.
async fn serve(
    listener: TcpListener,
    app: axum::Router,
    cfg: &crate::config::HttpConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use tower::ServiceExt;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(cfg.header_read_timeout_secs));
    // An idle HTTP/2 connection is pinged, and closed when the pings go unanswered.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(cfg.header_read_timeout_secs.max(10))))
        .keep_alive_timeout(Duration::from_secs(cfg.header_read_timeout_secs));
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(cfg.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.context("connection slots")?,
            _ = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, then go on accepting.
                    tracing::warn!(error = %e, "http: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let header_wait = Duration::from_secs(cfg.header_read_timeout_secs);
        let app = app.clone().map_request(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
            req.map(axum::body::Body::new)
        });
        let service = hyper_util::service::TowerToHyperService::new(app);
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // hyper's header timer starts once it reads a request's head; before that the HTTP
            // version is told from the first bytes (HTTP/2's 24-byte preface or not), with no
            // timer: a client that connects and sends nothing, or a preface's first bytes, would
            // hold a slot. It gets the header timeout for that too.
            if !matches!(tokio::time::timeout(header_wait, version_known(&stream)).await, Ok(true)) {
                drop(permit);
                return;
            }
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(%peer, error = %e, "http: connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Waits until the connection's first bytes tell its HTTP version: they differ from HTTP/2's
/// preface (HTTP/1), or are the whole preface. False when the client closed first. Peeks, so
/// hyper reads the bytes again.
async fn version_known(stream: &tokio::net::TcpStream) -> bool {
    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut buf = [0u8; 24];
    loop {
        // (`peek`, not `readable`: readiness can be reported for a socket with nothing in it.)
        let n = match stream.peek(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        if n == PREFACE.len() || buf[..n] != PREFACE[..n] {
            return true;
        }
        // Part of the preface: wait for more.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Serves until `shutdown` is cancelled, then stops accepting, lets in-flight requests finish
/// (at most `http.shutdown_grace_secs`) and returns. Fails if the store can never be used
/// (read-only file, schema from a newer rosterd); an unreachable database is retried.
pub async fn run(listener: TcpListener, cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let state = AppState::new(&cfg);
    let tracker = TaskTracker::new();
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(%addr, store = %redact_url(&cfg.database.url), "rosterd listening");

    // The LDAP server's ports are taken now, so that a port in use fails the start.
    let ldap = crate::ldap_server::Listeners::bind(&cfg.ldap_server).await?;
    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<StoreOpenError>(1);
    tracker.spawn(connect_store(
        cfg.clone(),
        state.clone(),
        shutdown.clone(),
        fatal_tx,
        tracker.clone(),
        ldap,
    ));
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tracker.spawn(watchdog(interval / 2, shutdown.clone()));
    }

    let app = state.router(&cfg);
    let server = serve(listener, app, &cfg.http, shutdown.clone());
    let grace = Duration::from_secs(cfg.http.shutdown_grace_secs);
    let mut server = std::pin::pin!(server);
    let result = tokio::select! {
        r = &mut server => r,
        Some(e) = fatal_rx.recv() => {
            shutdown.cancel();
            let _ = tokio::time::timeout(grace, &mut server).await;
            Err(anyhow::Error::new(e))
        }
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("in-flight requests did not finish within {grace:?}; stopping anyway");
            Ok(())
        }
    };
    shutdown.cancel();
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    tracker.close();
    let _ = tokio::time::timeout(grace, tracker.wait()).await;
    if let Some(store) = state.health.store.get() {
        store.close().await;
    }
    result
}

/// Connects (with backoff while the database is unreachable), migrates, then makes the store
/// visible to handlers and tells systemd we are ready.
async fn connect_store(
    cfg: Config,
    state: AppState,
    shutdown: CancellationToken,
    fatal: tokio::sync::mpsc::Sender<StoreOpenError>,
    tracker: TaskTracker,
    mut ldap: Option<crate::ldap_server::Listeners>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match open(&cfg).await {
            Ok(services) => {
                tracing::info!(store = services.store.backend(), "store ready");
                let sync = services.sync(&cfg);
                let lease = Duration::from_secs(cfg.jobs.lease_secs);
                crate::jobs::spawn(
                    &tracker,
                    services.leases.clone(),
                    lease,
                    jobs(&cfg, &services, &sync),
                    shutdown.clone(),
                );
                let sign_in = services.sign_in(&cfg, &sync);
                if let Some(listeners) = ldap.take() {
                    crate::ldap_server::spawn(
                        &tracker,
                        listeners,
                        &cfg,
                        services.directory.clone(),
                        services.access.clone(),
                        sign_in.clone(),
                        shutdown.clone(),
                    );
                }
                state.ready(&services, sync, sign_in);
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                return;
            }
            Err(e) if e.transient() => {
                tracing::warn!(error = %e, retry_in = ?backoff, "database unavailable; retrying");
            }
            Err(e) => {
                tracing::error!(error = %e, "the store cannot be used");
                let _ = fatal.send(e).await;
                return;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Every scheduled job of this deployment: the sync schedules, delivery (when enabled) and the
/// purges, each run by [`crate::jobs`] under its leader lease.
fn jobs(cfg: &Config, services: &Services, sync: &crate::sync::SyncService) -> Vec<crate::jobs::Job> {
    let mut jobs = crate::sync::jobs(sync);
    jobs.extend(crate::access::jobs(&services.access));
    jobs.extend(crate::access::signin::jobs(services.login.clone(), cfg.access.login_log_days));
    jobs.extend(crate::access::attendance::jobs(&services.attendance));
    jobs.extend(crate::archive::jobs(&services.archive));
    if cfg.delivery.enabled {
        let dispatcher = crate::delivery::Dispatcher::new(services.delivery.clone(), &cfg.delivery)
            .and_then(|d| d.with_mailbox(&cfg.mailbox))
            .and_then(|d| crate::delivery::jobs(Arc::new(d), &cfg.delivery, &cfg.mailbox));
        match dispatcher {
            Ok(delivery) => jobs.extend(delivery),
            Err(e) => tracing::error!(error = %e, "delivery is off: its configuration is not usable"),
        }
    }
    jobs
}

async fn watchdog(every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => { let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]); }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
    }
}
