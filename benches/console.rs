//! Console benchmark (issue 6): how long the admin console's busiest pages take with 100,000
//! members on SQLite, one org unit ("Big") holding 30,000 of them.
//!
//! `scripts/bench-console [--members N] [--requests N] [--warmup N]` (100,000 members, 400
//! measured requests per case, 20 warm-up requests by default). Prints a Markdown table on
//! stdout, progress on stderr. See BENCHMARKS.md ("Console (issue 6)").
//!
//! rosterd runs in this process (`roster::app::run` on 127.0.0.1:0, exactly what `rosterd
//! serve` runs); the client signs in as the super admin like a browser (login cookie, CSRF
//! token, session cookie) and sends one request at a time over loopback. A request's time is
//! from sending it to having read the whole body: the server's work plus HTTP over loopback.
//! For the pages whose work is one `search_members` call, the same call is also timed directly
//! against the store, to tell the SQL apart from the rest (session check, page rendering, HTTP).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use roster::config::Config;
use roster::directory::model::{Actor, Email, Source};
use roster::directory::query::{Expr, Field, Op, Query, Val};
use roster::directory::{Applied, Change, DirectoryService, NewMember, NewOrgUnit};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const BATCH: usize = 1000;
const PAGE_SIZE: i64 = 50; // the console's page size (src/admin/pages/org.rs)
const SUPER_PW: &str = "bench-super-password";
const TARGET_MS: f64 = 100.0;

const GIVEN: [&str; 24] = [
    "Alice", "Bruno", "Chen", "Daniel", "Elena", "Fatima", "George", "Hana", "Ivan", "Julia", "Kenji",
    "Laura", "Mohammed", "Nina", "Oscar", "Priya", "Quentin", "Rosa", "Sven", "Tomas", "Uma", "Victor",
    "Wei", "Yuki",
];
const SURNAMES: [&str; 30] = [
    "Anderson", "Brown", "Cohen", "Dubois", "Evans", "Fischer", "Garcia", "Hoffmann", "Ito", "Jansen", "Kim",
    "Li", "Martin", "Nakamura", "Olsen", "Petrov", "Rossi", "Silva", "Tanaka", "Wang", "Zhang", "Kowalski",
    "Novak", "Schmidt", "Mueller", "Lopez", "Singh", "Haddad", "Okafor", "Larsen",
];

struct Args {
    members: usize,
    requests: usize,
    warmup: usize,
    /// Keep the database in this (new or empty) directory instead of a temporary one.
    keep_db: Option<std::path::PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args { members: 100_000, requests: 400, warmup: 20, keep_db: None };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        if a == "--keep-db" {
            args.keep_db = Some(it.next().expect("--keep-db needs a directory").into());
            continue;
        }
        let mut number = |flag: &str| -> usize {
            it.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match a.as_str() {
            "--members" => args.members = number("--members"),
            "--requests" => args.requests = number("--requests"),
            "--warmup" => args.warmup = number("--warmup"),
            _ => {} // `--bench` from cargo, and anything else
        }
    }
    assert!(args.members >= 1000, "--members must be at least 1000");
    assert!(args.requests >= 1, "--requests must be at least 1");
    args
}

/// A deterministic pseudo-random sequence (Knuth's MMIX LCG), so every run asks the same.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

/// A fixed scramble of `i` (splitmix64), for names that do not follow the member's index.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
    z ^ (z >> 31)
}

fn names(i: usize) -> (&'static str, &'static str) {
    let h = mix(i as u64);
    (GIVEN[(h % GIVEN.len() as u64) as usize], SURNAMES[((h >> 20) % SURNAMES.len() as u64) as usize])
}

fn login(i: usize) -> String {
    format!("user{i:06}")
}

