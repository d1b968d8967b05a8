//! The embedded default: SQLite in WAL mode, one writer connection and a read pool.

use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool};

use super::StoreError;
use crate::config::DatabaseConfig;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// SQLite store. All writes go through the single `write` connection, so transactions never
/// contend inside one process; `busy_timeout` covers other processes (the CLI next to the daemon).
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
}

/// One SQLite transaction, begun with `BEGIN IMMEDIATE` so it holds the write lock from its first
/// read: a read-then-write transaction can then never fail to upgrade its lock.
pub struct SqliteTx {
    tx: sqlx::Transaction<'static, Sqlite>,
}

fn err(e: sqlx::Error) -> StoreError {
    super::classify(e, |db| {
        let code: i64 = db.code().and_then(|c| c.parse().ok()).unwrap_or(0);
        match code & 0xff {
            // SQLITE_CONSTRAINT with the UNIQUE or PRIMARYKEY extended code.
            19 if db.kind() == sqlx::error::ErrorKind::UniqueViolation => {
                Some(StoreError::Unique(unique_key(db.message())))
            }
            8 => Some(StoreError::ReadOnly(db.message().to_owned())),
            13 => Some(StoreError::DiskFull(db.message().to_owned())),
            5 | 6 | 10 | 14 => Some(StoreError::Unavailable(db.message().to_owned())),
            _ => None,
        }
    })
}

/// "UNIQUE constraint failed: org_units.parent_id, org_units.name" -> "org_units_parent_id_name";
/// "UNIQUE constraint failed: index 'org_units_root_name'" -> "org_units_root_name".
fn unique_key(message: &str) -> String {
    let detail = message.rsplit(": ").next().unwrap_or(message);
    if let Some(index) = detail.strip_prefix("index '") {
        return index.trim_end_matches('\'').to_owned();
    }
    let mut table = "";
    let mut columns = Vec::new();
    for part in detail.split(", ") {
        let (t, c) = part.split_once('.').unwrap_or(("", part));
        table = t;
        columns.push(c);
    }
    format!("{table}_{}", columns.join("_"))
}

/// The database file a `sqlite:` URL names.
pub fn database_file(url: &str) -> Option<std::path::PathBuf> {
    SqliteConnectOptions::from_str(url).ok().map(|o| o.get_filename().to_path_buf())
}

