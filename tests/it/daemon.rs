//! The real `rosterd` binary over real HTTP: start-up, health, metrics, limits, shutdown.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;

/// A `rosterd` command with a clean environment: no inherited `ROSTER_*`, working directory
/// `cwd` (so `./data` and `config/rosterd.toml` are the test's own).
pub fn rosterd(cwd: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rosterd"));
    for (k, _) in std::env::vars() {
        if k.starts_with("ROSTER_") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(cwd).env("ROSTER_LOG__LEVEL", "info").stdin(Stdio::null());
    cmd
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run rosterd")
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A running `rosterd serve`, killed on drop. Its stderr goes to `log`.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(cwd: &Path, envs: &[(&str, String)]) -> Daemon {
        Daemon::start_on(cwd, free_port(), envs)
    }

    /// On a given port (a node restarted where its clients know it).
    pub fn start_on(cwd: &Path, port: u16, envs: &[(&str, String)]) -> Daemon {
        let log = cwd.join(format!("rosterd-{port}.log"));
        let child = rosterd(cwd)
            .arg("serve")
            .env("ROSTER_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start rosterd");
        Daemon { child, port, log }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `path` answers `status`.
    pub async fn wait_for(&self, path: &str, status: u16, limit: Duration) {
        let client = crate::common::http();
        let start = Instant::now();
        loop {
            if let Ok(r) = client.get(self.url(path)).send().await {
                if r.status().as_u16() == status {
                    return;
                }
            }
            assert!(
                start.elapsed() < limit,
                "{path} did not answer {status} within {limit:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Waits for the process to exit; returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(start.elapsed() < limit, "rosterd did not exit within {limit:?}; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn first_start_on_default_sqlite_then_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(dir.path(), &[]);
    d.wait_for("/readyz", 200, Duration::from_secs(30)).await;
    assert!(dir.path().join("data/roster.db").exists(), "the default store is ./data/roster.db");
    let log = d.log();
    assert_eq!(log.matches("one-time super-admin password").count(), 1, "{log}");

    let client = crate::common::http();
    let r = client.get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-request-id").is_some(), "every response carries a request id");
    let r = client.get(d.url("/readyz")).header("x-request-id", "trace-me-42").send().await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-me-42", "a client's request id is kept");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["store"], "sqlite");

    let metrics = client.get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for name in [
        "roster_members 0",
        "roster_org_units 0",
        "roster_groups 0",
        "roster_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"}",
        "roster_http_request_duration_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "missing {name} in:\n{metrics}");
    }
    let missing = client.get(d.url("/nope")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.json::<serde_json::Value>().await.unwrap()["error"], "not_found");

    d.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(d.wait_exit(Duration::from_secs(15)), Some(0), "SIGTERM exits 0");

    // The second start finds the enterprise: no new password.
    let d2 = Daemon::start(dir.path(), &[]);
    d2.wait_for("/readyz", 200, Duration::from_secs(30)).await;
    assert!(!d2.log().contains("one-time super-admin password"), "{}", d2.log());
    let ok = run(rosterd(dir.path()).args(["healthcheck", "--url", &format!("127.0.0.1:{}", d2.port)]));
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(text(&ok.stdout).contains("ready"));
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[("ROSTER_HTTP__MAX_BODY_BYTES", "1000".into())]);
    d.wait_for("/healthz", 200, Duration::from_secs(30)).await;
    let client = crate::common::http();
    let r = client.post(d.url("/healthz")).body(vec![b'x'; 5000]).send().await.unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.headers().get("x-request-id").is_some());
    let r = client.get(d.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "the daemon serves on after refusing a body");
}

#[tokio::test]
async fn slow_requests_time_out_with_408() {
    let mut cfg = roster::config::HttpConfig::default();
    cfg.request_timeout_secs = 1;
    let slow = Router::new().route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        }),
    );
    let app = roster::http::with_layers(slow, &cfg, &[]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let start = Instant::now();
    let r = crate::common::http().get(format!("http://{addr}/slow")).send().await.unwrap();
    assert_eq!(r.status(), 408);
    assert!(start.elapsed() < Duration::from_secs(4));
}

