//! Configuration: built-in defaults < config file < `ROSTER_*` environment.
//!
//! Nested keys are split on `__` in the environment (`ROSTER_HTTP__LISTEN`). Unknown keys are an
//! error, wherever they come from, so a typo never silently falls back to a default. A secret can
//! be given as `<key>_file` (a path whose contents are the value), for systemd credentials.
//! `config/rosterd.toml` documents every key.

use crate::secret::Secret;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The languages messages and the console come in.
pub const LANGUAGES: &[&str] = &["en", "zh-CN"];

/// `+08:00` / `-05:30`.
pub fn parse_offset(s: &str) -> Option<chrono::FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if !(0..=14).contains(&h) || !(0..60).contains(&m) {
        return None;
    }
    chrono::FixedOffset::east_opt(sign * (h * 3600 + m * 60))
}

/// `22:00-08:00`.
pub fn parse_quiet_hours(s: &str) -> Option<(chrono::NaiveTime, chrono::NaiveTime)> {
    let (a, b) = s.split_once('-')?;
    let t = |v: &str| chrono::NaiveTime::parse_from_str(v.trim(), "%H:%M").ok();
    let (a, b) = (t(a)?, t(b)?);
    (a != b).then_some((a, b))
}

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_PATH: &str = "config/rosterd.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub numbers: NumbersConfig,
    pub enterprise: EnterpriseConfig,
    pub scim: ScimConfig,
    pub sync: SyncConfig,
    pub delivery: DeliveryConfig,
    pub mailbox: MailboxConfig,
    pub admin: AdminConfig,
    pub jobs: JobsConfig,
    pub archive: ArchiveConfig,
    pub access: AccessConfig,
    pub ldap_server: LdapServerConfig,
}

/// `[jobs]`: the scheduler. Each scheduled job (sync schedules, delivery dispatch, mailbox
/// pushes, purges) runs on the node that holds its lease in the shared database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// When a node dies, another takes its jobs over within this time. (A leader renews its
    /// leases every third of it, each time for two thirds of it, by the database's clock.)
    pub lease_secs: u64,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig { lease_secs: 30 }
    }
}

/// `[access]`: signing in (the failure limits are `admin.*`, shared by every way in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    /// How long the login log keeps an attempt; the scheduler purges older ones daily.
    pub login_log_days: i64,
    /// Minutes after a shift's punch window closes before its day's attendance is final.
    pub attendance_grace_minutes: i64,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig { login_log_days: 400, attendance_grace_minutes: 60 }
    }
}

/// `[ldap_server]`: Roster's tree served over LDAP to the company's apps (read-only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapServerConfig {
    pub enabled: bool,
    /// LDAP (StartTLS offered when `tls` is set).
    pub listen: String,
    /// LDAPS, e.g. "0.0.0.0:6363" (empty: none).
    pub listen_tls: String,
    pub tls: LdapTlsConfig,
    /// Default: `dc=` labels of `enterprise.mail_domain`.
    pub base_dn: String,
    /// Anonymous binds (and searches without a bind) are refused unless this is set.
    pub anonymous: bool,
    /// Entries a search returns without the paged results control (a service account may
    /// have its own).
    pub size_limit: i64,
    /// Seconds a search may take (a service account may have its own).
    pub time_limit_secs: i64,
    /// Binds a second from one address before answers are delayed, then refused as busy.
    pub binds_per_second: u32,
    /// Open connections at most.
    pub max_connections: usize,
    /// A connection with no request for this long is closed.
    pub idle_timeout_secs: u64,
}

/// `[ldap_server.tls]`: PEM files.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapTlsConfig {
    pub cert_file: String,
    pub key_file: String,
}

impl Default for LdapServerConfig {
    fn default() -> Self {
        LdapServerConfig {
            enabled: false,
            listen: "127.0.0.1:3893".into(),
            listen_tls: String::new(),
            tls: LdapTlsConfig::default(),
            base_dn: String::new(),
            anonymous: false,
            size_limit: 1000,
            time_limit_secs: 30,
            binds_per_second: 50,
            max_connections: 1024,
            idle_timeout_secs: 600,
        }
    }
}

