use std::sync::Arc;

use super::*;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};

fn tz() -> TimeZone {
    TimeZone::get("Asia/Shanghai").unwrap()
}

fn now() -> Timestamp {
    "2026-11-27T02:00:00Z".parse().unwrap()
}

fn pos(line: i64) -> SourcePos {
    SourcePos::File {
        path: Arc::from("in.ndjson"),
        line,
    }
}

fn decode(lines: &[&[u8]]) -> Decoded {
    let mut d = Decoder::with(tz(), 1 << 20);
    for (i, l) in lines.iter().enumerate() {
        d.push_json(Some(l), &pos(i as i64 + 1), None, now());
    }
    d.finish()
}

const GOOD: &str = r#"{"record_type":"customer","record_id":"c1","entered_by":"u1","event_time":"2026-11-26 15:20:00","entered_at":"2026-11-26T08:00:00Z","age":"３５","phone":13800138000,"shoe":"42","occupation":null}"#;

#[test]
fn coerces_and_keeps_unknown_fields() {
    let out = decode(&[GOOD.as_bytes()]);
    assert!(out.dead_letters.is_none());
    let b = &out.records[&RecordType::Customer];
    assert_eq!(b.num_rows(), 1);
    assert_eq!(
        b.column_by_name("age")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0),
        35
    );
    assert_eq!(
        b.column_by_name("phone")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "13800138000"
    );
    assert_eq!(
        b.column_by_name("owner_id")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "unassigned"
    );
    assert_eq!(
        b.column_by_name("version")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0),
        1
    );
    assert_eq!(
        b.column_by_name("extra")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        r#"{"shoe":"42"}"#
    );
    assert!(b.column_by_name("occupation").unwrap().is_null(0));
    // 15:20 Shanghai (no offset) is 07:20 UTC.
    let et = b
        .column_by_name("event_time")
        .unwrap()
        .as_primitive::<TimestampMicrosecondType>()
        .value(0);
    assert_eq!(
        et,
        "2026-11-26T07:20:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .as_microsecond()
    );
    assert_eq!(
        b.column_by_name("__raw_age")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "３５"
    );
}

#[test]
fn uncoercible_values_are_kept_as_unparsed() {
    let line = GOOD.replace("\"３５\"", "\"abc\"");
    let out = decode(&[line.as_bytes()]);
    let b = &out.records[&RecordType::Customer];
    assert!(b.column_by_name("age").unwrap().is_null(0));
    assert_eq!(
        b.column_by_name("dq_unparsed")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        r#"{"age":"abc"}"#
    );
    assert_eq!(
        b.column_by_name("__raw_age")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "abc"
    );
}

