//! The review pass, before the daily chunks: the record-level KPIs of every date over the
//! whole warehouse ([`crate::review`] plans it in SQL; this runs it a bucket of record ids
//! at a time, spilling or holding what it computes), and the review tables each chunk
//! reads (`register_review`).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use crmdq_config::Pipeline;
use crmdq_schema::RecordType;
use crmdq_warehouse::{Snapshot, Warehouse};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::StreamExt as _;
use parquet::file::properties::WriterProperties;

use crate::{ScoreError, bucket, dedup, materialized, moves, q, review};

/// The review pass ([`review::plan`]): the record-level KPIs of every date, from the
/// whole warehouse (only the columns they need), a bucket of record ids at a time so that
/// memory follows `bucket_rows` rather than the warehouse.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn review_pass(
    p: &Pipeline,
    w: &Warehouse,
    snap: &Snapshot,
    roster: &RecordBatch,
    absences: &RecordBatch,
    dates: &[String],
    bucket_rows: u64,
    filter: Option<&crate::incremental::Filter>,
) -> Result<review::Review, ScoreError> {
    let ctx = crmdq_catalog::session();
    for rt in RecordType::ALL {
        crate::incremental::register_records(&ctx, w, rt, snap.files_of(rt.as_str()), filter)
            .await?;
    }
    crmdq_catalog::register_roster(&ctx, roster.clone())?;
    let abs = MemTable::try_new(absences.schema(), vec![vec![absences.clone()]])
        .map_err(q("absences"))?;
    ctx.register_table("absences", Arc::new(abs))
        .map_err(q("absences"))?;
    review::register_dates(&ctx, p, dates).map_err(q("working_days"))?;
    let plan = review::plan(p);
    ctx.register_udf(bucket::udf());
    let dir = tempfile::Builder::new()
        .prefix("crmdq-review-")
        .tempdir()
        .map_err(|e| q("review")(DataFusionError::IoError(e)))?;
    let mut spilled: Vec<(String, SchemaRef)> = Vec::new();
    run_views(&ctx, &plan.setup, &["roster_rows", "absent_days"]).await?;
    // Each record type's views read only its versions (and the setup): a type at a time,
    // in as many buckets as its deliveries need; all types at once (both cores busy)
    // when each fits in one bucket.
    let fams: Vec<_> = families(&plan)
        .into_iter()
        .map(|(v, views)| {
            let deliveries: u64 = snap.files_of(v.table).iter().map(|f| f.rows).sum();
            (v, views, deliveries.div_ceil(bucket_rows.max(1)).max(1))
        })
        .collect();
    let buckets = fams.iter().map(|f| f.2).max().unwrap_or(1);
    // One bucket each: small enough that nothing is spilled; the outputs are held and
    // `review_daily` is computed once, below.
    let hold = buckets == 1;
    let outs = if hold {
        futures::future::try_join_all(
            fams.iter()
                .map(|(v, views, n)| run_family(&ctx, &plan, v, views, *n, dir.path(), hold)),
        )
        .await?
    } else {
        let mut outs = Vec::new();
        for (v, views, n) in &fams {
            outs.push(run_family(&ctx, &plan, v, views, *n, dir.path(), hold).await?);
        }
        outs
    };
    let mut spilled_rows = 0;
    for out in outs {
        spilled.extend(out.spilled);
        spilled_rows += out.rows;
        for (name, schema, batches) in out.held {
            let table = MemTable::try_new(schema, vec![batches]).map_err(q(name))?;
            ctx.register_table(name, Arc::new(table)).map_err(q(name))?;
        }
    }
    run_views(&ctx, &plan.finish, &plan.finish_spilled).await?;
    if hold {
        run_views(&ctx, &plan.range, &["review_daily", "checkin_facts"]).await?;
        let daily = ctx
            .table_provider("review_daily")
            .await
            .map_err(q("review_daily"))?;
        let facts = ctx
            .table_provider("checkin_facts")
            .await
            .map_err(q("checkin_facts"))?;
        return Ok(review::Review {
            dir,
            spilled,
            range: plan.range,
            whole: Some((daily, facts)),
            buckets,
        });
    }
    for name in &plan.finish_spilled {
        let (schema, rows) = spill(&ctx, name, dir.path(), 0).await.map_err(q(name))?;
        spilled_rows += rows;
        spilled.push((name.to_string(), schema));
    }
    let mut review = review::Review {
        dir,
        spilled,
        range: plan.range,
        whole: None,
        buckets,
    };
    // Small enough to hold (no more rows than a bucket): computed once for every chunk.
    if spilled_rows <= bucket_rows {
        let ctx = crmdq_catalog::session();
        register_review(&ctx, &review, None).await?;
        let daily = materialized(&ctx, "SELECT * FROM review_daily", None)
            .await
            .map_err(q("review_daily"))?;
        let facts = materialized(&ctx, "SELECT * FROM checkin_facts", None)
            .await
            .map_err(q("checkin_facts"))?;
        review.whole = Some((Arc::new(daily), Arc::new(facts)));
    }
    Ok(review)
}

