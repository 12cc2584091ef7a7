use std::path::{Path, PathBuf};
use std::time::Duration;

use crmdq_schema::RecordType;
use jiff::civil::{Date, Time};

use super::*;

fn load(text: &str) -> Result<Pipeline, ConfigError> {
    Pipeline::from_str_at(text, Path::new("/p/pipe.yaml"), &|k| match k {
        "BROKERS" => Some("b:9092".into()),
        _ => None,
    })
}

#[test]
fn empty_file_gives_contract_defaults() {
    let p = load("{}").unwrap();
    assert_eq!(p.time_zone_name, "Asia/Shanghai");
    assert_eq!(p.checks.phone_region, "CN");
    let c = p.record_type(RecordType::Customer);
    assert_eq!(c.key_fields, ["phone", "occupation", "age"]);
    assert_eq!(
        c.deadline,
        DeadlinePolicy {
            time: Time::new(10, 0, 0, 0).unwrap(),
            days: 1,
            count: DayCount::Calendar
        }
    );
    assert!(c.placeholders["age"].contains("0"));
    assert!(c.placeholders["phone"].contains("13800138000"));
    assert!(c.placeholders["occupation"].contains("未知"));
    assert!(!c.placeholders["occupation"].contains("0"));
    assert_eq!(p.warehouse.path, PathBuf::from("/p/warehouse"));
    assert_eq!(p.warehouse.small_file_bytes, 128 << 10);
    let p = load("warehouse:\n  small_file_bytes: 0\n").unwrap();
    assert_eq!(p.warehouse.small_file_bytes, 0);
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let e = load("name: x\nwarehouse:\n  path: w\n  max_rows: 3\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("/p/pipe.yaml:4:"), "{e}");
    assert!(e.contains("warehouse"), "{e}");
    assert!(e.contains("max_rows"), "{e}");
}

#[test]
fn invalid_value_names_line_and_key() {
    let e = load("name: x\nrecord_types:\n  customer:\n    deadline:\n      time: \"25:99\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/p/pipe.yaml:5: key `record_types.customer.deadline.time`"),
        "{e}"
    );
    let e = load("time_zone: Mars/Olympus\n").unwrap_err().to_string();
    assert!(e.starts_with("/p/pipe.yaml:1: key `time_zone`"), "{e}");
    let e = load("record_types:\n  customer:\n    key_fields: [phone, shoe_size]\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains(":3:") && e.contains("shoe_size"), "{e}");
    let e = load("record_types:\n  lead: {}\n").unwrap_err().to_string();
    assert!(
        e.contains(":2:") && e.contains("unknown record type"),
        "{e}"
    );
}

#[test]
fn env_vars_expand_and_missing_ones_are_errors() {
    let p =
        load("source:\n  kafka:\n    bootstrap_servers: ${BROKERS}\n    topics: {t: customer}\n")
            .unwrap();
    assert_eq!(p.source.kafka.unwrap().bootstrap_servers, "b:9092");
    let p = load("source:\n  kafka:\n    bootstrap_servers: ${NOPE:-x:1}\n    topics: {t: ~}\n")
        .unwrap();
    assert_eq!(p.source.kafka.unwrap().bootstrap_servers, "x:1");
    let e = load("name: a\nsql:\n  password: ${SECRET}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains(":3:") && e.contains("SECRET"), "{e}");
    // A variable in a comment is documentation, not a requirement.
    load("# set ${SECRET} for hashing\nname: a\n").unwrap();
}

#[test]
fn hashing_requires_a_key() {
    let e = load("pii:\n  phone: hash\n").unwrap_err().to_string();
    assert!(e.contains("CRMDQ_PII_KEY"), "{e}");
}

#[test]
fn working_day_calendar() {
    let p = load("calendar:\n  holidays: [2026-10-01]\n  workdays: [2026-09-27]\n").unwrap();
    let d = |s: &str| s.parse::<Date>().unwrap();
    assert!(!p.checks.calendar.is_working_day(d("2026-10-01"))); // Thursday holiday
    assert!(p.checks.calendar.is_working_day(d("2026-09-27"))); // Sunday make-up day
    assert!(!p.checks.calendar.is_working_day(d("2026-09-26"))); // Saturday
    assert!(p.checks.calendar.is_working_day(d("2026-09-28"))); // Monday
}

/// Negative allowances and windows are errors naming the key, not clamped to 0.
#[test]
fn negative_durations_are_rejected() {
    let e = load("checks:\n  entered_before_event_seconds: -60\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/p/pipe.yaml:2: key `checks.entered_before_event_seconds`")
            && e.contains("0 or more seconds, not -60"),
        "{e}"
    );
    let e = load("checks:\n  entered_after_ingestion_seconds: -1\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("checks.entered_after_ingestion_seconds"), "{e}");
    let p = load("checks:\n  entered_before_event_seconds: 0\n").unwrap();
    assert_eq!(p.checks.builtin.entered_before_event, Duration::ZERO);
    let e = load(
        "alerts:\n  rules:\n    - { name: r, scope: pipeline, metric: dead_letter_ratio, above: 0.1, window_hours: -2 }\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("alerts.rules[0].window_hours"), "{e}");
    let e = load("serve:\n  stall_seconds: -5\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("serve.stall_seconds"), "{e}");
}

/// check-config's warning: every receiver of a kind of rule is off.
#[test]
fn warns_when_every_receiver_is_off() {
    let rules = "  rules:\n    - { name: a, scope: person, metric: completeness_rate, below: 0.5 }\n    - { name: b, scope: pipeline, metric: dead_letter_ratio, above: 0.1 }\n";
    let off = format!(
        "alerts:\n  receivers:\n    lead: {{ type: webhook, url: '' }}\n  routes:\n    pipeline: lead\n    managers: {{ default: lead }}\n{rules}"
    );
    let w = load(&off).unwrap().alerts.warnings();
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].contains("`lead` disabled"), "{w:?}");
    let on = off.replace("url: ''", "url: 'http://127.0.0.1:1/x'");
    assert!(load(&on).unwrap().alerts.warnings().is_empty());
    let none = format!("alerts:\n{rules}");
    let w = load(&none).unwrap().alerts.warnings();
    assert!(w.iter().all(|x| x.contains("no route")), "{w:?}");
}

/// Bad values are reported on the line the parser saw, with the key, whatever checks them
/// (serde enums, typed values, cross-field rules).
#[test]
fn every_kind_of_error_names_its_line() {
    let cases = [
        (
            "name: x\npii:\n  phone: shred\n",
            3,
            "pii.phone",
            "unknown variant",
        ),
        ("a: 1\n", 1, "a", "unknown field"),
        (
            "warehouse:\n  max_file_rows: 0\n",
            2,
            "warehouse.max_file_rows",
            "greater than 0",
        ),
        (
            "source:\n  csv:\n    delimiter: ';;'\n",
            3,
            "source.csv.delimiter",
            "single byte",
        ),
        (
            "checks:\n  age_min: 90\n  age_max: 20\n",
            2,
            "checks.age_min",
            "greater than",
        ),
        (
            "alerts:\n  rules:\n    - name: r\n      scope: person\n      metric: nope\n      below: 1\n",
            5,
            "alerts.rules[0].metric",
            "not a person metric",
        ),
        (
            "serve:\n  pg_listen: nowhere\n",
            2,
            "serve.pg_listen",
            "IP:port",
        ),
        (
            "calendar:\n  holidays: [2026-02-30]\n",
            2,
            "calendar.holidays[0]",
            "YYYY-MM-DD",
        ),
        (
            "scorecards:\n  sales_rep:\n    speed: 1\n",
            3,
            "scorecards.sales_rep.speed",
            "unknown metric",
        ),
        (
            "review:\n  targets:\n    sales_rep:\n      speed: {min: 1}\n",
            4,
            "review.targets.sales_rep.speed",
            "not a rate",
        ),
        (
            "review:\n  targets:\n    team:\n      timeliness_rate: {}\n",
            4,
            "review.targets.team.timeliness_rate",
            "give `min`, `max` or both",
        ),
        (
            "opportunity_stages: [lead, lost]\n",
            1,
            "opportunity_stages",
            "without `lost`",
        ),
        (
            "alerts:\n  rules:\n    - name: r\n      scope: pipeline\n      metric: dead_letter_ratio\n      above: 0.1\n      period: month\n",
            7,
            "alerts.rules[0].period",
            "only person and team",
        ),
        (
            "alerts:\n  rules:\n    - name: r\n      scope: person\n      metric: score\n      drop: {days: 7, stddevs: 2}\n      period: week\n",
            7,
            "alerts.rules[0].period",
            "`below` or `above`",
        ),
    ];
    for (text, line, key, message) in cases {
        match load(text) {
            Err(ConfigError::Invalid {
                line: l,
                key: k,
                message: m,
                ..
            }) => {
                assert_eq!((l, k.as_str()), (line, key), "{text:?}: {m}");
                assert!(m.contains(message), "{text:?}: {m}");
            }
            other => panic!("{text:?}: {other:?}"),
        }
    }
}

/// The source mapping keeps the order the file lists it in.
#[test]
fn mapping_keeps_file_order() {
    let p = load("source:\n  mapping:\n    phone: b\n    customer_id: a\n    age: c\n").unwrap();
    let names: Vec<&str> = p
        .source
        .mapping
        .fields
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(names, ["phone", "customer_id", "age"]);
}

/// Every key the raw types accept is documented in pipelines/README.md's key reference,
/// and every key the reference names is accepted: the reference cannot drift.
#[test]
fn the_key_reference_matches_the_raw_types() {
    use crate::span::fields_of;
    let sections: Vec<(&str, Vec<String>)> = vec![
        ("", fields_of::<RawPipeline>()),
        ("source", fields_of::<source::RawSource>()),
        ("source.kafka", fields_of::<source::RawKafka>()),
        ("source.csv", fields_of::<source::RawCsv>()),
        ("warehouse", fields_of::<warehouse::RawWarehouse>()),
        ("pii", fields_of::<checks::RawPii>()),
        ("placeholders", fields_of::<checks::RawPlaceholders>()),
        ("record_types.<type>", fields_of::<checks::RawRecordType>()),
        (
            "record_types.<type>.deadline",
            fields_of::<checks::RawDeadline>(),
        ),
        ("calendar", fields_of::<checks::RawCalendar>()),
        ("checks", fields_of::<checks::RawChecks>()),
        ("sql", fields_of::<serve::RawSql>()),
        ("serve", fields_of::<serve::RawServe>()),
        ("alerts", fields_of::<alerts::RawAlerts>()),
        ("alerts.routes", fields_of::<alerts::RawRoutes>()),
        ("review", fields_of::<scoring::RawReview>()),
    ];
    // Sections whose keys are documented as a whole (an inline `{…}` list in one row).
    let documented_whole = [
        "source",
        "source.kafka",
        "source.csv",
        "warehouse",
        "pii",
        "placeholders",
        "record_types",
        "record_types.<type>",
        "record_types.<type>.deadline",
        "calendar",
        "checks",
        "sql",
        "serve",
        "alerts",
        "alerts.routes",
        "alerts.receivers",
        "alerts.rules",
        "reference_tables",
        "scorecards",
    ];
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/README.md"),
    )
    .unwrap();
    let table: Vec<&str> = readme.lines().filter(|l| l.starts_with("| `")).collect();
    let documented: Vec<String> = table
        .iter()
        .flat_map(|row| {
            let first = row.split(" | ").next().unwrap_or("");
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .map(|k| k.trim_end_matches("[]").to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut accepted = Vec::new();
    for (prefix, fields) in &sections {
        assert!(!fields.is_empty(), "no keys found for `{prefix}`");
        for f in fields {
            let key = if prefix.is_empty() {
                f.clone()
            } else {
                format!("{prefix}.{f}")
            };
            accepted.push(key.clone());
            if documented_whole.contains(&key.as_str()) {
                continue;
            }
            let covered = documented
                .iter()
                .any(|d| d == &key || d.starts_with(&format!("{key}.")));
            assert!(
                covered,
                "`{key}` is accepted but missing from pipelines/README.md"
            );
        }
    }
    for d in &documented {
        let known = accepted
            .iter()
            .any(|a| d == a || d.starts_with(&format!("{a}.")));
        assert!(
            known,
            "pipelines/README.md documents `{d}`, which no raw type accepts"
        );
    }
}

/// The review section: shipped targets, overrides per role, stages and the orders window.
#[test]
fn review_defaults_and_overrides() {
    let p = load("{}").unwrap();
    let r = &p.scoring.review;
    assert_eq!(r.min_volume, 20);
    assert_eq!(r.targets["sales_rep"]["timeliness_rate"].min, Some(0.9));
    assert_eq!(
        p.scoring.opportunity_stages,
        ["lead", "qualified", "proposal", "negotiation", "won"]
    );
    assert_eq!(p.scoring.orders_within_days, 7);
    let p = load(
        "review:\n  min_volume: 5\n  targets:\n    sales_rep: {timeliness_rate: {min: 0.8, max: 1}}\nopportunity_stages: [Lead, Won]\norders_within_days: 3\nabsences: a.csv\n",
    )
    .unwrap();
    let r = &p.scoring.review;
    assert_eq!(r.min_volume, 5);
    assert_eq!(r.targets["sales_rep"].len(), 1);
    assert!(r.targets["sales_rep"]["timeliness_rate"].met(Some(0.85)));
    assert!(!r.targets["sales_rep"]["timeliness_rate"].met(Some(0.75)));
    assert!(!r.targets["sales_rep"]["timeliness_rate"].met(None));
    assert_eq!(
        r.targets["service_agent"]["satisfaction_rate"].min,
        Some(0.75)
    );
    assert_eq!(p.scoring.opportunity_stages, ["lead", "won"]);
    assert_eq!(p.scoring.orders_within_days, 3);
    assert_eq!(p.scoring.absences, Some(PathBuf::from("/p/a.csv")));
}

/// Command-line overrides are applied while loading; the pipeline is not changed after.
#[test]
fn overrides_replace_warehouse_and_roster() {
    let dir = std::env::temp_dir().join(format!("crmdq-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("p.yaml");
    std::fs::write(
        &file,
        "roster: {path: src.csv, mapping: {person_id: agent}}\n",
    )
    .unwrap();
    let p = Pipeline::load(&file).unwrap();
    assert_eq!(p.roster_path(), Some(dir.join("src.csv").as_path()));
    let p = Pipeline::load_with(
        &file,
        &Overrides {
            warehouse: Some(PathBuf::from("/elsewhere/wh")),
            roster: Some(PathBuf::from("/elsewhere/r.csv")),
        },
    )
    .unwrap();
    assert_eq!(p.warehouse.path, PathBuf::from("/elsewhere/wh"));
    let r = p.roster.unwrap();
    assert_eq!(r.path, PathBuf::from("/elsewhere/r.csv"));
    assert!(
        r.mapping.is_empty(),
        "an override roster has the contract's columns"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `warehouse.path` may be an object-store URL, with `storage_options` (`${VAR}`s
/// expanded); unknown schemes, a URL without a bucket and options on a local folder are
/// errors; `--warehouse` switches between the two and keeps the file's options.
#[test]
fn a_warehouse_in_an_object_store() {
    let p = load(
        "warehouse:\n  path: s3://lake/crm/wh\n  storage_options:\n    aws_endpoint: ${BROKERS}\n    aws_region: eu-west-1\n",
    )
    .unwrap();
    let options: std::collections::BTreeMap<String, String> = [
        ("aws_endpoint".to_string(), "b:9092".to_string()),
        ("aws_region".to_string(), "eu-west-1".to_string()),
    ]
    .into();
    assert_eq!(
        p.warehouse.location(),
        Location::Url {
            url: "s3://lake/crm/wh".into(),
            options: options.clone()
        }
    );
    assert_eq!(p.warehouse.location().local(), None);
    assert_eq!(p.warehouse.location().to_string(), "s3://lake/crm/wh");
    for (path, want) in [
        ("gopher://x/y", "unknown scheme `gopher`"),
        ("s3://", "no bucket"),
        ("s3:///prefix", "no bucket"),
    ] {
        let e = load(&format!("warehouse:\n  path: \"{path}\"\n"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("warehouse.path") && e.contains(want),
            "{path}: {e}"
        );
    }
    let e = load("warehouse:\n  path: wh\n  storage_options: {aws_region: x}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("storage_options"), "{e}");
    // file:// is a folder; `--warehouse` may move a local pipeline to S3 and back.
    let mut w = load("warehouse:\n  path: file:///data/wh\n")
        .unwrap()
        .warehouse;
    assert_eq!(w.location(), Location::Local(PathBuf::from("/data/wh")));
    w.set_location(&Location::parse("gs://b/p"));
    assert_eq!(w.location().to_string(), "gs://b/p");
    w.set_location(&Location::parse("/tmp/x"));
    assert_eq!(w.location(), Location::Local(PathBuf::from("/tmp/x")));
    assert_eq!(Location::parse("az://c/p").check(), Ok(()));
    assert!(Location::parse("http://c/p").check().is_err());
    assert_eq!(
        Location::from(Path::new("rel/wh")),
        Location::Local(PathBuf::from("rel/wh"))
    );
}
