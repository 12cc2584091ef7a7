//! crmdq-config: the pipeline file.
//!
//! A pipeline file is YAML (parsed with `serde_yaml_ng`): `${VAR}` is replaced by the
//! environment first, then the text is read into the raw structs of [`raw`] (unknown keys
//! rejected) and validated into a [`Pipeline`] whose fields are typed (time zones, enums,
//! durations, non-zero sizes). Every error names the file, the line and the key.
//! Defaults live here and only here ([`defaults`]).

pub mod defaults;
pub mod raw;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crmdq_schema::{RecordType, record_schema};
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;

/// A pipeline file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: key `{key}`: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
}

impl ConfigError {
    fn invalid(path: &Path, text: &str, key: &str, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line: locate(text, key).unwrap_or(1),
            key: key.to_string(),
            message: message.into(),
        }
    }
}

/// How a PII field is written to the warehouse. Checks always see the raw value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayCount {
    Calendar,
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

#[derive(Debug, Clone)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    pub group_id: String,
    /// Topic → record type implied by the topic (None: in each message).
    pub topics: BTreeMap<String, Option<RecordType>>,
    pub properties: BTreeMap<String, String>,
    pub commit_interval: Duration,
    /// Dead letters are also produced to this topic (at least once).
    pub dead_letter_topic: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub delimiter: u8,
    pub quote: u8,
    pub has_header: bool,
    pub record_type: Option<RecordType>,
}

/// A declared file-input format (`source.format`), overriding the file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeclaredFormat {
    Csv,
    Ndjson,
}

/// How a file input's own columns become the contract's fields.
#[derive(Debug, Clone, Default)]
pub struct SourceMapping {
    /// (field, SQL expression over the input's columns), in file order. The pseudo column
    /// `_line` is the input line number.
    pub fields: Vec<(String, String)>,
    /// Input values that mean missing (trimmed, exact), NULL before mapping.
    pub placeholders: BTreeSet<String>,
    pub keep_unmapped: bool,
}

