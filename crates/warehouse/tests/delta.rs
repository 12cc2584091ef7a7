//! The Delta face of the warehouse, read back with delta-rs as another engine would: every
//! commit published with its `crmdq` transaction version, a replaced table's old files
//! removed, a commit the log has but no Delta log (a crash between the two) published by
//! the next writer, an orphan never published, racing publishers never adding a file
//! twice, and the statistics of a file matching its rows.

#![allow(
    clippy::disallowed_methods,
    reason = "every task this test file spawns is awaited by its test"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Date32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use crmdq_warehouse::delta::{APP_ID, stats_of_file};
use crmdq_warehouse::{LogEntry, LogKind, Sink, SinkLimits, Warehouse, WarehouseError};

fn batch(ids: std::ops::Range<i64>, tag: &str) -> RecordBatch {
    let n = ids.clone().count();
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("tag", DataType::Utf8, true),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(ids)),
            Arc::new(StringArray::from(vec![tag; n])),
        ],
    )
    .unwrap()
}

/// The table's live files (table-relative) and its `crmdq` transaction version, as delta-rs
/// reads them from the Delta log alone.
async fn delta_state(w: &Warehouse, dir: &str) -> (BTreeSet<String>, i64) {
    let t = w.delta_table(dir).await.unwrap().expect("a Delta table");
    let s = t.snapshot().unwrap();
    let files = s.log_data().iter().map(|f| f.path().to_string()).collect();
    let v = s
        .transaction_version(t.log_store().as_ref(), APP_ID)
        .await
        .unwrap()
        .unwrap();
    (files, v)
}

/// The log's live files of `table`, relative to `dir`.
async fn log_state(w: &Warehouse, table: &str, dir: &str) -> BTreeSet<String> {
    let snap = w.snapshot().await.unwrap();
    snap.files_of(table)
        .iter()
        .map(|f| f.path.strip_prefix(&format!("{dir}/")).unwrap().to_string())
        .collect()
}

/// Every add action ever written to a table's Delta log (path → times added).
fn adds_in_history(w: &Warehouse, dir: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(w.abs(&format!("{dir}/_delta_log"))).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            for line in std::fs::read_to_string(&p).unwrap().lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                if let Some(path) = v.pointer("/add/path").and_then(|p| p.as_str()) {
                    *out.entry(path.to_string()).or_default() += 1;
                }
            }
        }
    }
    out
}

async fn ingest(w: &Warehouse, prefix: &str, parts: &[(&str, &str, std::ops::Range<i64>)]) -> u64 {
    let mut sink = Sink::new(w.clone(), SinkLimits::default(), prefix.into());
    for (table, dt, ids) in parts {
        sink.write(
            table,
            &format!("records/{table}"),
            dt,
            &batch(ids.clone(), "x"),
        )
        .await
        .unwrap();
    }
    sink.commit(vec![], "2026-11-28T12:00:00Z".into(), "test".into())
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn every_commit_is_published_with_its_version_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(dir.path()).unwrap();
    let v1 = ingest(
        &w,
        "a",
        &[
            ("customer", "2026-11-26", 0..10),
            ("customer", "2026-11-27", 10..15),
            ("visit", "2026-11-26", 0..3),
        ],
    )
    .await;
    let v2 = ingest(&w, "b", &[("customer", "2026-11-27", 15..20)]).await;
    let (files, at) = delta_state(&w, "records/customer").await;
    assert_eq!(files, log_state(&w, "customer", "records/customer").await);
    assert_eq!(files.len(), 3);
    assert_eq!(at, v2 as i64);
    // `visit` was not touched by the second commit: it shows the first.
    let (visits, at) = delta_state(&w, "records/visit").await;
    assert_eq!(visits.len(), 1);
    assert_eq!(at, v1 as i64);
    // Statistics and partition values are in every add action.
    let t = w.delta_table("records/customer").await.unwrap().unwrap();
    let mut rows = 0;
    for f in t.snapshot().unwrap().log_data().iter() {
        let stats: serde_json::Value = serde_json::from_str(&f.stats().unwrap()).unwrap();
        rows += stats["numRecords"].as_i64().unwrap();
        assert!(
            stats["minValues"]["id"].as_i64().unwrap()
                <= stats["maxValues"]["id"].as_i64().unwrap()
        );
        assert_eq!(stats["nullCount"]["tag"], 0);
        assert!(f.path().starts_with(&format!(
            "dt={}/",
            f.partition_values_map()["dt"].as_deref().unwrap()
        )));
    }
    assert_eq!(rows, 20);
    // The schema has the partition column.
    let schema = t.snapshot().unwrap().schema();
    let names: Vec<_> = schema.fields().map(|f| f.name().clone()).collect();
    assert_eq!(names, ["id", "tag", "dt"]);
    assert_eq!(
        t.snapshot().unwrap().metadata().partition_columns(),
        &["dt".to_string()]
    );
}