impl LdapServerConfig {
    /// The base DN: configured, or `dc=` labels of the mail domain.
    pub fn base(&self, mail_domain: &str) -> String {
        if !self.base_dn.trim().is_empty() {
            return self.base_dn.trim().to_owned();
        }
        mail_domain
            .split('.')
            .filter(|l| !l.is_empty())
            .map(|l| format!("dc={l}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// `[archive]`: the message record archive (IM servers post records; compliance reads them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    /// The largest request body under `/api/v1/archive` (a JSON Lines batch, a blob).
    pub max_request_bytes: usize,
    /// The largest message text, in bytes; a longer line is refused.
    pub max_text_bytes: usize,
    /// The largest attachment, in bytes.
    pub max_blob_bytes: usize,
    /// Attachment media types accepted (`type/*` matches a whole type).
    pub attachment_types: Vec<String>,
    /// Domains of the IM server's addresses (XMPP JIDs): the part before @ of such an address
    /// is a member's login name or account number. The enterprise's mail domain always is.
    pub im_domains: Vec<String>,
    /// Where finished exports are written (several nodes: a directory they share).
    pub export_dir: std::path::PathBuf,
    /// An export file is deleted this long after it is ready.
    pub export_ttl_hours: i64,
    /// When the retention purge runs (cron, with seconds), under the scheduler's lease.
    pub purge_schedule: String,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            max_request_bytes: 32 * 1024 * 1024,
            max_text_bytes: 64 * 1024,
            max_blob_bytes: 25 * 1024 * 1024,
            attachment_types: [
                "image/png",
                "image/jpeg",
                "image/gif",
                "image/webp",
                "image/heic",
                "audio/*",
                "video/*",
                "application/pdf",
                "text/plain",
                "application/zip",
                "application/msword",
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
                "application/vnd.ms-excel",
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                "application/vnd.ms-powerpoint",
                "application/vnd.openxmlformats-officedocument.presentationml.presentation",
            ]
            .map(String::from)
            .to_vec(),
            im_domains: Vec::new(),
            export_dir: "./data/exports".into(),
            export_ttl_hours: 72,
            purge_schedule: "0 30 3 * * *".into(),
        }
    }
}

impl ArchiveConfig {
    /// Is this media type one of `attachment_types`?
    pub fn allows(&self, mime: &str) -> bool {
        let mime = mime.trim().to_ascii_lowercase();
        let major = mime.split('/').next().unwrap_or("");
        self.attachment_types.iter().any(|t| {
            let t = t.trim().to_ascii_lowercase();
            t == mime || t.strip_suffix("/*").is_some_and(|m| m == major)
        })
    }
}

/// `[admin]`: the account center (the console under `/admin`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub enabled: bool,
    /// A session ends after this long without a request.
    pub idle_minutes: i64,
    /// ... and after this long in any case.
    pub max_session_hours: i64,
    /// Sends the session cookie only over HTTPS. Leave on in production (behind a TLS proxy);
    /// turn off only to try the console over plain HTTP on a laptop.
    pub secure_cookie: bool,
    /// Failed sign-ins (per login name, and per client address) within `failure_window_minutes`
    /// that lock sign-in for `lockout_minutes`.
    pub max_failures: i64,
    /// The same, per client address (over all accounts tried from it).
    pub max_failures_per_address: i64,
    pub failure_window_minutes: i64,
    pub lockout_minutes: i64,
    /// Reverse proxies whose `X-Forwarded-For` is believed: the client address (for the
    /// per-address limit and the audit log) is then the last address in that header that is not
    /// one of them. Empty: the peer address is the client's.
    pub trusted_proxies: Vec<std::net::IpAddr>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            idle_minutes: 30,
            max_session_hours: 12,
            secure_cookie: true,
            max_failures: 5,
            max_failures_per_address: 20,
            failure_window_minutes: 15,
            lockout_minutes: 15,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SyncConfig {
    /// `[[sync.ldap]]`: LDAP / Active Directory sources.
    pub ldap: Vec<LdapSource>,
}

/// Attribute presets: what a directory calls things.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    #[default]
    Openldap,
    ActiveDirectory,
}

/// One LDAP / AD source. Keys left unset take the preset's value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LdapSource {
    /// The source is `ldap:<name>`.
    pub name: String,
    #[serde(default)]
    pub preset: Preset,
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    #[serde(default)]
    pub starttls: bool,
    /// Console sign-in by pass-through sends the member's password to this server: over a
    /// cleartext `ldap://` URL without `starttls` it is refused unless this is set explicitly.
    #[serde(default)]
    pub allow_insecure: bool,
    /// PEM file of the CA that signed the server's certificate (default: the system's roots).
    pub ca_file: Option<PathBuf>,
    pub bind_dn: Option<String>,
    /// A secret.
    pub bind_password: Option<Secret>,
    pub bind_password_file: Option<PathBuf>,
    pub users: LdapSearch,
    pub groups: Option<LdapSearch>,
    /// The OU tree under this base becomes org units; members go to the OU holding their entry.
    pub org_units: Option<LdapSearch>,
    /// Or: the org tree is built from a path in each user's entry (`department = "Sales/East"`),
    /// for directories without an OU per department. Takes the place of `org_units`.
    #[serde(default)]
    pub department_path: Option<DepartmentPath>,
    /// The immutable id attribute (`entryUUID`, `objectGUID`).
    pub anchor: Option<String>,
    /// Overrides of the preset's attribute map (`login_name = "mail"`, ...).
    #[serde(default)]
    pub attributes: std::collections::BTreeMap<String, String>,
    /// OpenLDAP: users matching this filter are suspended (AD uses `userAccountControl`).
    pub suspended_filter: Option<String>,
    #[serde(default)]
    pub schedule: SyncSchedule,
    #[serde(default)]
    pub limits: SyncLimits,
    #[serde(default = "default_page_size")]
    pub page_size: i32,
    #[serde(default = "default_ldap_timeout")]
    pub timeout_secs: u64,
}

