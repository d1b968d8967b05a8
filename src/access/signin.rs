//! Signing in, wherever it happens: the console, an LDAP bind, the sign-in API.
//!
//! [`SignIn::attempt`] resolves the account (account number, login name, `number@domain`, or
//! the enterprise id for the console's super admin), counts the attempt against the account's
//! and the address's failure limits before anything is checked, verifies the password (local
//! argon2 on the bounded pool, or pass-through to the member's own LDAP directory), then asks
//! the sign-in policy, and writes every attempt to the login log with its outcome and the
//! deciding rule. The policy is read from the store at most once a second, so a change made on
//! any node applies on every node within a second.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, SubsecRound, Utc};
use serde_json::json;
use uuid::Uuid;

use super::PassThrough;
use super::login::{LoginEntry, LoginFilter, LoginStore, Outcome, RuleRow};
use super::policy::{Client, Context, Decision, Policy, Rule, RuleSpec, Subject, Who};
use super::store::{AccessStore, Sealed};
use crate::directory::model::{Actor, AuditRecord, Member, MemberState};
use crate::directory::{DirectoryError, DirectoryResult, DirectoryService};

/// The failure limits (from `admin.*`: one set for every way in).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_failures: i64,
    pub max_failures_per_address: i64,
    pub failure_window_minutes: i64,
    pub lockout_minutes: i64,
}

/// One attempt.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// The account as typed.
    pub account: &'a str,
    pub password: &'a str,
    pub client: Client,
    /// The user's address, when known (the console's client, the API's `client_ip`); failures
    /// are counted under it too. An LDAP bind has none (its address is the app's).
    pub ip: Option<IpAddr>,
    /// The console: only the super admin and members holding a role may sign in, and a member
    /// without one is not even checked against their directory.
    pub console: bool,
}

/// Who signed in.
#[derive(Debug, Clone)]
pub enum Signed {
    Super,
    Member(Box<Member>),
}

/// Why an attempt was refused. What the client is told is the caller's business; a wrong
/// account, a wrong password and an inactive account must look the same to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Wrong account or password, or an account that may not sign in (inactive, no role);
    /// `locked` when this failure spent the last attempt; `reason` is for the audit log.
    Failed { locked: bool, reason: String },
    /// Too many failures: turned away without being checked.
    Locked,
    /// The policy refused: the deciding rule (`None`: the default).
    Denied(Option<Uuid>),
    /// The member's own directory could not be asked.
    DirectoryDown,
    /// No password slot within the wait: try again.
    Busy,
}

/// The longest account text looked at (a login name is at most 64 + 1 + 253 characters).
pub const MAX_ACCOUNT: usize = 320;

/// How long an attempt waits for a free password slot before it is told to try again.
const PASSWORD_WAIT: StdDuration = StdDuration::from_secs(5);

/// How long the enterprise's id and mail domain read from the store are used.
const ENTERPRISE_TTL: StdDuration = StdDuration::from_secs(5);

/// How long a policy read from the store is used.
const POLICY_TTL: StdDuration = StdDuration::from_millis(900);

/// Sign-in for every client. Cheap to clone.
#[derive(Clone)]
pub struct SignIn {
    inner: Arc<Inner>,
}

struct Inner {
    directory: DirectoryService,
    failures: Arc<dyn AccessStore>,
    login: Arc<dyn LoginStore>,
    pass_through: Arc<dyn PassThrough>,
    limits: Limits,
    policy: Mutex<Option<(Instant, Arc<Policy>)>>,
    /// The enterprise id and mail domain.
    enterprise: Mutex<Option<(Instant, (String, String))>>,
    /// Units' ancestors, briefly.
    ancestors: Mutex<std::collections::HashMap<Uuid, (Instant, Vec<Uuid>)>>,
}

enum Account {
    Super,
    Member(Box<Member>),
    Unknown,
}