/// Opening a database in WAL mode creates its `-wal` and `-shm` files; on a full file system
/// SQLite says only "disk I/O error". When the database's file system has no room left, say so.
fn at_open(e: StoreError, opts: &SqliteConnectOptions) -> StoreError {
    let StoreError::Unavailable(msg) = &e else { return e };
    let dir = opts
        .get_filename()
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    match space_left(dir) {
        Some(free) if free < 1024 * 1024 => {
            StoreError::DiskFull(format!("{} has no space left ({msg})", dir.display()))
        }
        _ => e,
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
fn space_left(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call, and `st` is a plain
    // C struct statvfs fills in; it is read only when the call succeeded.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

impl SqliteStore {
    pub async fn open(cfg: &DatabaseConfig) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str(&cfg.url)
            .map_err(|e| StoreError::Other(format!("database.url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_millis(cfg.busy_timeout_ms))
            .foreign_keys(true)
            // New databases get 16 KiB pages (an existing file keeps the size it has: SQLite
            // cannot change it in WAL mode). Each commit writes every page it dirtied to the
            // log, and a new member dirties a page in each of several indexes: with fewer,
            // larger pages a first sync of 100,000 members wrote and synced much less (commits
            // 0.96 -> 0.55-0.6 s, the whole sync 6.4-6.9 -> 5.5-6.2 s on the bench machine).
            .page_size(16384);
        if let Some(dir) = opts.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", dir.display())))?;
        }
        let timeout = Duration::from_secs(cfg.connect_timeout_secs);
        // A local file does not go stale like a network connection: no ping before each use
        // (it would be one more hand-off to the connection's thread per request).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(timeout)
            // The writer's page cache: 64 MiB instead of SQLite's 2, so a batch of creates does
            // not spill pages to the log before it commits, and the archive's indexes keyed by
            // member stay cached between commits (readers keep the default). A checkpoint every
            // 4,096 pages (64 MiB of WAL) instead of 1,000: each writes the pages back and syncs.
            // Together they took the archive's ingest at 1,000,000 messages from 8,831/s to
            // 12,798/s (benches/archive.rs --floor).
            // Temporary files in memory: a multi-row INSERT into a table with foreign keys keeps
            // a statement journal (the index pages it changes, to undo it alone), and past 64 KiB
            // SQLite wrote that journal to a temporary file on disk, for every chunk.
            .connect_with(
                opts.clone()
                    .pragma("cache_size", "-65536")
                    .pragma("temp_store", "memory")
                    .pragma("wal_autocheckpoint", "4096"),
            )
            .await
            .map_err(|e| at_open(err(e), &opts))?;
        let read = SqlitePoolOptions::new()
            .max_connections(cfg.max_connections.max(1))
            .test_before_acquire(false)
            .acquire_timeout(timeout)
            .connect_with(opts.clone())
            .await
            .map_err(|e| at_open(err(e), &opts))?;
        Ok(SqliteStore { read, write })
    }

    /// The time for leader leases: this process's clock (an SQLite file has one node).
    async fn clock(&self) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        Ok(chrono::Utc::now())
    }

    fn backend_name() -> &'static str {
        "sqlite"
    }

    async fn begin_tx(&self) -> Result<sqlx::Transaction<'static, Sqlite>, StoreError> {
        self.write.begin_with("BEGIN IMMEDIATE").await.map_err(err)
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.write).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => err(e),
            other => StoreError::Migration(other.to_string()),
        })
    }

    async fn backup_impl(&self, file: &std::path::Path) -> Result<(), StoreError> {
        let path =
            file.to_str().ok_or_else(|| StoreError::Other(format!("{} is not UTF-8", file.display())))?;
        // One read transaction's snapshot, written out whole: writers go on meanwhile (WAL).
        sqlx::query("VACUUM INTO ?1").bind(path.to_owned()).execute(&self.read).await.map_err(err)?;
        Ok(())
    }

    async fn schema_state_impl(&self) -> Result<super::SchemaState, StoreError> {
        let (exists,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_one(&self.read)
        .await
        .map_err(err)?;
        let applied: Vec<(i64,)> = if exists > 0 {
            sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.read)
                .await
                .map_err(err)?
        } else {
            Vec::new()
        };
        Ok(super::schema_state(&MIGRATOR, applied.into_iter().map(|v| v.0)))
    }
}

/// A member's e-mails (in order) and further org units as JSON text next to its row.
const MEMBER_CHILDREN: &str = "\
    (SELECT json_group_array(json_array(address, kind, is_primary) ORDER BY position) \
     FROM member_emails WHERE member_emails.member_id = members.id) AS emails_json, \
    (SELECT json_group_array(lower(hex(org_unit_id))) \
     FROM member_org_units WHERE member_org_units.member_id = members.id) AS units_json, \
    (SELECT json_group_array(json_array(number, kind, is_primary) ORDER BY position) \
     FROM member_phones WHERE member_phones.member_id = members.id) AS phones_json";

/// A source's member keys as JSON arrays `[id, anchor, login name, digest]`, a few thousand to a
/// row: sqlx hands SQLite's rows to the async side one at a time, and 100,000 hand-offs took
/// longer than building and parsing the JSON.
const MEMBER_KEYS: &str = "SELECT json_group_array(json_array(lower(hex(id)), anchor, login_name, sync_digest)) \
    FROM members WHERE source = $1 GROUP BY rowid / 4096";

/// A source's groups' member ids, one JSON array a group (for the same reason).
const GROUP_MEMBERSHIPS: &str = "SELECT gm.group_id, json_group_array(lower(hex(gm.member_id))) \
    FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE g.source = $1 GROUP BY gm.group_id";

shared_sql!(Sqlite, SqliteStore, SqliteTx, err, MEMBER_CHILDREN, MEMBER_KEYS, GROUP_MEMBERSHIPS);

