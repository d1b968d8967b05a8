//! Directory benchmark: bulk create through `DirectoryService` and point lookups through the
//! `Store` trait, on SQLite and on PostgreSQL (a private cluster with fsync on).
//!
//! `scripts/bench [sqlite|postgres]... [--members N] [--units N]` (both stores, 100,000 members
//! and 10,000 org units by default). Prints a Markdown table on stdout, progress on stderr.
//! See BENCHMARKS.md for the results and how to read them.

#[path = "../tests/it/fixtures/pg.rs"]
mod pg;

use std::time::{Duration, Instant};

use roster::config::Config;
use roster::directory::model::{Actor, Email, Source};
use roster::directory::{Applied, Change, DirectoryService, NewMember, NewOrgUnit};
use uuid::Uuid;

const BATCH: usize = 1000;
const LOOKUPS: usize = 10_000;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

struct Args {
    backends: Vec<Backend>,
    members: usize,
    units: usize,
}

fn parse_args() -> Args {
    let mut args = Args { backends: Vec::new(), members: 100_000, units: 10_000 };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |flag: &str| -> usize {
            it.next()
                .and_then(|v| v.replace('_', "").parse().ok())
                .unwrap_or_else(|| panic!("{flag} needs a number"))
        };
        match a.as_str() {
            "sqlite" => args.backends.push(Backend::Sqlite),
            "postgres" | "postgresql" => args.backends.push(Backend::Postgres),
            "--members" => args.members = number("--members"),
            "--units" => args.units = number("--units"),
            _ => {} // `--bench` from cargo, and anything else
        }
    }
    if args.backends.is_empty() {
        args.backends = vec![Backend::Sqlite, Backend::Postgres];
    }
    args.backends.dedup();
    assert!(args.units >= 1, "--units must be at least 1");
    assert!(args.members >= 1, "--members must be at least 1");
    args
}

/// A deterministic pseudo-random sequence (Knuth's MMIX LCG), so every run looks up the same keys.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

struct Latency {
    median_us: f64,
    p99_us: f64,
    max_us: f64,
}

fn latency(mut samples: Vec<Duration>) -> Latency {
    samples.sort();
    let at = |q: f64| {
        let i = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1e6
    };
    Latency { median_us: at(0.5), p99_us: at(0.99), max_us: samples.last().unwrap().as_secs_f64() * 1e6 }
}

struct Report {
    backend: Backend,
    units: usize,
    units_secs: f64,
    members: usize,
    members_secs: f64,
    /// Cores used during member creation and during the lookups:
    /// (this process, PostgreSQL server, everything else).
    members_cpu: (f64, f64, f64),
    lookups_cpu: (f64, f64, f64),
    batch: Latency,
    by_login: Latency,
    by_number: Latency,
    by_id: Latency,
    peak_kib: u64,
    db_size: Option<u64>,
}

/// `VmHWM` (peak resident set) of this process in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `utime + stime` (fields 14 and 15) and, with `children`, `cutime + cstime` of a process.
fn proc_ticks(pid: &str, children: bool) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name in parentheses: field 3 (state) onwards.
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let n = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let ppid = n(4);
    Some((n(14) + n(15) + if children { n(16) + n(17) } else { 0 }, ppid))
}

/// CPU time so far, in clock ticks.
#[derive(Clone, Copy, Default)]
struct Cpu {
    /// This process.
    own: u64,
    /// The PostgreSQL server: the postmaster, its live children, and its reaped children.
    server: u64,
    /// The whole machine, busy (all but idle and iowait).
    busy: u64,
}

impl Cpu {
    fn now(server_pid: Option<u32>) -> Cpu {
        let own = proc_ticks("self", false).map_or(0, |t| t.0);
        let server = server_pid.map_or(0, |pm| {
            let mut total = proc_ticks(&pm.to_string(), true).map_or(0, |t| t.0);
            for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.bytes().all(|b| b.is_ascii_digit())
                    && let Some((t, ppid)) = proc_ticks(&name, false)
                    && ppid == u64::from(pm)
                {
                    total += t;
                }
            }
            total
        });
        let busy = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| {
                let v: Vec<u64> =
                    s.lines().next()?.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal
                Some(v.iter().take(8).sum::<u64>() - v.get(3)? - v.get(4)?)
            })
            .unwrap_or(0);
        Cpu { own, server, busy }
    }
}