impl Account {
    /// The key failures count under: the account itself, however it was typed.
    fn key(&self, typed: &str) -> String {
        match self {
            Account::Super => "super".into(),
            Account::Member(m) => format!("member:{}", m.id),
            Account::Unknown => format!("login:{typed}"),
        }
    }
}

enum Verified {
    Yes,
    No,
    DirectoryDown,
}

impl SignIn {
    pub fn new(
        directory: DirectoryService,
        failures: Arc<dyn AccessStore>,
        login: Arc<dyn LoginStore>,
        pass_through: Arc<dyn PassThrough>,
        limits: Limits,
    ) -> SignIn {
        SignIn {
            inner: Arc::new(Inner {
                directory,
                failures,
                login,
                pass_through,
                limits,
                policy: Mutex::new(None),
                enterprise: Mutex::new(None),
                ancestors: Mutex::new(Default::default()),
            }),
        }
    }

    /// Resolves, limits, verifies, decides and logs one attempt.
    pub async fn attempt(&self, a: &Attempt<'_>) -> DirectoryResult<Result<Signed, Refused>> {
        let typed: String = a.account.trim().chars().take(MAX_ACCOUNT).collect::<String>().to_lowercase();
        let now = Utc::now().trunc_subsecs(6);
        let who = self.resolve(&typed, a.console).await?;
        // The member's primary unit and its ancestors (nearest first): the log's unit path and
        // the policy's subject both need them.
        let (member_id, primary_path) = match &who {
            Account::Member(m) => (Some(m.id), self.primary_path(m).await?),
            _ => (None, Vec::new()),
        };
        let unit_path = match member_id {
            Some(_) => path_text(&primary_path),
            None => String::new(),
        };
        let log = |outcome: Outcome, rule: Option<Uuid>, reason: &str| LoginEntry {
            id: 0,
            at: now,
            member_id,
            typed: typed.clone(),
            client: a.client.kind().to_owned(),
            app: a.client.app(),
            ip: a.ip.map(|ip| ip.to_string()),
            outcome: outcome.as_str().to_owned(),
            rule_id: rule,
            reason: reason.to_owned(),
            unit_path: unit_path.clone(),
        };
        if typed.is_empty() || a.password.is_empty() {
            // An empty password is never an (unauthenticated) success.
            let reason = "empty account or password";
            self.write_log(log(Outcome::Failed, None, reason)).await;
            return Ok(Err(Refused::Failed { locked: false, reason: reason.into() }));
        }
        let mut keys = vec![who.key(&typed)];
        if let Some(ip) = a.ip {
            keys.push(format!("ip:{ip}"));
        }
        let store = &self.inner.failures;
        // Counted before anything is verified, one statement per key: parallel attempts each
        // see their own count, and no more than the limit are ever evaluated. A key already
        // locked turns the attempt away (its count given back).
        let Some(counts) = self.count(&keys, now).await? else {
            self.write_log(log(Outcome::Locked, None, "locked")).await;
            return Ok(Err(Refused::Locked));
        };
        if counts.over {
            self.write_log(log(Outcome::Locked, None, "too many attempts")).await;
            return Ok(Err(Refused::Locked));
        }
        let eligible = match &who {
            Account::Member(m) => {
                m.state == MemberState::Active
                    && (!a.console || !self.inner.directory.store().member_grants(m.id).await?.is_empty())
            }
            Account::Super => true,
            Account::Unknown => false,
        };
        let verified = match self.verify(if eligible { &who } else { &Account::Unknown }, a.password).await {
            Ok(v) => v,
            Err(()) => {
                self.undo(&keys).await;
                return Ok(Err(Refused::Busy));
            }
        };
        match verified {
            Verified::DirectoryDown => {
                // Stays counted: otherwise probing which accounts sign in through a directory
                // would cost nothing.
                self.write_log(log(Outcome::Unavailable, None, "the member's directory could not be asked"))
                    .await;
                return Ok(Err(Refused::DirectoryDown));
            }
            Verified::No => {
                let locked = self.lock_if_spent(&keys, &counts, now).await?;
                let (outcome, reason) = match (&who, eligible) {
                    (Account::Member(m), false) if m.state != MemberState::Active => {
                        (Outcome::Inactive, "inactive or no role")
                    }
                    (Account::Member(_), false) => (Outcome::Failed, "inactive or no role"),
                    _ => (Outcome::Failed, "wrong account or password"),
                };
                let logged = if locked { format!("{reason}; now locked") } else { reason.to_owned() };
                self.write_log(log(outcome, None, &logged)).await;
                return Ok(Err(Refused::Failed { locked, reason: reason.to_owned() }));
            }
            Verified::Yes => {}
        }
        // Right password: the address's count was for this attempt; give it back.
        if keys.len() > 1 {
            store.sign_in_failure_undo(&keys[1]).await?;
        }
        store.sign_in_failures_clear(&keys[0]).await?;
        let signed = match who {
            Account::Member(m) => {
                let policy = self.policy().await?;
                let subject = self.subject(&m, &primary_path, &policy).await?;
                let d = policy.decide(&Context { subject: &subject, ip: a.ip, at: now, client: &a.client });
                if !d.allow {
                    self.write_log(log(Outcome::Denied, d.rule, "refused by the sign-in policy")).await;
                    return Ok(Err(Refused::Denied(d.rule)));
                }
                self.write_log(log(Outcome::Success, d.rule, "")).await;
                Signed::Member(m)
            }
            // The super admin is not a member: no policy can lock the enterprise out.
            _ => {
                self.write_log(log(Outcome::Success, None, "super admin")).await;
                Signed::Super
            }
        };
        Ok(Ok(signed))
    }

