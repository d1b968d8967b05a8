//! Message archive benchmark: N messages (1,000,000 by default) of generated Chinese and English
//! chat, on SQLite and PostgreSQL, through a rosterd served in-process on loopback:
//!
//! - ingest through `POST /api/v1/archive/messages` (JSON Lines, 5,000 lines a request, two
//!   clients at once), search index included;
//! - ingest through per-message XMPP posts (`POST /api/v1/archive/xmpp`, as ejabberd's
//!   `mod_post_log` sends them; 32 at once);
//! - search through the read API for a two-character Chinese word (用户) and an English word
//!   (meeting): first page of 50, p50/p95 of 30 runs each, against a `LIKE '%q%'` scan of the
//!   same table (the oracle the recall test uses);
//! - an export of every message (JSON Lines) by `rosterd archive export` in a process of its
//!   own: its time and peak memory (the child's max RSS, from `wait4`).
//!
//! `scripts/bench-archive [sqlite|postgres]... [--messages N] [--xmpp N]`. Prints a Markdown
//! table on stdout, progress on stderr. With `--floor`, only the floor under the JSON Lines
//! figure: the same messages through `Archive::ingest`, no HTTP.

#[path = "../tests/it/fixtures/pg.rs"]
mod pg;

use std::sync::Arc;
use std::time::{Duration, Instant};

use roster::access::store::TokenKind;
use roster::config::Config;
use roster::directory::model::{Actor, Source};
use roster::directory::{Change, NewMember};

const MEMBERS: usize = 2000;
const GROUPS: usize = 200;

const ZH: &[&str] = &[
    "用户",
    "登录",
    "系统",
    "会议",
    "项目",
    "审批",
    "报销",
    "客户",
    "合同",
    "明天",
    "下午",
    "开会",
    "数据",
    "报告",
    "进度",
    "问题",
    "需求",
    "测试",
    "上线",
    "发布",
    "服务器",
    "数据库",
    "文档",
    "邮件",
    "通知",
    "确认",
    "安排",
    "时间",
    "地点",
    "领导",
    "同事",
    "部门",
    "预算",
    "财务",
    "采购",
    "销售",
    "市场",
    "产品",
    "设计",
    "开发",
    "运维",
    "安全",
    "网络",
    "权限",
    "帐号",
    "密码",
    "修改",
    "提交",
    "审核",
    "完成",
    "处理",
    "跟进",
    "反馈",
    "今天",
    "昨天",
    "下周",
    "上午",
    "晚上",
    "周末",
    "加班",
    "请假",
    "出差",
    "培训",
    "面试",
    "招聘",
    "合作",
    "方案",
    "计划",
    "目标",
    "结果",
    "分析",
    "优化",
    "升级",
    "版本",
    "功能",
    "页面",
    "接口",
    "配置",
    "部署",
    "监控",
    "告警",
    "故障",
    "恢复",
    "备份",
    "我们",
    "你们",
    "他们",
    "一下",
    "可以",
    "已经",
    "还是",
    "没有",
    "需要",
    "应该",
    "这个",
    "那个",
    "什么",
    "怎么",
    "为什么",
    "好的",
    "收到",
    "谢谢",
    "辛苦了",
    "麻烦",
];
const ZH_PUNCT: &[&str] = &["，", "。", "！", "？", "、", ""];
const EN: &[&str] = &[
    "the",
    "a",
    "we",
    "you",
    "please",
    "can",
    "will",
    "is",
    "are",
    "to",
    "for",
    "on",
    "at",
    "in",
    "with",
    "meeting",
    "report",
    "deadline",
    "customer",
    "project",
    "budget",
    "review",
    "release",
    "server",
    "database",
    "login",
    "user",
    "account",
    "password",
    "update",
    "today",
    "tomorrow",
    "morning",
    "afternoon",
    "call",
    "send",
    "check",
    "fix",
    "bug",
    "issue",
    "ticket",
    "plan",
    "team",
    "office",
    "invoice",
    "contract",
    "sales",
    "design",
    "test",
    "deploy",
    "thanks",
    "ok",
    "sure",
    "done",
    "later",
    "asap",
    "Monday",
    "Friday",
    "3pm",
    "10am",
    "Q4",
    "draft",
    "slides",
    "notes",
];

/// A small fast generator (deterministic for a seed).
struct Gen(u64);

