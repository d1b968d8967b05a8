//! [`DirectoryService`]: validate, write in one transaction, audit, queue notifications.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::change::*;
use super::model::*;
use super::store::{DirectoryRead, DirectoryStore, DirectoryTx, StoreError, Tree, Versioned, WriteKey};
use super::{NewEnterprise, NumberBlock};
use super::{numbers, validate};

/// The current time at the precision both stores keep (PostgreSQL: microseconds), so what a
/// change returns equals what a later read returns.
fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// The one write path of the directory. Cheap to clone.
#[derive(Clone)]
pub struct DirectoryService {
    store: Arc<dyn DirectoryStore>,
    /// The same store, read-only: what adapters get.
    read: Arc<dyn DirectoryRead>,
    numbers: NumberBlock,
    /// Change sets waiting to be written together (group commit).
    commits: Arc<commit::Queue>,
}

#[path = "commit.rs"]
mod commit;

/// Everything one change needs: the open transaction, who asks, and when. Audit and outbox
/// rows collect here and go to the store together before the commit ([`Applying::flush`]): a
/// thousand-change set writes them in a few statements, not two thousand.
struct Applying<'a> {
    tx: &'a mut dyn DirectoryTx,
    actor: &'a Actor,
    now: DateTime<Utc>,
    mail_domain: String,
    audit: Vec<AuditRecord>,
    outbox: Vec<OutboxRecord>,
    /// See [`numbers::allocate`].
    numbers_clear_above: Option<bool>,
    /// Numbers taken for this transaction's creates in one go ([`numbers::take_block`]).
    number_pool: std::collections::VecDeque<i64>,
    /// Org units this transaction has already seen exist (they cannot vanish within it
    /// without this transaction deleting them, which forgets them again).
    units_seen: std::collections::HashSet<Uuid>,
    /// The next free position under a parent, once this transaction has asked for it (it
    /// holds the write lock, so only its own creates move it).
    next_position: std::collections::HashMap<Option<Uuid>, i64>,
    /// The index of the change being applied.
    index: usize,
    /// Members, org units and groups created and not yet written ([`Applying::write_pending`]).
    pending: Pending,
    /// What the change set's creates of org units and groups need to know, read up front.
    known: Known,
    /// The argon2 hashes of the passwords in the set, by change index, made before the
    /// transaction began ([`DirectoryService::hash_passwords`]): hashing holds no writer.
    hashes: std::collections::HashMap<usize, String>,
    /// For a quarantining source ([`Source::quarantines`]): the mobile numbers and e-mail
    /// addresses of the set's creates that members in the store hold, read up front, kept true
    /// as members are written, updated and deleted in the set.
    held: std::collections::HashSet<(&'static str, String)>,
}

/// The unique values a quarantining source's member may go without: `(field, value)` pairs
/// with field `mobile` or `email`.
type KeptAside = Vec<(String, String)>;

/// Takes `value` out of the member's `field` (`mobile` or `email`); the first remaining e-mail
/// becomes the primary one when the primary went.
fn set_aside(m: &mut Member, field: &str, value: &str) {
    match field {
        "mobile" => m.mobile = None,
        _ => {
            let was_primary = m.emails.iter().any(|e| e.address == value && e.primary);
            m.emails.retain(|e| e.address != value);
            if was_primary && let Some(first) = m.emails.first_mut() {
                first.primary = true;
            }
        }
    }
}

/// The field name as the store's conflicts name it, for the fields that can be kept aside.
fn quarantinable(field: &str) -> Option<&'static str> {
    match field {
        "mobile" => Some("mobile"),
        "email" => Some("email"),
        _ => None,
    }
}

/// Facts about the store read at the start of a change set for its creates of org units and
/// groups: a few queries for the whole set instead of several for each create. The creates
/// keep them true as they go; any other change forgets them (later creates in the set ask the
/// store again), so no change has to say how it would alter them.
#[derive(Default)]
struct Known {
    /// Org unit ids asked about: each exists if and only if `units_seen` holds it.
    unit_ids: std::collections::HashSet<Uuid>,
    /// The names of all the children of each parent asked about (`None`: the root units).
    unit_names: std::collections::HashMap<Option<Uuid>, std::collections::HashSet<String>>,
    /// Anchors in the actor's source asked about, with the org unit or group holding each.
    unit_anchors: std::collections::HashMap<String, Option<Uuid>>,
    group_anchors: std::collections::HashMap<String, Option<Uuid>>,
    /// Member ids asked about, and those of them that exist (or were created since).
    member_ids: std::collections::HashSet<Uuid>,
    members_seen: std::collections::HashSet<Uuid>,
}

impl Known {
    /// Whether the change leaves the facts as its own bookkeeping keeps them.
    fn kept_by(change: &Change) -> bool {
        matches!(
            change,
            Change::CreateOrgUnit(_)
                | Change::CreateMember(_)
                | Change::CreateGroup(_)
                | Change::SetSyncCursor { .. }
        )
    }
}

/// New members held back so that a change set's creates reach the store together: their
/// uniqueness is checked against each other here and against the store in a few queries, and
/// they are inserted in multi-row statements. Any change other than a plain create writes them
/// first, so every other change sees the store as if each create had been written at once.
#[derive(Default)]
struct Pending {
    members: Vec<Member>,
    password_hashes: Vec<Option<String>>,
    /// The change index of each member.
    index: Vec<usize>,
    /// Ids the caller chose (generated ones cannot collide).
    chosen_ids: Vec<Uuid>,
    /// Every pending member's id, to the member.
    ids: foldhash::HashMap<Uuid, usize>,
    /// Values kept aside for pending members (by their index), written with them.
    kept_aside: std::collections::HashMap<usize, KeptAside>,
    /// Every unique value but the id, by field (see [`Pending::FIELDS`]), to its member. Looked
    /// up by `&str`, so a check allocates nothing (100,000 creates ask four or five times each).
    values: [foldhash::HashMap<String, usize>; 4],
    /// Org units the members refer to that this transaction has not seen yet, with the first
    /// member that does.
    units: std::collections::HashMap<Uuid, usize>,
    /// New org units (checked when created), with the change index of the first.
    org_units: Vec<OrgUnit>,
    first_unit: usize,
    /// `(parent, name)` of the held-back org units.
    unit_names: std::collections::HashSet<(Option<Uuid>, String)>,
    /// New groups and their members (checked when created), with the change index of the first.
    groups: Vec<(Group, Vec<Uuid>)>,
    first_group: usize,
    group_ids: std::collections::HashSet<Uuid>,
}

impl Pending {
    /// The unique fields kept in `values`, as the store names them in conflicts.
    const FIELDS: [&'static str; 4] = ["login_name", "email", "mobile", "anchor"];

    /// `(index into FIELDS, value)` of every unique value but the id.
    fn unique_values(m: &Member) -> impl Iterator<Item = (usize, &str)> + '_ {
        std::iter::once((0, m.login_name.as_str()))
            .chain(m.emails.iter().map(|e| (1, e.address.as_str())))
            .chain(m.mobile.iter().map(|v| (2, v.as_str())))
            .chain(m.anchor.iter().map(|v| (3, v.as_str())))
    }

    /// The first value of `m` that a pending member already holds.
    fn conflict(&self, m: &Member) -> Option<(&'static str, String)> {
        Pending::unique_values(m)
            .find(|(field, value)| self.values[*field].contains_key(*value))
            .map(|(field, value)| (Pending::FIELDS[field], value.to_owned()))
            .or_else(|| self.ids.contains_key(&m.id).then(|| ("id", m.id.to_string())))
    }

    /// The pending member holding `value` in the unique `field` the store named.
    fn holder(&self, field: &str, value: &str) -> Option<usize> {
        match Pending::FIELDS.iter().position(|f| *f == field) {
            Some(at) => self.values[at].get(value).copied(),
            None => Uuid::parse_str(value).ok().and_then(|id| self.ids.get(&id).copied()),
        }
    }

    fn push(
        &mut self,
        index: usize,
        m: Member,
        password_hash: Option<String>,
        chosen_id: bool,
        kept_aside: KeptAside,
    ) {
        let at = self.members.len();
        if !kept_aside.is_empty() {
            self.kept_aside.insert(at, kept_aside);
        }
        for (field, value) in Pending::unique_values(&m) {
            self.values[field].insert(value.to_owned(), at);
        }
        if chosen_id {
            self.chosen_ids.push(m.id);
        }
        self.ids.insert(m.id, at);
        self.index.push(index);
        self.members.push(m);
        self.password_hashes.push(password_hash);
    }
}

