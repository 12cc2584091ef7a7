//! The benchmark harness (`benches/bench.py`) runs on a tiny input, and crmdq's and
//! DuckDB's outputs agree on the counts per record type (rows, complete, valid, on time),
//! so the comparison it prints is of equal work. (Speed is measured by the harness, never
//! asserted by a test.)

use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "needs Python duckdb; .ci/run installs it and runs the ignored tests"]
fn the_benchmark_harness_runs_and_agrees_with_duckdb() {
    crate::common::need_python("duckdb");
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("python3")
        .arg(root.join("benches/bench.py"))
        .args(["--tiny", "--crmdq", env!("CARGO_BIN_EXE_crmdq"), "--work"])
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bench.py --tiny: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("| ingest 5,0") || table.contains("| ingest "),
        "{table}"
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let size = &r["sizes"][0];
    assert_eq!(size["counts"]["agree"], true, "{}", size["counts"]);
    // The same scoring: person-days, summed entries and team-days agree …
    assert_eq!(
        size["score_counts"]["agree"], true,
        "{}",
        size["score_counts"]
    );
    // … and so do the review's sums and the period tables, none of them trivially 0.
    for k in [
        "person_days",
        "person_periods",
        "new_customers",
        "own_side_entries",
        "advanced",
    ] {
        let v = size["score_counts"]["crmdq"][k].as_i64().unwrap_or(0);
        assert!(v > 0, "{k}: {}", size["score_counts"]);
    }
    let counts = size["counts"]["crmdq"].as_object().unwrap();
    assert_eq!(counts.len(), 6, "every record type: {counts:?}");
    let rows: i64 = counts.values().map(|c| c["rows"].as_i64().unwrap()).sum();
    assert!(rows > 4000, "{rows} rows");
    // Some entries fail each verdict, so agreeing is not trivial.
    for k in ["complete", "valid", "on_time"] {
        let v: i64 = counts.values().map(|c| c[k].as_i64().unwrap()).sum();
        assert!(v < rows && v > rows / 2, "{k}: {v} of {rows}");
    }
    let kernels = r["kernels"].as_array().unwrap();
    // Six kernels, then the mock cluster's bare consumer and crmdq, each end to end and
    // from its first message.
    assert_eq!(kernels.len(), 10, "{kernels:?}");
    let kafka = kernels
        .iter()
        .filter(|k| {
            k["name"]
                .as_str()
                .unwrap()
                .starts_with("kafka (mock cluster)")
        })
        .count();
    assert_eq!(kafka, 4, "{kernels:?}");
    assert!(
        kernels
            .iter()
            .all(|k| k["seconds"].as_f64().unwrap() > 0.0 && k["records"].as_i64().unwrap() > 0)
    );
}
