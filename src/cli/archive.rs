//! `rosterd archive`: exports with a progress bar, retention rules, legal holds, a purge now.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use clap::Subcommand;
use uuid::Uuid;

use crate::app;
use crate::archive::export::{ExportScope, Format};
use crate::archive::retention::HoldTarget;
use crate::archive::{Archive, Viewer};
use crate::directory::model::Actor;

#[derive(Subcommand, Debug)]
pub enum ArchiveCommand {
    /// Export a member's or a unit's message records (or, with neither, everything) to a .tar
    /// file: the messages, their attachments and a manifest with counts and SHA-256 sums.
    Export {
        /// A member identity (UUID; also a deleted account's) or a current account number.
        #[arg(long, conflicts_with = "unit")]
        member: Option<String>,
        /// An org unit (UUID): the records of the members under it.
        #[arg(long)]
        unit: Option<Uuid>,
        /// From this day (YYYY-MM-DD, UTC) or time (RFC 3339), inclusive.
        #[arg(long)]
        from: Option<String>,
        /// Until this day (inclusive) or time (exclusive).
        #[arg(long)]
        to: Option<String>,
        #[arg(long, default_value = "jsonl", value_parser = parse_format)]
        format: Format,
        /// Copy the finished file here (it also stays under archive.export_dir until it expires).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Retention per org subtree: `list`, `set --unit ID --days N`, `clear --unit ID`.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// Legal holds: `list`, `add (--member ID | --unit ID) --reason TEXT`, `release ID`.
    Hold {
        #[command(subcommand)]
        command: HoldCommand,
    },
    /// Run the retention purge now (it also runs on archive.purge_schedule).
    Purge,
}

#[derive(Subcommand, Debug)]
pub enum RetentionCommand {
    List,
    Set {
        #[arg(long)]
        unit: Uuid,
        #[arg(long)]
        days: i64,
    },
    Clear {
        #[arg(long)]
        unit: Uuid,
    },
}

#[derive(Subcommand, Debug)]
pub enum HoldCommand {
    List,
    Add {
        #[arg(long, conflicts_with = "unit", required_unless_present = "unit")]
        member: Option<Uuid>,
        #[arg(long)]
        unit: Option<Uuid>,
        #[arg(long)]
        reason: String,
    },
    Release {
        id: Uuid,
    },
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| "jsonl, csv or eml".into())
}

/// A day (midnight UTC; `end`: the next midnight) or an RFC 3339 time.
fn time(s: &str, end: bool) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("{s:?} is neither YYYY-MM-DD nor RFC 3339"))?;
    let t = d.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
    Ok(if end { t + chrono::Duration::days(1) } else { t })
}

pub async fn run(services: &app::Services, actor: &Actor, command: ArchiveCommand) -> anyhow::Result<()> {
    let archive = &services.archive;
    match command {
        ArchiveCommand::Export { member, unit, from, to, format, out } => {
            let member = match member {
                Some(m) => Some(member_id(archive, &m).await?),
                None => None,
            };
            let scope = ExportScope {
                member,
                unit,
                from: from.as_deref().map(|s| time(s, false)).transpose()?,
                to: to.as_deref().map(|s| time(s, true)).transpose()?,
            };
            let viewer = Viewer { actor: actor.clone(), units: None };
            let row = archive.request_export(&viewer, scope, format, true).await?;
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} messages ({eta})")
                    .expect("a valid template"),
            );
            let progress = {
                let bar = bar.clone();
                move |done: i64, total: i64| {
                    bar.set_length(total.max(0) as u64);
                    bar.set_position(done.max(0) as u64);
                }
            };
            let row = archive.run_export(row, &progress).await?;
            bar.finish_and_clear();
            if let Some(err) = &row.error {
                anyhow::bail!("the export failed: {err}");
            }
            let file = row.file.clone().context("the export has no file")?;
            let path = match out {
                Some(out) => {
                    std::fs::copy(&file, &out).with_context(|| format!("copy to {}", out.display()))?;
                    out.display().to_string()
                }
                None => file,
            };
            eprintln!(
                "exported {} messages; sha256 {}; expires {}",
                row.done,
                row.sha256.as_deref().unwrap_or(""),
                row.expires_at.map(|t| t.to_rfc3339()).unwrap_or_default()
            );
            println!("{path}");
        }
        ArchiveCommand::Retention { command } => match command {
            RetentionCommand::List => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{:<36} {:>6} SET BY", "UNIT", "DAYS")?;
                for r in archive.store().archive_retention().await? {
                    writeln!(out, "{:<36} {:>6} {}", r.unit_id, r.days, r.set_by)?;
                }
            }
            RetentionCommand::Set { unit, days } => archive.set_retention(actor, unit, Some(days)).await?,
            RetentionCommand::Clear { unit } => archive.set_retention(actor, unit, None).await?,
        },
        ArchiveCommand::Hold { command } => match command {
            HoldCommand::List => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{:<36} {:<6} {:<36} {:<25} REASON", "ID", "ON", "TARGET", "RELEASED")?;
                for h in archive.store().archive_holds().await? {
                    let released = h
                        .released_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_default();
                    writeln!(
                        out,
                        "{:<36} {:<6} {:<36} {:<25} {}",
                        h.id, h.target_kind, h.target_id, released, h.reason
                    )?;
                }
            }
            HoldCommand::Add { member, unit, reason } => {
                let (target, id) = match (member, unit) {
                    (Some(m), _) => (HoldTarget::Member, m),
                    (None, Some(u)) => (HoldTarget::Unit, u),
                    (None, None) => anyhow::bail!("--member or --unit"),
                };
                let hold = archive.add_hold(actor, target, id, &reason).await?;
                println!("{}", hold.id);
            }
            HoldCommand::Release { id } => archive.release_hold(actor, id).await?,
        },
        ArchiveCommand::Purge => {
            let purged = archive.purge(Utc::now()).await?;
            println!("deleted {} messages; kept {} looked at", purged.messages, purged.kept);
        }
    }
    Ok(())
}

async fn member_id(archive: &Archive, s: &str) -> anyhow::Result<Uuid> {
    archive.member_named(s).await?.with_context(|| format!("no member holds {s}"))
}
