//! LDAP / Active Directory sync: the directory as the source of truth.
//!
//! A run reads the source completely ([`ldap`]), maps entries by anchor ([`map`]), plans the
//! changes against what Roster holds for that source ([`plan`]), checks the plan against the
//! deletion limits, and applies it through [`DirectoryService`] in batches, each one
//! transaction. A failed read ends the run before anything is applied; a plan over a limit is
//! held until `rosterd sync approve RUN_ID`. Every run is recorded.

pub mod ldap;
pub mod map;
pub mod plan;

use std::collections::HashSet;

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::config::{LdapSource, Preset, SyncLimits};
use crate::directory::model::{Actor, Source};
use crate::directory::{Change, DirectoryService};
use plan::{Current, Plan};

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("reading the source failed: {0}")]
    Read(String),
    #[error("{0}")]
    Store(#[from] crate::store::StoreError),
    #[error("another run of source {0} is in progress")]
    Busy(String),
    #[error("{0}")]
    Approve(String),
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Applied,
    Held,
    DryRun,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Held => "held",
            Outcome::DryRun => "dry_run",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub full: bool,
    pub dry_run: bool,
    /// `cli`, `schedule:full`, ...
    pub trigger: String,
    /// Lift the deletion limits up to these counts (an approval).
    pub approved: Option<serde_json::Value>,
}

/// What a run did.
#[derive(Debug, Serialize)]
pub struct Report {
    pub run_id: i64,
    pub source: String,
    pub outcome: Outcome,
    pub message: String,
    pub counts: serde_json::Value,
    pub errors: Vec<String>,
    /// The plan's steps (for `--dry-run`).
    pub plan: Vec<String>,
}

/// Runs sync sources; shared by the CLI and the scheduler.
#[derive(Clone)]
pub struct SyncService {
    directory: DirectoryService,
    sources: Vec<LdapSource>,
    /// Who holds leases (`host:pid`).
    holder: String,
}

const BATCH: usize = 500;
const MAX_ERRORS: usize = 1000;

impl SyncService {
    pub fn new(directory: DirectoryService, sources: Vec<LdapSource>) -> SyncService {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let holder = format!("{}:{}:{}", host.trim(), std::process::id(), Uuid::new_v4().simple());
        SyncService { directory, sources, holder }
    }

    pub fn sources(&self) -> &[LdapSource] {
        &self.sources
    }