impl SourceMapping {
    pub fn is_active(&self) -> bool {
        !self.fields.is_empty() || !self.placeholders.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct WarehouseConfig {
    /// Local directory of the warehouse.
    pub path: PathBuf,
    pub max_file_bytes: u64,
    pub max_file_rows: u64,
    pub max_file_age: Duration,
    pub max_open_writers: usize,
    pub max_buffered_bytes: u64,
    pub zstd_level: i32,
    pub row_group_rows: usize,
    /// Files closed with less Arrow data than this are written with LZ4_RAW (0: never).
    pub small_file_bytes: u64,
}

/// Metric name → weight, for one role (or `team`).
pub type Scorecard = BTreeMap<String, f64>;

/// The metrics a scorecard may weigh (columns of `person_daily`).
pub const SCORE_METRICS: [&str; 7] = [
    "completeness_rate",
    "validity_rate",
    "timeliness_rate",
    "checkin_response_rate",
    "satisfaction_rate",
    "complaint_free_rate",
    "win_rate",
];

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub file: PathBuf,
    pub name: String,
    pub time_zone_name: String,
    pub time_zone: TimeZone,
    pub phone_region: String,
    pub kafka: Option<KafkaConfig>,
    pub csv: CsvOptions,
    /// `source.format`: None = by file name.
    pub input_format: Option<DeclaredFormat>,
    pub mapping: SourceMapping,
    pub max_message_bytes: usize,
    pub warehouse: WarehouseConfig,
    pub roster: Option<PathBuf>,
    /// Roster column → SQL expression over the roster file's own columns (empty: the file
    /// has the contract's columns).
    pub roster_mapping: BTreeMap<String, String>,
    /// Reference tables for user checks: name → CSV path.
    pub reference_tables: BTreeMap<String, PathBuf>,
    pub pii: PiiPolicy,
    pub record_types: BTreeMap<RecordType, RecordTypeConfig>,
    pub checks: CheckParams,
    pub user_checks: Vec<UserCheck>,
    pub calendar: Calendar,
    pub scorecards: BTreeMap<String, Scorecard>,
    pub sql_user: Option<String>,
    pub sql_password: Option<String>,
    pub serve: ServeConfig,
    pub alerts: AlertsConfig,
}

/// The roster's columns (contract section 4).
pub const ROSTER_COLUMNS: [&str; 7] = [
    "person_id",
    "name",
    "role",
    "team_id",
    "manager_id",
    "valid_from",
    "valid_to",
];

/// Default of `alerts.max_pending_hours`: three days of retries for an undelivered event.
pub const DEFAULT_MAX_PENDING_HOURS: f64 = 72.0;

/// Alerting: rules, receivers and routes.
#[derive(Debug, Clone, Default)]
pub struct AlertsConfig {
    pub min_entries: u64,
    pub repeat_interval: Duration,
    pub evaluate_every: Duration,
    /// How long an undelivered event stays pending (retried by later evaluations).
    pub max_pending: Duration,
    pub receivers: BTreeMap<String, Receiver>,
    /// Receiver of pipeline-scope alerts.
    pub pipeline_route: Option<String>,
    /// Manager id (or `default`) → receiver of person- and team-scope alerts.
    pub manager_routes: BTreeMap<String, String>,
    pub rules: Vec<AlertRule>,
}

impl AlertsConfig {
    /// What `check-config` warns about without rejecting the file: rules whose every
    /// routed receiver is disabled (empty url) or missing, so nothing they fire reaches
    /// anyone until a receiver is enabled or `crmdq alerts --webhook URL` delivers the
    /// pending events.
    pub fn warnings(&self) -> Vec<String> {
        let enabled = |name: &String| self.receivers.get(name).is_some_and(|r| !r.url.is_empty());
        let describe = |names: &[&String]| {
            if names.is_empty() {
                "no route".to_string()
            } else {
                names
                    .iter()
                    .map(|n| format!("`{n}` disabled (empty url)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let mut out = Vec::new();
        let has = |scopes: &[AlertScope]| self.rules.iter().any(|r| scopes.contains(&r.scope));
        let managers: Vec<&String> = self.manager_routes.values().collect();
        if has(&[AlertScope::Person, AlertScope::Team]) && !managers.iter().any(|n| enabled(n)) {
            out.push(format!(
                "alerts.routes.managers: every receiver of person and team alerts is off ({}); \
                 their events are recorded and stay pending until a receiver is enabled or \
                 `crmdq alerts --webhook URL` delivers them",
                describe(&managers)
            ));
        }
        let pipeline: Vec<&String> = self.pipeline_route.iter().collect();
        if has(&[AlertScope::Pipeline]) && !pipeline.iter().any(|n| enabled(n)) {
            out.push(format!(
                "alerts.routes.pipeline: the receiver of pipeline-health alerts is off ({}); \
                 their events are recorded and stay pending until a receiver is enabled or \
                 `crmdq alerts --webhook URL` delivers them",
                describe(&pipeline)
            ));
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiverKind {
    Webhook,
    Alertmanager,
    Slack,
    Wecom,
    Dingtalk,
}

/// Where notifications go.
#[derive(Clone)]
pub struct Receiver {
    pub name: String,
    pub kind: ReceiverKind,
    /// Empty: disabled (alerts are still evaluated and recorded).
    pub url: String,
    /// Signing secret (webhook HMAC-SHA256, DingTalk signed URL).
    pub secret: Option<String>,
    pub timeout: Duration,
    pub retries: u32,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertScope {
    Person,
    Team,
    Pipeline,
}

impl AlertScope {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertScope::Person => "person",
            AlertScope::Team => "team",
            AlertScope::Pipeline => "pipeline",
        }
    }
}

/// When a rule fires.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertCondition {
    Below(f64),
    Above(f64),
    /// Against the subject's own trailing baseline.
    Drop {
        days: u32,
        stddevs: Option<f64>,
        below_median: Option<f64>,
        min_history: u32,
        min_drop: f64,
    },
}

#[derive(Debug, Clone)]
pub struct AlertRule {
    pub name: String,
    pub scope: AlertScope,
    pub severity: String,
    pub metric: String,
    pub condition: AlertCondition,
    pub min_entries: u64,
    pub window: Duration,
    pub topic: Option<String>,
}

/// Metrics a person- or team-scope rule may watch (columns of the score tables).
pub const ALERT_SCORE_METRICS: [&str; 12] = [
    "completeness_rate",
    "validity_rate",
    "timeliness_rate",
    "score",
    "entries",
    "checkin_response_rate",
    "satisfaction_rate",
    "complaint_free_rate",
    "win_rate",
    "mean_satisfaction",
    "complaint_rate",
    "tickets",
];

/// Metrics a pipeline-scope rule may watch.
pub const ALERT_PIPELINE_METRICS: [&str; 4] = [
    "dead_letter_ratio",
    "freshness_seconds",
    "topic_silence_seconds",
    "consumer_lag_messages",
];

/// Where and how `serve` (and `run --http-listen`) listen.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub pg_listen: SocketAddr,
    pub http_listen: SocketAddr,
    /// (certificate chain, private key), both PEM.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub trust: bool,
    pub max_failed_logins: u32,
    pub max_connections: usize,
    pub ready_max_lag: i64,
    /// A partition with messages waiting whose position has not moved for this long is
    /// stalled: logged as an error, counted, and `run`'s `/readyz` fails.
    pub stall_after: std::time::Duration,
}

impl Pipeline {
    /// Read and validate a pipeline file.
    pub fn load(path: &Path) -> Result<Pipeline, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_str_at(&text, path, &|k| std::env::var(k).ok())
    }

    /// Validate pipeline text as if read from `path` (relative paths resolve against its
    /// folder), with `env` standing in for the environment.
    pub fn from_str_at(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Pipeline, ConfigError> {
        let expanded = expand_env(text, path, env)?;
        let de = serde_yaml_ng::Deserializer::from_str(&expanded);
        let raw: raw::RawPipeline = match serde_path_to_error::deserialize(de) {
            Ok(r) => r,
            Err(e) => {
                let key = e.path().to_string();
                let inner = e.into_inner();
                let line = inner.location().map_or(1, |l| l.line());
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    key: if key == "." { String::new() } else { key },
                    message: inner.to_string(),
                });
            }
        };
        validate(raw, text, path, env)
    }

    /// The pipeline file's folder, against which relative paths resolve.
    pub fn base_dir(&self) -> PathBuf {
        base_dir(&self.file)
    }

    pub fn record_type(&self, rt: RecordType) -> &RecordTypeConfig {
        &self.record_types[&rt]
    }

    /// The scorecard for a role, falling back to `default`.
    pub fn scorecard(&self, role: &str) -> &Scorecard {
        self.scorecards
            .get(role)
            .unwrap_or_else(|| &self.scorecards["default"])
    }
}

fn base_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Replace `${VAR}` and `${VAR:-default}`; an unset variable without default is an error.
fn expand_env(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let re =
        regex::Regex::new(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}").expect("static regex");
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split_inclusive('\n').enumerate() {
        // Comments are not expanded: a documented `${VAR}` in a comment is not required.
        let code_end = line.find(" #").map_or(line.len(), |p| p);
        let (code, comment) = if line.trim_start().starts_with('#') {
            ("", line)
        } else {
            line.split_at(code_end)
        };
        let mut err = None;
        let replaced = re.replace_all(code, |c: &regex::Captures<'_>| {
            let var = &c[1];
            match (env(var), c.get(2)) {
                (Some(v), _) => v,
                (None, Some(d)) => d.as_str().to_string(),
                (None, None) => {
                    err.get_or_insert(var.to_string());
                    String::new()
                }
            }
        });
        if let Some(var) = err {
            let key = line.split(':').next().unwrap_or("").trim().to_string();
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                line: i + 1,
                key,
                message: format!(
                    "environment variable `{var}` is not set (use `${{{var}:-default}}` for a default)"
                ),
            });
        }
        out.push_str(&replaced);
        out.push_str(comment);
    }
    Ok(out)
}

