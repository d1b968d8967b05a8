//! [`AttendanceStore`](crate::access::attendance::AttendanceStore): shifts, assignments,
//! punches and day results.
macro_rules! sql_attendance {
    ($db:ty, $Store:ident, $Tx:ident, $err:path, $children:expr, $keys:expr, $memberships:expr) => {
        #[async_trait::async_trait]
        impl $crate::access::attendance::AttendanceStore for $Store {
            async fn shifts(
                &self,
            ) -> Result<(Vec<(Uuid, $crate::access::attendance::ShiftSpec)>, Vec<(Uuid, Uuid)>)> {
                let rows: Vec<(Uuid, String)> =
                    sqlx::query_as("SELECT id, spec FROM attendance_shifts ORDER BY id")
                        .fetch_all(&self.read)
                        .await
                        .map_err($err)?;
                let mut shifts = Vec::with_capacity(rows.len());
                for (id, spec) in rows {
                    let spec = serde_json::from_str(&spec).map_err(|e| {
                        $crate::store::StoreError::Corrupt(format!("shift {id}: {e}"))
                    })?;
                    shifts.push((id, spec));
                }
                let assignments: Vec<(Uuid, Uuid)> =
                    sqlx::query_as("SELECT unit_id, shift_id FROM attendance_assignments ORDER BY unit_id")
                        .fetch_all(&self.read)
                        .await
                        .map_err($err)?;
                Ok((shifts, assignments))
            }

            async fn shift_put(
                &self,
                _key: &$crate::access::store::Sealed,
                id: Uuid,
                spec: &$crate::access::attendance::ShiftSpec,
                at: DateTime<Utc>,
                audit: &m::AuditRecord,
            ) -> Result<()> {
                let json = serde_json::to_string(spec).expect("a shift serializes");
                let mut tx = self.begin_tx().await?;
                exec(&mut tx, q("INSERT INTO attendance_shifts (id, spec, updated_at) VALUES ($1, $2, $3) \
                        ON CONFLICT (id) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at")
                    .bind(id).bind(json).bind(at)).await?;
                bulk::audit_insert(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err($err)
            }

            async fn shift_delete(
                &self,
                _key: &$crate::access::store::Sealed,
                id: Uuid,
                audit: &m::AuditRecord,
            ) -> Result<bool> {
                let mut tx = self.begin_tx().await?;
                exec(&mut tx, q("DELETE FROM attendance_assignments WHERE shift_id = $1").bind(id)).await?;
                if exec(&mut tx, q("DELETE FROM attendance_shifts WHERE id = $1").bind(id)).await? == 0 {
                    return Ok(false);
                }
                bulk::audit_insert(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err($err)?;
                Ok(true)
            }

            async fn shift_assign(
                &self,
                _key: &$crate::access::store::Sealed,
                unit: Uuid,
                shift: Option<Uuid>,
                audit: &m::AuditRecord,
            ) -> Result<()> {
                let mut tx = self.begin_tx().await?;
                match shift {
                    Some(s) => {
                        exec(&mut tx, q("INSERT INTO attendance_assignments (unit_id, shift_id) VALUES ($1, $2) \
                                ON CONFLICT (unit_id) DO UPDATE SET shift_id = excluded.shift_id")
                            .bind(unit).bind(s)).await?;
                    }
                    None => {
                        exec(&mut tx, q("DELETE FROM attendance_assignments WHERE unit_id = $1").bind(unit)).await?;
                    }
                }
                bulk::audit_insert(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await.map_err($err)
            }

            async fn punches_insert(
                &self,
                _key: &$crate::access::store::Sealed,
                punches: &[$crate::access::attendance::Punch],
                received: DateTime<Utc>,
                audit: &(dyn Fn(usize) -> m::AuditRecord + Send + Sync),
            ) -> Result<Vec<bool>> {
                let mut tx = self.begin_tx().await?;
                let mut out = Vec::with_capacity(punches.len());
                for p in punches {
                    let n = exec(&mut tx, q("INSERT INTO attendance_punches (source, id, member_id, at, device, received_at) \
                            VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (source, id) DO NOTHING")
                        .bind(p.source.clone()).bind(p.id.clone()).bind(p.member_id).bind(p.at)
                        .bind(p.device.clone()).bind(received)).await?;
                    out.push(n == 1);
                }
                let stored = out.iter().filter(|new| **new).count();
                bulk::audit_insert(&mut tx, std::slice::from_ref(&audit(stored))).await?;
                tx.commit().await.map_err($err)?;
                Ok(out)
            }

            async fn events(&self, member: Uuid, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<DateTime<Utc>>> {
                let rows: Vec<(DateTime<Utc>,)> = sqlx::query_as(
                    "SELECT at FROM attendance_punches WHERE member_id = $1 AND at >= $2 AND at < $3 \
                     UNION ALL SELECT at FROM login_log WHERE member_id = $1 AND at >= $2 AND at < $3 \
                     AND outcome = 'success'",
                )
                .bind(member)
                .bind(from)
                .bind(to)
                .fetch_all(&self.read)
                .await
                .map_err($err)?;
                let mut out: Vec<DateTime<Utc>> = rows.into_iter().map(|r| r.0).collect();
                out.sort();
                Ok(out)
            }

            async fn days_put(&self, rows: &[$crate::access::attendance::DayRow]) -> Result<u64> {
                let mut tx = self.begin_tx().await?;
                let mut n = 0;
                for r in rows {
                    n += exec(&mut tx, q("INSERT INTO attendance_days (member_id, day, shift_id, status, first_at, last_at, late_minutes, final) \
                            VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (member_id, day) DO UPDATE SET \
                            shift_id = excluded.shift_id, status = excluded.status, first_at = excluded.first_at, \
                            last_at = excluded.last_at, late_minutes = excluded.late_minutes, final = excluded.final \
                            WHERE attendance_days.final = FALSE")
                        .bind(r.member_id).bind(r.day.clone()).bind(r.shift_id).bind(r.status.clone())
                        .bind(r.first_at).bind(r.last_at).bind(r.late_minutes).bind(r.final_)).await?;
                }
                tx.commit().await.map_err($err)?;
                Ok(n)
            }

            async fn days(&self, member: Uuid, from: &str, to: &str) -> Result<Vec<$crate::access::attendance::DayRow>> {
                sqlx::query_as(
                    "SELECT member_id, day, shift_id, status, first_at, last_at, late_minutes, final AS final_ \
                     FROM attendance_days WHERE member_id = $1 AND day >= $2 AND day <= $3 ORDER BY day",
                )
                .bind(member)
                .bind(from.to_owned())
                .bind(to.to_owned())
                .fetch_all(&self.read)
                .await
                .map_err($err)
            }
        }
    };
}
