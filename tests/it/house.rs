//! The house rules ARCHITECTURE.md states, checked on the source itself so they stay true: no
//! import cycle between top-level modules, SQL writes only under `src/store/`, no store trait over
//! about 40 methods, no SQL file over about 400 lines. (That no adapter can open a directory write
//! transaction is checked by the compiler: `DirectoryWrite::begin` takes a `WriteKey` only
//! `directory` can make.)

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The file's code without comment lines (doc links may name any module).
fn code(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Top-level module -> the top-level modules its code names as `crate::<module>`.
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let root = src();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in rust_files(&root) {
        let rel = file.strip_prefix(&root).unwrap();
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_owned();
        if module == "lib" || module == "main" {
            continue;
        }
        let text = code(&file);
        let deps = graph.entry(module.clone()).or_default();
        for (i, _) in text.match_indices("crate::") {
            let name: String =
                text[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != module {
                deps.insert(name);
            }
        }
    }
    graph
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let graph = module_graph();
    assert!(graph.contains_key("directory") && graph.contains_key("store"), "{graph:?}");
    // Depth-first search for a back edge.
    fn visit<'a>(
        n: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| *p == n) {
            let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            cycle.push(n.to_owned());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n);
        for d in graph.get(n).into_iter().flatten() {
            if graph.contains_key(d.as_str())
                && let Some(c) = visit(d, graph, path, done)
            {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n);
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = visit(m, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
    // The core imports no adapter, and no adapter imports another's module.
    let adapters = ["scim", "admin", "api", "ldap_server", "cli", "http", "app"];
    for a in adapters {
        assert!(!graph["directory"].contains(a), "directory imports {a}");
    }
    for (from, to) in [
        ("scim", "admin"),
        ("admin", "scim"),
        ("http", "admin"),
        ("http", "scim"),
        ("sync", "admin"),
        ("api", "admin"),
        ("admin", "api"),
        ("api", "scim"),
        ("http", "api"),
        ("archive", "api"),
        ("archive", "admin"),
        ("archive", "http"),
        ("ldap_server", "admin"),
        ("ldap_server", "api"),
        ("ldap_server", "scim"),
        ("ldap_server", "http"),
        ("admin", "ldap_server"),
        ("api", "ldap_server"),
        ("access", "ldap_server"),
    ] {
        assert!(!graph[from].contains(to), "{from} imports {to}");
    }
}

#[test]
fn sql_writes_only_in_the_store() {
    let root = src();
    let mut found = Vec::new();
    for file in rust_files(&root) {
        if file.starts_with(root.join("store")) {
            continue;
        }
        let text = code(&file).to_uppercase();
        for needle in ["INSERT INTO ", "DELETE FROM ", "UPDATE MEMBERS", "UPDATE ORG_UNITS", " SET STATE"] {
            if text.contains(needle) {
                found.push(format!("{}: {needle}", file.display()));
            }
        }
    }
    assert!(found.is_empty(), "SQL writes outside src/store/: {found:?}");
}

#[test]
fn store_traits_and_sql_files_stay_small() {
    let root = src();
    for (file, traits) in [
        (
            "directory/store.rs",
            &["DirectoryRead", "RecordRead", "DirectoryTx", "MemberTx", "TreeTx", "AccountTx"][..],
        ),
        ("delivery/store.rs", &["DeliveryStore"]),
        ("sync/store.rs", &["RunStore"]),
        ("access/store.rs", &["AccessStore"]),
        ("jobs.rs", &["LeaseStore"]),
        ("store/mod.rs", &["Maintenance"]),
    ] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        for t in traits {
            let start =
                text.find(&format!("pub trait {t}")).unwrap_or_else(|| panic!("no trait {t} in {file}"));
            let body = &text[start..start + text[start..].find("\n}\n").unwrap()];
            let methods = body.matches("async fn ").count() + body.matches("    fn ").count();
            assert!(methods >= 1 && methods <= 40, "{t} has {methods} methods");
        }
    }
    for file in rust_files(&root.join("store/sql")) {
        let lines = std::fs::read_to_string(&file).unwrap().lines().count();
        assert!(lines <= 420, "{} has {lines} lines", file.display());
    }
}
