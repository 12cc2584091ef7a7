//! crmdq-decode: bytes → Arrow.
//!
//! Turns a source message (a Kafka value, an NDJSON line, a CSV row) into one row of its
//! record type's decoded batch, applying the contract's coercions (numeric strings,
//! full-width digits, timestamps with or without offset), keeping unknown fields in
//! `extra` and the raw text of values that could not be coerced in `dq_unparsed`.
//! Invariant: every message becomes exactly one row or exactly one dead letter; nothing
//! here returns `Err` for bad data and nothing panics on input.

mod builders;
mod coerce;
pub mod csv_input;
mod fields;
pub mod mapping;

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use crmdq_config::Pipeline;
use crmdq_schema::{DeadLetterReason, RecordType};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Map, Value};

pub use builders::DeadLetterBuilder;

/// Rows decoded before a batch is checked and written (by `ingest`, `run` and the
/// benchmark kernels alike).
pub const BATCH_ROWS: usize = 16 * 1024;
use builders::TypeBuilder;
pub use coerce::{parse_timestamp, value_text};
use fields::Fields;

pub use crmdq_schema::SourcePos;

/// The output of decoding a set of messages.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One batch per record type that received rows (schema: `decoded_schema`).
    pub records: BTreeMap<RecordType, RecordBatch>,
    /// Dead letters (schema: `dead_letter_schema`), None when there were none.
    pub dead_letters: Option<RecordBatch>,
}

impl Decoded {
    pub fn rows(&self) -> usize {
        self.records
            .values()
            .map(RecordBatch::num_rows)
            .sum::<usize>()
            + self.dead_letters.as_ref().map_or(0, RecordBatch::num_rows)
    }
}

/// Accumulates decoded rows; [`Decoder::finish`] yields the batches.
pub struct Decoder {
    tz: TimeZone,
    max_message_bytes: usize,
    types: BTreeMap<RecordType, TypeBuilder>,
    dead: DeadLetterBuilder,
}

impl Decoder {
    pub fn new(pipeline: &Pipeline) -> Self {
        Decoder::with(
            pipeline.time_zone.clone(),
            pipeline.source.max_message_bytes,
        )
    }

    pub fn with(tz: TimeZone, max_message_bytes: usize) -> Self {
        Decoder {
            tz,
            max_message_bytes,
            types: BTreeMap::new(),
            dead: DeadLetterBuilder::default(),
        }
    }

