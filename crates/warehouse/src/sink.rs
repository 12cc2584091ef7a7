//! The Parquet sink: one open file per (table, partition), rolled by size, rows and age,
//! its rows held as Arrow batches until they outgrow a budget, then streamed into a
//! Parquet writer (capped in number). A closed file is encoded, written and fsynced in the
//! background (a few at a time, so decoding and checking go on meanwhile);
//! [`Sink::commit`] waits until every one is durable, then names them in a log entry
//! together with the source positions. Until then no reader sees them.
//!
//! Why batches first: a Parquet writer costs per column (encoders, and a zstd compressor
//! and decompressor each) more than a small file's data. A stream spread over many dates
//! (a Kafka backlog, a backfill) used to churn through the writer cap, one small file per
//! eviction; now each partition is one file per commit unless it is large. Such a stream
//! also splits each decoded batch into a few dozen rows per partition: they are
//! concatenated into pieces of thousands of rows before a writer encodes them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::{FileAdd, LogEntry, LogKind, SourcePosition, Warehouse, WarehouseError, partition_dir};

/// The smallest and largest `dq_ingested_at` of `batch` (µs), if it has that column and a
/// value in it.
fn ingested_range(batch: &RecordBatch) -> Option<[i64; 2]> {
    use arrow::array::{Array as _, AsArray as _};
    use arrow::datatypes::TimestampMicrosecondType;
    let c = batch.column_by_name("dq_ingested_at")?;
    let c = c.as_primitive_opt::<TimestampMicrosecondType>()?;
    if c.null_count() > 0 {
        return None; // rows without a time: the file must be read
    }
    Some([arrow::compute::min(c)?, arrow::compute::max(c)?])
}

/// What an open file's rows say about their `dq_ingested_at` so far.
#[derive(Debug, Clone, Copy)]
enum Ingested {
    NoRows,
    Range([i64; 2]),
    /// A batch without a range (no such column, or a NULL in it).
    Unknown,
}

impl Ingested {
    /// After a batch whose range is `b`.
    fn add(self, b: Option<[i64; 2]>) -> Ingested {
        match (self, b) {
            (Ingested::NoRows, Some(r)) => Ingested::Range(r),
            (Ingested::Range([a0, a1]), Some([b0, b1])) => {
                Ingested::Range([a0.min(b0), a1.max(b1)])
            }
            _ => Ingested::Unknown,
        }
    }

    fn range(self) -> Option<[i64; 2]> {
        match self {
            Ingested::Range(r) => Some(r),
            _ => None,
        }
    }
}

/// When files are closed and how much may be buffered.
#[derive(Debug, Clone)]
pub struct SinkLimits {
    pub max_file_bytes: u64,
    pub max_file_rows: u64,
    pub max_file_age: Duration,
    pub max_open_writers: usize,
    pub max_buffered_bytes: u64,
    pub zstd_level: i32,
    pub row_group_rows: usize,
    /// A file closed with less than this many bytes of Arrow data is written with
    /// LZ4_RAW instead of zstd and without dictionary encoding (0: always zstd with
    /// dictionaries). zstd's per-column contexts and tables, and interning every value,
    /// cost more than they save on a few hundred rows.
    pub small_file_bytes: u64,
}

impl Default for SinkLimits {
    fn default() -> Self {
        SinkLimits {
            max_file_bytes: 128 << 20,
            max_file_rows: 1_000_000,
            max_file_age: Duration::from_mins(5),
            max_open_writers: 32,
            max_buffered_bytes: 256 << 20,
            zstd_level: 3,
            row_group_rows: 128 * 1024,
            small_file_bytes: 128 << 10,
        }
    }
}

/// Why a file was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RollReason {
    Size,
    Rows,
    Age,
    /// Closed to stay under `max_open_writers`.
    WriterCap,
    /// Closed because a commit was requested.
    Commit,
}

impl RollReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RollReason::Size => "size",
            RollReason::Rows => "rows",
            RollReason::Age => "age",
            RollReason::WriterCap => "writer_cap",
            RollReason::Commit => "commit",
        }
    }
}

