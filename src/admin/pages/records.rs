//! *Message records* (permission *view message records*; a scoped grant sees the records of
//! members in its subtree): search, a member's conversations, a conversation's messages paged
//! by cursor both ways, image records as thumbnails, groups, and the deleted accounts whose
//! records stay under their tombstones. Every page that shows records is an audit row
//! (`archive.view` / `archive.search`, written by [`crate::archive::Archive`]).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{Errors, Reply, opt};
use crate::admin::views::{Chrome, html};
use crate::admin::{Console, Failure, Principal, ready};
use crate::archive::ingest::Attachment;
use crate::archive::store::{ConversationKind, ConversationRow, GroupRow, MessageRow};
use crate::archive::{Archive, Cursor, Search, Viewer, Who};
use crate::directory::model::Permission;

const PAGE: usize = 50;

#[derive(Debug, Default, Deserialize)]
pub struct RecordsQuery {
    #[serde(default)]
    pub member: String,
    #[serde(default)]
    pub counterpart: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub q: String,
    #[serde(default)]
    pub cursor: Option<String>,
    /// A flash message after a redirect.
    #[serde(default)]
    pub done: Option<String>,
}

/// A message as the console shows it.
pub struct MsgView {
    pub at: String,
    pub from: String,
    pub deleted: bool,
    pub kind: String,
    pub text: String,
    pub conversation: i64,
    /// Attachments declared as images: thumbnails (the blob is served inline only when its
    /// sniffed type is a raster image).
    pub images: Vec<String>,
    /// Other attachments: `(sha256, name)`.
    pub files: Vec<(String, String)>,
}

pub struct DeletedView {
    pub id: Uuid,
    pub name: String,
    pub number: String,
    pub messages: i64,
}

pub struct ConvView {
    pub id: i64,
    pub title: String,
    pub kind: &'static str,
    pub messages: i64,
    pub last: String,
}

#[derive(Template)]
#[template(path = "records.html", config = "src/admin/askama.toml")]
pub struct RecordsPage {
    pub c: Chrome,
    pub q: RecordsQuery,
    pub errors: Errors,
    pub searched: bool,
    pub rows: Vec<MsgView>,
    pub next: Option<String>,
    pub prev: Option<String>,
    pub groups: Vec<GroupRow>,
    pub deleted: Vec<DeletedView>,
    pub everywhere: bool,
    /// The exports table, rendered by [`ExportsFragment`].
    pub exports_table: String,
}

impl RecordsPage {
    /// The query string of this search with another cursor.
    pub fn link(&self, cursor: &str) -> String {
        let q = &self.q;
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("member", q.member.as_str()),
                ("counterpart", &q.counterpart),
                ("group", &q.group),
                ("kind", &q.kind),
                ("from", &q.from),
                ("to", &q.to),
                ("q", &q.q),
                ("cursor", cursor),
            ])
            .finish()
    }
}

#[derive(Template)]
#[template(path = "records_member.html", config = "src/admin/askama.toml")]
pub struct MemberRecordsPage {
    pub c: Chrome,
    pub who: Who,
    pub conversations: Vec<ConvView>,
}

impl MemberRecordsPage {
    pub fn kind_key(&self, kind: &str) -> &'static str {
        if kind == "group" { "records.kind_group" } else { "records.kind_direct" }
    }
}

#[derive(Template)]
#[template(path = "records_conversation.html", config = "src/admin/askama.toml")]
pub struct ConversationPage {
    pub c: Chrome,
    pub id: i64,
    pub member: Option<Uuid>,
    pub rows: Vec<MsgView>,
    pub next: Option<String>,
    pub prev: Option<String>,
}

impl ConversationPage {
    pub fn link(&self, cursor: &str) -> String {
        let member = self.member.map(|m| m.to_string()).unwrap_or_default();
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs([("member", member.as_str()), ("cursor", cursor)])
            .finish()
    }
}

/// Who is looking, and at which subtrees.
fn viewer(p: &Principal) -> Viewer {
    Viewer { actor: p.actor(), units: p.scopes(Permission::ViewMessages) }
}

fn day(s: &str, field: &str, errors: &mut Errors) -> Option<DateTime<Utc>> {
    let s = opt(s)?;
    match NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
        Ok(d) => Some(d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()),
        Err(_) => {
            errors.fields.push((field.into(), "YYYY-MM-DD".into()));
            None
        }
    }
}

fn micros(t: i64) -> String {
    Utc.timestamp_micros(t).single().map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_default()
}

