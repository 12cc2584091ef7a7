//! crmdq-score: the warehouse becomes per-person, per-team and per-rule daily scores.
//!
//! Scoring is DataFusion SQL ([`sql`]) over exactly the committed record files (the log's
//! file list), deduplicated to the first delivery of each (record_type, record_id,
//! version), joined with the roster at each business date. The results replace the score
//! tables in one `score` log entry. Invariant: the same warehouse and roster give
//! byte-identical score files (sorted output, content-addressed file names).

mod bucket;
pub mod dedup;
mod files;
pub mod incremental;
mod index;
mod moves;
mod passes;

use dedup::resolve_again;
use files::{put_all, render_keeping};
use passes::{all_facts, register_review, review_pass, score_periods};
pub mod period;
pub mod review;
pub mod sql;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use crmdq_catalog::CatalogError;
use crmdq_catalog::views::{type_entries_view, type_entry_columns};
use crmdq_config::Pipeline;
use crmdq_schema::{RecordType, ScoreTable};
use crmdq_warehouse::{FileAdd, LogEntry, LogKind, Snapshot, Warehouse, WarehouseError};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use futures::StreamExt as _;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("scoring query `{view}` failed: {source}")]
    Query {
        view: String,
        #[source]
        source: Box<DataFusionError>,
    },
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error("encoding score table {table}: {source}")]
    Encode {
        table: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
}

pub(crate) fn q(view: &str) -> impl Fn(DataFusionError) -> ScoreError + '_ {
    move |e| ScoreError::Query {
        view: view.to_string(),
        source: Box::new(e),
    }
}

/// Views scoring reads. With `materialize`, each is computed once and held as an
/// in-memory table (DataFusion inlines views, so a view read by two others — e.g.
/// `ticket_kpis` by `people_days` and `person_base` — would be computed twice), except
/// `all_deliveries` (not read by scoring), `entries` (a plain union of the materialized
/// `<type>_entries`, which [`materialize_entries`] must have registered) and
/// `entries_team` (as large as `entries`, read once); without, everything stays a view
/// (for planning schemas only).
async fn create_views(ctx: &SessionContext, materialize: bool) -> Result<(), ScoreError> {
    for (name, body) in sql::views() {
        let per_type = RecordType::ALL
            .into_iter()
            .any(|rt| type_entries_view(rt) == name);
        if materialize && per_type {
            continue; // registered by materialize_entries
        }
        if materialize && !matches!(name.as_str(), "all_deliveries" | "entries" | "entries_team") {
            let started = std::time::Instant::now();
            let table = materialized(ctx, &body, None).await.map_err(q(&name))?;
            tracing::debug!(view = %name, seconds = started.elapsed().as_secs_f64(), "materialized");
            ctx.register_table(name.as_str(), Arc::new(table))
                .map_err(q(&name))?;
        } else {
            ctx.sql(&format!("CREATE VIEW {name} AS {body}"))
                .await
                .map_err(q(&name))?;
        }
    }
    Ok(())
}

/// Register `<type>_entries` for every record type, computed natively (see `dedup`),
/// two types at a time: each is a scan then a single-threaded deduplication, so one
/// type's scan overlaps another's deduplication (all six at once: 10% faster, 80% more
/// memory). `pinned` (by position in [`RecordType::ALL`]) is as
/// [`dedup::first_deliveries`] takes it; with `track`, each type's [`dedup::Seen`] keeps
/// the versions kept (a score of several chunks); returns each type's [`dedup::Seen`].
async fn materialize_entries(
    ctx: &SessionContext,
    pinned: &[Arc<dedup::Pinned>],
    track: bool,
    index: bool,
) -> Result<Vec<(RecordType, dedup::Seen)>, ScoreError> {
    use futures::TryStreamExt as _;
    let tables: Vec<(RecordType, MemTable, dedup::Seen)> =
        futures::stream::iter(RecordType::ALL.into_iter().enumerate().map(|(i, rt)| {
            let name = type_entries_view(rt);
            let dedup = Dedup {
                pinned: pinned.get(i).cloned().unwrap_or_default(),
                seen: dedup::Seen {
                    salt: i as u64,
                    track,
                    index,
                    ..dedup::Seen::default()
                },
            };
            async move {
                let started = std::time::Instant::now();
                // The view's definition, computed in one pass (see `dedup`).
                let all = format!("SELECT {} FROM \"{rt}\"", type_entry_columns(rt));
                let mut dedup = Some(dedup);
                let table = materialized(ctx, &all, Some(&mut dedup))
                    .await
                    .map_err(q(&name))?;
                tracing::debug!(view = %name, seconds = started.elapsed().as_secs_f64(), "materialized");
                let seen = dedup.map(|d| d.seen).unwrap_or_default();
                Ok::<_, ScoreError>((rt, table, seen))
            }
        }))
        .buffer_unordered(2)
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for (rt, table, seen) in tables {
        let name = type_entries_view(rt);
        ctx.register_table(name.as_str(), Arc::new(table))
            .map_err(q(&name))?;
        out.push((rt, seen));
    }
    Ok(out)
}