/// What one record type's views leave: its spilled tables and its held ones.
struct FamilyOut {
    spilled: Vec<(String, SchemaRef)>,
    rows: u64,
    held: Vec<(&'static str, SchemaRef, Vec<RecordBatch>)>,
}

/// One record type's bucket views (`views`, over `v`) in `buckets` buckets, each output
/// spilled to `dir` or held ([`review::Keep`]; every one held with `hold`).
async fn run_family(
    ctx: &SessionContext,
    plan: &review::Plan,
    v: &review::Versions,
    views: &[(String, String)],
    buckets: u64,
    dir: &std::path::Path,
    hold: bool,
) -> Result<FamilyOut, ScoreError> {
    let outputs: Vec<(&'static str, review::Keep)> = plan
        .outputs
        .iter()
        .filter(|(n, _)| views.iter().any(|(name, _)| name == n))
        .copied()
        .collect();
    let names: Vec<&str> = outputs.iter().map(|(n, _)| *n).collect();
    let mut out = FamilyOut {
        spilled: Vec::new(),
        rows: 0,
        held: Vec::new(),
    };
    for k in 0..buckets {
        let started = std::time::Instant::now();
        let filter = if buckets > 1 {
            format!(" WHERE crmdq_bucket(record_id, {buckets}) = {k}")
        } else {
            String::new()
        };
        run_views_reading(ctx, views, &names, std::slice::from_ref(v), &filter).await?;
        for (name, keep) in &outputs {
            match if hold { review::Keep::Hold } else { *keep } {
                review::Keep::Spill => {
                    let (schema, rows) = spill(ctx, name, dir, k).await.map_err(q(name))?;
                    out.rows += rows;
                    if k == 0 {
                        out.spilled.push((name.to_string(), schema));
                    }
                }
                review::Keep::Hold => {
                    let part = ctx
                        .table(*name)
                        .await
                        .map_err(q(name))?
                        .collect()
                        .await
                        .map_err(q(name))?;
                    let schema = ctx.table_provider(*name).await.map_err(q(name))?.schema();
                    match out.held.iter_mut().find(|h| h.0 == *name) {
                        Some(h) => h.2.extend(part),
                        None => out.held.push((name, schema, part)),
                    }
                }
            }
            ctx.deregister_table(*name).map_err(q(name))?;
        }
        tracing::debug!(
            table = v.table,
            bucket = k,
            buckets,
            seconds = started.elapsed().as_secs_f64(),
            "review bucket"
        );
    }
    Ok(out)
}

/// The bucket views of `plan` by the record type whose versions they read (directly,
/// or through an earlier view of the same type), in plan order.
fn families(plan: &review::Plan) -> Vec<(&review::Versions, Vec<(String, String)>)> {
    let reads = |sql: &str, name: &str| {
        sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w == name)
    };
    plan.versions
        .iter()
        .map(|v| {
            let mut names: Vec<&str> = vec![v.name];
            let mut views = Vec::new();
            for (name, sql) in &plan.bucket {
                if names.iter().any(|n| reads(sql, n)) {
                    names.push(name);
                    views.push((name.clone(), sql.clone()));
                }
            }
            (v, views)
        })
        .collect()
}

/// Write the rows of table `name`, sorted by `dt`, to `dir/name/part-k.parquet` (small row
/// groups with statistics, so that a reader of a few dates skips the rest). Returns the
/// table's schema.
async fn spill(
    ctx: &SessionContext,
    name: &str,
    dir: &std::path::Path,
    k: u64,
) -> Result<(SchemaRef, u64), DataFusionError> {
    let df = ctx
        .sql(&format!("SELECT * FROM \"{name}\" ORDER BY dt"))
        .await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder)?;
    let file = std::fs::File::create(folder.join(format!("part-{k:05}.parquet")))?;
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(16 * 1024))
        .build();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(props))?;
    let mut stream = df.execute_stream().await?;
    let mut rows = 0;
    while let Some(b) = stream.next().await {
        let b = b?;
        rows += b.num_rows() as u64;
        writer.write(&b)?;
    }
    writer.close()?;
    Ok((schema, rows))
}