/// The member a form names ([`Archive::member_named`]).
async fn find_member(a: &Archive, s: &str) -> Result<Option<Uuid>, Failure> {
    a.member_named(s).await.map_err(|e| Failure::from_directory(&e))
}

/// Messages for a page, with who sent them.
async fn views(a: &Archive, rows: &[MessageRow]) -> Result<Vec<MsgView>, Failure> {
    let ids: Vec<Uuid> = rows.iter().filter_map(|r| r.sender_member).collect();
    let who = a.who(ids).await.map_err(|e| Failure::from_directory(&e))?;
    Ok(rows
        .iter()
        .map(|r| {
            let (from, deleted) = match (&r.sender_member, &r.sender_external) {
                (Some(id), _) => who.get(id).map(|w| (label(w), w.deleted)).unwrap_or_default(),
                (None, Some(x)) => (x.clone(), false),
                _ => (String::new(), false),
            };
            let attachments: Vec<Attachment> = serde_json::from_str(&r.attachments).unwrap_or_default();
            let (images, files): (Vec<_>, Vec<_>) =
                attachments.into_iter().partition(|a| a.mime.starts_with("image/"));
            MsgView {
                at: micros(r.sent_at),
                from,
                deleted,
                kind: r.kind.clone(),
                text: r.body.clone(),
                conversation: r.conversation,
                images: images.into_iter().map(|a| a.sha256.to_ascii_lowercase()).collect(),
                files: files.into_iter().map(|a| (a.sha256.to_ascii_lowercase(), a.name)).collect(),
            }
        })
        .collect())
}

fn label(w: &Who) -> String {
    match w.account_number {
        Some(n) => format!("{} ({n})", w.name),
        None => w.name.clone(),
    }
}

/// A conversation's title: its group, or its two parties.
async fn title(a: &Archive, c: &ConversationRow) -> Result<String, Failure> {
    if c.kind == ConversationKind::Group {
        return Ok(c.group_name.clone().or_else(|| c.group_ext_id.clone()).unwrap_or_default());
    }
    let ids: Vec<Uuid> = c
        .key
        .split(' ')
        .filter_map(|k| k.strip_prefix("m:"))
        .filter_map(|u| Uuid::parse_str(u).ok())
        .collect();
    let who: HashMap<Uuid, Who> = a.who(ids).await.map_err(|e| Failure::from_directory(&e))?;
    Ok(c.key
        .split(' ')
        .map(|k| match k.split_once(':') {
            Some(("m", id)) => {
                Uuid::parse_str(id).ok().and_then(|id| who.get(&id)).map(label).unwrap_or_default()
            }
            Some((_, x)) => x.to_owned(),
            None => k.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ↔ "))
}

pub async fn records(State(state): State<Console>, p: Principal, Query(q): Query<RecordsQuery>) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has(Permission::ViewMessages), "archive.view").await?;
    let a = &r.archive;
    let viewer = viewer(&p);
    let mut errors = Errors::default();
    let member = match opt(&q.member) {
        Some(m) => match find_member(a, &m).await? {
            Some(id) => Some(id),
            None => {
                errors.fields.push(("member".into(), p.lang.t("records.no_member").into()));
                None
            }
        },
        None => None,
    };
    let group = match opt(&q.group) {
        Some(g) => match g.parse::<i64>() {
            Ok(g) => Some(g),
            Err(_) => {
                errors.fields.push(("group".into(), p.lang.t("records.no_group").into()));
                None
            }
        },
        None => None,
    };
    let from = day(&q.from, "from", &mut errors);
    let to = day(&q.to, "to", &mut errors).map(|t| t + chrono::Duration::days(1));
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(Cursor::parse(c).ok_or_else(|| Failure::Bad("not a cursor this page gave".into()))?),
        None => None,
    };
    let searched = [&q.member, &q.counterpart, &q.group, &q.kind, &q.from, &q.to, &q.q]
        .iter()
        .any(|v| !v.trim().is_empty());
    let (mut rows, mut next, mut prev) = (Vec::new(), None, None);
    if searched && errors.is_empty() {
        let search = Search {
            member,
            counterpart: opt(&q.counterpart),
            conversation: None,
            group,
            from,
            to,
            kind: opt(&q.kind),
            text: opt(&q.q).map(|_| q.q.clone()),
            cursor,
            limit: PAGE,
        };
        let page = a.search(&viewer, &search).await.map_err(|e| Failure::from_directory(&e))?;
        rows = views(a, &page.messages).await?;
        next = page.next_cursor;
        prev = page.prev_cursor;
    }
    let groups = a.store().archive_groups(viewer.units.as_deref()).await?;
    let everywhere = p.has_everywhere(Permission::ViewMessages);
    let mut deleted = Vec::new();
    if everywhere {
        let read = a.directory().store();
        for (id, messages) in a.store().archive_deleted_accounts(100).await? {
            if let Some(t) = read.tombstone(id).await? {
                deleted.push(DeletedView {
                    id,
                    name: t.profile.display_name,
                    number: t.account_number.to_string(),
                    messages,
                });
            }
        }
    }
    let exports = visible_exports(a, &p).await?;
    let exports_table = ExportsFragment { c: p.chrome(""), exports }.render().unwrap_or_default();
    let c = p.chrome(p.lang.t("menu.records")).at("/admin/records").flash(q.done.as_deref());
    let status =
        if errors.is_empty() { axum::http::StatusCode::OK } else { axum::http::StatusCode::BAD_REQUEST };
    Ok((
        status,
        html(&RecordsPage {
            c,
            q,
            errors,
            searched,
            rows,
            next,
            prev,
            groups,
            deleted,
            everywhere,
            exports_table,
        }),
    )
        .into_response())
}

