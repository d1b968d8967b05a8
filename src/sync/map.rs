//! What a directory entry means: presets for OpenLDAP and Active Directory, overridable key by
//! key, and the mapping of entries to the source's view of units, users and groups. Entries
//! that cannot be mapped are reported and skipped.

use std::collections::{BTreeMap, HashMap};

use super::ldap::RawEntry;
use crate::config::{LdapSource, Preset};

/// Attribute names by role.
#[derive(Debug, Clone)]
pub struct AttrMap {
    pub anchor: String,
    map: BTreeMap<&'static str, String>,
}

const ROLES: [&str; 12] = [
    "login_name",
    "display_name",
    "given_name",
    "family_name",
    "email",
    "mobile",
    "phone",
    "title",
    "employee_number",
    "manager",
    "member",
    "org_unit_name",
];

impl AttrMap {
    /// The anchor and every role's attribute, as one line (what a sync cursor was taken with).
    pub fn describe(&self) -> String {
        let roles: Vec<String> = self.map.iter().map(|(r, a)| format!("{r}={a}")).collect();
        format!("anchor={};{}", self.anchor, roles.join(";"))
    }

    pub fn for_source(src: &LdapSource) -> Result<AttrMap, super::SyncError> {
        let (anchor, defaults): (&str, [&str; 12]) = match src.preset {
            Preset::Openldap => (
                "entryUUID",
                [
                    "uid",
                    "cn",
                    "givenName",
                    "sn",
                    "mail",
                    "mobile",
                    "telephoneNumber",
                    "title",
                    "employeeNumber",
                    "manager",
                    "member",
                    "ou",
                ],
            ),
            Preset::ActiveDirectory => (
                "objectGUID",
                [
                    "sAMAccountName",
                    "displayName",
                    "givenName",
                    "sn",
                    "mail",
                    "mobile",
                    "telephoneNumber",
                    "title",
                    "employeeID",
                    "manager",
                    "member",
                    "ou",
                ],
            ),
        };
        let mut map: BTreeMap<&'static str, String> =
            ROLES.iter().zip(defaults).map(|(r, d)| (*r, d.to_owned())).collect();
        for (k, v) in &src.attributes {
            let role = ROLES.iter().find(|r| **r == k.as_str()).ok_or_else(|| {
                super::SyncError::Config(format!(
                    "attributes.{k} is not a known attribute role ({})",
                    ROLES.join(", ")
                ))
            })?;
            map.insert(role, v.clone());
        }
        Ok(AttrMap { anchor: src.anchor.clone().unwrap_or_else(|| anchor.to_owned()), map })
    }

    /// The attribute for a role (every role has one: the preset's, or an override).
    pub fn get(&self, role: &str) -> &str {
        self.map.get(role).map(String::as_str).unwrap_or_default()
    }

    /// The attributes to ask for.
    pub fn requested(&self, extra: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = self.map.values().cloned().collect();
        v.push(self.anchor.clone());
        v.extend(extra.iter().map(|s| (*s).to_owned()));
        v.sort();
        v.dedup();
        v
    }
}

/// An entry's anchor as text: a string attribute as it is, a binary one (AD objectGUID) as a
/// UUID in AD's byte order.
pub fn anchor_of(e: &RawEntry, attr: &str) -> Option<String> {
    // objectGUID is 16 bytes; the LDAP client hands them over as text when they happen to be
    // valid UTF-8, so look in both places.
    if !attr.eq_ignore_ascii_case("objectGUID")
        && let Some(v) = e.first(attr)
    {
        return Some(v.to_owned());
    }
    let bytes = match e.binary(attr).first() {
        Some(b) => b.as_slice(),
        None => e.all(attr).first()?.as_bytes(),
    };
    guid_text(bytes)
}

/// A 16-byte AD GUID as a UUID, in AD's byte order (the first three fields little-endian).
pub fn guid_text(bytes: &[u8]) -> Option<String> {
    let b: [u8; 16] = bytes.try_into().ok()?;
    Some(uuid::Uuid::from_bytes_le(b).to_string())
}

/// A DN in a form that compares equal however the server spelled it.
pub fn norm_dn(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    for (i, rdn) in dn.split(',').enumerate() {
        if i > 0 {
            out.push(',');
        }
        let rdn = rdn.trim();
        if rdn.is_ascii() {
            out.extend(rdn.bytes().map(|b| b.to_ascii_lowercase() as char));
        } else {
            out.push_str(&rdn.to_lowercase());
        }
    }
    out
}

pub fn parent_dn(dn: &str) -> String {
    let n = norm_dn(dn);
    n.split_once(',').map(|(_, p)| p.to_owned()).unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq)]