impl<'a> Applying<'a> {
    fn new(
        tx: &'a mut dyn DirectoryTx,
        actor: &'a Actor,
        now: DateTime<Utc>,
        mail_domain: String,
    ) -> Applying<'a> {
        Applying {
            tx,
            actor,
            now,
            mail_domain,
            audit: Vec::new(),
            outbox: Vec::new(),
            numbers_clear_above: None,
            number_pool: Default::default(),
            units_seen: Default::default(),
            next_position: Default::default(),
            index: 0,
            pending: Pending::default(),
            known: Known::default(),
            hashes: Default::default(),
            held: Default::default(),
        }
    }

    /// Reads what the creates of org units and groups in `changes` need to know ([`Known`]).
    async fn learn(&mut self, changes: &[Change]) -> DirectoryResult<()> {
        use std::collections::HashSet;
        let (mut unit_ids, mut parents, mut unit_anchors) = (HashSet::new(), HashSet::new(), HashSet::new());
        let (mut group_anchors, mut members) = (HashSet::new(), HashSet::new());
        for change in changes {
            match change {
                Change::CreateOrgUnit(n) => {
                    unit_ids.extend(n.id.iter().chain(n.parent_id.iter()).copied());
                    parents.insert(n.parent_id);
                    unit_anchors.extend(n.anchor.iter().cloned());
                }
                Change::CreateGroup(n) => {
                    group_anchors.extend(n.anchor.iter().cloned());
                    members.extend(n.members.iter().chain(n.owner_id.iter()).copied());
                }
                _ => {}
            }
        }
        if self.actor.source.quarantines() {
            self.learn_held(changes).await?;
        }
        let source = self.actor.source.as_str().to_owned();
        let k = &mut self.known;
        if !unit_ids.is_empty() {
            let ids: Vec<Uuid> = unit_ids.iter().copied().collect();
            self.units_seen.extend(self.tx.org_units_existing(&ids).await?);
            k.unit_ids.extend(unit_ids);
        }
        if !parents.is_empty() {
            let asked: Vec<Option<Uuid>> = parents.into_iter().collect();
            for p in &asked {
                k.unit_names.entry(*p).or_default();
            }
            let mut next: std::collections::HashMap<Option<Uuid>, i64> =
                asked.iter().map(|p| (*p, 0)).collect();
            for (parent, name, position) in self.tx.org_units_children(&asked).await? {
                let n = next.entry(parent).or_default();
                *n = (*n).max(position + 1);
                k.unit_names.entry(parent).or_default().insert(name);
            }
            for (parent, n) in next {
                self.next_position.entry(parent).or_insert(n);
            }
        }
        for (tree, asked, map) in [
            (Tree::OrgUnits, unit_anchors, &mut k.unit_anchors),
            (Tree::Groups, group_anchors, &mut k.group_anchors),
        ] {
            if asked.is_empty() {
                continue;
            }
            let list: Vec<String> = asked.into_iter().collect();
            let held = self.tx.anchors_held(tree, &source, &list).await?;
            map.extend(list.into_iter().map(|a| (a, None)));
            map.extend(held.into_iter().map(|(a, id)| (a, Some(id))));
        }
        if !members.is_empty() {
            let ids: Vec<Uuid> = members.iter().copied().collect();
            k.members_seen.extend(self.tx.members_existing(&ids).await?);
            k.member_ids.extend(members);
        }
        Ok(())
    }

    /// Which mobile numbers and e-mail addresses of the set's creates members in the store
    /// already hold ([`Applying::held`]): one query for the set, so that each create keeps its
    /// conflicting values aside before it is audited and announced.
    async fn learn_held(&mut self, changes: &[Change]) -> DirectoryResult<()> {
        let probes: Vec<Member> = changes
            .iter()
            .filter_map(|c| match c {
                Change::CreateMember(n) => Some(n),
                _ => None,
            })
            .map(|n| Member {
                id: Uuid::nil(),
                account_number: 0,
                login_name: String::new(),
                display_name: String::new(),
                given_name: None,
                family_name: None,
                emails: n
                    .emails
                    .iter()
                    .filter_map(|e| validate::email_address(&e.address).ok())
                    .map(|address| Email { address, kind: String::new(), primary: false })
                    .collect(),
                mobile: validate::mobile(n.mobile.as_deref()).ok().flatten(),
                phones: Vec::new(),
                title: None,
                employee_number: None,
                department: None,
                organization: None,
                division: None,
                cost_center: None,
                primary_org_unit_id: None,
                org_unit_ids: Vec::new(),
                manager_id: None,
                state: MemberState::Active,
                source: self.actor.source.clone(),
                anchor: None,
                version: 0,
                created_at: self.now,
                updated_at: self.now,
            })
            .filter(|m| m.mobile.is_some() || !m.emails.is_empty())
            .collect();
        if probes.is_empty() {
            return Ok(());
        }
        for (field, value) in self.tx.members_conflicts(&probes, &[]).await? {
            if let Some(field) = quarantinable(&field) {
                self.held.insert((field, value));
            }
        }
        Ok(())
    }

    /// After a member let go of values (`before` to `after`: changed or deleted), each one that
    /// another member has been waiting for (kept aside) goes to the one that waited longest, in
    /// this transaction: a conflict resolves the moment it is gone, whoever's change resolved it.
    async fn hand_over_released(&mut self, before: &Member, after: Option<&Member>) -> DirectoryResult<()> {
        let mut released: Vec<(&'static str, String)> = Vec::new();
        if let Some(v) = &before.mobile
            && after.is_none_or(|a| a.mobile.as_ref() != Some(v))
        {
            released.push(("mobile", v.clone()));
        }
        for e in &before.emails {
            if after.is_none_or(|a| !a.emails.iter().any(|x| x.address == e.address)) {
                released.push(("email", e.address.clone()));
            }
        }
        for (field, value) in released {
            let Some((waiting, was, mut m)) = self.next_taker(field, &value).await? else { continue };
            m.version += 1;
            m.updated_at = self.now;
            self.tx.member_update(&m).await?;
            self.tx.quarantine_release(waiting, field, &value).await?;
            self.track_held(Some(&was), Some(&m));
            self.audit(
                "member.quarantine_released",
                "member",
                Some(waiting.to_string()),
                Some(&was),
                Some(&m),
            )
            .await?;
            self.notify_member("member.updated.update", &m).await?;
        }
        Ok(())
    }

    /// The member that has waited longest for `value` in `field` and can take it, locked, as it
    /// is and with the value; a waiter that has another value there now (or is gone) no longer
    /// waits and is passed over.
    async fn next_taker(
        &mut self,
        field: &str,
        value: &str,
    ) -> DirectoryResult<Option<(Uuid, Member, Member)>> {
        while let Some(waiting) = self.tx.quarantine_waiting(field, value).await? {
            self.tx.member_lock(waiting).await?;
            if let Some(was) = self.tx.member(waiting).await? {
                let mut m = was.clone();
                let takes = match field {
                    "mobile" => m.mobile.is_none(),
                    _ => !m.emails.iter().any(|e| e.address == value),
                };
                if takes {
                    if field == "mobile" {
                        m.mobile = Some(value.to_owned());
                    } else {
                        let primary = m.emails.is_empty();
                        m.emails.push(Email { address: value.to_owned(), kind: "work".into(), primary });
                    }
                    return Ok(Some((waiting, was, m)));
                }
            }
            self.tx.quarantine_release(waiting, field, value).await?;
        }
        Ok(None)
    }

    /// Keeps the held values true after a member's values changed in this set.
    fn track_held(&mut self, before: Option<&Member>, after: Option<&Member>) {
        if !self.actor.source.quarantines() {
            return;
        }
        for m in before.into_iter() {
            self.held.remove(&("mobile", m.mobile.clone().unwrap_or_default()));
            for e in &m.emails {
                self.held.remove(&("email", e.address.clone()));
            }
        }
        for m in after.into_iter() {
            if let Some(v) = &m.mobile {
                self.held.insert(("mobile", v.clone()));
            }
            for e in &m.emails {
                self.held.insert(("email", e.address.clone()));
            }
        }
    }

    /// Records the values a write kept aside for a member: the member's quarantine in the
    /// `fields` the write carried is replaced by `kept`, and audited when anything is kept.
    async fn keep_aside(&mut self, id: Uuid, fields: &[&str], kept: &KeptAside) -> DirectoryResult<()> {
        if fields.is_empty() {
            return Ok(());
        }
        let source = self.actor.source.as_str().to_owned();
        // Audited when something is newly kept aside (not when a write finds it still held).
        if self.tx.quarantine_set(id, fields, kept, &source, self.now).await? > 0 {
            let detail: Vec<serde_json::Value> =
                kept.iter().map(|(f, v)| json!({ "field": f, "value": v })).collect();
            let detail = json!({ "kept_aside": detail, "reason": "held by another member" });
            self.audit("member.quarantine", "member", Some(id.to_string()), None, Some(&detail)).await?;
        }
        Ok(())
    }

    /// Checks the pending members against the store and writes them. An error names the
    /// earliest change at fault.
    async fn write_pending(&mut self) -> Result<(), (usize, DirectoryError)> {
        let mut p = std::mem::take(&mut self.pending);
        if !p.org_units.is_empty() {
            self.tx.org_units_insert(&p.org_units).await.map_err(|e| (p.first_unit, e.into()))?;
        }
        let (groups, first_group) = (std::mem::take(&mut p.groups), p.first_group);
        self.write_pending_members(p).await?;
        if !groups.is_empty() {
            self.tx.groups_insert(&groups).await.map_err(|e| (first_group, e.into()))?;
        }
        Ok(())
    }

    async fn write_pending_members(&mut self, p: Pending) -> Result<(), (usize, DirectoryError)> {
        if p.members.is_empty() {
            return Ok(());
        }
        let first = p.index[0];
        if !p.units.is_empty() {
            let wanted: Vec<Uuid> = p.units.keys().copied().collect();
            let found = self.tx.org_units_existing(&wanted).await.map_err(|e| (first, e.into()))?;
            self.units_seen.extend(found.iter().copied());
            // (A create that failed after its check left an entry past the end: skipped.)
            let missing = p
                .units
                .iter()
                .filter(|(u, at)| **at < p.index.len() && !self.units_seen.contains(u))
                .min_by_key(|(_, at)| **at);
            if let Some((unit, at)) = missing {
                return Err((
                    p.index[*at],
                    DirectoryError::invalid("org_unit_ids", format!("org unit {unit} does not exist")),
                ));
            }
        }
        let conflicts =
            self.tx.members_conflicts(&p.members, &p.chosen_ids).await.map_err(|e| (first, e.into()))?;
        let earliest = conflicts
            .into_iter()
            .map(|(field, value)| {
                let at = p.holder(&field, &value).unwrap_or(0);
                (at, field, value)
            })
            .min_by_key(|c| c.0);
        if let Some((at, field, value)) = earliest {
            return Err((p.index[at], DirectoryError::Conflict { field, value }));
        }
        self.tx.members_insert(&p.members, &p.password_hashes).await.map_err(|e| (first, e.into()))?;
        for (i, m) in p.members.iter().enumerate() {
            self.track_held(None, Some(m));
            if let Some(kept) = p.kept_aside.get(&i) {
                self.keep_aside(m.id, &["mobile", "email"], kept).await.map_err(|e| (p.index[i], e))?;
            }
        }
        for (i, (m, hash)) in p.members.iter().zip(&p.password_hashes).enumerate() {
            if let Some(hash) = hash {
                let set_by = password_setter(self.actor, m);
                self.tx
                    .member_set_password(m.id, Some(hash), Some(&set_by))
                    .await
                    .map_err(|e| (p.index[i], e.into()))?;
            }
        }
        Ok(())
    }

    /// Writes the collected audit and outbox rows; call before committing.
    async fn flush(&mut self) -> DirectoryResult<()> {
        self.tx.audit_insert(&std::mem::take(&mut self.audit)).await?;
        self.tx.outbox_insert(&std::mem::take(&mut self.outbox)).await?;
        Ok(())
    }

    async fn audit<T: Serialize>(
        &mut self,
        action: &str,
        object_kind: &str,
        object_id: Option<String>,
        before: Option<&T>,
        after: Option<&T>,
    ) -> DirectoryResult<()> {
        let entry = AuditRecord::new(self.actor, self.now, action, (object_kind, object_id), before, after);
        self.audit.push(entry);
        Ok(())
    }

    /// Queues a notification about a member; receivers de-duplicate on kind, id and version.
    async fn notify_member(&mut self, kind: &str, m: &Member) -> DirectoryResult<()> {
        /// What receivers learn about the member.
        #[derive(Serialize)]
        struct Payload<'m> {
            member_id: Uuid,
            account_number: i64,
            login_name: &'m str,
            display_name: &'m str,
            emails: &'m [Email],
            mobile: &'m Option<String>,
            state: MemberState,
        }
        let payload = Payload {
            member_id: m.id,
            account_number: m.account_number,
            login_name: &m.login_name,
            display_name: &m.display_name,
            emails: &m.emails,
            mobile: &m.mobile,
            state: m.state,
        };
        let msg = OutboxRecord {
            id: Uuid::now_v7(),
            created_at: self.now,
            kind: kind.to_owned(),
            idempotency_key: format!("{kind}:{}:{}", m.id, m.version),
            // Plain data with string keys: serialising it cannot fail.
            payload: serde_json::to_string(&payload).unwrap_or_else(|_| "{}".into()),
        };
        self.outbox.push(msg);
        Ok(())
    }

    fn ensure_owner(&self, kind: &'static str, id: Uuid, owner: &Source) -> DirectoryResult<()> {
        if &self.actor.source == owner {
            return Ok(());
        }
        Err(DirectoryError::NotOwner {
            kind,
            id,
            owner: owner.to_string(),
            actor: self.actor.source.to_string(),
        })
    }
}