pub async fn member(State(state): State<Console>, p: Principal, Path(id): Path<String>) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has(Permission::ViewMessages), "archive.view").await?;
    let a = &r.archive;
    let id = super::uuid(&id)?;
    let viewer = viewer(&p);
    if !a.in_scope(&viewer, id).await.map_err(|e| Failure::from_directory(&e))? {
        return Err(Failure::NotFound);
    }
    let who =
        a.who([id]).await.map_err(|e| Failure::from_directory(&e))?.remove(&id).ok_or(Failure::NotFound)?;
    let mut conversations = Vec::new();
    for c in a.store().archive_conversations_of(id).await? {
        conversations.push(ConvView {
            id: c.id,
            title: title(a, &c).await?,
            kind: if c.kind == ConversationKind::Group { "group" } else { "direct" },
            messages: c.messages,
            last: c.last_at.map(micros).unwrap_or_default(),
        });
    }
    a.audit_view(
        &viewer,
        "archive.view",
        ("member", Some(id.to_string())),
        serde_json::json!({ "conversations": conversations.len() }),
    )
    .await
    .map_err(|e| Failure::from_directory(&e))?;
    let c = p.chrome(&format!("{} · {}", p.lang.t("menu.records"), label(&who))).at("/admin/records");
    Ok(html(&MemberRecordsPage { c, who, conversations }).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct ConversationQuery {
    #[serde(default)]
    pub member: String,
    #[serde(default)]
    pub cursor: Option<String>,
}

pub async fn conversation(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<i64>,
    Query(q): Query<ConversationQuery>,
) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has(Permission::ViewMessages), "archive.view").await?;
    let a = &r.archive;
    let conv = a.store().archive_conversation(id).await?.ok_or(Failure::NotFound)?;
    let member = opt(&q.member).map(|m| super::uuid(&m)).transpose()?;
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(c) => Some(Cursor::parse(c).ok_or_else(|| Failure::Bad("not a cursor this page gave".into()))?),
        None => None,
    };
    let search = Search { conversation: Some(id), member, cursor, limit: PAGE, ..Default::default() };
    let page = a.search(&viewer(&p), &search).await.map_err(|e| Failure::from_directory(&e))?;
    let rows = views(a, &page.messages).await?;
    let t = title(a, &conv).await?;
    let c = p.chrome(&format!("{} · {t}", p.lang.t("menu.records"))).at("/admin/records");
    Ok(html(&ConversationPage { c, id, member, rows, next: page.next_cursor, prev: page.prev_cursor })
        .into_response())
}

/// An attachment's bytes: inline when they are a raster image (thumbnails), a download
/// otherwise; never rendered as a page.
pub async fn blob(State(state): State<Console>, p: Principal, Path(sha256): Path<String>) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has(Permission::ViewMessages), "archive.view").await?;
    let sha256 = sha256.to_ascii_lowercase();
    let blob = r.archive.store().archive_blob(&sha256).await?.ok_or(Failure::NotFound)?;
    Ok(crate::http::blob_response(&blob.sha256, &blob.mime, blob.bytes, true))
}