    /// The enterprise id and mail domain, read at most once every [`ENTERPRISE_TTL`].
    async fn enterprise(&self) -> DirectoryResult<Option<(String, String)>> {
        if let Some((at, e)) = self.inner.enterprise.lock().expect("not poisoned").as_ref()
            && at.elapsed() < ENTERPRISE_TTL
        {
            return Ok(Some(e.clone()));
        }
        let Some(e) = self.inner.directory.store().enterprise().await? else { return Ok(None) };
        let e = (e.enterprise_id, e.mail_domain);
        *self.inner.enterprise.lock().expect("not poisoned") = Some((Instant::now(), e.clone()));
        Ok(Some(e))
    }

    async fn resolve(&self, account: &str, console: bool) -> DirectoryResult<Account> {
        let d = self.inner.directory.store();
        let Some((enterprise_id, mail_domain)) = self.enterprise().await? else {
            return Ok(Account::Unknown);
        };
        if console && account == enterprise_id.to_lowercase() {
            return Ok(Account::Super);
        }
        let number = account
            .strip_suffix(&format!("@{}", mail_domain.to_lowercase()))
            .unwrap_or(account)
            .parse::<i64>()
            .ok();
        let mut member = match number {
            Some(n) => d.member_by_number(n).await?,
            None => None,
        };
        if member.is_none()
            && let Ok(login) = crate::directory::validate::login_name(account, &mail_domain)
        {
            member = d.member_by_login(&login).await?;
        }
        Ok(member.map(|m| Account::Member(Box::new(m))).unwrap_or(Account::Unknown))
    }

    /// Checks the password. Every "no" costs one argon2 verification, whoever was named, so
    /// the time taken does not tell which accounts exist, are suspended, or have no local
    /// password. `Err`: no password slot came free in time.
    async fn verify(&self, who: &Account, password: &str) -> Result<Verified, ()> {
        let d = self.inner.directory.store();
        let hash = match who {
            Account::Super => d.super_password_hash().await.ok().flatten().unwrap_or_default(),
            Account::Member(m) if m.state == MemberState::Active => {
                if let Some(anchor) = &m.anchor
                    && let Some(answer) =
                        self.inner.pass_through.verify(m.source.as_str(), anchor, password).await
                {
                    return Ok(match answer {
                        Ok(true) => Verified::Yes,
                        Ok(false) => Verified::No,
                        Err(e) => {
                            let source = m.source.as_str();
                            tracing::warn!(source, error = %e, "sign-in: the member's directory could not be asked");
                            Verified::DirectoryDown
                        }
                    });
                }
                d.member_password_hash(m.id).await.ok().flatten().unwrap_or_default()
            }
            _ => String::new(),
        };
        Ok(if check_hash(password, hash).await? { Verified::Yes } else { Verified::No })
    }

