//! Backfill from files: NDJSON or CSV (optionally gzipped) → checked Parquet.
//!
//! Each input is identified by its canonical path; the commit log records the last line
//! committed for it, so re-ingesting a file adds nothing and an interrupted ingest resumes
//! after the last committed line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crmdq_config::{Pipeline, WarehouseConfig};
use crmdq_decode::mapping::Mapper;
use crmdq_decode::{Decoded, Decoder, SourcePos, csv_input};
use crmdq_source::SourceError;
use crmdq_source::file::{self, InputFormat, Lines};
use crmdq_warehouse::{Sink, SinkLimits, SourcePosition, Warehouse};
use tokio::sync::mpsc;

use crate::process::{StepCounts, process};
use crate::{Clock, PipelineError, checker, writer_id};

pub use crmdq_decode::BATCH_ROWS;

/// What an ingest did.
#[derive(Debug, Clone, Default)]
pub struct IngestSummary {
    pub files: usize,
    /// Lines skipped because the log says they were already committed.
    pub skipped_lines: u64,
    pub records: u64,
    pub dead_letters: u64,
    pub commits: u64,
    pub by_reason: std::collections::BTreeMap<String, u64>,
    /// What the sink did: files rolled by reason, peak open writers and buffered bytes.
    pub sink: crmdq_warehouse::SinkStats,
}

impl IngestSummary {
    fn add(&mut self, c: StepCounts) {
        self.records += c.records;
        self.dead_letters += c.dead_letters;
        for (k, v) in c.by_reason {
            *self.by_reason.entry(k).or_default() += v;
        }
    }
}

/// The sink's limits from the `warehouse` section.
pub fn sink_limits(w: &WarehouseConfig) -> SinkLimits {
    SinkLimits {
        max_file_bytes: w.max_file_bytes,
        max_file_rows: w.max_file_rows,
        max_file_age: w.max_file_age,
        max_open_writers: w.max_open_writers,
        max_buffered_bytes: w.max_buffered_bytes,
        zstd_level: w.zstd_level,
        row_group_rows: w.row_group_rows,
        small_file_bytes: w.small_file_bytes,
    }
}

/// Progress callback: bytes of input consumed so far in the current file, and its size.
pub type Progress<'a> = &'a mut dyn FnMut(&Path, u64, u64);

/// A decoded slice of one input file, handed from the reader thread to the writer.
struct Chunk {
    decoded: Decoded,
    /// Last line decoded into this chunk.
    last_line: i64,
    bytes_read: u64,
    lines: u64,
    skipped: u64,
}

/// What the reader thread needs; everything owned, so it can run beside the writer.
struct ReadJob {
    pipeline: Pipeline,
    path: PathBuf,
    key: String,
    format: InputFormat,
    done_through: i64,
    clock: Arc<dyn Clock>,
}

type ChunkSender = mpsc::Sender<Result<Chunk, SourceError>>;

/// Hand the decoded rows over; false if the writer has stopped.
fn send(decoder: &mut Decoder, chunk: &mut Chunk, tx: &ChunkSender) -> bool {
    let empty = Chunk {
        decoded: Decoded::default(),
        last_line: chunk.last_line,
        bytes_read: chunk.bytes_read,
        lines: 0,
        skipped: 0,
    };
    let mut full = std::mem::replace(chunk, empty);
    full.decoded = decoder.finish();
    tx.blocking_send(Ok(full)).is_ok()
}

/// Rows mapped per evaluation of the source mapping.
const MAP_ROWS: usize = 4096;

/// Rows waiting for the source mapping (`source.mapping`, `source.placeholders`).
struct MappedRows {
    mapper: Option<Mapper>,
    rows: Vec<serde_json::Map<String, serde_json::Value>>,
    raws: Vec<Vec<u8>>,
    positions: Vec<SourcePos>,
}

impl MappedRows {
    fn new(p: &Pipeline) -> MappedRows {
        MappedRows {
            mapper: p
                .source
                .mapping
                .is_active()
                .then(|| Mapper::new(&p.source.mapping)),
            rows: Vec::new(),
            raws: Vec::new(),
            positions: Vec::new(),
        }
    }

    fn active(&self) -> bool {
        self.mapper.is_some()
    }

    fn len(&self) -> usize {
        self.rows.len()
    }

    fn push(
        &mut self,
        obj: serde_json::Map<String, serde_json::Value>,
        raw: Vec<u8>,
        pos: SourcePos,
    ) {
        self.rows.push(obj);
        self.raws.push(raw);
        self.positions.push(pos);
    }

