//! PostgreSQL: for companies that outgrow one machine; several rosterd nodes share it.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use super::StoreError;
use crate::config::DatabaseConfig;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// PostgreSQL store: one pool serves reads and writes.
pub struct PgStore {
    read: PgPool,
    write: PgPool,
}

/// One PostgreSQL transaction (READ COMMITTED; the number counter's row lock serialises
/// allocators, unique constraints catch the rest).
pub struct PgTx {
    tx: sqlx::Transaction<'static, Postgres>,
}

fn err(e: sqlx::Error) -> StoreError {
    super::classify(e, |db| {
        let code = db.code().unwrap_or_default();
        match code.as_ref() {
            "23505" => Some(StoreError::Unique(db.constraint().unwrap_or("unknown").to_owned())),
            "25006" => Some(StoreError::ReadOnly(db.message().to_owned())),
            "53100" => Some(StoreError::DiskFull(db.message().to_owned())),
            c if c.starts_with("08") || c.starts_with("57P") || c == "53300" => {
                Some(StoreError::Unavailable(db.message().to_owned()))
            }
            _ => None,
        }
    })
}

impl PgStore {
    pub async fn open(cfg: &DatabaseConfig) -> Result<PgStore, StoreError> {
        let opts: PgConnectOptions =
            cfg.url.parse().map_err(|e| StoreError::Other(format!("database.url: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(cfg.max_connections.max(2))
            .acquire_timeout(Duration::from_secs(cfg.connect_timeout_secs))
            .connect_with(opts.application_name("rosterd"))
            .await
            .map_err(err)?;
        Ok(PgStore { read: pool.clone(), write: pool })
    }

    /// The time by the database's clock, which every node shares (leader leases use it).
    async fn clock(&self) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
        let (now,): (chrono::DateTime<chrono::Utc>,) =
            sqlx::query_as("SELECT now()").fetch_one(&self.write).await.map_err(err)?;
        Ok(now)
    }

    fn backend_name() -> &'static str {
        "postgres"
    }

    async fn begin_tx(&self) -> Result<sqlx::Transaction<'static, Postgres>, StoreError> {
        self.write.begin().await.map_err(err)
    }