/// Bulk writes and checks of many rows, as multi-row `VALUES` and `IN` lists (SQLite has no
/// array parameters; these stay under its 32,766 bound parameters a statement).
mod bulk {
    use sqlx::{Sqlite, SqliteConnection};
    use uuid::Uuid;

    use super::err;
    use crate::directory::model as m;
    use crate::store::Result;

    type Qb = sqlx::QueryBuilder<Sqlite>;

    // Rows a multi-row insert. A full chunk always has the same text, so it is prepared once and
    // kept in the connection's statement cache: parsing and compiling a statement of thousands
    // of values every time cost more than running it. A shorter last chunk is not kept.
    const MEMBER_ROWS: usize = 250; // 23 values a row
    const CHILD_ROWS: usize = 1000; // 5 or 2
    const PAIR_ROWS: usize = 2000; // 2
    const LOG_ROWS: usize = 500; // 8

    /// Runs one multi-row statement for each chunk of `rows` items, in order, and returns the
    /// rows they changed. SQLite runs a statement on the connection's own thread while this one
    /// waits: the next chunk's statement (its text and thousands of bound values) is built
    /// meanwhile, so binding and running overlap instead of taking turns.
    async fn each_chunk<T>(
        c: &mut SqliteConnection,
        items: &[T],
        rows: usize,
        build: impl Fn(&[T]) -> Qb,
    ) -> Result<u64> {
        use std::task::Poll;
        let mut chunks = items.chunks(rows);
        let mut next = chunks.next().map(|chunk| (build(chunk), chunk.len() == rows));
        let mut changed = 0;
        while let Some((mut qb, full)) = next.take() {
            let mut run = std::pin::pin!(qb.build().persistent(full).execute(&mut *c));
            // The first poll hands the statement to the connection's thread.
            let started = std::future::poll_fn(|cx| Poll::Ready(run.as_mut().poll(cx))).await;
            next = chunks.next().map(|chunk| (build(chunk), chunk.len() == rows));
            let done = match started {
                Poll::Ready(done) => done,
                Poll::Pending => run.await,
            };
            changed += done.map_err(err)?.rows_affected();
        }
        Ok(changed)
    }

    /// New members' rows (23 values a row).
    pub async fn members_insert(
        c: &mut SqliteConnection,
        ms: &[m::Member],
        hashes: &[Option<String>],
    ) -> Result<()> {
        let rows: Vec<(&m::Member, &Option<String>)> = ms.iter().zip(hashes).collect();
        each_chunk(c, &rows, MEMBER_ROWS, |chunk| {
            let mut qb = Qb::new(format!(
                "INSERT INTO members ({}, password_hash, sync_digest) ",
                crate::store::sql::MEMBER_COLS
            ));
            qb.push_values(chunk, |mut row, (mb, hash)| {
                row.push_bind(mb.id)
                    .push_bind(mb.account_number)
                    .push_bind(mb.login_name.clone())
                    .push_bind(mb.display_name.clone())
                    .push_bind(mb.given_name.clone())
                    .push_bind(mb.family_name.clone())
                    .push_bind(mb.mobile.clone())
                    .push_bind(mb.title.clone())
                    .push_bind(mb.employee_number.clone())
                    .push_bind(mb.primary_org_unit_id)
                    .push_bind(mb.manager_id)
                    .push_bind(mb.state.as_str())
                    .push_bind(mb.source.as_str().to_owned())
                    .push_bind(mb.anchor.clone())
                    .push_bind(mb.version)
                    .push_bind(mb.created_at)
                    .push_bind(mb.updated_at)
                    .push_bind(mb.department.clone())
                    .push_bind(mb.organization.clone())
                    .push_bind(mb.division.clone())
                    .push_bind(mb.cost_center.clone())
                    .push_bind((*hash).clone())
                    .push_bind(mb.digest());
            });
            qb
        })
        .await?;
        Ok(())
    }

