//! The SQL both backends share, written once.
//!
//! `shared_sql!(Db, Store, Tx, err, MEMBER_CHILDREN, MEMBER_KEYS, GROUP_MEMBERSHIPS)` expands to `impl Store for Store` and
//! `impl StoreTx for Tx` for one sqlx database. The backend supplies a `Store` struct with `read`
//! and `write` pools and the dialect-specific inherent methods `backend_name`, `run_migrations`
//! and `schema_state_impl`, a `Tx` struct wrapping `sqlx::Transaction<'static, Db>`, `err`, which
//! classifies its errors, `MEMBER_CHILDREN`, its SQL for a member's e-mails and further org
//! units as two JSON text columns (see [`MemberRow`]), and `MEMBER_KEYS` and `GROUP_MEMBERSHIPS`,
//! its SQL for a source's member keys and group memberships as JSON text (a sync loads 100,000
//! of each; a few rows are far cheaper than that many). It also supplies `mod bulk`: the writes
//! and checks of many rows at once (new members with their e-mails, conflicts, group members,
//! audit and outbox rows), which each database does best its own way.
//!
//! Multi-row statements (`VALUES` lists, `IN` lists) are sent with `.persistent(false)`: their
//! text changes with their length, and caching every prepared variant would keep hundreds of
//! megabytes of statements per connection for nothing. (SQLite's bulk inserts keep one variant
//! each, the full chunk; see `store::sqlite::bulk`.)

pub(crate) const MEMBER_COLS: &str = "id, account_number, login_name, display_name, given_name, \
    family_name, mobile, title, employee_number, primary_org_unit_id, manager_id, state, source, \
    anchor, version, created_at, updated_at, department, organization, division, cost_center";
pub(crate) const ORG_UNIT_COLS: &str =
    "id, parent_id, name, position, source, anchor, version, created_at, updated_at";
pub(crate) const GROUP_COLS: &str = "id, name, owner_id, source, anchor, version, created_at, updated_at";
pub(crate) const ENTERPRISE_COLS: &str = "enterprise_id, name, logo_url, address, contact_name, \
    contact_phone, contact_email, mail_domain, expires_at, password_must_change, created_at, updated_at";
pub(crate) const TOMBSTONE_COLS: &str =
    "member_id, account_number, login_name, profile, deleted_at, reason, source, deleted_by";
pub(crate) const DELIVERY_COLS: &str = "id, created_at, event_id, channel, kind, recipient, member_id, params, \
    idempotency_key, state, attempts, next_attempt_at, last_error, provider_id, sent_at, reserved, broadcast_id";
pub(crate) const MAILBOX_COLS: &str = "member_id, address, display_name, active, state, attempts, \
    next_attempt_at, last_error, remote_id, pushed_at, updated_at";
pub(crate) const BROADCAST_COLS: &str = "id, created_at, created_by, title, text, sms, scope, recipients";
pub(crate) const SMS_LEDGER_COLS: &str =
    "id, at, entry, amount, balance_after, delivery_id, recipient, segments, provider_id, actor, note";
pub(crate) const ROLE_COLS: &str = "id, name, permissions, version, created_at, updated_at";
pub(crate) const GRANT_COLS: &str = "role_id, member_id, scope_unit_id, granted_at, granted_by";
pub(crate) const AUDIT_COLS: &str = "id, at, actor, source, action, object_kind, object_id, before, after";

/// A unit and its ancestors, nearest first. Bounded depth: a corrupt cycle in stored data cannot
/// loop forever.
pub(crate) const UNIT_PATH: &str = "WITH RECURSIVE path (id, parent_id, depth) AS ( \
    SELECT id, parent_id, 0 FROM org_units WHERE id = $1 \
    UNION ALL \
    SELECT o.id, o.parent_id, p.depth + 1 FROM org_units o JOIN path p ON o.id = p.parent_id \
    WHERE p.depth < 10000) \
    SELECT id FROM path ORDER BY depth";

/// SQL text built once from the column constants and kept for the life of the process (sqlx
/// accepts only `&'static str` as SQL, which keeps values out of query text).
macro_rules! sql {
    ($fmt:literal $(, $arg:expr)*) => {{
        static S: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();
        *S.get_or_init(|| Box::leak(format!($fmt $(, $arg)*).into_boxed_str()))
    }};
}

/// A member row with its e-mails and further org units as JSON text, from the backend's
/// `MEMBER_CHILDREN` columns: one statement reads a whole member.
#[derive(sqlx::FromRow)]
pub(crate) struct MemberRow {
    #[sqlx(flatten)]
    member: crate::directory::model::Member,
    emails_json: String,
    units_json: String,
    /// `[[number, kind, primary], ...]` in order.
    phones_json: String,
}

impl MemberRow {
    /// `emails_json`: `[[address, kind, primary], ...]` in order (primary as a boolean or 0/1);
    /// `units_json`: `["uuid" (any form Uuid parses), ...]`.
    pub(crate) fn into_member(self) -> super::Result<crate::directory::model::Member> {
        use crate::directory::model::Email;
        let id = self.member.id;
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            super::StoreError::Corrupt(format!("member {id}: {what}: {e}"))
        };
        let emails: Vec<(String, String, serde_json::Value)> =
            serde_json::from_str(&self.emails_json).map_err(|e| bad("e-mails", &e))?;
        let units: Vec<String> = serde_json::from_str(&self.units_json).map_err(|e| bad("org units", &e))?;
        let phones: Vec<(String, String, serde_json::Value)> =
            serde_json::from_str(&self.phones_json).map_err(|e| bad("phones", &e))?;
        let mut m = self.member;
        m.emails = emails
            .into_iter()
            .map(|(address, kind, p)| Email { address, kind, primary: p == true || p == 1 })
            .collect();
        m.phones = phones
            .into_iter()
            .map(|(number, kind, p)| crate::directory::model::Phone {
                number,
                kind,
                primary: p == true || p == 1,
            })
            .collect();
        m.org_unit_ids = units
            .iter()
            .map(|u| uuid::Uuid::parse_str(u))
            .collect::<Result<_, _>>()
            .map_err(|e| bad("org units", &e))?;
        m.org_unit_ids.sort();
        Ok(m)
    }
}

