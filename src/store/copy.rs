//! `rosterd migrate-store`: copies a SQLite store into an empty PostgreSQL database, table by
//! table, in one PostgreSQL transaction read from one SQLite snapshot, then verifies each table's
//! row count and checksum on both sides before it commits.
//!
//! The two schemas are kept column for column in step (`migrations/`), so the copy is driven by
//! PostgreSQL's catalogue: its tables in foreign-key order, each column converted from SQLite's
//! storage to the PostgreSQL type (16-byte BLOB ids to `uuid`, timestamp text to `timestamptz`,
//! 0/1 to `boolean`, JSON text to `json`/`jsonb`). Rows go in as JSON through
//! `json_populate_recordset`, a thousand a statement, ids and account numbers as they are;
//! identity sequences are moved past the copied ids. What only one backend has is rebuilt, not
//! copied: SQLite's FTS5 search index is left behind and PostgreSQL's `archive_messages.grams`
//! computed from each message's text, as ingest does.
//!
//! The checksum of a table is the sum (mod 2^128) of a SHA-256 of each row's canonical text, so it
//! does not depend on row order: the source's is computed from what was sent, the target's from
//! what PostgreSQL then returns.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::{Connection, Row};

use super::{SchemaState, StoreError};
use crate::config::DatabaseConfig;

type Result<T> = std::result::Result<T, StoreError>;

/// Rows a statement.
const CHUNK: usize = 1000;

/// One table as copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    pub table: String,
    pub rows: u64,
    /// The checksum both sides agreed on (32 hex digits).
    pub checksum: String,
}

/// How a PostgreSQL column is filled from SQLite's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Uuid,
    Bytes,
    Bool,
    Int,
    Text,
    Time,
    Json,
    /// `archive_messages.grams`: PostgreSQL's search terms, computed from `body`.
    Grams,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
struct Table {
    name: String,
    columns: Vec<Column>,
    /// Columns referencing this same table (a parent, a manager): rows are inserted parents first.
    self_refs: Vec<String>,
    /// Primary key columns.
    key: Vec<String>,
    /// Tables its foreign keys point to.
    needs: BTreeSet<String>,
    /// Columns a sequence fills (identity or serial).
    sequenced: Vec<String>,
}

fn other(what: impl std::fmt::Display) -> StoreError {
    StoreError::Other(what.to_string())
}