pub struct SrcUnit {
    pub anchor: String,
    pub name: String,
    pub parent: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SrcUser {
    pub anchor: String,
    pub dn: String,
    pub login: String,
    pub display: String,
    pub given: Option<String>,
    pub family: Option<String>,
    pub emails: Vec<String>,
    pub mobile: Option<String>,
    /// Further phone numbers (`telephoneNumber`), in order.
    pub phones: Vec<String>,
    pub title: Option<String>,
    pub employee_number: Option<String>,
    pub unit: Option<String>,
    pub manager: Option<String>,
    pub suspended: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SrcGroup {
    pub anchor: String,
    pub name: String,
    /// Member anchors (from `member` / `uniqueMember` DNs).
    pub members: Vec<String>,
    /// Member login names (`memberUid` of posixGroups), resolved when planning.
    pub member_logins: Vec<String>,
}

/// The source's view, by anchor, plus what could not be mapped. Units are always complete;
/// users and groups are complete after a full read, and only what changed after an
/// incremental one.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub units: Vec<SrcUnit>,
    pub users: Vec<SrcUser>,
    pub groups: Vec<SrcGroup>,
    pub skipped: Vec<String>,
    pub users_delta: Option<Delta>,
    pub groups_delta: Option<Delta>,
    /// The units are only those the carried users name (department paths on an incremental
    /// read): units missing from them are not gone.
    pub units_partial: bool,
}

/// What an incremental read says besides the changed entries.
#[derive(Debug, Default)]
pub struct Delta {
    pub deleted: std::collections::HashSet<String>,
    /// Present-phase answers: everything still there (anything else was deleted).
    pub present: Option<std::collections::HashSet<String>>,
}

impl Delta {
    /// Whether an object the source held, and the read did not carry, is gone.
    pub fn gone(&self, anchor: &str) -> bool {
        self.deleted.contains(anchor) || self.present.as_ref().is_some_and(|p| !p.contains(anchor))
    }
}

/// Maps raw entries into a [`Snapshot`] as they are read: units first (a user's unit is the
/// unit of its parent DN), then users one by one (none is kept raw), then groups, whose members
/// are resolved once every user's DN is known.
pub struct Mapper<'a> {
    map: &'a AttrMap,
    ad: bool,
    /// The attribute holding a department path, whose values are collected by anchor.
    dept_attr: Option<String>,
    unit_by_dn: foldhash::HashMap<String, String>,
    user_by_dn: foldhash::HashMap<String, String>,
    manager_dns: Vec<Option<String>>,
    /// Department paths by user anchor (when `dept_attr` is set).
    pub paths: HashMap<String, String>,
    /// Roles whose values [`Mapper::user`] copies: their attribute serves another role too.
    shared: Vec<&'static str>,
    s: Snapshot,
}

/// The roles whose values a user keeps.
const KEPT: [&str; 8] =
    ["display_name", "given_name", "family_name", "mobile", "phone", "title", "employee_number", "email"];

