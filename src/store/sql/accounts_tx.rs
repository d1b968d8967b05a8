//! [`AccountTx`](crate::directory::store::AccountTx): enterprise, account numbers, roles and grants inside the write transaction.
macro_rules! sql_accounts_tx {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        #[async_trait::async_trait]
        impl $crate::directory::store::AccountTx for $Tx {

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
        }
    };
}
