//! [`LoginStore`](crate::access::login::LoginStore): sign-in rules, the default, the login log.
macro_rules! sql_login {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        #[derive(sqlx::FromRow)]
        struct SignInRuleRow {
            id: Uuid,
            position: i64,
            allow: bool,
            who_kind: String,
            who_id: Option<Uuid>,
            networks: String,
            windows: String,
            exceptions: String,
            clients: String,
            time_zone: String,
            note: String,
            updated_at: DateTime<Utc>,
        }

        impl SignInRuleRow {
            fn into_row(self) -> Result<$crate::access::login::RuleRow> {
                let id = self.id;
                let list = |what: &str, s: &str| -> Result<Vec<String>> {
                    serde_json::from_str(s).map_err(|e| {
                        $crate::store::StoreError::Corrupt(format!("sign-in rule {id}: {what}: {e}"))
                    })
                };
                Ok($crate::access::login::RuleRow {
                    id,
                    position: self.position,
                    who_kind: self.who_kind,
                    who_id: self.who_id,
                    spec: $crate::access::policy::RuleSpec {
                        allow: self.allow,
                        networks: list("networks", &self.networks)?,
                        windows: list("windows", &self.windows)?,
                        exceptions: list("exceptions", &self.exceptions)?,
                        clients: list("clients", &self.clients)?,
                        time_zone: self.time_zone,
                        note: self.note,
                    },
                    updated_at: self.updated_at,
                })
            }
        }

        #[async_trait::async_trait]
        impl $crate::access::login::LoginStore for $Store {
            async fn sign_in_policy(&self) -> Result<(bool, Vec<$crate::access::login::RuleRow>)> {
                let (default_allow,): (bool,) =
                    sqlx::query_as("SELECT default_allow FROM sign_in_policy WHERE singleton = 1")
                        .fetch_one(&self.read)
                        .await
                        .map_err($err)?;
                let rows = sqlx::query_as::<_, SignInRuleRow>(
                    "SELECT id, position, allow, who_kind, who_id, networks, windows, exceptions, clients, \
                     time_zone, note, updated_at FROM sign_in_rules ORDER BY position, id",
                )
                .fetch_all(&self.read)
                .await
                .map_err($err)?;
                Ok((default_allow, rows.into_iter().map(SignInRuleRow::into_row).collect::<Result<_>>()?))
            }

            async fn sign_in_rule_put(
                &self,
                _key: &$crate::access::store::Sealed,
                r: &$crate::access::login::RuleRow,
                audit: &m::AuditRecord,
            ) -> Result<()> {
                let json = |v: &Vec<String>| serde_json::to_string(v).expect("strings serialize");
                let mut tx = self.begin_tx().await?;
                exec(&mut tx, q("INSERT INTO sign_in_rules (id, position, allow, who_kind, who_id, networks, windows, \
                        exceptions, clients, time_zone, note, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                        ON CONFLICT (id) DO UPDATE SET position = excluded.position, allow = excluded.allow, \
                        who_kind = excluded.who_kind, who_id = excluded.who_id, networks = excluded.networks, \
                        windows = excluded.windows, exceptions = excluded.exceptions, clients = excluded.clients, \
                        time_zone = excluded.time_zone, note = excluded.note, updated_at = excluded.updated_at")
                    .bind(r.id).bind(r.position).bind(r.spec.allow).bind(r.who_kind.clone()).bind(r.who_id)
                    .bind(json(&r.spec.networks)).bind(json(&r.spec.windows)).bind(json(&r.spec.exceptions))
                    .bind(json(&r.spec.clients)).bind(r.spec.time_zone.clone()).bind(r.spec.note.clone())
                    .bind(r.updated_at)).await?;
                bulk::audit_insert(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err($err)
            }

            async fn sign_in_rule_delete(
                &self,
                _key: &$crate::access::store::Sealed,
                id: Uuid,
                audit: &m::AuditRecord,
            ) -> Result<bool> {
                let mut tx = self.begin_tx().await?;
                if exec(&mut tx, q("DELETE FROM sign_in_rules WHERE id = $1").bind(id)).await? == 0 {
                    return Ok(false);
                }
                bulk::audit_insert(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err($err)?;
                Ok(true)
            }

            async fn sign_in_rules_order(
                &self,
                _key: &$crate::access::store::Sealed,
                ids: &[Uuid],
                audit: &m::AuditRecord,
            ) -> Result<()> {
                let mut tx = self.begin_tx().await?;
                for (i, id) in ids.iter().enumerate() {
                    exec(&mut tx, q("UPDATE sign_in_rules SET position = $1 WHERE id = $2").bind(i as i64).bind(*id))
                        .await?;
                }
                bulk::audit_insert(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err($err)
            }

            async fn sign_in_default_set(
                &self,
                _key: &$crate::access::store::Sealed,
                allow: bool,
                at: DateTime<Utc>,
                audit: &m::AuditRecord,
            ) -> Result<()> {
                let mut tx = self.begin_tx().await?;
                exec(&mut tx, q("UPDATE sign_in_policy SET default_allow = $1, updated_at = $2 WHERE singleton = 1")
                    .bind(allow).bind(at)).await?;
                bulk::audit_insert(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err($err)
            }

            async fn login_log_insert(&self, e: &$crate::access::login::LoginEntry) -> Result<i64> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO login_log (at, member_id, typed, client, app, ip, outcome, rule_id, reason, unit_path) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
                )
                .bind(e.at).bind(e.member_id).bind(e.typed.clone()).bind(e.client.clone()).bind(e.app.clone())
                .bind(e.ip.clone()).bind(e.outcome.clone()).bind(e.rule_id).bind(e.reason.clone())
                .bind(e.unit_path.clone())
                .fetch_one(&self.write)
                .await
                .map_err($err)?;
                Ok(id)
            }

            async fn login_log(
                &self,
                f: &$crate::access::login::LoginFilter,
            ) -> Result<Vec<$crate::access::login::LoginEntry>> {
                sqlx::query_as(
                    "SELECT id, at, member_id, typed, client, app, ip, outcome, rule_id, reason, unit_path \
                     FROM login_log WHERE ($1 IS NULL OR member_id = $1) AND ($2 IS NULL OR unit_path LIKE $2) \
                     AND ($3 IS NULL OR outcome = $3) AND ($4 IS NULL OR at >= $4) AND ($5 IS NULL OR at < $5) \
                     AND ($6 IS NULL OR id < $6) ORDER BY id DESC LIMIT $7",
                )
                .bind(f.member)
                .bind(f.unit.map(|u| format!("%/{u}/%")))
                .bind(f.outcome.map(|o| o.as_str().to_owned()))
                .bind(f.from)
                .bind(f.to)
                .bind(f.before)
                .bind(f.limit)
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }

            async fn login_log_purge(&self, before: DateTime<Utc>) -> Result<u64> {
                Ok(q("DELETE FROM login_log WHERE at < $1").bind(before).execute(&self.write).await.map_err($err)?.rows_affected())
            }
        }
    };
}
