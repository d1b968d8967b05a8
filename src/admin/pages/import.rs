//! CSV import and export of org units and members.
//!
//! Import is two steps: the file is checked and a plan shown (units to create, members to
//! create, and every broken row with its error), and nothing is written; the admin confirms,
//! and exactly the good rows are applied through `DirectoryService`, in batches. Members are
//! created by the console (the importing admin is the actor), so the console can edit them.

use std::collections::{HashMap, HashSet};

use askama::Template;
use axum::extract::State;
use axum::response::IntoResponse;
use serde::Deserialize;
use uuid::Uuid;

use super::{Errors, Reply, opt};
use crate::admin::Console;
use crate::admin::views::{Chrome, html};
use crate::admin::{Failure, Principal, directory};
use crate::directory::model::{Email, OrgUnit, Permission};
use crate::directory::{Change, DirectoryService, NewMember, NewOrgUnit, validate};

const COLUMNS: [&str; 7] =
    ["login_name", "display_name", "mobile", "email", "title", "employee_number", "org_unit"];
const BATCH: usize = 500;
/// The columns of an org-units file (the export's); only `org_unit` is read.
const UNIT_COLUMNS: [&str; 4] = ["org_unit", "id", "position", "source"];

/// One good row, ready to create: a member (in its unit), or only a unit (an org-units file).
struct Row {
    line: usize,
    member: Option<NewMember>,
    unit_path: String,
}

pub struct RowError {
    pub line: usize,
    pub message: String,
}

#[derive(Template)]
#[template(path = "import.html", config = "src/admin/askama.toml")]
pub struct ImportPage {
    pub c: Chrome,
    pub csv: String,
    pub checked: bool,
    /// Members the plan creates.
    pub good: usize,
    /// Whether there is anything good to apply (members or units).
    pub can_apply: bool,
    /// Units the apply created.
    pub units_created: usize,
    pub new_units: Vec<String>,
    pub bad: Vec<RowError>,
    pub applied: Option<usize>,
    /// Importing needs org and member management over the whole enterprise; exporting members
    /// needs only the latter.
    pub can_import: bool,
    pub errors: Errors,
}

pub async fn import_page(State(state): State<Console>, p: Principal) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has_everywhere(Permission::ManageMembers), "import.view").await?;
    let can_import = p.has_everywhere(Permission::ManageOrg);
    let c = p.chrome(p.lang.t("import.title")).at("/admin/import");
    let page = ImportPage {
        c,
        csv: String::new(),
        checked: false,
        good: 0,
        can_apply: false,
        units_created: 0,
        new_units: Vec::new(),
        bad: Vec::new(),
        applied: None,
        can_import,
        errors: Errors::default(),
    };
    Ok(html(&page).into_response())
}

#[derive(Deserialize)]
pub struct ImportForm {
    #[serde(default)]
    csv: String,
    /// `check` or `apply`.
    #[serde(default)]
    step: String,
}

pub async fn import(
    State(state): State<Console>,
    p: Principal,
    axum::Form(f): axum::Form<ImportForm>,
) -> Reply {
    let d = directory(&state)?;
    p.require(
        d,
        p.has_everywhere(Permission::ManageMembers) && p.has_everywhere(Permission::ManageOrg),
        "import.apply",
    )
    .await?;
    let c = p.chrome(p.lang.t("import.title")).at("/admin/import");
    let (rows, mut bad) = match check(d, &f.csv).await? {
        Ok(r) => r,
        Err(msg) => {
            let page = ImportPage {
                c,
                csv: f.csv,
                checked: false,
                good: 0,
                can_apply: false,
                units_created: 0,
                new_units: Vec::new(),
                bad: Vec::new(),
                applied: None,
                can_import: true,
                errors: Errors::field("csv", msg),
            };
            return Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, html(&page)).into_response());
        }
    };
    let units = d.store().org_units_all().await?;
    let mut new_units: Vec<String> = Vec::new();
    let paths = unit_paths(&units);
    for r in &rows {
        for prefix in prefixes(&r.unit_path) {
            if !paths.contains_key(&prefix) && !new_units.contains(&prefix) {
                new_units.push(prefix);
            }
        }
    }
    if f.step != "apply" {
        let page = ImportPage {
            c,
            csv: f.csv,
            checked: true,
            good: rows.iter().filter(|r| r.member.is_some()).count(),
            can_apply: !rows.is_empty(),
            units_created: 0,
            new_units,
            bad,
            applied: None,
            can_import: true,
            errors: Errors::default(),
        };
        return Ok(html(&page).into_response());
    }
    let (units_created, applied) = apply(d, &p, rows, paths, &mut bad).await?;
    let page = ImportPage {
        c,
        csv: String::new(),
        checked: false,
        good: 0,
        can_apply: false,
        units_created,
        new_units: Vec::new(),
        bad,
        applied: Some(applied),
        can_import: true,
        errors: Errors::default(),
    };
    Ok(html(&page).into_response())
}