/// Kafka positions: (topic, partition) → next offset.
pub type Positions = std::collections::BTreeMap<(String, i32), i64>;

/// Counters of what the sink has done.
#[derive(Debug, Clone, Default)]
pub struct SinkStats {
    pub files_rolled: BTreeMap<RollReason, u64>,
    pub rows_written: u64,
    pub bytes_written: u64,
    pub commits: u64,
    /// Rows and bytes of files named by successful commits.
    pub committed_rows: u64,
    pub committed_bytes: u64,
    /// Most writers open at once, and most bytes buffered in them at once (bounded by
    /// `max_open_writers` and, between commits, `max_buffered_bytes` plus one batch).
    pub peak_open_writers: usize,
    pub peak_buffered_bytes: u64,
}

/// An open file's rows so far.
enum Body {
    /// Arrow batches (their memory size in `bytes`), not yet encoded.
    Batches {
        batches: Vec<RecordBatch>,
        bytes: u64,
    },
    /// A Parquet writer the rows are streamed into (the partition outgrew the batch budget).
    Writer(Box<Streaming>),
}

/// A Parquet writer, and the small batches waiting to be written into it as one.
struct Streaming {
    writer: ArrowWriter<Vec<u8>>,
    waiting: Vec<RecordBatch>,
    waiting_rows: usize,
    waiting_bytes: u64,
}

impl Streaming {
    fn held_bytes(&self) -> u64 {
        (self.writer.bytes_written() + self.writer.in_progress_size()) as u64 + self.waiting_bytes
    }

    fn push(&mut self, batch: &RecordBatch) -> Result<(), parquet::errors::ParquetError> {
        self.waiting.push(batch.clone());
        self.waiting_rows += batch.num_rows();
        self.waiting_bytes += batch.get_array_memory_size() as u64;
        if self.waiting_rows >= COALESCE_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), parquet::errors::ParquetError> {
        write_coalesced(&mut self.writer, &std::mem::take(&mut self.waiting))?;
        (self.waiting_rows, self.waiting_bytes) = (0, 0);
        Ok(())
    }

    fn into_inner(mut self) -> Result<Vec<u8>, parquet::errors::ParquetError> {
        self.flush()?;
        self.writer.into_inner()
    }
}

/// Rows a Parquet writer is given at once, at least (when there are that many): a stream
/// spread over many dates splits each decoded batch into dozens of rows per partition,
/// and encoding costs per call and column (levels, page checks, statistics) about as much
/// as it costs per row on pieces that small.
const COALESCE_ROWS: usize = 8192;

/// Write `batches` into `w`, consecutive small ones concatenated into pieces of up to
/// [`COALESCE_ROWS`] rows (one piece at a time: bounded extra memory).
fn write_coalesced(
    w: &mut ArrowWriter<Vec<u8>>,
    batches: &[RecordBatch],
) -> Result<(), parquet::errors::ParquetError> {
    let mut i = 0;
    while i < batches.len() {
        let (mut j, mut rows) = (i + 1, batches[i].num_rows());
        while j < batches.len() && rows + batches[j].num_rows() <= COALESCE_ROWS {
            rows += batches[j].num_rows();
            j += 1;
        }
        if j - i == 1 {
            w.write(&batches[i])?;
        } else {
            let piece = arrow::compute::concat_batches(&batches[i].schema(), &batches[i..j])
                .map_err(|e| parquet::errors::ParquetError::General(e.to_string()))?;
            w.write(&piece)?;
        }
        i = j;
    }
    Ok(())
}

struct OpenFile {
    table: String,
    table_dir: String,
    dt: String,
    body: Body,
    rows: u64,
    opened: Instant,
    /// The range of `dq_ingested_at` written so far ([`FileAdd::ingested_us`]).
    ingested: Ingested,
}

