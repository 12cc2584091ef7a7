//! The per-record kernels behind `crmdq bench` (used by `benches/bench.py`): decode, each
//! check family and Parquet encoding, timed over a stream on one core. Nothing here is
//! used by the pipeline itself.

use std::time::Instant;

use arrow::array::RecordBatch;
use crmdq_check::Checker;
use crmdq_config::Pipeline;
use crmdq_decode::{BATCH_ROWS, Decoded, Decoder, SourcePos};
use crmdq_schema::RecordType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;

/// A kernel could not run.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error(transparent)]
    Check(#[from] crmdq_check::CheckError),
    #[error("encoding Parquet: {0}")]
    Encode(#[from] parquet::errors::ParquetError),
}

/// One kernel's measurement: `records` processed in `seconds` on one core.
#[derive(Debug, Clone, Serialize)]
pub struct Kernel {
    pub name: String,
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Which built-in checks a family keeps.
type CheckFilter = fn(&str) -> bool;

/// A pipeline whose built-in validity checks are all disabled except those `keep` accepts.
fn only(p: &Pipeline, keep: impl Fn(&str) -> bool) -> Pipeline {
    let mut q = p.clone();
    for (_, name) in crmdq_check::builtin_check_names(p) {
        if !keep(&name) {
            q.checks.builtin.disabled.insert(name);
        }
    }
    q.checks.user.clear();
    q
}

fn decode_all(p: &Pipeline, lines: &[String], now: jiff::Timestamp) -> Vec<Decoded> {
    let mut d = Decoder::new(p);
    let topic: std::sync::Arc<str> = std::sync::Arc::from("bench");
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        let pos = SourcePos::Kafka {
            topic: topic.clone(),
            partition: 0,
            offset: i as i64,
        };
        d.push_json(Some(l.as_bytes()), &pos, None, now);
        if d.len() >= BATCH_ROWS {
            out.push(d.finish());
        }
    }
    out.push(d.finish());
    out
}

fn check_all(
    c: &Checker,
    chunks: &[Decoded],
) -> Result<Vec<(RecordType, RecordBatch)>, KernelError> {
    let mut out = Vec::new();
    for ch in chunks {
        for (rt, b) in &ch.records {
            out.push((*rt, c.check(*rt, b)?));
        }
    }
    Ok(out)
}

/// Time decode, each check family and Parquet encoding over `lines` (single-threaded).
pub fn kernels(
    p: &Pipeline,
    lines: &[String],
    now: jiff::Timestamp,
) -> Result<Vec<Kernel>, KernelError> {
    let n = lines.len() as u64;
    let bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
    let mut out = Vec::new();
    let mut time = |name: &str, seconds: f64| {
        out.push(Kernel {
            name: name.to_string(),
            records: n,
            bytes,
            seconds,
        });
    };

    let t = Instant::now();
    let chunks = decode_all(p, lines, now);
    time("decode (JSON → Arrow)", t.elapsed().as_secs_f64());

    // Each family on its own: the verdict columns (completeness with placeholders, deadline
    // and lateness) are always computed, so "completeness + lateness" is the floor the
    // other families add to.
    let families: [(&str, CheckFilter); 4] = [
        ("check: completeness (placeholders) + lateness", |_| false),
        ("check: + phone validity", |c| c == "phone.format"),
        ("check: + ID number", |c| c.starts_with("id_number.")),
        ("check: all families", |_| true),
    ];
    let mut checked = Vec::new();
    for (name, keep) in &families {
        let c = Checker::compile(&only(p, keep))?;
        let t = Instant::now();
        checked = check_all(&c, &chunks)?;
        time(name, t.elapsed().as_secs_f64());
    }

    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(p.warehouse.zstd_level).unwrap_or_default(),
        ))
        .set_max_row_group_row_count(Some(p.warehouse.row_group_rows))
        .build();
    let t = Instant::now();
    let mut encoded = 0usize;
    for rt in RecordType::ALL {
        let mine: Vec<&RecordBatch> = checked
            .iter()
            .filter(|(r, _)| *r == rt)
            .map(|(_, b)| b)
            .collect();
        let Some(first) = mine.first() else { continue };
        let mut w = ArrowWriter::try_new(Vec::new(), first.schema(), Some(props.clone()))?;
        for b in mine {
            w.write(b)?;
        }
        encoded += w.into_inner()?.len();
    }
    time("encode (Arrow → Parquet zstd)", t.elapsed().as_secs_f64());
    tracing::debug!(encoded, "parquet bytes");
    Ok(out)
}
