//! Delivery benchmark: a broadcast to N members (30,000 by default): the time to queue it
//! (`delivery::desk::broadcast`, one transaction with its outbox event, then the dispatcher's
//! fan-out into one message a recipient, `Dispatcher::fan_out`) and the dispatch throughput
//! of one dispatcher against an HTTP SMS gateway on loopback that accepts everything at once (no
//! rate limit). SMS only: every message reserves and charges balance and writes a ledger line.
//!
//! `scripts/bench-delivery [sqlite|postgres]... [--members N]` (both stores by default).
//! Prints a Markdown table on stdout, progress on stderr.

#[path = "../tests/it/fixtures/pg.rs"]
mod pg;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use roster::config::{Config, DeliveryConfig, HttpSmsConfig, SmsConfig};
use roster::delivery::Dispatcher;
use roster::delivery::desk::NewBroadcast;
use roster::directory::model::{Actor, Email, Source};
use roster::directory::{Change, NewMember};

struct Result {
    store: &'static str,
    members: usize,
    enqueue_s: f64,
    messages: usize,
    dispatch_s: f64,
    sent: usize,
    gateway: u64,
}

async fn gateway() -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/send", listener.local_addr().unwrap());
    let seen = count.clone();
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post(move |_body: String| {
            let seen = seen.clone();
            async move {
                let n = seen.fetch_add(1, Ordering::Relaxed);
                format!(r#"{{"id": "gw-{n}"}}"#)
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, count)
}

async fn run(store: &'static str, url: String, members: usize) -> Result {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.database.url = match store {
        "SQLite" => format!("sqlite://{}", dir.path().join("roster.db").display()),
        _ => pg::fresh_database(),
    };
    cfg.numbers.first = 100_000;
    cfg.numbers.last = 999_999;
    let s = roster::app::open(&cfg).await.expect("open the store");
    let d = &s.directory;
    let actor = Actor::new(Source::import(), "bench");
    eprintln!("[{store}] creating {members} members");
    for start in (0..members).step_by(1000) {
        let set = (start..(start + 1000).min(members))
            .map(|i| {
                Change::CreateMember(NewMember {
                    login_name: format!("user{i:06}"),
                    display_name: format!("User {i}"),
                    emails: vec![Email {
                        address: format!("user{i:06}@mail.example.org"),
                        kind: "work".into(),
                        primary: true,
                    }],
                    mobile: Some(format!("+86139{i:08}")),
                    ..Default::default()
                })
            })
            .collect();
        d.apply(&actor, set).await.expect("create members");
    }
    roster::delivery::desk::top_up(s.delivery.as_ref(), &actor, members as i64 * 2, None).await.unwrap();
    // The welcome events go nowhere (no channel configured), so the broadcast is alone.
    Dispatcher::new(s.delivery.clone(), &DeliveryConfig::default()).unwrap().run_once().await.unwrap();

    eprintln!("[{store}] broadcast to everybody");
    let started = Instant::now();
    let b = NewBroadcast {
        title: "Benchmark".into(),
        text: "The office is closed on Friday.".into(),
        sms: true,
        language: "en".into(),
        ..Default::default()
    };
    // Recorded with its outbox event, then fanned out into one message a recipient: the time
    // until every message is queued.
    let (_, messages) =
        roster::delivery::desk::broadcast(d.store().as_ref(), s.delivery.as_ref(), &actor, b).await.unwrap();
    let queued =
        Dispatcher::new(s.delivery.clone(), &DeliveryConfig::default()).unwrap().fan_out().await.unwrap();
    assert_eq!(queued.queued as usize, messages, "every recipient's message is queued");
    let enqueue_s = started.elapsed().as_secs_f64();

    let delivery = DeliveryConfig {
        batch: 500,
        sms: Some(SmsConfig {
            provider: "http".into(),
            http: Some(HttpSmsConfig {
                url,
                method: "POST".into(),
                headers: Default::default(),
                body: r#"{"to": "{to}", "text": "{text}", "key": "{key}"}"#.into(),
                content_type: "application/json".into(),
                id_pointer: Some("/id".into()),
            }),
            twilio: None,
            low_balance: 0,
            quiet_hours: None,
            utc_offset: "+00:00".into(),
            timeout_secs: 10,
            rate_per_sec: None,
        }),
        ..Default::default()
    };
    eprintln!("[{store}] dispatching {messages} messages");
    let dispatcher = Dispatcher::new(s.delivery.clone(), &delivery).unwrap();
    let started = Instant::now();
    let round = dispatcher.run_once().await.unwrap();
    let dispatch_s = started.elapsed().as_secs_f64();
    let sent = s.delivery.deliveries_list(Some("sent"), (members * 2) as i64).await.unwrap().len();
    assert_eq!(sent, messages, "every message sent: {round:?}");
    s.store.close().await;
    Result { store, members, enqueue_s, messages, dispatch_s, sent: round.sent, gateway: 0 }
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut stores = Vec::new();
    let mut members = 30_000;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "sqlite" => stores.push("SQLite"),
            "postgres" => stores.push("PostgreSQL"),
            "--members" => members = args.next().and_then(|v| v.parse().ok()).expect("--members N"),
            _ => {}
        }
    }
    if stores.is_empty() {
        stores = vec!["SQLite", "PostgreSQL"];
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let results: Vec<Result> = rt.block_on(async {
        let (url, count) = gateway().await;
        let mut out = Vec::new();
        for store in stores {
            let before = count.load(Ordering::Relaxed);
            let mut r = run(store, url.clone(), members).await;
            r.gateway = count.load(Ordering::Relaxed) - before;
            out.push(r);
        }
        out
    });
    println!(
        "| store | members | enqueue (target < 5 s) | messages | dispatch | throughput (target ≥ 2,000/s on SQLite) | gateway requests |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for r in results {
        println!(
            "| {} | {} | {:.2} s | {} | {:.2} s | {:.0} messages/s | {} |",
            r.store,
            r.members,
            r.enqueue_s,
            r.messages,
            r.dispatch_s,
            r.sent as f64 / r.dispatch_s,
            r.gateway
        );
    }
}
