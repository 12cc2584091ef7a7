//! crmdq-schema: what a CRM record is.
//!
//! The JSON Schemas in `schemas/` (one per record type, plus the common fields) are the
//! single source of truth. This crate embeds them, parses them once, and derives every
//! Arrow schema the pipeline uses from them: the decoded input columns, the warehouse
//! record tables (input + verdict + source position) and the dead-letter table.
//! Invariant: no other crate spells a record field's name or type by hand.

mod scores;

pub use scores::{SCORE_COUNTS, SCORE_RATES, ScoreTable};

/// Where a message came from: one position type for every stage (the source yields it,
/// decode carries it into `src_*` columns and dead letters, the consumer loop tracks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourcePos {
    Kafka {
        topic: Arc<str>,
        partition: i32,
        offset: i64,
    },
    File {
        path: Arc<str>,
        line: i64,
    },
}

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use serde::Deserialize;

/// Time zone tag of every timestamp column: instants are stored in UTC.
pub const UTC: &str = "UTC";

/// The record types of the contract, in contract order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordType {
    Customer,
    Activity,
    ServiceTicket,
    Opportunity,
    Order,
    Checkin,
}

impl RecordType {
    pub const ALL: [RecordType; 6] = [
        RecordType::Customer,
        RecordType::Activity,
        RecordType::ServiceTicket,
        RecordType::Opportunity,
        RecordType::Order,
        RecordType::Checkin,
    ];

    /// The snake_case name used in records, topics and table names.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::Customer => "customer",
            RecordType::Activity => "activity",
            RecordType::ServiceTicket => "service_ticket",
            RecordType::Opportunity => "opportunity",
            RecordType::Order => "order",
            RecordType::Checkin => "checkin",
        }
    }

    fn schema_json(self) -> &'static str {
        match self {
            RecordType::Customer => include_str!("../../../schemas/customer.schema.json"),
            RecordType::Activity => include_str!("../../../schemas/activity.schema.json"),
            RecordType::ServiceTicket => {
                include_str!("../../../schemas/service_ticket.schema.json")
            }
            RecordType::Opportunity => include_str!("../../../schemas/opportunity.schema.json"),
            RecordType::Order => include_str!("../../../schemas/order.schema.json"),
            RecordType::Checkin => include_str!("../../../schemas/checkin.schema.json"),
        }
    }
}

impl fmt::Display for RecordType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown record type name.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "unknown record type `{0}` (expected one of customer, activity, service_ticket, opportunity, order, checkin)"
)]
pub struct UnknownRecordType(pub String);

impl FromStr for RecordType {
    type Err = UnknownRecordType;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RecordType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownRecordType(s.to_string()))
    }
}

/// The logical kind of a field, derived from JSON Schema `type` and `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    String,
    Integer,
    Number,
    Boolean,
    /// `type: string, format: date-time`: stored as UTC microseconds.
    Timestamp,
}

impl FieldKind {
    pub fn arrow_type(self) -> DataType {
        match self {
            FieldKind::String => DataType::Utf8,
            FieldKind::Integer => DataType::Int64,
            FieldKind::Number => DataType::Float64,
            FieldKind::Boolean => DataType::Boolean,
            FieldKind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        }
    }
}

/// One field of a record type.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    pub name: String,
    pub kind: FieldKind,
    /// Required at decode time (missing → dead letter).
    pub required: bool,
    /// Allowed values, where the schema names them.
    pub enum_values: Option<Vec<String>>,
    /// Personally identifiable: subject to the pipeline's PII policy.
    pub pii: bool,
    /// True for the fields shared by every record type.
    pub common: bool,
}

/// A record type's full field list: common fields first, then its own, schema order.
#[derive(Debug, Clone)]
pub struct RecordSchema {
    pub record_type: RecordType,
    pub version: u32,
    pub fields: Vec<FieldSpec>,
}

impl RecordSchema {
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }
}

#[derive(Deserialize)]
struct RawSchema {
    #[serde(default)]
    properties: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(rename = "x-crmdq-version", default)]
    version: u32,
}

