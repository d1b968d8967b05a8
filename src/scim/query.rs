//! SCIM filters and `sortBy` as directory searches: attribute paths become directory fields,
//! so the store runs them in SQL with indexes. Unknown attributes are `invalidFilter`.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::filter::{AttrPath, CompareOp, Filter, Value as FVal};
use super::{ENTERPRISE_USER, GROUP, ORG_UNIT, ROSTER_USER, ScimError, USER};
use crate::directory::model::Source;
use crate::directory::query::{Expr, Field, Op, Val};

/// Which resource a filter is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    User,
    Group,
}

/// Context of a translation: the resource and the client (its `externalId`s are its anchors).
pub struct Translator<'a> {
    pub resource: Resource,
    pub client: &'a Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Free text.
    Text,
    Bool,
    Int,
    Time,
    Id,
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad("invalidFilter", detail)
}

fn op(o: CompareOp) -> Op {
    match o {
        CompareOp::Eq => Op::Eq,
        CompareOp::Ne => Op::Ne,
        CompareOp::Co => Op::Co,
        CompareOp::Sw => Op::Sw,
        CompareOp::Ew => Op::Ew,
        CompareOp::Gt => Op::Gt,
        CompareOp::Ge => Op::Ge,
        CompareOp::Lt => Op::Lt,
        CompareOp::Le => Op::Le,
    }
}

/// A parsed path, lower-cased, with the schema checked: `(attr, sub)`.
fn names(p: &AttrPath, resource: Resource) -> Result<(String, Option<String>), ScimError> {
    if let Some(schema) = &p.schema {
        let known: &[&str] = match resource {
            Resource::User => &[USER, ENTERPRISE_USER, ROSTER_USER],
            Resource::Group => &[GROUP, ORG_UNIT],
        };
        if !known.iter().any(|k| k.eq_ignore_ascii_case(schema)) {
            return Err(invalid(format!("unknown schema {schema}")));
        }
    }
    Ok((p.attr.to_lowercase(), p.sub_attr.as_ref().map(|s| s.to_lowercase())))
}