/// `Sales/East/Team 1` → `Sales`, `Sales/East`, `Sales/East/Team 1`.
fn prefixes(path: &str) -> Vec<String> {
    let parts: Vec<&str> = path.split('/').map(str::trim).filter(|s| !s.is_empty()).collect();
    (1..=parts.len()).map(|n| parts[..n].join("/")).collect()
}

/// Every unit's path of names.
fn unit_paths(units: &[OrgUnit]) -> HashMap<String, Uuid> {
    let by_id: HashMap<Uuid, &OrgUnit> = units.iter().map(|u| (u.id, u)).collect();
    let mut out = HashMap::new();
    for u in units {
        let mut names = vec![u.name.as_str()];
        let mut at = u.parent_id;
        let mut depth = 0;
        while let Some(pid) = at {
            let Some(parent) = by_id.get(&pid) else { break };
            names.push(&parent.name);
            at = parent.parent_id;
            depth += 1;
            if depth > 1000 {
                break;
            }
        }
        names.reverse();
        out.insert(names.join("/"), u.id);
    }
    out
}

/// Parses and checks the file: each row's values as the directory would, uniqueness within
/// the file and against the directory. `Err` when the file as a whole is unusable.
async fn check(
    d: &DirectoryService,
    text: &str,
) -> Result<Result<(Vec<Row>, Vec<RowError>), String>, Failure> {
    let records = match parse_csv(text) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e)),
    };
    let Some((header, body)) = records.split_first() else { return Ok(Err("the file is empty".into())) };
    let cols: Vec<String> = header.iter().map(|h| h.trim().to_lowercase()).collect();
    if cols.iter().any(|c| c == "org_unit") && !cols.iter().any(|c| c == "login_name") {
        return Ok(check_units(&cols, body));
    }
    if let Some(unknown) = cols.iter().find(|c| !COLUMNS.contains(&c.as_str())) {
        return Ok(Err(format!("unknown column {unknown:?}; the columns are {}", COLUMNS.join(", "))));
    }
    for required in ["login_name", "display_name"] {
        if !cols.iter().any(|c| c == required) {
            return Ok(Err(format!("the column {required} is missing")));
        }
    }
    let e = d.store().enterprise().await?.ok_or(Failure::Unavailable)?;
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let mut seen: HashSet<(&'static str, String)> = HashSet::new();
    for (i, rec) in body.iter().enumerate() {
        let line = i + 2;
        if rec.iter().all(|v| v.trim().is_empty()) {
            continue;
        }
        if rec.len() != cols.len() {
            bad.push(RowError {
                line,
                message: format!("{} values, the header has {}", rec.len(), cols.len()),
            });
            continue;
        }
        let get = |name: &str| {
            cols.iter().position(|c| c == name).map(|i| rec[i].trim().to_owned()).unwrap_or_default()
        };
        let unit_path = get("org_unit");
        if let Err(e) = check_path(&unit_path) {
            bad.push(RowError { line, message: format!("org_unit: {e}") });
            continue;
        }
        match check_row(d, &e.mail_domain, &get, &mut seen).await? {
            Ok(member) => rows.push(Row { line, member: Some(member), unit_path }),
            Err(message) => bad.push(RowError { line, message }),
        }
    }
    Ok(Ok((rows, bad)))
}

/// Each name on a unit path is a valid unit name (checked before anything is written, so a
/// confirmed import cannot stop at its units).
fn check_path(path: &str) -> Result<(), crate::directory::DirectoryError> {
    path.split('/')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .try_for_each(|n| validate::org_unit_name(n).map(|_| ()))
}

/// An org-units file: one path a row; every unit on it is created if missing.
fn check_units(cols: &[String], body: &[Vec<String>]) -> Result<(Vec<Row>, Vec<RowError>), String> {
    if let Some(unknown) = cols.iter().find(|c| !UNIT_COLUMNS.contains(&c.as_str())) {
        return Err(format!("unknown column {unknown:?}; an org-units file has {}", UNIT_COLUMNS.join(", ")));
    }
    let at = cols.iter().position(|c| c == "org_unit").expect("checked by the caller");
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    for (i, rec) in body.iter().enumerate() {
        let line = i + 2;
        let path = rec.get(at).map(|p| p.trim()).unwrap_or("");
        if path.is_empty() {
            if rec.iter().any(|v| !v.trim().is_empty()) {
                bad.push(RowError { line, message: "org_unit is empty".into() });
            }
            continue;
        }
        match check_path(path) {
            Ok(()) => rows.push(Row { line, member: None, unit_path: path.to_owned() }),
            Err(e) => bad.push(RowError { line, message: e.to_string() }),
        }
    }
    Ok((rows, bad))
}

