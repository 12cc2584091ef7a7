//! The record-level rules the check stage compiles: `phone_region`, `pii`, `placeholders`,
//! `record_types` (key fields, deadlines), `calendar`, `checks` (built-in parameters and
//! user checks) and `reference_tables`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crmdq_schema::{RecordType, record_schema};
use jiff::civil::{Date, Time};
use serde::Deserialize;

use crate::error::{ConfigError, Ctx};
use crate::values::{ClockTime, Day, Region, TypeName, WholeSeconds};

/// Defaults of the check sections (contract section 2).
pub mod default {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use crmdq_schema::RecordType;
    use jiff::civil::Time;

    pub const PHONE_REGION: &str = "CN";
    pub const DEADLINE_TIME: Time = Time::constant(10, 0, 0, 0);
    pub const DEADLINE_DAYS: u32 = 1;
    pub const AGE_MIN: i64 = 16;
    pub const AGE_MAX: i64 = 100;
    pub const SATISFACTION_MIN: i64 = 1;
    pub const SATISFACTION_MAX: i64 = 5;
    pub const ID_AGE_TOLERANCE_YEARS: i64 = 1;
    pub const ENTERED_BEFORE_EVENT: Duration = Duration::from_mins(5);
    pub const ENTERED_AFTER_INGESTION: Duration = Duration::from_mins(5);
    pub const PHONE_ALL_SAME_DIGITS: bool = true;
    pub const PHONE_CONSECUTIVE_DIGITS: bool = true;
    pub const PII_HASH_KEY_ENV: &str = "CRMDQ_PII_KEY";

