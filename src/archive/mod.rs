//! The message record archive: IM servers post their one-to-one and group messages (JSON Lines,
//! or XMPP stanzas from ejabberd's `mod_post_log`), with attachments stored once by SHA-256;
//! holders of *view message records* (and compliance tools with an `archive-read` token) browse,
//! search and export them.
//!
//! Records belong to **member identities**, never to account numbers: a party is resolved at
//! ingest ([`ingest`]) to the member who holds the number, login name or address then, or kept
//! as an external address. A deleted member's records stay under the tombstone's identity, and
//! a new holder of a reused number is a new identity with an empty history.
//!
//! Search ([`grams`]) finds any substring of one character or more, in any script: an index of
//! folded unigrams and bigrams narrows the candidates, and the text itself is checked.
//!
//! Every write is audited in its transaction ([`store::ArchiveStore`], sealed); every view,
//! search and export is an audit row of who looked at whose records.

pub mod export;
pub mod grams;
pub mod ingest;
pub mod retention;
pub mod store;
pub mod xmpp;

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::config::ArchiveConfig;
use crate::directory::model::{Actor, AuditRecord};
use crate::directory::{DirectoryError, DirectoryResult, DirectoryService};
use ingest::{Checked, Key, Line, Outcome, Parties, Party, Status};
pub use retention::jobs;
use store::{ArchiveStore, MessageFilter, MessageRow, Sealed};

/// Lines stored a transaction: a request's worth. Each member's rows sit on their own index
/// pages, so the larger the batch, the fewer times a commit writes each page.
const BATCH: usize = 5000;

/// The archive: ingest, views, search, exports, retention. Cheap to clone.
#[derive(Clone)]
pub struct Archive {
    store: Arc<dyn ArchiveStore>,
    directory: DirectoryService,
    cfg: Arc<ArchiveConfig>,
    /// Single messages (XMPP posts) waiting to be stored together ([`Archive::ingest_one`]).
    queue: Arc<std::sync::OnceLock<tokio::sync::mpsc::Sender<Queued>>>,
}

/// A single message waiting for the group writer, and where its outcome goes.
struct Queued {
    actor: Actor,
    line: Line,
    reply: tokio::sync::oneshot::Sender<Result<Outcome, String>>,
}

/// Who is looking, and at how much: `units: None` is the whole enterprise; otherwise only
/// records of members under those units (a scoped grant).
#[derive(Debug, Clone)]
pub struct Viewer {
    pub actor: Actor,
    pub units: Option<Vec<Uuid>>,
}

/// A search or a browse: every field optional.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub member: Option<Uuid>,
    /// A party (account number, login name, address) the member's direct conversations are with.
    pub counterpart: Option<String>,
    pub conversation: Option<i64>,
    pub group: Option<i64>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub kind: Option<String>,
    pub text: Option<String>,
    pub cursor: Option<Cursor>,
    pub limit: usize,
}

/// A position in `(sent_at, id)` order, and which way the page goes from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: i64,
    pub id: i64,
    pub before: bool,
}

impl Cursor {
    /// `a<micros>.<id>` (the page after) or `b<micros>.<id>` (the page before).
    pub fn parse(s: &str) -> Option<Cursor> {
        let before = match s.as_bytes().first()? {
            b'a' => false,
            b'b' => true,
            _ => return None,
        };
        let (at, id) = s[1..].split_once('.')?;
        Some(Cursor { at: at.parse().ok()?, id: id.parse().ok()?, before })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}.{}", if self.before { 'b' } else { 'a' }, self.at, self.id)
    }
}

/// One page of messages, oldest first, with the cursors to the pages around it.
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub messages: Vec<MessageRow>,
    pub next_cursor: Option<String>,
    pub prev_cursor: Option<String>,
}

/// A party as people see it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Who {
    /// The member identity (also for a deleted account).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external: Option<String>,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_number: Option<i64>,
    /// The login name (an address in the enterprise's mail domain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    /// A deleted account (a tombstone).
    pub deleted: bool,
}

/// Why a blob was not stored.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("the path must be the SHA-256 of the bytes, 64 hex digits")]
    BadHash,
    #[error("the bytes' SHA-256 is {0}, not the one in the path")]
    Mismatch(String),
    #[error("the blob is {0} bytes; at most {1} are kept (archive.max_blob_bytes)")]
    TooLarge(usize, usize),
    #[error("blobs of type {0} are not kept (archive.attachment_types)")]
    Type(String),
    #[error(transparent)]
    Store(#[from] DirectoryError),
}

