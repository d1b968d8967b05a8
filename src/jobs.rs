//! ONE scheduler: every scheduled job, each under a leader lease.
//!
//! A job is a name, a cron schedule and what to run: each LDAP source's `incremental` and
//! `full` syncs, delivery dispatch, the mailbox push and reconcile, and the purge of ended
//! sessions and old sign-in failures. [`spawn`] starts one loop a job on every node. A loop
//! renews (or tries to take) the job's lease in the shared database every third of
//! `jobs.lease_secs`, and runs the job at its scheduled times only while it holds the lease:
//! with several `rosterd` on one PostgreSQL each job runs on one node at a time, and when that
//! node dies its lease runs out and another node takes the job over within one lease period.
//! A node that stops cleanly gives its leases up at once.
//!
//! The lease is a row a job ([`LeaseStore`], table `job_leases`), taken or renewed in one
//! statement, so it works the same on SQLite (one node) and PostgreSQL (several).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::directory::store::Result;

/// The scheduler's leader leases (one row a job in the shared database).
#[async_trait]
pub trait LeaseStore: Send + Sync + 'static {
    /// Takes the lease on `job` for `holder` until `until`, or renews it when `holder` has it;
    /// `None` when another holder's lease is live at `now`. With the lease comes the last due time
    /// any holder ran the job for ([`Self::job_ran`]), so a new holder can catch up a run the old
    /// one missed.
    async fn job_lease(
        &self,
        job: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<Held>>;
    /// Records that `holder` ran `job` for its due time `due`.
    async fn job_ran(&self, job: &str, holder: &str, due: DateTime<Utc>) -> Result<()>;
    /// Gives the lease up (a node that stops cleanly hands its jobs over at once).
    async fn job_lease_release(&self, job: &str, holder: &str) -> Result<()>;
    /// `(job, holder, expires_at)` of every lease (the tests read them).
    async fn job_leases(&self) -> Result<Vec<(String, String, DateTime<Utc>)>>;
}

/// A lease just taken or renewed.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Held {
    /// The due time the job last ran for, on whichever node (`None`: never).
    pub last_due: Option<DateTime<Utc>>,
}

/// What a job does when it is due.
pub type Run = Arc<dyn Fn() -> Pending + Send + Sync>;

/// Why a run failed (for the log; the job runs again on schedule).
pub type Failure = Box<dyn std::error::Error + Send + Sync>;

/// A job's run in progress.
pub type Pending =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::result::Result<(), Failure>> + Send>>;

/// One scheduled job.
pub struct Job {
    /// Unique across the deployment: `sync:<source>:incremental`, `delivery:dispatch`, ...
    pub name: String,
    pub schedule: cron::Schedule,
    pub run: Run,
}

impl Job {
    pub fn new<F, Fut>(name: impl Into<String>, schedule: cron::Schedule, run: F) -> Job
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::result::Result<(), Failure>> + Send + 'static,
    {
        Job { name: name.into(), schedule, run: Arc::new(move || Box::pin(run())) }
    }
}

/// This node's name in the lease table: host, process, and a random part (two processes on
/// one host are two nodes).
pub fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}:{}", host.trim(), std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// Starts one loop a job; each ends at `shutdown`, giving its lease up.
pub fn spawn(
    tracker: &TaskTracker,
    leases: Arc<dyn LeaseStore>,
    lease: Duration,
    jobs: Vec<Job>,
    shutdown: CancellationToken,
) {
    let holder = holder();
    for job in jobs {
        tracing::info!(job = %job.name, "scheduled");
        tracker.spawn(run_job(leases.clone(), holder.clone(), lease, job, shutdown.clone()));
    }
}

