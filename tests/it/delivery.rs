//! Delivery against real parts: aiosmtpd (a real SMTP server, Debian's `python3-aiosmtpd`)
//! receives the mail, and an HTTP SMS gateway on loopback (started here, told to fail, stall or
//! accept) receives the SMS. Rounds are run directly ([`Dispatcher::run_once`]) or by the
//! `rosterd outbox dispatch` command.

use std::collections::VecDeque;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use roster::config::{Config, DeliveryConfig, HttpSmsConfig, SmsConfig, SmtpConfig};
use roster::delivery::Dispatcher;
use roster::directory::model::Email;
use roster::directory::{Applied, Change, MemberPatch, NewMember};
use serde_json::Value;

use crate::common::{Backend, TestDb, console, member, on_both_stores};
use crate::daemon::{free_port, rosterd, text};

on_both_stores!(
    welcome_mail_and_sms_and_nothing_twice,
    failures_are_retried_then_parked,
    sms_needs_a_balance,
    two_dispatchers_never_send_one_message_twice,
    broadcasts_reach_a_subtree_and_report_progress,
);

/// aiosmtpd with its Mailbox handler: every message it accepts is a file in `dir/new`.
pub struct Smtp {
    child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl Smtp {
    pub fn start() -> Smtp {
        Smtp::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Smtp {
        Smtp::spawn(port, &[])
    }

    /// aiosmtpd with a certificate from the slapd fixture's test CA (`dir/ca.pem`; `other-ca.pem`
    /// is unrelated): STARTTLS required, or implicit TLS (SMTPS).
    pub fn start_tls(implicit: bool) -> (Smtp, tempfile::TempDir) {
        let certs = tempfile::tempdir().unwrap();
        crate::slapd::make_certificates(certs.path());
        let (cert_flag, key_flag) =
            if implicit { ("--smtpscert", "--smtpskey") } else { ("--tlscert", "--tlskey") };
        let (cert, key) = (certs.path().join("server.pem"), certs.path().join("server.key"));
        let tls = [cert_flag.as_ref(), cert.as_os_str(), key_flag.as_ref(), key.as_os_str()];
        (Smtp::spawn(free_port(), &tls), certs)
    }

    /// Starts aiosmtpd on `port` with `extra` options, and waits until it listens.
    fn spawn(port: u16, extra: &[&std::ffi::OsStr]) -> Smtp {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(extra)
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(dir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::other)
            });
        }
        let child = cmd.spawn().expect("start aiosmtpd (python3-aiosmtpd; scripts/test installs it)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Smtp { child, port, dir };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("aiosmtpd did not listen on {port}");
    }

