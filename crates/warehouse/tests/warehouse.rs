//! The sink and the commit log: rolling by rows and writer cap, commits naming exactly
//! the durable files, discarded buffers never visible, concurrent commits never clashing,
//! and the snapshot bookkeeping against a simple model (proptest).

#![allow(
    clippy::disallowed_methods,
    reason = "every task this test file spawns is awaited by its test"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use crmdq_warehouse::{
    FileAdd, LogEntry, LogKind, RollReason, Sink, SinkLimits, Snapshot, SourcePosition, Warehouse,
};
use proptest::prelude::*;

fn batch(n: usize, tag: &str) -> RecordBatch {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("tag", DataType::Utf8, false),
    ]));
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(0..n as i64)),
            Arc::new(StringArray::from(vec![tag; n])),
        ],
    )
    .unwrap()
}

fn rows_in(w: &Warehouse, f: &FileAdd) -> i64 {
    let file = std::fs::File::open(w.abs(&f.path)).unwrap();
    let r = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    parquet::file::reader::FileReader::metadata(&r)
        .file_metadata()
        .num_rows()
}

#[tokio::test]
async fn sink_rolls_caps_commits_and_discards() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(dir.path()).unwrap();
    let limits = SinkLimits {
        max_file_rows: 100,
        max_open_writers: 2,
        // No room for batches: every open file streams into a Parquet writer at once.
        max_buffered_bytes: 4,
        ..SinkLimits::default()
    };
    let mut sink = Sink::new(w.clone(), limits, "t".into());
    // 250 rows into one partition: two files rolled by rows, one still open.
    for _ in 0..5 {
        sink.write(
            "customer",
            "records/customer",
            "2026-11-26",
            &batch(50, "a"),
        )
        .await
        .unwrap();
    }
    assert_eq!(sink.stats().files_rolled.get(&RollReason::Rows), Some(&2));
    // Two more partitions: the writer cap (2) forces a close.
    sink.write(
        "customer",
        "records/customer",
        "2026-11-27",
        &batch(10, "b"),
    )
    .await
    .unwrap();
    sink.write(
        "customer",
        "records/customer",
        "2026-11-28",
        &batch(10, "c"),
    )
    .await
    .unwrap();
    assert_eq!(
        sink.stats().files_rolled.get(&RollReason::WriterCap),
        Some(&1)
    );
    assert!(sink.open_writers() <= 2);
    // Nothing is visible before the commit.
    assert_eq!(w.snapshot().await.unwrap().rows_of("customer"), 0);
    let pos = vec![SourcePosition::File {
        path: "/in.ndjson".into(),
        through_line: 270,
    }];
    let v = sink
        .commit(pos, "2026-11-28T00:00:00Z".into(), "test".into())
        .await
        .unwrap();
    assert_eq!(v, Some(1));
    let snap = w.snapshot().await.unwrap();
    assert_eq!(snap.rows_of("customer"), 270);
    assert_eq!(snap.files["/in.ndjson"], 270);
    let in_files: i64 = snap
        .files_of("customer")
        .iter()
        .map(|f| rows_in(&w, f))
        .sum();
    assert_eq!(
        in_files, 270,
        "the log's row counts are the files' row counts"
    );
    for f in snap.files_of("customer") {
        assert!(
            f.path
                .starts_with(&format!("records/customer/dt={}/", f.dt)),
            "{}",
            f.path
        );
        // Files are encoded and written in the background; the log has their real size.
        assert_eq!(
            f.bytes,
            std::fs::metadata(w.abs(&f.path)).unwrap().len(),
            "{}",
            f.path
        );
    }

    // Buffered and closed-but-uncommitted data is dropped by discard and never listed.
    let mut sink2 = Sink::new(
        w.clone(),
        SinkLimits {
            max_file_rows: 5,
            ..SinkLimits::default()
        },
        "u".into(),
    );
    sink2
        .write(
            "customer",
            "records/customer",
            "2026-11-26",
            &batch(12, "x"),
        )
        .await
        .unwrap();
    sink2.discard();
    assert_eq!(
        sink2
            .commit(vec![], "x".into(), "test".into())
            .await
            .unwrap(),
        None
    );
    assert_eq!(w.snapshot().await.unwrap().rows_of("customer"), 270);
}