/// What deduplicating one record type's deliveries takes and gives back.
struct Dedup {
    pinned: Arc<dedup::Pinned>,
    seen: dedup::Seen,
}

/// The result of `sql` as an in-memory table that keeps the query's partitions (so
/// readers scan it on every core) in batches of the session's batch size (the record
/// tables' files are small, and operators pay per batch). With `first_deliveries`, only
/// the first delivery of each record version is kept ([`dedup::first_deliveries`]); it
/// is handed back with its [`dedup::Seen`] filled in.
pub(crate) async fn materialized(
    ctx: &SessionContext,
    sql: &str,
    first_deliveries: Option<&mut Option<Dedup>>,
) -> Result<MemTable, DataFusionError> {
    let df = ctx.sql(sql).await?;
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let target = ctx.state().config().batch_size();
    let started = std::time::Instant::now();
    let mut parts = df.collect_partitioned().await?;
    tracing::trace!(seconds = started.elapsed().as_secs_f64(), "collected");
    if let Some(slot) = first_deliveries
        && let Some(mut d) = slot.take()
    {
        // Duplicates may sit in different partitions: one pass over all of them, then
        // back into as many partitions.
        let n = parts.len().max(1);
        let all: Vec<RecordBatch> = parts.into_iter().flatten().collect();
        let s = schema.clone();
        let (kept, d) = tokio::task::spawn_blocking(move || {
            if d.seen.index {
                let t = u8::try_from(d.seen.salt).unwrap_or(u8::MAX);
                d.seen.pairs = index::pairs_of(t, &all);
            }
            let kept = dedup::first_deliveries(&s, all, &d.pinned, Some(&mut d.seen));
            (kept, d)
        })
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        *slot = Some(d);
        parts = vec![Vec::new(); n];
        for (i, b) in kept?.into_iter().enumerate() {
            parts[i % n].push(b);
        }
        tracing::trace!(seconds = started.elapsed().as_secs_f64(), "deduplicated");
    }
    let mut partitions = Vec::new();
    for part in parts {
        let mut co = arrow::compute::BatchCoalescer::new(schema.clone(), target);
        let mut out = Vec::new();
        for b in part {
            co.push_batch(b)?;
            while let Some(b) = co.next_completed_batch() {
                out.push(b);
            }
        }
        co.finish_buffered_batch()?;
        while let Some(b) = co.next_completed_batch() {
            out.push(b);
        }
        partitions.push(out);
    }
    MemTable::try_new(schema, partitions)
}

/// The steps materialized before a table's query ([`materialize_steps`]): the
/// `person_period` query's ([`period::person_period_steps`]), none for the others.
pub(crate) fn table_steps(table: ScoreTable, p: &Pipeline) -> Vec<(&'static str, String)> {
    match table {
        ScoreTable::PersonPeriod => period::person_period_steps(p),
        _ => Vec::new(),
    }
}

