//! Retention and legal holds. A retention rule keeps an org subtree's records for so many days
//! (none by default: records are kept for good); the nearest rule above a member's primary unit
//! applies to them. A legal hold on a member, or on a unit (and so its subtree), overrides every
//! rule. The `archive:purge` job deletes a message only when every member it belongs to is
//! under a rule, none is held, and it is older than the longest of their rules; messages that
//! belong to no member (an external sender in a group) are kept. Each purge batch is audited
//! with its counts, in the transaction that deletes.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use super::Archive;
use super::store::{HoldRow, Sealed};
use crate::directory::model::{Actor, AuditRecord};
use crate::directory::{DirectoryError, DirectoryResult};

text_enum! {
    /// What a legal hold covers.
    pub enum HoldTarget as "hold target" {
        Member = "member",
        /// A unit and everything under it.
        Unit = "unit",
    }
}

/// What a purge deleted.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    pub messages: u64,
    /// Messages looked at and kept (a held or unruled party, or too recent for one of them).
    pub kept: u64,
}

/// Candidates looked at a round.
const ROUND: i64 = 1000;

impl Archive {
    /// Sets (`Some(days)`, 1 to 36,500) or clears a subtree's retention, audited.
    pub async fn set_retention(&self, actor: &Actor, unit: Uuid, days: Option<i64>) -> DirectoryResult<()> {
        if let Some(d) = days
            && !(1..=36_500).contains(&d)
        {
            return Err(DirectoryError::invalid("days", "must be 1 to 36500 days"));
        }
        if self.directory.store().org_unit(unit).await?.is_none() {
            return Err(DirectoryError::NotFound { kind: "org unit", id: unit.to_string() });
        }
        let before =
            self.store.archive_retention().await?.into_iter().find(|r| r.unit_id == unit).map(|r| r.days);
        let at = Utc::now();
        let audit = AuditRecord::new(
            actor,
            at,
            "archive.retention",
            ("org_unit", Some(unit.to_string())),
            Some(&json!({ "days": before })),
            Some(&json!({ "days": days })),
        );
        Ok(self.store.archive_retention_set(&Sealed::new(), unit, days, &actor.who, at, &audit).await?)
    }

    /// Puts a legal hold on a member (current or deleted) or a unit, audited.
    pub async fn add_hold(
        &self,
        actor: &Actor,
        target: HoldTarget,
        id: Uuid,
        reason: &str,
    ) -> DirectoryResult<HoldRow> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 500 {
            return Err(DirectoryError::invalid("reason", "say why, in at most 500 characters"));
        }
        let read = self.directory.store();
        let exists = match target {
            HoldTarget::Member => read.member(id).await?.is_some() || read.tombstone(id).await?.is_some(),
            HoldTarget::Unit => read.org_unit(id).await?.is_some(),
        };
        if !exists {
            return Err(DirectoryError::NotFound { kind: target.as_str(), id: id.to_string() });
        }
        let hold = HoldRow {
            id: Uuid::now_v7(),
            target_kind: target.as_str().into(),
            target_id: id,
            reason: reason.into(),
            created_by: actor.who.clone(),
            created_at: Utc::now(),
            released_at: None,
        };
        let audit = AuditRecord::new(
            actor,
            hold.created_at,
            "archive.hold",
            ("archive_hold", Some(hold.id.to_string())),
            None,
            Some(&hold),
        );
        self.store.archive_hold_insert(&Sealed::new(), &hold, &audit).await?;
        Ok(hold)
    }

    /// Releases a live hold, audited.
    pub async fn release_hold(&self, actor: &Actor, id: Uuid) -> DirectoryResult<()> {
        let at = Utc::now();
        let audit = AuditRecord::new(
            actor,
            at,
            "archive.hold_release",
            ("archive_hold", Some(id.to_string())),
            None,
            Some(&json!({ "released_at": at })),
        );
        if self.store.archive_hold_release(&Sealed::new(), id, at, &audit).await? {
            Ok(())
        } else {
            Err(DirectoryError::NotFound { kind: "live hold", id: id.to_string() })
        }
    }

    /// Deletes what retention allows at `now` (the `archive:purge` job).
    pub async fn purge(&self, now: DateTime<Utc>) -> DirectoryResult<Purged> {
        let rules: HashMap<Uuid, i64> =
            self.store.archive_retention().await?.into_iter().map(|r| (r.unit_id, r.days)).collect();
        if rules.is_empty() {
            return Ok(Purged::default());
        }
        let holds: Vec<HoldRow> =
            self.store.archive_holds().await?.into_iter().filter(|h| h.released_at.is_none()).collect();
        let held_members: HashSet<Uuid> =
            holds.iter().filter(|h| h.target_kind == "member").map(|h| h.target_id).collect();
        let held_units: HashSet<Uuid> =
            holds.iter().filter(|h| h.target_kind == "unit").map(|h| h.target_id).collect();
        let mut policy =
            Policy { rules, held_members, held_units, units: HashMap::new(), members: HashMap::new() };

        // Everyone under a rule, by their days (current members, then deleted accounts).
        let read = self.directory.store();
        let mut by_days: HashMap<i64, Vec<Uuid>> = HashMap::new();
        let mut after = i64::MIN;
        loop {
            let page = read.members_page(after, 1000).await?;
            for m in &page {
                if let Some(d) = policy.days_for(self, m.id, m.primary_org_unit_id).await? {
                    by_days.entry(d).or_default().push(m.id);
                }
            }
            match page.last() {
                Some(m) if page.len() == 1000 => after = m.account_number,
                _ => break,
            }
        }
        for t in read.tombstones_recent(1_000_000).await? {
            if let Some(d) = policy.days_for(self, t.member_id, t.profile.primary_org_unit_id).await? {
                by_days.entry(d).or_default().push(t.member_id);
            }
        }
        let mut purged = Purged::default();
        let actor = Actor::system();
        for (days, members) in by_days {
            let cutoff = (now - chrono::Duration::days(days)).timestamp_micros();
            for chunk in members.chunks(500) {
                let mut after = (i64::MIN, i64::MIN);
                loop {
                    let candidates = self.store.archive_purge_candidates(chunk, cutoff, after, ROUND).await?;
                    let Some(&(last, at)) = candidates.last() else { break };
                    after = (at, last);
                    let ids: Vec<i64> = candidates.iter().map(|c| c.0).collect();
                    let sent: HashMap<i64, i64> = candidates.iter().copied().collect();
                    let mut parties: HashMap<i64, Vec<Uuid>> = HashMap::new();
                    for (msg, member) in self.store.archive_parties(&ids).await? {
                        parties.entry(msg).or_default().push(member);
                    }
                    let mut doomed = Vec::new();
                    for id in &ids {
                        let mut ok = true;
                        for p in parties.get(id).into_iter().flatten() {
                            let d = policy.days_for_member(self, *p).await?;
                            if !d.is_some_and(|d| {
                                sent[id] < (now - chrono::Duration::days(d)).timestamp_micros()
                            }) {
                                ok = false;
                                break;
                            }
                        }
                        if ok {
                            doomed.push(*id);
                        } else {
                            purged.kept += 1;
                        }
                    }
                    if !doomed.is_empty() {
                        let audit = AuditRecord::new(
                            &actor,
                            Utc::now(),
                            "archive.purge",
                            ("archive", None),
                            None,
                            Some(
                                &json!({ "messages": doomed.len(), "retention_days": days, "before": now - chrono::Duration::days(days) }),
                            ),
                        );
                        purged.messages += self.store.archive_delete(&Sealed::new(), &doomed, &audit).await?;
                    }
                    if (candidates.len() as i64) < ROUND {
                        break;
                    }
                }
            }
        }
        if purged.messages > 0 {
            tracing::info!(messages = purged.messages, kept = purged.kept, "archive: retention purge");
        }
        Ok(purged)
    }
}

