//! An entry as the LDAP server answers it, and search filters evaluated against it.
//!
//! Matching is case-insensitive for every attribute (Roster's values are names, numbers and
//! addresses: caseIgnoreMatch is what apps expect of them); DN-valued attributes (`member`,
//! `memberOf`, `entryDN`) compare in DN normal form; ordering (`>=`, `<=`) is numeric when both
//! sides are integers. An extensible match is undefined (RFC 4511 4.5.1.7: so is its negation).

use ldap3_proto::proto::{LdapFilter, LdapPartialAttribute, LdapSearchResultEntry, LdapSubstringFilter};

use super::dn;

/// Attributes only returned when asked for by name or with `+`.
const OPERATIONAL: &[&str] =
    &["entryuuid", "entrydn", "createtimestamp", "modifytimestamp", "hassubordinates"];

/// DN-valued attributes: compared in DN normal form.
const DN_VALUED: &[&str] = &["member", "memberof", "entrydn", "manager"];

#[derive(Debug, Clone, Default)]
pub struct Entry {
    pub dn: String,
    /// `(name as written, values)`; names are unique ignoring case.
    pub attrs: Vec<(&'static str, Vec<String>)>,
}

impl Entry {
    pub fn new(dn: String) -> Entry {
        Entry { dn, attrs: Vec::new() }
    }

    /// Adds an attribute (nothing when `values` is empty).
    pub fn set(&mut self, name: &'static str, values: Vec<String>) -> &mut Entry {
        if !values.is_empty() {
            self.attrs.push((name, values));
        }
        self
    }

    pub fn one(&mut self, name: &'static str, value: impl Into<String>) -> &mut Entry {
        self.set(name, vec![value.into()])
    }

    /// Adds an attribute `w` wants, computing its values only then.
    pub fn with(
        &mut self,
        w: &Wanted,
        name: &'static str,
        values: impl FnOnce() -> Vec<String>,
    ) -> &mut Entry {
        if w.has(name) {
            self.set(name, values());
        }
        self
    }

    pub fn opt(&mut self, name: &'static str, value: Option<&String>) -> &mut Entry {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            self.attrs.push((name, vec![v.clone()]));
        }
        self
    }

    fn values(&self, name: &str) -> Option<&[String]> {
        if name.eq_ignore_ascii_case("entrydn") {
            return None;
        }
        self.attrs.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// Whether the entry matches `f`.
    pub fn matches(&self, f: &LdapFilter) -> bool {
        self.eval(f) == Some(true)
    }

    /// Three-valued: `None` is undefined.
    fn eval(&self, f: &LdapFilter) -> Option<bool> {
        match f {
            LdapFilter::And(fs) => {
                let mut out = Some(true);
                for f in fs {
                    match self.eval(f) {
                        Some(false) => return Some(false),
                        None => out = None,
                        Some(true) => {}
                    }
                }
                out
            }
            LdapFilter::Or(fs) => {
                let mut out = Some(false);
                for f in fs {
                    match self.eval(f) {
                        Some(true) => return Some(true),
                        None => out = None,
                        Some(false) => {}
                    }
                }
                out
            }
            LdapFilter::Not(f) => self.eval(f).map(|b| !b),
            LdapFilter::Present(a) => Some(a.eq_ignore_ascii_case("entrydn") || self.values(a).is_some()),
            LdapFilter::Equality(a, v) | LdapFilter::Approx(a, v) => {
                let approx = matches!(f, LdapFilter::Approx(..));
                let want = norm(a, v, approx);
                Some(self.each(a, |have| norm(a, have, approx) == want))
            }
            LdapFilter::GreaterOrEqual(a, v) => {
                Some(self.each(a, |have| order(have, v) != std::cmp::Ordering::Less))
            }
            LdapFilter::LessOrEqual(a, v) => {
                Some(self.each(a, |have| order(have, v) != std::cmp::Ordering::Greater))
            }
            LdapFilter::Substring(a, s) => Some(self.each(a, |have| substring(&have.to_lowercase(), s))),
            LdapFilter::Extensible(_) => None,
        }
    }

    fn each(&self, attr: &str, test: impl Fn(&str) -> bool) -> bool {
        if attr.eq_ignore_ascii_case("entrydn") {
            return test(&self.dn);
        }
        self.values(attr).is_some_and(|vs| vs.iter().any(|v| test(v)))
    }

    /// The entry as sent: the attributes `selection` asks for (RFC 4511 4.5.1.8: none or `*`
    /// for every user attribute, `+` for operational ones, `1.1` for none), values left out
    /// when `types_only`.
    pub fn to_result(&self, selection: &Selection, types_only: bool) -> LdapSearchResultEntry {
        let mut attributes = Vec::new();
        for (name, vals) in &self.attrs {
            let lower = name.to_ascii_lowercase();
            let operational = OPERATIONAL.contains(&lower.as_str());
            if selection.wants(&lower, operational) {
                let vals = if types_only {
                    Vec::new()
                } else {
                    vals.iter().map(|v| v.as_bytes().to_vec()).collect()
                };
                attributes.push(LdapPartialAttribute { atype: (*name).to_owned(), vals });
            }
        }
        if selection.wants("entrydn", true) {
            let vals = if types_only { Vec::new() } else { vec![self.dn.as_bytes().to_vec()] };
            attributes.push(LdapPartialAttribute { atype: "entryDN".into(), vals });
        }
        LdapSearchResultEntry { dn: self.dn.clone(), attributes }
    }
}

/// What a search asks to be returned.
#[derive(Debug, Clone)]
pub struct Selection {
    all_user: bool,
    all_operational: bool,
    names: Vec<String>,
}

impl Selection {
    pub fn new(attrs: &[String]) -> Selection {
        let names: Vec<String> = attrs.iter().map(|a| a.trim().to_ascii_lowercase()).collect();
        let only_none = names.iter().all(|n| n == "1.1") && !names.is_empty();
        Selection {
            all_user: !only_none && (names.is_empty() || names.iter().any(|n| n == "*")),
            all_operational: names.iter().any(|n| n == "+"),
            names,
        }
    }

