//! `crmdq score`: (Re)compute the score tables.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use crmdq_pipeline::Clock;
use crmdq_warehouse::Warehouse;

use super::{load, print_alerts};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub pipeline: PathBuf,
    #[arg(long)]
    pub warehouse: Option<PathBuf>,
    #[arg(long)]
    pub roster: Option<PathBuf>,
    /// Deliveries scored at once (consecutive dates up to this many; a date with
    /// more is scored alone). Memory follows it; the scores do not.
    #[arg(long, default_value_t = crmdq_score::DEFAULT_CHUNK_ROWS, value_parser = clap::value_parser!(u64).range(1..))]
    pub chunk_rows: u64,
    /// Deliveries of the largest record type that the review pass takes at once (a
    /// bucket of record ids). Memory follows it; the scores do not.
    #[arg(long, default_value_t = crmdq_score::DEFAULT_BUCKET_ROWS, value_parser = clap::value_parser!(u64).range(1..))]
    pub bucket_rows: u64,
    /// Do not evaluate the alert rules after scoring (e.g. to replay a backfill's
    /// alerts with `crmdq alerts --from D1 --to D2` instead).
    #[arg(long)]
    pub no_alerts: bool,
}

pub async fn run(a: Args, shared_clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let Args {
        pipeline,
        warehouse,
        roster,
        chunk_rows,
        bucket_rows,
        no_alerts,
    } = a;
    let clock = shared_clock.as_ref();
    let p = load(&pipeline, warehouse.as_ref(), None)?;
    let w = Warehouse::open(&p.warehouse.path)?;
    let roster = roster.or_else(|| p.roster_path().map(Path::to_path_buf));
    let s = crmdq_score::score_with(
        &p,
        &w,
        roster.as_deref(),
        clock.now().to_string(),
        &crmdq_score::ScoreOptions {
            chunk_rows,
            bucket_rows,
            ..crmdq_score::ScoreOptions::default()
        },
    )
    .await?;
    println!(
        "scored {} business date(s) in {} chunk(s){} (log version {}):",
        s.dates,
        s.chunks,
        if s.rescored_chunks > 0 {
            format!(
                ", {} scored again for versions delivered on dates in two chunks",
                s.rescored_chunks
            )
        } else {
            String::new()
        },
        s.version
    );
    for (t, n) in &s.rows {
        println!("  {t}: {n} rows");
    }
    if !p.alerts.rules.is_empty() && !no_alerts {
        // Evaluation after every scoring run: every scored date after the latest
        // evaluated one, in order (the latest again when none is new).
        let opts = crmdq_alerts::EvalOptions {
            dates: crmdq_alerts::Dates::CatchUp,
            scored_entries: s.entries.clone(),
            ..crmdq_alerts::EvalOptions::latest(clock.now())
        };
        let r = crmdq_alerts::evaluate(&p, &w, roster.as_deref(), &opts).await?;
        print_alerts(&r, false, p.alerts.rules.len());
    }
    Ok(())
}
