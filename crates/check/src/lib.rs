//! crmdq-check: the verdict of every entry.
//!
//! [`Checker::compile`] turns a pipeline into, per record type, a list of DataFusion
//! physical expressions (completeness with placeholders, built-in plausibility checks,
//! user SQL checks) built from the UDFs in [`udf`], plus a lateness kernel. [`Checker::check`]
//! evaluates them on a decoded batch and returns the warehouse row layout: input columns
//! (PII policy applied) and the `dq_*` verdict columns. Invariant: a bad value is a verdict
//! on its row, never an `Err`; `Err` means the check program itself could not run.

pub mod cnid;
pub mod lateness;
pub mod owner_side;
pub mod phone;
pub mod pii;
pub mod reference;
pub mod udf;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, BooleanBuilder, Date32Builder, Int64Builder,
    ListBuilder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::TimestampMicrosecondType;
use crmdq_config::{PiiPolicy, Pipeline};
use crmdq_schema::{
    FieldKind, RecordType, UTC, decoded_schema, raw_column, record_schema, record_table_schema,
};
use datafusion::common::DFSchema;
use datafusion::logical_expr::ScalarUDF;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use jiff::Timestamp;

use crate::lateness::{DeadlineMemo, Lateness};
use crate::phone::PhoneRules;
use crate::udf::{CnIdAge, CnIdValid, Missing, PhonePlaceholders, PhoneValid, TextUdf};

/// The check program could not be built or run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("check `{name}` on {record_type}: cannot compile `{sql}`: {source}")]
    Compile {
        name: String,
        record_type: RecordType,
        sql: String,
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
    #[error("reference table `{name}`: {message}")]
    Reference { name: String, message: String },
    #[error("phone region `{0}` is unknown to libphonenumber")]
    PhoneRegion(String),
    #[error("evaluating check `{name}` on {record_type}: {source}")]
    Evaluate {
        name: String,
        record_type: RecordType,
        #[source]
        source: Box<datafusion::error::DataFusionError>,
    },
}

/// One compiled check: its name, the SQL it was compiled from, the physical expression.
#[derive(Debug, Clone)]
pub struct CompiledCheck {
    pub name: String,
    pub sql: String,
    expr: Arc<dyn PhysicalExpr>,
}

#[derive(Debug)]
struct TypeChecks {
    /// Key field → "is missing" expression, in key-field order.
    missing: Vec<CompiledCheck>,
    /// Check name → "failed" expression.
    failed: Vec<CompiledCheck>,
    lateness: Lateness,
}

/// The compiled checks of a pipeline, for every record type.
#[derive(Debug)]
pub struct Checker {
    types: BTreeMap<RecordType, TypeChecks>,
    pii: PiiPolicy,
    /// The roster's owner side (who may enter for whom), when a roster is known.
    owner_side: Option<owner_side::OwnerSide>,
}

fn q(ident: &str) -> String {
    format!("\"{ident}\"")
}

impl Checker {
    /// With the roster in force at ingest (`crmdq_catalog::roster` loads it): customers get
    /// `entered_by_owner_side` from it; without, that column is NULL unless the owner
    /// entered the record.
    #[must_use]
    pub fn with_roster(mut self, roster: &RecordBatch) -> Checker {
        self.owner_side = Some(owner_side::OwnerSide::new(roster));
        self
    }

