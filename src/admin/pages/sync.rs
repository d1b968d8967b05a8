//! Directory sync: sources, recent runs with their counts and errors, run now, dry-run (its
//! plan shown at once), approve a held run.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::IntoResponse;
use serde::Deserialize;
use serde_json::json;

use super::{Done, Reply};
use crate::admin::Console;
use crate::admin::views::{Chrome, html, when, when_opt};
use crate::admin::{Failure, Principal, directory, see_other};
use crate::config::LdapSource;
use crate::directory::model::Permission;
use crate::sync::store::SyncRun;
use crate::sync::{Report, RunOptions};

#[derive(Template)]
#[template(path = "sync.html", config = "src/admin/askama.toml")]
pub struct OverviewPage {
    pub c: Chrome,
    pub sources: Vec<LdapSource>,
    pub runs: Vec<SyncRun>,
    /// The report of a dry run just made.
    pub report: Option<Report>,
    pub error: Option<String>,
}

impl OverviewPage {
    pub fn started(&self, r: &SyncRun) -> String {
        when(&r.started_at)
    }
    pub fn counts(&self, r: &SyncRun) -> String {
        compact_counts(&r.counts)
    }
    pub fn report_counts(&self, r: &Report) -> String {
        compact_counts(&r.counts)
    }
}

/// `members: 3 created, 1 updated, ...` from a run's counts.
fn compact_counts(v: &serde_json::Value) -> String {
    let Some(map) = v.as_object() else { return v.to_string() };
    let mut parts = Vec::new();
    for (kind, t) in map {
        let n = |k: &str| t.get(k).and_then(|x| x.as_i64()).unwrap_or(0);
        if t.is_object() {
            let tally = ["created", "updated", "moved", "suspended", "deleted"]
                .iter()
                .filter(|k| n(k) > 0)
                .map(|k| format!("{} {k}", n(k)))
                .collect::<Vec<_>>();
            let tally = if tally.is_empty() { "no changes".to_owned() } else { tally.join(", ") };
            parts.push(format!("{kind}: {tally}"));
        } else {
            parts.push(format!("{kind}: {t}"));
        }
    }
    parts.join("; ")
}

#[derive(Template)]
#[template(path = "sync_run.html", config = "src/admin/askama.toml")]
pub struct RunPage {
    pub c: Chrome,
    pub run: SyncRun,
    pub started: String,
    pub finished: String,
    pub counts: String,
    pub errors: Vec<String>,
    /// The plan's first steps, as kept with the run.
    pub plan: Vec<String>,
}

async fn overview_page(
    state: &Console,
    p: &Principal,
    report: Option<Report>,
    error: Option<String>,
    done: Option<&str>,
) -> Reply {
    let c = p.chrome(p.lang.t("menu.sync")).at("/admin/sync").flash(done);
    let page = OverviewPage {
        c,
        sources: state.config.sync.ldap.clone(),
        runs: crate::admin::ready(state)?.runs.runs_recent(50).await?,
        report,
        error,
    };
    Ok(html(&page).into_response())
}

pub async fn overview(State(state): State<Console>, p: Principal, Query(q): Query<Done>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has(Permission::ManageSync), "sync.view").await?;
    overview_page(&state, &p, None, None, q.done.as_deref()).await
}

pub async fn run_page(State(state): State<Console>, p: Principal, Path(id): Path<i64>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has(Permission::ManageSync), "sync.view").await?;
    let run = crate::admin::ready(&state)?.runs.run(id).await?.ok_or(Failure::NotFound)?;
    let errors = run
        .errors
        .as_array()
        .map(|a| a.iter().map(|e| e.as_str().map(str::to_owned).unwrap_or_else(|| e.to_string())).collect())
        .unwrap_or_default();
    let page = RunPage {
        c: p.chrome(&format!("{} #{}", p.lang.t("sync.run"), run.id)).at("/admin/sync"),
        started: when(&run.started_at),
        finished: when_opt(&run.finished_at),
        counts: compact_counts(&run.counts),
        errors,
        plan: crate::admin::ready(&state)?.runs.run_plan(id).await?,
        run,
    };
    Ok(html(&page).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct RunForm {
    #[serde(default)]
    full: Option<String>,
    #[serde(default)]
    dry_run: Option<String>,
}

/// Starts a run. A dry run is waited for and its plan shown; a real run goes on in the
/// background (its progress is in the runs list).
pub async fn run_now(
    State(state): State<Console>,
    p: Principal,
    Path(name): Path<String>,
    Form(f): Form<RunForm>,
) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has(Permission::ManageSync), "sync.run").await?;
    let sync = crate::admin::ready(&state)?.sync.clone();
    if !sync.sources().iter().any(|s| s.name == name) {
        return Err(Failure::NotFound);
    }
    let opts = RunOptions {
        full: f.full.is_some(),
        dry_run: f.dry_run.is_some(),
        trigger: format!("console:{}", p.actor().who),
        approved: None,
    };
    let detail = json!({ "source": name, "full": opts.full, "dry_run": opts.dry_run });
    d.record(&p.actor(), "sync.start", "sync_source", Some(name.clone()), detail)
        .await
        .map_err(|e| Failure::from_directory(&e))?;
    if opts.dry_run {
        return match sync.run(&name, opts).await {
            Ok(report) => overview_page(&state, &p, Some(report), None, None).await,
            Err(crate::sync::SyncError::Store(e)) => Err(Failure::from(e)),
            Err(e) => overview_page(&state, &p, None, Some(e.to_string()), None).await,
        };
    }
    tokio::spawn(async move {
        if let Err(e) = sync.run(&name, opts).await {
            tracing::warn!(source = %name, error = %e, "console-started sync could not run");
        }
    });
    Ok(see_other("/admin/sync?done=sync.run"))
}

pub async fn approve(State(state): State<Console>, p: Principal, Path(id): Path<i64>) -> Reply {
    let d = directory(&state)?;
    p.require(d, p.has(Permission::ManageSync), "sync.approve").await?;
    let sync = crate::admin::ready(&state)?.sync.clone();
    let run = crate::admin::ready(&state)?.runs.run(id).await?.ok_or(Failure::NotFound)?;
    if run.status != crate::sync::store::RunStatus::Held {
        return Err(Failure::Conflict(format!("run {id} is {}, not held", run.status)));
    }
    d.record(&p.actor(), "sync.approve", "sync_run", Some(id.to_string()), json!({ "source": run.source }))
        .await
        .map_err(|e| Failure::from_directory(&e))?;
    match sync.approve(id).await {
        Ok(report) => Ok(see_other(&format!("/admin/sync/runs/{}", report.run_id))),
        Err(crate::sync::SyncError::Store(e)) => Err(Failure::from(e)),
        Err(e) => overview_page(&state, &p, None, Some(e.to_string()), None).await,
    }
}