/// Run each step and register its rows as an in-memory table of its name (replacing one
/// of that name), in order.
pub(crate) async fn materialize_steps(
    ctx: &SessionContext,
    steps: &[(&'static str, String)],
) -> Result<(), ScoreError> {
    for (name, sql) in steps {
        let started = std::time::Instant::now();
        let table = materialized(ctx, sql, None).await.map_err(q(name))?;
        tracing::debug!(step = %name, seconds = started.elapsed().as_secs_f64(), "materialized");
        ctx.deregister_table(*name).map_err(q(name))?;
        ctx.register_table(*name, Arc::new(table))
            .map_err(q(name))?;
    }
    Ok(())
}

pub(crate) fn table_sql(table: ScoreTable, p: &Pipeline) -> String {
    match table {
        ScoreTable::PersonDaily => sql::person_daily(p),
        ScoreTable::TeamDaily => sql::team_daily(p),
        ScoreTable::RuleDaily => sql::rule_daily(),
        ScoreTable::PersonPeriod => period::person_period(p),
        ScoreTable::TeamPeriod => period::team_period(p),
    }
}

/// What a scoring run produced.
#[derive(Debug, Clone, Default)]
pub struct ScoreSummary {
    pub version: u64,
    pub rows: BTreeMap<String, u64>,
    pub dates: usize,
    pub files: Vec<FileAdd>,
    /// The entries of the latest scored date (`entries` on that date) and the date, for
    /// a reader in the same process (the alert evaluation that follows a score) that
    /// would otherwise deduplicate the warehouse again.
    pub entries: Option<ScoredEntries>,
    /// How many chunks of dates were scored, and how many of them twice (see
    /// [`ScoreOptions`]).
    pub chunks: usize,
    pub rescored_chunks: usize,
    /// How many buckets of record ids the review pass took (see [`ScoreOptions`]).
    pub review_buckets: u64,
    /// Whether only what changed since the last score was computed
    /// ([`incremental`]), and how many business dates were computed.
    pub incremental: bool,
    pub computed_dates: usize,
    /// Why the score was not incremental.
    pub full_because: Option<String>,
}

/// Entries a scoring run computed for one business date.
#[derive(Debug, Clone)]
pub struct ScoredEntries {
    pub dt: String,
    pub table: Arc<dyn datafusion::catalog::TableProvider>,
}

/// How `score` works through the warehouse.
#[derive(Debug, Clone)]
pub struct ScoreOptions {
    /// Deliveries scored at once: consecutive business dates are taken together up to
    /// this many deliveries (a date with more is a chunk of its own). Memory follows the
    /// largest chunk rather than the warehouse. Every score is per business date, so
    /// chunks change no number (tested: the files are byte-identical).
    pub chunk_rows: u64,
    /// The date whose entries [`ScoreSummary::entries`] keeps (None: the latest scored).
    pub entries_of: Option<String>,
    /// The review pass takes the records a bucket of record ids at a time, with about
    /// this many deliveries of the largest record type per bucket (memory follows the
    /// bucket; the numbers do not depend on it, tested: the files are byte-identical).
    pub bucket_rows: u64,
    /// Score the warehouse as it was at this state (time travel, see
    /// [`Warehouse::snapshot_as_of`]) instead of as it is now.
    pub as_of: Option<Snapshot>,
    /// Write and commit the score tables into this warehouse instead of the scored one
    /// (with `as_of`: a replay that leaves the warehouse's own scores alone).
    pub out: Option<Warehouse>,
    /// Compute every date and period, even if the last score recorded what it was
    /// computed from ([`incremental`]). The result is the same; only the time differs.
    pub full: bool,
    /// An incremental score that would read more than this share of the record tables'
    /// deliveries is a full one instead (it is then about as cheap, and leaves a compact
    /// record index).
    pub full_above: f64,
}

/// [`ScoreOptions::bucket_rows`] by default.
pub const DEFAULT_BUCKET_ROWS: u64 = 600_000;

/// [`ScoreOptions::chunk_rows`] by default.
pub const DEFAULT_CHUNK_ROWS: u64 = 400_000;

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            chunk_rows: DEFAULT_CHUNK_ROWS,
            entries_of: None,
            bucket_rows: DEFAULT_BUCKET_ROWS,
            as_of: None,
            out: None,
            full: false,
            full_above: 0.5,
        }
    }
}

