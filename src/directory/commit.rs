//! Group commit at the one write path. Every create takes the next account number, and numbers
//! are consecutive in commit order, so each change set waits for the one before it to commit:
//! one transaction each, the rate is that of commits. Here callers queue their sets; one writer
//! (a task, started by the first caller that finds none running) takes what has queued, writes
//! it in one transaction, each set between savepoints, and commits once. A set that fails is
//! rolled back to its savepoint and its caller told at once; the others commit. While a batch is
//! written the next one queues, so a lone caller waits for no one and a crowd shares commits.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt;
use tokio::sync::oneshot;

use super::super::store::{StoreError, WriteKey};
use super::DirectoryService;
use crate::directory::change::{Applied, Change, ChangeError, DirectoryError};
use crate::directory::model::Actor;

/// At most this many sets, and about this many changes, a transaction: a sync's batches (1,000
/// changes) go with few others, a crowd of single creates in a few hundred.
const MAX_SETS: usize = 256;
const MAX_CHANGES: usize = 4096;

/// One caller's change set, its passwords already hashed (outside any transaction).
pub(super) struct Set {
    pub actor: Actor,
    pub changes: Vec<Change>,
    pub hashes: HashMap<usize, String>,
}

type Reply = oneshot::Sender<Result<Vec<Applied>, ChangeError>>;

struct Waiting {
    set: Set,
    reply: Reply,
}

pub(super) struct Queue {
    grouped: bool,
    state: Mutex<State>,
    /// Transactions written and change sets in them, since start.
    batches: AtomicU64,
    sets: AtomicU64,
}

#[derive(Default)]
struct State {
    waiting: VecDeque<Waiting>,
    /// A writer task is running (it takes whatever queues until the queue is empty).
    writing: bool,
}

impl Queue {
    pub fn new(grouped: bool) -> Queue {
        Queue { grouped, state: Mutex::default(), batches: AtomicU64::new(0), sets: AtomicU64::new(0) }
    }

    /// `(transactions, change sets)` the writer wrote since start.
    pub fn stats(&self) -> (u64, u64) {
        (self.batches.load(Ordering::Relaxed), self.sets.load(Ordering::Relaxed))
    }

    pub fn grouped(&self) -> bool {
        self.grouped
    }

    /// The next batch, or `None` (and no writer any more) when nothing waits.
    fn take(&self) -> Option<Vec<Waiting>> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.waiting.is_empty() {
            s.writing = false;
            return None;
        }
        let mut batch = Vec::new();
        let mut changes = 0;
        while let Some(w) = s.waiting.front() {
            let n = w.set.changes.len().max(1);
            if !batch.is_empty() && (batch.len() == MAX_SETS || changes + n > MAX_CHANGES) {
                break;
            }
            changes += n;
            batch.extend(s.waiting.pop_front());
        }
        Some(batch)
    }
}

/// Whether a set is nothing but creates of members that take the next numbers.
fn plain_creates(set: &Set) -> bool {
    !set.changes.is_empty()
        && set.changes.iter().all(|c| matches!(c, Change::CreateMember(n) if n.account_number.is_none()))
}

/// The batch in order, consecutive sets of plain creates by the same actor grouped together.
fn runs_of_creates(batch: Vec<Waiting>) -> Vec<Vec<Waiting>> {
    let mut runs: Vec<Vec<Waiting>> = Vec::new();
    for w in batch {
        let joins = runs.last().and_then(|r| r.last()).is_some_and(|last| {
            plain_creates(&last.set) && plain_creates(&w.set) && last.set.actor == w.set.actor
        });
        match runs.last_mut() {
            Some(run) if joins => run.push(w),
            _ => runs.push(vec![w]),
        }
    }
    runs
}

/// A run's sets as one (password hashes re-keyed by their index in it).
fn merge(run: &[Waiting]) -> Set {
    let mut changes = Vec::new();
    let mut hashes = HashMap::new();
    for w in run {
        let offset = changes.len();
        hashes.extend(w.set.hashes.iter().map(|(i, h)| (i + offset, h.clone())));
        changes.extend(w.set.changes.iter().cloned());
    }
    Set { actor: run[0].set.actor.clone(), changes, hashes }
}

fn stopped() -> ChangeError {
    ChangeError {
        index: 0,
        error: DirectoryError::Store(StoreError::Other("the directory's writer stopped".into())),
    }
}

/// Queues `set` and waits for its result.
pub(super) async fn submit(dir: &DirectoryService, set: Set) -> Result<Vec<Applied>, ChangeError> {
    let (reply, result) = oneshot::channel();
    let start = {
        let mut s = dir.commits.state.lock().unwrap_or_else(|e| e.into_inner());
        s.waiting.push_back(Waiting { set, reply });
        !std::mem::replace(&mut s.writing, true)
    };
    if start {
        // A task of its own: a caller that gives up (a dropped request) never stops the writer
        // the others wait on.
        let dir = dir.clone();
        tokio::spawn(async move { write(dir).await });
    }
    result.await.unwrap_or_else(|_| Err(stopped()))
}

