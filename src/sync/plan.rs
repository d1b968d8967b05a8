//! A sync plan: what the source says compared with what Roster holds for that source, matched
//! by anchor (never by name or DN), as directory changes in the order they can be applied.

use std::collections::BTreeMap;

// foldhash: these maps hold 100,000 anchors, and SipHash took about 7% of an unchanged sync.
use foldhash::{HashMap, HashSet};

use serde::Serialize;
use uuid::Uuid;

use super::map::{Snapshot, SrcUser};
use crate::directory::model::{Email, Group, Member, MemberState, OrgUnit, Phone, SourcedFields};
use crate::directory::store::MemberKey;
use crate::directory::{Change, MemberPatch, NewGroup, NewMember, NewOrgUnit, validate};

/// One planned change, with a line for people.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub what: String,
    #[serde(skip)]
    pub change: Change,
}

/// Objects of one kind: created, updated, moved, suspended, deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    pub created: usize,
    pub updated: usize,
    pub moved: usize,
    pub suspended: usize,
    pub deleted: usize,
    /// What the source held before the run (the base of the deletion percentage).
    pub held_before: usize,
}

#[derive(Debug, Default, Serialize)]
pub struct Plan {
    /// Phases in order: units, members, managers, groups, member deletes, unit deletes, group deletes.
    pub phases: Vec<Vec<Step>>,
    pub org_units: Tally,
    pub members: Tally,
    pub groups: Tally,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.phases.iter().all(Vec::is_empty)
    }

    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.phases.iter().flatten()
    }

    pub fn tallies(&self) -> BTreeMap<&'static str, &Tally> {
        BTreeMap::from([("org_units", &self.org_units), ("members", &self.members), ("groups", &self.groups)])
    }
}

/// What Roster holds for the source.
pub struct Current {
    pub units: Vec<OrgUnit>,
    /// Every member the source holds, by key and digest.
    pub keys: Vec<MemberKey>,
    /// The members [`to_compare`] named, whole: the only ones compared field by field. A held
    /// member the read carried and that is not here is unchanged.
    pub members: Vec<Member>,
    pub groups: Vec<(Group, Vec<Uuid>)>,
    /// Values kept aside for the source's members (another member holds them), by member:
    /// `(field, value)`. The source's value counts as what Roster holds: the member gets it the
    /// moment its holder lets go, so there is nothing to plan for it.
    pub kept_aside: HashMap<Uuid, Vec<(String, String)>>,
}

/// The anchors of the carried users that Roster holds and that must be compared whole: those
/// whose stored digest differs from the digest of what the source says, or is unknown. A user
/// whose unit or manager Roster does not hold yet, or whose values the directory would refuse,
/// is compared too (the plan then says what is wrong).
pub fn to_compare(snap: &Snapshot, units: &[OrgUnit], keys: &[MemberKey], mail_domain: &str) -> Vec<String> {
    let unit_id: HashMap<&str, Uuid> =
        units.iter().filter_map(|u| Some((u.anchor.as_deref()?, u.id))).collect();
    let held: HashMap<&str, &MemberKey> =
        keys.iter().filter_map(|k| Some((k.anchor.as_deref()?, k))).collect();
    let check = |users: &[SrcUser]| -> Vec<String> {
        users
            .iter()
            .filter(|u| {
                let Some(key) = held.get(u.anchor.as_str()) else { return false };
                let Some(stored) = key.digest else { return true };
                let unit = match &u.unit {
                    Some(a) => match unit_id.get(a.as_str()) {
                        Some(id) => Some(*id),
                        None => return true,
                    },
                    None => None,
                };
                let manager = match &u.manager {
                    Some(a) => match held.get(a.as_str()) {
                        Some(k) => Some(k.id),
                        None => return true,
                    },
                    None => None,
                };
                sourced_digest(u, unit, manager, mail_domain) != Some(stored)
            })
            .map(|u| u.anchor.clone())
            .collect()
    };
    // Two halves on two threads: a full read carries 100,000 users, and the digests are
    // most of a plan's time when nothing changed.
    if snap.users.len() < 20_000 {
        return check(&snap.users);
    }
    let (first, second) = snap.users.split_at(snap.users.len() / 2);
    std::thread::scope(|scope| {
        let other = scope.spawn(|| check(second));
        let mut out = check(first);
        out.extend(other.join().expect("the digest thread does not panic"));
        out
    })
}