    /// E-mails, phones and further org units of members whose old ones (if any) are gone.
    pub async fn members_children(c: &mut SqliteConnection, ms: &[&m::Member]) -> Result<()> {
        let (emails, phones) = crate::store::listed_children(ms);
        for (head, rows) in [
            ("INSERT INTO member_emails (member_id, address, kind, is_primary, position) ", &emails),
            ("INSERT INTO member_phones (member_id, number, kind, is_primary, position) ", &phones),
        ] {
            each_chunk(c, rows, CHILD_ROWS, |chunk| {
                let mut qb = Qb::new(head);
                qb.push_values(chunk, |mut row, (id, i, value, kind, primary)| {
                    row.push_bind(*id)
                        .push_bind(value.to_string())
                        .push_bind(kind.to_string())
                        .push_bind(*primary)
                        .push_bind(*i);
                });
                qb
            })
            .await?;
        }
        let units: Vec<(Uuid, Uuid)> =
            ms.iter().flat_map(|mb| mb.org_unit_ids.iter().map(|u| (mb.id, *u))).collect();
        each_chunk(c, &units, CHILD_ROWS, |chunk| {
            let mut qb = Qb::new("INSERT INTO member_org_units (member_id, org_unit_id) ");
            qb.push_values(chunk, |mut row, (id, u)| {
                row.push_bind(*id).push_bind(*u);
            });
            qb
        })
        .await?;
        Ok(())
    }

    /// See [`MemberTx::member_lock`](crate::directory::store::MemberTx::member_lock): nothing to do, the
    /// transaction holds the database's one write lock from its start (`BEGIN IMMEDIATE`).
    pub async fn member_lock(_c: &mut SqliteConnection, _id: Uuid) -> Result<()> {
        Ok(())
    }

    /// See [`MemberTx::members_conflicts`](crate::directory::store::MemberTx::members_conflicts).
    pub async fn members_conflicts(
        c: &mut SqliteConnection,
        ms: &[m::Member],
        ids: &[Uuid],
    ) -> Result<Vec<(String, String)>> {
        let mut found = Vec::new();
        for chunk in ids.chunks(1000) {
            let mut qb = Qb::new("SELECT id FROM members WHERE id IN (");
            let mut list = qb.separated(", ");
            chunk.iter().for_each(|id| {
                list.push_bind(*id);
            });
            qb.push(") UNION ALL SELECT member_id FROM tombstones WHERE member_id IN (");
            let mut list = qb.separated(", ");
            chunk.iter().for_each(|id| {
                list.push_bind(*id);
            });
            qb.push(")");
            let rows: Vec<(Uuid,)> =
                qb.build_query_as().persistent(false).fetch_all(&mut *c).await.map_err(err)?;
            found.extend(rows.into_iter().map(|(id,)| ("id".to_owned(), id.to_string())));
        }
        // Five or so values a member.
        for chunk in ms.chunks(1000) {
            let mut qb = Qb::new("SELECT 'login_name', login_name FROM members WHERE login_name IN (");
            let mut list = qb.separated(", ");
            chunk.iter().for_each(|mb| {
                list.push_bind(mb.login_name.clone());
            });
            qb.push(")");
            let emails: Vec<String> =
                chunk.iter().flat_map(|mb| mb.emails.iter().map(|e| e.address.clone())).collect();
            if !emails.is_empty() {
                qb.push(" UNION ALL SELECT 'email', address FROM member_emails WHERE address IN (");
                let mut list = qb.separated(", ");
                emails.into_iter().for_each(|e| {
                    list.push_bind(e);
                });
                qb.push(")");
            }
            let mobiles: Vec<String> = chunk.iter().filter_map(|mb| mb.mobile.clone()).collect();
            if !mobiles.is_empty() {
                qb.push(" UNION ALL SELECT 'mobile', mobile FROM members WHERE mobile IN (");
                let mut list = qb.separated(", ");
                mobiles.into_iter().for_each(|v| {
                    list.push_bind(v);
                });
                qb.push(")");
            }
            let mut sources: Vec<&str> =
                chunk.iter().filter(|mb| mb.anchor.is_some()).map(|mb| mb.source.as_str()).collect();
            sources.sort_unstable();
            sources.dedup();
            for source in sources {
                qb.push(" UNION ALL SELECT 'anchor', anchor FROM members WHERE source = ")
                    .push_bind(source.to_owned());
                qb.push(" AND anchor IN (");
                let mut list = qb.separated(", ");
                chunk
                    .iter()
                    .filter(|mb| mb.source.as_str() == source)
                    .filter_map(|mb| mb.anchor.clone())
                    .for_each(|a| {
                        list.push_bind(a);
                    });
                qb.push(")");
            }
            found.extend(
                qb.build_query_as::<(String, String)>()
                    .persistent(false)
                    .fetch_all(&mut *c)
                    .await
                    .map_err(err)?,
            );
        }
        Ok(found)
    }