    /// The member's units (every unit they are in, with ancestors) and, when a rule names a
    /// group, their groups: what the policy asks about.
    async fn subject(&self, m: &Member, primary_path: &[Uuid], policy: &Policy) -> DirectoryResult<Subject> {
        let d = self.inner.directory.store();
        let mut units = primary_path.to_vec();
        for u in m.org_unit_ids.iter().filter(|u| Some(**u) != m.primary_org_unit_id) {
            units.extend(d.org_unit_ancestors(*u).await?);
        }
        units.sort();
        units.dedup();
        let groups = if policy.rules.iter().any(|r| matches!(r.who, Who::Group(_))) {
            d.member_group_ids(m.id).await?
        } else {
            Vec::new()
        };
        Ok(Subject { member: m.id, units, groups })
    }

    /// The member's primary unit and its ancestors, nearest first (empty without one); a
    /// unit's are kept for [`POLICY_TTL`] (sign-ins come in bursts from the same units).
    async fn primary_path(&self, m: &Member) -> DirectoryResult<Vec<Uuid>> {
        let Some(unit) = m.primary_org_unit_id else { return Ok(Vec::new()) };
        if let Some((at, path)) = self.inner.ancestors.lock().expect("not poisoned").get(&unit)
            && at.elapsed() < POLICY_TTL
        {
            return Ok(path.clone());
        }
        let path = self.inner.directory.store().org_unit_ancestors(unit).await?;
        let mut cache = self.inner.ancestors.lock().expect("not poisoned");
        if cache.len() > 10_000 {
            cache.retain(|_, (at, _)| at.elapsed() < POLICY_TTL);
        }
        cache.insert(unit, (Instant::now(), path.clone()));
        Ok(path)
    }

    /// `/root/.../unit/` for the member's primary unit ("/" without one).
    async fn unit_path(&self, m: &Member) -> DirectoryResult<String> {
        Ok(path_text(&self.primary_path(m).await?))
    }

    async fn write_log(&self, entry: LoginEntry) {
        metrics::counter!("roster_sign_ins_total", "client" => entry.client.clone(), "outcome" => entry.outcome.clone())
            .increment(1);
        // A log that cannot be written does not stop sign-in (an attacker must not turn a full
        // disk into a way past the lockout, nor a way to lock everyone out); the operator sees
        // it in the log and in `roster_login_log_write_failures_total`.
        if let Err(e) = self.inner.login.login_log_insert(&entry).await {
            metrics::counter!("roster_login_log_write_failures_total").increment(1);
            tracing::error!(error = %e, "the login log could not be written");
        }
    }

    /// Counts the attempt under its keys; `None` when a key is locked (nothing stays counted).
    async fn count(&self, keys: &[String], now: DateTime<Utc>) -> DirectoryResult<Option<Counts>> {
        let l = &self.inner.limits;
        let store = &self.inner.failures;
        let window_from = now - Duration::minutes(l.failure_window_minutes);
        let locked = |until: Option<DateTime<Utc>>| until.is_some_and(|t| t > now);
        // The address first: one over its limit is turned away before it can count against
        // (and lock) the account it names.
        let mut address = 0;
        if let Some(key) = keys.get(1) {
            let (n, until) = store.sign_in_failure_add(key, now, window_from).await?;
            if locked(until) {
                store.sign_in_failure_undo(key).await?;
                return Ok(None);
            }
            address = n;
            if address > l.max_failures_per_address {
                let counts = Counts { account: 0, address, over: true };
                self.lock_if_spent(keys, &counts, now).await?;
                return Ok(Some(counts));
            }
        }
        let (account, until) = store.sign_in_failure_add(&keys[0], now, window_from).await?;
        if locked(until) {
            self.undo(keys).await;
            return Ok(None);
        }
        let over = account > l.max_failures;
        let counts = Counts { account, address, over };
        if over {
            // Attempts raced past the limit: lock now, so the next ones stop at the first check.
            self.lock_if_spent(keys, &counts, now).await?;
        }
        Ok(Some(counts))
    }

