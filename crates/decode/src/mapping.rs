//! A file input's own columns → the contract's fields, by SQL expressions from the
//! pipeline file (`source.mapping`): renames, `to_timestamp(col, '%d/%m/%Y %H:%M')`,
//! CASE, constants, concatenation. The expressions are compiled once into DataFusion
//! physical expressions over the input's columns (all text, plus `_line`, the input line
//! number) and evaluated per batch of rows; the mapped rows then go through exactly the
//! same decoding, checks, lateness, warehouse and scoring as native records.
//!
//! A row whose expression fails (say an unparseable date) is not lost: the batch is
//! re-evaluated row by row and that row alone becomes a `mapping_failed` dead letter.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use crmdq_config::SourceMapping;
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::{SessionConfig, SessionContext};
use serde_json::{Map, Number, Value};

/// Name of the pseudo column holding the input line number.
pub const LINE_COLUMN: &str = "_line";

/// One mapped row: the object for the decoder, or why the mapping failed.
pub type Mapped = Result<Map<String, Value>, String>;

pub struct Mapper {
    mapping: SourceMapping,
    ctx: SessionContext,
    /// Input columns seen so far (the batch schema), and the expressions compiled for it.
    columns: BTreeSet<String>,
    compiled: Option<(SchemaRef, Vec<Arc<dyn PhysicalExpr>>)>,
}

impl std::fmt::Debug for Mapper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mapper")
            .field("fields", &self.mapping.fields)
            .finish_non_exhaustive()
    }
}

impl Mapper {
    pub fn new(mapping: &SourceMapping) -> Mapper {
        // Input column names are used as they are written (no lower-casing).
        let mut cfg = SessionConfig::new();
        cfg.options_mut().sql_parser.enable_ident_normalization = false;
        Mapper {
            mapping: mapping.clone(),
            ctx: SessionContext::new_with_config(cfg),
            columns: BTreeSet::new(),
            compiled: None,
        }
    }

    /// Compile every expression against the current columns. Errors name the field.
    fn compile(&mut self) -> Result<(), String> {
        let mut fields: Vec<Field> = self
            .columns
            .iter()
            .map(|c| Field::new(c, DataType::Utf8, true))
            .collect();
        fields.push(Field::new(LINE_COLUMN, DataType::Int64, false));
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let df = DFSchema::try_from(schema.as_ref().clone()).map_err(|e| e.to_string())?;
        let mut exprs = Vec::new();
        for (field, sql) in &self.mapping.fields {
            let expr = self
                .ctx
                .parse_sql_expr(sql, &df)
                .and_then(|e| simplify(e, &df))
                .map_err(|e| format!("source.mapping.{field} `{sql}`: {e}"))?;
            let phys = self
                .ctx
                .create_physical_expr(expr, &df)
                .map_err(|e| format!("source.mapping.{field} `{sql}`: {e}"))?;
            exprs.push(phys);
        }
        self.compiled = Some((schema, exprs));
        Ok(())
    }