fn db_err(e: sqlx::Error) -> StoreError {
    super::classify(e, |_| None)
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Copies the SQLite store `source` names into the empty PostgreSQL database `target` (migrating
/// it first), calling `progress(table, rows)` after each table. Nothing is committed unless every
/// table's count and checksum match.
pub async fn sqlite_to_postgres(
    source: &DatabaseConfig,
    target: &str,
    progress: &mut (dyn FnMut(&str, u64) + Send),
) -> Result<Vec<Copied>> {
    if !source.url.starts_with("sqlite:") {
        return Err(other("the source store must be SQLite (database.url = sqlite://...)"));
    }
    if !(target.starts_with("postgres://") || target.starts_with("postgresql://")) {
        return Err(other("--to must be a postgres:// URL"));
    }
    let file =
        super::sqlite_database_file(&source.url).ok_or_else(|| other("database.url names no SQLite file"))?;
    if !file.exists() {
        return Err(other(format!("{} does not exist: there is no SQLite store to copy", file.display())));
    }
    // The source must be at this rosterd's schema, as the target will be.
    let src = super::SqliteStore::open(source).await?;
    let state = super::Maintenance::schema_state(&src).await;
    super::Maintenance::close(&src).await;
    match state? {
        SchemaState::Current => {}
        SchemaState::Behind => {
            return Err(other("the SQLite store is behind this rosterd: run `rosterd migrate` first"));
        }
        SchemaState::Ahead => {
            return Err(other("the SQLite store was written by a newer rosterd: use that version"));
        }
    }
    let tcfg = DatabaseConfig { url: target.to_owned(), url_file: None, ..source.clone() };
    let tgt = super::PgStore::open(&tcfg).await?;
    let migrated = super::Maintenance::migrate(&tgt).await;
    super::Maintenance::close(&tgt).await;
    migrated?;

    let sopts = sqlx::sqlite::SqliteConnectOptions::from_str(&source.url)
        .map_err(|e| other(format!("database.url: {e}")))?
        .read_only(true);
    let mut s = sqlx::SqliteConnection::connect_with(&sopts).await.map_err(db_err)?;
    // One snapshot for the whole copy (WAL: writers may go on; they are not copied).
    sqlx::query("BEGIN").execute(&mut s).await.map_err(db_err)?;
    let mut p = sqlx::PgConnection::connect(target).await.map_err(db_err)?;
    let mut tx = p.begin().await.map_err(db_err)?;

    let tables = catalogue(&mut tx).await?;
    let order = fk_order(&tables)?;
    check_empty(&mut tx, &tables).await?;
    let sequences = left_behind(&mut s, &tables).await?;
    let mut out = Vec::new();
    for name in order {
        let table = &tables[&name];
        check_columns(&mut s, table).await?;
        let (rows, sent) = copy_table(&mut s, &mut tx, table).await?;
        let (found, stored) = target_checksum(&mut tx, table).await?;
        if found != rows || stored != sent {
            return Err(other(format!(
                "table {name}: {rows} rows sent (checksum {sent:032x}), {found} found (checksum {stored:032x}); nothing was committed"
            )));
        }
        // Past every copied id, and past SQLite's AUTOINCREMENT high-water mark: an id once
        // given out is not given again, even if its row is gone.
        let used = sequences.get(&name).copied().unwrap_or(0);
        for col in &table.sequenced {
            let sql = format!(
                "SELECT setval(pg_get_serial_sequence($1, $2), GREATEST(COALESCE((SELECT max({c}) FROM {t}), 0), $3) + 1, false)",
                c = quote(col),
                t = quote(&name)
            );
            // Names from PostgreSQL's own catalogue.
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&name)
                .bind(col)
                .bind(used)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        progress(&name, rows);
        out.push(Copied { table: name.clone(), rows, checksum: format!("{sent:032x}") });
    }
    tx.commit().await.map_err(db_err)?;
    let _ = sqlx::query("COMMIT").execute(&mut s).await;
    Ok(out)
}

/// PostgreSQL's tables, their columns, keys and references.
async fn catalogue(tx: &mut sqlx::PgConnection) -> Result<BTreeMap<String, Table>> {
    let cols = sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text, udt_name::text, \
                (is_identity = 'YES' OR COALESCE(column_default, '') LIKE 'nextval(%') \
         FROM information_schema.columns c \
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations' \
           AND EXISTS (SELECT 1 FROM information_schema.tables t WHERE t.table_schema = c.table_schema \
                       AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE') \
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    let mut tables: BTreeMap<String, Table> = BTreeMap::new();
    for r in cols {
        let (table, name, ty, udt, seq): (String, String, String, String, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        let kind = match (ty.as_str(), udt.as_str()) {
            ("uuid", _) => Kind::Uuid,
            ("bytea", _) => Kind::Bytes,
            ("boolean", _) => Kind::Bool,
            ("bigint" | "integer" | "smallint", _) => Kind::Int,
            ("text" | "character varying", _) => Kind::Text,
            ("timestamp with time zone", _) => Kind::Time,
            ("json" | "jsonb", _) => Kind::Json,
            ("ARRAY", "_int8") if table == "archive_messages" && name == "grams" => Kind::Grams,
            _ => return Err(other(format!("column {table}.{name} has a type the copy does not know: {ty}"))),
        };
        let t = tables.entry(table.clone()).or_insert_with(|| Table {
            name: table.clone(),
            columns: Vec::new(),
            self_refs: Vec::new(),
            key: Vec::new(),
            needs: BTreeSet::new(),
            sequenced: Vec::new(),
        });
        if seq {
            t.sequenced.push(name.clone());
        }
        t.columns.push(Column { name, kind });
    }
    let fks = sqlx::query(
        "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text, a.attname::text \
         FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey) \
         WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    for r in fks {
        let (from, to, col): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        let (from, to) = (from.trim_matches('"').to_owned(), to.trim_matches('"').to_owned());
        if let Some(t) = tables.get_mut(&from) {
            if from == to {
                t.self_refs.push(col);
            } else {
                t.needs.insert(to);
            }
        }
    }
    let keys = sqlx::query(
        "SELECT i.indrelid::regclass::text, a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey) \
         JOIN pg_class c ON c.oid = i.indrelid \
         WHERE i.indisprimary AND c.relnamespace = current_schema()::regnamespace",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    for r in keys {
        let (table, col): (String, String) = (r.get(0), r.get(1));
        if let Some(t) = tables.get_mut(table.trim_matches('"')) {
            t.key.push(col);
        }
    }
    Ok(tables)
}

/// Tables ordered so that each comes after the tables it references.
fn fk_order(tables: &BTreeMap<String, Table>) -> Result<Vec<String>> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut order = Vec::new();
    while order.len() < tables.len() {
        let ready: Vec<String> = tables
            .values()
            .filter(|t| {
                !done.contains(&t.name) && t.needs.iter().all(|n| done.contains(n) || !tables.contains_key(n))
            })
            .map(|t| t.name.clone())
            .collect();
        if ready.is_empty() {
            let left: Vec<&String> = tables.keys().filter(|n| !done.contains(*n)).collect();
            return Err(other(format!("the foreign keys between {left:?} form a cycle")));
        }
        for n in ready {
            done.insert(n.clone());
            order.push(n);
        }
    }
    Ok(order)
}

/// The target must be empty but for the singleton rows its migrations seed (the number counter,
/// the SMS account, the default sign-in policy), which the source's rows replace.
async fn check_empty(tx: &mut sqlx::PgConnection, tables: &BTreeMap<String, Table>) -> Result<()> {
    let mut used = Vec::new();
    for t in tables.values() {
        let seeded = t.name != "enterprise" && t.columns.iter().any(|c| c.name == "singleton");
        let sql = format!("SELECT count(*) FROM {}", quote(&t.name));
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut *tx).await.map_err(db_err)?;
        if seeded {
            let sql = format!("DELETE FROM {}", quote(&t.name));
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut *tx).await.map_err(db_err)?;
        } else if n > 0 {
            used.push(format!("{} ({n} rows)", t.name));
        }
    }
    if !used.is_empty() {
        return Err(other(format!(
            "the PostgreSQL database is not empty: {}; copy into a new database",
            used.join(", ")
        )));
    }
    Ok(())
}

