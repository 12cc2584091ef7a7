//! `crmdq sql`: query the warehouse tables by name (read-only).

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;

use crmdq_pipeline::Clock;

use super::{Format, UsageError, load, print};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long)]
    pub warehouse: PathBuf,
    #[arg(long)]
    pub pipeline: Option<PathBuf>,
    #[arg(long)]
    pub roster: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Query the warehouse as it was (time travel): a commit-log version (`42`) or an
    /// RFC 3339 instant (the last commit at or before it).
    #[arg(long, value_name = "VERSION|INSTANT")]
    pub as_of: Option<crmdq_warehouse::AsOf>,
    pub query: String,
}

pub async fn run(a: Args, _shared_clock: &Arc<dyn Clock>) -> anyhow::Result<()> {
    let Args {
        warehouse,
        pipeline,
        roster,
        format,
        as_of,
        query,
    } = a;
    let w = super::open_warehouse(&warehouse).await?;
    // With a pipeline, its roster (derived through roster.mapping if it has one).
    let roster = match pipeline {
        Some(p) => {
            let p = load(&p, None, None)?;
            let path = roster.or_else(|| p.roster_path().map(Path::to_path_buf));
            crmdq_catalog::roster::load_for_pipeline(&p, path.as_deref()).await?
        }
        None => crmdq_catalog::roster::load(roster.as_deref()).await?,
    };
    let ctx = match as_of {
        Some(at) => {
            let snap = w
                .snapshot_as_of(at)
                .await
                .map_err(|e| UsageError(e.to_string()))?;
            crmdq_catalog::open_snapshot(&w, &snap, roster).await?
        }
        None => crmdq_catalog::open_with(&w, roster).await?,
    };
    let opts = datafusion::execution::context::SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let df = ctx
        .sql_with_options(&query, opts)
        .await
        .map_err(|e| UsageError(format!("query: {e}")))?;
    print(&df.collect().await?, format)?;
    Ok(())
}