    /// After a failed attempt: locks each key whose count reached its limit; true when one did.
    async fn lock_if_spent(
        &self,
        keys: &[String],
        counts: &Counts,
        now: DateTime<Utc>,
    ) -> DirectoryResult<bool> {
        let l = &self.inner.limits;
        let until = now + Duration::minutes(l.lockout_minutes);
        let mut locked = false;
        let limits = [(counts.account, l.max_failures), (counts.address, l.max_failures_per_address)];
        for (key, (n, max)) in keys.iter().zip(limits) {
            if n >= max {
                self.inner.failures.sign_in_lock(key, until).await?;
                locked = true;
            }
        }
        Ok(locked)
    }

    /// Gives back an attempt that was counted but not evaluated.
    async fn undo(&self, keys: &[String]) {
        for key in keys {
            if let Err(e) = self.inner.failures.sign_in_failure_undo(key).await {
                tracing::warn!(error = %e, "sign-in: an attempt could not be given back");
            }
        }
    }

    /// Logs an LDAP service account's bind (the policy is about members; an app's secret is
    /// checked by [`super::Access::authenticate_token`]).
    pub async fn log_app_bind(&self, name: &str, ip: Option<IpAddr>, ok: bool) {
        let (outcome, reason) = if ok {
            (Outcome::Success, "service account")
        } else {
            (Outcome::Failed, "service account: wrong name or secret")
        };
        self.write_log(LoginEntry {
            id: 0,
            at: Utc::now().trunc_subsecs(6),
            member_id: None,
            typed: format!("cn={}", name.chars().take(MAX_ACCOUNT).collect::<String>().to_lowercase()),
            client: "ldap".into(),
            app: name.chars().take(64).collect(),
            ip: ip.map(|i| i.to_string()),
            outcome: outcome.as_str().into(),
            rule_id: None,
            reason: reason.into(),
            unit_path: String::new(),
        })
        .await;
    }

    /// Logs an app's lookup of one account that names a member who may not sign in (an IM
    /// server searches for the account before it binds, so a suspended member's attempt ends
    /// at the search: this is the login log's record of it).
    pub async fn log_inactive_lookup(&self, member: &Member, app: &str) {
        let unit_path = self.unit_path(member).await.unwrap_or_default();
        self.write_log(LoginEntry {
            id: 0,
            at: Utc::now().trunc_subsecs(6),
            member_id: Some(member.id),
            typed: member.account_number.to_string(),
            client: "ldap".into(),
            app: app.to_owned(),
            ip: None,
            outcome: Outcome::Inactive.as_str().into(),
            rule_id: None,
            reason: format!("looked up by the app; the member is {}", member.state.as_str()),
            unit_path,
        })
        .await;
    }

    // ---- the policy ----

    /// The policy, read from the store at most once every [`POLICY_TTL`].
    pub async fn policy(&self) -> DirectoryResult<Arc<Policy>> {
        if let Some((at, p)) = self.inner.policy.lock().expect("not poisoned").as_ref()
            && at.elapsed() < POLICY_TTL
        {
            return Ok(p.clone());
        }
        let (default_allow, rows) = self.inner.login.sign_in_policy().await?;
        let mut rules = Vec::with_capacity(rows.len());
        for r in &rows {
            match Who::from_parts(&r.who_kind, r.who_id)
                .and_then(|who| Rule::parse(r.id, r.position, who, &r.spec))
            {
                Ok(rule) => rules.push(rule),
                // A stored rule that no longer parses (a time zone the tz database dropped) is
                // skipped loudly rather than stopping every sign-in.
                Err(e) => {
                    tracing::error!(rule = %r.id, error = %e, "a sign-in rule could not be read; skipped")
                }
            }
        }
        let p = Arc::new(Policy { rules, default_allow });
        *self.inner.policy.lock().expect("not poisoned") = Some((Instant::now(), p.clone()));
        Ok(p)
    }

