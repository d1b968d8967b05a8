//! The LDAP server adapter: the company's apps (the IM server, mail, wiki, VPN) bind and search
//! Roster's tree the way they use OpenLDAP or AD (read-only; the tree is in [`tree`]).
//!
//! - The wire format is `ldap3_proto`'s codec (maintained, used by lldap and kanidm; no
//!   hand-written BER). A request over [`MAX_PDU`] bytes or nested deeper than the codec's
//!   limit, or one that is not LDAP, gets a notice of disconnection and the connection closes.
//! - Bind: a service account (`cn=NAME,ou=services,BASE` and the secret `rosterd ldap-client
//!   create` printed), or a member by DN, account number, login name or `number@domain`, whose
//!   password is checked by [`SignIn`] (limits, the sign-in policy, the login log). An empty
//!   password is never an (anonymous) success; anonymous binds need `ldap_server.anonymous`.
//!   Binds from one address beyond `binds_per_second` are delayed, then refused as busy.
//! - Search: base, one-level and subtree scopes; every filter kind ([`entry`]); attribute
//!   selection; the simple paged results control; size and time limits (a service account's
//!   own, or the server's); the root DSE. A service account scoped to a unit sees that subtree's
//!   units and members (and the groups, with members outside it left out).
//! - Extended operations: StartTLS (when `tls` is set), Who am I?, and password modify for a
//!   member with a local password (their own). Add, modify, delete and modify DN answer
//!   `unwillingToPerform`.

pub mod dn;
pub mod entry;
pub mod tree;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use ldap3_proto::LdapCodec;
use ldap3_proto::control::LdapControl;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindResponse, LdapExtendedResponse, LdapMsg, LdapOp, LdapPasswordModifyRequest,
    LdapResult, LdapResultCode, LdapSearchRequest, LdapSearchScope, OID_PASSWORD_MODIFY, OID_WHOAMI,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::access::Access;
use crate::access::policy::Client;
use crate::access::signin::{Attempt, Refused, SignIn, Signed};
use crate::access::store::TokenKind;
use crate::config::{Config, LdapServerConfig};
use crate::directory::model::{Actor, Member, Source};
use crate::directory::{Change, DirectoryService, MemberPatch};
use dn::Dn;
use entry::{Entry, Selection};
use tree::{Names, Snapshot};

/// The largest request accepted, in bytes (a 1 MB filter is refused).
pub const MAX_PDU: usize = 256 * 1024;
/// The deepest BER nesting accepted (a filter nested 10,000 deep is refused).
pub(crate) const MAX_DEPTH: usize = 64;
const OID_STARTTLS: &str = "1.3.6.1.4.1.1466.20037";
const OID_NOTICE_OF_DISCONNECTION: &str = "1.3.6.1.4.1.1466.20036";
const OID_PAGED_RESULTS: &str = "1.2.840.113556.1.4.319";
/// Members read from the store at a time when a search reads them all.
const MEMBERS_PAGE: i64 = 1000;
/// How long a bind over its address's rate waits for a turn before it is refused as busy.
const THROTTLE_WAIT: Duration = Duration::from_secs(2);
/// How often the units-and-groups snapshot is checked against the directory (in the
/// background of the search that finds it due).
const SNAPSHOT_AGE: Duration = Duration::from_secs(2);

/// The server's sockets, taken at start (a port in use fails the start).
pub struct Listeners {
    plain: TcpListener,
    tls: Option<TcpListener>,
}

impl Listeners {
    /// `None` when the server is off.
    pub async fn bind(cfg: &LdapServerConfig) -> anyhow::Result<Option<Listeners>> {
        use anyhow::Context as _;
        if !cfg.enabled {
            return Ok(None);
        }
        let plain = TcpListener::bind(&cfg.listen)
            .await
            .with_context(|| format!("ldap_server.listen {}", cfg.listen))?;
        let tls = if cfg.listen_tls.is_empty() {
            None
        } else {
            Some(
                TcpListener::bind(&cfg.listen_tls)
                    .await
                    .with_context(|| format!("ldap_server.listen_tls {}", cfg.listen_tls))?,
            )
        };
        Ok(Some(Listeners { plain, tls }))
    }
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Starts serving on `listeners` until `shutdown`.
pub fn spawn(
    tracker: &TaskTracker,
    listeners: Listeners,
    cfg: &Config,
    directory: DirectoryService,
    access: Access,
    sign_in: SignIn,
    shutdown: CancellationToken,
) {
    let tls = match tls_config(&cfg.ldap_server) {
        Ok(tls) => tls,
        Err(e) => {
            tracing::error!(error = %e, "the LDAP server is off: its TLS files cannot be used");
            return;
        }
    };
    let server = Arc::new(Server {
        cfg: cfg.ldap_server.clone(),
        directory,
        access,
        sign_in,
        names: Mutex::new(None),
        snapshot: Mutex::new(None),
        refreshing: Arc::new(tokio::sync::Mutex::new(())),
        tls,
        throttle: Mutex::new(HashMap::new()),
        connections: Arc::new(tokio::sync::Semaphore::new(cfg.ldap_server.max_connections)),
    });
    let Listeners { plain, tls } = listeners;
    if let Ok(addr) = plain.local_addr() {
        tracing::info!(%addr, "LDAP server listening");
    }
    tracker.spawn(accept(server.clone(), plain, false, tracker.clone(), shutdown.clone()));
    if let Some(l) = tls {
        tracker.spawn(accept(server, l, true, tracker.clone(), shutdown));
    }
}

fn tls_config(cfg: &LdapServerConfig) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    if cfg.tls.cert_file.is_empty() {
        return Ok(None);
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let certs = CertificateDer::pem_file_iter(&cfg.tls.cert_file)
        .and_then(|c| c.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow::anyhow!("ldap_server.tls.cert_file {}: {e}", cfg.tls.cert_file))?;
    let key = PrivateKeyDer::from_pem_file(&cfg.tls.key_file)
        .map_err(|e| anyhow::anyhow!("ldap_server.tls.key_file {}: {e}", cfg.tls.key_file))?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| anyhow::anyhow!("ldap_server.tls: {e}"))?;
    Ok(Some(Arc::new(config)))
}

