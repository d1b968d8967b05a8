//! Reading an LDAP / AD source: one connection per run, a timeout on every operation, paged
//! searches. Any failure (connection dropped mid-page, size limit, referral, timeout) fails the
//! whole read: a partial result is never passed on, so it can never look like "everybody left".

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ldap3::adapters::{EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope};

use super::SyncError;
use crate::config::LdapSource;

/// An entry with lower-cased attribute names, in the server's order. An entry has a dozen
/// attributes: a list searched in place is cheaper than a hash map built for each of 100,000.
#[derive(Debug, Clone, Default)]
pub struct RawEntry {
    pub dn: String,
    pub attrs: Vec<(String, Vec<String>)>,
    /// Attributes with a value that is not UTF-8 (AD's objectGUID), all their values as bytes.
    pub bin: Vec<(String, Vec<Vec<u8>>)>,
}

impl RawEntry {
    pub fn first(&self, name: &str) -> Option<&str> {
        self.all(name).first().map(String::as_str).filter(|s| !s.is_empty())
    }
    /// The text values of an attribute (none when it is missing or binary); any case of `name`.
    pub fn all(&self, name: &str) -> &[String] {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .unwrap_or(&[])
    }
    /// The values of a binary attribute.
    pub fn binary(&self, name: &str) -> &[Vec<u8>] {
        self.bin.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice()).unwrap_or(&[])
    }
    /// Removes a text attribute and returns its values.
    pub fn take(&mut self, name: &str) -> Option<Vec<String>> {
        let at = self.attrs.iter().position(|(k, _)| k.eq_ignore_ascii_case(name))?;
        Some(self.attrs.swap_remove(at).1)
    }
    /// Sets a text attribute's values (`name` lower case).
    pub fn set(&mut self, name: &str, values: Vec<String>) {
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = values,
            None => self.attrs.push((name.to_owned(), values)),
        }
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
        let password = src.bind_password.as_ref().map_or("", |p| p.expose());
        ldap.with_timeout(timeout)
            .simple_bind(dn, password)
            .await
            .and_then(|r| r.success())
            .map_err(|e| SyncError::Read(format!("bind as {dn} failed: {e}")))?;
    }
    Ok(ldap)
}

/// A search result entry as a [`RawEntry`]: attribute names lower-cased, and an attribute with
/// any value that is not UTF-8 kept whole as bytes. The server's buffers are moved, not copied,
/// and a malformed entry is an error (ldap3's `SearchEntry::construct` would panic on one).
/// An entry the server sent that does not decode as an LDAP entry.
#[derive(Debug, thiserror::Error)]
#[error("the server sent a malformed entry: {0}")]
pub struct MalformedEntry(String);

pub fn raw_entry(entry: ldap3::ResultEntry) -> Result<RawEntry, MalformedEntry> {
    decode_entry(entry.0)
}

fn decode_entry(entry: ldap3::asn1::StructureTag) -> Result<RawEntry, MalformedEntry> {
    use ldap3::asn1::StructureTag;
    let bad = |what: &str| MalformedEntry(what.to_owned());
    let mut parts = entry
        .match_id(4)
        .and_then(StructureTag::expect_constructed)
        .ok_or_else(|| bad("not a search result entry"))?
        .into_iter();
    let dn = parts.next().and_then(StructureTag::expect_primitive).ok_or_else(|| bad("no DN"))?;
    let dn = String::from_utf8(dn).map_err(|_| bad("a DN that is not UTF-8"))?;
    let list =
        parts.next().and_then(StructureTag::expect_constructed).ok_or_else(|| bad("no attribute list"))?;
    let mut out = RawEntry { dn, attrs: Vec::with_capacity(list.len()), bin: Vec::new() };
    for attr in list {
        let mut attr =
            attr.expect_constructed().ok_or_else(|| bad("an attribute that is not a sequence"))?.into_iter();
        let mut name = attr
            .next()
            .and_then(StructureTag::expect_primitive)
            .and_then(|n| String::from_utf8(n).ok())
            .ok_or_else(|| bad("an attribute without a name"))?;
        name.make_ascii_lowercase();
        let values = attr
            .next()
            .and_then(StructureTag::expect_constructed)
            .ok_or_else(|| bad(&format!("attribute {name} without a value set")))?;
        let mut text: Vec<String> = Vec::with_capacity(values.len());
        let mut bytes: Vec<Vec<u8>> = Vec::new();
        for v in values {
            let v = v
                .expect_primitive()
                .ok_or_else(|| bad(&format!("a value of {name} that is not a string")))?;
            if bytes.is_empty() {
                match String::from_utf8(v) {
                    Ok(t) => text.push(t),
                    Err(e) => {
                        bytes.extend(text.drain(..).map(String::into_bytes));
                        bytes.push(e.into_bytes());
                    }
                }
            } else {
                bytes.push(v);
            }
        }
        if bytes.is_empty() {
            out.attrs.push((name, text));
        } else {
            out.bin.push((name, bytes));
        }
    }
    Ok(out)
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
    let mut out = Vec::new();
    search_each(ldap, src, base, filter, attrs, &mut |e| {
        out.push(e);
        Ok(())
    })
    .await?;
    Ok(out)
}

