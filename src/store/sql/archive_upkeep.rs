//! [`ArchiveUpkeep`](crate::archive::store::ArchiveUpkeep): exports, retention rules, legal
//! holds, and the purge.
macro_rules! sql_archive_upkeep {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        const ARCHIVE_EXPORT_COLS: &str = "id, created_by, created_at, scope, format, state, total, done, file, size, sha256, manifest, error, expires_at";

        #[async_trait::async_trait]
        impl ar::ArchiveUpkeep for $Store {
            async fn archive_export_insert(&self, _key: &ar::Sealed, e: &ar::ExportRow, audit: &m::AuditRecord) -> Result<()> {
                let mut tx = self.begin_tx().await?;
                exec(&mut tx, q(sql!("INSERT INTO archive_exports ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)", ARCHIVE_EXPORT_COLS))
                    .bind(e.id).bind(e.created_by.clone()).bind(e.created_at).bind(e.scope.clone()).bind(e.format.clone())
                    .bind(e.state.clone()).bind(e.total).bind(e.done).bind(e.file.clone()).bind(e.size).bind(e.sha256.clone())
                    .bind(e.manifest.clone()).bind(e.error.clone()).bind(e.expires_at)).await?;
                archive_audit_tx(&mut tx, audit).await?;
                tx.commit().await.map_err($err)
            }

            async fn archive_export_update(&self, _key: &ar::Sealed, e: &ar::ExportRow) -> Result<()> {
                q("UPDATE archive_exports SET state = $2, total = $3, done = $4, file = $5, size = $6, sha256 = $7, \
                   manifest = $8, error = $9, expires_at = $10 WHERE id = $1")
                    .bind(e.id).bind(e.state.clone()).bind(e.total).bind(e.done).bind(e.file.clone()).bind(e.size)
                    .bind(e.sha256.clone()).bind(e.manifest.clone()).bind(e.error.clone()).bind(e.expires_at)
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn archive_export(&self, id: Uuid) -> Result<Option<ar::ExportRow>> {
                sqlx::query_as(sql!("SELECT {} FROM archive_exports WHERE id = $1", ARCHIVE_EXPORT_COLS))
                    .bind(id).fetch_optional(&self.read).await.map_err($err)
            }

            async fn archive_exports(&self, limit: i64) -> Result<Vec<ar::ExportRow>> {
                sqlx::query_as(sql!("SELECT {} FROM archive_exports ORDER BY created_at DESC LIMIT $1", ARCHIVE_EXPORT_COLS))
                    .bind(limit).fetch_all(&self.read).await.map_err($err)
            }

            async fn archive_export_claim(&self, _key: &ar::Sealed) -> Result<Option<ar::ExportRow>> {
                sqlx::query_as(sql!(
                    "UPDATE archive_exports SET state = 'running' WHERE state = 'queued' AND id = \
                     (SELECT id FROM archive_exports WHERE state = 'queued' ORDER BY created_at LIMIT 1) RETURNING {}",
                    ARCHIVE_EXPORT_COLS
                ))
                .fetch_optional(&self.write).await.map_err($err)
            }

            async fn archive_retention(&self) -> Result<Vec<ar::RetentionRow>> {
                sqlx::query_as("SELECT unit_id, days, set_by, set_at FROM archive_retention")
                    .fetch_all(&self.read).await.map_err($err)
            }

            async fn archive_retention_set(&self, _key: &ar::Sealed, unit: Uuid, days: Option<i64>, by: &str, at: DateTime<Utc>, audit: &m::AuditRecord) -> Result<()> {
                let mut tx = self.begin_tx().await?;
                match days {
                    Some(days) => exec(&mut tx, q("INSERT INTO archive_retention (unit_id, days, set_by, set_at) VALUES ($1, $2, $3, $4) \
                                                   ON CONFLICT (unit_id) DO UPDATE SET days = excluded.days, set_by = excluded.set_by, set_at = excluded.set_at")
                        .bind(unit).bind(days).bind(by.to_owned()).bind(at)).await?,
                    None => exec(&mut tx, q("DELETE FROM archive_retention WHERE unit_id = $1").bind(unit)).await?,
                };
                archive_audit_tx(&mut tx, audit).await?;
                tx.commit().await.map_err($err)
            }

            async fn archive_holds(&self) -> Result<Vec<ar::HoldRow>> {
                sqlx::query_as("SELECT id, target_kind, target_id, reason, created_by, created_at, released_at FROM archive_holds ORDER BY created_at DESC")
                    .fetch_all(&self.read).await.map_err($err)
            }

            async fn archive_hold_insert(&self, _key: &ar::Sealed, h: &ar::HoldRow, audit: &m::AuditRecord) -> Result<()> {
                let mut tx = self.begin_tx().await?;
                exec(&mut tx, q("INSERT INTO archive_holds (id, target_kind, target_id, reason, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(h.id).bind(h.target_kind.clone()).bind(h.target_id).bind(h.reason.clone()).bind(h.created_by.clone()).bind(h.created_at)).await?;
                archive_audit_tx(&mut tx, audit).await?;
                tx.commit().await.map_err($err)
            }

            async fn archive_hold_release(&self, _key: &ar::Sealed, id: Uuid, at: DateTime<Utc>, audit: &m::AuditRecord) -> Result<bool> {
                let mut tx = self.begin_tx().await?;
                let n = exec(&mut tx, q("UPDATE archive_holds SET released_at = $2 WHERE id = $1 AND released_at IS NULL").bind(id).bind(at)).await?;
                if n == 0 {
                    return Ok(false);
                }
                archive_audit_tx(&mut tx, audit).await?;
                tx.commit().await.map_err($err)?;
                Ok(true)
            }

            async fn archive_purge_candidates(&self, members: &[Uuid], before: i64, after: (i64, i64), limit: i64) -> Result<Vec<(i64, i64)>> {
                if members.is_empty() {
                    return Ok(Vec::new());
                }
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT DISTINCT message, sent_at FROM archive_parties WHERE sent_at < ");
                qb.push_bind(before).push(" AND (sent_at, message) > (").push_bind(after.0);
                qb.push(", ").push_bind(after.1).push(")");
                qb.push(" AND member_id IN (");
                let mut list = qb.separated(", ");
                for m in members { list.push_bind(*m); }
                qb.push(") ORDER BY sent_at, message LIMIT ").push_bind(limit);
                qb.build_query_as().persistent(false).fetch_all(&self.read).await.map_err($err)
            }

            async fn archive_delete(&self, _key: &ar::Sealed, messages: &[i64], audit: &m::AuditRecord) -> Result<u64> {
                let mut tx = self.begin_tx().await?;
                let mut n = 0;
                for chunk in messages.chunks(500) {
                    for table in ["DELETE FROM archive_parties WHERE message IN (", "DELETE FROM archive_messages WHERE id IN ("] {
                        let mut qb = sqlx::QueryBuilder::<$db>::new(table);
                        let mut list = qb.separated(", ");
                        for id in chunk { list.push_bind(*id); }
                        qb.push(")");
                        let done = qb.build().persistent(false).execute(&mut *tx).await.map_err($err)?;
                        if table.contains("archive_messages") {
                            n += done.rows_affected();
                        }
                    }
                    bulk::archive_unindex(&mut tx, chunk).await?;
                }
                archive_audit_tx(&mut tx, audit).await?;
                tx.commit().await.map_err($err)?;
                Ok(n)
            }
        }
    };
}
