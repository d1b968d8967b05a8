//! PATCH (RFC 7644 §3.5.2) on a resource's SCIM form, with what real clients send:
//! `op` in any case, path-less values with dotted and URN-qualified keys, booleans as strings,
//! and `emails[type eq "work"].value` for an e-mail that does not exist yet (added, as Entra ID
//! expects).
//!
//! Documents here have lower-cased keys (see [`super::lower_keys`]).

use serde_json::{Map, Value};

use super::filter::{AttrPath, CompareOp, Filter, PatchPath, Value as FVal, parse_path};
use super::{ENTERPRISE_USER, PATCH_OP, ROSTER_USER, ScimError, USER, as_bool, lower_keys};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

#[derive(Debug, Clone)]
pub struct Op {
    pub kind: OpKind,
    pub path: Option<PatchPath>,
    /// With lower-cased keys.
    pub value: Value,
}

/// Reads `{"schemas": [PatchOp], "Operations": [...]}`.
pub fn parse_ops(body: &Value) -> Result<Vec<Op>, ScimError> {
    let body = lower_keys(body.clone());
    if let Some(schemas) = body["schemas"].as_array()
        && !schemas.iter().any(|s| s.as_str().is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP)))
    {
        return Err(ScimError::bad("invalidValue", format!("a PATCH body has the schema {PATCH_OP}")));
    }
    let ops = body["operations"]
        .as_array()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "a PATCH body needs an Operations list"))?;
    ops.iter()
        .map(|o| {
            let kind = match o["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
                Some("add") => OpKind::Add,
                Some("replace") => OpKind::Replace,
                Some("remove") => OpKind::Remove,
                _ => return Err(ScimError::bad("invalidSyntax", "op must be add, replace or remove")),
            };
            let path = match &o["path"] {
                Value::Null => None,
                Value::String(p) if p.trim().is_empty() => None,
                Value::String(p) => Some(
                    parse_path(p).map_err(|e| ScimError::bad("invalidPath", format!("path {p:?}: {e}")))?,
                ),
                _ => return Err(ScimError::bad("invalidPath", "path must be a string")),
            };
            if path.is_none() && kind == OpKind::Remove {
                return Err(ScimError::bad("noTarget", "remove needs a path"));
            }
            Ok(Op { kind, path, value: o["value"].clone() })
        })
        .collect()
}

/// Attributes a client may not write.
fn read_only(container: Option<&str>, attr: &str) -> bool {
    match container {
        None => matches!(attr, "id" | "meta" | "schemas"),
        Some(c) if c == ROSTER_USER.to_lowercase() => matches!(attr, "accountnumber" | "mailbox"),
        _ => false,
    }
}

/// Multi-valued attributes (their values are lists).
fn multi_valued(attr: &str) -> bool {
    matches!(
        attr,
        "emails" | "phonenumbers" | "orgunits" | "members" | "addresses" | "ims" | "photos" | "roles"
    )
}

/// Where an attribute lives: the root (core schema) or an extension object.
fn container_of(schema: Option<&str>) -> Result<Option<String>, ScimError> {
    match schema.map(str::to_lowercase) {
        None => Ok(None),
        Some(s) if s == USER.to_lowercase() || s == super::GROUP.to_lowercase() => Ok(None),
        Some(s) if s == ENTERPRISE_USER.to_lowercase() || s == ROSTER_USER.to_lowercase() => Ok(Some(s)),
        Some(s) => Err(ScimError::bad("invalidPath", format!("unknown schema {s}"))),
    }
}

