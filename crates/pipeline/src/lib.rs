//! crmdq-pipeline: the stages wired together.
//!
//! source → decode → check → warehouse sink → (commit log) → scoring. [`ingest`] runs it
//! over files, [`run`] over Kafka. Time comes from a [`Clock`], never from the system
//! inside the stages.

pub mod clock;
pub mod ingest;
mod process;
pub mod run;
mod stage;
pub mod stall;

pub use clock::{Clock, FixedClock, SystemClock};

use crmdq_check::CheckError;
use crmdq_score::ScoreError;
use crmdq_source::SourceError;
use crmdq_warehouse::WarehouseError;

/// A pipeline run failed for an infrastructure reason.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Check(#[from] CheckError),
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Score(#[from] ScoreError),
    #[error(transparent)]
    Catalog(#[from] crmdq_catalog::CatalogError),
    #[error("query failed: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("{0}")]
    Other(String),
}

/// A writer id for file names and log entries: start instant and process id.
pub fn writer_id(clock: &dyn Clock) -> String {
    format!("{}-{}", clock.now().as_millisecond(), std::process::id())
}

/// The pipeline's checks, with its roster (if it names one) for `entered_by_owner_side`:
/// the roster in force when the records are ingested.
pub async fn checker(p: &crmdq_config::Pipeline) -> Result<crmdq_check::Checker, PipelineError> {
    let checker = crmdq_check::Checker::compile(p)?;
    Ok(match p.roster_path() {
        Some(path) => {
            let roster = crmdq_catalog::roster::load_for_pipeline(p, Some(path)).await?;
            checker.with_roster(&roster)
        }
        None => checker,
    })
}
