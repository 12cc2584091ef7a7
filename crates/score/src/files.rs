//! Score files: a query's rows encoded as one Parquet file per `dt` (sorted rows,
//! content-addressed names, so a re-score is byte-identical), written durably.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use crmdq_schema::ScoreTable;
use crmdq_warehouse::{FileAdd, Warehouse};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::StreamExt as _;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use sha2::{Digest, Sha256};

use crate::{ScoreError, q};

/// One score file: `part` as Parquet.
pub(crate) fn encode_file(
    part: &RecordBatch,
    schema: &SchemaRef,
    props: &WriterProperties,
) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props.clone()))?;
    writer.write(part)?;
    writer.into_inner()
}

/// Write every (path, bytes), each fsynced, concurrently (they are independent; the
/// commit names them only once all are durable).
pub(crate) async fn put_all(
    w: &Warehouse,
    writes: Vec<(String, Vec<u8>)>,
) -> Result<(), ScoreError> {
    let mut puts = futures::stream::iter(writes)
        .map(|(path, bytes)| async move { w.put_durable(&path, bytes.into()).await })
        .buffer_unordered(16);
    while let Some(r) = puts.next().await {
        r?;
    }
    Ok(())
}

/// Run `sql` (which has a text `dt` column, rows ordered by it) and encode its rows as
/// `table`'s Parquet files, one per `dt` (content-addressed names). Returns the files and
/// their bytes, not yet written.
pub(crate) async fn render(
    ctx: &SessionContext,
    table: ScoreTable,
    sql: &str,
    props: &WriterProperties,
) -> Result<(Vec<FileAdd>, Vec<(String, Vec<u8>)>), ScoreError> {
    let (files, writes, _) = render_keeping(ctx, table, sql, props, false, None).await?;
    Ok((files, writes))
}

/// [`render`], also returning the rows (with `dt`) when `keep`; with `only`, the files
/// of those dates only.
pub(crate) async fn render_keeping(
    ctx: &SessionContext,
    table: ScoreTable,
    sql: &str,
    props: &WriterProperties,
    keep: bool,
    only: Option<&std::collections::BTreeSet<String>>,
) -> Result<(Vec<FileAdd>, Vec<(String, Vec<u8>)>, Option<RecordBatch>), ScoreError> {
    let mut files = Vec::new();
    let mut writes = Vec::new();
    let (name, dir) = (table.name(), table.dir());
    let df = ctx.sql(sql).await.map_err(q(name))?;
    let full_schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(q(name))?;
    let all =
        arrow::compute::concat_batches(&full_schema, &batches).map_err(|e| q(name)(e.into()))?;
    let dt_idx = full_schema.index_of("dt").map_err(|e| q(name)(e.into()))?;
    // The declared schema (checked: same columns and types as the plan's, so a
    // scoring change that alters a table fails here and in the tests).
    let file_schema = table.schema();
    let cols: Vec<usize> = (0..full_schema.fields().len())
        .filter(|i| *i != dt_idx)
        .collect();
    let dts = arrow::compute::cast(all.column(dt_idx), &arrow::datatypes::DataType::Utf8)
        .map_err(|e| q(name)(e.into()))?;
    let dts = dts.as_string::<i32>();
    let mut parts: Vec<(String, RecordBatch)> = Vec::new();
    let mut start = 0;
    while start < all.num_rows() {
        let dt = dts.value(start).to_string();
        let mut end = start + 1;
        while end < all.num_rows() && dts.value(end) == dt {
            end += 1;
        }
        if only.is_some_and(|o| !o.contains(&dt)) {
            start = end;
            continue;
        }
        let part = all
            .slice(start, end - start)
            .project(&cols)
            .map_err(|e| q(name)(e.into()))?;
        let part = RecordBatch::try_new(file_schema.clone(), part.columns().to_vec())
            .map_err(|e| q(name)(e.into()))?;
        parts.push((dt, part));
        start = end;
    }
    // Encoding (Parquet + zstd) is CPU work: half of the dates on each of two
    // blocking threads, results kept in date order.
    let half = parts.len().div_ceil(2).max(1);
    let mut halves = Vec::new();
    while !parts.is_empty() {
        let rest = parts.split_off(half.min(parts.len()));
        halves.push(std::mem::replace(&mut parts, rest));
    }
    let encoded = futures::future::join_all(halves.into_iter().map(|half| {
        let (schema, props) = (file_schema.clone(), props.clone());
        tokio::task::spawn_blocking(move || {
            half.into_iter()
                .map(|(dt, part)| {
                    let rows = part.num_rows() as u64;
                    encode_file(&part, &schema, &props).map(|bytes| (dt, rows, bytes))
                })
                .collect::<Result<Vec<_>, _>>()
        })
    }))
    .await;
    for half in encoded {
        let half = half
            .map_err(|e| q(name)(DataFusionError::External(Box::new(e))))?
            .map_err(|source| ScoreError::Encode {
                table: name.into(),
                source,
            })?;
        for (dt, rows, bytes) in half {
            let hash = hex::encode(&Sha256::digest(&bytes)[..12]);
            let path = format!("{dir}/dt={dt}/part-{hash}.parquet");
            files.push(FileAdd {
                table: name.into(),
                dt,
                path: path.clone(),
                rows,
                bytes: bytes.len() as u64,
                ingested_us: None,
                stats: crmdq_warehouse::delta::stats_of_file(&bytes),
                rewrite: false,
            });
            writes.push((path, bytes));
        }
    }
    Ok((files, writes, keep.then_some(all)))
}
