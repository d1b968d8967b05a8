//! Reading an LDAP / AD source: one connection per run, a timeout on every operation, paged
//! searches. Any failure (connection dropped mid-page, size limit, referral, timeout) fails the
//! whole read: a partial result is never passed on, so it can never look like "everybody left".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry};

use super::SyncError;
use crate::config::LdapSource;

/// An entry with lower-cased attribute names.
#[derive(Debug, Clone, Default)]
pub struct RawEntry {
    pub dn: String,
    pub attrs: HashMap<String, Vec<String>>,
    pub bin: HashMap<String, Vec<Vec<u8>>>,
}

impl RawEntry {
    pub fn first(&self, name: &str) -> Option<&str> {
        self.attrs
            .get(&name.to_lowercase())
            .and_then(|v| v.first())
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
    pub fn all(&self, name: &str) -> &[String] {
        self.attrs.get(&name.to_lowercase()).map(Vec::as_slice).unwrap_or(&[])
    }
}

fn tls_config(ca_file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, SyncError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| SyncError::Config(format!("ca_file {}: {e}", ca_file.display())))?;
    for cert in certs {
        let cert = cert.map_err(|e| SyncError::Config(format!("ca_file {}: {e}", ca_file.display())))?;
        roots.add(cert).map_err(|e| SyncError::Config(format!("ca_file {}: {e}", ca_file.display())))?;
    }
    Ok(Arc::new(rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth()))
}

/// Connects and binds. The connection's driver runs until the handle is dropped.
pub async fn connect(src: &LdapSource) -> Result<Ldap, SyncError> {
    let timeout = Duration::from_secs(src.timeout_secs);
    let mut settings = LdapConnSettings::new().set_conn_timeout(timeout).set_starttls(src.starttls);
    if let Some(ca) = &src.ca_file {
        settings = settings.set_config(tls_config(ca)?);
    }
    let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &src.url)
        .await
        .map_err(|e| SyncError::Read(format!("cannot connect to {}: {e}", src.url)))?;
    ldap3::drive!(conn);
    if let Some(dn) = &src.bind_dn {
        let password = src.bind_password.as_deref().unwrap_or("");
        ldap.with_timeout(timeout)
            .simple_bind(dn, password)
            .await
            .and_then(|r| r.success())
            .map_err(|e| SyncError::Read(format!("bind as {dn} failed: {e}")))?;
    }
    Ok(ldap)
}

/// All entries under `base` matching `filter`, page by page. Fails on any error, including a
/// referral or a size limit.
pub async fn search(
    ldap: &mut Ldap,
    src: &LdapSource,
    base: &str,
    filter: &str,
    attrs: &[String],
) -> Result<Vec<RawEntry>, SyncError> {
    let timeout = Duration::from_secs(src.timeout_secs);
    let adapters: Vec<Box<dyn ldap3::adapters::Adapter<_, _>>> =
        vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(src.page_size))];
    let mut stream = ldap
        .with_timeout(timeout)
        .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs.to_vec())
        .await
        .map_err(|e| SyncError::Read(format!("search under {base} failed: {e}")))?;
    let mut out = Vec::new();
    loop {
        let next = tokio::time::timeout(timeout, stream.next())
            .await
            .map_err(|_| SyncError::Read(format!("search under {base} timed out")))?
            .map_err(|e| SyncError::Read(format!("search under {base} failed: {e}")))?;
        let Some(entry) = next else { break };
        if entry.is_ref() {
            return Err(SyncError::Read(format!("search under {base} returned a referral")));
        }
        let e = SearchEntry::construct(entry);
        out.push(RawEntry {
            dn: e.dn,
            attrs: e.attrs.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect(),
            bin: e.bin_attrs.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect(),
        });
    }
    let result = stream.finish().await;
    result.success().map_err(|e| SyncError::Read(format!("search under {base} ended badly: {e}")))?;
    Ok(out)
}

/// What a content-sync (RFC 4533 refreshOnly) search returned.
#[derive(Debug, Default)]
pub struct SyncRead {
    /// Entries added or changed (all of them on a read without a cookie).
    pub entries: Vec<RawEntry>,
    /// Anchors (entryUUIDs) the server says were deleted.
    pub deleted: Vec<String>,
    /// When the server used the present phase: every entry still there. Anything else of the
    /// source's that is neither here nor in `entries` was deleted.
    pub present: Option<std::collections::HashSet<String>>,
    pub cookie: Option<Vec<u8>>,
    /// The server no longer has history back to our cookie: read everything.
    pub refresh_required: bool,
}

/// RFC 4533's Sync Request control.
const SYNC_REQUEST_OID: &str = "1.3.6.1.4.1.4203.1.9.1.1";

/// A syncUUID (16 bytes) in the text form of `entryUUID`.
fn uuid_text(raw: &[u8]) -> String {
    <[u8; 16]>::try_from(raw)
        .map(|b| uuid::Uuid::from_bytes(b).to_string())
        .unwrap_or_else(|_| String::from_utf8_lossy(raw).into_owned())
}

