//! The prelude and small helpers every other `sql_*` macro's code uses (expanded once a backend).

macro_rules! sql_common {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        use chrono::{DateTime, Utc};
        use sqlx::types::Json;
        use uuid::Uuid;
        use $crate::access::store::TokenInfo;
        use $crate::directory::model as m;
        use $crate::directory::store::Result;
        use $crate::store::SchemaState;
        use $crate::store::sql::*;
        use $crate::sync::store::SyncRun;

        type Conn = <$db as sqlx::Database>::Connection;

        fn q(sql: &'static str) -> sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments> {
            sqlx::query(sql)
        }

        /// `sql` selects `MEMBER_COLS` and the backend's children columns (see [`MemberRow`]).
        async fn member_where(
            c: &mut Conn,
            sql: &'static str,
            key: impl for<'q> sqlx::Encode<'q, $db> + sqlx::Type<$db> + Send + 'static,
        ) -> Result<Option<m::Member>> {
            let row =
                sqlx::query_as::<_, MemberRow>(sql).bind(key).fetch_optional(&mut *c).await.map_err($err)?;
            row.map(MemberRow::into_member).transpose()
        }

        async fn id_where(
            c: &mut Conn,
            sql: &'static str,
            a: String,
            b: Option<String>,
        ) -> Result<Option<Uuid>> {
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
        async fn insert_deliveries(
            c: &mut Conn,
            messages: &[$crate::delivery::store::Delivery],
        ) -> Result<u64> {
            let mut added = 0;
            // 17 values a row.
            for chunk in messages.chunks(500) {
                let mut qb =
                    sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO deliveries ({DELIVERY_COLS}) "));
                qb.push_values(chunk, |mut row, d| {
                    row.push_bind(d.id)
                        .push_bind(d.created_at)
                        .push_bind(d.event_id)
                        .push_bind(d.channel.as_str())
                        .push_bind(d.kind.clone())
                        .push_bind(d.recipient.clone())
                        .push_bind(d.member_id)
                        .push_bind(Json(d.params.clone()))
                        .push_bind(d.idempotency_key.clone())
                        .push_bind(d.state.as_str())
                        .push_bind(d.attempts)
                        .push_bind(d.next_attempt_at)
                        .push_bind(d.last_error.clone())
                        .push_bind(d.provider_id.clone())
                        .push_bind(d.sent_at)
                        .push_bind(d.reserved)
                        .push_bind(d.broadcast_id);
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
                let rows: Vec<(Uuid,)> =
                    qb.build_query_as().persistent(false).fetch_all(&mut *c).await.map_err($err)?;
                found.extend(rows.into_iter().map(|r| r.0));
            }
            Ok(found)
        }

        async fn exec(
            c: &mut Conn,
            query: sqlx::query::Query<'static, $db, <$db as sqlx::Database>::Arguments>,
        ) -> Result<u64> {
            Ok(query.execute(&mut *c).await.map_err($err)?.rows_affected())
        }
    };
}