    /// Adds `(group, member)` pairs; returns how many were new.
    pub async fn group_members_insert(c: &mut SqliteConnection, pairs: &[(Uuid, Uuid)]) -> Result<u64> {
        each_chunk(c, pairs, PAIR_ROWS, |chunk| {
            let mut qb = Qb::new("INSERT INTO group_members (group_id, member_id) ");
            qb.push_values(chunk, |mut row, (g, mb)| {
                row.push_bind(*g).push_bind(*mb);
            });
            qb.push(" ON CONFLICT DO NOTHING");
            qb
        })
        .await
    }

    /// Appends audit rows (8 values a row).
    pub async fn audit_insert(c: &mut SqliteConnection, entries: &[m::AuditRecord]) -> Result<()> {
        each_chunk(c, entries, LOG_ROWS, |chunk| {
            let mut qb = Qb::new(
                "INSERT INTO audit_log (at, actor, source, action, object_kind, object_id, before, after) ",
            );
            qb.push_values(chunk, |mut row, e| {
                row.push_bind(e.at)
                    .push_bind(e.actor.clone())
                    .push_bind(e.source.as_str().to_owned())
                    .push_bind(e.action.clone())
                    .push_bind(e.object_kind.clone())
                    .push_bind(e.object_id.clone())
                    .push_bind(e.before.as_deref())
                    .push_bind(e.after.as_deref());
            });
            qb
        })
        .await?;
        Ok(())
    }

    /// Queues outbox rows (8 values a row).
    pub async fn outbox_insert(c: &mut SqliteConnection, messages: &[m::OutboxRecord]) -> Result<()> {
        each_chunk(c, messages, LOG_ROWS, |chunk| {
            let mut qb = Qb::new(
                "INSERT INTO outbox (id, created_at, kind, idempotency_key, payload, state, attempts, next_attempt_at) ",
            );
            qb.push_values(chunk, |mut row, o| {
                row.push_bind(o.id)
                    .push_bind(o.created_at)
                    .push_bind(o.kind.clone())
                    .push_bind(o.idempotency_key.clone())
                    .push_bind(o.payload.as_str())
                    .push_bind("pending")
                    .push_bind(0_i64)
                    .push_bind(o.created_at);
            });
            qb
        })
        .await?;
        Ok(())
    }

