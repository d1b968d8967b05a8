//! The behaviour suite: every store operation, through `DirectoryService`, on both backends.

use std::collections::BTreeSet;

use roster::directory::model::{Actor, Email, MemberState, Source};
use roster::directory::{Applied, Change, DirectoryError, EnterprisePatch, MemberPatch, NewGroup, NewMember};
use uuid::Uuid;

use crate::common::{Backend, TestDb, console, create_member, create_unit, member, on_both_stores};

on_both_stores!(
    bootstrap_creates_the_enterprise_once,
    org_tree_keeps_its_shape,
    units_created_together_take_the_next_positions,
    members_get_consecutive_numbers_and_unique_names,
    a_change_set_is_all_or_nothing,
    a_set_of_creates_is_checked_as_a_whole,
    unit_and_group_creates_are_checked_as_a_set,
    a_search_page_tells_the_total,
    deleted_members_become_tombstones,
    numbers_are_reused_only_after_quarantine,
    reserved_numbers_are_skipped,
    concurrent_creates_never_share_a_number,
    sources_change_only_what_they_own,
    groups_track_members,
    updates_are_audited_and_queued,
    tokens_are_stored_hashed,
    enterprise_profile_and_password,
);

fn code<T: std::fmt::Debug>(r: Result<T, DirectoryError>) -> &'static str {
    r.expect_err("the change should have been refused").code()
}

async fn bootstrap_creates_the_enterprise_once(b: Backend) {
    let db = TestDb::new(b);
    let d = db.open().await;
    let e = d.store().enterprise().await.unwrap().expect("enterprise created");
    assert_eq!(e.mail_domain, "example.com");
    assert_eq!(e.enterprise_id.len(), 10);
    assert!(e.password_must_change);
    // A second start finds it and creates nothing.
    assert_eq!(d.ensure_enterprise(&db.cfg.enterprise.seed()).await.unwrap(), None);
    let again = db.open().await.store().enterprise().await.unwrap().unwrap();
    assert_eq!(again.enterprise_id, e.enterprise_id);
    let audit = d.store().audit_for("enterprise", &e.enterprise_id).await.unwrap();
    assert_eq!(audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["enterprise.create"]);
    assert_eq!(d.store().schema_state().await.unwrap(), roster::store::SchemaState::Current);
}

async fn org_tree_keeps_its_shape(b: Backend) {
    let db = TestDb::new(b);
    let d = db.open().await;
    let hq = create_unit(&d, None, "HQ").await;
    let sales = create_unit(&d, Some(hq), "Sales").await;
    let east = create_unit(&d, Some(sales), "East").await;
    let rnd = create_unit(&d, Some(hq), "R&D").await;

    let names =
        |units: Vec<roster::directory::model::OrgUnit>| units.into_iter().map(|u| u.name).collect::<Vec<_>>();
    assert_eq!(names(d.store().org_unit_children(Some(hq)).await.unwrap()), ["Sales", "R&D"]);
    assert_eq!(names(d.store().org_unit_children(None).await.unwrap()), ["HQ"]);

    // Unique among siblings, also at the top; the same name elsewhere is fine.
    let dup = Change::CreateOrgUnit(roster::directory::NewOrgUnit {
        parent_id: Some(hq),
        name: "Sales".into(),
        ..Default::default()
    });
    assert_eq!(code(d.apply_one(&console(), dup).await), "conflict");
    let top =
        Change::CreateOrgUnit(roster::directory::NewOrgUnit { name: "HQ".into(), ..Default::default() });
    assert_eq!(code(d.apply_one(&console(), top).await), "conflict");
    create_unit(&d, Some(rnd), "East").await;
    let slash =
        Change::CreateOrgUnit(roster::directory::NewOrgUnit { name: "A/B".into(), ..Default::default() });
    assert_eq!(code(d.apply_one(&console(), slash).await), "invalid");
    let orphan = Change::CreateOrgUnit(roster::directory::NewOrgUnit {
        parent_id: Some(Uuid::now_v7()),
        name: "X".into(),
        ..Default::default()
    });
    assert_eq!(code(d.apply_one(&console(), orphan).await), "not_found");

    // No cycles: not under itself, not under its own descendant.
    let mv = |id, parent| Change::MoveOrgUnit { id, parent_id: Some(parent), position: None };
    assert_eq!(code(d.apply_one(&console(), mv(sales, sales)).await), "org_cycle");
    assert_eq!(code(d.apply_one(&console(), mv(hq, east)).await), "org_cycle");
    assert_eq!(
        d.store().org_unit(hq).await.unwrap().unwrap().parent_id,
        None,
        "refused move changed nothing"
    );

    // A legal move: East goes under HQ, last among its new siblings.
    d.apply_one(&console(), mv(east, hq)).await.unwrap();
    assert_eq!(names(d.store().org_unit_children(Some(hq)).await.unwrap()), ["Sales", "R&D", "East"]);
    assert_eq!(d.store().org_unit(east).await.unwrap().unwrap().version, 2);
    // ...but not next to a sibling of the same name.
    let rnd_east = d.store().org_unit_children(Some(rnd)).await.unwrap()[0].id;
    assert_eq!(code(d.apply_one(&console(), mv(rnd_east, hq)).await), "conflict");

    // Deleting: refused while children or members remain.
    assert_eq!(code(d.apply_one(&console(), Change::DeleteOrgUnit { id: hq }).await), "org_not_empty");
    let alice =
        create_member(&d, &console(), NewMember { primary_org_unit_id: Some(sales), ..member("alice") })
            .await;
    let err = d.apply_one(&console(), Change::DeleteOrgUnit { id: sales }).await.unwrap_err();
    assert!(matches!(err, DirectoryError::NotEmpty { what: "members", .. }), "{err}");
    let bob = create_member(&d, &console(), NewMember { org_unit_ids: vec![east], ..member("bob") }).await;
    assert_eq!(code(d.apply_one(&console(), Change::DeleteOrgUnit { id: east }).await), "org_not_empty");
    d.apply_one(&console(), Change::DeleteMember { id: bob.id, reason: "left".into() }).await.unwrap();
    d.apply_one(&console(), Change::DeleteOrgUnit { id: east }).await.unwrap();
    assert!(d.store().org_unit(east).await.unwrap().is_none());
    assert!(d.store().member(alice.id).await.unwrap().is_some());

    let rename = Change::UpdateOrgUnit { id: sales, name: Some("Sales & Marketing".into()), anchor: None };
    d.apply_one(&console(), rename).await.unwrap();
    assert_eq!(d.store().org_unit(sales).await.unwrap().unwrap().name, "Sales & Marketing");
}

