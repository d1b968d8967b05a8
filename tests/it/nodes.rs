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
    eprintln!("jobs moved {moved_after:?} after the leader was killed (lease {LEASE_SECS} s)");
}