const COMMON_JSON: &str = include_str!("../../../schemas/common.schema.json");

fn parse_props(raw: &RawSchema, common: bool, out: &mut Vec<FieldSpec>) {
    for (name, prop) in &raw.properties {
        let ty = prop
            .get("type")
            .and_then(|v| v.as_str())
            .unwrap_or("string");
        let format = prop.get("format").and_then(|v| v.as_str());
        let kind = match (ty, format) {
            ("string", Some("date-time")) => FieldKind::Timestamp,
            ("integer", _) => FieldKind::Integer,
            ("number", _) => FieldKind::Number,
            ("boolean", _) => FieldKind::Boolean,
            _ => FieldKind::String,
        };
        let enum_values = prop.get("enum").and_then(|v| v.as_array()).map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        });
        let pii = prop
            .get("x-crmdq-pii")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        out.push(FieldSpec {
            name: name.clone(),
            kind,
            required: raw.required.contains(name),
            enum_values,
            pii,
            common,
        });
    }
}

/// The parsed schema of a record type (parsed once, then shared).
pub fn record_schema(rt: RecordType) -> &'static RecordSchema {
    static CACHE: OnceLock<BTreeMap<RecordType, RecordSchema>> = OnceLock::new();
    let map = CACHE.get_or_init(|| {
        // The embedded schemas are part of the binary; a parse failure is a build defect
        // caught by this crate's tests, not a runtime condition.
        let common: RawSchema =
            serde_json::from_str(COMMON_JSON).expect("schemas/common.schema.json is valid");
        RecordType::ALL
            .into_iter()
            .map(|rt| {
                let own: RawSchema =
                    serde_json::from_str(rt.schema_json()).expect("embedded schema is valid");
                let mut fields = Vec::new();
                parse_props(&common, true, &mut fields);
                parse_props(&own, false, &mut fields);
                let version = own.version.max(1);
                (
                    rt,
                    RecordSchema {
                        record_type: rt,
                        version,
                        fields,
                    },
                )
            })
            .collect()
    });
    &map[&rt]
}

/// Column holding unknown input fields as a JSON object (never silently lost).
pub const EXTRA: &str = "extra";
/// Column holding, as a JSON object, the raw text of typed fields whose value could not be
/// coerced (e.g. `"abc"` for age): the typed column is null, the original is kept here.
pub const UNPARSED: &str = "dq_unparsed";
/// When crmdq ingested the record (the injected clock), UTC.
pub const INGESTED_AT: &str = "dq_ingested_at";
/// Prefix of the decode-only raw-text companion columns of non-string fields.
pub const RAW_PREFIX: &str = "__raw_";

/// Name of the raw-text companion of a typed field, as produced by decode.
pub fn raw_column(field: &str) -> String {
    format!("{RAW_PREFIX}{field}")
}

fn ts_type() -> DataType {
    FieldKind::Timestamp.arrow_type()
}

fn list_of_strings() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// Source position columns shared by record tables and dead letters.
pub fn source_fields() -> Vec<Field> {
    vec![
        Field::new("src_topic", DataType::Utf8, true),
        Field::new("src_partition", DataType::Int32, true),
        Field::new("src_offset", DataType::Int64, true),
        Field::new("src_file", DataType::Utf8, true),
        Field::new("src_line", DataType::Int64, true),
    ]
}

/// Columns of a decoded batch before checks: record fields, `extra`, `dq_unparsed`,
/// ingestion time, source position, and a raw-text companion for every non-string field.
pub fn decoded_schema(rt: RecordType) -> SchemaRef {
    static CACHE: OnceLock<BTreeMap<RecordType, SchemaRef>> = OnceLock::new();
    CACHE.get_or_init(|| {
        RecordType::ALL
            .into_iter()
            .map(|rt| {
                let mut fields = input_fields(rt);
                for f in &record_schema(rt).fields {
                    if f.kind != FieldKind::String {
                        fields.push(Field::new(raw_column(&f.name), DataType::Utf8, true));
                    }
                }
                (rt, Arc::new(Schema::new(fields)))
            })
            .collect()
    })[&rt]
        .clone()
}