/// Units created in one change set take the next free positions under each parent, with an
/// explicit position and a unit moved in between taken into account.
async fn units_created_together_take_the_next_positions(b: Backend) {
    use roster::directory::NewOrgUnit;
    let db = TestDb::new(b);
    let d = db.open().await;
    let hq = create_unit(&d, None, "HQ").await;
    let old = create_unit(&d, Some(hq), "Old").await;
    let elsewhere = create_unit(&d, None, "Elsewhere").await;
    let unit = |name: &str, parent: Uuid, position: Option<i64>| {
        Change::CreateOrgUnit(NewOrgUnit {
            id: None,
            parent_id: Some(parent),
            name: name.into(),
            position,
            anchor: None,
        })
    };
    let other = create_unit(&d, Some(elsewhere), "First there").await;
    d.apply(
        &console(),
        vec![
            unit("A", hq, None),
            unit("B", hq, Some(10)),
            unit("C", hq, None),
            unit("In other", elsewhere, None),
            Change::MoveOrgUnit { id: other, parent_id: Some(hq), position: None },
            unit("D", hq, None),
        ],
    )
    .await
    .unwrap();
    let positions = |units: Vec<roster::directory::model::OrgUnit>| {
        units.into_iter().map(|u| (u.name, u.position)).collect::<Vec<_>>()
    };
    let under_hq = positions(d.store().org_unit_children(Some(hq)).await.unwrap());
    assert_eq!(
        under_hq,
        [
            ("Old".to_owned(), 0),
            ("A".to_owned(), 1),
            ("B".to_owned(), 10),
            ("C".to_owned(), 11),
            ("First there".to_owned(), 12),
            ("D".to_owned(), 13)
        ],
        "{old}"
    );
    let under_elsewhere = positions(d.store().org_unit_children(Some(elsewhere)).await.unwrap());
    assert_eq!(under_elsewhere, [("In other".to_owned(), 1)], "after the unit that moved away");
    // After a move, an explicit position still counts for the next unit.
    let back =
        d.store().org_unit_children(Some(hq)).await.unwrap().into_iter().find(|u| u.name == "D").unwrap().id;
    d.apply(
        &console(),
        vec![
            Change::MoveOrgUnit { id: back, parent_id: Some(elsewhere), position: None },
            unit("E", elsewhere, Some(20)),
            unit("F", elsewhere, None),
        ],
    )
    .await
    .unwrap();
    let under_elsewhere = positions(d.store().org_unit_children(Some(elsewhere)).await.unwrap());
    assert_eq!(
        under_elsewhere,
        [("In other".to_owned(), 1), ("D".to_owned(), 2), ("E".to_owned(), 20), ("F".to_owned(), 21)]
    );
}

async fn members_get_consecutive_numbers_and_unique_names(b: Backend) {
    let db = TestDb::new(b);
    let d = db.open().await;
    let mut numbers = Vec::new();
    for name in ["ann", "ben", "cat", "dan", "eve"] {
        numbers.push(create_member(&d, &console(), member(name)).await.account_number);
    }
    assert_eq!(numbers, [1000, 1001, 1002, 1003, 1004]);

    let full = NewMember {
        login_name: "Zhang.Wei@Example.com".into(),
        display_name: "Zhang Wei".into(),
        given_name: Some("Wei".into()),
        family_name: Some("Zhang".into()),
        emails: vec![Email { address: "Zhang.Wei@example.com".into(), kind: "work".into(), primary: false }],
        mobile: Some("+86 138 0013 8000".into()),
        title: Some("Engineer".into()),
        employee_number: Some("E-1".into()),
        ..Default::default()
    };
    let zw = create_member(&d, &console(), full).await;
    assert_eq!(zw.login_name, "zhang.wei@example.com");
    assert_eq!(zw.mobile.as_deref(), Some("+8613800138000"));
    assert!(zw.emails[0].primary);
    let s = d.store();
    assert_eq!(s.member(zw.id).await.unwrap().unwrap(), zw);
    assert_eq!(s.member_by_login("ZHANG.WEI@example.com").await.unwrap().unwrap().id, zw.id);
    assert_eq!(s.member_by_number(1005).await.unwrap().unwrap().id, zw.id);
    assert!(s.member_by_number(1006).await.unwrap().is_none());

    let before = s.counts().await.unwrap().members;
    assert_eq!(code(d.apply_one(&console(), Change::CreateMember(member("ANN"))).await), "conflict");
    let same_mail = NewMember {
        emails: vec![Email { address: "zhang.wei@example.com".into(), kind: String::new(), primary: true }],
        ..member("zw2")
    };
    assert_eq!(code(d.apply_one(&console(), Change::CreateMember(same_mail)).await), "conflict");
    let same_mobile = NewMember { mobile: Some("+8613800138000".into()), ..member("zw3") };
    assert_eq!(code(d.apply_one(&console(), Change::CreateMember(same_mobile)).await), "conflict");
    assert_eq!(code(d.apply_one(&console(), Change::CreateMember(member("x@other.org"))).await), "invalid");
    let nameless = NewMember { display_name: "  ".into(), ..member("nameless") };
    assert_eq!(code(d.apply_one(&console(), Change::CreateMember(nameless)).await), "invalid");
    assert_eq!(s.counts().await.unwrap().members, before, "refused creates wrote nothing");
    // Refusals did not burn numbers.
    assert_eq!(create_member(&d, &console(), member("fay")).await.account_number, 1006);

    let page = s.members_page(1002, 2).await.unwrap();
    assert_eq!(page.iter().map(|m| m.account_number).collect::<Vec<_>>(), [1003, 1004]);
}

