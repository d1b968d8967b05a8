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
pub mod store;

use std::collections::HashSet;

use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::config::{LdapSource, Preset, SyncLimits};
use crate::directory::model::{Actor, Source};
use crate::directory::{Change, DirectoryService};
use plan::{Current, Plan};

/// The filter that selects a source's users (the preset's when none is set).
pub fn user_filter(src: &LdapSource) -> &str {
    let ad = src.preset == crate::config::Preset::ActiveDirectory;
    let default =
        if ad { "(&(objectClass=user)(objectCategory=person))" } else { "(objectClass=inetOrgPerson)" };
    src.users.filter.as_deref().unwrap_or(default)
}

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("reading the source failed: {0}")]
    Read(String),
    #[error("{0}")]
    Store(#[from] crate::directory::store::StoreError),
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
    /// The status a run with this outcome is recorded with.
    pub fn status(self) -> store::RunStatus {
        match self {
            Outcome::Applied => store::RunStatus::Applied,
            Outcome::Held => store::RunStatus::Held,
            Outcome::DryRun => store::RunStatus::DryRun,
            Outcome::Failed => store::RunStatus::Failed,
        }
    }

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
    /// How the source was read (none when the read failed).
    pub mode: Option<ReadMode>,
    /// Entries the read returned.
    pub entries_read: usize,
    /// Members compared field by field: those the read carried whose stored digest differed
    /// from the source's (the others are unchanged and were not loaded).
    pub compared: usize,
    /// The source's query (base DNs, filters, attribute map, preset) changed since the stored
    /// cursor was taken, so this run read everything.
    pub query_changed: bool,
}

/// Sync's scheduled jobs ([`crate::jobs`]): each source's `incremental` and `full` schedules,
/// as `sync:<source>:<kind>`. (Config validation refused bad expressions already; one that
/// slips through is logged and left out.)
pub fn jobs(sync: &SyncService) -> Vec<crate::jobs::Job> {
    let mut jobs = Vec::new();
    for src in sync.sources() {
        for (kind, expr) in [("incremental", &src.schedule.incremental), ("full", &src.schedule.full)] {
            let Some(expr) = expr else { continue };
            let schedule: cron::Schedule = match expr.parse() {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(source = %src.name, kind, error = %e, "bad cron expression; schedule disabled");
                    continue;
                }
            };
            let (sync, name) = (sync.clone(), src.name.clone());
            jobs.push(crate::jobs::Job::new(format!("sync:{name}:{kind}"), schedule, move || {
                let (sync, name) = (sync.clone(), name.clone());
                async move {
                    let opts = RunOptions {
                        full: kind == "full",
                        trigger: format!("schedule:{kind}"),
                        ..Default::default()
                    };
                    match sync.run(&name, opts).await {
                        Ok(_) => Ok(()),
                        // A run from the console or the CLI holds the source: this one waits for
                        // the next time.
                        Err(SyncError::Busy(_)) => {
                            tracing::debug!(source = %name, "a run is already in progress elsewhere");
                            Ok(())
                        }
                        Err(e) => Err(e.into()),
                    }
                }
            }));
        }
    }
    jobs
}

/// Console sign-in by pass-through to the LDAP sources ([`crate::access::PassThrough`]): a member
/// of `ldap:<name>` signs in with the password their directory knows.
pub struct PassThroughLdap {
    sources: Vec<LdapSource>,
}

impl PassThroughLdap {
    pub fn new(sources: Vec<LdapSource>) -> PassThroughLdap {
        PassThroughLdap { sources }
    }
}

#[async_trait::async_trait]
impl crate::access::PassThrough for PassThroughLdap {
    async fn verify(
        &self,
        source: &str,
        anchor: &str,
        password: &str,
    ) -> Option<Result<bool, crate::access::Unreachable>> {
        let name = source.strip_prefix("ldap:")?;
        let src = self.sources.iter().find(|s| s.name == name)?;
        Some(
            ldap::verify_password(src, anchor, password)
                .await
                .map_err(|e| crate::access::Unreachable(e.to_string())),
        )
    }
}

