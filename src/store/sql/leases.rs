//! [`LeaseStore`](crate::jobs::LeaseStore): the scheduler's leader leases, one row a job.
macro_rules! sql_leases {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        #[async_trait::async_trait]
        impl $crate::jobs::LeaseStore for $Store {
            async fn job_lease(&self, job: &str, holder: &str, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<bool> {
                // One statement: take the lease when it is free or expired, renew it when it is
                // ours; another holder's live lease is left alone (no row changes).
                let taken = q(
                    "INSERT INTO job_leases (job, holder, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
                     WHERE job_leases.expires_at < $4 OR job_leases.holder = excluded.holder",
                )
                .bind(job.to_owned())
                .bind(holder.to_owned())
                .bind(until)
                .bind(now)
                .execute(&self.write)
                .await
                .map_err($err)?
                .rows_affected();
                Ok(taken > 0)
            }

            async fn job_lease_release(&self, job: &str, holder: &str) -> Result<()> {
                q("DELETE FROM job_leases WHERE job = $1 AND holder = $2")
                    .bind(job.to_owned())
                    .bind(holder.to_owned())
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
