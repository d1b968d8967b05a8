//! The message record archive over real HTTP against a running rosterd, on both stores: ingest
//! (JSON Lines, blobs, XMPP posts from a real ejabberd), the read API, search recall against a
//! `LIKE` scan, deleted accounts and reused numbers, and what bad input gets.

use reqwest::StatusCode;
use roster::access::store::TokenKind;
use roster::archive::{Search, Viewer};
use roster::directory::model::{Actor, Email, Source};
use roster::directory::{Change, NewMember};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::common::{Backend, Opened, TestDb, console, create_member, member, on_both_stores};

/// A running rosterd (with its console, [`crate::admin::Console`]) with an `archive` token (the
/// IM server `chat`) and an `archive-read` one (`vault`).
pub struct Server {
    pub url: String,
    pub ingest: String,
    pub read: String,
    pub http: reqwest::Client,
    pub db: Opened,
    pub console: crate::admin::Console,
}

impl Server {
    pub async fn start(backend: Backend, tune: impl FnOnce(&mut roster::config::Config)) -> Server {
        let export_dir = std::env::temp_dir().join(format!("roster-exports-{}", Uuid::new_v4()));
        let c = crate::admin::Console::start(backend, |cfg| {
            cfg.archive.im_domains = vec!["localhost".into()];
            cfg.archive.export_dir = export_dir;
            tune(cfg)
        })
        .await;
        let db = c.directory.clone();
        let ingest =
            db.access().create_token_of(&console(), "chat", TokenKind::Archive, false).await.unwrap();
        let read =
            db.access().create_token_of(&console(), "vault", TokenKind::ArchiveRead, false).await.unwrap();
        let url = c.base.trim_end_matches('/').to_owned();
        Server { url, ingest, read, http: crate::common::http(), db, console: c }
    }

    /// Posts JSON Lines with the ingest token.
    pub async fn post(&self, lines: &[Value]) -> (StatusCode, Value) {
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        self.post_raw(body.into_bytes()).await
    }