fn default_page_size() -> i32 {
    500
}
fn default_ldap_timeout() -> u64 {
    30
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepartmentPath {
    /// The user attribute holding the path (`department`, `departmentNumber`, `ou`).
    pub attribute: String,
    /// Between the levels of the path.
    #[serde(default = "default_path_separator")]
    pub separator: String,
}

fn default_path_separator() -> String {
    "/".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LdapSearch {
    pub base_dn: String,
    pub filter: Option<String>,
}

/// Cron expressions (with seconds: `0 */5 * * * *`); unset means not scheduled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SyncSchedule {
    pub incremental: Option<String>,
    pub full: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyncLimits {
    /// A run that would delete more than this many objects of one kind is held.
    pub max_deletes: usize,
    /// ... or more than this percentage of what the source holds of that kind.
    pub max_delete_percent: f64,
}

impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits { max_deletes: 500, max_delete_percent: 10.0 }
    }
}

/// Notifications from the outbox: e-mail over SMTP and SMS through a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Run the dispatchers in `rosterd serve`.
    pub enabled: bool,
    /// How often the dispatchers look at the outbox (cron, with seconds).
    pub schedule: String,
    /// Messages claimed per round.
    pub batch: i64,
    /// Attempts before a message is parked as dead.
    pub max_attempts: i64,
    /// The first retry waits this long; each further one twice as long (with jitter), at most
    /// `backoff_max_secs`.
    pub backoff_secs: u64,
    pub backoff_max_secs: u64,
    /// A claimed message is left alone by other nodes this long.
    pub lease_secs: u64,
    /// `en` or `zh-CN`.
    pub language: String,
    /// Files overriding the built-in templates (`<lang>/<kind>.email.txt`, `<lang>/<kind>.sms.txt`).
    pub templates_dir: Option<PathBuf>,
    /// Kinds that also go out as SMS (all kinds go out as e-mail when there is an address).
    pub sms_kinds: Vec<String>,
    pub smtp: Option<SmtpConfig>,
    pub sms: Option<SmsConfig>,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            enabled: true,
            schedule: "*/10 * * * * *".into(),
            batch: 200,
            max_attempts: 8,
            backoff_secs: 30,
            backoff_max_secs: 3600,
            lease_secs: 120,
            language: "en".into(),
            templates_dir: None,
            sms_kinds: vec!["welcome".into(), "password_code".into(), "broadcast".into()],
            smtp: None,
            sms: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// `smtp://host:port` (plain; STARTTLS when `?tls=required` or `?tls=opportunistic`) or
    /// `smtps://host:port` (implicit TLS).
    pub url: String,
    /// `Name <address>`.
    pub from: String,
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// PEM file of extra CAs to trust (besides the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// At most this many messages a second through this server (unset: no limit).
    #[serde(default)]
    pub rate_per_sec: Option<f64>,
}

