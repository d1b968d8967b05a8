//! [`RunStore`](crate::sync::store::RunStore): sync runs, their leases and cursors.
macro_rules! sql_runs {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        #[async_trait::async_trait]
        impl $crate::sync::store::RunStore for $Store {

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

            async fn run_finish(&self, id: i64, status: $crate::sync::store::RunStatus, counts: &serde_json::Value, errors: &serde_json::Value, message: &str) -> Result<()> {
                q("UPDATE sync_runs SET status = $2, counts = $3, errors = $4, message = $5, finished_at = $6 WHERE id = $1")
                    .bind(id)
                    .bind(status.as_str())
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

            async fn lease_release(&self, source: &str, holder: &str) -> Result<()> {
                q("DELETE FROM sync_leases WHERE source = $1 AND holder = $2")
                    .bind(source.to_owned())
                    .bind(holder.to_owned())
                    .execute(&self.write)
                    .await
                    .map_err($err)?;
                Ok(())
            }

            async fn sync_cursor(&self, source: &str) -> Result<Option<String>> {
                let r: Option<(String,)> = sqlx::query_as("SELECT cursor FROM sync_cursors WHERE source = $1")
                    .bind(source.to_owned())
                    .fetch_optional(&self.read)
                    .await
                    .map_err($err)?;
                Ok(r.map(|r| r.0))
            }
        }
    };
}
