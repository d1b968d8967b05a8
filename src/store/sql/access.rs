//! [`AccessStore`](crate::access::store::AccessStore): API tokens, console sessions, sign-in failures.
macro_rules! sql_access {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        #[async_trait::async_trait]
        impl $crate::access::store::AccessStore for $Store {

            async fn tokens(&self) -> Result<Vec<TokenInfo>> {
                sqlx::query_as::<_, TokenInfo>(
                    "SELECT name, created_at, last_used_at, revoked_at, adopt_existing, kind, rotated_at, scope_unit_id, size_limit, time_limit_secs FROM api_tokens ORDER BY name, id",
                )
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenInfo>> {
                let token = sqlx::query_as::<_, TokenInfo>(
                    "SELECT name, created_at, last_used_at, revoked_at, adopt_existing, kind, rotated_at, scope_unit_id, size_limit, time_limit_secs FROM api_tokens \
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

            async fn session_insert(&self, s: &$crate::access::store::AdminSession) -> Result<()> {
                q("INSERT INTO admin_sessions (id_hash, member_id, csrf, created_at, expires_at, last_seen_at, ip) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(s.id_hash.clone()).bind(s.member_id).bind(s.csrf.clone()).bind(s.created_at)
                    .bind(s.expires_at).bind(s.last_seen_at).bind(s.ip.clone())
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn session(&self, id_hash: &str) -> Result<Option<$crate::access::store::AdminSession>> {
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

            async fn sessions_purge(&self, before: DateTime<Utc>) -> Result<u64> {
                Ok(q("DELETE FROM admin_sessions WHERE expires_at < $1").bind(before)
                    .execute(&self.write).await.map_err($err)?.rows_affected())
            }

            async fn sign_in_failure_add(&self, key: &str, now: DateTime<Utc>, window_from: DateTime<Utc>) -> Result<(i64, Option<DateTime<Utc>>)> {
                let row: (i64, Option<DateTime<Utc>>) = sqlx::query_as(
                    "INSERT INTO sign_in_failures (key, failures, window_start) VALUES ($1, 1, $2) \
                     ON CONFLICT (key) DO UPDATE SET \
                       failures = CASE WHEN sign_in_failures.window_start < $3 THEN 1 ELSE sign_in_failures.failures + 1 END, \
                       window_start = CASE WHEN sign_in_failures.window_start < $3 THEN excluded.window_start ELSE sign_in_failures.window_start END \
                     RETURNING failures, locked_until",
                )
                .bind(key.to_owned()).bind(now).bind(window_from)
                .fetch_one(&self.write).await.map_err($err)?;
                Ok(row)
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

            async fn sign_in_failures_clear(&self, key: &str) -> Result<()> {
                q("DELETE FROM sign_in_failures WHERE key = $1").bind(key.to_owned())
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn sign_in_failures_purge(&self, before: DateTime<Utc>) -> Result<u64> {
                Ok(q("DELETE FROM sign_in_failures WHERE window_start < $1 AND (locked_until IS NULL OR locked_until < $1)")
                    .bind(before).execute(&self.write).await.map_err($err)?.rows_affected())
            }

            async fn token_insert(&self, _key: &$crate::access::store::Sealed, name: &str, hash: &str, kind: $crate::access::store::TokenKind, adopt_existing: bool, limits: &$crate::access::store::TokenLimits, at: DateTime<Utc>, audit: &m::AuditRecord) -> Result<()> {
                let mut tx = self.begin_tx().await?;
                exec(&mut tx, q("INSERT INTO api_tokens (name, token_hash, created_at, adopt_existing, kind, scope_unit_id, size_limit, time_limit_secs) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
                    .bind(name.to_owned()).bind(hash.to_owned()).bind(at).bind(adopt_existing).bind(kind.as_str())
                    .bind(limits.scope_unit_id).bind(limits.size_limit).bind(limits.time_limit_secs)).await?;
                bulk::audit_insert(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err($err)
            }

            async fn token_rotate(&self, _key: &$crate::access::store::Sealed, name: &str, hash: &str, at: DateTime<Utc>, audit: &m::AuditRecord) -> Result<bool> {
                let mut tx = self.begin_tx().await?;
                let n = exec(&mut tx, q("UPDATE api_tokens SET token_hash = $1, rotated_at = $2, revoked_at = NULL WHERE name = $3")
                    .bind(hash.to_owned()).bind(at).bind(name.to_owned())).await?;
                if n == 0 {
                    return Ok(false);
                }
                bulk::audit_insert(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err($err)?;
                Ok(true)
            }

            async fn token_revoke(&self, _key: &$crate::access::store::Sealed, name: &str, at: DateTime<Utc>, audit: &m::AuditRecord) -> Result<bool> {
                let mut tx = self.begin_tx().await?;
                let n = exec(&mut tx, q("UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL")
                    .bind(at).bind(name.to_owned())).await?;
                if n == 0 {
                    return Ok(false);
                }
                bulk::audit_insert(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err($err)?;
                Ok(true)
            }
        }
    };
}