async fn run_job(
    leases: Arc<dyn LeaseStore>,
    holder: String,
    lease: Duration,
    job: Job,
    shutdown: CancellationToken,
) {
    let beat = lease / 3;
    // Renewed every third of a period for two thirds of it: the row is always a third ahead of
    // a live leader, and at most two thirds ahead of a dead one.
    let lease = chrono::Duration::from_std(lease * 2 / 3).unwrap_or(chrono::Duration::seconds(20));
    let mut leader = false;
    metrics::gauge!("roster_job_leader", "job" => job.name.clone()).set(0.0);
    let mut next = job.schedule.upcoming(Utc).next();
    loop {
        let now = Utc::now();
        let held = match leases.job_lease(&job.name, &holder, now, now + lease).await {
            Ok(held) => held,
            Err(e) => {
                // Cannot tell: act as if not leader (another node may be).
                tracing::warn!(job = %job.name, error = %e, "job lease could not be renewed");
                None
            }
        };
        if held.is_some() != leader {
            leader = held.is_some();
            metrics::gauge!("roster_job_leader", "job" => job.name.clone()).set(f64::from(u8::from(leader)));
            if leader {
                tracing::info!(job = %job.name, %holder, "job lease taken: this node runs the job");
                // A due time that passed while nobody held the lease (the old leader died) is
                // run now, once, rather than skipped until the next one.
                let missed = held
                    .and_then(|h| h.last_due)
                    .and_then(|last| job.schedule.after(&last).next())
                    .filter(|due| *due <= now);
                if let Some(due) = missed {
                    tracing::info!(job = %job.name, %due, "running a due time the previous holder missed");
                    run_once(&leases, &holder, lease, beat, &job, due).await;
                }
            } else {
                tracing::info!(job = %job.name, "job lease lost: another node runs the job");
            }
        }
        let Some(due) = next else { break };
        if Utc::now() >= due {
            next = job.schedule.after(&Utc::now()).next();
            if leader {
                run_once(&leases, &holder, lease, beat, &job, due).await;
            }
            continue;
        }
        let wait = (due - Utc::now()).to_std().unwrap_or_default().min(beat);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }
    if leader && let Err(e) = leases.job_lease_release(&job.name, &holder).await {
        tracing::warn!(job = %job.name, error = %e, "job lease could not be given up; it runs out by itself");
    }
}