    fn source(&self, name: &str) -> Result<&LdapSource, SyncError> {
        self.sources
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| SyncError::Config(format!("no [[sync.ldap]] source is named {name:?}")))
    }

    /// Runs a source once, under its lease (one run per source at a time, across nodes).
    pub async fn run(&self, name: &str, opts: RunOptions) -> Result<Report, SyncError> {
        let src = self.source(name)?.clone();
        let store = self.directory.store().clone();
        let until = chrono::Utc::now() + chrono::Duration::minutes(30);
        if !store.lease_acquire(&src.name, &self.holder, until).await? {
            return Err(SyncError::Busy(src.name));
        }
        let result = self.run_leased(&src, opts).await;
        let _ = store.lease_release(&src.name, &self.holder).await;
        result
    }

    async fn run_leased(&self, src: &LdapSource, opts: RunOptions) -> Result<Report, SyncError> {
        let store = self.directory.store().clone();
        let run_id = store.run_start(&src.name, &opts.trigger, opts.full, opts.dry_run).await?;
        let mut report = Report {
            run_id,
            source: src.name.clone(),
            outcome: Outcome::Failed,
            message: String::new(),
            counts: json!({}),
            errors: Vec::new(),
            plan: Vec::new(),
        };
        match self.plan_and_apply(src, &opts, &mut report).await {
            Ok(()) => {}
            Err(e) => {
                report.outcome = Outcome::Failed;
                report.message = format!("{e}; nothing was deleted");
            }
        }
        metrics::counter!("roster_sync_runs_total", "source" => src.name.clone(), "status" => report.outcome.as_str())
            .increment(1);
        store
            .run_finish(
                run_id,
                report.outcome.as_str(),
                &report.counts,
                &json!(report.errors),
                &report.message,
            )
            .await?;
        tracing::info!(source = %src.name, run = run_id, outcome = report.outcome.as_str(), "{}", report.message);
        Ok(report)
    }

    async fn plan_and_apply(
        &self,
        src: &LdapSource,
        opts: &RunOptions,
        report: &mut Report,
    ) -> Result<(), SyncError> {
        let snapshot = read(src).await?;
        report.errors.extend(snapshot.skipped.iter().cloned());
        let source = format!("ldap:{}", src.name);
        let store = self.directory.store();
        let current = Current {
            units: store.org_units_all().await?.into_iter().filter(|u| u.source.as_str() == source).collect(),
            members: store.members_by_source(&source).await?,
            groups: store.groups_by_source(&source).await?,
        };
        let domain = store.enterprise().await?.map(|e| e.mail_domain).unwrap_or_default();
        let plan = plan::build(&src.name, &snapshot, &current, &domain);
        report.plan = plan.steps().map(|s| s.what.clone()).collect();
        report.counts = json!(plan.tallies());
        if opts.dry_run {
            report.outcome = Outcome::DryRun;
            report.message = format!("dry run: {} changes planned, none applied", report.plan.len());
            return Ok(());
        }
        if let Some((kind, deletes, before)) = over_limit(&plan, &src.limits, opts.approved.as_ref()) {
            report.outcome = Outcome::Held;
            report.message = format!(
                "held: the plan deletes {deletes} of {before} {kind}, over the limit \
                 (limits.max_deletes = {}, limits.max_delete_percent = {}); \
                 approve with `rosterd sync approve {}`",
                src.limits.max_deletes, src.limits.max_delete_percent, report.run_id
            );
            tracing::warn!(source = %src.name, run = report.run_id, "{}", report.message);
            return Ok(());
        }
        let actor =
            Actor::new(Source::parse(&source).expect("validated source name"), format!("sync:{}", src.name));
        let applied = self.apply(&actor, plan, &mut report.errors).await;
        report.errors.truncate(MAX_ERRORS);
        report.outcome = Outcome::Applied;
        report.message = if report.errors.is_empty() {
            format!("applied {applied} changes")
        } else {
            format!("applied {applied} changes; {} entries skipped (see errors)", report.errors.len())
        };
        Ok(())
    }

    /// Applies the phases in order, in batches. A change the directory refuses is reported and
    /// left out; the rest of its batch is applied.
    async fn apply(&self, actor: &Actor, plan: Plan, errors: &mut Vec<String>) -> usize {
        let mut applied = 0;
        let mut failed_members: HashSet<Uuid> = HashSet::new();
        for phase in plan.phases {
            for chunk in phase.chunks(BATCH) {
                let mut batch: Vec<(String, Change)> = chunk
                    .iter()
                    .map(|s| (s.what.clone(), without_members(s.change.clone(), &failed_members)))
                    .collect();
                while !batch.is_empty() {
                    let changes: Vec<Change> = batch.iter().map(|(_, c)| c.clone()).collect();
                    match self.directory.apply(actor, changes).await {
                        Ok(out) => {
                            applied += out.len();
                            break;
                        }
                        Err(e) => {
                            if matches!(e.error, crate::directory::DirectoryError::Store(_)) {
                                errors.push(format!("store error, batch abandoned: {}", e.error));
                                return applied;
                            }
                            let (what, change) = batch.remove(e.index);
                            if let Change::CreateMember(n) = &change {
                                failed_members.extend(n.id);
                            }
                            if errors.len() < MAX_ERRORS {
                                errors.push(format!("{what}: {} [{}]", e.error, e.error.code()));
                            }
                        }
                    }
                }
            }
        }
        applied
    }

    /// Approves a held run: runs the source again, applying the plan if it deletes no more of
    /// any kind than the held one did.
    pub async fn approve(&self, run_id: i64) -> Result<Report, SyncError> {
        let store = self.directory.store();
        let run = store
            .run(run_id)
            .await?
            .ok_or_else(|| SyncError::Approve(format!("there is no run {run_id}")))?;
        if run.status != "held" {
            return Err(SyncError::Approve(format!("run {run_id} is {}, not held", run.status)));
        }
        let report = self
            .run(
                &run.source,
                RunOptions {
                    full: true,
                    dry_run: false,
                    trigger: format!("approve:{run_id}"),
                    approved: Some(run.counts.clone()),
                },
            )
            .await?;
        if report.outcome == Outcome::Applied {
            store
                .run_finish(
                    run_id,
                    "approved",
                    &run.counts,
                    &run.errors,
                    &format!("approved; applied by run {}", report.run_id),
                )
                .await?;
        }
        Ok(report)
    }
}

