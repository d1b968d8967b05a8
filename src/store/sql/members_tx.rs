//! [`MemberTx`](crate::directory::store::MemberTx): members inside the directory's write transaction.
macro_rules! sql_members_tx {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        #[async_trait::async_trait]
        impl $crate::directory::store::MemberTx for $Tx {

            async fn member(&mut self, id: Uuid) -> Result<Option<m::Member>> {
                member_where(&mut self.tx, sql!("SELECT {}, {} FROM members WHERE id = $1", MEMBER_COLS, $children), id).await
            }

            async fn member_count(&mut self) -> Result<i64> {
                let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM members")
                    .fetch_one(&mut *self.tx)
                    .await
                    .map_err($err)?;
                Ok(n)
            }

            async fn member_conflict(&mut self, mb: &m::Member) -> Result<Option<(String, String)>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT 'login_name', login_name FROM members WHERE login_name = ");
                qb.push_bind(mb.login_name.clone()).push(" AND id <> ").push_bind(mb.id);
                if !mb.emails.is_empty() {
                    qb.push(" UNION ALL SELECT 'email', address FROM member_emails WHERE member_id <> ").push_bind(mb.id);
                    qb.push(" AND address IN (");
                    let mut list = qb.separated(", ");
                    for e in &mb.emails {
                        list.push_bind(e.address.clone());
                    }
                    qb.push(")");
                }
                if let Some(mobile) = &mb.mobile {
                    qb.push(" UNION ALL SELECT 'mobile', mobile FROM members WHERE mobile = ").push_bind(mobile.clone());
                    qb.push(" AND id <> ").push_bind(mb.id);
                }
                if let Some(anchor) = &mb.anchor {
                    qb.push(" UNION ALL SELECT 'anchor', anchor FROM members WHERE source = ").push_bind(mb.source.as_str().to_owned());
                    qb.push(" AND anchor = ").push_bind(anchor.clone()).push(" AND id <> ").push_bind(mb.id);
                }
                qb.push(" LIMIT 1");
                qb.build_query_as::<(String, String)>().fetch_optional(&mut *self.tx).await.map_err($err)
            }

            async fn members_conflicts(&mut self, ms: &[m::Member], ids: &[Uuid]) -> Result<Vec<(String, String)>> {
                bulk::members_conflicts(&mut self.tx, ms, ids).await
            }

            async fn members_insert(&mut self, ms: &[m::Member], password_hashes: &[Option<String>]) -> Result<()> {
                bulk::members_insert(&mut self.tx, ms, password_hashes).await?;
                let members: Vec<&m::Member> = ms.iter().collect();
                bulk::members_children(&mut self.tx, &members).await
            }

            async fn member_set_password(&mut self, id: Uuid, password_hash: Option<&str>, set_by: Option<&str>) -> Result<()> {
                exec(&mut self.tx, q("UPDATE members SET password_hash = $2, password_set_by = $3 WHERE id = $1")
                    .bind(id).bind(password_hash.map(str::to_owned)).bind(set_by.map(str::to_owned))).await?;
                Ok(())
            }

            async fn member_password_set_by(&mut self, id: Uuid) -> Result<Option<String>> {
                let row: Option<(Option<String>,)> = sqlx::query_as(
                    "SELECT password_set_by FROM members WHERE id = $1 AND password_hash IS NOT NULL")
                    .bind(id).fetch_optional(&mut *self.tx).await.map_err($err)?;
                Ok(row.map(|(by,)| by.unwrap_or_default()))
            }

            async fn member_holds_role(&mut self, id: Uuid) -> Result<bool> {
                let (held,): (bool,) = sqlx::query_as("SELECT EXISTS (SELECT 1 FROM role_grants WHERE member_id = $1)")
                    .bind(id).fetch_one(&mut *self.tx).await.map_err($err)?;
                Ok(held)
            }

            async fn member_sessions_end(&mut self, id: Option<Uuid>, keep: Option<&str>) -> Result<u64> {
                let keep = keep.unwrap_or("").to_owned();
                match id {
                    Some(id) => exec(&mut self.tx, q("DELETE FROM admin_sessions WHERE member_id = $1 AND id_hash <> $2").bind(id).bind(keep)).await,
                    None => exec(&mut self.tx, q("DELETE FROM admin_sessions WHERE member_id IS NULL AND id_hash <> $1").bind(keep)).await,
                }
            }

            async fn member_set_source(&mut self, id: Uuid, source: &str, anchor: Option<&str>) -> Result<()> {
                exec(&mut self.tx, q("UPDATE members SET source = $2, anchor = $3 WHERE id = $1")
                    .bind(id).bind(source.to_owned()).bind(anchor.map(str::to_owned))).await?;
                Ok(())
            }

            async fn members_existing(&mut self, ids: &[Uuid]) -> Result<Vec<Uuid>> {
                ids_existing(&mut self.tx, "SELECT id FROM members WHERE id IN (", ids).await
            }

            async fn member_update(&mut self, mb: &m::Member) -> Result<()> {
                exec(&mut self.tx, q(
                    "UPDATE members SET login_name = $2, display_name = $3, given_name = $4, family_name = $5, mobile = $6, \
                     title = $7, employee_number = $8, primary_org_unit_id = $9, manager_id = $10, state = $11, anchor = $12, \
                     version = $13, updated_at = $14, department = $15, organization = $16, division = $17, cost_center = $18, \
                     sync_digest = $19 WHERE id = $1",
                )
                .bind(mb.id).bind(mb.login_name.clone()).bind(mb.display_name.clone()).bind(mb.given_name.clone())
                .bind(mb.family_name.clone()).bind(mb.mobile.clone()).bind(mb.title.clone()).bind(mb.employee_number.clone())
                .bind(mb.primary_org_unit_id).bind(mb.manager_id).bind(mb.state.as_str()).bind(mb.anchor.clone())
                .bind(mb.version).bind(mb.updated_at)
                .bind(mb.department.clone()).bind(mb.organization.clone()).bind(mb.division.clone()).bind(mb.cost_center.clone())
                .bind(mb.digest())).await?;
                exec(&mut self.tx, q("DELETE FROM member_emails WHERE member_id = $1").bind(mb.id)).await?;
                exec(&mut self.tx, q("DELETE FROM member_phones WHERE member_id = $1").bind(mb.id)).await?;
                exec(&mut self.tx, q("DELETE FROM member_org_units WHERE member_id = $1").bind(mb.id)).await?;
                bulk::members_children(&mut self.tx, &[mb]).await
            }

            async fn member_delete(&mut self, id: Uuid) -> Result<()> {
                exec(&mut self.tx, q("UPDATE members SET manager_id = NULL, sync_digest = NULL, version = version + 1 WHERE manager_id = $1").bind(id)).await?;
                exec(&mut self.tx, q("UPDATE groups SET owner_id = NULL WHERE owner_id = $1").bind(id)).await?;
                exec(&mut self.tx, q("DELETE FROM group_members WHERE member_id = $1").bind(id)).await?;
                exec(&mut self.tx, q("DELETE FROM members WHERE id = $1").bind(id)).await?;
                Ok(())
            }

            async fn tombstone_insert(&mut self, t: &m::Tombstone) -> Result<()> {
                exec(&mut self.tx, q(sql!("INSERT INTO tombstones ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", TOMBSTONE_COLS))
                    .bind(t.member_id).bind(t.account_number).bind(t.login_name.clone()).bind(Json(t.profile.clone()))
                    .bind(t.deleted_at).bind(t.reason.clone()).bind(t.source.as_str().to_owned()).bind(t.deleted_by.clone())).await?;
                Ok(())
            }

            async fn quarantine_waiting(&mut self, field: &str, value: &str) -> Result<Option<Uuid>> {
                let row: Option<(Uuid,)> = sqlx::query_as(
                    "SELECT member_id FROM member_quarantine WHERE field = $1 AND value = $2 ORDER BY since, member_id LIMIT 1")
                    .bind(field.to_owned()).bind(value.to_owned()).fetch_optional(&mut *self.tx).await.map_err($err)?;
                Ok(row.map(|(id,)| id))
            }

            async fn quarantine_release(&mut self, member_id: Uuid, field: &str, value: &str) -> Result<()> {
                exec(&mut self.tx, q("DELETE FROM member_quarantine WHERE member_id = $1 AND field = $2 AND value = $3")
                    .bind(member_id).bind(field.to_owned()).bind(value.to_owned())).await?;
                Ok(())
            }

            async fn member_lock(&mut self, id: Uuid) -> Result<()> {
                bulk::member_lock(&mut self.tx, id).await
            }

            async fn quarantine_set(&mut self, member_id: Uuid, fields: &[&str], entries: &[(String, String)], source: &str, at: DateTime<Utc>) -> Result<u64> {
                let mut new = 0;
                for field in fields {
                    let held: Vec<(String,)> = sqlx::query_as("SELECT value FROM member_quarantine WHERE member_id = $1 AND field = $2")
                        .bind(member_id).bind(field.to_string()).fetch_all(&mut *self.tx).await.map_err($err)?;
                    for (value,) in held {
                        if !entries.iter().any(|(f, v)| f == field && *v == value) {
                            exec(&mut self.tx, q("DELETE FROM member_quarantine WHERE member_id = $1 AND field = $2 AND value = $3")
                                .bind(member_id).bind(field.to_string()).bind(value)).await?;
                        }
                    }
                }
                for (field, value) in entries {
                    new += exec(&mut self.tx, q("INSERT INTO member_quarantine (member_id, field, value, source, since) VALUES ($1, $2, $3, $4, $5) \
                                          ON CONFLICT (member_id, field, value) DO NOTHING")
                        .bind(member_id).bind(field.clone()).bind(value.clone()).bind(source.to_owned()).bind(at)).await?;
                }
                Ok(new)
            }

            async fn member_id_by_anchor(&mut self, source: &str, anchor: &str) -> Result<Option<Uuid>> {
                id_where(&mut self.tx, "SELECT id FROM members WHERE source = $1 AND anchor = $2", source.to_owned(), Some(anchor.to_owned())).await
            }

            async fn member_id_by_number(&mut self, number: i64) -> Result<Option<Uuid>> {
                let r: Option<(Uuid,)> = sqlx::query_as("SELECT id FROM members WHERE account_number = $1")
                    .bind(number)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err($err)?;
                Ok(r.map(|r| r.0))
            }

            async fn member_digests_fill(&mut self, members: &[(Uuid, i64, i64)]) -> Result<u64> {
                let mut n = 0;
                for (id, version, digest) in members {
                    n += exec(&mut self.tx, q("UPDATE members SET sync_digest = $3 WHERE id = $1 AND version = $2 AND sync_digest IS NULL")
                        .bind(*id).bind(*version).bind(*digest)).await?;
                }
                Ok(n)
            }
        }
    };
}
