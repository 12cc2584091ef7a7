//! The warehouse as other engines read it: every table through its Delta log only, by
//! Python `deltalake` and Polars (installed by `.ci/run`) and by delta-rs in this test,
//! gives exactly the rows `crmdq sql` returns — after a crash that left an orphan file and
//! a re-score that replaced score files. And `crmdq migrate` of the v1 fixture (a
//! warehouse written by the release before Delta tables) keeps every row and score.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use arrow::array::RecordBatch;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::common::{self, NOW, fixtures, need_python};
use crmdq_warehouse::Location;

/// Each row of `batches` as text (columns in `names` order), sorted.
fn rows(batches: &[RecordBatch], names: &[String]) -> Vec<String> {
    let opts = FormatOptions::default().with_null("∅");
    let mut out = Vec::new();
    for b in batches {
        let cols: Vec<ArrayFormatter> = names
            .iter()
            .map(|n| {
                let c = b
                    .column_by_name(n)
                    .unwrap_or_else(|| panic!("column {n} missing in {:?}", b.schema()));
                ArrayFormatter::try_new(c.as_ref(), &opts).unwrap()
            })
            .collect();
        for r in 0..b.num_rows() {
            let cells: Vec<String> = cols.iter().map(|f| f.value(r).to_string()).collect();
            out.push(cells.join(" | "));
        }
    }
    out.sort();
    out
}

fn read_parquet(p: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(p).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// What crmdq's own reader returns for every table: name → (columns, sorted rows).
fn crmdq_tables(at: &Location) -> BTreeMap<String, (Vec<String>, Vec<String>)> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let wh = crmdq_warehouse::Warehouse::connect(at).await.unwrap();
        let ctx = crmdq_catalog::open(&wh, None).await.unwrap();
        let snap = wh.snapshot().await.unwrap();
        let mut out = BTreeMap::new();
        for name in snap.dirs.keys() {
            let batches = ctx
                .sql(&format!("SELECT * FROM \"{name}\""))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let names: Vec<String> = ctx
                .table(name.as_str())
                .await
                .unwrap()
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            out.insert(name.clone(), (names.clone(), rows(&batches, &names)));
        }
        out
    })
}

/// The table folders of a warehouse (name → folder).
fn table_dirs(at: &Location) -> BTreeMap<String, String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let wh = crmdq_warehouse::Warehouse::connect(at).await.unwrap();
        wh.snapshot().await.unwrap().dirs
    })
}

/// delta-rs on its own (no crmdq reader): the rows of the files the Delta log says are
/// live.
fn delta_rs_rows(at: &Location, dir: &str, names: &[String]) -> Vec<String> {
    let (files, w) = common::delta_live_files_at(at, dir).expect("a Delta table");
    let mut out = Vec::new();
    for (path, dt) in files {
        let batches: Vec<RecordBatch> =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                common::warehouse_bytes(&w, &format!("{dir}/{path}")),
            )
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        // The partition column comes from the log, as a Delta reader fills it in.
        let with_dt: Vec<RecordBatch> = batches
            .into_iter()
            .map(|b| {
                let n = b.num_rows();
                let mut fields: Vec<_> = b.schema().fields().iter().cloned().collect();
                let mut cols = b.columns().to_vec();
                fields.push(std::sync::Arc::new(arrow::datatypes::Field::new(
                    "dt",
                    arrow::datatypes::DataType::Utf8,
                    false,
                )));
                cols.push(std::sync::Arc::new(arrow::array::StringArray::from(vec![
                    dt.as_str();
                    n
                ])));
                RecordBatch::try_new(
                    std::sync::Arc::new(arrow::datatypes::Schema::new(fields)),
                    cols,
                )
                .unwrap()
            })
            .collect();
        out.extend(rows(&with_dt, names));
    }
    out.sort();
    out
}

