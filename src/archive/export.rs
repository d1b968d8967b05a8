//! Exports: a member's or a unit's records (or everything), in a time range, as JSON Lines, CSV
//! or e-mail (`.mbox` of RFC 5322 messages, built with `lettre`), with the attachments
//! alongside and a manifest of counts and SHA-256 sums, in one `.tar` file (the `tar` crate).
//!
//! An export is a row first (`queued`, audited), then a job: the `archive:exports` job claims it
//! under the scheduler's lease, or `rosterd archive export` runs it at once with a progress bar.
//! Messages stream a page of 1,000 at a time; memory stays flat however many there are. The
//! file lives under `archive.export_dir` until `archive.export_ttl_hours` after it is ready.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use super::store::{ExportRow, MessageFilter, MessageRow, Sealed};
use super::{Archive, Viewer, Who};
use crate::directory::model::AuditRecord;
use crate::directory::{DirectoryError, DirectoryResult};

text_enum! {
    /// What an export's messages are written as.
    pub enum Format as "export format" {
        Jsonl = "jsonl",
        Csv = "csv",
        /// One RFC 5322 message a record, in an mbox file.
        Eml = "eml",
    }
}

impl Format {
    fn file_name(self) -> &'static str {
        match self {
            Format::Jsonl => "messages.jsonl",
            Format::Csv => "messages.csv",
            Format::Eml => "messages.mbox",
        }
    }
}

text_enum! {
    pub enum ExportState as "export state" {
        Queued = "queued",
        Running = "running",
        Ready = "ready",
        Failed = "failed",
        Expired = "expired",
    }
}

/// Whose records an export holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportScope {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
}

/// Messages a page while exporting.
const PAGE: i64 = 1000;
/// Conversations and people remembered while rendering, at most (then forgotten).
const CACHE: usize = 50_000;

/// Renders messages as the read API and the exports show them, remembering who is who and
/// which conversation is which across pages (up to [`CACHE`] entries).
#[derive(Default)]
pub struct Renderer {
    who: HashMap<Uuid, Who>,
    conversations: HashMap<i64, super::store::ConversationRow>,
}

/// A message with its conversation and people resolved.
pub struct Rendered {
    pub json: Value,
    pub from: Option<Who>,
    pub from_external: Option<String>,
    pub conversation: Option<super::store::ConversationRow>,
    /// The parties of a direct conversation, as people.
    pub parties: Vec<Value>,
}

impl Renderer {
    async fn who_of(&mut self, archive: &Archive, ids: Vec<Uuid>) -> DirectoryResult<()> {
        let missing: Vec<Uuid> = ids.into_iter().filter(|id| !self.who.contains_key(id)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        if self.who.len() > CACHE {
            self.who.clear();
        }
        self.who.extend(archive.who(missing).await?);
        Ok(())
    }

    /// Renders rows: the JSON object of each (the read API's form) and its parts.
    pub async fn render(&mut self, archive: &Archive, rows: &[MessageRow]) -> DirectoryResult<Vec<Rendered>> {
        if self.conversations.len() > CACHE {
            self.conversations.clear();
        }
        let mut ids: Vec<Uuid> = rows.iter().filter_map(|r| r.sender_member).collect();
        let mut missing: Vec<i64> =
            rows.iter().map(|r| r.conversation).filter(|c| !self.conversations.contains_key(c)).collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            for c in archive.store().archive_conversations_by_ids(&missing).await? {
                self.conversations.insert(c.id, c);
            }
        }
        for r in rows {
            if let Some(c) = self.conversations.get(&r.conversation) {
                ids.extend(
                    c.key
                        .split(' ')
                        .filter_map(|k| k.strip_prefix("m:"))
                        .filter_map(|u| Uuid::parse_str(u).ok()),
                );
            }
        }
        self.who_of(archive, ids).await?;
        let party = |who: &HashMap<Uuid, Who>, key: &str| -> Value {
            match key.split_once(':') {
                Some(("m", id)) => Uuid::parse_str(id)
                    .ok()
                    .and_then(|id| who.get(&id))
                    .map(|w| json!(w))
                    .unwrap_or(Value::Null),
                Some(("x", addr)) => json!({ "external": addr, "name": addr, "deleted": false }),
                _ => Value::Null,
            }
        };
        Ok(rows
            .iter()
            .map(|r| {
                let conv = self.conversations.get(&r.conversation).cloned();
                let parties: Vec<Value> = match &conv {
                    Some(c) if c.kind == super::store::ConversationKind::Direct => c.key.split(' ').map(|k| party(&self.who, k)).collect(),
                    _ => Vec::new(),
                };
                let conversation = conv.as_ref().map(|c| match c.kind {
                    super::store::ConversationKind::Direct => json!({ "id": c.id, "kind": "direct", "parties": parties }),
                    super::store::ConversationKind::Group => {
                        json!({ "id": c.id, "kind": "group", "group": { "id": c.group_id, "ext_id": c.group_ext_id, "name": c.group_name } })
                    }
                });
                let from = r.sender_member.and_then(|id| self.who.get(&id).cloned());
                let from_json = match (&from, &r.sender_external) {
                    (Some(w), _) => json!(w),
                    (None, Some(a)) => json!({ "external": a, "name": a, "deleted": false }),
                    _ => Value::Null,
                };
                let json = json!({
                    "id": r.ext_id,
                    "archive_id": r.id,
                    "source": r.source,
                    "conversation": conversation,
                    "from": from_json,
                    "sent_at": rfc3339(r.sent_at),
                    "kind": r.kind,
                    "text": r.body,
                    "attachments": serde_json::from_str::<Value>(&r.attachments).unwrap_or(Value::Array(vec![])),
                });
                Rendered { json, from, from_external: r.sender_external.clone(), conversation: conv, parties }
            })
            .collect())
    }
}