/// The record tables' business dates in order, grouped into chunks of at most
/// `chunk_rows` deliveries (a date with more is a chunk of its own).
fn date_chunks(rows: &BTreeMap<&str, u64>, chunk_rows: u64) -> Vec<Vec<String>> {
    let mut chunks = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut n = 0;
    for (&dt, &r) in rows {
        if !current.is_empty() && n + r > chunk_rows {
            chunks.push(std::mem::take(&mut current));
            n = 0;
        }
        current.push(dt.to_string());
        n += r;
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

/// The record tables' deliveries on each business date.
fn rows_per_date(snap: &Snapshot) -> BTreeMap<&str, u64> {
    let mut rows: BTreeMap<&str, u64> = BTreeMap::new();
    for rt in RecordType::ALL {
        for f in snap.files_of(rt.as_str()) {
            *rows.entry(f.dt.as_str()).or_default() += f.rows;
        }
    }
    rows
}

/// (Re)compute the score tables from the committed warehouse and commit them.
pub async fn score(
    p: &Pipeline,
    w: &Warehouse,
    roster_path: Option<&Path>,
    committed_at: String,
) -> Result<ScoreSummary, ScoreError> {
    score_with(p, w, roster_path, committed_at, &ScoreOptions::default()).await
}

/// How score files are encoded. They are small (one per table and date: a few hundred
/// rows), and zstd sets up a compressor for every column chunk written and a decompressor
/// for every one read — each setup asks the CPU for its features (`cpuid`, which a virtual
/// machine traps: ~20 µs a context here, ~9% of a 1M full score's CPU) — so they are
/// LZ4_RAW (12–14% more bytes than zstd on person_daily and person_period, less on the
/// team tables), with dictionaries. `warehouse.small_file_bytes: 0` (always zstd) makes
/// them zstd at `warehouse.zstd_level` too.
pub(crate) fn score_file_props(p: &Pipeline) -> WriterProperties {
    let compression = if p.warehouse.small_file_bytes == 0 {
        Compression::ZSTD(ZstdLevel::try_new(p.warehouse.zstd_level).unwrap_or_default())
    } else {
        Compression::LZ4_RAW
    };
    WriterProperties::builder()
        .set_compression(compression)
        .set_created_by("crmdq".to_string())
        .build()
}

/// [`score`], working through the warehouse as `opts` says.
///
/// The dates are scored a chunk at a time ([`ScoreOptions`]). A record version's entry is
/// its first delivery anywhere in the warehouse, and its deliveries may sit on dates in
/// different chunks (a producer that re-sent a version with another business date). So
/// each chunk also notes a fingerprint of every version it kept (on disk,
/// [`dedup::KeyRuns`]); a version two chunks saw is looked up exactly once all chunks are
/// done, and the chunks holding its deliveries are scored again knowing which delivery is
/// the entry.
pub async fn score_with(
    p: &Pipeline,
    w: &Warehouse,
    roster_path: Option<&Path>,
    committed_at: String,
    opts: &ScoreOptions,
) -> Result<ScoreSummary, ScoreError> {
    let snap = match &opts.as_of {
        Some(s) => s.clone(),
        None => w.snapshot().await?,
    };
    let out = opts.out.as_ref().unwrap_or(w);
    let roster = crmdq_catalog::roster::load_for_pipeline(p, roster_path).await?;
    let props = score_file_props(p);
    let all_rows = rows_per_date(&snap);
    let all_dates: Vec<String> = all_rows.keys().map(|d| (*d).to_string()).collect();
    let absences = crmdq_catalog::roster::load_absences(p.scoring.absences.as_deref(), &roster)?;
    // What this score is computed from is recorded for the next one, unless it is a
    // replay (of a past state, or into another warehouse).
    let records = opts.as_of.is_none() && opts.out.is_none();
    let plans = incremental::Plans::of(p, &props);
    let (roster_rows, absence_rows) = (
        incremental::Rows::of(&roster),
        incremental::Rows::of(&absences),
    );
    let inc = if !records {
        Err("a replay is always a full score".to_string())
    } else if opts.full {
        Err("asked for a full score".to_string())
    } else {
        incremental::plan(
            p,
            w,
            &snap,
            &roster_rows,
            &absence_rows,
            &plans,
            opts.full_above,
        )
        .await?
    };
    let (inc, full_because) = match inc {
        Ok(i) => (Some(i), None),
        Err(why) => (None, Some(why)),
    };
    let scope = inc.as_ref().map_or(&snap, |i| &i.scope);
    let only = inc.as_ref().map(|i| &i.dates);
    let filter = inc.as_ref().map(|i| &i.filter);
    let mut rows = rows_per_date(scope);
    if let Some(f) = filter {
        // A date an incremental score does not read whole gives it only the deliveries of
        // a few records: it does not weigh in the chunking.
        let whole: std::collections::HashSet<&String> = f.whole.values().flatten().collect();
        for (dt, n) in &mut rows {
            if !whole.contains(&(*dt).to_string()) {
                *n = 0;
            }
        }
    }
    let chunks = date_chunks(&rows, opts.chunk_rows.max(1));
    let started = std::time::Instant::now();
    let review = review_pass(
        p,
        w,
        scope,
        &roster,
        &absences,
        &all_dates,
        opts.bucket_rows,
        filter,
    )
    .await?;
    tracing::info!(
        seconds = started.elapsed().as_secs_f64(),
        "review KPIs computed"
    );
    let latest = match (&opts.entries_of, only) {
        (Some(d), _) => Some(d.clone()),
        (None, None) => chunks.last().and_then(|c| c.last()).cloned(),
        (None, Some(only)) => all_dates.last().filter(|d| only.contains(*d)).cloned(),
    };
    let mut outputs: Vec<ChunkOutput> = Vec::with_capacity(chunks.len());
    // The versions each chunk kept, on disk, when another chunk may deliver them too.
    let mut key_runs = if chunks.len() > 1 {
        Some(dedup::KeyRuns::new().map_err(|e| q("chunks")(DataFusionError::IoError(e)))?)
    } else {
        None
    };
    let no_pins: Vec<Arc<dedup::Pinned>> = Vec::new();
    // The record index: a run per chunk of a full score, one run of what an incremental
    // one read.
    let mut runs: Vec<String> = Vec::new();
    let mut inc_pairs: Vec<(u64, i32)> = Vec::new();
    // Each chunk's score files are written (fsync waits on the disk) while the next
    // chunk computes; an early return drops the set, which aborts what is still writing.
    let mut writing = tokio::task::JoinSet::new();
    let mut write = |chunk_out: &mut ChunkOutput| {
        let (to, writes) = (out.clone(), std::mem::take(&mut chunk_out.writes));
        writing.spawn(async move { put_all(&to, writes).await });
    };
    for (i, dates) in chunks.iter().enumerate() {
        let started = std::time::Instant::now();
        let (mut chunk_out, seen) = score_chunk(
            p,
            w,
            scope,
            &roster,
            &review,
            dates,
            &no_pins,
            key_runs.is_some(),
            latest.as_deref(),
            &props,
            only,
            records,
            filter,
        )
        .await?;
        write(&mut chunk_out);
        let mut keys = Vec::new();
        let mut pairs = Vec::new();
        for (rt, s) in seen {
            let idx = RecordType::ALL.iter().position(|r| *r == rt).unwrap_or(0);
            let t = u8::try_from(idx).unwrap_or(u8::MAX);
            keys.extend(s.keys.into_iter().map(|(fp, key)| (fp, t, key)));
            pairs.extend(s.pairs);
        }
        // Sorting and writing a chunk's versions blocks: off the async workers.
        if let Some(mut runs) = key_runs.take() {
            let written = tokio::task::spawn_blocking(move || runs.write(keys).map(|()| runs))
                .await
                .map_err(|e| q("chunks")(DataFusionError::External(Box::new(e))))?
                .map_err(|e| q("chunks")(DataFusionError::IoError(e)))?;
            key_runs = Some(written);
        }
        if records {
            pairs.sort_unstable();
            pairs.dedup();
            if inc.is_some() {
                inc_pairs.extend(pairs);
            } else {
                runs.push(index::write_run(out, &pairs).await?);
            }
        }
        tracing::info!(
            chunk = i,
            dates = dates.len(),
            seconds = started.elapsed().as_secs_f64(),
            "scored"
        );
        outputs.push(chunk_out);
    }
    let again = match key_runs {
        Some(runs) => tokio::task::spawn_blocking(move || runs.again(RecordType::ALL.len()))
            .await
            .map_err(|e| q("chunks")(DataFusionError::External(Box::new(e))))?
            .map_err(|e| q("chunks")(DataFusionError::IoError(e)))?,
        None => Vec::new(),
    };
    let mut summary = ScoreSummary {
        chunks: chunks.len(),
        review_buckets: review.buckets,
        ..ScoreSummary::default()
    };
    if again.iter().any(|a| !a.is_empty()) {
        let (pins, redo) = resolve_again(w, scope, &chunks, &again).await?;
        summary.rescored_chunks = redo.len();
        for i in redo {
            tracing::info!(
                chunk = i,
                "scored again: a record version has deliveries in another chunk"
            );
            let (mut chunk_out, _) = score_chunk(
                p,
                w,
                scope,
                &roster,
                &review,
                &chunks[i],
                &pins,
                false,
                latest.as_deref(),
                &props,
                only,
                false,
                filter,
            )
            .await?;
            write(&mut chunk_out);
            outputs[i] = chunk_out;
        }
    }
    // Table by table, then date by date (the order of the log entry does not depend on
    // the chunks, nor on whether the score was incremental).
    for (ti, t) in ScoreTable::DAILY.iter().enumerate() {
        let mut files: Vec<FileAdd> = outputs.iter().flat_map(|o| o.files[ti].clone()).collect();
        if let Some(only) = only {
            files.extend(
                snap.files_of(t.name())
                    .iter()
                    .filter(|f| !only.contains(&f.dt))
                    .cloned(),
            );
            files.sort_by(|a, b| (&a.dt, &a.path).cmp(&(&b.dt, &b.path)));
        }
        summary.files.extend(files);
    }
    let mut dates = std::collections::BTreeSet::new();
    for f in &summary.files {
        *summary.rows.entry(f.table.clone()).or_default() += f.rows;
        dates.insert(f.dt.clone());
    }
    let mut kept: Vec<(ScoreTable, Vec<RecordBatch>)> = Vec::new();
    if outputs.iter().all(|o| !o.kept.is_empty()) {
        for t in [ScoreTable::PersonDaily, ScoreTable::TeamDaily] {
            let batches = outputs
                .iter_mut()
                .flat_map(|o| {
                    o.kept
                        .iter()
                        .filter(|(k, _)| *k == t)
                        .map(|(_, b)| b.clone())
                })
                .collect();
            kept.push((t, batches));
        }
    }
    for o in &mut outputs {
        o.kept.clear();
    }
    // The counted check-ins of every date: from this review (an incremental score: its
    // dates only, the others from the last score's state).
    let facts = if records {
        let (schema, mut batches) = all_facts(&review).await?;
        if let Some(i) = &inc {
            let only = &i.dates;
            let mut mine = Vec::new();
            for b in batches {
                mine.push(keep_dates(&b, only).map_err(|e| q("checkin_facts")(e.into()))?);
            }
            batches = incremental::read_facts(w, &i.prev.facts_file, only).await?;
            batches.extend(mine);
        }
        Some((schema, batches))
    } else {
        None
    };
    // Held anyway (for the state): the period pass reads them rather than the review's
    // spilled files again for each group.
    let facts_table = match &facts {
        Some((schema, batches)) => Some(incremental::facts_table(schema.clone(), batches.clone())?),
        None => None,
    };
    // The period files kept as they are (an incremental score): those of the period
    // starts not computed again.
    let kept_periods: Vec<FileAdd> = match &inc {
        Some(i) => [ScoreTable::PersonPeriod, ScoreTable::TeamPeriod]
            .iter()
            .flat_map(|t| snap.files_of(t.name()))
            .filter(|f| {
                f.dt.parse::<jiff::civil::Date>()
                    .is_ok_and(|d| !i.starts.contains(&d))
            })
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let started = std::time::Instant::now();
    let mut period_files = score_periods(
        p,
        out,
        &summary.files,
        &kept,
        &review,
        &roster,
        &all_dates,
        opts.chunk_rows,
        &props,
        facts_table.as_ref(),
        inc.as_ref().map(|i| &i.starts),
        &kept_periods,
    )
    .await?;
    if inc.is_some() {
        period_files.extend(kept_periods);
        let order = |t: &str| ScoreTable::ALL.iter().position(|x| x.name() == t);
        period_files.sort_by(|a, b| {
            (order(&a.table), &a.dt, &a.path).cmp(&(order(&b.table), &b.dt, &b.path))
        });
    }
    for f in period_files {
        *summary.rows.entry(f.table.clone()).or_default() += f.rows;
        summary.files.push(f);
    }
    tracing::info!(seconds = started.elapsed().as_secs_f64(), "periods scored");
    summary.dates = dates.len();
    summary.computed_dates = only.map_or(all_dates.len(), std::collections::BTreeSet::len);
    summary.incremental = inc.is_some();
    summary.full_because = full_because;
    summary.entries = outputs.iter_mut().find_map(|o| o.latest_entries.take());
    let computed_from = match facts {
        Some((schema, batches)) => {
            let facts_file = incremental::write_facts(out, batches, schema, &props).await?;
            if let Some(i) = &inc {
                runs = i.prev.index.clone();
                inc_pairs.sort_unstable();
                inc_pairs.dedup();
                if !inc_pairs.is_empty() {
                    runs.push(index::write_run(out, &inc_pairs).await?);
                }
                if runs.len() > index::MAX_RUNS {
                    runs = index::merge(out, &runs)
                        .await
                        .map_err(|e| q("record index")(DataFusionError::Execution(e)))?;
                }
            }
            let cf = incremental::computed_from(
                &snap,
                &plans,
                incremental::write_rows(out, "roster", &roster_rows).await?,
                incremental::write_rows(out, "absences", &absence_rows).await?,
                facts_file,
                runs,
                summary.computed_dates,
                inc.is_none(),
            );
            serde_json::to_value(cf).ok()
        }
        None => None,
    };
    // Every chunk's score files are durable before the log names them.
    while let Some(written) = writing.join_next().await {
        written.map_err(|e| q("score files")(DataFusionError::External(Box::new(e))))??;
    }
    let entry = LogEntry {
        version: 0,
        kind: LogKind::Score,
        committed_at,
        writer: format!("crmdq score (pid {})", std::process::id()),
        files: summary.files.clone(),
        sources: Vec::new(),
        replaces_tables: ScoreTable::ALL
            .iter()
            .map(|t| t.name().to_string())
            .collect(),
        alerts_through: None,
        removes: Vec::new(),
        computed_from,
    };
    summary.version = out.commit(entry).await?;
    Ok(summary)
}

/// The rows of `b` whose `dt` is one of `dates`.
fn keep_dates(
    b: &RecordBatch,
    dates: &std::collections::BTreeSet<String>,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    use arrow::array::{Array as _, AsArray as _};
    let Some(dt) = b.column_by_name("dt") else {
        return Ok(b.clone());
    };
    let dt = arrow::compute::cast(dt, &arrow::datatypes::DataType::Utf8)?;
    let dt = dt.as_string::<i32>();
    let keep: arrow::array::BooleanArray = (0..dt.len())
        .map(|r| Some(dt.is_valid(r) && dates.contains(dt.value(r))))
        .collect();
    arrow::compute::filter_record_batch(b, &keep)
}

/// The score files of one chunk of dates, by daily score table, and their bytes to write.
struct ChunkOutput {
    files: [Vec<FileAdd>; ScoreTable::DAILY.len()],
    latest_entries: Option<ScoredEntries>,
    /// The rows (with `dt`) of the daily tables kept for the period pass.
    kept: Vec<(ScoreTable, RecordBatch)>,
    /// The chunk's score files (path, bytes), not yet written: the caller writes them
    /// while the next chunk is computed.
    writes: Vec<(String, Vec<u8>)>,
}

/// Score the dates `dates`: their files only, with `pinned` deliveries (see
/// [`dedup::Pinned`]). Encodes the score files (the caller writes them); returns them and
/// what the deduplication saw.
#[allow(clippy::too_many_arguments)]
async fn score_chunk(
    p: &Pipeline,
    w: &Warehouse,
    snap: &Snapshot,
    roster: &RecordBatch,
    review: &review::Review,
    dates: &[String],
    pinned: &[Arc<dedup::Pinned>],
    track: bool,
    latest: Option<&str>,
    props: &WriterProperties,
    only: Option<&std::collections::BTreeSet<String>>,
    index: bool,
    filter: Option<&incremental::Filter>,
) -> Result<(ChunkOutput, Vec<(RecordType, dedup::Seen)>), ScoreError> {
    let ctx = crmdq_catalog::session();
    let in_chunk: std::collections::HashSet<&str> = dates.iter().map(String::as_str).collect();
    for rt in RecordType::ALL {
        let files: Vec<FileAdd> = snap
            .files_of(rt.as_str())
            .iter()
            .filter(|f| in_chunk.contains(f.dt.as_str()))
            .cloned()
            .collect();
        incremental::register_records(&ctx, w, rt, &files, filter).await?;
    }
    crmdq_catalog::register_roster(&ctx, roster.clone())?;
    register_review(&ctx, review, Some(dates)).await?;
    let seen = materialize_entries(&ctx, pinned, track, index).await?;
    create_views(&ctx, true).await?;

    let mut out = ChunkOutput {
        files: Default::default(),
        latest_entries: None,
        kept: Vec::new(),
        writes: Vec::new(),
    };
    let mut writes: Vec<(String, Vec<u8>)> = Vec::new();
    // The three tables at once: each query has single-threaded steps (collecting,
    // splitting by date) that the others fill.
    // A small warehouse (its review held whole) also keeps the person and team days for
    // the period pass, which then reads no file.
    let sqls = ScoreTable::DAILY.map(|t| (t, table_sql(t, p)));
    let keep =
        |t: ScoreTable| review.whole.is_some() && only.is_none() && t != ScoreTable::RuleDaily;
    let rendered = futures::future::try_join_all(
        sqls.iter()
            .map(|(t, sql)| render_keeping(&ctx, *t, sql, props, keep(*t), only)),
    )
    .await?;
    for (t, (files, wr, kept)) in rendered.into_iter().enumerate() {
        out.files[t] = files;
        writes.extend(wr);
        if let Some(b) = kept {
            out.kept.push((ScoreTable::DAILY[t], b));
        }
    }
    // One file per table and date, written by the caller.
    out.writes = writes;
    if let Some(dt) = latest.filter(|d| in_chunk.contains(d) && only.is_none_or(|o| o.contains(*d)))
    {
        let sql = format!(
            "SELECT * FROM entries WHERE dt = '{}'",
            dt.replace('\'', "''")
        );
        let table = materialized(&ctx, &sql, None).await.map_err(q("entries"))?;
        out.latest_entries = Some(ScoredEntries {
            dt: dt.to_string(),
            table: Arc::new(table),
        });
    }
    Ok((out, seen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crmdq_schema::record_table_schema;
    use crmdq_warehouse::register_table;

    /// The scoring SQL produces exactly the declared columns and types of each score
    /// table ([`ScoreTable::schema`]), for the default scorecards and weighted ones.
    #[tokio::test]
    async fn the_scoring_plan_has_the_declared_schemas() {
        let dir = tempfile::tempdir().unwrap();
        let w = Warehouse::open(dir.path()).unwrap();
        let ctx = crmdq_catalog::session();
        for rt in RecordType::ALL {
            register_table(&ctx, &w, rt.as_str(), record_table_schema(rt), &[]).unwrap();
        }
        let roster = RecordBatch::new_empty(crmdq_catalog::roster::roster_schema());
        crmdq_catalog::register_roster(&ctx, roster.clone()).unwrap();
        let weighted = "scorecards:\n  sales_rep: {completeness_rate: 2, win_rate: 1}\n  team: {timeliness_rate: 1}\n";
        // The review pass over an empty warehouse gives the review tables (empty).
        let p = Pipeline::from_str_at("{}", Path::new("t.yaml"), &|_| None).unwrap();
        let absences = crmdq_catalog::roster::load_absences(None, &roster).unwrap();
        let snap = w.snapshot().await.unwrap();
        let review = review_pass(
            &p,
            &w,
            &snap,
            &roster,
            &absences,
            &[],
            DEFAULT_BUCKET_ROWS,
            None,
        )
        .await
        .unwrap();
        register_review(&ctx, &review, Some(&[])).await.unwrap();
        create_views(&ctx, false).await.unwrap();
        for t in ScoreTable::DAILY {
            register_table(&ctx, &w, t.name(), t.schema(), &[]).unwrap();
        }
        // The scores of the periods before the computed ones (see `score_periods`).
        for t in [ScoreTable::PersonPeriod, ScoreTable::TeamPeriod] {
            let name = format!("{}_before", t.name());
            register_table(&ctx, &w, &name, t.schema(), &[]).unwrap();
        }
        ctx.register_table("periods", Arc::new(period::periods_table(&[])))
            .unwrap();
        for yaml in ["{}", weighted] {
            let p = Pipeline::from_str_at(yaml, Path::new("t.yaml"), &|_| None).unwrap();
            for t in ScoreTable::ALL {
                materialize_steps(&ctx, &table_steps(t, &p)).await.unwrap();
                let df = ctx.sql(&table_sql(t, &p)).await.unwrap();
                let planned: Vec<(String, arrow::datatypes::DataType)> = df
                    .schema()
                    .as_arrow()
                    .fields()
                    .iter()
                    .filter(|f| f.name() != "dt")
                    .map(|f| (f.name().clone(), f.data_type().clone()))
                    .collect();
                let declared: Vec<(String, arrow::datatypes::DataType)> = t
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| (f.name().clone(), f.data_type().clone()))
                    .collect();
                assert_eq!(planned, declared, "{}", t.name());
            }
        }
    }
}