/// Cores' worth of CPU used between two readings: (this process, PostgreSQL server, everything else).
fn cpu_share(before: Cpu, after: Cpu, secs: f64) -> (f64, f64, f64) {
    let hz = 100.0 * secs; // USER_HZ ticks per second on Linux
    let own = after.own.saturating_sub(before.own) as f64 / hz;
    let server = after.server.saturating_sub(before.server) as f64 / hz;
    let all = after.busy.saturating_sub(before.busy) as f64 / hz;
    (own, server, (all - own - server).max(0.0))
}

/// Resets `VmHWM` to the current RSS, so each store's peak is its own (Linux >= 4.0).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn config(url: String) -> Config {
    let mut cfg = Config::default();
    cfg.database.url = url;
    cfg.numbers.first = 1_000_000;
    cfg.numbers.last = 9_999_999;
    cfg.enterprise.mail_domain = "example.com".into();
    cfg
}

async fn run(
    backend: Backend,
    cfg: &Config,
    n_units: usize,
    n_members: usize,
    server: Option<u32>,
) -> Report {
    let d: DirectoryService = roster::app::open(cfg).await.expect("open the directory").directory;
    let actor = Actor::new(Source::import(), "bench");
    let label = backend.name();

    // Org units: a two-level tree, sqrt(N) top-level units and the rest spread under them.
    let tops = ((n_units as f64).sqrt().ceil() as usize).clamp(1, n_units);
    let ids: Vec<Uuid> = (0..n_units).map(|_| Uuid::now_v7()).collect();
    let changes: Vec<Change> = (0..n_units)
        .map(|i| {
            let (parent_id, name) = if i < tops {
                (None, format!("Division {i:05}"))
            } else {
                (Some(ids[(i - tops) % tops]), format!("Team {i:05}"))
            };
            Change::CreateOrgUnit(NewOrgUnit { id: Some(ids[i]), parent_id, name, ..Default::default() })
        })
        .collect();
    eprintln!("[{label}] creating {n_units} org units ({tops} top-level) in batches of {BATCH}");
    let start = Instant::now();
    let mut it = changes.into_iter().peekable();
    while it.peek().is_some() {
        let batch: Vec<Change> = it.by_ref().take(BATCH).collect();
        d.apply(&actor, batch).await.expect("create org units");
    }
    let units_secs = start.elapsed().as_secs_f64();
    eprintln!("[{label}] org units: {units_secs:.2} s");

    // Members, each with one work e-mail, a mobile number and a primary unit.
    eprintln!("[{label}] creating {n_members} members in batches of {BATCH}");
    let mut created: Vec<(String, i64, Uuid)> = Vec::with_capacity(n_members);
    let mut batch_times = Vec::new();
    let cpu_before = Cpu::now(server);
    let start = Instant::now();
    let mut next = 0;
    while next < n_members {
        let end = (next + BATCH).min(n_members);
        let batch: Vec<Change> = (next..end)
            .map(|i| {
                Change::CreateMember(NewMember {
                    login_name: format!("user{i:07}"),
                    display_name: format!("User {i}"),
                    emails: vec![Email {
                        address: format!("user{i:07}@example.com"),
                        kind: "work".into(),
                        primary: true,
                    }],
                    mobile: Some(format!("+86 139{i:08}")),
                    primary_org_unit_id: Some(ids[i % n_units]),
                    ..Default::default()
                })
            })
            .collect();
        let t = Instant::now();
        let applied = d.apply(&actor, batch).await.expect("create members");
        batch_times.push(t.elapsed());
        for a in applied {
            let Applied::Member(m) = a else { panic!("unexpected {a:?}") };
            created.push((m.login_name, m.account_number, m.id));
        }
        next = end;
        if batch_times.len() % 10 == 0 {
            eprintln!("[{label}]   {next} members, {:.1} s", start.elapsed().as_secs_f64());
        }
    }
    let members_secs = start.elapsed().as_secs_f64();
    let members_cpu = cpu_share(cpu_before, Cpu::now(server), members_secs);
    eprintln!("[{label}] members: {members_secs:.2} s ({:.0}/s)", n_members as f64 / members_secs);

    // Point lookups through the Store trait, one at a time.
    let store = d.store().clone();
    let counts = store.counts().await.expect("counts");
    assert_eq!(counts.members as usize, n_members);
    assert_eq!(counts.org_units as usize, n_units);
    // Warm-up: a few calls so connection set-up and statement preparation are not measured.
    for (login, number, id) in created.iter().take(100) {
        store.member_by_login(login).await.unwrap();
        store.member_by_number(*number).await.unwrap();
        store.member(*id).await.unwrap();
    }
    let mut rng = Lcg(0x5EED);
    let mut by_login = Vec::with_capacity(LOOKUPS);
    let mut by_number = Vec::with_capacity(LOOKUPS);
    let mut by_id = Vec::with_capacity(LOOKUPS);
    eprintln!("[{label}] {LOOKUPS} lookups each by login name, account number and id");
    let cpu_before = Cpu::now(server);
    let lookups_start = Instant::now();
    for _ in 0..LOOKUPS {
        let (login, _, id) = &created[rng.below(created.len())];
        let t = Instant::now();
        let m = store.member_by_login(login).await.expect("member_by_login");
        by_login.push(t.elapsed());
        assert_eq!(m.map(|m| m.id), Some(*id));

        let (_, number2, id2) = &created[rng.below(created.len())];
        let t = Instant::now();
        let m = store.member_by_number(*number2).await.expect("member_by_number");
        by_number.push(t.elapsed());
        assert_eq!(m.map(|m| m.id), Some(*id2));

        let (_, _, id3) = &created[rng.below(created.len())];
        let t = Instant::now();
        let m = store.member(*id3).await.expect("member");
        by_id.push(t.elapsed());
        assert_eq!(m.map(|m| m.id), Some(*id3));
    }

    let lookups_cpu = cpu_share(cpu_before, Cpu::now(server), lookups_start.elapsed().as_secs_f64());

    let db_size = match backend {
        Backend::Sqlite => {
            let path = cfg.database.url.trim_start_matches("sqlite://");
            let size = |p: String| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            Some(size(path.to_owned()) + size(format!("{path}-wal")))
        }
        Backend::Postgres => None,
    };
    Report {
        backend,
        units: n_units,
        units_secs,
        members: n_members,
        members_secs,
        members_cpu,
        lookups_cpu,
        batch: latency(batch_times),
        by_login: latency(by_login),
        by_number: latency(by_number),
        by_id: latency(by_id),
        peak_kib: peak_rss_kib(),
        db_size,
    }
}