/// Forwards TCP connections from `listen` to `upstream` once started: the database "comes up".
async fn forward(listener: tokio::net::TcpListener, upstream: u16) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
            }
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_database_at_start_is_retried_until_it_comes() {
    let url = crate::pg::fresh_database();
    let pg_port = crate::pg::shared_port();
    let gate = free_port();
    // Trust auth ignores the password; it is here to show it never reaches the log.
    let gated = url
        .replace(&format!(":{pg_port}/"), &format!(":{gate}/"))
        .replace("postgres@", "postgres:hunter2secret@");
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        dir.path(),
        &[("ROSTER_DATABASE__URL", gated.clone()), ("ROSTER_DATABASE__CONNECT_TIMEOUT_SECS", "1".into())],
    );
    d.wait_for("/healthz", 200, Duration::from_secs(30)).await;
    let r = crate::common::http().get(d.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["status"], "unavailable");
    let not_ready = run(rosterd(dir.path()).args(["healthcheck", "--url", &format!("127.0.0.1:{}", d.port)]));
    assert_eq!(not_ready.status.code(), Some(1));
    assert!(text(&not_ready.stderr).contains("503"), "{}", text(&not_ready.stderr));

    // Let at least one connection attempt (1 s timeout) fail for good.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(crate::common::http().get(d.url("/readyz")).send().await.unwrap().status(), 503);
    // The database "comes up": the daemon connects, migrates and becomes ready by itself.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", gate)).await.unwrap();
    tokio::spawn(forward(listener, pg_port));
    d.wait_for("/readyz", 200, Duration::from_secs(45)).await;
    let body: serde_json::Value =
        crate::common::http().get(d.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["store"], "postgres");
    let log = d.log();
    assert!(log.contains("database unavailable; retrying"), "{log}");
    assert!(!log.contains("hunter2secret"), "no password in the log: {log}");
}

/// A token revoked by `rosterd token revoke` (another process) stops working within the
/// verified-token cache's lifetime (5 s), and at once for tokens never seen.
#[tokio::test]
async fn a_token_revoked_from_the_command_line_stops_working() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(dir.path(), &[]);
    d.wait_for("/readyz", 200, Duration::from_secs(30)).await;
    let created = run(rosterd(dir.path()).args(["token", "create", "--name", "okta"]));
    assert!(created.status.success(), "{}", text(&created.stderr));
    let token = text(&created.stdout).lines().last().unwrap().trim().to_owned();
    let client = crate::common::http();
    let users = || client.get(d.url("/scim/v2/Users?count=1")).bearer_auth(&token).send();
    assert_eq!(users().await.unwrap().status(), 200);
    let revoked = run(rosterd(dir.path()).args(["token", "revoke", "okta"]));
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    let start = Instant::now();
    loop {
        let status = users().await.unwrap().status();
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            start.elapsed() < Duration::from_secs(8),
            "still accepted {:?} after revocation",
            start.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let other = client.get(d.url("/scim/v2/Users")).bearer_auth("rst_00").send().await.unwrap();
    assert_eq!(other.status(), 401);
}

/// The dispatchers run in the daemon and report to `/metrics`: a welcome SMS queued by a
/// member created through the command line shows as held (no balance) in the counts.
#[tokio::test]
async fn delivery_runs_in_the_daemon_and_reports_to_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(
        dir.path(),
        &[
            ("ROSTER_DELIVERY__SCHEDULE", "* * * * * *".into()),
            ("ROSTER_DELIVERY__SMS__PROVIDER", "http".into()),
            ("ROSTER_DELIVERY__SMS__HTTP__URL", "http://127.0.0.1:9/send".into()),
        ],
    );
    d.wait_for("/readyz", 200, Duration::from_secs(30)).await;
    let changes = dir.path().join("changes.jsonl");
    std::fs::write(
        &changes,
        r#"{"op":"create_member","login_name":"ann","display_name":"Ann","mobile":"+8613800000601"}"#,
    )
    .unwrap();
    let imported = run(rosterd(dir.path()).arg("import").arg(&changes));
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let client = crate::common::http();
    let start = Instant::now();
    loop {
        let metrics = client.get(d.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if metrics.contains(r#"roster_deliveries{channel="sms",state="held"} 1"#) {
            assert!(metrics.contains("roster_sms_balance 0"), "{metrics}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(15), "no delivery counts in:\n{metrics}\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