/// Every table read through its Delta log by delta-rs (and, with `python`, Python
/// deltalake and Polars, given `env`: an object store's credentials) equals crmdq's rows;
/// returns the number of tables compared.
fn outside_readers_agree(at: &Location, env: &[(String, String)], python: bool) -> usize {
    let ours = crmdq_tables(at);
    let dirs = table_dirs(at);
    assert!(!ours.is_empty());
    for (name, (names, expected)) in &ours {
        let got = delta_rs_rows(at, &dirs[name], names);
        assert_eq!(&got, expected, "delta-rs reads {name} as crmdq does");
    }
    if python {
        let out = tempfile::tempdir().unwrap();
        let script = fixtures().join("../readers/delta_read.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script).arg(out.path());
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        for d in dirs.values() {
            match at {
                Location::Local(w) => cmd.arg(w.join(d)),
                Location::Url { url, .. } => cmd.arg(format!("{url}/{d}")),
            };
        }
        let o = cmd.output().unwrap();
        assert!(
            o.status.success(),
            "delta_read.py: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let report = String::from_utf8(o.stdout).unwrap();
        eprintln!("{report}");
        for (name, (names, expected)) in &ours {
            let leaf = dirs[name].rsplit('/').next().unwrap();
            for reader in ["deltalake", "polars"] {
                let got = rows(
                    &read_parquet(&out.path().join(format!("{leaf}.{reader}.parquet"))),
                    names,
                );
                assert_eq!(&got, expected, "{reader} reads {name} as crmdq does");
            }
        }
        let version = table_version(at);
        for line in report.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["crmdq_txn"].as_i64().unwrap() <= version, "{v}");
        }
    }
    ours.len()
}

fn table_version(at: &Location) -> i64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        crmdq_warehouse::Warehouse::connect(at)
            .await
            .unwrap()
            .latest_version()
            .await
            .unwrap() as i64
    })
}

fn score_at(p: &Path, w: &Path, now: &str) {
    common::run(&[
        "--now",
        now,
        "score",
        "--pipeline",
        p.to_str().unwrap(),
        "--warehouse",
        w.to_str().unwrap(),
    ]);
}

/// A copy of a committed records file next to it that no commit names (a crash's
/// leftover), written through the warehouse's store (a folder or a bucket).
fn leave_an_orphan(at: &Location) {
    use object_store::ObjectStoreExt as _;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let w = crmdq_warehouse::Warehouse::connect(at).await.unwrap();
        let snap = w.snapshot().await.unwrap();
        let some = snap.files_of("customer").first().unwrap().path.clone();
        let bytes = common::warehouse_bytes_async(&w, &some).await;
        let orphan = format!(
            "{}/part-orphan-00001.parquet",
            some.rsplit_once('/').unwrap().0
        );
        w.store()
            .put(&object_store::path::Path::from(orphan), bytes.into())
            .await
            .unwrap();
    });
}

/// Ingest, score, a crash's orphan, more data and a re-score: every reader agrees at
/// each step (delta-rs always; Python deltalake and Polars under `.ci/run`). With `moto`,
/// the warehouse is in a bucket of that S3 server.
fn ingest_orphan_rescore(python: bool, moto: Option<&common::Moto>) {
    let dir = tempfile::tempdir().unwrap();
    let (at, env) = match moto {
        Some(m) => {
            m.bucket("crmdq-readers");
            (m.location("s3://crmdq-readers/wh"), m.env())
        }
        None => (Location::Local(dir.path().join("wh")), Vec::new()),
    };
    let w = at.to_string();
    let p = fixtures().join("pipeline.yaml");
    let v1 = fixtures().join("v1");
    let crmdq = |args: &[&str]| {
        let mut all = vec!["--now", NOW];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--pipeline", p.to_str().unwrap(), "--warehouse", &w]);
        common::run_env(&all, &env);
    };
    crmdq(&["ingest", v1.join("part1.ndjson").to_str().unwrap()]);
    crmdq(&["score"]);
    leave_an_orphan(&at);
    outside_readers_agree(&at, &env, python);
    crmdq(&["ingest", v1.join("part2.ndjson").to_str().unwrap()]);
    crmdq(&["score"]);
    let n = outside_readers_agree(&at, &env, python);
    assert!(n >= 8, "records, dead letters and score tables: {n}");
    // Maintenance on the same warehouse (a folder or a bucket): compaction, then a vacuum
    // that deletes what no version needs (the orphan, the replaced score files); every
    // reader still reads every row.
    let before = crmdq_tables(&at);
    let o = common::run_env(&["optimize", "--warehouse", &w], &env);
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(said.contains("compacted into"), "{said}");
    let o = common::run_env(
        &[
            "vacuum",
            "--warehouse",
            &w,
            "--retention-hours",
            "0",
            "--force",
        ],
        &env,
    );
    let said = String::from_utf8_lossy(&o.stdout).to_string();
    let deleted: usize = said
        .lines()
        .find_map(|l| l.strip_prefix("vacuum: "))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("{said}"));
    assert!(deleted >= 1, "the orphan at least: {said}");
    assert_eq!(
        crmdq_tables(&at),
        before,
        "the same rows after optimize and vacuum"
    );
    outside_readers_agree(&at, &env, python);
}