/// Refuses a SQLite table PostgreSQL has no place for (nothing is left behind silently) but
/// SQLite's own: its catalogue, the FTS5 index (rebuilt, not copied) and the migrations' record.
/// Returns SQLite's AUTOINCREMENT high-water marks by table.
async fn left_behind(
    s: &mut sqlx::SqliteConnection,
    tables: &BTreeMap<String, Table>,
) -> Result<HashMap<String, i64>> {
    let rows = sqlx::query("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
        .fetch_all(&mut *s)
        .await
        .map_err(db_err)?;
    let all: Vec<(String, String)> = rows
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<Option<String>, _>(1).unwrap_or_default()))
        .collect();
    let virtual_tables: Vec<&str> =
        all.iter().filter(|(_, sql)| sql.starts_with("CREATE VIRTUAL")).map(|(n, _)| n.as_str()).collect();
    for (name, _) in &all {
        let own = name.starts_with("sqlite_")
            || name == "_sqlx_migrations"
            || virtual_tables.iter().any(|v| name == v || name.starts_with(&format!("{v}_")));
        if !own && !tables.contains_key(name) {
            return Err(other(format!("the SQLite table {name} has no place in PostgreSQL")));
        }
    }
    let mut seqs = HashMap::new();
    if all.iter().any(|(n, _)| n == "sqlite_sequence") {
        for r in
            sqlx::query("SELECT name, seq FROM sqlite_sequence").fetch_all(&mut *s).await.map_err(db_err)?
        {
            seqs.insert(r.get::<String, _>(0), r.get::<i64, _>(1));
        }
    }
    Ok(seqs)
}

/// Every SQLite column must have its place in PostgreSQL, and the reverse but for derived ones.
async fn check_columns(s: &mut sqlx::SqliteConnection, table: &Table) -> Result<()> {
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
        .bind(&table.name)
        .fetch_all(&mut *s)
        .await
        .map_err(db_err)?;
    if names.is_empty() {
        return Err(other(format!("the SQLite store has no table {}", table.name)));
    }
    for n in &names {
        if !table.columns.iter().any(|c| &c.name == n) {
            return Err(other(format!("column {}.{n} has no place in PostgreSQL", table.name)));
        }
    }
    for c in &table.columns {
        if c.kind != Kind::Grams && !names.contains(&c.name) {
            return Err(other(format!("column {}.{} is missing from the SQLite store", table.name, c.name)));
        }
    }
    Ok(())
}

