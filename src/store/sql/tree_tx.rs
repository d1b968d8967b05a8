//! [`TreeTx`](crate::directory::store::TreeTx): org units and groups inside the directory's write transaction.
macro_rules! sql_tree_tx {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        #[async_trait::async_trait]
        impl $crate::directory::store::TreeTx for $Tx {

            async fn org_unit(&mut self, id: Uuid) -> Result<Option<m::OrgUnit>> {
                org_unit_get(&mut self.tx, id).await
            }

            async fn org_unit_by_anchor(&mut self, source: &str, anchor: &str) -> Result<Option<Uuid>> {
                id_where(&mut self.tx, "SELECT id FROM org_units WHERE source = $1 AND anchor = $2", source.to_owned(), Some(anchor.to_owned())).await
            }

            async fn org_unit_sibling_named(&mut self, parent: Option<Uuid>, name: &str) -> Result<Option<Uuid>> {
                let query = match parent {
                    Some(p) => sqlx::query_as("SELECT id FROM org_units WHERE parent_id = $1 AND name = $2").bind(p),
                    None => sqlx::query_as("SELECT id FROM org_units WHERE parent_id IS NULL AND name = $1"),
                };
                let r: Option<(Uuid,)> = query.bind(name.to_owned()).fetch_optional(&mut *self.tx).await.map_err($err)?;
                Ok(r.map(|r| r.0))
            }

            async fn org_unit_path(&mut self, id: Uuid) -> Result<Vec<Uuid>> {
                let rows: Vec<(Uuid,)> = sqlx::query_as(
                    UNIT_PATH,
                )
                .bind(id)
                .fetch_all(&mut *self.tx)
                .await
                .map_err($err)?;
                Ok(rows.into_iter().map(|r| r.0).collect())
            }

            async fn org_unit_next_position(&mut self, parent: Option<Uuid>) -> Result<i64> {
                let query = match parent {
                    Some(p) => sqlx::query_as("SELECT MAX(position) FROM org_units WHERE parent_id = $1").bind(p),
                    None => sqlx::query_as("SELECT MAX(position) FROM org_units WHERE parent_id IS NULL"),
                };
                let (n,): (Option<i64>,) = query.fetch_one(&mut *self.tx).await.map_err($err)?;
                Ok(n.map_or(0, |n| n + 1))
            }

            async fn org_unit_has_children(&mut self, id: Uuid) -> Result<bool> {
                let r: Option<(i64,)> = sqlx::query_as("SELECT CAST(1 AS BIGINT) FROM org_units WHERE parent_id = $1 LIMIT 1")
                    .bind(id)
                    .fetch_optional(&mut *self.tx)
                    .await
                    .map_err($err)?;
                Ok(r.is_some())
            }

            async fn org_unit_has_members(&mut self, id: Uuid) -> Result<bool> {
                let r: Option<(i64,)> = sqlx::query_as(
                    "SELECT CAST(1 AS BIGINT) FROM members WHERE primary_org_unit_id = $1 \
                     UNION ALL SELECT CAST(1 AS BIGINT) FROM member_org_units WHERE org_unit_id = $1 LIMIT 1",
                )
                .bind(id)
                .fetch_optional(&mut *self.tx)
                .await
                .map_err($err)?;
                Ok(r.is_some())
            }

            async fn org_units_insert(&mut self, us: &[m::OrgUnit]) -> Result<()> {
                // 9 values a row. Rows go in in order: a parent's row before its children's.
                for chunk in us.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO org_units ({ORG_UNIT_COLS}) "));
                    qb.push_values(chunk, |mut row, u| {
                        row.push_bind(u.id).push_bind(u.parent_id).push_bind(u.name.clone()).push_bind(u.position)
                            .push_bind(u.source.as_str().to_owned()).push_bind(u.anchor.clone()).push_bind(u.version)
                            .push_bind(u.created_at).push_bind(u.updated_at);
                    });
                    qb.build().persistent(false).execute(&mut *self.tx).await.map_err($err)?;
                }
                Ok(())
            }

            async fn org_units_children(&mut self, parents: &[Option<Uuid>]) -> Result<Vec<(Option<Uuid>, String, i64)>> {
                let mut found: Vec<(Option<Uuid>, String, i64)> = Vec::new();
                if parents.contains(&None) {
                    found.extend(sqlx::query_as::<_, (Option<Uuid>, String, i64)>(
                        "SELECT parent_id, name, position FROM org_units WHERE parent_id IS NULL")
                        .fetch_all(&mut *self.tx).await.map_err($err)?);
                }
                let ids: Vec<Uuid> = parents.iter().flatten().copied().collect();
                for chunk in ids.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT parent_id, name, position FROM org_units WHERE parent_id IN (");
                    let mut list = qb.separated(", ");
                    chunk.iter().for_each(|id| { list.push_bind(*id); });
                    qb.push(")");
                    found.extend(qb.build_query_as::<(Option<Uuid>, String, i64)>().persistent(false).fetch_all(&mut *self.tx).await.map_err($err)?);
                }
                Ok(found)
            }

            async fn anchors_held(&mut self, tree: $crate::directory::store::Tree, source: &str, anchors: &[String]) -> Result<Vec<(String, Uuid)>> {
                let table = match tree {
                    $crate::directory::store::Tree::Groups => "groups",
                    $crate::directory::store::Tree::OrgUnits => "org_units",
                };
                let mut found = Vec::new();
                for chunk in anchors.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(format!("SELECT anchor, id FROM {table} WHERE source = "));
                    qb.push_bind(source.to_owned()).push(" AND anchor IN (");
                    let mut list = qb.separated(", ");
                    chunk.iter().for_each(|a| { list.push_bind(a.clone()); });
                    qb.push(")");
                    found.extend(qb.build_query_as::<(String, Uuid)>().persistent(false).fetch_all(&mut *self.tx).await.map_err($err)?);
                }
                Ok(found)
            }

            async fn org_unit_update(&mut self, u: &m::OrgUnit) -> Result<()> {
                exec(&mut self.tx, q(
                    "UPDATE org_units SET parent_id = $2, name = $3, position = $4, anchor = $5, version = $6, updated_at = $7 WHERE id = $1",
                )
                .bind(u.id).bind(u.parent_id).bind(u.name.clone()).bind(u.position)
                .bind(u.anchor.clone()).bind(u.version).bind(u.updated_at)).await?;
                Ok(())
            }

            async fn org_unit_delete(&mut self, id: Uuid) -> Result<()> {
                exec(&mut self.tx, q("DELETE FROM org_units WHERE id = $1").bind(id)).await?;
                Ok(())
            }

            async fn org_units_existing(&mut self, ids: &[Uuid]) -> Result<Vec<Uuid>> {
                ids_existing(&mut self.tx, "SELECT id FROM org_units WHERE id IN (", ids).await
            }

            async fn group(&mut self, id: Uuid) -> Result<Option<m::Group>> {
                group_get(&mut self.tx, id).await
            }

            async fn group_id_by_anchor(&mut self, source: &str, anchor: &str) -> Result<Option<Uuid>> {
                id_where(&mut self.tx, "SELECT id FROM groups WHERE source = $1 AND anchor = $2", source.to_owned(), Some(anchor.to_owned())).await
            }

            async fn groups_insert(&mut self, gs: &[(m::Group, Vec<Uuid>)]) -> Result<()> {
                // 8 values a row.
                for chunk in gs.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO groups ({GROUP_COLS}) "));
                    qb.push_values(chunk, |mut row, (g, _)| {
                        row.push_bind(g.id).push_bind(g.name.clone()).push_bind(g.owner_id).push_bind(g.source.as_str().to_owned())
                            .push_bind(g.anchor.clone()).push_bind(g.version).push_bind(g.created_at).push_bind(g.updated_at);
                    });
                    qb.build().persistent(false).execute(&mut *self.tx).await.map_err($err)?;
                }
                let pairs: Vec<(Uuid, Uuid)> = gs.iter().flat_map(|(g, ms)| ms.iter().map(|mb| (g.id, *mb))).collect();
                bulk::group_members_insert(&mut self.tx, &pairs).await?;
                Ok(())
            }

            async fn group_update(&mut self, g: &m::Group) -> Result<()> {
                exec(&mut self.tx, q("UPDATE groups SET name = $2, owner_id = $3, anchor = $4, version = $5, updated_at = $6 WHERE id = $1")
                    .bind(g.id).bind(g.name.clone()).bind(g.owner_id).bind(g.anchor.clone()).bind(g.version).bind(g.updated_at)).await?;
                Ok(())
            }

            async fn group_touch(&mut self, id: Uuid, at: DateTime<Utc>) -> Result<()> {
                exec(&mut self.tx, q("UPDATE groups SET version = version + 1, updated_at = $2 WHERE id = $1").bind(id).bind(at)).await?;
                Ok(())
            }

            async fn group_delete(&mut self, id: Uuid) -> Result<()> {
                exec(&mut self.tx, q("DELETE FROM group_members WHERE group_id = $1").bind(id)).await?;
                exec(&mut self.tx, q("DELETE FROM groups WHERE id = $1").bind(id)).await?;
                Ok(())
            }

            async fn group_members_add(&mut self, group: Uuid, members: &[Uuid]) -> Result<u64> {
                let pairs: Vec<(Uuid, Uuid)> = members.iter().map(|mb| (group, *mb)).collect();
                bulk::group_members_insert(&mut self.tx, &pairs).await
            }

            async fn group_members_remove(&mut self, group: Uuid, members: &[Uuid]) -> Result<u64> {
                let mut removed = 0;
                for chunk in members.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("DELETE FROM group_members WHERE group_id = ");
                    qb.push_bind(group).push(" AND member_id IN (");
                    let mut list = qb.separated(", ");
                    chunk.iter().for_each(|mb| { list.push_bind(*mb); });
                    qb.push(")");
                    removed += qb.build().persistent(false).execute(&mut *self.tx).await.map_err($err)?.rows_affected();
                }
                Ok(removed)
            }
        }
    };
}
