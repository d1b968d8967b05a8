//! LDAP load client for `scripts/bench-ldap`: the same client, with the same concurrency, drives
//! rosterd's LDAP server and slapd, so their figures compare. Not a harness bench: run it through
//! the script, or by hand with one of
//!
//! ```text
//! ldap search URL BIND_DN PASSWORD BASE UID_FILE CONC WARMUP_SECS SECS
//!     CONC connections, each bound once as BIND_DN, search BASE (subtree) for `(uid=X)`, X a
//!     random line of UID_FILE, asking for `uid`; each answer must hold exactly one entry
//! ldap bind URL CRED_FILE CONC WARMUP_SECS SECS
//!     CONC connections bind again and again (a simple bind on the open connection), each with
//!     its own share of CRED_FILE's `BIND_NAME<TAB>PASSWORD` lines in random order (no account
//!     is bound by two connections at once)
//! ldap hash THREADS SECS
//!     the password hash alone: `roster::secret::hash` once, then `roster::secret::verify`
//!     back to back on THREADS threads
//! ```
//!
//! Operations run back to back; those started in the WARMUP_SECS seconds before the measured
//! SECS are not counted. Prints one JSON object on stdout: operations, seconds, operations per
//! second, p50/p99/max latency in ms, errors (and the first error's text).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ldap3::{LdapConnAsync, Scope, ldap_escape};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

/// A worker gives up after this many errors (a server that refuses everything).
const MAX_ERRORS: u64 = 100;

/// One worker's measured operations.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

impl Tally {
    /// Records an operation started at `start` if it started in the measured window.
    fn record(&mut self, start: Instant, from: Instant, outcome: Result<(), String>) {
        if let Err(e) = outcome {
            self.errors += 1;
            self.first_error.get_or_insert(e);
        } else if start >= from {
            self.latencies_us.push(start.elapsed().as_micros() as u64);
        }
    }

    fn merge(&mut self, other: Tally) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// When the warm-up began and ended (measuring starts), and when measuring ends.
#[derive(Clone, Copy)]
struct Window {
    began: Instant,
    from: Instant,
    end: Instant,
}

impl Window {
    fn new(warmup: f64, secs: f64) -> Window {
        let began = Instant::now();
        let from = began + Duration::from_secs_f64(warmup);
        Window { began, from, end: from + Duration::from_secs_f64(secs) }
    }

    /// Whether a worker starts another operation now.
    fn open(&self, errors: u64) -> bool {
        Instant::now() < self.end && errors < MAX_ERRORS
    }
}

async fn connect(url: &str) -> anyhow::Result<ldap3::Ldap> {
    let (conn, ldap) = LdapConnAsync::new(url).await?;
    ldap3::drive!(conn);
    Ok(ldap)
}

struct SearchJob {
    url: String,
    bind_dn: String,
    password: String,
    base: String,
    uids: Vec<String>,
}

async fn search_worker(job: Arc<SearchJob>, seed: u64, w: Window) -> anyhow::Result<Tally> {
    let mut ldap = connect(&job.url).await?;
    ldap.simple_bind(&job.bind_dn, &job.password).await?.success()?;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut t = Tally::default();
    while w.open(t.errors) {
        let uid = &job.uids[rng.random_range(0..job.uids.len())];
        let filter = format!("(uid={})", ldap_escape(uid.as_str()));
        let start = Instant::now();
        let outcome = match ldap.search(&job.base, Scope::Subtree, &filter, vec!["uid"]).await {
            Ok(r) => match r.success() {
                Ok((entries, _)) if entries.len() == 1 => Ok(()),
                Ok((entries, _)) => Err(format!("{filter}: {} entries", entries.len())),
                Err(e) => Err(format!("{filter}: {e}")),
            },
            Err(e) => Err(format!("{filter}: {e}")),
        };
        t.record(start, w.from, outcome);
    }
    let _ = ldap.unbind().await;
    Ok(t)
}

async fn bind_worker(
    url: String,
    mut creds: Vec<(String, String)>,
    seed: u64,
    w: Window,
) -> anyhow::Result<Tally> {
    let mut ldap = connect(&url).await?;
    let mut rng = StdRng::seed_from_u64(seed);
    creds.shuffle(&mut rng);
    let mut t = Tally::default();
    for (name, password) in creds.iter().cycle() {
        if !w.open(t.errors) {
            break;
        }
        let start = Instant::now();
        let outcome = match ldap.simple_bind(name, password).await {
            Ok(r) => r.success().map(drop).map_err(|e| format!("bind {name}: {e}")),
            Err(e) => Err(format!("bind {name}: {e}")),
        };
        t.record(start, w.from, outcome);
    }
    let _ = ldap.unbind().await;
    Ok(t)
}

/// Waits for the workers and prints the JSON summary.
async fn report(
    kind: &str,
    conc: usize,
    w: Window,
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<Tally>>>,
) -> anyhow::Result<()> {
    let mut all = Tally::default();
    for h in workers {
        all.merge(h.await??);
    }
    // Measured from the end of the warm-up until the last operation counted came back.
    let secs = w.from.elapsed().as_secs_f64();
    let mut l = all.latencies_us;
    l.sort_unstable();
    let pct = |q: f64| -> f64 {
        if l.is_empty() {
            return 0.0;
        }
        let i = ((q * l.len() as f64).ceil() as usize).clamp(1, l.len()) - 1;
        l[i] as f64 / 1000.0
    };
    let out = json!({
        "kind": kind,
        "concurrency": conc,
        "ops": l.len(),
        "secs": (secs * 1000.0).round() / 1000.0,
        "per_sec": (l.len() as f64 / secs * 10.0).round() / 10.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0),
        "errors": all.errors,
        "first_error": all.first_error,
        // The client's own CPU (user + system, all threads) over warm-up and run, in % of a core.
        "cpu_pct": (100.0 * cpu_secs() / w.began.elapsed().as_secs_f64()).round(),
    });
    println!("{out}");
    Ok(())
}