fn default_timeout_secs() -> u64 {
    10
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsConfig {
    /// `http` (a generic HTTP gateway) or `twilio`.
    pub provider: String,
    #[serde(default)]
    pub http: Option<HttpSmsConfig>,
    #[serde(default)]
    pub twilio: Option<TwilioConfig>,
    /// Below this many segments the admins are warned (once until topped up again).
    #[serde(default = "default_low_balance")]
    pub low_balance: i64,
    /// `HH:MM-HH:MM` in `utc_offset`: no SMS then, except password codes.
    #[serde(default)]
    pub quiet_hours: Option<String>,
    /// The company's offset from UTC, `+08:00`.
    #[serde(default = "default_utc_offset")]
    pub utc_offset: String,
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// At most this many SMS a second through the provider (unset: no limit).
    #[serde(default)]
    pub rate_per_sec: Option<f64>,
}

pub(crate) fn default_low_balance() -> i64 {
    100
}

fn default_utc_offset() -> String {
    "+00:00".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSmsConfig {
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, Secret>,
    /// The request body; `{to}`, `{text}`, `{key}` (the idempotency key) are filled in,
    /// encoded for `content_type`: JSON-escaped for JSON, percent-encoded for
    /// `application/x-www-form-urlencoded`, XML-escaped for XML, as they are otherwise.
    #[serde(default = "default_sms_body")]
    pub body: String,
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// A JSON pointer to the provider's message id in the response (`/id`).
    #[serde(default)]
    pub id_pointer: Option<String>,
}

fn default_method() -> String {
    "POST".into()
}

fn default_sms_body() -> String {
    r#"{"to": "{to}", "text": "{text}", "idempotency_key": "{key}"}"#.into()
}

fn default_content_type() -> String {
    "application/json".into()
}

/// Pushing each member's mailbox binding to the mail system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailboxConfig {
    /// `none`, `scim` (an outbound SCIM 2.0 client) or `http`.
    pub provider: String,
    /// Changes since the last push go out on this schedule (cron with seconds).
    pub schedule: String,
    /// Every binding is pushed again on this schedule (the full reconcile).
    pub full_schedule: String,
    pub scim: Option<MailboxScimConfig>,
    pub http: Option<MailboxHttpConfig>,
    pub timeout_secs: u64,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            provider: "none".into(),
            schedule: "0 */15 * * * *".into(),
            full_schedule: "0 30 2 * * *".into(),
            scim: None,
            http: None,
            timeout_secs: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxScimConfig {
    /// The service's SCIM base URL (`https://mail.example.com/scim/v2`).
    pub url: String,
    #[serde(default)]
    pub token: Option<Secret>,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxHttpConfig {
    /// Receives `POST {"member_id", "address", "display_name", "active"}` per binding.
    pub url: String,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, Secret>,
}

/// Twilio's Programmable Messaging API (`POST /2010-04-01/Accounts/{sid}/Messages.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    pub account_sid: String,
    #[serde(default)]
    pub auth_token: Option<Secret>,
    #[serde(default)]
    pub auth_token_file: Option<PathBuf>,
    /// The sending number (`+1...`) or messaging service.
    pub from: String,
    #[serde(default = "default_twilio_url")]
    pub base_url: String,
}

fn default_twilio_url() -> String {
    "https://api.twilio.com".into()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScimConfig {
    /// Most resources one list or search returns (`count` above it is lowered to it).
    pub max_results: i64,
    /// Most operations in one Bulk request.
    pub max_operations: usize,
    /// Create org units from the Enterprise extension's `department` path (`Sales/East/Shanghai`)
    /// for clients that only send a string.
    pub create_departments: bool,
}

impl Default for ScimConfig {
    fn default() -> Self {
        ScimConfig { max_results: 1000, max_operations: 1000, create_departments: false }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// Request bodies larger than this get 413.
    pub max_body_bytes: usize,
    /// A request still running after this gets 408.
    pub request_timeout_secs: u64,
    /// How long SIGTERM waits for in-flight requests.
    pub shutdown_grace_secs: u64,
    /// A client must send a request's headers within this many seconds of connecting (or of its
    /// previous request), or the connection is closed (slowloris).
    pub header_read_timeout_secs: u64,
    /// At most this many connections at once; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: ([127, 0, 0, 1], 8080).into(),
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 10,
            header_read_timeout_secs: 10,
            max_connections: 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`. A secret (it may hold a password).
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    pub max_connections: u32,
    pub connect_timeout_secs: u64,
    pub busy_timeout_ms: u64,
    /// Change sets that arrive together are written in one transaction (each between
    /// savepoints, each caller with its own result). Off: one transaction each.
    pub group_commit: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/roster.db".into(),
            url_file: None,
            max_connections: 8,
            connect_timeout_secs: 5,
            busy_timeout_ms: 5000,
            group_commit: true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A tracing filter: `info`, `rosterd=debug,sqlx=warn`, ...
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: LogFormat::Pretty, level: "info".into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NumbersConfig {
    /// First account number of the company's block.
    pub first: i64,
    /// Last account number of the block (inclusive).
    pub last: i64,
    /// Released numbers are never reused unless this is set; then only after this many days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reuse_after_days: Option<u32>,
}

impl NumbersConfig {
    /// The directory core's own form of these settings.
    pub fn rules(&self) -> crate::directory::NumberBlock {
        crate::directory::NumberBlock {
            first: self.first,
            last: self.last,
            reuse_after_days: self.reuse_after_days,
        }
    }
}

impl Default for NumbersConfig {
    fn default() -> Self {
        NumbersConfig { first: 100_000, last: 999_999, reuse_after_days: None }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnterpriseConfig {
    /// Used when the enterprise is created on first start.
    pub name: String,
    /// Login names are `name@mail_domain`.
    pub mail_domain: String,
}

impl EnterpriseConfig {
    /// The directory core's own form of these settings.
    pub fn seed(&self) -> crate::directory::NewEnterprise {
        crate::directory::NewEnterprise { name: self.name.clone(), mail_domain: self.mail_domain.clone() }
    }
}

impl Default for EnterpriseConfig {
    fn default() -> Self {
        EnterpriseConfig { name: "Example Corp".into(), mail_domain: "example.com".into() }
    }
}

/// A configuration problem, naming the key and where its value came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config key `{key}`: {message}{}", origin.as_deref().map(|o| format!(" (from {o})")).unwrap_or_default())]
pub struct ConfigError {
    pub key: String,
    pub message: String,
    pub origin: Option<String>,
}

impl ConfigError {
    pub fn new(key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError { key: key.into(), message: message.into(), origin: None }
    }
}

impl Config {
    /// Loads defaults, then `path` (or [`DEFAULT_PATH`] when it exists), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) => {
                if !p.exists() {
                    return Err(ConfigError::new("--config", format!("{} does not exist", p.display())));
                }
                figment = figment.merge(Toml::file_exact(p));
            }
            None if Path::new(DEFAULT_PATH).exists() => {
                figment = figment.merge(Toml::file_exact(DEFAULT_PATH));
            }
            None => {}
        }
        // ROSTER_CONFIG names the file and ROSTER_MIGRATE_TO the target of `rosterd
        // migrate-store` (see cli); they are not keys.
        figment = figment.merge(Env::prefixed("ROSTER_").ignore(&["config", "migrate_to"]).split("__"));
        let mut cfg: Config = figment.extract().map_err(from_figment)?;
        cfg.resolve_secret_files()?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
        for (i, src) in self.sync.ldap.iter_mut().enumerate() {
            if let Some(path) = &src.bind_password_file {
                let value = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(
                        &format!("sync.ldap[{i}].bind_password_file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                src.bind_password = Some(Secret(value.trim_end_matches(['\n', '\r']).to_owned()));
            }
        }
        let read = |key: &str, path: &Path| {
            std::fs::read_to_string(path)
                .map(|v| v.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))
        };
        if let Some(smtp) = &mut self.delivery.smtp
            && let Some(path) = &smtp.password_file
        {
            smtp.password = Some(Secret(read("delivery.smtp.password_file", path)?));
        }
        if let Some(t) = self.delivery.sms.as_mut().and_then(|s| s.twilio.as_mut())
            && let Some(path) = &t.auth_token_file
        {
            t.auth_token = Some(Secret(read("delivery.sms.twilio.auth_token_file", path)?));
        }
        if let Some(scim) = &mut self.mailbox.scim
            && let Some(path) = &scim.token_file
        {
            scim.token = Some(Secret(read("mailbox.scim.token_file", path)?));
        }
        if let Some(path) = &self.database.url_file {
            let value = std::fs::read_to_string(path).map_err(|e| {
                ConfigError::new("database.url_file", format!("cannot read {}: {e}", path.display()))
            })?;
            self.database.url = value.trim_end_matches(['\n', '\r']).to_owned();
        }
        Ok(())
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.database.url;
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new("database.url", "must start with sqlite: or postgres://"));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::new("database.max_connections", "must be at least 1"));
        }
        if !(1..=3600).contains(&self.jobs.lease_secs) {
            return Err(ConfigError::new("jobs.lease_secs", "must be between 1 and 3600 seconds"));
        }
        let a = &self.archive;
        if a.purge_schedule.parse::<cron::Schedule>().is_err() {
            return Err(ConfigError::new(
                "archive.purge_schedule",
                "must be a cron expression with seconds, e.g. \"0 30 3 * * *\"",
            ));
        }
        if a.max_request_bytes == 0 || a.max_blob_bytes == 0 || a.max_text_bytes == 0 {
            return Err(ConfigError::new(
                "archive.max_request_bytes",
                "archive limits must be at least 1 byte",
            ));
        }
        if a.export_ttl_hours < 1 {
            return Err(ConfigError::new("archive.export_ttl_hours", "must be at least 1"));
        }
        if self.access.login_log_days < 1 {
            return Err(ConfigError::new("access.login_log_days", "must be at least 1"));
        }
        if !(0..=7 * 24 * 60).contains(&self.access.attendance_grace_minutes) {
            return Err(ConfigError::new("access.attendance_grace_minutes", "must be 0-10080 minutes"));
        }
        let l = &self.ldap_server;
        if l.enabled {
            if l.listen.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError::new(
                    "ldap_server.listen",
                    "must be an address:port such as 127.0.0.1:3893",
                ));
            }
            if !l.listen_tls.is_empty() && l.listen_tls.parse::<std::net::SocketAddr>().is_err() {
                return Err(ConfigError::new("ldap_server.listen_tls", "must be empty or an address:port"));
            }
            if !l.listen_tls.is_empty() && (l.tls.cert_file.is_empty() || l.tls.key_file.is_empty()) {
                return Err(ConfigError::new(
                    "ldap_server.tls.cert_file",
                    "LDAPS needs tls.cert_file and tls.key_file",
                ));
            }
            if l.size_limit < 1 || l.time_limit_secs < 1 || l.binds_per_second < 1 || l.max_connections < 1 {
                return Err(ConfigError::new("ldap_server.size_limit", "limits must be at least 1"));
            }
        }
        if self.http.max_body_bytes == 0 {
            return Err(ConfigError::new("http.max_body_bytes", "must be at least 1"));
        }
        if self.http.request_timeout_secs == 0 {
            return Err(ConfigError::new("http.request_timeout_secs", "must be at least 1"));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(ConfigError::new("log.level", format!("not a valid filter: {e}")));
        }
        let n = &self.numbers;
        if n.first < 1 {
            return Err(ConfigError::new("numbers.first", "must be at least 1"));
        }
        if n.last < n.first {
            return Err(ConfigError::new(
                "numbers.last",
                format!("must not be below numbers.first ({})", n.first),
            ));
        }
        if self.scim.max_results < 1 {
            return Err(ConfigError::new("scim.max_results", "must be at least 1"));
        }
        if self.http.header_read_timeout_secs < 1 {
            return Err(ConfigError::new("http.header_read_timeout_secs", "must be at least 1"));
        }
        if self.http.max_connections < 1 {
            return Err(ConfigError::new("http.max_connections", "must be at least 1"));
        }
        if self.scim.max_operations < 1 {
            return Err(ConfigError::new("scim.max_operations", "must be at least 1"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, src) in self.sync.ldap.iter().enumerate() {
            let key = |k: &str| format!("sync.ldap[{i}].{k}");
            if crate::directory::model::Source::parse(&format!("ldap:{}", src.name)).is_none() {
                return Err(ConfigError::new(
                    &key("name"),
                    "must be 1-64 characters of letters, digits, . _ -",
                ));
            }
            if !names.insert(src.name.clone()) {
                return Err(ConfigError::new(&key("name"), format!("{:?} is used twice", src.name)));
            }
            if !(src.url.starts_with("ldap://") || src.url.starts_with("ldaps://")) {
                return Err(ConfigError::new(&key("url"), "must start with ldap:// or ldaps://"));
            }
            if src.users.base_dn.trim().is_empty() {
                return Err(ConfigError::new(&key("users.base_dn"), "must be set"));
            }
            if src.bind_dn.is_some() && src.bind_password.as_ref().is_none_or(|p| p.expose().is_empty()) {
                return Err(ConfigError::new(
                    &key("bind_password"),
                    "bind_dn is set without a password (bind_password or bind_password_file): \
                     that would be an anonymous bind",
                ));
            }
            for (k, expr) in
                [("schedule.incremental", &src.schedule.incremental), ("schedule.full", &src.schedule.full)]
            {
                if let Some(e) = expr
                    && let Err(err) = e.parse::<cron::Schedule>()
                {
                    return Err(ConfigError::new(&key(k), format!("not a cron expression: {err}")));
                }
            }
            if !(0.0..=100.0).contains(&src.limits.max_delete_percent) {
                return Err(ConfigError::new(&key("limits.max_delete_percent"), "must be between 0 and 100"));
            }
            if let Some(d) = &src.department_path {
                if d.attribute.trim().is_empty() || d.separator.is_empty() {
                    return Err(ConfigError::new(
                        &key("department_path"),
                        "attribute and separator must be set",
                    ));
                }
                if src.org_units.is_some() {
                    return Err(ConfigError::new(
                        &key("department_path"),
                        "set either org_units (an OU tree) or department_path, not both",
                    ));
                }
            }
            if src.page_size < 1 {
                return Err(ConfigError::new(&key("page_size"), "must be at least 1"));
            }
        }
        self.validate_delivery()?;
        self.validate_mailbox()?;
        if self.enterprise.name.trim().is_empty() {
            return Err(ConfigError::new("enterprise.name", "must not be empty"));
        }
        if !crate::directory::valid_domain(&self.enterprise.mail_domain) {
            return Err(ConfigError::new(
                "enterprise.mail_domain",
                "must be a domain name such as example.com",
            ));
        }
        Ok(())
    }

    fn validate_mailbox(&self) -> Result<(), ConfigError> {
        let m = &self.mailbox;
        for (key, expr) in [("mailbox.schedule", &m.schedule), ("mailbox.full_schedule", &m.full_schedule)] {
            if let Err(err) = expr.parse::<cron::Schedule>() {
                return Err(ConfigError::new(key, format!("not a cron expression: {err}")));
            }
        }
        match m.provider.as_str() {
            "none" => Ok(()),
            "scim" if m.scim.as_ref().is_some_and(|s| s.token.is_some()) => Ok(()),
            "scim" => Err(ConfigError::new("mailbox.scim", "url and token (or token_file) must be set")),
            "http" if m.http.is_some() => Ok(()),
            "http" => Err(ConfigError::new("mailbox.http.url", "must be set for provider http")),
            _ => Err(ConfigError::new("mailbox.provider", "must be none, scim or http")),
        }
    }

    fn validate_delivery(&self) -> Result<(), ConfigError> {
        let d = &self.delivery;
        if let Err(err) = d.schedule.parse::<cron::Schedule>() {
            return Err(ConfigError::new("delivery.schedule", format!("not a cron expression: {err}")));
        }
        for (key, v) in [("delivery.batch", d.batch), ("delivery.max_attempts", d.max_attempts)] {
            if v < 1 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if !LANGUAGES.contains(&d.language.as_str()) {
            return Err(ConfigError::new("delivery.language", "must be en or zh-CN"));
        }
        let rates = [
            ("delivery.smtp.rate_per_sec", d.smtp.as_ref().and_then(|s| s.rate_per_sec)),
            ("delivery.sms.rate_per_sec", d.sms.as_ref().and_then(|s| s.rate_per_sec)),
        ];
        for (key, rate) in rates {
            if rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
                return Err(ConfigError::new(key, "must be a positive number"));
            }
        }
        if let Some(smtp) = &d.smtp {
            if !(smtp.url.starts_with("smtp://") || smtp.url.starts_with("smtps://")) {
                return Err(ConfigError::new("delivery.smtp.url", "must start with smtp:// or smtps://"));
            }
            if smtp.from.parse::<lettre::message::Mailbox>().is_err() {
                return Err(ConfigError::new("delivery.smtp.from", "must be an address, `Name <user@host>`"));
            }
        }
        if let Some(sms) = &d.sms {
            match sms.provider.as_str() {
                "http" if sms.http.is_none() => {
                    return Err(ConfigError::new("delivery.sms.http.url", "must be set for provider http"));
                }
                "twilio" if sms.twilio.as_ref().is_none_or(|t| t.auth_token.is_none()) => {
                    return Err(ConfigError::new(
                        "delivery.sms.twilio",
                        "account_sid, from and auth_token (or auth_token_file) must be set",
                    ));
                }
                "http" | "twilio" => {}
                _ => return Err(ConfigError::new("delivery.sms.provider", "must be http or twilio")),
            }
            if parse_offset(&sms.utc_offset).is_none() {
                return Err(ConfigError::new("delivery.sms.utc_offset", "must look like +08:00"));
            }
            if let Some(q) = &sms.quiet_hours
                && parse_quiet_hours(q).is_none()
            {
                return Err(ConfigError::new("delivery.sms.quiet_hours", "must look like 22:00-08:00"));
            }
        }
        Ok(())
    }

    /// The configuration with every secret replaced, for printing. Passwords, tokens and header
    /// values are [`Secret`]s (they print as `***` themselves); URLs lose their user info and
    /// every query value but a few known harmless ones.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        c.database.url = redact_url(&c.database.url);
        for src in &mut c.sync.ldap {
            src.url = redact_url(&src.url);
        }
        if let Some(smtp) = &mut c.delivery.smtp {
            smtp.url = redact_url(&smtp.url);
        }
        if let Some(http) = c.delivery.sms.as_mut().and_then(|s| s.http.as_mut()) {
            http.url = redact_url(&http.url);
        }
        if let Some(scim) = &mut c.mailbox.scim {
            scim.url = redact_url(&scim.url);
        }
        if let Some(http) = &mut c.mailbox.http {
            http.url = redact_url(&http.url);
        }
        c
    }
}

