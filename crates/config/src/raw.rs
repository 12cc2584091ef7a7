//! The pipeline file as written: serde structs mirroring the YAML, every key documented,
//! unknown keys rejected. Nothing here is validated beyond its YAML type; `crate::validate`
//! turns it into a [`crate::Pipeline`].

use std::collections::BTreeMap;

use serde::Deserialize;

/// Top level of a pipeline file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Name of the pipeline (used in logs and metrics). Default `crmdq`.
    pub name: Option<String>,
    /// IANA time zone in which business dates and deadlines are computed and offset-less
    /// timestamps are read. Default `Asia/Shanghai`.
    pub time_zone: Option<String>,
    /// ISO 3166 region whose numbering plan phones are validated against. Default `CN`.
    pub phone_region: Option<String>,
    /// Where records come from.
    #[serde(default)]
    pub source: RawSource,
    /// Where checked records land.
    #[serde(default)]
    pub warehouse: RawWarehouse,
    /// Roster file (CSV or Parquet), relative to the pipeline file's folder.
    pub roster: Option<RawRoster>,
    /// Reference tables for user checks: name → `{path}` (CSV with a header).
    #[serde(default)]
    pub reference_tables: BTreeMap<String, RawReference>,
    /// How personally identifiable fields are written.
    #[serde(default)]
    pub pii: RawPii,
    /// Placeholder values that count as missing.
    #[serde(default)]
    pub placeholders: RawPlaceholders,
    /// Per record type: key fields, deadline, extra placeholders.
    #[serde(default)]
    pub record_types: BTreeMap<String, RawRecordType>,
    /// Parameters of the built-in checks, and user checks.
    #[serde(default)]
    pub checks: RawChecks,
    /// Working-day calendar used by deadlines with `calendar: working_days`.
    #[serde(default)]
    pub calendar: RawCalendar,
    /// Metric weights per role (`sales_rep`, `sales_assistant`, `service_agent`, `manager`,
    /// `unknown`) and for teams (`team`).
    #[serde(default)]
    pub scorecards: BTreeMap<String, BTreeMap<String, f64>>,
    /// Credentials of the SQL endpoint (`crmdq serve`).
    #[serde(default)]
    pub sql: RawSql,
    /// The SQL endpoint and HTTP surfaces (`crmdq serve`, `crmdq run --http-listen`).
    #[serde(default)]
    pub serve: RawServe,
    /// Alert rules, receivers and routes (`crmdq alerts`, after `score`, inside `run`).
    #[serde(default)]
    pub alerts: RawAlerts,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// A person or team with fewer entries on the day is never judged.
    pub min_entries: Option<u64>,
    /// A firing alert is notified again after this long while it keeps firing.
    pub repeat_interval_hours: Option<f64>,
    /// How often `run` evaluates the pipeline-health rules.
    pub evaluate_every_seconds: Option<f64>,
    /// An event not yet delivered is retried by every later evaluation until it is this
    /// old (then it is logged and counted as expired).
    pub max_pending_hours: Option<f64>,
    #[serde(default)]
    pub receivers: BTreeMap<String, RawReceiver>,
    #[serde(default)]
    pub routes: RawRoutes,
    #[serde(default)]
    pub rules: Vec<RawAlertRule>,
}