impl Gen {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }

    fn text(&mut self) -> String {
        let mut s = String::new();
        match self.next(20) {
            0..=11 => {
                for _ in 0..2 + self.next(14) {
                    s.push_str(ZH[self.next(ZH.len())]);
                    if self.next(4) == 0 {
                        s.push_str(ZH_PUNCT[self.next(ZH_PUNCT.len())]);
                    }
                }
            }
            12..=18 => {
                for i in 0..2 + self.next(14) {
                    if i > 0 {
                        s.push(' ');
                    }
                    s.push_str(EN[self.next(EN.len())]);
                }
            }
            _ => {
                for _ in 0..3 + self.next(8) {
                    if self.next(2) == 0 {
                        s.push_str(ZH[self.next(ZH.len())]);
                    } else {
                        s.push(' ');
                        s.push_str(EN[self.next(EN.len())]);
                        s.push(' ');
                    }
                }
            }
        }
        s
    }
}

struct Row {
    store: &'static str,
    messages: usize,
    ingest_s: f64,
    xmpp: usize,
    xmpp_s: f64,
    search: Vec<(&'static str, f64, f64, usize, f64)>,
    export_s: f64,
    export_mb: f64,
    export_peak_mb: f64,
    db_mb: Option<f64>,
}

fn line(g: &mut Gen, i: usize, base: i64) -> String {
    // Each member talks mostly with 20 regular contacts; one message in ten goes to a group.
    let a = g.next(MEMBERS);
    let sent = base + (i as i64) * 30_000_000 + g.next(1_000_000) as i64; // ~30 s apart
    let at = chrono::DateTime::from_timestamp_micros(sent).unwrap().to_rfc3339();
    let text = g.text();
    let conversation = if g.next(10) == 0 {
        let gi = g.next(GROUPS);
        serde_json::json!({ "group": format!("g{gi}"), "owner": format!("user{:05}", gi), "name": format!("群组 {gi}") })
    } else {
        let b = (a + 1 + (a * 7 + g.next(20)) % (MEMBERS - 1)) % MEMBERS;
        serde_json::json!({ "direct": [format!("user{a:05}"), format!("user{b:05}")] })
    };
    serde_json::json!({ "id": format!("m{i}"), "conversation": conversation, "from": format!("user{a:05}"),
        "sent_at": at, "kind": "text", "text": text })
    .to_string()
}

/// A fresh store (a temp SQLite file or a new PostgreSQL database) with the enterprise and
/// [`MEMBERS`] members, `user00000` to `user01999`.
async fn setup(store: &str) -> (tempfile::TempDir, Config, roster::app::Services) {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.database.url = match store {
        "SQLite" => format!("sqlite://{}", dir.path().join("roster.db").display()),
        _ => pg::fresh_database(),
    };
    cfg.numbers.first = 100_000;
    cfg.numbers.last = 999_999;
    cfg.enterprise.mail_domain = "example.com".into();
    cfg.archive.im_domains = vec!["im.example.com".into()];
    cfg.archive.export_dir = dir.path().join("exports");
    cfg.admin.enabled = false;
    cfg.http.request_timeout_secs = 600;
    let s = roster::app::open(&cfg).await.expect("open the store");
    let actor = Actor::new(Source::import(), "bench");
    eprintln!("[{store}] {MEMBERS} members");
    for start in (0..MEMBERS).step_by(1000) {
        let set = (start..(start + 1000).min(MEMBERS))
            .map(|i| {
                Change::CreateMember(NewMember {
                    login_name: format!("user{i:05}"),
                    display_name: format!("User {i}"),
                    ..Default::default()
                })
            })
            .collect();
        s.directory.apply(&actor, set).await.expect("create members");
    }
    (dir, cfg, s)
}

async fn run(store: &'static str, messages: usize, xmpp: usize) -> Row {
    let (dir, cfg, s) = setup(store).await;
    let console = Actor::new(Source::console(), "bench");
    let ingest_token = s.access.create_token_of(&console, "chat", TokenKind::Archive, false).await.unwrap();
    let read_token =
        s.access.create_token_of(&console, "vault", TokenKind::ArchiveRead, false).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(roster::app::run(listener, cfg.clone(), stop.clone()));
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    for _ in 0..200 {
        if http.get(format!("{base}/readyz")).send().await.is_ok_and(|r| r.status() == 200) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // JSON Lines: two clients, 5,000 lines a request.
    eprintln!("[{store}] ingesting {messages} messages (JSON Lines)");
    let base_time = chrono::Utc::now().timestamp_micros() - 400 * 86_400_000_000;
    let started = Instant::now();
    let chunk = 5000;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for c in 0..2 {
        let (http, base, token, next) = (http.clone(), base.clone(), ingest_token.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            let mut g = Gen(0x9e37_79b9_7f4a_7c15 ^ (c as u64 + 1));
            let mut stored = 0u64;
            loop {
                let from = next.fetch_add(chunk, std::sync::atomic::Ordering::Relaxed);
                if from >= messages {
                    return stored;
                }
                let body: String =
                    (from..(from + chunk).min(messages)).map(|i| line(&mut g, i, base_time) + "\n").collect();
                let r = http
                    .post(format!("{base}/api/v1/archive/messages"))
                    .bearer_auth(&token)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let v: serde_json::Value = r.json().await.unwrap();
                stored += v["stored"].as_u64().unwrap();
                if from % 100_000 == 0 {
                    eprintln!(
                        "[{store}]   {from} sent, {:.0}/s",
                        from as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    let mut stored = 0;
    for c in clients {
        stored += c.await.unwrap();
    }
    let ingest_s = started.elapsed().as_secs_f64();
    assert_eq!(stored as usize, messages, "every message stored");

    // XMPP posts, one message a request, 32 at once.
    eprintln!("[{store}] {xmpp} XMPP posts");
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut posters = Vec::new();
    for c in 0..32 {
        let (http, base, token, next) = (http.clone(), base.clone(), ingest_token.clone(), next.clone());
        posters.push(tokio::spawn(async move {
            let mut g = Gen(0x1234_5678 ^ (c as u64 + 1));
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= xmpp {
                    return;
                }
                let (a, b) = (g.next(MEMBERS), g.next(MEMBERS));
                let body = format!(
                    "<message xmlns='jabber:client' from='user{a:05}@im.example.com/pc' to='user{b:05}@im.example.com' type='chat' id='x{i}'><body>{}</body></message>",
                    g.text()
                );
                let r = http
                    .post(format!("{base}/api/v1/archive/xmpp?token={token}"))
                    .header("x-message-from", format!("user{a:05}@im.example.com/pc"))
                    .header("x-message-to", format!("user{b:05}@im.example.com"))
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for p in posters {
        p.await.unwrap();
    }
    let xmpp_s = started.elapsed().as_secs_f64();

    // Search through the read API, against a LIKE scan of the same table.
    let mut search = Vec::new();
    for q in ["用户", "meeting"] {
        eprintln!("[{store}] searching {q}");
        let mut times = Vec::new();
        let mut hits = 0;
        for _ in 0..30 {
            let t = Instant::now();
            let qs = form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("q", q), ("limit", "50")])
                .finish();
            let r = http
                .get(format!("{base}/api/v1/archive/messages?{qs}"))
                .bearer_auth(&read_token)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let v: serde_json::Value = r.json().await.unwrap();
            hits = v["messages"].as_array().unwrap().len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        let p50 = times[times.len() / 2];
        let p95 = times[(times.len() * 95).div_ceil(100) - 1];
        let t = Instant::now();
        let like = s.archive.store().archive_like(q, i64::MAX).await.unwrap();
        let like_ms = t.elapsed().as_secs_f64() * 1000.0;
        eprintln!(
            "[{store}]   {q}: p50 {p50:.1} ms p95 {p95:.1} ms; LIKE {like_ms:.0} ms ({} hits)",
            like.len()
        );
        search.push((q, p50, p95, hits, like_ms));
    }

    let (export_s, export_peak_mb, export_mb) = export_child(store, &cfg.database.url, dir.path()).await;
    let db_mb = (store == "SQLite").then(|| {
        ["roster.db", "roster.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
            .map(|m| m.len())
            .sum::<u64>() as f64
            / 1048576.0
    });
    stop.cancel();
    s.store.close().await;
    Row { store, messages, ingest_s, xmpp, xmpp_s, search, export_s, export_mb, export_peak_mb, db_mb }
}

/// Exports everything with the real binary (`rosterd archive export`, the job's code path), in a
/// process of its own: its wall time, its peak memory (the child's max RSS) and the file's size.
async fn export_child(store: &str, url: &str, dir: &std::path::Path) -> (f64, f64, f64) {
    eprintln!("[{store}] exporting everything (rosterd archive export)");
    let out = dir.join("all.tar");
    let started = Instant::now();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_rosterd"))
        .args(["archive", "export", "--format", "jsonl", "--out"])
        .arg(&out)
        .env("ROSTER_DATABASE__URL", url)
        .env("ROSTER_ENTERPRISE__MAIL_DOMAIN", "example.com")
        .env("ROSTER_NUMBERS__FIRST", "100000")
        .env("ROSTER_NUMBERS__LAST", "999999")
        .env("ROSTER_ARCHIVE__EXPORT_DIR", dir.join("exports"))
        .env("ROSTER_LOG__LEVEL", "warn")
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run rosterd archive export");
    // wait4: this child's own exit status and resource use (its max RSS).
    let (status, usage) = tokio::task::spawn_blocking(move || {
        let mut status = 0;
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: wait4 writes the status and the rusage it is given, for our own child.
        unsafe {
            libc::wait4(child.id() as i32, &mut status, 0, usage.as_mut_ptr());
            (status, usage.assume_init())
        }
    })
    .await
    .unwrap();
    let export_s = started.elapsed().as_secs_f64();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "rosterd archive export failed");
    let export_peak_mb = usage.ru_maxrss as f64 / 1024.0;
    let export_mb = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    eprintln!("[{store}]   export {export_s:.0} s, peak {export_peak_mb:.0} MB, {export_mb:.0} MB");
    (export_s, export_peak_mb, export_mb)
}

/// The floor under the JSON Lines figure: the same messages stored through `Archive::ingest`
/// directly (one caller, 5,000 a batch: the parties resolved, the checks, one transaction each),
/// with no HTTP, no request parsing and no load generator sharing the writer's time: messages
/// a second of the time spent in `ingest` alone.
async fn floor(store: &'static str, messages: usize) -> f64 {
    let (dir, cfg, s) = setup(store).await;
    let im = Actor::new(Source::parse("im:chat").unwrap(), "chat");
    let base_time = chrono::Utc::now().timestamp_micros() - 400 * 86_400_000_000;
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let mut spent = Duration::ZERO;
    for from in (0..messages).step_by(5000) {
        let lines: Vec<_> = (from..(from + 5000).min(messages))
            .enumerate()
            .map(|(n, i)| (n + 1, Ok(serde_json::from_str(&line(&mut g, i, base_time)).unwrap())))
            .collect();
        let t = Instant::now();
        s.archive.ingest(&im, lines).await.unwrap();
        spent += t.elapsed();
        if from % 200_000 == 0 {
            eprintln!("[{store} floor]   {from}: {:.0}/s", from as f64 / spent.as_secs_f64());
        }
    }
    // The export while the store is still open here (as beside a running daemon), then closed.
    if store == "SQLite" {
        export_child(store, &cfg.database.url, dir.path()).await;
    }
    s.store.close().await;
    if store == "SQLite" {
        export_child(store, &cfg.database.url, dir.path()).await;
    }
    messages as f64 / spent.as_secs_f64()
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut stores = Vec::new();
    let mut messages = 1_000_000;
    let mut xmpp = 20_000;
    let mut floor_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "sqlite" => stores.push("SQLite"),
            "postgres" => stores.push("PostgreSQL"),
            "--messages" => messages = args.next().and_then(|v| v.parse().ok()).expect("--messages N"),
            "--xmpp" => xmpp = args.next().and_then(|v| v.parse().ok()).expect("--xmpp N"),
            "--floor" => floor_only = true,
            _ => {}
        }
    }
    if stores.is_empty() {
        stores = vec!["SQLite", "PostgreSQL"];
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    if floor_only {
        println!(
            "| store | messages | stored through Archive::ingest, no HTTP (the floor under JSON Lines) |"
        );
        println!("|---|---:|---:|");
        for store in stores {
            let rate = rt.block_on(floor(store, messages));
            println!("| {store} | {messages} | {rate:.0}/s |");
        }
        return;
    }
    println!(
        "| store | messages | JSON Lines ingest (target ≥ 10,000/s) | XMPP posts (target ≥ 2,000/s) | search 用户 p50 / p95 (target p95 < 200 ms) | LIKE scan 用户 | search meeting p50 / p95 | LIKE scan meeting | export all (target < 2 min) | export peak memory (target < 150 MB) | export file | store size |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // Each store's row as soon as it is measured (a later store's failure keeps the earlier rows).
    for store in stores {
        let r = rt.block_on(run(store, messages, xmpp));
        let (zh, en) = (&r.search[0], &r.search[1]);
        println!(
            "| {} | {} | {:.0}/s ({:.0} s) | {:.0}/s ({} posts) | {:.0} / {:.0} ms | {:.0} ms ({:.0}x) | {:.0} / {:.0} ms | {:.0} ms ({:.0}x) | {:.0} s | {:.0} MB | {:.0} MB | {} |",
            r.store,
            r.messages,
            r.messages as f64 / r.ingest_s,
            r.ingest_s,
            r.xmpp as f64 / r.xmpp_s,
            r.xmpp,
            zh.1,
            zh.2,
            zh.4,
            zh.4 / zh.2,
            en.1,
            en.2,
            en.4,
            en.4 / en.2,
            r.export_s,
            r.export_peak_mb,
            r.export_mb,
            r.db_mb.map(|m| format!("{m:.0} MB")).unwrap_or_else(|| "-".into()),
        );
    }
}
