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