async fn write(dir: DirectoryService) {
    while let Some(batch) = dir.commits.take() {
        // A panic drops this batch's replies (those callers get an error); the writer goes on.
        if AssertUnwindSafe(write_batch(&dir, batch)).catch_unwind().await.is_err() {
            tracing::error!("a change-set batch panicked; its callers got an error");
        }
    }
}

async fn write_batch(dir: &DirectoryService, mut batch: Vec<Waiting>) {
    dir.commits.batches.fetch_add(1, Ordering::Relaxed);
    dir.commits.sets.fetch_add(batch.len() as u64, Ordering::Relaxed);
    metrics::histogram!("roster_directory_commit_sets").record(batch.len() as f64);
    if batch.len() == 1 {
        let w = batch.remove(0);
        let _ = w.reply.send(dir.apply_alone(w.set).await);
        return;
    }
    // Every caller gets the error (made once for each: errors are not `Clone`).
    let fail_all = |replies: Vec<Reply>, error: &dyn Fn() -> DirectoryError, index: usize| {
        for r in replies {
            let _ = r.send(Err(ChangeError { index, error: error() }));
        }
    };
    let store_error = |e: StoreError| move || DirectoryError::from_store(e.clone());
    let mut tx = match dir.store.begin(WriteKey::new()).await {
        Ok(tx) => tx,
        Err(e) => return fail_all(batch.into_iter().map(|w| w.reply).collect(), &store_error(e), 0),
    };
    let mail_domain = match tx.enterprise().await {
        Ok(Some(e)) => e.mail_domain,
        Ok(None) => {
            return fail_all(
                batch.into_iter().map(|w| w.reply).collect(),
                &|| DirectoryError::NoEnterprise,
                0,
            );
        }
        Err(e) => return fail_all(batch.into_iter().map(|w| w.reply).collect(), &store_error(e), 0),
    };
    let mut written: Vec<(Reply, Vec<Applied>)> = Vec::with_capacity(batch.len());
    let mut runs = runs_of_creates(batch).into_iter();
    while let Some(run) = runs.next() {
        // A run of plain creates by one actor goes in as one set: the store's multi-row inserts,
        // one block of numbers (in queue order), a few conflict queries for all. If that fails,
        // each goes in alone between savepoints, so each caller gets its own result.
        let run = if run.len() > 1 {
            let merged = merge(&run);
            let attempt = match tx.mark().await {
                Ok(()) => dir.apply_in(tx.as_mut(), mail_domain.clone(), merged).await,
                Err(e) => Err(ChangeError { index: 0, error: DirectoryError::from_store(e) }),
            };
            let kept = match attempt {
                Ok(out) => tx.release_mark().await.map(|()| Some(out)),
                Err(_) => tx.rollback_to_mark().await.map(|()| None),
            };
            match kept {
                Ok(Some(mut out)) => {
                    for w in run {
                        let rest = out.split_off(w.set.changes.len().min(out.len()));
                        written.push((w.reply, std::mem::replace(&mut out, rest)));
                    }
                    continue;
                }
                Ok(None) => run,
                Err(e) => {
                    let replies = written
                        .into_iter()
                        .map(|(r, _)| r)
                        .chain(run.into_iter().map(|w| w.reply))
                        .chain(runs.flatten().map(|w| w.reply));
                    return fail_all(replies.collect(), &store_error(e), 0);
                }
            }
        } else {
            run
        };
        let mut rest = run.into_iter();
        while let Some(w) = rest.next() {
            let after = |rest: std::vec::IntoIter<Waiting>, runs: std::vec::IntoIter<Vec<Waiting>>| {
                rest.map(|w| w.reply).chain(runs.flatten().map(|w| w.reply)).collect::<Vec<_>>()
            };
            if let Err(e) = tx.mark().await {
                let replies = written.into_iter().map(|(r, _)| r).chain([w.reply]).chain(after(rest, runs));
                return fail_all(replies.collect(), &store_error(e), 0);
            }
            match dir.apply_in(tx.as_mut(), mail_domain.clone(), w.set).await {
                Ok(out) => match tx.release_mark().await {
                    Ok(()) => written.push((w.reply, out)),
                    Err(e) => {
                        let replies = written.into_iter().map(|(r, _)| r).chain([w.reply]).chain(after(rest, runs));
                        return fail_all(replies.collect(), &store_error(e), 0);
                    }
                },
                Err(failed) => {
                    // Undo this set alone; if even that fails, the transaction is lost for all.
                    let undone = tx.rollback_to_mark().await;
                    let _ = w.reply.send(Err(failed));
                    if let Err(e) = undone {
                        let replies = written.into_iter().map(|(r, _)| r).chain(after(rest, runs));
                        return fail_all(replies.collect(), &store_error(e), 0);
                    }
                }
            }
        }
    }
    match tx.commit().await {
        Ok(()) => {
            for (reply, out) in written {
                let _ = reply.send(Ok(out));
            }
        }
        Err(e) => {
            for (reply, out) in written {
                let index = out.len().saturating_sub(1);
                let _ = reply.send(Err(ChangeError { index, error: DirectoryError::from_store(e.clone()) }));
            }
        }
    }
}