async fn a_change_set_is_all_or_nothing(b: Backend) {
    let db = TestDb::new(b);
    let d = db.open().await;
    let unit = Uuid::now_v7();
    let set = vec![
        Change::CreateOrgUnit(roster::directory::NewOrgUnit {
            id: Some(unit),
            name: "Ops".into(),
            ..Default::default()
        }),
        Change::CreateMember(NewMember { primary_org_unit_id: Some(unit), ..member("amy") }),
        Change::CreateMember(member("AMY")),
    ];
    let err = d.apply(&console(), set).await.unwrap_err();
    assert_eq!(err.index, 2);
    assert_eq!(err.error.code(), "conflict");
    let counts = d.store().counts().await.unwrap();
    assert_eq!((counts.members, counts.org_units), (0, 0));
    assert_eq!(d.store().audit_count().await.unwrap(), 1, "only the enterprise's creation");
    assert!(d.store().outbox_pending(10).await.unwrap().is_empty());

    // The same set without the duplicate works, and the unit the member refers to exists.
    let set = vec![
        Change::CreateOrgUnit(roster::directory::NewOrgUnit {
            id: Some(unit),
            name: "Ops".into(),
            ..Default::default()
        }),
        Change::CreateMember(NewMember { primary_org_unit_id: Some(unit), ..member("amy") }),
    ];
    let out = d.apply(&console(), set).await.unwrap();
    let Applied::Member(amy) = &out[1] else { panic!("{out:?}") };
    assert_eq!(amy.account_number, 1000, "the rolled-back set did not use up a number");
    assert_eq!(amy.primary_org_unit_id, Some(unit));
}

/// Creates in one set are written together; each is still checked against the store, against the
/// set's other creates, and against what later changes in the set do.
async fn a_set_of_creates_is_checked_as_a_whole(b: Backend) {
    let db = TestDb::new(b);
    let d = db.open().await;
    let with_mail = |login: &str, mail: &str| NewMember {
        emails: vec![Email { address: mail.into(), kind: "work".into(), primary: true }],
        ..member(login)
    };
    let old = NewMember { mobile: Some("+8613800000001".into()), ..with_mail("old", "old@example.com") };
    let old = create_member(&d, &console(), old).await;
    let refused = |set: Vec<Change>| async {
        let counts = d.store().counts().await.unwrap();
        let audit = d.store().audit_count().await.unwrap();
        let err = d.apply(&console(), set).await.unwrap_err();
        assert_eq!(d.store().counts().await.unwrap().members, counts.members, "{err:?} wrote members");
        assert_eq!(d.store().audit_count().await.unwrap(), audit, "{err:?} wrote audit rows");
        (err.index, err.error.code(), err.error.to_string())
    };
    let creates =
        |n: usize| (0..n).map(|i| Change::CreateMember(member(&format!("m{i}")))).collect::<Vec<_>>();

    // Against the store: the index is the create's, whatever comes after it.
    let mut set = creates(5);
    set.insert(3, Change::CreateMember(with_mail("x", "old@example.com")));
    set.push(Change::CreateMember(NewMember { mobile: Some("+8613800000001".into()), ..member("y") }));
    let (index, code, text) = refused(set).await;
    assert_eq!((index, code), (3, "conflict"), "{text}");
    assert!(text.contains("old@example.com"), "{text}");
    let mut set = creates(4);
    set.push(Change::CreateMember(NewMember { mobile: Some("+86 138 0000 0001".into()), ..member("y") }));
    assert_eq!(refused(set).await.0, 4);
    // Among themselves: the second holder is at fault.
    let mut set = creates(3);
    set.push(Change::CreateMember(with_mail("a", "same@example.com")));
    set.push(Change::CreateMember(with_mail("b", "SAME@example.com")));
    assert_eq!(refused(set).await.0, 4);
    let mut set = creates(3);
    set.push(Change::CreateMember(member("M1")));
    assert_eq!(refused(set).await.0, 3);
    // A chosen id that a member or a tombstone has.
    let mut set = creates(2);
    set.push(Change::CreateMember(NewMember { id: Some(old.id), ..member("z") }));
    assert_eq!(refused(set).await.0, 2);
    // An org unit that does not exist.
    let mut set = creates(3);
    set.push(Change::CreateMember(NewMember { primary_org_unit_id: Some(Uuid::now_v7()), ..member("u") }));
    set.extend(creates(5).into_iter().skip(3));
    let (index, code, text) = refused(set).await;
    assert_eq!((index, code), (3, "invalid"), "{text}");
    // An earlier conflicting create is reported before a later invalid change.
    let mut set = creates(2);
    set.push(Change::CreateMember(member("old")));
    set.push(Change::CreateMember(member("bad@other.org")));
    assert_eq!(refused(set).await.0, 2);

    // Later changes in the set see the creates: a manager, an update, a group, a delete.
    let boss = Uuid::now_v7();
    let group = Uuid::now_v7();
    let mut set = vec![Change::CreateMember(NewMember { id: Some(boss), ..member("boss") })];
    set.extend(creates(3));
    set.push(Change::CreateMember(NewMember { manager_id: Some(boss), ..member("report") }));
    set.push(Change::UpdateMember {
        id: boss,
        patch: MemberPatch { title: Some(Some("Head".into())), ..Default::default() },
    });
    set.push(Change::CreateGroup(NewGroup {
        id: Some(group),
        name: "Leads".into(),
        members: vec![boss],
        ..Default::default()
    }));
    let out = d.apply(&console(), set).await.unwrap();
    let numbers: Vec<i64> = out
        .iter()
        .filter_map(|a| if let Applied::Member(m) = a { Some(m.account_number) } else { None })
        .collect();
    assert_eq!(numbers[..5], [1001, 1002, 1003, 1004, 1005], "one block, in order");
    let s = d.store();
    assert_eq!(s.member(boss).await.unwrap().unwrap().title.as_deref(), Some("Head"));
    assert_eq!(s.member_by_login("report@example.com").await.unwrap().unwrap().manager_id, Some(boss));
    assert_eq!(s.group_member_ids(group).await.unwrap(), [boss]);
    assert_eq!(s.counts().await.unwrap().members, 6);
    // A later change in the same set that collides with an earlier create.
    let set = vec![
        Change::CreateMember(member("n1")),
        Change::CreateMember(member("n2")),
        Change::UpdateMember {
            id: old.id,
            patch: MemberPatch { login_name: Some("n2".into()), ..Default::default() },
        },
    ];
    assert_eq!(refused(set).await.0, 2);
}

