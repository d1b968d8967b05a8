//! Several `rosterd` nodes on one PostgreSQL: each scheduled job runs on one node at a time (its
//! leader lease), and when the leader is killed with SIGKILL another node takes its jobs over
//! within one lease period.

use std::time::{Duration, Instant};

use crate::daemon::Daemon;

const LEASE_SECS: u64 = 3;

/// The jobs' holders as the lease table has them: `(job, holder)`.
async fn holders(url: &str) -> Vec<(String, String)> {
    let mut cfg = roster::config::Config::default();
    cfg.database.url = url.to_owned();
    let store = roster::store::open(&cfg.database).await.unwrap();
    let leases = store.job_leases().await.unwrap();
    store.close().await;
    leases.into_iter().map(|(job, holder, _)| (job, holder)).collect()
}

/// Lines of a node's log saying it ran `job`.
fn runs(d: &Daemon, job: &str) -> usize {
    d.log().lines().filter(|l| l.contains("job ran") && l.contains(&format!("job={job}"))).count()
}

fn pid_of(holder: &str) -> u32 {
    holder.split(':').nth(1).and_then(|p| p.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_job_runs_on_one_node_and_moves_when_it_dies() {
    let url = crate::pg::fresh_database();
    let envs = [
        ("ROSTER_DATABASE__URL", url.clone()),
        ("ROSTER_JOBS__LEASE_SECS", LEASE_SECS.to_string()),
        ("ROSTER_LOG__LEVEL", "info,roster::jobs=debug".to_owned()),
        ("ROSTER_DELIVERY__SCHEDULE", "* * * * * *".to_owned()),
    ];
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Daemon::start(dir_a.path(), &envs);
    a.wait_for("/readyz", 200, Duration::from_secs(60)).await;
    let b = Daemon::start(dir_b.path(), &envs);
    b.wait_for("/readyz", 200, Duration::from_secs(60)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Every job has one holder, the node that came first; only it runs the jobs.
    let leases = holders(&url).await;
    let jobs: Vec<&str> = leases.iter().map(|(j, _)| j.as_str()).collect();
    assert!(jobs.contains(&"delivery:dispatch") && jobs.contains(&"access:purge"), "{leases:?}");
    for (job, holder) in &leases {
        assert_eq!(pid_of(holder), a.child.id(), "{job} is held by {holder}, not by the first node");
    }
    assert!(runs(&a, "delivery:dispatch") >= 2, "the leader ran no dispatch:\n{}", a.log());
    let twice: usize = leases.iter().map(|(job, _)| runs(&b, job)).sum();
    eprintln!("FIGURE nodes jobs nodes=2 jobs={} run_by_a_non_holder={twice}", leases.len());
    assert_eq!(runs(&b, "delivery:dispatch"), 0, "the second node ran a job it does not hold:\n{}", b.log());

    // SIGKILL: no clean shutdown, so the leases are left to run out.
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed = Instant::now();
    loop {
        let leases = holders(&url).await;
        let moved = leases.iter().filter(|(_, h)| pid_of(h) == b.child.id()).count();
        if moved == leases.len() && !leases.is_empty() {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(LEASE_SECS) + Duration::from_millis(1500),
            "after {:?} the jobs are still held elsewhere: {leases:?}",
            killed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let moved_after = killed.elapsed();
    // And the new leader runs them.
    let start = Instant::now();
    while runs(&b, "delivery:dispatch") == 0 {
        assert!(start.elapsed() < Duration::from_secs(5), "the new leader did not run the job:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("FIGURE nodes lease_moved ms={} lease_ms={}", moved_after.as_millis(), LEASE_SECS * 1000);
}

/// Two nodes' configuration: one PostgreSQL database, numbers wide enough for the load, written
/// to `dir/rosterd.toml` (`ROSTER_CONFIG`).
fn two_node_config(
    dir: &std::path::Path,
    tune: impl FnOnce(&mut roster::config::Config),
) -> roster::config::Config {
    let mut cfg = roster::config::Config::default();
    cfg.database.url = crate::pg::fresh_database();
    cfg.numbers.first = 100_000;
    cfg.numbers.last = 999_999;
    cfg.enterprise.mail_domain = "example.com".into();
    cfg.enterprise.name = "Example Corp".into();
    cfg.jobs.lease_secs = LEASE_SECS;
    tune(&mut cfg);
    std::fs::write(dir.join("rosterd.toml"), toml::to_string(&cfg).unwrap()).unwrap();
    cfg
}

fn node(dir: &std::path::Path) -> Daemon {
    let config = dir.join("rosterd.toml").display().to_string();
    let node_dir = tempfile::tempdir().unwrap().keep();
    Daemon::start(
        &node_dir,
        &[("ROSTER_CONFIG", config), ("ROSTER_LOG__LEVEL", "info,roster::jobs=debug".into())],
    )
}

/// 10,000 SCIM creates sent to two nodes at once: every member gets a number, none twice, the
/// numbers consecutive in commit order (the order of their audit rows); and a console session
/// opened on one node works on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_creates_on_two_nodes_get_consecutive_numbers_and_sessions_move() {
    const USERS: usize = 10_000;
    const CLIENTS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let cfg = two_node_config(dir.path(), |_| {});
    let (a, b) = (node(dir.path()), node(dir.path()));
    a.wait_for("/readyz", 200, Duration::from_secs(60)).await;
    b.wait_for("/readyz", 200, Duration::from_secs(60)).await;
    let services = roster::app::open(&cfg).await.unwrap();
    let actor = crate::common::console();
    services
        .directory
        .set_super_password(&actor, &cfg.enterprise.seed(), crate::admin::SUPER_PW, None)
        .await
        .unwrap();
    let token = services.access.create_token(&actor, "okta", false).await.unwrap();
    let enterprise_id = services.directory.store().enterprise().await.unwrap().unwrap().enterprise_id;

    let http = crate::common::http();
    let bases = [a.url("/scim/v2/Users"), b.url("/scim/v2/Users")];
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, token, next, url) = (http.clone(), token.clone(), next.clone(), bases[c % 2].clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= USERS {
                    return acked;
                }
                let body = serde_json::json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": format!("n{i}@example.com"),
                    "displayName": format!("Node test {i}"),
                    "active": true,
                });
                let r = http.post(&url).bearer_auth(&token).json(&body).send().await.unwrap();
                let status = r.status().as_u16();
                let v: serde_json::Value = r.json().await.unwrap_or_default();
                assert_eq!(status, 201, "create {i}: {v}");
                acked.push(v["id"].as_str().unwrap().to_owned());
            }
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let took = started.elapsed();
    eprintln!(
        "{USERS} SCIM creates over two nodes, {CLIENTS} clients: {took:?} ({:.0}/s)",
        USERS as f64 / took.as_secs_f64()
    );
    assert_eq!(acked.len(), USERS);

    let pool = sqlx::PgPool::connect(&cfg.database.url).await.unwrap();
    // In commit order: the number counter is locked until commit, so audit rows (their ids taken
    // after the lock) follow commits.
    let numbers: Vec<(String, i64)> = sqlx::query_as(
        "SELECT m.id::text, m.account_number FROM audit_log a JOIN members m ON m.id::text = a.object_id \
         WHERE a.action = 'member.create' ORDER BY a.id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(numbers.len(), USERS, "every acknowledged create is there, once");
    let ids: std::collections::BTreeSet<&str> = numbers.iter().map(|(id, _)| id.as_str()).collect();
    assert!(acked.iter().all(|id| ids.contains(id.as_str())), "an acknowledged member is missing");
    let mut sorted: Vec<i64> = numbers.iter().map(|(_, n)| *n).collect();
    sorted.sort();
    sorted.dedup();
    let out_of_order = numbers.windows(2).filter(|w| w[1].1 != w[0].1 + 1).count();
    eprintln!(
        "FIGURE nodes scim nodes=2 clients={CLIENTS} acknowledged={} found={} duplicates={} out_of_order={out_of_order} per_second={:.0}",
        acked.len(),
        numbers.len(),
        numbers.len() - sorted.len(),
        USERS as f64 / took.as_secs_f64()
    );
    for w in numbers.windows(2) {
        assert_eq!(w[1].1, w[0].1 + 1, "numbers are consecutive in commit order: {:?} then {:?}", w[0], w[1]);
    }
    assert_eq!(numbers[0].1, 100_000);

    // A console session opened on A works on B, and signing out on B ends it on A.
    let mut on_a = crate::admin::Session::at(&a.url(""));
    let p = on_a.sign_in(&enterprise_id, crate::admin::SUPER_PW).await;
    assert_eq!(p.status.as_u16(), 303, "{}", p.body);
    let mut on_b = on_a.moved_to(&b.url(""));
    let p = on_b.get("/admin/members").await;
    assert_eq!(p.status.as_u16(), 200, "the session from node A is refused on node B: {:?}", p.location);
    assert!(p.has("n0@example.com") || p.has("Node test"), "{}", &p.body[..p.body.len().min(500)]);
    let p = on_b.post("/admin/logout", &[]).await;
    assert_eq!(p.status.as_u16(), 303, "{}", p.body);
    let p = on_a.get("/admin/members").await;
    assert_eq!(p.status.as_u16(), 303, "signed out on B, still signed in on A");
    services.store.close().await;
}

/// The leader killed (SIGKILL) while it dispatches SMS through a slow gateway: the other node
/// takes the job over within one lease period and sends the rest; every message reaches the
/// gateway, each charged once, and a repeat (the kill between the gateway's answer and the
/// record) carries the same idempotency key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_mid_dispatch_another_node_finishes_it() {
    use crate::delivery::{Gateway, delivery_config, new_hire};
    const HIRES: usize = 40;
    let gw = Gateway::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = two_node_config(dir.path(), |cfg| {
        cfg.delivery = delivery_config(crate::daemon::free_port(), &gw);
        cfg.delivery.smtp = None;
        cfg.delivery.lease_secs = 2;
        cfg.delivery.batch = 5;
        cfg.delivery.schedule = "* * * * * *".into();
    });
    let services = roster::app::open(&cfg).await.unwrap();
    let actor = crate::common::console();
    roster::delivery::desk::top_up(services.delivery.as_ref(), &actor, 1000, None).await.unwrap();
    *gw.delay.lock().unwrap() = Some(Duration::from_millis(200));
    let mut a = node(dir.path());
    a.wait_for("/readyz", 200, Duration::from_secs(60)).await;
    let b = node(dir.path());
    b.wait_for("/readyz", 200, Duration::from_secs(60)).await;
    let hires: Vec<_> =
        (0..HIRES).map(|i| new_hire(&format!("h{i}"), &format!("+8613900002{i:03}"))).collect();
    services.directory.apply(&actor, hires).await.unwrap();

    // A leads (it came first); kill it once some messages are through.
    let start = Instant::now();
    while gw.texts().len() < 5 {
        assert!(start.elapsed() < Duration::from_secs(20), "nothing was sent:\n{}", a.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(runs(&b, "delivery:dispatch"), 0, "B ran the job while A held it:\n{}", b.log());
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let at_kill = gw.texts().len();
    assert!(at_kill < HIRES, "the kill came after the end");
    *gw.delay.lock().unwrap() = None;
    let killed = Instant::now();
    let keys = loop {
        let got = gw.received.lock().unwrap().clone();
        let keys: Vec<String> = got.iter().map(|v| v["key"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
        let distinct: std::collections::BTreeSet<&String> = keys.iter().collect();
        if distinct.len() == HIRES {
            break keys;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(LEASE_SECS + 10),
            "{} of {HIRES} sent {:?} after the kill:\n{}",
            distinct.len(),
            killed.elapsed(),
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let finished = killed.elapsed();
    let repeats = keys.len() - HIRES;
    eprintln!(
        "FIGURE nodes leader_killed_mid_dispatch messages={HIRES} sent_before_kill={at_kill} delivered={} repeats_same_key={repeats} finished_ms={}",
        keys.iter().collect::<std::collections::BTreeSet<_>>().len(),
        finished.as_millis()
    );
    assert!(repeats <= 5, "repeats only of the batch in flight: {repeats}");
    assert!(runs(&b, "delivery:dispatch") > 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let sent = services.delivery.deliveries_list(Some("sent"), 1000).await.unwrap();
    assert_eq!(sent.len(), HIRES, "each message recorded sent once");
    assert_eq!(services.delivery.sms_balance().await.unwrap(), 1000 - HIRES as i64, "each charged once");
    services.store.close().await;
}