    /// Rows buffered so far (records and dead letters).
    pub fn len(&self) -> usize {
        self.types.values().map(TypeBuilder::len).sum::<usize>() + self.dead.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Decode one JSON message (Kafka value or NDJSON line). `None` is a message without
    /// a value (a tombstone). `implied` is the record type the source maps, if any.
    pub fn push_json(
        &mut self,
        bytes: Option<&[u8]>,
        pos: &SourcePos,
        implied: Option<RecordType>,
        ingested_at: Timestamp,
    ) {
        let Some(bytes) = bytes.filter(|b| !b.is_empty()) else {
            self.dead.push(
                bytes.unwrap_or_default(),
                DeadLetterReason::EmptyMessage,
                "message has no value",
                None,
                pos,
                ingested_at,
            );
            return;
        };
        if bytes.len() > self.max_message_bytes {
            let detail = format!(
                "{} bytes exceed max_message_bytes {}",
                bytes.len(),
                self.max_message_bytes
            );
            self.dead.push(
                bytes,
                DeadLetterReason::TooLarge,
                &detail,
                None,
                pos,
                ingested_at,
            );
            return;
        }
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                self.dead.push(
                    bytes,
                    DeadLetterReason::InvalidUtf8,
                    &e.to_string(),
                    None,
                    pos,
                    ingested_at,
                );
                return;
            }
        };
        let text = text.trim_start_matches('\u{feff}');
        // The usual case, an object, parses straight into borrowed fields; anything else
        // is parsed again as a plain value to say what it is.
        if let Ok(fields) = serde_json::from_str::<Fields>(text) {
            self.push_fields(fields, bytes, pos, implied, ingested_at);
            return;
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.dead.push(
                    bytes,
                    DeadLetterReason::InvalidJson,
                    &e.to_string(),
                    None,
                    pos,
                    ingested_at,
                );
                return;
            }
        };
        let Value::Object(obj) = value else {
            self.dead.push(
                bytes,
                DeadLetterReason::NotAnObject,
                &format!("top-level JSON {} is not an object", json_kind(&value)),
                None,
                pos,
                ingested_at,
            );
            return;
        };
        self.push_object(obj, bytes, pos, implied, ingested_at);
    }

    /// Decode one already-parsed object (JSON object or CSV row). `raw` is what is kept as
    /// the dead letter's bytes if the object is rejected.
    pub fn push_object(
        &mut self,
        obj: Map<String, Value>,
        raw: &[u8],
        pos: &SourcePos,
        implied: Option<RecordType>,
        ingested_at: Timestamp,
    ) {
        self.push_fields(Fields::from(obj), raw, pos, implied, ingested_at);
    }

    fn push_fields(
        &mut self,
        mut obj: Fields<'_>,
        raw: &[u8],
        pos: &SourcePos,
        implied: Option<RecordType>,
        ingested_at: Timestamp,
    ) {
        let mut dead = |reason: DeadLetterReason, detail: &str, rt: Option<RecordType>| {
            self.dead.push(
                raw,
                reason,
                detail,
                rt.map(RecordType::as_str),
                pos,
                ingested_at,
            );
        };
        // record_type: the message's, else the source's mapping; both present must agree.
        let stated = obj.get("record_type").and_then(non_blank_text);
        let rt = match (stated, implied) {
            (None, None) => {
                return dead(
                    DeadLetterReason::MissingRecordType,
                    "no record_type and the source maps none",
                    None,
                );
            }
            (None, Some(rt)) => rt,
            (Some(s), implied) => match s.trim().parse::<RecordType>() {
                Err(e) => return dead(DeadLetterReason::UnknownRecordType, &e.to_string(), None),
                Ok(rt) if implied.is_some_and(|i| i != rt) => {
                    let i = implied.map(RecordType::as_str).unwrap_or_default();
                    return dead(
                        DeadLetterReason::UnknownRecordType,
                        &format!("record_type `{rt}` disagrees with the source's `{i}`"),
                        None,
                    );
                }
                Ok(rt) => rt,
            },
        };
        obj.remove("record_type");
        let record_id = obj.get("record_id").and_then(non_blank_text);
        if record_id.is_none() {
            return dead(
                DeadLetterReason::MissingRecordId,
                "record_id is missing or blank",
                Some(rt),
            );
        }
        if obj.get("entered_by").and_then(non_blank_text).is_none() {
            return dead(
                DeadLetterReason::MissingEnteredBy,
                "entered_by is missing or blank",
                Some(rt),
            );
        }
        let tz = &self.tz;
        let Some(event_time) = obj.get("event_time").and_then(|v| coerce::timestamp(v, tz)) else {
            return dead(
                DeadLetterReason::BadEventTime,
                &describe(obj.get("event_time")),
                Some(rt),
            );
        };
        let Some(entered_at) = obj.get("entered_at").and_then(|v| coerce::timestamp(v, tz)) else {
            return dead(
                DeadLetterReason::BadEnteredAt,
                &describe(obj.get("entered_at")),
                Some(rt),
            );
        };
        let version = match obj.get("version") {
            None | Some(Value::Null) => 1,
            Some(v) => match coerce::integer(v) {
                Some(n) if n >= 1 => n,
                _ => {
                    return dead(
                        DeadLetterReason::BadVersion,
                        &format!("version {v} is not an integer ≥ 1"),
                        Some(rt),
                    );
                }
            },
        };
        let b = self.types.entry(rt).or_insert_with(|| TypeBuilder::new(rt));
        b.push(
            &mut obj,
            version,
            event_time,
            entered_at,
            tz,
            pos,
            ingested_at,
        );
    }

    /// Record a message that could not even be split into fields (e.g. a broken CSV row).
    pub fn push_dead(
        &mut self,
        raw: &[u8],
        reason: DeadLetterReason,
        detail: &str,
        pos: &SourcePos,
        ingested_at: Timestamp,
    ) {
        self.dead.push(raw, reason, detail, None, pos, ingested_at);
    }

    /// Take everything buffered so far as Arrow batches.
    pub fn finish(&mut self) -> Decoded {
        let records = std::mem::take(&mut self.types)
            .into_iter()
            .filter(|(_, b)| b.len() > 0)
            .map(|(rt, mut b)| (rt, b.finish()))
            .collect();
        let dead_letters = (!self.dead.is_empty()).then(|| self.dead.finish());
        Decoded {
            records,
            dead_letters,
        }
    }
}

fn non_blank_text(v: &Value) -> Option<std::borrow::Cow<'_, str>> {
    coerce::text(v).filter(|s| !s.trim().is_empty())
}

fn describe(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "missing".to_string(),
        Some(v) => format!("unparseable timestamp {}", truncate(&v.to_string(), 80)),
    }
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests;