/// The units-and-groups snapshot, the directory generation it was built at, and when that was
/// last checked.
#[derive(Clone)]
struct Cached {
    tree: Arc<Snapshot>,
    generation: String,
    checked: Instant,
}

struct Server {
    cfg: LdapServerConfig,
    directory: DirectoryService,
    access: Access,
    sign_in: SignIn,
    /// Read from the enterprise at the first request.
    names: Mutex<Option<Arc<(Names, String)>>>,
    snapshot: Mutex<Option<Cached>>,
    refreshing: Arc<tokio::sync::Mutex<()>>,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Binds per address in the current second.
    throttle: Mutex<HashMap<IpAddr, (Instant, u32)>>,
    connections: Arc<tokio::sync::Semaphore>,
}

async fn accept(
    server: Arc<Server>,
    listener: TcpListener,
    tls: bool,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = server.connections.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "LDAP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let server = server.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let io: Box<dyn Io> = if tls {
                let Some(cfg) = server.tls.clone() else { return };
                match tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await {
                    Ok(s) => Box::new(s),
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "LDAPS handshake failed");
                        return;
                    }
                }
            } else {
                Box::new(stream)
            };
            connection(server, io, peer, tls, shutdown).await;
        });
    }
}

/// Who a connection is bound as.
#[derive(Debug, Clone)]
enum Bound {
    Nobody,
    Anonymous,
    Service { name: String, scope: Option<Uuid>, size_limit: Option<i64>, time_limit: Option<i64> },
    Member { id: Uuid, number: i64 },
}

struct Session {
    bound: Bound,
    /// The service account that last bound on this connection: the app a member's bind
    /// comes through.
    app: Option<String>,
    tls: bool,
}

enum After {
    Continue,
    Close,
    StartTls,
}

fn codec() -> LdapCodec {
    LdapCodec::new(Some(MAX_PDU), Some(MAX_DEPTH))
}

async fn connection(
    server: Arc<Server>,
    io: Box<dyn Io>,
    peer: SocketAddr,
    tls: bool,
    shutdown: CancellationToken,
) {
    let mut framed = Framed::new(io, codec());
    let mut session = Session { bound: Bound::Nobody, app: None, tls };
    let idle = Duration::from_secs(server.cfg.idle_timeout_secs);
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => {
                let _ = framed.send(notice(LdapResultCode::Unavailable, "the server is shutting down")).await;
                return;
            }
            n = tokio::time::timeout(idle, framed.next()) => n,
        };
        let msg = match next {
            Err(_) | Ok(None) => return,
            Ok(Some(Ok(msg))) => msg,
            Ok(Some(Err(e))) => {
                let why = if e.kind() == std::io::ErrorKind::OutOfMemory {
                    format!("the request is larger than {MAX_PDU} bytes")
                } else {
                    "the request is not a valid LDAP message".to_owned()
                };
                tracing::debug!(%peer, error = %e, "LDAP: bad request; disconnecting");
                metrics::counter!("roster_ldap_requests_total", "op" => "malformed").increment(1);
                let _ = framed.send(notice(LdapResultCode::ProtocolError, &why)).await;
                return;
            }
        };
        let mut out = Vec::new();
        let after = server.handle(&mut session, peer.ip(), msg, &mut out).await;
        for m in out {
            if framed.feed(m).await.is_err() {
                return;
            }
        }
        if framed.flush().await.is_err() {
            return;
        }
        match after {
            After::Continue => {}
            After::Close => return,
            After::StartTls => {
                let Some(cfg) = server.tls.clone() else { return };
                let parts = framed.into_parts();
                if !parts.read_buf.is_empty() {
                    return; // data after StartTLS before the handshake: not a TLS client
                }
                match tokio_rustls::TlsAcceptor::from(cfg).accept(parts.io).await {
                    Ok(s) => {
                        framed = Framed::new(Box::new(s) as Box<dyn Io>, codec());
                        session.tls = true;
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "StartTLS handshake failed");
                        return;
                    }
                }
            }
        }
    }
}

fn result(code: LdapResultCode, message: &str) -> LdapResult {
    LdapResult { code, matcheddn: String::new(), message: message.to_owned(), referral: Vec::new() }
}

fn notice(code: LdapResultCode, message: &str) -> LdapMsg {
    LdapMsg::new(
        0,
        LdapOp::ExtendedResponse(LdapExtendedResponse {
            res: result(code, message),
            name: Some(OID_NOTICE_OF_DISCONNECTION.to_owned()),
            value: None,
        }),
    )
}

fn extended(
    id: i32,
    code: LdapResultCode,
    message: &str,
    name: Option<&str>,
    value: Option<Vec<u8>>,
) -> LdapMsg {
    LdapMsg::new(
        id,
        LdapOp::ExtendedResponse(LdapExtendedResponse {
            res: result(code, message),
            name: name.map(str::to_owned),
            value,
        }),
    )
}

