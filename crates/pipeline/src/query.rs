//! Query the committed warehouse with SQL: every table by name (`customer`, …,
//! `dead_letters`, `person_daily`, `team_daily`, `rule_daily`, `roster`), and the entry
//! views (`all_deliveries`, `<type>_entries`, `entries`).

use std::path::Path;

use arrow::array::RecordBatch;
use crmdq_warehouse::Warehouse;
use datafusion::prelude::SessionContext;

use crate::PipelineError;

/// A session over the warehouse's committed files (and the roster, if given).
pub async fn session(
    w: &Warehouse,
    roster: Option<&Path>,
) -> Result<SessionContext, PipelineError> {
    session_with_roster(w, crmdq_score::load_roster(roster).await?).await
}

/// A session over the warehouse's committed files with a loaded roster (e.g. from
/// [`crmdq_score::load_pipeline_roster`], which applies the pipeline's roster mapping).
pub async fn session_with_roster(
    w: &Warehouse,
    roster: RecordBatch,
) -> Result<SessionContext, PipelineError> {
    let snap = w.snapshot().await?;
    let ctx = crmdq_score::session();
    crmdq_score::register_all(&ctx, w, &snap, roster).await?;
    crmdq_score::create_entry_views(&ctx).await?;
    Ok(ctx)
}

/// Run one SQL statement and collect its result.
pub async fn sql(
    w: &Warehouse,
    roster: Option<&Path>,
    query: &str,
) -> Result<Vec<RecordBatch>, PipelineError> {
    let ctx = session(w, roster).await?;
    let df = ctx.sql(query).await?;
    Ok(df.collect().await?)
}