    fn forget_policy(&self) {
        *self.inner.policy.lock().expect("not poisoned") = None;
    }

    /// The stored rules as written, in order, and the default.
    pub async fn rules(&self) -> DirectoryResult<(bool, Vec<RuleRow>)> {
        Ok(self.inner.login.sign_in_policy().await?)
    }

    /// Adds a rule (at the end) or replaces rule `id`; returns its id. Audited.
    pub async fn save_rule(
        &self,
        actor: &Actor,
        id: Option<Uuid>,
        who: Who,
        spec: &RuleSpec,
    ) -> DirectoryResult<Uuid> {
        let (_, rows) = self.inner.login.sign_in_policy().await?;
        let before = id.and_then(|id| rows.iter().find(|r| r.id == id));
        if id.is_some() && before.is_none() {
            return Err(DirectoryError::NotFound {
                kind: "sign-in rule",
                id: id.unwrap_or_default().to_string(),
            });
        }
        self.check_who(who).await?;
        let id = id.unwrap_or_else(Uuid::now_v7);
        let position =
            before.map(|r| r.position).unwrap_or(rows.iter().map(|r| r.position + 1).max().unwrap_or(0));
        let rule = Rule::parse(id, position, who, spec)?;
        let row = RuleRow {
            id,
            position,
            who_kind: who.kind().to_owned(),
            who_id: who.id(),
            spec: rule.spec(),
            updated_at: Utc::now().trunc_subsecs(6),
        };
        let after = json!({ "who": who, "rule": row.spec, "position": position });
        let before_json = before.map(|r| json!({ "who": r.who_kind, "who_id": r.who_id, "rule": r.spec }));
        let action = if before.is_some() { "sign_in_rule.update" } else { "sign_in_rule.create" };
        let audit = AuditRecord::new(
            actor,
            row.updated_at,
            action,
            ("sign_in_rule", Some(id.to_string())),
            before_json.as_ref(),
            Some(&after),
        );
        self.inner.login.sign_in_rule_put(&Sealed::new(), &row, &audit).await?;
        self.forget_policy();
        Ok(id)
    }

    async fn check_who(&self, who: Who) -> DirectoryResult<()> {
        let d = self.inner.directory.store();
        let found = match who {
            Who::Enterprise => true,
            Who::Unit(id) => d.org_unit(id).await?.is_some(),
            Who::Group(id) => d.group(id).await?.is_some(),
            Who::Member(id) => d.member(id).await?.is_some(),
        };
        if found {
            Ok(())
        } else {
            Err(DirectoryError::invalid("who", "names no such unit, group or member"))
        }
    }

    pub async fn delete_rule(&self, actor: &Actor, id: Uuid) -> DirectoryResult<()> {
        let audit = AuditRecord::new::<()>(
            actor,
            Utc::now().trunc_subsecs(6),
            "sign_in_rule.delete",
            ("sign_in_rule", Some(id.to_string())),
            None,
            None,
        );
        if !self.inner.login.sign_in_rule_delete(&Sealed::new(), id, &audit).await? {
            return Err(DirectoryError::NotFound { kind: "sign-in rule", id: id.to_string() });
        }
        self.forget_policy();
        Ok(())
    }

