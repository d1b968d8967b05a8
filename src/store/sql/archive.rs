//! [`ArchiveStore`](crate::archive::store::ArchiveStore): the message record archive. The search
//! index differs by backend (`bulk::archive_*`: FTS5 on SQLite, a GIN array on PostgreSQL).
macro_rules! sql_archive {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        use $crate::archive::store as ar;

        const ARCHIVE_MESSAGE_COLS: &str =
            "m.id, m.source, m.ext_id, m.conversation, m.sender_member, m.sender_external, m.sent_at, m.kind, m.body, m.attachments";

        /// `(col IN subtree(units))`, bounded in depth like every walk of the tree.
        fn push_subtree(qb: &mut sqlx::QueryBuilder<$db>, col: &str, units: &[Uuid]) {
            if units.is_empty() {
                qb.push("(1 = 0)");
                return;
            }
            qb.push(format!("({col} IN (WITH RECURSIVE sub (id, depth) AS (SELECT id, 0 FROM org_units WHERE id IN ("));
            let mut list = qb.separated(", ");
            for u in units {
                list.push_bind(*u);
            }
            qb.push(") UNION ALL SELECT o.id, sub.depth + 1 FROM org_units o JOIN sub ON o.parent_id = sub.id \
                     WHERE sub.depth < 10000) SELECT id FROM sub))");
        }

        /// The FROM and WHERE of a message search (the member's parties drive it when it has one).
        fn push_message_filter(qb: &mut sqlx::QueryBuilder<$db>, f: &ar::MessageFilter) {
            let (t, _) = archive_order(f);
            if let Some(member) = f.member {
                qb.push(" FROM archive_parties p JOIN archive_messages m ON m.id = p.message WHERE p.member_id = ");
                qb.push_bind(member);
            } else {
                qb.push(" FROM archive_messages m WHERE 1 = 1");
            }
            if let Some(c) = f.conversation {
                qb.push(" AND m.conversation = ").push_bind(c);
            }
            if let Some(cp) = &f.counterpart {
                qb.push(" AND m.conversation IN (SELECT id FROM archive_conversations WHERE kind = 'direct' AND (key LIKE ");
                qb.push_bind(format!("{} %", like_escape(cp))).push(" ESCAPE '\\' OR key LIKE ");
                qb.push_bind(format!("% {}", like_escape(cp))).push(" ESCAPE '\\'))");
            }
            if let Some(g) = f.group {
                qb.push(" AND m.conversation IN (SELECT id FROM archive_conversations WHERE group_id = ").push_bind(g).push(")");
            }
            if let Some(from) = f.from {
                qb.push(format!(" AND {t}.sent_at >= ")).push_bind(from);
            }
            if let Some(to) = f.to {
                qb.push(format!(" AND {t}.sent_at < ")).push_bind(to);
            }
            if let Some(kind) = &f.kind {
                qb.push(" AND m.kind = ").push_bind(kind.clone());
            }
            if let Some(source) = &f.source {
                qb.push(" AND m.source = ").push_bind(source.clone());
            }
            if !f.terms.is_empty() {
                qb.push(" AND ");
                bulk::archive_terms(qb, &f.terms);
            }
            if let Some(units) = &f.units {
                qb.push(" AND m.id IN (SELECT pu.message FROM archive_parties pu JOIN members x ON x.id = pu.member_id WHERE ");
                push_subtree(qb, "x.primary_org_unit_id", units);
                qb.push(")");
            }
        }

        /// The table alias and id column the order uses.
        fn archive_order(f: &ar::MessageFilter) -> (&'static str, &'static str) {
            if f.member.is_some() { ("p", "p.message") } else { ("m", "m.id") }
        }

        fn like_escape(s: &str) -> String {
            s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
        }

        async fn archive_audit_tx(tx: &mut sqlx::Transaction<'static, $db>, audit: &m::AuditRecord) -> Result<()> {
            bulk::audit_insert(tx, std::slice::from_ref(audit)).await
        }

        #[async_trait::async_trait]
        impl ar::ArchiveRecords for $Store {
            async fn archive_resolve(&self, numbers: &[i64], logins: &[String], emails: &[String]) -> Result<Vec<ar::Resolved>> {
                let mut out = Vec::new();
                for chunk in numbers.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT account_number, id FROM members WHERE account_number IN (");
                    let mut list = qb.separated(", ");
                    for n in chunk { list.push_bind(*n); }
                    qb.push(")");
                    let rows: Vec<(i64, Uuid)> = qb.build_query_as().persistent(false).fetch_all(&self.read).await.map_err($err)?;
                    out.extend(rows.into_iter().map(|(n, id)| (n.to_string(), id)));
                }
                for (chunk, sql) in logins.chunks(500).map(|c| (c, "SELECT login_name, id FROM members WHERE login_name IN ("))
                    .chain(emails.chunks(500).map(|c| (c, "SELECT address, member_id FROM member_emails WHERE address IN (")))
                {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(sql);
                    let mut list = qb.separated(", ");
                    for k in chunk { list.push_bind(k.clone()); }
                    qb.push(")");
                    let rows: Vec<(String, Uuid)> = qb.build_query_as().persistent(false).fetch_all(&self.read).await.map_err($err)?;
                    out.extend(rows);
                }
                Ok(out)
            }

            async fn archive_groups_ensure(&self, _key: &ar::Sealed, source: &str, groups: &[ar::GroupIn], at: DateTime<Utc>) -> Result<Vec<(i64, bool)>> {
                let mut tx = self.begin_tx().await?;
                // In id order, for the same reason as conversations (see archive_ingest).
                let mut order: Vec<usize> = (0..groups.len()).collect();
                order.sort_by(|a, b| groups[*a].ext_id.cmp(&groups[*b].ext_id));
                let mut out = vec![(0i64, false); groups.len()];
                for i in order {
                    let g = &groups[i];
                    let sql = if g.explicit {
                        "INSERT INTO archive_groups (source, ext_id, name, owner_member, owner_external, kept, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, ext_id) DO UPDATE SET \
                         name = COALESCE(excluded.name, archive_groups.name), owner_member = excluded.owner_member, \
                         owner_external = excluded.owner_external, kept = excluded.kept RETURNING id, kept"
                    } else {
                        "INSERT INTO archive_groups (source, ext_id, name, owner_member, owner_external, kept, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (source, ext_id) DO UPDATE SET \
                         name = COALESCE(archive_groups.name, excluded.name) RETURNING id, kept"
                    };
                    let row: (i64, bool) = sqlx::query_as(sql)
                        .bind(source.to_owned()).bind(g.ext_id.clone()).bind(g.name.clone()).bind(g.owner_member)
                        .bind(g.owner_external.clone()).bind(g.kept).bind(at)
                        .fetch_one(&mut *tx).await.map_err($err)?;
                    out[i] = row;
                }
                tx.commit().await.map_err($err)?;
                Ok(out)
            }

            async fn archive_ingest(
                &self,
                _key: &ar::Sealed,
                source: &str,
                conversations: &[ar::ConversationIn],
                messages: &[ar::MessageIn],
                ingested_at: i64,
                audit: &(dyn for<'s> Fn(&'s [bool]) -> m::AuditRecord + Send + Sync),
            ) -> Result<Vec<bool>> {
                let mut tx = self.begin_tx().await?;
                // One multi-row upsert a chunk; the batch names each conversation once.
                // In key order: two batches upserting the same conversations take their row locks
                // in the same order, so they wait for each other instead of deadlocking.
                let mut by_key: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
                let mut ordered: Vec<&ar::ConversationIn> = conversations.iter().collect();
                ordered.sort_by(|a, b| a.key.cmp(&b.key));
                for chunk in ordered.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("INSERT INTO archive_conversations (source, kind, key, group_id) ");
                    qb.push_values(chunk, |mut row, c| {
                        row.push_bind(source.to_owned()).push_bind(c.kind.as_str()).push_bind(c.key.clone()).push_bind(c.group_id);
                    });
                    qb.push(" ON CONFLICT (source, key) DO UPDATE SET kind = excluded.kind RETURNING id, key");
                    let rows: Vec<(i64, String)> =
                        qb.build_query_as().persistent(false).fetch_all(&mut *tx).await.map_err($err)?;
                    by_key.extend(rows.into_iter().map(|(id, key)| (key, id)));
                }
                let conv_ids = conversations
                    .iter()
                    .map(|c| by_key.get(&c.key).copied().ok_or_else(|| StoreError::Corrupt(format!("conversation {} not stored", c.key))))
                    .collect::<Result<Vec<i64>>>()?;
                let ids = bulk::archive_insert(&mut tx, source, &conv_ids, messages, ingested_at).await?;
                let stored: Vec<bool> = ids.iter().map(Option::is_some).collect();
                archive_audit_tx(&mut tx, &audit(&stored)).await?;
                tx.commit().await.map_err($err)?;
                Ok(stored)
            }

            async fn archive_messages(&self, f: &ar::MessageFilter) -> Result<Vec<ar::MessageRow>> {
                let (t, id) = archive_order(f);
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!("SELECT {ARCHIVE_MESSAGE_COLS}"));
                push_message_filter(&mut qb, f);
                if let Some((at, after)) = f.cursor {
                    // A row value, so both databases seek the index to the cursor (an OR of the
                    // two columns made PostgreSQL scan from the start for every page).
                    let op = if f.before { "<" } else { ">" };
                    qb.push(format!(" AND ({t}.sent_at, {id}) {op} (")).push_bind(at);
                    qb.push(", ").push_bind(after).push(")");
                }
                let dir = if f.before { "DESC" } else { "ASC" };
                qb.push(format!(" ORDER BY {t}.sent_at {dir}, {id} {dir} LIMIT ")).push_bind(f.limit.max(1));
                // In a read transaction, so the backend's plan hint holds for this query only.
                let mut tx = self.read.begin().await.map_err($err)?;
                bulk::archive_plan(&mut tx, f).await?;
                let rows = qb.build_query_as().persistent(false).fetch_all(&mut *tx).await.map_err($err)?;
                tx.commit().await.map_err($err)?;
                Ok(rows)
            }

            async fn archive_count(&self, f: &ar::MessageFilter) -> Result<i64> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT COUNT(*)");
                push_message_filter(&mut qb, f);
                let (n,): (i64,) = qb.build_query_as().persistent(false).fetch_one(&self.read).await.map_err($err)?;
                Ok(n)
            }

            async fn archive_like(&self, pattern: &str, limit: i64) -> Result<Vec<i64>> {
                let rows: Vec<(i64,)> = sqlx::query_as(
                    "SELECT id FROM archive_messages WHERE lower(body) LIKE $1 ESCAPE '\\' ORDER BY id LIMIT $2",
                )
                .bind(format!("%{}%", like_escape(&pattern.to_lowercase()))).bind(limit)
                .fetch_all(&self.read).await.map_err($err)?;
                Ok(rows.into_iter().map(|r| r.0).collect())
            }

            async fn archive_message(&self, id: i64) -> Result<Option<ar::MessageRow>> {
                sqlx::query_as(sql!("SELECT {} FROM archive_messages m WHERE m.id = $1", ARCHIVE_MESSAGE_COLS))
                    .bind(id).fetch_optional(&self.read).await.map_err($err)
            }

            async fn archive_conversations_of(&self, member: Uuid) -> Result<Vec<ar::ConversationRow>> {
                sqlx::query_as(
                    "SELECT c.id, c.source, c.kind, c.key, c.group_id, g.name AS group_name, g.ext_id AS group_ext_id, \
                     s.n AS messages, s.first_at, s.last_at \
                     FROM (SELECT conversation, COUNT(*) AS n, MIN(sent_at) AS first_at, MAX(sent_at) AS last_at \
                           FROM archive_parties WHERE member_id = $1 GROUP BY conversation) s \
                     JOIN archive_conversations c ON c.id = s.conversation \
                     LEFT JOIN archive_groups g ON g.id = c.group_id ORDER BY s.last_at DESC, c.id",
                )
                .bind(member).fetch_all(&self.read).await.map_err($err)
            }

            async fn archive_conversation(&self, id: i64) -> Result<Option<ar::ConversationRow>> {
                sqlx::query_as(
                    "SELECT c.id, c.source, c.kind, c.key, c.group_id, g.name AS group_name, g.ext_id AS group_ext_id, \
                     (SELECT COUNT(*) FROM archive_messages x WHERE x.conversation = c.id) AS messages, \
                     (SELECT MIN(sent_at) FROM archive_messages x WHERE x.conversation = c.id) AS first_at, \
                     (SELECT MAX(sent_at) FROM archive_messages x WHERE x.conversation = c.id) AS last_at \
                     FROM archive_conversations c LEFT JOIN archive_groups g ON g.id = c.group_id WHERE c.id = $1",
                )
                .bind(id).fetch_optional(&self.read).await.map_err($err)
            }

            async fn archive_conversations_by_ids(&self, ids: &[i64]) -> Result<Vec<ar::ConversationRow>> {
                let mut out = Vec::new();
                for chunk in ids.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "SELECT c.id, c.source, c.kind, c.key, c.group_id, g.name AS group_name, g.ext_id AS group_ext_id, \
                         CAST(0 AS BIGINT) AS messages, CAST(NULL AS BIGINT) AS first_at, CAST(NULL AS BIGINT) AS last_at \
                         FROM archive_conversations c LEFT JOIN archive_groups g ON g.id = c.group_id WHERE c.id IN (",
                    );
                    let mut list = qb.separated(", ");
                    for id in chunk { list.push_bind(*id); }
                    qb.push(")");
                    out.extend(qb.build_query_as::<ar::ConversationRow>().persistent(false).fetch_all(&self.read).await.map_err($err)?);
                }
                Ok(out)
            }

            async fn archive_people(&self, ids: &[Uuid]) -> Result<Vec<(Uuid, String, i64, String)>> {
                let mut out = Vec::new();
                for chunk in ids.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT id, display_name, account_number, login_name FROM members WHERE id IN (");
                    let mut list = qb.separated(", ");
                    for id in chunk { list.push_bind(*id); }
                    qb.push(")");
                    out.extend(qb.build_query_as::<(Uuid, String, i64, String)>().persistent(false).fetch_all(&self.read).await.map_err($err)?);
                }
                Ok(out)
            }

            async fn archive_groups(&self, units: Option<&[Uuid]>) -> Result<Vec<ar::GroupRow>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(
                    "SELECT g.id, g.source, g.ext_id, g.name, g.owner_member, g.owner_external, g.kept, c.id AS conversation, \
                     (SELECT COUNT(*) FROM archive_messages x WHERE x.conversation = c.id) AS messages \
                     FROM archive_groups g LEFT JOIN archive_conversations c ON c.group_id = g.id",
                );
                if let Some(units) = units {
                    qb.push(" WHERE g.owner_member IN (SELECT id FROM members WHERE ");
                    push_subtree(&mut qb, "primary_org_unit_id", units);
                    qb.push(")");
                }
                qb.push(" ORDER BY g.name, g.id");
                qb.build_query_as().persistent(false).fetch_all(&self.read).await.map_err($err)
            }

            async fn archive_deleted_accounts(&self, limit: i64) -> Result<Vec<(Uuid, i64)>> {
                sqlx::query_as(
                    "SELECT t.member_id, (SELECT COUNT(*) FROM archive_parties p WHERE p.member_id = t.member_id) AS n \
                     FROM tombstones t ORDER BY t.deleted_at DESC LIMIT $1",
                )
                .bind(limit).fetch_all(&self.read).await.map_err($err)
            }

            async fn archive_parties(&self, messages: &[i64]) -> Result<Vec<(i64, Uuid)>> {
                let mut out = Vec::new();
                for chunk in messages.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT message, member_id FROM archive_parties WHERE message IN (");
                    let mut list = qb.separated(", ");
                    for n in chunk { list.push_bind(*n); }
                    qb.push(")");
                    let rows: Vec<(i64, Uuid)> = qb.build_query_as().persistent(false).fetch_all(&self.read).await.map_err($err)?;
                    out.extend(rows);
                }
                Ok(out)
            }

            async fn archive_blob(&self, sha256: &str) -> Result<Option<ar::Blob>> {
                sqlx::query_as("SELECT sha256, mime, size, bytes FROM archive_blobs WHERE sha256 = $1")
                    .bind(sha256.to_owned()).fetch_optional(&self.read).await.map_err($err)
            }

            async fn archive_blob_exists(&self, sha256: &str) -> Result<bool> {
                let row: Option<(i64,)> = sqlx::query_as("SELECT size FROM archive_blobs WHERE sha256 = $1")
                    .bind(sha256.to_owned()).fetch_optional(&self.read).await.map_err($err)?;
                Ok(row.is_some())
            }

            async fn archive_blob_put(&self, _key: &ar::Sealed, b: &ar::Blob, at: DateTime<Utc>) -> Result<bool> {
                let done = q("INSERT INTO archive_blobs (sha256, mime, size, bytes, created_at) VALUES ($1, $2, $3, $4, $5) \
                              ON CONFLICT (sha256) DO NOTHING")
                    .bind(b.sha256.clone()).bind(b.mime.clone()).bind(b.size).bind(b.bytes.clone()).bind(at)
                    .execute(&self.write).await.map_err($err)?;
                Ok(done.rows_affected() > 0)
            }

            async fn archive_audit(&self, _key: &ar::Sealed, audit: &m::AuditRecord) -> Result<()> {
                let mut tx = self.begin_tx().await?;
                archive_audit_tx(&mut tx, audit).await?;
                tx.commit().await.map_err($err)
            }
        }
    };
}
