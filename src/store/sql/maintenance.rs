//! [`Maintenance`](crate::store::Maintenance): migrations, health, shutdown.
macro_rules! sql_maintenance {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        #[async_trait::async_trait]
        impl $crate::store::Maintenance for $Store {
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

            async fn probe_write(&self) -> Result<()> {
                let mut tx = self.begin_tx().await?;
                q("UPDATE number_counter SET high_water = high_water WHERE singleton = 1")
                    .execute(&mut *tx)
                    .await
                    .map_err($err)?;
                tx.rollback().await.map_err($err)
            }

            async fn backup_into(&self, file: &std::path::Path) -> Result<()> {
                self.backup_impl(file).await
            }

            async fn close(&self) {
                self.read.close().await;
                self.write.close().await;
            }
        }
    };
}