fn print_table(reports: &[Report]) {
    let mut header = "| measure | target |".to_owned();
    let mut rule = "|---|---|".to_owned();
    for r in reports {
        header.push_str(&format!(" {} |", r.backend.name()));
        rule.push_str("---|");
    }
    println!("{header}\n{rule}");
    let row = |name: &str, target: &str, cell: &dyn Fn(&Report) -> String| {
        let mut line = format!("| {name} | {target} |");
        for r in reports {
            line.push_str(&format!(" {} |", cell(r)));
        }
        println!("{line}");
    };
    let met = |ok: bool| if ok { "met" } else { "MISSED" };
    let members = reports[0].members;
    row(&format!("org units created ({} per transaction)", BATCH), "", &|r| {
        format!("{} in {:.2} s ({:.0}/s)", r.units, r.units_secs, r.units as f64 / r.units_secs)
    });
    row("members created: total time", "< 15 s for 100k (SQLite)", &|r| {
        let verdict = match r.backend {
            Backend::Sqlite if r.members == 100_000 => {
                format!(" — {}", met(r.members_secs < 15.0))
            }
            _ => String::new(),
        };
        format!("{:.2} s{verdict}", r.members_secs)
    });
    row("members created: throughput", "> 6,667/s", &|r| {
        format!("{:.0}/s", r.members as f64 / r.members_secs)
    });
    let cpu = |c: (f64, f64, f64), pg: bool| match pg {
        true => format!("{:.2} / {:.2} / {:.2}", c.0, c.1, c.2),
        false => format!("{:.2} / – / {:.2}", c.0, c.2),
    };
    row("CPU cores busy while creating members: bench / PostgreSQL server / anything else", "", &|r| {
        cpu(r.members_cpu, r.backend == Backend::Postgres)
    });
    row("CPU cores busy during the lookups: bench / PostgreSQL server / anything else", "", &|r| {
        cpu(r.lookups_cpu, r.backend == Backend::Postgres)
    });
    row(&format!("one {BATCH}-member transaction: median / p99 / max"), "", &|r| {
        format!(
            "{:.0} / {:.0} / {:.0} ms",
            r.batch.median_us / 1e3,
            r.batch.p99_us / 1e3,
            r.batch.max_us / 1e3
        )
    });
    for (name, get) in [
        ("lookup by login name: median / p99 / max", (|r: &Report| &r.by_login) as fn(&Report) -> &Latency),
        ("lookup by account number: median / p99 / max", |r: &Report| &r.by_number),
        ("lookup by id: median / p99 / max", |r: &Report| &r.by_id),
    ] {
        row(name, "p99 < 1,000 µs", &|r| {
            let l = get(r);
            format!("{:.0} / {:.0} / {:.0} µs — {}", l.median_us, l.p99_us, l.max_us, met(l.p99_us < 1000.0))
        });
    }
    row("peak RSS of the bench process (VmHWM)", "", &|r| format!("{:.0} MiB", r.peak_kib as f64 / 1024.0));
    row("database size on disk", "", &|r| match r.db_size {
        Some(b) if r.backend == Backend::Sqlite => {
            format!("{:.0} MiB (file + WAL)", b as f64 / 1048576.0)
        }
        Some(b) => format!("{:.0} MiB (pg_database_size)", b as f64 / 1048576.0),
        None => "n/a".into(),
    });
    println!();
    println!(
        "{members} members, {} org units; {LOOKUPS} sequential lookups of each kind, keys chosen by a fixed-seed LCG.",
        reports[0].units
    );
    if reports.iter().any(|r| r.backend == Backend::Postgres) {
        println!(
            "PostgreSQL: private cluster on loopback, fsync on; its server processes' memory is not in the RSS row."
        );
    }
    println!(
        "\"Anything else\": CPU used by other processes and kernel threads during the phase; \
         well above 0 means the run was disturbed."
    );
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    let mut reports = Vec::new();
    for backend in args.backends.clone() {
        reset_peak_rss();
        let report = match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let cfg = config(format!("sqlite://{}", dir.path().join("roster.db").display()));
                rt.block_on(run(backend, &cfg, args.units, args.members, None))
            }
            Backend::Postgres => {
                // Started from the main thread: the server is tied to the thread that spawns it.
                let cluster = pg::start(true);
                pg::psql(cluster.port, "CREATE DATABASE bench");
                let cfg = config(cluster.url("bench"));
                let server = std::fs::read_to_string(cluster.dir.join("data/postmaster.pid"))
                    .ok()
                    .and_then(|s| s.lines().next()?.trim().parse().ok());
                let mut r = rt.block_on(run(backend, &cfg, args.units, args.members, server));
                let size = pg::psql(cluster.port, "SELECT pg_database_size('bench')");
                r.db_size = size.trim().parse().ok();
                r
            }
        };
        eprintln!("[{}] peak RSS {} KiB", backend.name(), report.peak_kib);
        reports.push(report);
    }
    print_table(&reports);
}