/// One row: each column's JSON (for `json_populate_recordset`) and canonical text (for the
/// checksum; `None` is NULL and derived columns are left out).
struct Converted {
    json: String,
    canonical: Vec<Option<String>>,
    key: String,
    parent: Vec<Option<String>>,
}

/// Copies one table; returns the rows sent and their checksum.
async fn copy_table(
    s: &mut sqlx::SqliteConnection,
    tx: &mut sqlx::PgConnection,
    table: &Table,
) -> Result<(u64, u128)> {
    let exprs: Vec<String> = table
        .columns
        .iter()
        .map(|c| match c.kind {
            // hex(NULL) is '', not NULL.
            Kind::Uuid | Kind::Bytes => {
                format!("CASE WHEN {q} IS NULL THEN NULL ELSE hex({q}) END", q = quote(&c.name))
            }
            Kind::Grams => quote("body"),
            _ => quote(&c.name),
        })
        .collect();
    let sql = format!("SELECT {} FROM {}", exprs.join(", "), quote(&table.name));
    let cols: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
    let insert = format!(
        "INSERT INTO {t} ({c}) OVERRIDING SYSTEM VALUE SELECT {c} FROM json_populate_recordset(NULL::{t}, $1::json)",
        t = quote(&table.name),
        c = cols.join(", ")
    );
    let mut rows = 0u64;
    let mut sum = 0u128;
    let mut chunk: Vec<Converted> = Vec::with_capacity(CHUNK);
    let mut all: Vec<Converted> = Vec::new();
    {
        // Names from PostgreSQL's catalogue, checked against SQLite's.
        let mut stream = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *s);
        while let Some(row) = stream.try_next().await.map_err(db_err)? {
            let conv = convert(table, &row)?;
            rows += 1;
            sum = sum.wrapping_add(row_hash(&conv.canonical));
            if table.self_refs.is_empty() {
                chunk.push(conv);
                if chunk.len() == CHUNK {
                    insert_chunk(tx, &insert, &chunk).await?;
                    chunk.clear();
                }
            } else {
                all.push(conv);
            }
        }
    }
    if !chunk.is_empty() {
        insert_chunk(tx, &insert, &chunk).await?;
    }
    if !all.is_empty() {
        // Parents before children: by depth along the self-references.
        let parents: HashMap<String, Vec<Option<String>>> =
            all.iter().map(|c| (c.key.clone(), c.parent.clone())).collect();
        let mut depth: HashMap<String, usize> = HashMap::new();
        for c in &all {
            depth_of(&c.key, &parents, &mut depth, 0)?;
        }
        all.sort_by_key(|c| depth[&c.key]);
        for part in all.chunks(CHUNK) {
            insert_chunk(tx, &insert, part).await?;
        }
    }
    Ok((rows, sum))
}

fn depth_of(
    key: &str,
    parents: &HashMap<String, Vec<Option<String>>>,
    depth: &mut HashMap<String, usize>,
    guard: usize,
) -> Result<usize> {
    if let Some(d) = depth.get(key) {
        return Ok(*d);
    }
    if guard > 10_000 {
        return Err(other(format!("row {key} is in a cycle of references to its own table")));
    }
    let mut d = 0;
    for p in parents.get(key).into_iter().flatten().flatten() {
        if p != key && parents.contains_key(p) {
            d = d.max(depth_of(p, parents, depth, guard + 1)? + 1);
        }
    }
    depth.insert(key.to_owned(), d);
    Ok(d)
}

async fn insert_chunk(tx: &mut sqlx::PgConnection, insert: &str, rows: &[Converted]) -> Result<()> {
    let mut json = String::with_capacity(rows.iter().map(|r| r.json.len() + 1).sum::<usize>() + 2);
    json.push('[');
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&r.json);
    }
    json.push(']');
    sqlx::query(sqlx::AssertSqlSafe(insert.to_owned())).bind(json).execute(&mut *tx).await.map_err(db_err)?;
    Ok(())
}