fn input_fields(rt: RecordType) -> Vec<Field> {
    let mut fields: Vec<Field> = record_schema(rt)
        .fields
        .iter()
        .map(|f| {
            // record_type, record_id, entered_by, version, owner_id, timestamps are always filled.
            let nullable = !(f.required || f.name == "version" || f.name == "owner_id");
            Field::new(&f.name, f.kind.arrow_type(), nullable)
        })
        .collect();
    fields.push(Field::new(EXTRA, DataType::Utf8, true));
    fields.push(Field::new(UNPARSED, DataType::Utf8, true));
    fields.push(Field::new(INGESTED_AT, ts_type(), false));
    fields.extend(source_fields());
    fields
}

/// The verdict columns appended by the check stage (contract section 3).
pub fn verdict_fields() -> Vec<Field> {
    vec![
        Field::new("dq_complete", DataType::Boolean, false),
        Field::new("dq_missing_fields", list_of_strings(), false),
        Field::new("dq_valid", DataType::Boolean, false),
        Field::new("dq_failed_checks", list_of_strings(), false),
        Field::new("dq_deadline", ts_type(), false),
        Field::new("dq_on_time", DataType::Boolean, false),
        Field::new("dq_late_seconds", DataType::Int64, false),
        Field::new("dq_business_date", DataType::Date32, false),
    ]
}

/// Columns the check stage derives for one record type, after the verdict columns:
/// customers carry `entered_by_owner_side` (contract section 7) — entered by the owner, or
/// by a sales assistant whose roster `assists` lists the owner, by the roster in force on
/// the business date; NULL when no roster was known at ingest.
pub fn derived_fields(rt: RecordType) -> Vec<Field> {
    match rt {
        RecordType::Customer => vec![Field::new("entered_by_owner_side", DataType::Boolean, true)],
        _ => Vec::new(),
    }
}

/// Schema of the Parquet files of `records/<record_type>/` (the `dt` partition column
/// lives in the path, not in the file).
pub fn record_table_schema(rt: RecordType) -> SchemaRef {
    static CACHE: OnceLock<BTreeMap<RecordType, SchemaRef>> = OnceLock::new();
    CACHE.get_or_init(|| {
        RecordType::ALL
            .into_iter()
            .map(|rt| {
                let mut fields = input_fields(rt);
                fields.extend(verdict_fields());
                fields.extend(derived_fields(rt));
                (rt, Arc::new(Schema::new(fields)))
            })
            .collect()
    })[&rt]
        .clone()
}

/// Schema of the Parquet files of `alerts/` (partitioned by the business date evaluated):
/// one row per alert event (a firing notification, a repeat, a resolve). The current state
/// of a (rule, subject) is its newest row.
pub fn alerts_schema() -> SchemaRef {
    static CACHE: OnceLock<SchemaRef> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
            let f = |n: &str| Field::new(n, DataType::Float64, true);
            Arc::new(Schema::new(vec![
                Field::new("evaluated_at", ts_type(), false),
                // Evaluation sequence number (commit order), independent of clocks.
                Field::new("seq", DataType::Int64, false),
                s("rule", false),
                s("scope", false),
                s("subject", false),
                s("severity", false),
                s("state", false),
                s("metric", false),
                f("value"),
                f("baseline"),
                f("threshold"),
                Field::new("entries", DataType::Int64, true),
                s("team_id", true),
                s("manager_id", true),
                s("receiver", true),
                Field::new("delivered", DataType::Boolean, false),
                s("delivery_error", true),
                s("message", false),
                s("top_rules", true),
                Field::new("example_records", list_of_strings(), false),
                // Added later (NULL in older files): the stable id receivers de-duplicate
                // on (rule, subject, episode, kind), the episode (the business date, or
                // for pipeline rules the instant, it began), whether this is a repeat,
                // and whether the event still awaited delivery when it was recorded.
                s("event_id", true),
                s("episode", true),
                Field::new("repeat", DataType::Boolean, true),
                Field::new("pending", DataType::Boolean, true),
            ]))
        })
        .clone()
}

