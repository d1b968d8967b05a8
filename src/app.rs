//! Wiring: store, directory, HTTP and systemd notifications.
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

use crate::config::{Config, LogFormat, redact_url};
use crate::directory::DirectoryService;
use crate::http::{self, AppState};
use crate::store::{self, SchemaState, StoreError};

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
pub async fn open_directory(cfg: &Config) -> Result<DirectoryService, StoreOpenError> {
    let directory = open_migrated(cfg).await?;
    bootstrap(&directory, cfg).await?;
    Ok(directory)
}

/// Opens and migrates the store without creating the enterprise (for commands that set the
/// super-admin password themselves).
pub async fn open_migrated(cfg: &Config) -> Result<DirectoryService, StoreOpenError> {
    let store = store::open(&cfg.database).await.map_err(StoreOpenError::Open)?;
    if store.schema_state().await.map_err(StoreOpenError::Migrate)? == SchemaState::Ahead {
        return Err(StoreOpenError::SchemaAhead);
    }
    store.migrate().await.map_err(StoreOpenError::Migrate)?;
    store.probe_write().await.map_err(StoreOpenError::Migrate)?;
    Ok(DirectoryService::new(store, cfg.numbers.clone()))
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
        directory.ensure_enterprise(&cfg.enterprise).await.map_err(StoreOpenError::Bootstrap)?
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

    let (fatal_tx, mut fatal_rx) = tokio::sync::mpsc::channel::<StoreOpenError>(1);
    tracker.spawn(connect_store(cfg.clone(), state.clone(), shutdown.clone(), fatal_tx, tracker.clone()));
    if let Some(interval) = sd_notify::watchdog_enabled() {
        tracker.spawn(watchdog(interval / 2, shutdown.clone()));
    }

    let app = http::router(state.clone(), &cfg.http);
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
    if let Some(directory) = state.directory.get() {
        directory.store().close().await;
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
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match open_directory(&cfg).await {
            Ok(directory) => {
                tracing::info!(store = directory.store().backend(), "store ready");
                let sync = crate::sync::SyncService::new(directory.clone(), cfg.sync.ldap.clone());
                crate::jobs::spawn(&tracker, sync.clone(), shutdown.clone());
                let _ = state.sync.set(sync);
                if cfg.delivery.enabled {
                    spawn_delivery(&cfg, directory.store().clone(), &tracker, &shutdown);
                }
                let _ = state.directory.set(directory);
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

/// The outbox's dispatchers and, when a mailbox provider is set, the mailbox pushes.
fn spawn_delivery(
    cfg: &Config,
    store: std::sync::Arc<dyn crate::store::Store>,
    tracker: &TaskTracker,
    shutdown: &CancellationToken,
) {
    let dispatcher =
        crate::delivery::Dispatcher::new(store, &cfg.delivery).and_then(|d| d.with_mailbox(&cfg.mailbox));
    let d = match dispatcher {
        Ok(d) => std::sync::Arc::new(d),
        Err(e) => {
            tracing::error!(error = %e, "delivery is off: its configuration is not usable");
            return;
        }
    };
    let schedule = cfg.delivery.schedule.parse().expect("checked by Config::validate");
    tracker.spawn(crate::delivery::run_schedule(d.clone(), schedule, shutdown.clone()));
    if cfg.mailbox.provider != "none" {
        let delta = cfg.mailbox.schedule.parse().expect("checked by Config::validate");
        let full = cfg.mailbox.full_schedule.parse().expect("checked by Config::validate");
        tracker.spawn(crate::delivery::run_mailbox_schedule(d, delta, full, shutdown.clone()));
    }
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