/// Register each spilled table of `r` as `name`, holding the rows `filter` keeps.
pub(super) async fn register_spilled(
    ctx: &SessionContext,
    r: &review::Review,
    filter: &str,
) -> Result<(), ScoreError> {
    use datafusion::datasource::file_format::parquet::ParquetFormat;
    use datafusion::datasource::listing::ListingOptions;
    for (name, schema) in &r.spilled {
        let all = format!("crmdq_spill_{name}");
        let folder = r.dir.path().join(name);
        let options =
            ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
        ctx.register_listing_table(
            all.as_str(),
            format!("{}/", folder.display()),
            options,
            Some(schema.clone()),
            None,
        )
        .await
        .map_err(q(name))?;
        ctx.sql(&format!(
            "CREATE VIEW \"{name}\" AS SELECT * FROM {all} WHERE {filter}"
        ))
        .await
        .map_err(q(name))?;
    }
    Ok(())
}

/// Compute each of `views` once, in order, and hold it as a table of its name
/// (DataFusion inlines views: one read by four others would be computed four times); a
/// table no later view reads is dropped at once, unless it is one of `kept`.
async fn run_views(
    ctx: &SessionContext,
    views: &[(String, String)],
    kept: &[&str],
) -> Result<(), ScoreError> {
    run_views_reading(ctx, views, kept, &[], "").await
}

/// [`run_views`], loading each of `versions` (the rows `filter` keeps) just before the
/// first view that reads it, and dropping it after the last: one record type's versions
/// are held at a time.
async fn run_views_reading(
    ctx: &SessionContext,
    views: &[(String, String)],
    kept: &[&str],
    versions: &[review::Versions],
    filter: &str,
) -> Result<(), ScoreError> {
    let reads = |sql: &str, name: &str| {
        sql.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .any(|w| w == name)
    };
    let mut loaded: Vec<&str> = Vec::new();
    for (i, (name, body)) in views.iter().enumerate() {
        for v in versions {
            if reads(body, v.name) && !loaded.contains(&v.name) {
                let started = std::time::Instant::now();
                let table = self::versions(ctx, v, filter).await.map_err(q(v.name))?;
                tracing::trace!(
                    table = v.name,
                    seconds = started.elapsed().as_secs_f64(),
                    "versions"
                );
                ctx.register_table(v.name, Arc::new(table))
                    .map_err(q(v.name))?;
                loaded.push(v.name);
            }
        }
        let started = std::time::Instant::now();
        let table = if name == "opportunity_moves" {
            native_moves(ctx).await.map_err(q(name))?
        } else if name == "opportunity_days" {
            native_days(ctx).await.map_err(q(name))?
        } else {
            materialized(ctx, body, None).await.map_err(q(name))?
        };
        tracing::trace!(view = %name, seconds = started.elapsed().as_secs_f64(), "review view");
        ctx.register_table(name.as_str(), Arc::new(table))
            .map_err(q(name))?;
        let done = views[..=i]
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(loaded.iter().copied());
        for done in done {
            let later = views[i + 1..].iter().any(|(_, sql)| reads(sql, done));
            if !kept.contains(&done) && !later && ctx.table_exist(done).unwrap_or(false) {
                ctx.deregister_table(done).map_err(q(done))?;
            }
        }
    }
    Ok(())
}

/// `opportunity_days` from the last rows of each record's days ([`moves::last_of_days`],
/// registered as `opportunity_days_last`): the stage normalized in SQL, as the view's.
pub(crate) const DAYS_FROM_LAST: &str = "SELECT record_id, dt, owner_id, customer_id, \
    lower(trim(stage)) AS stage, version FROM opportunity_days_last";

/// `opportunity_days` from `opportunity_versions`, natively ([`moves::last_of_days`]; the
/// view's SQL is its definition).
async fn native_days(ctx: &SessionContext) -> Result<MemTable, DataFusionError> {
    let last = natively(ctx, "opportunity_versions", moves::last_of_days).await?;
    ctx.register_table("opportunity_days_last", Arc::new(last))?;
    let table = materialized(ctx, DAYS_FROM_LAST, None).await;
    ctx.deregister_table("opportunity_days_last")?;
    table
}

/// `opportunity_moves` from `opportunity_days`, natively ([`moves`]; the view's SQL is
/// its definition).
async fn native_moves(ctx: &SessionContext) -> Result<MemTable, DataFusionError> {
    natively(ctx, "opportunity_days", moves::stage_moves).await
}

/// `f` over all rows of table `input`, off the async threads, as a table of two
/// partitions (so that the views reading it run on both cores).
async fn natively(
    ctx: &SessionContext,
    input: &str,
    f: fn(&SchemaRef, &[RecordBatch]) -> Result<RecordBatch, arrow::error::ArrowError>,
) -> Result<MemTable, DataFusionError> {
    let df = ctx.table(input).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    let out = tokio::task::spawn_blocking(move || f(&schema, &batches))
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))??;
    let half = out.num_rows() / 2;
    MemTable::try_new(
        out.schema(),
        vec![
            vec![out.slice(0, half)],
            vec![out.slice(half, out.num_rows() - half)],
        ],
    )
}

