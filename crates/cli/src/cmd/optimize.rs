//! `crmdq optimize`: compact the small files of each partition (safe while `run` commits).

use std::path::PathBuf;
use std::sync::Arc;

use crmdq_pipeline::Clock;
use crmdq_warehouse::maintenance::{OptimizeOptions, optimize};

use super::UsageError;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub warehouse: PathBuf,
    /// Only this table (`customer`, `dead_letters`, `person_daily`, …).
    #[arg(long)]
    pub table: Option<String>,
    /// Only this partition (business date, YYYY-MM-DD).
    #[arg(long)]
    pub dt: Option<String>,
    /// Files smaller than this (MiB) are compacted into files of about this size.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub target_mib: u64,
}

pub async fn run(a: Args, clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let w = super::open_warehouse(&a.warehouse).await?;
    if let Some(t) = &a.table
        && !w.snapshot().await?.dirs.contains_key(t)
    {
        return Err(UsageError(format!(
            "--table {t}: no such table in {}",
            a.warehouse.display()
        ))
        .into());
    }
    let started = std::time::Instant::now();
    let s = optimize(
        &w,
        &OptimizeOptions {
            table: a.table,
            dt: a.dt,
            target_bytes: a.target_mib << 20,
            ..OptimizeOptions::default()
        },
        clock.now().to_string(),
        format!("crmdq optimize (pid {})", std::process::id()),
    )
    .await?;
    let Some(v) = s.version else {
        println!(
            "optimized: nothing to compact ({} file(s); no partition has two small ones)",
            s.files_before
        );
        return Ok(());
    };
    let conflicts = if s.conflicts > 0 {
        format!(
            "; {} group(s) left out: another writer replaced their files",
            s.conflicts
        )
    } else {
        String::new()
    };
    println!(
        "optimized: {} small file(s) compacted into {} ({} rows rewritten; {} file(s) before) in {:.2}s, log version {v}{conflicts}",
        s.files_removed,
        s.files_added,
        s.rows_rewritten,
        s.files_before,
        started.elapsed().as_secs_f64(),
    );
    Ok(())
}
