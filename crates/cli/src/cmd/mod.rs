//! The commands, one module each: its arguments (clap) and what it does, in terms of the
//! library crates; and the helpers they share (loading the pipeline, printing results,
//! the clock, the stop signal).

pub mod alerts;
pub mod bench;
pub mod check_config;
pub mod demo;
pub mod generate;
pub mod ingest;
pub mod migrate;
pub mod optimize;
pub mod report;
pub mod run;
pub mod score;
pub mod serve;
pub mod sql;
pub mod vacuum;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use clap::ValueEnum;
use crmdq_config::Pipeline;
use crmdq_pipeline::{Clock, FixedClock, SystemClock};

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum DeliverArg {
    Open,
    All,
}

/// An error that maps to exit code 2.
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// `--warehouse` (a folder or an object-store URL) must be a crmdq warehouse (usage error
/// otherwise). Credentials for a URL come from the standard environment variables.
pub(crate) async fn require_warehouse(at: &Path) -> anyhow::Result<crmdq_warehouse::Location> {
    let loc = crmdq_warehouse::Location::from(at);
    loc.check()
        .map_err(|m| UsageError(format!("--warehouse {m}")))?;
    if crmdq_warehouse::Warehouse::exists(&loc).await? {
        Ok(loc)
    } else {
        Err(UsageError(format!(
            "{loc}: not a crmdq warehouse (no {} folder)",
            crmdq_warehouse::LOG_DIR
        ))
        .into())
    }
}

/// Open the existing warehouse named by `--warehouse` (see [`require_warehouse`]).
pub(crate) async fn open_warehouse(at: &Path) -> anyhow::Result<crmdq_warehouse::Warehouse> {
    let loc = require_warehouse(at).await?;
    Ok(crmdq_warehouse::Warehouse::connect(&loc).await?)
}

/// Load and check the pipeline file, with the command line's `--warehouse` and `--roster`.
pub(crate) fn load(
    path: &Path,
    warehouse: Option<&PathBuf>,
    roster: Option<&PathBuf>,
) -> anyhow::Result<Pipeline> {
    if let Some(w) = warehouse {
        crmdq_warehouse::Location::from(w)
            .check()
            .map_err(|m| UsageError(format!("--warehouse {m}")))?;
    }
    let overrides = crmdq_config::Overrides {
        warehouse: warehouse.cloned(),
        roster: roster.cloned(),
    };
    let p = Pipeline::load_with(path, &overrides).map_err(|e| UsageError(e.to_string()))?;
    // Fail on bad checks (e.g. user SQL) as a config error too.
    crmdq_check::Checker::compile(&p)
        .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
    Ok(p)
}

pub(crate) fn print(batches: &[RecordBatch], format: Format) -> anyhow::Result<()> {
    match format {
        Format::Table => println!("{}", arrow::util::pretty::pretty_format_batches(batches)?),
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(std::io::stdout());
            for b in batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(std::io::stdout());
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(())
}

pub(crate) fn print_alerts(r: &crmdq_alerts::Report, dry_run: bool, rules: usize) {
    let verb = if dry_run { "would notify" } else { "notified" };
    let rules = if rules > 0 {
        format!("{rules} rule(s), ")
    } else {
        String::new()
    };
    let dates = match &r.from {
        Some(f) => format!("business dates {f} to {}", r.date.as_deref().unwrap_or("-")),
        None => format!("business date {}", r.date.as_deref().unwrap_or("-")),
    };
    if !r.report_only.is_empty() {
        println!(
            "{} date(s) before the latest evaluated one ({}): a report only; alert state unchanged, nothing sent",
            r.report_only.len(),
            r.through.as_deref().unwrap_or("-"),
        );
        for e in &r.reported {
            println!("- would have: {}", e.message.replace('\n', "\n  "));
        }
    }
    // Events of a replay that a later one supersedes are recorded, not sent: a count.
    let superseded = r
        .events
        .iter()
        .filter(|e| !dry_run && !e.delivered && !e.pending)
        .count();
    let live = r.events.len() - superseded;
    println!(
        "alerts for {dates}: {rules}{live} event(s) {verb}, {} still firing (already notified)",
        r.still_firing.len()
    );
    for e in r
        .events
        .iter()
        .filter(|e| dry_run || e.delivered || e.pending)
    {
        let to = e.receiver.as_deref().unwrap_or("no receiver");
        let status = if dry_run {
            String::new()
        } else if e.delivered {
            " [delivered]".to_string()
        } else {
            format!(" [pending: {}]", e.delivery_error.as_deref().unwrap_or("?"))
        };
        println!("- to {to}{status}:\n  {}", e.message.replace('\n', "\n  "));
    }
    if superseded > 0 {
        println!(
            "- {superseded} earlier event(s) of these dates recorded, not sent (--deliver open: a later event supersedes them; see the alerts table)"
        );
    }
    for (rule, subject) in &r.still_firing {
        println!("- still firing: {rule} {subject}");
    }
    for (rule, why) in &r.skipped {
        println!("- not evaluated: {rule}: {why}");
    }
    if !dry_run {
        println!(
            "delivery: {} earlier event(s) delivered now, {} pending, {} expired",
            r.redelivered, r.pending, r.expired
        );
    }
}

pub(crate) fn addr(v: &str, flag: &str) -> anyhow::Result<std::net::SocketAddr> {
    v.parse()
        .map_err(|e| UsageError(format!("{flag} `{v}`: not an IP:port address ({e})")).into())
}

pub(crate) fn clock(now: Option<&String>) -> anyhow::Result<Arc<dyn Clock>> {
    match now {
        None => Ok(Arc::new(SystemClock)),
        Some(s) => Ok(Arc::new(FixedClock(
            s.parse()
                .map_err(|e| UsageError(format!("--now `{s}`: {e}")))?,
        ))),
    }
}

pub(crate) async fn shutdown_signal(token: tokio_util::sync::CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("stop requested: writing and committing what was consumed");
    token.cancel();
}
