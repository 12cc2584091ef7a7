//! The alert tables in the warehouse: `alerts` (one row per event, append-only) and
//! `alert_deliveries` (one row per later delivery attempt or expiry of an event that was
//! not delivered when recorded). Both are written as Parquet and committed in one
//! commit-log entry, which also carries how far the business dates have been evaluated
//! ([`crmdq_warehouse::LogEntry::alerts_through`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array, ListBuilder, RecordBatch,
    StringArray, StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::DataType;
use crmdq_schema::{alert_deliveries_schema, alerts_schema};
use crmdq_warehouse::{FileAdd, LogEntry, LogKind, Warehouse};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::evaluate::{float, int, text};
use crate::{AlertError, AlertEvent};

/// How a pending event ended: delivered by a later evaluation, or expired.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub attempted_at_us: i64,
    pub seq: i64,
    pub event_id: String,
    /// The event's business date (the partition).
    pub dt: String,
    pub rule: String,
    pub subject: String,
    pub receiver: Option<String>,
    /// `delivered` or `expired`.
    pub outcome: &'static str,
    pub error: Option<String>,
}

fn ts_array(schema: &arrow::datatypes::Schema, v: Vec<i64>) -> ArrayRef {
    let tz = match schema.field(0).data_type() {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    Arc::new(TimestampMicrosecondArray::from(v).with_timezone_opt(tz))
}

fn strings<'a>(v: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(v.collect::<StringArray>())
}

/// The events as a batch of the `alerts` table.
pub fn events_batch(events: &[AlertEvent]) -> Result<RecordBatch, AlertError> {
    let schema = alerts_schema();
    let mut examples = ListBuilder::new(StringBuilder::new());
    for e in events {
        for x in &e.example_records {
            examples.values().append_value(x);
        }
        examples.append(true);
    }
    let examples: ArrayRef = Arc::new(examples.finish());
    let examples = arrow::compute::cast(&examples, schema.field(19).data_type())
        .map_err(|e| AlertError::Encode(e.to_string()))?;
    let s = |f: &dyn Fn(&AlertEvent) -> Option<&str>| strings(events.iter().map(f));
    let cols: Vec<ArrayRef> = vec![
        ts_array(&schema, events.iter().map(|e| e.evaluated_at_us).collect()),
        Arc::new(events.iter().map(|e| e.seq).collect::<Int64Array>()),
        s(&|e| Some(&e.rule)),
        s(&|e| Some(&e.scope)),
        s(&|e| Some(&e.subject)),
        s(&|e| Some(&e.severity)),
        s(&|e| Some(&e.state)),
        s(&|e| Some(&e.metric)),
        Arc::new(events.iter().map(|e| e.value).collect::<Float64Array>()),
        Arc::new(events.iter().map(|e| e.baseline).collect::<Float64Array>()),
        Arc::new(events.iter().map(|e| e.threshold).collect::<Float64Array>()),
        Arc::new(events.iter().map(|e| e.entries).collect::<Int64Array>()),
        s(&|e| e.team_id.as_deref()),
        s(&|e| e.manager_id.as_deref()),
        s(&|e| e.receiver.as_deref()),
        Arc::new(
            events
                .iter()
                .map(|e| Some(e.delivered))
                .collect::<BooleanArray>(),
        ),
        s(&|e| e.delivery_error.as_deref()),
        s(&|e| Some(&e.message)),
        s(&|e| e.top_rules.as_deref()),
        examples,
        s(&|e| Some(&e.event_id)),
        s(&|e| Some(&e.episode)),
        Arc::new(
            events
                .iter()
                .map(|e| Some(e.repeat))
                .collect::<BooleanArray>(),
        ),
        Arc::new(
            events
                .iter()
                .map(|e| Some(e.pending))
                .collect::<BooleanArray>(),
        ),
    ];
    RecordBatch::try_new(schema, cols).map_err(|e| AlertError::Encode(e.to_string()))
}

/// Rows of the `alerts` table (with `dt`) back as events.
pub fn events_from(batches: &[RecordBatch]) -> Vec<AlertEvent> {
    let mut out = Vec::new();
    for b in batches {
        let examples = b
            .column_by_name("example_records")
            .and_then(|c| c.as_list_opt::<i32>().cloned());
        for i in 0..b.num_rows() {
            let t = |name: &str| text(b, name, i).unwrap_or_default();
            let example_records = examples
                .as_ref()
                .filter(|l| l.is_valid(i))
                .map(|l| {
                    let v = l.value(i);
                    let v = v.as_string::<i32>();
                    v.iter().flatten().map(ToString::to_string).collect()
                })
                .unwrap_or_default();
            let evaluated_at_us = int(b, "at", i).unwrap_or(0);
            out.push(AlertEvent {
                evaluated_at: jiff::Timestamp::from_microsecond(evaluated_at_us)
                    .map(|t| t.to_string())
                    .unwrap_or_default(),
                evaluated_at_us,
                seq: int(b, "seq", i).unwrap_or(0),
                dt: t("dt"),
                rule: t("rule"),
                scope: t("scope"),
                subject: t("subject"),
                severity: t("severity"),
                state: t("state"),
                repeat: text(b, "repeat", i).is_some_and(|r| r == "true"),
                metric: t("metric"),
                value: float(b, "value", i),
                baseline: float(b, "baseline", i),
                threshold: float(b, "threshold", i),
                entries: int(b, "entries", i),
                team_id: text(b, "team_id", i),
                manager_id: text(b, "manager_id", i),
                receiver: text(b, "receiver", i),
                delivered: text(b, "delivered", i).is_some_and(|r| r == "true"),
                delivery_error: text(b, "delivery_error", i),
                message: t("message"),
                top_rules: text(b, "top_rules", i),
                example_records,
                event_id: t("event_id"),
                episode: t("episode"),
                pending: text(b, "pending", i).is_some_and(|r| r == "true"),
                basis: String::new(),
            });
        }
    }
    out
}

