//! Three public data sets through pipeline files alone (`pipelines/uci_incidents.yaml`,
//! `pipelines/maven_crm.yaml`, `pipelines/uci_bank.yaml`), ingested and scored by the
//! `crmdq` binary, checked against numbers computed independently inside the test by a
//! plain CSV pass in Python (no crmdq code involved).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::bin;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The public data folder: `CRMDQ_PUBLIC_DATA`, else `../shared/data/public` beside the
/// repository. The tests that read it are `#[ignore]`d and run by `.ci/run`, which points
/// at it, so a missing folder fails rather than passes silently.
fn data() -> PathBuf {
    let candidates = [
        std::env::var_os("CRMDQ_PUBLIC_DATA").map(PathBuf::from),
        Some(repo().join("../shared/data/public")),
        Some(PathBuf::from("/work/shared/data/public")),
    ];
    let found = candidates
        .into_iter()
        .flatten()
        .find(|p| p.join("uci_bank_marketing").is_dir())
        .map(|p| p.canonicalize().unwrap());
    found.expect(
        "the public data sets are not on this machine (CRMDQ_PUBLIC_DATA, or ../shared/data/public beside the repository)",
    )
}

fn crmdq(args: &[&str], data: &Path) -> String {
    let out = bin()
        .args(args)
        .env("CRMDQ_PUBLIC_DATA", data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crmdq {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Ingest `input` with the pipeline, then score; returns the ingest output.
fn run(pipeline: &str, w: &Path, input: &Path, data: &Path) -> String {
    let p = repo().join("pipelines").join(pipeline);
    let (p, w) = (p.to_str().unwrap(), w.to_str().unwrap());
    let out = crmdq(
        &[
            "--now",
            "2026-11-27T00:00:00Z",
            "ingest",
            "--pipeline",
            p,
            "--warehouse",
            w,
            input.to_str().unwrap(),
        ],
        data,
    );
    crmdq(
        &[
            "--now",
            "2026-11-27T00:00:00Z",
            "score",
            "--pipeline",
            p,
            "--warehouse",
            w,
        ],
        data,
    );
    out
}

fn sql(w: &Path, q: &str, data: &Path) -> Vec<Value> {
    crmdq(
        &[
            "sql",
            "--warehouse",
            w.to_str().unwrap(),
            "--format",
            "json",
            q,
        ],
        data,
    )
    .lines()
    .map(|l| serde_json::from_str(l).unwrap())
    .collect()
}

fn one(w: &Path, q: &str, data: &Path) -> i64 {
    let rows = sql(w, q, data);
    rows[0]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_i64()
        .unwrap()
}

/// `{key: count}` from a two-column query (NULL key → "<null>").
fn counts(w: &Path, q: &str, data: &Path) -> serde_json::Map<String, Value> {
    sql(w, q, data)
        .into_iter()
        .map(|r| {
            let r = r.as_object().unwrap();
            let k = r
                .get("k")
                .and_then(Value::as_str)
                .unwrap_or("<null>")
                .to_string();
            (k, r["n"].clone())
        })
        .collect()
}

fn python(script: &str, args: &[&Path]) -> Value {
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "needs the public data sets (../shared/data/public) and Python pyarrow; .ci/run finds them and runs the ignored tests"]
fn uci_bank_marketing() {
    let data = data();
    let input = data.join("uci_bank_marketing/bank-full.csv");
    let want = python(
        r#"
import csv, json, sys, collections
rows = list(csv.DictReader(open(sys.argv[1], newline=""), delimiter=";"))
teams = collections.Counter("<null>" if r["contact"] == "unknown" else r["contact"] for r in rows)
print(json.dumps({
  "rows": len(rows),
  "job_unknown": sum(r["job"] == "unknown" for r in rows),
  "age_missing": sum(r["age"].strip() in ("", "unknown") for r in rows),
  "age_out_of_range": sum(not (16 <= int(r["age"]) <= 100) for r in rows if r["age"].strip().isdigit()),
  "teams": teams,
}))
"#,
        &[&input],
    );
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh");
    let out = run("uci_bank.yaml", &w, &input, &data);
    assert!(
        out.contains(&format!("{} records, 0 dead letters", want["rows"])),
        "{out}"
    );
    assert_eq!(
        one(&w, "SELECT COUNT(*) FROM customer", &data),
        want["rows"]
    );
    assert_eq!(
        one(
            &w,
            "SELECT COUNT(*) FROM customer WHERE array_has(dq_missing_fields, 'occupation')",
            &data
        ),
        want["job_unknown"]
    );
    assert_eq!(
        one(
            &w,
            "SELECT COUNT(*) FROM customer WHERE array_has(dq_missing_fields, 'age')",
            &data
        ),
        want["age_missing"]
    );
    assert_eq!(
        one(
            &w,
            "SELECT COUNT(*) FROM customer WHERE array_has(dq_failed_checks, 'age.range')",
            &data
        ),
        want["age_out_of_range"]
    );
    assert_eq!(
        Value::Object(counts(
            &w,
            "SELECT team_id AS k, COUNT(*) AS n FROM customer GROUP BY team_id",
            &data
        )),
        want["teams"]
    );
    // Scored: every entry counted once.
    assert_eq!(
        one(&w, "SELECT SUM(entries) FROM person_daily", &data),
        want["rows"]
    );
}

#[test]
#[ignore = "needs the public data sets (../shared/data/public) and Python pyarrow; .ci/run finds them and runs the ignored tests"]
fn maven_crm_sales_opportunities() {
    let data = data();
    let dir_in = data.join("maven_crm_sales_opportunities");
    let input = dir_in.join("sales_pipeline.csv");
    let want = python(
        r#"
import csv, json, sys, os, collections
d = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(d, "sales_pipeline.csv"), newline="")))
products = {r["product"] for r in csv.DictReader(open(os.path.join(d, "products.csv"), newline=""))}
manager = {r["sales_agent"]: r["manager"] for r in csv.DictReader(open(os.path.join(d, "sales_teams.csv"), newline=""))}
closed = [r for r in rows if r["deal_stage"] in ("Won", "Lost")]
print(json.dumps({
  "rows": len(rows),
  "not_in_catalogue": sum(r["product"] not in products for r in rows),
  "gtxpro": sum(r["product"] == "GTXPro" for r in rows),
  "no_account": sum(r["account"] == "" for r in rows),
  "closed_without_date_or_value": sum(not r["close_date"] or not r["close_value"] for r in closed),
  "open_with_date_or_value": sum(bool(r["close_date"] or r["close_value"]) for r in rows if r["deal_stage"] not in ("Won", "Lost")),
  "won": sum(r["deal_stage"] == "Won" for r in rows),
  "closed": len(closed),
  "teams": collections.Counter(manager.get(r["sales_agent"], "<null>") for r in rows),
  "roster": [len(manager), len(set(manager.values()))],
}))
"#,
        &[&dir_in],
    );
    assert_eq!(want["gtxpro"], 1480);
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh");
    let out = run("maven_crm.yaml", &w, &input, &data);
    assert!(
        out.contains(&format!("{} records, 0 dead letters", want["rows"])),
        "{out}"
    );
    let failed = |check: &str| {
        one(
            &w,
            &format!(
                "SELECT COUNT(*) FROM opportunity WHERE array_has(dq_failed_checks, '{check}')"
            ),
            &data,
        )
    };
    assert_eq!(failed("product.catalogue"), want["not_in_catalogue"]);
    assert_eq!(
        one(
            &w,
            "SELECT COUNT(*) FROM opportunity WHERE array_has(dq_failed_checks, 'product.catalogue') AND product = 'GTXPro'",
            &data
        ),
        1480
    );
    assert_eq!(
        failed("closed_deal_has_close_date_and_value"),
        want["closed_without_date_or_value"]
    );
    assert_eq!(
        failed("open_deal_has_no_close"),
        want["open_with_date_or_value"]
    );
    assert_eq!(
        one(
            &w,
            "SELECT COUNT(*) FROM opportunity WHERE array_has(dq_missing_fields, 'customer_id')",
            &data
        ),
        want["no_account"]
    );
    // Per manager team (roster derived from sales_teams.csv), and the win rate.
    assert_eq!(
        Value::Object(counts(
            &w,
            "SELECT team_id AS k, CAST(SUM(entries) AS BIGINT) AS n FROM team_daily GROUP BY team_id",
            &data
        )),
        want["teams"]
    );
    assert_eq!(
        one(
            &w,
            "SELECT CAST(SUM(opportunities_closed) AS BIGINT) FROM person_daily",
            &data
        ),
        want["closed"]
    );
    assert_eq!(
        one(
            &w,
            "SELECT CAST(ROUND(SUM(win_rate * opportunities_closed)) AS BIGINT) FROM person_daily WHERE opportunities_closed > 0",
            &data
        ),
        want["won"]
    );
}

