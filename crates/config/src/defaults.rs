//! Every default of the pipeline file, in one place (contract section 2).

use std::collections::BTreeMap;

use crmdq_schema::RecordType;

use crate::Scorecard;

pub const TIME_ZONE: &str = "Asia/Shanghai";
pub const PHONE_REGION: &str = "CN";
pub const DEADLINE_TIME: &str = "10:00";
pub const DEADLINE_DAYS: u32 = 1;

/// `crmdq serve`: loopback by default (contract section 5).
pub const PG_LISTEN: &str = "127.0.0.1:5433";
pub const HTTP_LISTEN: &str = "127.0.0.1:9464";
pub const MAX_FAILED_LOGINS: u32 = 5;
pub const MAX_CONNECTIONS: usize = 64;
pub const READY_MAX_LAG: i64 = 100_000;
/// Seconds a partition may sit with lag > 0 and no progress before it counts as stalled.
pub const STALL_SECONDS: f64 = 300.0;

/// Values that count as missing in any field (compared after NFKC, trim, case folding).
pub const PLACEHOLDERS: &[&str] = &[
    "", "unknown", "n/a", "na", "none", "null", "-", "--", "?", "无", "未知", "不详", "暂无", "空",
    "test", "测试", "xxx",
];

/// Known dummy phone numbers (compared after phone normalisation).
pub const PHONE_DUMMIES: &[&str] = &["13800138000", "13888888888", "13900000000"];

/// Default per-field extra placeholders.
pub fn field_placeholders() -> BTreeMap<String, Vec<String>> {
    let mut m = BTreeMap::new();
    m.insert(
        "phone".to_string(),
        PHONE_DUMMIES.iter().map(|s| (*s).to_string()).collect(),
    );
    m.insert("age".to_string(), vec!["0".to_string()]);
    m
}

/// Default key fields per record type.
pub fn key_fields(rt: RecordType) -> &'static [&'static str] {
    match rt {
        RecordType::Customer => &["phone", "occupation", "age"],
        RecordType::Activity => &["customer_id", "kind", "outcome"],
        RecordType::ServiceTicket => &["customer_id", "category", "satisfaction"],
        RecordType::Opportunity => &["customer_id", "stage", "amount"],
        RecordType::Order => &["customer_id", "amount"],
        RecordType::Checkin => &["channel"],
    }
}

/// Default scorecards: equal weights on the three entry-quality rates; role KPIs added
/// where the role owns them.
pub fn scorecards() -> BTreeMap<String, Scorecard> {
    let card = |pairs: &[(&str, f64)]| -> Scorecard {
        pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
    };
    let base = [
        ("completeness_rate", 1.0),
        ("validity_rate", 1.0),
        ("timeliness_rate", 1.0),
    ];
    let mut m = BTreeMap::new();
    m.insert("default".into(), card(&base));
    m.insert("team".into(), card(&base));
    m.insert("sales_assistant".into(), card(&base));
    m.insert("manager".into(), card(&base));
    m.insert("unknown".into(), card(&base));
    m.insert(
        "sales_rep".into(),
        card(&[
            ("completeness_rate", 1.0),
            ("validity_rate", 1.0),
            ("timeliness_rate", 1.0),
            ("checkin_response_rate", 1.0),
        ]),
    );
    m.insert(
        "service_agent".into(),
        card(&[
            ("completeness_rate", 1.0),
            ("validity_rate", 1.0),
            ("timeliness_rate", 1.0),
            ("satisfaction_rate", 1.0),
            ("complaint_free_rate", 1.0),
        ]),
    );
    m
}