/// Every dead-letter case of the contract, with its reason code.
#[test]
fn dead_letter_cases() {
    let deep = "[".repeat(10_000);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![0xff, 0xfe, b'{'], "invalid_utf8"),
        (b"{not json".to_vec(), "invalid_json"),
        (deep.into_bytes(), "invalid_json"),
        (b"[1,2]".to_vec(), "not_an_object"),
        (b"null".to_vec(), "not_an_object"),
        (
            GOOD.replace("\"record_type\":\"customer\",", "")
                .into_bytes(),
            "missing_record_type",
        ),
        (
            GOOD.replace("\"customer\"", "\"lead\"").into_bytes(),
            "unknown_record_type",
        ),
        (
            GOOD.replace("\"record_id\":\"c1\",", "").into_bytes(),
            "missing_record_id",
        ),
        (
            GOOD.replace("\"record_id\":\"c1\"", "\"record_id\":\"  \"")
                .into_bytes(),
            "missing_record_id",
        ),
        (
            GOOD.replace("\"entered_by\":\"u1\",", "").into_bytes(),
            "missing_entered_by",
        ),
        (
            GOOD.replace("2026-11-26 15:20:00", "yesterday")
                .into_bytes(),
            "bad_event_time",
        ),
        (
            GOOD.replace("\"event_time\":\"2026-11-26 15:20:00\",", "")
                .into_bytes(),
            "bad_event_time",
        ),
        (
            GOOD.replace("2026-11-26T08:00:00Z", "2026-13-01")
                .into_bytes(),
            "bad_entered_at",
        ),
        (
            GOOD.replace("\"shoe\"", "\"version\":0,\"shoe\"")
                .into_bytes(),
            "bad_version",
        ),
    ];
    let mut d = Decoder::with(tz(), 1 << 20);
    for (i, (bytes, _)) in cases.iter().enumerate() {
        d.push_json(Some(bytes), &pos(i as i64 + 1), None, now());
    }
    d.push_json(Some(b""), &pos(100), None, now());
    d.push_json(None, &pos(101), None, now());
    let out = d.finish();
    assert!(out.records.is_empty());
    let dl = out.dead_letters.unwrap();
    assert_eq!(dl.num_rows(), cases.len() + 2);
    let reasons = dl.column_by_name("reason").unwrap().as_string::<i32>();
    let raw = dl.column_by_name("raw").unwrap().as_binary::<i32>();
    let lines = dl
        .column_by_name("src_line")
        .unwrap()
        .as_primitive::<Int64Type>();
    for (i, (bytes, reason)) in cases.iter().enumerate() {
        assert_eq!(reasons.value(i), *reason, "case {i}");
        assert_eq!(raw.value(i), bytes.as_slice());
        assert_eq!(lines.value(i), i as i64 + 1);
    }
    assert_eq!(reasons.value(cases.len()), "empty_message");
    assert_eq!(reasons.value(cases.len() + 1), "empty_message");
}

#[test]
fn implied_record_type_and_mismatch() {
    let mut d = Decoder::with(tz(), 1 << 20);
    let no_type = GOOD.replace("\"record_type\":\"customer\",", "");
    d.push_json(
        Some(no_type.as_bytes()),
        &pos(1),
        Some(RecordType::Customer),
        now(),
    );
    d.push_json(
        Some(GOOD.as_bytes()),
        &pos(2),
        Some(RecordType::Activity),
        now(),
    );
    let out = d.finish();
    assert_eq!(out.records[&RecordType::Customer].num_rows(), 1);
    assert_eq!(out.dead_letters.unwrap().num_rows(), 1);
}

#[test]
fn too_large_messages_are_dead_letters() {
    let mut d = Decoder::with(tz(), 10);
    d.push_json(Some(GOOD.as_bytes()), &pos(1), None, now());
    let dl = d.finish().dead_letters.unwrap();
    assert_eq!(
        dl.column_by_name("reason")
            .unwrap()
            .as_string::<i32>()
            .value(0),
        "too_large"
    );
}

#[test]
fn csv_rows_decode_like_json() {
    let data = "record_type,record_id,entered_by,event_time,entered_at,age\ncustomer,c1,u1,2026-11-26 10:00:00,2026-11-26 11:00:00,35\ncustomer,c2,u1,2026-11-26 10:00:00\n";
    let mut d = Decoder::with(tz(), 1 << 20);
    for row in csv_input::rows(data.as_bytes(), b',', true) {
        match row {
            csv_input::CsvRow::Object { obj, raw, line } => {
                d.push_object(obj, &raw, &pos(line), None, now());
            }
            csv_input::CsvRow::Broken {
                raw,
                reason,
                detail,
                line,
            } => d.push_dead(&raw, reason, &detail, &pos(line), now()),
        }
    }
    let out = d.finish();
    assert_eq!(out.records[&RecordType::Customer].num_rows(), 1);
    let dl = out.dead_letters.unwrap();
    assert_eq!(dl.num_rows(), 1);
    assert_eq!(
        dl.column_by_name("src_line")
            .unwrap()
            .as_primitive::<Int64Type>()
            .value(0),
        3
    );
}

proptest::proptest! {
    /// Arbitrary bytes never panic and always give exactly one row or dead letter.
    #[test]
    fn any_bytes_give_exactly_one_output(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
        let mut d = Decoder::with(tz(), 1 << 20);
        d.push_json(Some(&bytes), &pos(1), None, now());
        proptest::prop_assert_eq!(d.finish().rows(), 1);
    }
}