impl OpenFile {
    /// Bytes held: encoded (and buffered in the writer), or the batches' memory.
    fn held_bytes(&self) -> u64 {
        match &self.body {
            Body::Batches { bytes, .. } => *bytes,
            Body::Writer(w) => w.held_bytes(),
        }
    }

    fn is_writer(&self) -> bool {
        matches!(self.body, Body::Writer(_))
    }
}

/// The part of `max_buffered_bytes` that open files may hold as Arrow batches; past it,
/// the largest are moved into Parquet writers.
fn batch_budget(limits: &SinkLimits) -> u64 {
    limits.max_buffered_bytes / 4
}

/// A Parquet writer holding `batches` (an open file's: at least one, all of one schema).
fn writer_of(
    batches: &[RecordBatch],
    props: WriterProperties,
    table: &str,
) -> Result<ArrowWriter<Vec<u8>>, WarehouseError> {
    let enc = |source| WarehouseError::Encode {
        table: table.into(),
        source,
    };
    let schema = batches
        .first()
        .map(RecordBatch::schema)
        .ok_or_else(|| enc(parquet::errors::ParquetError::General("no batch".into())))?;
    let mut w = ArrowWriter::try_new(Vec::new(), schema, Some(props)).map_err(enc)?;
    write_coalesced(&mut w, batches).map_err(enc)?;
    Ok(w)
}

/// Closed files being written and fsynced at once, at most (and at most
/// [`MAX_IN_FLIGHT_BYTES`] of them): fsync waits on the disk, so a few in parallel let the
/// file system group them into one journal commit while encoding goes on.
const MAX_IN_FLIGHT: usize = 16;
const MAX_IN_FLIGHT_BYTES: u64 = 64 << 20;

/// A closed file made durable in the background.
struct Written {
    /// Index in `Sink::pending`.
    idx: usize,
    estimate: u64,
    size: u64,
    stats: Option<String>,
}

/// Buffers batches into Parquet files and commits them.
pub struct Sink {
    warehouse: Warehouse,
    limits: SinkLimits,
    props: WriterProperties,
    /// `props` with LZ4_RAW, for files under `small_file_bytes`.
    small_props: WriterProperties,
    open: BTreeMap<(String, String), OpenFile>,
    /// Open files streaming into a Parquet writer (at most `max_open_writers`), and the
    /// bytes the others hold as batches.
    writers: usize,
    /// Bytes the writers hold (encoded, buffered, waiting), kept as they change.
    writer_bytes: u64,
    batch_bytes: u64,
    /// Closed, not yet committed (durable once `writing` has drained).
    pending: Vec<FileAdd>,
    /// Background encodes and writes of closed files.
    writing: tokio::task::JoinSet<Result<Written, WarehouseError>>,
    writing_bytes: u64,
    /// A background write failed: what is pending is not all durable, so nothing may be
    /// committed until the caller [`Sink::discard`]s and re-reads.
    failed: Option<String>,
    file_prefix: String,
    seq: u64,
    stats: SinkStats,
}