impl From<crate::directory::store::StoreError> for BlobError {
    fn from(e: crate::directory::store::StoreError) -> BlobError {
        BlobError::Store(e.into())
    }
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

impl Archive {
    pub fn new(store: Arc<dyn ArchiveStore>, directory: DirectoryService, cfg: ArchiveConfig) -> Archive {
        Archive { store, directory, cfg: Arc::new(cfg), queue: Default::default() }
    }

    /// The archive's reads.
    pub fn store(&self) -> &Arc<dyn ArchiveStore> {
        &self.store
    }

    pub fn config(&self) -> &ArchiveConfig {
        &self.cfg
    }

    pub fn directory(&self) -> &DirectoryService {
        &self.directory
    }

    /// Stores posted lines (each parsed, or the reason it could not be), in batches of 5,000 a
    /// transaction with one audit row each; returns every line's outcome in order. A bad line
    /// never keeps the good ones out.
    pub async fn ingest(
        &self,
        actor: &Actor,
        lines: Vec<(usize, Result<Line, Outcome>)>,
    ) -> DirectoryResult<Vec<Outcome>> {
        let mut out = Vec::with_capacity(lines.len());
        let mail_domain = self.mail_domain().await?;
        let mut lines = lines.into_iter().peekable();
        while lines.peek().is_some() {
            let batch: Vec<_> = lines.by_ref().take(BATCH).collect();
            out.extend(self.ingest_batch(actor, &mail_domain, batch).await?);
        }
        out.sort_by_key(|o| o.line);
        for status in [Status::Stored, Status::Duplicate, Status::Refused] {
            let n = out.iter().filter(|o| o.status == status).count() as u64;
            let label = match status {
                Status::Stored => "stored",
                Status::Duplicate => "duplicate",
                Status::Refused => "refused",
            };
            metrics::counter!("roster_archive_ingested_total", "outcome" => label).increment(n);
        }
        Ok(out)
    }

    async fn ingest_batch(
        &self,
        actor: &Actor,
        mail_domain: &str,
        batch: Vec<(usize, Result<Line, Outcome>)>,
    ) -> DirectoryResult<Vec<Outcome>> {
        let mut out = Vec::new();
        let mut checked: Vec<Checked> = Vec::new();
        for (n, line) in batch {
            match line.and_then(|l| ingest::check(n, l, &self.cfg)) {
                Ok(c) => checked.push(c),
                Err(o) => out.push(o),
            }
        }
        let mut raw: Vec<&str> = Vec::new();
        for c in &checked {
            raw.push(&c.msg.from);
            match &c.msg.conversation {
                ingest::Conversation::Direct { direct } => raw.extend(direct.iter().map(String::as_str)),
                ingest::Conversation::Group { owner, .. } => raw.extend(owner.as_deref()),
            }
        }
        let parties = self.resolve(&raw, mail_domain).await?;
        let plan = ingest::plan_groups(&checked, &parties);
        let key = Sealed::new();
        let source = actor.source.as_str();
        let groups = if plan.groups.is_empty() {
            Vec::new()
        } else {
            self.store.archive_groups_ensure(&key, source, &plan.groups, now()).await?
        };
        let (conversations, messages, refused) = ingest::build(checked, &plan, &groups, &parties);
        out.extend(refused);
        let (numbers, msgs): (Vec<usize>, Vec<_>) = messages.into_iter().unzip();
        let refused = out.len();
        let audit = |stored: &[bool]| {
            let n = stored.iter().filter(|s| **s).count();
            AuditRecord::new(
                actor,
                now(),
                "archive.ingest",
                ("archive", Some(source.to_owned())),
                None,
                Some(&json!({ "stored": n, "duplicates": stored.len() - n, "refused": refused })),
            )
        };
        if !msgs.is_empty() {
            let stored = self
                .store
                .archive_ingest(&key, source, &conversations, &msgs, now().timestamp_micros(), &audit)
                .await?;
            for ((n, msg), stored) in numbers.into_iter().zip(&msgs).zip(stored) {
                out.push(Outcome {
                    line: n,
                    id: Some(msg.ext_id.clone()),
                    status: if stored { Status::Stored } else { Status::Duplicate },
                    code: None,
                    reason: None,
                });
            }
        }
        Ok(out)
    }

    /// The enterprise's mail domain, lower case (login names end in it).
    async fn mail_domain(&self) -> DirectoryResult<String> {
        Ok(self
            .directory
            .store()
            .enterprise()
            .await?
            .map(|e| e.mail_domain.to_lowercase())
            .unwrap_or_default())
    }