/// Group changes never name members whose creation failed in this run.
fn without_members(change: Change, failed: &HashSet<Uuid>) -> Change {
    if failed.is_empty() {
        return change;
    }
    match change {
        Change::CreateGroup(mut g) => {
            g.members.retain(|m| !failed.contains(m));
            Change::CreateGroup(g)
        }
        Change::AddGroupMembers { id, mut members } => {
            members.retain(|m| !failed.contains(m));
            Change::AddGroupMembers { id, members }
        }
        Change::UpdateMember { id, patch } if failed.contains(&id) => Change::UpdateMember { id, patch },
        other => other,
    }
}

/// The kind over its deletion limit. An approval lifts the limit up to what was approved.
fn over_limit(
    plan: &Plan,
    limits: &SyncLimits,
    approved: Option<&serde_json::Value>,
) -> Option<(&'static str, usize, usize)> {
    let hit = plan::over_limit(plan, limits)?;
    if let Some(ok) = approved {
        let within = plan
            .tallies()
            .into_iter()
            .all(|(kind, t)| t.deleted as u64 <= ok[kind]["deleted"].as_u64().unwrap_or(0));
        if within {
            return None;
        }
    }
    Some(hit)
}

/// Reads the whole source: org units, users, suspended users, groups.
async fn read(src: &LdapSource) -> Result<map::Snapshot, SyncError> {
    let attrs = map::AttrMap::for_source(src).map_err(SyncError::Config)?;
    let ad = src.preset == Preset::ActiveDirectory;
    let mut conn = ldap::connect(src).await?;
    let units = match &src.org_units {
        Some(s) => {
            let filter = s.filter.as_deref().unwrap_or("(objectClass=organizationalUnit)");
            ldap::search(&mut conn, src, &s.base_dn, filter, &attrs.requested(&[])).await?
        }
        None => Vec::new(),
    };
    let default_user_filter =
        if ad { "(&(objectClass=user)(objectCategory=person))" } else { "(objectClass=inetOrgPerson)" };
    let user_filter = src.users.filter.as_deref().unwrap_or(default_user_filter);
    let users = ldap::search(
        &mut conn,
        src,
        &src.users.base_dn,
        user_filter,
        &attrs.requested(&["userAccountControl"]),
    )
    .await?;
    let suspended: HashSet<String> = match &src.suspended_filter {
        Some(f) => {
            let both = format!("(&{user_filter}{f})");
            let hits =
                ldap::search(&mut conn, src, &src.users.base_dn, &both, &[attrs.anchor.clone()]).await?;
            hits.iter().filter_map(|e| map::anchor_of(e, &attrs.anchor)).collect()
        }
        None => HashSet::new(),
    };
    let groups = match &src.groups {
        Some(g) => {
            let filter = g.filter.as_deref().unwrap_or(if ad {
                "(objectClass=group)"
            } else {
                "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))"
            });
            ldap::search(&mut conn, src, &g.base_dn, filter, &attrs.requested(&["cn"])).await?
        }
        None => Vec::new(),
    };
    let _ = conn.unbind().await;
    Ok(map::snapshot(
        &attrs,
        src.org_units.as_ref().map(|o| o.base_dn.as_str()),
        units,
        users,
        groups,
        &suspended,
        ad,
    ))
}