/// Applies the operations to a user document, in order.
pub fn apply_to_user(mut doc: Value, ops: &[Op]) -> Result<Value, ScimError> {
    for op in ops {
        // A path naming an extension schema itself targets the whole extension object.
        let whole_extension = op.path.as_ref().and_then(|p| {
            let urn = format!("{}:{}", p.attr.schema.as_deref()?, p.attr.attr);
            (p.filter.is_none() && p.attr.sub_attr.is_none())
                .then(|| [ENTERPRISE_USER, ROSTER_USER].into_iter().find(|e| e.eq_ignore_ascii_case(&urn)))
                .flatten()
        });
        if let Some(ext) = whole_extension {
            let key = ext.to_lowercase();
            match op.kind {
                OpKind::Remove => {
                    if let Some(o) = doc.as_object_mut() {
                        o.remove(&key);
                    }
                }
                _ => apply_extension(&mut doc, op.kind, &key, lower_keys(op.value.clone()))?,
            }
            continue;
        }
        match &op.path {
            Some(path) => apply_path(&mut doc, op.kind, path, lower_keys(op.value.clone()))?,
            None => {
                let Value::Object(values) = lower_keys(op.value.clone()) else {
                    return Err(ScimError::bad("invalidValue", "without a path, value must be an object"));
                };
                for (key, value) in values {
                    let known_extension =
                        [ENTERPRISE_USER, ROSTER_USER].iter().any(|e| e.eq_ignore_ascii_case(&key));
                    if known_extension {
                        apply_extension(&mut doc, op.kind, &key, value)?;
                        continue;
                    }
                    let path = parse_path(&key)
                        .map_err(|e| ScimError::bad("invalidPath", format!("attribute {key:?}: {e}")))?;
                    apply_path(&mut doc, op.kind, &path, value)?;
                }
            }
        }
    }
    Ok(doc)
}

/// Sets an extension's attributes from an object of them (`key` is the lower-cased URN).
fn apply_extension(doc: &mut Value, kind: OpKind, key: &str, value: Value) -> Result<(), ScimError> {
    let Value::Object(fields) = value else {
        return Err(ScimError::bad("invalidValue", format!("{key} takes an object")));
    };
    for (k, v) in fields {
        let path = PatchPath { attr: split_attr(Some(key.to_owned()), &k), filter: None, sub_attr: None };
        apply_path(doc, kind, &path, v)?;
    }
    Ok(())
}

fn split_attr(schema: Option<String>, key: &str) -> AttrPath {
    match key.split_once('.') {
        Some((a, s)) => AttrPath { schema, attr: a.to_owned(), sub_attr: Some(s.to_owned()) },
        None => AttrPath { schema, attr: key.to_owned(), sub_attr: None },
    }
}

fn apply_path(doc: &mut Value, kind: OpKind, path: &PatchPath, value: Value) -> Result<(), ScimError> {
    let container = container_of(path.attr.schema.as_deref())?;
    let attr = path.attr.attr.to_lowercase();
    let sub = path.sub_attr.clone().or_else(|| path.attr.sub_attr.clone()).map(|s| s.to_lowercase());
    if read_only(container.as_deref(), &attr) {
        return Err(ScimError::bad("mutability", format!("{} is read-only", path.attr.attr)));
    }
    let root = doc.as_object_mut().expect("resources are objects");
    let target: &mut Map<String, Value> = match &container {
        None => root,
        Some(c) => {
            let ext = root.entry(c.clone()).or_insert_with(|| Value::Object(Map::new()));
            if !ext.is_object() {
                *ext = Value::Object(Map::new());
            }
            ext.as_object_mut().expect("just made an object")
        }
    };
    match &path.filter {
        None => apply_plain(target, kind, &attr, sub.as_deref(), value),
        Some(filter) => apply_filtered(target, kind, &attr, filter, sub.as_deref(), value),
    }
}

