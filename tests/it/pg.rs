//! A throwaway PostgreSQL cluster on loopback, started from Debian's server binaries.
//!
//! One cluster per test process, started on first use; each caller gets its own fresh database.
//! `initdb` and `postgres` refuse to run as root, so they run as the `postgres` user; the server
//! gets SIGINT (fast shutdown) when this process dies, so no cluster outlives the tests.
//! `scripts/test` installs the `postgresql` package when the binaries are missing.

#![allow(dead_code)]

#[allow(unused_imports)]
use roster::store::prelude::*;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub port: u16,
    pub dir: PathBuf,
    server: Child,
}

impl Cluster {
    /// `postgres://postgres@127.0.0.1:PORT/DB`.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }
}

/// The directory with `initdb` and `postgres`: `$ROSTER_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("ROSTER_PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server binaries: install Debian's postgresql package (scripts/test does)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("no /usr/lib/postgresql/*/bin/initdb: install the postgresql package")
}

fn postgres_ids() -> (nix::unistd::Uid, nix::unistd::Gid) {
    let user = nix::unistd::User::from_name("postgres")
        .expect("reading the user database")
        .expect("the postgres user (created by the postgresql package)");
    (user.uid, user.gid)
}

/// Runs `cmd` as the postgres user; with `tie`, it is sent SIGINT when this process dies.
fn as_postgres(cmd: &mut Command, tie: bool) -> &mut Command {
    let (uid, gid) = postgres_ids();
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::setgroups(&[]).map_err(std::io::Error::from)?;
            nix::unistd::setgid(gid).map_err(std::io::Error::from)?;
            nix::unistd::setuid(uid).map_err(std::io::Error::from)?;
            if tie {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGINT)
                    .map_err(std::io::Error::from)?;
            }
            Ok(())
        })
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts a new cluster in a fresh directory and waits until it accepts connections.
pub fn start(fsync: bool) -> Cluster {
    let bin = bin_dir();
    let dir = std::env::temp_dir().join(format!("roster-pg-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let (uid, gid) = postgres_ids();
    nix::unistd::chown(&dir, Some(uid), Some(gid)).unwrap();
    let data = dir.join("data");
    let out = as_postgres(&mut Command::new(bin.join("initdb")), false)
        .args(["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
        .stdout(Stdio::null())
        .output()
        .expect("run initdb");
    assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
    let port = free_port();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    nix::unistd::chown(&dir.join("server.log"), Some(uid), Some(gid)).unwrap();
    let mut cmd = Command::new(bin.join("postgres"));
    as_postgres(&mut cmd, true)
        .args(["-D", data.to_str().unwrap(), "-p", &port.to_string(), "-k", dir.to_str().unwrap()])
        .args(["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"])
        .stdout(Stdio::null())
        .stderr(log);
    if !fsync {
        cmd.args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
    }
    let server = cmd.spawn().expect("start postgres");
    let cluster = Cluster { port, dir, server };
    wait_for_port(port, Duration::from_secs(30));
    cluster
}

fn wait_for_port(port: u16, limit: Duration) {
    let start = Instant::now();
    loop {
        // Connecting is not enough (the server accepts before it is ready): ask it.
        let ok = Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-Atqc", "SELECT 1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return;
        }
        assert!(start.elapsed() < limit, "postgres did not start on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.server.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let _ = self.server.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The port of the cluster shared by this test process. It is started from a thread that
/// never ends, because the parent-death signal fires when the *thread* that spawned the server
/// exits, and test threads come and go.
pub fn shared_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let cluster = start(false);
            tx.send(cluster.port).unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv().expect("the PostgreSQL fixture thread died")
    })
}

/// A new empty database on the shared cluster; returns its URL.
pub fn fresh_database() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let port = shared_port();
    let name = format!("t_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
    psql(port, &format!("CREATE DATABASE {name}"));
    format!("postgres://postgres@127.0.0.1:{port}/{name}")
}

/// Runs one SQL statement through `psql` as the superuser.
pub fn psql(port: u16, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-d", "postgres", "-Atqc", sql])
        .output()
        .expect("run psql");
    assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}
