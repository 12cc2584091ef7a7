//! `crmdq migrate`: convert a warehouse of an earlier format in place.

use std::path::PathBuf;
use std::sync::Arc;

use crmdq_pipeline::Clock;
use crmdq_warehouse::Warehouse;

#[derive(clap::Args)]
pub struct Args {
    /// The warehouse folder to convert.
    #[arg(long)]
    pub warehouse: PathBuf,
}

pub async fn run(a: Args, _clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let loc = super::require_warehouse(&a.warehouse).await?;
    let started = std::time::Instant::now();
    let p = Warehouse::migrate(&loc).await?;
    println!(
        "{}: format {} — {} table(s) published to their Delta logs ({} file(s) added, {} removed), {} already up to date, in {:.2}s; no data file was rewritten",
        a.warehouse.display(),
        crmdq_warehouse::FORMAT,
        p.tables,
        p.adds,
        p.removes,
        p.up_to_date,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