    pub async fn post_raw(&self, body: Vec<u8>) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}/api/v1/archive/messages", self.url))
            .bearer_auth(&self.ingest)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /api/v1/archive/messages?...` with the read token.
    pub async fn read(&self, query: &[(&str, &str)]) -> (StatusCode, Value) {
        let qs: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(query).finish();
        let r = self
            .http
            .get(format!("{}/api/v1/archive/messages?{qs}", self.url))
            .bearer_auth(&self.read)
            .send()
            .await
            .unwrap();
        (r.status(), r.json().await.unwrap_or(Value::Null))
    }

    /// Every message the read API gives for `query`, page after page: their texts.
    pub async fn read_all(&self, query: &[(&str, &str)]) -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut q: Vec<(&str, &str)> = query.to_vec();
            if let Some(c) = &cursor {
                q.push(("cursor", c));
            }
            let (status, body) = self.read(&q).await;
            assert_eq!(status, 200, "{body}");
            out.extend(
                body["messages"].as_array().unwrap().iter().map(|m| m["text"].as_str().unwrap().to_owned()),
            );
            match body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return out,
            }
        }
    }
}

pub fn line(id: &str, direct: [&str; 2], from: &str, at: &str, text: &str) -> Value {
    json!({"id": id, "conversation": {"direct": direct}, "from": from, "sent_at": at, "kind": "text", "text": text})
}

fn statuses(answer: &Value) -> Vec<String> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| match r["code"].as_str() {
            Some(code) => format!("{}:{}", r["status"].as_str().unwrap(), code),
            None => r["status"].as_str().unwrap().to_owned(),
        })
        .collect()
}

on_both_stores!(
    console_message_records,
    exports_hold_every_record_with_attachments_and_a_manifest,
    retention_purges_what_no_hold_keeps,
    ingest_resolves_parties_and_answers_each_line,
    deleted_accounts_keep_records_and_reused_numbers_start_empty,
    search_finds_every_substring_a_like_scan_finds
);

async fn ingest_resolves_parties_and_answers_each_line(backend: Backend) {
    let s = Server::start(backend, |_| {}).await;
    let alice = create_member(
        &s.db,
        &console(),
        NewMember {
            emails: vec![Email {
                address: "alice.w@mail.example.com".into(),
                kind: "work".into(),
                primary: true,
            }],
            ..member("alice")
        },
    )
    .await;
    let bob = create_member(&s.db, &console(), member("bob")).await;
    let an = alice.account_number.to_string();
    let huge = "x".repeat(70_000);
    let (status, answer) = s
        .post(&[
            line("m1", [&an, "bob"], &an, "2026-12-01T09:00:00Z", "新用户登录 hello"),
            line("m2", ["alice.w@mail.example.com", "bob@example.com"], "bob@example.com", "2026-12-01T09:01:00Z", "用户 reply"),
            line("m1", [&an, "bob"], &an, "2026-12-01T09:00:00Z", "the same id again"),
            json!("not an object"),
            line("m3", [&an, "partner@other.org"], "partner@other.org", "2026-12-01T09:02:00Z", "from outside"),
            line("m4", [&an, "bob"], "carol", "2026-12-01T09:03:00Z", "carol is not a party"),
            line("m5", [&an, "bob"], &an, "2026-12-01T09:04:00Z", &huge),
            json!({"id": "m6", "conversation": {"direct": [an, "bob"]}, "from": an, "sent_at": "2026-12-01T09:05:00Z",
                   "kind": "file", "text": "", "attachments": [{"sha256": "a".repeat(64), "mime": "application/x-msdownload", "size": 10, "name": "setup.exe"}]}),
            json!({"id": "m7", "conversation": {"group": "team", "owner": an, "name": "Team"}, "from": "bob", "sent_at": "2026-12-01T09:06:00Z", "text": "group hi"}),
            json!({"id": "m8", "conversation": {"group": "vendors", "owner": "boss@vendor.com"}, "from": "bob", "sent_at": "2026-12-01T09:07:00Z", "text": "vendor group"}),
            json!({"id": "m9", "conversation": {"direct": [an, "bob"]}, "from": an, "sent_at": "yesterday", "text": "bad time"}),
        ])
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        statuses(&answer),
        [
            "stored",
            "stored",
            "duplicate",
            "refused:malformed",
            "stored",
            "refused:not_a_party",
            "refused:too_large",
            "refused:attachment_type",
            "stored",
            "refused:group_not_kept",
            "refused:malformed"
        ]
    );
    assert_eq!((answer["stored"].as_u64(), answer["refused"].as_u64()), (Some(4), Some(6)));
    // Posting the same batch again stores nothing new.
    let (_, again) = s.post(&[line("m1", [&an, "bob"], &an, "2026-12-01T09:00:00Z", "x")]).await;
    assert_eq!(statuses(&again), ["duplicate"]);

    // The read API: alice's records, by her identity, oldest first, with who said what.
    let (status, page) = s.read(&[("member", &alice.id.to_string())]).await;
    assert_eq!(status, 200, "{page}");
    let msgs = page["messages"].as_array().unwrap();
    let texts: Vec<&str> = msgs.iter().map(|m| m["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["新用户登录 hello", "用户 reply", "from outside"]);
    assert_eq!(msgs[0]["from"]["member"], json!(alice.id));
    assert_eq!(msgs[1]["from"]["member"], json!(bob.id));
    assert_eq!(msgs[2]["from"]["external"], "partner@other.org");
    // By account number too, and paged by cursor both ways.
    let (_, first) = s.read(&[("member", &an), ("limit", "2")]).await;
    assert_eq!(first["messages"].as_array().unwrap().len(), 2);
    let next = first["next_cursor"].as_str().expect("a next page");
    let (_, second) = s.read(&[("member", &an), ("limit", "2"), ("cursor", next)]).await;
    assert_eq!(second["messages"][0]["text"], "from outside");
    assert!(second["next_cursor"].is_null());
    let prev = second["prev_cursor"].as_str().expect("a previous page");
    let (_, back) = s.read(&[("member", &an), ("limit", "2"), ("cursor", prev)]).await;
    assert_eq!(back["messages"], first["messages"]);
    // Group records, and the search over everything.
    assert_eq!(s.read_all(&[("q", "group")]).await, ["group hi"]);
    assert_eq!(s.read_all(&[("q", "用户")]).await, ["新用户登录 hello", "用户 reply"]);
    assert_eq!(s.read_all(&[("counterpart", "partner@other.org")]).await, ["from outside"]);

    // Tokens of the wrong kind, none, bad parameters.
    let r =
        s.http.get(format!("{}/api/v1/archive/messages", s.url)).bearer_auth(&s.ingest).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let r = s.http.post(format!("{}/api/v1/archive/messages", s.url)).body("{}\n").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = s
        .http
        .post(format!("{}/api/v1/archive/messages", s.url))
        .bearer_auth(&s.read)
        .body("{}\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(s.read(&[("from", "last week")]).await.0, 400);
    assert_eq!(s.read(&[("cursor", "zzz")]).await.0, 400);
    assert_eq!(s.read(&[("nonsense", "1")]).await.0, 400);
    let (status, empty) = s.post_raw(b"\n \n".to_vec()).await;
    assert_eq!(status, 400, "{empty}");
    // Not UTF-8 on one line: that line is refused, the next stored.
    let mut raw = b"\xff\xfe\n".to_vec();
    raw.extend(
        format!("{}\n", line("m10", [&an, "bob"], &an, "2026-12-01T10:00:00Z", "after a bad line"))
            .as_bytes(),
    );
    let (_, mixed) = s.post_raw(raw).await;
    assert_eq!(statuses(&mixed), ["refused:malformed", "stored"]);

    // Every read is an audit row naming who looked at whose records; ingest batches too.
    let filter = roster::directory::store::AuditFilter { limit: 1000, ..Default::default() };
    let audit = s.db.store().audit_search(&filter).await.unwrap();
    let seen: Vec<(&str, &str, Option<&str>)> =
        audit.iter().map(|a| (a.action.as_str(), a.actor.as_str(), a.object_id.as_deref())).collect();
    assert!(seen.contains(&("archive.view", "vault", Some(alice.id.to_string().as_str()))), "{seen:?}");
    assert!(seen.iter().any(|s| s.0 == "archive.search" && s.1 == "vault"));
    assert!(seen.iter().any(|s| s.0 == "archive.ingest" && s.1 == "chat" && s.2 == Some("im:chat")));
}

async fn deleted_accounts_keep_records_and_reused_numbers_start_empty(backend: Backend) {
    let s = Server::start(backend, |c| c.numbers.reuse_after_days = Some(0)).await;
    let old = create_member(&s.db, &console(), member("olga")).await;
    create_member(&s.db, &console(), member("bob")).await;
    let n = old.account_number.to_string();
    let lines: Vec<Value> = (0..5)
        .map(|i| {
            line(
                &format!("old{i}"),
                [&n, "bob"],
                &n,
                &format!("2026-11-0{}T10:00:00Z", i + 1),
                &format!("旧的记录 secret {i}"),
            )
        })
        .collect();
    s.post(&lines).await;
    s.db.apply_one(&console(), Change::DeleteMember { id: old.id, reason: "left".into() }).await.unwrap();
    // The number goes to a new member: a new identity.
    let new = create_member(
        &s.db,
        &console(),
        NewMember { account_number: Some(old.account_number), ..member("nina") },
    )
    .await;
    assert_eq!(new.account_number, old.account_number);
    assert_ne!(new.id, old.id);
    let (_, answer) = s.post(&[line("new0", [&n, "bob"], &n, "2026-12-02T10:00:00Z", "新的 hello")]).await;
    assert_eq!(statuses(&answer), ["stored"]);

    // The new holder: only the new record, by number or identity, browsing or searching.
    assert_eq!(s.read_all(&[("member", &n)]).await, ["新的 hello"]);
    assert_eq!(s.read_all(&[("member", &new.id.to_string())]).await, ["新的 hello"]);
    assert!(s.read_all(&[("member", &n), ("q", "secret")]).await.is_empty());
    assert!(s.read_all(&[("member", &n), ("q", "旧的")]).await.is_empty());
    // The deleted account: all five, under the tombstone's identity.
    let old_records = s.read_all(&[("member", &old.id.to_string())]).await;
    assert_eq!(old_records.len(), 5);
    assert!(old_records.iter().all(|t| t.starts_with("旧的记录")));
    let (_, page) = s.read(&[("member", &old.id.to_string()), ("limit", "1")]).await;
    assert_eq!(page["messages"][0]["from"]["deleted"], true);
    assert_eq!(page["messages"][0]["from"]["name"], "olga (test)");
    let deleted = s.db.store().archive_deleted_accounts(10).await.unwrap();
    assert_eq!(deleted, [(old.id, 5)]);

    // The console: the new holder's page holds one conversation of one message; the deleted
    // account's, all five; a search by the number finds nothing old.
    let mut admin = s.console.super_admin().await;
    let p = admin.get(&format!("/admin/records/members/{}", new.id)).await;
    assert!(p.has("<td>1</td>") && !p.has("<td>5</td>"), "{}", p.body);
    let p = admin.get(&format!("/admin/records?member={n}&q=secret")).await;
    assert!(p.has("no-records") && !p.has("旧的记录"), "{}", p.body);
    let p = admin.get(&format!("/admin/records?member={n}")).await;
    assert!(p.has("新的 hello") && !p.has("旧的记录"), "{}", p.body);
    let p = admin.get(&format!("/admin/records/members/{}", old.id)).await;
    assert!(p.has("deleted-notice") && p.has("<td>5</td>"), "{}", p.body);
    // Exports: the new holder's holds one record, the deleted account's all five.
    let archive = &s.db.0.archive;
    let viewer = Viewer { actor: console(), units: None };
    for (member, want) in [
        (new.id, vec!["新的 hello".to_owned()]),
        (old.id, (0..5).map(|i| format!("旧的记录 secret {i}")).collect()),
    ] {
        let scope = roster::archive::export::ExportScope { member: Some(member), ..Default::default() };
        let row = archive
            .request_export(&viewer, scope, roster::archive::export::Format::Jsonl, true)
            .await
            .unwrap();
        let row = archive.run_export(row, &|_, _| {}).await.unwrap();
        let files = untar(&std::fs::read(row.file.unwrap()).unwrap());
        let texts: Vec<String> = String::from_utf8(files["messages.jsonl"].clone())
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap()["text"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(texts, want);
    }
}

/// Deterministic text in four scripts: CJK words, Japanese, Korean, English, mixed.
pub fn corpus(n: usize, seed: u64) -> Vec<String> {
    const ZH: &[&str] = &[
        "用户", "登录", "系统", "会议", "项目", "审批", "报销", "客户", "合同", "明天", "下午", "开会",
        "数据", "新",
    ];
    const JA: &[&str] = &["ユーザー", "会議", "資料", "確認", "お願いします"];
    const KO: &[&str] = &["회의", "자료", "확인", "부탁드립니다"];
    const EN: &[&str] =
        &["meeting", "Report", "deadline", "USER", "login", "budget", "the", "at", "3pm", "OK"];
    let mut x = seed;
    let mut next = |m: usize| {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((x >> 33) as usize) % m
    };
    (0..n)
        .map(|_| {
            let words = 2 + next(8);
            let mut s = String::new();
            for _ in 0..words {
                let w = match next(4) {
                    0 => ZH[next(ZH.len())],
                    1 => JA[next(JA.len())],
                    2 => KO[next(KO.len())],
                    _ => EN[next(EN.len())],
                };
                s.push_str(w);
                if next(3) == 0 {
                    s.push(' ');
                }
                if next(10) == 0 {
                    s.push_str("，");
                }
            }
            s
        })
        .collect()
}

async fn search_finds_every_substring_a_like_scan_finds(backend: Backend) {
    let s = Server::start(backend, |_| {}).await;
    let a = create_member(&s.db, &console(), member("amy")).await;
    create_member(&s.db, &console(), member("ben")).await;
    let an = a.account_number.to_string();
    let texts = corpus(1500, 7);
    let lines: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            line(
                &format!("c{i}"),
                [&an, "ben"],
                if i % 2 == 0 { &an } else { "ben" },
                &format!("2026-10-01T00:00:{:02}.{:06}Z", i % 60, i),
                t,
            )
        })
        .collect();
    let (_, answer) = s.post(&lines).await;
    assert_eq!(answer["stored"], 1500, "{answer}");
    let archive = &s.db.0.archive;
    let viewer = Viewer { actor: Actor::new(Source::console(), "auditor"), units: None };
    // One and two characters in each script, words, a phrase across a space, case.
    let queries = [
        "用",
        "户",
        "用户",
        "户登",
        "会议",
        "新用",
        "ー",
        "ユーザー",
        "会",
        "회",
        "회의",
        "료확",
        "m",
        "meet",
        "EETI",
        "user",
        "login",
        "3pm",
        "ok",
        "the",
        "t",
        "用户 ",
        "，",
        "deadline会议",
        "o",
        "报销客户",
        "nothing-here",
        "의자",
    ];
    for q in queries {
        let mut found = Vec::new();
        let mut search = Search { text: Some(q.into()), limit: 200, ..Default::default() };
        loop {
            let page = archive.page(&viewer, &search).await.unwrap();
            found.extend(page.messages.iter().map(|m| m.id));
            match page.next_cursor {
                Some(c) => search.cursor = roster::archive::Cursor::parse(&c),
                None => break,
            }
        }
        found.sort_unstable();
        let oracle = s.db.store().archive_like(q, 100_000).await.unwrap();
        assert_eq!(found.len(), oracle.len(), "recall of {q:?}");
        assert_eq!(found, oracle, "{q:?}");
        // And the oracle is not empty for the queries that the texts hold.
        if q != "nothing-here" && texts.iter().any(|t| t.to_lowercase().contains(&q.to_lowercase())) {
            assert!(!oracle.is_empty(), "{q:?}");
        }
    }
}

/// A real ejabberd with `mod_post_log` posting to rosterd: two members sign in with real XMPP
/// clients, chat one-to-one and in a room, and the records appear under their identities.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejabberd_posts_chat_and_groupchat_records() {
    let s = Server::start(Backend::Sqlite, |_| {}).await;
    let alice = create_member(&s.db, &console(), member("alice")).await;
    let bob = create_member(&s.db, &console(), member("bob")).await;
    let post_url = format!("{}/api/v1/archive/xmpp?token={}", s.url, s.ingest);
    let ejabberd = crate::fixtures::ejabberd::Ejabberd::start(Some(&post_url)).await;
    ejabberd.register("alice", "pw-alice").await;
    ejabberd.register("bob", "pw-bob").await;
    ejabberd.create_room("team").await;
    let mut a = ejabberd.client("alice", "pw-alice").await;
    let mut b = ejabberd.client("bob", "pw-bob").await;
    a.chat("bob", "你好 Bob, <b>会议</b> at 3pm").await;
    b.chat("alice", "好的 see you").await;
    a.join("team", "alice").await;
    b.join("team", "bob").await;
    a.groupchat("team", "团队 standup in 5").await;
    b.groupchat("team", "收到").await;

    let mut texts = Vec::new();
    for _ in 0..100 {
        texts = s.read_all(&[]).await;
        if texts.len() >= 4 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(texts.len(), 4, "records so far: {texts:?}\nejabberd log:\n{}", ejabberd.log());
    for t in ["你好 Bob, <b>会议</b> at 3pm", "好的 see you", "团队 standup in 5", "收到"] {
        assert!(texts.iter().any(|x| x == t), "{t:?} in {texts:?}");
    }
    // One-to-one: both members' records, under their identities.
    let (_, page) = s.read(&[("member", &alice.id.to_string())]).await;
    let direct: Vec<&Value> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["conversation"]["kind"] == "direct")
        .collect();
    assert_eq!(direct.len(), 2, "{page}");
    // (mod_post_log posts each stanza as it passes; the two may arrive in either order.)
    let said =
        |who: Uuid| direct.iter().find(|m| m["from"]["member"] == json!(who)).map(|m| m["text"].clone());
    assert_eq!(said(alice.id), Some(json!("你好 Bob, <b>会议</b> at 3pm")));
    assert_eq!(said(bob.id), Some(json!("好的 see you")));
    // The room: one group conversation, kept (its first speaker, alice, is an employee).
    let (_, found) = s.read(&[("q", "团队")]).await;
    let group = &found["messages"][0]["conversation"];
    assert_eq!(group["kind"], "group", "{found}");
    assert_eq!(group["group"]["ext_id"], "team@conference.localhost");
    let gid = group["group"]["id"].as_i64().unwrap().to_string();
    let mut in_room = s.read_all(&[("group", &gid)]).await;
    in_room.sort();
    assert_eq!(in_room, ["团队 standup in 5", "收到"]);
    // A retried post of the same stanza is a duplicate, not a second record.
    let stanza = "<message from='alice@localhost/r' to='bob@localhost' type='chat' id='fixed-1'><body>once</body></message>";
    for expect in ["stored", "duplicate"] {
        let r = s
            .http
            .post(&post_url)
            .header("x-message-from", "alice@localhost/r")
            .header("x-message-to", "bob@localhost")
            .header("content-type", "text/xml")
            .body(stanza)
            .send()
            .await
            .unwrap();
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["status"], expect);
    }
}

/// What the XMPP endpoint answers to posts that are not records, and to posts without a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xmpp_posts_that_are_not_records_get_clear_answers() {
    let s = Server::start(Backend::Sqlite, |_| {}).await;
    create_member(&s.db, &console(), member("alice")).await;
    let post = |query: String, body: &'static str| {
        let http = s.http.clone();
        let url = format!("{}/api/v1/archive/xmpp{query}", s.url);
        async move {
            let r = http
                .post(url)
                .header("x-message-from", "alice@localhost/r")
                .header("x-message-to", "bob@localhost")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            (status, r.text().await.unwrap())
        }
    };
    let chat = "<message type='chat' id='1'><body>hi</body></message>";
    let (status, text) = post(String::new(), chat).await;
    assert_eq!(status, 401, "{text}");
    let (status, text) = post("?token=wrong-secret".into(), chat).await;
    assert_eq!(status, 401);
    assert!(!text.contains("wrong-secret"), "the answer must not echo the token: {text}");
    let (status, text) = post(format!("?token={}", s.read), chat).await;
    assert_eq!(status, 403, "{text}");
    let q = format!("?token={}", s.ingest);
    let (status, text) = post(q.clone(), "<iq type='get' id='x'/>").await;
    assert_eq!((status, text.contains("not_a_stanza")), (StatusCode::BAD_REQUEST, true), "{text}");
    let (status, _) = post(q.clone(), "<message><body>unclosed").await;
    assert_eq!(status, 400);
    let (status, _) = post(q.clone(), "plain text").await;
    assert_eq!(status, 400);
    let (status, text) = post(
        q.clone(),
        "<message type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
    )
    .await;
    assert_eq!((status, text.contains("ignored")), (StatusCode::OK, true), "{text}");
    // None of it was stored; a good one still is.
    assert!(s.read_all(&[]).await.is_empty());
    let (status, text) = post(q, chat).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(s.read_all(&[]).await, ["hi"]);
}

/// Attachments: checked against their hash, stored once, read back with their sniffed type.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_checked_stored_once_and_served_safely() {
    use sha2::Digest;
    let s = Server::start(Backend::Sqlite, |c| c.archive.max_blob_bytes = 4096).await;
    // A 1x1 PNG.
    let png = png();
    let sha = hex::encode(sha2::Sha256::digest(&png));
    let put = |path: String, body: Vec<u8>, token: String| {
        let http = s.http.clone();
        let url = format!("{}/api/v1/archive/blobs/{path}", s.url);
        async move {
            let r = http.put(url).bearer_auth(token).body(body).send().await.unwrap();
            let status = r.status();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let wrong = hex::encode(sha2::Sha256::digest(b"other bytes"));
    let (status, body) = put(wrong.clone(), png.clone(), s.ingest.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("hash_mismatch")),
        "{body}"
    );
    assert_eq!(put("not-a-hash".into(), png.clone(), s.ingest.clone()).await.0, 400);
    assert_eq!(put(sha.clone(), png.clone(), s.read.clone()).await.0, 403);
    let big = vec![7u8; 5000];
    let big_sha = hex::encode(sha2::Sha256::digest(&big));
    assert_eq!(put(big_sha, big, s.ingest.clone()).await.0, 413);
    let exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00PE\x00\x00".to_vec();
    let exe_sha = hex::encode(sha2::Sha256::digest(&exe));
    let (status, body) = put(exe_sha, exe, s.ingest.clone()).await;
    assert_eq!(status, 415, "{body}");
    let (status, body) = put(sha.clone(), png.clone(), s.ingest.clone()).await;
    assert_eq!((status, body["mime"].as_str()), (StatusCode::CREATED, Some("image/png")), "{body}");
    assert_eq!(put(sha.clone(), png.clone(), s.ingest.clone()).await.0, 200);
    assert!(s.db.store().archive_blob(&wrong).await.unwrap().is_none());
    let r = s
        .http
        .get(format!("{}/api/v1/archive/blobs/{sha}", s.url))
        .bearer_auth(&s.read)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().to_vec(), png);
}

/// A 1x1 PNG.
pub fn png() -> Vec<u8> {
    hex::decode(
        "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082",
    )
    .unwrap()
}

/// The console's *Message records*: search, a member's conversations, a conversation paged both
/// ways with image thumbnails, deleted accounts, and a scoped grant that sees only its subtree.
async fn console_message_records(backend: Backend) {
    use crate::admin::{Console, MEMBER_PW};
    use roster::directory::model::Permission;
    use sha2::Digest;
    let c = Console::start(backend, |_| {}).await;
    let d = &c.directory;
    let sales = crate::common::create_unit(d, None, "Sales").await;
    let rnd = crate::common::create_unit(d, None, "R&D").await;
    let in_unit = |login: &str, unit| NewMember { primary_org_unit_id: Some(unit), ..member(login) };
    let alice = create_member(d, &console(), in_unit("alice", sales)).await;
    let bob = create_member(d, &console(), in_unit("bob", rnd)).await;
    let carol = create_member(d, &console(), in_unit("carol", rnd)).await;
    let token = d.access().create_token_of(&console(), "chat", TokenKind::Archive, false).await.unwrap();
    let url = c.base.trim_end_matches('/').to_owned();
    let http = crate::common::http();
    let png = png();
    let sha = hex::encode(sha2::Sha256::digest(&png));
    let r = http
        .put(format!("{url}/api/v1/archive/blobs/{sha}"))
        .bearer_auth(&token)
        .body(png.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (a, b, k) =
        (alice.account_number.to_string(), bob.account_number.to_string(), carol.account_number.to_string());
    let mut lines: Vec<Value> = (0..120)
        .map(|i| {
            line(
                &format!("ab{i}"),
                [&a, &b],
                if i % 2 == 0 { &a } else { &b },
                &format!("2026-11-01T10:{:02}:{:02}Z", i / 60, i % 60),
                &format!("第{i}条 hello"),
            )
        })
        .collect();
    lines.push(line("kb", [&k, &b], &k, "2026-11-02T10:00:00Z", "carol's 秘密 note"));
    lines.push(json!({"id": "img", "conversation": {"direct": [a, b]}, "from": a, "sent_at": "2026-11-03T10:00:00Z", "kind": "image",
        "text": "", "attachments": [{"sha256": sha, "mime": "image/png", "size": png.len(), "name": "dot.png"}]}));
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let r = http
        .post(format!("{url}/api/v1/archive/messages"))
        .bearer_auth(&token)
        .body(body)
        .send()
        .await
        .unwrap();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["stored"], 122, "{answer}");

    // The super admin searches by member and text.
    let mut s = c.super_admin().await;
    let p = s.get(&format!("/admin/records?member={a}&q=%E7%AC%AC1%E6%9D%A1")).await; // 第1条
    assert_eq!(p.status, 200, "{}", p.body);
    assert!(p.has("第1条 hello") && !p.has("第2条 hello"), "{}", p.body);
    // A member's conversations, then one conversation paged both ways, images as thumbnails.
    let p = s.get(&format!("/admin/records/members/{}", alice.id)).await;
    assert_eq!(p.status, 200);
    let conv = {
        let i = p.body.find("/admin/records/conversations/").expect("a conversation link");
        let rest = &p.body[i + "/admin/records/conversations/".len()..];
        rest[..rest.find('"').unwrap()].to_owned()
    };
    assert!(p.has("121"), "alice's conversation with bob holds 121 messages: {}", p.body);
    let first = s.get(&format!("/admin/records/conversations/{conv}")).await;
    assert!(first.has("第0条 hello") && first.has("第49条 hello") && !first.has("第50条 hello"));
    let next = |page: &crate::admin::Page, id: &str| -> String {
        let marker = format!("id=\"{id}\" href=\"");
        let i = page.body.find(&marker).unwrap_or_else(|| panic!("no {id} link"));
        let rest = &page.body[i + marker.len()..];
        rest[..rest.find('"').unwrap()].replace("&amp;", "&").replace("&#38;", "&")
    };
    let second = s.get(&next(&first, "records-next")).await;
    assert!(second.has("第50条 hello") && second.has("第99条 hello") && !second.has("第49条 hello"));
    let third = s.get(&next(&second, "records-next")).await;
    assert!(third.has("第119条 hello") && third.has(&format!("/admin/records/blobs/{sha}")));
    assert!(!third.has("records-next"));
    let back = s.get(&next(&third, "records-prev")).await;
    assert!(back.has("第50条 hello") && back.has("第99条 hello") && !back.has("第100条 hello"));
    let img = http.get(format!("{url}/admin/records/blobs/{sha}")).send().await.unwrap();
    assert_eq!(img.url().path(), "/admin/login", "blobs need a session");
    let (status, headers, bytes) = s.get_bytes(&format!("/admin/records/blobs/{sha}"), &[]).await;
    assert_eq!((status, headers["content-type"].to_str().unwrap()), (StatusCode::OK, "image/png"));
    assert_eq!(headers["content-disposition"], "inline");
    assert_eq!(bytes, png);
    // An SVG (script inside) is never shown inline: a download, sandboxed, not typed as an image.
    let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#.to_vec();
    let svg_sha = hex::encode(sha2::Sha256::digest(&svg));
    let r = http
        .put(format!("{url}/api/v1/archive/blobs/{svg_sha}"))
        .bearer_auth(&token)
        .body(svg)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let (status, headers, _) = s.get_bytes(&format!("/admin/records/blobs/{svg_sha}"), &[]).await;
    assert_eq!(status, 200);
    assert!(headers["content-disposition"].to_str().unwrap().starts_with("attachment"));
    assert_ne!(headers["content-type"], "image/svg+xml");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["content-security-policy"].to_str().unwrap().contains("sandbox"));

    // Bad input: a clear error by the field.
    let p = s.get("/admin/records?from=yesterday").await;
    assert_eq!(p.status, 400);
    assert!(p.has("from-error"));
    let p = s.get("/admin/records?member=nobody-here").await;
    assert_eq!(p.status, 400);
    assert!(p.has("member-error"));

    // Carol leaves: her records stay, under Deleted accounts.
    d.apply_one(&console(), Change::DeleteMember { id: carol.id, reason: "left".into() }).await.unwrap();
    let p = s.get("/admin/records").await;
    assert!(
        p.has("deleted-accounts") && p.has(&format!("/admin/records/members/{}", carol.id)),
        "{}",
        p.body
    );
    let p = s.get(&format!("/admin/records/members/{}", carol.id)).await;
    assert!(p.has("deleted-notice"));

    // A viewer scoped to Sales sees alice's records (she is in Sales), not carol's or bob's own.
    c.member_with("auditor", Some(sales), &[(&[Permission::ViewMessages], Some(sales))]).await;
    let mut v = c.session();
    assert_eq!(v.sign_in("auditor", MEMBER_PW).await.status, 303);
    let p = v.get("/admin/records?q=hello").await;
    assert!(p.has("第0条 hello"), "{}", p.body);
    let p = v.get("/admin/records?q=%E7%A7%98%E5%AF%86").await; // 秘密
    assert!(p.has("no-records") && !p.has("carol's"), "{}", p.body);
    assert_eq!(v.get(&format!("/admin/records/members/{}", bob.id)).await.status, 404);
    assert_eq!(v.get(&format!("/admin/records/members/{}", carol.id)).await.status, 404);
    assert!(!v.get("/admin/records").await.has("deleted-accounts"));
    // Every look is an audit row.
    assert!(c.audit_count("archive.search").await >= 3);
    assert!(c.audit_count("archive.view").await >= 4);
}

/// The files in a tar: name to bytes.
pub fn untar(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut out = std::collections::BTreeMap::new();
    let mut ar = tar::Archive::new(bytes);
    for entry in ar.entries().unwrap() {
        let mut e = entry.unwrap();
        let name = e.path().unwrap().display().to_string();
        let mut buf = Vec::new();
        e.read_to_end(&mut buf).unwrap();
        out.insert(name, buf);
    }
    out
}

/// Exports from the console (queued, run by the job, progress shown) in each format, downloaded
/// whole and resumed with `Range`; the manifest's counts and sums match what is in the file.
async fn exports_hold_every_record_with_attachments_and_a_manifest(backend: Backend) {
    use crate::admin::Console;
    use sha2::Digest;
    let c = Console::start(backend, |cfg| {
        cfg.archive.export_dir = std::env::temp_dir().join(format!("roster-exports-{}", Uuid::new_v4()))
    })
    .await;
    let d = &c.directory;
    let alice = create_member(d, &console(), member("alice")).await;
    let bob = create_member(d, &console(), member("bob")).await;
    let token = d.access().create_token_of(&console(), "chat", TokenKind::Archive, false).await.unwrap();
    let url = c.base.trim_end_matches('/').to_owned();
    let http = crate::common::http();
    let png = png();
    let sha = hex::encode(sha2::Sha256::digest(&png));
    http.put(format!("{url}/api/v1/archive/blobs/{sha}"))
        .bearer_auth(&token)
        .body(png.clone())
        .send()
        .await
        .unwrap();
    let (a, b) = (alice.account_number.to_string(), bob.account_number.to_string());
    let mut lines: Vec<Value> = (0..2500)
        .map(|i| {
            line(
                &format!("x{i}"),
                [&a, &b],
                if i % 3 == 0 { &b } else { &a },
                &format!("2026-11-{:02}T{:02}:{:02}:00Z", 1 + i / 1440, (i / 60) % 24, i % 60),
                &format!("From the line {i}, \"quoted\", 中文"),
            )
        })
        .collect();
    lines.push(json!({"id": "img", "conversation": {"direct": [a, b]}, "from": a, "sent_at": "2026-11-20T10:00:00Z", "kind": "image",
        "text": "", "attachments": [{"sha256": sha, "mime": "image/png", "size": png.len(), "name": "dot.png"}]}));
    lines.push(line("other", ["bob", "partner@other.org"], "bob", "2026-11-21T10:00:00Z", "not alice's"));
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let r = http
        .post(format!("{url}/api/v1/archive/messages"))
        .bearer_auth(&token)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["stored"], 2502);

    let mut s = c.super_admin().await;
    s.get("/admin/records").await;
    for format in ["jsonl", "csv", "eml"] {
        let p = s.post("/admin/records/exports", &[("member", &a), ("format", format)]).await;
        assert_eq!(p.status, 303, "{}", p.body);
        let p = s.follow(&p).await;
        assert!(p.has("Export queued"), "{}", p.body);
        // The scheduler's job runs it (every 5 s); run it now rather than wait.
        d.0.archive.run_queued_exports().await.unwrap();
        let table = s.get("/admin/records/exports").await;
        assert!(table.has("2501 / 2501") && table.has("ready"), "{}", table.body);
        let row = d.store().archive_exports(1).await.unwrap().remove(0);
        let (status, headers, tar) =
            s.get_bytes(&format!("/admin/records/exports/{}/download", row.id), &[]).await;
        assert_eq!(status, 200);
        assert_eq!(headers["accept-ranges"], "bytes");
        assert_eq!(
            hex::encode(sha2::Sha256::digest(&tar)),
            row.sha256.clone().unwrap(),
            "the row's sum is the file's"
        );
        // Resume: a middle range, the last bytes, and one past the end.
        let (status, headers, part) = s
            .get_bytes(&format!("/admin/records/exports/{}/download", row.id), &[("range", "bytes=100-1123")])
            .await;
        assert_eq!(status, 206);
        assert_eq!(headers["content-range"], format!("bytes 100-1123/{}", tar.len()));
        assert_eq!(part, tar[100..1124]);
        let (status, _, tail) = s
            .get_bytes(&format!("/admin/records/exports/{}/download", row.id), &[("range", "bytes=-10")])
            .await;
        assert_eq!((status, tail.as_slice()), (StatusCode::PARTIAL_CONTENT, &tar[tar.len() - 10..]));
        let (status, _, _) = s
            .get_bytes(
                &format!("/admin/records/exports/{}/download", row.id),
                &[("range", &format!("bytes={}-", tar.len() + 5))],
            )
            .await;
        assert_eq!(status, 416);

        let files = untar(&tar);
        let manifest: Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        assert_eq!(manifest["messages"], 2501);
        assert_eq!(manifest["attachments"], 1);
        for f in manifest["files"].as_array().unwrap() {
            let bytes = &files[f["path"].as_str().unwrap()];
            assert_eq!(f["size"], bytes.len(), "{f}");
            assert_eq!(f["sha256"].as_str().unwrap(), hex::encode(sha2::Sha256::digest(bytes)), "{f}");
        }
        assert_eq!(files[&format!("attachments/{sha}")], png);
        match format {
            "jsonl" => {
                let text = String::from_utf8(files["messages.jsonl"].clone()).unwrap();
                let msgs: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
                assert_eq!(msgs.len(), 2501);
                assert!(msgs.iter().all(|m| m["text"] != "not alice's"));
                assert_eq!(msgs[1]["text"], "From the line 1, \"quoted\", 中文");
                assert_eq!(msgs[1]["from"]["member"], json!(alice.id));
            }
            "csv" => {
                let mut r = csv::Reader::from_reader(files["messages.csv"].as_slice());
                let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
                assert_eq!(rows.len(), 2501);
                assert_eq!(&rows[1][11], "From the line 1, \"quoted\", 中文");
                assert_eq!(&rows[1][8], a.as_str());
            }
            _ => {
                let mbox = String::from_utf8(files["messages.mbox"].clone()).unwrap();
                let separators = mbox.lines().filter(|l| l.starts_with("From ")).count();
                assert_eq!(
                    separators, 2501,
                    "one mbox entry a record; body lines starting 'From ' are quoted"
                );
                assert!(mbox.contains(">From the line 1"), "mboxrd quoting");
                assert!(mbox.contains("alice@example.com") && mbox.contains("bob@example.com"));
            }
        }
    }
    assert_eq!(c.audit_count("archive.export").await, 3);
    assert!(c.audit_count("archive.download").await >= 3);
    // A viewer scoped to a unit cannot export everything, nor download others' exports.
    let sales = crate::common::create_unit(d, None, "Sales").await;
    c.member_with(
        "scoped",
        Some(sales),
        &[(&[roster::directory::model::Permission::ViewMessages], Some(sales))],
    )
    .await;
    let mut v = c.session();
    v.sign_in("scoped", crate::admin::MEMBER_PW).await;
    v.get("/admin/records").await;
    assert_eq!(v.post("/admin/records/exports", &[("format", "jsonl")]).await.status, 400);
    assert_eq!(v.post("/admin/records/exports", &[("member", &a), ("format", "jsonl")]).await.status, 404);
    let row = d.store().archive_exports(1).await.unwrap().remove(0);
    assert_eq!(v.get_bytes(&format!("/admin/records/exports/{}/download", row.id), &[]).await.0, 404);
    // Past archive.export_ttl_hours the files are deleted and the download is gone.
    let file = row.file.clone().unwrap();
    assert!(std::path::Path::new(&file).exists());
    let later = chrono::Utc::now() + chrono::Duration::hours(c._db.cfg.archive.export_ttl_hours + 1);
    assert_eq!(d.0.archive.expire_exports(later).await.unwrap(), 3);
    assert!(!std::path::Path::new(&file).exists());
    assert_eq!(s.get_bytes(&format!("/admin/records/exports/{}/download", row.id), &[]).await.0, 404);
    let _ = std::fs::remove_dir_all(&c._db.cfg.archive.export_dir);
}

/// Retention per subtree deletes old records; a legal hold keeps them; each purge is audited.
async fn retention_purges_what_no_hold_keeps(backend: Backend) {
    use roster::archive::retention::HoldTarget;
    let s = Server::start(backend, |_| {}).await;
    let d = &s.db;
    let sales = crate::common::create_unit(d, None, "Sales").await;
    let east = crate::common::create_unit(d, Some(sales), "East").await;
    let rnd = crate::common::create_unit(d, None, "R&D").await;
    let in_unit = |login: &str, unit| NewMember { primary_org_unit_id: Some(unit), ..member(login) };
    let alice = create_member(d, &console(), in_unit("alice", east)).await;
    let bob = create_member(d, &console(), in_unit("bob", sales)).await;
    let carol = create_member(d, &console(), in_unit("carol", rnd)).await;
    let now = chrono::Utc::now();
    let ago = |days: i64| (now - chrono::Duration::days(days)).to_rfc3339();
    let (a, b, k) =
        (alice.account_number.to_string(), bob.account_number.to_string(), carol.account_number.to_string());
    s.post(&[
        line("ab-old", [&a, &b], &a, &ago(60), "old sales talk"),
        line("ab-new", [&a, &b], &b, &ago(5), "new sales talk"),
        line("ak-old", [&a, &k], &a, &ago(60), "old talk with R&D"),
        line("ax-old", [&a, "x@partner.org"], &a, &ago(60), "old talk outside"),
    ])
    .await;
    let archive = &d.0.archive;
    let admin = console();
    // No rules: nothing goes.
    assert_eq!(archive.purge(now).await.unwrap().messages, 0);
    archive.set_retention(&admin, sales, Some(30)).await.unwrap();
    assert!(archive.set_retention(&admin, sales, Some(0)).await.is_err());
    // A hold on bob keeps the talk he is in.
    let hold = archive.add_hold(&admin, HoldTarget::Member, bob.id, "case 42").await.unwrap();
    let purged = archive.purge(now).await.unwrap();
    assert_eq!(purged.messages, 1, "only alice's talk with the outside: {purged:?}");
    let left = s.read_all(&[]).await;
    assert!(
        left.contains(&"old sales talk".to_owned()) && !left.contains(&"old talk outside".to_owned()),
        "{left:?}"
    );
    assert!(left.contains(&"old talk with R&D".to_owned()), "carol's unit has no rule");
    archive.release_hold(&admin, hold.id).await.unwrap();
    assert!(archive.release_hold(&admin, hold.id).await.is_err(), "released once");
    // A hold on the unit over alice keeps hers too.
    let unit_hold = archive.add_hold(&admin, HoldTarget::Unit, east, "audit").await.unwrap();
    assert_eq!(archive.purge(now).await.unwrap().messages, 0);
    archive.release_hold(&admin, unit_hold.id).await.unwrap();
    assert_eq!(archive.purge(now).await.unwrap().messages, 1);
    let mut left = s.read_all(&[]).await;
    left.sort();
    assert_eq!(left, ["new sales talk", "old talk with R&D"]);
    let f = roster::directory::store::AuditFilter {
        action: Some("archive.".into()),
        limit: 1000,
        ..Default::default()
    };
    let actions: Vec<String> =
        d.store().audit_search(&f).await.unwrap().into_iter().map(|a| a.action).collect();
    assert_eq!(actions.iter().filter(|a| *a == "archive.purge").count(), 2);
    assert!(
        actions.contains(&"archive.retention".to_owned())
            && actions.contains(&"archive.hold_release".to_owned())
    );
}

/// `rosterd archive export` runs an export at once (a progress bar on a terminal) and prints
/// the file; `retention` and `hold` manage the rules; bad arguments get clear errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_exports_and_manages_retention() {
    use crate::daemon::{rosterd, run, text};
    let tmp = TestDb::new(Backend::Sqlite);
    let db = tmp.open().await;
    let alice = create_member(&db, &console(), member("alice")).await;
    create_member(&db, &console(), member("bob")).await;
    let unit = crate::common::create_unit(&db, None, "Sales").await;
    let lines: Vec<_> = (0..300)
        .map(|i| {
            (
                i + 1,
                Ok(serde_json::from_value(line(
                    &format!("m{i}"),
                    ["alice", "bob"],
                    "alice",
                    &format!("2026-11-01T10:{:02}:{:02}Z", i / 60, i % 60),
                    &format!("hello {i}"),
                ))
                .unwrap()),
            )
        })
        .collect();
    let actor = Actor::new(Source::parse("im:chat").unwrap(), "chat");
    let out = db.0.archive.ingest(&actor, lines).await.unwrap();
    assert_eq!(out.iter().filter(|o| o.status == roster::archive::ingest::Status::Stored).count(), 300);
    db.0.store.close().await;
    let envs = [
        ("ROSTER_DATABASE__URL", tmp.cfg.database.url.clone()),
        ("ROSTER_ENTERPRISE__MAIL_DOMAIN", "example.com".to_owned()),
        ("ROSTER_ARCHIVE__EXPORT_DIR", tmp.dir.path().join("exports").display().to_string()),
    ];
    let cli = |args: &[&str]| {
        run(rosterd(tmp.dir.path()).args(args).envs(envs.iter().map(|(k, v)| (*k, v.as_str()))))
    };
    let target = tmp.dir.path().join("alice.tar");
    let o = cli(&[
        "archive",
        "export",
        "--member",
        &alice.account_number.to_string(),
        "--format",
        "csv",
        "--to",
        "2026-11-01",
        "--out",
        target.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), target.display().to_string());
    assert!(text(&o.stderr).contains("exported 300 messages"), "{}", text(&o.stderr));
    let files = untar(&std::fs::read(&target).unwrap());
    assert_eq!(csv::Reader::from_reader(files["messages.csv"].as_slice()).records().count(), 300);
    // A range that holds nothing, and bad arguments.
    let o = cli(&[
        "archive",
        "export",
        "--member",
        &alice.id.to_string(),
        "--from",
        "2026-12-01",
        "--out",
        target.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("exported 0 messages"));
    let o = cli(&["archive", "export", "--member", "999999"]);
    assert!(!o.status.success() && text(&o.stderr).contains("no member holds 999999"), "{}", text(&o.stderr));
    let o = cli(&["archive", "export", "--format", "pdf"]);
    assert!(!o.status.success() && text(&o.stderr).contains("jsonl, csv or eml"), "{}", text(&o.stderr));
    let o = cli(&["archive", "export", "--from", "2026-12-02", "--to", "2026-12-01"]);
    assert!(!o.status.success() && text(&o.stderr).contains("after from"), "{}", text(&o.stderr));
    // Retention and holds.
    let o = cli(&["archive", "retention", "set", "--unit", &unit.to_string(), "--days", "90"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(text(&cli(&["archive", "retention", "list"]).stdout).contains(&format!("{unit}     90")));
    let o = cli(&["archive", "retention", "set", "--unit", &Uuid::new_v4().to_string(), "--days", "90"]);
    assert!(!o.status.success());
    let o = cli(&["archive", "hold", "add", "--member", &alice.id.to_string(), "--reason", "case 7"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let hold = text(&o.stdout).trim().to_owned();
    assert!(text(&cli(&["archive", "hold", "list"]).stdout).contains("case 7"));
    assert!(cli(&["archive", "hold", "release", &hold]).status.success());
    assert!(!cli(&["archive", "hold", "release", &hold]).status.success());
    let o = cli(&["archive", "purge"]);
    assert!(o.status.success() && text(&o.stdout).contains("deleted 0 messages"), "{}", text(&o.stdout));
}

/// A request over archive.max_request_bytes gets 413 and stores nothing; the rest of the HTTP
/// surface keeps its own, smaller limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_requests_are_refused_whole() {
    let s = Server::start(Backend::Sqlite, |c| {
        c.archive.max_request_bytes = 64 * 1024;
        c.http.max_body_bytes = 16 * 1024;
    })
    .await;
    create_member(&s.db, &console(), member("alice")).await;
    create_member(&s.db, &console(), member("bob")).await;
    // 40 KiB: over the general limit, under the archive's.
    let lines: Vec<Value> = (0..100)
        .map(|i| line(&format!("s{i}"), ["alice", "bob"], "alice", "2026-12-01T10:00:00Z", &"字".repeat(120)))
        .collect();
    let (status, answer) = s.post(&lines).await;
    assert_eq!((status, answer["stored"].as_u64()), (StatusCode::OK, Some(100)), "{answer}");
    // 100 KiB: over the archive's limit.
    let lines: Vec<Value> = (0..250)
        .map(|i| line(&format!("b{i}"), ["alice", "bob"], "alice", "2026-12-01T11:00:00Z", &"字".repeat(120)))
        .collect();
    let (status, answer) = s.post(&lines).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "too_large");
    assert_eq!(s.read_all(&[]).await.len(), 100, "nothing of the refused request was stored");
    let r = s.http.post(format!("{}/scim/v2/Users", s.url)).body(vec![b'x'; 20 * 1024]).send().await.unwrap();
    assert_eq!(r.status(), 413, "SCIM keeps http.max_body_bytes");
}