impl Server {
    async fn names(&self) -> Result<Arc<(Names, String)>, LdapResult> {
        if let Some(n) = self.names.lock().expect("not poisoned").clone() {
            return Ok(n);
        }
        let e = self
            .directory
            .store()
            .enterprise()
            .await
            .ok()
            .flatten()
            .ok_or_else(|| result(LdapResultCode::Unavailable, "the directory is not available"))?;
        let base = self.cfg.base(&e.mail_domain);
        let n = Arc::new((Names::new(&base), e.name.clone()));
        *self.names.lock().expect("not poisoned") = Some(n.clone());
        Ok(n)
    }

    /// The units and groups. The first search loads them; after that a search that finds the
    /// snapshot older than [`SNAPSHOT_AGE`] starts a check in the background (a few index
    /// lookups: [`crate::directory::store::DirectoryRead::tree_generation`]) and goes on with
    /// the snapshot it has; the check rebuilds it only when the directory changed.
    async fn snapshot(self: &Arc<Self>, names: &Names) -> Result<Arc<Snapshot>, LdapResult> {
        let current = self.snapshot.lock().expect("not poisoned").clone();
        match current {
            Some(s) => {
                if s.checked.elapsed() >= SNAPSHOT_AGE
                    && let Ok(guard) = self.refreshing.clone().try_lock_owned()
                {
                    let (server, names) = (self.clone(), names.clone());
                    tokio::spawn(async move {
                        let _guard = guard;
                        if let Err(r) = server.refresh(&names).await {
                            tracing::warn!(error = %r.message, "LDAP server: the tree could not be refreshed");
                        }
                    });
                }
                Ok(s.tree.clone())
            }
            None => {
                let _guard = self.refreshing.lock().await;
                if let Some(s) = self.snapshot.lock().expect("not poisoned").as_ref() {
                    return Ok(s.tree.clone());
                }
                self.refresh(names).await
            }
        }
    }

    /// Rebuilds the snapshot when the directory changed since it was built.
    async fn refresh(&self, names: &Names) -> Result<Arc<Snapshot>, LdapResult> {
        let d = self.directory.store();
        let unavailable = |e: crate::store::StoreError| {
            tracing::error!(error = %e, "LDAP server: the store could not be read");
            result(LdapResultCode::Unavailable, "the directory is not available")
        };
        let generation = d.tree_generation().await.map_err(unavailable)?;
        let current = self.snapshot.lock().expect("not poisoned").clone();
        if let Some(mut s) = current
            && s.generation == generation
        {
            s.checked = Instant::now();
            let tree = s.tree.clone();
            *self.snapshot.lock().expect("not poisoned") = Some(s);
            return Ok(tree);
        }
        let units = d.org_units_all().await.map_err(unavailable)?;
        let (groups, memberships) = d.groups_all().await.map_err(unavailable)?;
        let unit_members = d.unit_memberships().await.map_err(unavailable)?;
        let tree = Arc::new(Snapshot::new(names, units, groups, memberships, unit_members));
        *self.snapshot.lock().expect("not poisoned") =
            Some(Cached { tree: tree.clone(), generation, checked: Instant::now() });
        Ok(tree)
    }

    async fn handle(
        self: &Arc<Self>,
        session: &mut Session,
        peer: IpAddr,
        msg: LdapMsg,
        out: &mut Vec<LdapMsg>,
    ) -> After {
        let id = msg.msgid;
        let op_name = match &msg.op {
            LdapOp::BindRequest(_) => "bind",
            LdapOp::SearchRequest(_) => "search",
            LdapOp::ExtendedRequest(_) => "extended",
            LdapOp::UnbindRequest => "unbind",
            _ => "other",
        };
        metrics::counter!("roster_ldap_requests_total", "op" => op_name).increment(1);
        // A critical control we do not know must fail the operation (RFC 4511 4.1.11).
        let unknown_critical = msg.ctrl.iter().any(|c| match c {
            LdapControl::Unknown { criticality, .. } => *criticality,
            _ => false,
        });
        match msg.op {
            LdapOp::UnbindRequest => After::Close,
            LdapOp::AbandonRequest(_) => After::Continue,
            _ if unknown_critical => {
                let r = result(
                    LdapResultCode::UnavailableCriticalExtension,
                    "a critical control is not supported",
                );
                out.push(response_for(id, &msg.op, r));
                After::Continue
            }
            LdapOp::BindRequest(req) => {
                let r = self.bind(session, peer, req).await;
                out.push(LdapMsg::new(
                    id,
                    LdapOp::BindResponse(LdapBindResponse { res: r, saslcreds: None }),
                ));
                After::Continue
            }
            LdapOp::SearchRequest(req) => {
                let r = self.search(session, id, &req, &msg.ctrl, out).await;
                out.push(r);
                After::Continue
            }
            LdapOp::ExtendedRequest(req) => match req.name.as_str() {
                OID_WHOAMI => {
                    let authz = match self.names().await {
                        Ok(n) => self.authz_id(&session.bound, &n.0),
                        Err(_) => String::new(),
                    };
                    out.push(extended(id, LdapResultCode::Success, "", None, Some(authz.into_bytes())));
                    After::Continue
                }
                OID_STARTTLS if session.tls => {
                    out.push(extended(
                        id,
                        LdapResultCode::OperationsError,
                        "TLS is already on",
                        Some(OID_STARTTLS),
                        None,
                    ));
                    After::Continue
                }
                OID_STARTTLS if self.tls.is_some() => {
                    out.push(extended(id, LdapResultCode::Success, "", Some(OID_STARTTLS), None));
                    After::StartTls
                }
                OID_STARTTLS => {
                    out.push(extended(
                        id,
                        LdapResultCode::ProtocolError,
                        "StartTLS is not configured",
                        Some(OID_STARTTLS),
                        None,
                    ));
                    After::Continue
                }
                OID_PASSWORD_MODIFY => {
                    let r = self.password_modify(session, &req).await;
                    out.push(LdapMsg::new(
                        id,
                        LdapOp::ExtendedResponse(LdapExtendedResponse { res: r, name: None, value: None }),
                    ));
                    After::Continue
                }
                _ => {
                    out.push(extended(
                        id,
                        LdapResultCode::ProtocolError,
                        "unsupported extended operation",
                        None,
                        None,
                    ));
                    After::Continue
                }
            },
            op @ (LdapOp::AddRequest(_)
            | LdapOp::ModifyRequest(_)
            | LdapOp::DelRequest(_)
            | LdapOp::ModifyDNRequest(_)) => {
                let r = result(
                    LdapResultCode::UnwillingToPerform,
                    "Roster's LDAP server is read-only: change the directory through Roster",
                );
                out.push(response_for(id, &op, r));
                After::Continue
            }
            LdapOp::CompareRequest(_) => {
                out.push(LdapMsg::new(
                    id,
                    LdapOp::CompareResult(result(
                        LdapResultCode::UnwillingToPerform,
                        "compare is not supported; search instead",
                    )),
                ));
                After::Continue
            }
            _ => {
                out.push(notice(LdapResultCode::ProtocolError, "not a request"));
                After::Close
            }
        }
    }