/// The attempts as a batch of the `alert_deliveries` table.
pub fn attempts_batch(attempts: &[Attempt]) -> Result<RecordBatch, AlertError> {
    let schema = alert_deliveries_schema();
    let s = |f: &dyn Fn(&Attempt) -> Option<&str>| strings(attempts.iter().map(f));
    let cols: Vec<ArrayRef> = vec![
        ts_array(
            &schema,
            attempts.iter().map(|a| a.attempted_at_us).collect(),
        ),
        Arc::new(attempts.iter().map(|a| a.seq).collect::<Int64Array>()),
        s(&|a| Some(&a.event_id)),
        s(&|a| Some(&a.rule)),
        s(&|a| Some(&a.subject)),
        s(&|a| a.receiver.as_deref()),
        s(&|a| Some(a.outcome)),
        s(&|a| a.error.as_deref()),
    ];
    RecordBatch::try_new(schema, cols).map_err(|e| AlertError::Encode(e.to_string()))
}

fn parquet_bytes(batch: &RecordBatch) -> Result<Vec<u8>, AlertError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .build();
    let enc = |e: parquet::errors::ParquetError| AlertError::Encode(e.to_string());
    let mut wr = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).map_err(enc)?;
    wr.write(batch).map_err(enc)?;
    wr.into_inner().map_err(enc)
}

/// What one evaluation writes.
#[derive(Debug, Default)]
pub struct Commit<'a> {
    pub events: &'a [AlertEvent],
    pub attempts: &'a [Attempt],
    /// The latest business date evaluated live, when person and team rules were.
    pub through: Option<String>,
    /// The evaluation's last sequence number (in file names: two evaluations in one
    /// process at one clock instant write different files).
    pub seq: i64,
}

/// Write the events and attempts (one file per table and business date), then one
/// commit-log entry naming them. Nothing to write: no commit (None).
pub async fn record(
    w: &Warehouse,
    c: &Commit<'_>,
    now: &jiff::Timestamp,
) -> Result<Option<u64>, AlertError> {
    if c.events.is_empty() && c.attempts.is_empty() && c.through.is_none() {
        return Ok(None);
    }
    let mut parts: BTreeMap<(&str, &str), RecordBatch> = BTreeMap::new();
    let mut by_dt: BTreeMap<&str, Vec<AlertEvent>> = BTreeMap::new();
    for e in c.events {
        by_dt.entry(e.dt.as_str()).or_default().push(e.clone());
    }
    for (dt, evs) in by_dt {
        parts.insert(("alerts", dt), events_batch(&evs)?);
    }
    let mut by_dt: BTreeMap<&str, Vec<Attempt>> = BTreeMap::new();
    for a in c.attempts {
        by_dt.entry(a.dt.as_str()).or_default().push(a.clone());
    }
    for (dt, attempts) in by_dt {
        parts.insert(("alert_deliveries", dt), attempts_batch(&attempts)?);
    }
    let mut files = Vec::new();
    for ((table, dt), batch) in parts {
        let bytes = parquet_bytes(&batch)?;
        let path = format!(
            "{}/part-{}-{}-{}.parquet",
            crmdq_warehouse::partition_dir(table, dt),
            now.as_microsecond(),
            std::process::id(),
            c.seq
        );
        let size = bytes.len() as u64;
        let stats = crmdq_warehouse::delta::stats_of_file(&bytes);
        w.put_durable(&path, bytes::Bytes::from(bytes)).await?;
        files.push(FileAdd {
            table: table.into(),
            dt: dt.to_string(),
            path,
            rows: batch.num_rows() as u64,
            bytes: size,
            ingested_us: None,
            stats,
            rewrite: false,
        });
    }
    let v = w
        .commit(LogEntry {
            version: 0,
            kind: LogKind::Alerts,
            committed_at: now.to_string(),
            writer: format!("crmdq alerts (pid {})", std::process::id()),
            files,
            sources: Vec::new(),
            replaces_tables: Vec::new(),
            alerts_through: c.through.clone(),
            removes: Vec::new(),
            computed_from: None,
        })
        .await?;
    Ok(Some(v))
}
