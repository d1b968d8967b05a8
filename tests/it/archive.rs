//! The message record archive over real HTTP against a running rosterd, on both stores: ingest
//! (JSON Lines, blobs, XMPP posts from a real ejabberd), the read API, search recall against a
//! `LIKE` scan, deleted accounts and reused numbers, and what bad input gets.

use reqwest::StatusCode;
use roster::access::store::TokenKind;
use roster::archive::{Search, Viewer};
use roster::directory::model::{Actor, Email, Source};
use roster::directory::{Change, NewMember};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::common::{Backend, Opened, TestDb, console, create_member, member, on_both_stores};

/// A running rosterd with an `archive` token (the IM server `chat`) and an `archive-read` one.
pub struct Server {
    pub url: String,
    pub ingest: String,
    pub read: String,
    pub http: reqwest::Client,
    pub db: Opened,
    pub _tmp: TestDb,
    stop: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Server {
    pub async fn start(backend: Backend, tune: impl FnOnce(&mut roster::config::Config)) -> Server {
        let mut tmp = TestDb::new(backend);
        tmp.cfg.archive.im_domains = vec!["localhost".into()];
        tmp.cfg.archive.export_dir = tmp.dir.path().join("exports");
        tune(&mut tmp.cfg);
        let db = tmp.open().await;
        let ingest =
            db.access().create_token_of(&console(), "chat", TokenKind::Archive, false).await.unwrap();
        let read =
            db.access().create_token_of(&console(), "vault", TokenKind::ArchiveRead, false).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        tokio::spawn(roster::app::run(listener, tmp.cfg.clone(), stop.clone()));
        let s = Server { url, ingest, read, http: crate::common::http(), db, _tmp: tmp, stop };
        for _ in 0..200 {
            if s.http.get(format!("{}/readyz", s.url)).send().await.is_ok_and(|r| r.status() == 200) {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("rosterd did not become ready");
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

fn line(id: &str, direct: [&str; 2], from: &str, at: &str, text: &str) -> Value {
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