/// Schema of `alert_deliveries/dt=D/*.parquet` (D = the event's business date): how an
/// event that was not delivered when it was recorded ended: delivered by a later
/// evaluation, or given up (`expired`).
pub fn alert_deliveries_schema() -> SchemaRef {
    static CACHE: OnceLock<SchemaRef> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
            Arc::new(Schema::new(vec![
                Field::new("attempted_at", ts_type(), false),
                Field::new("seq", DataType::Int64, false),
                s("event_id", false),
                s("rule", false),
                s("subject", false),
                s("receiver", true),
                // `delivered` or `expired` (given up).
                s("outcome", false),
                s("error", true),
            ]))
        })
        .clone()
}

/// Schema of the Parquet files of `dead_letters/` (partitioned by ingestion date).
pub fn dead_letter_schema() -> SchemaRef {
    static CACHE: OnceLock<SchemaRef> = OnceLock::new();
    CACHE
        .get_or_init(|| {
            let mut fields = vec![
                Field::new("raw", DataType::Binary, false),
                Field::new("reason", DataType::Utf8, false),
                Field::new("detail", DataType::Utf8, true),
                Field::new("record_type", DataType::Utf8, true),
                Field::new(INGESTED_AT, ts_type(), false),
            ];
            fields.extend(source_fields());
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// The stable dead-letter reason codes (contract section 1 and 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeadLetterReason {
    /// The bytes are not valid UTF-8.
    InvalidUtf8,
    /// Not parseable as JSON (or a CSV row that cannot be read).
    InvalidJson,
    /// JSON, but not an object.
    NotAnObject,
    /// The message has no value at all (a Kafka tombstone or empty message).
    EmptyMessage,
    /// No record_type and the source does not map one.
    MissingRecordType,
    /// record_type names no known type.
    UnknownRecordType,
    MissingRecordId,
    MissingEnteredBy,
    /// event_time absent or unparseable.
    BadEventTime,
    /// entered_at absent or unparseable.
    BadEnteredAt,
    /// version present but not an integer ≥ 1.
    BadVersion,
    /// The message exceeds the configured maximum size.
    TooLarge,
    /// A `source.mapping` expression failed on this row (detail names the field).
    MappingFailed,
}

impl DeadLetterReason {
    pub const ALL: [DeadLetterReason; 13] = [
        DeadLetterReason::InvalidUtf8,
        DeadLetterReason::InvalidJson,
        DeadLetterReason::NotAnObject,
        DeadLetterReason::EmptyMessage,
        DeadLetterReason::MissingRecordType,
        DeadLetterReason::UnknownRecordType,
        DeadLetterReason::MissingRecordId,
        DeadLetterReason::MissingEnteredBy,
        DeadLetterReason::BadEventTime,
        DeadLetterReason::BadEnteredAt,
        DeadLetterReason::BadVersion,
        DeadLetterReason::TooLarge,
        DeadLetterReason::MappingFailed,
    ];

    pub fn code(self) -> &'static str {
        match self {
            DeadLetterReason::InvalidUtf8 => "invalid_utf8",
            DeadLetterReason::InvalidJson => "invalid_json",
            DeadLetterReason::NotAnObject => "not_an_object",
            DeadLetterReason::EmptyMessage => "empty_message",
            DeadLetterReason::MissingRecordType => "missing_record_type",
            DeadLetterReason::UnknownRecordType => "unknown_record_type",
            DeadLetterReason::MissingRecordId => "missing_record_id",
            DeadLetterReason::MissingEnteredBy => "missing_entered_by",
            DeadLetterReason::BadEventTime => "bad_event_time",
            DeadLetterReason::BadEnteredAt => "bad_entered_at",
            DeadLetterReason::BadVersion => "bad_version",
            DeadLetterReason::TooLarge => "too_large",
            DeadLetterReason::MappingFailed => "mapping_failed",
        }
    }
}

impl fmt::Display for DeadLetterReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses_and_has_common_fields_first() {
        for rt in RecordType::ALL {
            let s = record_schema(rt);
            let names: Vec<_> = s.fields.iter().map(|f| f.name.as_str()).collect();
            assert_eq!(
                &names[..8],
                &[
                    "record_type",
                    "record_id",
                    "version",
                    "owner_id",
                    "entered_by",
                    "team_id",
                    "event_time",
                    "entered_at"
                ]
            );
            assert_eq!(s.version, 1);
        }
    }

    /// The contract's field tables, checked against what the JSON Schemas produce.
    #[test]
    fn arrow_schema_agrees_with_contract_and_json_schema() {
        let expect: &[(RecordType, &[(&str, DataType)])] = &[
            (
                RecordType::Customer,
                &[
                    ("name", DataType::Utf8),
                    ("phone", DataType::Utf8),
                    ("occupation", DataType::Utf8),
                    ("age", DataType::Int64),
                    ("gender", DataType::Utf8),
                    ("id_number", DataType::Utf8),
                    ("city", DataType::Utf8),
                ],
            ),
            (
                RecordType::Activity,
                &[
                    ("customer_id", DataType::Utf8),
                    ("kind", DataType::Utf8),
                    ("outcome", DataType::Utf8),
                ],
            ),
            (
                RecordType::ServiceTicket,
                &[
                    ("customer_id", DataType::Utf8),
                    ("channel", DataType::Utf8),
                    ("category", DataType::Utf8),
                    ("closed_at", ts_type()),
                    ("satisfaction", DataType::Int64),
                    ("complaint", DataType::Boolean),
                ],
            ),
            (
                RecordType::Opportunity,
                &[
                    ("customer_id", DataType::Utf8),
                    ("stage", DataType::Utf8),
                    ("previous_stage", DataType::Utf8),
                    ("amount", DataType::Float64),
                    ("currency", DataType::Utf8),
                    // Added by crmdq (schemas/README.md): when a deal closed, what it sold.
                    ("closed_at", ts_type()),
                    ("product", DataType::Utf8),
                ],
            ),
            (
                RecordType::Order,
                &[
                    ("customer_id", DataType::Utf8),
                    ("opportunity_id", DataType::Utf8),
                    ("amount", DataType::Float64),
                    ("currency", DataType::Utf8),
                ],
            ),
            (
                RecordType::Checkin,
                &[
                    ("channel", DataType::Utf8),
                    ("responded_at", ts_type()),
                    ("response_complete", DataType::Boolean),
                ],
            ),
        ];
        for (rt, fields) in expect {
            let table = record_table_schema(*rt);
            for (name, ty) in *fields {
                let f = table.field_with_name(name).unwrap();
                assert_eq!(f.data_type(), ty, "{rt}.{name}");
            }
            // Every JSON Schema property is a column, and vice versa for the own fields.
            let own: Vec<_> = record_schema(*rt)
                .fields
                .iter()
                .filter(|f| !f.common)
                .collect();
            assert_eq!(own.len(), fields.len(), "{rt}");
            for name in ["event_time", "entered_at"] {
                assert_eq!(table.field_with_name(name).unwrap().data_type(), &ts_type());
            }
            assert_eq!(
                table.field_with_name("version").unwrap().data_type(),
                &DataType::Int64
            );
            for v in verdict_fields() {
                assert!(table.field_with_name(v.name()).is_ok());
            }
        }
    }

    #[test]
    fn decoded_schema_has_raw_companions_for_typed_fields_only() {
        let s = decoded_schema(RecordType::Customer);
        assert!(s.field_with_name("__raw_age").is_ok());
        assert!(s.field_with_name("__raw_phone").is_err());
        assert!(s.field_with_name("__raw_event_time").is_ok());
    }

    #[test]
    fn record_type_round_trips() {
        for rt in RecordType::ALL {
            assert_eq!(rt.as_str().parse::<RecordType>().unwrap(), rt);
        }
        assert!("lead".parse::<RecordType>().is_err());
    }
}