    /// Map rows (raw objects of text cells, with their line numbers). A compile error
    /// (a mapping that names no input column, bad SQL) is returned whole: it is a
    /// configuration error, not a bad row.
    pub fn map(
        &mut self,
        rows: Vec<Map<String, Value>>,
        lines: &[i64],
    ) -> Result<Vec<Mapped>, String> {
        // Every column seen (empty cells included) is part of the input's schema.
        let before = self.columns.len();
        for r in &rows {
            for k in r.keys() {
                if !self.columns.contains(k) {
                    self.columns.insert(k.clone());
                }
            }
        }
        // Source placeholders → missing.
        let rows: Vec<Map<String, Value>> = rows
            .into_iter()
            .map(|mut r| {
                r.retain(|_, v| match v {
                    Value::String(s) => {
                        let t = s.trim();
                        !t.is_empty() && !self.mapping.placeholders.contains(t)
                    }
                    Value::Null => false,
                    _ => true,
                });
                r
            })
            .collect();
        if self.mapping.fields.is_empty() {
            return Ok(rows.into_iter().map(Ok).collect());
        }
        if self.compiled.is_none() || self.columns.len() != before {
            self.compile()?;
        }
        let (schema, exprs) = self.compiled.clone().expect("compiled above");
        let batch = to_batch(&schema, &rows, lines).map_err(|e| e.to_string())?;
        let mut outputs: Vec<Vec<Option<Value>>> = Vec::with_capacity(exprs.len());
        let mut row_errors: BTreeMap<usize, String> = BTreeMap::new();
        for ((field, _), expr) in self.mapping.fields.iter().zip(&exprs) {
            if let Ok(values) = eval(expr, &batch) {
                outputs.push(values);
            } else {
                // Find the rows that fail; the others keep their values.
                let mut values = Vec::with_capacity(batch.num_rows());
                for i in 0..batch.num_rows() {
                    match eval(expr, &batch.slice(i, 1)) {
                        Ok(mut v) => values.push(v.pop().flatten()),
                        Err(e) => {
                            row_errors
                                .entry(i)
                                .or_insert_with(|| format!("source.mapping.{field}: {e}"));
                            values.push(None);
                        }
                    }
                }
                outputs.push(values);
            }
        }
        let mapped_names: BTreeSet<&str> = self
            .mapping
            .fields
            .iter()
            .map(|(f, _)| f.as_str())
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for (i, raw) in rows.into_iter().enumerate() {
            if let Some(e) = row_errors.remove(&i) {
                out.push(Err(e));
                continue;
            }
            let mut obj = Map::new();
            if self.mapping.keep_unmapped {
                for (k, v) in raw {
                    if !mapped_names.contains(k.as_str()) {
                        obj.insert(k, v);
                    }
                }
            }
            for ((field, _), values) in self.mapping.fields.iter().zip(&outputs) {
                if let Some(v) = &values[i] {
                    obj.insert(field.clone(), v.clone());
                }
            }
            out.push(Ok(obj));
        }
        Ok(out)
    }
}

/// Some functions (COALESCE, NVL…) only have a physical form once simplified.
fn simplify(
    e: datafusion::logical_expr::Expr,
    df: &DFSchema,
) -> datafusion::error::Result<datafusion::logical_expr::Expr> {
    use datafusion::logical_expr::simplify::SimplifyContext;
    use datafusion::optimizer::simplify_expressions::ExprSimplifier;
    ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(Arc::new(df.clone()))
            .build(),
    )
    .simplify(e)
}

fn to_batch(
    schema: &SchemaRef,
    rows: &[Map<String, Value>],
    lines: &[i64],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for f in schema.fields() {
        if f.name() == LINE_COLUMN {
            cols.push(Arc::new(Int64Array::from(lines.to_vec())));
            continue;
        }
        let a: StringArray = rows
            .iter()
            .map(|r| match r.get(f.name()) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
            })
            .collect();
        cols.push(Arc::new(a));
    }
    RecordBatch::try_new(schema.clone(), cols)
}

fn eval(expr: &Arc<dyn PhysicalExpr>, batch: &RecordBatch) -> Result<Vec<Option<Value>>, String> {
    let a = expr
        .evaluate(batch)
        .and_then(|c| c.into_array(batch.num_rows()))
        .map_err(|e| e.to_string())?;
    to_json(&a)
}

