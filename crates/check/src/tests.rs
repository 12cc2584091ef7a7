//! Table-driven check cases from `tests/cases.jsonl`: each record with its expected
//! missing fields and failed checks.

use super::*;
use crmdq_decode::{Decoder, SourcePos};
use std::path::Path;

fn pipeline(yaml: &str) -> Pipeline {
    Pipeline::from_str_at(yaml, Path::new("/t/p.yaml"), &|_| Some("k".into())).unwrap()
}

fn now() -> Timestamp {
    "2026-11-27T02:00:00Z".parse().unwrap() // 10:00 Shanghai
}

fn run_one(checker: &Checker, p: &Pipeline, record: &serde_json::Value) -> RecordBatch {
    let mut d = Decoder::new(p);
    let bytes = record.to_string();
    d.push_json(
        Some(bytes.as_bytes()),
        &SourcePos::File {
            path: Arc::from("t"),
            line: 1,
        },
        None,
        now(),
    );
    let out = d.finish();
    assert!(out.dead_letters.is_none(), "{record} was dead-lettered");
    let (rt, batch) = out.records.into_iter().next().unwrap();
    checker.check(rt, &batch).unwrap()
}

fn list(b: &RecordBatch, col: &str) -> Vec<String> {
    let l = b.column_by_name(col).unwrap().as_list::<i32>().value(0);
    l.as_string::<i32>()
        .iter()
        .map(|s| s.unwrap().to_string())
        .collect()
}

#[test]
fn fixture_cases() {
    let p = pipeline("{}");
    let checker = Checker::compile(&p).unwrap();
    let text = include_str!("../tests/cases.jsonl");
    let mut failures = Vec::new();
    for line in text.lines() {
        let case: serde_json::Value = serde_json::from_str(line).unwrap();
        let b = run_one(&checker, &p, &case["record"]);
        let missing = list(&b, "dq_missing_fields");
        let failed = list(&b, "dq_failed_checks");
        let want_m: Vec<String> = serde_json::from_value(case["missing"].clone()).unwrap();
        let want_f: Vec<String> = serde_json::from_value(case["failed"].clone()).unwrap();
        let complete = b
            .column_by_name("dq_complete")
            .unwrap()
            .as_boolean()
            .value(0);
        let valid = b.column_by_name("dq_valid").unwrap().as_boolean().value(0);
        if missing != want_m
            || failed != want_f
            || complete != want_m.is_empty()
            || valid != want_f.is_empty()
        {
            failures.push(format!(
                "{}: missing {missing:?} (want {want_m:?}), failed {failed:?} (want {want_f:?})",
                case["desc"]
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(text.lines().count() > 50);
}

#[test]
fn user_checks_and_disabled_builtins() {
    let p = pipeline(
        "checks:\n  disable: [phone.format]\n  user:\n    - name: adult_customers_only\n      record_type: customer\n      sql: age >= 18\n    - name: known_city\n      record_type: [customer]\n      sql: city IN ('Beijing', 'Shanghai')\n",
    );
    let checker = Checker::compile(&p).unwrap();
    let rec = serde_json::json!({"record_type":"customer","record_id":"c","entered_by":"u","event_time":"2026-11-26 15:00:00",
        "entered_at":"2026-11-26 16:00:00","phone":"123","occupation":"x","age":17});
    let b = run_one(&checker, &p, &rec);
    // city is NULL: the user check does not apply (SQL CHECK semantics).
    assert_eq!(list(&b, "dq_failed_checks"), ["adult_customers_only"]);
}

#[test]
fn bad_user_sql_is_a_compile_error_naming_the_check() {
    let p = pipeline(
        "checks:\n  user:\n    - name: broken\n      record_type: order\n      sql: no_such_column > 1\n",
    );
    let e = Checker::compile(&p).unwrap_err().to_string();
    assert!(e.contains("broken") && e.contains("order"), "{e}");
}

#[test]
fn lateness_and_business_date_columns() {
    let p = pipeline("{}");
    let checker = Checker::compile(&p).unwrap();
    let rec = serde_json::json!({"record_type":"activity","record_id":"a","entered_by":"u","event_time":"2026-11-26T20:00:00Z",
        "entered_at":"2026-11-28T02:00:01Z","customer_id":"c","kind":"call","outcome":"ok"});
    let b = run_one(&checker, &p, &rec);
    // 20:00Z on the 26th is the 27th in Shanghai: deadline 2026-11-28 10:00 local = 02:00Z.
    let d = b
        .column_by_name("dq_business_date")
        .unwrap()
        .as_primitive::<arrow::datatypes::Date32Type>()
        .value(0);
    assert_eq!(d, days_since_epoch(jiff::civil::date(2026, 11, 27)));
    assert!(
        !b.column_by_name("dq_on_time")
            .unwrap()
            .as_boolean()
            .value(0)
    );
    assert_eq!(
        b.column_by_name("dq_late_seconds")
            .unwrap()
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0),
        1
    );
}

#[test]
fn pii_is_applied_after_checks() {
    let p = pipeline("pii:\n  phone: mask\n  id_number: hash\n");
    let checker = Checker::compile(&p).unwrap();
    let rec = serde_json::json!({"record_type":"customer","record_id":"c","entered_by":"u","event_time":"2026-11-26 15:00:00",
        "entered_at":"2026-11-26 16:00:00","phone":"13812345678","occupation":"x","age":76,"id_number":"11010519491231002X"});
    let b = run_one(&checker, &p, &rec);
    assert_eq!(
        b.column_by_name("phone")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "138****5678"
    );
    assert_eq!(
        b.column_by_name("id_number")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        pii::hash(b"k", "11010519491231002X")
    );
    assert!(b.column_by_name("dq_valid").unwrap().as_boolean().value(0));
}