    /// Map the waiting rows into the decoder; a row whose mapping fails is a dead letter.
    fn flush(
        &mut self,
        decoder: &mut Decoder,
        implied: Option<crmdq_schema::RecordType>,
        now: jiff::Timestamp,
    ) -> Result<(), SourceError> {
        let Some(mapper) = self.mapper.as_mut() else {
            return Ok(());
        };
        if self.rows.is_empty() {
            return Ok(());
        }
        let lines: Vec<i64> = self
            .positions
            .iter()
            .map(|p| match p {
                SourcePos::File { line, .. } => *line,
                SourcePos::Kafka { offset, .. } => *offset,
            })
            .collect();
        let mapped = mapper
            .map(std::mem::take(&mut self.rows), &lines)
            .map_err(|message| SourceError::Mapping { message })?;
        for ((m, raw), pos) in mapped
            .into_iter()
            .zip(self.raws.drain(..))
            .zip(self.positions.drain(..))
        {
            match m {
                Ok(obj) => decoder.push_object(obj, &raw, &pos, implied, now),
                Err(detail) => decoder.push_dead(
                    &raw,
                    crmdq_schema::DeadLetterReason::MappingFailed,
                    &detail,
                    &pos,
                    now,
                ),
            }
        }
        Ok(())
    }
}

/// Read and decode one file in chunks of [`BATCH_ROWS`], skipping committed lines.
/// Runs on a blocking thread so decoding overlaps checking and Parquet encoding.
fn read_file(job: &ReadJob, tx: &ChunkSender) -> Result<(), SourceError> {
    let p = &job.pipeline;
    let reader = file::open(&job.path)?;
    let path_arc: Arc<str> = Arc::from(job.key.as_str());
    let mut decoder = Decoder::new(p);
    // Ingestion time is read once per chunk: one clock call per record is a hot-path syscall.
    let mut now = job.clock.now();
    let mut chunk = Chunk {
        decoded: Decoded::default(),
        last_line: job.done_through,
        bytes_read: 0,
        lines: 0,
        skipped: 0,
    };
    match job.format {
        InputFormat::Ndjson => {
            let mut mapped = MappedRows::new(p);
            let mut lines = Lines::new(reader, &job.key);
            while let Some((line, bytes)) = lines.next_line()? {
                chunk.bytes_read += bytes.len() as u64 + 1;
                if line <= job.done_through {
                    chunk.skipped += 1;
                    continue;
                }
                let pos = SourcePos::File {
                    path: path_arc.clone(),
                    line,
                };
                let object = if mapped.active() {
                    match serde_json::from_slice::<serde_json::Value>(bytes) {
                        Ok(serde_json::Value::Object(m)) => Some(m),
                        _ => None,
                    }
                } else {
                    None
                };
                match object {
                    Some(obj) => {
                        mapped.push(obj, bytes.to_vec(), pos);
                        if mapped.len() >= MAP_ROWS {
                            mapped.flush(&mut decoder, None, now)?;
                        }
                    }
                    // Not an object (or no mapping): the decoder says what it is.
                    None => decoder.push_json(Some(bytes), &pos, None, now),
                }
                chunk.last_line = line;
                chunk.lines += 1;
                if decoder.len() + mapped.len() >= BATCH_ROWS {
                    mapped.flush(&mut decoder, None, now)?;
                    if !send(&mut decoder, &mut chunk, tx) {
                        return Ok(()); // the writer stopped; its error is reported there
                    }
                    now = job.clock.now();
                }
            }
            mapped.flush(&mut decoder, None, now)?;
        }
        InputFormat::Csv => {
            let mut mapped = MappedRows::new(p);
            let rows = csv_input::rows_with(
                reader,
                p.source.csv.delimiter,
                p.source.csv.quote,
                p.source.csv.has_header,
                mapped.active(),
            );
            for row in rows {
                let line = match &row {
                    csv_input::CsvRow::Object { line, .. }
                    | csv_input::CsvRow::Broken { line, .. } => *line,
                };
                if line <= job.done_through {
                    chunk.skipped += 1;
                    continue;
                }
                let pos = SourcePos::File {
                    path: path_arc.clone(),
                    line,
                };
                match row {
                    csv_input::CsvRow::Object { obj, raw, .. } => {
                        if mapped.active() {
                            mapped.push(obj, raw, pos);
                            if mapped.len() >= MAP_ROWS {
                                mapped.flush(&mut decoder, p.source.csv.record_type, now)?;
                            }
                        } else {
                            decoder.push_object(obj, &raw, &pos, p.source.csv.record_type, now);
                        }
                    }
                    csv_input::CsvRow::Broken {
                        raw,
                        reason,
                        detail,
                        ..
                    } => {
                        decoder.push_dead(&raw, reason, &detail, &pos, now);
                    }
                }
                chunk.last_line = line;
                chunk.lines += 1;
                if decoder.len() + mapped.len() >= BATCH_ROWS {
                    mapped.flush(&mut decoder, p.source.csv.record_type, now)?;
                    if !send(&mut decoder, &mut chunk, tx) {
                        return Ok(());
                    }
                    now = job.clock.now();
                }
            }
            mapped.flush(&mut decoder, p.source.csv.record_type, now)?;
        }
    }
    send(&mut decoder, &mut chunk, tx);
    Ok(())
}