    /// Moves rule `id` one place earlier (`up`) or later.
    pub async fn move_rule(&self, actor: &Actor, id: Uuid, up: bool) -> DirectoryResult<()> {
        let (_, rows) = self.inner.login.sign_in_policy().await?;
        let mut ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        let Some(i) = ids.iter().position(|r| *r == id) else {
            return Err(DirectoryError::NotFound { kind: "sign-in rule", id: id.to_string() });
        };
        let j = if up { i.checked_sub(1) } else { Some(i + 1).filter(|j| *j < ids.len()) };
        let Some(j) = j else { return Ok(()) };
        ids.swap(i, j);
        let after = json!({ "order": ids });
        let audit = AuditRecord::new(
            actor,
            Utc::now().trunc_subsecs(6),
            "sign_in_rule.move",
            ("sign_in_rule", Some(id.to_string())),
            None,
            Some(&after),
        );
        self.inner.login.sign_in_rules_order(&Sealed::new(), &ids, &audit).await?;
        self.forget_policy();
        Ok(())
    }

    pub async fn set_default(&self, actor: &Actor, allow: bool) -> DirectoryResult<()> {
        let at = Utc::now().trunc_subsecs(6);
        let after = json!({ "default": if allow { "allow" } else { "deny" } });
        let audit = AuditRecord::new(
            actor,
            at,
            "sign_in_policy.default",
            ("sign_in_policy", None),
            None,
            Some(&after),
        );
        self.inner.login.sign_in_default_set(&Sealed::new(), allow, at, &audit).await?;
        self.forget_policy();
        Ok(())
    }

    /// What the policy would decide for `member` (no password checked, nothing logged).
    pub async fn what_if(
        &self,
        member: &Member,
        ip: Option<IpAddr>,
        at: DateTime<Utc>,
        client: &Client,
    ) -> DirectoryResult<Decision> {
        self.forget_policy();
        let policy = self.policy().await?;
        let subject = self.subject(member, &self.primary_path(member).await?, &policy).await?;
        Ok(policy.decide(&Context { subject: &subject, ip, at, client }))
    }

    // ---- the log ----

    pub async fn log(&self, f: &LoginFilter) -> DirectoryResult<Vec<LoginEntry>> {
        Ok(self.inner.login.login_log(f).await?)
    }
}

/// What [`SignIn::count`] counted: the attempts under each key in the window, this one included.
struct Counts {
    account: i64,
    address: i64,
    /// Past a limit already: this attempt is not evaluated.
    over: bool,
}

/// `/root/.../unit/` from a unit's ancestors, nearest first.
fn path_text(nearest_first: &[Uuid]) -> String {
    nearest_first.iter().rev().fold("/".to_owned(), |s, u| format!("{s}{u}/"))
}

/// An argon2 hash of a random password, to spend time on for unknown accounts.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| crate::secret::hash(&crate::secret::generate()))
}

/// Verifies `password` against `hash`, or against a dummy hash (always failing) when there is
/// none, so both take the same time. Runs on the bounded password pool
/// ([`crate::secret::bounded`]); `Err` when no slot came free within [`PASSWORD_WAIT`].
pub(crate) async fn check_hash(password: &str, hash: String) -> Result<bool, ()> {
    let password = password.to_owned();
    crate::secret::bounded(Some(PASSWORD_WAIT), move || {
        if hash.is_empty() {
            crate::secret::verify(&password, dummy_hash());
            false
        } else {
            crate::secret::verify(&password, &hash)
        }
    })
    .await
    .map_err(|_| ())
}

/// The login log's scheduled purge: daily, attempts older than `login_log_days`.
pub fn jobs(login: Arc<dyn LoginStore>, days: i64) -> Vec<crate::jobs::Job> {
    let daily: cron::Schedule = "0 41 3 * * *".parse().expect("a valid cron expression");
    vec![crate::jobs::Job::new("access:login-log", daily, move || {
        let login = login.clone();
        async move {
            let purged = login.login_log_purge(Utc::now() - Duration::days(days)).await?;
            tracing::info!(purged, days, "purged the login log");
            Ok(())
        }
    })]
}