fn walk(d: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn delta_rs_reads_every_table_as_crmdq_does() {
    ingest_orphan_rescore(false, None);
}

#[test]
#[ignore = "needs Python deltalake and polars; .ci/run installs them and runs the ignored tests"]
fn python_deltalake_and_polars_read_every_table_as_crmdq_does() {
    need_python("deltalake");
    need_python("polars");
    ingest_orphan_rescore(true, None);
}

/// The same on S3 (moto): crmdq writes the bucket, Python deltalake and Polars read it
/// with the standard AWS environment variables, delta-rs through its own S3 store.
#[test]
#[ignore = "needs Python deltalake, polars and moto[server]; .ci/run installs them and runs the ignored tests"]
fn outside_readers_read_an_s3_warehouse_as_crmdq_does() {
    need_python("deltalake");
    need_python("polars");
    let moto = common::Moto::start_server();
    ingest_orphan_rescore(true, Some(&moto));
}

/// The demo's warehouse (written by the Kafka consumer, scored, alerts recorded) through
/// Python deltalake and Polars.
#[test]
#[ignore = "needs Python deltalake and polars; .ci/run installs them and runs the ignored tests"]
fn python_readers_agree_on_the_demos_warehouse() {
    need_python("deltalake");
    need_python("polars");
    let dir = tempfile::tempdir().unwrap();
    common::run(&[
        "--now",
        "2026-11-28T12:00:00Z",
        "demo",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    let w = dir.path().join("warehouse");
    let n = outside_readers_agree(&Location::Local(w), &[], true);
    assert!(n >= 10, "{n} tables");
}

/// `crmdq migrate` of the v1 fixture (written by the release before Delta tables): other
/// commands refuse it with the way out; after it, the same rows and scores, and every
/// table is a Delta table that delta-rs reads as crmdq does.
#[test]
fn migrate_keeps_every_row_and_score_of_a_v1_warehouse() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("warehouse");
    copy_dir(&fixtures().join("v1/warehouse"), &w);
    let ws = w.to_str().unwrap();
    let q = "SELECT * FROM person_daily ORDER BY dt, person_id, role";
    let o = common::bin()
        .args(["sql", "--warehouse", ws, "--format", "json", q])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("crmdq migrate --warehouse"), "{err}");
    // The rows before, read straight from the v1 log's files (what v1 showed).
    let before = v1_rows(&w);
    let files_before = walk(&w).len();
    let out = common::run(&["migrate", "--warehouse", ws]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("no data file was rewritten"), "{said}");
    let after = crmdq_tables(&Location::Local(w.clone()));
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    for (name, (_, rows)) in &after {
        assert_eq!(&before[name], rows, "{name} unchanged by migrate");
    }
    // Only Delta logs and the marker were added.
    let added: Vec<_> = walk(&w)
        .into_iter()
        .filter(|p| {
            !p.components().any(|c| c.as_os_str() == "_delta_log")
                && !p.ends_with("_crmdq_format.json")
        })
        .collect();
    assert_eq!(added.len(), files_before);
    assert!(outside_readers_agree(&Location::Local(w.clone()), &[], false) >= 8);
    // Scores recomputed now equal the migrated ones.
    let scores = common::sql(&w, q);
    score_at(&fixtures().join("pipeline.yaml"), &w, NOW);
    assert_eq!(common::sql(&w, q), scores);
}

/// The v1 warehouse's tables as its own log names them (parsed here, independently of the
/// crmdq under test): name → sorted rows, dt last.
fn v1_rows(w: &Path) -> BTreeMap<String, Vec<String>> {
    let mut live: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut logs: Vec<_> = walk(&w.join("_crmdq_log"));
    logs.sort();
    for l in logs {
        let e: serde_json::Value = serde_json::from_slice(&std::fs::read(&l).unwrap()).unwrap();
        for t in e["replaces_tables"].as_array().into_iter().flatten() {
            live.remove(t.as_str().unwrap());
        }
        for f in e["files"].as_array().unwrap() {
            live.entry(f["table"].as_str().unwrap().into())
                .or_default()
                .push((
                    f["path"].as_str().unwrap().into(),
                    f["dt"].as_str().unwrap().into(),
                ));
        }
    }
    let mut out = BTreeMap::new();
    for (table, files) in live {
        let mut all = Vec::new();
        for (path, dt) in files {
            let batches = read_parquet(&w.join(&path));
            if batches.is_empty() {
                continue;
            }
            let mut names: Vec<String> = batches[0]
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            let rows = rows(&batches, &names);
            names.push("dt".into());
            all.extend(rows.into_iter().map(|r| format!("{r} | {dt}")));
        }
        all.sort();
        out.insert(table, all);
    }
    out
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

/// `--as-of`: the warehouse as it was at a version (and at an instant) shows the rows and
/// scores of then, and `score --as-of … --out` recomputes exactly those scores from the
/// records of then, leaving the warehouse's own scores alone.
#[test]
fn time_travel_shows_and_reproduces_a_past_score() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh");
    let (p, v1) = (fixtures().join("pipeline.yaml"), fixtures().join("v1"));
    let ws = w.to_str().unwrap();
    let ingest_at = |file: &str, now: &str| {
        common::run(&[
            "--now",
            now,
            "ingest",
            "--pipeline",
            p.to_str().unwrap(),
            "--warehouse",
            ws,
            v1.join(file).to_str().unwrap(),
        ]);
    };
    ingest_at("part1.ndjson", "2026-11-28T12:00:00Z");
    score_at(&p, &w, "2026-11-28T12:00:00Z"); // version 2
    ingest_at("part2.ndjson", "2026-11-28T13:00:00Z");
    score_at(&p, &w, "2026-11-28T13:00:00Z"); // version 4
    let q = "SELECT CAST(dt AS VARCHAR) AS dt, person_id, role, entries, score FROM person_daily ORDER BY 1, 2, 3";
    let at = |as_of: &str, q: &str| -> Vec<serde_json::Value> {
        let o = common::run(&[
            "sql",
            "--warehouse",
            ws,
            "--format",
            "json",
            "--as-of",
            as_of,
            q,
        ]);
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let now_scores = common::sql(&w, q);
    let then_scores = at("2", q);
    assert_ne!(now_scores, then_scores, "part2 changed the scores");
    assert_eq!(at("4", q), now_scores);
    // An instant between the two scores is version 2 (or 3: same scores).
    assert_eq!(at("2026-11-28T12:30:00Z", q), then_scores);
    let count = "SELECT COUNT(*) AS n FROM dead_letters";
    assert_eq!(at("2", count)[0]["n"], 0);
    assert_eq!(common::sql(&w, count)[0]["n"], 2);
    // The replay: the scores of version 2 recomputed from its records.
    let replay = dir.path().join("replay");
    let o = common::run(&[
        "--now",
        "2026-11-28T12:00:00Z",
        "score",
        "--pipeline",
        p.to_str().unwrap(),
        "--warehouse",
        ws,
        "--as-of",
        "2",
        "--out",
        replay.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("replayed"));
    assert_eq!(common::sql(&replay, q), then_scores);
    assert_eq!(
        common::sql(&w, q),
        now_scores,
        "the warehouse's own scores are untouched"
    );
    // Out of range, or a replay without --out: usage errors.
    for args in [
        vec!["sql", "--warehouse", ws, "--as-of", "99", "SELECT 1"],
        vec![
            "sql",
            "--warehouse",
            ws,
            "--as-of",
            "2020-01-01T00:00:00Z",
            "SELECT 1",
        ],
        vec!["sql", "--warehouse", ws, "--as-of", "yesterday", "SELECT 1"],
    ] {
        let o = common::bin().args(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(!o.stderr.is_empty());
    }
    let o = common::bin()
        .args([
            "score",
            "--pipeline",
            p.to_str().unwrap(),
            "--warehouse",
            ws,
            "--as-of",
            "2",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "--as-of without --out");
}

/// What several writers on one bucket rely on: the S3 server refuses a second
/// create-if-absent PUT of the same key (`If-None-Match: *` → 412), and four `crmdq ingest`
/// processes started at once into one S3 warehouse all land, each file once, in distinct
/// commit-log versions, for crmdq and for a Delta reader.
#[test]
#[ignore = "needs moto[server] (Python); .ci/run installs it and runs the ignored tests"]
fn writers_racing_on_one_s3_warehouse_each_land_once() {
    use object_store::{ObjectStoreExt as _, PutMode, PutOptions};
    let moto = common::Moto::start_server();
    moto.bucket("crmdq-race");
    let at = moto.location("s3://crmdq-race/wh");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let w = crmdq_warehouse::Warehouse::connect(&at).await.unwrap();
        let key = object_store::path::Path::from("probe/once.json");
        let create = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        w.store()
            .put_opts(&key, "1".into(), create())
            .await
            .unwrap();
        let second = w.store().put_opts(&key, "2".into(), create()).await;
        assert!(
            matches!(second, Err(object_store::Error::AlreadyExists { .. })),
            "{second:?}"
        );
        w.store().delete(&key).await.unwrap();
    });
    // Four parts of one generated stream (distinct record ids), ingested at once.
    let dir = tempfile::tempdir().unwrap();
    let gen_path = dir.path().join("gen.ndjson");
    common::run(&[
        "--now",
        NOW,
        "generate",
        "--out",
        gen_path.to_str().unwrap(),
        "--days",
        "6",
        "--people",
        "12",
        "--start",
        "2026-11-10",
    ]);
    let text = std::fs::read_to_string(&gen_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let parts: Vec<_> = lines
        .chunks(lines.len().div_ceil(4))
        .enumerate()
        .map(|(i, c)| {
            let f = dir.path().join(format!("part-{i}.ndjson"));
            std::fs::write(&f, c.join("\n")).unwrap();
            f
        })
        .collect();
    let p = fixtures().join("pipeline.yaml");
    let w = at.to_string();
    // All four spawned before any is waited for: they overlap.
    let children: Vec<_> = parts
        .iter()
        .map(|f| {
            common::bin()
                .args(["--now", NOW, "ingest", "--pipeline"])
                .arg(&p)
                .args(["--warehouse", &w])
                .arg(f)
                .envs(moto.env())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let env = moto.env();
    let n = common::sql_env(
        &w,
        "SELECT (SELECT COUNT(*) FROM all_deliveries) + (SELECT COUNT(*) FROM dead_letters) AS n",
        &env,
    )[0]["n"]
        .as_i64()
        .unwrap();
    assert_eq!(n as usize, lines.len(), "every line once");
    assert!(table_version(&at) >= 4, "four commits in distinct versions");
    outside_readers_agree(&at, &env, false);
}