/// An output column as JSON values: numbers and booleans as such, timestamps as text
/// without offset (the decoder reads them in the pipeline's time zone), the rest as text.
fn to_json(a: &ArrayRef) -> Result<Vec<Option<Value>>, String> {
    use arrow::datatypes::{Float64Type, Int64Type};
    let n = a.len();
    let valid = |i: usize| a.is_valid(i);
    Ok(match a.data_type() {
        DataType::Boolean => {
            let b = a.as_boolean();
            (0..n)
                .map(|i| valid(i).then(|| Value::Bool(b.value(i))))
                .collect()
        }
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => {
            let c = arrow::compute::cast(a, &DataType::Int64).map_err(|e| e.to_string())?;
            let c = c.as_primitive::<Int64Type>();
            (0..n)
                .map(|i| valid(i).then(|| Value::Number(c.value(i).into())))
                .collect()
        }
        DataType::Float16 | DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => {
            let c = arrow::compute::cast(a, &DataType::Float64).map_err(|e| e.to_string())?;
            let c = c.as_primitive::<Float64Type>();
            (0..n)
                .map(|i| {
                    valid(i)
                        .then(|| Number::from_f64(c.value(i)).map(Value::Number))
                        .flatten()
                })
                .collect()
        }
        _ => {
            let c = arrow::compute::cast(a, &DataType::Utf8).map_err(|e| e.to_string())?;
            let c = c.as_string::<i32>();
            (0..n)
                .map(|i| valid(i).then(|| Value::String(c.value(i).to_string())))
                .collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(fields: &[(&str, &str)], placeholders: &[&str]) -> SourceMapping {
        SourceMapping {
            fields: fields
                .iter()
                .map(|(a, b)| ((*a).to_string(), (*b).to_string()))
                .collect(),
            placeholders: placeholders.iter().map(|s| (*s).to_string()).collect(),
            keep_unmapped: true,
        }
    }

    fn row(pairs: &[(&str, &str)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), Value::String((*v).to_string())))
            .collect()
    }

    #[test]
    fn renames_formats_constants_and_case() {
        let mut m = Mapper::new(&mapping(
            &[
                ("record_type", "'service_ticket'"),
                ("record_id", "concat(number, '-', sys_mod_count)"),
                ("version", "CAST(sys_mod_count AS BIGINT) + 1"),
                ("event_time", "to_timestamp(opened_at, '%d/%m/%Y %H:%M')"),
                ("entered_by", "\"Updated_By\""),
                (
                    "complaint",
                    "CASE WHEN priority = '1 - Critical' THEN true ELSE false END",
                ),
                ("line", "_line"),
            ],
            &["?"],
        ));
        let out = m
            .map(
                vec![
                    row(&[
                        ("number", "INC1"),
                        ("sys_mod_count", "0"),
                        ("opened_at", "29/2/2016 01:16"),
                        ("Updated_By", "Created by 6"),
                        ("priority", "1 - Critical"),
                        ("caller", "?"),
                    ]),
                    row(&[
                        ("number", "INC2"),
                        ("sys_mod_count", "3"),
                        ("opened_at", "not a date"),
                        ("Updated_By", "?"),
                        ("priority", "3 - Moderate"),
                    ]),
                ],
                &[2, 3],
            )
            .unwrap();
        let a = out[0].as_ref().unwrap();
        assert_eq!(a["record_type"], "service_ticket");
        assert_eq!(a["record_id"], "INC1-0");
        assert_eq!(a["version"], 1);
        assert_eq!(a["event_time"], "2016-02-29T01:16:00");
        assert_eq!(a["entered_by"], "Created by 6");
        assert_eq!(a["complaint"], true);
        assert_eq!(a["line"], 2);
        // Placeholders are missing; unmapped columns are kept (for `extra`).
        assert!(!a.contains_key("caller"));
        assert_eq!(a["priority"], "1 - Critical");
        // The unparseable date fails its row only, naming the field.
        let e = out[1].as_ref().unwrap_err();
        assert!(e.contains("source.mapping.event_time"), "{e}");
    }

    #[test]
    fn a_mapping_naming_no_input_column_is_an_error() {
        let mut m = Mapper::new(&mapping(&[("record_id", "nope")], &[]));
        let e = m.map(vec![row(&[("a", "1")])], &[1]).unwrap_err();
        assert!(e.contains("source.mapping.record_id"), "{e}");
    }
}