/// [`search`], handing each entry to `each` as it arrives (a reader that maps entries keeps
/// none of them raw). Returns how many there were.
pub async fn search_each(
    ldap: &mut Ldap,
    src: &LdapSource,
    base: &str,
    filter: &str,
    attrs: &[String],
    each: &mut (dyn FnMut(RawEntry) -> Result<(), SyncError> + Send),
) -> Result<usize, SyncError> {
    let timeout = Duration::from_secs(src.timeout_secs);
    let adapters: Vec<Box<dyn ldap3::adapters::Adapter<_, _>>> =
        vec![Box::new(EntriesOnly::new()), Box::new(PagedResults::new(src.page_size))];
    let mut stream = ldap
        .with_timeout(timeout)
        .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs.to_vec())
        .await
        .map_err(|e| SyncError::Read(format!("search under {base} failed: {e}")))?;
    let mut n = 0;
    loop {
        let next = tokio::time::timeout(timeout, stream.next())
            .await
            .map_err(|_| SyncError::Read(format!("search under {base} timed out")))?
            .map_err(|e| SyncError::Read(format!("search under {base} failed: {e}")))?;
        let Some(entry) = next else { break };
        if entry.is_ref() {
            return Err(SyncError::Read(format!("search under {base} returned a referral")));
        }
        each(raw_entry(entry).map_err(|e| SyncError::Read(format!("search under {base}: {e}")))?)?;
        n += 1;
    }
    let result = stream.finish().await;
    result.success().map_err(|e| SyncError::Read(format!("search under {base} ended badly: {e}")))?;
    Ok(n)
}

/// What a content-sync (RFC 4533 refreshOnly) search returned.
#[derive(Debug, Default)]
pub struct SyncRead {
    /// How many entries were added or changed (all of them on a read without a cookie); each
    /// went to the caller's `each`.
    pub entries: usize,
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
    let mut offered = false;
    for e in entries {
        let e = raw_entry(e).map_err(|e| SyncError::Read(format!("reading the root DSE: {e}")))?;
        offered |= e.all("supportedControl").iter().any(|c| c == SYNC_REQUEST_OID);
    }
    Ok(offered)
}