impl<'a> Mapper<'a> {
    /// Starts with the org units. `unit_base` is the base DN of the OU tree (not itself a unit).
    pub fn new(map: &'a AttrMap, unit_base: Option<&str>, units: Vec<RawEntry>, ad: bool) -> Mapper<'a> {
        let mut s = Snapshot::default();
        let base = unit_base.map(norm_dn);
        let mut unit_by_dn: foldhash::HashMap<String, String> = Default::default();
        let mut raw_units = Vec::new();
        for e in units {
            if base.as_deref() == Some(norm_dn(&e.dn).as_str()) {
                continue;
            }
            let Some(anchor) = anchor_of(&e, &map.anchor) else {
                s.skipped.push(format!("{}: no {} attribute", e.dn, map.anchor));
                continue;
            };
            unit_by_dn.insert(norm_dn(&e.dn), anchor.clone());
            raw_units.push((e, anchor));
        }
        for (e, anchor) in raw_units {
            let name = e.first(map.get("org_unit_name")).map(str::to_owned).or_else(|| {
                e.dn.split(',').next().and_then(|r| r.split_once('=')).map(|(_, v)| v.trim().to_owned())
            });
            let Some(name) = name else {
                s.skipped.push(format!("{}: no name", e.dn));
                continue;
            };
            let parent = unit_by_dn.get(&parent_dn(&e.dn)).cloned();
            s.units.push(SrcUnit { anchor, name, parent });
        }
        Mapper {
            map,
            ad,
            dept_attr: None,
            unit_by_dn,
            user_by_dn: Default::default(),
            manager_dns: Vec::new(),
            paths: HashMap::new(),
            shared: KEPT
                .into_iter()
                .filter(|r| KEPT.iter().filter(|o| map.get(o).eq_ignore_ascii_case(map.get(r))).count() > 1)
                .collect(),
            s,
        }
    }

    /// Collects each user's department path from this attribute.
    pub fn with_paths(mut self, attr: Option<String>) -> Self {
        self.dept_attr = attr;
        self
    }

    /// Maps one user entry (or reports why it cannot be mapped).
    pub fn user(&mut self, e: RawEntry) {
        let map = self.map;
        let Some(anchor) = anchor_of(&e, &map.anchor) else {
            self.s.skipped.push(format!("{}: no {} attribute", e.dn, map.anchor));
            return;
        };
        let Some(login) = e.first(map.get("login_name")).map(str::to_owned) else {
            self.s.skipped.push(format!("{}: no {} attribute (login name)", e.dn, map.get("login_name")));
            return;
        };
        let dn = norm_dn(&e.dn);
        let unit = dn.split_once(',').and_then(|(_, parent)| self.unit_by_dn.get(parent)).cloned();
        self.user_by_dn.insert(dn, anchor.clone());
        if let Some(path) = self.dept_attr.as_deref().and_then(|a| e.first(a)) {
            self.paths.insert(anchor.clone(), path.to_owned());
        }
        let disabled_by_uac = self.ad
            && e.first("userAccountControl")
                .and_then(|v| v.parse::<u32>().ok())
                .is_some_and(|uac| uac & 0x2 != 0);
        self.manager_dns.push(e.first(map.get("manager")).map(norm_dn));
        // The values the user keeps are moved out of the entry, not copied, unless another of
        // these roles reads the same attribute.
        let mut e = e;
        let shared = &self.shared;
        let mut values = |role: &'static str| -> Vec<String> {
            let attr = map.get(role);
            let mut v =
                if shared.contains(&role) { e.all(attr).to_vec() } else { e.take(attr).unwrap_or_default() };
            v.retain(|s| !s.is_empty());
            v
        };
        let mut text = |role: &'static str| values(role).into_iter().next();
        let display = text("display_name").unwrap_or_else(|| login.clone());
        let given = text("given_name");
        let family = text("family_name");
        let mobile = text("mobile");
        let title = text("title");
        let employee_number = text("employee_number");
        let emails = values("email");
        let phones = values("phone");
        self.s.users.push(SrcUser {
            display,
            given,
            family,
            emails,
            mobile,
            phones,
            title,
            employee_number,
            unit,
            manager: None,
            suspended: disabled_by_uac,
            dn: e.dn,
            anchor,
            login,
        });
    }

    /// The DNs that managers of the mapped users and members of `groups` name and that the
    /// read did not carry (an incremental read carries only changed users).
    pub fn unknown_dns(&self, groups: &[RawEntry]) -> Vec<String> {
        let member = self.map.get("member");
        let mut wanted: Vec<String> = self
            .manager_dns
            .iter()
            .flatten()
            .cloned()
            .chain(groups.iter().flat_map(|g| g.all(member).iter().map(|d| norm_dn(d))))
            .filter(|dn| !self.user_by_dn.contains_key(dn))
            .collect();
        wanted.sort();
        wanted.dedup();
        wanted
    }

    /// Resolves managers, marks the `suspended` anchors, and maps the groups. `known_dns` gives
    /// the anchors of users the read did not carry, by normalised DN.
    pub fn finish(
        mut self,
        groups: Vec<RawEntry>,
        suspended: &std::collections::HashSet<String>,
        known_dns: &HashMap<String, String>,
    ) -> Snapshot {
        let user_by_dn = &self.user_by_dn;
        let mut s = std::mem::take(&mut self.s);
        for (u, dn) in s.users.iter_mut().zip(std::mem::take(&mut self.manager_dns)) {
            u.manager = dn.and_then(|dn| user_by_dn.get(&dn).or_else(|| known_dns.get(&dn)).cloned());
            u.suspended |= suspended.contains(&u.anchor);
        }
        let attr = self.map.get("member").to_lowercase();
        let ranged = format!("{attr};range=");
        for e in groups {
            let Some(anchor) = anchor_of(&e, &self.map.anchor) else {
                s.skipped.push(format!("{}: no {} attribute", e.dn, self.map.anchor));
                continue;
            };
            let name = e.first("cn").map(str::to_owned).unwrap_or_else(|| e.dn.clone());
            // Members are followed by anchor: a renamed or moved member is still found. DNs come
            // from the member attribute (ranged on AD) and from `uniqueMember` (groupOfUniqueNames,
            // whose values may end in `#'…'B`); posixGroups name login names in `memberUid`.
            let mut members: Vec<String> = Vec::new();
            for (key, values) in &e.attrs {
                if key == &attr || key.starts_with(&ranged) || key == "uniquemember" {
                    members.extend(values.iter().filter_map(|dn| {
                        let dn = if key == "uniquemember" { dn.split('#').next().unwrap_or(dn) } else { dn };
                        let dn = norm_dn(dn);
                        user_by_dn.get(&dn).or_else(|| known_dns.get(&dn)).cloned()
                    }));
                }
            }
            let member_logins: Vec<String> =
                e.all("memberUid").iter().map(|u| u.trim().to_lowercase()).collect();
            members.sort();
            members.dedup();
            s.groups.push(SrcGroup { anchor, name, members, member_logins });
        }
        s
    }
}