impl DirectoryService {
    pub fn new(store: Arc<dyn DirectoryStore>, numbers: NumberBlock) -> DirectoryService {
        let read: Arc<dyn DirectoryRead> = store.clone();
        DirectoryService { store, read, numbers, commits: Arc::new(commit::Queue::new(true)) }
    }

    /// Group commit on (the default) or off (`database.group_commit`): off, each change set is
    /// a transaction of its own, as the benchmark compares.
    pub fn with_group_commit(mut self, on: bool) -> DirectoryService {
        self.commits = Arc::new(commit::Queue::new(on));
        self
    }

    /// Group commit so far: `(transactions, change sets)` its writer wrote (sets written while
    /// the queue was empty count as transactions of one).
    pub fn commit_stats(&self) -> (u64, u64) {
        self.commits.stats()
    }

    /// The directory, read-only. Every write goes through [`Self::apply`] (or the few other
    /// methods here), each in one transaction with its audit rows.
    pub fn store(&self) -> &Arc<dyn DirectoryRead> {
        &self.read
    }

    /// Stores the digests of members that have none (`members.sync_digest`, a cache a sync
    /// keeps of [`Member::digest`]; see [`MemberTx::member_digests_fill`]). Not a change to
    /// any member, so not audited. Returns how many were stored.
    pub async fn fill_digests(&self, members: &[(Uuid, i64, i64)]) -> Result<u64, StoreError> {
        let mut tx = self.store.begin(WriteKey::new()).await?;
        let n = tx.member_digests_fill(members).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Applies a change set in order, all or nothing.
    ///
    /// Change sets that arrive while another is being written wait and are written together,
    /// in one transaction (group commit, [`commit`]): each between savepoints, so one set's
    /// error leaves the others as if it had never been tried, and each caller gets its own
    /// result once the transaction commits. Numbers stay consecutive in commit order; every
    /// check, audit row and outbox row is as for a set written alone.
    pub async fn apply(&self, actor: &Actor, changes: Vec<Change>) -> Result<Vec<Applied>, ChangeError> {
        let hashes = hash_passwords(&changes).await?;
        let set = commit::Set { actor: actor.clone(), changes, hashes };
        if self.commits.grouped() { commit::submit(self, set).await } else { self.apply_alone(set).await }
    }

    /// One change set in a transaction of its own.
    async fn apply_alone(&self, set: commit::Set) -> Result<Vec<Applied>, ChangeError> {
        let at = |index| move |error| ChangeError { index, error };
        let mut tx =
            self.store.begin(WriteKey::new()).await.map_err(|e| at(0)(DirectoryError::from_store(e)))?;
        let enterprise = tx
            .enterprise()
            .await
            .map_err(|e| at(0)(e.into()))?
            .ok_or_else(|| at(0)(DirectoryError::NoEnterprise))?;
        let out = self.apply_in(tx.as_mut(), enterprise.mail_domain, set).await?;
        let last = out.len().saturating_sub(1);
        tx.commit().await.map_err(|e| at(last)(DirectoryError::from_store(e)))?;
        Ok(out)
    }

    /// Writes one change set into the open transaction `tx` (not committed).
    async fn apply_in(
        &self,
        tx: &mut dyn DirectoryTx,
        mail_domain: String,
        set: commit::Set,
    ) -> Result<Vec<Applied>, ChangeError> {
        let at = |index| move |error| ChangeError { index, error };
        let commit::Set { actor, changes, hashes } = set;
        let mut ctx = Applying::new(tx, &actor, now(), mail_domain);
        ctx.hashes = hashes;
        // A set that creates members and names no numbers takes its numbers as one block.
        let fresh = changes
            .iter()
            .filter(|c| matches!(c, Change::CreateMember(m) if m.account_number.is_none()))
            .count();
        let explicit = changes.iter().any(|c| {
            matches!(c, Change::ReserveNumber { .. })
                || matches!(c, Change::CreateMember(m) if m.account_number.is_some())
        });
        if fresh > 1 && !explicit {
            ctx.number_pool =
                numbers::take_block(ctx.tx, &self.numbers, fresh).await.map_err(|e| at(0)(e))?;
        }
        let fix = |e| match e {
            DirectoryError::Store(s) => DirectoryError::from_store(s),
            e => e,
        };
        ctx.learn(&changes).await.map_err(|e| at(0)(fix(e)))?;
        let mut out = Vec::with_capacity(changes.len());
        for (i, change) in changes.into_iter().enumerate() {
            ctx.index = i;
            // Creates wait to be written together; any other change sees them written first.
            let held_back = matches!(&change, Change::CreateMember(n) if n.account_number.is_none())
                || matches!(&change, Change::CreateOrgUnit(_) | Change::CreateGroup(_));
            // Members created before a unit are checked without it: it did not exist for them.
            let after_members =
                matches!(&change, Change::CreateOrgUnit(_)) && !ctx.pending.members.is_empty();
            if !held_back || after_members {
                ctx.write_pending().await.map_err(|(j, e)| at(j)(fix(e)))?;
            }
            if !Known::kept_by(&change) {
                ctx.known = Known::default();
            }
            match self.apply_one_in(&mut ctx, change).await {
                Ok(applied) => out.push(applied),
                Err(e) => {
                    // A held-back create may be the first change at fault (unless the store
                    // failed, which leaves a PostgreSQL transaction unusable).
                    if !matches!(e, DirectoryError::Store(_))
                        && let Err((j, earlier)) = ctx.write_pending().await
                        && j < i
                        && !matches!(earlier, DirectoryError::Store(_))
                    {
                        return Err(at(j)(earlier));
                    }
                    return Err(at(i)(fix(e)));
                }
            }
        }
        let last = out.len().saturating_sub(1);
        ctx.write_pending().await.map_err(|(j, e)| at(j)(fix(e)))?;
        ctx.flush().await.map_err(|e| at(last)(e))?;
        Ok(out)
    }

    /// Applies a single change.
    pub async fn apply_one(&self, actor: &Actor, change: Change) -> DirectoryResult<Applied> {
        let mut out = self.apply(actor, vec![change]).await.map_err(|e| e.error)?;
        Ok(out.remove(0))
    }

    async fn apply_one_in(&self, ctx: &mut Applying<'_>, change: Change) -> DirectoryResult<Applied> {
        match change {
            Change::UpdateEnterprise(p) => update_enterprise(ctx, p).await,
            Change::CreateOrgUnit(n) => create_org_unit(ctx, n).await,
            Change::UpdateOrgUnit { id, name, anchor } => update_org_unit(ctx, id, name, anchor).await,
            Change::MoveOrgUnit { id, parent_id, position } => {
                move_org_unit(ctx, id, parent_id, position).await
            }
            Change::DeleteOrgUnit { id } => delete_org_unit(ctx, id).await,
            Change::CreateMember(n) => self.create_member(ctx, n).await,
            Change::UpdateMember { id, patch } => update_member(ctx, id, patch).await,
            Change::DeleteMember { id, reason } => delete_member(ctx, id, reason).await,
            Change::AdoptMember { id, anchor } => adopt_member(ctx, id, anchor).await,
            Change::CreateGroup(n) => create_group(ctx, n).await,
            Change::UpdateGroup { id, name, owner_id, anchor } => {
                update_group(ctx, id, name, owner_id, anchor).await
            }
            Change::AddGroupMembers { id, members } => group_members(ctx, id, members, true).await,
            Change::RemoveGroupMembers { id, members } => group_members(ctx, id, members, false).await,
            Change::DeleteGroup { id } => delete_group(ctx, id).await,
            Change::ReserveNumber { number, note } => self.reserve(ctx, number, note).await,
            Change::ReleaseReservation { number } => release_reservation(ctx, number).await,
            Change::CreateRole(n) => create_role(ctx, n).await,
            Change::UpdateRole { id, name, permissions } => update_role(ctx, id, name, permissions).await,
            Change::DeleteRole { id } => delete_role(ctx, id).await,
            Change::GrantRole { role_id, member_id, scope_unit_id } => {
                grant_role(ctx, role_id, member_id, scope_unit_id).await
            }
            Change::RevokeRole { role_id, member_id } => revoke_role(ctx, role_id, member_id).await,
            Change::ExpectVersion { kind, id, version } => {
                let Some(versioned) = Versioned::parse(&kind) else {
                    let known = "must be member, org_unit, group or role";
                    return Err(DirectoryError::invalid("kind", known));
                };
                let current = ctx.tx.version_of(versioned, id).await?;
                match current {
                    None => Err(DirectoryError::NotFound { kind: "object", id: id.to_string() }),
                    Some(current) if current != version => Err(DirectoryError::Stale { kind, id, current }),
                    Some(_) => Ok(Applied::VersionChecked),
                }
            }
            Change::SetSyncCursor { source, cursor } => {
                ctx.tx.sync_cursor_set(&source, &cursor).await?;
                Ok(Applied::SyncCursor)
            }
        }
    }

    async fn create_member(&self, ctx: &mut Applying<'_>, n: NewMember) -> DirectoryResult<Applied> {
        let id = n.id.unwrap_or_else(Uuid::now_v7);
        let mut m = Member {
            id,
            account_number: 0,
            login_name: validate::login_name(&n.login_name, &ctx.mail_domain)?,
            display_name: validate::display_name(&n.display_name)?,
            given_name: validate::member_text("given_name", n.given_name.as_deref())?,
            family_name: validate::member_text("family_name", n.family_name.as_deref())?,
            emails: validate::emails(&n.emails)?,
            mobile: validate::mobile(n.mobile.as_deref())?,
            phones: validate::phones(&n.phones)?,
            title: validate::member_text("title", n.title.as_deref())?,
            employee_number: validate::member_text("employee_number", n.employee_number.as_deref())?,
            department: validate::member_text("department", n.department.as_deref())?,
            organization: validate::member_text("organization", n.organization.as_deref())?,
            division: validate::member_text("division", n.division.as_deref())?,
            cost_center: validate::member_text("cost_center", n.cost_center.as_deref())?,
            primary_org_unit_id: n.primary_org_unit_id,
            org_unit_ids: n.org_unit_ids,
            manager_id: n.manager_id,
            state: n.state,
            source: ctx.actor.source.clone(),
            anchor: validate::member_text("anchor", n.anchor.as_deref())?,
            version: 1,
            created_at: ctx.now,
            updated_at: ctx.now,
        };
        // A quarantining source's member goes without a mobile or e-mail another member holds
        // (in the store or earlier in this set); anything else that collides refuses it.
        let quarantining = ctx.actor.source.quarantines();
        let mut kept: KeptAside = Vec::new();
        if quarantining {
            let held: Vec<(&'static str, String)> = Pending::unique_values(&m)
                .filter_map(|(f, v)| quarantinable(Pending::FIELDS[f]).map(|f| (f, v.to_owned())))
                .filter(|key| ctx.held.contains(key))
                .collect();
            for (field, value) in held {
                set_aside(&mut m, field, &value);
                kept.push((field.to_owned(), value));
            }
        }
        while let Some((field, value)) = ctx.pending.conflict(&m) {
            match quarantinable(field) {
                Some(field) if quarantining => {
                    set_aside(&mut m, field, &value);
                    kept.push((field.to_owned(), value));
                }
                _ => return Err(DirectoryError::Conflict { field: field.into(), value }),
            }
        }
        check_member(ctx, &mut m, true).await?;
        let pooled = if n.account_number.is_none() { ctx.number_pool.pop_front() } else { None };
        m.account_number = match pooled {
            Some(number) => number,
            None => {
                numbers::allocate(
                    ctx.tx,
                    &self.numbers,
                    n.account_number,
                    ctx.now,
                    &mut ctx.numbers_clear_above,
                )
                .await?
            }
        };
        let hash = ctx.hashes.remove(&ctx.index);
        ctx.audit("member.create", "member", Some(m.id.to_string()), None, Some(&m)).await?;
        ctx.notify_member("member.created", &m).await?;
        // Written by `Applying::write_pending`, before the next change that is not such a create.
        ctx.pending.push(ctx.index, m.clone(), hash, n.id.is_some(), kept);
        ctx.known.members_seen.insert(id);
        Ok(Applied::Member(m))
    }

    async fn reserve(&self, ctx: &mut Applying<'_>, number: i64, note: String) -> DirectoryResult<Applied> {
        numbers::check_reservable(ctx.tx, &self.numbers, number).await?;
        let r = Reservation {
            number,
            note: validate::optional_text("note", Some(&note), 256)?.unwrap_or_default(),
            reserved_at: ctx.now,
            reserved_by: ctx.actor.who.clone(),
        };
        ctx.tx.number_reserve(&r).await?;
        ctx.numbers_clear_above = None;
        ctx.audit("number.reserve", "number", Some(number.to_string()), None, Some(&r)).await?;
        Ok(Applied::Reservation(r))
    }

    /// Creates the enterprise on first start. Returns the one-time super-admin password when it
    /// did; `None` when the enterprise already existed (also when another node won the race).
    pub async fn ensure_enterprise(&self, cfg: &NewEnterprise) -> DirectoryResult<Option<String>> {
        if self.store.enterprise().await?.is_some() {
            return Ok(None);
        }
        let password = crate::secret::generate();
        match self.create_enterprise(cfg, &password, true).await {
            Ok(()) => Ok(Some(password)),
            Err(DirectoryError::Store(StoreError::Unique(_))) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create_enterprise(
        &self,
        cfg: &NewEnterprise,
        password: &str,
        must_change: bool,
    ) -> DirectoryResult<()> {
        let hash = crate::secret::hash(password);
        let now = now();
        let e = Enterprise {
            enterprise_id: crate::secret::enterprise_id(),
            name: validate::text("enterprise.name", &cfg.name, 128)?,
            logo_url: None,
            address: None,
            contact_name: None,
            contact_phone: None,
            contact_email: None,
            mail_domain: cfg.mail_domain.to_lowercase(),
            expires_at: None,
            password_must_change: must_change,
            created_at: now,
            updated_at: now,
        };
        let mut tx = self.store.begin(WriteKey::new()).await?;
        let actor = Actor::system();
        let mut ctx = Applying::new(tx.as_mut(), &actor, now, e.mail_domain.clone());
        ctx.tx.enterprise_insert(&e, &hash).await?;
        ctx.audit("enterprise.create", "enterprise", Some(e.enterprise_id.clone()), None, Some(&e)).await?;
        ctx.flush().await?;
        tx.commit().await?;
        Ok(())
    }

    /// Sets the super-admin password (creating the enterprise if there is none yet) and ends the
    /// super admin's console sessions but `keep_session`, in one transaction. The audit log
    /// records that it changed, never the password or its hash.
    pub async fn set_super_password(
        &self,
        actor: &Actor,
        cfg: &NewEnterprise,
        password: &str,
        keep_session: Option<&str>,
    ) -> DirectoryResult<()> {
        crate::directory::validate::password(password)?;
        if self.store.enterprise().await?.is_none() {
            return match self.create_enterprise(cfg, password, false).await {
                Err(DirectoryError::Store(StoreError::Unique(_))) => {
                    Box::pin(self.set_super_password(actor, cfg, password, keep_session)).await
                }
                other => other,
            };
        }
        let hash = crate::secret::hash(password);
        let mut tx = self.store.begin(WriteKey::new()).await?;
        let now = now();
        let mut ctx = Applying::new(tx.as_mut(), actor, now, String::new());
        let e = ctx.tx.enterprise().await?.ok_or(DirectoryError::NoEnterprise)?;
        ctx.tx.super_password_set(&hash, false).await?;
        // The super admin's sessions signed in with the old password end with it.
        ctx.tx.member_sessions_end(None, keep_session).await?;
        ctx.audit::<()>("enterprise.password_reset", "enterprise", Some(e.enterprise_id), None, None).await?;
        ctx.flush().await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records an event that changes no directory data (a console sign-in, a refused action) in
    /// the audit log.
    pub async fn record(
        &self,
        actor: &Actor,
        action: &str,
        object_kind: &str,
        object_id: Option<String>,
        detail: serde_json::Value,
    ) -> DirectoryResult<()> {
        let mut tx = self.store.begin(WriteKey::new()).await?;
        let mut ctx = Applying::new(tx.as_mut(), actor, now(), String::new());
        ctx.audit(action, object_kind, object_id, None, Some(&detail)).await?;
        ctx.flush().await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn update_enterprise(ctx: &mut Applying<'_>, p: EnterprisePatch) -> DirectoryResult<Applied> {
    let before = ctx.tx.enterprise().await?.ok_or(DirectoryError::NoEnterprise)?;
    let mut e = before.clone();
    let opt = |field: &str, v: Option<Option<String>>, cur: Option<String>, max| match v {
        Some(v) => validate::optional_text(field, v.as_deref(), max),
        None => Ok(cur),
    };
    if let Some(name) = p.name {
        e.name = validate::text("name", &name, 128)?;
    }
    e.logo_url = opt("logo_url", p.logo_url, e.logo_url, 1024)?;
    e.address = opt("address", p.address, e.address, 256)?;
    e.contact_name = opt("contact_name", p.contact_name, e.contact_name, 64)?;
    e.contact_phone = match p.contact_phone {
        Some(v) => validate::mobile(v.as_deref())?,
        None => e.contact_phone,
    };
    e.contact_email = match p.contact_email {
        Some(Some(v)) => Some(validate::email_address(&v)?),
        Some(None) => None,
        None => e.contact_email,
    };
    if let Some(d) = p.mail_domain {
        let d = d.trim().to_lowercase();
        if !validate::valid_domain(&d) {
            return Err(DirectoryError::invalid("mail_domain", "must be a domain name such as example.com"));
        }
        // Existing login names keep their domain; changing it is a migration, not a profile edit.
        if d != e.mail_domain && ctx.tx.member_count().await? > 0 {
            return Err(DirectoryError::invalid("mail_domain", "members still use the current domain"));
        }
        e.mail_domain = d;
    }
    if let Some(x) = p.expires_at {
        e.expires_at = x;
    }
    e.updated_at = ctx.now;
    ctx.tx.enterprise_update(&e).await?;
    ctx.audit("enterprise.update", "enterprise", Some(e.enterprise_id.clone()), Some(&before), Some(&e))
        .await?;
    Ok(Applied::Enterprise(e))
}

async fn org_unit_or_404(ctx: &mut Applying<'_>, id: Uuid) -> DirectoryResult<OrgUnit> {
    ctx.tx.org_unit(id).await?.ok_or(DirectoryError::NotFound { kind: "org unit", id: id.to_string() })
}

async fn check_sibling_name(
    ctx: &mut Applying<'_>,
    parent: Option<Uuid>,
    name: &str,
    this: Option<Uuid>,
) -> DirectoryResult<()> {
    if this.is_none() && ctx.pending.unit_names.contains(&(parent, name.to_owned())) {
        return Err(DirectoryError::Conflict { field: "name".into(), value: name.to_owned() });
    }
    let other = match ctx.known.unit_names.get(&parent) {
        Some(names) if this.is_none() => names.contains(name).then_some(Uuid::nil()),
        _ => ctx.tx.org_unit_sibling_named(parent, name).await?,
    };
    match other {
        Some(other) if Some(other) != this => {
            Err(DirectoryError::Conflict { field: "name".into(), value: name.to_owned() })
        }
        _ => Ok(()),
    }
}

async fn check_anchor(
    ctx: &mut Applying<'_>,
    kind: &'static str,
    anchor: Option<&str>,
    this: Uuid,
) -> DirectoryResult<()> {
    let Some(anchor) = anchor else { return Ok(()) };
    let known = match kind {
        "org unit" => ctx.known.unit_anchors.get(anchor),
        "group" => ctx.known.group_anchors.get(anchor),
        _ => None,
    };
    if let Some(holder) = known {
        return match holder {
            Some(o) if *o != this => {
                Err(DirectoryError::Conflict { field: "anchor".into(), value: anchor.to_owned() })
            }
            _ => Ok(()),
        };
    }
    let source = ctx.actor.source.as_str().to_owned();
    let other = match kind {
        "org unit" => ctx.tx.org_unit_by_anchor(&source, anchor).await?,
        "member" => ctx.tx.member_id_by_anchor(&source, anchor).await?,
        _ => ctx.tx.group_id_by_anchor(&source, anchor).await?,
    };
    match other {
        Some(o) if o != this => {
            Err(DirectoryError::Conflict { field: "anchor".into(), value: anchor.to_owned() })
        }
        _ => Ok(()),
    }
}

/// Whether org unit `id` exists, from what this transaction knows or else the store.
async fn org_unit_exists(ctx: &mut Applying<'_>, id: Uuid) -> DirectoryResult<bool> {
    if ctx.units_seen.contains(&id) {
        return Ok(true);
    }
    if ctx.known.unit_ids.contains(&id) {
        return Ok(false);
    }
    let exists = ctx.tx.org_unit(id).await?.is_some();
    if exists {
        ctx.units_seen.insert(id);
    }
    Ok(exists)
}

async fn create_org_unit(ctx: &mut Applying<'_>, n: NewOrgUnit) -> DirectoryResult<Applied> {
    let id = n.id.unwrap_or_else(Uuid::now_v7);
    if n.id.is_some() && org_unit_exists(ctx, id).await? {
        return Err(DirectoryError::Conflict { field: "id".into(), value: id.to_string() });
    }
    let name = validate::org_unit_name(&n.name)?;
    if let Some(p) = n.parent_id
        && !org_unit_exists(ctx, p).await?
    {
        return Err(DirectoryError::NotFound { kind: "org unit", id: p.to_string() });
    }
    check_sibling_name(ctx, n.parent_id, &name, None).await?;
    let anchor = validate::optional_text("anchor", n.anchor.as_deref(), 256)?;
    check_anchor(ctx, "org unit", anchor.as_deref(), id).await?;
    // Known once asked for (also for an explicit position: the units held back under this
    // parent are not in the store to ask about).
    let next = match ctx.next_position.get(&n.parent_id) {
        Some(p) => *p,
        None => ctx.tx.org_unit_next_position(n.parent_id).await?,
    };
    let position = n.position.unwrap_or(next);
    ctx.next_position.insert(n.parent_id, next.max(position + 1));
    let u = OrgUnit {
        id,
        parent_id: n.parent_id,
        name,
        position,
        source: ctx.actor.source.clone(),
        anchor,
        version: 1,
        created_at: ctx.now,
        updated_at: ctx.now,
    };
    if ctx.pending.org_units.is_empty() {
        ctx.pending.first_unit = ctx.index;
    }
    ctx.pending.org_units.push(u.clone());
    ctx.pending.unit_names.insert((u.parent_id, u.name.clone()));
    ctx.units_seen.insert(id);
    if let Some(names) = ctx.known.unit_names.get_mut(&u.parent_id) {
        names.insert(u.name.clone());
    }
    ctx.known.unit_names.insert(Some(id), Default::default());
    ctx.known.unit_ids.insert(id);
    if let Some(a) = &u.anchor {
        ctx.known.unit_anchors.insert(a.clone(), Some(id));
    }
    ctx.audit("org_unit.create", "org_unit", Some(id.to_string()), None, Some(&u)).await?;
    Ok(Applied::OrgUnit(u))
}

async fn update_org_unit(
    ctx: &mut Applying<'_>,
    id: Uuid,
    name: Option<String>,
    anchor: Option<Option<String>>,
) -> DirectoryResult<Applied> {
    let before = org_unit_or_404(ctx, id).await?;
    ctx.ensure_owner("org unit", id, &before.source)?;
    let mut u = before.clone();
    if let Some(name) = name {
        u.name = validate::org_unit_name(&name)?;
        check_sibling_name(ctx, u.parent_id, &u.name, Some(id)).await?;
    }
    if let Some(anchor) = anchor {
        u.anchor = validate::optional_text("anchor", anchor.as_deref(), 256)?;
        check_anchor(ctx, "org unit", u.anchor.as_deref(), id).await?;
    }
    save_org_unit(ctx, "org_unit.update", before, u).await
}

async fn save_org_unit(
    ctx: &mut Applying<'_>,
    action: &str,
    before: OrgUnit,
    mut u: OrgUnit,
) -> DirectoryResult<Applied> {
    u.version += 1;
    u.updated_at = ctx.now;
    ctx.tx.org_unit_update(&u).await?;
    ctx.audit(action, "org_unit", Some(u.id.to_string()), Some(&before), Some(&u)).await?;
    Ok(Applied::OrgUnit(u))
}

async fn move_org_unit(
    ctx: &mut Applying<'_>,
    id: Uuid,
    parent_id: Option<Uuid>,
    position: Option<i64>,
) -> DirectoryResult<Applied> {
    let before = org_unit_or_404(ctx, id).await?;
    ctx.ensure_owner("org unit", id, &before.source)?;
    if let Some(p) = parent_id {
        org_unit_or_404(ctx, p).await?;
        if ctx.tx.org_unit_path(p).await?.contains(&id) {
            return Err(DirectoryError::Cycle { id, parent: p });
        }
    }
    let mut u = before.clone();
    if parent_id != before.parent_id {
        check_sibling_name(ctx, parent_id, &u.name, Some(id)).await?;
        u.parent_id = parent_id;
        u.position = match position {
            Some(p) => p,
            None => ctx.tx.org_unit_next_position(parent_id).await?,
        };
    } else if let Some(p) = position {
        u.position = p;
    }
    // The next free position there is asked for again.
    ctx.next_position.remove(&parent_id);
    save_org_unit(ctx, "org_unit.move", before, u).await
}

async fn delete_org_unit(ctx: &mut Applying<'_>, id: Uuid) -> DirectoryResult<Applied> {
    let before = org_unit_or_404(ctx, id).await?;
    ctx.ensure_owner("org unit", id, &before.source)?;
    if ctx.tx.org_unit_has_children(id).await? {
        return Err(DirectoryError::NotEmpty { id, what: "child units" });
    }
    if ctx.tx.org_unit_has_members(id).await? {
        return Err(DirectoryError::NotEmpty { id, what: "members" });
    }
    if ctx.tx.org_unit_has_grants(id).await? {
        return Err(DirectoryError::NotEmpty { id, what: "role grants scoped to it" });
    }
    ctx.tx.org_unit_delete(id).await?;
    ctx.units_seen.remove(&id);
    ctx.audit("org_unit.delete", "org_unit", Some(id.to_string()), Some(&before), None).await?;
    Ok(Applied::OrgUnitDeleted { id })
}

async fn member_or_404(ctx: &mut Applying<'_>, id: Uuid) -> DirectoryResult<Member> {
    ctx.tx.member(id).await?.ok_or(DirectoryError::NotFound { kind: "member", id: id.to_string() })
}

/// Uniqueness within the enterprise (the member's own values never conflict with themselves)
/// and references to other objects. A `new` member's uniqueness is checked when it is written
/// ([`Applying::write_pending`]).
/// Checks a member's org units and manager (its unique values are checked by the caller: a
/// create against the set and the store in bulk, an update against the store).
async fn check_member(ctx: &mut Applying<'_>, m: &mut Member, new: bool) -> DirectoryResult<()> {
    // The primary unit is not repeated among the further ones.
    m.org_unit_ids.sort();
    m.org_unit_ids.dedup();
    m.org_unit_ids.retain(|u| Some(*u) != m.primary_org_unit_id);
    for unit in m.primary_org_unit_id.iter().chain(m.org_unit_ids.iter()) {
        if ctx.units_seen.contains(unit) {
            continue;
        }
        if new {
            let at = ctx.pending.members.len();
            ctx.pending.units.entry(*unit).or_insert(at);
            continue;
        }
        if ctx.tx.org_unit(*unit).await?.is_none() {
            return Err(DirectoryError::invalid("org_unit_ids", format!("org unit {unit} does not exist")));
        }
        ctx.units_seen.insert(*unit);
    }
    if let Some(manager) = m.manager_id {
        if manager == m.id {
            return Err(DirectoryError::invalid("manager_id", "a member cannot be their own manager"));
        }
        if !ctx.pending.ids.contains_key(&manager) && ctx.tx.member(manager).await?.is_none() {
            return Err(DirectoryError::invalid("manager_id", format!("member {manager} does not exist")));
        }
    }
    Ok(())
}

async fn update_member(ctx: &mut Applying<'_>, id: Uuid, p: MemberPatch) -> DirectoryResult<Applied> {
    let before = member_or_404(ctx, id).await?;
    // A console password is not a directory attribute: the console sets it for a member of any
    // source (the only way a member who holds a role gets one when their source is not LDAP).
    let password_only = MemberPatch {
        password: p.password.clone(),
        keep_session: p.keep_session.clone(),
        ..MemberPatch::default()
    } == p;
    if !(password_only && ctx.actor.source.as_str() == Source::CONSOLE) {
        ctx.ensure_owner("member", id, &before.source)?;
    }
    let mut m = before.clone();
    let (mobile_sent, emails_sent) = (p.mobile.is_some(), p.emails.is_some());
    macro_rules! opt {
        ($field:ident) => {
            if let Some(v) = p.$field {
                m.$field = validate::member_text(stringify!($field), v.as_deref())?;
            }
        };
    }
    if let Some(v) = p.login_name.clone() {
        m.login_name = validate::login_name(&v, &ctx.mail_domain)?;
    }
    if let Some(v) = p.display_name {
        m.display_name = validate::display_name(&v)?;
    }
    opt!(given_name);
    opt!(family_name);
    opt!(title);
    opt!(employee_number);
    opt!(department);
    opt!(organization);
    opt!(division);
    opt!(cost_center);
    opt!(anchor);
    if let Some(v) = p.emails {
        m.emails = validate::emails(&v)?;
    }
    if let Some(v) = p.mobile {
        m.mobile = validate::mobile(v.as_deref())?;
    }
    if let Some(v) = p.phones {
        m.phones = validate::phones(&v)?;
    }
    if let Some(v) = p.primary_org_unit_id {
        m.primary_org_unit_id = v;
    }
    if let Some(v) = p.org_unit_ids {
        m.org_unit_ids = v;
    }
    if let Some(v) = p.manager_id {
        m.manager_id = v;
    }
    if let Some(v) = p.state {
        m.state = v;
    }
    // A quarantining source's update goes without a mobile or e-mail another member holds (in
    // the fields it sent; what it did not send stays as it was).
    let mut kept: KeptAside = Vec::new();
    let quarantining = ctx.actor.source.quarantines();
    let (sent_mobile, sent_emails) = (mobile_sent, emails_sent);
    loop {
        match ctx.tx.member_conflict(&m).await? {
            Some((field, value)) => match quarantinable(&field) {
                Some(field)
                    if quarantining
                        && (field != "mobile" || sent_mobile)
                        && (field != "email" || sent_emails) =>
                {
                    set_aside(&mut m, field, &value);
                    kept.push((field.to_owned(), value));
                }
                _ => return Err(DirectoryError::Conflict { field, value }),
            },
            None => break,
        }
    }
    check_member(ctx, &mut m, false).await?;
    let fields: Vec<&str> = [("mobile", sent_mobile), ("email", sent_emails)]
        .into_iter()
        .filter(|(_, sent)| *sent && quarantining)
        .map(|(f, _)| f)
        .collect();
    ctx.keep_aside(id, &fields, &kept).await?;
    // A provisioning source never chooses the password someone administers with: it would sign
    // in to the console as them (SECURITY.md). A write that only sets it is refused; one that
    // carries it with other changes (an IdP's full-profile PUT, a deprovisioning) goes through
    // without it, and the refusal is audited.
    let mut password = p.password.is_some();
    if password && ctx.actor.source.provisions() {
        ctx.tx.member_lock(id).await?;
        if ctx.tx.member_holds_role(id).await? {
            // (A SCIM PATCH of the password alone arrives as a whole profile, unchanged.)
            if password_only || m == before {
                return Err(DirectoryError::Protected {
                    id,
                    what: "its password is set in the console only, never by a provisioning source",
                });
            }
            let detail =
                json!({ "reason": "the member holds a role: its password is set in the console only" });
            ctx.audit("member.password_refused", "member", Some(id.to_string()), None, Some(&detail)).await?;
            password = false;
        }
    }
    if password {
        let hash = ctx.hashes.remove(&ctx.index).ok_or_else(|| {
            DirectoryError::invalid("password", "was not hashed before the change set began")
        })?;
        ctx.tx.member_set_password(id, Some(&hash), Some(&password_setter(ctx.actor, &before))).await?;
        // Sessions signed in with the old password end with it, in the same transaction.
        let ended = ctx.tx.member_sessions_end(Some(id), p.keep_session.as_deref()).await?;
        let detail = json!({ "sessions_ended": ended });
        ctx.audit("member.password_set", "member", Some(id.to_string()), None, Some(&detail)).await?;
    }
    if m == before {
        return Ok(Applied::Member(m));
    }
    m.version += 1;
    m.updated_at = ctx.now;
    ctx.tx.member_update(&m).await?;
    ctx.track_held(Some(&before), Some(&m));
    ctx.hand_over_released(&before, Some(&m)).await?;
    if m.state != MemberState::Active && before.state == MemberState::Active {
        // A suspended member's console sessions end with the suspension, in its transaction.
        ctx.tx.member_sessions_end(Some(id), None).await?;
    }
    let action = match (before.state, m.state) {
        (MemberState::Active, MemberState::Suspended) => "member.suspend",
        (MemberState::Suspended, MemberState::Active) => "member.activate",
        _ => "member.update",
    };
    ctx.audit(action, "member", Some(id.to_string()), Some(&before), Some(&m)).await?;
    ctx.notify_member(&action.replace("member.", "member.updated."), &m).await?;
    Ok(Applied::Member(m))
}

/// Who set a member's password, as `members.password_set_by` keeps it: the source for a
/// provisioning source (`scim:entra`, `import`), `self` for the member themselves, and
/// `console:<who>` for another person in the console.
fn password_setter(actor: &Actor, member: &Member) -> String {
    if actor.source.provisions() {
        actor.source.as_str().to_owned()
    } else if actor.who == member.login_name {
        "self".to_owned()
    } else {
        format!("console:{}", actor.who)
    }
}

/// Whether a member's password stays when `granter` grants them their first role: only when the
/// granter or the member set it. (`console` alone, from before the setter was recorded, does
/// not: it could have been anyone in the console.)
fn password_survives_grant(set_by: &str, granter: &str) -> bool {
    set_by == "self" || set_by.strip_prefix("console:") == Some(granter)
}

/// The argon2 hashes of a change set's member passwords, by change index, made before its
/// transaction and on the bounded blocking pool (a Bulk of a thousand passwords would
/// otherwise hold the writer for seconds). A member's console password is at least 8
/// characters.
async fn hash_passwords(changes: &[Change]) -> Result<std::collections::HashMap<usize, String>, ChangeError> {
    let mut tasks = tokio::task::JoinSet::new();
    for (index, change) in changes.iter().enumerate() {
        let password = match change {
            Change::CreateMember(n) => n.password.as_ref(),
            Change::UpdateMember { patch, .. } => patch.password.as_ref(),
            _ => None,
        };
        let Some(password) = password else { continue };
        if password.0.chars().count() < 8 {
            let error = DirectoryError::invalid("password", "must be at least 8 characters");
            return Err(ChangeError { index, error });
        }
        let password = password.0.clone();
        tasks.spawn(async move { (index, crate::secret::hash_bounded(password).await) });
    }
    let mut out = std::collections::HashMap::with_capacity(tasks.len());
    while let Some(done) = tasks.join_next().await {
        let failed = |index| ChangeError {
            index,
            error: DirectoryError::Store(StoreError::Other("a password could not be hashed".into())),
        };
        match done {
            Ok((index, Ok(hash))) => {
                out.insert(index, hash);
            }
            Ok((index, Err(_))) => return Err(failed(index)),
            Err(_) => return Err(failed(0)),
        }
    }
    Ok(out)
}

async fn adopt_member(ctx: &mut Applying<'_>, id: Uuid, anchor: Option<String>) -> DirectoryResult<Applied> {
    let before = member_or_404(ctx, id).await?;
    ctx.tx.member_lock(id).await?;
    if ctx.tx.member_holds_role(id).await? {
        return Err(DirectoryError::Protected { id, what: "no source takes over a member who holds a role" });
    }
    let mut m = before.clone();
    m.source = ctx.actor.source.clone();
    m.anchor = validate::optional_text("anchor", anchor.as_deref(), 256)?;
    check_anchor(ctx, "member", m.anchor.as_deref(), id).await?;
    m.version += 1;
    m.updated_at = ctx.now;
    ctx.tx.member_set_source(id, m.source.as_str(), m.anchor.as_deref()).await?;
    ctx.tx.member_update(&m).await?;
    ctx.audit("member.adopt", "member", Some(id.to_string()), Some(&before), Some(&m)).await?;
    Ok(Applied::Member(m))
}

async fn delete_member(ctx: &mut Applying<'_>, id: Uuid, reason: String) -> DirectoryResult<Applied> {
    let before = member_or_404(ctx, id).await?;
    ctx.ensure_owner("member", id, &before.source)?;
    let t = Tombstone {
        member_id: id,
        account_number: before.account_number,
        login_name: before.login_name.clone(),
        profile: before.clone(),
        deleted_at: ctx.now,
        reason: validate::optional_text("reason", Some(&reason), 512)?.unwrap_or_else(|| "deleted".into()),
        source: ctx.actor.source.clone(),
        deleted_by: ctx.actor.who.clone(),
    };
    ctx.tx.member_delete(id).await?;
    ctx.track_held(Some(&before), None);
    ctx.hand_over_released(&before, None).await?;
    ctx.tx.tombstone_insert(&t).await?;
    ctx.tx.number_release(before.account_number, ctx.now).await?;
    ctx.numbers_clear_above = None;
    ctx.audit("member.delete", "member", Some(id.to_string()), Some(&before), None).await?;
    let mut gone = before;
    gone.version += 1;
    ctx.notify_member("member.deleted", &gone).await?;
    Ok(Applied::Tombstone(Box::new(t)))
}

async fn group_or_404(ctx: &mut Applying<'_>, id: Uuid) -> DirectoryResult<Group> {
    ctx.tx.group(id).await?.ok_or(DirectoryError::NotFound { kind: "group", id: id.to_string() })
}

async fn check_members_exist(ctx: &mut Applying<'_>, field: &str, ids: &[Uuid]) -> DirectoryResult<()> {
    // Members this transaction created or knows about need no query.
    let k = &ctx.known;
    let unknown: Vec<Uuid> = ids
        .iter()
        .filter(|id| {
            !ctx.pending.ids.contains_key(id) && !k.members_seen.contains(id) && !k.member_ids.contains(id)
        })
        .copied()
        .collect();
    let found: std::collections::HashSet<Uuid> = if unknown.is_empty() {
        Default::default()
    } else {
        ctx.tx.members_existing(&unknown).await?.into_iter().collect()
    };
    let k = &ctx.known;
    let exists =
        |id: &Uuid| ctx.pending.ids.contains_key(id) || k.members_seen.contains(id) || found.contains(id);
    match ids.iter().find(|id| !exists(id)) {
        Some(missing) => Err(DirectoryError::invalid(field, format!("member {missing} does not exist"))),
        None => Ok(()),
    }
}

async fn create_group(ctx: &mut Applying<'_>, n: NewGroup) -> DirectoryResult<Applied> {
    let id = n.id.unwrap_or_else(Uuid::now_v7);
    if n.id.is_some() && (ctx.pending.group_ids.contains(&id) || ctx.tx.group(id).await?.is_some()) {
        return Err(DirectoryError::Conflict { field: "id".into(), value: id.to_string() });
    }
    let anchor = validate::optional_text("anchor", n.anchor.as_deref(), 256)?;
    check_anchor(ctx, "group", anchor.as_deref(), id).await?;
    check_members_exist(ctx, "owner_id", n.owner_id.as_slice()).await?;
    check_members_exist(ctx, "members", &n.members).await?;
    let g = Group {
        id,
        name: validate::text("name", &n.name, 128)?,
        owner_id: n.owner_id,
        source: ctx.actor.source.clone(),
        anchor,
        version: 1,
        created_at: ctx.now,
        updated_at: ctx.now,
    };
    ctx.audit(
        "group.create",
        "group",
        Some(id.to_string()),
        None,
        Some(&json!({ "group": g, "members": n.members })),
    )
    .await?;
    if let Some(a) = &g.anchor {
        ctx.known.group_anchors.insert(a.clone(), Some(id));
    }
    if ctx.pending.groups.is_empty() {
        ctx.pending.first_group = ctx.index;
    }
    ctx.pending.group_ids.insert(id);
    ctx.pending.groups.push((g.clone(), n.members));
    Ok(Applied::Group(g))
}

async fn update_group(
    ctx: &mut Applying<'_>,
    id: Uuid,
    name: Option<String>,
    owner: Option<Option<Uuid>>,
    anchor: Option<Option<String>>,
) -> DirectoryResult<Applied> {
    let before = group_or_404(ctx, id).await?;
    ctx.ensure_owner("group", id, &before.source)?;
    let mut g = before.clone();
    if let Some(anchor) = anchor {
        g.anchor = validate::optional_text("anchor", anchor.as_deref(), 256)?;
        check_anchor(ctx, "group", g.anchor.as_deref(), id).await?;
    }
    if let Some(name) = name {
        g.name = validate::text("name", &name, 128)?;
    }
    if let Some(owner) = owner {
        check_members_exist(ctx, "owner_id", owner.as_slice()).await?;
        g.owner_id = owner;
    }
    g.version += 1;
    g.updated_at = ctx.now;
    ctx.tx.group_update(&g).await?;
    ctx.audit("group.update", "group", Some(id.to_string()), Some(&before), Some(&g)).await?;
    Ok(Applied::Group(g))
}

/// Adds or removes just the listed members: a large group is never rewritten whole.
async fn group_members(
    ctx: &mut Applying<'_>,
    id: Uuid,
    members: Vec<Uuid>,
    add: bool,
) -> DirectoryResult<Applied> {
    let before = group_or_404(ctx, id).await?;
    ctx.ensure_owner("group", id, &before.source)?;
    let changed = if add {
        check_members_exist(ctx, "members", &members).await?;
        ctx.tx.group_members_add(id, &members).await?
    } else {
        ctx.tx.group_members_remove(id, &members).await?
    };
    if changed > 0 {
        ctx.tx.group_touch(id, ctx.now).await?;
    }
    let (action, key) =
        if add { ("group.members_add", "added") } else { ("group.members_remove", "removed") };
    ctx.audit(action, "group", Some(id.to_string()), None, Some(&json!({ key: members }))).await?;
    Ok(Applied::GroupMembers { id, changed })
}

async fn delete_group(ctx: &mut Applying<'_>, id: Uuid) -> DirectoryResult<Applied> {
    let before = group_or_404(ctx, id).await?;
    ctx.ensure_owner("group", id, &before.source)?;
    ctx.tx.group_delete(id).await?;
    ctx.audit("group.delete", "group", Some(id.to_string()), Some(&before), None).await?;
    Ok(Applied::GroupDeleted { id })
}

async fn release_reservation(ctx: &mut Applying<'_>, number: i64) -> DirectoryResult<Applied> {
    if !ctx.tx.number_unreserve(number).await? {
        return Err(DirectoryError::NotFound { kind: "reservation", id: number.to_string() });
    }
    ctx.audit::<()>("number.unreserve", "number", Some(number.to_string()), None, None).await?;
    Ok(Applied::ReservationReleased { number })
}

fn role_name(name: &str) -> DirectoryResult<String> {
    validate::text("name", name, 64)
}

fn permissions(list: Vec<Permission>) -> Permissions {
    Permissions(list.into_iter().collect())
}

async fn role_or_404(ctx: &mut Applying<'_>, id: Uuid) -> DirectoryResult<Role> {
    ctx.tx.role(id).await?.ok_or(DirectoryError::NotFound { kind: "role", id: id.to_string() })
}

async fn create_role(ctx: &mut Applying<'_>, n: NewRole) -> DirectoryResult<Applied> {
    let r = Role {
        id: n.id.unwrap_or_else(Uuid::now_v7),
        name: role_name(&n.name)?,
        permissions: permissions(n.permissions),
        version: 1,
        created_at: ctx.now,
        updated_at: ctx.now,
    };
    ctx.tx.role_insert(&r).await?;
    ctx.audit("role.create", "role", Some(r.id.to_string()), None, Some(&r)).await?;
    Ok(Applied::Role(r))
}

async fn update_role(
    ctx: &mut Applying<'_>,
    id: Uuid,
    name: Option<String>,
    list: Option<Vec<Permission>>,
) -> DirectoryResult<Applied> {
    let before = role_or_404(ctx, id).await?;
    let mut r = before.clone();
    if let Some(name) = name {
        r.name = role_name(&name)?;
    }
    if let Some(list) = list {
        r.permissions = permissions(list);
    }
    if r == before {
        return Ok(Applied::Role(r));
    }
    r.version += 1;
    r.updated_at = ctx.now;
    ctx.tx.role_update(&r).await?;
    ctx.audit("role.update", "role", Some(id.to_string()), Some(&before), Some(&r)).await?;
    Ok(Applied::Role(r))
}

async fn delete_role(ctx: &mut Applying<'_>, id: Uuid) -> DirectoryResult<Applied> {
    let before = role_or_404(ctx, id).await?;
    // The grants go with the role: each one is revoked in the audit log too.
    for g in ctx.tx.grants_of_role(id).await? {
        let grant_id = format!("{}:{}", g.role_id, g.member_id);
        ctx.audit("role.revoke", "role_grant", Some(grant_id), Some(&g), None).await?;
    }
    ctx.tx.role_delete(id).await?;
    ctx.audit("role.delete", "role", Some(id.to_string()), Some(&before), None).await?;
    Ok(Applied::RoleDeleted { id })
}

async fn grant_role(
    ctx: &mut Applying<'_>,
    role_id: Uuid,
    member_id: Uuid,
    scope: Option<Uuid>,
) -> DirectoryResult<Applied> {
    role_or_404(ctx, role_id).await?;
    if let Some(unit) = scope {
        org_unit_or_404(ctx, unit).await?;
    }
    member_or_404(ctx, member_id).await?;
    ctx.tx.member_lock(member_id).await?;
    let before = ctx.tx.grant(role_id, member_id).await?;
    // Whoever chose this member's password must not gain their first role with it: a password
    // that neither the one granting (the super admin) nor the member set is cleared, so one set
    // by a provisioning source or by a manager goes (the super admin sets a new one, or the
    // member signs in through their LDAP directory). A member who holds a role already has
    // only such a password (nobody else can set it since).
    if !ctx.tx.member_holds_role(member_id).await?
        && let Some(set_by) = ctx.tx.member_password_set_by(member_id).await?
        && !password_survives_grant(&set_by, &ctx.actor.who)
    {
        ctx.tx.member_set_password(member_id, None, None).await?;
        ctx.tx.member_sessions_end(Some(member_id), None).await?;
        let detail = json!({ "set_by": set_by, "reason": "a role was granted" });
        ctx.audit("member.password_cleared", "member", Some(member_id.to_string()), None, Some(&detail))
            .await?;
    }
    let g = RoleGrant {
        role_id,
        member_id,
        scope_unit_id: scope,
        granted_at: ctx.now,
        granted_by: ctx.actor.who.clone(),
    };
    ctx.tx.grant_set(&g).await?;
    let id = format!("{role_id}:{member_id}");
    ctx.audit("role.grant", "role_grant", Some(id), before.as_ref(), Some(&g)).await?;
    Ok(Applied::RoleGranted(g))
}

async fn revoke_role(ctx: &mut Applying<'_>, role_id: Uuid, member_id: Uuid) -> DirectoryResult<Applied> {
    let before = ctx.tx.grant(role_id, member_id).await?.ok_or_else(|| DirectoryError::NotFound {
        kind: "role grant",
        id: format!("{role_id}:{member_id}"),
    })?;
    ctx.tx.grant_delete(role_id, member_id).await?;
    let id = format!("{role_id}:{member_id}");
    ctx.audit("role.revoke", "role_grant", Some(id), Some(&before), None).await?;
    Ok(Applied::RoleRevoked { role_id, member_id })
}