fn apply_plain(
    target: &mut Map<String, Value>,
    kind: OpKind,
    attr: &str,
    sub: Option<&str>,
    value: Value,
) -> Result<(), ScimError> {
    match (kind, sub) {
        (OpKind::Remove, None) => {
            target.remove(attr);
        }
        (OpKind::Remove, Some(sub)) => match target.get_mut(attr) {
            Some(Value::Object(o)) => {
                o.remove(sub);
            }
            Some(Value::Array(items)) => items.iter_mut().filter_map(Value::as_object_mut).for_each(|o| {
                o.remove(sub);
            }),
            _ => {}
        },
        (_, Some(sub)) => {
            let slot = target.entry(attr.to_owned()).or_insert_with(|| Value::Object(Map::new()));
            match slot {
                Value::Object(o) => {
                    o.insert(sub.to_owned(), value);
                }
                Value::Array(items) => items.iter_mut().filter_map(Value::as_object_mut).for_each(|o| {
                    o.insert(sub.to_owned(), value.clone());
                }),
                other => *other = Value::Object(Map::from_iter([(sub.to_owned(), value)])),
            }
        }
        (OpKind::Add, None) if multi_valued(attr) => {
            let new_items = match value {
                Value::Array(v) => v,
                Value::Null => Vec::new(),
                one => vec![one],
            };
            let slot = target.entry(attr.to_owned()).or_insert_with(|| Value::Array(Vec::new()));
            if !slot.is_array() {
                *slot = Value::Array(Vec::new());
            }
            let items = slot.as_array_mut().expect("just made a list");
            for item in new_items {
                add_item(items, item);
            }
        }
        (OpKind::Replace, None) if multi_valued(attr) => {
            let items = match value {
                Value::Array(v) => v,
                Value::Null => Vec::new(),
                one => vec![one],
            };
            let mut list = Vec::new();
            for item in items {
                add_item(&mut list, item);
            }
            target.insert(attr.to_owned(), Value::Array(list));
        }
        (_, None) => match (target.get_mut(attr), value) {
            // A complex value merges into what is there (RFC 7644 §3.5.2.1/3).
            (Some(Value::Object(existing)), Value::Object(new)) => existing.extend(new),
            (_, value) => {
                target.insert(attr.to_owned(), value);
            }
        },
    }
    Ok(())
}

/// Adds a value to a multi-valued attribute: no duplicates by `value`, and a new primary value
/// takes primary from the others.
fn add_item(items: &mut Vec<Value>, item: Value) {
    let key = |v: &Value| v.get("value").map(|x| x.to_string().to_lowercase());
    if let Some(k) = key(&item)
        && let Some(existing) = items.iter_mut().find(|i| key(i).as_ref() == Some(&k))
    {
        if let (Some(e), Value::Object(n)) = (existing.as_object_mut(), &item) {
            e.extend(n.clone());
        }
        return;
    }
    if as_bool(&item["primary"]) == Some(true) {
        for i in items.iter_mut().filter_map(Value::as_object_mut) {
            i.insert("primary".into(), Value::Bool(false));
        }
    }
    items.push(item);
}

fn apply_filtered(
    target: &mut Map<String, Value>,
    kind: OpKind,
    attr: &str,
    filter: &Filter,
    sub: Option<&str>,
    value: Value,
) -> Result<(), ScimError> {
    let slot = target.entry(attr.to_owned()).or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(items) = slot else {
        return Err(ScimError::bad("invalidPath", format!("{attr} is not multi-valued")));
    };
    let matched: Vec<usize> =
        items.iter().enumerate().filter(|(_, i)| matches(filter, i)).map(|(n, _)| n).collect();
    if matched.is_empty() {
        if kind == OpKind::Remove {
            return Ok(());
        }
        // `emails[type eq "work"].value` for a work e-mail not there yet: add one.
        let Some(mut seed) = seed_from(filter) else {
            return Err(ScimError::bad("noTarget", format!("no value of {attr} matches the filter")));
        };
        match sub {
            Some(sub) => {
                seed.insert(sub.to_owned(), value);
            }
            None => match value {
                Value::Object(v) => seed.extend(v),
                _ => return Err(ScimError::bad("invalidValue", "the value must be an object")),
            },
        }
        add_item(items, Value::Object(seed));
        return Ok(());
    }
    match kind {
        OpKind::Remove => {
            for n in matched.into_iter().rev() {
                match sub {
                    None => {
                        items.remove(n);
                    }
                    Some(sub) => {
                        if let Some(o) = items[n].as_object_mut() {
                            o.remove(sub);
                        }
                    }
                }
            }
        }
        OpKind::Add | OpKind::Replace => {
            for n in matched {
                match (sub, &value) {
                    (Some(sub), v) => {
                        if let Some(o) = items[n].as_object_mut() {
                            o.insert(sub.to_owned(), v.clone());
                        }
                    }
                    (None, Value::Object(v)) => {
                        if let Some(o) = items[n].as_object_mut() {
                            o.extend(v.clone());
                        }
                    }
                    (None, _) => return Err(ScimError::bad("invalidValue", "the value must be an object")),
                }
            }
        }
    }
    Ok(())
}

