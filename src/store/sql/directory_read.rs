//! [`DirectoryRead`](crate::directory::store::DirectoryRead): members, org units and groups as adapters read them.
macro_rules! sql_directory_read {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        #[async_trait::async_trait]
        impl $crate::directory::store::DirectoryRead for $Store {
            async fn enterprise(&self) -> Result<Option<m::Enterprise>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                enterprise_get(&mut c).await
            }

            async fn super_password_hash(&self) -> Result<Option<String>> {
                let r: Option<(String,)> = sqlx::query_as("SELECT super_password_hash FROM enterprise")
                    .fetch_optional(&self.read)
                    .await
                    .map_err($err)?;
                Ok(r.map(|r| r.0))
            }

            async fn counts(&self) -> Result<m::Counts> {
                let (members, org_units, groups, tombstones): (i64, i64, i64, i64) = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM members), (SELECT COUNT(*) FROM org_units), \
                     (SELECT COUNT(*) FROM groups), (SELECT COUNT(*) FROM tombstones)",
                )
                .fetch_one(&self.read)
                .await
                .map_err($err)?;
                Ok(m::Counts { members, org_units, groups, tombstones })
            }

            async fn member(&self, id: Uuid) -> Result<Option<m::Member>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                member_where(
                    &mut c,
                    sql!("SELECT {}, {} FROM members WHERE id = $1", MEMBER_COLS, $children),
                    id,
                )
                .await
            }

            async fn member_by_login(&self, login_name: &str) -> Result<Option<m::Member>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                member_where(
                    &mut c,
                    sql!("SELECT {}, {} FROM members WHERE login_name = $1", MEMBER_COLS, $children),
                    login_name.to_lowercase(),
                )
                .await
            }

            async fn member_by_number(&self, account_number: i64) -> Result<Option<m::Member>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                member_where(
                    &mut c,
                    sql!("SELECT {}, {} FROM members WHERE account_number = $1", MEMBER_COLS, $children),
                    account_number,
                )
                .await
            }

            async fn members_page(&self, after_number: i64, limit: i64) -> Result<Vec<m::Member>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                let rows = sqlx::query_as::<_, MemberRow>(sql!(
                    "SELECT {}, {} FROM members WHERE account_number > $1 ORDER BY account_number LIMIT $2",
                    MEMBER_COLS,
                    $children
                ))
                .bind(after_number)
                .bind(limit)
                .fetch_all(&mut *c)
                .await
                .map_err($err)?;
                rows.into_iter().map(MemberRow::into_member).collect()
            }
            async fn search_members(
                &self,
                q: &$crate::directory::query::Query,
            ) -> Result<$crate::directory::query::Page<m::Member>> {
                use $crate::directory::query::{Expr as E, Field as F, Op, Val};
                let mut c = self.read.acquire().await.map_err($err)?;
                // The provisioning clients' lookup (`userName eq "..."`, `id eq "..."`): at most
                // one member, by the same prepared statement as a lookup by key.
                if q.offset == 0 && q.limit > 0 {
                    let found = match &q.filter {
                        Some(E::Cmp(F::LoginName, Op::Eq, Val::Text(v))) => Some(
                            member_where(
                                &mut c,
                                sql!(
                                    "SELECT {}, {} FROM members WHERE login_name = $1",
                                    MEMBER_COLS,
                                    $children
                                ),
                                v.to_lowercase(),
                            )
                            .await?,
                        ),
                        Some(E::Cmp(F::Id, Op::Eq, Val::Uuid(id))) => Some(
                            member_where(
                                &mut c,
                                sql!("SELECT {}, {} FROM members WHERE id = $1", MEMBER_COLS, $children),
                                *id,
                            )
                            .await?,
                        ),
                        _ => None,
                    };
                    if let Some(found) = found {
                        let items: Vec<m::Member> = found.into_iter().collect();
                        return Ok($crate::directory::query::Page { total: items.len() as i64, items });
                    }
                }
                let mut rows: Vec<MemberRow> = Vec::new();
                if q.limit > 0 {
                    let mut page = sqlx::QueryBuilder::<$db>::new(sql!(
                        "SELECT {}, {} FROM members",
                        MEMBER_COLS,
                        $children
                    ));
                    push_where(&mut page, q);
                    push_order(&mut page, q, "account_number");
                    rows = page.build_query_as().fetch_all(&mut *c).await.map_err($err)?;
                }
                let total = match known_total(q, rows.len()) {
                    Some(total) => total,
                    None => {
                        let mut count = sqlx::QueryBuilder::<$db>::new("SELECT COUNT(*) FROM members");
                        push_where(&mut count, q);
                        count.build_query_as::<(i64,)>().fetch_one(&mut *c).await.map_err($err)?.0
                    }
                };
                let items = rows.into_iter().map(MemberRow::into_member).collect::<Result<_>>()?;
                Ok($crate::directory::query::Page { total, items })
            }

            async fn search_groups(
                &self,
                q: &$crate::directory::query::Query,
            ) -> Result<$crate::directory::query::Page<m::Group>> {
                let mut items: Vec<m::Group> = Vec::new();
                if q.limit > 0 {
                    let mut page = sqlx::QueryBuilder::<$db>::new(format!("SELECT {GROUP_COLS} FROM groups"));
                    push_where(&mut page, q);
                    push_order(&mut page, q, "created_at, id");
                    items = page.build_query_as().fetch_all(&self.read).await.map_err($err)?;
                }
                let total = match known_total(q, items.len()) {
                    Some(total) => total,
                    None => {
                        let mut count = sqlx::QueryBuilder::<$db>::new("SELECT COUNT(*) FROM groups");
                        push_where(&mut count, q);
                        count.build_query_as::<(i64,)>().fetch_one(&self.read).await.map_err($err)?.0
                    }
                };
                Ok($crate::directory::query::Page { total, items })
            }

            async fn org_unit(&self, id: Uuid) -> Result<Option<m::OrgUnit>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                org_unit_get(&mut c, id).await
            }

            async fn org_units_all(&self) -> Result<Vec<m::OrgUnit>> {
                sqlx::query_as::<_, m::OrgUnit>(sql!(
                    "SELECT {} FROM org_units ORDER BY created_at, id",
                    ORG_UNIT_COLS
                ))
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn org_unit_children(&self, parent: Option<Uuid>) -> Result<Vec<m::OrgUnit>> {
                // `= $1` or `IS NULL`, never `IS NOT DISTINCT FROM`: PostgreSQL answers only
                // the first two from an index.
                let query = match parent {
                    Some(p) => sqlx::query_as::<_, m::OrgUnit>(sql!(
                        "SELECT {} FROM org_units WHERE parent_id = $1 ORDER BY position, name",
                        ORG_UNIT_COLS
                    ))
                    .bind(p),
                    None => sqlx::query_as::<_, m::OrgUnit>(sql!(
                        "SELECT {} FROM org_units WHERE parent_id IS NULL ORDER BY position, name",
                        ORG_UNIT_COLS
                    )),
                };
                query.fetch_all(&self.read).await.map_err($err)
            }

            async fn org_unit_ancestors(&self, id: Uuid) -> Result<Vec<Uuid>> {
                let rows: Vec<(Uuid,)> =
                    sqlx::query_as(UNIT_PATH).bind(id).fetch_all(&self.read).await.map_err($err)?;
                Ok(rows.into_iter().map(|r| r.0).collect())
            }

            async fn group(&self, id: Uuid) -> Result<Option<m::Group>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                group_get(&mut c, id).await
            }

            async fn group_member_ids(&self, group: Uuid) -> Result<Vec<Uuid>> {
                let rows: Vec<(Uuid,)> = sqlx::query_as(
                    "SELECT member_id FROM group_members WHERE group_id = $1 ORDER BY member_id",
                )
                .bind(group)
                .fetch_all(&self.read)
                .await
                .map_err($err)?;
                Ok(rows.into_iter().map(|r| r.0).collect())
            }

            async fn members_by_anchors(&self, source: &str, anchors: &[String]) -> Result<Vec<m::Member>> {
                let mut out = Vec::with_capacity(anchors.len());
                for chunk in anchors.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(sql!(
                        "SELECT {}, {} FROM members WHERE source = ",
                        MEMBER_COLS,
                        $children
                    ));
                    qb.push_bind(source.to_owned()).push(" AND anchor IN (");
                    let mut list = qb.separated(", ");
                    chunk.iter().for_each(|a| {
                        list.push_bind(a.clone());
                    });
                    qb.push(")");
                    let rows: Vec<MemberRow> =
                        qb.build_query_as().persistent(false).fetch_all(&self.read).await.map_err($err)?;
                    for row in rows {
                        out.push(row.into_member()?);
                    }
                }
                Ok(out)
            }

            async fn groups_by_source(&self, source: &str) -> Result<Vec<(m::Group, Vec<Uuid>)>> {
                let groups: Vec<m::Group> =
                    sqlx::query_as(sql!("SELECT {} FROM groups WHERE source = $1", GROUP_COLS))
                        .bind(source.to_owned())
                        .fetch_all(&self.read)
                        .await
                        .map_err($err)?;
                let lists: Vec<(Uuid, String)> = sqlx::query_as($memberships)
                    .bind(source.to_owned())
                    .fetch_all(&self.read)
                    .await
                    .map_err($err)?;
                let mut by_group: std::collections::HashMap<Uuid, Vec<Uuid>> =
                    std::collections::HashMap::new();
                for (g, list) in lists {
                    let bad = |e: &dyn std::fmt::Display| {
                        $crate::store::StoreError::Corrupt(format!("members of group {g}: {e}"))
                    };
                    let ids: Vec<String> = serde_json::from_str(&list).map_err(|e| bad(&e))?;
                    let ids = ids
                        .iter()
                        .map(|id| Uuid::parse_str(id))
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|e| bad(&e))?;
                    by_group.insert(g, ids);
                }
                Ok(groups
                    .into_iter()
                    .map(|g| {
                        let ms = by_group.remove(&g.id).unwrap_or_default();
                        (g, ms)
                    })
                    .collect())
            }

            async fn member_keys_by_source(
                &self,
                source: &str,
            ) -> Result<Vec<$crate::directory::store::MemberKey>> {
                let parts: Vec<(Option<String>,)> = sqlx::query_as($keys)
                    .bind(source.to_owned())
                    .fetch_all(&self.read)
                    .await
                    .map_err($err)?;
                let mut keys = Vec::new();
                for (part,) in parts {
                    let Some(part) = part else { continue };
                    let rows: Vec<(String, Option<String>, String, Option<i64>)> =
                        serde_json::from_str(&part).map_err(|e| {
                            $crate::store::StoreError::Corrupt(format!("member keys of {source}: {e}"))
                        })?;
                    keys.reserve(rows.len());
                    for (id, anchor, login_name, digest) in rows {
                        let id = Uuid::parse_str(&id).map_err(|e| {
                            $crate::store::StoreError::Corrupt(format!("member id {id:?}: {e}"))
                        })?;
                        keys.push($crate::directory::store::MemberKey { id, anchor, login_name, digest });
                    }
                }
                Ok(keys)
            }

            async fn member_group_ids(&self, member: Uuid) -> Result<Vec<Uuid>> {
                let rows: Vec<(Uuid,)> =
                    sqlx::query_as("SELECT group_id FROM group_members WHERE member_id = $1 ORDER BY group_id")
                        .bind(member)
                        .fetch_all(&self.read)
                        .await
                        .map_err($err)?;
                Ok(rows.into_iter().map(|r| r.0).collect())
            }

            async fn tree_generation(&self) -> Result<String> {
                type T = Option<DateTime<Utc>>;
                let (a, b, c, d, e, f): (T, i64, T, i64, T, i64) = sqlx::query_as(
                    "SELECT (SELECT max(updated_at) FROM members), (SELECT count(*) FROM members), \
                     (SELECT max(updated_at) FROM org_units), (SELECT count(*) FROM org_units), \
                     (SELECT max(updated_at) FROM groups), (SELECT count(*) FROM groups)",
                )
                .fetch_one(&self.read)
                .await
                .map_err($err)?;
                let t = |x: T| x.map(|x| x.timestamp_micros()).unwrap_or(0);
                Ok(format!("{}/{b}/{}/{d}/{}/{f}", t(a), t(c), t(e)))
            }

            async fn unit_memberships(&self) -> Result<Vec<(Uuid, i64)>> {
                sqlx::query_as(
                    "SELECT primary_org_unit_id, account_number FROM members \
                     WHERE state = 'active' AND primary_org_unit_id IS NOT NULL \
                     UNION SELECT u.org_unit_id, m.account_number FROM member_org_units u \
                     JOIN members m ON m.id = u.member_id WHERE m.state = 'active' ORDER BY 2",
                )
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn groups_all(&self) -> Result<(Vec<m::Group>, Vec<(Uuid, Uuid, i64)>)> {
                let groups = sqlx::query_as::<_, m::Group>(sql!("SELECT {} FROM groups ORDER BY name, id", GROUP_COLS))
                    .fetch_all(&self.read)
                    .await
                    .map_err($err)?;
                let members: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(
                    "SELECT g.group_id, g.member_id, m.account_number FROM group_members g \
                     JOIN members m ON m.id = g.member_id WHERE m.state = 'active' ORDER BY g.group_id, m.account_number",
                )
                        .fetch_all(&self.read)
                        .await
                        .map_err($err)?;
                Ok((groups, members))
            }

            async fn member_password_hash(&self, id: Uuid) -> Result<Option<String>> {
                let row: Option<(Option<String>,)> =
                    sqlx::query_as("SELECT password_hash FROM members WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.read)
                        .await
                        .map_err($err)?;
                Ok(row.and_then(|r| r.0))
            }
        }
    };
}