    fn authz_id(&self, bound: &Bound, names: &Names) -> String {
        match bound {
            Bound::Nobody | Bound::Anonymous => String::new(),
            Bound::Service { name, .. } => format!("dn:{}", names.service_dn(name)),
            Bound::Member { number, .. } => format!("dn:{}", names.member_dn(*number)),
        }
    }

    /// Waits while `peer` is over its binds per second; false when it is still over after
    /// [`THROTTLE_WAIT`] (busy).
    async fn throttle(&self, peer: IpAddr) -> bool {
        let limit = self.cfg.binds_per_second;
        let started = Instant::now();
        loop {
            let wait = {
                let mut t = self.throttle.lock().expect("not poisoned");
                if t.len() > 10_000 {
                    t.retain(|_, (at, _)| at.elapsed() < Duration::from_secs(1));
                }
                let slot = t.entry(peer).or_insert((Instant::now(), 0));
                if slot.0.elapsed() >= Duration::from_secs(1) {
                    *slot = (Instant::now(), 0);
                }
                if slot.1 < limit {
                    slot.1 += 1;
                    None
                } else {
                    Some(Duration::from_secs(1).saturating_sub(slot.0.elapsed()))
                }
            };
            match wait {
                None => return true,
                Some(_) if started.elapsed() >= THROTTLE_WAIT => return false,
                Some(d) => tokio::time::sleep(d.max(Duration::from_millis(10))).await,
            }
        }
    }

    async fn bind(
        &self,
        session: &mut Session,
        peer: IpAddr,
        req: ldap3_proto::proto::LdapBindRequest,
    ) -> LdapResult {
        if req.version != 3 {
            return result(LdapResultCode::ProtocolError, "only LDAP version 3 is supported");
        }
        let password = match &req.cred {
            LdapBindCred::Simple(p) => p.clone(),
            _ => return result(LdapResultCode::AuthMethodNotSupported, "only simple binds are supported"),
        };
        // A failed bind leaves the connection anonymous (RFC 4511 4.2.1).
        session.bound = Bound::Nobody;
        let names = match self.names().await {
            Ok(n) => n,
            Err(r) => return r,
        };
        let names = &names.0;
        let dn_text = req.dn.trim();
        if dn_text.is_empty() && password.is_empty() {
            if self.cfg.anonymous {
                session.bound = Bound::Anonymous;
                return result(LdapResultCode::Success, "");
            }
            return result(LdapResultCode::InappropriateAuthentication, "anonymous binds are not allowed");
        }
        if !self.throttle(peer).await {
            return result(LdapResultCode::Busy, "too many binds from this address; slow down");
        }
        let invalid = || result(LdapResultCode::InvalidCredentials, "wrong name or password");
        // A service account?
        if let Some(dn) = Dn::parse(dn_text)
            && dn.parent() == names.services
            && let Some((ty, name)) = dn.0.first()
            && ty == "cn"
        {
            if password.is_empty() {
                return result(LdapResultCode::UnwillingToPerform, "a bind with a name needs a password");
            }
            return match self.access.authenticate_token(&password).await {
                Ok(Some(t)) if t.kind == TokenKind::Ldap && t.name.to_lowercase() == *name => {
                    self.sign_in.log_app_bind(&t.name, Some(peer), true).await;
                    session.app = Some(t.name.clone());
                    session.bound = Bound::Service {
                        name: t.name,
                        scope: t.scope_unit_id,
                        size_limit: t.size_limit,
                        time_limit: t.time_limit_secs,
                    };
                    result(LdapResultCode::Success, "")
                }
                Ok(_) => {
                    self.sign_in.log_app_bind(name, Some(peer), false).await;
                    invalid()
                }
                Err(e) => {
                    tracing::error!(error = %e, "LDAP bind: the store could not be read");
                    result(LdapResultCode::Unavailable, "the directory is not available")
                }
            };
        }
        // A member: by DN under ou=people, or the account as typed.
        let account = match Dn::parse(dn_text) {
            Some(dn) if dn.0.len() > 1 => match (dn.parent() == names.people, dn.0.first()) {
                (true, Some((ty, v))) if ty == "uid" => v.clone(),
                _ => return invalid(),
            },
            _ => dn_text.to_owned(),
        };
        let attempt = Attempt {
            account: &account,
            password: &password,
            client: Client::Ldap(session.app.clone().unwrap_or_default()),
            ip: None,
            console: false,
        };
        match self.sign_in.attempt(&attempt).await {
            Ok(Ok(Signed::Member(m))) => {
                session.bound = Bound::Member { id: m.id, number: m.account_number };
                result(LdapResultCode::Success, "")
            }
            Ok(Ok(Signed::Super)) | Ok(Err(Refused::Failed { .. })) => {
                if password.is_empty() {
                    // RFC 4513 5.1.2: an unauthenticated bind is refused, never a success.
                    return result(LdapResultCode::UnwillingToPerform, "a bind with a name needs a password");
                }
                invalid()
            }
            Ok(Err(Refused::Denied(rule))) => {
                let why = match rule {
                    Some(r) => format!("the sign-in policy does not allow this sign-in (rule {r})"),
                    None => "the sign-in policy does not allow this sign-in (the default)".to_owned(),
                };
                result(LdapResultCode::InvalidCredentials, &why)
            }
            Ok(Err(Refused::Locked)) => {
                result(LdapResultCode::InvalidCredentials, "too many failed sign-ins; try again later")
            }
            Ok(Err(Refused::Busy)) => result(LdapResultCode::Busy, "too many sign-ins at once; retry"),
            Ok(Err(Refused::DirectoryDown)) => {
                result(LdapResultCode::Unavailable, "the member's directory could not be asked")
            }
            Err(e) => {
                tracing::error!(error = %e, "LDAP bind failed");
                result(LdapResultCode::Unavailable, "the directory is not available")
            }
        }
    }