/// A refreshOnly content-sync search: everything (no cookie) or what changed since `cookie`.
pub async fn sync_search(
    ldap: &mut Ldap,
    src: &LdapSource,
    base: &str,
    filter: &str,
    attrs: &[String],
    cookie: Option<Vec<u8>>,
    each: &mut (dyn FnMut(RawEntry) -> Result<(), SyncError> + Send),
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
                each(
                    raw_entry(entry)
                        .map_err(|e| SyncError::Read(format!("content sync under {base}: {e}")))?,
                )?;
                out.entries += 1;
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
        // OpenLDAP offers `entryDN` for filtering by DN; AD has `distinguishedName`.
        let attr = if src.preset == crate::config::Preset::ActiveDirectory {
            "distinguishedName"
        } else {
            "entryDN"
        };
        let filter = format!(
            "(|{})",
            chunk
                .iter()
                .map(|dn| format!("({attr}={})", ldap3::ldap_escape(dn.as_str())))
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

/// Values of a multi-valued attribute that the server hands out in ranges (AD's `member` of a
/// large group: `member;range=0-1499`, then `member;range=1500-*`): each entry's ranged values
/// are fetched to the end and stored under the plain attribute name.
pub async fn complete_ranges(
    ldap: &mut Ldap,
    src: &LdapSource,
    entries: &mut [RawEntry],
    attr: &str,
) -> Result<(), SyncError> {
    let timeout = Duration::from_secs(src.timeout_secs);
    let attr = attr.to_lowercase();
    let prefix = format!("{attr};range=");
    for e in entries.iter_mut() {
        let ranged: Vec<String> =
            e.attrs.iter().map(|(k, _)| k).filter(|k| k.starts_with(&prefix)).cloned().collect();
        if ranged.is_empty() {
            continue;
        }
        let mut values = e.take(&attr).unwrap_or_default();
        let mut next = None;
        for key in ranged {
            values.extend(e.take(&key).unwrap_or_default());
            next = range_next(&key[prefix.len()..]);
        }
        while let Some(start) = next {
            let want = format!("{attr};range={start}-*");
            let (found, _) = ldap
                .with_timeout(timeout)
                .search(&e.dn, Scope::Base, "(objectClass=*)", vec![want.as_str()])
                .await
                .and_then(|r| r.success())
                .map_err(|err| SyncError::Read(format!("reading {attr} of {} failed: {err}", e.dn)))?;
            next = None;
            for entry in found {
                let entry = raw_entry(entry)
                    .map_err(|err| SyncError::Read(format!("reading {attr} of {}: {err}", e.dn)))?;
                for (k, v) in entry.attrs {
                    if let Some(range) = k.strip_prefix(&prefix) {
                        values.extend(v);
                        next = range_next(range);
                    }
                }
            }
        }
        e.set(&attr, values);
    }
    Ok(())
}

/// `0-1499` -> the next range starts at 1500; `1500-*` -> the last one.
fn range_next(range: &str) -> Option<usize> {
    let (_, hi) = range.split_once('-')?;
    hi.parse::<usize>().ok().map(|hi| hi + 1)
}

/// AD's change watermark: the domain controller's `invocationId` (a new one means its database
/// was restored or replaced, so an old watermark means nothing) and `highestCommittedUSN`.
pub async fn ad_watermark(ldap: &mut Ldap, src: &LdapSource) -> Result<(String, i64, String), SyncError> {
    let timeout = Duration::from_secs(src.timeout_secs);
    let bad = |what: &str| SyncError::Read(format!("reading AD's {what} failed"));
    let (entries, _) = ldap
        .with_timeout(timeout)
        .search(
            "",
            Scope::Base,
            "(objectClass=*)",
            vec!["highestCommittedUSN", "dsServiceName", "defaultNamingContext"],
        )
        .await
        .and_then(|r| r.success())
        .map_err(|e| SyncError::Read(format!("reading the root DSE failed: {e}")))?;
    let root = entries.into_iter().next().and_then(|e| raw_entry(e).ok()).ok_or_else(|| bad("root DSE"))?;
    let first = |k: &str| root.first(k).map(str::to_owned);
    let usn: i64 = first("highestCommittedUSN")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad("highestCommittedUSN"))?;
    let service = first("dsServiceName").ok_or_else(|| bad("dsServiceName"))?;
    let domain = first("defaultNamingContext").ok_or_else(|| bad("defaultNamingContext"))?;
    let (entries, _) = ldap
        .with_timeout(timeout)
        .search(&service, Scope::Base, "(objectClass=*)", vec!["invocationId"])
        .await
        .and_then(|r| r.success())
        .map_err(|e| SyncError::Read(format!("reading {service} failed: {e}")))?;
    let ntds =
        entries.into_iter().next().and_then(|e| raw_entry(e).ok()).ok_or_else(|| bad("invocationId"))?;
    let invocation = ntds
        .binary("invocationId")
        .first()
        .map(|b| uuid_text(b))
        .or_else(|| ntds.first("invocationId").map(str::to_owned))
        .ok_or_else(|| bad("invocationId"))?;
    Ok((invocation, usn, domain))
}

/// The `objectGUID`s of objects deleted after `usn` (the Deleted Objects container, read with
/// the Show Deleted control).
pub async fn ad_deleted(
    ldap: &mut Ldap,
    src: &LdapSource,
    domain: &str,
    usn: i64,
) -> Result<Vec<String>, SyncError> {
    use ldap3::controls::RawControl;
    const SHOW_DELETED: &str = "1.2.840.113556.1.4.417";
    let timeout = Duration::from_secs(src.timeout_secs);
    let base = format!("CN=Deleted Objects,{domain}");
    let filter = format!("(&(isDeleted=TRUE)(uSNChanged>={}))", usn + 1);
    let (entries, _) = ldap
        .with_controls(RawControl { ctype: SHOW_DELETED.to_owned(), crit: true, val: None })
        .with_timeout(timeout)
        .search(&base, Scope::Subtree, &filter, vec!["objectGUID"])
        .await
        .and_then(|r| r.success())
        .map_err(|e| SyncError::Read(format!("reading {base} failed: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let e = raw_entry(e).map_err(|e| SyncError::Read(format!("reading {base}: {e}")))?;
        out.extend(super::map::anchor_of(&e, "objectGUID"));
    }
    Ok(out)
}

/// Whether a member's password may go to this source: over TLS (`ldaps://` or StartTLS), or
/// over cleartext only when the admin said so (`allow_insecure`).
pub fn cleartext_allowed(src: &LdapSource) -> bool {
    src.url.starts_with("ldaps://") || src.starttls || src.allow_insecure
}

/// Checks a member's password against their directory (console sign-in by pass-through): the
/// sync account finds the entry by its anchor, then a second connection binds as that entry.
/// `Ok(false)` for wrong credentials (or no such entry); `Err` when the directory cannot be
/// asked. An empty password is refused before any bind (it would be an anonymous bind).
pub async fn verify_password(src: &LdapSource, anchor: &str, password: &str) -> Result<bool, SyncError> {
    if password.is_empty() {
        return Ok(false);
    }
    if !cleartext_allowed(src) {
        return Err(SyncError::Config(format!(
            "sync.ldap {:?}: refusing to send a password over cleartext {}; set starttls = true, use ldaps://, \
             or set allow_insecure = true",
            src.name, src.url
        )));
    }
    let map = super::map::AttrMap::for_source(src)?;
    let value = if map.anchor.eq_ignore_ascii_case("objectGUID") {
        // The anchor is the GUID as text; the filter needs its 16 bytes, escaped.
        let Ok(guid) = uuid::Uuid::parse_str(anchor) else { return Ok(false) };
        guid.to_bytes_le().iter().map(|b| format!("\\{b:02x}")).collect::<String>()
    } else {
        ldap3::ldap_escape(anchor).into_owned()
    };
    let filter = format!("(&{}({}={value}))", super::user_filter(src), map.anchor);
    let mut ldap = connect(src).await?;
    let entries = search(&mut ldap, src, &src.users.base_dn, &filter, &["1.1".to_owned()]).await?;
    let _ = ldap.unbind().await;
    let [entry] = entries.as_slice() else { return Ok(false) };
    let user = LdapSource { bind_dn: None, bind_password: None, ..src.clone() };
    let mut conn = connect(&user).await?;
    let timeout = Duration::from_secs(src.timeout_secs);
    let result = conn
        .with_timeout(timeout)
        .simple_bind(&entry.dn, password)
        .await
        .map_err(|e| SyncError::Read(format!("bind failed: {e}")))?;
    let _ = conn.unbind().await;
    match result.rc {
        0 => Ok(true),
        // invalidCredentials, and AD's "account disabled / expired / must change" under it.
        49 | 53 => Ok(false),
        rc => Err(SyncError::Read(format!("bind as {} answered {rc}: {}", entry.dn, result.text))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::{PL, StructureTag, TagClass};

    fn octets(v: &[u8]) -> StructureTag {
        StructureTag { class: TagClass::Universal, id: 4, payload: PL::P(v.to_vec()) }
    }
    fn seq(id: u64, items: Vec<StructureTag>) -> StructureTag {
        StructureTag { class: TagClass::Universal, id, payload: PL::C(items) }
    }
    fn attr(name: &str, values: &[&[u8]]) -> StructureTag {
        seq(16, vec![octets(name.as_bytes()), seq(17, values.iter().map(|v| octets(v)).collect())])
    }
    fn entry(parts: Vec<StructureTag>) -> StructureTag {
        StructureTag { class: TagClass::Application, id: 4, payload: PL::C(parts) }
    }

    #[test]
    fn entries_decode_with_lower_case_names_and_binary_values_apart() {
        let guid: &[u8] = &[0xff, 0xfe, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13];
        let e = decode_entry(entry(vec![
            octets(b"uid=ada,ou=People,dc=example"),
            seq(16, vec![attr("mail", &[b"ada@example.com", b"a@example.com"]), attr("objectGUID", &[guid])]),
        ]))
        .unwrap();
        assert_eq!(e.dn, "uid=ada,ou=People,dc=example");
        assert_eq!(e.all("MAIL"), ["ada@example.com", "a@example.com"]);
        assert_eq!(e.first("mail"), Some("ada@example.com"));
        assert_eq!(e.binary("objectGUID"), [guid.to_vec()]);
        assert!(e.all("objectGUID").is_empty(), "a binary attribute is not text");
    }

    /// A broken answer from a server is an error naming what is wrong, never a panic.
    #[test]
    fn malformed_entries_are_errors() {
        let cases: Vec<(StructureTag, &str)> = vec![
            (entry(vec![]), "no DN"),
            (entry(vec![octets(&[0xff, 0xfe])]), "not UTF-8"),
            (entry(vec![octets(b"cn=x")]), "no attribute list"),
            (entry(vec![octets(b"cn=x"), octets(b"not a list")]), "no attribute list"),
            (entry(vec![octets(b"cn=x"), seq(16, vec![octets(b"loose")])]), "not a sequence"),
            (entry(vec![octets(b"cn=x"), seq(16, vec![seq(16, vec![])])]), "without a name"),
            (
                entry(vec![octets(b"cn=x"), seq(16, vec![seq(16, vec![octets(b"cn")])])]),
                "without a value set",
            ),
            (
                entry(vec![
                    octets(b"cn=x"),
                    seq(16, vec![seq(16, vec![octets(b"cn"), seq(17, vec![seq(16, vec![])])])]),
                ]),
                "not a string",
            ),
            (octets(b"x"), "not a search result entry"),
        ];
        for (e, want) in cases {
            let err = decode_entry(e).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should say {want:?}");
        }
    }
}