/// Best-effort line of a dotted key path (`warehouse.max_file_rows`, `record_types.customer`)
/// in YAML text: each segment is looked for below the previous one, deeper indented.
pub fn locate(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut start = 0usize;
    let mut min_indent = 0usize;
    let mut found = None;
    for seg in key.split('.').filter(|s| !s.is_empty()) {
        let seg = seg.split('[').next().unwrap_or(seg);
        let mut hit = None;
        for (i, l) in lines.iter().enumerate().skip(start) {
            let indent = l.len() - l.trim_start().len();
            let t = l.trim_start().trim_start_matches("- ");
            if found.is_some()
                && indent < min_indent
                && !l.trim().is_empty()
                && !l.trim_start().starts_with('#')
            {
                break;
            }
            let unquoted = t.trim_start_matches(['"', '\'']);
            if unquoted.starts_with(seg)
                && unquoted[seg.len()..]
                    .trim_start_matches(['"', '\''])
                    .starts_with(':')
            {
                hit = Some((i, indent + 1));
                break;
            }
        }
        match hit {
            Some((i, ind)) => {
                found = Some(i + 1);
                start = i + 1;
                min_indent = ind;
            }
            None => break,
        }
    }
    found
}

fn parse_time(s: &str) -> Option<Time> {
    let parts: Vec<&str> = s.split(':').collect();
    let num = |p: &str| p.parse::<i8>().ok();
    match parts.as_slice() {
        [h, m] => Time::new(num(h)?, num(m)?, 0, 0).ok(),
        [h, m, s] => Time::new(num(h)?, num(m)?, num(s)?, 0).ok(),
        _ => None,
    }
}

fn parse_pii(
    v: Option<&String>,
    text: &str,
    path: &Path,
    key: &str,
) -> Result<PiiMode, ConfigError> {
    match v.map(String::as_str) {
        None | Some("keep") => Ok(PiiMode::Keep),
        Some("mask") => Ok(PiiMode::Mask),
        Some("hash") => Ok(PiiMode::Hash),
        Some(other) => Err(ConfigError::invalid(
            path,
            text,
            key,
            format!("`{other}` is not one of keep, mask, hash"),
        )),
    }
}

fn positive(
    v: Option<u64>,
    default: u64,
    text: &str,
    path: &Path,
    key: &str,
) -> Result<u64, ConfigError> {
    match v {
        None => Ok(default),
        Some(0) => Err(ConfigError::invalid(
            path,
            text,
            key,
            "must be greater than 0",
        )),
        Some(n) => Ok(n),
    }
}

