//! [`LeaseStore`](crate::jobs::LeaseStore): the scheduler's leader leases, one row a job.
macro_rules! sql_leases {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        #[async_trait::async_trait]
        impl $crate::jobs::LeaseStore for $Store {
            async fn job_lease(&self, job: &str, holder: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<Option<$crate::jobs::Held>> {
                // The database's clock, not the node's: nodes whose clocks disagree still agree
                // on who holds a lease (the period asked for is kept).
                let db_now = self.clock().await?;
                let (now, until) = (db_now, db_now + (until - now));
                // One statement: take the lease when it is free or expired, renew it when it is
                // ours; another holder's live lease is left alone (no row, nothing returned).
                sqlx::query_as::<_, $crate::jobs::Held>(
                    "INSERT INTO job_leases (job, holder, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE job_leases.expires_at < $4 OR job_leases.holder = excluded.holder \
                     RETURNING last_due",
                )
                .bind(job.to_owned())
                .bind(holder.to_owned())
                .bind(until)
                .bind(now)
                .fetch_optional(&self.write)
                .await
                .map_err($err)
            }

            async fn job_ran(&self, job: &str, holder: &str, due: DateTime<Utc>) -> Result<()> {
                q("UPDATE job_leases SET last_due = $3 WHERE job = $1 AND holder = $2")
                    .bind(job.to_owned())
                    .bind(holder.to_owned())
                    .bind(due)
                    .execute(&self.write)
                    .await
                    .map_err($err)?;
                Ok(())
            }

            async fn job_lease_release(&self, job: &str, holder: &str) -> Result<()> {
                // Expired, not deleted: the row keeps `last_due` for the next holder.
                let past = DateTime::<Utc>::UNIX_EPOCH;
                q("UPDATE job_leases SET expires_at = $3 WHERE job = $1 AND holder = $2")
                    .bind(job.to_owned())
                    .bind(holder.to_owned())
                    .bind(past)
                    .execute(&self.write)
                    .await
                    .map_err($err)?;
                Ok(())
            }

            async fn job_leases(&self) -> Result<Vec<(String, String, DateTime<Utc>)>> {
                sqlx::query_as("SELECT job, holder, expires_at FROM job_leases ORDER BY job")
                    .fetch_all(&self.read)
                    .await
                    .map_err($err)
            }
        }
    };
}
