//! Scoring a chunk of dates at a time changes no number: the score files of any chunking
//! are byte-identical to scoring the whole warehouse at once, also when record versions
//! were delivered again with another business date (in another chunk), in either order.

use std::path::Path;
use std::sync::Arc;

use crmdq_config::Pipeline;
use crmdq_pipeline::{FixedClock, ingest};
use crmdq_score::{ScoreOptions, ScoreSummary, score_with};
use crmdq_testkit::generate::{GenSpec, generate, roster_csv, shifted};
use crmdq_warehouse::Warehouse;
use parquet::file::reader::FileReader as _;

async fn ingest_at(p: &Pipeline, w: &Warehouse, path: &Path, lines: &[String], at: &str) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
    let clock = Arc::new(FixedClock(at.parse().unwrap()));
    ingest::ingest(p, w, &[path.to_path_buf()], clock, &mut |_, _, _| {})
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_scores_equal_whole_warehouse_scores() {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut p = Pipeline::load(&fixtures.join("pipeline.yaml")).unwrap();
    p.warehouse.path = dir.path().join("wh");
    let w = Warehouse::open(&p.warehouse.path).unwrap();
    let spec = GenSpec {
        start: jiff::civil::date(2026, 10, 1),
        days: 12,
        people: 16,
        seed: 7,
        tz: p.time_zone.clone(),
        first_id: 0,
    };
    let roster = dir.path().join("roster.csv");
    std::fs::write(&roster, roster_csv(&spec)).unwrap();
    let lines = generate(&spec);
    assert!(lines.len() > 1000, "{}", lines.len());
    let with_id: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("\"record_id\""))
        .collect();
    // Delivered first, five days later than the record itself says: the entry is this
    // delivery (on the later date), and the record's own delivery is the duplicate.
    let early: Vec<String> = with_id.iter().step_by(97).map(|l| shifted(l, 5)).collect();
    // Delivered last, three days earlier: a duplicate of the record's own delivery.
    let late: Vec<String> = with_id
        .iter()
        .skip(40)
        .step_by(89)
        .map(|l| shifted(l, -3))
        .collect();
    assert!(early.len() > 5 && late.len() > 5);
    for (name, lines, at) in [
        ("early", &early, "2026-10-20T01:00:00Z"),
        ("main", &lines, "2026-10-20T02:00:00Z"),
        ("late", &late, "2026-10-20T03:00:00Z"),
    ] {
        let path = dir.path().join(format!("{name}.ndjson"));
        ingest_at(&p, &w, &path, lines, at).await;
    }

    let score = |chunk_rows: u64, bucket_rows: u64| {
        let (p, w, roster) = (&p, &w, &roster);
        async move {
            score_with(
                p,
                w,
                Some(roster),
                "2026-10-21T00:00:00Z".into(),
                &ScoreOptions {
                    chunk_rows,
                    entries_of: None,
                    bucket_rows,
                    // Every date each time (not only what changed since the last).
                    full: true,
                    ..ScoreOptions::default()
                },
            )
            .await
            .unwrap()
        }
    };
    let files = |s: &ScoreSummary| {
        s.files
            .iter()
            .map(|f| format!("{} {} {}", f.path, f.rows, f.bytes))
            .collect::<Vec<_>>()
    };
    let whole = score(u64::MAX, u64::MAX).await;
    assert_eq!((whole.chunks, whole.rescored_chunks), (1, 0));
    assert!(whole.dates >= 12, "{}", whole.dates);
    for chunk_rows in [1, 300, 1000] {
        let chunked = score(chunk_rows, u64::MAX).await;
        assert!(chunked.chunks > 1, "{chunk_rows}: {}", chunked.chunks);
        // Versions with deliveries in two chunks were found and their chunks scored again.
        assert!(chunked.rescored_chunks > 0, "{chunk_rows}");
        assert_eq!(files(&chunked), files(&whole), "chunk_rows {chunk_rows}");
        assert_eq!(chunked.rows, whole.rows);
        // The entries handed to the alert evaluation are the latest date's, either way.
        let (a, b) = (
            chunked.entries.as_ref().unwrap(),
            whole.entries.as_ref().unwrap(),
        );
        assert_eq!(a.dt, b.dt);
    }
    // The review pass a bucket of record ids at a time: the same files.
    assert_eq!(whole.review_buckets, 1);
    for bucket_rows in [40, 120] {
        let bucketed = score(u64::MAX, bucket_rows).await;
        assert!(bucketed.review_buckets > 1, "{bucket_rows}");
        assert_eq!(files(&bucketed), files(&whole), "bucket_rows {bucket_rows}");
    }

    // Score files are LZ4_RAW with dictionaries (zstd's setup per column chunk costs more
    // than it saves on them); `small_file_bytes: 0` makes them zstd like every file.
    let codecs = |s: &ScoreSummary| {
        let mut seen = std::collections::BTreeSet::new();
        let mut dictionaries = 0;
        for f in &s.files {
            let file = std::fs::File::open(dir.path().join("wh").join(&f.path)).unwrap();
            let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
            for rg in reader.metadata().row_groups() {
                for c in rg.columns() {
                    let codec = format!("{:?}", c.compression());
                    seen.insert(codec.split('(').next().unwrap_or_default().to_string());
                    dictionaries += usize::from(c.dictionary_page_offset().is_some());
                }
            }
        }
        (seen.into_iter().collect::<Vec<_>>(), dictionaries)
    };
    let (lz4, dictionaries) = codecs(&whole);
    assert_eq!(lz4, ["LZ4_RAW"]);
    assert!(dictionaries > 0);
    let zstd = {
        let mut p = p.clone();
        p.warehouse.small_file_bytes = 0;
        score_with(
            &p,
            &w,
            Some(&roster),
            "2026-10-21T00:00:00Z".into(),
            &ScoreOptions {
                full: true,
                ..ScoreOptions::default()
            },
        )
        .await
        .unwrap()
    };
    assert_eq!(codecs(&zstd).0, ["ZSTD"]);
    assert_eq!(zstd.rows, whole.rows);
}