/// Many small partitions within the batch budget: no Parquet writer is opened and none is
/// evicted; each partition is one file at the commit, with its rows in write order.
#[tokio::test]
async fn small_partitions_are_one_file_each() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(dir.path()).unwrap();
    let limits = SinkLimits {
        max_open_writers: 2,
        ..SinkLimits::default()
    };
    let mut sink = Sink::new(w.clone(), limits, "s".into());
    for round in 0..3 {
        for d in 0..100 {
            let dt = format!("2026-{:02}-{:02}", 1 + d / 28, 1 + d % 28);
            sink.write(
                "customer",
                "records/customer",
                &dt,
                &batch(10, &format!("r{round}")),
            )
            .await
            .unwrap();
        }
    }
    assert_eq!(sink.open_files(), 100);
    assert_eq!(sink.open_writers(), 0);
    sink.commit(vec![], "t".into(), "test".into())
        .await
        .unwrap();
    let stats = sink.stats();
    assert_eq!(stats.peak_open_writers, 0, "{stats:?}");
    assert_eq!(stats.files_rolled.get(&RollReason::WriterCap), None);
    assert_eq!(stats.files_rolled.get(&RollReason::Commit), Some(&100));
    let snap = w.snapshot().await.unwrap();
    let files = snap.files_of("customer");
    assert_eq!(files.len(), 100);
    for f in files {
        assert_eq!((f.rows, rows_in(&w, f)), (30, 30), "{}", f.path);
        let file = std::fs::File::open(w.abs(&f.path)).unwrap();
        let tags: Vec<String> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024)
                .unwrap()
                .flat_map(|b| {
                    let b = b.unwrap();
                    let t = arrow::array::AsArray::as_string::<i32>(b.column(1)).clone();
                    t.iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>()
                })
                .collect();
        let want: Vec<String> = ["r0", "r1", "r2"]
            .iter()
            .flat_map(|t| std::iter::repeat_n(t.to_string(), 10))
            .collect();
        assert_eq!(tags, want, "{}", f.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_get_distinct_versions() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(dir.path()).unwrap();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let e = LogEntry {
                version: 0,
                kind: LogKind::Ingest,
                committed_at: "t".into(),
                writer: format!("w{i}"),
                files: vec![],
                sources: vec![SourcePosition::Kafka {
                    topic: "t".into(),
                    partition: i,
                    next_offset: 10,
                    reset: false,
                }],
                replaces_tables: vec![],
                alerts_through: None,
                removes: Vec::new(),
                computed_from: None,
            };
            w.commit(e).await.unwrap()
        }));
    }
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=8).collect::<Vec<u64>>());
    assert_eq!(w.snapshot().await.unwrap().kafka.len(), 8);
}

fn arb_entry() -> impl Strategy<Value = LogEntry> {
    let pos = prop_oneof![
        (0..3i32, 0..1000i64).prop_map(|(p, o)| SourcePosition::Kafka {
            topic: "t".into(),
            partition: p,
            next_offset: o,
            reset: false,
        }),
        (0..2usize, 0..1000i64).prop_map(|(f, l)| SourcePosition::File {
            path: format!("/f{f}"),
            through_line: l
        }),
    ];
    let file =
        (0..3usize, 1..50u64, proptest::option::of(0..1000i64)).prop_map(|(t, rows, ingested)| {
            FileAdd {
                table: ["customer", "person_daily", "dead_letters"][t].into(),
                dt: "2026-11-26".into(),
                path: format!("x/{rows}"),
                rows,
                bytes: 1,
                ingested_us: ingested.map(|a| [a, a + rows as i64]),
                stats: None,
                rewrite: false,
            }
        });
    (
        proptest::bool::ANY,
        proptest::collection::vec(file, 0..4),
        proptest::collection::vec(pos, 0..4),
    )
        .prop_map(|(score, files, sources)| LogEntry {
            version: 0,
            kind: if score {
                LogKind::Score
            } else {
                LogKind::Ingest
            },
            committed_at: String::new(),
            writer: String::new(),
            replaces_tables: if score {
                vec!["person_daily".into()]
            } else {
                vec![]
            },
            files: if score {
                files
                    .into_iter()
                    .filter(|f| f.table == "person_daily")
                    .collect()
            } else {
                files
            },
            sources,
            alerts_through: None,
            removes: Vec::new(),
            computed_from: None,
        })
}