#[tokio::test]
async fn a_replaced_table_removes_its_old_files() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(dir.path()).unwrap();
    let score = |ids: std::ops::Range<i64>| {
        let w = w.clone();
        async move {
            let b = batch(ids, "s");
            let mut bytes = Vec::new();
            let mut pw =
                parquet::arrow::ArrowWriter::try_new(&mut bytes, b.schema(), None).unwrap();
            pw.write(&b).unwrap();
            pw.close().unwrap();
            let path = format!(
                "scores/person_daily/dt=2026-11-26/part-{}.parquet",
                b.num_rows()
            );
            w.put_durable(&path, bytes.clone().into()).await.unwrap();
            w.commit(LogEntry {
                version: 0,
                kind: LogKind::Score,
                committed_at: "2026-11-28T12:00:00Z".into(),
                writer: "test".into(),
                files: vec![crmdq_warehouse::FileAdd {
                    table: "person_daily".into(),
                    dt: "2026-11-26".into(),
                    path,
                    rows: b.num_rows() as u64,
                    bytes: bytes.len() as u64,
                    ingested_us: None,
                    stats: stats_of_file(&bytes),
                    rewrite: false,
                }],
                sources: vec![],
                replaces_tables: vec!["person_daily".into()],
                alerts_through: None,
                removes: Vec::new(),
                computed_from: None,
            })
            .await
            .unwrap()
        }
    };
    score(0..4).await;
    let v = score(0..6).await;
    let (files, at) = delta_state(&w, "scores/person_daily").await;
    assert_eq!(
        files,
        BTreeSet::from(["dt=2026-11-26/part-6.parquet".to_string()])
    );
    assert_eq!(at, v as i64);
    // The old file is still on disk (time travel, vacuum decides) but not live.
    assert!(
        w.abs("scores/person_daily/dt=2026-11-26/part-4.parquet")
            .exists()
    );
}

#[tokio::test]
async fn an_unpublished_commit_is_published_by_the_next_writer_and_orphans_never() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(dir.path()).unwrap();
    ingest(&w, "a", &[("customer", "2026-11-26", 0..10)]).await;
    // A writer that crashed after its log entry, before publishing: the entry is in the
    // log (written here as that writer would have), its table's Delta log does not know it.
    let b = batch(10..12, "late");
    let mut bytes = Vec::new();
    let mut pw = parquet::arrow::ArrowWriter::try_new(&mut bytes, b.schema(), None).unwrap();
    pw.write(&b).unwrap();
    pw.close().unwrap();
    let path = "records/customer/dt=2026-11-27/part-crashed.parquet";
    std::fs::create_dir_all(w.abs("records/customer/dt=2026-11-27")).unwrap();
    std::fs::write(w.abs(path), &bytes).unwrap();
    let entry = serde_json::json!({
        "kind": "ingest", "committed_at": "2026-11-28T12:00:00Z", "writer": "crashed",
        "files": [{"table": "customer", "dt": "2026-11-27", "path": path, "rows": 2, "bytes": bytes.len()}],
        "sources": []
    });
    std::fs::write(
        w.abs("_crmdq_log/00000000000000000002.json"),
        serde_json::to_vec(&entry).unwrap(),
    )
    .unwrap();
    // And an orphan: a file no log entry names.
    std::fs::write(
        w.abs("records/customer/dt=2026-11-27/part-orphan.parquet"),
        &bytes,
    )
    .unwrap();
    let (before, at) = delta_state(&w, "records/customer").await;
    assert_eq!((before.len(), at), (1, 1));
    // The next writer (a new process) commits to another table; its first publication
    // repairs every table.
    let w2 = Warehouse::open(dir.path()).unwrap();
    let v = ingest(&w2, "c", &[("visit", "2026-11-26", 0..1)]).await;
    let (after, at) = delta_state(&w2, "records/customer").await;
    assert_eq!(after, log_state(&w2, "customer", "records/customer").await);
    assert!(after.contains("dt=2026-11-27/part-crashed.parquet"));
    assert!(!after.iter().any(|p| p.contains("orphan")));
    assert_eq!(at, v as i64);
}

