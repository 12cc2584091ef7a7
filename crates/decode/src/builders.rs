//! Column builders for one record type's decoded batch and for dead letters.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder,
    RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use crmdq_schema::{
    DeadLetterReason, FieldKind, RecordType, UTC, dead_letter_schema, decoded_schema, record_schema,
};
use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Map, Value};

use crate::SourcePos;
use crate::coerce;
use crate::fields::Fields;

enum Col {
    Str(StringBuilder),
    Int(Int64Builder),
    Num(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
}

impl Col {
    fn new(kind: FieldKind) -> Col {
        match kind {
            FieldKind::String => Col::Str(StringBuilder::new()),
            FieldKind::Integer => Col::Int(Int64Builder::new()),
            FieldKind::Number => Col::Num(Float64Builder::new()),
            FieldKind::Boolean => Col::Bool(BooleanBuilder::new()),
            FieldKind::Timestamp => Col::Ts(TimestampMicrosecondBuilder::new().with_timezone(UTC)),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Col::Str(b) => Arc::new(b.finish()),
            Col::Int(b) => Arc::new(b.finish()),
            Col::Num(b) => Arc::new(b.finish()),
            Col::Bool(b) => Arc::new(b.finish()),
            Col::Ts(b) => Arc::new(b.finish()),
        }
    }
}

fn micros(ts: Timestamp) -> i64 {
    ts.as_microsecond()
}

/// Source position columns.
#[derive(Default)]
pub(crate) struct PosCols {
    topic: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    file: StringBuilder,
    line: Int64Builder,
}

impl PosCols {
    fn push(&mut self, pos: &SourcePos) {
        match pos {
            SourcePos::Kafka {
                topic,
                partition,
                offset,
            } => {
                self.topic.append_value(topic);
                self.partition.append_value(*partition);
                self.offset.append_value(*offset);
                self.file.append_null();
                self.line.append_null();
            }
            SourcePos::File { path, line } => {
                self.topic.append_null();
                self.partition.append_null();
                self.offset.append_null();
                self.file.append_value(path);
                self.line.append_value(*line);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<ArrayRef>) {
        out.push(Arc::new(self.topic.finish()));
        out.push(Arc::new(self.partition.finish()));
        out.push(Arc::new(self.offset.finish()));
        out.push(Arc::new(self.file.finish()));
        out.push(Arc::new(self.line.finish()));
    }
}

pub(crate) struct TypeBuilder {
    rt: RecordType,
    names: Vec<&'static str>,
    /// The schema's field indices by name length, then name: a message's keys are looked
    /// up once each ([`Fields::take_known`]) instead of every field searched for.
    by_len: Vec<Vec<(&'static str, usize)>>,
    /// One value per schema field, filled for each record.
    slots: Vec<Option<Value>>,
    kinds: Vec<FieldKind>,
    cols: Vec<Col>,
    /// Raw-text companions, one per typed field, in field order.
    raws: Vec<StringBuilder>,
    extra: StringBuilder,
    unparsed: StringBuilder,
    ingested: TimestampMicrosecondBuilder,
    pos: PosCols,
    rows: usize,
}

impl TypeBuilder {
    pub(crate) fn new(rt: RecordType) -> Self {
        let fields = &record_schema(rt).fields;
        TypeBuilder {
            rt,
            names: fields.iter().map(|f| f.name.as_str()).collect(),
            by_len: {
                let mut by_len: Vec<Vec<(&'static str, usize)>> = Vec::new();
                for (i, f) in fields.iter().enumerate() {
                    let n = f.name.len();
                    if by_len.len() <= n {
                        by_len.resize(n + 1, Vec::new());
                    }
                    by_len[n].push((f.name.as_str(), i));
                }
                by_len
            },
            slots: vec![None; fields.len()],
            kinds: fields.iter().map(|f| f.kind).collect(),
            cols: fields.iter().map(|f| Col::new(f.kind)).collect(),
            raws: fields
                .iter()
                .filter(|f| f.kind != FieldKind::String)
                .map(|_| StringBuilder::new())
                .collect(),
            extra: StringBuilder::new(),
            unparsed: StringBuilder::new(),
            ingested: TimestampMicrosecondBuilder::new().with_timezone(UTC),
            pos: PosCols::default(),
            rows: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.rows
    }

    /// Append one validated object (record_type already removed). Required fields were
    /// checked by the caller; the coerced version, event_time and entered_at are passed in.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn push(
        &mut self,
        obj: &mut Fields<'_>,
        version: i64,
        event_time: Timestamp,
        entered_at: Timestamp,
        tz: &TimeZone,
        pos: &SourcePos,
        ingested_at: Timestamp,
    ) {
        let mut unparsed = Map::new();
        let mut raw_i = 0;
        let by_len = &self.by_len;
        obj.take_known(&mut self.slots, |k| {
            by_len
                .get(k.len())?
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, i)| *i)
        });
        for (i, name) in self.names.iter().enumerate() {
            let v = self.slots[i].take().filter(|v| !v.is_null());
            let kind = self.kinds[i];
            if kind != FieldKind::String {
                self.raws[raw_i].append_option(v.as_ref().and_then(coerce::text));
                raw_i += 1;
            }
            match (&mut self.cols[i], *name) {
                (Col::Str(b), "record_type") => b.append_value(self.rt.as_str()),
                (Col::Str(b), "owner_id") => {
                    let t = v
                        .as_ref()
                        .and_then(coerce::text)
                        .filter(|s| !s.trim().is_empty());
                    b.append_value(t.as_deref().unwrap_or("unassigned"));
                }
                (Col::Int(b), "version") => b.append_value(version),
                (Col::Ts(b), "event_time") => b.append_value(micros(event_time)),
                (Col::Ts(b), "entered_at") => b.append_value(micros(entered_at)),
                (Col::Str(b), _) => b.append_option(v.as_ref().and_then(coerce::text)),
                (col, _) => {
                    let ok = match (col, &v) {
                        (Col::Int(b), Some(x)) => {
                            coerce::integer(x).map(|n| b.append_value(n)).is_some()
                        }
                        (Col::Num(b), Some(x)) => {
                            coerce::number(x).map(|n| b.append_value(n)).is_some()
                        }
                        (Col::Bool(b), Some(x)) => {
                            coerce::boolean(x).map(|n| b.append_value(n)).is_some()
                        }
                        (Col::Ts(b), Some(x)) => coerce::timestamp(x, tz)
                            .map(|t| b.append_value(micros(t)))
                            .is_some(),
                        (col, None) => {
                            append_null(col);
                            true
                        }
                        (Col::Str(_), Some(_)) => unreachable!("string columns handled above"),
                    };
                    if !ok {
                        append_null(&mut self.cols[i]);
                        if let Some(x) = v {
                            unparsed.insert((*name).to_string(), x);
                        }
                    }
                }
            }
        }
        // What is left are fields the schema does not name: kept, never lost.
        if obj.is_empty() {
            self.extra.append_null();
        } else {
            self.extra
                .append_value(Value::Object(std::mem::take(obj).into_map()).to_string());
        }
        if unparsed.is_empty() {
            self.unparsed.append_null();
        } else {
            self.unparsed
                .append_value(Value::Object(unparsed).to_string());
        }
        self.ingested.append_value(micros(ingested_at));
        self.pos.push(pos);
        self.rows += 1;
    }

    pub(crate) fn finish(&mut self) -> RecordBatch {
        let mut cols: Vec<ArrayRef> = self.cols.iter_mut().map(Col::finish).collect();
        cols.push(Arc::new(self.extra.finish()));
        cols.push(Arc::new(self.unparsed.finish()));
        cols.push(Arc::new(self.ingested.finish()));
        self.pos.finish(&mut cols);
        for r in &mut self.raws {
            cols.push(Arc::new(r.finish()));
        }
        self.rows = 0;
        RecordBatch::try_new(decoded_schema(self.rt), cols)
            .expect("decoded columns match decoded_schema")
    }
}

fn append_null(col: &mut Col) {
    match col {
        Col::Str(b) => b.append_null(),
        Col::Int(b) => b.append_null(),
        Col::Num(b) => b.append_null(),
        Col::Bool(b) => b.append_null(),
        Col::Ts(b) => b.append_null(),
    }
}

/// Dead-letter rows.
pub struct DeadLetterBuilder {
    raw: BinaryBuilder,
    reason: StringBuilder,
    detail: StringBuilder,
    record_type: StringBuilder,
    ingested: TimestampMicrosecondBuilder,
    pos: PosCols,
    rows: usize,
}

impl Default for DeadLetterBuilder {
    fn default() -> Self {
        DeadLetterBuilder {
            raw: BinaryBuilder::new(),
            reason: StringBuilder::new(),
            detail: StringBuilder::new(),
            record_type: StringBuilder::new(),
            ingested: TimestampMicrosecondBuilder::new().with_timezone(UTC),
            pos: PosCols::default(),
            rows: 0,
        }
    }
}

impl DeadLetterBuilder {
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn push(
        &mut self,
        raw: &[u8],
        reason: DeadLetterReason,
        detail: &str,
        record_type: Option<&str>,
        pos: &SourcePos,
        ingested_at: Timestamp,
    ) {
        self.raw.append_value(raw);
        self.reason.append_value(reason.code());
        self.detail.append_value(detail);
        self.record_type.append_option(record_type);
        self.ingested.append_value(micros(ingested_at));
        self.pos.push(pos);
        self.rows += 1;
    }

    pub fn finish(&mut self) -> RecordBatch {
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(self.raw.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.detail.finish()),
            Arc::new(self.record_type.finish()),
            Arc::new(self.ingested.finish()),
        ];
        self.pos.finish(&mut cols);
        self.rows = 0;
        RecordBatch::try_new(dead_letter_schema(), cols)
            .expect("dead-letter columns match dead_letter_schema")
    }
}