    /// The member a person types: an identity (UUID, also a deleted account's), a current
    /// account number, or a login name (with or without the mail domain). For the console's
    /// forms, the read API's `member=` and `rosterd archive`.
    pub async fn member_named(&self, s: &str) -> DirectoryResult<Option<Uuid>> {
        let s = s.trim();
        if let Ok(id) = Uuid::parse_str(s) {
            return Ok(Some(id));
        }
        let read = self.directory.store();
        if let Ok(n) = s.parse::<i64>() {
            return Ok(read.member_by_number(n).await?.map(|m| m.id));
        }
        let login = match s.contains('@') {
            true => s.to_lowercase(),
            false => format!("{}@{}", s.to_lowercase(), self.mail_domain().await?),
        };
        Ok(read.member_by_login(&login).await?.map(|m| m.id))
    }

    /// Stores one message (an XMPP post) with the others that arrive meanwhile: one writer takes
    /// every message waiting, stores them as one batch (one transaction, one audit row a
    /// source), and answers each its own outcome. Under load, a commit carries many posts
    /// instead of one; alone, a post is stored at once.
    pub async fn ingest_one(&self, actor: &Actor, line: Line) -> DirectoryResult<Outcome> {
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = tokio::sync::mpsc::channel(4 * BATCH);
            tokio::spawn(group_writer(self.clone(), rx));
            tx
        });
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || {
            DirectoryError::Store(crate::directory::store::StoreError::Unavailable(
                "the archive's writer stopped".into(),
            ))
        };
        queue.send(Queued { actor: actor.clone(), line, reply }).await.map_err(|_| gone())?;
        match answer.await.map_err(|_| gone())? {
            Ok(outcome) => Ok(outcome),
            Err(e) => Err(DirectoryError::Store(crate::directory::store::StoreError::Unavailable(e))),
        }
    }

    /// Resolves every party the lines name to member identities in one round of queries.
    async fn resolve(&self, raw: &[&str], mail_domain: &str) -> DirectoryResult<Parties> {
        let mut wanted: HashMap<String, Vec<Key>> = HashMap::new();
        for r in raw {
            let (norm, keys) = ingest::keys(r, mail_domain, &self.cfg.im_domains);
            wanted.entry(norm).or_insert(keys);
        }
        let (mut numbers, mut logins, mut emails) = (Vec::new(), Vec::new(), Vec::new());
        for keys in wanted.values() {
            for k in keys {
                match k {
                    Key::Number(n) => numbers.push(*n),
                    Key::Login(l) => logins.push(l.clone()),
                    Key::Email(e) => emails.push(e.clone()),
                }
            }
        }
        for v in [&mut logins, &mut emails] {
            v.sort();
            v.dedup();
        }
        numbers.sort_unstable();
        numbers.dedup();
        let found = self.store.archive_resolve(&numbers, &logins, &emails).await?;
        let by_number: HashMap<i64, Uuid> =
            found.iter().filter_map(|(k, id)| k.parse::<i64>().ok().map(|n| (n, *id))).collect();
        let by_text: HashMap<&str, Uuid> = found.iter().map(|(k, id)| (k.as_str(), *id)).collect();
        let map = wanted
            .into_iter()
            .map(|(norm, keys)| {
                let member = keys.iter().find_map(|k| match k {
                    Key::Number(n) => by_number.get(n).copied(),
                    Key::Login(s) | Key::Email(s) => by_text.get(s.as_str()).copied(),
                });
                let party = match member {
                    Some(id) => Party::Member(id),
                    None => Party::External(norm.clone()),
                };
                (norm, party)
            })
            .collect();
        Ok(Parties { map })
    }

    /// Stores an attachment's bytes under their SHA-256 (once; a second put of the same bytes
    /// is a no-op). Returns whether it was new, and the type sniffed from the bytes.
    pub async fn put_blob(&self, sha256: &str, bytes: Vec<u8>) -> Result<(bool, String), BlobError> {
        use sha2::Digest;
        let sha256 = sha256.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(BlobError::BadHash);
        }
        if bytes.len() > self.cfg.max_blob_bytes {
            return Err(BlobError::TooLarge(bytes.len(), self.cfg.max_blob_bytes));
        }
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        if actual != sha256 {
            return Err(BlobError::Mismatch(actual));
        }
        let mime = sniff(&bytes);
        if !self.cfg.allows(&mime) && mime != "application/octet-stream" {
            return Err(BlobError::Type(mime));
        }
        if self.store.archive_blob_exists(&sha256).await? {
            return Ok((false, mime));
        }
        let blob =
            store::Blob { sha256: sha256.clone(), mime: mime.clone(), size: bytes.len() as i64, bytes };
        Ok((self.store.archive_blob_put(&Sealed::new(), &blob, now()).await?, mime))
    }

    /// Writes the audit row of a view: `action` on `object`, with what was asked.
    pub async fn audit_view(
        &self,
        viewer: &Viewer,
        action: &str,
        object: (&str, Option<String>),
        detail: serde_json::Value,
    ) -> DirectoryResult<()> {
        let audit = AuditRecord::new(&viewer.actor, now(), action, object, None, Some(&detail));
        Ok(self.store.archive_audit(&Sealed::new(), &audit).await?)
    }

    /// Is this member identity (current or deleted) within the viewer's units?
    pub async fn in_scope(&self, viewer: &Viewer, member: Uuid) -> DirectoryResult<bool> {
        let Some(units) = &viewer.units else { return Ok(true) };
        let read = self.directory.store();
        let unit = match read.member(member).await? {
            Some(m) => m.primary_org_unit_id,
            None => read.tombstone(member).await?.and_then(|t| t.profile.primary_org_unit_id),
        };
        let Some(unit) = unit else { return Ok(false) };
        let path = read.org_unit_ancestors(unit).await?;
        Ok(path.iter().any(|u| units.contains(u)))
    }

    /// One page of messages matching `q`, oldest first, within the viewer's scope; audited
    /// as `archive.search` (with text) or `archive.view`.
    pub async fn search(&self, viewer: &Viewer, q: &Search) -> DirectoryResult<Page> {
        if let Some(member) = q.member
            && !self.in_scope(viewer, member).await?
        {
            return Err(DirectoryError::NotFound { kind: "member", id: member.to_string() });
        }
        let page = self.page(viewer, q).await?;
        let detail = json!({
            "member": q.member, "counterpart": q.counterpart, "conversation": q.conversation, "group": q.group,
            "from": q.from, "to": q.to, "kind": q.kind, "text": q.text, "results": page.messages.len(),
        });
        let action =
            if q.text.as_deref().is_some_and(|t| !t.is_empty()) { "archive.search" } else { "archive.view" };
        let object = match (q.member, q.conversation, q.group) {
            (Some(m), _, _) => ("member", Some(m.to_string())),
            (None, Some(c), _) => ("archive_conversation", Some(c.to_string())),
            (None, None, Some(g)) => ("archive_group", Some(g.to_string())),
            _ => ("archive", None),
        };
        self.audit_view(viewer, action, object, detail).await?;
        Ok(page)
    }

    /// The filter a search runs as (without its cursor and limit).
    pub async fn filter(&self, viewer: &Viewer, q: &Search) -> DirectoryResult<MessageFilter> {
        let counterpart = match &q.counterpart {
            Some(c) if !c.trim().is_empty() => {
                let parties = self.resolve(&[c.as_str()], &self.mail_domain().await?).await?;
                Some(parties.get(c).key())
            }
            _ => None,
        };
        Ok(MessageFilter {
            member: q.member,
            conversation: q.conversation,
            counterpart,
            group: q.group,
            from: q.from.map(|t| t.timestamp_micros()),
            to: q.to.map(|t| t.timestamp_micros()),
            kind: q.kind.clone().filter(|k| !k.is_empty()),
            terms: q.text.as_deref().map(grams::query_terms).unwrap_or_default(),
            units: viewer.units.clone(),
            source: None,
            cursor: None,
            before: false,
            limit: 0,
        })
    }

    /// The page itself (no audit row): candidates from the index in order, checked against the
    /// text, until the page is full. A scan that has looked at many candidates without filling
    /// the page stops and hands back a cursor where it stopped, so no request runs unbounded.
    pub async fn page(&self, viewer: &Viewer, q: &Search) -> DirectoryResult<Page> {
        let limit = q.limit.clamp(1, 500);
        let mut f = self.filter(viewer, q).await?;
        let folded = q.text.as_deref().map(grams::fold).unwrap_or_default();
        let before = q.cursor.is_some_and(|c| c.before);
        f.before = before;
        f.cursor = q.cursor.map(|c| (c.at, c.id));
        f.limit = if folded.is_empty() { limit as i64 + 1 } else { (limit as i64 * 2).max(200) };
        let mut found: Vec<MessageRow> = Vec::new();
        let mut more = false;
        let mut scanned = 0usize;
        'scan: loop {
            let rows = self.store.archive_messages(&f).await?;
            let full = rows.len() as i64 == f.limit;
            scanned += rows.len();
            let last = rows.last().map(|r| (r.sent_at, r.id));
            for r in rows {
                if folded.is_empty() || grams::contains(&r.body, &folded) {
                    if found.len() == limit {
                        more = true;
                        break 'scan;
                    }
                    found.push(r);
                }
            }
            if !full {
                break;
            }
            f.cursor = last;
            if scanned >= 20_000 {
                // Stop here; the cursor continues after the last row looked at.
                more = true;
                if let Some((at, id)) = last
                    && found.len() < limit
                {
                    let c = Cursor { at, id, before };
                    return Ok(self.finish(found, Some(c), q.cursor.is_some(), before));
                }
                break;
            }
        }
        let edge = if more { found.last().map(|r| Cursor { at: r.sent_at, id: r.id, before }) } else { None };
        Ok(self.finish(found, edge, q.cursor.is_some(), before))
    }

    /// Orders a page oldest first and sets its cursors: `edge` continues the way it went.
    fn finish(
        &self,
        mut found: Vec<MessageRow>,
        edge: Option<Cursor>,
        from_cursor: bool,
        before: bool,
    ) -> Page {
        if before {
            found.reverse();
        }
        let first = found.first().map(|r| Cursor { at: r.sent_at, id: r.id, before: true });
        let last = found.last().map(|r| Cursor { at: r.sent_at, id: r.id, before: false });
        let (next, prev) = if before {
            (if from_cursor { last } else { None }, edge.map(|c| Cursor { before: true, ..c }))
        } else {
            (edge.map(|c| Cursor { before: false, ..c }), if from_cursor { first } else { None })
        };
        Page {
            messages: found,
            next_cursor: next.map(|c| c.to_string()),
            prev_cursor: prev.map(|c| c.to_string()),
        }
    }

    /// How people see these member identities (current members, deleted accounts): one query
    /// for the current members, a tombstone read for each of the others.
    pub async fn who(&self, ids: impl IntoIterator<Item = Uuid>) -> DirectoryResult<HashMap<Uuid, Who>> {
        let mut ids: Vec<Uuid> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let mut out: HashMap<Uuid, Who> = self
            .store
            .archive_people(&ids)
            .await?
            .into_iter()
            .map(|(id, name, number, login)| {
                let who = Who {
                    member: Some(id),
                    external: None,
                    name,
                    account_number: Some(number),
                    login: Some(login),
                    deleted: false,
                };
                (id, who)
            })
            .collect();
        let read = self.directory.store();
        for id in ids {
            if out.contains_key(&id) {
                continue;
            }
            let who = match read.tombstone(id).await? {
                Some(t) => Who {
                    member: Some(id),
                    external: None,
                    name: t.profile.display_name,
                    account_number: Some(t.account_number),
                    login: Some(t.login_name),
                    deleted: true,
                },
                None => Who {
                    member: Some(id),
                    external: None,
                    name: id.to_string(),
                    account_number: None,
                    login: None,
                    deleted: true,
                },
            };
            out.insert(id, who);
        }
        Ok(out)
    }
}