    async fn password_modify(
        &self,
        session: &Session,
        req: &ldap3_proto::proto::LdapExtendedRequest,
    ) -> LdapResult {
        let Bound::Member { id, .. } = session.bound else {
            return result(
                LdapResultCode::InsufficentAccessRights,
                "bind as the member whose password changes",
            );
        };
        let Ok(p) = LdapPasswordModifyRequest::try_from(req) else {
            return result(LdapResultCode::ProtocolError, "not a password modify request");
        };
        let d = self.directory.store();
        let member = match d.member(id).await {
            Ok(Some(m)) if tree::visible(&m) => m,
            _ => return result(LdapResultCode::InsufficentAccessRights, "the member can no longer sign in"),
        };
        if let Some(user) = p.user_identity.as_deref().filter(|u| !u.is_empty()) {
            let names = match self.names().await {
                Ok(n) => n,
                Err(r) => return r,
            };
            let own = Dn::parse(user) == Dn::parse(&names.0.member_dn(member.account_number))
                || user == member.account_number.to_string()
                || user.eq_ignore_ascii_case(&member.login_name);
            if !own {
                return result(
                    LdapResultCode::InsufficentAccessRights,
                    "a member changes only their own password",
                );
            }
        }
        if member.source.as_str().starts_with("ldap:") {
            return result(
                LdapResultCode::UnwillingToPerform,
                "this member's password is kept by their own directory; change it there",
            );
        }
        let Some(new) = p.new_password.filter(|n| !n.is_empty()) else {
            return result(LdapResultCode::UnwillingToPerform, "give the new password (ldappasswd -s)");
        };
        if let Some(old) = p.old_password.as_deref() {
            let hash = d.member_password_hash(id).await.ok().flatten().unwrap_or_default();
            match crate::access::signin::check_hash(old, hash).await {
                Ok(true) => {}
                Ok(false) => return result(LdapResultCode::InvalidCredentials, "the old password is wrong"),
                Err(()) => return result(LdapResultCode::Busy, "too many sign-ins at once; retry"),
            }
        }
        if let Err(e) = crate::directory::validate::password(&new) {
            return result(LdapResultCode::ConstraintViolation, &e.to_string());
        }
        // The member changes their own password: a person at a keyboard, as in the console's
        // own password page (which may set the password of a member any source owns).
        let actor = Actor::new(Source::console(), format!("{} (LDAP password modify)", member.login_name));
        let patch = MemberPatch { password: Some(crate::secret::Secret(new)), ..Default::default() };
        match self.directory.apply_one(&actor, Change::UpdateMember { id, patch }).await {
            Ok(_) => result(LdapResultCode::Success, ""),
            Err(e) => {
                tracing::warn!(error = %e, "LDAP password modify refused");
                result(LdapResultCode::UnwillingToPerform, &e.to_string())
            }
        }
    }