    fn wants(&self, lower: &str, operational: bool) -> bool {
        (if operational { self.all_operational } else { self.all_user })
            || self.names.iter().any(|n| n == lower)
    }
}

/// The attributes a search needs of an entry: those it returns and those its filter tests
/// (so an entry is built with only these).
#[derive(Debug, Clone)]
pub struct Wanted {
    all_user: bool,
    all_operational: bool,
    names: Vec<String>,
}

impl Wanted {
    pub fn new(sel: &Selection, filter: &LdapFilter) -> Wanted {
        let mut names = sel.names.clone();
        fn walk(f: &LdapFilter, out: &mut Vec<String>) {
            match f {
                LdapFilter::And(fs) | LdapFilter::Or(fs) => fs.iter().for_each(|f| walk(f, out)),
                LdapFilter::Not(f) => walk(f, out),
                LdapFilter::Equality(a, _)
                | LdapFilter::Approx(a, _)
                | LdapFilter::GreaterOrEqual(a, _)
                | LdapFilter::LessOrEqual(a, _)
                | LdapFilter::Substring(a, _)
                | LdapFilter::Present(a) => out.push(a.to_ascii_lowercase()),
                LdapFilter::Extensible(m) => out.extend(m.type_.as_ref().map(|t| t.to_ascii_lowercase())),
            }
        }
        walk(filter, &mut names);
        Wanted { all_user: sel.all_user, all_operational: sel.all_operational, names }
    }

