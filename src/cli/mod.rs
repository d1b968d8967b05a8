//! The `rosterd` command line.
//!
//! Exit codes: 0 success, 1 failure, 2 bad configuration or usage.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

pub mod archive;
pub mod jsonl;
use crate::app;
use crate::config::{Config, ConfigError};
use crate::directory::model::{Actor, Source};

#[derive(Parser, Debug)]
#[command(
    name = "rosterd",
    version,
    about = "Keeps the enterprise account center in step with its directory"
)]
pub struct Cli {
    /// Configuration file (default: config/rosterd.toml when it exists).
    #[arg(long, short, global = true, env = "ROSTER_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon: HTTP API and health checks.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print the effective configuration (secrets redacted); exit 2 if it is invalid.
    CheckConfig,
    /// Ask the running daemon's /readyz; exit 0 when ready.
    Healthcheck {
        /// Base URL of the daemon (default: from http.listen).
        #[arg(long)]
        url: Option<String>,
    },
    /// Enterprise administration.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// API bearer tokens for provisioning clients.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// A consistent online backup of the SQLite store into the directory PATH (created; must be
    /// empty): `roster.db` and `manifest.json` (size, SHA-256, schema version). The daemon may run.
    Backup { path: PathBuf },
    /// Restores a `rosterd backup` directory into the configured SQLite database, which must not
    /// exist yet (an empty data directory); checks the manifest's SHA-256 first.
    Restore { path: PathBuf },
    /// Copies the SQLite store into the empty PostgreSQL database `--to` names (migrating it
    /// first), in one transaction, and verifies every table's row count and checksum. Stop the
    /// daemon first: writes made during the copy are not copied.
    MigrateStore {
        /// postgres://USER:PASSWORD@HOST:PORT/DB (or ROSTER_MIGRATE_TO, to keep the password out
        /// of the process list).
        #[arg(long, env = "ROSTER_MIGRATE_TO", value_name = "URL", hide_env_values = true)]
        to: String,
    },
    /// Service accounts apps bind to Roster's LDAP server as.
    LdapClient {
        #[command(subcommand)]
        command: LdapClientCommand,
    },
    /// Run an LDAP / AD source once (`--source NAME`), or `status`, or `approve RUN_ID`.
    /// Exit codes: 0 applied, 3 held by a deletion limit, 1 failed.
    Sync(SyncArgs),
    /// E-mail: `mail test ADDRESS` sends a test message through delivery.smtp.
    Mail {
        #[command(subcommand)]
        command: MailCommand,
    },
    /// The SMS account: balance, top-ups, ledger.
    Sms {
        #[command(subcommand)]
        command: SmsCommand,
    },
    /// Broadcasts: send one to everybody or to org subtrees, follow its delivery.
    Broadcast {
        #[command(subcommand)]
        command: BroadcastCommand,
    },
    /// Messages waiting, sent or dead: list, retry, purge, or dispatch once now.
    Outbox {
        #[command(subcommand)]
        command: OutboxCommand,
    },
    /// The message record archive: exports, retention, legal holds.
    Archive {
        #[command(subcommand)]
        command: archive::ArchiveCommand,
    },
    /// Apply directory changes from a JSON Lines file (one change per line, `-` for stdin).
    Import {
        file: PathBuf,
        /// Changes per transaction.
        #[arg(long, default_value_t = 500)]
        batch: usize,
    },
}

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SyncArgs {
    #[command(subcommand)]
    pub command: Option<SyncCommand>,
    /// The `[[sync.ldap]]` source to run.
    #[arg(long)]
    pub source: Option<String>,
    /// Read everything (today every run reads the whole source).
    #[arg(long)]
    pub full: bool,
    /// Print the plan and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum SyncCommand {
    /// Recent runs.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Apply a run held by a deletion limit.
    Approve { run_id: i64 },
}

#[derive(Subcommand, Debug)]
pub enum MailCommand {
    /// Send a test message to ADDRESS; exit 1 with the server's answer when it fails.
    Test { address: String },
}

