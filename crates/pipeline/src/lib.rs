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
