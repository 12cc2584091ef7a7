//! One step of the flow shared by file ingest and Kafka: decoded batches are checked,
//! split by partition date, and handed to the sink.

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch, UInt32Array};
use arrow::datatypes::{Date32Type, TimestampMicrosecondType};
use crmdq_check::Checker;
use crmdq_decode::Decoded;
use crmdq_telemetry::CommitCounts;
use crmdq_warehouse::Sink;
use jiff::tz::TimeZone;

use crate::PipelineError;

/// Counters of one processing step.
#[derive(Debug, Clone, Default)]
pub struct StepCounts {
    pub records: u64,
    pub dead_letters: u64,
    pub by_reason: BTreeMap<String, u64>,
    /// Per type and per rule, for the metrics (counted once the step is committed).
    pub detail: CommitCounts,
    /// The step's dead letters as written (for the optional dead-letter topic).
    pub dead_letter_batch: Option<RecordBatch>,
}

/// What a checked batch of `rt` adds to the metrics.
fn count_checked(rt: &str, checked: &RecordBatch, c: &mut CommitCounts) {
    let n = checked.num_rows() as u64;
    *c.records.entry(rt.to_string()).or_default() += n;
    let falses = |name: &str| -> u64 {
        checked.column_by_name(name).map_or(0, |a| {
            let b = a.as_boolean();
            (b.len() - b.true_count()) as u64
        })
    };
    let incomplete = falses("dq_complete");
    if incomplete > 0 {
        *c.incomplete.entry(rt.to_string()).or_default() += incomplete;
    }
    let late = falses("dq_on_time");
    if late > 0 {
        *c.late.entry(rt.to_string()).or_default() += late;
    }
    if let Some(failed) = checked.column_by_name("dq_failed_checks") {
        let list = failed.as_list::<i32>();
        for name in list.values().as_string::<i32>().iter().flatten() {
            *c.check_failures
                .entry((rt.to_string(), name.to_string()))
                .or_default() += 1;
        }
    }
    if let Some(et) = checked.column_by_name("event_time") {
        let newest = arrow::compute::max(et.as_primitive::<TimestampMicrosecondType>());
        c.max_event_time_us = c.max_event_time_us.max(newest);
    }
}

fn date_str(days: i32) -> String {
    let d = jiff::civil::date(1970, 1, 1) + jiff::Span::new().days(i64::from(days));
    d.to_string()
}

/// Group row indices by a partition key.
fn split_by<K: Ord>(keys: impl Iterator<Item = K>) -> BTreeMap<K, Vec<u32>> {
    let mut m: BTreeMap<K, Vec<u32>> = BTreeMap::new();
    for (i, k) in keys.enumerate() {
        m.entry(k).or_default().push(i as u32);
    }
    m
}

async fn write_split(
    sink: &mut Sink,
    table: &str,
    dir: &str,
    batch: &RecordBatch,
    groups: BTreeMap<String, Vec<u32>>,
) -> Result<(), PipelineError> {
    if groups.len() == 1 {
        let (dt, _) = groups.into_iter().next().expect("one group");
        sink.write(table, dir, &dt, batch).await?;
        return Ok(());
    }
    for (dt, idx) in groups {
        let idx = UInt32Array::from(idx);
        let part = arrow::compute::take_record_batch(batch, &idx)
            .map_err(|e| PipelineError::Other(e.to_string()))?;
        sink.write(table, dir, &dt, &part).await?;
    }
    Ok(())
}

pub async fn process(
    decoded: Decoded,
    checker: &Checker,
    sink: &mut Sink,
    tz: &TimeZone,
) -> Result<StepCounts, PipelineError> {
    let mut counts = StepCounts::default();
    for (rt, batch) in decoded.records {
        let checked = checker.check(rt, &batch)?;
        counts.records += checked.num_rows() as u64;
        count_checked(rt.as_str(), &checked, &mut counts.detail);
        let dates = checked
            .column_by_name("dq_business_date")
            .expect("verdict column")
            .as_primitive::<Date32Type>();
        let mut memo: BTreeMap<i32, String> = BTreeMap::new();
        let groups = split_by(
            dates
                .values()
                .iter()
                .map(|d| memo.entry(*d).or_insert_with(|| date_str(*d)).clone()),
        );
        let dir = format!("records/{rt}");
        write_split(sink, rt.as_str(), &dir, &checked, groups).await?;
    }
    if let Some(dl) = decoded.dead_letters {
        counts.dead_letters += dl.num_rows() as u64;
        for r in dl
            .column_by_name("reason")
            .expect("reason")
            .as_string::<i32>()
            .iter()
            .flatten()
        {
            *counts.by_reason.entry(r.to_string()).or_default() += 1;
            *counts.detail.dead_letters.entry(r.to_string()).or_default() += 1;
        }
        // Dead letters are partitioned by ingestion date in the pipeline's time zone.
        let ing = dl
            .column_by_name(crmdq_schema::INGESTED_AT)
            .expect("ingested_at")
            .as_primitive::<TimestampMicrosecondType>();
        let groups = split_by(ing.values().iter().map(|us| {
            jiff::Timestamp::from_microsecond(*us).map_or_else(
                |_| "1970-01-01".into(),
                |t| t.to_zoned(tz.clone()).date().to_string(),
            )
        }));
        write_split(sink, "dead_letters", "dead_letters", &dl, groups).await?;
        counts.dead_letter_batch = Some(dl);
    }
    Ok(counts)
}
