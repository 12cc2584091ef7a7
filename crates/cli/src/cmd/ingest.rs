//! `crmdq ingest`: backfill from NDJSON or CSV files (optionally gzipped). Re-ingesting a file adds nothing.

use std::io::IsTerminal;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use crmdq_pipeline::Clock;
use crmdq_warehouse::Warehouse;

use super::{UsageError, load};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub pipeline: PathBuf,
    #[arg(long)]
    pub warehouse: Option<PathBuf>,
    /// Roster file (contract columns) instead of the pipeline's: who is on the owner's
    /// side of a customer entry (`entered_by_owner_side`).
    #[arg(long)]
    pub roster: Option<PathBuf>,
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
}

pub async fn run(a: Args, shared_clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let Args {
        pipeline,
        warehouse,
        roster,
        inputs,
    } = a;
    let p = load(&pipeline, warehouse.as_ref(), roster.as_ref())?;
    let w = Warehouse::connect(&p.warehouse.location()).await?;
    let bar = std::io::stderr().is_terminal().then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{msg} {bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("static template"),
        );
        b
    });
    let mut progress = |path: &Path, done: u64, total: u64| {
        if let Some(b) = &bar {
            b.set_length(total);
            b.set_position(done);
            b.set_message(
                path.file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default(),
            );
        }
    };
    let started = std::time::Instant::now();
    let s =
        match crmdq_pipeline::ingest::ingest(&p, &w, &inputs, shared_clock.clone(), &mut progress)
            .await
        {
            Err(crmdq_pipeline::PipelineError::Source(crmdq_source::SourceError::Mapping {
                message,
            })) => {
                return Err(UsageError(format!("{}: {message}", pipeline.display())).into());
            }
            r => r?,
        };
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingested {} file(s): {} records, {} dead letters, {} lines already committed and skipped, {} commit(s) in {:.2}s ({:.0} records/s)",
        s.files,
        s.records,
        s.dead_letters,
        s.skipped_lines,
        s.commits,
        secs,
        (s.records + s.dead_letters) as f64 / secs.max(1e-9)
    );
    for (reason, n) in &s.by_reason {
        println!("  dead letters {reason}: {n}");
    }
    Ok(())
}