macro_rules! shared_sql {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        use $crate::directory::model as m;
                use $crate::store::sql::*;
        use $crate::store::{Result, SchemaState, Store, StoreTx, SyncRun, TokenInfo};
        use chrono::{DateTime, Utc};
        use sqlx::types::Json;
        use uuid::Uuid;

        type Conn = <$db as sqlx::Database>::Connection;

        fn q(sql: &'static str) -> sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments> {
            sqlx::query(sql)
        }

        /// `sql` selects `MEMBER_COLS` and the backend's children columns (see [`MemberRow`]).
        async fn member_where(c: &mut Conn, sql: &'static str, key: impl for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send + 'static) -> Result<Option<m::Member>> {
            let row = sqlx::query_as::<_, MemberRow>(sql).bind(key).fetch_optional(&mut *c).await.map_err($err)?;
            row.map(MemberRow::into_member).transpose()
        }

        async fn id_where(c: &mut Conn, sql: &'static str, a: String, b: Option<String>) -> Result<Option<Uuid>> {
            let mut query = sqlx::query_as::<_, (Uuid,)>(sql).bind(a);
            if let Some(b) = b {
                query = query.bind(b);
            }
            Ok(query.fetch_optional(&mut *c).await.map_err($err)?.map(|r| r.0))
        }

        async fn org_unit_get(c: &mut Conn, id: Uuid) -> Result<Option<m::OrgUnit>> {
            sqlx::query_as::<_, m::OrgUnit>(sql!("SELECT {} FROM org_units WHERE id = $1", ORG_UNIT_COLS))
                .bind(id)
                .fetch_optional(&mut *c)
                .await
                .map_err($err)
        }

        async fn group_get(c: &mut Conn, id: Uuid) -> Result<Option<m::Group>> {
            sqlx::query_as::<_, m::Group>(sql!("SELECT {} FROM groups WHERE id = $1", GROUP_COLS))
                .bind(id)
                .fetch_optional(&mut *c)
                .await
                .map_err($err)
        }

        async fn enterprise_get(c: &mut Conn) -> Result<Option<m::Enterprise>> {
            sqlx::query_as::<_, m::Enterprise>(sql!("SELECT {} FROM enterprise", ENTERPRISE_COLS))
                .fetch_optional(&mut *c)
                .await
                .map_err($err)
        }

        /// Queues messages, skipping idempotency keys already present; returns how many are new.
        async fn insert_deliveries(c: &mut Conn, messages: &[$crate::store::Delivery]) -> Result<u64> {
            let mut added = 0;
            // 17 values a row.
            for chunk in messages.chunks(500) {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO deliveries ({DELIVERY_COLS}) "));
                qb.push_values(chunk, |mut row, d| {
                    row.push_bind(d.id).push_bind(d.created_at).push_bind(d.event_id).push_bind(d.channel.clone())
                        .push_bind(d.kind.clone()).push_bind(d.recipient.clone()).push_bind(d.member_id)
                        .push_bind(Json(d.params.clone())).push_bind(d.idempotency_key.clone()).push_bind(d.state.clone())
                        .push_bind(d.attempts).push_bind(d.next_attempt_at).push_bind(d.last_error.clone())
                        .push_bind(d.provider_id.clone()).push_bind(d.sent_at).push_bind(d.reserved).push_bind(d.broadcast_id);
                });
                qb.push(" ON CONFLICT (idempotency_key) DO NOTHING");
                added += qb.build().persistent(false).execute(&mut *c).await.map_err($err)?.rows_affected();
            }
            Ok(added)
        }

        /// Which of `ids` the table `sql` selects from holds (`sql` ends with `WHERE id IN (`).
        async fn ids_existing(c: &mut Conn, sql: &'static str, ids: &[Uuid]) -> Result<Vec<Uuid>> {
            let mut found = Vec::with_capacity(ids.len());
            for chunk in ids.chunks(500) {
                let mut qb = sqlx::QueryBuilder::<$db>::new(sql);
                let mut list = qb.separated(", ");
                for id in chunk {
                    list.push_bind(*id);
                }
                qb.push(")");
                let rows: Vec<(Uuid,)> = qb.build_query_as().persistent(false).fetch_all(&mut *c).await.map_err($err)?;
                found.extend(rows.into_iter().map(|r| r.0));
            }
            Ok(found)
        }

        async fn exec(c: &mut Conn, query: sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments>) -> Result<u64> {
            Ok(query.execute(&mut *c).await.map_err($err)?.rows_affected())
        }

        /// Appends `e` as SQL over the `members` (or `groups`) table, values bound, never pasted.
        fn push_expr(qb: &mut sqlx::QueryBuilder<$db>, e: &$crate::directory::query::Expr) {
            use $crate::directory::query::{Expr, Field as F, Op, Val};
            match e {
                Expr::And(a, b) | Expr::Or(a, b) => {
                    qb.push("(");
                    push_expr(qb, a);
                    qb.push(if matches!(e, Expr::And(..)) { " AND " } else { " OR " });
                    push_expr(qb, b);
                    qb.push(")");
                }
                Expr::Not(a) => {
                    qb.push("NOT (");
                    push_expr(qb, a);
                    qb.push(")");
                }
                Expr::Const(b) => {
                    qb.push(if *b { "(1 = 1)" } else { "(1 = 0)" });
                }
                Expr::PrimaryUnitUnder(roots) if roots.is_empty() => {
                    qb.push("(1 = 0)");
                }
                Expr::PrimaryUnitUnder(roots) => {
                    qb.push("(primary_org_unit_id IN (WITH RECURSIVE sub (id, depth) AS (SELECT id, 0 FROM org_units WHERE id IN (");
                    let mut list = qb.separated(", ");
                    for r in roots {
                        list.push_bind(*r);
                    }
                    // Bounded depth: a corrupt cycle in stored data cannot loop forever.
                    qb.push(") UNION ALL SELECT o.id, sub.depth + 1 FROM org_units o JOIN sub ON o.parent_id = sub.id \
                             WHERE sub.depth < 10000) SELECT id FROM sub))");
                }
                Expr::AnyEmail(inner) => {
                    qb.push("EXISTS (SELECT 1 FROM member_emails e WHERE e.member_id = members.id AND ");
                    push_expr(qb, inner);
                    qb.push(")");
                }
                Expr::AnyGroupMember(inner) => {
                    qb.push("EXISTS (SELECT 1 FROM group_members gm WHERE gm.group_id = groups.id AND ");
                    push_expr(qb, inner);
                    qb.push(")");
                }
                Expr::Present(f) => {
                    let (col, text) = column(*f);
                    qb.push(format!("({col} IS NOT NULL"));
                    if text {
                        qb.push(format!(" AND {col} <> ''"));
                    }
                    qb.push(")");
                }
                Expr::Cmp(F::Active, op, Val::Bool(b)) if matches!(op, Op::Eq | Op::Ne) => {
                    let want_active = *b == (*op == Op::Eq);
                    qb.push(if want_active { "(state = 'active')" } else { "(state <> 'active')" });
                }
                Expr::Cmp(f, op, val) => {
                    let (col, _) = column(*f);
                    // Lower-case-stored columns compare as they are (their indexes apply); other
                    // case-insensitive text compares lower-cased.
                    let folded = matches!(f, F::DisplayName | F::GivenName | F::FamilyName | F::Title | F::EmailKind | F::GroupName);
                    let lowered = folded || matches!(f, F::LoginName | F::EmailAddress | F::Mobile);
                    let lhs = if folded { format!("LOWER({col})") } else { col.to_owned() };
                    let sql_op = match op {
                        Op::Eq => "=",
                        Op::Ne => "<>",
                        Op::Gt => ">",
                        Op::Ge => ">=",
                        Op::Lt => "<",
                        Op::Le => "<=",
                        Op::Co | Op::Sw | Op::Ew => "LIKE",
                    };
                    if let Val::Null = val {
                        qb.push(match op {
                            Op::Eq => format!("({col} IS NULL)"),
                            Op::Ne => format!("({col} IS NOT NULL)"),
                            _ => "(1 = 0)".to_owned(),
                        });
                        return;
                    }
                    if *op == Op::Ne {
                        qb.push(format!("({col} IS NULL OR {lhs} <> "));
                    } else {
                        qb.push(format!("({lhs} {sql_op} "));
                    }
                    match val {
                        Val::Text(t) => {
                            let t = if lowered { t.to_lowercase() } else { t.clone() };
                            let t = match op {
                                Op::Co | Op::Sw | Op::Ew => {
                                    let esc = t.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
                                    match op {
                                        Op::Co => format!("%{esc}%"),
                                        Op::Sw => format!("{esc}%"),
                                        _ => format!("%{esc}"),
                                    }
                                }
                                _ => t,
                            };
                            qb.push_bind(t);
                        }
                        Val::Int(i) => {
                            qb.push_bind(*i);
                        }
                        Val::Bool(b) => {
                            qb.push_bind(*b);
                        }
                        Val::Time(t) => {
                            qb.push_bind(*t);
                        }
                        Val::Uuid(u) => {
                            qb.push_bind(*u);
                        }
                        Val::Null => unreachable!("handled above"),
                    }
                    if matches!(op, Op::Co | Op::Sw | Op::Ew) {
                        qb.push(" ESCAPE '\\'");
                    }
                    qb.push(")");
                }
            }
        }

        /// The column of a field, and whether it holds text.
        fn column(f: $crate::directory::query::Field) -> (&'static str, bool) {
            use $crate::directory::query::Field as F;
            match f {
                F::Id => ("id", false),
                F::Source => ("source", true),
                F::Anchor => ("anchor", true),
                F::LoginName => ("login_name", true),
                F::DisplayName => ("display_name", true),
                F::GivenName => ("given_name", true),
                F::FamilyName => ("family_name", true),
                F::Title => ("title", true),
                F::EmployeeNumber => ("employee_number", true),
                F::Mobile => ("mobile", true),
                F::Active => ("state", true),
                F::AccountNumber => ("account_number", false),
                F::ManagerId => ("manager_id", false),
                F::PrimaryOrgUnitId => ("primary_org_unit_id", false),
                F::Created => ("created_at", false),
                F::Modified => ("updated_at", false),
                F::EmailAddress => ("e.address", true),
                F::EmailKind => ("e.kind", true),
                F::EmailPrimary => ("e.is_primary", false),
                F::GroupName => ("name", true),
                F::GroupMemberId => ("gm.member_id", false),
            }
        }

        fn push_where(qb: &mut sqlx::QueryBuilder<$db>, q: &$crate::directory::query::Query) {
            if let Some(f) = &q.filter {
                qb.push(" WHERE ");
                push_expr(qb, f);
            }
        }

        /// The total a page tells without counting: a page that is not full is the last one
        /// (unless it is empty past the first, when the total may be anything below its offset).
        fn known_total(q: &$crate::directory::query::Query, got: usize) -> Option<i64> {
            let got = got as i64;
            (q.limit > 0 && got < q.limit && (got > 0 || q.offset == 0)).then_some(q.offset + got)
        }

        fn push_order(qb: &mut sqlx::QueryBuilder<$db>, q: &$crate::directory::query::Query, default: &str) {
            match q.sort {
                Some((f, desc)) => {
                    let (col, _) = column(f);
                    let dir = if desc { "DESC" } else { "ASC" };
                    if f == $crate::directory::query::Field::AccountNumber {
                        // Unique already: no tie-breaker, so an index on (unit, number) serves
                        // the order without a sort.
                        qb.push(format!(" ORDER BY {col} {dir}"));
                    } else {
                        qb.push(format!(" ORDER BY {col} {dir}, id {dir}"));
                    }
                }
                None if default.is_empty() => {}
                None => {
                    qb.push(format!(" ORDER BY {default}"));
                }
            }
            qb.push(" LIMIT ");
            qb.push_bind(q.limit);
            qb.push(" OFFSET ");
            qb.push_bind(q.offset);
        }

        #[async_trait::async_trait]
        impl Store for $Store {
            async fn search_members(&self, q: &$crate::directory::query::Query) -> Result<$crate::directory::query::Page<m::Member>> {
                use $crate::directory::query::{Expr as E, Field as F, Op, Val};
                let mut c = self.read.acquire().await.map_err($err)?;
                // The provisioning clients' lookup (`userName eq "..."`, `id eq "..."`): at most
                // one member, by the same prepared statement as a lookup by key.
                if q.offset == 0 && q.limit > 0 {
                    let found = match &q.filter {
                        Some(E::Cmp(F::LoginName, Op::Eq, Val::Text(v))) => Some(member_where(
                            &mut c,
                            sql!("SELECT {}, {} FROM members WHERE login_name = $1", MEMBER_COLS, $children),
                            v.to_lowercase(),
                        ).await?),
                        Some(E::Cmp(F::Id, Op::Eq, Val::Uuid(id))) => Some(member_where(
                            &mut c,
                            sql!("SELECT {}, {} FROM members WHERE id = $1", MEMBER_COLS, $children),
                            *id,
                        ).await?),
                        _ => None,
                    };
                    if let Some(found) = found {
                        let items: Vec<m::Member> = found.into_iter().collect();
                        return Ok($crate::directory::query::Page { total: items.len() as i64, items });
                    }
                }
                let mut rows: Vec<MemberRow> = Vec::new();
                if q.limit > 0 {
                    let mut page = sqlx::QueryBuilder::<$db>::new(sql!("SELECT {}, {} FROM members", MEMBER_COLS, $children));
                    push_where(&mut page, q);
                    push_order(&mut page, q, "account_number");
                    rows = page.build_query_as().fetch_all(&mut *c).await.map_err($err)?;
                }
                let total = match known_total(q, rows.len()) {
                    Some(total) => total,
                    None => {
                        let mut count = sqlx::QueryBuilder::<$db>::new("SELECT COUNT(*) FROM members");
                        push_where(&mut count, q);
                        count.build_query_as::<(i64,)>().fetch_one(&mut *c).await.map_err($err)?.0
                    }
                };
                let items = rows.into_iter().map(MemberRow::into_member).collect::<Result<_>>()?;
                Ok($crate::directory::query::Page { total, items })
            }

            async fn search_groups(&self, q: &$crate::directory::query::Query) -> Result<$crate::directory::query::Page<m::Group>> {
                let mut items: Vec<m::Group> = Vec::new();
                if q.limit > 0 {
                    let mut page = sqlx::QueryBuilder::<$db>::new(format!("SELECT {GROUP_COLS} FROM groups"));
                    push_where(&mut page, q);
                    push_order(&mut page, q, "created_at, id");
                    items = page.build_query_as().fetch_all(&self.read).await.map_err($err)?;
                }
                let total = match known_total(q, items.len()) {
                    Some(total) => total,
                    None => {
                        let mut count = sqlx::QueryBuilder::<$db>::new("SELECT COUNT(*) FROM groups");
                        push_where(&mut count, q);
                        count.build_query_as::<(i64,)>().fetch_one(&self.read).await.map_err($err)?.0
                    }
                };
                Ok($crate::directory::query::Page { total, items })
            }

            fn backend(&self) -> &'static str {
                Self::backend_name()
            }

            async fn migrate(&self) -> Result<()> {
                self.run_migrations().await
            }

            async fn schema_state(&self) -> Result<SchemaState> {
                self.schema_state_impl().await
            }

            async fn ping(&self) -> Result<()> {
                q("SELECT 1").execute(&self.read).await.map_err($err)?;
                Ok(())
            }

            async fn close(&self) {
                self.read.close().await;
                self.write.close().await;
            }

            async fn probe_write(&self) -> Result<()> {
                let mut tx = self.begin_tx().await?;
                q("UPDATE number_counter SET high_water = high_water WHERE singleton = 1")
                    .execute(&mut *tx)
                    .await
                    .map_err($err)?;
                tx.rollback().await.map_err($err)
            }

            async fn begin(&self) -> Result<Box<dyn StoreTx>> {
                let tx = self.begin_tx().await?;
                Ok(Box::new($Tx { tx }))
            }

            async fn enterprise(&self) -> Result<Option<m::Enterprise>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                enterprise_get(&mut c).await
            }

            async fn super_password_hash(&self) -> Result<Option<String>> {
                let r: Option<(String,)> = sqlx::query_as("SELECT super_password_hash FROM enterprise")
                    .fetch_optional(&self.read)
                    .await
                    .map_err($err)?;
                Ok(r.map(|r| r.0))
            }

            async fn counts(&self) -> Result<m::Counts> {
                let (members, org_units, groups, tombstones): (i64, i64, i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM members), (SELECT COUNT(*) FROM org_units), \
                     (SELECT COUNT(*) FROM groups), (SELECT COUNT(*) FROM tombstones)",
                )
                .fetch_one(&self.read)
                .await
                .map_err($err)?;
                Ok(m::Counts { members, org_units, groups, tombstones })
            }

            async fn member(&self, id: Uuid) -> Result<Option<m::Member>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                member_where(&mut c, sql!("SELECT {}, {} FROM members WHERE id = $1", MEMBER_COLS, $children), id).await
            }

            async fn member_by_login(&self, login_name: &str) -> Result<Option<m::Member>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                member_where(&mut c, sql!("SELECT {}, {} FROM members WHERE login_name = $1", MEMBER_COLS, $children), login_name.to_lowercase()).await
            }

            async fn member_by_number(&self, account_number: i64) -> Result<Option<m::Member>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                member_where(&mut c, sql!("SELECT {}, {} FROM members WHERE account_number = $1", MEMBER_COLS, $children), account_number).await
            }

            async fn members_page(&self, after_number: i64, limit: i64) -> Result<Vec<m::Member>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                let rows = sqlx::query_as::<_, MemberRow>(sql!(
                    "SELECT {}, {} FROM members WHERE account_number > $1 ORDER BY account_number LIMIT $2",
                    MEMBER_COLS, $children
                ))
                .bind(after_number)
                .bind(limit)
                .fetch_all(&mut *c)
                .await
                .map_err($err)?;
                rows.into_iter().map(MemberRow::into_member).collect()
            }

            async fn org_unit(&self, id: Uuid) -> Result<Option<m::OrgUnit>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                org_unit_get(&mut c, id).await
            }

            async fn org_units_all(&self) -> Result<Vec<m::OrgUnit>> {
                sqlx::query_as::<_, m::OrgUnit>(sql!("SELECT {} FROM org_units ORDER BY created_at, id", ORG_UNIT_COLS))
                    .fetch_all(&self.read)
                    .await
                    .map_err($err)
            }

            async fn org_unit_children(&self, parent: Option<Uuid>) -> Result<Vec<m::OrgUnit>> {
                // `= $1` or `IS NULL`, never `IS NOT DISTINCT FROM`: PostgreSQL answers only
                // the first two from an index.
                let query = match parent {
                    Some(p) => sqlx::query_as::<_, m::OrgUnit>(sql!(
                        "SELECT {} FROM org_units WHERE parent_id = $1 ORDER BY position, name", ORG_UNIT_COLS
                    ))
                    .bind(p),
                    None => sqlx::query_as::<_, m::OrgUnit>(sql!(
                        "SELECT {} FROM org_units WHERE parent_id IS NULL ORDER BY position, name", ORG_UNIT_COLS
                    )),
                };
                query.fetch_all(&self.read).await.map_err($err)
            }

            async fn group(&self, id: Uuid) -> Result<Option<m::Group>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                group_get(&mut c, id).await
            }

            async fn group_member_ids(&self, group: Uuid) -> Result<Vec<Uuid>> {
                let rows: Vec<(Uuid,)> = sqlx::query_as(
                    "SELECT member_id FROM group_members WHERE group_id = $1 ORDER BY member_id",
                )
                .bind(group)
                .fetch_all(&self.read)
                .await
                .map_err($err)?;
                Ok(rows.into_iter().map(|r| r.0).collect())
            }

            async fn tombstone(&self, member_id: Uuid) -> Result<Option<m::Tombstone>> {
                sqlx::query_as::<_, m::Tombstone>(sql!("SELECT {} FROM tombstones WHERE member_id = $1", TOMBSTONE_COLS))
                    .bind(member_id)
                    .fetch_optional(&self.read)
                    .await
                    .map_err($err)
            }

            async fn tombstones_for_number(&self, account_number: i64) -> Result<Vec<m::Tombstone>> {
                sqlx::query_as::<_, m::Tombstone>(sql!(
                    "SELECT {} FROM tombstones WHERE account_number = $1 ORDER BY deleted_at",
                    TOMBSTONE_COLS
                ))
                .bind(account_number)
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn reservations(&self) -> Result<Vec<m::Reservation>> {
                sqlx::query_as::<_, m::Reservation>(
                    "SELECT number, note, reserved_at, reserved_by FROM number_reservations ORDER BY number",
                )
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn audit_for(&self, object_kind: &str, object_id: &str) -> Result<Vec<m::AuditEntry>> {
                sqlx::query_as::<_, m::AuditEntry>(sql!(
                    "SELECT {} FROM audit_log WHERE object_kind = $1 AND object_id = $2 ORDER BY id",
                    AUDIT_COLS
                ))
                .bind(object_kind.to_owned())
                .bind(object_id.to_owned())
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn audit_count(&self) -> Result<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_log")
                    .fetch_one(&self.read)
                    .await
                    .map_err($err)?;
                Ok(n)
            }

            async fn outbox_pending(&self, limit: i64) -> Result<Vec<m::OutboxMessage>> {
                sqlx::query_as::<_, m::OutboxMessage>(
                    "SELECT id, created_at, kind, idempotency_key, payload, state, attempts FROM outbox \
                     WHERE state = 'pending' ORDER BY created_at, id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn deliveries_enqueue(&self, events_done: &[Uuid], messages: &[$crate::store::Delivery], bindings: &[$crate::store::MailboxBinding]) -> Result<u64> {
                let mut tx = self.begin_tx().await?;
                let added = insert_deliveries(&mut tx, messages).await?;
                // The latest event of a member wins (events come oldest first).
                let mut latest: Vec<&$crate::store::MailboxBinding> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for b in bindings.iter().rev() {
                    if seen.insert(b.member_id) {
                        latest.push(b);
                    }
                }
                for chunk in latest.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO mailbox_bindings ({MAILBOX_COLS}) "));
                    qb.push_values(chunk, |mut row, b| {
                        row.push_bind(b.member_id).push_bind(b.address.clone()).push_bind(b.display_name.clone())
                            .push_bind(b.active).push_bind(b.state.clone()).push_bind(b.attempts).push_bind(b.next_attempt_at)
                            .push_bind(b.last_error.clone()).push_bind(b.remote_id.clone()).push_bind(b.pushed_at)
                            .push_bind(b.updated_at);
                    });
                    qb.push(" ON CONFLICT (member_id) DO UPDATE SET address = excluded.address, display_name = excluded.display_name, \
                        active = excluded.active, state = 'pending', attempts = 0, next_attempt_at = excluded.next_attempt_at, \
                        updated_at = excluded.updated_at");
                    qb.build().persistent(false).execute(&mut *tx).await.map_err($err)?;
                }
                for chunk in events_done.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE outbox SET state = 'done' WHERE id IN (");
                    let mut list = qb.separated(", ");
                    chunk.iter().for_each(|id| { list.push_bind(*id); });
                    qb.push(")");
                    qb.build().persistent(false).execute(&mut *tx).await.map_err($err)?;
                }
                tx.commit().await.map_err($err)?;
                Ok(added)
            }

            async fn mailbox_claim(&self, holder: &str, now: DateTime<Utc>, until: DateTime<Utc>, limit: i64) -> Result<Vec<$crate::store::MailboxBinding>> {
                sqlx::query_as::<_, $crate::store::MailboxBinding>(sql!(
                    "UPDATE mailbox_bindings SET lease_holder = $1, lease_until = $2 WHERE member_id IN (\
                       SELECT member_id FROM mailbox_bindings WHERE state IN ('pending', 'failed') AND next_attempt_at <= $3 \
                       AND (lease_until IS NULL OR lease_until < $3) ORDER BY next_attempt_at LIMIT $4) \
                     AND state IN ('pending', 'failed') AND (lease_until IS NULL OR lease_until < $3) RETURNING {}",
                    MAILBOX_COLS
                ))
                .bind(holder.to_owned()).bind(until).bind(now).bind(limit)
                .fetch_all(&self.write).await.map_err($err)
            }

            async fn mailbox_pushed(&self, member_id: Uuid, holder: &str, remote_id: Option<&str>, at: DateTime<Utc>) -> Result<()> {
                q("UPDATE mailbox_bindings SET state = CASE WHEN active THEN 'pushed' ELSE 'disabled' END, attempts = 0, \
                   last_error = NULL, remote_id = COALESCE($3, remote_id), pushed_at = $4, lease_holder = NULL, lease_until = NULL \
                   WHERE member_id = $1 AND lease_holder = $2")
                    .bind(member_id).bind(holder.to_owned()).bind(remote_id.map(str::to_owned)).bind(at)
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn mailbox_failed(&self, member_id: Uuid, holder: &str, error: &str, next: DateTime<Utc>) -> Result<()> {
                q("UPDATE mailbox_bindings SET state = 'failed', attempts = attempts + 1, last_error = $3, next_attempt_at = $4, \
                   lease_holder = NULL, lease_until = NULL WHERE member_id = $1 AND lease_holder = $2")
                    .bind(member_id).bind(holder.to_owned()).bind(error.to_owned()).bind(next)
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn mailbox_reconcile(&self, at: DateTime<Utc>) -> Result<u64> {
                Ok(q("UPDATE mailbox_bindings SET state = 'pending', attempts = 0, next_attempt_at = $1 WHERE state IN ('pushed', 'disabled')")
                    .bind(at).execute(&self.write).await.map_err($err)?.rows_affected())
            }

            async fn mailbox_bindings(&self, state: Option<&str>, limit: i64) -> Result<Vec<$crate::store::MailboxBinding>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!("SELECT {MAILBOX_COLS} FROM mailbox_bindings"));
                if let Some(state) = state {
                    qb.push(" WHERE state = ").push_bind(state.to_owned());
                }
                qb.push(" ORDER BY address LIMIT ").push_bind(limit);
                qb.build_query_as().fetch_all(&self.read).await.map_err($err)
            }

            async fn deliveries_claim(&self, holder: &str, now: DateTime<Utc>, until: DateTime<Utc>, limit: i64) -> Result<Vec<$crate::store::Delivery>> {
                // The outer conditions are checked again on the row PostgreSQL locks, so two
                // nodes never both claim one message.
                sqlx::query_as::<_, $crate::store::Delivery>(sql!(
                    "UPDATE deliveries SET lease_holder = $1, lease_until = $2 WHERE id IN (\
                       SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $3 \
                       AND (lease_until IS NULL OR lease_until < $3) ORDER BY next_attempt_at LIMIT $4) \
                     AND state = 'pending' AND (lease_until IS NULL OR lease_until < $3) RETURNING {}",
                    DELIVERY_COLS
                ))
                .bind(holder.to_owned()).bind(until).bind(now).bind(limit)
                .fetch_all(&self.write)
                .await
                .map_err($err)
            }

            async fn deliveries_sent(&self, holder: &str, sent: &[$crate::store::Sent], at: DateTime<Utc>, low_balance: i64) -> Result<Option<i64>> {
                if sent.is_empty() {
                    return Ok(None);
                }
                let mut tx = self.begin_tx().await?;
                let mut recorded = std::collections::HashSet::new();
                for chunk in sent.chunks(300) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE deliveries SET state = 'sent', sent_at = ");
                    qb.push_bind(at).push(", attempts = attempts + 1, last_error = NULL, lease_holder = NULL, lease_until = NULL, reserved = 0, provider_id = CASE id");
                    for s in chunk {
                        qb.push(" WHEN ").push_bind(s.id).push(" THEN ").push_bind(s.provider_id.clone());
                    }
                    qb.push(" ELSE provider_id END WHERE lease_holder = ").push_bind(holder.to_owned()).push(" AND id IN (");
                    let mut list = qb.separated(", ");
                    chunk.iter().for_each(|s| { list.push_bind(s.id); });
                    qb.push(") RETURNING id");
                    let rows: Vec<(Uuid,)> = qb.build_query_as().persistent(false).fetch_all(&mut *tx).await.map_err($err)?;
                    recorded.extend(rows.into_iter().map(|r| r.0));
                }
                let charges: Vec<(&$crate::store::Sent, &(String, i64))> =
                    sent.iter().filter(|s| recorded.contains(&s.id)).filter_map(|s| s.sms.as_ref().map(|c| (s, c))).collect();
                let mut low = None;
                if !charges.is_empty() {
                    let (balance, warned): (i64, Option<DateTime<Utc>>) =
                        sqlx::query_as("SELECT balance, low_warned_at FROM sms_account WHERE singleton = 1")
                            .fetch_one(&mut *tx).await.map_err($err)?;
                    for chunk in charges.chunks(500) {
                        let mut qb = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO sms_ledger (at, entry, amount, balance_after, delivery_id, recipient, segments, provider_id, actor) ",
                        );
                        qb.push_values(chunk, |mut row, (s, (to, segments))| {
                            row.push_bind(at).push_bind("charge").push_bind(-segments).push_bind(balance).push_bind(s.id)
                                .push_bind(to.clone()).push_bind(*segments).push_bind(s.provider_id.clone()).push_bind("rosterd");
                        });
                        qb.build().persistent(false).execute(&mut *tx).await.map_err($err)?;
                    }
                    if balance < low_balance && warned.is_none() {
                        q("UPDATE sms_account SET low_warned_at = $1 WHERE singleton = 1").bind(at)
                            .execute(&mut *tx).await.map_err($err)?;
                        low = Some(balance);
                    }
                }
                tx.commit().await.map_err($err)?;
                Ok(low)
            }

            async fn sms_reserve_many(&self, holder: &str, items: &[(Uuid, i64)]) -> Result<bool> {
                let total: i64 = items.iter().map(|i| i.1).sum();
                let mut tx = self.begin_tx().await?;
                let r: Option<(i64,)> = sqlx::query_as(
                    "UPDATE sms_account SET balance = balance - $1 WHERE singleton = 1 AND balance >= $1 RETURNING balance",
                )
                .bind(total).fetch_optional(&mut *tx).await.map_err($err)?;
                if r.is_none() {
                    return Ok(false);
                }
                let mut by_segments: std::collections::BTreeMap<i64, Vec<Uuid>> = Default::default();
                for (id, segments) in items {
                    by_segments.entry(*segments).or_default().push(*id);
                }
                for (segments, ids) in by_segments {
                    for chunk in ids.chunks(1000) {
                        let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE deliveries SET reserved = ");
                        qb.push_bind(segments).push(" WHERE lease_holder = ").push_bind(holder.to_owned()).push(" AND id IN (");
                        let mut list = qb.separated(", ");
                        chunk.iter().for_each(|id| { list.push_bind(*id); });
                        qb.push(")");
                        qb.build().persistent(false).execute(&mut *tx).await.map_err($err)?;
                    }
                }
                tx.commit().await.map_err($err)?;
                Ok(true)
            }

            async fn delivery_failed(&self, id: Uuid, holder: &str, error: &str, next: Option<DateTime<Utc>>) -> Result<()> {
                let state = if next.is_some() { "pending" } else { "dead" };
                q("UPDATE deliveries SET state = $3, attempts = attempts + 1, last_error = $4, \
                   next_attempt_at = COALESCE($5, next_attempt_at), lease_holder = NULL, lease_until = NULL \
                   WHERE id = $1 AND lease_holder = $2")
                    .bind(id).bind(holder.to_owned()).bind(state).bind(error.to_owned()).bind(next)
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn delivery_defer(&self, id: Uuid, holder: &str, reason: &str, at: Option<DateTime<Utc>>) -> Result<()> {
                let state = if at.is_some() { "pending" } else { "held" };
                q("UPDATE deliveries SET state = $3, last_error = $4, next_attempt_at = COALESCE($5, next_attempt_at), \
                   lease_holder = NULL, lease_until = NULL WHERE id = $1 AND lease_holder = $2")
                    .bind(id).bind(holder.to_owned()).bind(state).bind(reason.to_owned()).bind(at)
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn deliveries_list(&self, state: Option<&str>, limit: i64) -> Result<Vec<$crate::store::Delivery>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!("SELECT {DELIVERY_COLS} FROM deliveries"));
                if let Some(state) = state {
                    qb.push(" WHERE state = ").push_bind(state.to_owned());
                }
                qb.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(limit);
                qb.build_query_as().fetch_all(&self.read).await.map_err($err)
            }


            async fn delivery_counts(&self) -> Result<Vec<(String, String, i64)>> {
                sqlx::query_as("SELECT channel, state, COUNT(*) FROM deliveries GROUP BY channel, state ORDER BY channel, state")
                    .fetch_all(&self.read).await.map_err($err)
            }

            async fn sms_reserve(&self, id: Uuid, holder: &str, segments: i64) -> Result<Option<i64>> {
                let mut tx = self.begin_tx().await?;
                let r: Option<(i64,)> = sqlx::query_as(
                    "UPDATE sms_account SET balance = balance - $1 WHERE singleton = 1 AND balance >= $1 RETURNING balance",
                )
                .bind(segments).fetch_optional(&mut *tx).await.map_err($err)?;
                if r.is_some() {
                    q("UPDATE deliveries SET reserved = $3 WHERE id = $1 AND lease_holder = $2")
                        .bind(id).bind(holder.to_owned()).bind(segments).execute(&mut *tx).await.map_err($err)?;
                }
                tx.commit().await.map_err($err)?;
                Ok(r.map(|r| r.0))
            }

            async fn sms_refund(&self, id: Uuid) -> Result<()> {
                let mut tx = self.begin_tx().await?;
                let r: Option<(i64,)> = sqlx::query_as("SELECT reserved FROM deliveries WHERE id = $1")
                    .bind(id).fetch_optional(&mut *tx).await.map_err($err)?;
                if let Some((reserved,)) = r.filter(|r| r.0 > 0) {
                    q("UPDATE sms_account SET balance = balance + $1 WHERE singleton = 1").bind(reserved)
                        .execute(&mut *tx).await.map_err($err)?;
                    q("UPDATE deliveries SET reserved = 0 WHERE id = $1").bind(id).execute(&mut *tx).await.map_err($err)?;
                }
                tx.commit().await.map_err($err)?;
                Ok(())
            }

            async fn broadcast(&self, id: Uuid) -> Result<Option<$crate::store::Broadcast>> {
                sqlx::query_as(sql!("SELECT {} FROM broadcasts WHERE id = $1", BROADCAST_COLS))
                    .bind(id).fetch_optional(&self.read).await.map_err($err)
            }

            async fn broadcasts(&self, limit: i64) -> Result<Vec<$crate::store::Broadcast>> {
                sqlx::query_as(sql!("SELECT {} FROM broadcasts ORDER BY created_at DESC, id DESC LIMIT $1", BROADCAST_COLS))
                    .bind(limit).fetch_all(&self.read).await.map_err($err)
            }

            async fn broadcast_progress(&self, id: Uuid) -> Result<Vec<(String, String, i64)>> {
                sqlx::query_as("SELECT channel, state, COUNT(*) FROM deliveries WHERE broadcast_id = $1 GROUP BY channel, state ORDER BY channel, state")
                    .bind(id).fetch_all(&self.read).await.map_err($err)
            }

            async fn tombstones_recent(&self, limit: i64) -> Result<Vec<m::Tombstone>> {
                sqlx::query_as(sql!("SELECT {} FROM tombstones ORDER BY deleted_at DESC LIMIT $1", TOMBSTONE_COLS))
                    .bind(limit).fetch_all(&self.read).await.map_err($err)
            }

            async fn number_high_water(&self) -> Result<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT high_water FROM number_counter WHERE singleton = 1")
                    .fetch_one(&self.read).await.map_err($err)?;
                Ok(n)
            }

            async fn roles(&self) -> Result<Vec<m::Role>> {
                sqlx::query_as(sql!("SELECT {} FROM roles ORDER BY name", ROLE_COLS))
                    .fetch_all(&self.read).await.map_err($err)
            }

            async fn role(&self, id: Uuid) -> Result<Option<m::Role>> {
                sqlx::query_as(sql!("SELECT {} FROM roles WHERE id = $1", ROLE_COLS))
                    .bind(id).fetch_optional(&self.read).await.map_err($err)
            }

            async fn role_grants(&self, role_id: Uuid) -> Result<Vec<m::RoleGrant>> {
                sqlx::query_as(sql!("SELECT {} FROM role_grants WHERE role_id = $1 ORDER BY granted_at", GRANT_COLS))
                    .bind(role_id).fetch_all(&self.read).await.map_err($err)
            }

            async fn member_quarantine(&self, member_id: Uuid) -> Result<Vec<$crate::store::Quarantined>> {
                sqlx::query_as(
                    "SELECT q.member_id, m.login_name, q.field, q.value, q.source, q.since \
                     FROM member_quarantine q JOIN members m ON m.id = q.member_id \
                     WHERE q.member_id = $1 ORDER BY q.field, q.value")
                    .bind(member_id).fetch_all(&self.read).await.map_err($err)
            }

            async fn quarantined(&self, source: Option<&str>, since: Option<DateTime<Utc>>, limit: i64) -> Result<Vec<$crate::store::Quarantined>> {
                sqlx::query_as(
                    "SELECT q.member_id, m.login_name, q.field, q.value, q.source, q.since \
                     FROM member_quarantine q JOIN members m ON m.id = q.member_id \
                     WHERE ($1 IS NULL OR q.source = $1) AND ($2 IS NULL OR q.since >= $2) \
                     ORDER BY q.since, m.login_name, q.field, q.value LIMIT $3")
                    .bind(source.map(str::to_owned)).bind(since).bind(limit)
                    .fetch_all(&self.read).await.map_err($err)
            }

            async fn quarantine_counts(&self) -> Result<Vec<(String, i64)>> {
                sqlx::query_as("SELECT field, COUNT(*) FROM member_quarantine GROUP BY field ORDER BY field")
                    .fetch_all(&self.read).await.map_err($err)
            }

            async fn quarantine_counts_for(&self, source: &str) -> Result<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM member_quarantine WHERE source = $1")
                    .bind(source.to_owned()).fetch_one(&self.read).await.map_err($err)?;
                Ok(n)
            }

            async fn member_grants(&self, member_id: Uuid) -> Result<Vec<m::RoleGrant>> {
                sqlx::query_as(sql!("SELECT {} FROM role_grants WHERE member_id = $1 ORDER BY granted_at", GRANT_COLS))
                    .bind(member_id).fetch_all(&self.read).await.map_err($err)
            }

            async fn org_unit_ancestors(&self, id: Uuid) -> Result<Vec<Uuid>> {
                let rows: Vec<(Uuid,)> = sqlx::query_as(
                    UNIT_PATH,
                )
                .bind(id).fetch_all(&self.read).await.map_err($err)?;
                Ok(rows.into_iter().map(|r| r.0).collect())
            }

            async fn member_password_hash(&self, id: Uuid) -> Result<Option<String>> {
                let row: Option<(Option<String>,)> = sqlx::query_as("SELECT password_hash FROM members WHERE id = $1")
                    .bind(id).fetch_optional(&self.read).await.map_err($err)?;
                Ok(row.and_then(|r| r.0))
            }

            async fn audit_search(&self, f: &$crate::store::AuditFilter) -> Result<Vec<m::AuditEntry>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(sql!("SELECT {} FROM audit_log WHERE 1 = 1", AUDIT_COLS));
                if let Some(a) = &f.actor {
                    qb.push(" AND actor = ").push_bind(a.clone());
                }
                if let Some(a) = &f.action {
                    // A prefix match that needs no LIKE escaping.
                    qb.push(" AND substr(action, 1, ").push_bind(a.chars().count() as i32).push(") = ").push_bind(a.clone());
                }
                if let Some(o) = &f.object_id {
                    qb.push(" AND object_id = ").push_bind(o.clone());
                }
                if let Some(t) = f.since {
                    qb.push(" AND at >= ").push_bind(t);
                }
                if let Some(t) = f.until {
                    qb.push(" AND at < ").push_bind(t);
                }
                if let Some(id) = f.before_id {
                    qb.push(" AND id < ").push_bind(id);
                }
                qb.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit);
                qb.build_query_as().persistent(false).fetch_all(&self.read).await.map_err($err)
            }

            async fn session_insert(&self, s: &$crate::store::AdminSession) -> Result<()> {
                q("INSERT INTO admin_sessions (id_hash, member_id, csrf, created_at, expires_at, last_seen_at, ip) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(s.id_hash.clone()).bind(s.member_id).bind(s.csrf.clone()).bind(s.created_at)
                    .bind(s.expires_at).bind(s.last_seen_at).bind(s.ip.clone())
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn session(&self, id_hash: &str) -> Result<Option<$crate::store::AdminSession>> {
                sqlx::query_as("SELECT id_hash, member_id, csrf, created_at, expires_at, last_seen_at, ip FROM admin_sessions WHERE id_hash = $1")
                    .bind(id_hash.to_owned()).fetch_optional(&self.read).await.map_err($err)
            }

            async fn session_touch(&self, id_hash: &str, seen: DateTime<Utc>, expires: DateTime<Utc>) -> Result<()> {
                q("UPDATE admin_sessions SET last_seen_at = $1, expires_at = $2 WHERE id_hash = $3")
                    .bind(seen).bind(expires).bind(id_hash.to_owned())
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn session_delete(&self, id_hash: &str) -> Result<()> {
                q("DELETE FROM admin_sessions WHERE id_hash = $1").bind(id_hash.to_owned())
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn sessions_end(&self, member_id: Option<Uuid>, keep: Option<&str>) -> Result<u64> {
                let keep = keep.unwrap_or("").to_owned();
                let r = match member_id {
                    Some(id) => q("DELETE FROM admin_sessions WHERE member_id = $1 AND id_hash <> $2").bind(id).bind(keep),
                    None => q("DELETE FROM admin_sessions WHERE member_id IS NULL AND id_hash <> $1").bind(keep),
                };
                Ok(r.execute(&self.write).await.map_err($err)?.rows_affected())
            }

            async fn sessions_purge(&self, before: DateTime<Utc>) -> Result<u64> {
                Ok(q("DELETE FROM admin_sessions WHERE expires_at < $1").bind(before)
                    .execute(&self.write).await.map_err($err)?.rows_affected())
            }

            async fn sign_in_failures(&self, key: &str) -> Result<Option<$crate::store::SignInFailures>> {
                sqlx::query_as("SELECT key, failures, window_start, locked_until FROM sign_in_failures WHERE key = $1")
                    .bind(key.to_owned()).fetch_optional(&self.write).await.map_err($err)
            }

            async fn sign_in_failure_add(&self, key: &str, now: DateTime<Utc>, window_from: DateTime<Utc>) -> Result<i64> {
                let (n,): (i64,) = sqlx::query_as(
                    "INSERT INTO sign_in_failures (key, failures, window_start) VALUES ($1, 1, $2) \
                     ON CONFLICT (key) DO UPDATE SET \
                       failures = CASE WHEN sign_in_failures.window_start < $3 THEN 1 ELSE sign_in_failures.failures + 1 END, \
                       window_start = CASE WHEN sign_in_failures.window_start < $3 THEN excluded.window_start ELSE sign_in_failures.window_start END \
                     RETURNING failures",
                )
                .bind(key.to_owned()).bind(now).bind(window_from)
                .fetch_one(&self.write).await.map_err($err)?;
                Ok(n)
            }

            async fn sign_in_failure_undo(&self, key: &str) -> Result<()> {
                q("UPDATE sign_in_failures SET failures = failures - 1 WHERE key = $1 AND failures > 0")
                    .bind(key.to_owned()).execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn sign_in_lock(&self, key: &str, until: DateTime<Utc>) -> Result<()> {
                q("UPDATE sign_in_failures SET locked_until = $1 WHERE key = $2").bind(until).bind(key.to_owned())
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn sign_in_failures_purge(&self, before: DateTime<Utc>) -> Result<u64> {
                Ok(q("DELETE FROM sign_in_failures WHERE window_start < $1 AND (locked_until IS NULL OR locked_until < $1)")
                    .bind(before).execute(&self.write).await.map_err($err)?.rows_affected())
            }

            async fn sign_in_failures_clear(&self, key: &str) -> Result<()> {
                q("DELETE FROM sign_in_failures WHERE key = $1").bind(key.to_owned())
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn sms_balance(&self) -> Result<i64> {
                let (b,): (i64,) = sqlx::query_as("SELECT balance FROM sms_account WHERE singleton = 1")
                    .fetch_one(&self.read).await.map_err($err)?;
                Ok(b)
            }

            async fn sms_ledger(&self, limit: i64) -> Result<Vec<$crate::store::SmsLedgerEntry>> {
                sqlx::query_as(sql!("SELECT {} FROM sms_ledger ORDER BY id DESC LIMIT $1", SMS_LEDGER_COLS))
                    .bind(limit).fetch_all(&self.read).await.map_err($err)
            }

            async fn tokens(&self) -> Result<Vec<TokenInfo>> {
                sqlx::query_as::<_, TokenInfo>(
                    "SELECT name, created_at, last_used_at, revoked_at, adopt_existing, rotated_at FROM api_tokens ORDER BY name, id",
                )
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn member_keys_by_source(&self, source: &str) -> Result<Vec<$crate::store::MemberKey>> {
                let parts: Vec<(Option<String>,)> = sqlx::query_as($keys)
                    .bind(source.to_owned()).fetch_all(&self.read).await.map_err($err)?;
                let mut keys = Vec::new();
                for (part,) in parts {
                    let Some(part) = part else { continue };
                    let rows: Vec<(String, Option<String>, String, Option<i64>)> = serde_json::from_str(&part)
                        .map_err(|e| $crate::store::StoreError::Corrupt(format!("member keys of {source}: {e}")))?;
                    keys.reserve(rows.len());
                    for (id, anchor, login_name, digest) in rows {
                        let id = Uuid::parse_str(&id)
                            .map_err(|e| $crate::store::StoreError::Corrupt(format!("member id {id:?}: {e}")))?;
                        keys.push($crate::store::MemberKey { id, anchor, login_name, digest });
                    }
                }
                Ok(keys)
            }

            async fn member_digests_fill(&self, members: &[(Uuid, i64, i64)]) -> Result<u64> {
                let mut tx = self.write.begin().await.map_err($err)?;
                let mut n = 0;
                for (id, version, digest) in members {
                    n += q("UPDATE members SET sync_digest = $3 WHERE id = $1 AND version = $2 AND sync_digest IS NULL")
                        .bind(*id).bind(*version).bind(*digest)
                        .execute(&mut *tx).await.map_err($err)?.rows_affected();
                }
                tx.commit().await.map_err($err)?;
                Ok(n)
            }

            async fn members_by_anchors(&self, source: &str, anchors: &[String]) -> Result<Vec<m::Member>> {
                let mut out = Vec::with_capacity(anchors.len());
                for chunk in anchors.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(sql!("SELECT {}, {} FROM members WHERE source = ", MEMBER_COLS, $children));
                    qb.push_bind(source.to_owned()).push(" AND anchor IN (");
                    let mut list = qb.separated(", ");
                    chunk.iter().for_each(|a| { list.push_bind(a.clone()); });
                    qb.push(")");
                    let rows: Vec<MemberRow> = qb.build_query_as().persistent(false).fetch_all(&self.read).await.map_err($err)?;
                    for row in rows {
                        out.push(row.into_member()?);
                    }
                }
                Ok(out)
            }

            async fn groups_by_source(&self, source: &str) -> Result<Vec<(m::Group, Vec<Uuid>)>> {
                let groups: Vec<m::Group> = sqlx::query_as(sql!("SELECT {} FROM groups WHERE source = $1", GROUP_COLS))
                    .bind(source.to_owned())
                    .fetch_all(&self.read)
                    .await
                    .map_err($err)?;
                let lists: Vec<(Uuid, String)> = sqlx::query_as($memberships)
                    .bind(source.to_owned())
                    .fetch_all(&self.read)
                    .await
                    .map_err($err)?;
                let mut by_group: std::collections::HashMap<Uuid, Vec<Uuid>> = std::collections::HashMap::new();
                for (g, list) in lists {
                    let bad = |e: &dyn std::fmt::Display| $crate::store::StoreError::Corrupt(format!("members of group {g}: {e}"));
                    let ids: Vec<String> = serde_json::from_str(&list).map_err(|e| bad(&e))?;
                    let ids = ids.iter().map(|id| Uuid::parse_str(id)).collect::<std::result::Result<Vec<_>, _>>().map_err(|e| bad(&e))?;
                    by_group.insert(g, ids);
                }
                Ok(groups.into_iter().map(|g| { let ms = by_group.remove(&g.id).unwrap_or_default(); (g, ms) }).collect())
            }

            async fn run_start(&self, source: &str, trigger: &str, full_read: bool, dry_run: bool) -> Result<i64> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO sync_runs (source, trigger, full_read, dry_run, started_at, status, counts, errors, message) \
                     VALUES ($1, $2, $3, $4, $5, 'running', $6, $7, '') RETURNING id",
                )
                .bind(source.to_owned())
                .bind(trigger.to_owned())
                .bind(full_read)
                .bind(dry_run)
                .bind(Utc::now())
                .bind(Json(serde_json::json!({})))
                .bind(Json(serde_json::json!([])))
                .fetch_one(&self.write)
                .await
                .map_err($err)?;
                Ok(id)
            }

            async fn run_finish(&self, id: i64, status: &str, counts: &serde_json::Value, errors: &serde_json::Value, message: &str) -> Result<()> {
                q("UPDATE sync_runs SET status = $2, counts = $3, errors = $4, message = $5, finished_at = $6 WHERE id = $1")
                    .bind(id)
                    .bind(status.to_owned())
                    .bind(Json(counts.clone()))
                    .bind(Json(errors.clone()))
                    .bind(message.to_owned())
                    .bind(Utc::now())
                    .execute(&self.write)
                    .await
                    .map_err($err)?;
                Ok(())
            }

            async fn run(&self, id: i64) -> Result<Option<SyncRun>> {
                sqlx::query_as::<_, SyncRun>(
                    "SELECT id, source, trigger, full_read, dry_run, started_at, finished_at, status, counts, errors, message \
                     FROM sync_runs WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&self.read)
                .await
                .map_err($err)
            }

            async fn run_set_plan(&self, id: i64, plan: &[String]) -> Result<()> {
                q("UPDATE sync_runs SET plan = $1 WHERE id = $2")
                    .bind(Json(plan.to_vec())).bind(id)
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn run_plan(&self, id: i64) -> Result<Vec<String>> {
                let row: Option<(Json<Vec<String>>,)> = sqlx::query_as("SELECT plan FROM sync_runs WHERE id = $1")
                    .bind(id).fetch_optional(&self.read).await.map_err($err)?;
                Ok(row.map(|r| r.0.0).unwrap_or_default())
            }

            async fn runs_recent(&self, limit: i64) -> Result<Vec<SyncRun>> {
                sqlx::query_as::<_, SyncRun>(
                    "SELECT id, source, trigger, full_read, dry_run, started_at, finished_at, status, counts, errors, message \
                     FROM sync_runs ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn lease_acquire(&self, source: &str, holder: &str, until: DateTime<Utc>) -> Result<bool> {
                let now = Utc::now();
                let taken = q(
                    "INSERT INTO sync_leases (source, holder, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (source) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE sync_leases.expires_at < $4 OR sync_leases.holder = excluded.holder",
                )
                .bind(source.to_owned())
                .bind(holder.to_owned())
                .bind(until)
                .bind(now)
                .execute(&self.write)
                .await
                .map_err($err)?
                .rows_affected();
                Ok(taken > 0)
            }

            async fn sync_cursor(&self, source: &str) -> Result<Option<String>> {
                let r: Option<(String,)> = sqlx::query_as("SELECT cursor FROM sync_cursors WHERE source = $1")
                    .bind(source.to_owned())
                    .fetch_optional(&self.read)
                    .await
                    .map_err($err)?;
                Ok(r.map(|r| r.0))
            }

            async fn lease_release(&self, source: &str, holder: &str) -> Result<()> {
                q("DELETE FROM sync_leases WHERE source = $1 AND holder = $2")
                    .bind(source.to_owned())
                    .bind(holder.to_owned())
                    .execute(&self.write)
                    .await
                    .map_err($err)?;
                Ok(())
            }

            async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
                let token = sqlx::query_as::<_, TokenInfo>(
                    "SELECT name, created_at, last_used_at, revoked_at, adopt_existing, rotated_at FROM api_tokens \
                     WHERE token_hash = $1 AND revoked_at IS NULL",
                )
                .bind(hash.to_owned())
                .fetch_optional(&self.read)
                .await
                .map_err($err)?;
                // Every request authenticates: record the use at most once a minute, so reads
                // stay reads.
                let now = Utc::now();
                if let Some(t) = &token {
                    if t.last_used_at.is_none_or(|at| now - at > chrono::Duration::seconds(60)) {
                        q("UPDATE api_tokens SET last_used_at = $1 WHERE token_hash = $2")
                            .bind(now)
                            .bind(hash.to_owned())
                            .execute(&self.write)
                            .await
                            .map_err($err)?;
                    }
                }
                Ok(token)
            }
        }

        #[async_trait::async_trait]
        impl StoreTx for $Tx {
            async fn commit(self: Box<Self>) -> Result<()> {
                self.tx.commit().await.map_err($err)
            }

            async fn enterprise(&mut self) -> Result<Option<m::Enterprise>> {
                enterprise_get(&mut self.tx).await
            }

            async fn enterprise_insert(&mut self, e: &m::Enterprise, password_hash: &str) -> Result<()> {
                exec(&mut self.tx, q(sql!(
                    "INSERT INTO enterprise (singleton, {}, super_password_hash) VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    ENTERPRISE_COLS
                ))
                .bind(e.enterprise_id.clone()).bind(e.name.clone()).bind(e.logo_url.clone()).bind(e.address.clone())
                .bind(e.contact_name.clone()).bind(e.contact_phone.clone()).bind(e.contact_email.clone())
                .bind(e.mail_domain.clone()).bind(e.expires_at).bind(e.password_must_change)
                .bind(e.created_at).bind(e.updated_at).bind(password_hash.to_owned())).await?;
                Ok(())
            }

            async fn enterprise_update(&mut self, e: &m::Enterprise) -> Result<()> {
                exec(&mut self.tx, q(
                    "UPDATE enterprise SET name = $1, logo_url = $2, address = $3, contact_name = $4, contact_phone = $5, \
                     contact_email = $6, mail_domain = $7, expires_at = $8, updated_at = $9 WHERE singleton = 1",
                )
                .bind(e.name.clone()).bind(e.logo_url.clone()).bind(e.address.clone()).bind(e.contact_name.clone())
                .bind(e.contact_phone.clone()).bind(e.contact_email.clone()).bind(e.mail_domain.clone())
                .bind(e.expires_at).bind(e.updated_at)).await?;
                Ok(())
            }

            async fn super_password_set(&mut self, hash: &str, must_change: bool) -> Result<()> {
                exec(&mut self.tx, q(
                    "UPDATE enterprise SET super_password_hash = $1, password_must_change = $2, updated_at = $3 WHERE singleton = 1",
                )
                .bind(hash.to_owned()).bind(must_change).bind(Utc::now())).await?;
                Ok(())
            }

            async fn org_unit(&mut self, id: Uuid) -> Result<Option<m::OrgUnit>> {
                org_unit_get(&mut self.tx, id).await
            }

            async fn org_unit_by_anchor(&mut self, source: &str, anchor: &str) -> Result<Option<Uuid>> {
                id_where(&mut self.tx, "SELECT id FROM org_units WHERE source = $1 AND anchor = $2", source.to_owned(), Some(anchor.to_owned())).await
            }

            async fn org_unit_sibling_named(&mut self, parent: Option<Uuid>, name: &str) -> Result<Option<Uuid>> {
                let query = match parent {
                    Some(p) => sqlx::query_as("SELECT id FROM org_units WHERE parent_id = $1 AND name = $2").bind(p),
                    None => sqlx::query_as("SELECT id FROM org_units WHERE parent_id IS NULL AND name = $1"),
                };
                let r: Option<(Uuid,)> = query.bind(name.to_owned()).fetch_optional(&mut *self.tx).await.map_err($err)?;
                Ok(r.map(|r| r.0))
            }

            async fn org_unit_path(&mut self, id: Uuid) -> Result<Vec<Uuid>> {
                let rows: Vec<(Uuid,)> = sqlx::query_as(
                    UNIT_PATH,
                )
                .bind(id)
                .fetch_all(&mut *self.tx)
                .await
                .map_err($err)?;
                Ok(rows.into_iter().map(|r| r.0).collect())
            }

            async fn org_unit_next_position(&mut self, parent: Option<Uuid>) -> Result<i64> {
                let query = match parent {
                    Some(p) => sqlx::query_as("SELECT MAX(position) FROM org_units WHERE parent_id = $1").bind(p),
                    None => sqlx::query_as("SELECT MAX(position) FROM org_units WHERE parent_id IS NULL"),
                };
                let (n,): (Option<i64>,) = query.fetch_one(&mut *self.tx).await.map_err($err)?;
                Ok(n.map_or(0, |n| n + 1))
            }

            async fn org_unit_has_children(&mut self, id: Uuid) -> Result<bool> {
                let r: Option<(i64,)> = sqlx::query_as("SELECT CAST(1 AS BIGINT) FROM org_units WHERE parent_id = $1 LIMIT 1")
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err($err)?;
                Ok(r.is_some())
            }

            async fn org_unit_has_members(&mut self, id: Uuid) -> Result<bool> {
                let r: Option<(i64,)> = sqlx::query_as(
                    "SELECT CAST(1 AS BIGINT) FROM members WHERE primary_org_unit_id = $1 \
                     UNION ALL SELECT CAST(1 AS BIGINT) FROM member_org_units WHERE org_unit_id = $1 LIMIT 1",
                )
                .bind(id)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err($err)?;
                Ok(r.is_some())
            }

            async fn org_units_insert(&mut self, us: &[m::OrgUnit]) -> Result<()> {
                // 9 values a row. Rows go in in order: a parent's row before its children's.
                for chunk in us.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO org_units ({ORG_UNIT_COLS}) "));
                    qb.push_values(chunk, |mut row, u| {
                        row.push_bind(u.id).push_bind(u.parent_id).push_bind(u.name.clone()).push_bind(u.position)
                            .push_bind(u.source.as_str().to_owned()).push_bind(u.anchor.clone()).push_bind(u.version)
                            .push_bind(u.created_at).push_bind(u.updated_at);
                    });
                    qb.build().persistent(false).execute(&mut *self.tx).await.map_err($err)?;
                }
                Ok(())
            }

            async fn org_units_children(&mut self, parents: &[Option<Uuid>]) -> Result<Vec<(Option<Uuid>, String, i64)>> {
                let mut found: Vec<(Option<Uuid>, String, i64)> = Vec::new();
                if parents.contains(&None) {
                    found.extend(sqlx::query_as::<_, (Option<Uuid>, String, i64)>(
                        "SELECT parent_id, name, position FROM org_units WHERE parent_id IS NULL")
                        .fetch_all(&mut *self.tx).await.map_err($err)?);
                }
                let ids: Vec<Uuid> = parents.iter().flatten().copied().collect();
                for chunk in ids.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT parent_id, name, position FROM org_units WHERE parent_id IN (");
                    let mut list = qb.separated(", ");
                    chunk.iter().for_each(|id| { list.push_bind(*id); });
                    qb.push(")");
                    found.extend(qb.build_query_as::<(Option<Uuid>, String, i64)>().persistent(false).fetch_all(&mut *self.tx).await.map_err($err)?);
                }
                Ok(found)
            }

            async fn anchors_held(&mut self, groups: bool, source: &str, anchors: &[String]) -> Result<Vec<(String, Uuid)>> {
                let table = if groups { "groups" } else { "org_units" };
                let mut found = Vec::new();
                for chunk in anchors.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(format!("SELECT anchor, id FROM {table} WHERE source = "));
                    qb.push_bind(source.to_owned()).push(" AND anchor IN (");
                    let mut list = qb.separated(", ");
                    chunk.iter().for_each(|a| { list.push_bind(a.clone()); });
                    qb.push(")");
                    found.extend(qb.build_query_as::<(String, Uuid)>().persistent(false).fetch_all(&mut *self.tx).await.map_err($err)?);
                }
                Ok(found)
            }

            async fn org_unit_update(&mut self, u: &m::OrgUnit) -> Result<()> {
                exec(&mut self.tx, q(
                    "UPDATE org_units SET parent_id = $2, name = $3, position = $4, anchor = $5, version = $6, updated_at = $7 WHERE id = $1",
                )
                .bind(u.id).bind(u.parent_id).bind(u.name.clone()).bind(u.position)
                .bind(u.anchor.clone()).bind(u.version).bind(u.updated_at)).await?;
                Ok(())
            }

            async fn org_unit_delete(&mut self, id: Uuid) -> Result<()> {
                exec(&mut self.tx, q("DELETE FROM org_units WHERE id = $1").bind(id)).await?;
                Ok(())
            }

            async fn member(&mut self, id: Uuid) -> Result<Option<m::Member>> {
                member_where(&mut self.tx, sql!("SELECT {}, {} FROM members WHERE id = $1", MEMBER_COLS, $children), id).await
            }

            async fn member_id_by_login(&mut self, login_name: &str) -> Result<Option<Uuid>> {
                id_where(&mut self.tx, "SELECT id FROM members WHERE login_name = $1", login_name.to_owned(), None).await
            }

            async fn member_id_by_email(&mut self, address: &str) -> Result<Option<Uuid>> {
                id_where(&mut self.tx, "SELECT member_id FROM member_emails WHERE address = $1", address.to_owned(), None).await
            }

            async fn member_id_by_mobile(&mut self, mobile: &str) -> Result<Option<Uuid>> {
                id_where(&mut self.tx, "SELECT id FROM members WHERE mobile = $1", mobile.to_owned(), None).await
            }

            async fn member_id_by_anchor(&mut self, source: &str, anchor: &str) -> Result<Option<Uuid>> {
                id_where(&mut self.tx, "SELECT id FROM members WHERE source = $1 AND anchor = $2", source.to_owned(), Some(anchor.to_owned())).await
            }

            async fn member_id_by_number(&mut self, number: i64) -> Result<Option<Uuid>> {
                let r: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM members WHERE account_number = $1")
                    .bind(number)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err($err)?;
                Ok(r.map(|r| r.0))
            }

            async fn member_conflict(&mut self, mb: &m::Member) -> Result<Option<(String, String)>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT 'login_name', login_name FROM members WHERE login_name = ");
                qb.push_bind(mb.login_name.clone()).push(" AND id <> ").push_bind(mb.id);
                if !mb.emails.is_empty() {
                    qb.push(" UNION ALL SELECT 'email', address FROM member_emails WHERE member_id <> ").push_bind(mb.id);
                    qb.push(" AND address IN (");
                    let mut list = qb.separated(", ");
                    for e in &mb.emails {
                        list.push_bind(e.address.clone());
                    }
                    qb.push(")");
                }
                if let Some(mobile) = &mb.mobile {
                    qb.push(" UNION ALL SELECT 'mobile', mobile FROM members WHERE mobile = ").push_bind(mobile.clone());
                    qb.push(" AND id <> ").push_bind(mb.id);
                }
                if let Some(anchor) = &mb.anchor {
                    qb.push(" UNION ALL SELECT 'anchor', anchor FROM members WHERE source = ").push_bind(mb.source.as_str().to_owned());
                    qb.push(" AND anchor = ").push_bind(anchor.clone()).push(" AND id <> ").push_bind(mb.id);
                }
                qb.push(" LIMIT 1");
                qb.build_query_as::<(String, String)>().fetch_optional(&mut *self.tx).await.map_err($err)
            }

            async fn member_count(&mut self) -> Result<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM members")
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err($err)?;
                Ok(n)
            }

            async fn members_conflicts(&mut self, ms: &[m::Member], ids: &[Uuid]) -> Result<Vec<(String, String)>> {
                bulk::members_conflicts(&mut self.tx, ms, ids).await
            }

            async fn members_insert(&mut self, ms: &[m::Member], password_hashes: &[Option<String>]) -> Result<()> {
                bulk::members_insert(&mut self.tx, ms, password_hashes).await?;
                let members: Vec<&m::Member> = ms.iter().collect();
                bulk::members_children(&mut self.tx, &members).await
            }

            async fn member_set_password(&mut self, id: Uuid, password_hash: Option<&str>, set_by: Option<&str>) -> Result<()> {
                exec(&mut self.tx, q("UPDATE members SET password_hash = $2, password_set_by = $3 WHERE id = $1")
                    .bind(id).bind(password_hash.map(str::to_owned)).bind(set_by.map(str::to_owned))).await?;
                Ok(())
            }

            async fn member_password_set_by(&mut self, id: Uuid) -> Result<Option<String>> {
                let row: Option<(Option<String>,)> = sqlx::query_as(
                    "SELECT password_set_by FROM members WHERE id = $1 AND password_hash IS NOT NULL")
                    .bind(id).fetch_optional(&mut *self.tx).await.map_err($err)?;
                Ok(row.map(|(by,)| by.unwrap_or_default()))
            }

            async fn member_holds_role(&mut self, id: Uuid) -> Result<bool> {
                let (held,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM role_grants WHERE member_id = $1)")
                    .bind(id).fetch_one(&mut *self.tx).await.map_err($err)?;
                Ok(held)
            }

            async fn member_sessions_end(&mut self, id: Uuid, keep: Option<&str>) -> Result<u64> {
                exec(&mut self.tx, q("DELETE FROM admin_sessions WHERE member_id = $1 AND id_hash <> $2")
                    .bind(id).bind(keep.unwrap_or("").to_owned())).await
            }

            async fn quarantine_waiting(&mut self, field: &str, value: &str) -> Result<Option<Uuid>> {
                let row: Option<(Uuid,)> = sqlx::query_as(
                    "SELECT member_id FROM member_quarantine WHERE field = $1 AND value = $2 ORDER BY since, member_id LIMIT 1")
                    .bind(field.to_owned()).bind(value.to_owned()).fetch_optional(&mut *self.tx).await.map_err($err)?;
                Ok(row.map(|(id,)| id))
            }

            async fn quarantine_release(&mut self, member_id: Uuid, field: &str, value: &str) -> Result<()> {
                exec(&mut self.tx, q("DELETE FROM member_quarantine WHERE member_id = $1 AND field = $2 AND value = $3")
                    .bind(member_id).bind(field.to_owned()).bind(value.to_owned())).await?;
                Ok(())
            }

            async fn member_lock(&mut self, id: Uuid) -> Result<()> {
                bulk::member_lock(&mut self.tx, id).await
            }

            async fn quarantine_set(&mut self, member_id: Uuid, fields: &[&str], entries: &[(String, String)], source: &str, at: DateTime<Utc>) -> Result<u64> {
                let mut new = 0;
                for field in fields {
                    let held: Vec<(String,)> = sqlx::query_as("SELECT value FROM member_quarantine WHERE member_id = $1 AND field = $2")
                        .bind(member_id).bind(field.to_string()).fetch_all(&mut *self.tx).await.map_err($err)?;
                    for (value,) in held {
                        if !entries.iter().any(|(f, v)| f == field && *v == value) {
                            exec(&mut self.tx, q("DELETE FROM member_quarantine WHERE member_id = $1 AND field = $2 AND value = $3")
                                .bind(member_id).bind(field.to_string()).bind(value)).await?;
                        }
                    }
                }
                for (field, value) in entries {
                    new += exec(&mut self.tx, q("INSERT INTO member_quarantine (member_id, field, value, source, since) VALUES ($1, $2, $3, $4, $5) \
                                          ON CONFLICT (member_id, field, value) DO NOTHING")
                        .bind(member_id).bind(field.clone()).bind(value.clone()).bind(source.to_owned()).bind(at)).await?;
                }
                Ok(new)
            }

            async fn member_set_source(&mut self, id: Uuid, source: &str, anchor: Option<&str>) -> Result<()> {
                exec(&mut self.tx, q("UPDATE members SET source = $2, anchor = $3 WHERE id = $1")
                    .bind(id).bind(source.to_owned()).bind(anchor.map(str::to_owned))).await?;
                Ok(())
            }

            async fn members_existing(&mut self, ids: &[Uuid]) -> Result<Vec<Uuid>> {
                ids_existing(&mut self.tx, "SELECT id FROM members WHERE id IN (", ids).await
            }

            async fn org_units_existing(&mut self, ids: &[Uuid]) -> Result<Vec<Uuid>> {
                ids_existing(&mut self.tx, "SELECT id FROM org_units WHERE id IN (", ids).await
            }

            async fn member_update(&mut self, mb: &m::Member) -> Result<()> {
                exec(&mut self.tx, q(
                    "UPDATE members SET login_name = $2, display_name = $3, given_name = $4, family_name = $5, mobile = $6, \
                     title = $7, employee_number = $8, primary_org_unit_id = $9, manager_id = $10, state = $11, anchor = $12, \
                     version = $13, updated_at = $14, department = $15, organization = $16, division = $17, cost_center = $18, \
                     sync_digest = $19 WHERE id = $1",
                )
                .bind(mb.id).bind(mb.login_name.clone()).bind(mb.display_name.clone()).bind(mb.given_name.clone())
                .bind(mb.family_name.clone()).bind(mb.mobile.clone()).bind(mb.title.clone()).bind(mb.employee_number.clone())
                .bind(mb.primary_org_unit_id).bind(mb.manager_id).bind(mb.state.as_str()).bind(mb.anchor.clone())
                .bind(mb.version).bind(mb.updated_at)
                .bind(mb.department.clone()).bind(mb.organization.clone()).bind(mb.division.clone()).bind(mb.cost_center.clone())
                .bind(mb.digest())).await?;
                exec(&mut self.tx, q("DELETE FROM member_emails WHERE member_id = $1").bind(mb.id)).await?;
                exec(&mut self.tx, q("DELETE FROM member_phones WHERE member_id = $1").bind(mb.id)).await?;
                exec(&mut self.tx, q("DELETE FROM member_org_units WHERE member_id = $1").bind(mb.id)).await?;
                bulk::members_children(&mut self.tx, &[mb]).await
            }

            async fn member_delete(&mut self, id: Uuid) -> Result<()> {
                exec(&mut self.tx, q("UPDATE members SET manager_id = NULL, sync_digest = NULL, version = version + 1 WHERE manager_id = $1").bind(id)).await?;
                exec(&mut self.tx, q("UPDATE groups SET owner_id = NULL WHERE owner_id = $1").bind(id)).await?;
                exec(&mut self.tx, q("DELETE FROM group_members WHERE member_id = $1").bind(id)).await?;
                exec(&mut self.tx, q("DELETE FROM members WHERE id = $1").bind(id)).await?;
                Ok(())
            }

            async fn tombstone_insert(&mut self, t: &m::Tombstone) -> Result<()> {
                exec(&mut self.tx, q(sql!("INSERT INTO tombstones ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", TOMBSTONE_COLS))
                    .bind(t.member_id).bind(t.account_number).bind(t.login_name.clone()).bind(Json(t.profile.clone()))
                    .bind(t.deleted_at).bind(t.reason.clone()).bind(t.source.as_str().to_owned()).bind(t.deleted_by.clone())).await?;
                Ok(())
            }

            async fn number_next_fresh(&mut self, first: i64, last: i64) -> Result<Option<i64>> {
                // The UPDATE takes the counter row's lock until commit, so concurrent allocators
                // (threads or rosterd processes) queue here and each sees the other's number.
                let r: Option<(i64,)> = sqlx::query_as(
                    "UPDATE number_counter SET high_water = CASE WHEN high_water < $1 THEN $1 ELSE high_water + 1 END \
                     WHERE singleton = 1 AND high_water < $2 RETURNING high_water",
                )
                .bind(first)
                .bind(last)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err($err)?;
                Ok(r.map(|r| r.0))
            }

            async fn number_reserved(&mut self, number: i64) -> Result<bool> {
                let r: Option<(i64,)> = sqlx::query_as("SELECT number FROM number_reservations WHERE number = $1")
                    .bind(number)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err($err)?;
                Ok(r.is_some())
            }

            async fn number_take_block(&mut self, first: i64, last: i64, count: i64) -> Result<Option<(i64, i64)>> {
                // Lock the row first (a no-op update), then read and move the mark.
                let (high,): (i64,) = sqlx::query_as(
                    "UPDATE number_counter SET high_water = high_water WHERE singleton = 1 RETURNING high_water",
                )
                .fetch_one(&mut *self.tx)
                .await
                .map_err($err)?;
                let base = high.max(first - 1);
                let to = (base + count).min(last);
                if to <= base {
                    return Ok(None);
                }
                exec(&mut self.tx, q("UPDATE number_counter SET high_water = $1 WHERE singleton = 1").bind(to)).await?;
                Ok(Some((base + 1, to)))
            }

            async fn numbers_clear_above_high_water(&mut self) -> Result<bool> {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM members m, number_counter c WHERE m.account_number > c.high_water) \
                          + (SELECT COUNT(*) FROM number_reservations r, number_counter c WHERE r.number > c.high_water) \
                          + (SELECT COUNT(*) FROM number_releases r, number_counter c WHERE r.number > c.high_water)",
                )
                .fetch_one(&mut *self.tx)
                .await
                .map_err($err)?;
                Ok(n == 0)
            }

            async fn number_taken(&mut self, number: i64) -> Result<bool> {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM members WHERE account_number = $1) \
                          + (SELECT COUNT(*) FROM number_reservations WHERE number = $1) \
                          + (SELECT COUNT(*) FROM number_releases WHERE number = $1)",
                )
                .bind(number)
                .fetch_one(&mut *self.tx)
                .await
                .map_err($err)?;
                Ok(n > 0)
            }

            async fn number_reserve(&mut self, r: &m::Reservation) -> Result<()> {
                exec(&mut self.tx, q("INSERT INTO number_reservations (number, note, reserved_at, reserved_by) VALUES ($1, $2, $3, $4)")
                    .bind(r.number).bind(r.note.clone()).bind(r.reserved_at).bind(r.reserved_by.clone())).await?;
                Ok(())
            }

            async fn number_unreserve(&mut self, number: i64) -> Result<bool> {
                Ok(exec(&mut self.tx, q("DELETE FROM number_reservations WHERE number = $1").bind(number)).await? > 0)
            }

            async fn number_release(&mut self, number: i64, at: DateTime<Utc>) -> Result<()> {
                exec(&mut self.tx, q("INSERT INTO number_releases (number, released_at) VALUES ($1, $2) \
                    ON CONFLICT (number) DO UPDATE SET released_at = excluded.released_at")
                    .bind(number).bind(at)).await?;
                Ok(())
            }

            async fn number_released_at(&mut self, number: i64) -> Result<Option<DateTime<Utc>>> {
                let r: Option<(DateTime<Utc>,)> = sqlx::query_as("SELECT released_at FROM number_releases WHERE number = $1")
                    .bind(number)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err($err)?;
                Ok(r.map(|r| r.0))
            }

            async fn number_reusable(&mut self, before: DateTime<Utc>) -> Result<Option<i64>> {
                let r: Option<(i64,)> = sqlx::query_as(
                    "SELECT number FROM number_releases WHERE released_at <= $1 \
                     AND number NOT IN (SELECT number FROM number_reservations) ORDER BY number LIMIT 1",
                )
                .bind(before)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err($err)?;
                Ok(r.map(|r| r.0))
            }

            async fn number_unrelease(&mut self, number: i64) -> Result<()> {
                exec(&mut self.tx, q("DELETE FROM number_releases WHERE number = $1").bind(number)).await?;
                Ok(())
            }

            async fn group(&mut self, id: Uuid) -> Result<Option<m::Group>> {
                group_get(&mut self.tx, id).await
            }

            async fn group_id_by_anchor(&mut self, source: &str, anchor: &str) -> Result<Option<Uuid>> {
                id_where(&mut self.tx, "SELECT id FROM groups WHERE source = $1 AND anchor = $2", source.to_owned(), Some(anchor.to_owned())).await
            }

            async fn groups_insert(&mut self, gs: &[(m::Group, Vec<Uuid>)]) -> Result<()> {
                // 8 values a row.
                for chunk in gs.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO groups ({GROUP_COLS}) "));
                    qb.push_values(chunk, |mut row, (g, _)| {
                        row.push_bind(g.id).push_bind(g.name.clone()).push_bind(g.owner_id).push_bind(g.source.as_str().to_owned())
                            .push_bind(g.anchor.clone()).push_bind(g.version).push_bind(g.created_at).push_bind(g.updated_at);
                    });
                    qb.build().persistent(false).execute(&mut *self.tx).await.map_err($err)?;
                }
                let pairs: Vec<(Uuid, Uuid)> = gs.iter().flat_map(|(g, ms)| ms.iter().map(|mb| (g.id, *mb))).collect();
                bulk::group_members_insert(&mut self.tx, &pairs).await?;
                Ok(())
            }

            async fn group_update(&mut self, g: &m::Group) -> Result<()> {
                exec(&mut self.tx, q("UPDATE groups SET name = $2, owner_id = $3, anchor = $4, version = $5, updated_at = $6 WHERE id = $1")
                    .bind(g.id).bind(g.name.clone()).bind(g.owner_id).bind(g.anchor.clone()).bind(g.version).bind(g.updated_at)).await?;
                Ok(())
            }

            async fn group_touch(&mut self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
                exec(&mut self.tx, q("UPDATE groups SET version = version + 1, updated_at = $2 WHERE id = $1").bind(id).bind(at)).await?;
                Ok(())
            }

            async fn group_delete(&mut self, id: Uuid) -> Result<()> {
                exec(&mut self.tx, q("DELETE FROM group_members WHERE group_id = $1").bind(id)).await?;
                exec(&mut self.tx, q("DELETE FROM groups WHERE id = $1").bind(id)).await?;
                Ok(())
            }

            async fn group_members_add(&mut self, group: Uuid, members: &[Uuid]) -> Result<u64> {
                let pairs: Vec<(Uuid, Uuid)> = members.iter().map(|mb| (group, *mb)).collect();
                bulk::group_members_insert(&mut self.tx, &pairs).await
            }

            async fn group_members_remove(&mut self, group: Uuid, members: &[Uuid]) -> Result<u64> {
                let mut removed = 0;
                for chunk in members.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("DELETE FROM group_members WHERE group_id = ");
                    qb.push_bind(group).push(" AND member_id IN (");
                    let mut list = qb.separated(", ");
                    chunk.iter().for_each(|mb| { list.push_bind(*mb); });
                    qb.push(")");
                    removed += qb.build().persistent(false).execute(&mut *self.tx).await.map_err($err)?.rows_affected();
                }
                Ok(removed)
            }

            async fn sync_cursor_set(&mut self, source: &str, cursor: &str) -> Result<()> {
                exec(&mut self.tx, q("INSERT INTO sync_cursors (source, cursor) VALUES ($1, $2) \
                    ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor")
                    .bind(source.to_owned()).bind(cursor.to_owned())).await?;
                Ok(())
            }

            async fn audit_insert(&mut self, entries: &[m::AuditRecord]) -> Result<()> {
                bulk::audit_insert(&mut self.tx, entries).await
            }

            async fn outbox_insert(&mut self, messages: &[m::OutboxRecord]) -> Result<()> {
                bulk::outbox_insert(&mut self.tx, messages).await
            }

            async fn broadcast_recipients(&mut self, units: &[Uuid]) -> Result<Vec<$crate::store::Recipient>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("");
                if !units.is_empty() {
                    qb.push("WITH RECURSIVE sub(id) AS (SELECT id FROM org_units WHERE id IN (");
                    let mut list = qb.separated(", ");
                    units.iter().for_each(|u| { list.push_bind(*u); });
                    qb.push(") UNION SELECT o.id FROM org_units o JOIN sub ON o.parent_id = sub.id) ");
                }
                qb.push("SELECT id, account_number, login_name, display_name, mobile, \
                    (SELECT address FROM member_emails e WHERE e.member_id = members.id ORDER BY is_primary DESC, position LIMIT 1) AS email \
                    FROM members WHERE state = 'active'");
                if !units.is_empty() {
                    qb.push(" AND (primary_org_unit_id IN (SELECT id FROM sub) OR id IN \
                        (SELECT member_id FROM member_org_units WHERE org_unit_id IN (SELECT id FROM sub)))");
                }
                qb.push(" ORDER BY account_number");
                qb.build_query_as().fetch_all(&mut *self.tx).await.map_err($err)
            }

            async fn broadcast_insert(&mut self, b: &$crate::store::Broadcast, messages: &[$crate::store::Delivery]) -> Result<()> {
                exec(&mut self.tx, q(sql!("INSERT INTO broadcasts ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", BROADCAST_COLS))
                    .bind(b.id).bind(b.created_at).bind(b.created_by.clone()).bind(b.title.clone()).bind(b.text.clone())
                    .bind(b.sms).bind(Json(b.scope.clone())).bind(b.recipients)).await?;
                insert_deliveries(&mut self.tx, messages).await?;
                Ok(())
            }

            async fn sms_top_up(&mut self, amount: i64, actor: &str, note: Option<&str>, at: DateTime<Utc>) -> Result<i64> {
                let (balance,): (i64,) = sqlx::query_as(
                    "UPDATE sms_account SET balance = balance + $1, low_warned_at = NULL WHERE singleton = 1 RETURNING balance",
                )
                .bind(amount).fetch_one(&mut *self.tx).await.map_err($err)?;
                exec(&mut self.tx, q("INSERT INTO sms_ledger (at, entry, amount, balance_after, actor, note) VALUES ($1, 'top_up', $2, $3, $4, $5)")
                    .bind(at).bind(amount).bind(balance).bind(actor.to_owned()).bind(note.map(str::to_owned))).await?;
                exec(&mut self.tx, q("UPDATE deliveries SET state = 'pending', next_attempt_at = $1 WHERE state = 'held' AND channel = 'sms'")
                    .bind(at)).await?;
                Ok(balance)
            }

            async fn token_insert(&mut self, name: &str, hash: &str, adopt_existing: bool, at: DateTime<Utc>) -> Result<()> {
                exec(&mut self.tx, q("INSERT INTO api_tokens (name, token_hash, created_at, adopt_existing) VALUES ($1, $2, $3, $4)")
                    .bind(name.to_owned()).bind(hash.to_owned()).bind(at).bind(adopt_existing)).await?;
                Ok(())
            }

            async fn delivery_retry(&mut self, id: Uuid, at: DateTime<Utc>) -> Result<bool> {
                Ok(exec(&mut self.tx, q("UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $2, lease_holder = NULL, \
                      lease_until = NULL WHERE id = $1 AND state IN ('dead', 'held')")
                    .bind(id).bind(at)).await? == 1)
            }

            async fn deliveries_purge(&mut self, before: DateTime<Utc>) -> Result<u64> {
                exec(&mut self.tx, q("DELETE FROM deliveries WHERE (state = 'sent' AND sent_at < $1) OR (state = 'dead' AND next_attempt_at < $1)")
                    .bind(before)).await
            }

            async fn token_rotate(&mut self, name: &str, hash: &str, at: DateTime<Utc>) -> Result<bool> {
                Ok(exec(&mut self.tx, q("UPDATE api_tokens SET token_hash = $1, rotated_at = $2, revoked_at = NULL WHERE name = $3")
                    .bind(hash.to_owned()).bind(at).bind(name.to_owned())).await? > 0)
            }

            async fn token_revoke(&mut self, name: &str, at: DateTime<Utc>) -> Result<bool> {
                Ok(exec(&mut self.tx, q("UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
                    .bind(at).bind(name.to_owned())).await? > 0)
            }

            async fn role(&mut self, id: Uuid) -> Result<Option<m::Role>> {
                sqlx::query_as(sql!("SELECT {} FROM roles WHERE id = $1", ROLE_COLS))
                    .bind(id).fetch_optional(&mut *self.tx).await.map_err($err)
            }

            async fn role_insert(&mut self, r: &m::Role) -> Result<()> {
                exec(&mut self.tx, q("INSERT INTO roles (id, name, permissions, version, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(r.id).bind(r.name.clone()).bind(r.permissions.to_db()).bind(r.version).bind(r.created_at).bind(r.updated_at)).await?;
                Ok(())
            }

            async fn role_update(&mut self, r: &m::Role) -> Result<()> {
                exec(&mut self.tx, q("UPDATE roles SET name = $1, permissions = $2, version = $3, updated_at = $4 WHERE id = $5")
                    .bind(r.name.clone()).bind(r.permissions.to_db()).bind(r.version).bind(r.updated_at).bind(r.id)).await?;
                Ok(())
            }

            async fn role_delete(&mut self, id: Uuid) -> Result<()> {
                exec(&mut self.tx, q("DELETE FROM role_grants WHERE role_id = $1").bind(id)).await?;
                exec(&mut self.tx, q("DELETE FROM roles WHERE id = $1").bind(id)).await?;
                Ok(())
            }

            async fn grant(&mut self, role_id: Uuid, member_id: Uuid) -> Result<Option<m::RoleGrant>> {
                sqlx::query_as(sql!("SELECT {} FROM role_grants WHERE role_id = $1 AND member_id = $2", GRANT_COLS))
                    .bind(role_id).bind(member_id).fetch_optional(&mut *self.tx).await.map_err($err)
            }

            async fn grants_of_role(&mut self, role_id: Uuid) -> Result<Vec<m::RoleGrant>> {
                sqlx::query_as(sql!("SELECT {} FROM role_grants WHERE role_id = $1", GRANT_COLS))
                    .bind(role_id).fetch_all(&mut *self.tx).await.map_err($err)
            }

            async fn grant_set(&mut self, g: &m::RoleGrant) -> Result<()> {
                exec(&mut self.tx, q("INSERT INTO role_grants (role_id, member_id, scope_unit_id, granted_at, granted_by) VALUES ($1, $2, $3, $4, $5) \
                    ON CONFLICT (role_id, member_id) DO UPDATE SET scope_unit_id = excluded.scope_unit_id, \
                    granted_at = excluded.granted_at, granted_by = excluded.granted_by")
                    .bind(g.role_id).bind(g.member_id).bind(g.scope_unit_id).bind(g.granted_at).bind(g.granted_by.clone())).await?;
                Ok(())
            }

            async fn grant_delete(&mut self, role_id: Uuid, member_id: Uuid) -> Result<bool> {
                Ok(exec(&mut self.tx, q("DELETE FROM role_grants WHERE role_id = $1 AND member_id = $2").bind(role_id).bind(member_id)).await? > 0)
            }

            async fn org_unit_has_grants(&mut self, id: Uuid) -> Result<bool> {
                let row: Option<(i64,)> = sqlx::query_as("SELECT 1 FROM role_grants WHERE scope_unit_id = $1 LIMIT 1")
                    .bind(id).fetch_optional(&mut *self.tx).await.map_err($err)?;
                Ok(row.is_some())
            }

            async fn version_of(&mut self, kind: &str, id: Uuid) -> Result<Option<i64>> {
                let sql = match kind {
                    "member" => "SELECT version FROM members WHERE id = $1",
                    "org_unit" => "SELECT version FROM org_units WHERE id = $1",
                    "group" => "SELECT version FROM groups WHERE id = $1",
                    "role" => "SELECT version FROM roles WHERE id = $1",
                    _ => return Ok(None),
                };
                let row: Option<(i64,)> = sqlx::query_as(sql).bind(id).fetch_optional(&mut *self.tx).await.map_err($err)?;
                Ok(row.map(|r| r.0))
            }
        }
    };
}