async fn check_row(
    d: &DirectoryService,
    domain: &str,
    get: &impl Fn(&str) -> String,
    seen: &mut HashSet<(&'static str, String)>,
) -> Result<Result<NewMember, String>, Failure> {
    let fail = |e: crate::directory::DirectoryError| Ok(Err(e.to_string()));
    let login = match validate::login_name(&get("login_name"), domain) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    if let Err(e) = validate::display_name(&get("display_name")) {
        return fail(e);
    }
    let mobile = match validate::mobile(opt(&get("mobile")).as_deref()) {
        Ok(m) => m,
        Err(e) => return fail(e),
    };
    let email = match opt(&get("email")).map(|a| validate::email_address(&a)).transpose() {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    for (field, value) in
        [("login_name", Some(login.clone())), ("mobile", mobile.clone()), ("email", email.clone())]
    {
        let Some(value) = value else { continue };
        if !seen.insert((field, value.clone())) {
            return Ok(Err(format!("{field} {value:?} appears twice in the file")));
        }
    }
    if d.store().member_by_login(&login).await?.is_some() {
        return Ok(Err(format!("login_name {login:?} is already in use")));
    }
    let member = NewMember {
        login_name: login,
        display_name: get("display_name"),
        mobile,
        emails: email
            .map(|a| vec![Email { address: a, kind: "work".into(), primary: true }])
            .unwrap_or_default(),
        title: opt(&get("title")),
        employee_number: opt(&get("employee_number")),
        ..Default::default()
    };
    Ok(Ok(member))
}

/// Creates the missing units, then the members in batches; returns how many of each. A row the directory still refuses
/// (someone took its login name meanwhile) is reported and left out; the rest go in.
async fn apply(
    d: &DirectoryService,
    p: &Principal,
    rows: Vec<Row>,
    mut paths: HashMap<String, Uuid>,
    bad: &mut Vec<RowError>,
) -> Result<(usize, usize), Failure> {
    let actor = p.actor();
    let mut unit_changes = Vec::new();
    for r in &rows {
        for prefix in prefixes(&r.unit_path) {
            if paths.contains_key(&prefix) {
                continue;
            }
            let (parent, name) = match prefix.rsplit_once('/') {
                Some((parent, name)) => (paths.get(parent).copied(), name.to_owned()),
                None => (None, prefix.clone()),
            };
            let id = Uuid::now_v7();
            paths.insert(prefix.clone(), id);
            unit_changes.push((
                r.line,
                Change::CreateOrgUnit(NewOrgUnit {
                    id: Some(id),
                    parent_id: parent,
                    name,
                    ..Default::default()
                }),
            ));
        }
    }
    let mut failed_lines = HashSet::new();
    let units_created = unit_changes.len();
    if !unit_changes.is_empty() {
        let lines: Vec<usize> = unit_changes.iter().map(|(l, _)| *l).collect();
        if let Err(e) = d.apply(&actor, unit_changes.into_iter().map(|(_, c)| c).collect()).await {
            if matches!(e.error, crate::directory::DirectoryError::Store(_)) {
                return Err(Failure::from_directory(&e.error));
            }
            bad.push(RowError { line: lines[e.index], message: format!("org_unit: {}", e.error) });
            // Without its units no member can go in: stop here.
            return Ok((0, 0));
        }
    }
    let mut applied = 0;
    let mut pending: Vec<(usize, Change)> = rows
        .into_iter()
        .filter_map(|r| {
            let unit = prefixes(&r.unit_path).last().and_then(|p| paths.get(p).copied());
            r.member.map(|m| (r.line, Change::CreateMember(NewMember { primary_org_unit_id: unit, ..m })))
        })
        .collect();
    while !pending.is_empty() {
        let take = pending.len().min(BATCH);
        let batch: Vec<(usize, Change)> = pending.drain(..take).collect();
        let changes: Vec<Change> = batch.iter().map(|(_, c)| c.clone()).collect();
        match d.apply(&actor, changes).await {
            Ok(done) => applied += done.len(),
            Err(e) if matches!(e.error, crate::directory::DirectoryError::Store(_)) => {
                return Err(Failure::from_directory(&e.error));
            }
            Err(e) if matches!(e.error, crate::directory::DirectoryError::NumbersExhausted { .. }) => {
                // Not the row's fault: every row after it would fail the same way.
                let (line, _) = &batch[e.index];
                let message = format!("{}; rows from here on were not imported", e.error);
                bad.push(RowError { line: *line, message });
                break;
            }
            Err(e) => {
                let (line, _) = &batch[e.index];
                bad.push(RowError { line: *line, message: e.error.to_string() });
                failed_lines.insert(*line);
                // Try the rest of the batch again without the refused row.
                let rest: Vec<(usize, Change)> =
                    batch.into_iter().filter(|(l, _)| !failed_lines.contains(l)).collect();
                pending.splice(0..0, rest);
            }
        }
    }
    bad.sort_by_key(|r| r.line);
    Ok((units_created, applied))
}

/// RFC 4180 CSV: quoted fields with `""` for a quote, CRLF or LF line ends, a UTF-8 BOM
/// ignored.
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    let mut line = 1;
    while let Some(ch) = chars.next() {
        match (quoted, ch) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c)
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, '"') => return Err(format!("line {line}: a quote inside an unquoted value")),
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {}
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
                line += 1;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(format!("line {line}: a quoted value is not closed"));
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push(record);
    }
    Ok(records)
}