proptest! {
    /// Positions are the maximum ever committed per source; score entries replace their
    /// tables; ingest entries only append.
    #[test]
    fn snapshot_matches_model(entries in proptest::collection::vec(arb_entry(), 0..30)) {
        let mut snap = Snapshot::default();
        let mut kafka: BTreeMap<(String, i32), i64> = BTreeMap::new();
        let mut files: BTreeMap<String, i64> = BTreeMap::new();
        let mut rows: BTreeMap<String, u64> = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            let mut e = e.clone();
            e.version = i as u64 + 1;
            snap.apply(&e);
            for t in &e.replaces_tables { rows.remove(t); }
            for f in &e.files { *rows.entry(f.table.clone()).or_default() += f.rows; }
            for s in &e.sources {
                match s {
                    SourcePosition::Kafka { topic, partition, next_offset, .. } => {
                        let v = kafka.entry((topic.clone(), *partition)).or_insert(i64::MIN);
                        *v = (*v).max(*next_offset);
                    }
                    SourcePosition::File { path, through_line } => {
                        let v = files.entry(path.clone()).or_insert(i64::MIN);
                        *v = (*v).max(*through_line);
                    }
                }
            }
        }
        prop_assert_eq!(&snap.kafka, &kafka);
        prop_assert_eq!(&snap.files, &files);
        for t in ["customer", "person_daily", "dead_letters"] {
            prop_assert_eq!(snap.rows_of(t), rows.get(t).copied().unwrap_or(0));
        }
        prop_assert_eq!(snap.version, entries.len() as u64);
    }
}

/// Two consumers that both read partition 0 from position 10 (split ownership during a
/// rebalance): the first commit wins, the second is fenced and writes nothing, so the
/// offsets 10.. are committed once.
#[tokio::test]
async fn a_fenced_commit_refuses_a_partition_moved_by_another_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(dir.path()).unwrap();
    let entry = |next: i64, writer: &str| LogEntry {
        version: 0,
        kind: LogKind::Ingest,
        committed_at: "t".into(),
        writer: writer.into(),
        files: vec![],
        sources: vec![SourcePosition::Kafka {
            topic: "t".into(),
            partition: 0,
            next_offset: next,
            reset: false,
        }],
        replaces_tables: vec![],
        alerts_through: None,
        removes: Vec::new(),
        computed_from: None,
    };
    w.commit(entry(10, "setup")).await.unwrap();
    let expect: BTreeMap<(String, i32), i64> = [(("t".to_string(), 0), 10)].into();
    let mut a = w.snapshot().await.unwrap();
    let mut b = w.snapshot().await.unwrap();
    assert_eq!(
        w.commit_fenced(entry(20, "a"), &mut a, &expect)
            .await
            .unwrap(),
        2
    );
    let err = w
        .commit_fenced(entry(15, "b"), &mut b, &expect)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            crmdq_warehouse::WarehouseError::Fenced {
                expected: 10,
                found: 20,
                ..
            }
        ),
        "{err}"
    );
    let snap = w.snapshot().await.unwrap();
    assert_eq!((snap.version, snap.kafka[&("t".to_string(), 0)]), (2, 20));
    // b's view was refreshed: fenced again from its new position it commits.
    let expect_b: BTreeMap<(String, i32), i64> = [(("t".to_string(), 0), 20)].into();
    assert_eq!(
        w.commit_fenced(entry(25, "b"), &mut b, &expect_b)
            .await
            .unwrap(),
        3
    );
}

/// (rows, files scanned) of `sql`.
async fn run(
    ctx: &datafusion::prelude::SessionContext,
    sql: &str,
    params: Vec<datafusion::scalar::ScalarValue>,
) -> (i64, usize) {
    let df = ctx
        .sql(sql)
        .await
        .unwrap()
        .with_param_values(params)
        .unwrap();
    let plan = df.clone().create_physical_plan().await.unwrap();
    let text = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    let files = text.matches(".parquet").count();
    let rows: i64 = df
        .collect()
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows() as i64)
        .sum();
    (rows, files)
}