/// Runs sync sources; shared by the CLI and the scheduler.
#[derive(Clone)]
pub struct SyncService {
    directory: DirectoryService,
    /// Runs, their leases and cursors (sync's own store).
    runs: std::sync::Arc<dyn store::RunStore>,
    sources: Vec<LdapSource>,
    /// Who holds leases (`host:pid`).
    holder: String,
    /// A progress bar for a person watching (`rosterd sync` on a terminal).
    progress: Option<indicatif::ProgressBar>,
}

/// Changes a transaction. SQLite writes every page a transaction dirtied to its log at each
/// commit, and a new member dirties a page in each of several indexes: batches of 500 wrote
/// each index page again and again (a first sync's commits took 1.8 s; 1.0 s at 5,000). Larger
/// batches save less and hold more in memory.
const BATCH: usize = 5000;
const MAX_ERRORS: usize = 1000;
/// How many values kept aside a run's report lists (it counts them all).
const QUARANTINE_LISTED: usize = 100;
/// How many steps of a run's plan are kept with the run (for the console).
const PLAN_KEPT: usize = 2000;

impl SyncService {
    pub fn new(
        directory: DirectoryService,
        runs: std::sync::Arc<dyn store::RunStore>,
        sources: Vec<LdapSource>,
    ) -> SyncService {
        SyncService { directory, runs, sources, holder: crate::jobs::holder(), progress: None }
    }