    /// Archive messages, multi-row, skipping ids the source already has; then their search
    /// terms (FTS5, rowid = message id) and parties. Returns each message's new id.
    pub async fn archive_insert(
        c: &mut SqliteConnection,
        source: &str,
        conversations: &[i64],
        msgs: &[crate::archive::store::MessageIn],
        ingested_at: i64,
    ) -> Result<Vec<Option<i64>>> {
        let mut ids: Vec<Option<i64>> = vec![None; msgs.len()];
        const MESSAGE_ROWS: usize = 300; // 10 values a row
        for (n, chunk) in msgs.chunks(MESSAGE_ROWS).enumerate() {
            let mut qb = Qb::new(
                "INSERT INTO archive_messages (source, ext_id, conversation, sender_member, sender_external, \
                 sent_at, kind, body, attachments, ingested_at) ",
            );
            qb.push_values(chunk, |mut row, msg| {
                row.push_bind(source.to_owned())
                    .push_bind(msg.ext_id.clone())
                    .push_bind(conversations[msg.conversation])
                    .push_bind(msg.sender_member)
                    .push_bind(msg.sender_external.clone())
                    .push_bind(msg.sent_at)
                    .push_bind(msg.kind.clone())
                    .push_bind(msg.body.clone())
                    .push_bind(msg.attachments.clone())
                    .push_bind(ingested_at);
            });
            qb.push(" ON CONFLICT (source, ext_id) DO NOTHING RETURNING id, ext_id");
            let rows: Vec<(i64, String)> = qb
                .build_query_as()
                .persistent(chunk.len() == MESSAGE_ROWS)
                .fetch_all(&mut *c)
                .await
                .map_err(err)?;
            let base = n * MESSAGE_ROWS;
            for (id, ext) in rows {
                if let Some(i) = chunk.iter().position(|m| m.ext_id == ext) {
                    ids[base + i] = Some(id);
                }
            }
        }
        let stored: Vec<(i64, &crate::archive::store::MessageIn)> =
            ids.iter().zip(msgs).filter_map(|(id, msg)| id.map(|id| (id, msg))).collect();
        each_chunk(c, &stored, CHILD_ROWS, |chunk| {
            let mut qb = Qb::new("INSERT INTO archive_text (rowid, grams) ");
            qb.push_values(chunk, |mut row, (id, msg)| {
                let text: Vec<String> = msg.terms.iter().map(|t| crate::archive::grams::token(*t)).collect();
                row.push_bind(*id).push_bind(text.join(" "));
            });
            qb
        })
        .await?;
        let parties: Vec<(Uuid, i64, i64, i64)> = stored
            .iter()
            .flat_map(|(id, msg)| {
                let conversation = conversations[msg.conversation];
                msg.parties.iter().map(move |p| (*p, conversation, msg.sent_at, *id))
            })
            .collect();
        each_chunk(c, &parties, CHILD_ROWS, |chunk| {
            let mut qb =
                Qb::new("INSERT OR IGNORE INTO archive_parties (member_id, conversation, sent_at, message) ");
            qb.push_values(chunk, |mut row, p| {
                row.push_bind(p.0).push_bind(p.1).push_bind(p.2).push_bind(p.3);
            });
            qb
        })
        .await?;
        Ok(ids)
    }

    /// Removes deleted messages' search terms.
    pub async fn archive_unindex(c: &mut SqliteConnection, ids: &[i64]) -> Result<()> {
        each_chunk(c, ids, CHILD_ROWS, |chunk| {
            let mut qb = Qb::new("DELETE FROM archive_text WHERE rowid IN (");
            let mut list = qb.separated(", ");
            for id in chunk {
                list.push_bind(*id);
            }
            qb.push(")");
            qb
        })
        .await?;
        Ok(())
    }

    /// SQLite's plans for the archive's searches need no hint (see the PostgreSQL backend's).
    pub async fn archive_plan(
        _c: &mut SqliteConnection,
        _f: &crate::archive::store::MessageFilter,
    ) -> Result<()> {
        Ok(())
    }

    /// `m.id` holds every term (an FTS5 query of the terms' tokens, all required).
    pub fn archive_terms(qb: &mut Qb, terms: &[i64]) {
        let tokens: Vec<String> = terms.iter().map(|t| crate::archive::grams::token(*t)).collect();
        qb.push("m.id IN (SELECT rowid FROM archive_text WHERE archive_text MATCH ");
        qb.push_bind(tokens.join(" AND "));
        qb.push(")");
    }
}

#[cfg(test)]
mod tests {
    use super::unique_key;

    #[test]
    fn unique_keys_match_the_constraint_names() {
        assert_eq!(unique_key("UNIQUE constraint failed: members.login_name"), "members_login_name");
        assert_eq!(
            unique_key("UNIQUE constraint failed: org_units.parent_id, org_units.name"),
            "org_units_parent_id_name"
        );
        assert_eq!(
            unique_key("UNIQUE constraint failed: index 'org_units_root_name'"),
            "org_units_root_name"
        );
    }
}