/// Whether the server offers RFC 4533 content sync (OpenLDAP syncprov, 389-ds).
pub async fn supports_content_sync(ldap: &mut Ldap, src: &LdapSource) -> Result<bool, SyncError> {
    let timeout = Duration::from_secs(src.timeout_secs);
    let (entries, _) = ldap
        .with_timeout(timeout)
        .search("", Scope::Base, "(objectClass=*)", vec!["supportedControl"])
        .await
        .and_then(|r| r.success())
        .map_err(|e| SyncError::Read(format!("reading the root DSE failed: {e}")))?;
    Ok(entries
        .into_iter()
        .map(SearchEntry::construct)
        .any(|e| e.attrs.get("supportedControl").is_some_and(|v| v.iter().any(|c| c == SYNC_REQUEST_OID))))
}

/// A refreshOnly content-sync search: everything (no cookie) or what changed since `cookie`.
pub async fn sync_search(
    ldap: &mut Ldap,
    src: &LdapSource,
    base: &str,
    filter: &str,
    attrs: &[String],
    cookie: Option<Vec<u8>>,
) -> Result<SyncRead, SyncError> {
    use ldap3::controls::{
        Control, ControlType, EntryState, RawControl, SyncDone, SyncInfo, SyncRequest, SyncState,
    };
    let timeout = Duration::from_secs(src.timeout_secs);
    let request = SyncRequest { mode: ldap3::controls::RefreshMode::RefreshOnly, cookie, reload_hint: false };
    let mut stream = ldap
        .with_timeout(timeout)
        .with_controls(vec![RawControl::from(request)])
        .streaming_search(base, Scope::Subtree, filter, attrs.to_vec())
        .await
        .map_err(|e| SyncError::Read(format!("content sync under {base} failed: {e}")))?;
    let mut out = SyncRead::default();
    let mut present = std::collections::HashSet::new();
    let mut present_phase = false;
    loop {
        let next = tokio::time::timeout(timeout, stream.next())
            .await
            .map_err(|_| SyncError::Read(format!("content sync under {base} timed out")))?
            .map_err(|e| SyncError::Read(format!("content sync under {base} failed: {e}")))?;
        let Some(entry) = next else { break };
        if entry.is_ref() {
            return Err(SyncError::Read(format!("content sync under {base} returned a referral")));
        }
        if entry.is_intermediate() {
            match ldap3::controls::parse_syncinfo(entry) {
                SyncInfo::NewCookie(c) => out.cookie = Some(c),
                SyncInfo::RefreshDelete { cookie, .. } => out.cookie = cookie.or(out.cookie.take()),
                SyncInfo::RefreshPresent { cookie, .. } => {
                    present_phase = true;
                    out.cookie = cookie.or(out.cookie.take());
                }
                SyncInfo::SyncIdSet { cookie, refresh_deletes, sync_uuids } => {
                    out.cookie = cookie.or(out.cookie.take());
                    let ids = sync_uuids.iter().map(|u| uuid_text(u));
                    if refresh_deletes {
                        out.deleted.extend(ids);
                    } else {
                        present_phase = true;
                        present.extend(ids);
                    }
                }
            }
            continue;
        }
        let state = entry.1.iter().find_map(|Control(kind, raw)| match kind {
            Some(ControlType::SyncState) => Some(raw.parse::<SyncState>()),
            _ => None,
        });
        match state {
            Some(SyncState { state: EntryState::Delete, entry_uuid, cookie }) => {
                out.deleted.push(uuid_text(&entry_uuid));
                out.cookie = cookie.or(out.cookie.take());
            }
            Some(SyncState { state: EntryState::Present, entry_uuid, cookie }) => {
                present_phase = true;
                present.insert(uuid_text(&entry_uuid));
                out.cookie = cookie.or(out.cookie.take());
            }
            other => {
                if let Some(c) = other.and_then(|s| s.cookie) {
                    out.cookie = Some(c);
                }
                let e = SearchEntry::construct(entry);
                out.entries.push(RawEntry {
                    dn: e.dn,
                    attrs: e.attrs.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect(),
                    bin: e.bin_attrs.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect(),
                });
            }
        }
    }
    let result = stream.finish().await;
    // e-syncRefreshRequired: the server's history does not reach back to our cookie.
    if result.rc == 4096 {
        out.refresh_required = true;
        return Ok(out);
    }
    let done = result.ctrls.iter().find_map(|Control(kind, raw)| match kind {
        Some(ControlType::SyncDone) => Some(raw.parse::<SyncDone>()),
        _ => None,
    });
    result.success().map_err(|e| SyncError::Read(format!("content sync under {base} ended badly: {e}")))?;
    if let Some(done) = done {
        out.cookie = done.cookie.or(out.cookie.take());
        if !done.refresh_deletes {
            present_phase = true;
        }
    }
    if present_phase {
        out.present = Some(present);
    }
    Ok(out)
}

/// Anchors of entries named by DN (OpenLDAP's `entryDN`), for DNs a partial read did not carry.
pub async fn anchors_by_dn(
    ldap: &mut Ldap,
    src: &LdapSource,
    base: &str,
    anchor: &str,
    dns: &[String],
) -> Result<HashMap<String, String>, SyncError> {
    let mut out = HashMap::new();
    for chunk in dns.chunks(50) {
        let filter = format!(
            "(|{})",
            chunk
                .iter()
                .map(|dn| format!("(entryDN={})", ldap3::ldap_escape(dn.as_str())))
                .collect::<String>()
        );
        for e in search(ldap, src, base, &filter, &[anchor.to_owned()]).await? {
            if let Some(a) = super::map::anchor_of(&e, anchor) {
                out.insert(super::map::norm_dn(&e.dn), a);
            }
        }
    }
    Ok(out)
}