#[derive(Subcommand, Debug)]
pub enum SmsCommand {
    /// The balance, in segments.
    Balance,
    /// Add AMOUNT segments (recorded in the ledger and the audit log); held SMS go out again.
    TopUp {
        amount: i64,
        #[arg(long)]
        note: Option<String>,
    },
    /// The latest ledger lines: charges and top-ups.
    Ledger {
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum BroadcastCommand {
    /// Queue a broadcast: an e-mail to every active member with an address (when delivery.smtp
    /// is set), and with --sms an SMS to every one with a mobile.
    Send {
        #[arg(long)]
        title: String,
        #[arg(long)]
        text: String,
        /// Only the subtree of this org unit (repeatable).
        #[arg(long = "unit")]
        units: Vec<uuid::Uuid>,
        #[arg(long)]
        sms: bool,
        #[arg(long)]
        no_email: bool,
        #[arg(long)]
        json: bool,
    },
    /// A broadcast's messages by channel and state.
    Status {
        id: uuid::Uuid,
        #[arg(long)]
        json: bool,
    },
    /// Recent broadcasts.
    List {
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
}

#[derive(Subcommand, Debug)]
pub enum OutboxCommand {
    /// Messages, newest first (`--state pending|sent|held|dead`).
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Send a dead or held message again (attempts start over).
    Retry { id: uuid::Uuid },
    /// Delete sent and dead messages older than DAYS days.
    Purge {
        #[arg(long, default_value_t = 30)]
        older_than_days: i64,
    },
    /// Run one dispatch round now (what the daemon does on `delivery.schedule`), and push the
    /// mailbox bindings that are due.
    Dispatch {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Set a new super-admin password (prompted for, or read from --password-file).
    ResetPassword {
        #[arg(long, value_name = "PATH")]
        password_file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token; it is printed once, as the last line of stdout.
    Create {
        #[arg(long)]
        name: String,
        /// Let this client take over members another source created when its userName matches
        /// (off by default: a client never silently takes over members it does not own).
        #[arg(long)]
        adopt_existing: bool,
        /// `scim` (an identity provider's client, source scim:NAME), `archive` (an IM server
        /// posting message records, source im:NAME), `archive-read` (a compliance tool),
        /// `sign-in` (an app checking passwords: POST /api/v1/sign-in), `attendance` (a clock
        /// posting punches) or `ldap` (an LDAP service account; `rosterd ldap-client` prints
        /// its bind DN too).
        #[arg(long, default_value = "scim", value_parser = parse_token_kind)]
        kind: crate::access::store::TokenKind,
    },
    /// List tokens (names and dates; never the secrets).
    List,
    /// Revoke the live token NAME. The name stays reserved: it is never created again.
    Revoke { name: String },
    /// Replace the secret of token NAME (live or revoked); the client keeps its source and
    /// everything it provisioned. The new token is printed once, as the last line of stdout.
    Rotate { name: String },
}

#[derive(Subcommand, Debug)]
pub enum LdapClientCommand {
    /// Create a service account; prints its bind DN, then its secret once (the last line).
    Create {
        #[arg(long)]
        name: String,
        /// Read only this org unit's subtree (a unit id, or its path such as /Example/Sales).
        #[arg(long)]
        subtree: Option<String>,
        /// Entries a search returns without paging (default: ldap_server.size_limit).
        #[arg(long)]
        size_limit: Option<i64>,
        /// Seconds a search may take (default: ldap_server.time_limit_secs).
        #[arg(long)]
        time_limit: Option<i64>,
    },
    /// List service accounts (never the secrets).
    List,
    /// Revoke service account NAME; its binds fail from now on.
    Revoke { name: String },
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => return config_error(&e),
    };
    app::init_tracing(&cfg.log);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(dispatch(cli.command, cfg)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config_error(e: &ConfigError) -> ExitCode {
    eprintln!("error: invalid configuration: {e}");
    ExitCode::from(2)
}

async fn dispatch(command: Command, cfg: Config) -> anyhow::Result<ExitCode> {
    let console = Actor::new(Source::console(), "cli");
    match command {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(cfg.http.listen)
                .await
                .with_context(|| format!("cannot listen on {}", cfg.http.listen))?;
            let shutdown = CancellationToken::new();
            let trigger = shutdown.clone();
            tokio::spawn(async move {
                app::shutdown_signal().await;
                trigger.cancel();
            });
            app::run(listener, cfg, shutdown).await?;
        }
        Command::Migrate => {
            app::open(&cfg).await?.store.close().await;
            eprintln!("migrations are up to date");
        }
        Command::CheckConfig => {
            print!("{}", toml::to_string(&cfg.redacted()).context("printing the configuration")?);
        }
        Command::Healthcheck { url } => return healthcheck(&cfg, url).await,
        Command::Admin { command: AdminCommand::ResetPassword { password_file } } => {
            let password = read_password(password_file)?;
            let services = app::open_migrated(&cfg).await?;
            // Console sessions signed in with the old password end with it, in its transaction.
            let result = services
                .directory
                .set_super_password(&console, &cfg.enterprise.seed(), &password, None)
                .await;
            services.store.close().await;
            result?;
            eprintln!("the super-admin password was changed; console sessions of the super admin were ended");
        }
        Command::Token { command } => {
            let services = app::open(&cfg).await?;
            let result = token(&services, &console, command).await;
            services.store.close().await;
            result?;
        }
        Command::Backup { path } => backup(&cfg, &path).await?,
        Command::Restore { path } => restore(&cfg, &path).await?,
        Command::MigrateStore { to } => migrate_store(&cfg, &to).await?,
        Command::LdapClient { command } => {
            let services = app::open(&cfg).await?;
            let result = ldap_client(&cfg, &services, &console, command).await;
            services.store.close().await;
            result?;
        }
        Command::Mail { command: MailCommand::Test { address } } => return mail_test(&cfg, &address).await,
        Command::Sms { command } => {
            let services = app::open(&cfg).await?;
            let result = sms(&services, &console, command).await;
            services.store.close().await;
            result?;
        }
        Command::Broadcast { command } => {
            let services = app::open(&cfg).await?;
            let result = broadcast(&cfg, &services, &console, command).await;
            services.store.close().await;
            return result;
        }
        Command::Outbox { command } => {
            let services = app::open(&cfg).await?;
            let result = outbox(&cfg, &services, command).await;
            services.store.close().await;
            return result;
        }
        Command::Archive { command } => {
            let services = app::open(&cfg).await?;
            let result = archive::run(&services, &console, command).await;
            services.store.close().await;
            result?;
        }
        Command::Import { file, batch } => return jsonl::run(&cfg, &file, batch).await,
        Command::Sync(args) => return sync(&cfg, args).await,
    }
    Ok(ExitCode::SUCCESS)
}

async fn mail_test(cfg: &Config, address: &str) -> anyhow::Result<ExitCode> {
    let Some(smtp) = &cfg.delivery.smtp else {
        bail!("e-mail is not configured: set delivery.smtp.url and delivery.smtp.from");
    };
    let mailer = crate::delivery::channels::Mailer::new(smtp).map_err(anyhow::Error::msg)?;
    let templates = crate::delivery::templates::Templates::load(cfg.delivery.templates_dir.as_deref())
        .map_err(anyhow::Error::msg)?;
    match mailer.send_test(address, &templates, &cfg.delivery.language, &cfg.enterprise.name).await {
        Ok(()) => {
            println!("sent a test message to {address} through {}", crate::config::redact_url(&smtp.url));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: the test message was not sent: {e:?}");
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn sms(services: &app::Services, console: &Actor, command: SmsCommand) -> anyhow::Result<()> {
    let store = &services.delivery;
    match command {
        SmsCommand::Balance => println!("{}", store.sms_balance().await?),
        SmsCommand::TopUp { amount, note } => {
            let balance = crate::delivery::desk::top_up(store.as_ref(), console, amount, note).await?;
            println!("balance: {balance}");
        }
        SmsCommand::Ledger { limit, json } => {
            let lines = store.sms_ledger(limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&lines)?);
                return Ok(());
            }
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<25} {:<7} {:>7} {:>8} {:<16} {:>4} NOTE",
                "AT", "ENTRY", "AMOUNT", "BALANCE", "TO", "SEGS"
            )?;
            for l in lines {
                writeln!(
                    out,
                    "{:<25} {:<7} {:>7} {:>8} {:<16} {:>4} {}",
                    l.at.format("%Y-%m-%d %H:%M:%S UTC"),
                    l.entry,
                    l.amount,
                    l.balance_after,
                    l.recipient.unwrap_or_default(),
                    l.segments.map(|s| s.to_string()).unwrap_or_default(),
                    l.note.unwrap_or_default()
                )?;
            }
        }
    }
    Ok(())
}

async fn broadcast(
    cfg: &Config,
    services: &app::Services,
    console: &Actor,
    command: BroadcastCommand,
) -> anyhow::Result<ExitCode> {
    let store = &services.delivery;
    match command {
        BroadcastCommand::Send { title, text, units, sms, no_email, json } => {
            if sms && cfg.delivery.sms.is_none() {
                bail!("--sms needs delivery.sms to be configured");
            }
            let email = !no_email && cfg.delivery.smtp.is_some();
            if !email && !sms {
                bail!("nothing to send with: configure delivery.smtp, or pass --sms");
            }
            let n = crate::delivery::desk::NewBroadcast {
                title,
                text,
                units,
                email,
                sms,
                language: cfg.delivery.language.clone(),
            };
            let started = std::time::Instant::now();
            let read = services.directory.store();
            let (broadcast, messages) =
                crate::delivery::desk::broadcast(read.as_ref(), store.as_ref(), console, n).await?;
            if json {
                println!("{}", serde_json::json!({"broadcast": broadcast, "messages": messages}));
            } else {
                println!(
                    "broadcast {} queued: {} recipients, {} messages ({:.2} s)",
                    broadcast.id,
                    broadcast.recipients,
                    messages,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        BroadcastCommand::Status { id, json } => {
            let Some(b) = store.broadcast(id).await? else {
                eprintln!("error: no broadcast {id}");
                return Ok(ExitCode::FAILURE);
            };
            let progress = store.broadcast_progress(id).await?;
            if json {
                let counts: Vec<_> = progress
                    .iter()
                    .map(|(c, s, n)| serde_json::json!({"channel": c, "state": s, "count": n}))
                    .collect();
                println!("{}", serde_json::json!({"broadcast": b, "progress": counts}));
            } else {
                println!(
                    "{} {:?} by {} at {}: {} recipients",
                    b.id, b.title, b.created_by, b.created_at, b.recipients
                );
                for (channel, state, n) in progress {
                    println!("  {channel:<5} {state:<8} {n}");
                }
            }
        }
        BroadcastCommand::List { limit } => {
            for b in store.broadcasts(limit).await? {
                println!(
                    "{} {} {:>7} {}",
                    b.id,
                    b.created_at.format("%Y-%m-%d %H:%M"),
                    b.recipients,
                    b.title
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn outbox(cfg: &Config, services: &app::Services, command: OutboxCommand) -> anyhow::Result<ExitCode> {
    let store = &services.delivery;
    match command {
        OutboxCommand::List { state, limit, json } => {
            let list = store.deliveries_list(state.as_deref(), limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(ExitCode::SUCCESS);
            }
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<36} {:<5} {:<13} {:<8} {:>3} {:<30} LAST ERROR",
                "ID", "CHAN", "KIND", "STATE", "TRY", "TO"
            )?;
            for d in list {
                writeln!(
                    out,
                    "{:<36} {:<5} {:<13} {:<8} {:>3} {:<30} {}",
                    d.id,
                    d.channel,
                    d.kind,
                    d.state,
                    d.attempts,
                    d.recipient,
                    d.last_error.unwrap_or_default()
                )?;
            }
        }
        OutboxCommand::Retry { id } => {
            if !crate::delivery::desk::retry(store.as_ref(), &Actor::new(Source::console(), "cli"), id)
                .await?
            {
                eprintln!("error: no dead or held message {id}");
                return Ok(ExitCode::FAILURE);
            }
            println!("message {id} is pending again");
        }
        OutboxCommand::Purge { older_than_days } => {
            let before = chrono::Utc::now() - chrono::Duration::days(older_than_days.max(0));
            let deleted =
                crate::delivery::desk::purge(store.as_ref(), &Actor::new(Source::console(), "cli"), before)
                    .await?;
            println!("deleted {deleted} sent or dead messages");
        }
        OutboxCommand::Dispatch { json } => {
            let d = crate::delivery::Dispatcher::new(store.clone(), &cfg.delivery)
                .and_then(|d| d.with_mailbox(&cfg.mailbox))
                .map_err(anyhow::Error::msg)?;
            let round = d.run_once().await?;
            // Mailbox bindings the round wrote (or that are due) go out too.
            let mailbox = d.push_mailboxes().await?;
            if json {
                let mut out = serde_json::to_value(&round)?;
                out["mailbox"] = serde_json::to_value(&mailbox)?;
                println!("{out}");
            } else {
                println!(
                    "events {}, queued {}, sent {}, retried {}, dead {}, deferred {}; mailboxes pushed {}, failed {}",
                    round.events,
                    round.queued,
                    round.sent,
                    round.retried,
                    round.dead,
                    round.deferred,
                    mailbox.pushed,
                    mailbox.failed
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_token_kind(s: &str) -> Result<crate::access::store::TokenKind, String> {
    crate::access::store::TokenKind::parse(s)
        .ok_or_else(|| format!("{s:?}: use scim, archive, archive-read, sign-in, attendance or ldap"))
}

async fn token(services: &app::Services, console: &Actor, command: TokenCommand) -> anyhow::Result<()> {
    let access = &services.access;
    match command {
        TokenCommand::Create { name, adopt_existing, kind } => {
            let secret = access.create_token_of(console, &name, kind, adopt_existing).await?;
            eprintln!("created token {name:?}; it is shown only this once:");
            println!("{secret}");
        }
        TokenCommand::List => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<32} {:<12} {:<25} {:<25} {:<25} REVOKED",
                "NAME", "KIND", "CREATED", "LAST USED", "ROTATED"
            )?;
            for t in access.store().tokens().await? {
                let when = |d: Option<chrono::DateTime<chrono::Utc>>| {
                    d.map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|| "-".into())
                };
                writeln!(
                    out,
                    "{:<32} {:<12} {:<25} {:<25} {:<25} {}",
                    t.name,
                    t.kind,
                    when(Some(t.created_at)),
                    when(t.last_used_at),
                    when(t.rotated_at),
                    when(t.revoked_at)
                )?;
            }
        }
        TokenCommand::Revoke { name } => {
            access.revoke_token(console, &name).await?;
            eprintln!("revoked token {name:?}");
        }
        TokenCommand::Rotate { name } => {
            let secret = access.rotate_token(console, &name).await?;
            eprintln!(
                "rotated token {name:?}; the old secret no longer works; the new one is shown only this once:"
            );
            println!("{secret}");
        }
    }
    Ok(())
}

fn sha256_file(path: &std::path::Path) -> anyhow::Result<(String, u64)> {
    use sha2::Digest;
    let mut f = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut h = sha2::Sha256::new();
    let n = std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok((hex::encode(h.finalize()), n))
}

async fn backup(cfg: &Config, dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.exists()
        && std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.next().is_some()
    {
        anyhow::bail!("{} is not empty: back up into a new or empty directory", dir.display());
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let services = app::open_migrated(cfg).await?;
    let file = dir.join("roster.db");
    let result = services.store.backup_into(&file).await;
    services.store.close().await;
    result?;
    let (sha256, size) = sha256_file(&file)?;
    let manifest = serde_json::json!({
        "format": "roster-backup-1",
        "file": "roster.db",
        "size": size,
        "sha256": sha256,
        "rosterd": env!("CARGO_PKG_VERSION"),
        "created_at": chrono::Utc::now(),
    });
    std::fs::write(dir.join("manifest.json"), serde_json::to_string_pretty(&manifest)? + "\n")
        .with_context(|| format!("writing {}", dir.join("manifest.json").display()))?;
    eprintln!("backed up the store ({size} bytes) into {}", dir.display());
    println!("{}", dir.display());
    Ok(())
}

async fn migrate_store(cfg: &Config, to: &str) -> anyhow::Result<()> {
    let shown = crate::config::redact_url(to);
    eprintln!("copying {} into {shown} ...", crate::config::redact_url(&cfg.database.url));
    let mut progress = |table: &str, rows: u64| eprintln!("  {table}: {rows} rows");
    let copied = crate::store::copy::sqlite_to_postgres(&cfg.database, to, &mut progress)
        .await
        .context("the copy failed and nothing was committed; the SQLite store is unchanged")?;
    println!("{:<28} {:>10}  checksum (SQLite = PostgreSQL)", "table", "rows");
    for c in &copied {
        println!("{:<28} {:>10}  {}", c.table, c.rows, c.checksum);
    }
    let rows: u64 = copied.iter().map(|c| c.rows).sum();
    eprintln!(
        "copied {rows} rows in {} tables; every count and checksum matches.\n\
         Now set database.url = \"{shown}\" in the configuration (or ROSTER_DATABASE__URL, or \
         database.url_file) and start rosterd. Keep the SQLite file until you are satisfied.",
        copied.len()
    );
    Ok(())
}

async fn restore(cfg: &Config, dir: &std::path::Path) -> anyhow::Result<()> {
    if !cfg.database.url.starts_with("sqlite:") {
        anyhow::bail!(
            "rosterd restore writes a SQLite store; restore PostgreSQL with pg_restore or psql (see README)"
        );
    }
    let target = crate::store::sqlite_database_file(&cfg.database.url)
        .ok_or_else(|| anyhow::anyhow!("database.url does not name a SQLite file"))?;
    if target.exists() && std::fs::metadata(&target)?.len() > 0 {
        anyhow::bail!(
            "{} exists: restore into an empty data directory (move the old database away first)",
            target.display()
        );
    }
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("manifest.json"))
            .with_context(|| format!("reading {}/manifest.json", dir.display()))?,
    )
    .context("manifest.json is not JSON")?;
    let file = dir.join(manifest["file"].as_str().unwrap_or("roster.db"));
    let (sha256, size) = sha256_file(&file)?;
    if manifest["sha256"].as_str() != Some(sha256.as_str()) || manifest["size"].as_u64() != Some(size) {
        anyhow::bail!(
            "{} does not match manifest.json (size or SHA-256): the backup is damaged",
            file.display()
        );
    }
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    // Copied beside the target, then renamed: a restore cut short leaves no half a database.
    let partial = target.with_extension("restoring");
    std::fs::copy(&file, &partial).with_context(|| format!("copying to {}", partial.display()))?;
    std::fs::rename(&partial, &target).with_context(|| format!("renaming to {}", target.display()))?;
    // Open it: a newer rosterd applies its migrations; a damaged file fails here.
    let services = app::open_migrated(cfg).await?;
    services.store.close().await;
    eprintln!("restored {} ({size} bytes) into {}", dir.display(), target.display());
    Ok(())
}

async fn ldap_client(
    cfg: &Config,
    services: &app::Services,
    console: &Actor,
    command: LdapClientCommand,
) -> anyhow::Result<()> {
    use crate::access::store::{TokenKind, TokenLimits};
    let d = services.directory.store();
    let e = d.enterprise().await?.ok_or_else(|| anyhow::anyhow!("no enterprise yet"))?;
    let names = crate::ldap_server::tree::Names::new(&cfg.ldap_server.base(&e.mail_domain));
    match command {
        LdapClientCommand::Create { name, subtree, size_limit, time_limit } => {
            let scope_unit_id = match subtree {
                None => None,
                Some(s) => Some(unit_named(services, &s).await?),
            };
            let limits = TokenLimits { scope_unit_id, size_limit, time_limit_secs: time_limit };
            let secret = services.access.create_ldap_client(console, &name, &limits).await?;
            eprintln!(
                "created LDAP service account {name:?}; bind as the DN below with the secret, shown only this once:"
            );
            println!("{}", names.service_dn(&name));
            println!("{secret}");
        }
        LdapClientCommand::List => {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:<24} {:<40} {:<38} {:<6} {:<6} {:<21} REVOKED",
                "NAME", "BIND DN", "SUBTREE", "SIZE", "TIME", "LAST USED"
            )?;
            for t in services.access.store().tokens().await?.into_iter().filter(|t| t.kind == TokenKind::Ldap)
            {
                let when = |d: Option<chrono::DateTime<chrono::Utc>>| {
                    d.map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|| "-".into())
                };
                let n = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "{:<24} {:<40} {:<38} {:<6} {:<6} {:<21} {}",
                    t.name,
                    names.service_dn(&t.name),
                    t.scope_unit_id.map(|u| u.to_string()).unwrap_or_else(|| "(whole tree)".into()),
                    n(t.size_limit),
                    n(t.time_limit_secs),
                    when(t.last_used_at),
                    when(t.revoked_at)
                )?;
            }
        }
        LdapClientCommand::Revoke { name } => {
            let known = services
                .access
                .store()
                .tokens()
                .await?
                .iter()
                .any(|t| t.name == name && t.kind == TokenKind::Ldap);
            if !known {
                anyhow::bail!("no LDAP service account {name:?}");
            }
            services.access.revoke_token(console, &name).await?;
            eprintln!("revoked LDAP service account {name:?}");
        }
    }
    Ok(())
}

/// An org unit by id or by path (`/Root/Child`).
async fn unit_named(services: &app::Services, s: &str) -> anyhow::Result<uuid::Uuid> {
    let units = services.directory.store().org_units_all().await?;
    if let Ok(id) = uuid::Uuid::parse_str(s.trim()) {
        return units
            .iter()
            .find(|u| u.id == id)
            .map(|u| u.id)
            .ok_or_else(|| anyhow::anyhow!("no org unit {id}"));
    }
    let mut parent: Option<uuid::Uuid> = None;
    let mut found = None;
    for part in s.trim().trim_matches('/').split('/').filter(|p| !p.is_empty()) {
        let u = units
            .iter()
            .find(|u| u.parent_id == parent && u.name == part)
            .ok_or_else(|| anyhow::anyhow!("no org unit {part:?} at that place in {s:?}"))?;
        parent = Some(u.id);
        found = Some(u.id);
    }
    found.ok_or_else(|| anyhow::anyhow!("{s:?} names no org unit"))
}

async fn sync(cfg: &Config, args: SyncArgs) -> anyhow::Result<ExitCode> {
    use crate::sync::{Outcome, RunOptions};
    let services = app::open(cfg).await?;
    let mut service = services.sync(cfg);
    if std::io::stderr().is_terminal() && !args.json {
        service = service.with_progress();
    }
    let report = match args.command {
        Some(SyncCommand::Status { json }) => {
            let runs = services.runs.runs_recent(50).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
            } else {
                println!(
                    "{:>6}  {:<16} {:<22} {:<10} {:<20} MESSAGE",
                    "RUN", "SOURCE", "TRIGGER", "STATUS", "STARTED"
                );
                for r in runs {
                    let started = r.started_at.format("%Y-%m-%dT%H:%M:%SZ");
                    println!(
                        "{:>6}  {:<16} {:<22} {:<10} {:<20} {}",
                        r.id, r.source, r.trigger, r.status, started, r.message
                    );
                }
            }
            services.store.close().await;
            return Ok(ExitCode::SUCCESS);
        }
        Some(SyncCommand::Approve { run_id }) => service.approve(run_id).await,
        None => {
            let Some(source) = args.source else {
                bail!("name a source: rosterd sync --source NAME (or: sync status, sync approve RUN_ID)");
            };
            let opts =
                RunOptions { full: args.full, dry_run: args.dry_run, trigger: "cli".into(), approved: None };
            service.run(&source, opts).await
        }
    };
    services.store.close().await;
    let report = report?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        if report.outcome == Outcome::DryRun {
            for step in &report.plan {
                println!("{step}");
            }
        }
        for e in &report.errors {
            eprintln!("skipped: {e}");
        }
        println!("run {}: {} - {}", report.run_id, report.outcome.as_str(), report.message);
        println!("{}", serde_json::to_string(&report.counts)?);
    }
    Ok(match report.outcome {
        Outcome::Applied | Outcome::DryRun => ExitCode::SUCCESS,
        Outcome::Held => ExitCode::from(3),
        Outcome::Failed => ExitCode::FAILURE,
    })
}

fn read_password(file: Option<PathBuf>) -> anyhow::Result<String> {
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        return Ok(text.lines().next().unwrap_or_default().to_owned());
    }
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("New super-admin password: ")?;
        let second = rpassword::prompt_password("Repeat it: ")?;
        if first != second {
            bail!("the passwords do not match; nothing was changed");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

/// A plain HTTP/1.1 GET of `/readyz`: no TLS, no dependencies, for `ExecStartPost` or a
/// container's health check.
async fn healthcheck(cfg: &Config, url: Option<String>) -> anyhow::Result<ExitCode> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let target = match url {
        Some(u) => u.trim_start_matches("http://").trim_end_matches('/').to_owned(),
        None => {
            let mut addr = cfg.http.listen;
            if addr.ip().is_unspecified() {
                addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
            }
            addr.to_string()
        }
    };
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(&target).await?;
        let request = format!("GET /readyz HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = match tokio::time::timeout(std::time::Duration::from_secs(5), fetch).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("not ready: cannot reach {target}: {e}");
            return Ok(ExitCode::FAILURE);
        }
        Err(_) => {
            eprintln!("not ready: {target} did not answer within 5 s");
            return Ok(ExitCode::FAILURE);
        }
    };
    let status = response.split_whitespace().nth(1).unwrap_or("");
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").trim();
    if status == "200" {
        println!("ready: {body}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("not ready (HTTP {status}): {body}");
        Ok(ExitCode::FAILURE)
    }
}