    /// The raw messages received so far.
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("mail/new")) else { return Vec::new() };
        entries.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap()).collect()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An SMS gateway on loopback: answers each request with the next scripted status (200 when the
/// script is empty), after `delay` when set; records what it accepted.
#[derive(Clone, Default)]
pub struct Gateway {
    pub received: Arc<Mutex<Vec<Value>>>,
    pub script: Arc<Mutex<VecDeque<u16>>>,
    pub delay: Arc<Mutex<Option<Duration>>>,
    /// When each request arrived.
    pub arrivals: Arc<Mutex<Vec<std::time::Instant>>>,
    pub url: String,
}

impl Gateway {
    pub async fn start() -> Gateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut gw = Gateway::default();
        gw.url = format!("http://{}/send", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/send", post(gateway_send)).with_state(gw.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        gw
    }

    pub fn texts(&self) -> Vec<(String, String)> {
        let got = self.received.lock().unwrap();
        got.iter()
            .map(|v| (v["to"].as_str().unwrap().to_owned(), v["text"].as_str().unwrap().to_owned()))
            .collect()
    }
}

async fn gateway_send(State(gw): State<Gateway>, body: String) -> (StatusCode, String) {
    gw.arrivals.lock().unwrap().push(std::time::Instant::now());
    let delay = *gw.delay.lock().unwrap();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let status = gw.script.lock().unwrap().pop_front().unwrap_or(200);
    if status != 200 {
        return (StatusCode::from_u16(status).unwrap(), "scripted failure".into());
    }
    let v: Value = serde_json::from_str(&body).expect("the gateway gets JSON");
    let mut got = gw.received.lock().unwrap();
    got.push(v);
    (StatusCode::OK, format!(r#"{{"id": "gw-{}"}}"#, got.len()))
}

pub fn delivery_config(smtp_port: u16, gateway: &Gateway) -> DeliveryConfig {
    DeliveryConfig {
        backoff_secs: 1,
        backoff_max_secs: 2,
        max_attempts: 3,
        lease_secs: 30,
        smtp: Some(SmtpConfig {
            url: format!("smtp://127.0.0.1:{smtp_port}"),
            from: "Roster <roster@example.com>".into(),
            user: None,
            password: None,
            password_file: None,
            ca_file: None,
            timeout_secs: 5,
            rate_per_sec: None,
        }),
        sms: Some(SmsConfig {
            provider: "http".into(),
            http: Some(HttpSmsConfig {
                url: gateway.url.clone(),
                method: "POST".into(),
                headers: Default::default(),
                body: r#"{"to": "{to}", "text": "{text}", "key": "{key}"}"#.into(),
                content_type: "application/json".into(),
                id_pointer: Some("/id".into()),
            }),
            twilio: None,
            low_balance: 100,
            quiet_hours: None,
            utc_offset: "+00:00".into(),
            timeout_secs: 2,
            rate_per_sec: None,
        }),
        ..Default::default()
    }
}

pub fn new_hire(login: &str, mobile: &str) -> Change {
    Change::CreateMember(NewMember {
        emails: vec![Email {
            address: format!("{login}@home.example.org"),
            kind: "work".into(),
            primary: true,
        }],
        mobile: Some(mobile.into()),
        ..member(login)
    })
}

async fn top_up(d: &crate::common::Opened, amount: i64) -> i64 {
    d.sms_top_up(&console(), amount, Some("test".into())).await.unwrap()
}

async fn welcome_mail_and_sms_and_nothing_twice(b: Backend) {
    let smtp = Smtp::start();
    let gw = Gateway::start().await;
    let db = TestDb::new(b);
    let d = db.open().await;
    assert_eq!(top_up(&d, 10).await, 10);
    let created = d
        .apply(&console(), vec![new_hire("ann", "+8613800000001"), new_hire("ben", "+8613800000002")])
        .await
        .unwrap();
    let Applied::Member(ann) = &created[0] else { panic!() };
    let dispatcher = Dispatcher::new(d.store().clone(), &delivery_config(smtp.port, &gw)).unwrap();
    let round = dispatcher.run_once().await.unwrap();
    assert_eq!((round.events, round.queued, round.sent), (2, 4, 4), "{round:?}");

    let mails = smtp.messages();
    assert_eq!(mails.len(), 2);
    let to_ann = mails.iter().find(|m| m.contains("To: ann@home.example.org")).expect("ann's welcome mail");
    assert!(to_ann.contains("Subject: Welcome to Example Corp"), "{to_ann}");
    assert!(
        to_ann.contains(&ann.account_number.to_string()) && to_ann.contains("ann@example.com"),
        "{to_ann}"
    );
    assert!(to_ann.contains("X-Roster-Idempotency-Key:"), "{to_ann}");
    let texts = gw.texts();
    assert_eq!(texts.len(), 2);
    let (to, text) = texts.iter().find(|(to, _)| to == "+8613800000001").unwrap();
    assert!(text.contains(&ann.account_number.to_string()), "{to}: {text}");

    // Charged: one segment each, in the ledger with the gateway's id.
    assert_eq!(d.store().sms_balance().await.unwrap(), 8);
    let ledger = d.store().sms_ledger(10).await.unwrap();
    assert_eq!(ledger.iter().filter(|l| l.entry == "charge").count(), 2);
    assert!(ledger.iter().any(|l| l.provider_id.as_deref() == Some("gw-1")), "{ledger:?}");
    assert!(ledger.iter().any(|l| l.entry == "top_up" && l.amount == 10 && l.actor == "admin"));

    // Nothing goes out twice; a suspension tells the member by e-mail only (sms_kinds).
    assert_eq!(dispatcher.run_once().await.unwrap(), Default::default());
    let patch =
        MemberPatch { state: Some(roster::directory::model::MemberState::Suspended), ..Default::default() };
    d.apply_one(&console(), Change::UpdateMember { id: ann.id, patch }).await.unwrap();
    let round = dispatcher.run_once().await.unwrap();
    assert_eq!((round.events, round.sent), (1, 1), "{round:?}");
    assert!(smtp.messages().iter().any(|m| m.contains("Subject: Your Example Corp account is suspended")));
    assert_eq!(gw.texts().len(), 2);
    let sent = d.store().deliveries_list(Some("sent"), 100).await.unwrap();
    assert_eq!(sent.len(), 5);
    assert!(sent.iter().all(|m| m.attempts == 1 && m.sent_at.is_some()));
    // Purging deletes sent messages older than the cut-off, and only those.
    let hour = chrono::Duration::hours(1);
    assert_eq!(d.purge_deliveries(&console(), chrono::Utc::now() - hour).await.unwrap(), 0);
    d.apply_one(&console(), new_hire("cid", "+8613800000009")).await.unwrap();
    Dispatcher::new(d.store().clone(), &DeliveryConfig::default()).unwrap().run_once().await.unwrap();
    let before = d.store().deliveries_list(None, 100).await.unwrap().len();
    assert_eq!(d.purge_deliveries(&console(), chrono::Utc::now() + hour).await.unwrap(), 5);
    assert_eq!(d.store().deliveries_list(None, 100).await.unwrap().len(), before - 5);
    // Each purge is audited with what it deleted, in its own transaction.
    let f = roster::directory::store::AuditFilter {
        action: Some("delivery.purge".into()),
        limit: 10,
        ..Default::default()
    };
    let purges = d.store().audit_search(&f).await.unwrap();
    assert_eq!(purges.len(), 2);
    assert_eq!(purges[0].after.as_ref().unwrap()["deleted"], 5, "newest first");
}

async fn failures_are_retried_then_parked(b: Backend) {
    let gw = Gateway::start().await;
    // SMTP is down at first: the port is free, nobody listens.
    let smtp_port = free_port();
    let db = TestDb::new(b);
    let d = db.open().await;
    top_up(&d, 10).await;
    let dispatcher = Dispatcher::new(d.store().clone(), &delivery_config(smtp_port, &gw)).unwrap();
    gw.script.lock().unwrap().extend([500, 429]);
    d.apply_one(&console(), new_hire("ann", "+8613800000001")).await.unwrap();

    let round = dispatcher.run_once().await.unwrap();
    assert_eq!((round.sent, round.retried), (0, 2), "{round:?}");
    let pending = d.store().deliveries_list(Some("pending"), 10).await.unwrap();
    assert_eq!(pending.len(), 2);
    for m in &pending {
        let error = m.last_error.as_deref().unwrap();
        match m.channel.as_str() {
            "sms" => assert!(error.contains("500"), "{error}"),
            _ => assert!(error.contains("SMTP"), "{error}"),
        }
        assert!(m.next_attempt_at > chrono::Utc::now(), "backed off");
    }
    // Not due yet: nothing happens.
    assert_eq!(dispatcher.run_once().await.unwrap().retried, 0);

    // SMTP comes up; the gateway still answers 429 once, then accepts.
    let smtp = Smtp::start_on(smtp_port);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let round = dispatcher.run_once().await.unwrap();
    assert_eq!((round.sent, round.retried), (1, 1), "{round:?}");
    assert_eq!(smtp.messages().len(), 1);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let round = dispatcher.run_once().await.unwrap();
    assert_eq!(round.sent, 1, "{round:?}");
    assert_eq!(gw.texts().len(), 1, "delivered once, after two failures");
    let sms = d.store().deliveries_list(Some("sent"), 10).await.unwrap();
    assert_eq!(sms.iter().find(|m| m.channel == "sms").unwrap().attempts, 3);

    // A refusal (4xx) is not retried: dead at once, with the gateway's answer; an operator can
    // send it again.
    gw.script.lock().unwrap().push_back(400);
    d.apply_one(&console(), new_hire("ben", "+8613800000002")).await.unwrap();
    let round = dispatcher.run_once().await.unwrap();
    assert_eq!((round.sent, round.dead), (1, 1), "{round:?}");
    let dead = d.store().deliveries_list(Some("dead"), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(dead[0].last_error.as_deref().unwrap().contains("400"), "{:?}", dead[0]);
    assert!(d.retry_delivery(&console(), dead[0].id).await.unwrap());
    assert!(!d.retry_delivery(&console(), dead[0].id).await.unwrap(), "pending now: nothing to retry");
    let f = roster::directory::store::AuditFilter {
        action: Some("delivery.retry".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(d.store().audit_search(&f).await.unwrap().len(), 1, "the retry, not the refused one");
    assert_eq!(dispatcher.run_once().await.unwrap().sent, 1);
    assert!(gw.texts().iter().any(|(to, _)| to == "+8613800000002"));

    // Transient failures up to max_attempts (3), then dead.
    gw.script.lock().unwrap().extend([503, 503, 503]);
    d.apply_one(&console(), new_hire("cat", "+8613800000003")).await.unwrap();
    for wait in [0, 1300, 2500] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        dispatcher.run_once().await.unwrap();
    }
    let dead = d.store().deliveries_list(Some("dead"), 10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!((dead[0].attempts, dead[0].recipient.as_str()), (3, "+8613800000003"));
}

async fn sms_needs_a_balance(b: Backend) {
    let smtp = Smtp::start();
    let gw = Gateway::start().await;
    let db = TestDb::new(b);
    let d = db.open().await;
    let dispatcher = Dispatcher::new(d.store().clone(), &delivery_config(smtp.port, &gw)).unwrap();
    d.apply_one(&console(), new_hire("ann", "+8613800000001")).await.unwrap();
    let round = dispatcher.run_once().await.unwrap();
    assert_eq!((round.sent, round.deferred), (1, 1), "the e-mail goes, the SMS waits: {round:?}");
    let held = d.store().deliveries_list(Some("held"), 10).await.unwrap();
    assert_eq!(held.len(), 1);
    assert!(held[0].last_error.as_deref().unwrap().contains("SMS balance is 0"), "{:?}", held[0]);
    assert!(gw.texts().is_empty());
    assert_eq!(dispatcher.run_once().await.unwrap().sent, 0, "still held");
    assert_eq!(d.store().sms_balance().await.unwrap(), 0, "never below zero");

    // A top-up releases it.
    top_up(&d, 1).await;
    assert_eq!(dispatcher.run_once().await.unwrap().sent, 1);
    assert_eq!(gw.texts().len(), 1);
    assert_eq!(d.store().sms_balance().await.unwrap(), 0);
    assert!(d.store().deliveries_list(Some("held"), 10).await.unwrap().is_empty());
    // Three SMS at once (sent concurrently) and room for two: two go, one waits.
    top_up(&d, 2).await;
    let hires = (0..3).map(|i| new_hire(&format!("x{i}"), &format!("+861380000010{i}"))).collect();
    d.apply(&console(), hires).await.unwrap();
    dispatcher.run_once().await.unwrap();
    assert_eq!(gw.texts().len(), 3);
    assert_eq!(d.store().sms_balance().await.unwrap(), 0);
    assert_eq!(d.store().deliveries_list(Some("held"), 10).await.unwrap().len(), 1);
    // Refused top-ups change nothing.
    let bad = d.sms_top_up(&console(), 0, None).await.unwrap_err();
    assert_eq!(bad.code(), "invalid");
    assert_eq!(d.store().sms_ledger(10).await.unwrap().len(), 5, "2 top-ups, 3 charges");
}

/// Two nodes on one database (two stores, two dispatchers) claim with leases: each message is
/// sent once.
async fn two_dispatchers_never_send_one_message_twice(b: Backend) {
    let gw = Gateway::start().await;
    *gw.delay.lock().unwrap() = Some(Duration::from_millis(5));
    let db = TestDb::new(b);
    let d = db.open().await;
    top_up(&d, 1000).await;
    let hires: Vec<Change> =
        (0..60).map(|i| new_hire(&format!("m{i}"), &format!("+86138000002{i:02}"))).collect();
    d.apply(&console(), hires).await.unwrap();
    let mut cfg = delivery_config(free_port(), &gw);
    cfg.smtp = None;
    cfg.batch = 7;
    let other = db.open().await;
    let one = Dispatcher::new(d.store().clone(), &cfg).unwrap();
    let two = Dispatcher::new(other.store().clone(), &cfg).unwrap();
    let (a, b) = tokio::join!(one.run_once(), two.run_once());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.sent + b.sent, 60, "{a:?} {b:?}");
    let got = gw.received.lock().unwrap().clone();
    let keys: std::collections::BTreeSet<&str> = got.iter().map(|v| v["key"].as_str().unwrap()).collect();
    assert_eq!((got.len(), keys.len()), (60, 60));
    assert_eq!(d.store().sms_balance().await.unwrap(), 940);
}

async fn broadcasts_reach_a_subtree_and_report_progress(b: Backend) {
    let smtp = Smtp::start();
    let gw = Gateway::start().await;
    let db = TestDb::new(b);
    let d = db.open().await;
    top_up(&d, 100).await;
    let sales = crate::common::create_unit(&d, None, "Sales").await;
    let east = crate::common::create_unit(&d, Some(sales), "East").await;
    let ops = crate::common::create_unit(&d, None, "Ops").await;
    let in_unit = |login: &str, mobile: &str, unit: uuid::Uuid| {
        let Change::CreateMember(n) = new_hire(login, mobile) else { unreachable!() };
        Change::CreateMember(NewMember { primary_org_unit_id: Some(unit), ..n })
    };
    let also_east = NewMember { org_unit_ids: vec![east], ..member("dual") };
    let set = vec![
        in_unit("s1", "+8613800000301", sales),
        in_unit("e1", "+8613800000302", east),
        in_unit("o1", "+8613800000303", ops),
        in_unit("gone", "+8613800000304", east),
        Change::CreateMember(NewMember { primary_org_unit_id: Some(ops), ..also_east }),
    ];
    let out = d.apply(&console(), set).await.unwrap();
    let Applied::Member(gone) = &out[3] else { panic!() };
    let patch =
        MemberPatch { state: Some(roster::directory::model::MemberState::Suspended), ..Default::default() };
    d.apply_one(&console(), Change::UpdateMember { id: gone.id, patch }).await.unwrap();
    let dispatcher = Dispatcher::new(d.store().clone(), &delivery_config(smtp.port, &gw)).unwrap();
    dispatcher.run_once().await.unwrap();
    let (mails, texts) = (smtp.messages().len(), gw.texts().len());

    let send = roster::delivery::desk::NewBroadcast {
        title: "Fire drill".into(),
        text: "Fire drill at 15:00, meet outside.".into(),
        units: vec![sales],
        email: true,
        sms: true,
        language: "en".into(),
    };
    let (broadcast, messages) = d.broadcast(&console(), send).await.unwrap();
    // Sales and its subtree, active only: s1, e1, and dual (East as a further unit); e-mail and
    // SMS to those who have them (dual has neither).
    assert_eq!((broadcast.recipients, messages), (3, 4));
    dispatcher.run_once().await.unwrap();
    let new_mails: Vec<String> = smtp.messages().into_iter().filter(|m| m.contains("Fire drill")).collect();
    assert_eq!(new_mails.len(), 2, "{new_mails:?}");
    assert_eq!(smtp.messages().len(), mails + 2);
    let new_texts: Vec<(String, String)> = gw.texts().into_iter().skip(texts).collect();
    let to: std::collections::BTreeSet<&str> = new_texts.iter().map(|(to, _)| to.as_str()).collect();
    assert_eq!(to, ["+8613800000301", "+8613800000302"].into_iter().collect());
    assert!(new_texts[0].1.contains("Fire drill at 15:00"), "{new_texts:?}");
    let progress = d.store().broadcast_progress(broadcast.id).await.unwrap();
    assert_eq!(progress, [("email".into(), "sent".into(), 2), ("sms".into(), "sent".into(), 2)]);
    assert_eq!(d.store().broadcast(broadcast.id).await.unwrap().unwrap().title, "Fire drill");
    // Audited; an unknown unit or no channel is refused and queues nothing.
    assert_eq!(d.store().audit_for("broadcast", &broadcast.id.to_string()).await.unwrap().len(), 1);
    let bad = roster::delivery::desk::NewBroadcast {
        title: "x".into(),
        text: "y".into(),
        units: vec![uuid::Uuid::now_v7()],
        email: true,
        ..Default::default()
    };
    assert_eq!(d.broadcast(&console(), bad).await.unwrap_err().code(), "not_found");
    let none =
        roster::delivery::desk::NewBroadcast { title: "x".into(), text: "y".into(), ..Default::default() };
    assert_eq!(d.broadcast(&console(), none).await.unwrap_err().code(), "invalid");
    assert_eq!(d.store().broadcasts(10).await.unwrap().len(), 1);
}

/// Quiet hours hold back everything but password codes.
#[tokio::test]
async fn quiet_hours_hold_sms_except_password_codes() {
    let gw = Gateway::start().await;
    let smtp = Smtp::start();
    let db = TestDb::new(Backend::Sqlite);
    let d = db.open().await;
    top_up(&d, 10).await;
    let mut cfg = delivery_config(smtp.port, &gw);
    // Always quiet, but for the minute before midnight.
    cfg.sms.as_mut().unwrap().quiet_hours = Some("00:00-23:59".into());
    let now = chrono::Utc::now().time();
    if now >= chrono::NaiveTime::from_hms_opt(23, 58, 0).unwrap() {
        cfg.sms.as_mut().unwrap().utc_offset = "+02:00".into();
    }
    let dispatcher = Dispatcher::new(d.store().clone(), &cfg).unwrap();
    d.apply_one(&console(), new_hire("ann", "+8613800000001")).await.unwrap();
    let code = roster::delivery::new_delivery(
        None,
        roster::delivery::store::Channel::Sms,
        "password_code",
        "+8613800000009",
        None,
        serde_json::json!({"enterprise": "Example Corp", "code": "493817", "minutes": 10, "language": "zh-CN"}),
        "password_code:test",
    );
    d.store().deliveries_enqueue(&[], &[code], &[]).await.unwrap();
    let round = dispatcher.run_once().await.unwrap();
    assert_eq!((round.sent, round.deferred), (2, 1), "{round:?}");
    assert_eq!(gw.texts().len(), 1);
    let (to, text) = &gw.texts()[0];
    assert_eq!(to, "+8613800000009");
    assert!(text.contains("493817") && text.contains("验证码"), "{text}");
    let waiting = d.store().deliveries_list(Some("pending"), 10).await.unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].last_error.as_deref(), Some("quiet hours"));
    assert!(waiting[0].next_attempt_at > chrono::Utc::now());
}

/// `rosterd outbox dispatch` killed while the gateway is slow: when the lease runs out, the
/// next run sends what was left, and every member gets exactly one SMS unless the kill hit
/// between the gateway's answer and the record (then the repeat carries the same key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_dispatch_then_every_message_arrives() {
    let gw = Gateway::start().await;
    let db = TestDb::new(Backend::Sqlite);
    let d = db.open().await;
    top_up(&d, 100).await;
    let hires: Vec<Change> =
        (0..20).map(|i| new_hire(&format!("m{i}"), &format!("+86138000001{i:02}"))).collect();
    d.apply(&console(), hires).await.unwrap();
    d.store().close().await;

    let mut cfg: Config = db.cfg.clone();
    cfg.delivery = delivery_config(free_port(), &gw);
    cfg.delivery.smtp = None;
    cfg.delivery.lease_secs = 2;
    cfg.delivery.batch = 5;
    let config = db.dir.path().join("rosterd.toml");
    std::fs::write(&config, toml::to_string(&cfg).unwrap()).unwrap();
    let dispatch = || {
        let mut c = rosterd(db.dir.path());
        c.args(["--config", config.to_str().unwrap(), "outbox", "dispatch", "--json"]);
        c
    };
    *gw.delay.lock().unwrap() = Some(Duration::from_millis(150));
    let mut child = dispatch().stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // Kill it once a few messages are through.
    for _ in 0..200 {
        if gw.texts().len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = gw.texts().len();
    assert!((3..20).contains(&before), "killed mid-way: {before} sent");

    *gw.delay.lock().unwrap() = None;
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let out = dispatch().output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let round: Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert!(round["sent"].as_u64().unwrap() >= 20 - before as u64, "{round}");

    let got = gw.received.lock().unwrap().clone();
    let mut keys: Vec<&str> = got.iter().map(|v| v["key"].as_str().unwrap()).collect();
    let recipients: std::collections::BTreeSet<&str> =
        got.iter().map(|v| v["to"].as_str().unwrap()).collect();
    assert_eq!(recipients.len(), 20, "every member got the welcome SMS");
    keys.sort();
    let all = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), 20);
    assert!(all - 20 <= 5, "repeats only of the claimed batch in flight: {all}");
    let d = db.open().await;
    let sent = d.store().deliveries_list(Some("sent"), 100).await.unwrap();
    assert_eq!(sent.len(), 20);
    assert_eq!(d.store().sms_balance().await.unwrap(), 80, "each charged once");
}

/// `rosterd sms` and `rosterd outbox` from the command line.
#[tokio::test]
async fn the_command_line_tops_up_and_lists() {
    let db = TestDb::new(Backend::Sqlite);
    db.open().await.store().close().await;
    let config = db.dir.path().join("rosterd.toml");
    std::fs::write(&config, toml::to_string(&db.cfg).unwrap()).unwrap();
    let run = |args: &[&str]| {
        let mut c = rosterd(db.dir.path());
        c.arg("--config").arg(&config).args(args);
        c.output().unwrap()
    };
    let up = run(&["sms", "top-up", "500", "--note", "invoice 42"]);
    assert!(up.status.success(), "{}", text(&up.stderr));
    assert_eq!(text(&up.stdout).trim(), "balance: 500");
    assert_eq!(text(&run(&["sms", "balance"]).stdout).trim(), "500");
    let ledger = run(&["sms", "ledger", "--json"]);
    let lines: Value = serde_json::from_slice(&ledger.stdout).unwrap();
    assert_eq!(lines[0]["note"], "invoice 42");
    assert_eq!(lines[0]["actor"], "cli");
    let bad = run(&["sms", "top-up", "-5"]);
    assert!(!bad.status.success());
    let listed = run(&["outbox", "list", "--json"]);
    assert_eq!(serde_json::from_slice::<Value>(&listed.stdout).unwrap(), serde_json::json!([]));
    let retry = run(&["outbox", "retry", "0190c1c5-4b6e-7000-8000-000000000000"]);
    assert_eq!(retry.status.code(), Some(1));
    assert!(text(&retry.stderr).contains("no dead or held message"));
    // No SMTP configured: a clear error.
    let mail = run(&["mail", "test", "ann@example.org"]);
    assert!(!mail.status.success());
    assert!(text(&mail.stderr).contains("delivery.smtp"), "{}", text(&mail.stderr));
}

/// `rosterd mail test` through a real SMTP server.
#[tokio::test]
async fn mail_test_sends_through_smtp() {
    let smtp = Smtp::start();
    let db = TestDb::new(Backend::Sqlite);
    let mut cfg = db.cfg.clone();
    cfg.delivery.smtp = delivery_config(smtp.port, &Gateway::default()).smtp;
    cfg.delivery.language = "zh-CN".into();
    let config = db.dir.path().join("rosterd.toml");
    std::fs::write(&config, toml::to_string(&cfg).unwrap()).unwrap();
    let out = rosterd(db.dir.path())
        .arg("--config")
        .arg(&config)
        .args(["mail", "test", "ops@example.org"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let mails = smtp.messages();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains("To: ops@example.org"), "{}", mails[0]);
    drop(smtp);
    let down = rosterd(db.dir.path())
        .arg("--config")
        .arg(&config)
        .args(["mail", "test", "ops@example.org"])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(text(&down.stderr).contains("not sent"), "{}", text(&down.stderr));
}

/// Mailbox bindings pushed to a real SCIM service (a second Roster, on its own port) and to an
/// HTTP endpoint: created, disabled on suspension and deletion, reconciled, failures kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailbox_bindings_follow_members_into_the_mail_system() {
    use roster::config::{MailboxConfig, MailboxHttpConfig, MailboxScimConfig};
    use roster::directory::model::MemberState;
    // The mail system: another rosterd with a SCIM token.
    let remote = TestDb::new(Backend::Sqlite);
    let remote_dir = remote.open().await;
    let token = remote_dir.create_token(&console(), "mail", false).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/scim/v2", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(roster::app::run(listener, remote.cfg.clone(), stop.clone()));
    for _ in 0..100 {
        if crate::common::http()
            .get(format!("{base}/ServiceProviderConfig"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let db = TestDb::new(Backend::Sqlite);
    let d = db.open().await;
    let mailbox = MailboxConfig {
        provider: "scim".into(),
        scim: Some(MailboxScimConfig { url: base.clone(), token: Some(token.into()), token_file: None }),
        ..Default::default()
    };
    let cfg = DeliveryConfig { backoff_secs: 1, ..Default::default() };
    let dispatcher = Dispatcher::new(d.store().clone(), &cfg).unwrap().with_mailbox(&mailbox).unwrap();
    let out = d
        .apply(&console(), vec![Change::CreateMember(member("ann")), Change::CreateMember(member("ben"))])
        .await
        .unwrap();
    let (Applied::Member(ann), Applied::Member(ben)) = (&out[0], &out[1]) else { panic!() };
    dispatcher.run_once().await.unwrap();
    assert_eq!(dispatcher.push_mailboxes().await.unwrap().pushed, 2);
    let there = |login: &'static str| {
        let remote_store = remote_dir.store().clone();
        async move { remote_store.member_by_login(login).await.unwrap().expect("in the mail system") }
    };
    let remote_ann = there("ann@example.com").await;
    assert_eq!(
        remote_ann.anchor.as_deref(),
        Some(ann.id.to_string().as_str()),
        "externalId is the member id"
    );
    assert_eq!(remote_ann.state, MemberState::Active);
    let bindings = d.store().mailbox_bindings(None, 10).await.unwrap();
    assert!(bindings.iter().all(|b| b.state == "pushed" && b.remote_id.is_some()), "{bindings:?}");
    assert_eq!(dispatcher.push_mailboxes().await.unwrap().pushed, 0, "nothing changed, nothing pushed");

    // Suspended and deleted members' mailboxes are disabled there.
    let patch = MemberPatch { state: Some(MemberState::Suspended), ..Default::default() };
    d.apply_one(&console(), Change::UpdateMember { id: ann.id, patch }).await.unwrap();
    d.apply_one(&console(), Change::DeleteMember { id: ben.id, reason: "left".into() }).await.unwrap();
    dispatcher.run_once().await.unwrap();
    assert_eq!(dispatcher.push_mailboxes().await.unwrap().pushed, 2);
    assert_eq!(there("ann@example.com").await.state, MemberState::Suspended);
    assert_eq!(there("ben@example.com").await.state, MemberState::Suspended);
    assert_eq!(d.store().mailbox_bindings(Some("disabled"), 10).await.unwrap().len(), 2);

    // A binding lost on the mail system's side comes back with the full reconcile (found by
    // externalId when its id is unknown, or created again).
    let remote_count = remote_dir.store().counts().await.unwrap().members;
    assert_eq!(dispatcher.reconcile_mailboxes().await.unwrap().pushed, 2);
    assert_eq!(remote_dir.store().counts().await.unwrap().members, remote_count, "replaced, not duplicated");

    // The mail system down: failed, with the reason, retried later.
    stop.cancel();
    server.await.unwrap().unwrap();
    d.apply_one(&console(), Change::CreateMember(member("cat"))).await.unwrap();
    dispatcher.run_once().await.unwrap();
    assert_eq!(dispatcher.push_mailboxes().await.unwrap().failed, 1);
    let failed = d.store().mailbox_bindings(Some("failed"), 10).await.unwrap();
    assert_eq!(failed.len(), 1);
    assert!(failed[0].last_error.as_deref().unwrap().contains("cannot be reached"), "{failed:?}");
    assert_eq!(dispatcher.push_mailboxes().await.unwrap(), Default::default(), "not due yet");

    // The HTTP provider: the same bindings as JSON.
    let gw = Gateway::start().await;
    let http = MailboxConfig {
        provider: "http".into(),
        http: Some(MailboxHttpConfig { url: gw.url.clone(), headers: Default::default() }),
        ..Default::default()
    };
    let by_http = Dispatcher::new(d.store().clone(), &cfg).unwrap().with_mailbox(&http).unwrap();
    // A member whose source gave them an address in the company's domain keeps that mailbox.
    let dan = NewMember {
        emails: vec![Email { address: "daniel.w@example.com".into(), kind: "work".into(), primary: true }],
        ..member("dan")
    };
    d.apply_one(&console(), Change::CreateMember(dan)).await.unwrap();
    dispatcher.run_once().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(by_http.push_mailboxes().await.unwrap().pushed, 2);
    let got = gw.received.lock().unwrap().clone();
    let addresses: std::collections::BTreeSet<&str> =
        got.iter().map(|v| v["address"].as_str().unwrap()).collect();
    assert_eq!(addresses, ["cat@example.com", "daniel.w@example.com"].into_iter().collect());
    assert!(got.iter().all(|v| v["active"] == true));
}

/// `delivery.sms.rate_per_sec` spaces the SMS out, also when they are sent concurrently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sms_rate_limit_spaces_sends() {
    let gw = Gateway::start().await;
    let db = TestDb::new(Backend::Sqlite);
    let d = db.open().await;
    top_up(&d, 100).await;
    let hires: Vec<Change> =
        (0..11).map(|i| new_hire(&format!("r{i}"), &format!("+86138000004{i:02}"))).collect();
    d.apply(&console(), hires).await.unwrap();
    let mut cfg = delivery_config(free_port(), &gw);
    cfg.smtp = None;
    cfg.sms.as_mut().unwrap().rate_per_sec = Some(20.0);
    Dispatcher::new(d.store().clone(), &cfg).unwrap().run_once().await.unwrap();
    let arrivals = gw.arrivals.lock().unwrap().clone();
    assert_eq!(arrivals.len(), 11);
    let span = *arrivals.iter().max().unwrap() - *arrivals.iter().min().unwrap();
    // 11 sends at 20 a second: the last at least 10 intervals (0.5 s) after the first.
    assert!(span >= Duration::from_millis(450), "{span:?}");
}

/// The Twilio provider speaks Twilio's Messaging API: form fields, basic auth, `sid` back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_gets_its_form_and_credentials() {
    use axum::extract::{Form, Path};
    use axum::http::HeaderMap;
    type Seen = Arc<Mutex<Vec<(String, String, std::collections::HashMap<String, String>)>>>;
    let seen: Seen = Default::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/2010-04-01/Accounts/{sid}/Messages.json",
        post(
            move |Path(sid): Path<String>,
                  headers: HeaderMap,
                  Form(form): Form<std::collections::HashMap<String, String>>| {
                let record = record.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned())
                        .unwrap_or_default();
                    record.lock().unwrap().push((sid, auth, form));
                    (StatusCode::CREATED, r#"{"sid": "SM0123456789"}"#)
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let db = TestDb::new(Backend::Sqlite);
    let d = db.open().await;
    top_up(&d, 10).await;
    let mut cfg = delivery_config(free_port(), &Gateway::default());
    cfg.smtp = None;
    let sms = cfg.sms.as_mut().unwrap();
    sms.provider = "twilio".into();
    sms.twilio = Some(roster::config::TwilioConfig {
        account_sid: "AC123".into(),
        auth_token: Some("secret-token".into()),
        auth_token_file: None,
        from: "+15550100000".into(),
        base_url: base,
    });
    d.apply_one(&console(), new_hire("ann", "+8613800000501")).await.unwrap();
    let round = Dispatcher::new(d.store().clone(), &cfg).unwrap().run_once().await.unwrap();
    assert_eq!(round.sent, 1, "{round:?}");
    let seen = seen.lock().unwrap().clone();
    let (sid, auth, form) = &seen[0];
    assert_eq!(sid, "AC123");
    use base64_helper::encode;
    assert_eq!(auth, &format!("Basic {}", encode("AC123:secret-token")));
    assert_eq!((form["To"].as_str(), form["From"].as_str()), ("+8613800000501", "+15550100000"));
    assert!(form["Body"].contains("ann@example.com"), "{form:?}");
    let sent = d.store().deliveries_list(Some("sent"), 10).await.unwrap();
    assert_eq!(sent[0].provider_id.as_deref(), Some("SM0123456789"));
}

mod base64_helper {
    /// Standard base64 with padding (for checking a Basic authorization header).
    pub fn encode(s: &str) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let b = s.as_bytes();
        let mut out = String::new();
        for c in b.chunks(3) {
            let n =
                (c[0] as u32) << 16 | (*c.get(1).unwrap_or(&0) as u32) << 8 | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// A gateway that does not answer in time: the attempt fails as a timeout and is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_gateway_times_out_and_is_retried() {
    let gw = Gateway::start().await;
    let db = TestDb::new(Backend::Sqlite);
    let d = db.open().await;
    top_up(&d, 10).await;
    let mut cfg = delivery_config(free_port(), &gw);
    cfg.smtp = None;
    cfg.sms.as_mut().unwrap().timeout_secs = 1;
    let dispatcher = Dispatcher::new(d.store().clone(), &cfg).unwrap();
    d.apply_one(&console(), new_hire("ann", "+8613800000701")).await.unwrap();
    *gw.delay.lock().unwrap() = Some(Duration::from_millis(1800));
    assert_eq!(dispatcher.run_once().await.unwrap().retried, 1);
    let pending = d.store().deliveries_list(Some("pending"), 10).await.unwrap();
    assert!(pending[0].last_error.as_deref().unwrap().contains("timed out"), "{pending:?}");
    assert_eq!(d.store().sms_balance().await.unwrap(), 10, "a failed send is not charged");
    *gw.delay.lock().unwrap() = None;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(dispatcher.run_once().await.unwrap().sent, 1);
    assert_eq!(d.store().sms_balance().await.unwrap(), 9);
}

/// Falling below `low_balance` warns the enterprise contact by e-mail, once until a top-up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_balance_warns_the_contact_once() {
    let smtp = Smtp::start();
    let gw = Gateway::start().await;
    let db = TestDb::new(Backend::Sqlite);
    let d = db.open().await;
    let contact = roster::directory::EnterprisePatch {
        contact_email: Some(Some("it-admin@example.org".into())),
        ..Default::default()
    };
    d.apply_one(&console(), Change::UpdateEnterprise(contact)).await.unwrap();
    top_up(&d, 101).await;
    let mut cfg = delivery_config(smtp.port, &gw);
    cfg.sms.as_mut().unwrap().low_balance = 100;
    let dispatcher = Dispatcher::new(d.store().clone(), &cfg).unwrap();
    let hires = (0..3).map(|i| new_hire(&format!("l{i}"), &format!("+861380000080{i}"))).collect();
    d.apply(&console(), hires).await.unwrap();
    dispatcher.run_once().await.unwrap();
    assert_eq!(d.store().sms_balance().await.unwrap(), 98);
    dispatcher.run_once().await.unwrap();
    let warnings: Vec<String> =
        smtp.messages().into_iter().filter(|m| m.contains("To: it-admin@example.org")).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("SMS balance is low"), "{}", warnings[0]);
    // More SMS below the mark: no second warning; after a top-up and a new fall, one more.
    d.apply_one(&console(), new_hire("l9", "+8613800000899")).await.unwrap();
    dispatcher.run_once().await.unwrap();
    dispatcher.run_once().await.unwrap();
    assert_eq!(smtp.messages().iter().filter(|m| m.contains("To: it-admin@example.org")).count(), 1);
}

/// STARTTLS and implicit TLS against a server whose certificate a test CA signed: accepted with
/// that CA in `ca_file`, refused with an unrelated one (nothing sent, and the error says why).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_over_starttls_and_implicit_tls_checks_the_certificate() {
    use roster::delivery::channels::Mailer;
    use roster::delivery::templates::Templates;
    for implicit in [false, true] {
        let (smtp, certs) = Smtp::start_tls(implicit);
        let url = if implicit {
            format!("smtps://127.0.0.1:{}", smtp.port)
        } else {
            format!("smtp://127.0.0.1:{}?tls=required", smtp.port)
        };
        let cfg = |ca: &str| SmtpConfig {
            url: url.clone(),
            from: "Roster <roster@example.com>".into(),
            user: None,
            password: None,
            password_file: None,
            ca_file: Some(certs.path().join(ca)),
            timeout_secs: 5,
            rate_per_sec: None,
        };
        let t = Templates::builtin();
        let good = Mailer::new(&cfg("ca.pem")).unwrap();
        good.send_test("ops@example.org", &t, "en", "Example Corp")
            .await
            .unwrap_or_else(|e| panic!("{url}: {e:?}"));
        assert_eq!(smtp.messages().len(), 1, "{url}");
        let bad = Mailer::new(&cfg("other-ca.pem")).unwrap();
        let err = bad.send_test("ops@example.org", &t, "en", "Example Corp").await.unwrap_err();
        assert!(format!("{err:?}").to_lowercase().contains("certificate"), "{url}: {err:?}");
        assert_eq!(smtp.messages().len(), 1, "nothing sent over an untrusted connection");
    }
}