/// The digest of the member the directory would store for `u` ([`Member::digest`]); `None`
/// when it would refuse a value.
fn sourced_digest(u: &SrcUser, unit: Option<Uuid>, manager: Option<Uuid>, mail_domain: &str) -> Option<i64> {
    let login = validate::login_name(&u.login, mail_domain).ok()?;
    let display = validate::display_name(&u.display).ok()?;
    let given = validate::member_text("given_name", u.given.as_deref()).ok()?;
    let family = validate::member_text("family_name", u.family.as_deref()).ok()?;
    let title = validate::member_text("title", u.title.as_deref()).ok()?;
    let employee = validate::member_text("employee_number", u.employee_number.as_deref()).ok()?;
    let mobile = validate::mobile(u.mobile.as_deref()).ok()?;
    let emails = validate::emails(&emails_of(u)).ok()?;
    let phones = validate::phones(&phones_of(u)).ok()?;
    let fields = SourcedFields {
        login_name: &login,
        display_name: &display,
        given_name: given.as_deref(),
        family_name: family.as_deref(),
        mobile: mobile.as_deref(),
        title: title.as_deref(),
        employee_number: employee.as_deref(),
        emails: emails.iter().map(|e| e.address.as_str()).collect(),
        phones: phones.iter().map(|p| p.number.as_str()).collect(),
        primary_org_unit_id: unit,
        manager_id: manager,
        state: if u.suspended { MemberState::Suspended } else { MemberState::Active },
    };
    Some(fields.digest())
}

/// Digests for the members [`Current::members`] holds whole whose stored digest is unknown
/// (rows from before digests were kept): `(id, version, digest)`, for
/// [`crate::directory::DirectoryService::fill_digests`].
pub fn missing_digests(cur: &Current) -> Vec<(Uuid, i64, i64)> {
    let unknown: HashSet<Uuid> = cur.keys.iter().filter(|k| k.digest.is_none()).map(|k| k.id).collect();
    cur.members.iter().filter(|m| unknown.contains(&m.id)).map(|m| (m.id, m.version, m.digest())).collect()
}

fn step(what: String, change: Change) -> Step {
    Step { what, change }
}

/// The login name as stored: lower case, with the mail domain.
fn login_of(login: &str, mail_domain: &str) -> String {
    let l = login.trim().to_lowercase();
    if l.contains('@') { l } else { format!("{l}@{}", mail_domain.to_lowercase()) }
}

fn emails_of(u: &SrcUser) -> Vec<Email> {
    u.emails
        .iter()
        .enumerate()
        .map(|(i, a)| Email { address: a.trim().to_lowercase(), kind: "work".into(), primary: i == 0 })
        .collect()
}

/// A user's further phone numbers as the directory keeps them (`telephoneNumber`: work).
fn phones_of(u: &SrcUser) -> Vec<Phone> {
    u.phones
        .iter()
        .map(|n| Phone { number: n.trim().to_owned(), kind: "work".into(), primary: false })
        .collect()
}

