//! `rosterd import FILE`: directory changes from JSON Lines, through the same
//! [`DirectoryService`](crate::directory::DirectoryService) as every other writer.
//!
//! Each line is one [`Change`] (`{"op":"create_member","login_name":"alice","display_name":"Alice"}`).
//! The whole file is parsed first, so a malformed line changes nothing. Changes are applied in
//! batches, each batch one transaction. SIGTERM or Ctrl-C stops after the batch in flight: every
//! batch is either wholly applied or not at all, and the command says how far it got.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::directory::Change;
use crate::directory::model::{Actor, Source};

/// Parses JSON Lines; blank lines and lines starting with `#` are skipped. Returns each change
/// with its 1-based line number.
pub fn parse(text: &str) -> Result<Vec<(usize, Change)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let change = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        out.push((i + 1, change));
    }
    Ok(out)
}

pub async fn run(cfg: &Config, file: &Path, batch: usize) -> anyhow::Result<ExitCode> {
    let text = if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
    };
    let changes = match parse(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}; nothing was imported");
            return Ok(ExitCode::from(2));
        }
    };
    let services = crate::app::open(cfg).await?;

    let code = apply_all(&services.directory, changes, batch).await;
    services.store.close().await;
    code
}

async fn apply_all(
    directory: &crate::directory::DirectoryService,
    changes: Vec<(usize, Change)>,
    batch: usize,
) -> anyhow::Result<ExitCode> {
    let actor = Actor::new(Source::import(), "cli");
    let stop = CancellationToken::new();
    let trigger = stop.clone();
    tokio::spawn(async move {
        crate::app::shutdown_signal().await;
        trigger.cancel();
    });
    let total = changes.len();
    let mut done = 0;
    for chunk in changes.chunks(batch.max(1)) {
        if stop.is_cancelled() {
            eprintln!("interrupted: applied {done} of {total} changes; the rest were not applied");
            return Ok(ExitCode::FAILURE);
        }
        let lines: Vec<usize> = chunk.iter().map(|(l, _)| *l).collect();
        let set: Vec<Change> = chunk.iter().map(|(_, c)| c.clone()).collect();
        // The batch runs to its commit even if a signal arrives meanwhile.
        let result = tokio::spawn({
            let directory = directory.clone();
            let actor = actor.clone();
            async move { directory.apply(&actor, set).await }
        })
        .await
        .context("import task")?;
        if let Err(e) = result {
            eprintln!(
                "error: line {}: {} [{}]; applied {done} of {total} changes before this batch, \
                 which was rolled back",
                lines[e.index],
                e.error,
                e.error.code()
            );
            return Ok(ExitCode::FAILURE);
        }
        done += chunk.len();
    }
    eprintln!("imported {done} changes");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_changes_and_names_the_bad_line() {
        let ok = "# comment\n{\"op\":\"create_org_unit\",\"name\":\"Sales\"}\n\n{\"op\":\"delete_group\",\"id\":\"00000000-0000-0000-0000-000000000001\"}\n";
        let parsed = super::parse(ok).unwrap();
        assert_eq!(parsed.iter().map(|p| p.0).collect::<Vec<_>>(), vec![2, 4]);
        let bad = "{\"op\":\"create_org_unit\",\"name\":\"Sales\"}\n{\"op\":\"fly\"}\n";
        assert!(super::parse(bad).unwrap_err().starts_with("line 2:"));
    }
}