impl RawAlerts {
    pub fn alerts_min_entries(&self) -> u64 {
        self.min_entries.unwrap_or(5)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceiver {
    /// `webhook`, `alertmanager`, `slack`, `wecom` or `dingtalk`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Endpoint URL (Alertmanager: its base URL). Empty: the receiver is disabled.
    pub url: String,
    /// Environment variable holding the signing secret (webhook HMAC, DingTalk sign).
    pub secret_env: Option<String>,
    pub timeout_seconds: Option<f64>,
    pub retries: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRoutes {
    /// Receiver of pipeline-scope alerts.
    pub pipeline: Option<String>,
    /// Receivers of person- and team-scope alerts, by the team's manager id; `default`
    /// for managers not listed (and subjects without a manager).
    #[serde(default)]
    pub managers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertRule {
    pub name: String,
    /// `person`, `team` or `pipeline`.
    pub scope: String,
    /// `info`, `warning` or `critical`.
    pub severity: Option<String>,
    pub metric: String,
    pub below: Option<f64>,
    pub above: Option<f64>,
    pub drop: Option<RawDrop>,
    pub min_entries: Option<u64>,
    /// Pipeline scope: the window of `dead_letter_ratio`.
    pub window_hours: Option<f64>,
    /// Pipeline scope: the topic of `topic_silence_seconds`.
    pub topic: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrop {
    /// Trailing business days forming the subject's own baseline.
    pub days: Option<u32>,
    /// Fire when the value is more than this many standard deviations below the mean.
    pub stddevs: Option<f64>,
    /// Fire when the value is more than this below the baseline median.
    pub below_median: Option<f64>,
    /// Days of history (with enough entries) needed before the subject is judged.
    pub min_history: Option<u32>,
    /// Never fire for a drop smaller than this (a perfectly stable baseline has sd 0).
    pub min_drop: Option<f64>,
}

/// The roster: a path to a roster CSV in the contract's columns, or `{path, mapping}`
/// deriving those columns from another table by SQL expressions.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRoster {
    Path(String),
    Mapped {
        path: String,
        #[serde(default)]
        mapping: BTreeMap<String, String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReference {
    pub path: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    /// PostgreSQL-protocol listen address (`--pg-listen` overrides it).
    pub pg_listen: Option<String>,
    /// HTTP listen address (`--http-listen` overrides it).
    pub http_listen: Option<String>,
    /// PEM certificate chain and PKCS#8 key: with both, the SQL endpoint offers TLS.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// Accept SQL clients without a password (loopback binds only). Off unless asked for.
    pub trust: Option<bool>,
    /// Failed logins per client address per minute before further attempts are refused.
    pub max_failed_logins: Option<u32>,
    /// Concurrent SQL connections at most.
    pub max_connections: Option<usize>,
    /// `/readyz` of `run`: ready while the summed consumer lag is at most this.
    pub ready_max_lag: Option<i64>,
    /// `run`: seconds without progress, with messages waiting, before a partition counts
    /// as stalled.
    pub stall_seconds: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub kafka: Option<RawKafka>,
    /// Options for CSV input files.
    #[serde(default)]
    pub csv: RawCsv,
    /// Messages larger than this many bytes become `too_large` dead letters. Default 16 MiB.
    pub max_message_bytes: Option<u64>,
    /// Format of file inputs, `csv` or `ndjson` (default: from the file name).
    pub format: Option<String>,
    /// Contract field → SQL expression over the input's own columns (file inputs).
    #[serde(default)]
    pub mapping: BTreeMap<String, String>,
    /// Input values that mean "missing" (compared after trimming), replaced by NULL before
    /// the mapping.
    #[serde(default)]
    pub placeholders: Vec<String>,
    /// With a mapping, keep the input's unmapped columns (they land in `extra`). Default true.
    pub keep_unmapped: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawKafka {
    /// Comma-separated `host:port` list; `--brokers` overrides it.
    pub bootstrap_servers: Option<String>,
    /// Consumer group id. Default `crmdq`.
    pub group_id: Option<String>,
    /// Topic → record type. An empty value (`~`) means record_type is in each message.
    #[serde(default)]
    pub topics: BTreeMap<String, Option<String>>,
    /// Any librdkafka property, passed through (e.g. `security.protocol`, `sasl.mechanism`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// How often `run` commits what it has buffered, in seconds. Default 5.
    pub commit_interval_seconds: Option<f64>,
    /// Also produce every dead letter (its raw bytes, with the reason and source position
    /// as headers) to this topic, at least once. Unset: the warehouse table only.
    pub dead_letter_topic: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCsv {
    /// Field delimiter, one byte. Default `,`.
    pub delimiter: Option<String>,
    /// Whether the first row is a header. Default true.
    pub has_header: Option<bool>,
    /// Record type of CSV rows without a record_type column.
    pub record_type: Option<String>,
    /// Quote character, one byte. Default `"`.
    pub quote: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawWarehouse {
    /// Directory (relative to the pipeline file) or `file://` URL. `--warehouse` overrides it.
    pub path: Option<String>,
    /// A file is closed when its encoded size reaches this many bytes. Default 128 MiB.
    pub max_file_bytes: Option<u64>,
    /// A file is closed at this many rows. Default 1,000,000.
    pub max_file_rows: Option<u64>,
    /// A file is closed when it has been open this many seconds. Default 300.
    pub max_file_age_seconds: Option<f64>,
    /// At most this many files open at once; the largest is closed to make room. Default 32.
    pub max_open_writers: Option<u64>,
    /// Buffered (not yet committed) bytes that force a commit. Default 256 MiB.
    pub max_buffered_bytes: Option<u64>,
    /// zstd level of the Parquet files. Default 3.
    pub zstd_level: Option<i32>,
    /// Rows per Parquet row group. Default 128 Ki.
    pub row_group_rows: Option<u64>,
    /// Files closed with less Arrow data than this are LZ4_RAW, not zstd. Default
    /// 131072 (128 KiB); 0: always zstd.
    pub small_file_bytes: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPii {
    /// `keep`, `mask` or `hash`. Default `keep`.
    pub phone: Option<String>,
    /// `keep`, `mask` or `hash`. Default `keep`.
    pub id_number: Option<String>,
    /// `keep`, `mask` or `hash`. Default `keep`.
    pub name: Option<String>,
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
    pub time: Option<String>,
    /// Days after the business date. Default 1.
    pub days: Option<u32>,
    /// `calendar_days` (default) or `working_days` (skips weekends and holidays, counts make-up workdays).
    pub calendar: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawCalendar {
    /// Public holidays `YYYY-MM-DD`: not working days.
    #[serde(default)]
    pub holidays: Vec<String>,
    /// Make-up working days `YYYY-MM-DD` (weekend days that are worked).
    #[serde(default)]
    pub workdays: Vec<String>,
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
    pub entered_before_event_seconds: Option<i64>,
    /// entered_at may follow the moment of ingestion by at most this many seconds. Default 300.
    pub entered_after_ingestion_seconds: Option<i64>,
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
    pub record_type: StringOrList,
    /// SQL boolean expression; the entry fails the check when it is FALSE (NULL passes).
    pub sql: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StringOrList {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSql {
    /// User name of the SQL endpoint. Default from `CRMDQ_SQL_USER`.
    pub user: Option<String>,
    /// Password of the SQL endpoint. Default from `CRMDQ_SQL_PASSWORD`.
    pub password: Option<String>,
}
