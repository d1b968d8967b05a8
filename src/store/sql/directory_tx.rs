//! [`DirectoryTx`](crate::directory::store::DirectoryTx): commit, audit, outbox and version checks of the write transaction.
macro_rules! sql_directory_tx {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        #[async_trait::async_trait]
        impl $crate::directory::store::DirectoryTx for $Tx {
            async fn commit(self: Box<Self>) -> Result<()> {
                self.tx.commit().await.map_err($err)
            }

            async fn mark(&mut self) -> Result<()> {
                sqlx::raw_sql("SAVEPOINT change_set").execute(&mut *self.tx).await.map_err($err)?;
                Ok(())
            }

            async fn release_mark(&mut self) -> Result<()> {
                sqlx::raw_sql("RELEASE SAVEPOINT change_set").execute(&mut *self.tx).await.map_err($err)?;
                Ok(())
            }

            async fn rollback_to_mark(&mut self) -> Result<()> {
                sqlx::raw_sql("ROLLBACK TO SAVEPOINT change_set; RELEASE SAVEPOINT change_set")
                    .execute(&mut *self.tx)
                    .await
                    .map_err($err)?;
                Ok(())
            }

            async fn audit_insert(&mut self, entries: &[m::AuditRecord]) -> Result<()> {
                bulk::audit_insert(&mut self.tx, entries).await
            }

            async fn outbox_insert(&mut self, messages: &[m::OutboxRecord]) -> Result<()> {
                bulk::outbox_insert(&mut self.tx, messages).await
            }

            async fn sync_cursor_set(&mut self, source: &str, cursor: &str) -> Result<()> {
                exec(
                    &mut self.tx,
                    q("INSERT INTO sync_cursors (source, cursor) VALUES ($1, $2) \
                    ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor")
                    .bind(source.to_owned())
                    .bind(cursor.to_owned()),
                )
                .await?;
                Ok(())
            }

            async fn version_of(
                &mut self,
                kind: $crate::directory::store::Versioned,
                id: Uuid,
            ) -> Result<Option<i64>> {
                use $crate::directory::store::Versioned;
                let sql = match kind {
                    Versioned::Member => "SELECT version FROM members WHERE id = $1",
                    Versioned::OrgUnit => "SELECT version FROM org_units WHERE id = $1",
                    Versioned::Group => "SELECT version FROM groups WHERE id = $1",
                    Versioned::Role => "SELECT version FROM roles WHERE id = $1",
                };
                let row: Option<(i64,)> =
                    sqlx::query_as(sql).bind(id).fetch_optional(&mut *self.tx).await.map_err($err)?;
                Ok(row.map(|r| r.0))
            }
        }

        #[async_trait::async_trait]
        impl $crate::directory::store::DirectoryWrite for $Store {
            async fn begin(
                &self,
                _key: $crate::directory::store::WriteKey,
            ) -> Result<Box<dyn $crate::directory::store::DirectoryTx>> {
                let tx = self.begin_tx().await?;
                Ok(Box::new($Tx { tx }))
            }
        }
    };
}
