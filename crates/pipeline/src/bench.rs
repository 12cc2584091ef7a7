//! Measurements behind `crmdq bench` (used by `benches/bench.py`): the kernels one core
//! runs per record (decode, the check families, Parquet encoding), and Kafka end to end
//! against librdkafka's in-process mock cluster next to a bare consumer draining the same
//! topic. Nothing here is used by the pipeline itself.

use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use crmdq_check::Checker;
use crmdq_config::Pipeline;
use crmdq_decode::{Decoded, Decoder, SourcePos};
use crmdq_schema::RecordType;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use crate::PipelineError;
use crate::ingest::BATCH_ROWS;

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
            q.checks.disabled.insert(name);
        }
    }
    q.user_checks.clear();
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
) -> Result<Vec<(RecordType, RecordBatch)>, PipelineError> {
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
) -> Result<Vec<Kernel>, PipelineError> {
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
        let mut w = ArrowWriter::try_new(Vec::new(), first.schema(), Some(props.clone()))
            .map_err(|e| PipelineError::Other(e.to_string()))?;
        for b in mine {
            w.write(b)
                .map_err(|e| PipelineError::Other(e.to_string()))?;
        }
        encoded += w
            .into_inner()
            .map_err(|e| PipelineError::Other(e.to_string()))?
            .len();
    }
    time("encode (Arrow → Parquet zstd)", t.elapsed().as_secs_f64());
    tracing::debug!(encoded, "parquet bytes");
    Ok(out)
}

/// Kafka end to end on the in-process mock cluster: `lines` produced to a topic of at
/// least 3 partitions (one per 3 MiB: the mock keeps 5 MiB per partition), then drained
/// by a bare consumer (the ceiling), then consumed, checked and committed by
/// `run --until-caught-up` into a fresh warehouse under `dir`.
pub async fn kafka_mock(
    p: &Pipeline,
    lines: &[String],
    dir: &std::path::Path,
    clock: &dyn crate::Clock,
) -> Result<Vec<Kernel>, PipelineError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let cluster = rdkafka::mocking::MockCluster::new(1)
        .map_err(|e| PipelineError::Other(format!("mock cluster: {e}")))?;
    let brokers = cluster.bootstrap_servers();
    let partitions = crate::demo::produce_to_mock(&cluster, "crm.records", lines, 3)?;
    tracing::info!(partitions, "produced to the mock cluster");
    let n = lines.len() as u64;
    let bytes: u64 = lines.iter().map(|l| l.len() as u64).sum();

    let bare: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "bench-bare")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| PipelineError::Other(e.to_string()))?;
    bare.subscribe(&["crm.records"])
        .map_err(|e| PipelineError::Other(e.to_string()))?;
    let t = Instant::now();
    let mut got = 0u64;
    let mut sum = 0usize;
    let mut bare_first = None;
    while got < n {
        if let Some(Ok(m)) = bare.poll(Duration::from_millis(100)) {
            bare_first.get_or_insert_with(Instant::now);
            sum += rdkafka::Message::payload(&m).map_or(0, <[u8]>::len);
            got += 1;
        }
        if t.elapsed() > Duration::from_mins(10) {
            return Err(PipelineError::Other("bare consumer: timed out".into()));
        }
    }
    let bare_secs = t.elapsed().as_secs_f64();
    let bare_drain = bare_first.map_or(bare_secs, |f| f.elapsed().as_secs_f64());
    drop(bare);
    tracing::debug!(sum, "drained bytes");

    let mut p = p.clone();
    p.warehouse.path = dir.join("kafka-wh");
    if let Some(k) = p.kafka.as_mut() {
        k.topics = [("crm.records".to_string(), None)].into();
        k.group_id = "bench-crmdq".into();
    }
    let w = crmdq_warehouse::Warehouse::open(&p.warehouse.path)?;
    let opts = crate::run::RunOptions {
        brokers: Some(brokers),
        until_caught_up: true,
        telemetry: None,
    };
    let t = Instant::now();
    let s = crate::run::run(
        &p,
        &w,
        &opts,
        clock,
        tokio_util::sync::CancellationToken::new(),
    )
    .await?;
    let run_secs = t.elapsed().as_secs_f64();
    // From the first message to the end of the last commit (not the consumer's close).
    let run_drain = match (s.first_message_at, s.ended_at) {
        (Some(f), Some(e)) => e.duration_since(f).as_secs_f64(),
        _ => run_secs,
    };
    if s.messages != n {
        return Err(PipelineError::Other(format!(
            "run consumed {} of {n} messages",
            s.messages
        )));
    }
    Ok(vec![
        Kernel {
            name: "kafka (mock cluster): bare librdkafka consumer".into(),
            records: n,
            bytes,
            seconds: bare_secs,
        },
        Kernel {
            name: "kafka (mock cluster): crmdq run, checked and committed".into(),
            records: n,
            bytes,
            seconds: run_secs,
        },
        // The same two from their first message to the end: without the group join
        // (~3 s on the mock cluster, whatever the size).
        Kernel {
            name: "kafka (mock cluster): bare consumer, from its first message".into(),
            records: n,
            bytes,
            seconds: bare_drain,
        },
        Kernel {
            name: "kafka (mock cluster): crmdq run, from its first message to the last commit"
                .into(),
            records: n,
            bytes,
            seconds: run_drain,
        },
    ])
}