    pub fn compile(p: &Pipeline) -> Result<Checker, CheckError> {
        let rules = PhoneRules::new(&p.checks.phone_region)
            .ok_or_else(|| CheckError::PhoneRegion(p.checks.phone_region.clone()))?;
        let mut references = BTreeMap::new();
        for (name, path) in &p.checks.reference_tables {
            let t = reference::load(path).map_err(|message| CheckError::Reference {
                name: name.clone(),
                message,
            })?;
            references.insert(name.clone(), t);
        }
        let mut types = BTreeMap::new();
        for rt in RecordType::ALL {
            let cfg = p.record_type(rt);
            let ctx = SessionContext::new();
            ctx.register_udf(ScalarUDF::new_from_impl(TextUdf::new(PhoneValid(
                rules.clone(),
            ))));
            ctx.register_udf(ScalarUDF::new_from_impl(TextUdf::new(CnIdValid)));
            ctx.register_udf(ScalarUDF::new_from_impl(CnIdAge::new(
                p.time_zone_name.clone(),
                p.time_zone.clone(),
            )));
            let schema = record_schema(rt);
            // present(f): the raw value is there and is not a placeholder.
            let mut present = BTreeMap::new();
            for f in &schema.fields {
                let Some(set) = cfg.placeholders.get(&f.name) else {
                    continue;
                };
                let name = format!("crmdq_missing_{}", f.name);
                let phone = (f.name == "phone").then(|| PhonePlaceholders {
                    country_code: rules.country_code.clone(),
                    all_same: p.checks.builtin.phone_all_same_digits,
                    consecutive: p.checks.builtin.phone_consecutive_digits,
                });
                ctx.register_udf(ScalarUDF::new_from_impl(TextUdf::new(Missing::new(
                    name.clone(),
                    Arc::new(set.clone()),
                    phone,
                ))));
                let raw = if f.kind == FieldKind::String {
                    f.name.clone()
                } else {
                    raw_column(&f.name)
                };
                present.insert(
                    f.name.clone(),
                    (
                        format!("{name}({})", q(&raw)),
                        format!("NOT {name}({})", q(&raw)),
                    ),
                );
            }
            let df_schema =
                DFSchema::try_from(decoded_schema(rt).as_ref().clone()).map_err(|e| {
                    CheckError::Compile {
                        name: "schema".into(),
                        record_type: rt,
                        sql: String::new(),
                        source: Box::new(e),
                    }
                })?;
            let compile = |name: &str, sql: String| -> Result<CompiledCheck, CheckError> {
                let err = |e| CheckError::Compile {
                    name: name.to_string(),
                    record_type: rt,
                    sql: sql.clone(),
                    source: Box::new(e),
                };
                let expr = ctx.parse_sql_expr(&sql, &df_schema).map_err(err)?;
                // Some functions (COALESCE, NVL…) only have a physical form once simplified.
                let expr = ExprSimplifier::new(
                    SimplifyContext::builder()
                        .with_schema(Arc::new(df_schema.clone()))
                        .build(),
                )
                .simplify(expr)
                .map_err(err)?;
                let expr = ctx.create_physical_expr(expr, &df_schema).map_err(err)?;
                Ok(CompiledCheck {
                    name: name.to_string(),
                    sql,
                    expr,
                })
            };
            let missing = cfg
                .key_fields
                .iter()
                .map(|f| compile(f, present[f].0.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            let mut failed = Vec::new();
            for (name, sql) in builtin_checks(rt, p, &present) {
                if !p.checks.builtin.disabled.contains(&name) {
                    failed.push(compile(&name, sql)?);
                }
            }
            for u in p.checks.user.iter().filter(|u| u.record_type == rt) {
                let sql = reference::expand(&u.sql, &references).map_err(|message| {
                    CheckError::Reference {
                        name: u.name.clone(),
                        message,
                    }
                })?;
                failed.push(compile(&u.name, format!("({sql}) IS FALSE"))?);
            }
            let lateness = Lateness::new(
                p.time_zone.clone(),
                cfg.deadline.clone(),
                p.checks.calendar.clone(),
            );
            types.insert(
                rt,
                TypeChecks {
                    missing,
                    failed,
                    lateness,
                },
            );
        }
        Ok(Checker {
            types,
            pii: p.checks.pii.clone(),
            owner_side: None,
        })
    }

    /// The compiled checks of a record type, for `check-config` and explanations:
    /// (completeness checks, validity checks).
    pub fn describe(&self, rt: RecordType) -> (&[CompiledCheck], &[CompiledCheck]) {
        let t = &self.types[&rt];
        (&t.missing, &t.failed)
    }

    /// Evaluate every check on a decoded batch of `rt` and return the warehouse rows.
    pub fn check(&self, rt: RecordType, batch: &RecordBatch) -> Result<RecordBatch, CheckError> {
        let t = &self.types[&rt];
        let n = batch.num_rows();
        let eval = |c: &CompiledCheck| -> Result<BooleanArray, CheckError> {
            let v = c
                .expr
                .evaluate(batch)
                .and_then(|v| v.into_array(n))
                .map_err(|e| CheckError::Evaluate {
                    name: c.name.clone(),
                    record_type: rt,
                    source: Box::new(e),
                })?;
            Ok(v.as_boolean().clone())
        };
        let missing: Vec<BooleanArray> = t.missing.iter().map(eval).collect::<Result<_, _>>()?;
        let failed: Vec<BooleanArray> = t.failed.iter().map(eval).collect::<Result<_, _>>()?;
        let (complete, missing_list) = verdict_lists(n, &t.missing, &missing);
        let (valid, failed_list) = verdict_lists(n, &t.failed, &failed);

        let ev = batch
            .column_by_name("event_time")
            .expect("decoded batch has event_time");
        let en = batch
            .column_by_name("entered_at")
            .expect("decoded batch has entered_at");
        let (ev, en) = (
            ev.as_primitive::<TimestampMicrosecondType>(),
            en.as_primitive::<TimestampMicrosecondType>(),
        );
        let mut deadline = TimestampMicrosecondBuilder::with_capacity(n).with_timezone(UTC);
        let mut on_time = BooleanBuilder::with_capacity(n);
        let mut late = Int64Builder::with_capacity(n);
        let mut bdate = Date32Builder::with_capacity(n);
        let mut memo = DeadlineMemo::default();
        for i in 0..n {
            // Both are non-null by construction (decode dead-letters records without them).
            let event = Timestamp::from_microsecond(ev.value(i)).unwrap_or(Timestamp::UNIX_EPOCH);
            let entered = Timestamp::from_microsecond(en.value(i)).unwrap_or(Timestamp::UNIX_EPOCH);
            let v = memo.judge(&t.lateness, event, entered);
            deadline.append_value(v.deadline.as_microsecond());
            on_time.append_value(v.on_time);
            late.append_value(v.late_seconds);
            bdate.append_value(days_since_epoch(v.business_date));
        }

        let out_schema = record_table_schema(rt);
        let n_input = out_schema.fields().len()
            - crmdq_schema::verdict_fields().len()
            - crmdq_schema::derived_fields(rt).len();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(out_schema.fields().len());
        for (i, f) in out_schema.fields().iter().take(n_input).enumerate() {
            let col = batch.column(i);
            debug_assert_eq!(batch.schema().field(i).name(), f.name());
            match self.pii.modes.get(f.name()) {
                Some(mode) => cols.push(pii::apply(col, *mode, self.pii.hash_key.as_deref())),
                None => cols.push(col.clone()),
            }
        }
        cols.push(Arc::new(complete));
        cols.push(Arc::new(missing_list));
        cols.push(Arc::new(valid));
        cols.push(Arc::new(failed_list));
        cols.push(Arc::new(deadline.finish()));
        cols.push(Arc::new(on_time.finish()));
        cols.push(Arc::new(late.finish()));
        let bdate = bdate.finish();
        let side = (rt == RecordType::Customer)
            .then(|| owner_side::column(self.owner_side.as_ref(), batch, &bdate));
        cols.push(Arc::new(bdate));
        if let Some(side) = side {
            cols.push(Arc::new(side));
        }
        Ok(RecordBatch::try_new(out_schema, cols)
            .expect("checked columns match record_table_schema"))
    }
}

/// Days since 1970-01-01 (Arrow Date32).
pub fn days_since_epoch(d: jiff::civil::Date) -> i32 {
    let epoch = jiff::civil::date(1970, 1, 1);
    (d - epoch).get_days()
}

fn verdict_lists(
    n: usize,
    checks: &[CompiledCheck],
    hits: &[BooleanArray],
) -> (BooleanArray, arrow::array::ListArray) {
    let mut ok = BooleanBuilder::with_capacity(n);
    let mut list = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(
        arrow::datatypes::Field::new("item", arrow::datatypes::DataType::Utf8, true),
    ));
    for i in 0..n {
        let mut any = false;
        for (c, h) in checks.iter().zip(hits) {
            // NULL (the check could not apply) passes.
            if h.is_valid(i) && h.value(i) {
                list.values().append_value(&c.name);
                any = true;
            }
        }
        list.append(true);
        ok.append_value(!any);
    }
    (ok.finish(), list.finish())
}

/// The built-in checks of a record type as (name, SQL failure condition). `present` maps
/// a field to (missing-SQL, present-SQL).
fn builtin_checks(
    rt: RecordType,
    p: &Pipeline,
    present: &BTreeMap<String, (String, String)>,
) -> Vec<(String, String)> {
    let schema = record_schema(rt);
    let has = |f: &str| schema.field(f).is_some();
    let pr = |f: &str| present[f].1.clone();
    let c = &p.checks.builtin;
    let mut out = Vec::new();
    // A typed value that could not be coerced ("abc" for age) is present but invalid.
    for f in &schema.fields {
        if f.kind != FieldKind::String && !f.common {
            out.push((
                format!("{}.type", f.name),
                format!("{} AND {} IS NULL", pr(&f.name), q(&f.name)),
            ));
        }
    }
    if has("phone") {
        out.push((
            "phone.format".into(),
            format!("{} AND NOT phone_valid(\"phone\")", pr("phone")),
        ));
    }
    if has("age") {
        out.push((
            "age.range".into(),
            format!(
                "{} AND (\"age\" < {} OR \"age\" > {})",
                pr("age"),
                c.age_min,
                c.age_max
            ),
        ));
    }
    if has("id_number") {
        out.push((
            "id_number.invalid".into(),
            format!("{} AND NOT cn_id_valid(\"id_number\")", pr("id_number")),
        ));
        out.push((
            "id_number.age_mismatch".into(),
            format!(
                "{} AND {} AND abs(cn_id_age(\"id_number\", \"event_time\") - \"age\") > {}",
                pr("id_number"),
                pr("age"),
                c.id_age_tolerance_years
            ),
        ));
    }
    if has("satisfaction") {
        out.push((
            "satisfaction.range".into(),
            format!(
                "{} AND (\"satisfaction\" < {} OR \"satisfaction\" > {})",
                pr("satisfaction"),
                c.satisfaction_min,
                c.satisfaction_max
            ),
        ));
    }
    if has("amount") {
        out.push((
            "amount.negative".into(),
            format!("{} AND \"amount\" < 0", pr("amount")),
        ));
    }
    for f in ["stage", "kind"] {
        if let Some(values) = schema.field(f).and_then(|s| s.enum_values.as_ref()) {
            let list = values
                .iter()
                .map(|v| format!("'{v}'"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push((
                format!("{f}.enum"),
                format!("{} AND lower(trim({})) NOT IN ({list})", pr(f), q(f)),
            ));
        }
    }
    for f in ["closed_at", "responded_at"] {
        if has(f) {
            out.push((
                format!("{f}.before_event"),
                format!("{} < \"event_time\"", q(f)),
            ));
        }
    }
    out.push((
        "entered_at.before_event".into(),
        format!(
            "\"entered_at\" < \"event_time\" - INTERVAL '{} seconds'",
            c.entered_before_event.as_secs()
        ),
    ));
    out.push((
        "entered_at.in_future".into(),
        format!(
            "\"entered_at\" > \"dq_ingested_at\" + INTERVAL '{} seconds'",
            c.entered_after_ingestion.as_secs()
        ),
    ));
    out
}

/// Every built-in check name a pipeline can produce (for docs and `checks.disable`).
pub fn builtin_check_names(p: &Pipeline) -> Vec<(RecordType, String)> {
    let mut v = Vec::new();
    for rt in RecordType::ALL {
        let present: BTreeMap<String, (String, String)> = record_schema(rt)
            .fields
            .iter()
            .map(|f| (f.name.clone(), (String::new(), String::new())))
            .collect();
        for (name, _) in builtin_checks(rt, p, &present) {
            v.push((rt, name));
        }
    }
    v
}

#[cfg(test)]
mod tests;