/// One SQLite row converted for PostgreSQL.
fn convert(table: &Table, row: &sqlx::sqlite::SqliteRow) -> Result<Converted> {
    let mut json = String::from("{");
    let mut canonical = Vec::with_capacity(table.columns.len());
    let mut by_name: HashMap<&str, Option<String>> = HashMap::new();
    for (i, c) in table.columns.iter().enumerate() {
        let bad = |why: String| StoreError::Corrupt(format!("{}.{}: {why}", table.name, c.name));
        let (value, canon): (String, Option<String>) = match c.kind {
            Kind::Int | Kind::Bool => {
                match row.try_get::<Option<i64>, _>(i).map_err(|e| bad(e.to_string()))? {
                    None => ("null".into(), None),
                    Some(v) if c.kind == Kind::Bool => {
                        let b = if v != 0 { "true" } else { "false" };
                        (b.into(), Some(b.into()))
                    }
                    Some(v) => (v.to_string(), Some(v.to_string())),
                }
            }
            Kind::Uuid => match row.try_get::<Option<String>, _>(i).map_err(|e| bad(e.to_string()))? {
                None => ("null".into(), None),
                Some(h) => {
                    let bytes = hex::decode(&h).map_err(|e| bad(e.to_string()))?;
                    let id = uuid::Uuid::from_slice(&bytes)
                        .map_err(|_| bad(format!("{} bytes, not a UUID", bytes.len())))?;
                    (format!("\"{id}\""), Some(id.to_string()))
                }
            },
            Kind::Bytes => match row.try_get::<Option<String>, _>(i).map_err(|e| bad(e.to_string()))? {
                None => ("null".into(), None),
                Some(h) => {
                    let h = h.to_ascii_lowercase();
                    (format!("\"\\\\x{h}\""), Some(h))
                }
            },
            Kind::Text => match row.try_get::<Option<String>, _>(i).map_err(|e| bad(e.to_string()))? {
                None => ("null".into(), None),
                Some(t) => (serde_json::to_string(&t).map_err(|e| bad(e.to_string()))?, Some(t)),
            },
            Kind::Time => match row.try_get::<Option<String>, _>(i).map_err(|e| bad(e.to_string()))? {
                None => ("null".into(), None),
                Some(t) => {
                    let at = parse_time(&t).ok_or_else(|| bad(format!("{t:?} is not a time")))?;
                    let text = at.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string();
                    (format!("\"{text}\""), Some(text))
                }
            },
            Kind::Json => match row.try_get::<Option<String>, _>(i).map_err(|e| bad(e.to_string()))? {
                None => ("null".into(), None),
                Some(t) => {
                    let v: serde_json::Value =
                        serde_json::from_str(&t).map_err(|e| bad(format!("not JSON: {e}")))?;
                    // The text as written (a `json` column keeps it), checked to be JSON.
                    (t.trim().to_owned(), Some(canonical_json(&v)))
                }
            },
            Kind::Grams => {
                let body: String = row.try_get(i).map_err(|e| bad(e.to_string()))?;
                let terms = crate::archive::grams::message_terms(&body);
                (serde_json::to_string(&terms).map_err(|e| bad(e.to_string()))?, None)
            }
        };
        if json.len() > 1 {
            json.push(',');
        }
        json.push_str(&serde_json::to_string(&c.name).unwrap_or_default());
        json.push(':');
        json.push_str(&value);
        if c.kind != Kind::Grams {
            by_name.insert(c.name.as_str(), canon.clone());
            canonical.push(canon);
        }
    }
    json.push('}');
    let key = table
        .key
        .iter()
        .map(|k| by_name.get(k.as_str()).cloned().flatten().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\u{1f}");
    let parent = table.self_refs.iter().map(|k| by_name.get(k.as_str()).cloned().flatten()).collect();
    Ok(Converted { json, canonical, key, parent })
}

/// A timestamp as SQLite holds it (RFC 3339 as sqlx writes it, or SQLite's own `YYYY-MM-DD
/// HH:MM:SS[.fff]`, UTC), to PostgreSQL's precision (microseconds).
fn parse_time(t: &str) -> Option<DateTime<Utc>> {
    use chrono::DurationRound;
    let at = DateTime::parse_from_rfc3339(t)
        .map(|d| d.with_timezone(&Utc))
        .or_else(|_| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%:z").map(|d| d.with_timezone(&Utc)))
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").map(|n| n.and_utc()))
        .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").map(|n| n.and_utc()))
        .ok()?;
    at.duration_round(TimeDelta::microseconds(1)).ok()
}

/// JSON with object keys sorted, so text written in any key order (`jsonb` reorders) compares.
fn canonical_json(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, String> = m.iter().map(|(k, v)| (k, canonical_json(v))).collect();
            let parts: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::to_string(k).unwrap_or_default()))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(canonical_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

fn row_hash(values: &[Option<String>]) -> u128 {
    let mut h = Sha256::new();
    for v in values {
        match v {
            None => h.update(b"N"),
            Some(s) => {
                h.update(format!("S{}:", s.len()).as_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    let d = h.finalize();
    u128::from_be_bytes(d[..16].try_into().unwrap_or([0; 16]))
}

/// The rows PostgreSQL now holds: their count and checksum, from its own rendering of each value.
async fn target_checksum(tx: &mut sqlx::PgConnection, table: &Table) -> Result<(u64, u128)> {
    let exprs: Vec<String> = table
        .columns
        .iter()
        .filter(|c| c.kind != Kind::Grams)
        .map(|c| {
            let q = quote(&c.name);
            match c.kind {
                Kind::Bytes => format!("encode({q}, 'hex')"),
                Kind::Time => format!("to_char({q} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"),
                _ => format!("{q}::text"),
            }
        })
        .collect();
    let sql = format!("SELECT {} FROM {}", exprs.join(", "), quote(&table.name));
    let kinds: Vec<Kind> = table.columns.iter().map(|c| c.kind).filter(|k| *k != Kind::Grams).collect();
    let mut stream = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch(&mut *tx);
    let (mut rows, mut sum) = (0u64, 0u128);
    while let Some(row) = stream.try_next().await.map_err(db_err)? {
        let mut values = Vec::with_capacity(kinds.len());
        for (i, k) in kinds.iter().enumerate() {
            let v: Option<String> = row.try_get(i).map_err(db_err)?;
            values.push(match (k, v) {
                (Kind::Json, Some(t)) => Some(
                    serde_json::from_str::<serde_json::Value>(&t)
                        .map(|v| canonical_json(&v))
                        .map_err(other)?,
                ),
                (_, v) => v,
            });
        }
        rows += 1;
        sum = sum.wrapping_add(row_hash(&values));
    }
    Ok((rows, sum))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_from_either_writer_round_to_microseconds() {
        let a = parse_time("2026-12-03T20:23:14.123456789+00:00").unwrap();
        assert_eq!(a.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), "2026-12-03T20:23:14.123457Z");
        let b = parse_time("2026-12-03 20:23:14").unwrap();
        assert_eq!(b.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(), "2026-12-03T20:23:14.000000Z");
        let c = parse_time("1970-01-01T00:00:00Z").unwrap();
        assert_eq!(c.timestamp(), 0);
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn json_compares_whatever_its_key_order() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":"s"}}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a": {"x": "s", "y": [1, 2]}, "b": 1}"#).unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_ne!(canonical_json(&a), canonical_json(&serde_json::json!({"b": 2})));
    }

    #[test]
    fn tables_come_after_the_tables_they_reference() {
        let t = |name: &str, needs: &[&str]| Table {
            name: name.into(),
            columns: vec![],
            self_refs: vec![],
            key: vec![],
            needs: needs.iter().map(|s| s.to_string()).collect(),
            sequenced: vec![],
        };
        let tables: BTreeMap<String, Table> =
            [t("a", &["c"]), t("b", &[]), t("c", &["b"])].into_iter().map(|t| (t.name.clone(), t)).collect();
        assert_eq!(fk_order(&tables).unwrap(), vec!["b", "c", "a"]);
        let cyclic: BTreeMap<String, Table> =
            [t("a", &["b"]), t("b", &["a"])].into_iter().map(|t| (t.name.clone(), t)).collect();
        assert!(fk_order(&cyclic).unwrap_err().to_string().contains("cycle"));
    }
}
