//! Configuration: built-in defaults < config file < `ROSTER_*` environment.
//!
//! Nested keys are split on `__` in the environment (`ROSTER_HTTP__LISTEN`). Unknown keys are an
//! error, wherever they come from, so a typo never silently falls back to a default. A secret can
//! be given as `<key>_file` (a path whose contents are the value), for systemd credentials.
//! `config/rosterd.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

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
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: ([127, 0, 0, 1], 8080).into(),
            max_body_bytes: 1024 * 1024,
            request_timeout_secs: 30,
            shutdown_grace_secs: 10,
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
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: "sqlite://data/roster.db".into(),
            url_file: None,
            max_connections: 8,
            connect_timeout_secs: 5,
            busy_timeout_ms: 5000,
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
    fn new(key: &str, message: impl Into<String>) -> ConfigError {
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
        // ROSTER_CONFIG names the file (see cli.rs); it is not a key.
        figment = figment.merge(Env::prefixed("ROSTER_").ignore(&["config"]).split("__"));
        let mut cfg: Config = figment.extract().map_err(from_figment)?;
        cfg.resolve_secret_files()?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn resolve_secret_files(&mut self) -> Result<(), ConfigError> {
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
        if self.scim.max_operations < 1 {
            return Err(ConfigError::new("scim.max_operations", "must be at least 1"));
        }
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

    /// The configuration with every secret replaced, for printing.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        c.database.url = redact_url(&c.database.url);
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

/// Hides the password of a database URL (`postgres://u:secret@h/db` -> `postgres://u:***@h/db`).
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
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
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