/// Builds the org tree from a path in each user's entry (`Sales/East`): one unit per distinct
/// path prefix, anchored by the path itself (lower-cased), and each user in the unit of its path.
pub fn units_from_paths(s: &mut Snapshot, paths: &HashMap<String, String>, separator: &str) {
    let mut seen: HashMap<String, ()> = HashMap::new();
    for u in &mut s.users {
        let Some(path) = paths.get(&u.anchor) else { continue };
        let parts: Vec<&str> = path.split(separator).map(str::trim).filter(|p| !p.is_empty()).collect();
        let mut parent: Option<String> = None;
        for i in 0..parts.len() {
            let anchor = format!("path:{}", parts[..=i].join("/").to_lowercase());
            if seen.insert(anchor.clone(), ()).is_none() {
                s.units.push(SrcUnit {
                    anchor: anchor.clone(),
                    name: parts[i].to_owned(),
                    parent: parent.clone(),
                });
            }
            parent = Some(anchor);
        }
        u.unit = parent;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_compare_however_spelled() {
        assert_eq!(norm_dn("uid=A, OU=People,dc=Example"), "uid=a,ou=people,dc=example");
        assert_eq!(norm_dn("CN=Ärger , OU=STRASSE"), "cn=ärger,ou=strasse");
        assert_eq!(parent_dn("uid=a,ou=people,dc=example"), "ou=people,dc=example");
    }

    fn entry(dn: &str, attrs: &[(&str, &[&str])]) -> RawEntry {
        RawEntry {
            dn: dn.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_lowercase(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            bin: Vec::new(),
        }
    }

    /// Values are moved out of an entry, except when two roles read one attribute: both get it.
    #[test]
    fn users_map_every_role_even_when_two_share_an_attribute() {
        let mut map = AttrMap { anchor: "entryUUID".into(), map: BTreeMap::new() };
        for (role, attr) in ROLES.iter().zip([
            "uid",
            "cn",
            "givenName",
            "sn",
            "mail",
            "mobile",
            "telephoneNumber",
            "cn",
            "employeeNumber",
            "manager",
            "member",
            "ou",
        ]) {
            map.map.insert(role, attr.to_owned());
        }
        let ou = entry("ou=Sales,dc=example", &[("entryUUID", &["u-1"]), ("ou", &["Sales"])]);
        let mut m = Mapper::new(&map, Some("dc=example"), vec![ou], false);
        m.user(entry(
            "uid=ada,ou=Sales,dc=example",
            &[
                ("entryUUID", &["a-1"]),
                ("uid", &["ada"]),
                ("cn", &["Ada Lovelace"]),
                ("sn", &[""]),
                ("mail", &["ada@example.com", "", "a@example.com"]),
                ("mobile", &["+1 555 0100"]),
            ],
        ));
        m.user(entry("uid=nobody,ou=Sales,dc=example", &[("uid", &["nobody"])]));
        let s = m.finish(Vec::new(), &std::collections::HashSet::from(["a-1".to_owned()]), &HashMap::new());
        assert_eq!(s.users.len(), 1, "{:?}", s.skipped);
        let u = &s.users[0];
        assert_eq!((u.display.as_str(), u.title.as_deref()), ("Ada Lovelace", Some("Ada Lovelace")));
        assert_eq!((u.login.as_str(), u.anchor.as_str(), u.unit.as_deref()), ("ada", "a-1", Some("u-1")));
        assert_eq!(u.family, None, "an empty value is no value");
        assert_eq!(u.emails, ["ada@example.com", "a@example.com"]);
        assert_eq!(u.mobile.as_deref(), Some("+1 555 0100"));
        assert!(u.suspended);
        assert!(s.skipped[0].contains("no entryUUID"), "{:?}", s.skipped);
    }

    #[test]
    fn binary_guids_read_as_uuids() {
        let mut e = RawEntry::default();
        e.bin.push(("objectguid".into(), vec![(0u8..16).collect()]));
        assert_eq!(anchor_of(&e, "objectGUID").unwrap(), "03020100-0504-0706-0809-0a0b0c0d0e0f");
    }
}