fn from_figment(e: figment::Error) -> ConfigError {
    // For an unknown field, figment's path already ends with the field's name.
    let path = e.path.clone();
    let message = match &e.kind {
        figment::error::Kind::UnknownField(..) => "unknown key".to_owned(),
        kind => kind.to_string(),
    };
    let origin = e.metadata.as_ref().map(|m| match &m.source {
        Some(figment::Source::File(p)) => format!("file {}", p.display()),
        _ if m.name.contains("environment") => {
            format!("environment variable ROSTER_{}", path.join("__").to_uppercase())
        }
        _ => m.name.to_string(),
    });
    let key = if path.is_empty() { "(top level)".to_owned() } else { path.join(".") };
    ConfigError { key, message, origin }
}

/// An error text from outside (an HTTP client, an SMTP server) with every URL in it cut to its
/// scheme, host and path: no user info, no query string. Such texts are logged, stored with
/// the message and shown on the console's delivery page.
pub fn scrub_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        // The URL starts after the last character that cannot be in a scheme.
        let start =
            rest[..i].rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c))).map_or(0, |j| j + 1);
        // The authority runs to the path, query or fragment (user info may hold `,` `(` `'`);
        // the rest of the URL to a space or a quote.
        let after = &rest[i + 3..];
        let auth_end = after.find(|c: char| "/?#".contains(c) || c.is_whitespace()).unwrap_or(after.len());
        let tail = &after[auth_end..];
        let mut tail_end =
            tail.find(|c: char| c.is_whitespace() || "\"'<>`".contains(c)).unwrap_or(tail.len());
        // Sentence punctuation after a URL, and the closing parenthesis of a URL in parentheses
        // (as error texts put them), are not the URL's.
        loop {
            let t = &tail[..tail_end];
            if t.ends_with(['.', ',', ':', ';']) || (t.ends_with(')') && !t.contains('(')) {
                tail_end -= 1;
            } else {
                break;
            }
        }
        let host = after[..auth_end].rsplit_once('@').map_or(&after[..auth_end], |(_, host)| host);
        let path = tail[..tail_end].split(['?', '#']).next().unwrap_or("");
        out.push_str(&rest[..start]);
        out.push_str(&rest[start..i + 3]);
        out.push_str(host);
        out.push_str(path);
        rest = &tail[tail_end..];
    }
    out.push_str(rest);
    out
}