    /// Shows the run's progress (reading, then applying) on a terminal.
    pub fn with_progress(mut self) -> SyncService {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len} ({eta})")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        self.progress = Some(bar);
        self
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
        let store = self.runs.clone();
        let until = chrono::Utc::now() + chrono::Duration::minutes(30);
        if !store.lease_acquire(&src.name, &self.holder, until).await? {
            return Err(SyncError::Busy(src.name));
        }
        let result = self.run_leased(&src, opts).await;
        let _ = store.lease_release(&src.name, &self.holder).await;
        result
    }

    async fn run_leased(&self, src: &LdapSource, opts: RunOptions) -> Result<Report, SyncError> {
        let store = self.runs.clone();
        let run_id = store.run_start(&src.name, &opts.trigger, opts.full, opts.dry_run).await?;
        let mut report = Report {
            run_id,
            source: src.name.clone(),
            outcome: Outcome::Failed,
            message: String::new(),
            counts: json!({}),
            errors: Vec::new(),
            plan: Vec::new(),
            mode: None,
            entries_read: 0,
            compared: 0,
            query_changed: false,
        };
        match self.plan_and_apply(src, &opts, &mut report).await {
            Ok(()) => {}
            Err(e) => {
                report.outcome = Outcome::Failed;
                report.message = format!("{e}; nothing was deleted");
            }
        }
        if report.query_changed {
            report.message = format!(
                "the source's query (base DNs, filters, attribute map or preset) changed since the last \
                 run, so it was read in full; {}",
                report.message
            );
        }
        metrics::counter!("roster_sync_runs_total", "source" => src.name.clone(), "status" => report.outcome.as_str())
            .increment(1);
        store
            .run_finish(
                run_id,
                report.outcome.status(),
                &report.counts,
                &json!(report.errors),
                &report.message,
            )
            .await?;
        if let Some(p) = &self.progress {
            p.finish_and_clear();
        }
        tracing::info!(source = %src.name, run = run_id, outcome = report.outcome.as_str(), "{}", report.message);
        Ok(report)
    }

    async fn plan_and_apply(
        &self,
        src: &LdapSource,
        opts: &RunOptions,
        report: &mut Report,
    ) -> Result<(), SyncError> {
        let source = format!("ldap:{}", src.name);
        let store = self.directory.store();
        if let Some(p) = &self.progress {
            p.set_message(format!("reading {}", src.url));
        }
        let stored = self.runs.sync_cursor(&src.name).await?;
        let started = std::time::Instant::now();
        // What Roster holds for the source is loaded while the source is read.
        let held = tokio::spawn(held_by(store.clone(), source.clone()));
        let read = read(src, stored.clone(), opts.full).await;
        if read.is_err() {
            held.abort();
        }
        let Read { snapshot, mode, cursor, entries, query_changed } = read?;
        tracing::info!(source = %src.name, entries, ?mode, secs = started.elapsed().as_secs_f64(), "read the source");
        let started = std::time::Instant::now();
        // An unchanged source leaves the cursor as it was: such a run writes nothing.
        let cursor = cursor.filter(|c| Some(c) != stored.as_ref());
        report.mode = Some(mode);
        report.entries_read = entries;
        report.query_changed = query_changed;
        report.errors.extend(snapshot.skipped.iter().cloned());
        let Held { units, groups, keys, domain } =
            held.await.map_err(|e| SyncError::Read(format!("loading what the source holds: {e}")))??;
        // Only the carried members whose digests differ are loaded whole and compared.
        let compare = plan::to_compare(&snapshot, &units, &keys, &domain);
        report.compared = compare.len();
        let members = store.members_by_anchors(&source, &compare).await?;
        let mut kept_aside: foldhash::HashMap<Uuid, Vec<(String, String)>> = Default::default();
        for q in store.quarantined(Some(&source), None, i64::MAX).await? {
            kept_aside.entry(q.member_id).or_default().push((q.field, q.value));
        }
        let current = Current { units, keys, members, groups, kept_aside };
        let plan = plan::build(&src.name, &snapshot, &current, &domain);
        tracing::info!(
            source = %src.name,
            compared = report.compared,
            steps = plan.steps().count(),
            secs = started.elapsed().as_secs_f64(),
            "planned"
        );
        let digests = plan::missing_digests(&current);
        // Only the plan is needed from here on.
        drop(snapshot);
        drop(current);
        if !opts.dry_run && !digests.is_empty() {
            let filled = self.directory.fill_digests(&digests).await?;
            tracing::info!(source = %src.name, members = filled, "stored the digests of members compared whole");
        }
        release_freed_memory();
        report.plan = plan.steps().map(|s| s.what.clone()).collect();
        report.counts = json!(plan.tallies());
        let kept = &report.plan[..report.plan.len().min(PLAN_KEPT)];
        self.runs.run_set_plan(report.run_id, kept).await?;
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
        let cursor = cursor.map(|c| Change::SetSyncCursor { source: src.name.clone(), cursor: c });
        if let Some(p) = &self.progress {
            p.set_length(report.plan.len() as u64);
            p.set_message("applying");
        }
        let started = std::time::Instant::now();
        let applied = self.apply(&actor, plan, cursor, &mut report.errors).await;
        tracing::info!(source = %src.name, applied, secs = started.elapsed().as_secs_f64(), "applied the plan");
        report.errors.truncate(MAX_ERRORS);
        report.outcome = Outcome::Applied;
        report.message = if report.errors.is_empty() {
            format!("applied {applied} changes")
        } else {
            format!("applied {applied} changes; {} entries skipped (see errors)", report.errors.len())
        };
        // Values kept aside because other members hold them: every run says how many there are,
        // and lists them.
        let kept = store.quarantined(Some(&source), None, QUARANTINE_LISTED as i64 + 1).await?;
        if !kept.is_empty() {
            let listed: Vec<String> = kept
                .iter()
                .take(QUARANTINE_LISTED)
                .map(|q| format!("{}: {} {} is held by another member", q.login_name, q.field, q.value))
                .collect();
            let total: i64 = store.quarantine_counts_for(&source).await?;
            report.counts["quarantined"] = json!(total);
            report.counts["quarantined_values"] = json!(listed);
            report.message.push_str(&format!(
                "; {total} values kept aside (held by other members; each goes to its member when the holder lets go)"
            ));
        }
        Ok(())
    }

    /// Applies the phases in order, in batches. A change the directory refuses is reported and
    /// left out; the rest of its batch is applied.
    /// The cursor goes into the last batch: stored with the changes it produced, or not at all.
    async fn apply(
        &self,
        actor: &Actor,
        plan: Plan,
        cursor: Option<Change>,
        errors: &mut Vec<String>,
    ) -> usize {
        let mut applied = 0;
        let mut failed_members: HashSet<Uuid> = HashSet::new();
        let mut cursor = cursor.map(|c| plan::Step { what: "store the sync cursor".into(), change: c });
        // The plan's steps are moved into batches as they are applied, never copied: a first
        // sync's plan is 100,000 creates.
        let mut phases = plan.phases.into_iter().filter(|p| !p.is_empty()).peekable();
        if phases.peek().is_none() {
            let only = Vec::from_iter(cursor.take());
            return self.apply_batch(actor, only, &mut failed_members, errors).await.unwrap_or(0);
        }
        while let Some(phase) = phases.next() {
            let mut steps = phase.into_iter().peekable();
            while steps.peek().is_some() {
                let mut chunk: Vec<plan::Step> = steps.by_ref().take(BATCH).collect();
                if steps.peek().is_none() && phases.peek().is_none() {
                    chunk.extend(cursor.take());
                }
                match self.apply_batch(actor, chunk, &mut failed_members, errors).await {
                    Some(n) => applied += n,
                    None => return applied,
                }
            }
        }
        applied
    }

    /// Applies one batch, in one transaction when the directory takes all of it. A change it
    /// refuses is reported and left out: the changes before it (which it accepted) are applied
    /// as a transaction of their own, then those after it, so each refusal costs one more
    /// transaction, not a retry of the whole batch. `None` when the store failed (the run stops).
    async fn apply_batch(
        &self,
        actor: &Actor,
        chunk: Vec<plan::Step>,
        failed_members: &mut HashSet<Uuid>,
        errors: &mut Vec<String>,
    ) -> Option<usize> {
        let batch: Vec<(String, Change)> = chunk
            .into_iter()
            .filter_map(|s| Some((s.what, without_members(s.change, failed_members)?)))
            .collect();
        let mut applied = 0;
        // Parts still to apply, in order.
        let mut parts = std::collections::VecDeque::from([batch]);
        while let Some(mut part) = parts.pop_front() {
            if part.is_empty() {
                continue;
            }
            let changes: Vec<Change> = part.iter().map(|(_, c)| c.clone()).collect();
            match self.directory.apply(actor, changes).await {
                Ok(out) => {
                    applied +=
                        out.iter().filter(|a| !matches!(a, crate::directory::Applied::SyncCursor)).count();
                }
                Err(e) => {
                    if matches!(e.error, crate::directory::DirectoryError::Store(_)) {
                        errors.push(format!("store error, batch abandoned: {}", e.error));
                        return None;
                    }
                    let after = part.split_off(e.index + 1);
                    let (what, change) = part.pop().expect("the refused change is in its part");
                    if let Change::CreateMember(n) = &change {
                        failed_members.extend(n.id);
                    }
                    if errors.len() < MAX_ERRORS {
                        errors.push(format!("{what}: {} [{}]", e.error, e.error.code()));
                    }
                    parts.push_front(after);
                    parts.push_front(part);
                }
            }
        }
        Some(applied)
    }

    /// Approves a held run: runs the source again, applying the plan if it deletes no more of
    /// any kind than the held one did.
    pub async fn approve(&self, run_id: i64) -> Result<Report, SyncError> {
        let store = &self.runs;
        let run = store
            .run(run_id)
            .await?
            .ok_or_else(|| SyncError::Approve(format!("there is no run {run_id}")))?;
        if run.status != store::RunStatus::Held {
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
                    store::RunStatus::Approved,
                    &run.counts,
                    &run.errors,
                    &format!("approved; applied by run {}", report.run_id),
                )
                .await?;
        }
        Ok(report)
    }
}