    /// Runs a search, pushing its entries to `out`; returns the SearchResultDone.
    async fn search(
        self: &Arc<Self>,
        session: &Session,
        id: i32,
        req: &LdapSearchRequest,
        controls: &[LdapControl],
        out: &mut Vec<LdapMsg>,
    ) -> LdapMsg {
        let done = |r: LdapResult, ctrl: Vec<LdapControl>| {
            LdapMsg::new_with_ctrls(id, LdapOp::SearchResultDone(r), ctrl)
        };
        let started = Instant::now();
        let Some(base) = Dn::parse(&req.base) else {
            return done(result(LdapResultCode::InvalidDNSyntax, "the base is not a DN"), vec![]);
        };
        // The root DSE is for everyone (clients read it before binding).
        if base.0.is_empty() && req.scope == LdapSearchScope::Base {
            let names = self.names().await.ok();
            let root = self.root_dse(names.as_ref().map(|n| n.0.base.as_str()).unwrap_or(""));
            if root.matches(&req.filter) {
                out.push(LdapMsg::new(
                    id,
                    LdapOp::SearchResultEntry(root.to_result(&Selection::new(&req.attrs), req.typesonly)),
                ));
            }
            return done(result(LdapResultCode::Success, ""), vec![]);
        }
        let (scope, size_limit, time_limit) = match &session.bound {
            Bound::Nobody if !self.cfg.anonymous => {
                return done(result(LdapResultCode::InsufficentAccessRights, "bind first"), vec![]);
            }
            Bound::Nobody | Bound::Anonymous | Bound::Member { .. } => {
                (None, self.cfg.size_limit, self.cfg.time_limit_secs)
            }
            Bound::Service { scope, size_limit, time_limit, .. } => (
                *scope,
                size_limit.unwrap_or(self.cfg.size_limit),
                time_limit.unwrap_or(self.cfg.time_limit_secs),
            ),
        };
        let names = match self.names().await {
            Ok(n) => n,
            Err(r) => return done(r, vec![]),
        };
        let (names, organization) = (&names.0, &names.1);
        if !base.is_under(&names.base_dn) {
            return done(
                result(LdapResultCode::NoSuchObject, "the base is outside this server's tree"),
                vec![],
            );
        }
        let snapshot = match self.snapshot(names).await {
            Ok(s) => s,
            Err(r) => return done(r, vec![]),
        };
        let paging = controls.iter().find_map(|c| match c {
            LdapControl::SimplePagedResults { size, cookie } => Some((*size, cookie.clone())),
            _ => None,
        });
        // Limits: the client's asked limit within the server's; paging lifts the size limit.
        let size_limit = if paging.is_some() {
            i64::MAX
        } else if req.sizelimit > 0 {
            (req.sizelimit as i64).min(size_limit)
        } else {
            size_limit
        };
        let time_limit = if req.timelimit > 0 { (req.timelimit as i64).min(time_limit) } else { time_limit };
        let deadline = started + Duration::from_secs(time_limit.max(1) as u64);
        let fingerprint = search_fingerprint(req);
        let (page_size, mut cursor) = match &paging {
            Some((size, cookie)) if cookie.is_empty() => {
                (if *size <= 0 { i64::MAX } else { *size }, Cursor::start())
            }
            Some((size, cookie)) => match Cursor::decode(cookie, fingerprint) {
                Some(c) => (if *size <= 0 { 0 } else { *size }, c),
                None => {
                    return done(
                        result(
                            LdapResultCode::UnwillingToPerform,
                            "the paging cookie is not from this search",
                        ),
                        vec![],
                    );
                }
            },
            None => (i64::MAX, Cursor::start()),
        };
        if page_size == 0 {
            // Size 0 with a cookie abandons the paged search.
            let ctrl = LdapControl::SimplePagedResults { size: 0, cookie: Vec::new() };
            return done(result(LdapResultCode::Success, ""), vec![ctrl]);
        }
        let selection = Selection::new(&req.attrs);
        let wanted = entry::Wanted::new(&selection, &req.filter);
        let mut sent: i64 = 0;
        let in_scope = |d: &Dn| -> bool {
            match req.scope {
                LdapSearchScope::Base => *d == base,
                LdapSearchScope::OneLevel => d.0.len() == base.0.len() + 1 && d.is_under(&base),
                LdapSearchScope::Subtree => d.is_under(&base),
                LdapSearchScope::Children => d.0.len() > base.0.len() && d.is_under(&base),
            }
        };
        let mut found_base = false;
        // Sends `$entry` if it is in scope (`$scoped`, or worked out from its DN) and matches;
        // moves the cursor past it; stops the search at a full page, the size limit, the time
        // limit.
        macro_rules! emit {
            ($entry:expr, $next:expr) => {{
                let e: Entry = $entry;
                let dn = Dn::parse(&e.dn);
                if !found_base && dn.as_ref() == Some(&base) {
                    found_base = true;
                }
                let scoped = dn.is_some_and(|d| in_scope(&d));
                emit!(@send e, $next, scoped)
            }};
            ($entry:expr, $next:expr, $scoped:expr) => {{
                let e: Entry = $entry;
                emit!(@send e, $next, $scoped)
            }};
            (@send $e:ident, $next:expr, $scoped:expr) => {{
                cursor = $next;
                if $scoped && $e.matches(&req.filter) {
                    if sent >= size_limit {
                        return done(
                            result(
                                LdapResultCode::SizeLimitExceeded,
                                "size limit exceeded; use the paged results control",
                            ),
                            vec![],
                        );
                    }
                    out.push(LdapMsg::new(
                        id,
                        LdapOp::SearchResultEntry($e.to_result(&selection, req.typesonly)),
                    ));
                    sent += 1;
                    if sent >= page_size {
                        // A full page: the cookie goes on after this entry (the last page may
                        // come back empty).
                        let ctrl =
                            LdapControl::SimplePagedResults { size: 0, cookie: cursor.encode(fingerprint) };
                        return done(result(LdapResultCode::Success, ""), vec![ctrl]);
                    }
                }
                if Instant::now() > deadline {
                    return done(result(LdapResultCode::TimeLimitExceeded, "time limit exceeded"), vec![]);
                }
            }};
        }
        // Phase 0: the base entry and the containers.
        let fixed = tree::fixed_entries(names, organization);
        while cursor.phase == 0 && (cursor.at as usize) < fixed.len() {
            let i = cursor.at as usize;
            emit!(fixed[i].clone(), Cursor { phase: 0, at: cursor.at + 1 });
        }
        if cursor.phase == 0 {
            cursor = Cursor { phase: 1, at: 0 };
        }
        // Phase 1: units (within a scoped client's subtree).
        let units_wanted = names.units.is_under(&base) || base.is_under(&names.units);
        if units_wanted {
            while cursor.phase == 1 && (cursor.at as usize) < snapshot.units.len() {
                let u = &snapshot.units[cursor.at as usize];
                let next = Cursor { phase: 1, at: cursor.at + 1 };
                if scope.is_none_or(|s| snapshot.unit_under(u.id, s)) {
                    emit!(snapshot.unit_entry(u), next);
                } else {
                    cursor = next;
                }
            }
        }
        if cursor.phase == 1 {
            cursor = Cursor { phase: 2, at: 0 };
        }
        // Phase 2: groups (a scoped client sees only its members in them).
        let groups_wanted = names.groups.is_under(&base) || base.is_under(&names.groups);
        if groups_wanted {
            let visible_numbers = match scope {
                Some(_) => Some(self.scoped_numbers(&snapshot, scope).await),
                None => None,
            };
            while cursor.phase == 2 && (cursor.at as usize) < snapshot.groups.len() {
                let (g, ms) = &snapshot.groups[cursor.at as usize];
                let next = Cursor { phase: 2, at: cursor.at + 1 };
                let ms: Vec<i64> = match &visible_numbers {
                    Some(Ok(v)) => ms.iter().copied().filter(|n| v.contains(n)).collect(),
                    Some(Err(r)) => return done(r.clone(), vec![]),
                    None => ms.clone(),
                };
                emit!(snapshot.group_entry(names, g, &ms), next);
            }
        }
        if cursor.phase == 2 {
            cursor = Cursor { phase: 3, at: 0 };
        }
        // Phase 3: people, by account number.
        let people_wanted = names.people.is_under(&base) || base.is_under(&names.people);
        // Whether a member's entry (uid=N,ou=people,BASE) is in scope, worked out once: when the
        // base is a member's own DN, the lookup found just that member.
        let member_scoped = if base.parent() == names.people {
            matches!(req.scope, LdapSearchScope::Base | LdapSearchScope::Subtree)
        } else {
            match req.scope {
                LdapSearchScope::Base => false,
                LdapSearchScope::OneLevel => base == names.people,
                LdapSearchScope::Subtree | LdapSearchScope::Children => true,
            }
        };
        if people_wanted {
            let d = self.directory.store();
            // One member by DN or by an equality every match must have: look it up.
            let lookup: Option<Vec<Member>> = match self.people_lookup(names, &base, &req.filter).await {
                Ok(l) => l,
                Err(r) => return done(r, vec![]),
            };
            if let Some(ms) = lookup {
                // An app looking one account up before a bind: a member who may not sign in
                // is not returned, and the login log records where the attempt ended.
                if let (Bound::Service { name, .. }, [m]) = (&session.bound, ms.as_slice())
                    && !tree::visible(m)
                {
                    self.sign_in.log_inactive_lookup(m, name).await;
                }
                let after = cursor.at;
                for m in ms.into_iter().filter(|m| m.account_number > after) {
                    let next = Cursor { phase: 3, at: m.account_number };
                    if tree::visible(&m) && snapshot.member_in(&m, scope) {
                        // The base is this member's DN when the lookup came from it.
                        found_base |= base.parent() == names.people;
                        emit!(snapshot.member_entry(names, &m, &wanted), next, member_scoped);
                    }
                }
            } else {
                loop {
                    let page = match d
                        .members_page(cursor.at, MEMBERS_PAGE.min(page_size.saturating_sub(sent).max(100)))
                        .await
                    {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::error!(error = %e, "LDAP search: the store could not be read");
                            return done(
                                result(LdapResultCode::Unavailable, "the directory is not available"),
                                vec![],
                            );
                        }
                    };
                    if page.is_empty() {
                        break;
                    }
                    for m in page {
                        let next = Cursor { phase: 3, at: m.account_number };
                        if tree::visible(&m) && snapshot.member_in(&m, scope) {
                            emit!(snapshot.member_entry(names, &m, &wanted), next, member_scoped);
                        } else {
                            cursor = next;
                        }
                    }
                }
            }
        }
        if !found_base && req.scope != LdapSearchScope::Base && !self.exists(names, &snapshot, &base).await {
            return done(result(LdapResultCode::NoSuchObject, "no such entry"), vec![]);
        }
        if !found_base
            && req.scope == LdapSearchScope::Base
            && sent == 0
            && !self.exists(names, &snapshot, &base).await
        {
            return done(result(LdapResultCode::NoSuchObject, "no such entry"), vec![]);
        }
        let ctrl = if paging.is_some() {
            vec![LdapControl::SimplePagedResults { size: 0, cookie: Vec::new() }]
        } else {
            vec![]
        };
        done(result(LdapResultCode::Success, ""), ctrl)
    }

    /// Members found without reading them all: the base is one member's DN, or the filter
    /// requires `uid`, `rosterAccountNumber`, `rosterLoginName` or `entryUUID` to equal a
    /// value. `None`: read them all.
    async fn people_lookup(
        &self,
        names: &Names,
        base: &Dn,
        filter: &ldap3_proto::proto::LdapFilter,
    ) -> Result<Option<Vec<Member>>, LdapResult> {
        let d = self.directory.store();
        let unavailable = |e: crate::store::StoreError| {
            tracing::error!(error = %e, "LDAP search: the store could not be read");
            result(LdapResultCode::Unavailable, "the directory is not available")
        };
        let number = if base.parent() == names.people {
            match base.0.first() {
                Some((ty, v)) if ty == "uid" => Some(v.clone()),
                _ => return Ok(Some(Vec::new())),
            }
        } else {
            entry::required_equality(filter, "uid")
                .or_else(|| entry::required_equality(filter, "rosterAccountNumber"))
                .map(str::to_owned)
        };
        if let Some(n) = number {
            let Ok(n) = n.trim().parse::<i64>() else { return Ok(Some(Vec::new())) };
            return Ok(Some(d.member_by_number(n).await.map_err(unavailable)?.into_iter().collect()));
        }
        if let Some(login) = entry::required_equality(filter, "rosterLoginName") {
            return Ok(Some(
                d.member_by_login(&login.trim().to_lowercase())
                    .await
                    .map_err(unavailable)?
                    .into_iter()
                    .collect(),
            ));
        }
        if let Some(id) = entry::required_equality(filter, "entryUUID") {
            let Ok(id) = Uuid::parse_str(id.trim()) else { return Ok(Some(Vec::new())) };
            return Ok(Some(d.member(id).await.map_err(unavailable)?.into_iter().collect()));
        }
        Ok(None)
    }

    /// The account numbers a scoped client may see (for its groups' member lists).
    async fn scoped_numbers(
        &self,
        snapshot: &Snapshot,
        scope: Option<Uuid>,
    ) -> Result<std::collections::HashSet<i64>, LdapResult> {
        let d = self.directory.store();
        let mut out = std::collections::HashSet::new();
        let mut after = 0;
        loop {
            let page = d.members_page(after, 1000).await.map_err(|e| {
                tracing::error!(error = %e, "LDAP search: the store could not be read");
                result(LdapResultCode::Unavailable, "the directory is not available")
            })?;
            let Some(last) = page.last() else { break };
            after = last.account_number;
            out.extend(
                page.iter()
                    .filter(|m| tree::visible(m) && snapshot.member_in(m, scope))
                    .map(|m| m.account_number),
            );
        }
        Ok(out)
    }

    /// Whether `dn` names an entry (for `noSuchObject` when a search found nothing).
    async fn exists(&self, names: &Names, snapshot: &Snapshot, dn: &Dn) -> bool {
        if tree::fixed_entries(names, "").iter().any(|e| Dn::parse(&e.dn).as_ref() == Some(dn)) {
            return true;
        }
        if dn.is_under(&names.units) {
            return snapshot
                .units
                .iter()
                .any(|u| snapshot.unit_dn(u.id).and_then(Dn::parse).as_ref() == Some(dn));
        }
        if dn.parent() == names.groups {
            return snapshot
                .groups
                .iter()
                .any(|(g, _)| Dn::parse(&names.group_dn(g.id)).as_ref() == Some(dn));
        }
        if dn.parent() == names.people
            && let Some((_, v)) = dn.0.first()
            && let Ok(n) = v.parse::<i64>()
        {
            return matches!(self.directory.store().member_by_number(n).await, Ok(Some(m)) if tree::visible(&m));
        }
        false
    }

    fn root_dse(&self, base: &str) -> Entry {
        let mut e = Entry::new(String::new());
        let mut extensions = vec![OID_WHOAMI.to_owned(), OID_PASSWORD_MODIFY.to_owned()];
        if self.tls.is_some() {
            extensions.push(OID_STARTTLS.to_owned());
        }
        e.set("objectClass", vec!["top".into()])
            .set("namingContexts", if base.is_empty() { vec![] } else { vec![base.to_owned()] })
            .one("supportedLDAPVersion", "3")
            .set("supportedControl", vec![OID_PAGED_RESULTS.to_owned()])
            .set("supportedExtension", extensions)
            .set("supportedSASLMechanisms", vec![])
            .one("vendorName", "Roster")
            .one("vendorVersion", env!("CARGO_PKG_VERSION"));
        e
    }
}

