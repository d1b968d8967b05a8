//! Account numbers: handed out in order from the company's block.
//!
//! The next number is the one after the highest ever issued, so a department's new hires get
//! consecutive numbers. Reserved numbers are skipped. A released number is quarantined; it is
//! handed out again only when `numbers.reuse_after_days` is set, that many days have passed, and
//! the block has no fresh number left (lowest first). The new holder is a new member identity,
//! so nothing of the old holder is reachable through it.

use chrono::{DateTime, Duration, Utc};

use super::NumberBlock;
use super::change::{DirectoryError, DirectoryResult};
use super::store::DirectoryTx;

/// Picks the number for a new member inside the caller's transaction.
///
/// `clear_above` caches, for the caller's transaction, whether no number above the highest
/// ever issued is reserved, released or held: then a fresh number needs no further check (the
/// common case, and one round trip less per member in a bulk import). An explicit request
/// forgets it.
pub async fn allocate(
    tx: &mut dyn DirectoryTx,
    cfg: &NumberBlock,
    requested: Option<i64>,
    now: DateTime<Utc>,
    clear_above: &mut Option<bool>,
) -> DirectoryResult<i64> {
    if let Some(n) = requested {
        *clear_above = None;
        return take_requested(tx, cfg, n, now).await;
    }
    if clear_above.is_none() {
        *clear_above = Some(tx.numbers_clear_above_high_water().await?);
    }
    while let Some(n) = tx.number_next_fresh(cfg.first, cfg.last).await? {
        if *clear_above == Some(true) || !tx.number_taken(n).await? {
            return Ok(n);
        }
    }
    if let Some(before) = reuse_cutoff(cfg, now)
        && let Some(n) = tx.number_reusable(before).await?
    {
        tx.number_unrelease(n).await?;
        return Ok(n);
    }
    Err(DirectoryError::NumbersExhausted { first: cfg.first, last: cfg.last })
}

/// Takes up to `count` fresh consecutive numbers at once, for a change set that creates many
/// members: one counter update instead of one per member. Empty when anything above the
/// high-water mark is reserved, released or held (then [`allocate`] checks number by number).
pub async fn take_block(
    tx: &mut dyn DirectoryTx,
    cfg: &NumberBlock,
    count: usize,
) -> DirectoryResult<std::collections::VecDeque<i64>> {
    if !tx.numbers_clear_above_high_water().await? {
        return Ok(Default::default());
    }
    let Some((from, to)) = tx.number_take_block(cfg.first, cfg.last, count as i64).await? else {
        return Ok(Default::default());
    };
    Ok((from..=to).collect())
}

fn reuse_cutoff(cfg: &NumberBlock, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cfg.reuse_after_days.map(|d| now - Duration::days(i64::from(d)))
}

/// An explicitly chosen number: inside the block, not in use, and out of quarantine. Choosing a
/// reserved number is what reservations are for: it consumes the reservation.
async fn take_requested(
    tx: &mut dyn DirectoryTx,
    cfg: &NumberBlock,
    n: i64,
    now: DateTime<Utc>,
) -> DirectoryResult<i64> {
    let unavailable = |reason: String| DirectoryError::NumberUnavailable { number: n, reason };
    if n < cfg.first || n > cfg.last {
        return Err(unavailable(format!("outside the block {}-{}", cfg.first, cfg.last)));
    }
    if tx.member_id_by_number(n).await?.is_some() {
        return Err(unavailable("held by another member".into()));
    }
    if let Some(released) = tx.number_released_at(n).await? {
        match reuse_cutoff(cfg, now) {
            Some(cutoff) if released <= cutoff => tx.number_unrelease(n).await?,
            Some(_) => {
                return Err(unavailable(format!(
                    "released {} and still in quarantine",
                    released.date_naive()
                )));
            }
            None => {
                return Err(unavailable(
                    "released numbers are not reused (numbers.reuse_after_days is unset)".into(),
                ));
            }
        }
    }
    tx.number_unreserve(n).await?;
    Ok(n)
}

/// Checks a number an admin wants to reserve.
pub async fn check_reservable(tx: &mut dyn DirectoryTx, cfg: &NumberBlock, n: i64) -> DirectoryResult<()> {
    let unavailable = |reason: &str| DirectoryError::NumberUnavailable { number: n, reason: reason.into() };
    if n < cfg.first || n > cfg.last {
        return Err(unavailable("outside the block"));
    }
    if tx.member_id_by_number(n).await?.is_some() {
        return Err(unavailable("held by a member"));
    }
    if tx.number_reserved(n).await? {
        return Err(unavailable("already reserved"));
    }
    Ok(())
}
