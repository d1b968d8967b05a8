//! Metrics: the process's Prometheus recorder, the HTTP request metrics middleware, the
//! directory's object counts, and the gauges and counters other modules report.
//!
//! Every module records through the `metrics` facade; this module owns the recorder and the
//! helpers whose label sets must stay fixed (a client inventing methods or routes cannot grow
//! the label space).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::directory::store::DirectoryRead;

/// The process-wide Prometheus recorder (installed once; every app in the process shares it).
/// Its upkeep (draining histogram samples into their buckets) runs every [`UPKEEP`] on a thread
/// of its own and before each scrape, so recorded samples never pile up between scrapes.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(&[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP);
                        upkeep.run_upkeep();
                    }
                })
                .expect("a thread for the metrics upkeep");
            handle
        })
        .clone()
}

const UPKEEP: Duration = Duration::from_secs(5);

/// How old the directory's object counts on `/metrics` may be: they are counted at most this
/// often, in the background, never once per scrape.
const COUNTS_MAX_AGE: Duration = Duration::from_secs(60);

/// The method as a metric label: one of a fixed set, so a client inventing methods cannot grow
/// the label space.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = method_label(req.method());
    let start = Instant::now();
    let response = next.run(req).await;
    let labels =
        [("method", method.to_owned()), ("route", route), ("status", response.status().as_u16().to_string())];
    metrics::counter!("roster_http_requests_total", &labels).increment(1);
    metrics::histogram!("roster_http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// Counts the directory's objects for the gauges when the last count is older than
/// [`COUNTS_MAX_AGE`]: in the background (the scrape shows the previous count), except for the
/// first scrape, which waits for it. However often `/metrics` is scraped, `COUNT(*)` over the
/// big tables runs at most once in that time.
pub async fn refresh_counts(counted_at: &std::sync::Mutex<Option<Instant>>, store: Arc<dyn DirectoryRead>) {
    let first = {
        let mut last = counted_at.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < COUNTS_MAX_AGE) {
            return;
        }
        last.replace(Instant::now()).is_none()
    };
    let count = async move {
        metrics::counter!("roster_metrics_counts_total").increment(1);
        match store.counts().await {
            Ok(c) => {
                metrics::gauge!("roster_members").set(c.members as f64);
                metrics::gauge!("roster_org_units").set(c.org_units as f64);
                metrics::gauge!("roster_groups").set(c.groups as f64);
                metrics::gauge!("roster_tombstones").set(c.tombstones as f64);
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot count directory objects"),
        }
        match store.quarantine_counts().await {
            Ok(counts) => {
                for field in ["mobile", "email"] {
                    let n = counts.iter().find(|(f, _)| f == field).map_or(0, |(_, n)| *n);
                    metrics::gauge!("roster_quarantined_values", "field" => field).set(n as f64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "metrics: cannot count the values kept aside"),
        }
    };
    if first {
        count.await;
    } else {
        tokio::spawn(count);
    }
}

/// A message left on `channel`.
pub fn delivery_sent(channel: &str) {
    metrics::counter!("roster_deliveries_sent_total", "channel" => channel.to_owned()).increment(1);
}

/// Messages by channel and state, as the dispatcher last counted them.
pub fn delivery_counts(counts: &[(String, String, i64)]) {
    for (channel, state, n) in counts {
        metrics::gauge!("roster_deliveries", "channel" => channel.clone(), "state" => state.clone())
            .set(*n as f64);
    }
}