/// This process's CPU time so far (user + system), in seconds.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn lines(path: &str) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    let v: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect();
    anyhow::ensure!(!v.is_empty(), "{path} is empty");
    Ok(v)
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> anyhow::Result<T> {
    s.parse().map_err(|_| anyhow::anyhow!("{what}: not a number: {s}"))
}

async fn search(a: &[String]) -> anyhow::Result<()> {
    let [url, bind_dn, password, base, uid_file, conc, warmup, secs] = a else {
        anyhow::bail!("usage: search URL BIND_DN PASSWORD BASE UID_FILE CONC WARMUP_SECS SECS");
    };
    let job = Arc::new(SearchJob {
        url: url.clone(),
        bind_dn: bind_dn.clone(),
        password: password.clone(),
        base: base.clone(),
        uids: lines(uid_file)?,
    });
    let conc: usize = num(conc, "CONC")?;
    let w = Window::new(num(warmup, "WARMUP_SECS")?, num(secs, "SECS")?);
    let workers = (0..conc).map(|i| tokio::spawn(search_worker(job.clone(), i as u64, w))).collect();
    report("search", conc, w, workers).await
}

async fn bind(a: &[String]) -> anyhow::Result<()> {
    let [url, cred_file, conc, warmup, secs] = a else {
        anyhow::bail!("usage: bind URL CRED_FILE CONC WARMUP_SECS SECS");
    };
    let conc: usize = num(conc, "CONC")?;
    let mut shares: Vec<Vec<(String, String)>> = vec![Vec::new(); conc];
    for (i, line) in lines(cred_file)?.into_iter().enumerate() {
        let (name, password) =
            line.split_once('\t').ok_or_else(|| anyhow::anyhow!("{cred_file}: no tab in line {}", i + 1))?;
        shares[i % conc].push((name.to_owned(), password.to_owned()));
    }
    anyhow::ensure!(shares.iter().all(|s| !s.is_empty()), "fewer credentials than connections");
    let w = Window::new(num(warmup, "WARMUP_SECS")?, num(secs, "SECS")?);
    let workers = shares
        .into_iter()
        .enumerate()
        .map(|(i, share)| tokio::spawn(bind_worker(url.clone(), share, i as u64, w)))
        .collect();
    report("bind", conc, w, workers).await
}

fn hash(a: &[String]) -> anyhow::Result<()> {
    let [threads, secs] = a else { anyhow::bail!("usage: hash THREADS SECS") };
    let threads: usize = num(threads, "THREADS")?;
    let secs: f64 = num(secs, "SECS")?;
    let password = "Bench-Passw0rd-1";
    let hashed = roster::secret::hash(password);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    std::thread::scope(|s| {
        for _ in 0..threads {
            let (hashed, done) = (&hashed, &done);
            s.spawn(move || {
                while Instant::now() < end {
                    assert!(roster::secret::verify(password, hashed), "the hash does not verify");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(Ordering::Relaxed);
    let params = hashed.split('$').nth(3).unwrap_or("").to_owned();
    println!(
        "{}",
        json!({
            "kind": "hash",
            "threads": threads,
            "ops": n,
            "secs": (secs * 1000.0).round() / 1000.0,
            "per_sec": (n as f64 / secs * 10.0).round() / 10.0,
            "ms_each": (secs * threads as f64 / n.max(1) as f64 * 1000.0 * 100.0).round() / 100.0,
            "params": params,
        })
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; the script passes a mode.
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let Some((mode, rest)) = args.split_first() else {
        eprintln!("usage: ldap search|bind|hash ... (see benches/ldap.rs; run through scripts/bench-ldap)");
        return Ok(());
    };
    if mode == "hash" {
        return hash(rest);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match mode.as_str() {
        "search" => runtime.block_on(search(rest)),
        "bind" => runtime.block_on(bind(rest)),
        _ => anyhow::bail!("unknown mode {mode}: search, bind or hash"),
    }
}
