//! A backfill spread over 2,000 business dates at once does not open 2,000 writers: small
//! partitions stay Arrow batches (one file each at the commit), larger ones move into
//! Parquet writers under the writer cap, files roll to make room, and a commit happens
//! whenever the buffered bytes reach the limit; every record still lands in its own date
//! partition.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use crmdq_config::Pipeline;
use crmdq_pipeline::{FixedClock, ingest};
use crmdq_warehouse::{RollReason, Warehouse};

const DATES: i64 = 2_000;
const RECORDS: i64 = 12_000;

/// A warehouse in a temporary folder with the fixture pipeline and the given limits.
fn setup(
    max_open_writers: usize,
    max_buffered_bytes: u64,
) -> (tempfile::TempDir, Pipeline, Warehouse) {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut p = Pipeline::load(&fixtures.join("pipeline.yaml")).unwrap();
    p.warehouse.path = dir.path().join("wh");
    p.warehouse.max_open_writers = max_open_writers;
    p.warehouse.max_buffered_bytes = max_buffered_bytes;
    let w = Warehouse::open(&p.warehouse.path).unwrap();
    (dir, p, w)
}

/// `records` customer records interleaved over `dates` consecutive dates from 2020-06-01,
/// in file order d0, d1, …, so that every chunk touches many dates; ingested.
async fn ingest_history(
    dir: &Path,
    p: &Pipeline,
    w: &Warehouse,
    dates: i64,
    records: i64,
) -> ingest::IngestSummary {
    let start = jiff::civil::date(2020, 6, 1);
    let mut text = String::new();
    for i in 0..records {
        let d = start + jiff::Span::new().days(i % dates);
        let _ = writeln!(
            text,
            "{{\"record_type\":\"customer\",\"record_id\":\"c{i}\",\"owner_id\":\"amy\",\"entered_by\":\"amy\",\"event_time\":\"{d} 09:30:00\",\"entered_at\":\"{d} 12:00:00\",\"phone\":\"13812345678\",\"occupation\":\"teacher\",\"age\":30,\"note\":\"{}{i}\"}}",
            "backfill ".repeat(20)
        );
    }
    let input = dir.join("history.ndjson");
    std::fs::write(&input, text).unwrap();
    let clock = Arc::new(FixedClock("2026-11-28T12:00:00Z".parse().unwrap()));
    ingest::ingest(p, w, &[input], clock, &mut |_, _, _| {})
        .await
        .unwrap()
}

/// (rows, distinct business dates, distinct record ids) of the customer table.
async fn counts(w: &Warehouse) -> (i64, i64, i64) {
    let ctx = crmdq_catalog::open(w, None).await.unwrap();
    let b = ctx
        .sql("SELECT COUNT(*) AS n, COUNT(DISTINCT dq_business_date) AS d, COUNT(DISTINCT record_id) AS r FROM customer")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let col = |i: usize| b[0].column(i).as_primitive::<Int64Type>().value(0);
    (col(0), col(1), col(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_dates_at_once_are_one_file_each() {
    // The whole history fits the batch budget: every date is one file, no writer opens.
    let (dir, p, w) = setup(32, 256 << 20);
    let s = ingest_history(dir.path(), &p, &w, DATES, RECORDS).await;
    assert_eq!(s.records, RECORDS as u64);
    assert_eq!(s.sink.peak_open_writers, 0, "{:?}", s.sink);
    assert_eq!(s.sink.files_rolled.get(&RollReason::WriterCap), None);
    assert_eq!(
        w.snapshot().await.unwrap().files_of("customer").len(),
        DATES as usize
    );
    assert_eq!(counts(&w).await, (RECORDS, DATES, RECORDS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_dates_over_the_batch_budget_keep_the_writer_cap() {
    // 1 MiB of buffers (a quarter for batches) cannot hold the history (~10 MB): the
    // largest partitions move into Parquet writers, never more than 32 at once.
    let (dir, p, w) = setup(32, 1 << 20);
    let s = ingest_history(dir.path(), &p, &w, DATES, RECORDS).await;
    assert_eq!(s.records, RECORDS as u64);
    assert_eq!(
        s.sink.peak_open_writers, 32,
        "the cap was reached, never passed: {:?}",
        s.sink
    );
    assert!(
        s.sink
            .files_rolled
            .get(&RollReason::WriterCap)
            .copied()
            .unwrap_or(0)
            > 0,
        "{:?}",
        s.sink
    );
    assert_eq!(counts(&w).await, (RECORDS, DATES, RECORDS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffers_commit_before_more_is_read() {
    const LIMIT: u64 = 256 << 10;
    let (dir, p, w) = setup(32, LIMIT);
    let s = ingest_history(dir.path(), &p, &w, 5, 40_000).await;
    assert_eq!(s.records, 40_000);
    assert!(
        s.commits >= 3,
        "a commit each time the buffers filled: {s:?}"
    );
    // The limit is checked after each decoded chunk (16,384 rows, here ~4.5 MB of JSON
    // and ~3.6 MB of unencoded column buffers), so the peak is the limit plus one chunk.
    assert!(
        s.sink.peak_buffered_bytes < LIMIT + (6 << 20),
        "{:?}",
        s.sink
    );
    assert_eq!(counts(&w).await, (40_000, 5, 40_000));
}
