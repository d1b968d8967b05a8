//! Group commit at the write path: change sets that arrive together are written in one
//! transaction, each between savepoints. Each caller gets its own result and its own errors (a
//! bad set, even one that fails part-way after writing, leaves no trace), numbers stay
//! consecutive in commit order with no number taken by a failed set, and every member has its
//! audit row and outbox event. On both stores.

use std::collections::BTreeSet;

use roster::directory::change::{Change, NewMember};

use crate::common::{Backend, TestDb, console, create_member, member};

async fn concurrent_sets_each_get_their_own_result(b: Backend) {
    let mut db = TestDb::new(b);
    db.cfg.numbers.last = 9_999;
    let d = db.open().await;
    let taken = create_member(&d, &console(), member("taken")).await;
    let base = taken.account_number;

    // 120 callers at once. Every 7th sends a set whose second create clashes with `taken` (the
    // first create of that set was written and must be undone); every 11th a set whose only
    // change is invalid; the rest one or two good creates.
    let mut tasks = Vec::new();
    for i in 0..120usize {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let changes = if i % 7 == 0 {
                vec![Change::CreateMember(member(&format!("half{i}"))), Change::CreateMember(member("taken"))]
            } else if i % 11 == 0 {
                vec![Change::CreateMember(NewMember { login_name: "bad name!".into(), ..member("x") })]
            } else if i % 2 == 0 {
                vec![
                    Change::CreateMember(member(&format!("a{i}"))),
                    Change::CreateMember(member(&format!("b{i}"))),
                ]
            } else {
                vec![Change::CreateMember(member(&format!("a{i}")))]
            };
            (i, d.apply(&console(), changes).await)
        }));
    }
    let mut created = BTreeSet::new();
    let mut expected = 0;
    for t in tasks {
        let (i, r) = t.await.unwrap();
        if i % 7 == 0 {
            let e = r.expect_err("a set with a clash");
            assert_eq!((e.index, e.error.code()), (1, "conflict"), "set {i}: {e:?}");
        } else if i % 11 == 0 {
            let e = r.expect_err("an invalid set");
            assert_eq!((e.index, e.error.code()), (0, "invalid"), "set {i}: {e:?}");
        } else {
            let out = r.unwrap_or_else(|e| panic!("set {i}: {e:?}"));
            expected += out.len();
            for a in out {
                let roster::directory::change::Applied::Member(m) = a else { panic!() };
                created.insert(m.account_number);
            }
        }
    }
    assert_eq!(created.len(), expected);
    let (batches, sets) = d.commit_stats();
    assert_eq!(sets, 121, "every set went through the writer");
    assert!(batches < sets / 2, "sets were written together: {sets} sets in {batches} transactions");
    // Consecutive after `taken`: no number went to a failed set.
    let want: BTreeSet<i64> = (base + 1..=base + expected as i64).collect();
    assert_eq!(created, want);
    let store = d.store();
    for i in (0..120).step_by(7) {
        assert!(
            store.member_by_login(&format!("half{i}@example.com")).await.unwrap().is_none(),
            "half{i} was kept"
        );
    }
    let counts = store.counts().await.unwrap();
    assert_eq!(counts.members as usize, expected + 1);
    // One audit row per member plus the enterprise's creation; one outbox event per member.
    assert_eq!(store.audit_count().await.unwrap() as usize, expected + 2);
    assert_eq!(store.outbox_pending(10_000).await.unwrap().len(), expected + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sets_each_get_their_own_result_sqlite() {
    concurrent_sets_each_get_their_own_result(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sets_each_get_their_own_result_postgres() {
    concurrent_sets_each_get_their_own_result(Backend::Postgres).await;
}