/// What Roster holds for a source before a run, except the members to compare whole.
struct Held {
    units: Vec<crate::directory::model::OrgUnit>,
    groups: Vec<(crate::directory::model::Group, Vec<Uuid>)>,
    keys: Vec<crate::directory::store::MemberKey>,
    domain: String,
}

/// The four reads go to the read pool at once, each on its own connection: an incremental run
/// waits for them rather than for the source, and one after another they took as long as the
/// longest plus the other three.
async fn held_by(
    store: std::sync::Arc<dyn crate::directory::store::DirectoryRead>,
    source: String,
) -> Result<Held, SyncError> {
    let (units, groups, keys, enterprise) = tokio::try_join!(
        store.org_units_all(),
        store.groups_by_source(&source),
        store.member_keys_by_source(&source),
        store.enterprise(),
    )?;
    let units = units.into_iter().filter(|u| u.source.as_str() == source).collect();
    let domain = enterprise.map(|e| e.mail_domain).unwrap_or_default();
    Ok(Held { units, groups, keys, domain })
}

/// Group changes never name members whose creation failed in this run; one that only named
/// such members is dropped (applied empty, it would still touch the group and audit nothing).
fn without_members(change: Change, failed: &HashSet<Uuid>) -> Option<Change> {
    if failed.is_empty() {
        return Some(change);
    }
    match change {
        Change::CreateGroup(mut g) => {
            g.members.retain(|m| !failed.contains(m));
            Some(Change::CreateGroup(g))
        }
        Change::AddGroupMembers { id, mut members } => {
            let named = !members.is_empty();
            members.retain(|m| !failed.contains(m));
            (!members.is_empty() || !named).then_some(Change::AddGroupMembers { id, members })
        }
        other => Some(other),
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

/// How a run read the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// Everything, page by page (servers without content sync, AD).
    FullPaged,
    /// Everything, by content sync (which also yields a cookie for the next run).
    FullSync,
    /// What changed since the stored cookie (RFC 4533 refreshOnly).
    Incremental,
}

/// Where the next incremental read resumes: a cookie per search.
#[derive(Debug, Default, Serialize, serde::Deserialize)]
struct Cursor {
    users: Option<String>,
    groups: Option<String>,
    /// AD: where the next read resumes (`uSNChanged` above `usn`, while the domain controller's
    /// `invocation_id` stays the same).
    #[serde(default)]
    ad: Option<AdCursor>,
    /// The query the cursor was taken with ([`query_fingerprint`]).
    #[serde(default)]
    query: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
struct AdCursor {
    invocation_id: String,
    usn: i64,
}

fn b64(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unb64(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Hands memory freed by a large step (100,000 mapped entries) back to the system: glibc keeps
/// freed memory in per-thread arenas, and the next step allocates on other threads. `rosterd`
/// itself allocates with mimalloc (see `main.rs`), so there this trims SQLite's allocations,
/// which go through glibc; the library's other users may run on glibc alone.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap memory to the kernel; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Replaces nested groups by their members, transitively (a group that holds itself through
/// others is followed once): membership in Roster is flat.
fn flatten_nested(mut groups: Vec<ldap::RawEntry>, member_attr: &str) -> Vec<ldap::RawEntry> {
    let key = member_attr.to_lowercase();
    let group_dns: HashSet<String> = groups.iter().map(|g| map::norm_dn(&g.dn)).collect();
    if !groups.iter().any(|g| g.all(&key).iter().any(|m| group_dns.contains(&map::norm_dn(m)))) {
        return groups;
    }
    let by_dn: std::collections::HashMap<String, Vec<String>> =
        groups.iter().map(|g| (map::norm_dn(&g.dn), g.all(&key).to_vec())).collect();
    for g in &mut groups {
        let mut seen = HashSet::from([map::norm_dn(&g.dn)]);
        let mut out = Vec::new();
        let mut todo: Vec<String> = g.all(&key).to_vec();
        while let Some(dn) = todo.pop() {
            let norm = map::norm_dn(&dn);
            match by_dn.get(&norm) {
                Some(inner) => {
                    if seen.insert(norm) {
                        todo.extend(inner.iter().cloned());
                    }
                }
                None => out.push(dn),
            }
        }
        g.set(&key, out);
    }
    groups
}

/// A read: the snapshot, how it was read, and the cursor to store with its changes.
struct Read {
    snapshot: map::Snapshot,
    mode: ReadMode,
    cursor: Option<String>,
    entries: usize,
    /// The stored cursor was taken with another query: this read was full for that reason.
    query_changed: bool,
}

/// What a cursor belongs to: the searches (base DNs, filters), the preset, the anchor and the
/// attribute map. A cursor taken with another query says nothing about this one's results (a
/// narrowed filter's leavers, a widened one's newcomers), so a change means a full read.
fn query_fingerprint(src: &LdapSource) -> String {
    use sha2::{Digest, Sha256};
    let search = |s: Option<&crate::config::LdapSearch>| {
        s.map(|s| json!([s.base_dn.trim().to_lowercase(), s.filter])).unwrap_or(serde_json::Value::Null)
    };
    let query = json!({
        "preset": format!("{:?}", src.preset),
        "users": [src.users.base_dn.trim().to_lowercase(), user_filter(src)],
        "groups": search(src.groups.as_ref()),
        "org_units": search(src.org_units.as_ref()),
        "department_path": src.department_path.as_ref().map(|d| json!([d.attribute, d.separator])),
        // The whole map in use (the preset's defaults and the overrides), so that a release
        // changing a default (as `phone` = telephoneNumber arrived) also reads in full once.
        "attributes": map::AttrMap::for_source(src).map(|m| m.describe()).unwrap_or_default(),
        "suspended_filter": src.suspended_filter,
    });
    hex::encode(&Sha256::digest(query.to_string().as_bytes())[..16])
}

/// Reads the source: org units (always whole), users, suspended users, groups; incrementally
/// when a cursor is stored, the server offers content sync and no full read was asked for.
async fn read(src: &LdapSource, stored: Option<String>, full: bool) -> Result<Read, SyncError> {
    let attrs = map::AttrMap::for_source(src)?;
    let ad = src.preset == Preset::ActiveDirectory;
    let mut conn = ldap::connect(src).await?;
    let content_sync = !ad && ldap::supports_content_sync(&mut conn, src).await?;
    let cursor: Cursor = stored.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or_default();
    let fingerprint = query_fingerprint(src);
    // A cursor from another query (or from before cursors said which) is no place to resume.
    let query_changed = !full && stored.is_some() && cursor.query.as_deref() != Some(fingerprint.as_str());
    let full = full || query_changed;
    // AD: the watermark is read before anything else, so a change made during the read is
    // read again next time rather than missed.
    let ad_mark = if ad { Some(ldap::ad_watermark(&mut conn, src).await?) } else { None };
    let ad_since = match (&ad_mark, &cursor.ad) {
        (Some((invocation, _, _)), Some(c)) if !full && &c.invocation_id == invocation => Some(c.usn),
        _ => None,
    };
    let incremental = (content_sync && !full && cursor.users.is_some()) || ad_since.is_some();

    let units = match &src.org_units {
        Some(s) => {
            let filter = s.filter.as_deref().unwrap_or("(objectClass=organizationalUnit)");
            ldap::search(&mut conn, src, &s.base_dn, filter, &attrs.requested(&[])).await?
        }
        None => Vec::new(),
    };
    let user_filter = user_filter(src);
    let dept_attr = src.department_path.as_ref().map(|d| d.attribute.clone());
    let user_attrs =
        attrs.requested(&["userAccountControl", dept_attr.as_deref().unwrap_or("userAccountControl")]);
    let member_attr = attrs.get("member").to_owned();
    // AD hands out large `member` values in ranges (Windows at most 1,500 an answer; Samba as
    // many as asked for): ask for the first 1,000 and fetch the rest with `complete_ranges`, so
    // both take the same path.
    let ranged_member = format!("{member_attr};range=0-999");
    let group_attrs: Vec<String> = if ad {
        attrs
            .requested(&["cn"])
            .into_iter()
            .map(|a| if a == member_attr { ranged_member.clone() } else { a })
            .collect()
    } else {
        // groupOfNames (`member`), groupOfUniqueNames (`uniqueMember`), posixGroup (`memberUid`).
        attrs.requested(&["cn", "uniqueMember", "memberUid"])
    };
    let changed_since = |filter: &str| match ad_since {
        Some(usn) => format!("(&{filter}(uSNChanged>={}))", usn + 1),
        None => filter.to_owned(),
    };
    let default_group_filter = if ad {
        "(objectClass=group)"
    } else {
        "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))"
    };
    let mut next = Cursor::default();
    // Users are mapped as they arrive: a full read never holds 100,000 raw entries.
    let units_read = units.len();
    let mut mapper = map::Mapper::new(&attrs, src.org_units.as_ref().map(|o| o.base_dn.as_str()), units, ad)
        .with_paths(dept_attr.clone());
    let mut map_user = |e: ldap::RawEntry| {
        mapper.user(e);
        Ok(())
    };
    let (users, users_delta, groups, groups_delta) = if content_sync {
        let cookie = |c: &Option<String>| if incremental { c.as_deref().and_then(unb64) } else { None };
        let u = ldap::sync_search(
            &mut conn,
            src,
            &src.users.base_dn,
            user_filter,
            &user_attrs,
            cookie(&cursor.users),
            &mut map_user,
        )
        .await?;
        if u.refresh_required {
            // The server's history does not reach our cookie: start over with a full read.
            let _ = conn.unbind().await;
            return Box::pin(read(src, None, true)).await;
        }
        // No new cookie means nothing moved on: resume from the old one next time.
        next.users =
            u.cookie.as_deref().map(b64).or_else(|| incremental.then(|| cursor.users.clone()).flatten());
        let (g, gd) = match &src.groups {
            Some(gs) => {
                let filter = gs.filter.as_deref().unwrap_or(default_group_filter);
                let cookie = if incremental { cursor.groups.as_deref().and_then(unb64) } else { None };
                let mut groups = Vec::new();
                let g =
                    ldap::sync_search(&mut conn, src, &gs.base_dn, filter, &group_attrs, cookie, &mut |e| {
                        groups.push(e);
                        Ok(())
                    })
                    .await?;
                if g.refresh_required {
                    let _ = conn.unbind().await;
                    return Box::pin(read(src, None, true)).await;
                }
                next.groups = g
                    .cookie
                    .as_deref()
                    .map(b64)
                    .or_else(|| incremental.then(|| cursor.groups.clone()).flatten());
                let delta = map::Delta { deleted: g.deleted.into_iter().collect(), present: g.present };
                (groups, incremental.then_some(delta))
            }
            None => (Vec::new(), None),
        };
        let ud = map::Delta { deleted: u.deleted.into_iter().collect(), present: u.present };
        (u.entries, incremental.then_some(ud), g, gd)
    } else {
        let users = ldap::search_each(
            &mut conn,
            src,
            &src.users.base_dn,
            &changed_since(user_filter),
            &user_attrs,
            &mut map_user,
        )
        .await?;
        let groups = match &src.groups {
            Some(g) => {
                let filter = g.filter.as_deref().unwrap_or(default_group_filter);
                // Groups are read whole (they are few): a nested group's members count in every
                // group that holds it, changed or not.
                let mut groups = ldap::search(&mut conn, src, &g.base_dn, filter, &group_attrs).await?;
                ldap::complete_ranges(&mut conn, src, &mut groups, &member_attr).await?;
                groups
            }
            None => Vec::new(),
        };
        match (&ad_mark, ad_since) {
            (Some((_, _, domain)), Some(usn)) => {
                let deleted: HashSet<String> =
                    ldap::ad_deleted(&mut conn, src, domain, usn).await?.into_iter().collect();
                let delta = |d: &HashSet<String>| map::Delta { deleted: d.clone(), present: None };
                (users, Some(delta(&deleted)), groups, None)
            }
            _ => (users, None, groups, None),
        }
    };
    let groups = flatten_nested(groups, &member_attr);
    drop(map_user);
    let suspended: HashSet<String> = match &src.suspended_filter {
        Some(f) => {
            let both = changed_since(&format!("(&{user_filter}{f})"));
            let hits =
                ldap::search(&mut conn, src, &src.users.base_dn, &both, &[attrs.anchor.clone()]).await?;
            hits.iter().filter_map(|e| map::anchor_of(e, &attrs.anchor)).collect()
        }
        None => HashSet::new(),
    };
    // An incremental read carries only changed users: find the anchors of the other people
    // that changed entries name (managers, group members).
    let mut known = std::collections::HashMap::new();
    if incremental {
        let wanted = mapper.unknown_dns(&groups);
        known = ldap::anchors_by_dn(&mut conn, src, &src.users.base_dn, &attrs.anchor, &wanted).await?;
    }
    let _ = conn.unbind().await;
    let entries = units_read + users + groups.len();
    let paths = std::mem::take(&mut mapper.paths);
    let mut snapshot = mapper.finish(groups, &suspended, &known);
    snapshot.users_delta = users_delta;
    snapshot.groups_delta = groups_delta;
    release_freed_memory();
    if let Some(d) = &src.department_path {
        map::units_from_paths(&mut snapshot, &paths, &d.separator);
        snapshot.units_partial = incremental;
    }
    let mode = match (content_sync, incremental) {
        (_, true) => ReadMode::Incremental,
        (false, false) => ReadMode::FullPaged,
        (true, false) => ReadMode::FullSync,
    };
    if let Some((invocation_id, usn, _)) = ad_mark {
        next.ad = Some(AdCursor { invocation_id, usn });
    }
    next.query = Some(fingerprint);
    let cursor = (content_sync || ad).then(|| serde_json::to_string(&next).expect("a cursor serialises"));
    Ok(Read { snapshot, mode, cursor, entries, query_changed })
}