/// `VmHWM` (peak resident set) and `VmRSS` of this process in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Resets `VmHWM` to the current RSS (Linux >= 4.0).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// CPU ticks so far: this process, and the whole machine busy (all but idle and iowait).
fn cpu_ticks() -> (u64, u64) {
    let own = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let f: Vec<u64> =
                s.rsplit_once(')')?.1.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
            Some(f[11] + f[12]) // utime, stime (fields 14 and 15)
        })
        .unwrap_or(0);
    let busy = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let v: Vec<u64> =
                s.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            Some(v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4)?)
        })
        .unwrap_or(0);
    (own, busy)
}

struct Latency {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

/// Percentiles in milliseconds (nearest rank).
fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e3
    };
    Latency { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: samples.last().unwrap().as_secs_f64() * 1e3 }
}

/// What the console's search box means (a copy of `search_expr` in src/admin/pages/org.rs, for
/// timing the store call on its own): an account number, or the start of a login name, or part
/// of a display name, or a mobile number.
/// The console's search box (the same expression its pages use).
fn search_expr(q: &str) -> Option<Expr> {
    Expr::search_box(q)
}

/// The `search_members` query the console runs for a page (org page: `unit` set).
fn page_query(unit: Option<Uuid>, q: &str, page: i64) -> Query {
    let mut filter = unit.map(|u| Expr::Cmp(Field::PrimaryOrgUnitId, Op::Eq, Val::Uuid(u)));
    if let Some(s) = search_expr(q) {
        filter = Some(match filter {
            Some(f) => Expr::And(Box::new(f), Box::new(s)),
            None => s,
        });
    }
    Query {
        filter,
        sort: Some((Field::AccountNumber, false)),
        offset: (page.max(1) - 1) * PAGE_SIZE,
        limit: PAGE_SIZE,
    }
}

/// A browser-like client: keeps cookies, picks up the CSRF token, never follows redirects.
struct Session {
    base: String,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
    csrf: String,
}

struct Answer {
    status: reqwest::StatusCode,
    body: String,
    location: Option<String>,
}