/// Filters on `dt` alone prune files by partition value — equality, ranges with
/// parameters, casts, qualified columns — and never change a result; other filters
/// read every file.
#[tokio::test]
async fn dt_filters_prune_files_and_keep_results() {
    use datafusion::prelude::SessionContext;
    use datafusion::scalar::ScalarValue;

    let dir = tempfile::tempdir().unwrap();
    let w = Warehouse::open(dir.path()).unwrap();
    let mut sink = Sink::new(w.clone(), SinkLimits::default(), "t".into());
    for (dt, n) in [("2026-11-25", 3), ("2026-11-26", 5), ("2026-11-27", 7)] {
        sink.write("customer", "records/customer", dt, &batch(n, dt))
            .await
            .unwrap();
    }
    sink.commit(vec![], "2026-11-28T00:00:00Z".into(), "test".into())
        .await
        .unwrap();
    let snap = w.snapshot().await.unwrap();
    let ctx = SessionContext::new();
    crmdq_warehouse::register_table(
        &ctx,
        &w,
        "customer",
        batch(0, "").schema(),
        snap.files_of("customer"),
    )
    .unwrap();
    let s = |v: &str| ScalarValue::Utf8(Some(v.into()));
    for (sql, params, rows, files) in [
        ("SELECT id FROM customer", vec![], 15, 3),
        (
            "SELECT id FROM customer WHERE dt = '2026-11-26'",
            vec![],
            5,
            1,
        ),
        (
            "SELECT id FROM customer WHERE customer.dt >= $1 AND dt < $2",
            vec![s("2026-11-26"), s("2026-11-27")],
            5,
            1,
        ),
        (
            "SELECT id FROM customer WHERE CAST(dt AS DATE) > DATE '2026-11-25'",
            vec![],
            12,
            2,
        ),
        (
            "SELECT id FROM customer WHERE dt = '2026-12-01'",
            vec![],
            0,
            0,
        ),
        // Not on dt alone: every file is read, the filter still holds.
        (
            "SELECT id FROM customer WHERE dt = tag AND id < 2",
            vec![],
            6,
            3,
        ),
        (
            "SELECT id FROM customer WHERE dt = '2026-11-27' OR id = 0",
            vec![],
            9,
            3,
        ),
    ] {
        assert_eq!(run(&ctx, sql, params).await, (rows, files), "{sql}");
    }
}

/// Each column chunk's codec, and whether it has a dictionary page.
fn codecs(w: &Warehouse, f: &FileAdd) -> Vec<(parquet::basic::Compression, bool)> {
    let file = std::fs::File::open(w.abs(&f.path)).unwrap();
    let r = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    let md = parquet::file::reader::FileReader::metadata(&r);
    md.row_groups()
        .iter()
        .flat_map(|g| {
            g.columns()
                .iter()
                .map(|c| (c.compression(), c.dictionary_page_offset().is_some()))
        })
        .collect()
}

/// A file closed with less Arrow data than `small_file_bytes` is LZ4_RAW without
/// dictionaries, a bigger one zstd with them, and with `small_file_bytes: 0` every file
/// is zstd with dictionaries; all read back whole.
#[tokio::test]
async fn small_files_are_lz4_and_big_ones_zstd() {
    use parquet::basic::Compression;
    for (small_file_bytes, small_codec) in [(128 << 10, "LZ4_RAW"), (0, "ZSTD")] {
        let dir = tempfile::tempdir().unwrap();
        let w = Warehouse::open(dir.path()).unwrap();
        let limits = SinkLimits {
            small_file_bytes,
            ..SinkLimits::default()
        };
        let mut sink = Sink::new(w.clone(), limits, "c".into());
        let big = batch(20_000, &"y".repeat(20)); // ~0.6 MB of Arrow data
        sink.write(
            "customer",
            "records/customer",
            "2026-11-01",
            &batch(10, "x"),
        )
        .await
        .unwrap();
        sink.write("customer", "records/customer", "2026-11-02", &big)
            .await
            .unwrap();
        sink.commit(vec![], "2026-11-28T00:00:00Z".into(), "test".into())
            .await
            .unwrap();
        let snap = w.snapshot().await.unwrap();
        let files = snap.files_of("customer");
        assert_eq!(files.len(), 2);
        for f in files {
            let want = if f.dt == "2026-11-01" {
                small_codec
            } else {
                "ZSTD"
            };
            let got = codecs(&w, f);
            assert!(!got.is_empty());
            assert!(
                got.iter().all(|(c, _)| match c {
                    Compression::LZ4_RAW => want == "LZ4_RAW",
                    Compression::ZSTD(_) => want == "ZSTD",
                    _ => false,
                }),
                "{} ({small_file_bytes}): {got:?}, want {want}",
                f.dt
            );
            // Dictionaries: none in small files; in zstd files, on the repetitive
            // string column at least.
            let dictionaries = got.iter().filter(|(_, d)| *d).count();
            if want == "LZ4_RAW" {
                assert_eq!(dictionaries, 0, "{}: {got:?}", f.dt);
            } else {
                assert!(dictionaries > 0, "{}: {got:?}", f.dt);
            }
            assert_eq!(rows_in(&w, f), i64::try_from(f.rows).unwrap());
        }
        assert_eq!(snap.rows_of("customer"), 20_010);
    }
}
