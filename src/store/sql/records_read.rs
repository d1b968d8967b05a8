//! [`RecordRead`](crate::directory::store::RecordRead): tombstones, account numbers, roles and
//! grants, values kept aside, the audit log.
macro_rules! sql_records_read {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        #[async_trait::async_trait]
        impl $crate::directory::store::RecordRead for $Store {
            async fn tombstone(&self, member_id: Uuid) -> Result<Option<m::Tombstone>> {
                sqlx::query_as::<_, m::Tombstone>(sql!(
                    "SELECT {} FROM tombstones WHERE member_id = $1",
                    TOMBSTONE_COLS
                ))
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

            async fn tombstones_recent(&self, limit: i64) -> Result<Vec<m::Tombstone>> {
                sqlx::query_as(sql!(
                    "SELECT {} FROM tombstones ORDER BY deleted_at DESC LIMIT $1",
                    TOMBSTONE_COLS
                ))
                .bind(limit)
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

            async fn number_high_water(&self) -> Result<i64> {
                let (n,): (i64,) =
                    sqlx::query_as("SELECT high_water FROM number_counter WHERE singleton = 1")
                        .fetch_one(&self.read)
                        .await
                        .map_err($err)?;
                Ok(n)
            }

            async fn roles(&self) -> Result<Vec<m::Role>> {
                sqlx::query_as(sql!("SELECT {} FROM roles ORDER BY name", ROLE_COLS))
                    .fetch_all(&self.read)
                    .await
                    .map_err($err)
            }

            async fn role(&self, id: Uuid) -> Result<Option<m::Role>> {
                sqlx::query_as(sql!("SELECT {} FROM roles WHERE id = $1", ROLE_COLS))
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await
                    .map_err($err)
            }

            async fn role_grants(&self, role_id: Uuid) -> Result<Vec<m::RoleGrant>> {
                sqlx::query_as(sql!(
                    "SELECT {} FROM role_grants WHERE role_id = $1 ORDER BY granted_at",
                    GRANT_COLS
                ))
                .bind(role_id)
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn member_grants(&self, member_id: Uuid) -> Result<Vec<m::RoleGrant>> {
                sqlx::query_as(sql!(
                    "SELECT {} FROM role_grants WHERE member_id = $1 ORDER BY granted_at",
                    GRANT_COLS
                ))
                .bind(member_id)
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn member_quarantine(
                &self,
                member_id: Uuid,
            ) -> Result<Vec<$crate::directory::store::Quarantined>> {
                sqlx::query_as(
                    "SELECT q.member_id, m.login_name, q.field, q.value, q.source, q.since \
                     FROM member_quarantine q JOIN members m ON m.id = q.member_id \
                     WHERE q.member_id = $1 ORDER BY q.field, q.value",
                )
                .bind(member_id)
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn quarantined(
                &self,
                source: Option<&str>,
                since: Option<DateTime<Utc>>,
                limit: i64,
            ) -> Result<Vec<$crate::directory::store::Quarantined>> {
                sqlx::query_as(
                    "SELECT q.member_id, m.login_name, q.field, q.value, q.source, q.since \
                     FROM member_quarantine q JOIN members m ON m.id = q.member_id \
                     WHERE ($1 IS NULL OR q.source = $1) AND ($2 IS NULL OR q.since >= $2) \
                     ORDER BY q.since, m.login_name, q.field, q.value LIMIT $3",
                )
                .bind(source.map(str::to_owned))
                .bind(since)
                .bind(limit)
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn quarantine_counts(&self) -> Result<Vec<(String, i64)>> {
                sqlx::query_as("SELECT field, COUNT(*) FROM member_quarantine GROUP BY field ORDER BY field")
                    .fetch_all(&self.read)
                    .await
                    .map_err($err)
            }

            async fn quarantine_counts_for(&self, source: &str) -> Result<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM member_quarantine WHERE source = $1")
                    .bind(source.to_owned())
                    .fetch_one(&self.read)
                    .await
                    .map_err($err)?;
                Ok(n)
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

            async fn audit_search(
                &self,
                f: &$crate::directory::store::AuditFilter,
            ) -> Result<Vec<m::AuditEntry>> {
                let mut qb =
                    sqlx::QueryBuilder::<$db>::new(sql!("SELECT {} FROM audit_log WHERE 1 = 1", AUDIT_COLS));
                if let Some(a) = &f.actor {
                    qb.push(" AND actor = ").push_bind(a.clone());
                }
                if let Some(a) = &f.action {
                    // A prefix match that needs no LIKE escaping.
                    qb.push(" AND substr(action, 1, ")
                        .push_bind(a.chars().count() as i32)
                        .push(") = ")
                        .push_bind(a.clone());
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
        }
    };
}