/// The attributes an equality-only filter pins down (`type eq "work"` -> `{"type": "work"}`).
fn seed_from(f: &Filter) -> Option<Map<String, Value>> {
    match f {
        Filter::Compare(p, CompareOp::Eq, v) if p.sub_attr.is_none() => {
            let value = match v {
                FVal::String(s) => Value::String(s.clone()),
                FVal::Bool(b) => Value::Bool(*b),
                FVal::Number(n) => Value::Number(n.clone()),
                FVal::Null => return None,
            };
            Some(Map::from_iter([(p.attr.to_lowercase(), value)]))
        }
        Filter::And(a, b) => {
            let mut m = seed_from(a)?;
            m.extend(seed_from(b)?);
            Some(m)
        }
        _ => None,
    }
}

/// Evaluates a value filter on one element of a multi-valued attribute (in memory: these
/// lists are short, except group members, which never come here).
pub fn matches(f: &Filter, item: &Value) -> bool {
    match f {
        Filter::And(a, b) => matches(a, item) && matches(b, item),
        Filter::Or(a, b) => matches(a, item) || matches(b, item),
        Filter::Not(a) => !matches(a, item),
        Filter::Present(p) => !lookup(item, p).is_null(),
        Filter::Compare(p, op, v) => compare(lookup(item, p), *op, v),
        Filter::ValuePath(..) => false,
    }
}

fn lookup<'a>(item: &'a Value, p: &AttrPath) -> &'a Value {
    let v = item.get(p.attr.to_lowercase()).unwrap_or(&Value::Null);
    match &p.sub_attr {
        Some(s) => v.get(s.to_lowercase()).unwrap_or(&Value::Null),
        None => v,
    }
}