/// Query parameters whose values are shown as they are; every other value is `***` (an API key
/// in a gateway's URL is as secret as a password).
const HARMLESS_QUERY_KEYS: &[&str] = &[
    "sslmode",
    "tls",
    "mode",
    "cache",
    "application_name",
    "connect_timeout",
    "options",
    "schema",
    "user",
    "host",
    "port",
    "dbname",
];

/// Hides the credentials of a URL: the password of its user info
/// (`postgres://u:secret@h/db` -> `postgres://u:***@h/db`) and its query values but
/// [`HARMLESS_QUERY_KEYS`] (`?api_key=k` -> `?api_key=***`).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => match user.split_once(':') {
            Some((name, _)) => format!("{name}:***@{host}"),
            None => format!("{user}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if !HARMLESS_QUERY_KEYS.iter().any(|h| k.eq_ignore_ascii_case(h)) => {
                        format!("{k}=***")
                    }
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubs_urls_in_error_texts() {
        assert_eq!(
            scrub_urls(
                "error sending request for url (https://user:pw@sms.example.com/send?key=s3cret&to=1): refused"
            ),
            "error sending request for url (https://sms.example.com/send): refused"
        );
        assert_eq!(scrub_urls("at http://h:8080?token=x, then"), "at http://h:8080, then");
        assert_eq!(scrub_urls("no url here"), "no url here");
        assert_eq!(scrub_urls("smtp://a:b@mail/ and ldap://x/?q"), "smtp://mail/ and ldap://x/");
        assert_eq!(scrub_urls("(https://u:p,w(x)@h/a?k=1,2)."), "(https://h/a).");
        assert_eq!(scrub_urls("url: http://h/p?a=b,c=d then"), "url: http://h/p then");
    }

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://roster:s3cret@db:5432/roster"),
            "postgres://roster:***@db:5432/roster"
        );
        assert_eq!(
            redact_url("postgres://db/roster?user=r&password=x"),
            "postgres://db/roster?user=r&password=***"
        );
        assert_eq!(redact_url("sqlite://data/roster.db"), "sqlite://data/roster.db");
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn block_must_not_be_empty() {
        let mut c = Config::default();
        c.numbers.last = c.numbers.first - 1;
        assert_eq!(c.validate().unwrap_err().key, "numbers.last");
    }
}