/// Creates of org units and groups are checked against what the set read up front and what it
/// created itself; a change of any other kind in between makes later creates ask the store.
async fn unit_and_group_creates_are_checked_as_a_set(b: Backend) {
    use roster::directory::{NewGroup, NewOrgUnit};
    let db = TestDb::new(b);
    let d = db.open().await;
    let hq = create_unit(&d, None, "HQ").await;
    let x = create_unit(&d, Some(hq), "X").await;
    let anchored = Change::CreateOrgUnit(NewOrgUnit {
        parent_id: Some(hq),
        name: "Anchored".into(),
        anchor: Some("ou-1".into()),
        ..Default::default()
    });
    let anchored = match d.apply_one(&console(), anchored).await.unwrap() {
        Applied::OrgUnit(u) => u.id,
        other => panic!("{other:?}"),
    };
    let old = create_member(&d, &console(), member("old")).await;
    let unit = |id: Option<Uuid>, parent: Option<Uuid>, name: &str, anchor: Option<&str>| {
        Change::CreateOrgUnit(NewOrgUnit {
            id,
            parent_id: parent,
            name: name.into(),
            position: None,
            anchor: anchor.map(str::to_owned),
        })
    };
    let group = |name: &str, members: Vec<Uuid>, anchor: Option<&str>| {
        Change::CreateGroup(NewGroup {
            name: name.into(),
            members,
            anchor: anchor.map(str::to_owned),
            ..Default::default()
        })
    };
    let refused = |set: Vec<Change>| async {
        let counts = d.store().counts().await.unwrap();
        let audit = d.store().audit_count().await.unwrap();
        let err = d.apply(&console(), set).await.unwrap_err();
        let after = d.store().counts().await.unwrap();
        assert_eq!((after.org_units, after.groups), (counts.org_units, counts.groups), "{err:?} wrote");
        assert_eq!(d.store().audit_count().await.unwrap(), audit, "{err:?} wrote audit rows");
        (err.index, err.error.code())
    };
    let a = Uuid::now_v7();
    // A sibling's name: one in the store, one created earlier in the set.
    assert_eq!(
        refused(vec![unit(None, Some(hq), "New", None), unit(None, Some(hq), "X", None)]).await,
        (1, "conflict")
    );
    assert_eq!(
        refused(vec![
            unit(Some(a), Some(hq), "A", None),
            unit(None, Some(a), "B", None),
            unit(None, Some(a), "B", None)
        ])
        .await,
        (2, "conflict")
    );
    // Anchors, in the store and in the set; chosen ids; parents that do not exist.
    assert_eq!(refused(vec![unit(None, None, "Top", Some("ou-1"))]).await, (0, "conflict"));
    assert_eq!(
        refused(vec![unit(None, None, "T1", Some("ou-2")), unit(None, None, "T2", Some("ou-2"))]).await,
        (1, "conflict")
    );
    assert_eq!(
        refused(vec![unit(None, None, "T1", None), unit(Some(x), None, "T2", None)]).await,
        (1, "conflict")
    );
    assert_eq!(
        refused(vec![unit(Some(a), None, "T1", None), unit(Some(a), None, "T2", None)]).await,
        (1, "conflict")
    );
    assert_eq!(refused(vec![unit(None, Some(Uuid::now_v7()), "Orphan", None)]).await, (0, "not_found"));
    // After another kind of change the set's facts are gone: creates are checked against the
    // store and against each other all the same.
    let rename = Change::UpdateOrgUnit { id: x, name: Some("X".into()), anchor: None };
    assert_eq!(
        refused(vec![
            rename.clone(),
            unit(None, Some(hq), "Twice", None),
            unit(None, Some(hq), "Twice", None)
        ])
        .await,
        (2, "conflict")
    );
    assert_eq!(
        refused(vec![
            rename.clone(),
            unit(None, None, "Top", Some("ou-3")),
            unit(None, None, "Top2", Some("ou-3"))
        ])
        .await,
        (2, "conflict")
    );
    // A member cannot be placed in a unit the set creates after it.
    let later = Uuid::now_v7();
    assert_eq!(
        refused(vec![
            Change::CreateMember(NewMember { primary_org_unit_id: Some(later), ..member("early") }),
            unit(Some(later), Some(hq), "Later", None),
        ])
        .await,
        (0, "invalid")
    );
    // Groups: members that do not exist, anchors and chosen ids taken.
    let g = Uuid::now_v7();
    let with_id =
        |name: &str| Change::CreateGroup(NewGroup { id: Some(g), name: name.into(), ..Default::default() });
    assert_eq!(refused(vec![with_id("G1"), with_id("G2")]).await, (1, "conflict"));
    assert_eq!(refused(vec![group("G", vec![old.id, Uuid::now_v7()], None)]).await, (0, "invalid"));
    assert_eq!(
        refused(vec![group("G1", vec![], Some("g-1")), group("G2", vec![], Some("g-1"))]).await,
        (1, "conflict")
    );

    // A set that builds a tree, its members and a group, with a member written in between (an
    // explicit number is not held back): everything lands, in order.
    let (m1, m2) = (Uuid::now_v7(), Uuid::now_v7());
    let out = d
        .apply(
            &console(),
            vec![
                unit(Some(a), Some(hq), "A", Some("ou-a")),
                unit(None, Some(a), "A1", None),
                Change::CreateMember(NewMember {
                    id: Some(m1),
                    primary_org_unit_id: Some(a),
                    ..member("m1")
                }),
                Change::CreateMember(NewMember { id: Some(m2), account_number: Some(1900), ..member("m2") }),
                unit(None, Some(a), "A2", None),
                group("Team A", vec![m1, m2, old.id], Some("g-a")),
            ],
        )
        .await
        .unwrap();
    let Applied::Group(team) = &out[5] else { panic!("{out:?}") };
    let s = d.store();
    let names = |units: Vec<roster::directory::model::OrgUnit>| {
        units.into_iter().map(|u| (u.name, u.position)).collect::<Vec<_>>()
    };
    assert_eq!(
        names(s.org_unit_children(Some(a)).await.unwrap()),
        [("A1".to_owned(), 0), ("A2".to_owned(), 1)]
    );
    assert_eq!(names(s.org_unit_children(Some(hq)).await.unwrap()).len(), 3, "X, Anchored, A");
    let mut want = vec![m1, m2, old.id];
    want.sort();
    let mut got = s.group_member_ids(team.id).await.unwrap();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(s.member(m1).await.unwrap().unwrap().primary_org_unit_id, Some(a));
    assert_eq!(s.audit_for("group", &team.id.to_string()).await.unwrap().len(), 1);
    // The anchors and names it created are taken for the next set.
    assert_eq!(refused(vec![unit(None, None, "T", Some("ou-a"))]).await, (0, "conflict"));
    assert_eq!(refused(vec![group("G", vec![], Some("g-a"))]).await, (0, "conflict"));

    // Another kind of change in between: later creates see what it did.
    d.apply(
        &console(),
        vec![
            unit(None, Some(hq), "Y", None),
            Change::DeleteOrgUnit { id: x },
            unit(None, Some(hq), "X", None),
            Change::UpdateOrgUnit { id: anchored, name: Some("Renamed".into()), anchor: Some(None) },
            unit(None, Some(hq), "Anchored", Some("ou-1")),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        refused(vec![
            unit(None, Some(hq), "Z", None),
            Change::DeleteGroup { id: team.id },
            unit(None, Some(hq), "Renamed", None)
        ])
        .await,
        (2, "conflict")
    );
    let mut under_hq: Vec<String> =
        s.org_unit_children(Some(hq)).await.unwrap().into_iter().map(|u| u.name).collect();
    under_hq.sort();
    assert_eq!(under_hq, ["A", "Anchored", "Renamed", "X", "Y"]);
}

/// The total is counted when the page cannot tell it, and read off the page when it can.
async fn a_search_page_tells_the_total(b: Backend) {
    use roster::directory::query::{Expr, Field, Op, Query, Val};
    let db = TestDb::new(b);
    let d = db.open().await;
    let unit = create_unit(&d, None, "Ops").await;
    let set = (0..7)
        .map(|i| {
            Change::CreateMember(NewMember {
                emails: vec![Email {
                    address: format!("m{i}@example.com"),
                    kind: "work".into(),
                    primary: true,
                }],
                org_unit_ids: if i % 2 == 0 { vec![unit] } else { vec![] },
                ..member(&format!("m{i}"))
            })
        })
        .collect();
    d.apply(&console(), set).await.unwrap();
    let s = d.store();
    let q = |offset, limit| Query { filter: None, sort: None, offset, limit };
    let page = |offset, limit| async move {
        let p = s.search_members(&q(offset, limit)).await.unwrap();
        (p.total, p.items.iter().map(|m| m.account_number).collect::<Vec<_>>())
    };
    assert_eq!(page(0, 3).await, (7, vec![1000, 1001, 1002]), "a full page counts");
    assert_eq!(page(3, 100).await, (7, vec![1003, 1004, 1005, 1006]), "a short page tells");
    assert_eq!(page(0, 7).await, (7, (1000..1007).collect()));
    assert_eq!(page(20, 5).await, (7, vec![]), "past the end counts");
    assert_eq!(page(0, 0).await, (7, vec![]), "no page counts");
    let none =
        Query { filter: Some(Expr::Cmp(Field::LoginName, Op::Eq, Val::Text("nobody".into()))), ..q(0, 10) };
    let found = s.search_members(&none).await.unwrap();
    assert_eq!((found.total, found.items.len()), (0, 0));
    // Each member of a page comes with its own e-mails and org units.
    let all = s.search_members(&q(0, 100)).await.unwrap().items;
    for m in &all {
        let i = m.account_number - 1000;
        assert_eq!(
            m.emails.iter().map(|e| e.address.as_str()).collect::<Vec<_>>(),
            [format!("m{i}@example.com")]
        );
        assert_eq!(m.org_unit_ids, if i % 2 == 0 { vec![unit] } else { vec![] }, "{}", m.login_name);
        assert_eq!(&s.member(m.id).await.unwrap().unwrap(), m);
    }
}

async fn deleted_members_become_tombstones(b: Backend) {
    let db = TestDb::new(b);
    let d = db.open().await;
    let manager = create_member(&d, &console(), member("boss")).await;
    let old =
        create_member(&d, &console(), NewMember { manager_id: Some(manager.id), ..member("li.lei") }).await;
    let report =
        create_member(&d, &console(), NewMember { manager_id: Some(old.id), ..member("han.mei") }).await;
    d.apply_one(&console(), Change::DeleteMember { id: old.id, reason: "left the company".into() })
        .await
        .unwrap();

    let s = d.store();
    assert!(s.member(old.id).await.unwrap().is_none());
    let t = s.tombstone(old.id).await.unwrap().expect("tombstone");
    assert_eq!(t.profile, old);
    assert_eq!(t.reason, "left the company");
    assert_eq!(t.source, Source::console());
    assert_eq!(t.deleted_by, "admin");
    assert_eq!(s.member(report.id).await.unwrap().unwrap().manager_id, None, "manager link cleared");
    assert_eq!(
        code(d.apply_one(&console(), Change::DeleteMember { id: old.id, reason: String::new() }).await),
        "not_found"
    );

    // The login name is free again; the new holder is a new identity with a fresh number and
    // none of the old holder's history.
    let new = create_member(&d, &console(), member("li.lei")).await;
    assert_ne!(new.id, old.id);
    assert_eq!(new.account_number, 1003);
    let history = s.audit_for("member", &new.id.to_string()).await.unwrap();
    assert_eq!(history.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["member.create"]);
    let old_history = s.audit_for("member", &old.id.to_string()).await.unwrap();
    assert_eq!(
        old_history.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
        ["member.create", "member.delete"]
    );
    // A deleted identity is never handed out again, even when asked for.
    let reuse_id = NewMember { id: Some(old.id), ..member("someone") };
    assert_eq!(code(d.apply_one(&console(), Change::CreateMember(reuse_id)).await), "conflict");
    let kinds: Vec<String> = s.outbox_pending(100).await.unwrap().into_iter().map(|m| m.kind).collect();
    assert!(kinds.contains(&"member.deleted".to_owned()), "{kinds:?}");
}

async fn numbers_are_reused_only_after_quarantine(b: Backend) {
    let mut db = TestDb::new(b);
    db.cfg.numbers.first = 500;
    db.cfg.numbers.last = 502;
    let d = db.open().await;
    let mut held = Vec::new();
    for name in ["a1", "a2", "a3"] {
        held.push(create_member(&d, &console(), member(name)).await);
    }
    let err = d.apply_one(&console(), Change::CreateMember(member("a4"))).await.unwrap_err();
    assert!(matches!(err, DirectoryError::NumbersExhausted { first: 500, last: 502 }), "{err}");
    assert_eq!(err.to_string(), "the account number block 500-502 is used up");

    d.apply_one(&console(), Change::DeleteMember { id: held[1].id, reason: "left".into() }).await.unwrap();
    // Reuse is off by default: still used up.
    assert_eq!(code(d.apply_one(&console(), Change::CreateMember(member("a4"))).await), "numbers_exhausted");
    let explicit = NewMember { account_number: Some(501), ..member("a4") };
    assert_eq!(code(d.apply_one(&console(), Change::CreateMember(explicit)).await), "number_unavailable");

    // Reuse after 30 days: the number released just now stays in quarantine.
    db.cfg.numbers.reuse_after_days = Some(30);
    let d30 = db.open().await;
    assert_eq!(
        code(d30.apply_one(&console(), Change::CreateMember(member("a4"))).await),
        "numbers_exhausted"
    );

    // Reuse after 0 days: handed out again, to a new identity that sees none of the old one.
    db.cfg.numbers.reuse_after_days = Some(0);
    let d0 = db.open().await;
    let again = create_member(&d0, &console(), member("a4")).await;
    assert_eq!(again.account_number, 501);
    assert_ne!(again.id, held[1].id);
    let s = d0.store();
    assert_eq!(s.tombstones_for_number(501).await.unwrap()[0].member_id, held[1].id);
    assert_eq!(s.audit_for("member", &again.id.to_string()).await.unwrap().len(), 1);
    assert_eq!(code(d0.apply_one(&console(), Change::CreateMember(member("a5"))).await), "numbers_exhausted");
}

async fn reserved_numbers_are_skipped(b: Backend) {
    let db = TestDb::new(b);
    let d = db.open().await;
    let reserve = |n| Change::ReserveNumber { number: n, note: "for the CEO".into() };
    d.apply_one(&console(), reserve(1001)).await.unwrap();
    assert_eq!(code(d.apply_one(&console(), reserve(1001)).await), "number_unavailable");
    assert_eq!(code(d.apply_one(&console(), reserve(5)).await), "number_unavailable");
    let r = d.store().reservations().await.unwrap();
    assert_eq!((r.len(), r[0].number, r[0].reserved_by.as_str()), (1, 1001, "admin"));

    assert_eq!(create_member(&d, &console(), member("m1")).await.account_number, 1000);
    assert_eq!(create_member(&d, &console(), member("m2")).await.account_number, 1002);
    assert_eq!(code(d.apply_one(&console(), reserve(1002)).await), "number_unavailable");
    // Asking for the reserved number explicitly is what the reservation was for.
    let ceo = create_member(&d, &console(), NewMember { account_number: Some(1001), ..member("ceo") }).await;
    assert_eq!(ceo.account_number, 1001);
    assert!(d.store().reservations().await.unwrap().is_empty());
    let taken = NewMember { account_number: Some(1000), ..member("m3") };
    assert_eq!(code(d.apply_one(&console(), Change::CreateMember(taken)).await), "number_unavailable");

    d.apply_one(&console(), reserve(1500)).await.unwrap();
    d.apply_one(&console(), Change::ReleaseReservation { number: 1500 }).await.unwrap();
    assert_eq!(code(d.apply_one(&console(), Change::ReleaseReservation { number: 1500 }).await), "not_found");
}

async fn concurrent_creates_never_share_a_number(b: Backend) {
    let db = TestDb::new(b);
    let d = db.open().await;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let d = d.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..25 {
                got.push(create_member(&d, &console(), member(&format!("c{t}x{i}"))).await.account_number);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let distinct: BTreeSet<i64> = all.iter().copied().collect();
    assert_eq!(distinct.len(), 100, "no number was handed out twice");
    assert_eq!(distinct, (1000..1100).collect(), "and none was skipped");
}

async fn sources_change_only_what_they_own(b: Backend) {
    let db = TestDb::new(b);
    let d = db.open().await;
    let okta = Actor::new(Source::parse("scim:okta").unwrap(), "okta");
    let ad = Actor::new(Source::parse("ldap:corp").unwrap(), "sync");
    let m = create_member(&d, &okta, NewMember { anchor: Some("00u1".into()), ..member("pat") }).await;
    assert_eq!(m.source.as_str(), "scim:okta");
    let rename = |name: &str| Change::UpdateMember {
        id: m.id,
        patch: MemberPatch { display_name: Some(name.into()), ..Default::default() },
    };
    let err = d.apply_one(&console(), rename("Console")).await.unwrap_err();
    assert_eq!(err.code(), "not_owner");
    assert!(err.to_string().contains("scim:okta"), "{err}");
    assert_eq!(
        code(d.apply_one(&ad, Change::DeleteMember { id: m.id, reason: String::new() }).await),
        "not_owner"
    );
    d.apply_one(&okta, rename("Pat Okta")).await.unwrap();
    assert_eq!(d.store().member(m.id).await.unwrap().unwrap().display_name, "Pat Okta");
    // Anchors are unique per source, not across sources.
    assert_eq!(
        code(
            d.apply_one(
                &okta,
                Change::CreateMember(NewMember { anchor: Some("00u1".into()), ..member("pat2") })
            )
            .await
        ),
        "conflict"
    );
    create_member(&d, &ad, NewMember { anchor: Some("00u1".into()), ..member("pat3") }).await;
}

async fn groups_track_members(b: Backend) {
    let db = TestDb::new(b);
    let d = db.open().await;
    let owner = create_member(&d, &console(), member("owner")).await;
    let others: Vec<Uuid> = {
        let mut v = Vec::new();
        for i in 0..5 {
            v.push(create_member(&d, &console(), member(&format!("g{i}"))).await.id);
        }
        v
    };
    let created = d
        .apply_one(
            &console(),
            Change::CreateGroup(NewGroup {
                name: "Lunch".into(),
                owner_id: Some(owner.id),
                members: others[..3].to_vec(),
                ..Default::default()
            }),
        )
        .await
        .unwrap();
    let Applied::Group(g) = created else { panic!() };
    let s = d.store();
    assert_eq!(s.group_member_ids(g.id).await.unwrap().len(), 3);
    let added = d
        .apply_one(&console(), Change::AddGroupMembers { id: g.id, members: others[2..].to_vec() })
        .await
        .unwrap();
    assert_eq!(added, Applied::GroupMembers { id: g.id, changed: 2 }, "only the new ones count");
    let removed = d
        .apply_one(&console(), Change::RemoveGroupMembers { id: g.id, members: vec![others[0]] })
        .await
        .unwrap();
    assert_eq!(removed, Applied::GroupMembers { id: g.id, changed: 1 });
    let mut expect = others[1..].to_vec();
    expect.sort();
    assert_eq!(s.group_member_ids(g.id).await.unwrap(), expect);
    let ghost = Change::AddGroupMembers { id: g.id, members: vec![Uuid::now_v7()] };
    assert_eq!(code(d.apply_one(&console(), ghost).await), "invalid");

    // Deleting the owner and a member leaves the group consistent.
    d.apply_one(&console(), Change::DeleteMember { id: owner.id, reason: String::new() }).await.unwrap();
    d.apply_one(&console(), Change::DeleteMember { id: others[1], reason: String::new() }).await.unwrap();
    assert_eq!(s.group(g.id).await.unwrap().unwrap().owner_id, None);
    assert_eq!(s.group_member_ids(g.id).await.unwrap().len(), 3);
    d.apply_one(
        &console(),
        Change::UpdateGroup {
            id: g.id,
            name: Some("Dinner".into()),
            owner_id: Some(Some(others[2])),
            anchor: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(s.group(g.id).await.unwrap().unwrap().name, "Dinner");
    d.apply_one(&console(), Change::DeleteGroup { id: g.id }).await.unwrap();
    assert!(s.group(g.id).await.unwrap().is_none());
    assert_eq!(s.counts().await.unwrap().groups, 0);
}

async fn updates_are_audited_and_queued(b: Backend) {
    let db = TestDb::new(b);
    let d = db.open().await;
    let unit = create_unit(&d, None, "Ops").await;
    let m = create_member(&d, &console(), member("sam")).await;
    let patch = MemberPatch {
        title: Some(Some("Lead".into())),
        primary_org_unit_id: Some(Some(unit)),
        emails: Some(vec![Email { address: "sam@example.com".into(), kind: "work".into(), primary: true }]),
        ..Default::default()
    };
    let Applied::Member(after) =
        d.apply_one(&console(), Change::UpdateMember { id: m.id, patch }).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(after.version, 2);
    let suspend = MemberPatch { state: Some(MemberState::Suspended), ..Default::default() };
    d.apply_one(&console(), Change::UpdateMember { id: m.id, patch: suspend }).await.unwrap();
    // A patch that changes nothing writes nothing.
    d.apply_one(&console(), Change::UpdateMember { id: m.id, patch: MemberPatch::default() }).await.unwrap();

    let s = d.store();
    let stored = s.member(m.id).await.unwrap().unwrap();
    assert_eq!(stored.state, MemberState::Suspended);
    assert_eq!(stored.version, 3);
    let audit = s.audit_for("member", &m.id.to_string()).await.unwrap();
    assert_eq!(
        audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(),
        ["member.create", "member.update", "member.suspend"]
    );
    assert_eq!(audit[1].before.as_ref().unwrap()["title"], serde_json::Value::Null);
    assert_eq!(audit[1].after.as_ref().unwrap()["title"], "Lead");
    assert_eq!(audit[1].actor, "admin");
    let outbox = s.outbox_pending(100).await.unwrap();
    let keys: BTreeSet<String> = outbox.iter().map(|o| o.idempotency_key.clone()).collect();
    assert_eq!(outbox.len(), 3);
    assert_eq!(keys.len(), 3, "each message has its own idempotency key");
    assert!(outbox.iter().all(|o| o.payload["member_id"] == m.id.to_string()));
    // What receivers get: the member as it was after that change, queued and not yet tried.
    let last =
        outbox.iter().find(|o| o.idempotency_key.ends_with(":3")).expect("the third version's message");
    assert_eq!((last.state.as_str(), last.attempts), ("pending", 0));
    assert_eq!(last.payload["login_name"], stored.login_name.as_str());
    assert_eq!(last.payload["account_number"], stored.account_number);
    assert_eq!(last.payload["state"], "suspended");
    assert_eq!(last.payload["emails"], serde_json::to_value(&stored.emails).unwrap());
    assert_eq!(last.payload["mobile"], serde_json::to_value(&stored.mobile).unwrap());
    let missing = Change::UpdateMember { id: Uuid::now_v7(), patch: MemberPatch::default() };
    assert_eq!(code(d.apply_one(&console(), missing).await), "not_found");
    let bad_unit = MemberPatch { org_unit_ids: Some(vec![Uuid::now_v7()]), ..Default::default() };
    assert_eq!(
        code(d.apply_one(&console(), Change::UpdateMember { id: m.id, patch: bad_unit }).await),
        "invalid"
    );
    let own_manager = MemberPatch { manager_id: Some(Some(m.id)), ..Default::default() };
    assert_eq!(
        code(d.apply_one(&console(), Change::UpdateMember { id: m.id, patch: own_manager }).await),
        "invalid"
    );
}

async fn tokens_are_stored_hashed(b: Backend) {
    let db = TestDb::new(b);
    let d = db.open().await;
    let secret = d.create_token(&console(), "okta", false).await.unwrap();
    assert!(secret.starts_with("rst_") && secret.len() == 68);
    assert_eq!(code(d.create_token(&console(), "okta", false).await), "conflict");
    assert_eq!(code(d.create_token(&console(), "bad name", false).await), "invalid");
    let s = d.store();
    assert_eq!(
        s.token_by_hash(&roster::access::tokens::hash(&secret)).await.unwrap().map(|t| t.name).as_deref(),
        Some("okta")
    );
    assert_eq!(s.token_by_hash(&roster::access::tokens::hash("rst_wrong")).await.unwrap(), None);
    let listed = s.tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].last_used_at.is_some());
    // Verified once, then from the cache; revoking through the same service empties it.
    assert_eq!(d.authenticate_token(&secret).await.unwrap().map(|t| t.name).as_deref(), Some("okta"));
    assert_eq!(d.authenticate_token(&secret).await.unwrap().map(|t| t.name).as_deref(), Some("okta"));
    assert_eq!(d.authenticate_token("rst_wrong").await.unwrap(), None);
    d.revoke_token(&console(), "okta").await.unwrap();
    assert_eq!(d.authenticate_token(&secret).await.unwrap(), None, "revoked at once");
    assert_eq!(s.token_by_hash(&roster::access::tokens::hash(&secret)).await.unwrap(), None);
    assert_eq!(code(d.revoke_token(&console(), "okta").await), "not_found");
    // The name stays reserved after revocation (it is the source's identity); rotation gives
    // the same source a new secret.
    assert_eq!(code(d.create_token(&console(), "okta", false).await), "conflict");
    let rotated = d.rotate_token(&console(), "okta").await.unwrap();
    assert_eq!(d.authenticate_token(&rotated).await.unwrap().map(|t| t.name).as_deref(), Some("okta"));
    assert_eq!(d.authenticate_token(&secret).await.unwrap(), None, "the old secret stays dead");
    assert_eq!(s.tokens().await.unwrap().len(), 1);
}

async fn enterprise_profile_and_password(b: Backend) {
    let db = TestDb::new(b);
    let d = db.open().await;
    let patch = EnterprisePatch {
        name: Some("Example Holdings".into()),
        address: Some(Some("1 Main St".into())),
        contact_email: Some(Some("IT@Example.com".into())),
        ..Default::default()
    };
    let Applied::Enterprise(e) = d.apply_one(&console(), Change::UpdateEnterprise(patch)).await.unwrap()
    else {
        panic!()
    };
    assert_eq!((e.name.as_str(), e.contact_email.as_deref()), ("Example Holdings", Some("it@example.com")));
    create_member(&d, &console(), member("first")).await;
    let domain = EnterprisePatch { mail_domain: Some("example.org".into()), ..Default::default() };
    assert_eq!(code(d.apply_one(&console(), Change::UpdateEnterprise(domain)).await), "invalid");

    assert_eq!(
        code(d.set_super_password(&console(), &db.cfg.enterprise.seed(), "short", None).await),
        "invalid"
    );
    d.set_super_password(&console(), &db.cfg.enterprise.seed(), "a much longer password", None)
        .await
        .unwrap();
    let hash = d.store().super_password_hash().await.unwrap().unwrap();
    assert!(roster::secret::verify("a much longer password", &hash));
    assert!(!d.store().enterprise().await.unwrap().unwrap().password_must_change);
    let audit = d.store().audit_for("enterprise", &e.enterprise_id).await.unwrap();
    let last = audit.last().unwrap();
    assert_eq!(last.action, "enterprise.password_reset");
    assert!(last.after.is_none() && last.before.is_none(), "no secret in the audit log");
}