impl Translator<'_> {
    pub fn filter(&self, f: &Filter) -> Result<Expr, ScimError> {
        Ok(match f {
            Filter::And(a, b) => Expr::And(Box::new(self.filter(a)?), Box::new(self.filter(b)?)),
            Filter::Or(a, b) => Expr::Or(Box::new(self.filter(a)?), Box::new(self.filter(b)?)),
            Filter::Not(a) => Expr::Not(Box::new(self.filter(a)?)),
            Filter::Present(p) => self.attr(p, None)?,
            Filter::Compare(p, o, v) => self.attr(p, Some((*o, v)))?,
            Filter::ValuePath(p, inner) => {
                let (attr, _) = names(p, self.resource)?;
                match (self.resource, attr.as_str()) {
                    (Resource::User, "emails") => Expr::AnyEmail(Box::new(self.inner(inner, "emails")?)),
                    (Resource::Group, "members") => {
                        Expr::AnyGroupMember(Box::new(self.inner(inner, "members")?))
                    }
                    (Resource::User, "phonenumbers") => self.inner(inner, "phonenumbers")?,
                    _ => return Err(invalid(format!("{} has no value filter here", p.attr))),
                }
            }
        })
    }

    /// A value filter's inside: its paths are sub-attributes of `parent`.
    fn inner(&self, f: &Filter, parent: &str) -> Result<Expr, ScimError> {
        let sub =
            |p: &AttrPath| AttrPath { schema: None, attr: parent.to_owned(), sub_attr: Some(p.attr.clone()) };
        Ok(match f {
            Filter::And(a, b) => {
                Expr::And(Box::new(self.inner(a, parent)?), Box::new(self.inner(b, parent)?))
            }
            Filter::Or(a, b) => Expr::Or(Box::new(self.inner(a, parent)?), Box::new(self.inner(b, parent)?)),
            Filter::Not(a) => Expr::Not(Box::new(self.inner(a, parent)?)),
            Filter::Present(p) => self.leaf(&sub(p), None)?,
            Filter::Compare(p, o, v) => self.leaf(&sub(p), Some((*o, v)))?,
            Filter::ValuePath(..) => return Err(invalid("value filters cannot nest")),
        })
    }

    /// An attribute at the top level: multi-valued ones become "any of".
    fn attr(&self, p: &AttrPath, cmp: Option<(CompareOp, &FVal)>) -> Result<Expr, ScimError> {
        let (attr, _) = names(p, self.resource)?;
        let leaf = self.leaf(p, cmp)?;
        Ok(match (self.resource, attr.as_str()) {
            (Resource::User, "emails") => Expr::AnyEmail(Box::new(leaf)),
            (Resource::Group, "members") => Expr::AnyGroupMember(Box::new(leaf)),
            _ => leaf,
        })
    }

    fn leaf(&self, p: &AttrPath, cmp: Option<(CompareOp, &FVal)>) -> Result<Expr, ScimError> {
        let (attr, sub) = names(p, self.resource)?;
        let field = match (self.resource, attr.as_str(), sub.as_deref()) {
            (Resource::User, "id", None) | (Resource::Group, "id", None) => (Field::Id, Kind::Id),
            (_, "externalid", None) => {
                let anchor = self.leaf_field(Field::Anchor, Kind::Text, cmp)?;
                let own = Expr::Cmp(Field::Source, Op::Eq, Val::Text(self.client.to_string()));
                return Ok(Expr::And(Box::new(own), Box::new(anchor)));
            }
            (_, "meta", Some("created")) => (Field::Created, Kind::Time),
            (_, "meta", Some("lastmodified")) => (Field::Modified, Kind::Time),
            (Resource::User, "username", None) => (Field::LoginName, Kind::Text),
            (Resource::User, "displayname", None) | (Resource::User, "name", Some("formatted")) => {
                (Field::DisplayName, Kind::Text)
            }
            (Resource::User, "name", Some("givenname")) => (Field::GivenName, Kind::Text),
            (Resource::User, "name", Some("familyname")) => (Field::FamilyName, Kind::Text),
            (Resource::User, "title", None) => (Field::Title, Kind::Text),
            (Resource::User, "active", None) => (Field::Active, Kind::Bool),
            (Resource::User, "emails", None | Some("value")) => (Field::EmailAddress, Kind::Text),
            (Resource::User, "emails", Some("type")) => (Field::EmailKind, Kind::Text),
            (Resource::User, "emails", Some("primary")) => (Field::EmailPrimary, Kind::Bool),
            (Resource::User, "phonenumbers", None | Some("value")) => (Field::Mobile, Kind::Text),
            (Resource::User, "employeenumber", None) => (Field::EmployeeNumber, Kind::Text),
            (Resource::User, "manager", None | Some("value")) => (Field::ManagerId, Kind::Id),
            (Resource::User, "accountnumber", None) => (Field::AccountNumber, Kind::Int),
            (Resource::User, "orgunits", None | Some("value")) => (Field::PrimaryOrgUnitId, Kind::Id),
            (_, "schemas", None) => {
                let known = match (self.resource, cmp) {
                    (_, None) => true,
                    (Resource::User, Some((CompareOp::Eq, FVal::String(s)))) => {
                        [USER, ENTERPRISE_USER, ROSTER_USER].iter().any(|k| k.eq_ignore_ascii_case(s))
                    }
                    (Resource::Group, Some((CompareOp::Eq, FVal::String(s)))) => {
                        s.eq_ignore_ascii_case(GROUP)
                    }
                    _ => return Err(invalid("schemas supports only eq")),
                };
                return Ok(Expr::Const(known));
            }
            (Resource::Group, "displayname", None) => (Field::GroupName, Kind::Text),
            (Resource::Group, "members", None | Some("value")) => (Field::GroupMemberId, Kind::Id),
            _ => {
                let name = match &p.sub_attr {
                    Some(s) => format!("{}.{s}", p.attr),
                    None => p.attr.clone(),
                };
                return Err(invalid(format!("unknown or unfilterable attribute {name}")));
            }
        };
        self.leaf_field(field.0, field.1, cmp)
    }

    fn leaf_field(
        &self,
        field: Field,
        kind: Kind,
        cmp: Option<(CompareOp, &FVal)>,
    ) -> Result<Expr, ScimError> {
        let Some((o, v)) = cmp else { return Ok(Expr::Present(field)) };
        let o = op(o);
        let ordering = matches!(o, Op::Gt | Op::Ge | Op::Lt | Op::Le);
        let substring = matches!(o, Op::Co | Op::Sw | Op::Ew);
        if let FVal::Null = v {
            return Ok(Expr::Cmp(field, o, Val::Null));
        }
        let val = match (kind, v) {
            (Kind::Text, FVal::String(s)) => Val::Text(s.clone()),
            (Kind::Bool, FVal::Bool(b)) if !ordering && !substring => Val::Bool(*b),
            (Kind::Bool, FVal::String(s)) if !ordering && !substring => {
                match super::as_bool(&serde_json::json!(s)) {
                    Some(b) => Val::Bool(b),
                    None => return Err(invalid(format!("{s:?} is not a boolean"))),
                }
            }
            (Kind::Int, FVal::Number(n)) if !substring => match n.as_i64() {
                Some(i) => Val::Int(i),
                None => return Err(invalid(format!("{n} is not an integer"))),
            },
            (Kind::Time, FVal::String(s)) if !substring => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => Val::Time(t.with_timezone(&Utc)),
                Err(_) => return Err(invalid(format!("{s:?} is not a date-time (RFC 3339)"))),
            },
            (Kind::Id, FVal::String(s)) if matches!(o, Op::Eq | Op::Ne) => match Uuid::parse_str(s) {
                Ok(u) => Val::Uuid(u),
                // No resource has an id that is not a UUID.
                Err(_) => return Ok(Expr::Const(o == Op::Ne)),
            },
            _ => return Err(invalid(format!("operator {o:?} does not apply to {v:?} here"))),
        };
        Ok(Expr::Cmp(field, o, val))
    }

    /// `sortBy`: the field to order by.
    pub fn sort_field(&self, sort_by: &str) -> Result<Field, ScimError> {
        let p = super::filter::parse_path(sort_by)
            .map_err(|e| ScimError::bad("invalidValue", format!("sortBy: {e}")))?;
        let (attr, sub) = names(&p.attr, self.resource)?;
        let f = match (self.resource, attr.as_str(), sub.as_deref()) {
            (_, "id", None) => Field::Id,
            (_, "externalid", None) => Field::Anchor,
            (_, "meta", Some("created")) => Field::Created,
            (_, "meta", Some("lastmodified")) => Field::Modified,
            (Resource::User, "username", None) => Field::LoginName,
            (Resource::User, "displayname", None) => Field::DisplayName,
            (Resource::User, "name", Some("givenname")) => Field::GivenName,
            (Resource::User, "name", Some("familyname")) => Field::FamilyName,
            (Resource::User, "title", None) => Field::Title,
            (Resource::User, "employeenumber", None) => Field::EmployeeNumber,
            (Resource::User, "accountnumber", None) => Field::AccountNumber,
            (Resource::Group, "displayname", None) => Field::GroupName,
            _ => return Err(ScimError::bad("invalidValue", format!("cannot sort by {sort_by}"))),
        };
        Ok(f)
    }
}

/// The directory search a list or `.search` request asks for, and its 1-based startIndex.
pub fn list_query(
    p: &super::ListParams,
    resource: Resource,
    client: &Source,
    max_results: i64,
) -> Result<(crate::directory::query::Query, i64), ScimError> {
    let t = Translator { resource, client };
    let filter = p.filter.as_deref().map(|f| translate(f, resource, client)).transpose()?;
    let descending = p.descending()?;
    let sort = p.sort_by.as_deref().map(|s| t.sort_field(s)).transpose()?.map(|f| (f, descending));
    let (offset, limit, start) = p.window(max_results);
    Ok((crate::directory::query::Query { filter, sort, offset, limit }, start))
}

/// Parses and translates a filter string.
pub fn translate(filter: &str, resource: Resource, client: &Source) -> Result<Expr, ScimError> {
    let f = super::filter::parse(filter).map_err(|e| invalid(format!("{e}")))?;
    Translator { resource, client }.filter(&f)
}
