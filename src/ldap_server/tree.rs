//! Roster's directory as an LDAP tree.
//!
//! ```text
//! BASE                                   (dcObject, organization)
//!   ou=people,BASE                       members: uid=<account number>,ou=people,BASE
//!   ou=groups,BASE                       groups:  cn=<group id>,ou=groups,BASE (groupOfNames)
//!   ou=units,BASE                        the org tree: ou=<name>,...,ou=units,BASE
//!   ou=services,BASE                     service accounts bind as cn=<name>,ou=services,BASE
//! ```
//!
//! A member's DN is their account number, which never changes while they hold it: a move or a
//! rename leaves it alone. (A number reused after a deletion names the new holder; `entryUUID`
//! is the member's id and tells them apart.) Only active members are in the tree. A group's DN
//! is its id (names may repeat and change); its `cn` holds the id and the name. Units are named
//! by their path, so a moved or renamed unit has a new DN; members carry `rosterOrgUnitId` and
//! `rosterOrgPath`, so apps find a unit's members by filter whatever its DN, and a unit lists
//! its direct members' account numbers as `memberUid` (what an IM server's shared roster reads
//! to show the org tree as contact groups).

use std::collections::HashMap;

use uuid::Uuid;

use super::dn::{Dn, escape};
use super::entry::{Entry, Wanted};
use crate::directory::model::{Group, Member, MemberState, OrgUnit};

/// The units and groups (few, read together) with their DNs; members are read on demand.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub units: Vec<OrgUnit>,
    by_id: HashMap<Uuid, usize>,
    /// Each unit's DN, path (`/Root/Child`) and ancestors (nearest first, itself included).
    unit_dn: HashMap<Uuid, String>,
    unit_path: HashMap<Uuid, String>,
    pub unit_ancestors: HashMap<Uuid, Vec<Uuid>>,
    /// Each group with its active members' account numbers.
    pub groups: Vec<(Group, Vec<i64>)>,
    member_groups: HashMap<Uuid, Vec<Uuid>>,
    /// Each unit's direct active members' account numbers (`memberUid` on its entry).
    unit_members: HashMap<Uuid, Vec<i64>>,
}

/// The base DN and the tree's fixed DNs.
#[derive(Debug, Clone)]
pub struct Names {
    pub base: String,
    pub base_dn: Dn,
    pub people: Dn,
    pub groups: Dn,
    pub units: Dn,
    pub services: Dn,
}

impl Names {
    pub fn new(base: &str) -> Names {
        let base_dn = Dn::parse(base).unwrap_or_default();
        let under = |ou: &str| Dn::parse(&format!("ou={ou},{base}")).unwrap_or_default();
        Names {
            base: base.to_owned(),
            people: under("people"),
            groups: under("groups"),
            units: under("units"),
            services: under("services"),
            base_dn,
        }
    }

    pub fn member_dn(&self, number: i64) -> String {
        format!("uid={number},ou=people,{}", self.base)
    }

    pub fn group_dn(&self, id: Uuid) -> String {
        format!("cn={id},ou=groups,{}", self.base)
    }

    pub fn service_dn(&self, name: &str) -> String {
        format!("cn={},ou=services,{}", escape(name), self.base)
    }
}