/// Writers that commit once each (one `crmdq ingest` per file, started together) into a
/// new warehouse race to *create* each Delta table. Without a later commit to repair it,
/// each table must still show every commit once they are done: the losers of the create
/// load the winner's table and add their files (found in CI: a loser gave up, and the
/// table missed its files until the next writer came).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_commit_writers_racing_to_create_a_table_all_land() {
    for round in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        let writers: Vec<Warehouse> = (0..4)
            .map(|_| Warehouse::open(dir.path()).unwrap())
            .collect();
        let tasks: Vec<_> = writers
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, w)| {
                tokio::spawn(async move {
                    let lo = i as i64 * 100;
                    ingest(
                        &w,
                        &format!("w{i}"),
                        &[("customer", "2026-11-26", lo..lo + 5)],
                    )
                    .await
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let (files, at) = delta_state(&writers[0], "records/customer").await;
        let latest = writers[0].latest_version().await.unwrap();
        assert_eq!(
            files,
            log_state(&writers[0], "customer", "records/customer").await,
            "round {round}: every commit's files are in the Delta table"
        );
        assert_eq!(files.len(), 4, "round {round}");
        assert_eq!(at, latest as i64, "round {round}");
        let history = adds_in_history(&writers[0], "records/customer");
        assert!(
            history.values().all(|n| *n == 1),
            "round {round}: {history:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_publishers_add_every_file_once() {
    let dir = tempfile::tempdir().unwrap();
    // Two writers of one warehouse, each with its own Delta handles (as two processes).
    let a = Warehouse::open(dir.path()).unwrap();
    let b = Warehouse::open(dir.path()).unwrap();
    let run = |w: Warehouse, name: &'static str| {
        tokio::spawn(async move {
            for i in 0..8 {
                let lo = if name == "a" {
                    i * 100
                } else {
                    10_000 + i * 100
                };
                ingest(
                    &w,
                    &format!("{name}{i}"),
                    &[("customer", "2026-11-26", lo..lo + 5)],
                )
                .await;
            }
        })
    };
    let (x, y) = (run(a.clone(), "a"), run(b.clone(), "b"));
    x.await.unwrap();
    y.await.unwrap();
    let latest = a.latest_version().await.unwrap();
    // Whichever finished last published the latest state (the other may be behind only
    // until its next publication); bring both up to date as a restart would.
    a.publish_all().await.unwrap();
    let (files, at) = delta_state(&b, "records/customer").await;
    assert_eq!(at, latest as i64);
    assert_eq!(files, log_state(&a, "customer", "records/customer").await);
    assert_eq!(files.len(), 16);
    let history = adds_in_history(&a, "records/customer");
    assert_eq!(history.len(), 16);
    if !history.values().all(|n| *n == 1) {
        let mut commits: Vec<_> = std::fs::read_dir(a.abs("records/customer/_delta_log"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        commits.sort();
        for c in commits {
            eprintln!(
                "{}: {}",
                c.display(),
                std::fs::read_to_string(&c)
                    .unwrap_or_default()
                    .lines()
                    .filter(|l| l.contains("\"add\"") || l.contains("txn"))
                    .map(|l| l.chars().take(120).collect::<String>())
                    .collect::<Vec<_>>()
                    .join("\n   ")
            );
        }
        panic!("{history:?}");
    }
}

#[tokio::test]
async fn a_format_1_warehouse_asks_for_migrate_and_migrate_publishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(dir.path()).unwrap();
    ingest(&w, "a", &[("customer", "2026-11-26", 0..10)]).await;
    // Make it look like format 1: no marker, no Delta logs.
    std::fs::remove_file(w.abs("_crmdq_format.json")).unwrap();
    std::fs::remove_dir_all(w.abs("records/customer/_delta_log")).unwrap();
    let e = Warehouse::open(dir.path()).unwrap_err();
    assert!(matches!(e, WarehouseError::NeedsMigration { .. }), "{e}");
    assert!(e.to_string().contains("crmdq migrate --warehouse"), "{e}");
    let p = Warehouse::migrate(dir.path()).await.unwrap();
    assert_eq!((p.tables, p.adds, p.removes), (1, 1, 0));
    let w = Warehouse::open(dir.path()).unwrap();
    let (files, at) = delta_state(&w, "records/customer").await;
    assert_eq!(files, log_state(&w, "customer", "records/customer").await);
    assert_eq!(at, 1);
    // Again: nothing to do.
    let p = Warehouse::migrate(dir.path()).await.unwrap();
    assert_eq!((p.tables, p.up_to_date), (0, 1));
    // A newer format is refused.
    std::fs::write(w.abs("_crmdq_format.json"), "{\"format\": 99}").unwrap();
    let e = Warehouse::open(dir.path()).unwrap_err();
    assert!(
        matches!(e, WarehouseError::NewerFormat { found: 99, .. }),
        "{e}"
    );
}

/// Statistics from a footer: integer, text (a long maximum left out, a long minimum
/// truncated to a prefix), date, timestamps (minimum floored and maximum ceiled to the
/// millisecond), null counts.
#[test]
fn statistics_bound_every_row() {
    let long = "z".repeat(40);
    let schema = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("short", DataType::Utf8, true),
        Field::new("d", DataType::Date32, true),
        Field::new(
            "t",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]));
    let b = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(Int64Array::from(vec![Some(-5), None, Some(7)])),
            Arc::new(StringArray::from(vec![
                Some(long.as_str()),
                Some("a".repeat(40).as_str()),
                None,
            ])),
            Arc::new(StringArray::from(vec![Some("b"), Some("a"), Some("c")])),
            Arc::new(Date32Array::from(vec![Some(20_418), Some(20_419), None])),
            Arc::new(
                TimestampMicrosecondArray::from(vec![Some(1_000_500), Some(2_000_001), None])
                    .with_timezone("UTC"),
            ),
        ],
    )
    .unwrap();
    let mut bytes = Vec::new();
    let mut pw = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
    pw.write(&b).unwrap();
    pw.close().unwrap();
    let s: serde_json::Value = serde_json::from_str(&stats_of_file(&bytes).unwrap()).unwrap();
    assert_eq!(s["numRecords"], 3);
    assert_eq!(s["minValues"]["n"], -5);
    assert_eq!(s["maxValues"]["n"], 7);
    assert_eq!(s["nullCount"]["n"], 1);
    assert_eq!(s["minValues"]["s"], "a".repeat(32));
    assert!(s["maxValues"].get("s").is_none());
    assert_eq!(
        (
            s["minValues"]["short"].clone(),
            s["maxValues"]["short"].clone()
        ),
        ("a".into(), "c".into())
    );
    assert_eq!(s["minValues"]["d"], "2025-11-26");
    assert_eq!(s["maxValues"]["d"], "2025-11-27");
    assert_eq!(s["minValues"]["t"], "1970-01-01T00:00:01.000Z");
    assert_eq!(s["maxValues"]["t"], "1970-01-01T00:00:02.001Z");
    assert_eq!(s["nullCount"]["t"], 1);
    assert!(stats_of_file(b"not parquet").is_none());
}