#[test]
#[ignore = "needs the public data sets (../shared/data/public) and Python pyarrow; .ci/run finds them and runs the ignored tests"]
fn uci_incident_event_log() {
    let data = data();
    let input = data.join("uci_incident_event_log/incident_event_log.csv.gz");
    let want = python(
        r#"
import csv, gzip, json, sys, collections, datetime
rows = list(csv.DictReader(gzip.open(sys.argv[1], "rt", newline="")))
def ts(v):
    try:
        return datetime.datetime.strptime(v, "%d/%m/%Y %H:%M")
    except ValueError:
        return None
dead = [r for r in rows if r["sys_updated_by"] == "?" or ts(r["opened_at"]) is None or ts(r["sys_updated_at"]) is None]
good = [r for r in rows if r not in dead] if dead else rows
print(json.dumps({
  "rows": len(rows),
  "dead": len(dead),
  "records": len(good),
  "distinct_entries": len({(r["number"], r["sys_mod_count"]) for r in good}),
  "missing": {f: sum(r[c] == "?" for r in good) for f, c in (("customer_id", "caller_id"), ("channel", "contact_type"), ("category", "category"))},
  "teams": collections.Counter("<null>" if r["assignment_group"] == "?" else r["assignment_group"] for r in good),
}))
"#,
        &[&input],
    );
    assert_eq!(want["rows"], 141_712);
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wh");
    let out = run("uci_incidents.yaml", &w, &input, &data);
    assert!(
        out.contains(&format!(
            "{} records, {} dead letters",
            want["records"], want["dead"]
        )),
        "{out}"
    );
    for (field, n) in want["missing"].as_object().unwrap() {
        assert_eq!(
            one(
                &w,
                &format!(
                    "SELECT COUNT(*) FROM service_ticket WHERE array_has(dq_missing_fields, '{field}')"
                ),
                &data
            ),
            n.as_i64().unwrap(),
            "missing {field}"
        );
    }
    assert_eq!(
        Value::Object(counts(
            &w,
            "SELECT team_id AS k, COUNT(*) AS n FROM service_ticket GROUP BY team_id",
            &data
        )),
        want["teams"]
    );
    // Duplicate deliveries (same number and sys_mod_count) are scored once.
    assert_eq!(
        one(
            &w,
            "SELECT CAST(SUM(entries) AS BIGINT) FROM person_daily",
            &data
        ),
        want["distinct_entries"]
    );
}
