//! Fuzzing what Roster parses from outside, on the stable toolchain: seeded, mutation-based.
//!
//! Each target starts from a corpus kept in the repository (`fuzz/corpus/<target>/`, one input
//! a file) and mutates it (bytes flipped, inserted, removed, lengths and delimiters changed,
//! cut short, spliced with another seed). `cargo test --lib fuzz::` runs a few thousand inputs
//! a target; `ROSTER_FUZZ_CASES=10000000 cargo test --lib fuzz:: -- --nocapture` runs ten
//! million each and prints the counts. A failing input is printed, to be added to the corpus
//! once fixed. The LDAP server's request decoding and filter evaluation are in [`ldap`].

mod ldap;

use std::path::PathBuf;

/// Inputs a target runs (`ROSTER_FUZZ_CASES`, default 3,000).
pub fn cases() -> u64 {
    std::env::var("ROSTER_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000)
}

/// xorshift64*: fast and seeded, so a run is reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that mean something to the parsers: delimiters, quotes, escapes, brackets.
const INTERESTING: &[u8] = b"\"'\\[](){}<>,;:=&.@/ \t\r\n\0*+-#%";

/// One mutated input made from the seeds.
pub fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(b.len() + 1);
        let last = b.len().saturating_sub(1);
        match rng.below(8) {
            0 if !b.is_empty() => b[at.min(last)] ^= 1 << rng.below(8),
            1 => b.insert(at, rng.next() as u8),
            2 if at < b.len() => {
                b.remove(at);
            }
            3 => b.truncate(at),
            4 if !b.is_empty() => b[at.min(last)] = [0x00, 0x7f, 0x80, 0x81, 0x84, 0xff][rng.below(6)],
            5 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                b.splice(at..at, other[from..].iter().copied());
            }
            6 => b.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            _ => b.extend((0..rng.below(16)).map(|_| rng.next() as u8)),
        }
    }
    b
}

/// The corpus of `target`.
pub fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|f| std::fs::read(f.expect("a corpus entry").path()).expect("a corpus file"))
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "{} holds no seeds", dir.display());
    seeds
}

/// Runs `check` on the seeds, then on [`cases`] mutated inputs; returns how many `check`
/// accepted. A panic names the input.
pub fn run(target: &str, seed: u64, check: impl Fn(&[u8]) -> bool) -> (u64, u64) {
    let seeds = corpus(target);
    let mut rng = Rng(seed);
    let n = cases();
    let mut accepted = 0;
    for s in &seeds {
        assert!(check(s), "{target}: a corpus seed is refused: {}", String::from_utf8_lossy(s));
    }
    for _ in 0..n {
        let input = mutate(&mut rng, &seeds);
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)))
            .unwrap_or_else(|_| panic!("{target}: panicked on {:?}", String::from_utf8_lossy(&input)));
        if ok {
            accepted += 1;
        }
    }
    println!("fuzz {target}: {n} inputs, {accepted} accepted, {} refused, no panic", n - accepted);
    (n, accepted)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn scim_filter() {
    let (n, ok) = run("scim_filter", 1, |b| crate::scim::filter::parse(&text(b)).is_ok());
    assert!(ok > 0 && ok < n, "the mutations reach both answers");
}

#[test]
fn scim_patch_path() {
    let (n, ok) = run("scim_path", 2, |b| crate::scim::filter::parse_path(&text(b)).is_ok());
    assert!(ok > 0 && ok < n);
}

#[test]
fn scim_patch_ops() {
    let user = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "alice", "emails": [{"type": "work", "value": "a@example.com"}], "title": "x"
    });
    let (n, ok) = run("scim_patch", 3, |b| match serde_json::from_slice::<serde_json::Value>(b) {
        Ok(v) => match crate::scim::patch::parse_ops(&v) {
            Ok(ops) => {
                let _ = crate::scim::patch::apply_to_user(user.clone(), &ops);
                true
            }
            Err(_) => false,
        },
        Err(_) => false,
    });
    assert!(ok > 0 && ok < n);
}

#[test]
fn csv_import() {
    let (n, ok) = run("csv_import", 4, |b| crate::admin::pages::import::parse_csv(&text(b)).is_ok());
    assert!(ok > 0 && ok < n);
}

#[test]
fn jsonl_import() {
    let (n, ok) = run("jsonl_import", 5, |b| crate::cli::jsonl::parse(&text(b)).is_ok());
    assert!(ok > 0 && ok < n);
}

#[test]
fn archive_lines() {
    let (n, ok) =
        run("archive_lines", 6, |b| crate::api::archive::parse_lines(b).iter().all(|(_, l)| l.is_ok()));
    assert!(ok > 0 && ok < n);
}

#[test]
fn archive_xmpp() {
    let now = chrono::Utc::now();
    let (n, ok) = run("archive_xmpp", 7, |b| crate::archive::xmpp::line(&text(b), None, None, now).is_ok());
    assert!(ok > 0 && ok < n);
}

/// LDIF-like text (`dn:` then `attribute: value` lines, blank lines between entries) as the
/// entries an LDAP read returns.
fn entries(b: &[u8]) -> Vec<crate::sync::ldap::RawEntry> {
    let mut out = Vec::new();
    for block in text(b).split("\n\n") {
        let mut e = crate::sync::ldap::RawEntry { dn: String::new(), attrs: Vec::new(), bin: Vec::new() };
        for line in block.lines() {
            let Some((k, v)) = line.split_once(':') else { continue };
            let (k, v) = (k.trim(), v.trim().to_owned());
            if k.eq_ignore_ascii_case("dn") {
                e.dn = v;
            } else if let Some(a) = e.attrs.iter_mut().find(|(n, _)| n == k) {
                a.1.push(v);
            } else {
                e.attrs.push((k.to_owned(), vec![v]));
            }
        }
        out.push(e);
    }
    out
}

#[test]
fn ldap_entry_mapping() {
    let src: crate::config::LdapSource = toml::from_str(
        "name = \"fuzz\"\nurl = \"ldap://127.0.0.1\"\nusers = { base_dn = \"dc=example,dc=com\" }\n\
         org_units = { base_dn = \"dc=example,dc=com\" }\n",
    )
    .expect("a valid source");
    let map = crate::sync::map::AttrMap::for_source(&src).expect("the attribute map");
    let (n, ok) = run("ldap_entries", 8, |b| {
        let (units, users): (Vec<_>, Vec<_>) =
            entries(b).into_iter().partition(|e| e.dn.to_ascii_lowercase().starts_with("ou="));
        let mut m = crate::sync::map::Mapper::new(&map, Some("dc=example,dc=com"), units, false);
        for u in users {
            m.user(u);
        }
        let s = m.finish(Vec::new(), &Default::default(), &Default::default());
        !s.users.is_empty() && s.skipped.is_empty()
    });
    assert!(ok > 0 && ok < n);
}
