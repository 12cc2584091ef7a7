//! crmdq-catalog: how the warehouse is seen as SQL — the one place that knows it.
//!
//! Every reader (`crmdq sql`, `score`, `alerts`, `serve`) gets its session here: the same
//! configuration ([`session_config`]), every table by name with its file schema
//! ([`tables`]) over exactly the files the commit log names (a [`Snapshot`], or a
//! [`LiveSnapshot`] that follows new commits), the roster ([`roster`]) and the views
//! ([`views`]). Invariant: a reader never lists a folder; a file counts only once a log
//! entry names it.

pub mod roster;
pub mod views;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use crmdq_schema::{
    RecordType, ScoreTable, alert_deliveries_schema, alerts_schema, dead_letter_schema,
    record_table_schema,
};
use crmdq_warehouse::{
    LiveSnapshot, LiveTable, Snapshot, Warehouse, WarehouseError, register_table,
};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("roster {path}:{line}: {message}")]
    Roster {
        path: PathBuf,
        line: u64,
        message: String,
    },
    #[error("registering `{name}`: {source}")]
    Register {
        name: String,
        #[source]
        source: Box<DataFusionError>,
    },
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
}

fn reg(name: &str) -> impl Fn(DataFusionError) -> CatalogError + '_ {
    move |e| CatalogError::Register {
        name: name.to_string(),
        source: Box::new(e),
    }
}

/// Partitions a warehouse query is planned for: the two cores of the machines crmdq is
/// sized for (DataFusion would take the core count, and more partitions only add memory).
pub const TARGET_PARTITIONS: usize = 2;

/// The configuration of every session that reads the warehouse (scoring, alerts, `sql`,
/// and `serve`, which adds its catalog name on top).
pub fn session_config() -> SessionConfig {
    SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(TARGET_PARTITIONS)
}

/// A session configured for warehouse queries, with no table yet.
pub fn session() -> SessionContext {
    SessionContext::new_with_config(session_config())
}

/// Every warehouse table a reader can query by name, with its file schema (without the
/// `dt` partition column): the record tables, `dead_letters`, `alerts`,
/// `alert_deliveries` and the score tables.
pub fn tables() -> Vec<(&'static str, SchemaRef)> {
    let mut out: Vec<(&'static str, SchemaRef)> = RecordType::ALL
        .into_iter()
        .map(|rt| (rt.as_str(), record_table_schema(rt)))
        .collect();
    out.push(("dead_letters", dead_letter_schema()));
    out.push(("alerts", alerts_schema()));
    out.push(("alert_deliveries", alert_deliveries_schema()));
    for t in ScoreTable::ALL {
        out.push((t.name(), t.schema()));
    }
    out
}

/// Register every table of [`tables`] in `ctx` over the snapshot's committed files, and
/// `roster`.
pub fn register_snapshot(
    ctx: &SessionContext,
    w: &Warehouse,
    snap: &Snapshot,
    roster: RecordBatch,
) -> Result<(), CatalogError> {
    register_roster(ctx, roster)?;
    for (name, schema) in tables() {
        register_table(ctx, w, name, schema, snap.files_of(name)).map_err(reg(name))?;
    }
    Ok(())
}

/// Like [`register_snapshot`], but every table takes its file list from `live` at each
/// query, so commits made while a long-running reader (`serve`) is up become visible.
pub fn register_live(
    ctx: &SessionContext,
    live: &Arc<LiveSnapshot>,
    roster: RecordBatch,
) -> Result<(), CatalogError> {
    register_roster(ctx, roster)?;
    for (name, schema) in tables() {
        ctx.register_table(name, Arc::new(LiveTable::new(live.clone(), name, schema)))
            .map_err(reg(name))?;
    }
    Ok(())
}

/// Register `roster` as the table `roster`.
pub fn register_roster(ctx: &SessionContext, roster: RecordBatch) -> Result<(), CatalogError> {
    let table = MemTable::try_new(roster.schema(), vec![vec![roster]]).map_err(reg("roster"))?;
    ctx.register_table("roster", Arc::new(table))
        .map_err(reg("roster"))?;
    Ok(())
}

/// Create `views` in `ctx`, which must hold the tables they read.
pub async fn create_views(
    ctx: &SessionContext,
    views: Vec<(String, String)>,
) -> Result<(), CatalogError> {
    for (name, body) in views {
        ctx.sql(&format!("CREATE VIEW {name} AS {body}"))
            .await
            .map_err(reg(&name))?;
    }
    Ok(())
}

/// Every view a reader queries by name: [`views::entry_views`] then
/// [`views::reading_views`].
pub fn all_views() -> Vec<(String, String)> {
    let mut v = views::entry_views();
    v.extend(views::reading_views());
    v
}

/// A session over the warehouse as committed now: every table, the roster read from
/// `roster` (empty if None), every view.
pub async fn open(w: &Warehouse, roster: Option<&Path>) -> Result<SessionContext, CatalogError> {
    open_with(w, roster::load(roster).await?).await
}

/// [`open`] with a roster already loaded (e.g. by [`roster::load_for_pipeline`], which
/// applies the pipeline's `roster.mapping`).
pub async fn open_with(w: &Warehouse, roster: RecordBatch) -> Result<SessionContext, CatalogError> {
    open_snapshot(w, &w.snapshot().await?, roster).await
}

/// [`open_with`] over a given state of the warehouse (e.g. a past one,
/// [`Warehouse::snapshot_as_of`]).
pub async fn open_snapshot(
    w: &Warehouse,
    snap: &Snapshot,
    roster: RecordBatch,
) -> Result<SessionContext, CatalogError> {
    let ctx = session();
    register_snapshot(&ctx, w, snap, roster)?;
    create_views(&ctx, all_views()).await?;
    Ok(ctx)
}
