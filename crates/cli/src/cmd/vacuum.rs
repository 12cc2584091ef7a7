//! `crmdq vacuum`: delete the data files no version within the retention needs.

use std::path::PathBuf;
use std::sync::Arc;

use crmdq_pipeline::Clock;
use crmdq_warehouse::Warehouse;

use super::UsageError;

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub warehouse: PathBuf,
    /// Keep files taken out of the tables (or never committed) less than this many hours
    /// ago: time travel within it still works, and a writer's file not yet committed is
    /// safe.
    #[arg(long, default_value_t = 168.0)]
    pub retention_hours: f64,
    /// Allow a retention under one hour (a running writer's not yet committed files could
    /// be deleted: only when nothing writes).
    #[arg(long)]
    pub force: bool,
    /// List what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(a: Args, clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let loc = super::require_warehouse(&a.warehouse).await?;
    if !(a.retention_hours >= 0.0 && a.retention_hours.is_finite()) {
        return Err(UsageError(format!(
            "--retention-hours {}: expected hours ≥ 0",
            a.retention_hours
        ))
        .into());
    }
    if a.retention_hours < 1.0 && !a.force {
        return Err(UsageError(format!(
            "--retention-hours {}: under one hour could delete a running writer's files before it commits them; add --force if nothing is writing",
            a.retention_hours
        ))
        .into());
    }
    let w = Warehouse::connect(&loc).await?;
    let s = crmdq_warehouse::maintenance::vacuum(
        &w,
        std::time::Duration::from_secs_f64(a.retention_hours * 3600.0),
        clock.now(),
        a.dry_run,
    )
    .await?;
    for p in &s.deleted {
        println!("{} {p}", if a.dry_run { "would delete" } else { "deleted" });
    }
    println!(
        "vacuum: {} file(s), {} bytes {}; {} not live but within the retention kept",
        s.deleted.len(),
        s.bytes,
        if a.dry_run {
            "to delete (dry run)"
        } else {
            "deleted"
        },
        s.kept_recent
    );
    Ok(())
}