pub fn build(source_name: &str, snap: &Snapshot, cur: &Current, mail_domain: &str) -> Plan {
    let mut plan = Plan::default();
    plan.org_units.held_before = cur.units.len();
    plan.members.held_before = cur.keys.len();
    plan.groups.held_before = cur.groups.len();

    // --- org units -----------------------------------------------------------------------
    let cur_units: HashMap<&str, &OrgUnit> =
        cur.units.iter().filter_map(|u| Some((u.anchor.as_deref()?, u))).collect();
    let mut unit_id: HashMap<String, Uuid> = cur_units.iter().map(|(a, u)| ((*a).to_owned(), u.id)).collect();
    for u in &snap.units {
        unit_id.entry(u.anchor.clone()).or_insert_with(Uuid::now_v7);
    }
    let src_units: HashMap<&str, &super::map::SrcUnit> =
        snap.units.iter().map(|u| (u.anchor.as_str(), u)).collect();
    let depth = |anchor: &str| {
        let mut d = 0;
        let mut next = src_units.get(anchor).and_then(|u| u.parent.as_deref());
        while let Some(p) = next {
            d += 1;
            if d > 256 {
                break;
            }
            next = src_units.get(p).and_then(|u| u.parent.as_deref());
        }
        d
    };
    let mut ordered: Vec<&super::map::SrcUnit> = snap.units.iter().collect();
    ordered.sort_by_key(|u| (depth(&u.anchor), u.name.clone()));
    let mut units_phase = Vec::new();
    for u in ordered {
        let parent = u.parent.as_ref().and_then(|p| unit_id.get(p)).copied();
        match cur_units.get(u.anchor.as_str()) {
            None => {
                plan.org_units.created += 1;
                units_phase.push(step(
                    format!("create org unit {:?}", u.name),
                    Change::CreateOrgUnit(NewOrgUnit {
                        id: Some(unit_id[&u.anchor]),
                        parent_id: parent,
                        name: u.name.clone(),
                        position: None,
                        anchor: Some(u.anchor.clone()),
                    }),
                ));
            }
            Some(existing) => {
                if existing.name != u.name {
                    plan.org_units.updated += 1;
                    units_phase.push(step(
                        format!("rename org unit {:?} to {:?}", existing.name, u.name),
                        Change::UpdateOrgUnit { id: existing.id, name: Some(u.name.clone()), anchor: None },
                    ));
                }
                if existing.parent_id != parent {
                    plan.org_units.moved += 1;
                    units_phase.push(step(
                        format!("move org unit {:?}", u.name),
                        Change::MoveOrgUnit { id: existing.id, parent_id: parent, position: None },
                    ));
                }
            }
        }
    }
    plan.phases.push(units_phase);

    // --- members -------------------------------------------------------------------------
    let cur_members: HashMap<&str, &Member> =
        cur.members.iter().filter_map(|m| Some((m.anchor.as_deref()?, m))).collect();
    // Ids by anchor: the held members' (`true`), then fresh ones for the members to create.
    let mut members_by_anchor: HashMap<&str, (Uuid, bool)> =
        cur.keys.iter().filter_map(|k| Some((k.anchor.as_deref()?, (k.id, true)))).collect();
    for u in &snap.users {
        members_by_anchor.entry(&u.anchor).or_insert_with(|| (Uuid::now_v7(), false));
    }
    let member_id = |anchor: &str| members_by_anchor.get(anchor).map(|(id, _)| *id);
    // Sized up front: a first sync's phase is 100,000 creates, and doubling would briefly hold
    // two copies of it.
    let creates = members_by_anchor.values().filter(|(_, held)| !held).count();
    let mut members_phase = Vec::with_capacity(creates + cur.members.len());
    let mut managers_phase = Vec::new();
    for u in &snap.users {
        let unit = u.unit.as_ref().and_then(|a| unit_id.get(a)).copied();
        let state = if u.suspended { MemberState::Suspended } else { MemberState::Active };
        let manager = u.manager.as_deref().and_then(member_id);
        let (id, held) = members_by_anchor[u.anchor.as_str()];
        match cur_members.get(u.anchor.as_str()) {
            // Held, and its digest says nothing changed.
            None if held => {}
            None => {
                plan.members.created += 1;
                if u.suspended {
                    plan.members.suspended += 1;
                }
                members_phase.push(step(
                    format!("create member {} ({})", u.login, u.dn),
                    Change::CreateMember(NewMember {
                        id: Some(id),
                        login_name: u.login.clone(),
                        display_name: u.display.clone(),
                        given_name: u.given.clone(),
                        family_name: u.family.clone(),
                        emails: emails_of(u),
                        mobile: u.mobile.clone(),
                        phones: phones_of(u),
                        title: u.title.clone(),
                        employee_number: u.employee_number.clone(),
                        primary_org_unit_id: unit,
                        state,
                        anchor: Some(u.anchor.clone()),
                        ..Default::default()
                    }),
                ));
                if manager.is_some() {
                    managers_phase.push(step(
                        format!("set the manager of {}", u.login),
                        Change::UpdateMember {
                            id,
                            patch: MemberPatch { manager_id: Some(manager), ..Default::default() },
                        },
                    ));
                }
            }
            Some(m) => {
                let mobile = validate::mobile(u.mobile.as_deref()).unwrap_or_else(|_| u.mobile.clone());
                let mut p = MemberPatch::default();
                let login = login_of(&u.login, mail_domain);
                if m.login_name != login {
                    p.login_name = Some(u.login.clone());
                }
                if m.display_name != u.display.trim() {
                    p.display_name = Some(u.display.clone());
                }
                let differs = |a: &Option<String>, b: &Option<String>| {
                    a.as_deref().map(str::trim).filter(|s| !s.is_empty())
                        != b.as_deref().map(str::trim).filter(|s| !s.is_empty())
                };
                if differs(&m.given_name, &u.given) {
                    p.given_name = Some(u.given.clone());
                }
                if differs(&m.family_name, &u.family) {
                    p.family_name = Some(u.family.clone());
                }
                if differs(&m.title, &u.title) {
                    p.title = Some(u.title.clone());
                }
                if differs(&m.employee_number, &u.employee_number) {
                    p.employee_number = Some(u.employee_number.clone());
                }
                let kept = |field: &str, value: &str| {
                    cur.kept_aside.get(&m.id).is_some_and(|k| k.iter().any(|(f, v)| f == field && v == value))
                };
                let mobile_kept = m.mobile.is_none() && mobile.as_deref().is_some_and(|v| kept("mobile", v));
                let kept_of = |field: &str| -> Vec<&String> {
                    cur.kept_aside
                        .get(&m.id)
                        .map(|k| k.iter().filter(|(f, _)| f == field).map(|(_, v)| v).collect())
                        .unwrap_or_default()
                };
                // A value kept aside that the source no longer sends is let go: sending the
                // field again releases it.
                let stale_mobile = kept_of("mobile").iter().any(|v| mobile.as_deref() != Some(v.as_str()));
                if (m.mobile != mobile && !mobile_kept) || stale_mobile {
                    p.mobile = Some(u.mobile.clone());
                }
                let sent: Vec<String> = emails_of(u).into_iter().map(|e| e.address).collect();
                let stale_emails = kept_of("email").iter().any(|v| !sent.contains(v));
                let want: Vec<String> = sent.iter().filter(|a| !kept("email", a)).cloned().collect();
                let have: Vec<String> = m.emails.iter().map(|e| e.address.clone()).collect();
                let phones = phones_of(u);
                if phones.iter().map(|p| &p.number).ne(m.phones.iter().map(|p| &p.number)) {
                    p.phones = Some(phones);
                }
                if want != have || stale_emails {
                    p.emails = Some(emails_of(u));
                }
                let moved = m.primary_org_unit_id != unit;
                if moved {
                    p.primary_org_unit_id = Some(unit);
                    plan.members.moved += 1;
                }
                if m.state != state {
                    p.state = Some(state);
                    if u.suspended {
                        plan.members.suspended += 1;
                    }
                }
                if p != MemberPatch::default() {
                    if !moved || p != (MemberPatch { primary_org_unit_id: Some(unit), ..Default::default() })
                    {
                        plan.members.updated += 1;
                    }
                    members_phase.push(step(
                        format!("update member {} ({})", u.login, u.dn),
                        Change::UpdateMember { id: m.id, patch: p },
                    ));
                }
                if m.manager_id != manager {
                    managers_phase.push(step(
                        format!("set the manager of {}", u.login),
                        Change::UpdateMember {
                            id: m.id,
                            patch: MemberPatch { manager_id: Some(manager), ..Default::default() },
                        },
                    ));
                }
            }
        }
    }
    plan.phases.push(members_phase);
    plan.phases.push(managers_phase);

    // --- groups --------------------------------------------------------------------------
    let cur_groups: HashMap<&str, &(Group, Vec<Uuid>)> =
        cur.groups.iter().filter_map(|g| Some((g.0.anchor.as_deref()?, g))).collect();
    let mut groups_phase = Vec::new();
    // posixGroups name their members by login: the source's users (carried or held) by login.
    let mut by_login: HashMap<String, Uuid> = HashMap::default();
    if snap.groups.iter().any(|g| !g.member_logins.is_empty()) {
        by_login.extend(cur.keys.iter().map(|k| (k.login_name.clone(), k.id)));
        for u in &snap.users {
            if let Some(id) = member_id(&u.anchor) {
                by_login.insert(login_of(&u.login, mail_domain), id);
            }
        }
    }
    for g in &snap.groups {
        let mut want: Vec<Uuid> = g.members.iter().filter_map(|a| member_id(a)).collect();
        want.extend(g.member_logins.iter().filter_map(|l| by_login.get(&login_of(l, mail_domain))).copied());
        want.sort();
        want.dedup();
        match cur_groups.get(g.anchor.as_str()) {
            None => {
                plan.groups.created += 1;
                groups_phase.push(step(
                    format!("create group {:?} with {} members", g.name, want.len()),
                    Change::CreateGroup(NewGroup {
                        id: None,
                        name: g.name.clone(),
                        owner_id: None,
                        members: want,
                        anchor: Some(g.anchor.clone()),
                    }),
                ));
            }
            Some((existing, have)) => {
                if existing.name != g.name {
                    plan.groups.updated += 1;
                    groups_phase.push(step(
                        format!("rename group {:?} to {:?}", existing.name, g.name),
                        Change::UpdateGroup {
                            id: existing.id,
                            name: Some(g.name.clone()),
                            owner_id: None,
                            anchor: None,
                        },
                    ));
                }
                let have_set: HashSet<&Uuid> = have.iter().collect();
                let want_set: HashSet<&Uuid> = want.iter().collect();
                let add: Vec<Uuid> = want.iter().filter(|id| !have_set.contains(id)).copied().collect();
                let remove: Vec<Uuid> = have.iter().filter(|id| !want_set.contains(id)).copied().collect();
                if !add.is_empty() || !remove.is_empty() {
                    plan.groups.updated += 1;
                }
                if !add.is_empty() {
                    groups_phase.push(step(
                        format!("add {} members to group {:?}", add.len(), g.name),
                        Change::AddGroupMembers { id: existing.id, members: add },
                    ));
                }
                if !remove.is_empty() {
                    groups_phase.push(step(
                        format!("remove {} members from group {:?}", remove.len(), g.name),
                        Change::RemoveGroupMembers { id: existing.id, members: remove },
                    ));
                }
            }
        }
    }
    plan.phases.push(groups_phase);

    // --- deletions, last: members, then units deepest first, then groups ------------------
    let seen_users: HashSet<&str> = snap.users.iter().map(|u| u.anchor.as_str()).collect();
    let reason = format!("no longer in LDAP source {source_name}");
    // A full read lists everybody; an incremental one names who went.
    let user_gone = |a: &str| match &snap.users_delta {
        None => !seen_users.contains(a),
        Some(d) => !seen_users.contains(a) && d.gone(a),
    };
    let member_deletes: Vec<Step> = cur
        .keys
        .iter()
        .filter(|k| k.anchor.as_deref().is_none_or(user_gone))
        .map(|k| {
            step(
                format!("delete member {}", k.login_name),
                Change::DeleteMember { id: k.id, reason: reason.clone() },
            )
        })
        .collect();
    plan.members.deleted = member_deletes.len();
    plan.phases.push(member_deletes);

    let seen_units: HashSet<&str> = snap.units.iter().map(|u| u.anchor.as_str()).collect();
    let by_id: HashMap<Uuid, &OrgUnit> = cur.units.iter().map(|u| (u.id, u)).collect();
    let cur_depth = |u: &OrgUnit| {
        let mut d = 0;
        let mut next = u.parent_id;
        while let Some(p) = next.and_then(|p| by_id.get(&p)) {
            d += 1;
            if d > 256 {
                break;
            }
            next = p.parent_id;
        }
        d
    };
    // Units built from the carried users' department paths are not all the units there are.
    let mut gone: Vec<&OrgUnit> = cur
        .units
        .iter()
        .filter(|u| !snap.units_partial && u.anchor.as_deref().is_none_or(|a| !seen_units.contains(a)))
        .collect();
    gone.sort_by_key(|u| std::cmp::Reverse(cur_depth(u)));
    plan.org_units.deleted = gone.len();
    plan.phases.push(
        gone.into_iter()
            .map(|u| step(format!("delete org unit {:?}", u.name), Change::DeleteOrgUnit { id: u.id }))
            .collect(),
    );

    let seen_groups: HashSet<&str> = snap.groups.iter().map(|g| g.anchor.as_str()).collect();
    let group_gone = |a: &str| match &snap.groups_delta {
        None => !seen_groups.contains(a),
        Some(d) => !seen_groups.contains(a) && d.gone(a),
    };
    let group_deletes: Vec<Step> = cur
        .groups
        .iter()
        .filter(|(g, _)| g.anchor.as_deref().is_none_or(group_gone))
        .map(|(g, _)| step(format!("delete group {:?}", g.name), Change::DeleteGroup { id: g.id }))
        .collect();
    plan.groups.deleted = group_deletes.len();
    plan.phases.push(group_deletes);
    plan
}

