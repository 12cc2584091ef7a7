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
    assert_eq!(p.phone_region, "CN");
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
    assert_eq!(p.kafka.unwrap().bootstrap_servers, "b:9092");
    let p = load("source:\n  kafka:\n    bootstrap_servers: ${NOPE:-x:1}\n    topics: {t: ~}\n")
        .unwrap();
    assert_eq!(p.kafka.unwrap().bootstrap_servers, "x:1");
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
    assert!(!p.calendar.is_working_day(d("2026-10-01"))); // Thursday holiday
    assert!(p.calendar.is_working_day(d("2026-09-27"))); // Sunday make-up day
    assert!(!p.calendar.is_working_day(d("2026-09-26"))); // Saturday
    assert!(p.calendar.is_working_day(d("2026-09-28"))); // Monday
}

#[test]
fn locate_walks_nested_keys() {
    let t = "a:\n  b: 1\nc:\n  d:\n    b: 2\n";
    assert_eq!(locate(t, "c.d.b"), Some(5));
    assert_eq!(locate(t, "a.b"), Some(2));
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
    assert_eq!(p.checks.entered_before_event, Duration::ZERO);
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