    async fn run_migrations(&self) -> Result<(), StoreError> {
        // The migrator holds an advisory lock, so nodes starting together migrate once.
        MIGRATOR.run(&self.write).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => err(e),
            other => StoreError::Migration(other.to_string()),
        })
    }

    async fn backup_impl(&self, _file: &std::path::Path) -> Result<(), StoreError> {
        Err(StoreError::Other(
            "rosterd backup copies a SQLite store; back up PostgreSQL with pg_dump (see README, Backup and restore)"
                .into(),
        ))
    }

    async fn schema_state_impl(&self) -> Result<super::SchemaState, StoreError> {
        let (exists,): (bool,) = sqlx::query_as("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.read)
            .await
            .map_err(err)?;
        let applied: Vec<(i64,)> = if exists {
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
    COALESCE((SELECT json_agg(json_build_array(address, kind, is_primary) ORDER BY position) \
     FROM member_emails WHERE member_emails.member_id = members.id)::text, '[]') AS emails_json, \
    COALESCE((SELECT json_agg(org_unit_id) \
     FROM member_org_units WHERE member_org_units.member_id = members.id)::text, '[]') AS units_json, \
    COALESCE((SELECT json_agg(json_build_array(number, kind, is_primary) ORDER BY position) \
     FROM member_phones WHERE member_phones.member_id = members.id)::text, '[]') AS phones_json";

/// A source's member keys as JSON arrays `[id, anchor, login name, digest]` (see the SQLite store).
const MEMBER_KEYS: &str = "SELECT json_agg(json_build_array(id, anchor, login_name, sync_digest))::text \
    FROM members WHERE source = $1";

/// A source's groups' member ids, one JSON array a group.
const GROUP_MEMBERSHIPS: &str = "SELECT gm.group_id, json_agg(gm.member_id)::text \
    FROM group_members gm JOIN groups g ON g.id = gm.group_id WHERE g.source = $1 GROUP BY gm.group_id";

shared_sql!(Postgres, PgStore, PgTx, err, MEMBER_CHILDREN, MEMBER_KEYS, GROUP_MEMBERSHIPS);

/// Bulk writes and checks of many rows: each column bound as one array and unnested, each list
/// as one array compared with `= ANY`. The statement text never changes, so it is prepared once
/// a connection; multi-row `VALUES` lists of thousands of parameters cost PostgreSQL more to
/// parse and plan than to execute, and their `IN` lists were planned as sequential scans.
mod bulk {
    use chrono::{DateTime, Utc};
    use sqlx::PgConnection;
    use uuid::Uuid;

    use super::err;
    use crate::directory::model as m;
    use crate::store::Result;

    /// New members' rows.
    pub async fn members_insert(
        c: &mut PgConnection,
        ms: &[m::Member],
        hashes: &[Option<String>],
    ) -> Result<()> {
        if ms.is_empty() {
            return Ok(());
        }
        let text =
            |f: fn(&m::Member) -> &Option<String>| ms.iter().map(|mb| f(mb).clone()).collect::<Vec<_>>();
        sqlx::query(
            "INSERT INTO members (id, account_number, login_name, display_name, given_name, family_name, \
             mobile, title, employee_number, primary_org_unit_id, manager_id, state, source, anchor, version, \
             created_at, updated_at, department, organization, division, cost_center, password_hash, sync_digest) \
             SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[], $9::text[], $10::uuid[], $11::uuid[], $12::text[], $13::text[], $14::text[], \
             $15::int8[], $16::timestamptz[], $17::timestamptz[], $18::text[], $19::text[], $20::text[], \
             $21::text[], $22::text[], $23::int8[])",
        )
        .bind(ms.iter().map(|mb| mb.id).collect::<Vec<_>>())
        .bind(ms.iter().map(|mb| mb.account_number).collect::<Vec<_>>())
        .bind(ms.iter().map(|mb| mb.login_name.clone()).collect::<Vec<_>>())
        .bind(ms.iter().map(|mb| mb.display_name.clone()).collect::<Vec<_>>())
        .bind(text(|mb| &mb.given_name))
        .bind(text(|mb| &mb.family_name))
        .bind(text(|mb| &mb.mobile))
        .bind(text(|mb| &mb.title))
        .bind(text(|mb| &mb.employee_number))
        .bind(ms.iter().map(|mb| mb.primary_org_unit_id).collect::<Vec<_>>())
        .bind(ms.iter().map(|mb| mb.manager_id).collect::<Vec<_>>())
        .bind(ms.iter().map(|mb| mb.state.as_str().to_owned()).collect::<Vec<_>>())
        .bind(ms.iter().map(|mb| mb.source.as_str().to_owned()).collect::<Vec<_>>())
        .bind(text(|mb| &mb.anchor))
        .bind(ms.iter().map(|mb| mb.version).collect::<Vec<_>>())
        .bind(ms.iter().map(|mb| mb.created_at).collect::<Vec<DateTime<Utc>>>())
        .bind(ms.iter().map(|mb| mb.updated_at).collect::<Vec<DateTime<Utc>>>())
        .bind(text(|mb| &mb.department))
        .bind(text(|mb| &mb.organization))
        .bind(text(|mb| &mb.division))
        .bind(text(|mb| &mb.cost_center))
        .bind(hashes.to_vec())
        .bind(ms.iter().map(|mb| mb.digest()).collect::<Vec<_>>())
        .execute(&mut *c)
        .await
        .map_err(err)?;
        Ok(())
    }

    /// E-mails, phones and further org units of members whose old ones (if any) are gone.
    pub async fn members_children(c: &mut PgConnection, ms: &[&m::Member]) -> Result<()> {
        let (emails, phones) = crate::store::listed_children(ms);
        for (sql, rows) in [
            (
                "INSERT INTO member_emails (member_id, address, kind, is_primary, position) \
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bool[], $5::int8[])",
                &emails,
            ),
            (
                "INSERT INTO member_phones (member_id, number, kind, is_primary, position) \
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bool[], $5::int8[])",
                &phones,
            ),
        ] {
            if rows.is_empty() {
                continue;
            }
            sqlx::query(sql)
                .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.2.to_owned()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.3.to_owned()).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.4).collect::<Vec<_>>())
                .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
                .execute(&mut *c)
                .await
                .map_err(err)?;
        }
        let units: Vec<(Uuid, Uuid)> =
            ms.iter().flat_map(|mb| mb.org_unit_ids.iter().map(|u| (mb.id, *u))).collect();
        if !units.is_empty() {
            sqlx::query(
                "INSERT INTO member_org_units (member_id, org_unit_id) SELECT * FROM UNNEST($1::uuid[], $2::uuid[])",
            )
            .bind(units.iter().map(|u| u.0).collect::<Vec<_>>())
            .bind(units.iter().map(|u| u.1).collect::<Vec<_>>())
            .execute(&mut *c)
            .await
            .map_err(err)?;
        }
        Ok(())
    }

    /// See [`MemberTx::member_lock`](crate::directory::store::MemberTx::member_lock): a row lock.
    pub async fn member_lock(c: &mut PgConnection, id: Uuid) -> Result<()> {
        sqlx::query("SELECT 1 FROM members WHERE id = $1 FOR UPDATE")
            .bind(id)
            .execute(&mut *c)
            .await
            .map_err(err)?;
        Ok(())
    }

    /// See [`MemberTx::members_conflicts`](crate::directory::store::MemberTx::members_conflicts).
    pub async fn members_conflicts(
        c: &mut PgConnection,
        ms: &[m::Member],
        ids: &[Uuid],
    ) -> Result<Vec<(String, String)>> {
        let with_anchor = || ms.iter().filter(|mb| mb.anchor.is_some());
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT 'id', id::text FROM members WHERE id = ANY($1) \
             UNION ALL SELECT 'id', member_id::text FROM tombstones WHERE member_id = ANY($1) \
             UNION ALL SELECT 'login_name', login_name FROM members WHERE login_name = ANY($2) \
             UNION ALL SELECT 'email', address FROM member_emails WHERE address = ANY($3) \
             UNION ALL SELECT 'mobile', mobile FROM members WHERE mobile = ANY($4) \
             UNION ALL SELECT 'anchor', m.anchor FROM members m \
               JOIN UNNEST($5::text[], $6::text[]) AS a (source, anchor) \
               ON m.source = a.source AND m.anchor = a.anchor",
        )
        .bind(ids)
        .bind(ms.iter().map(|mb| mb.login_name.clone()).collect::<Vec<_>>())
        .bind(ms.iter().flat_map(|mb| mb.emails.iter().map(|e| e.address.clone())).collect::<Vec<_>>())
        .bind(ms.iter().filter_map(|mb| mb.mobile.clone()).collect::<Vec<_>>())
        .bind(with_anchor().map(|mb| mb.source.as_str().to_owned()).collect::<Vec<_>>())
        .bind(with_anchor().filter_map(|mb| mb.anchor.clone()).collect::<Vec<_>>())
        .fetch_all(&mut *c)
        .await
        .map_err(err)?;
        Ok(rows)
    }

    /// Adds `(group, member)` pairs; returns how many were new.
    pub async fn group_members_insert(c: &mut PgConnection, pairs: &[(Uuid, Uuid)]) -> Result<u64> {
        if pairs.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "INSERT INTO group_members (group_id, member_id) SELECT * FROM UNNEST($1::uuid[], $2::uuid[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(pairs.iter().map(|p| p.0).collect::<Vec<_>>())
        .bind(pairs.iter().map(|p| p.1).collect::<Vec<_>>())
        .execute(&mut *c)
        .await
        .map_err(err)?;
        Ok(done.rows_affected())
    }

    /// Appends audit rows, in order (their ids follow it).
    pub async fn audit_insert(c: &mut PgConnection, entries: &[m::AuditRecord]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO audit_log (at, actor, source, action, object_kind, object_id, before, after) \
             SELECT at, actor, source, action, object_kind, object_id, before::json, after::json \
             FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::text[], $8::text[]) WITH ORDINALITY \
             AS r (at, actor, source, action, object_kind, object_id, before, after, n) ORDER BY n",
        )
        .bind(entries.iter().map(|e| e.at).collect::<Vec<DateTime<Utc>>>())
        .bind(entries.iter().map(|e| e.actor.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.source.as_str().to_owned()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.action.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.object_kind.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.object_id.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.before.clone()).collect::<Vec<_>>())
        .bind(entries.iter().map(|e| e.after.clone()).collect::<Vec<_>>())
        .execute(&mut *c)
        .await
        .map_err(err)?;
        Ok(())
    }

    /// Queues outbox rows.
    pub async fn outbox_insert(c: &mut PgConnection, messages: &[m::OutboxRecord]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO outbox (id, created_at, kind, idempotency_key, payload, state, attempts, next_attempt_at) \
             SELECT id, created_at, kind, idempotency_key, payload::json, 'pending', 0, created_at \
             FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[]) \
             AS r (id, created_at, kind, idempotency_key, payload)",
        )
        .bind(messages.iter().map(|o| o.id).collect::<Vec<_>>())
        .bind(messages.iter().map(|o| o.created_at).collect::<Vec<DateTime<Utc>>>())
        .bind(messages.iter().map(|o| o.kind.clone()).collect::<Vec<_>>())
        .bind(messages.iter().map(|o| o.idempotency_key.clone()).collect::<Vec<_>>())
        .bind(messages.iter().map(|o| o.payload.clone()).collect::<Vec<_>>())
        .execute(&mut *c)
        .await
        .map_err(err)?;
        Ok(())
    }

    /// Archive messages with their search terms (a GIN-indexed array), skipping ids the source
    /// already has; then their parties. Returns each message's new id.
    pub async fn archive_insert(
        c: &mut PgConnection,
        source: &str,
        conversations: &[i64],
        msgs: &[crate::archive::store::MessageIn],
        ingested_at: i64,
    ) -> Result<Vec<Option<i64>>> {
        let mut ids: Vec<Option<i64>> = vec![None; msgs.len()];
        if msgs.is_empty() {
            return Ok(ids);
        }
        let terms: Vec<String> = msgs
            .iter()
            .map(|m| {
                let t: Vec<String> = m.terms.iter().map(i64::to_string).collect();
                format!("{{{}}}", t.join(","))
            })
            .collect();
        let rows: Vec<(i64, String)> = sqlx::query_as(
            "INSERT INTO archive_messages (source, ext_id, conversation, sender_member, sender_external, sent_at, \
             kind, body, attachments, ingested_at, grams) \
             SELECT $1, ext_id, conversation, sender_member, sender_external, sent_at, kind, body, attachments, $2, grams::int8[] \
             FROM UNNEST($3::text[], $4::int8[], $5::uuid[], $6::text[], $7::int8[], $8::text[], $9::text[], $10::text[], $11::text[]) \
             WITH ORDINALITY AS r (ext_id, conversation, sender_member, sender_external, sent_at, kind, body, attachments, grams, n) \
             ORDER BY n ON CONFLICT (source, ext_id) DO NOTHING RETURNING id, ext_id",
        )
        .bind(source.to_owned())
        .bind(ingested_at)
        .bind(msgs.iter().map(|m| m.ext_id.clone()).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| conversations[m.conversation]).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.sender_member).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.sender_external.clone()).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.sent_at).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.kind.clone()).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.body.clone()).collect::<Vec<_>>())
        .bind(msgs.iter().map(|m| m.attachments.clone()).collect::<Vec<_>>())
        .bind(terms)
        .fetch_all(&mut *c)
        .await
        .map_err(err)?;
        let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (i, m) in msgs.iter().enumerate() {
            at.entry(m.ext_id.as_str()).or_insert(i);
        }
        for (id, ext) in rows {
            if let Some(&i) = at.get(ext.as_str()) {
                ids[i] = Some(id);
            }
        }
        let mut members = Vec::new();
        let mut convs = Vec::new();
        let mut times = Vec::new();
        let mut messages = Vec::new();
        for (id, msg) in ids.iter().zip(msgs) {
            let Some(id) = id else { continue };
            for p in &msg.parties {
                members.push(*p);
                convs.push(conversations[msg.conversation]);
                times.push(msg.sent_at);
                messages.push(*id);
            }
        }
        if !members.is_empty() {
            sqlx::query(
                "INSERT INTO archive_parties (member_id, conversation, sent_at, message) \
                 SELECT * FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::int8[]) ON CONFLICT DO NOTHING",
            )
            .bind(members)
            .bind(convs)
            .bind(times)
            .bind(messages)
            .execute(&mut *c)
            .await
            .map_err(err)?;
        }
        Ok(ids)
    }

    /// The terms live in the message row: nothing to remove.
    pub async fn archive_unindex(_c: &mut PgConnection, _ids: &[i64]) -> Result<()> {
        Ok(())
    }

    /// `m` holds every term.
    pub fn archive_terms(qb: &mut sqlx::QueryBuilder<sqlx::Postgres>, terms: &[i64]) {
        qb.push("m.grams @> ");
        qb.push_bind(terms.to_vec());
        qb.push("::int8[]");
    }

    /// PostgreSQL estimates a search of several terms as if they were independent (a word's
    /// bigrams never are), so for a common word (meeting) it took the GIN index, fetched every
    /// match and sorted them for a page (p95 274 ms at 1,000,000 messages), where walking the
    /// time index and checking each row stops after a page. A sample decides: of the 5,000
    /// messages where the page starts, if 1% or more hold every term, this transaction's page
    /// walks the time index (it finds a page within some 20,000 rows); else the GIN index,
    /// whose matches are then few. Searches narrowed to a member, a conversation or a group
    /// keep the planner's own choice.
    pub async fn archive_plan(c: &mut PgConnection, f: &crate::archive::store::MessageFilter) -> Result<()> {
        if f.terms.len() < 2 || f.member.is_some() || f.conversation.is_some() || f.group.is_some() {
            return Ok(());
        }
        let mut qb = sqlx::QueryBuilder::<sqlx::Postgres>::new(
            "SELECT COUNT(*) FROM (SELECT grams FROM archive_messages WHERE TRUE",
        );
        if let Some(from) = f.from {
            qb.push(" AND sent_at >= ").push_bind(from);
        }
        if let Some(to) = f.to {
            qb.push(" AND sent_at < ").push_bind(to);
        }
        let dir = if f.before { "DESC" } else { "ASC" };
        if let Some((at, id)) = f.cursor {
            qb.push(format!(" AND (sent_at, id) {} (", if f.before { "<" } else { ">" }));
            qb.push_bind(at).push(", ").push_bind(id).push(")");
        }
        qb.push(format!(" ORDER BY sent_at {dir}, id {dir} LIMIT 5000) sample WHERE grams @> "));
        qb.push_bind(f.terms.clone()).push("::int8[]");
        let (n,): (i64,) = qb.build_query_as().persistent(false).fetch_one(&mut *c).await.map_err(err)?;
        if n >= 50 {
            for setting in ["SET LOCAL enable_bitmapscan = off", "SET LOCAL enable_seqscan = off"] {
                sqlx::query(setting).execute(&mut *c).await.map_err(err)?;
            }
        }
        Ok(())
    }
}