    /// Values that count as missing in any field (compared after NFKC, trim, case folding).
    pub const PLACEHOLDERS: &[&str] = &[
        "", "unknown", "n/a", "na", "none", "null", "-", "--", "?", "无", "未知", "不详", "暂无",
        "空", "test", "测试", "xxx",
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
}

// ---- as written --------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPii {
    /// `keep`, `mask` or `hash`. Default `keep`.
    pub phone: Option<PiiMode>,
    /// `keep`, `mask` or `hash`. Default `keep`.
    pub id_number: Option<PiiMode>,
    /// `keep`, `mask` or `hash`. Default `keep`.
    pub name: Option<PiiMode>,
    /// Environment variable holding the HMAC key for `hash`. Default `CRMDQ_PII_KEY`.
    pub hash_key_env: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPlaceholders {
    /// Values that mean "missing" in any field. Default: the contract's list.
    pub common: Option<Vec<String>>,
    /// Extra placeholder values per field name (any record type). Default: phone dummies, age `0`.
    pub fields: Option<BTreeMap<String, Vec<String>>>,
    /// Phones made of one repeated digit are placeholders. Default true.
    pub phone_all_same_digits: Option<bool>,
    /// Phones that are one run of consecutive digits are placeholders. Default true.
    pub phone_consecutive_digits: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRecordType {
    /// Fields that must be present and not placeholders for the entry to be complete.
    pub key_fields: Option<Vec<String>>,
    /// Reporting deadline of this record type.
    pub deadline: Option<RawDeadline>,
    /// Extra placeholders per field for this record type only.
    #[serde(default)]
    pub placeholders: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDeadline {
    /// Local time of day `HH:MM` (or `HH:MM:SS`). Default `10:00`.
    pub time: Option<ClockTime>,
    /// Days after the business date. Default 1.
    pub days: Option<u32>,
    /// `calendar_days` (default) or `working_days` (skips weekends and holidays, counts make-up workdays).
    pub calendar: Option<DayCount>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCalendar {
    /// Public holidays `YYYY-MM-DD`: not working days.
    #[serde(default)]
    pub holidays: Vec<Day>,
    /// Make-up working days `YYYY-MM-DD` (weekend days that are worked).
    #[serde(default)]
    pub workdays: Vec<Day>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawChecks {
    /// Age plausibility range, inclusive. Default 16..100.
    pub age_min: Option<i64>,
    pub age_max: Option<i64>,
    /// Satisfaction range, inclusive. Default 1..5.
    pub satisfaction_min: Option<i64>,
    pub satisfaction_max: Option<i64>,
    /// Allowed |age from id_number − age| in years. Default 1.
    pub id_age_tolerance_years: Option<i64>,
    /// entered_at may precede event_time by at most this many seconds. Default 300.
    pub entered_before_event_seconds: Option<WholeSeconds>,
    /// entered_at may follow the moment of ingestion by at most this many seconds. Default 300.
    pub entered_after_ingestion_seconds: Option<WholeSeconds>,
    /// Built-in checks to switch off, by name (e.g. `phone.format`).
    #[serde(default)]
    pub disable: Vec<String>,
    /// User checks: named SQL predicates over a record type's columns.
    #[serde(default)]
    pub user: Vec<RawUserCheck>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserCheck {
    /// Name reported in `dq_failed_checks`.
    pub name: String,
    /// Record type(s) the check applies to.
    pub record_type: OneOrMany<TypeName>,
    /// SQL boolean expression; the entry fails the check when it is FALSE (NULL passes).
    pub sql: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReference {
    pub path: String,
}

/// The raw keys this module validates (several top-level keys of the file).
pub(crate) struct RawParts {
    pub phone_region: Option<Region>,
    pub pii: RawPii,
    pub placeholders: RawPlaceholders,
    pub record_types: BTreeMap<String, RawRecordType>,
    pub checks: RawChecks,
    pub calendar: RawCalendar,
    pub reference_tables: BTreeMap<String, RawReference>,
}

// ---- validated ---------------------------------------------------------------------------

/// Everything the check stage compiles.
#[derive(Debug, Clone)]
pub struct ChecksConfig {
    /// ISO 3166 region whose numbering plan phones are validated against.
    pub phone_region: String,
    pub pii: PiiPolicy,
    pub record_types: BTreeMap<RecordType, RecordTypeConfig>,
    pub builtin: CheckParams,
    pub user: Vec<UserCheck>,
    pub calendar: Calendar,
    /// Reference tables for user checks: name → CSV path.
    pub reference_tables: BTreeMap<String, PathBuf>,
}

/// How a PII field is written to the warehouse. Checks always see the raw value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiMode {
    Keep,
    /// Keep the first 3 and last 4 characters, `*` in between (`138****5678`).
    Mask,
    /// HMAC-SHA256 with the pipeline's key, hex.
    Hash,
}

#[derive(Debug, Clone)]
pub struct PiiPolicy {
    /// Field name → mode, for the PII fields of the schemas (phone, id_number, name).
    pub modes: BTreeMap<String, PiiMode>,
    /// The HMAC key, present when some field is hashed.
    pub hash_key: Option<Vec<u8>>,
}

/// Whether a deadline counts calendar days or working days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum DayCount {
    #[serde(rename = "calendar_days")]
    Calendar,
    #[serde(rename = "working_days")]
    Working,
}

/// Deadline of a business date D: `time` local on D + `days` (calendar or working).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadlinePolicy {
    pub time: Time,
    pub days: u32,
    pub count: DayCount,
}

/// Holidays and make-up working days.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Calendar {
    pub holidays: BTreeSet<Date>,
    pub workdays: BTreeSet<Date>,
}

impl Calendar {
    /// Monday–Friday unless a holiday; weekend days listed as make-up workdays count.
    pub fn is_working_day(&self, d: Date) -> bool {
        if self.workdays.contains(&d) {
            return true;
        }
        if self.holidays.contains(&d) {
            return false;
        }
        !matches!(
            d.weekday(),
            jiff::civil::Weekday::Saturday | jiff::civil::Weekday::Sunday
        )
    }
}

/// Per-record-type settings.
#[derive(Debug, Clone)]
pub struct RecordTypeConfig {
    pub key_fields: Vec<String>,
    pub deadline: DeadlinePolicy,
    /// Field → normalised placeholder values (common + per field + per type).
    pub placeholders: BTreeMap<String, BTreeSet<String>>,
}

/// A named SQL predicate over one record type's columns.
#[derive(Debug, Clone)]
pub struct UserCheck {
    pub name: String,
    pub record_type: RecordType,
    pub sql: String,
}

/// Parameters of the built-in checks.
#[derive(Debug, Clone)]
pub struct CheckParams {
    pub age_min: i64,
    pub age_max: i64,
    pub satisfaction_min: i64,
    pub satisfaction_max: i64,
    pub id_age_tolerance_years: i64,
    pub entered_before_event: Duration,
    pub entered_after_ingestion: Duration,
    pub phone_all_same_digits: bool,
    pub phone_consecutive_digits: bool,
    pub disabled: BTreeSet<String>,
}

/// The normal form placeholders are compared in: trimmed and lower-cased (the NFKC step is
/// applied by the check stage to values; configured placeholders are written in ASCII or CJK).
pub fn normalize_placeholder(v: &str) -> String {
    v.trim().to_lowercase()
}

pub(crate) fn validate(raw: RawParts, cx: &Ctx<'_>) -> Result<ChecksConfig, ConfigError> {
    let pii = pii(raw.pii, cx)?;
    let record_types = record_types(
        raw.record_types,
        raw.placeholders.common,
        raw.placeholders.fields,
        cx,
    )?;
    let c = raw.checks;
    let builtin = CheckParams {
        age_min: c.age_min.unwrap_or(default::AGE_MIN),
        age_max: c.age_max.unwrap_or(default::AGE_MAX),
        satisfaction_min: c.satisfaction_min.unwrap_or(default::SATISFACTION_MIN),
        satisfaction_max: c.satisfaction_max.unwrap_or(default::SATISFACTION_MAX),
        id_age_tolerance_years: c
            .id_age_tolerance_years
            .unwrap_or(default::ID_AGE_TOLERANCE_YEARS),
        entered_before_event: c
            .entered_before_event_seconds
            .map_or(default::ENTERED_BEFORE_EVENT, |s| s.0),
        entered_after_ingestion: c
            .entered_after_ingestion_seconds
            .map_or(default::ENTERED_AFTER_INGESTION, |s| s.0),
        phone_all_same_digits: raw
            .placeholders
            .phone_all_same_digits
            .unwrap_or(default::PHONE_ALL_SAME_DIGITS),
        phone_consecutive_digits: raw
            .placeholders
            .phone_consecutive_digits
            .unwrap_or(default::PHONE_CONSECUTIVE_DIGITS),
        disabled: c.disable.into_iter().collect(),
    };
    if builtin.age_min > builtin.age_max {
        return Err(cx.err("checks.age_min", "age_min is greater than age_max"));
    }
    let mut user = Vec::new();
    let mut names = BTreeSet::new();
    for (i, u) in c.user.into_iter().enumerate() {
        let key = format!("checks.user[{i}]");
        if u.name.trim().is_empty() || !names.insert(u.name.clone()) {
            return Err(cx.err(
                &format!("{key}.name"),
                format!("user check name `{}` is empty or repeated", u.name),
            ));
        }
        if u.sql.trim().is_empty() {
            return Err(cx.err(&format!("{key}.sql"), "sql is empty"));
        }
        let types = match u.record_type {
            OneOrMany::One(t) => vec![t],
            OneOrMany::Many(v) => v,
        };
        for t in types {
            user.push(UserCheck {
                name: u.name.clone(),
                record_type: t.0,
                sql: u.sql.clone(),
            });
        }
    }
    Ok(ChecksConfig {
        phone_region: raw
            .phone_region
            .map_or_else(|| default::PHONE_REGION.to_string(), |r| r.0),
        pii,
        record_types,
        builtin,
        user,
        calendar: Calendar {
            holidays: raw.calendar.holidays.into_iter().map(|d| d.0).collect(),
            workdays: raw.calendar.workdays.into_iter().map(|d| d.0).collect(),
        },
        reference_tables: raw
            .reference_tables
            .into_iter()
            .map(|(k, v)| (k, cx.base.join(v.path)))
            .collect(),
    })
}

fn pii(raw: RawPii, cx: &Ctx<'_>) -> Result<PiiPolicy, ConfigError> {
    let mut modes = BTreeMap::new();
    for (field, mode) in [
        ("phone", raw.phone),
        ("id_number", raw.id_number),
        ("name", raw.name),
    ] {
        modes.insert(field.to_string(), mode.unwrap_or(PiiMode::Keep));
    }
    let hash_key = if modes.values().any(|m| *m == PiiMode::Hash) {
        let var = raw
            .hash_key_env
            .unwrap_or_else(|| default::PII_HASH_KEY_ENV.into());
        match (cx.env)(&var) {
            Some(k) if !k.is_empty() => Some(k.into_bytes()),
            _ => {
                return Err(cx.err(
                    "pii",
                    format!(
                        "a field is hashed but environment variable `{var}` (the HMAC key) is not set"
                    ),
                ));
            }
        }
    } else {
        None
    };
    Ok(PiiPolicy { modes, hash_key })
}

fn record_types(
    mut raw: BTreeMap<String, RawRecordType>,
    common: Option<Vec<String>>,
    per_field: Option<BTreeMap<String, Vec<String>>>,
    cx: &Ctx<'_>,
) -> Result<BTreeMap<RecordType, RecordTypeConfig>, ConfigError> {
    let common: Vec<String> = common.unwrap_or_else(|| {
        default::PLACEHOLDERS
            .iter()
            .map(|s| (*s).to_string())
            .collect()
    });
    let per_field = per_field.unwrap_or_else(default::field_placeholders);
    for name in raw.keys() {
        name.parse::<RecordType>()
            .map_err(|e| cx.err(&format!("record_types.{name}"), e.to_string()))?;
    }
    let mut out = BTreeMap::new();
    for rt in RecordType::ALL {
        let r = raw.remove(rt.as_str()).unwrap_or_default();
        let key = format!("record_types.{rt}");
        let schema = record_schema(rt);
        let key_fields = r.key_fields.unwrap_or_else(|| {
            default::key_fields(rt)
                .iter()
                .map(|s| (*s).to_string())
                .collect()
        });
        for f in &key_fields {
            if schema.field(f).is_none() {
                return Err(cx.err(
                    &format!("{key}.key_fields"),
                    format!("`{f}` is not a field of {rt}"),
                ));
            }
        }
        for f in r.placeholders.keys() {
            if schema.field(f).is_none() {
                return Err(cx.err(
                    &format!("{key}.placeholders.{f}"),
                    format!("`{f}` is not a field of {rt}"),
                ));
            }
        }
        let d = r.deadline.unwrap_or_default();
        let deadline = DeadlinePolicy {
            time: d.time.map_or(default::DEADLINE_TIME, |t| t.0),
            days: d.days.unwrap_or(default::DEADLINE_DAYS),
            count: d.calendar.unwrap_or(DayCount::Calendar),
        };
        let mut placeholders = BTreeMap::new();
        for f in &schema.fields {
            let mut set: BTreeSet<String> =
                common.iter().map(|v| normalize_placeholder(v)).collect();
            for v in per_field.get(&f.name).into_iter().flatten() {
                set.insert(normalize_placeholder(v));
            }
            for v in r.placeholders.get(&f.name).into_iter().flatten() {
                set.insert(normalize_placeholder(v));
            }
            placeholders.insert(f.name.clone(), set);
        }
        out.insert(
            rt,
            RecordTypeConfig {
                key_fields,
                deadline,
                placeholders,
            },
        );
    }
    Ok(out)
}