/// Ingest `inputs` into the warehouse.
pub async fn ingest(
    p: &Pipeline,
    w: &Warehouse,
    inputs: &[PathBuf],
    clock: Arc<dyn Clock>,
    progress: Progress<'_>,
) -> Result<IngestSummary, PipelineError> {
    let checker = checker(p).await?;
    let mut sink = Sink::new(
        w.clone(),
        sink_limits(&p.warehouse),
        writer_id(clock.as_ref()),
    );
    let mut summary = IngestSummary::default();
    let writer = format!("crmdq ingest (pid {})", std::process::id());
    for input in inputs {
        let format = match p.source.format {
            Some(crmdq_config::DeclaredFormat::Csv) => InputFormat::Csv,
            Some(crmdq_config::DeclaredFormat::Ndjson) => InputFormat::Ndjson,
            None => file::detect_format(input)?,
        };
        let canonical = input.canonicalize().map_err(|source| SourceError::Io {
            path: input.display().to_string(),
            source,
        })?;
        let key = canonical.to_string_lossy().to_string();
        let done_through = w.snapshot().await?.files.get(&key).copied().unwrap_or(0);
        let total = file::size(input);
        let job = ReadJob {
            pipeline: p.clone(),
            path: input.clone(),
            key: key.clone(),
            format,
            done_through,
            clock: clock.clone(),
        };
        // Two chunks in flight at most: bounded memory, both cores busy.
        let (tx, mut rx) = mpsc::channel(2);
        let reader = tokio::task::spawn_blocking(move || {
            if let Err(e) = read_file(&job, &tx) {
                let _ = tx.blocking_send(Err(e));
            }
        });
        let mut last_line = done_through;
        let mut lines_seen = 0u64;
        while let Some(msg) = rx.recv().await {
            let chunk = msg?;
            summary.skipped_lines += chunk.skipped;
            if chunk.decoded.rows() > 0 {
                let c = process(chunk.decoded, &checker, &mut sink, &p.time_zone).await?;
                summary.add(c);
            }
            last_line = chunk.last_line;
            lines_seen += chunk.lines;
            progress(input, chunk.bytes_read.min(total), total);
            // Commit mid-file only when the buffers are full; positions are exact because
            // chunks arrive in file order.
            if sink.needs_commit() {
                commit(
                    &mut sink,
                    &key,
                    last_line,
                    clock.as_ref(),
                    &writer,
                    &mut summary,
                )
                .await?;
            }
        }
        reader
            .await
            .map_err(|e| PipelineError::Other(format!("reader thread for {key}: {e}")))?;
        if lines_seen > 0 {
            commit(
                &mut sink,
                &key,
                last_line,
                clock.as_ref(),
                &writer,
                &mut summary,
            )
            .await?;
        }
        progress(input, total, total);
        summary.files += 1;
        tracing::info!(file = %key, lines = lines_seen, skipped = summary.skipped_lines, "ingested");
    }
    summary.sink = sink.stats().clone();
    Ok(summary)
}

async fn commit(
    sink: &mut Sink,
    key: &str,
    through_line: i64,
    clock: &dyn Clock,
    writer: &str,
    summary: &mut IngestSummary,
) -> Result<(), PipelineError> {
    let pos = vec![SourcePosition::File {
        path: key.to_string(),
        through_line,
    }];
    if sink
        .commit(pos, clock.now().to_string(), writer.to_string())
        .await?
        .is_some()
    {
        summary.commits += 1;
    }
    Ok(())
}