/// A whole number of seconds that may be 0 but not negative (a negative allowance used
/// to be clamped to 0 silently).
fn non_negative_seconds(
    v: Option<i64>,
    default: i64,
    text: &str,
    path: &Path,
    key: &str,
) -> Result<Duration, ConfigError> {
    let s = v.unwrap_or(default);
    u64::try_from(s).map(Duration::from_secs).map_err(|_| {
        ConfigError::invalid(
            path,
            text,
            key,
            format!("must be 0 or more seconds, not {s}"),
        )
    })
}

fn seconds(
    v: Option<f64>,
    default: f64,
    text: &str,
    path: &Path,
    key: &str,
) -> Result<Duration, ConfigError> {
    let s = v.unwrap_or(default);
    if !(s.is_finite() && s > 0.0) {
        return Err(ConfigError::invalid(
            path,
            text,
            key,
            "must be a positive number of seconds",
        ));
    }
    Ok(Duration::from_secs_f64(s))
}

fn validate(
    raw: raw::RawPipeline,
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::invalid(path, text, key, msg);
    let base = base_dir(path);

    let time_zone_name = raw
        .time_zone
        .unwrap_or_else(|| defaults::TIME_ZONE.to_string());
    let time_zone = TimeZone::get(&time_zone_name).map_err(|e| {
        err(
            "time_zone",
            format!("unknown time zone `{time_zone_name}`: {e}"),
        )
    })?;
    let phone_region = raw
        .phone_region
        .unwrap_or_else(|| defaults::PHONE_REGION.to_string())
        .to_uppercase();
    if phone_region.parse::<phonenumber_region::Region>().is_err() {
        return Err(err(
            "phone_region",
            format!("`{phone_region}` is not a two-letter region code"),
        ));
    }

    // Kafka source.
    let kafka = match raw.source.kafka {
        None => None,
        Some(k) => {
            let mut topics = BTreeMap::new();
            for (topic, rt) in k.topics {
                let rt = match rt.as_deref() {
                    None | Some("") => None,
                    Some(s) => Some(s.parse::<RecordType>().map_err(|e| {
                        err(&format!("source.kafka.topics.{topic}"), e.to_string())
                    })?),
                };
                topics.insert(topic, rt);
            }
            if topics.is_empty() {
                return Err(err(
                    "source.kafka.topics",
                    "at least one topic is required".into(),
                ));
            }
            let dead_letter_topic = match k.dead_letter_topic {
                Some(t) if t.trim().is_empty() || topics.contains_key(&t) => {
                    return Err(err(
                        "source.kafka.dead_letter_topic",
                        format!("`{t}` must be a topic name that is not consumed by this pipeline"),
                    ));
                }
                other => other,
            };
            Some(KafkaConfig {
                bootstrap_servers: k
                    .bootstrap_servers
                    .unwrap_or_else(|| "localhost:9092".into()),
                group_id: k.group_id.unwrap_or_else(|| "crmdq".into()),
                topics,
                properties: k.properties,
                commit_interval: seconds(
                    k.commit_interval_seconds,
                    5.0,
                    text,
                    path,
                    "source.kafka.commit_interval_seconds",
                )?,
                dead_letter_topic,
            })
        }
    };
    let csv = {
        let delimiter = match raw.source.csv.delimiter.as_deref() {
            None => b',',
            Some("\\t" | "\t") => b'\t',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => {
                return Err(err(
                    "source.csv.delimiter",
                    format!("`{d}` is not a single byte"),
                ));
            }
        };
        let record_type = raw
            .source
            .csv
            .record_type
            .map(|s| {
                s.parse::<RecordType>()
                    .map_err(|e| err("source.csv.record_type", e.to_string()))
            })
            .transpose()?;
        let quote = match raw.source.csv.quote.as_deref() {
            None => b'"',
            Some(q) if q.len() == 1 => q.as_bytes()[0],
            Some(q) => {
                return Err(err(
                    "source.csv.quote",
                    format!("`{q}` is not a single byte"),
                ));
            }
        };
        CsvOptions {
            delimiter,
            quote,
            has_header: raw.source.csv.has_header.unwrap_or(true),
            record_type,
        }
    };
    let max_message_bytes = positive(
        raw.source.max_message_bytes,
        16 << 20,
        text,
        path,
        "source.max_message_bytes",
    )? as usize;

    // Warehouse.
    let w = raw.warehouse;
    let wpath = w.path.unwrap_or_else(|| "warehouse".into());
    let wpath = wpath
        .strip_prefix("file://")
        .map_or_else(|| wpath.clone(), str::to_string);
    if wpath.contains("://") {
        return Err(err(
            "warehouse.path",
            format!("`{wpath}`: only local paths and file:// URLs are supported in this version"),
        ));
    }
    let warehouse = WarehouseConfig {
        path: base.join(wpath),
        max_file_bytes: positive(
            w.max_file_bytes,
            128 << 20,
            text,
            path,
            "warehouse.max_file_bytes",
        )?,
        max_file_rows: positive(
            w.max_file_rows,
            1_000_000,
            text,
            path,
            "warehouse.max_file_rows",
        )?,
        max_file_age: seconds(
            w.max_file_age_seconds,
            300.0,
            text,
            path,
            "warehouse.max_file_age_seconds",
        )?,
        max_open_writers: positive(
            w.max_open_writers,
            32,
            text,
            path,
            "warehouse.max_open_writers",
        )? as usize,
        max_buffered_bytes: positive(
            w.max_buffered_bytes,
            256 << 20,
            text,
            path,
            "warehouse.max_buffered_bytes",
        )?,
        zstd_level: match w.zstd_level {
            None => 3,
            Some(l) if (1..=22).contains(&l) => l,
            Some(l) => {
                return Err(err(
                    "warehouse.zstd_level",
                    format!("{l} is outside 1..=22"),
                ));
            }
        },
        row_group_rows: positive(
            w.row_group_rows,
            128 * 1024,
            text,
            path,
            "warehouse.row_group_rows",
        )? as usize,
        small_file_bytes: w.small_file_bytes.unwrap_or(128 << 10),
    };

    // PII.
    let mut modes = BTreeMap::new();
    modes.insert(
        "phone".to_string(),
        parse_pii(raw.pii.phone.as_ref(), text, path, "pii.phone")?,
    );
    modes.insert(
        "id_number".to_string(),
        parse_pii(raw.pii.id_number.as_ref(), text, path, "pii.id_number")?,
    );
    modes.insert(
        "name".to_string(),
        parse_pii(raw.pii.name.as_ref(), text, path, "pii.name")?,
    );
    let hash_key = if modes.values().any(|m| *m == PiiMode::Hash) {
        let var = raw
            .pii
            .hash_key_env
            .unwrap_or_else(|| "CRMDQ_PII_KEY".into());
        match env(&var) {
            Some(k) if !k.is_empty() => Some(k.into_bytes()),
            _ => {
                return Err(err(
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

    // Placeholders.
    let common: Vec<String> = raw.placeholders.common.unwrap_or_else(|| {
        defaults::PLACEHOLDERS
            .iter()
            .map(|s| (*s).to_string())
            .collect()
    });
    let per_field: BTreeMap<String, Vec<String>> = raw
        .placeholders
        .fields
        .unwrap_or_else(defaults::field_placeholders);

    // Record types.
    let mut raw_types = raw.record_types;
    for name in raw_types.keys() {
        name.parse::<RecordType>()
            .map_err(|e| err(&format!("record_types.{name}"), e.to_string()))?;
    }
    let calendar = Calendar {
        holidays: parse_dates(&raw.calendar.holidays, text, path, "calendar.holidays")?,
        workdays: parse_dates(&raw.calendar.workdays, text, path, "calendar.workdays")?,
    };
    let mut record_types = BTreeMap::new();
    for rt in RecordType::ALL {
        let r = raw_types.remove(rt.as_str()).unwrap_or_default();
        let key = format!("record_types.{rt}");
        let schema = record_schema(rt);
        let key_fields = r.key_fields.unwrap_or_else(|| {
            defaults::key_fields(rt)
                .iter()
                .map(|s| (*s).to_string())
                .collect()
        });
        for f in &key_fields {
            if schema.field(f).is_none() {
                return Err(err(
                    &format!("{key}.key_fields"),
                    format!("`{f}` is not a field of {rt}"),
                ));
            }
        }
        let d = r.deadline.unwrap_or_default();
        let time_s = d.time.unwrap_or_else(|| defaults::DEADLINE_TIME.into());
        let deadline = DeadlinePolicy {
            time: parse_time(&time_s).ok_or_else(|| {
                err(
                    &format!("{key}.deadline.time"),
                    format!("`{time_s}` is not HH:MM or HH:MM:SS"),
                )
            })?,
            days: d.days.unwrap_or(defaults::DEADLINE_DAYS),
            count: match d.calendar.as_deref() {
                None | Some("calendar_days") => DayCount::Calendar,
                Some("working_days") => DayCount::Working,
                Some(o) => {
                    return Err(err(
                        &format!("{key}.deadline.calendar"),
                        format!("`{o}` is not calendar_days or working_days"),
                    ));
                }
            },
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
        for f in r.placeholders.keys() {
            if schema.field(f).is_none() {
                return Err(err(
                    &format!("{key}.placeholders"),
                    format!("`{f}` is not a field of {rt}"),
                ));
            }
        }
        record_types.insert(
            rt,
            RecordTypeConfig {
                key_fields,
                deadline,
                placeholders,
            },
        );
    }

    // Checks.
    let c = raw.checks;
    let checks = CheckParams {
        age_min: c.age_min.unwrap_or(16),
        age_max: c.age_max.unwrap_or(100),
        satisfaction_min: c.satisfaction_min.unwrap_or(1),
        satisfaction_max: c.satisfaction_max.unwrap_or(5),
        id_age_tolerance_years: c.id_age_tolerance_years.unwrap_or(1),
        entered_before_event: non_negative_seconds(
            c.entered_before_event_seconds,
            300,
            text,
            path,
            "checks.entered_before_event_seconds",
        )?,
        entered_after_ingestion: non_negative_seconds(
            c.entered_after_ingestion_seconds,
            300,
            text,
            path,
            "checks.entered_after_ingestion_seconds",
        )?,
        phone_all_same_digits: raw.placeholders.phone_all_same_digits.unwrap_or(true),
        phone_consecutive_digits: raw.placeholders.phone_consecutive_digits.unwrap_or(true),
        disabled: c.disable.into_iter().collect(),
    };
    if checks.age_min > checks.age_max {
        return Err(err(
            "checks.age_min",
            "age_min is greater than age_max".into(),
        ));
    }
    let mut user_checks = Vec::new();
    let mut names = BTreeSet::new();
    for (i, u) in c.user.into_iter().enumerate() {
        let key = format!("checks.user[{i}]");
        if u.name.trim().is_empty() || !names.insert(u.name.clone()) {
            return Err(err(
                &key,
                format!("user check name `{}` is empty or repeated", u.name),
            ));
        }
        if u.sql.trim().is_empty() {
            return Err(err(&key, "sql is empty".into()));
        }
        let types = match u.record_type {
            raw::StringOrList::One(s) => vec![s],
            raw::StringOrList::Many(v) => v,
        };
        for t in types {
            let record_type = t
                .parse::<RecordType>()
                .map_err(|e| err(&key, e.to_string()))?;
            user_checks.push(UserCheck {
                name: u.name.clone(),
                record_type,
                sql: u.sql.clone(),
            });
        }
    }

    // Scorecards.
    let mut scorecards = defaults::scorecards();
    for (role, weights) in raw.scorecards {
        for (metric, w) in &weights {
            if !SCORE_METRICS.contains(&metric.as_str()) {
                return Err(err(
                    &format!("scorecards.{role}"),
                    format!(
                        "unknown metric `{metric}` (expected one of {})",
                        SCORE_METRICS.join(", ")
                    ),
                ));
            }
            if !(w.is_finite() && *w >= 0.0) {
                return Err(err(
                    &format!("scorecards.{role}.{metric}"),
                    "weight must be a non-negative number".into(),
                ));
            }
        }
        if weights.values().sum::<f64>() <= 0.0 {
            return Err(err(
                &format!("scorecards.{role}"),
                "weights must not all be zero".into(),
            ));
        }
        scorecards.insert(role, weights);
    }

    let input_format = match raw.source.format.as_deref() {
        None => None,
        Some("csv") => Some(DeclaredFormat::Csv),
        Some("ndjson" | "jsonl" | "json") => Some(DeclaredFormat::Ndjson),
        Some(other) => {
            return Err(ConfigError::invalid(
                path,
                text,
                "source.format",
                format!("`{other}` is not csv or ndjson"),
            ));
        }
    };
    let mapping = SourceMapping {
        fields: mapping_fields(&raw.source.mapping, text, path)?,
        placeholders: raw
            .source
            .placeholders
            .iter()
            .map(|v| v.trim().to_string())
            .collect(),
        keep_unmapped: raw.source.keep_unmapped.unwrap_or(true),
    };
    let (roster, roster_mapping) = match raw.roster {
        None => (None, BTreeMap::new()),
        Some(raw::RawRoster::Path(p)) => (Some(base.join(p)), BTreeMap::new()),
        Some(raw::RawRoster::Mapped { path: p, mapping }) => {
            for k in mapping.keys() {
                if !ROSTER_COLUMNS.contains(&k.as_str()) {
                    return Err(ConfigError::invalid(
                        path,
                        text,
                        &format!("roster.mapping.{k}"),
                        format!("not a roster column ({})", ROSTER_COLUMNS.join(", ")),
                    ));
                }
            }
            (Some(base.join(p)), mapping)
        }
    };
    let serve = serve_config(raw.serve, &base, text, path)?;
    let alerts = alerts_config(raw.alerts, text, path, env)?;
    Ok(Pipeline {
        file: path.to_path_buf(),
        name: raw.name.unwrap_or_else(|| "crmdq".into()),
        time_zone_name,
        time_zone,
        phone_region,
        kafka,
        csv,
        input_format,
        mapping,
        max_message_bytes,
        warehouse,
        roster,
        roster_mapping,
        reference_tables: raw
            .reference_tables
            .into_iter()
            .map(|(k, v)| (k, base.join(v.path)))
            .collect(),
        pii: PiiPolicy { modes, hash_key },
        record_types,
        checks,
        user_checks,
        calendar,
        scorecards,
        sql_user: raw.sql.user.or_else(|| env("CRMDQ_SQL_USER")),
        sql_password: raw.sql.password.or_else(|| env("CRMDQ_SQL_PASSWORD")),
        serve,
        alerts,
    })
}

/// The mapping in the order the file lists it (YAML maps keep order in the text; the
/// raw map is sorted, so recover the order from the text positions of the keys).
fn mapping_fields(
    raw: &BTreeMap<String, String>,
    text: &str,
    path: &Path,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut v: Vec<(usize, String, String)> = Vec::new();
    for (k, sql) in raw {
        if sql.trim().is_empty() {
            return Err(ConfigError::invalid(
                path,
                text,
                &format!("source.mapping.{k}"),
                "empty expression",
            ));
        }
        let line = locate(text, &format!("source.mapping.{k}")).unwrap_or(usize::MAX);
        v.push((line, k.clone(), sql.clone()));
    }
    v.sort();
    Ok(v.into_iter().map(|(_, k, s)| (k, s)).collect())
}

fn socket_addr(
    v: Option<String>,
    default: &str,
    text: &str,
    path: &Path,
    key: &str,
) -> Result<SocketAddr, ConfigError> {
    let v = v.unwrap_or_else(|| default.to_string());
    v.parse().map_err(|e| {
        ConfigError::invalid(
            path,
            text,
            key,
            format!("`{v}` is not an IP:port address ({e})"),
        )
    })
}

fn serve_config(
    raw: raw::RawServe,
    base: &Path,
    text: &str,
    path: &Path,
) -> Result<ServeConfig, ConfigError> {
    let tls = match (raw.tls_cert, raw.tls_key) {
        (Some(c), Some(k)) => Some((base.join(c), base.join(k))),
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::invalid(
                path,
                text,
                "serve.tls_cert",
                "needs serve.tls_key too",
            ));
        }
        (None, Some(_)) => {
            return Err(ConfigError::invalid(
                path,
                text,
                "serve.tls_key",
                "needs serve.tls_cert too",
            ));
        }
    };
    Ok(ServeConfig {
        pg_listen: socket_addr(
            raw.pg_listen,
            defaults::PG_LISTEN,
            text,
            path,
            "serve.pg_listen",
        )?,
        http_listen: socket_addr(
            raw.http_listen,
            defaults::HTTP_LISTEN,
            text,
            path,
            "serve.http_listen",
        )?,
        tls,
        trust: raw.trust.unwrap_or(false),
        max_failed_logins: raw.max_failed_logins.unwrap_or(defaults::MAX_FAILED_LOGINS),
        max_connections: raw.max_connections.unwrap_or(defaults::MAX_CONNECTIONS),
        ready_max_lag: raw.ready_max_lag.unwrap_or(defaults::READY_MAX_LAG),
        stall_after: seconds(
            raw.stall_seconds,
            defaults::STALL_SECONDS,
            text,
            path,
            "serve.stall_seconds",
        )?,
    })
}

fn alerts_config(
    raw: raw::RawAlerts,
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<AlertsConfig, ConfigError> {
    let err = |key: &str, msg: String| ConfigError::invalid(path, text, key, msg);
    let min_entries = raw.alerts_min_entries();
    let mut receivers = BTreeMap::new();
    for (name, r) in raw.receivers {
        let key = format!("alerts.receivers.{name}");
        let kind = match r.kind.as_str() {
            "webhook" => ReceiverKind::Webhook,
            "alertmanager" => ReceiverKind::Alertmanager,
            "slack" => ReceiverKind::Slack,
            "wecom" => ReceiverKind::Wecom,
            "dingtalk" => ReceiverKind::Dingtalk,
            other => {
                return Err(err(
                    &format!("{key}.type"),
                    format!(
                        "`{other}` is not a receiver type (webhook, alertmanager, slack, wecom, dingtalk)"
                    ),
                ));
            }
        };
        if !(r.url.is_empty() || r.url.starts_with("http://") || r.url.starts_with("https://")) {
            return Err(err(
                &format!("{key}.url"),
                format!("`{}` is not an http(s) URL", r.url),
            ));
        }
        let secret = match &r.secret_env {
            None => None,
            Some(var) => Some(env(var).ok_or_else(|| {
                err(
                    &format!("{key}.secret_env"),
                    format!("environment variable {var} is not set"),
                )
            })?),
        };
        receivers.insert(
            name.clone(),
            Receiver {
                name: name.clone(),
                kind,
                url: r.url,
                secret,
                timeout: seconds(
                    r.timeout_seconds,
                    10.0,
                    text,
                    path,
                    &format!("{key}.timeout_seconds"),
                )?,
                retries: r.retries.unwrap_or(3),
            },
        );
    }
    let known = |key: &str, name: &str| -> Result<(), ConfigError> {
        if receivers.contains_key(name) {
            Ok(())
        } else {
            Err(err(
                key,
                format!("no receiver named `{name}` in alerts.receivers"),
            ))
        }
    };
    if let Some(r) = &raw.routes.pipeline {
        known("alerts.routes.pipeline", r)?;
    }
    for (m, r) in &raw.routes.managers {
        known(&format!("alerts.routes.managers.{m}"), r)?;
    }
    let mut rules = Vec::new();
    let mut names = BTreeSet::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        let key = format!("alerts.rules[{i}]");
        if !names.insert(r.name.clone()) {
            return Err(err(
                &format!("{key}.name"),
                format!("duplicate rule name `{}`", r.name),
            ));
        }
        let scope = match r.scope.as_str() {
            "person" => AlertScope::Person,
            "team" => AlertScope::Team,
            "pipeline" => AlertScope::Pipeline,
            other => {
                return Err(err(
                    &format!("{key}.scope"),
                    format!("`{other}` is not a scope (person, team, pipeline)"),
                ));
            }
        };
        let metrics: &[&str] = if scope == AlertScope::Pipeline {
            &ALERT_PIPELINE_METRICS
        } else {
            &ALERT_SCORE_METRICS
        };
        if !metrics.contains(&r.metric.as_str()) {
            return Err(err(
                &format!("{key}.metric"),
                format!(
                    "`{}` is not a {} metric ({})",
                    r.metric,
                    scope.as_str(),
                    metrics.join(", ")
                ),
            ));
        }
        let severity = r.severity.unwrap_or_else(|| "warning".into());
        if !["info", "warning", "critical"].contains(&severity.as_str()) {
            return Err(err(
                &format!("{key}.severity"),
                format!("`{severity}` is not info, warning or critical"),
            ));
        }
        let condition = match (r.below, r.above, r.drop) {
            (Some(b), None, None) => AlertCondition::Below(b),
            (None, Some(a), None) => AlertCondition::Above(a),
            (None, None, Some(d)) => {
                if scope == AlertScope::Pipeline {
                    return Err(err(
                        &format!("{key}.drop"),
                        "pipeline-scope rules take `below` or `above`".into(),
                    ));
                }
                if d.stddevs.is_none() == d.below_median.is_none() {
                    return Err(err(
                        &format!("{key}.drop"),
                        "give exactly one of `stddevs` and `below_median`".into(),
                    ));
                }
                AlertCondition::Drop {
                    days: d.days.unwrap_or(14).max(1),
                    stddevs: d.stddevs,
                    below_median: d.below_median,
                    min_history: d.min_history.unwrap_or(7),
                    min_drop: d.min_drop.unwrap_or(0.1),
                }
            }
            _ => {
                return Err(err(
                    &key,
                    "give exactly one of `below`, `above` and `drop`".into(),
                ));
            }
        };
        rules.push(AlertRule {
            name: r.name,
            scope,
            severity,
            metric: r.metric,
            condition,
            min_entries: r.min_entries.unwrap_or(min_entries),
            window: seconds(
                r.window_hours.map(|h| h * 3600.0),
                24.0 * 3600.0,
                text,
                path,
                &format!("{key}.window_hours"),
            )?,
            topic: r.topic,
        });
    }
    Ok(AlertsConfig {
        min_entries,
        repeat_interval: seconds(
            raw.repeat_interval_hours.map(|h| h * 3600.0),
            24.0 * 3600.0,
            text,
            path,
            "alerts.repeat_interval_hours",
        )?,
        evaluate_every: seconds(
            raw.evaluate_every_seconds,
            300.0,
            text,
            path,
            "alerts.evaluate_every_seconds",
        )?,
        max_pending: seconds(
            raw.max_pending_hours.map(|h| h * 3600.0),
            DEFAULT_MAX_PENDING_HOURS * 3600.0,
            text,
            path,
            "alerts.max_pending_hours",
        )?,
        receivers,
        pipeline_route: raw.routes.pipeline,
        manager_routes: raw.routes.managers,
        rules,
    })
}

fn parse_dates(
    v: &[String],
    text: &str,
    path: &Path,
    key: &str,
) -> Result<BTreeSet<Date>, ConfigError> {
    v.iter()
        .map(|s| {
            s.parse::<Date>().map_err(|e| {
                ConfigError::invalid(
                    path,
                    text,
                    key,
                    format!("`{s}` is not a YYYY-MM-DD date: {e}"),
                )
            })
        })
        .collect()
}

/// The normal form placeholders are compared in: trimmed and lower-cased (the NFKC step is
/// applied by the check stage to values; configured placeholders are written in ASCII or CJK).
pub fn normalize_placeholder(v: &str) -> String {
    v.trim().to_lowercase()
}

/// Region codes that libphonenumber knows are validated by the check stage; here only the
/// shape is checked so the config crate stays free of phone metadata.
mod phonenumber_region {
    pub struct Region;
    impl std::str::FromStr for Region {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
                Ok(Region)
            } else {
                Err(())
            }
        }
    }
}

#[cfg(test)]
mod tests;