fn csv_field(v: &str) -> String {
    let v = super::defuse(v);
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v }
}

/// Every member, in the import's columns plus account number and state.
pub async fn export_members(State(state): State<Console>, p: Principal) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has_everywhere(Permission::ManageMembers), "export.members").await?;
    let units = d.store().org_units_all().await?;
    let by_id: HashMap<Uuid, String> = unit_paths(&units).into_iter().map(|(k, v)| (v, k)).collect();
    let mut out = String::from(
        "account_number,login_name,display_name,mobile,email,title,employee_number,org_unit,state\n",
    );
    let mut after = 0;
    loop {
        let page = d.store().members_page(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.account_number;
        for m in &page {
            let email = m
                .emails
                .iter()
                .find(|e| e.primary)
                .or(m.emails.first())
                .map(|e| e.address.as_str())
                .unwrap_or("");
            let unit = m.primary_org_unit_id.and_then(|u| by_id.get(&u)).map(String::as_str).unwrap_or("");
            let fields = [
                m.account_number.to_string(),
                m.login_name.clone(),
                m.display_name.clone(),
                m.mobile.clone().unwrap_or_default(),
                email.to_owned(),
                m.title.clone().unwrap_or_default(),
                m.employee_number.clone().unwrap_or_default(),
                unit.to_owned(),
                m.state.as_str().to_owned(),
            ];
            out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
    }
    // No unaudited export: the file goes out only once its audit row is written.
    d.record(&p.actor(), "export.members", "export", None, serde_json::json!({}))
        .await
        .map_err(|e| Failure::from_directory(&e))?;
    Ok(super::csv_download("members.csv", out))
}

pub async fn export_units(State(state): State<Console>, p: Principal) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has_everywhere(Permission::ManageOrg), "export.org_units").await?;
    let units = d.store().org_units_all().await?;
    let mut rows: Vec<(String, &OrgUnit)> = {
        let ids = unit_paths(&units);
        let by_id: HashMap<Uuid, &OrgUnit> = units.iter().map(|u| (u.id, u)).collect();
        ids.into_iter().filter_map(|(path, id)| by_id.get(&id).map(|u| (path, *u))).collect()
    };
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::from("org_unit,id,position,source\n");
    for (path, u) in rows {
        let fields = [path, u.id.to_string(), u.position.to_string(), u.source.to_string()];
        out.push_str(&fields.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    Ok(super::csv_download("org-units.csv", out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_parses_quotes_and_line_ends() {
        let r = parse_csv("a,b\r\n\"x,1\",\"say \"\"hi\"\"\"\nlast,\n").unwrap();
        assert_eq!(r, vec![vec!["a", "b"], vec!["x,1", "say \"hi\""], vec!["last", ""]]);
        assert!(parse_csv("a,\"open\n").unwrap_err().contains("not closed"));
        assert!(parse_csv("a,b\"c\n").is_err());
    }

    #[test]
    fn export_fields_are_quoted_and_defused() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("=1"), "'=1");
        assert_eq!(csv_field("\tx"), "'\tx");
        assert_eq!(csv_field("-5"), "-5");
        assert_eq!(csv_field("+8613800000000"), "+8613800000000");
        assert_eq!(prefixes("A/ B /C"), vec!["A", "A/B", "A/B/C"]);
    }
}