/// The response to `op` carrying `r` (for refusals).
fn response_for(id: i32, op: &LdapOp, r: LdapResult) -> LdapMsg {
    let op = match op {
        LdapOp::BindRequest(_) => LdapOp::BindResponse(LdapBindResponse { res: r, saslcreds: None }),
        LdapOp::SearchRequest(_) => LdapOp::SearchResultDone(r),
        LdapOp::ModifyRequest(_) => LdapOp::ModifyResponse(r),
        LdapOp::AddRequest(_) => LdapOp::AddResponse(r),
        LdapOp::DelRequest(_) => LdapOp::DelResponse(r),
        LdapOp::ModifyDNRequest(_) => LdapOp::ModifyDNResponse(r),
        LdapOp::CompareRequest(_) => LdapOp::CompareResult(r),
        _ => LdapOp::ExtendedResponse(LdapExtendedResponse { res: r, name: None, value: None }),
    };
    LdapMsg::new(id, op)
}

/// Where a paged search goes on: the phase (0 fixed entries, 1 units, 2 groups, 3 people) and
/// the position in it (an index, or the last account number sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    phase: u8,
    at: i64,
}

impl Cursor {
    fn start() -> Cursor {
        Cursor { phase: 0, at: 0 }
    }

    fn encode(&self, fingerprint: u64) -> Vec<u8> {
        format!("r1:{fingerprint:016x}:{}:{}", self.phase, self.at).into_bytes()
    }

    pub(crate) fn decode(cookie: &[u8], fingerprint: u64) -> Option<Cursor> {
        let s = std::str::from_utf8(cookie).ok()?;
        let mut parts = s.split(':');
        if parts.next()? != "r1" || u64::from_str_radix(parts.next()?, 16).ok()? != fingerprint {
            return None;
        }
        let phase = parts.next()?.parse().ok().filter(|p| *p <= 3)?;
        let at = parts.next()?.parse().ok()?;
        Some(Cursor { phase, at })
    }
}

/// Ties a paging cookie to its search (base, scope, filter).
pub(crate) fn search_fingerprint(req: &LdapSearchRequest) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    req.base.to_lowercase().hash(&mut h);
    (req.scope.clone() as i64).hash(&mut h);
    req.filter.hash(&mut h);
    h.finish()
}