/// Runs the job for its due time `due`, renewing its lease while it runs (a run may take longer
/// than a lease). A run whose lease another node took (this node was cut off from the database
/// for longer than the lease) is stopped, so the job never runs on two nodes at once.
async fn run_once(
    leases: &Arc<dyn LeaseStore>,
    holder: &str,
    lease: chrono::Duration,
    beat: Duration,
    job: &Job,
    due: DateTime<Utc>,
) {
    let started = std::time::Instant::now();
    let run = (job.run)();
    let mut run = std::pin::pin!(run);
    let result = loop {
        tokio::select! {
            r = &mut run => break r,
            _ = tokio::time::sleep(beat) => {
                let now = Utc::now();
                match leases.job_lease(&job.name, holder, now, now + lease).await {
                    Ok(Some(_)) => {}
                    Ok(None) => break Err("the lease was taken by another node; the run was stopped".into()),
                    Err(e) => tracing::warn!(job = %job.name, error = %e, "job lease could not be renewed"),
                }
            }
        }
    };
    if let Err(e) = leases.job_ran(&job.name, holder, due).await {
        tracing::warn!(job = %job.name, error = %e, "could not record the run");
    }
    let secs = started.elapsed().as_secs_f64();
    metrics::histogram!("roster_job_duration_seconds", "job" => job.name.clone()).record(secs);
    match result {
        Ok(()) => {
            metrics::counter!("roster_job_runs_total", "job" => job.name.clone(), "result" => "ok")
                .increment(1);
            tracing::debug!(job = %job.name, secs, "job ran");
        }
        Err(e) => {
            metrics::counter!("roster_job_runs_total", "job" => job.name.clone(), "result" => "error")
                .increment(1);
            tracing::warn!(job = %job.name, error = %e, "job failed; it runs again on schedule");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// Leases in memory: one row a job, as the table keeps them.
    #[derive(Default)]
    struct Leases {
        rows: Mutex<std::collections::HashMap<String, (String, DateTime<Utc>, Option<DateTime<Utc>>)>>,
    }

    #[async_trait]
    impl LeaseStore for Leases {
        async fn job_lease(
            &self,
            job: &str,
            holder: &str,
            now: DateTime<Utc>,
            until: DateTime<Utc>,
        ) -> Result<Option<Held>> {
            let mut rows = self.rows.lock().unwrap();
            let row = rows.entry(job.to_owned()).or_insert((holder.to_owned(), until, None));
            if row.0 == holder || row.1 < now {
                row.0 = holder.to_owned();
                row.1 = until;
                return Ok(Some(Held { last_due: row.2 }));
            }
            Ok(None)
        }
        async fn job_ran(&self, job: &str, holder: &str, due: DateTime<Utc>) -> Result<()> {
            if let Some(row) = self.rows.lock().unwrap().get_mut(job).filter(|r| r.0 == holder) {
                row.2 = Some(due);
            }
            Ok(())
        }
        async fn job_lease_release(&self, job: &str, holder: &str) -> Result<()> {
            if let Some(row) = self.rows.lock().unwrap().get_mut(job).filter(|r| r.0 == holder) {
                row.1 = DateTime::<Utc>::UNIX_EPOCH;
            }
            Ok(())
        }
        async fn job_leases(&self) -> Result<Vec<(String, String, DateTime<Utc>)>> {
            Ok(self.rows.lock().unwrap().iter().map(|(j, r)| (j.clone(), r.0.clone(), r.1)).collect())
        }
    }

    fn counting(name: &str, schedule: &str, runs: Arc<AtomicUsize>) -> Job {
        Job::new(name, schedule.parse().unwrap(), move || {
            let runs = runs.clone();
            async move {
                runs.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        })
    }

    /// A yearly job whose last run was two years ago: its new holder runs the missed due time at
    /// once, once; a job with no run recorded waits for its next due time.
    #[tokio::test]
    async fn a_new_holder_runs_a_missed_due_time_once() {
        let leases = Arc::new(Leases::default());
        let long_ago = Utc::now() - chrono::Duration::days(730);
        leases
            .rows
            .lock()
            .unwrap()
            .insert("yearly".into(), ("a dead node".into(), DateTime::<Utc>::UNIX_EPOCH, Some(long_ago)));
        let (missed, fresh) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let jobs = vec![
            counting("yearly", "0 0 0 1 1 *", missed.clone()),
            counting("fresh", "0 0 0 1 1 *", fresh.clone()),
        ];
        let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
        spawn(&tracker, leases.clone(), Duration::from_millis(300), jobs, stop.clone());
        tokio::time::sleep(Duration::from_millis(600)).await;
        stop.cancel();
        tracker.close();
        tracker.wait().await;
        assert_eq!(missed.load(Ordering::SeqCst), 1, "the missed due time runs once");
        assert_eq!(fresh.load(Ordering::SeqCst), 0, "nothing was missed: wait for the next due time");
        let rows = leases.rows.lock().unwrap();
        assert!(rows["yearly"].2.unwrap() > long_ago, "the run is recorded");
        assert_eq!(rows["yearly"].1, DateTime::<Utc>::UNIX_EPOCH, "given up at shutdown");
    }

    /// Two nodes: only the holder runs a job due every second; the other runs it once the holder
    /// has stopped (its lease given up).
    #[tokio::test]
    async fn only_the_holder_runs_and_the_job_moves_when_it_stops() {
        let leases = Arc::new(Leases::default());
        let (a_runs, b_runs) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (a, b) =
            ((TaskTracker::new(), CancellationToken::new()), (TaskTracker::new(), CancellationToken::new()));
        let lease = Duration::from_millis(600);
        spawn(
            &a.0,
            leases.clone(),
            lease,
            vec![counting("tick", "* * * * * *", a_runs.clone())],
            a.1.clone(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        spawn(
            &b.0,
            leases.clone(),
            lease,
            vec![counting("tick", "* * * * * *", b_runs.clone())],
            b.1.clone(),
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(a_runs.load(Ordering::SeqCst) >= 2, "the holder runs the job");
        assert_eq!(b_runs.load(Ordering::SeqCst), 0, "the other node does not");
        a.1.cancel();
        a.0.close();
        a.0.wait().await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(b_runs.load(Ordering::SeqCst) >= 1, "the job moved to the other node");
        b.1.cancel();
    }
}