impl Sink {
    /// `file_prefix` makes file names unique per writer process (e.g. start time + pid).
    pub fn new(warehouse: Warehouse, limits: SinkLimits, file_prefix: String) -> Sink {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(
                ZstdLevel::try_new(limits.zstd_level).unwrap_or_default(),
            ))
            .set_max_row_group_row_count(Some(limits.row_group_rows))
            .set_created_by("crmdq".to_string())
            .build();
        // Small files also skip dictionary encoding: on a few hundred rows interning every
        // value cost ~10% of an ingest's CPU and the files came out larger, not smaller.
        let small_props = props
            .clone()
            .into_builder()
            .set_compression(Compression::LZ4_RAW)
            .set_dictionary_enabled(false)
            .build();
        Sink {
            warehouse,
            limits,
            props,
            small_props,
            open: BTreeMap::new(),
            writers: 0,
            writer_bytes: 0,
            batch_bytes: 0,
            pending: Vec::new(),
            writing: tokio::task::JoinSet::new(),
            writing_bytes: 0,
            failed: None,
            file_prefix,
            seq: 0,
            stats: SinkStats::default(),
        }
    }

    pub fn stats(&self) -> &SinkStats {
        &self.stats
    }

    /// Parquet writers open (at most `max_open_writers`).
    pub fn open_writers(&self) -> usize {
        self.writers
    }

    /// Files open (partitions with uncommitted rows not yet closed): writers and batches.
    pub fn open_files(&self) -> usize {
        self.open.len()
    }

    /// Bytes held in memory by open files and closed-but-uncommitted files' accounting.
    pub fn buffered_bytes(&self) -> u64 {
        self.writer_bytes + self.batch_bytes + self.writing_bytes
    }

    /// Whether the caller should commit now (buffered bytes over the limit).
    pub fn needs_commit(&self) -> bool {
        self.buffered_bytes() >= self.limits.max_buffered_bytes
    }

    /// Append `batch` (all rows of partition `dt`) to `table`, stored under `table_dir`.
    pub async fn write(
        &mut self,
        table: &str,
        table_dir: &str,
        dt: &str,
        batch: &RecordBatch,
    ) -> Result<(), WarehouseError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let key = (table.to_string(), dt.to_string());
        let bytes = batch.get_array_memory_size() as u64;
        let f = self.open.entry(key.clone()).or_insert_with(|| OpenFile {
            table: table.into(),
            table_dir: table_dir.into(),
            dt: dt.into(),
            body: Body::Batches {
                batches: Vec::new(),
                bytes: 0,
            },
            rows: 0,
            opened: Instant::now(),
            ingested: Ingested::NoRows,
        });
        match &mut f.body {
            Body::Batches { batches, bytes: b } => {
                batches.push(batch.clone());
                *b += bytes;
                self.batch_bytes += bytes;
            }
            Body::Writer(w) => {
                let before = w.held_bytes();
                w.push(batch).map_err(|source| WarehouseError::Encode {
                    table: table.into(),
                    source,
                })?;
                self.writer_bytes = self.writer_bytes - before + w.held_bytes();
            }
        }
        f.rows += batch.num_rows() as u64;
        f.ingested = f.ingested.add(ingested_range(batch));
        let reason = if f.held_bytes() >= self.limits.max_file_bytes {
            Some(RollReason::Size)
        } else if f.rows >= self.limits.max_file_rows {
            Some(RollReason::Rows)
        } else {
            None
        };
        let buffered = self.buffered_bytes();
        self.stats.peak_buffered_bytes = self.stats.peak_buffered_bytes.max(buffered);
        if let Some(r) = reason {
            self.close(&key, r).await?;
        }
        self.keep_batch_budget().await
    }

    /// Past the batch budget, move the largest batched files into Parquet writers (down
    /// to half the budget, so that this is not done again on the next batch), closing the
    /// largest writer when all `max_open_writers` are taken.
    async fn keep_batch_budget(&mut self) -> Result<(), WarehouseError> {
        let budget = batch_budget(&self.limits);
        if self.batch_bytes <= budget {
            return Ok(());
        }
        let mut batched: Vec<(u64, (String, String))> = self
            .open
            .iter()
            .filter(|(_, f)| !f.is_writer())
            .map(|(k, f)| (f.held_bytes(), k.clone()))
            .collect();
        batched.sort_unstable_by_key(|b| std::cmp::Reverse(b.0));
        for (_, key) in batched {
            if self.batch_bytes <= budget / 2 {
                break;
            }
            while self.writers >= self.limits.max_open_writers {
                let victim = self
                    .open
                    .iter()
                    .filter(|(_, f)| f.is_writer())
                    .max_by_key(|(_, f)| f.held_bytes())
                    .map(|(k, _)| k.clone())
                    .expect("a writer is open");
                self.close(&victim, RollReason::WriterCap).await?;
            }
            let Some(f) = self.open.get_mut(&key) else {
                continue; // (victims are writers: a batched file is still open)
            };
            let Body::Batches { batches, bytes } = &f.body else {
                continue;
            };
            let (writer, bytes) = (writer_of(batches, self.props.clone(), &f.table)?, *bytes);
            let w = Streaming {
                writer,
                waiting: Vec::new(),
                waiting_rows: 0,
                waiting_bytes: 0,
            };
            self.writer_bytes += w.held_bytes();
            f.body = Body::Writer(Box::new(w));
            self.batch_bytes -= bytes;
            self.writers += 1;
            self.stats.peak_open_writers = self.stats.peak_open_writers.max(self.writers);
        }
        Ok(())
    }

    /// Close files that have been open longer than `max_file_age`.
    pub async fn roll_aged(&mut self) -> Result<(), WarehouseError> {
        let aged: Vec<_> = self
            .open
            .iter()
            .filter(|(_, f)| f.opened.elapsed() >= self.limits.max_file_age)
            .map(|(k, _)| k.clone())
            .collect();
        for k in aged {
            self.close(&k, RollReason::Age).await?;
        }
        Ok(())
    }

    async fn close(
        &mut self,
        key: &(String, String),
        reason: RollReason,
    ) -> Result<(), WarehouseError> {
        let Some(f) = self.open.remove(key) else {
            return Ok(());
        };
        let OpenFile {
            table,
            table_dir,
            dt,
            body,
            rows,
            ingested,
            ..
        } = f;
        self.seq += 1;
        let path = format!(
            "{}/part-{}-{:05}.parquet",
            partition_dir(&table_dir, &dt),
            self.file_prefix,
            self.seq
        );
        // Estimated until encoded; the task reports the real size.
        let estimate = match &body {
            Body::Batches { bytes, .. } => {
                self.batch_bytes -= bytes;
                *bytes
            }
            Body::Writer(w) => {
                self.writers -= 1;
                let held = w.held_bytes();
                self.writer_bytes -= held;
                held
            }
        };
        while !self.writing.is_empty()
            && (self.writing.len() >= MAX_IN_FLIGHT
                || self.writing_bytes + estimate > MAX_IN_FLIGHT_BYTES)
        {
            self.join_one().await?;
        }
        let w = self.warehouse.clone();
        let rel = path.clone();
        let tbl = table.clone();
        let props = match &body {
            Body::Batches { bytes, .. } if *bytes < self.limits.small_file_bytes => {
                self.small_props.clone()
            }
            _ => self.props.clone(),
        };
        let idx = self.pending.len();
        self.writing_bytes += estimate;
        // Encoding the file (for batched files all of it, for writers the last row
        // group's), the write and the fsync run beside the next batches.
        self.writing.spawn(async move {
            let bytes = tokio::task::spawn_blocking(move || match body {
                Body::Batches { batches, .. } => writer_of(&batches, props, &tbl)?
                    .into_inner()
                    .map_err(|source| WarehouseError::Encode { table: tbl, source }),
                Body::Writer(w) => w
                    .into_inner()
                    .map_err(|source| WarehouseError::Encode { table: tbl, source }),
            })
            .await
            .map_err(|e| WarehouseError::write(rel.clone(), e))??;
            let size = bytes.len() as u64;
            // The footer is at hand: the Delta statistics cost no read.
            let stats = crate::delta::stats_of_file(&bytes);
            w.put_durable(&rel, bytes.into()).await?;
            Ok(Written {
                idx,
                estimate,
                size,
                stats,
            })
        });
        *self.stats.files_rolled.entry(reason).or_default() += 1;
        self.stats.rows_written += rows;
        self.pending.push(FileAdd {
            table,
            dt,
            path,
            rows,
            bytes: 0, // set when written
            ingested_us: ingested.range(),
            stats: None, // set when written
            rewrite: false,
        });
        Ok(())
    }

    /// Wait for one background write; its error is the sink's.
    async fn join_one(&mut self) -> Result<(), WarehouseError> {
        match self.writing.join_next().await {
            None => Ok(()),
            Some(Ok(Ok(done))) => {
                self.writing_bytes = self.writing_bytes.saturating_sub(done.estimate);
                self.stats.bytes_written += done.size;
                if let Some(f) = self.pending.get_mut(done.idx) {
                    f.bytes = done.size;
                    f.stats = done.stats;
                }
                Ok(())
            }
            Some(Ok(Err(e))) => {
                self.failed = Some(e.to_string());
                Err(e)
            }
            Some(Err(join)) => {
                self.failed = Some(join.to_string());
                Err(WarehouseError::write("(background file write)", join))
            }
        }
    }

    /// Wait until every closed file is durable (the first failure is returned).
    async fn drain_writes(&mut self) -> Result<(), WarehouseError> {
        while !self.writing.is_empty() {
            self.join_one().await?;
        }
        self.writing_bytes = 0;
        Ok(())
    }

    /// Close every open file, then write one log entry naming all closed files and the
    /// given source positions. Returns the log version (None if there was nothing to commit).
    pub async fn commit(
        &mut self,
        sources: Vec<SourcePosition>,
        committed_at: String,
        writer: String,
    ) -> Result<Option<u64>, WarehouseError> {
        self.commit_with(sources, committed_at, writer, None).await
    }

    /// [`Sink::commit`], fenced: only if the Kafka positions in `expect` are unchanged in
    /// the log (see [`Warehouse::commit_fenced`]). On [`WarehouseError::Fenced`] the
    /// files stay pending; the caller discards them.
    pub async fn commit_fenced(
        &mut self,
        sources: Vec<SourcePosition>,
        committed_at: String,
        writer: String,
        snap: &mut crate::Snapshot,
        expect: &Positions,
    ) -> Result<Option<u64>, WarehouseError> {
        self.commit_with(sources, committed_at, writer, Some((snap, expect)))
            .await
    }

    async fn commit_with(
        &mut self,
        sources: Vec<SourcePosition>,
        committed_at: String,
        writer: String,
        fence: Option<(&mut crate::Snapshot, &Positions)>,
    ) -> Result<Option<u64>, WarehouseError> {
        let keys: Vec<_> = self.open.keys().cloned().collect();
        for k in keys {
            self.close(&k, RollReason::Commit).await?;
        }
        self.drain_writes().await?;
        if let Some(e) = &self.failed {
            return Err(WarehouseError::write(
                "(uncommitted files)",
                format!(
                    "an earlier file write failed ({e}); discard and re-read before committing"
                ),
            ));
        }
        if self.pending.is_empty() && sources.is_empty() {
            return Ok(None);
        }
        let entry = LogEntry {
            version: 0,
            kind: LogKind::Ingest,
            committed_at,
            writer,
            files: std::mem::take(&mut self.pending),
            sources,
            replaces_tables: Vec::new(),
            alerts_through: None,
            removes: Vec::new(),
            computed_from: None,
        };
        let files = entry.files.clone();
        let r = match fence {
            Some((snap, expect)) => self.warehouse.commit_fenced(entry, snap, expect).await,
            None => self.warehouse.commit(entry).await,
        };
        match r {
            Ok(v) => {
                self.stats.commits += 1;
                self.stats.committed_rows += files.iter().map(|f| f.rows).sum::<u64>();
                self.stats.committed_bytes += files.iter().map(|f| f.bytes).sum::<u64>();
                Ok(Some(v))
            }
            Err(e) => {
                // Keep the files pending so a retried commit still names them.
                self.pending = files;
                Err(e)
            }
        }
    }

    /// Drop everything buffered and pending (e.g. on partition revocation): the data will
    /// be read again from the last committed position. Pending files become orphans that
    /// no reader sees.
    pub fn discard(&mut self) {
        self.open.clear();
        self.writers = 0;
        self.writer_bytes = 0;
        self.batch_bytes = 0;
        self.pending.clear();
        // Writes under way finish as orphans (or are cut short); no log entry names them.
        self.writing.abort_all();
        self.writing.detach_all();
        self.writing_bytes = 0;
        self.failed = None;
    }
}