fn compare(actual: &Value, op: CompareOp, want: &FVal) -> bool {
    use std::cmp::Ordering;
    let ordering = |o: Ordering| match op {
        CompareOp::Eq => o == Ordering::Equal,
        CompareOp::Ne => o != Ordering::Equal,
        CompareOp::Gt => o == Ordering::Greater,
        CompareOp::Ge => o != Ordering::Less,
        CompareOp::Lt => o == Ordering::Less,
        CompareOp::Le => o != Ordering::Greater,
        _ => false,
    };
    match (actual, want) {
        (Value::Null, FVal::Null) => op == CompareOp::Eq,
        (Value::Null, _) => op == CompareOp::Ne,
        (Value::String(a), FVal::String(b)) => {
            let (a, b) = (a.to_lowercase(), b.to_lowercase());
            match op {
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                _ => ordering(a.cmp(&b)),
            }
        }
        (Value::Bool(a), FVal::Bool(b)) => ordering(a.cmp(b)),
        (a, FVal::Bool(b)) => as_bool(a).is_some_and(|a| ordering(a.cmp(b))),
        (Value::Number(a), FVal::Number(b)) => match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) => a.partial_cmp(&b).is_some_and(ordering),
            _ => false,
        },
        (Value::String(a), FVal::Number(b)) => ordering(a.as_str().cmp(&b.to_string())),
        _ => op == CompareOp::Ne,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user() -> Value {
        lower_keys(json!({
            "userName": "a@example.com", "active": true, "name": {"givenName": "A", "familyName": "B"},
            "emails": [{"value": "a@example.com", "type": "work", "primary": true}],
            ENTERPRISE_USER: {"employeeNumber": "1"},
        }))
    }

    fn ops(v: Value) -> Vec<Op> {
        parse_ops(&json!({"schemas": [PATCH_OP], "Operations": v})).unwrap()
    }

    #[test]
    fn pathless_replace_with_dotted_and_urn_keys() {
        let out = apply_to_user(
            user(),
            &ops(json!([{"op": "Replace", "value": {
                "name.givenName": "Ann",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "42",
                "active": "False"
            }}])),
        )
        .unwrap();
        assert_eq!(out["name"]["givenname"], "Ann");
        assert_eq!(out["name"]["familyname"], "B", "other sub-attributes stay");
        assert_eq!(out[ENTERPRISE_USER.to_lowercase().as_str()]["employeenumber"], "42");
        assert_eq!(as_bool(&out["active"]), Some(false));
    }

    #[test]
    fn filtered_paths_add_update_and_remove() {
        let out = apply_to_user(
            user(),
            &ops(json!([
                {"op": "replace", "path": "emails[type eq \"home\"].value", "value": "a@home.org"},
                {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "a2@example.com"},
            ])),
        )
        .unwrap();
        let emails = out["emails"].as_array().unwrap();
        assert_eq!(emails.len(), 2);
        assert_eq!(emails[0]["value"], "a2@example.com");
        assert_eq!(emails[1], json!({"type": "home", "value": "a@home.org"}));
        let out =
            apply_to_user(out, &ops(json!([{"op": "remove", "path": "emails[type eq \"home\"]"}]))).unwrap();
        assert_eq!(out["emails"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn add_on_single_valued_sets_and_read_only_is_refused() {
        let out =
            apply_to_user(user(), &ops(json!([{"op": "add", "path": "title", "value": "Boss"}]))).unwrap();
        assert_eq!(out["title"], "Boss");
        let err =
            apply_to_user(user(), &ops(json!([{"op": "replace", "path": "id", "value": "x"}]))).unwrap_err();
        assert_eq!(err.scim_type, Some("mutability"));
        let err = apply_to_user(
            user(),
            &ops(json!([{"op": "replace", "path": "urn:roster:params:scim:schemas:extension:roster:2.0:User:accountNumber", "value": 5}])),
        )
        .unwrap_err();
        assert_eq!(err.scim_type, Some("mutability"));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        /// Whatever a client sends as PATCH operations, the engine answers (an error or a
        /// document); it never panics.
        #[test]
        fn no_operation_panics(
            kinds in proptest::collection::vec(proptest::sample::select(vec!["add", "Replace", "remove", "x"]), 1..4),
            paths in proptest::collection::vec(proptest::sample::select(vec![
                "", "title", "name.givenName", "emails", "emails[type eq \"work\"].value", "emails[value co \"@\"]",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value", "members[value eq 1]",
                "phoneNumbers[type eq \"mobile\" and primary eq true]", "[", "a.b.c", "id", "meta.version",
            ]), 1..4),
            values in proptest::collection::vec(proptest::sample::select(vec![
                json!(null), json!("x"), json!(1), json!(true), json!([]), json!([{"value": "a@b.co", "primary": "True"}]),
                json!({"name.familyName": "F", "title": null}), json!({"emails": "oops"}), json!([1, [2]]),
            ]), 1..4),
        ) {
            let ops: Vec<Value> = kinds.iter().zip(paths.iter()).zip(values.iter())
                .map(|((k, p), v)| json!({"op": k, "path": p, "value": v}))
                .collect();
            if let Ok(parsed) = parse_ops(&json!({"Operations": ops})) {
                let _ = apply_to_user(user(), &parsed);
            }
        }
    }

    #[test]
    fn bad_operations() {
        let body = json!({"Operations": [{"op": "move", "path": "title"}]});
        assert_eq!(parse_ops(&body).unwrap_err().scim_type, Some("invalidSyntax"));
        let body = json!({"Operations": [{"op": "remove"}]});
        assert_eq!(parse_ops(&body).unwrap_err().scim_type, Some("noTarget"));
        let body = json!({"Operations": [{"op": "add", "path": "emails[type eq"}]});
        assert_eq!(parse_ops(&body).unwrap_err().scim_type, Some("invalidPath"));
    }
}