/// *Export*: whose records (a member, or a unit path; neither: everything), the time range, the
/// format.
#[derive(Debug, Default, Deserialize)]
pub struct ExportForm {
    #[serde(default)]
    pub member: String,
    #[serde(default)]
    pub unit: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub format: String,
}

/// Queues an export; the `archive:exports` job writes it (progress on the page).
pub async fn export(
    State(state): State<Console>,
    p: Principal,
    axum::Form(f): axum::Form<ExportForm>,
) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has(Permission::ViewMessages), "archive.export").await?;
    let a = &r.archive;
    let format = crate::archive::export::Format::parse(f.format.trim())
        .ok_or_else(|| Failure::Bad("format must be jsonl, csv or eml".into()))?;
    let member = match opt(&f.member) {
        Some(m) => Some(
            find_member(a, &m).await?.ok_or_else(|| Failure::Bad(p.lang.t("records.no_member").into()))?,
        ),
        None => None,
    };
    let unit = match opt(&f.unit) {
        Some(path) => Some(unit_at(&r.directory, &path).await?),
        None => None,
    };
    let mut errors = Errors::default();
    let from = day(&f.from, "from", &mut errors);
    let to = day(&f.to, "to", &mut errors).map(|t| t + chrono::Duration::days(1));
    if let Some((_, msg)) = errors.fields.first() {
        return Err(Failure::Bad(msg.clone()));
    }
    let scope = crate::archive::export::ExportScope { member, unit, from, to };
    match a.request_export(&viewer(&p), scope, format, false).await {
        Ok(_) => Ok(crate::admin::see_other("/admin/records?done=records.export_queued#exports")),
        Err(e) => Err(Failure::from_directory(&e)),
    }
}

#[derive(Template)]
#[template(path = "records_exports.html", config = "src/admin/askama.toml")]
pub struct ExportsFragment {
    pub c: Chrome,
    pub exports: Vec<crate::archive::store::ExportRow>,
}

impl ExportsFragment {
    /// Anything still to write: the table polls itself until not.
    pub fn running(&self) -> bool {
        self.exports.iter().any(|e| e.state == "queued" || e.state == "running")
    }
    pub fn at(&self, t: &DateTime<Utc>) -> String {
        crate::admin::views::when(t)
    }
    pub fn percent(&self, e: &crate::archive::store::ExportRow) -> i64 {
        if e.total == 0 { if e.state == "ready" { 100 } else { 0 } } else { e.done * 100 / e.total }
    }
}

/// The exports table (the page polls it while an export runs).
pub async fn exports(State(state): State<Console>, p: Principal) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has(Permission::ViewMessages), "archive.view").await?;
    let exports = visible_exports(&r.archive, &p).await?;
    let c = p.chrome(p.lang.t("records.exports"));
    Ok(html(&ExportsFragment { c, exports }).into_response())
}

/// Exports a viewer may see: all with an unscoped grant, their own otherwise.
async fn visible_exports(
    a: &Archive,
    p: &Principal,
) -> Result<Vec<crate::archive::store::ExportRow>, Failure> {
    let all = a.store().archive_exports(20).await?;
    Ok(if p.has_everywhere(Permission::ViewMessages) {
        all
    } else {
        all.into_iter().filter(|e| e.created_by == p.actor().who).collect()
    })
}

/// Downloads a ready export; resumable (`Range`).
pub async fn download(
    State(state): State<Console>,
    p: Principal,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has(Permission::ViewMessages), "archive.download").await?;
    let id = super::uuid(&id)?;
    let (row, path) =
        r.archive.export_file(&viewer(&p), id).await.map_err(|e| Failure::from_directory(&e))?;
    Ok(crate::http::file_response(&path, &headers, "application/x-tar", &format!("records-{}.tar", row.id))
        .await)
}

pub struct RuleView {
    pub path: String,
    pub days: i64,
    pub set_by: String,
}

pub struct HoldView {
    pub id: Uuid,
    pub target: String,
    pub reason: String,
    pub by: String,
    pub at: String,
    pub released: String,
}

#[derive(Template)]
#[template(path = "records_retention.html", config = "src/admin/askama.toml")]
pub struct RetentionPage {
    pub c: Chrome,
    pub rules: Vec<RuleView>,
    pub holds: Vec<HoldView>,
}

/// The unit a path such as `Sales / East` names (a form field), or 400.
async fn unit_at(d: &crate::directory::DirectoryService, path: &str) -> Result<Uuid, Failure> {
    match super::org::resolve_path(d, path).await? {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(Failure::Bad("name a unit (a path such as Sales / East)".into())),
        Err(msg) => Err(Failure::Bad(msg)),
    }
}

