//! [`DeliveryStore`](crate::delivery::store::DeliveryStore): the outbox's consumers' bookkeeping.
macro_rules! sql_delivery {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        /// The active members in the subtrees of `units` (everybody when empty), as a `SELECT` of
        /// a `Recipient`'s columns.
        fn push_recipients(qb: &mut sqlx::QueryBuilder<$db>, units: &[Uuid]) {
            if !units.is_empty() {
                qb.push("WITH RECURSIVE sub(id) AS (SELECT id FROM org_units WHERE id IN (");
                let mut list = qb.separated(", ");
                units.iter().for_each(|u| { list.push_bind(*u); });
                qb.push(") UNION SELECT o.id FROM org_units o JOIN sub ON o.parent_id = sub.id) ");
            }
            qb.push("SELECT id, account_number, login_name, display_name, mobile, \
                (SELECT address FROM member_emails e WHERE e.member_id = members.id ORDER BY is_primary DESC, position LIMIT 1) AS email \
                FROM members WHERE state = 'active'");
            if !units.is_empty() {
                qb.push(" AND (primary_org_unit_id IN (SELECT id FROM sub) OR id IN \
                    (SELECT member_id FROM member_org_units WHERE org_unit_id IN (SELECT id FROM sub)))");
            }
        }

        #[async_trait::async_trait]
        impl $crate::delivery::store::DeliveryStore for $Store {

            async fn outbox_pending(&self, limit: i64) -> Result<Vec<m::OutboxMessage>> {
                sqlx::query_as::<_, m::OutboxMessage>(
                    "SELECT id, created_at, kind, idempotency_key, payload, state, attempts FROM outbox \
                     WHERE state = 'pending' ORDER BY created_at, id LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn deliveries_enqueue(&self, events_done: &[Uuid], messages: &[$crate::delivery::store::Delivery], bindings: &[$crate::delivery::store::MailboxBinding]) -> Result<u64> {
                let mut tx = self.begin_tx().await?;
                let added = insert_deliveries(&mut tx, messages).await?;
                // The latest event of a member wins (events come oldest first).
                let mut latest: Vec<&$crate::delivery::store::MailboxBinding> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for b in bindings.iter().rev() {
                    if seen.insert(b.member_id) {
                        latest.push(b);
                    }
                }
                for chunk in latest.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO mailbox_bindings ({MAILBOX_COLS}) "));
                    qb.push_values(chunk, |mut row, b| {
                        row.push_bind(b.member_id).push_bind(b.address.clone()).push_bind(b.display_name.clone())
                            .push_bind(b.active).push_bind(b.state.as_str()).push_bind(b.attempts).push_bind(b.next_attempt_at)
                            .push_bind(b.last_error.clone()).push_bind(b.remote_id.clone()).push_bind(b.pushed_at)
                            .push_bind(b.updated_at);
                    });
                    qb.push(" ON CONFLICT (member_id) DO UPDATE SET address = excluded.address, display_name = excluded.display_name, \
                        active = excluded.active, state = 'pending', attempts = 0, next_attempt_at = excluded.next_attempt_at, \
                        updated_at = excluded.updated_at");
                    qb.build().persistent(false).execute(&mut *tx).await.map_err($err)?;
                }
                for chunk in events_done.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE outbox SET state = 'done' WHERE id IN (");
                    let mut list = qb.separated(", ");
                    chunk.iter().for_each(|id| { list.push_bind(*id); });
                    qb.push(")");
                    qb.build().persistent(false).execute(&mut *tx).await.map_err($err)?;
                }
                tx.commit().await.map_err($err)?;
                Ok(added)
            }

            async fn mailbox_claim(&self, holder: &str, now: DateTime<Utc>, until: DateTime<Utc>, limit: i64) -> Result<Vec<$crate::delivery::store::MailboxBinding>> {
                sqlx::query_as::<_, $crate::delivery::store::MailboxBinding>(sql!(
                    "UPDATE mailbox_bindings SET lease_holder = $1, lease_until = $2 WHERE member_id IN (\
                       SELECT member_id FROM mailbox_bindings WHERE state IN ('pending', 'failed') AND next_attempt_at <= $3 \
                       AND (lease_until IS NULL OR lease_until < $3) ORDER BY next_attempt_at LIMIT $4) \
                     AND state IN ('pending', 'failed') AND (lease_until IS NULL OR lease_until < $3) RETURNING {}",
                    MAILBOX_COLS
                ))
                .bind(holder.to_owned()).bind(until).bind(now).bind(limit)
                .fetch_all(&self.write).await.map_err($err)
            }

            async fn mailbox_pushed(&self, member_id: Uuid, holder: &str, remote_id: Option<&str>, at: DateTime<Utc>) -> Result<()> {
                q("UPDATE mailbox_bindings SET state = CASE WHEN active THEN 'pushed' ELSE 'disabled' END, attempts = 0, \
                   last_error = NULL, remote_id = COALESCE($3, remote_id), pushed_at = $4, lease_holder = NULL, lease_until = NULL \
                   WHERE member_id = $1 AND lease_holder = $2")
                    .bind(member_id).bind(holder.to_owned()).bind(remote_id.map(str::to_owned)).bind(at)
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn mailbox_failed(&self, member_id: Uuid, holder: &str, error: &str, next: DateTime<Utc>) -> Result<()> {
                q("UPDATE mailbox_bindings SET state = 'failed', attempts = attempts + 1, last_error = $3, next_attempt_at = $4, \
                   lease_holder = NULL, lease_until = NULL WHERE member_id = $1 AND lease_holder = $2")
                    .bind(member_id).bind(holder.to_owned()).bind(error.to_owned()).bind(next)
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn mailbox_reconcile(&self, at: DateTime<Utc>) -> Result<u64> {
                Ok(q("UPDATE mailbox_bindings SET state = 'pending', attempts = 0, next_attempt_at = $1 WHERE state IN ('pushed', 'disabled')")
                    .bind(at).execute(&self.write).await.map_err($err)?.rows_affected())
            }

            async fn mailbox_bindings(&self, state: Option<&str>, limit: i64) -> Result<Vec<$crate::delivery::store::MailboxBinding>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!("SELECT {MAILBOX_COLS} FROM mailbox_bindings"));
                if let Some(state) = state {
                    qb.push(" WHERE state = ").push_bind(state.to_owned());
                }
                qb.push(" ORDER BY address LIMIT ").push_bind(limit);
                qb.build_query_as().fetch_all(&self.read).await.map_err($err)
            }

            async fn deliveries_claim(&self, holder: &str, now: DateTime<Utc>, until: DateTime<Utc>, limit: i64) -> Result<Vec<$crate::delivery::store::Delivery>> {
                // The outer conditions are checked again on the row PostgreSQL locks, so two
                // nodes never both claim one message.
                sqlx::query_as::<_, $crate::delivery::store::Delivery>(sql!(
                    "UPDATE deliveries SET lease_holder = $1, lease_until = $2 WHERE id IN (\
                       SELECT id FROM deliveries WHERE state = 'pending' AND next_attempt_at <= $3 \
                       AND (lease_until IS NULL OR lease_until < $3) ORDER BY next_attempt_at LIMIT $4) \
                     AND state = 'pending' AND (lease_until IS NULL OR lease_until < $3) RETURNING {}",
                    DELIVERY_COLS
                ))
                .bind(holder.to_owned()).bind(until).bind(now).bind(limit)
                .fetch_all(&self.write)
                .await
                .map_err($err)
            }

            async fn deliveries_sent(&self, holder: &str, sent: &[$crate::delivery::store::Sent], at: DateTime<Utc>, low_balance: i64) -> Result<Option<i64>> {
                if sent.is_empty() {
                    return Ok(None);
                }
                let mut tx = self.begin_tx().await?;
                let mut recorded = std::collections::HashSet::new();
                for chunk in sent.chunks(300) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE deliveries SET state = 'sent', sent_at = ");
                    qb.push_bind(at).push(", attempts = attempts + 1, last_error = NULL, lease_holder = NULL, lease_until = NULL, reserved = 0, provider_id = CASE id");
                    for s in chunk {
                        qb.push(" WHEN ").push_bind(s.id).push(" THEN ").push_bind(s.provider_id.clone());
                    }
                    qb.push(" ELSE provider_id END WHERE lease_holder = ").push_bind(holder.to_owned()).push(" AND id IN (");
                    let mut list = qb.separated(", ");
                    chunk.iter().for_each(|s| { list.push_bind(s.id); });
                    qb.push(") RETURNING id");
                    let rows: Vec<(Uuid,)> = qb.build_query_as().persistent(false).fetch_all(&mut *tx).await.map_err($err)?;
                    recorded.extend(rows.into_iter().map(|r| r.0));
                }
                let charges: Vec<(&$crate::delivery::store::Sent, &(String, i64))> =
                    sent.iter().filter(|s| recorded.contains(&s.id)).filter_map(|s| s.sms.as_ref().map(|c| (s, c))).collect();
                let mut low = None;
                if !charges.is_empty() {
                    let (balance, warned): (i64, Option<DateTime<Utc>>) =
                        sqlx::query_as("SELECT balance, low_warned_at FROM sms_account WHERE singleton = 1")
                            .fetch_one(&mut *tx).await.map_err($err)?;
                    for chunk in charges.chunks(500) {
                        let mut qb = sqlx::QueryBuilder::<$db>::new(
                            "INSERT INTO sms_ledger (at, entry, amount, balance_after, delivery_id, recipient, segments, provider_id, actor) ",
                        );
                        qb.push_values(chunk, |mut row, (s, (to, segments))| {
                            row.push_bind(at).push_bind("charge").push_bind(-segments).push_bind(balance).push_bind(s.id)
                                .push_bind(to.clone()).push_bind(*segments).push_bind(s.provider_id.clone()).push_bind("rosterd");
                        });
                        qb.build().persistent(false).execute(&mut *tx).await.map_err($err)?;
                    }
                    if balance < low_balance && warned.is_none() {
                        q("UPDATE sms_account SET low_warned_at = $1 WHERE singleton = 1").bind(at)
                            .execute(&mut *tx).await.map_err($err)?;
                        low = Some(balance);
                    }
                }
                tx.commit().await.map_err($err)?;
                Ok(low)
            }

            async fn delivery_failed(&self, id: Uuid, holder: &str, error: &str, next: Option<DateTime<Utc>>) -> Result<()> {
                let state = if next.is_some() { "pending" } else { "dead" };
                q("UPDATE deliveries SET state = $3, attempts = attempts + 1, last_error = $4, \
                   next_attempt_at = COALESCE($5, next_attempt_at), lease_holder = NULL, lease_until = NULL \
                   WHERE id = $1 AND lease_holder = $2")
                    .bind(id).bind(holder.to_owned()).bind(state).bind(error.to_owned()).bind(next)
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn delivery_defer(&self, id: Uuid, holder: &str, reason: &str, at: Option<DateTime<Utc>>) -> Result<()> {
                let state = if at.is_some() { "pending" } else { "held" };
                q("UPDATE deliveries SET state = $3, last_error = $4, next_attempt_at = COALESCE($5, next_attempt_at), \
                   lease_holder = NULL, lease_until = NULL WHERE id = $1 AND lease_holder = $2")
                    .bind(id).bind(holder.to_owned()).bind(state).bind(reason.to_owned()).bind(at)
                    .execute(&self.write).await.map_err($err)?;
                Ok(())
            }

            async fn deliveries_list(&self, state: Option<&str>, limit: i64) -> Result<Vec<$crate::delivery::store::Delivery>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new(format!("SELECT {DELIVERY_COLS} FROM deliveries"));
                if let Some(state) = state {
                    qb.push(" WHERE state = ").push_bind(state.to_owned());
                }
                qb.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(limit);
                qb.build_query_as().fetch_all(&self.read).await.map_err($err)
            }


            async fn delivery_counts(&self) -> Result<Vec<(String, String, i64)>> {
                sqlx::query_as("SELECT channel, state, COUNT(*) FROM deliveries GROUP BY channel, state ORDER BY channel, state")
                    .fetch_all(&self.read).await.map_err($err)
            }

            async fn sms_balance(&self) -> Result<i64> {
                let (b,): (i64,) = sqlx::query_as("SELECT balance FROM sms_account WHERE singleton = 1")
                    .fetch_one(&self.read).await.map_err($err)?;
                Ok(b)
            }

            async fn sms_reserve(&self, id: Uuid, holder: &str, segments: i64) -> Result<Option<i64>> {
                let mut tx = self.begin_tx().await?;
                let r: Option<(i64,)> = sqlx::query_as(
                    "UPDATE sms_account SET balance = balance - $1 WHERE singleton = 1 AND balance >= $1 RETURNING balance",
                )
                .bind(segments).fetch_optional(&mut *tx).await.map_err($err)?;
                if r.is_some() {
                    q("UPDATE deliveries SET reserved = $3 WHERE id = $1 AND lease_holder = $2")
                        .bind(id).bind(holder.to_owned()).bind(segments).execute(&mut *tx).await.map_err($err)?;
                }
                tx.commit().await.map_err($err)?;
                Ok(r.map(|r| r.0))
            }

            async fn sms_refund(&self, id: Uuid) -> Result<()> {
                let mut tx = self.begin_tx().await?;
                let r: Option<(i64,)> = sqlx::query_as("SELECT reserved FROM deliveries WHERE id = $1")
                    .bind(id).fetch_optional(&mut *tx).await.map_err($err)?;
                if let Some((reserved,)) = r.filter(|r| r.0 > 0) {
                    q("UPDATE sms_account SET balance = balance + $1 WHERE singleton = 1").bind(reserved)
                        .execute(&mut *tx).await.map_err($err)?;
                    q("UPDATE deliveries SET reserved = 0 WHERE id = $1").bind(id).execute(&mut *tx).await.map_err($err)?;
                }
                tx.commit().await.map_err($err)?;
                Ok(())
            }

            async fn sms_reserve_many(&self, holder: &str, items: &[(Uuid, i64)]) -> Result<bool> {
                let total: i64 = items.iter().map(|i| i.1).sum();
                let mut tx = self.begin_tx().await?;
                let r: Option<(i64,)> = sqlx::query_as(
                    "UPDATE sms_account SET balance = balance - $1 WHERE singleton = 1 AND balance >= $1 RETURNING balance",
                )
                .bind(total).fetch_optional(&mut *tx).await.map_err($err)?;
                if r.is_none() {
                    return Ok(false);
                }
                let mut by_segments: std::collections::BTreeMap<i64, Vec<Uuid>> = Default::default();
                for (id, segments) in items {
                    by_segments.entry(*segments).or_default().push(*id);
                }
                for (segments, ids) in by_segments {
                    for chunk in ids.chunks(1000) {
                        let mut qb = sqlx::QueryBuilder::<$db>::new("UPDATE deliveries SET reserved = ");
                        qb.push_bind(segments).push(" WHERE lease_holder = ").push_bind(holder.to_owned()).push(" AND id IN (");
                        let mut list = qb.separated(", ");
                        chunk.iter().for_each(|id| { list.push_bind(*id); });
                        qb.push(")");
                        qb.build().persistent(false).execute(&mut *tx).await.map_err($err)?;
                    }
                }
                tx.commit().await.map_err($err)?;
                Ok(true)
            }

            async fn sms_ledger(&self, limit: i64) -> Result<Vec<$crate::delivery::store::SmsLedgerEntry>> {
                sqlx::query_as(sql!("SELECT {} FROM sms_ledger ORDER BY id DESC LIMIT $1", SMS_LEDGER_COLS))
                    .bind(limit).fetch_all(&self.read).await.map_err($err)
            }

            async fn broadcast(&self, id: Uuid) -> Result<Option<$crate::delivery::store::Broadcast>> {
                sqlx::query_as(sql!("SELECT {} FROM broadcasts WHERE id = $1", BROADCAST_COLS))
                    .bind(id).fetch_optional(&self.read).await.map_err($err)
            }

            async fn broadcasts(&self, limit: i64) -> Result<Vec<$crate::delivery::store::Broadcast>> {
                sqlx::query_as(sql!("SELECT {} FROM broadcasts ORDER BY created_at DESC, id DESC LIMIT $1", BROADCAST_COLS))
                    .bind(limit).fetch_all(&self.read).await.map_err($err)
            }

            async fn broadcast_progress(&self, id: Uuid) -> Result<Vec<(String, String, i64)>> {
                sqlx::query_as("SELECT channel, state, COUNT(*) FROM deliveries WHERE broadcast_id = $1 GROUP BY channel, state ORDER BY channel, state")
                    .bind(id).fetch_all(&self.read).await.map_err($err)
            }

            async fn enterprise_profile(&self) -> Result<Option<m::Enterprise>> {
                let mut c = self.read.acquire().await.map_err($err)?;
                enterprise_get(&mut c).await
            }

            async fn delivery_retry(&self, _key: &$crate::delivery::store::Sealed, id: Uuid, at: DateTime<Utc>, audit: &m::AuditRecord) -> Result<bool> {
                let mut tx = self.begin_tx().await?;
                let n = exec(&mut tx, q("UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = $2, lease_holder = NULL, \
                      lease_until = NULL WHERE id = $1 AND state IN ('dead', 'held')")
                    .bind(id).bind(at)).await?;
                if n != 1 {
                    return Ok(false);
                }
                bulk::audit_insert(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err($err)?;
                Ok(true)
            }

            async fn deliveries_purge(&self, _key: &$crate::delivery::store::Sealed, before: DateTime<Utc>, audit: &(dyn Fn(u64) -> m::AuditRecord + Send + Sync)) -> Result<u64> {
                let mut tx = self.begin_tx().await?;
                let n = exec(&mut tx, q("DELETE FROM deliveries WHERE (state = 'sent' AND sent_at < $1) OR (state = 'dead' AND next_attempt_at < $1)")
                    .bind(before)).await?;
                bulk::audit_insert(&mut tx, &[audit(n)]).await?;
                tx.commit().await.map_err($err)?;
                Ok(n)
            }

            async fn sms_top_up(&self, _key: &$crate::delivery::store::Sealed, amount: i64, actor: &str, note: Option<&str>, at: DateTime<Utc>, audit: &(dyn Fn(i64) -> m::AuditRecord + Send + Sync)) -> Result<i64> {
                let mut tx = self.begin_tx().await?;
                let (balance,): (i64,) = sqlx::query_as(
                    "UPDATE sms_account SET balance = balance + $1, low_warned_at = NULL WHERE singleton = 1 RETURNING balance",
                )
                .bind(amount).fetch_one(&mut *tx).await.map_err($err)?;
                exec(&mut tx, q("INSERT INTO sms_ledger (at, entry, amount, balance_after, actor, note) VALUES ($1, 'top_up', $2, $3, $4, $5)")
                    .bind(at).bind(amount).bind(balance).bind(actor.to_owned()).bind(note.map(str::to_owned))).await?;
                exec(&mut tx, q("UPDATE deliveries SET state = 'pending', next_attempt_at = $1 WHERE state = 'held' AND channel = 'sms'")
                    .bind(at)).await?;
                bulk::audit_insert(&mut tx, &[audit(balance)]).await?;
                tx.commit().await.map_err($err)?;
                Ok(balance)
            }

            async fn broadcast_recipients(&self, units: &[Uuid]) -> Result<Vec<$crate::delivery::store::Recipient>> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("");
                push_recipients(&mut qb, units);
                qb.push(" ORDER BY account_number");
                qb.build_query_as().persistent(false).fetch_all(&self.read).await.map_err($err)
            }

            async fn broadcast_reach(&self, units: &[Uuid]) -> Result<(i64, i64, i64)> {
                let mut qb = sqlx::QueryBuilder::<$db>::new("SELECT COUNT(*), COUNT(email), COUNT(mobile) FROM (");
                push_recipients(&mut qb, units);
                qb.push(") r");
                qb.build_query_as().persistent(false).fetch_one(&self.read).await.map_err($err)
            }


            async fn broadcast_insert(&self, _key: &$crate::delivery::store::Sealed, b: &$crate::delivery::store::Broadcast, event: &m::OutboxRecord, audit: &m::AuditRecord) -> Result<()> {
                let mut tx = self.begin_tx().await?;
                exec(&mut tx, q(sql!("INSERT INTO broadcasts ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)", BROADCAST_COLS))
                    .bind(b.id).bind(b.created_at).bind(b.created_by.clone()).bind(b.title.clone()).bind(b.text.clone())
                    .bind(b.sms).bind(Json(b.scope.clone())).bind(b.recipients)).await?;
                bulk::outbox_insert(&mut tx, std::slice::from_ref(event)).await?;
                bulk::audit_insert(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err($err)
            }
        }
    };
}