/// One record type's versions in the bucket `filter` selects, each once (its first
/// delivery, [`dedup::first_deliveries`]), with the record id, the version and `v.cols`.
async fn versions(
    ctx: &SessionContext,
    v: &review::Versions,
    filter: &str,
) -> Result<MemTable, DataFusionError> {
    let cols: Vec<&str> = dedup::KEY
        .iter()
        .chain(v.cols)
        .chain(dedup::ORDER.iter())
        .copied()
        .collect();
    let sql = format!(
        "SELECT {} FROM \"{}\"{filter}",
        cols.iter()
            .map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", "),
        v.table
    );
    let df = ctx.sql(&sql).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await?;
    let keep: Vec<usize> = (0..dedup::KEY.len() + v.cols.len()).collect();
    let s = schema.clone();
    let kept = tokio::task::spawn_blocking(move || {
        dedup::first_deliveries(&s, batches, &dedup::Pinned::default(), None)
    })
    .await
    .map_err(|e| DataFusionError::External(Box::new(e)))??;
    let schema = Arc::new(schema.project(&keep)?);
    let kept = kept
        .iter()
        .map(|b| b.project(&keep))
        .collect::<Result<Vec<_>, _>>()?;
    // Two partitions, so that the bucket's views run on both cores.
    let mut parts = vec![Vec::new(), Vec::new()];
    for (i, b) in kept.into_iter().enumerate() {
        parts[i % 2].push(b);
    }
    MemTable::try_new(schema, parts)
}

/// Register `review_daily` and `checkin_facts` for the chunk of `dates` (consecutive in
/// the warehouse's date order, so a range; empty: empty tables; None: every date),
/// computed from the review pass's spilled tables, or filtered from the held ones.
/// Every counted check-in (`person_id, dt, minutes`) the review pass found: the period
/// medians' input, kept by the score for the next one.
pub(crate) async fn all_facts(
    r: &review::Review,
) -> Result<(SchemaRef, Vec<RecordBatch>), ScoreError> {
    let ctx = crmdq_catalog::session();
    let from = if let Some((_, facts)) = &r.whole {
        ctx.register_table("checkin_facts", facts.clone())
            .map_err(q("checkin_facts"))?;
        "checkin_facts"
    } else {
        register_spilled(&ctx, r, "TRUE").await?;
        "checkin_rows_part"
    };
    let df = ctx
        .sql(&format!("SELECT person_id, dt, minutes FROM {from}"))
        .await
        .map_err(q("checkin_facts"))?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(q("checkin_facts"))?;
    Ok((schema, batches))
}

pub(crate) async fn register_review(
    ctx: &SessionContext,
    r: &review::Review,
    dates: Option<&[String]>,
) -> Result<(), ScoreError> {
    let range = match dates.map(|d| (d.first(), d.last())) {
        None => "TRUE".to_string(),
        Some((Some(first), Some(last))) => format!(
            "dt BETWEEN '{}' AND '{}'",
            first.replace('\'', "''"),
            last.replace('\'', "''")
        ),
        Some(_) => "FALSE".to_string(),
    };
    if let Some((daily, facts)) = &r.whole {
        for (name, table) in [("review_daily", daily), ("checkin_facts", facts)] {
            let all = format!("crmdq_all_{name}");
            ctx.register_table(all.as_str(), table.clone())
                .map_err(q(name))?;
            ctx.sql(&format!(
                "CREATE VIEW {name} AS SELECT * FROM {all} WHERE {range}"
            ))
            .await
            .map_err(q(name))?;
        }
        return Ok(());
    }
    register_spilled(ctx, r, &range).await?;
    run_views(ctx, &r.range, &["review_daily", "checkin_facts"]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every bucket view belongs to exactly one record type's family (a view reading two
    /// types' versions could not be taken a bucket of one type at a time).
    #[test]
    fn each_bucket_view_reads_one_record_type() {
        let p = Pipeline::from_str_at("{}", std::path::Path::new("t.yaml"), &|_| None).unwrap();
        let plan = review::plan(&p);
        let fams = families(&plan);
        for (name, _) in &plan.bucket {
            let n = fams
                .iter()
                .filter(|(_, views)| views.iter().any(|(v, _)| v == name))
                .count();
            assert_eq!(n, 1, "{name}");
        }
        for (name, _) in &plan.outputs {
            assert!(plan.bucket.iter().any(|(v, _)| v == name), "{name}");
        }
    }
}
