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
    /// Replay: score the warehouse as it was at a commit-log version (`42`) or an RFC 3339
    /// instant, into `--out` (the warehouse's own scores are left alone). Compare with
    /// `crmdq sql --as-of` to see what a disputed score was computed from.
    #[arg(long, value_name = "VERSION|INSTANT", requires = "out")]
    pub as_of: Option<crmdq_warehouse::AsOf>,
    /// With `--as-of`: the folder (a new warehouse) that gets the replayed score tables.
    #[arg(long, requires = "as_of")]
    pub out: Option<PathBuf>,
    /// Compute every business date and period again. By default a score computes only
    /// what changed since the last one (new deliveries, roster or absence changes; see
    /// docs/scoring.md "Incremental"): the same files, byte for byte.
    #[arg(long)]
    pub full: bool,
}

pub async fn run(a: Args, shared_clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let Args {
        pipeline,
        warehouse,
        roster,
        chunk_rows,
        bucket_rows,
        no_alerts,
        as_of,
        out,
        full,
    } = a;
    let clock = shared_clock.as_ref();
    let p = load(&pipeline, warehouse.as_ref(), None)?;
    let w = Warehouse::connect(&p.warehouse.location()).await?;
    let (as_of_snap, out_w) = match (as_of, &out) {
        (Some(at), Some(dir)) => {
            let snap = w
                .snapshot_as_of(at)
                .await
                .map_err(|e| super::UsageError(e.to_string()))?;
            if dir.join(crmdq_warehouse::LOG_DIR).exists() {
                return Err(super::UsageError(format!(
                    "--out {}: already a warehouse; a replay goes into a new folder",
                    dir.display()
                ))
                .into());
            }
            (Some(snap), Some(Warehouse::open(dir)?))
        }
        _ => (None, None),
    };
    let replay = as_of_snap.as_ref().map(|s| s.version);
    let roster = roster.or_else(|| p.roster_path().map(Path::to_path_buf));
    let s = crmdq_score::score_with(
        &p,
        &w,
        roster.as_deref(),
        clock.now().to_string(),
        &crmdq_score::ScoreOptions {
            chunk_rows,
            bucket_rows,
            as_of: as_of_snap,
            out: out_w,
            full,
            ..crmdq_score::ScoreOptions::default()
        },
    )
    .await?;
    match &s.full_because {
        None => println!(
            "incremental: computed {} of {} business date(s) again, kept the rest",
            s.computed_dates, s.dates
        ),
        Some(why) => println!("full score ({why})"),
    }
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
    if let (Some(v), Some(dir)) = (replay, &out) {
        println!(
            "replayed the warehouse as of its log version {v} into {}; its own scores are unchanged (compare with `crmdq sql --as-of {v}`)",
            dir.display()
        );
        return Ok(());
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