impl Snapshot {
    pub fn new(
        names: &Names,
        units: Vec<OrgUnit>,
        groups: Vec<Group>,
        memberships: Vec<(Uuid, Uuid, i64)>,
        unit_members: Vec<(Uuid, i64)>,
    ) -> Snapshot {
        let by_id: HashMap<Uuid, usize> = units.iter().enumerate().map(|(i, u)| (u.id, i)).collect();
        let mut s = Snapshot { by_id, ..Default::default() };
        for u in &units {
            // Walk up; a corrupt cycle stops at the number of units.
            let mut chain = vec![u.id];
            let mut at = u.parent_id;
            while let Some(p) = at {
                if chain.len() > units.len() || chain.contains(&p) {
                    break;
                }
                chain.push(p);
                at = s.by_id.get(&p).and_then(|&i| units[i].parent_id);
            }
            let names_up: Vec<&str> =
                chain.iter().filter_map(|id| s.by_id.get(id).map(|&i| units[i].name.as_str())).collect();
            let rdns: Vec<String> = names_up.iter().map(|n| format!("ou={}", escape(n))).collect();
            s.unit_dn.insert(u.id, format!("{},ou=units,{}", rdns.join(","), names.base));
            let path: Vec<&str> = names_up.iter().rev().copied().collect();
            s.unit_path.insert(u.id, format!("/{}", path.join("/")));
            s.unit_ancestors.insert(u.id, chain);
        }
        let mut grouped: HashMap<Uuid, Vec<i64>> = HashMap::new();
        for (g, m, number) in memberships {
            grouped.entry(g).or_default().push(number);
            s.member_groups.entry(m).or_default().push(g);
        }
        s.groups = groups
            .into_iter()
            .map(|g| {
                let ms = grouped.remove(&g.id).unwrap_or_default();
                (g, ms)
            })
            .collect();
        for (u, n) in unit_members {
            s.unit_members.entry(u).or_default().push(n);
        }
        s.units = units;
        s
    }

    pub fn unit_dn(&self, id: Uuid) -> Option<&str> {
        self.unit_dn.get(&id).map(String::as_str)
    }

    /// Whether `unit` is `scope` or under it.
    pub fn unit_under(&self, unit: Uuid, scope: Uuid) -> bool {
        self.unit_ancestors.get(&unit).is_some_and(|a| a.contains(&scope))
    }

    /// Whether a member is visible to a client scoped to `scope` (any of their units under it).
    pub fn member_in(&self, m: &Member, scope: Option<Uuid>) -> bool {
        match scope {
            None => true,
            Some(s) => m.primary_org_unit_id.iter().chain(&m.org_unit_ids).any(|u| self.unit_under(*u, s)),
        }
    }

    pub fn unit_entry(&self, u: &OrgUnit) -> Entry {
        let mut e = Entry::new(self.unit_dn(u.id).unwrap_or_default().to_owned());
        e.set("objectClass", vec!["top".into(), "organizationalUnit".into(), "rosterOrgUnit".into()])
            .one("ou", u.name.clone())
            .one("rosterOrgUnitId", u.id.to_string())
            .opt("rosterOrgPath", self.unit_path.get(&u.id))
            .set(
                "memberUid",
                self.unit_members
                    .get(&u.id)
                    .map(|ns| ns.iter().map(i64::to_string).collect())
                    .unwrap_or_default(),
            )
            .one("entryUUID", u.id.to_string())
            .one("createTimestamp", generalized(u.created_at))
            .one("modifyTimestamp", generalized(u.updated_at));
        if let Some(p) = u.parent_id {
            e.one("rosterParentId", p.to_string());
        }
        e
    }

    pub fn group_entry(&self, names: &Names, g: &Group, members: &[i64]) -> Entry {
        let mut e = Entry::new(names.group_dn(g.id));
        let dns: Vec<String> = members.iter().map(|n| names.member_dn(*n)).collect();
        e.set("objectClass", vec!["top".into(), "groupOfNames".into(), "rosterGroup".into()])
            .set("cn", vec![g.id.to_string(), g.name.clone()])
            .one("description", g.name.clone())
            .one("displayName", g.name.clone())
            .set("member", dns)
            .one("entryUUID", g.id.to_string())
            .one("createTimestamp", generalized(g.created_at))
            .one("modifyTimestamp", generalized(g.updated_at));
        e
    }

