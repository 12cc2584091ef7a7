//! Fuzzing decode and checks together (proptest): messages built from record fields with
//! hostile values — wrong JSON types, huge and odd numbers, unicode, control characters,
//! placeholders, broken dates, nesting, duplicate keys, truncation — never panic, never
//! make a check return an error, and always give exactly one record row or dead letter
//! per message with every verdict column filled.

use std::path::Path;
use std::sync::Arc;

use arrow::array::Array;
use crmdq_check::Checker;
use crmdq_config::Pipeline;
use crmdq_decode::{Decoder, SourcePos};
use proptest::prelude::*;

fn pipeline() -> Pipeline {
    Pipeline::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/pipeline.yaml"),
    )
    .unwrap()
}

const FIELDS: &[&str] = &[
    "record_type",
    "record_id",
    "version",
    "owner_id",
    "entered_by",
    "team_id",
    "event_time",
    "entered_at",
    "phone",
    "occupation",
    "age",
    "id_number",
    "email",
    "customer_id",
    "kind",
    "outcome",
    "category",
    "satisfaction",
    "complaint",
    "stage",
    "amount",
    "channel",
    "responded_at",
    "response_complete",
    "deleted",
];

/// A JSON value as text: the plausible and the hostile.
fn value() -> impl Strategy<Value = String> {
    let text = prop_oneof![
        Just(String::new()),
        Just("n/a".to_string()),
        Just("13800000000".to_string()),
        Just("+86 138-0013-8000".to_string()),
        Just("11010519491231002X".to_string()),
        Just("2026-11-26 09:30:00".to_string()),
        Just("2026-11-27T10:00:00+08:00".to_string()),
        Just("2026-02-30 25:61:00".to_string()),
        Just("9999-12-31T23:59:59Z".to_string()),
        Just("0001-01-01 00:00:00".to_string()),
        Just("customer".to_string()),
        Just("activity".to_string()),
        Just("service_ticket".to_string()),
        Just("checkin".to_string()),
        Just("opportunity".to_string()),
        Just("order".to_string()),
        "\\PC{0,40}",
        "[\\x00-\\x1f\"\\\\]{0,8}",
    ];
    prop_oneof![
        text.prop_map(|s| serde_json::Value::String(s).to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or("1e308".into(), |n| n.to_string())),
        Just("1e400".to_string()),
        Just("-0".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("[]".to_string()),
        Just("{\"a\":[1,{\"b\":null}]}".to_string()),
        Just("[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]".to_string()),
    ]
}

/// The keys every record needs, well formed (most messages start with them, so the
/// checks see many records and not only dead letters).
fn base() -> impl Strategy<Value = String> {
    proptest::sample::select(&[
        "customer",
        "activity",
        "service_ticket",
        "checkin",
        "opportunity",
        "order",
    ][..])
    .prop_map(|rt| {
        format!(
            "\"record_type\":\"{rt}\",\"record_id\":\"r\",\"entered_by\":\"amy\",\"event_time\":\"2026-11-26 09:30:00\",\"entered_at\":\"2026-11-26 12:00:00\""
        )
    })
}

/// A message: maybe the base keys, then fields with values (keys may repeat), sometimes
/// truncated.
fn message() -> impl Strategy<Value = Vec<u8>> {
    (
        proptest::option::weighted(0.7, base()),
        proptest::collection::vec((proptest::sample::select(FIELDS), value()), 0..16),
        proptest::option::weighted(0.1, any::<prop::sample::Index>()),
    )
        .prop_map(|(base, fields, cut)| {
            let body = base
                .into_iter()
                .chain(fields.iter().map(|(k, v)| format!("\"{k}\":{v}")))
                .collect::<Vec<_>>()
                .join(",");
            let mut bytes = format!("{{{body}}}").into_bytes();
            if let Some(i) = cut {
                bytes.truncate(i.index(bytes.len() + 1));
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn decode_and_checks_never_fail_on_any_message(msgs in proptest::collection::vec(message(), 1..40)) {
        let p = pipeline();
        let checker = Checker::compile(&p).unwrap();
        let mut d = Decoder::new(&p);
        let now: jiff::Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
        for (i, m) in msgs.iter().enumerate() {
            let pos = SourcePos::Kafka { topic: Arc::from("t"), partition: 0, offset: i as i64 };
            d.push_json(Some(m), &pos, None, now);
        }
        let out = d.finish();
        prop_assert_eq!(out.rows(), msgs.len());
        for (rt, batch) in &out.records {
            let checked = checker.check(*rt, batch);
            prop_assert!(checked.is_ok(), "{rt:?}: {:?}", checked.err());
            let checked = checked.unwrap();
            prop_assert_eq!(checked.num_rows(), batch.num_rows());
            for col in ["dq_complete", "dq_valid", "dq_on_time", "dq_business_date", "dq_deadline"] {
                let c = checked.column_by_name(col).unwrap();
                prop_assert_eq!(c.null_count(), 0, "{} has nulls", col);
            }
        }
    }
}

/// The generator is not vacuous: a sample of its messages gives records of every type
/// (so the property above exercises the checks), records with failed checks, and dead
/// letters.
#[test]
fn the_fuzz_messages_reach_the_checks() {
    use proptest::strategy::ValueTree;
    let p = pipeline();
    let checker = Checker::compile(&p).unwrap();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut d = Decoder::new(&p);
    let now: jiff::Timestamp = "2026-11-28T12:00:00Z".parse().unwrap();
    for i in 0..600 {
        let m = message().new_tree(&mut runner).unwrap().current();
        let pos = SourcePos::Kafka {
            topic: Arc::from("t"),
            partition: 0,
            offset: i,
        };
        d.push_json(Some(&m), &pos, None, now);
    }
    let out = d.finish();
    assert_eq!(out.records.len(), 6, "every record type");
    let dead = out
        .dead_letters
        .as_ref()
        .map_or(0, arrow::array::RecordBatch::num_rows);
    assert!(dead > 30, "{dead} dead letters");
    let (mut invalid, mut incomplete) = (0, 0);
    let falses = |c: &arrow::array::RecordBatch, name: &str| {
        let b = arrow::array::AsArray::as_boolean(c.column_by_name(name).unwrap()).clone();
        b.len() - b.true_count()
    };
    for (rt, b) in &out.records {
        let c = checker.check(*rt, b).unwrap();
        invalid += falses(&c, "dq_valid");
        incomplete += falses(&c, "dq_complete");
    }
    assert!(
        invalid >= 5 && incomplete > 30,
        "{invalid} invalid, {incomplete} incomplete records"
    );
}