/// The kind over a deletion limit, if any: `(kind, deletes, held before)`.
pub fn over_limit(plan: &Plan, limits: &crate::config::SyncLimits) -> Option<(&'static str, usize, usize)> {
    plan.tallies().into_iter().find_map(|(kind, t)| {
        let too_many = t.deleted > limits.max_deletes;
        let too_large = t.held_before > 0
            && (t.deleted as f64) * 100.0 / (t.held_before as f64) > limits.max_delete_percent;
        (t.deleted > 0 && (too_many || too_large)).then_some((kind, t.deleted, t.held_before))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(n: usize) -> SrcUser {
        SrcUser {
            anchor: format!("a-{n}"),
            dn: format!("uid=u{n},dc=example"),
            login: format!("u{n}"),
            display: format!("User {n}"),
            given: None,
            family: Some("Family".into()),
            emails: vec![format!("u{n}@example.com")],
            mobile: None,
            phones: vec![],
            title: (n % 2 == 0).then(|| "Engineer".to_owned()),
            employee_number: None,
            unit: None,
            manager: (n > 0).then(|| "a-0".to_owned()),
            suspended: false,
        }
    }

    /// Both halves of a large read are checked: a member whose stored digest matches is not
    /// compared; a changed one, one without a digest, and one whose manager Roster does not
    /// hold are; a user Roster does not hold is a create, not a comparison.
    #[test]
    fn only_members_whose_digests_differ_are_compared() {
        let n = 25_000;
        let snap = Snapshot { users: (0..n).map(user).collect(), ..Default::default() };
        let id = |i: usize| Uuid::from_u128(i as u128 + 1);
        let mut keys: Vec<MemberKey> = (0..n - 1)
            .map(|i| {
                let u = &snap.users[i];
                let manager = u.manager.as_ref().map(|_| id(0));
                MemberKey {
                    id: id(i),
                    anchor: Some(u.anchor.clone()),
                    login_name: format!("u{i}@example.com"),
                    digest: sourced_digest(u, None, manager, "example.com"),
                }
            })
            .collect();
        assert!(to_compare(&snap, &[], &keys, "example.com").is_empty(), "nothing changed");
        keys[3].digest = keys[3].digest.map(|d| d ^ 1);
        keys[20_000].digest = None;
        keys[0].anchor = Some("someone else".into());
        let mut compared = to_compare(&snap, &[], &keys, "example.com");
        compared.sort();
        let mut want: Vec<String> = (1..n - 1).map(|i| format!("a-{i}")).collect();
        want.sort();
        assert_eq!(compared, want, "the manager a-0 is no longer held: everyone it manages is compared");
        keys[0].anchor = Some("a-0".into());
        let mut compared = to_compare(&snap, &[], &keys, "example.com");
        compared.sort();
        assert_eq!(compared, ["a-20000", "a-3"]);
    }
}