impl Session {
    fn new(base: &str) -> Session {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Session { base: base.to_owned(), http, cookies: HashMap::new(), csrf: String::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn finish(&mut self, r: reqwest::Response) -> Answer {
        let status = r.status();
        let location = r.headers().get("location").map(|v| v.to_str().unwrap().to_owned());
        for c in r.headers().get_all("set-cookie") {
            let c = c.to_str().unwrap();
            let (kv, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (k, v) = kv.split_once('=').unwrap();
            if attrs.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let body = r.text().await.expect("read the body");
        if let Some(i) = body.find("name=\"_csrf\" value=\"") {
            let rest = &body[i + 20..];
            self.csrf = rest[..rest.find('"').unwrap()].to_owned();
        }
        Answer { status, body, location }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("GET");
        self.finish(r).await
    }

    async fn sign_in(&mut self, account: &str, password: &str) {
        let p = self.get("/admin/login").await;
        assert_eq!(p.status, reqwest::StatusCode::OK, "{}", p.body);
        let form = [("_csrf", self.csrf.clone()), ("account", account.into()), ("password", password.into())];
        let r = self
            .http
            .post(format!("{}/admin/login", self.base))
            .header("cookie", self.cookie_header())
            .form(&form)
            .send()
            .await
            .expect("POST /admin/login");
        let p = self.finish(r).await;
        assert_eq!(p.status, reqwest::StatusCode::SEE_OTHER, "sign-in refused: {}", p.body);
        assert!(self.cookies.contains_key("roster_session"), "no session cookie after signing in");
        eprintln!("signed in as the super admin (to {})", p.location.unwrap_or_default());
    }
}

/// What a member list on a page shows: (rows, total).
fn rows_and_total(body: &str, total_before: &str, total_after: &str) -> (usize, i64) {
    let rows = body.matches("<tr><td>").count();
    let i = body.find(total_before).unwrap_or_else(|| panic!("no {total_before:?} on the page"))
        + total_before.len();
    let total = body[i..body[i..].find(total_after).map(|j| i + j).unwrap()].trim().parse().unwrap();
    (rows, total)
}

fn org_list(body: &str) -> (usize, i64) {
    rows_and_total(body, "<span class=\"muted\">(", ")</span>")
}

fn members_list(body: &str) -> (usize, i64) {
    rows_and_total(body, "<span id=\"member-total\">", "</span>")
}

struct Case {
    name: String,
    http: Latency,
    store: Option<Latency>,
    /// What the pages showed: rows on the page and the total, as ranges over the requests.
    shown: String,
    kib: f64,
}

/// One case: `warmup` + `n` sequential requests for `path(i)`, each answer checked by `check`
/// (which returns (rows, total) for the table); then, when `query(i)` gives one, the same
/// `search_members` calls straight against the store.
#[allow(clippy::too_many_arguments)]
async fn run_case(
    s: &mut Session,
    d: &DirectoryService,
    name: &str,
    n: usize,
    warmup: usize,
    path: &dyn Fn(usize) -> String,
    check: &dyn Fn(usize, &str) -> (usize, i64),
    query: &dyn Fn(usize) -> Option<Query>,
) -> Case {
    eprintln!("{name}: {warmup} warm-up + {n} requests, e.g. {}", path(0));
    let mut samples = Vec::with_capacity(n);
    let (mut rows, mut totals) = ((usize::MAX, 0), (i64::MAX, 0));
    let mut bytes = 0usize;
    let mut shown = Vec::with_capacity(warmup + n);
    for i in 0..warmup + n {
        let p = path(i);
        let t = Instant::now();
        let a = s.get(&p).await;
        let took = t.elapsed();
        assert_eq!(a.status, reqwest::StatusCode::OK, "{p}: {}", &a.body[..a.body.len().min(500)]);
        let (r, total) = check(i, &a.body);
        shown.push((r, total));
        if i >= warmup {
            samples.push(took);
            rows = (rows.0.min(r), rows.1.max(r));
            totals = (totals.0.min(total), totals.1.max(total));
            bytes += a.body.len();
        }
    }
    let mut store_samples = Vec::new();
    if query(0).is_some() {
        for (i, seen) in shown.iter().enumerate() {
            let q = query(i).unwrap();
            let t = Instant::now();
            let found = d.store().search_members(&q).await.expect("search_members");
            let took = t.elapsed();
            // The store must find what the page showed.
            assert_eq!(
                (found.items.len(), found.total),
                *seen,
                "{}: the store and the page disagree",
                path(i)
            );
            if i >= warmup {
                store_samples.push(took);
            }
        }
    }
    let range = |(lo, hi): (i64, i64)| if lo == hi { lo.to_string() } else { format!("{lo}–{hi}") };
    let http = latency(samples);
    eprintln!("  p50 {:.1} ms, p99 {:.1} ms", http.p50, http.p99);
    Case {
        name: name.to_owned(),
        http,
        store: (!store_samples.is_empty()).then(|| latency(store_samples)),
        shown: if totals.1 == 0 {
            "–".to_owned() // not a list
        } else {
            format!("{} of {}", range((rows.0 as i64, rows.1 as i64)), range(totals))
        },
        kib: bytes as f64 / n as f64 / 1024.0,
    }
}

fn print_table(cases: &[Case], a: &Args, peak: (u64, u64), cpu: (f64, f64), load_secs: f64, big: usize) {
    println!(
        "| request ({} measured each, one at a time) | rows shown of total | page | p50 | p95 | p99 | max | store call alone: p50 / p99 | p99 < {TARGET_MS:.0} ms |",
        a.requests
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---|");
    for c in cases {
        let store = match &c.store {
            Some(l) => format!("{:.1} / {:.1} ms", l.p50, l.p99),
            None => "–".to_owned(),
        };
        println!(
            "| {} | {} | {:.0} KiB | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {store} | {} |",
            c.name,
            c.shown,
            c.kib,
            c.http.p50,
            c.http.p95,
            c.http.p99,
            c.http.max,
            if c.http.p99 < TARGET_MS { "met" } else { "MISSED" }
        );
    }
    println!();
    println!(
        "{} members ({big} in \"Big\"), 10 org units, SQLite; loaded through DirectoryService in {load_secs:.1} s. \
         Times are client-side over loopback (request sent → whole body read), rosterd in the same process.",
        a.members
    );
    println!(
        "Peak RSS of the process (VmHWM, rosterd + client + loader): {:.0} MiB overall, {:.0} MiB while serving the requests.",
        peak.0 as f64 / 1024.0,
        peak.1 as f64 / 1024.0
    );
    println!(
        "CPU cores busy while serving: this process {:.2}, anything else {:.2} (if that is well above 0, something disturbed the run).",
        cpu.0, cpu.1
    );
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    rt.block_on(bench(args));
}

async fn bench(args: Args) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db_dir = match &args.keep_db {
        Some(keep) => {
            std::fs::create_dir_all(keep).expect("create the --keep-db directory");
            assert!(!keep.join("roster.db").exists(), "{} already holds a roster.db", keep.display());
            keep.clone()
        }
        None => dir.path().to_owned(),
    };
    let mut cfg = Config::default();
    cfg.database.url = format!("sqlite://{}", db_dir.join("roster.db").display());
    cfg.numbers.first = 100_000;
    cfg.numbers.last = 999_999;
    cfg.enterprise.name = "Example Corp".into();
    cfg.enterprise.mail_domain = "example.com".into();
    cfg.admin.secure_cookie = false; // plain http on loopback
    // The 100,000 welcome events would otherwise be dispatched (to no channel) while measuring.
    cfg.delivery.enabled = false;

    // The store, as in tests/it/admin.rs: migrated, the enterprise created, a super password.
    let services = roster::app::open_migrated(&cfg).await.expect("open the store");
    let d = services.directory.clone();
    d.ensure_enterprise(&cfg.enterprise.seed()).await.expect("create the enterprise");
    let admin = Actor::new(Source::console(), "admin");
    d.set_super_password(&admin, &cfg.enterprise.seed(), SUPER_PW, None)
        .await
        .expect("set the super password");
    let enterprise_id = d.store().enterprise().await.unwrap().unwrap().enterprise_id;

    // 10 org units: "Company" with "Big" and 8 more under it.
    let company = Uuid::now_v7();
    let big = Uuid::now_v7();
    let others: Vec<Uuid> = (0..8).map(|_| Uuid::now_v7()).collect();
    let mut units = vec![
        Change::CreateOrgUnit(NewOrgUnit { id: Some(company), name: "Company".into(), ..Default::default() }),
        Change::CreateOrgUnit(NewOrgUnit {
            id: Some(big),
            parent_id: Some(company),
            name: "Big".into(),
            ..Default::default()
        }),
    ];
    for (k, id) in others.iter().enumerate() {
        units.push(Change::CreateOrgUnit(NewOrgUnit {
            id: Some(*id),
            parent_id: Some(company),
            name: format!("Unit {}", k + 1),
            ..Default::default()
        }));
    }
    let importer = Actor::new(Source::import(), "bench");
    d.apply(&importer, units).await.expect("create org units");

    // Members: 3 in 10 in "Big" (30,000 of 100,000), the rest spread over the 8 others.
    let n = args.members;
    let in_big = |i: usize| i % 10 < 3;
    let n_big = (0..n).filter(|i| in_big(*i)).count();
    eprintln!("creating {n} members ({n_big} in Big) in batches of {BATCH}");
    let mut created: Vec<(Uuid, i64)> = Vec::with_capacity(n);
    let start = Instant::now();
    let mut next = 0;
    while next < n {
        let end = (next + BATCH).min(n);
        let batch: Vec<Change> = (next..end)
            .map(|i| {
                let (given, family) = names(i);
                Change::CreateMember(NewMember {
                    login_name: login(i),
                    display_name: format!("{given} {family} {i}"),
                    given_name: Some(given.into()),
                    family_name: Some(family.into()),
                    emails: vec![Email {
                        address: format!("{}@example.com", login(i)),
                        kind: "work".into(),
                        primary: true,
                    }],
                    mobile: Some(format!("+86 139{i:08}")),
                    primary_org_unit_id: Some(if in_big(i) { big } else { others[(i / 10) % others.len()] }),
                    ..Default::default()
                })
            })
            .collect();
        for a in d.apply(&importer, batch).await.expect("create members") {
            let Applied::Member(m) = a else { panic!("unexpected {a:?}") };
            created.push((m.id, m.account_number));
        }
        next = end;
        if next % 20_000 == 0 {
            eprintln!("  {next} members, {:.1} s", start.elapsed().as_secs_f64());
        }
    }
    let load_secs = start.elapsed().as_secs_f64();
    eprintln!("members: {load_secs:.1} s");

    // rosterd, in this process.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    let server = tokio::spawn(roster::app::run(listener, cfg.clone(), stop.clone()));
    let mut s = Session::new(&base);
    let mut ready = false;
    for _ in 0..200 {
        if s.get("/readyz").await.status == reqwest::StatusCode::OK {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "rosterd did not become ready");
    eprintln!("rosterd ready at {base}");
    s.sign_in(&enterprise_id, SUPER_PW).await;

    let (requests, warmup) = (args.requests, args.warmup);
    let deep_page = 300i64.min((n_big as i64 + PAGE_SIZE - 1) / PAGE_SIZE);
    let expect_full = move |rows: usize, total: i64| {
        assert_eq!(total, n_big as i64, "the org page's total");
        assert_eq!(rows, PAGE_SIZE as usize, "rows on the org page");
    };
    // Search terms, chosen by fixed-seed LCGs (so every run asks the same).
    let prefixes: Vec<String> = GIVEN.iter().map(|g| g[..3].to_owned()).collect();
    let logins: Vec<String> = {
        let mut rng = Lcg(0x1061);
        (0..warmup + requests).map(|_| login(rng.below(n))[..8].to_owned()).collect() // "user0123"
    };
    let fragments: Vec<String> = SURNAMES.iter().map(|f| f[..f.len().min(5)].to_lowercase()).collect();
    let numbers: Vec<i64> = {
        let mut rng = Lcg(0x2022);
        (0..warmup + requests).map(|_| created[rng.below(n)].1).collect()
    };
    let details: Vec<(Uuid, i64)> = {
        let mut rng = Lcg(0xDE7A);
        (0..warmup + requests).map(|_| created[rng.below(n)]).collect()
    };

    let load_peak = rss_kib().0;
    reset_peak_rss();
    let cpu_before = cpu_ticks();
    let serving = Instant::now();
    let mut cases = Vec::new();
    cases.push(
        run_case(
            &mut s,
            &d,
            "org page of Big, first page: `GET /admin/org?unit=<Big>`",
            requests,
            warmup,
            &|_| format!("/admin/org?unit={big}"),
            &|_, body| {
                let (rows, total) = org_list(body);
                expect_full(rows, total);
                (rows, total)
            },
            &|_| Some(page_query(Some(big), "", 1)),
        )
        .await,
    );
    cases.push(
        run_case(
            &mut s,
            &d,
            &format!("org page of Big, deep page: `…&page={deep_page}`"),
            requests,
            warmup,
            &|_| format!("/admin/org?unit={big}&page={deep_page}"),
            &|_, body| {
                let (rows, total) = org_list(body);
                assert_eq!(total, n_big as i64);
                assert!(rows > 0, "an empty deep page");
                (rows, total)
            },
            &|_| Some(page_query(Some(big), "", deep_page)),
        )
        .await,
    );
    cases.push(
        run_case(
            &mut s,
            &d,
            "search in Big by name: `…&q=Ali` (24 given-name prefixes)",
            requests,
            warmup,
            &|i| format!("/admin/org?unit={big}&q={}", prefixes[i % prefixes.len()]),
            &|_, body| {
                let (rows, total) = org_list(body);
                assert!(total > 0 && total < n_big as i64, "search in Big found {total}");
                assert_eq!(rows as i64, total.min(PAGE_SIZE));
                (rows, total)
            },
            &|i| Some(page_query(Some(big), &prefixes[i % prefixes.len()], 1)),
        )
        .await,
    );
    cases.push(
        run_case(
            &mut s,
            &d,
            "member list, no query: `GET /admin/members`",
            requests,
            warmup,
            &|_| "/admin/members".to_owned(),
            &|_, body| {
                let (rows, total) = members_list(body);
                assert_eq!((rows, total), (PAGE_SIZE as usize, n as i64));
                (rows, total)
            },
            &|_| Some(page_query(None, "", 1)),
        )
        .await,
    );
    cases.push(
        run_case(
            &mut s,
            &d,
            "member search, login prefix: `GET /admin/members?q=user0123`",
            requests,
            warmup,
            &|i| format!("/admin/members?q={}", logins[i]),
            &|_, body| {
                let (rows, total) = members_list(body);
                assert!((1..=100).contains(&total), "login prefix found {total}");
                assert_eq!(rows as i64, total.min(PAGE_SIZE));
                (rows, total)
            },
            &|i| Some(page_query(None, &logins[i], 1)),
        )
        .await,
    );
    cases.push(
        run_case(
            &mut s,
            &d,
            "member search, display-name fragment: `…?q=garci` (30 surname fragments)",
            requests,
            warmup,
            &|i| format!("/admin/members?q={}", fragments[i % fragments.len()]),
            &|_, body| {
                let (rows, total) = members_list(body);
                assert!(total > 0, "name fragment found nothing");
                assert_eq!(rows as i64, total.min(PAGE_SIZE));
                (rows, total)
            },
            &|i| Some(page_query(None, &fragments[i % fragments.len()], 1)),
        )
        .await,
    );
    cases.push(
        run_case(
            &mut s,
            &d,
            "member search, account number: `…?q=<number>`",
            requests,
            warmup,
            &|i| format!("/admin/members?q={}", numbers[i]),
            &|i, body| {
                let (rows, total) = members_list(body);
                assert_eq!((rows, total), (1, 1), "account number {}", numbers[i]);
                assert!(body.contains(&format!("<tr><td>{}</td>", numbers[i])));
                (rows, total)
            },
            &|i| Some(page_query(None, &numbers[i].to_string(), 1)),
        )
        .await,
    );
    cases.push(
        run_case(
            &mut s,
            &d,
            "member detail: `GET /admin/members/<id>`",
            requests,
            warmup,
            &|i| format!("/admin/members/{}", details[i].0),
            &|i, body| {
                assert!(
                    body.contains(&format!("<b>{}</b>", details[i].1)),
                    "the detail page lacks its number"
                );
                (0, 0) // not a list
            },
            &|_| None,
        )
        .await,
    );
    let secs = serving.elapsed().as_secs_f64();
    let cpu_after = cpu_ticks();
    let serving_peak = rss_kib().0;
    let own = (cpu_after.0 - cpu_before.0) as f64 / (100.0 * secs);
    let all = (cpu_after.1 - cpu_before.1) as f64 / (100.0 * secs);
    let overall = load_peak.max(serving_peak);
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    print_table(&cases, &args, (overall, serving_peak), (own, (all - own).max(0.0)), load_secs, n_big);
}