    /// A member's entry with the attributes `w` wants (a paged read of every member for their
    /// `uid` builds no group DNs).
    pub fn member_entry(&self, names: &Names, m: &Member, w: &Wanted) -> Entry {
        let mut e = Entry::new(names.member_dn(m.account_number));
        let mut unit_ids: Vec<Uuid> = Vec::new();
        for u in m.primary_org_unit_id.iter().chain(m.org_unit_ids.iter()) {
            if !unit_ids.contains(u) {
                unit_ids.push(*u);
            }
        }
        e.set(
            "objectClass",
            vec![
                "top".into(),
                "person".into(),
                "organizationalPerson".into(),
                "inetOrgPerson".into(),
                "rosterPerson".into(),
            ],
        )
        .with(w, "uid", || vec![m.account_number.to_string()])
        .with(w, "rosterAccountNumber", || vec![m.account_number.to_string()])
        .with(w, "rosterLoginName", || vec![m.login_name.clone()])
        .with(w, "cn", || vec![m.display_name.clone()])
        .with(w, "displayName", || vec![m.display_name.clone()])
        .with(w, "sn", || {
            vec![m.family_name.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| m.display_name.clone())]
        })
        .with(w, "givenName", || m.given_name.iter().filter(|s| !s.is_empty()).cloned().collect())
        .with(w, "mail", || {
            let mail: Vec<String> = m.emails.iter().map(|e| e.address.clone()).collect();
            if mail.is_empty() { vec![m.login_name.clone()] } else { mail }
        })
        .with(w, "mobile", || m.mobile.iter().filter(|s| !s.is_empty()).cloned().collect())
        .with(w, "telephoneNumber", || m.phones.iter().map(|p| p.number.clone()).collect())
        .with(w, "title", || m.title.iter().filter(|s| !s.is_empty()).cloned().collect())
        .with(w, "employeeNumber", || m.employee_number.iter().filter(|s| !s.is_empty()).cloned().collect())
        .with(w, "departmentNumber", || m.department.iter().filter(|s| !s.is_empty()).cloned().collect())
        .with(w, "o", || m.organization.iter().filter(|s| !s.is_empty()).cloned().collect())
        .with(w, "ou", || {
            unit_ids.iter().filter_map(|u| self.by_id.get(u).map(|&i| self.units[i].name.clone())).collect()
        })
        .with(w, "rosterOrgUnitId", || unit_ids.iter().map(Uuid::to_string).collect())
        .with(w, "rosterOrgPath", || unit_ids.iter().filter_map(|u| self.unit_path.get(u).cloned()).collect())
        .with(w, "rosterState", || vec![m.state.as_str().to_owned()])
        .with(w, "memberOf", || {
            self.member_groups
                .get(&m.id)
                .map(|gs| gs.iter().map(|g| names.group_dn(*g)).collect())
                .unwrap_or_default()
        })
        .with(w, "entryUUID", || vec![m.id.to_string()])
        .with(w, "createTimestamp", || vec![generalized(m.created_at)])
        .with(w, "modifyTimestamp", || vec![generalized(m.updated_at)]);
        e
    }
}

/// Whether apps may see (and bind as) a member.
pub fn visible(m: &Member) -> bool {
    m.state == MemberState::Active
}

/// The base entry and the containers.
pub fn fixed_entries(names: &Names, organization: &str) -> Vec<Entry> {
    let mut base = Entry::new(names.base.clone());
    let dc = names.base_dn.0.first().map(|(_, v)| v.clone()).unwrap_or_default();
    base.set("objectClass", vec!["top".into(), "dcObject".into(), "organization".into()])
        .one("dc", dc)
        .one("o", organization.to_owned());
    let mut out = vec![base];
    for (ou, what) in [
        ("people", "members"),
        ("groups", "groups"),
        ("units", "the org tree"),
        ("services", "service accounts (bind only)"),
    ] {
        let mut e = Entry::new(format!("ou={ou},{}", names.base));
        e.set("objectClass", vec!["top".into(), "organizationalUnit".into()])
            .one("ou", ou)
            .one("description", what);
        out.push(e);
    }
    out
}

pub fn generalized(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y%m%d%H%M%SZ").to_string()
}
