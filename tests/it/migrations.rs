//! Both migration sets stay in step.

use std::collections::BTreeSet;

fn versions(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".sql"))
        .map(|n| n.split('_').next().unwrap().to_owned())
        .collect()
}

#[test]
fn sqlite_and_postgres_have_the_same_migration_versions() {
    let sqlite = versions("sqlite");
    let postgres = versions("postgres");
    assert!(!sqlite.is_empty());
    assert_eq!(sqlite, postgres, "every migration needs a twin with the same version number");
}

#[test]
fn unique_constraints_have_the_same_names_in_both() {
    let names = |dir: &str| -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for e in std::fs::read_dir(format!("{}/migrations/{dir}", env!("CARGO_MANIFEST_DIR"))).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            for word in text.split_whitespace().collect::<Vec<_>>().windows(2) {
                if word[0] == "CONSTRAINT" || word[0] == "INDEX" {
                    out.insert(word[1].to_owned());
                }
            }
        }
        out
    };
    assert_eq!(names("sqlite"), names("postgres"));
}