    pub fn has(&self, name: &str) -> bool {
        let operational = OPERATIONAL.iter().any(|o| o.eq_ignore_ascii_case(name));
        (if operational { self.all_operational } else { self.all_user })
            || self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

fn norm(attr: &str, v: &str, approx: bool) -> String {
    if DN_VALUED.iter().any(|d| attr.eq_ignore_ascii_case(d)) {
        return dn::normal(v);
    }
    let lower = v.trim().to_lowercase();
    if approx { lower.split_whitespace().collect::<String>() } else { lower }
}

fn order(have: &str, want: &str) -> std::cmp::Ordering {
    match (have.trim().parse::<i64>(), want.trim().parse::<i64>()) {
        (Ok(a), Ok(b)) => a.cmp(&b),
        _ => have.to_lowercase().cmp(&want.to_lowercase()),
    }
}

fn substring(have: &str, s: &LdapSubstringFilter) -> bool {
    let mut rest = have;
    if let Some(init) = &s.initial {
        let init = init.to_lowercase();
        match rest.strip_prefix(init.as_str()) {
            Some(r) => rest = r,
            None => return false,
        }
    }
    for any in &s.any {
        let any = any.to_lowercase();
        match rest.find(any.as_str()) {
            Some(i) => rest = &rest[i + any.len()..],
            None => return false,
        }
    }
    match &s.final_ {
        Some(fin) => rest.ends_with(fin.to_lowercase().as_str()),
        None => true,
    }
}

/// An equality assertion on `attr` every matching entry must satisfy (a top-level conjunct),
/// so a search can look entries up by it instead of reading them all.
pub fn required_equality<'a>(f: &'a LdapFilter, attr: &str) -> Option<&'a str> {
    match f {
        LdapFilter::Equality(a, v) if a.eq_ignore_ascii_case(attr) => Some(v),
        LdapFilter::And(fs) => fs.iter().find_map(|f| required_equality(f, attr)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3_proto::parse_ldap_filter_str;

    fn person() -> Entry {
        let mut e = Entry::new("uid=1001,ou=people,dc=example,dc=com".into());
        e.set("objectClass", vec!["top".into(), "inetOrgPerson".into()])
            .one("uid", "1001")
            .one("cn", "Zhang Wei")
            .set("mail", vec!["wei@example.com".into()])
            .one("rosterOrgPath", "/Example/研发部/Backend")
            .set("memberOf", vec!["cn=Ops,ou=groups,dc=example,dc=com".into()])
            .one("entryUUID", "0190");
        e
    }

    fn m(f: &str) -> bool {
        person().matches(&parse_ldap_filter_str(f).unwrap_or_else(|e| panic!("{f}: {e:?}")))
    }

    #[test]
    fn every_filter_kind() {
        assert!(m("(uid=1001)"));
        // (ldap3_proto's text parser takes no spaces in values; the wire form does.)
        let eq = LdapFilter::Equality("CN".into(), "zhang wei".into());
        assert!(person().matches(&eq));
        assert!(m("(objectclass=INETORGPERSON)"));
        assert!(m("(&(objectClass=inetOrgPerson)(|(uid=1)(mail=WEI@example.com)))"));
        assert!(m("(!(uid=1002))"));
        assert!(m("(uid>=999)"), "numeric order: 1001 >= 999");
        assert!(!m("(uid<=999)"));
        assert!(m("(mail=*)"));
        assert!(!m("(title=*)"));
        assert!(m("(cn=Zh*W*i)"));
        assert!(m("(rosterOrgPath=*/研发部/*)"));
        assert!(!m("(cn=*x*)"));
        assert!(m("(cn~=zhangwei)"));
        let dn = LdapFilter::Equality("memberOf".into(), "CN=ops, ou=Groups,dc=example,dc=com".into());
        assert!(person().matches(&dn), "DN values in normal form");
        let entry_dn = LdapFilter::Equality("entryDN".into(), "uid=1001,ou=people,dc=example,dc=com".into());
        assert!(person().matches(&entry_dn));
        assert!(!m("(uid:dn:=1001)"), "an extensible match is undefined");
        assert!(!m("(!(uid:dn:=1001))"), "and so is its negation");
        assert!(!m("(|(title=x)(uid:dn:=1))"));
    }

    #[test]
    fn selection_of_attributes() {
        let e = person();
        let names = |attrs: &[&str]| -> Vec<String> {
            let sel = Selection::new(&attrs.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            e.to_result(&sel, false).attributes.into_iter().map(|a| a.atype).collect()
        };
        assert!(names(&[]).contains(&"uid".to_string()));
        assert!(!names(&[]).contains(&"entryUUID".to_string()), "operational only when asked");
        assert!(names(&["+"]).contains(&"entryUUID".to_string()));
        assert!(!names(&["+"]).contains(&"uid".to_string()));
        assert_eq!(names(&["1.1"]), Vec::<String>::new());
        assert_eq!(names(&["CN", "entryuuid"]), vec!["cn".to_string(), "entryUUID".to_string()]);
        assert!(names(&["*", "+"]).len() > 6);
    }

    #[test]
    fn lookups_use_required_equalities() {
        let f = parse_ldap_filter_str("(&(objectClass=inetOrgPerson)(uid=42))").unwrap();
        assert_eq!(required_equality(&f, "uid"), Some("42"));
        let f = parse_ldap_filter_str("(|(uid=42)(uid=43))").unwrap();
        assert_eq!(required_equality(&f, "uid"), None);
    }
}
