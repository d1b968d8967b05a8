//! Crash figures: `rosterd serve` killed with SIGKILL 50 times at random moments (during start-up,
//! migrations, and under SCIM write load), on SQLite and on PostgreSQL. After each restart every
//! write a client saw acknowledged is there; no change set is half applied (each member has its
//! audit row and its outbox event); no account number is given twice, and the numbers stay
//! consecutive. Prints a `FIGURE crash ...` line that `scripts/faults` collects.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;

use crate::common::Backend;
use crate::daemon::{Daemon, free_port};

/// Kills per backend (`ROSTER_CRASH_KILLS` to change it).
fn kills() -> usize {
    std::env::var("ROSTER_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(50)
}

const CLIENTS: usize = 4;

/// What the store holds after the last restart: members, their `member.create` audit rows and
/// `member.created` outbox events, and the account numbers.
struct Found {
    ids: std::collections::HashSet<String>,
    audit: i64,
    outbox: i64,
    numbers: Vec<i64>,
}

async fn found(url: &str) -> Found {
    use sqlx::Row;
    let sql_ids = "SELECT id, account_number FROM members";
    let (ids, numbers, audit, outbox) = if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        let rows = sqlx::query(sql_ids).fetch_all(&pool).await.unwrap();
        let ids = rows
            .iter()
            .map(|r| uuid::Uuid::from_slice(&r.get::<Vec<u8>, _>(0)).unwrap().to_string())
            .collect();
        let numbers = rows.iter().map(|r| r.get::<i64, _>(1)).collect();
        let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'member.create'")
            .fetch_one(&pool)
            .await
            .unwrap();
        let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE kind = 'member.created'")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        (ids, numbers, audit, outbox)
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        let rows = sqlx::query(sql_ids).fetch_all(&pool).await.unwrap();
        let ids = rows.iter().map(|r| r.get::<uuid::Uuid, _>(0).to_string()).collect();
        let numbers = rows.iter().map(|r| r.get::<i64, _>(1)).collect();
        let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE action = 'member.create'")
            .fetch_one(&pool)
            .await
            .unwrap();
        let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE kind = 'member.created'")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        (ids, numbers, audit, outbox)
    };
    Found { ids, audit, outbox, numbers }
}

async fn killed_under_scim_load(backend: Backend) {
    let kills = kills();
    let dir = tempfile::tempdir().unwrap();
    let db = crate::common::TestDb::new(backend);
    let url = db.cfg.database.url.clone();
    let mut cfg = db.cfg.clone();
    cfg.numbers.first = 100_000;
    cfg.numbers.last = 999_999;
    let token = {
        let services = roster::app::open(&cfg).await.unwrap();
        let t = services.access.create_token(&crate::common::console(), "okta", false).await.unwrap();
        services.store.close().await;
        t
    };
    let envs = [
        ("ROSTER_DATABASE__URL", url.clone()),
        ("ROSTER_NUMBERS__FIRST", "100000".to_owned()),
        ("ROSTER_NUMBERS__LAST", "999999".to_owned()),
        ("ROSTER_ENTERPRISE__MAIL_DOMAIN", "example.com".to_owned()),
        ("ROSTER_ENTERPRISE__NAME", "Example Corp".to_owned()),
    ];
    let port = free_port();
    let users = format!("http://127.0.0.1:{port}/scim/v2/Users");

    // Clients write all the time; a create counts as acknowledged when its 201 arrived.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let (stop, tried, refused) =
        (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let http = crate::common::http();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, token, users, acked, stop, tried, refused) = (
            http.clone(),
            token.clone(),
            users.clone(),
            acked.clone(),
            stop.clone(),
            tried.clone(),
            refused.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                tried.fetch_add(1, Ordering::Relaxed);
                let body = serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": format!("c{c}-{i}@example.com"),
                    "displayName": format!("Crash {c} {i}"),
                });
                match http.post(&users).bearer_auth(&token).json(&body).send().await {
                    Ok(r) if r.status().as_u16() == 201 => {
                        if let Ok(v) = r.json::<serde_json::Value>().await {
                            acked.lock().unwrap().push(v["id"].as_str().unwrap_or_default().to_owned());
                        }
                    }
                    Ok(r) => {
                        // Only an unavailable store (mid start-up) may refuse a valid create.
                        assert!(r.status().as_u16() == 503, "create refused with {}", r.status());
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }));
    }

    let started = Instant::now();
    let mut in_startup = 0;
    for _ in 0..kills {
        let mut d = Daemon::start_on(dir.path(), port, &envs);
        // A random moment: half the kills within start-up (opening, migrating, binding), the
        // rest under load, up to 400 ms after the node is ready.
        let early = rand::rng().random_bool(0.5);
        if early {
            tokio::time::sleep(Duration::from_millis(rand::rng().random_range(0..300))).await;
            in_startup += 1;
        } else {
            d.wait_for("/readyz", 200, Duration::from_secs(60)).await;
            tokio::time::sleep(Duration::from_millis(rand::rng().random_range(0..400))).await;
        }
        d.child.kill().unwrap();
        d.child.wait().unwrap();
    }
    // The last start: it must come up on whatever the kills left.
    let d = Daemon::start_on(dir.path(), port, &envs);
    d.wait_for("/readyz", 200, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    drop(d);
    let took = started.elapsed();

    let acked = acked.lock().unwrap().clone();
    let f = found(&url).await;
    let missing = acked.iter().filter(|id| !f.ids.contains(*id)).count();
    let mut numbers = f.numbers.clone();
    numbers.sort();
    let before = numbers.len();
    numbers.dedup();
    let duplicates = before - numbers.len();
    let members = f.ids.len() as i64;
    let half = (members - f.audit).abs() + (members - f.outbox).abs();
    let gaps = numbers.windows(2).filter(|w| w[1] != w[0] + 1).count();
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    eprintln!(
        "FIGURE crash {name} kills={kills} in_startup={in_startup} tried={} acknowledged={} found={} lost={missing} \
         duplicates={duplicates} half_applied={half} number_gaps={gaps} seconds={:.0}",
        tried.load(Ordering::Relaxed),
        acked.len(),
        members,
        took.as_secs_f64()
    );
    assert!(acked.len() > kills, "too little load to mean anything: {} acknowledged", acked.len());
    assert_eq!(missing, 0, "acknowledged creates lost after SIGKILL");
    assert_eq!(duplicates, 0, "a number was given twice");
    assert_eq!((f.audit, f.outbox), (members, members), "a change set was half applied");
    assert_eq!(gaps, 0, "the numbers are not consecutive");
    if let Some(first) = numbers.first() {
        assert_eq!(*first, 100_000);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_50_times_under_scim_load_sqlite() {
    killed_under_scim_load(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_50_times_under_scim_load_postgres() {
    killed_under_scim_load(Backend::Postgres).await;
}