async fn unit_path(d: &crate::directory::DirectoryService, unit: Uuid) -> Result<String, Failure> {
    let mut names = Vec::new();
    for id in d.store().org_unit_ancestors(unit).await? {
        if let Some(u) = d.store().org_unit(id).await? {
            names.push(u.name);
        }
    }
    names.reverse();
    Ok(names.join(" / "))
}

/// Retention per subtree and legal holds (an unscoped *view message records* grant).
pub async fn retention(State(state): State<Console>, p: Principal, Query(done): Query<super::Done>) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has_everywhere(Permission::ViewMessages), "archive.retention").await?;
    let a = &r.archive;
    let mut rules = Vec::new();
    for rule in a.store().archive_retention().await? {
        rules.push(RuleView {
            path: unit_path(&r.directory, rule.unit_id).await?,
            days: rule.days,
            set_by: rule.set_by,
        });
    }
    let mut holds = Vec::new();
    for h in a.store().archive_holds().await? {
        let target = if h.target_kind == "unit" {
            format!("{}: {}", p.lang.t("records.unit"), unit_path(&r.directory, h.target_id).await?)
        } else {
            let who = a.who([h.target_id]).await.map_err(|e| Failure::from_directory(&e))?;
            format!(
                "{}: {}",
                p.lang.t("records.member"),
                who.get(&h.target_id).map(label).unwrap_or_default()
            )
        };
        holds.push(HoldView {
            id: h.id,
            target,
            reason: h.reason,
            by: h.created_by,
            at: crate::admin::views::when(&h.created_at),
            released: h.released_at.as_ref().map(crate::admin::views::when).unwrap_or_default(),
        });
    }
    let c = p.chrome(p.lang.t("records.retention")).at("/admin/records").flash(done.done.as_deref());
    Ok(html(&RetentionPage { c, rules, holds }).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct RetentionForm {
    #[serde(default)]
    pub unit: String,
    /// Blank: keep for good (the rule is removed).
    #[serde(default)]
    pub days: String,
}

pub async fn set_retention(
    State(state): State<Console>,
    p: Principal,
    axum::Form(f): axum::Form<RetentionForm>,
) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has_everywhere(Permission::ViewMessages), "archive.retention").await?;
    let unit = unit_at(&r.directory, &f.unit).await?;
    let days = match opt(&f.days) {
        Some(d) => Some(d.parse::<i64>().map_err(|_| Failure::Bad("days: a whole number".into()))?),
        None => None,
    };
    r.archive.set_retention(&p.actor(), unit, days).await.map_err(|e| Failure::from_directory(&e))?;
    Ok(crate::admin::see_other("/admin/records/retention?done=records.saved"))
}

#[derive(Debug, Default, Deserialize)]
pub struct HoldForm {
    /// `member` or `unit`.
    #[serde(default)]
    pub target: String,
    /// A member (number, login name or id) or a unit path.
    #[serde(default)]
    pub who: String,
    #[serde(default)]
    pub reason: String,
}

pub async fn add_hold(
    State(state): State<Console>,
    p: Principal,
    axum::Form(f): axum::Form<HoldForm>,
) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has_everywhere(Permission::ViewMessages), "archive.hold").await?;
    let target = crate::archive::retention::HoldTarget::parse(f.target.trim())
        .ok_or_else(|| Failure::Bad("target: member or unit".into()))?;
    let id = match target {
        crate::archive::retention::HoldTarget::Member => find_member(&r.archive, f.who.trim())
            .await?
            .ok_or_else(|| Failure::Bad(p.lang.t("records.no_member").into()))?,
        crate::archive::retention::HoldTarget::Unit => unit_at(&r.directory, &f.who).await?,
    };
    r.archive.add_hold(&p.actor(), target, id, &f.reason).await.map_err(|e| Failure::from_directory(&e))?;
    Ok(crate::admin::see_other("/admin/records/retention?done=records.saved"))
}

pub async fn release_hold(State(state): State<Console>, p: Principal, Path(id): Path<String>) -> Reply {
    let r = ready(&state)?;
    p.require(&r.directory, p.has_everywhere(Permission::ViewMessages), "archive.hold").await?;
    let id = super::uuid(&id)?;
    r.archive.release_hold(&p.actor(), id).await.map_err(|e| Failure::from_directory(&e))?;
    Ok(crate::admin::see_other("/admin/records/retention?done=records.saved"))
}