fn rfc3339(micros: i64) -> Option<String> {
    Utc.timestamp_micros(micros).single().map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    sha: sha2::Sha256,
    len: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.sha.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn io(context: &str, e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::Store(crate::directory::store::StoreError::Other(format!("{context}: {e}")))
}

impl Archive {
    /// Queues an export (or, `at_once`, marks it running for the caller to run), audited as
    /// `archive.export`. The viewer must see the whole scope: a member in their units, a unit
    /// under them; everything only with an unscoped grant.
    pub async fn request_export(
        &self,
        viewer: &Viewer,
        scope: ExportScope,
        format: Format,
        at_once: bool,
    ) -> DirectoryResult<ExportRow> {
        if let (Some(from), Some(to)) = (scope.from, scope.to)
            && from >= to
        {
            return Err(DirectoryError::invalid("to", "must be after from"));
        }
        match (scope.member, scope.unit) {
            (Some(_), Some(_)) => {
                return Err(DirectoryError::invalid("scope", "a member or a unit, not both"));
            }
            (Some(m), None) => {
                if !self.in_scope(viewer, m).await? {
                    return Err(DirectoryError::NotFound { kind: "member", id: m.to_string() });
                }
            }
            (None, Some(u)) => {
                let path = self.directory.store().org_unit_ancestors(u).await?;
                if path.is_empty() {
                    return Err(DirectoryError::NotFound { kind: "org unit", id: u.to_string() });
                }
                if let Some(units) = &viewer.units
                    && !path.iter().any(|p| units.contains(p))
                {
                    return Err(DirectoryError::NotFound { kind: "org unit", id: u.to_string() });
                }
            }
            (None, None) => {
                if viewer.units.is_some() {
                    return Err(DirectoryError::invalid(
                        "scope",
                        "a scoped grant exports a member or a unit",
                    ));
                }
            }
        }
        let row = ExportRow {
            id: Uuid::now_v7(),
            created_by: viewer.actor.who.clone(),
            created_at: Utc::now(),
            scope: serde_json::to_string(&scope).expect("plain data"),
            format: format.as_str().to_owned(),
            state: if at_once { ExportState::Running } else { ExportState::Queued }.as_str().to_owned(),
            total: 0,
            done: 0,
            file: None,
            size: None,
            sha256: None,
            manifest: None,
            error: None,
            expires_at: None,
        };
        let audit = AuditRecord::new(
            &viewer.actor,
            row.created_at,
            "archive.export",
            ("archive_export", Some(row.id.to_string())),
            None,
            Some(&json!({ "scope": scope, "format": format })),
        );
        self.store.archive_export_insert(&Sealed::new(), &row, &audit).await?;
        Ok(row)
    }

    /// Runs every queued export, then expires old files (the `archive:exports` job).
    pub async fn run_queued_exports(&self) -> DirectoryResult<usize> {
        let mut n = 0;
        while let Some(row) = self.store.archive_export_claim(&Sealed::new()).await? {
            self.run_export(row, &|_, _| {}).await?;
            n += 1;
        }
        self.expire_exports(Utc::now()).await?;
        Ok(n)
    }

    /// Writes an export's file (the row is `running`), telling `progress(done, total)` as it
    /// goes, and stores the outcome in the row (a failure too, with its reason).
    pub async fn run_export(
        &self,
        mut row: ExportRow,
        progress: &(dyn Fn(i64, i64) + Send + Sync),
    ) -> DirectoryResult<ExportRow> {
        let part = self.cfg.export_dir.join(format!("{}.part", row.id));
        let result = self.write_export(&mut row, &part, progress).await;
        let _ = tokio::fs::remove_dir_all(&part).await;
        match result {
            Ok(()) => {
                row.state = ExportState::Ready.as_str().into();
                row.expires_at = Some(Utc::now() + chrono::Duration::hours(self.cfg.export_ttl_hours));
            }
            Err(e) => {
                tracing::error!(export = %row.id, error = %e, "archive export failed");
                row.state = ExportState::Failed.as_str().into();
                row.error = Some(e.to_string());
                if let Some(f) = row.file.take() {
                    let _ = tokio::fs::remove_file(f).await;
                }
            }
        }
        self.store.archive_export_update(&Sealed::new(), &row).await?;
        Ok(row)
    }

    async fn write_export(
        &self,
        row: &mut ExportRow,
        part: &Path,
        progress: &(dyn Fn(i64, i64) + Send + Sync),
    ) -> DirectoryResult<()> {
        let scope: ExportScope = serde_json::from_str(&row.scope).map_err(|e| io("export scope", e))?;
        let format = Format::parse(&row.format).ok_or_else(|| io("export format", &row.format))?;
        let mut f = MessageFilter {
            member: scope.member,
            units: scope.unit.map(|u| vec![u]),
            from: scope.from.map(|t| t.timestamp_micros()),
            to: scope.to.map(|t| t.timestamp_micros()),
            limit: PAGE,
            ..Default::default()
        };
        row.total = self.store.archive_count(&f).await?;
        self.store.archive_export_update(&Sealed::new(), row).await?;
        tokio::fs::create_dir_all(part.join("attachments")).await.map_err(|e| io("export directory", e))?;
        let messages_path = part.join(format.file_name());
        let file = tokio::fs::File::create(&messages_path).await.map_err(|e| io("export file", e))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut sha = sha2::Sha256::new();
        let mut size = 0u64;
        let mut renderer = Renderer::default();
        let mut attachments: BTreeSet<String> = BTreeSet::new();
        let mut csv_header = format == Format::Csv;
        loop {
            let rows = self.store.archive_messages(&f).await?;
            let rendered = renderer.render(self, &rows).await?;
            let mut buf: Vec<u8> = Vec::with_capacity(rows.len() * 400);
            if format == Format::Csv {
                let mut w = csv::Writer::from_writer(&mut buf);
                if csv_header {
                    w.write_record(CSV_HEADER).map_err(|e| io("csv", e))?;
                    csv_header = false;
                }
                for (r, m) in rows.iter().zip(&rendered) {
                    w.write_record(csv_record(r, m)).map_err(|e| io("csv", e))?;
                }
                w.flush().map_err(|e| io("csv", e))?;
            }
            for (r, m) in rows.iter().zip(&rendered) {
                for a in m.json["attachments"].as_array().into_iter().flatten() {
                    if let Some(s) = a["sha256"].as_str() {
                        attachments.insert(s.to_ascii_lowercase());
                    }
                }
                match format {
                    Format::Jsonl => {
                        serde_json::to_writer(&mut buf, &m.json).map_err(|e| io("json", e))?;
                        buf.push(b'\n');
                    }
                    Format::Eml => mbox_entry(&mut buf, r, m),
                    Format::Csv => {}
                }
            }
            sha.update(&buf);
            size += buf.len() as u64;
            out.write_all(&buf).await.map_err(|e| io("export file", e))?;
            row.done += rows.len() as i64;
            progress(row.done, row.total);
            self.store.archive_export_update(&Sealed::new(), row).await?;
            if (rows.len() as i64) < PAGE {
                break;
            }
            f.cursor = rows.last().map(|r| (r.sent_at, r.id));
        }
        out.flush().await.map_err(|e| io("export file", e))?;
        let mut files =
            vec![json!({ "path": format.file_name(), "size": size, "sha256": hex::encode(sha.finalize()) })];
        let mut missing = Vec::new();
        for s in &attachments {
            match self.store.archive_blob(s).await? {
                Some(b) => {
                    let path = format!("attachments/{s}");
                    tokio::fs::write(part.join(&path), &b.bytes)
                        .await
                        .map_err(|e| io("export attachment", e))?;
                    files.push(json!({ "path": path, "size": b.size, "sha256": s, "mime": b.mime }));
                }
                None => missing.push(s.clone()),
            }
        }
        let manifest = json!({
            "export": row.id,
            "created_at": row.created_at,
            "created_by": row.created_by,
            "format": format,
            "scope": scope,
            "messages": row.done,
            "attachments": files.len() - 1,
            "attachments_missing": missing,
            "files": files,
        });
        let manifest_text = serde_json::to_string_pretty(&manifest).expect("plain data");
        tokio::fs::write(part.join("manifest.json"), &manifest_text).await.map_err(|e| io("manifest", e))?;
        let tar_path = self.cfg.export_dir.join(format!("{}.tar", row.id));
        let (part_dir, tar_to) = (part.to_owned(), tar_path.clone());
        let names: Vec<String> = std::iter::once("manifest.json".to_owned())
            .chain(files.iter().filter_map(|f| f["path"].as_str().map(str::to_owned)))
            .collect();
        let (tar_size, tar_sha) = tokio::task::spawn_blocking(move || pack(&part_dir, &names, &tar_to))
            .await
            .map_err(|e| io("export", e))?
            .map_err(|e| io("export tar", e))?;
        row.file = Some(tar_path.display().to_string());
        row.size = Some(tar_size as i64);
        row.sha256 = Some(tar_sha);
        row.manifest = Some(manifest_text);
        Ok(())
    }

    /// Deletes the files of exports past their expiry at `now` (the rows stay, `expired`).
    pub async fn expire_exports(&self, now: DateTime<Utc>) -> DirectoryResult<u64> {
        let mut n = 0;
        for mut e in self.store.archive_exports(1000).await? {
            if e.state == ExportState::Ready.as_str() && e.expires_at.is_some_and(|t| t <= now) {
                if let Some(f) = e.file.take() {
                    let _ = tokio::fs::remove_file(&f).await;
                }
                e.state = ExportState::Expired.as_str().into();
                self.store.archive_export_update(&Sealed::new(), &e).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// An export's file for download (ready, not expired), audited as `archive.download`.
    pub async fn export_file(&self, viewer: &Viewer, id: Uuid) -> DirectoryResult<(ExportRow, PathBuf)> {
        let row = self
            .store
            .archive_export(id)
            .await?
            .ok_or_else(|| DirectoryError::NotFound { kind: "export", id: id.to_string() })?;
        let scope: ExportScope = serde_json::from_str(&row.scope).unwrap_or_default();
        let visible = match (scope.member, viewer.units.is_some()) {
            (_, false) => true,
            (Some(m), true) => self.in_scope(viewer, m).await?,
            (None, true) => row.created_by == viewer.actor.who,
        };
        let file = row.file.clone().filter(|_| visible && row.state == ExportState::Ready.as_str());
        let Some(file) = file else {
            return Err(DirectoryError::NotFound { kind: "export", id: id.to_string() });
        };
        self.audit_view(
            viewer,
            "archive.download",
            ("archive_export", Some(id.to_string())),
            json!({ "size": row.size }),
        )
        .await?;
        Ok((row, PathBuf::from(file)))
    }
}

const CSV_HEADER: [&str; 13] = [
    "id",
    "source",
    "sent_at",
    "conversation",
    "conversation_kind",
    "group",
    "from_member",
    "from_name",
    "from_account_number",
    "from_external",
    "kind",
    "text",
    "attachments",
];

fn csv_record(r: &MessageRow, m: &Rendered) -> [String; 13] {
    let group = m
        .conversation
        .as_ref()
        .and_then(|c| c.group_name.clone().or_else(|| c.group_ext_id.clone()))
        .unwrap_or_default();
    let kind = m.conversation.as_ref().map(|c| c.kind.as_str().to_owned()).unwrap_or_default();
    let attachments: Vec<String> = m.json["attachments"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["sha256"].as_str().map(|s| format!("attachments/{s}")))
        .collect();
    [
        r.ext_id.clone(),
        r.source.clone(),
        rfc3339(r.sent_at).unwrap_or_default(),
        r.conversation.to_string(),
        kind,
        group,
        r.sender_member.map(|u| u.to_string()).unwrap_or_default(),
        m.from.as_ref().map(|w| w.name.clone()).unwrap_or_default(),
        m.from.as_ref().and_then(|w| w.account_number).map(|n| n.to_string()).unwrap_or_default(),
        m.from_external.clone().unwrap_or_default(),
        r.kind.clone(),
        r.body.clone(),
        attachments.join(" "),
    ]
}

/// An address for a party in an e-mail export: the member's login name (an address in the
/// enterprise's mail domain), the external address, or a placeholder under `.invalid`.
fn mailbox(name: &str, address: Option<&str>) -> lettre::message::Mailbox {
    let addr = address
        .and_then(|a| a.parse::<lettre::Address>().ok())
        .unwrap_or_else(|| lettre::Address::new("unknown", "roster.invalid").expect("a valid address"));
    lettre::message::Mailbox::new(Some(name.to_owned()), addr)
}

/// One record as an RFC 5322 message in an mboxrd file.
fn mbox_entry(buf: &mut Vec<u8>, r: &MessageRow, m: &Rendered) {
    let from = match (&m.from, &m.from_external) {
        (Some(w), _) => mailbox(&w.name, w.login.as_deref()),
        (None, Some(x)) => mailbox(x, Some(x)),
        _ => mailbox("unknown", None),
    };
    let mut builder = lettre::Message::builder().from(from.clone());
    let recipients: Vec<lettre::message::Mailbox> = match &m.conversation {
        Some(c) if c.kind == super::store::ConversationKind::Group => {
            let name = c.group_name.clone().or_else(|| c.group_ext_id.clone()).unwrap_or_default();
            vec![mailbox(&name, c.group_ext_id.as_deref())]
        }
        _ => m
            .parties
            .iter()
            .map(|p| {
                let name = p["name"].as_str().unwrap_or("");
                mailbox(name, p["login"].as_str().or_else(|| p["external"].as_str()))
            })
            .filter(|mb| mb.email != from.email)
            .collect(),
    };
    for to in recipients.into_iter().take(1) {
        builder = builder.to(to);
    }
    let sent = Utc.timestamp_micros(r.sent_at).single().unwrap_or_default();
    let subject: String =
        if r.body.is_empty() { format!("[{}]", r.kind) } else { r.body.chars().take(60).collect() };
    let message = builder
        .date(sent.into())
        .subject(subject)
        .message_id(Some(format!("<{}.{}@archive.roster.invalid>", r.id, r.source.replace(':', "-"))))
        .header(lettre::message::header::ContentType::TEXT_PLAIN)
        .body(r.body.clone());
    let bytes = match message {
        Ok(msg) => msg.formatted(),
        Err(e) => {
            format!("Subject: record {} could not be written as e-mail: {e}\r\n\r\n{}", r.ext_id, r.body)
                .into_bytes()
        }
    };
    // mboxrd: a "From " line starts each message; lines that look like one are quoted with '>'.
    buf.extend_from_slice(
        format!("From roster@archive.roster.invalid {}\n", sent.format("%a %b %e %H:%M:%S %Y")).as_bytes(),
    );
    let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
    for line in text.lines() {
        if line.trim_start_matches('>').starts_with("From ") {
            buf.push(b'>');
        }
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
    }
    buf.push(b'\n');
}

/// Packs the part directory's files (in `names` order) into `to`: its size and SHA-256.
fn pack(dir: &Path, names: &[String], to: &Path) -> std::io::Result<(u64, String)> {
    let file = std::fs::File::create(to)?;
    let mut hashing = Hashing { inner: std::io::BufWriter::new(file), sha: sha2::Sha256::new(), len: 0 };
    {
        let mut tar = tar::Builder::new(&mut hashing);
        for name in names {
            tar.append_path_with_name(dir.join(name), name)?;
        }
        tar.finish()?;
    }
    hashing.flush()?;
    Ok((hashing.len, hex::encode(hashing.sha.finalize())))
}