/// The group writer behind [`Archive::ingest_one`]: takes what is waiting (up to a batch),
/// stores it a source at a time, answers each waiter.
async fn group_writer(archive: Archive, mut rx: tokio::sync::mpsc::Receiver<Queued>) {
    while let Some(first) = rx.recv().await {
        let mut waiting = vec![first];
        while waiting.len() < BATCH {
            match rx.try_recv() {
                Ok(q) => waiting.push(q),
                Err(_) => break,
            }
        }
        let mut by_source: HashMap<String, Vec<Queued>> = HashMap::new();
        for q in waiting {
            by_source.entry(q.actor.source.as_str().to_owned()).or_default().push(q);
        }
        for (_, group) in by_source {
            let actor = group[0].actor.clone();
            let lines = group.iter().enumerate().map(|(i, q)| (i + 1, Ok(q.line.clone()))).collect();
            match archive.ingest(&actor, lines).await {
                Ok(outcomes) => {
                    for (q, mut o) in group.into_iter().zip(outcomes) {
                        o.line = 1;
                        let _ = q.reply.send(Ok(o));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "archive: storing posted messages failed");
                    for q in group {
                        let _ = q.reply.send(Err("the archive store is not available".into()));
                    }
                }
            }
        }
    }
}

/// The type of a blob from its first bytes (`application/octet-stream` when unknown).
pub fn sniff(bytes: &[u8]) -> String {
    infer::get(bytes).map(|t| t.mime_type().to_owned()).unwrap_or_else(|| {
        if std::str::from_utf8(bytes).is_ok() {
            "text/plain".into()
        } else {
            "application/octet-stream".into()
        }
    })
}
