//! Backfill from files: NDJSON or CSV (optionally gzipped) → checked Parquet.
//!
//! Each input is identified by its canonical path; the commit log records the last line
//! committed for it, so re-ingesting a file adds nothing and an interrupted ingest resumes
//! after the last committed line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crmdq_check::Checker;
use crmdq_config::Pipeline;
use crmdq_decode::{Decoder, SourcePos, csv_input};
use crmdq_source::file::{self, InputFormat, Lines};
use crmdq_warehouse::{Sink, SinkLimits, SourcePosition, Warehouse};

use crate::process::{StepCounts, process};
use crate::{Clock, PipelineError, writer_id};

/// Rows decoded before a batch is checked and written.
pub const BATCH_ROWS: usize = 16 * 1024;

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

pub fn sink_limits(p: &Pipeline) -> SinkLimits {
    let w = &p.warehouse;
    SinkLimits {
        max_file_bytes: w.max_file_bytes,
        max_file_rows: w.max_file_rows,
        max_file_age: w.max_file_age,
        max_open_writers: w.max_open_writers,
        max_buffered_bytes: w.max_buffered_bytes,
        zstd_level: w.zstd_level,
        row_group_rows: w.row_group_rows,
    }
}

/// Progress callback: bytes of input consumed so far in the current file, and its size.
pub type Progress<'a> = &'a mut dyn FnMut(&Path, u64, u64);

struct FileRun<'a> {
    p: &'a Pipeline,
    checker: &'a Checker,
    sink: &'a mut Sink,
    clock: &'a dyn Clock,
    decoder: Decoder,
    writer: String,
    summary: &'a mut IngestSummary,
    key: String,
    last_line: i64,
}

impl FileRun<'_> {
    async fn flush(&mut self, force_commit: bool) -> Result<(), PipelineError> {
        if !self.decoder.is_empty() {
            let decoded = self.decoder.finish();
            let c = process(decoded, self.checker, self.sink, &self.p.time_zone).await?;
            self.summary.add(c);
        }
        if force_commit || self.sink.needs_commit() {
            let pos = vec![SourcePosition::File {
                path: self.key.clone(),
                through_line: self.last_line,
            }];
            if self
                .sink
                .commit(pos, self.clock.now().to_string(), self.writer.clone())
                .await?
                .is_some()
            {
                self.summary.commits += 1;
            }
        }
        Ok(())
    }
}

/// Ingest `inputs` into the warehouse.
pub async fn ingest(
    p: &Pipeline,
    w: &Warehouse,
    inputs: &[PathBuf],
    clock: &dyn Clock,
    progress: Progress<'_>,
) -> Result<IngestSummary, PipelineError> {
    let checker = Checker::compile(p)?;
    let mut sink = Sink::new(w.clone(), sink_limits(p), writer_id(clock));
    let mut summary = IngestSummary::default();
    let writer = format!("crmdq ingest (pid {})", std::process::id());
    for input in inputs {
        let format = file::detect_format(input)?;
        let canonical = input
            .canonicalize()
            .map_err(|source| crmdq_source::SourceError::Io {
                path: input.display().to_string(),
                source,
            })?;
        let key = canonical.to_string_lossy().to_string();
        let done_through = w.snapshot().await?.files.get(&key).copied().unwrap_or(0);
        let total = file::size(input);
        let path_arc: Arc<str> = Arc::from(key.as_str());
        let implied = p.csv.record_type;
        let mut run = FileRun {
            p,
            checker: &checker,
            sink: &mut sink,
            clock,
            decoder: Decoder::new(p),
            writer: writer.clone(),
            summary: &mut summary,
            key: key.clone(),
            last_line: done_through,
        };
        let reader = file::open(input)?;
        let mut lines_seen = 0u64;
        match format {
            InputFormat::Ndjson => {
                let mut lines = Lines::new(reader, &key);
                let mut bytes_read = 0u64;
                while let Some((line, bytes)) = lines.next_line()? {
                    bytes_read += bytes.len() as u64 + 1;
                    if line <= done_through {
                        run.summary.skipped_lines += 1;
                        continue;
                    }
                    let pos = SourcePos::File {
                        path: path_arc.clone(),
                        line,
                    };
                    run.decoder.push_json(Some(bytes), &pos, None, clock.now());
                    run.last_line = line;
                    lines_seen += 1;
                    if run.decoder.len() >= BATCH_ROWS {
                        run.flush(false).await?;
                        progress(input, bytes_read.min(total), total);
                    }
                }
            }
            InputFormat::Csv => {
                for row in csv_input::rows(reader, p.csv.delimiter, p.csv.has_header) {
                    let (line, pos) = match &row {
                        csv_input::CsvRow::Object { line, .. }
                        | csv_input::CsvRow::Broken { line, .. } => (
                            *line,
                            SourcePos::File {
                                path: path_arc.clone(),
                                line: *line,
                            },
                        ),
                    };
                    if line <= done_through {
                        run.summary.skipped_lines += 1;
                        continue;
                    }
                    match row {
                        csv_input::CsvRow::Object { obj, raw, .. } => {
                            run.decoder
                                .push_object(obj, &raw, &pos, implied, clock.now());
                        }
                        csv_input::CsvRow::Broken {
                            raw,
                            reason,
                            detail,
                            ..
                        } => run
                            .decoder
                            .push_dead(&raw, reason, &detail, &pos, clock.now()),
                    }
                    run.last_line = line;
                    lines_seen += 1;
                    if run.decoder.len() >= BATCH_ROWS {
                        run.flush(false).await?;
                    }
                }
            }
        }
        if lines_seen > 0 {
            run.flush(true).await?;
        }
        progress(input, total, total);
        summary.files += 1;
        tracing::info!(file = %key, lines = lines_seen, skipped = summary.skipped_lines, "ingested");
    }
    Ok(summary)
}