/// Which rule applies to whom (cached for one purge).
struct Policy {
    rules: HashMap<Uuid, i64>,
    held_members: HashSet<Uuid>,
    held_units: HashSet<Uuid>,
    /// A unit's rule: `None` held or unruled.
    units: HashMap<Uuid, Option<i64>>,
    members: HashMap<Uuid, Option<i64>>,
}

impl Policy {
    async fn days_for(
        &mut self,
        archive: &Archive,
        member: Uuid,
        unit: Option<Uuid>,
    ) -> DirectoryResult<Option<i64>> {
        if let Some(d) = self.members.get(&member) {
            return Ok(*d);
        }
        let d = if self.held_members.contains(&member) {
            None
        } else {
            match unit {
                None => None,
                Some(u) => match self.units.get(&u) {
                    Some(d) => *d,
                    None => {
                        let path = archive.directory.store().org_unit_ancestors(u).await?;
                        let d = if path.iter().any(|p| self.held_units.contains(p)) {
                            None
                        } else {
                            path.iter().find_map(|p| self.rules.get(p).copied())
                        };
                        self.units.insert(u, d);
                        d
                    }
                },
            }
        };
        self.members.insert(member, d);
        Ok(d)
    }

    /// The days for a member identity seen as a message's party (current or deleted).
    async fn days_for_member(&mut self, archive: &Archive, member: Uuid) -> DirectoryResult<Option<i64>> {
        if let Some(d) = self.members.get(&member) {
            return Ok(*d);
        }
        let read = archive.directory.store();
        let unit = match read.member(member).await? {
            Some(m) => m.primary_org_unit_id,
            None => read.tombstone(member).await?.and_then(|t| t.profile.primary_org_unit_id),
        };
        self.days_for(archive, member, unit).await
    }
}

/// The archive's scheduled work ([`crate::jobs`]): running queued exports (every 5 seconds)
/// and expiring old export files, and the retention purge (`archive.purge_schedule`).
pub fn jobs(archive: &Archive) -> Vec<crate::jobs::Job> {
    let exports = archive.clone();
    let purge = archive.clone();
    let every5: cron::Schedule = "*/5 * * * * *".parse().expect("a valid cron expression");
    let mut jobs = vec![crate::jobs::Job::new("archive:exports", every5, move || {
        let a = exports.clone();
        async move {
            a.run_queued_exports().await?;
            Ok(())
        }
    })];
    match archive.cfg.purge_schedule.parse::<cron::Schedule>() {
        Ok(schedule) => jobs.push(crate::jobs::Job::new("archive:purge", schedule, move || {
            let a = purge.clone();
            async move {
                a.purge(Utc::now()).await?;
                Ok(())
            }
        })),
        Err(e) => {
            tracing::error!(error = %e, "archive.purge_schedule is not a cron expression; no retention purge")
        }
    }
    jobs
}
