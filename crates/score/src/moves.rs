//! `opportunity_moves` (`review.rs`) computed natively: each opportunity's end-of-day
//! states (`opportunity_days`: one row per record and date, with the day's highest
//! version) in date order, kept where the day's version is newer than every earlier
//! day's, each with the stage of the record's previous kept day (`prev`).
//!
//! The SQL in `review.rs` stays the definition (two window functions partitioned by
//! record id); DataFusion's window operator keeps a state per partition, which made it
//! the slowest step of the review pass (0.6 s of 1.5 s at 1M entries). `tests` hold the
//! two equal.
//!
//! `opportunity_days` itself is computed natively too ([`last_of_days`]): its ordered
//! `last_value`s keep an accumulator object per (record, date) group — the opportunity
//! buckets of a year of 10M entries took 1.2 s each and ~300 MB above the pass's
//! baseline, the score's peak.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, RecordBatch, StringBuilder};
use arrow::compute::{SortColumn, SortOptions, concat_batches, filter_record_batch, take};
use arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use arrow::error::ArrowError;

/// `batches` (of `opportunity_days`: `record_id`, `dt`, `owner_id`, `customer_id`,
/// `stage`, `version`) → `opportunity_moves` (`record_id`, `dt`, `owner_id`,
/// `customer_id`, `stage`, `prev`), sorted by record id and date.
pub fn stage_moves(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<RecordBatch, ArrowError> {
    let all = concat_batches(schema, batches)?;
    let col = |name: &str| -> Result<ArrayRef, ArrowError> {
        Ok(all.column(schema.index_of(name)?).clone())
    };
    let (id, dt) = (col("record_id")?, col("dt")?);
    let opts = SortOptions {
        descending: false,
        nulls_first: false,
    };
    let order = arrow::compute::lexsort_to_indices(
        &[
            SortColumn {
                values: id.clone(),
                options: Some(opts),
            },
            SortColumn {
                values: dt.clone(),
                options: Some(opts),
            },
        ],
        None,
    )?;
    let sorted = |a: ArrayRef| take(a.as_ref(), &order, None);
    let id = arrow::compute::cast(&sorted(id)?, &DataType::Utf8)?;
    let id = id.as_string::<i32>();
    let version = sorted(col("version")?)?;
    let version = version.as_primitive::<Int64Type>();
    let stage = arrow::compute::cast(&sorted(col("stage")?)?, &DataType::Utf8)?;
    let stage = stage.as_string::<i32>();
    let n = all.num_rows();
    let mut keep = Vec::with_capacity(n);
    let mut prev = StringBuilder::with_capacity(n, n * 8);
    // Per record: the highest version of the days before, and the stage of the last
    // kept day (None: no kept day yet, or its stage was NULL).
    let mut before: Option<i64> = None;
    let mut last_stage: Option<&str> = None;
    for i in 0..n {
        let same = i > 0
            && id.is_valid(i) == id.is_valid(i - 1)
            && (!id.is_valid(i) || id.value(i) == id.value(i - 1));
        if !same {
            before = None;
            last_stage = None;
        }
        let v = version.is_valid(i).then(|| version.value(i));
        let kept = match (before, v) {
            (None, _) => true,
            (Some(b), Some(v)) => v > b,
            (Some(_), None) => false,
        };
        keep.push(kept);
        if kept {
            prev.append_option(last_stage);
            last_stage = stage.is_valid(i).then(|| stage.value(i));
        } else {
            prev.append_null();
        }
        if let Some(v) = v {
            before = Some(before.map_or(v, |b| b.max(v)));
        }
    }
    let cols = ["record_id", "dt", "owner_id", "customer_id", "stage"];
    let mut fields: Vec<Field> = Vec::new();
    let mut arrays: Vec<ArrayRef> = Vec::new();
    for c in cols {
        let f = schema.field_with_name(c)?;
        fields.push(f.clone());
        arrays.push(sorted(col(c)?)?);
    }
    fields.push(Field::new("prev", DataType::Utf8, true));
    arrays.push(Arc::new(prev.finish()) as ArrayRef);
    let out = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    filter_record_batch(&out, &BooleanArray::from(keep))
}

/// `batches` (of `opportunity_versions`: `record_id`, `dt`, `owner_id`, `customer_id`,
/// `stage`, `version`, each version once) → per (`record_id`, `dt`) the row of its last
/// version (ordered by version, a NULL version last, as `last_value(… ORDER BY version)`
/// does) with `version` the highest non-NULL version of the group (`MAX(version)`), in
/// those columns; `opportunity_days` is this with the stage lower-cased and trimmed.
pub fn last_of_days(
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<RecordBatch, ArrowError> {
    let cols = [
        "record_id",
        "dt",
        "owner_id",
        "customer_id",
        "stage",
        "version",
    ];
    let idx = cols
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<Result<Vec<_>, _>>()?;
    let narrow = Arc::new(schema.project(&idx)?);
    let parts = batches
        .iter()
        .map(|b| b.project(&idx))
        .collect::<Result<Vec<_>, _>>()?;
    let all = concat_batches(&narrow, &parts)?;
    drop(parts);
    let opts = SortOptions {
        descending: false,
        nulls_first: false,
    };
    let sort = |c: usize| SortColumn {
        values: all.column(c).clone(),
        options: Some(opts),
    };
    let order = arrow::compute::lexsort_to_indices(&[sort(0), sort(1), sort(5)], None)?;
    let id = arrow::compute::cast(all.column(0), &DataType::Utf8)?;
    let id = id.as_string::<i32>();
    let dt = arrow::compute::cast(all.column(1), &DataType::Utf8)?;
    let dt = dt.as_string::<i32>();
    let version = all.column(5).as_primitive::<Int64Type>();
    let same = |a: usize, b: usize| {
        let eq = |x: &arrow::array::StringArray| {
            x.is_valid(a) == x.is_valid(b) && (!x.is_valid(a) || x.value(a) == x.value(b))
        };
        eq(id) && eq(dt)
    };
    let mut last: Vec<u32> = Vec::new();
    let mut highest: Vec<Option<i64>> = Vec::new();
    let n = order.len();
    let mut max: Option<i64> = None;
    for k in 0..n {
        let i = order.value(k) as usize;
        let v = version.is_valid(i).then(|| version.value(i));
        max = match (max, v) {
            (Some(m), Some(v)) => Some(m.max(v)),
            (m, v) => m.or(v),
        };
        let ends = k + 1 == n || !same(i, order.value(k + 1) as usize);
        if ends {
            last.push(order.value(k));
            highest.push(max);
            max = None;
        }
    }
    let last = arrow::array::UInt32Array::from(last);
    let mut arrays: Vec<ArrayRef> = (0..5)
        .map(|c| take(all.column(c).as_ref(), &last, None))
        .collect::<Result<_, _>>()?;
    arrays.push(Arc::new(arrow::array::Int64Array::from(highest)));
    let fields: Vec<Field> = narrow
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_nullable(true))
        .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// (record_id, dt, stage, version)
    type Day<'a> = (Option<&'a str>, &'a str, Option<&'a str>, Option<i64>);

    fn days(rows: &[Day]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("record_id", DataType::Utf8, true),
            Field::new("dt", DataType::Utf8, true),
            Field::new("owner_id", DataType::Utf8, true),
            Field::new("customer_id", DataType::Utf8, true),
            Field::new("stage", DataType::Utf8, true),
            Field::new("version", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| Some(r.1)).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter()
                        .map(|r| r.0.map(|id| format!("o-{id}")))
                        .collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(vec![Some("c"); rows.len()])),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.3).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn lines(b: &RecordBatch) -> Vec<String> {
        let mut out: Vec<String> = (0..b.num_rows())
            .map(|i| {
                (0..b.num_columns())
                    .map(|c| {
                        let a = arrow::compute::cast(b.column(c), &DataType::Utf8).unwrap();
                        let a = a.as_string::<i32>();
                        if a.is_valid(i) {
                            a.value(i).to_string()
                        } else {
                            "∅".into()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        out.sort();
        out
    }

    /// The rows of the review plan's view `view` over `batch` registered as `table` (in
    /// two partitions, split at `at`).
    async fn from_sql(
        ctx: &SessionContext,
        view: &str,
        table: &str,
        batch: &RecordBatch,
        at: usize,
    ) -> RecordBatch {
        let parts = vec![
            vec![batch.slice(0, at)],
            vec![batch.slice(at, batch.num_rows() - at)],
        ];
        ctx.register_table(
            table,
            Arc::new(MemTable::try_new(batch.schema(), parts).unwrap()),
        )
        .unwrap();
        let p =
            crmdq_config::Pipeline::from_str_at("{}", std::path::Path::new("t.yaml"), &|_| None)
                .unwrap();
        let plan = crate::review::plan(&p);
        let sql = &plan.bucket.iter().find(|(n, _)| n == view).unwrap().1;
        let df = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        concat_batches(&df[0].schema(), &df).unwrap()
    }

    /// The native moves equal the SQL definition (`review.rs`) on the cases that matter:
    /// versions rising, a day whose versions are older than an earlier day's (late entry
    /// of an old version: not a move), a NULL stage, NULL record ids, won after lost,
    /// a NULL version.
    #[tokio::test]
    async fn native_equals_sql() {
        let batch = days(&[
            (Some("A"), "2026-01-01", Some("lead"), Some(1)),
            (Some("A"), "2026-01-03", Some("qualified"), Some(2)),
            (Some("A"), "2026-01-05", Some("proposal"), Some(1)),
            (Some("A"), "2026-01-06", Some("won"), Some(4)),
            (Some("B"), "2026-01-02", Some("lost"), Some(2)),
            (Some("B"), "2026-01-01", None, Some(1)),
            (Some("B"), "2026-01-04", Some("won"), Some(3)),
            (None, "2026-01-01", Some("lead"), Some(1)),
            (None, "2026-01-02", Some("won"), Some(2)),
            (Some("C"), "2026-01-01", Some("lead"), None),
            (Some("C"), "2026-01-02", Some("won"), Some(1)),
            (Some("D"), "2026-01-01", Some("lead"), Some(2)),
            (Some("D"), "2026-01-02", Some("won"), None),
        ]);
        let schema = batch.schema();
        let native = stage_moves(&schema, std::slice::from_ref(&batch)).unwrap();
        let ctx = SessionContext::new();
        let from_sql = from_sql(&ctx, "opportunity_moves", "opportunity_days", &batch, 6).await;
        assert_eq!(lines(&native), lines(&from_sql));
        // Not trivially equal: the late old version is dropped, B's won follows lost.
        assert_eq!(native.num_rows(), 11);
        assert!(
            lines(&native)
                .iter()
                .any(|l| l == "B|2026-01-04|o-B|c|won|lost"),
            "{:?}",
            lines(&native)
        );
    }

    /// The native last state of each day ([`last_of_days`], then the stage normalized as
    /// `review_pass` does) equals the SQL definition of `opportunity_days`: several
    /// versions a day (delivered out of order), a NULL version (last, yet not the MAX),
    /// NULL record ids, stages to trim and lower-case, a NULL stage.
    #[tokio::test]
    async fn native_days_equal_sql() {
        let batch = days(&[
            (Some("A"), "2026-01-01", Some(" Lead"), Some(2)),
            (Some("A"), "2026-01-01", Some("qualified "), Some(3)),
            (Some("A"), "2026-01-01", Some("lead"), Some(1)),
            (Some("A"), "2026-01-02", Some("WON"), Some(4)),
            (Some("B"), "2026-01-01", Some("lead"), None),
            (Some("B"), "2026-01-01", Some("proposal"), Some(7)),
            (Some("B"), "2026-01-03", None, Some(8)),
            (None, "2026-01-01", Some("lead"), Some(1)),
            (None, "2026-01-01", Some("Lost"), Some(2)),
            (None, "2026-01-02", Some("won"), Some(3)),
            (Some("C"), "2026-01-05", Some("lead"), Some(1)),
        ]);
        let schema = batch.schema();
        let ctx = SessionContext::new();
        let native = last_of_days(&schema, &[batch.slice(0, 5), batch.slice(5, 6)]).unwrap();
        ctx.register_table(
            "opportunity_days_last",
            Arc::new(MemTable::try_new(native.schema(), vec![vec![native]]).unwrap()),
        )
        .unwrap();
        let df = ctx
            .sql(crate::passes::DAYS_FROM_LAST)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let native = concat_batches(&df[0].schema(), &df).unwrap();
        let from_sql = from_sql(&ctx, "opportunity_days", "opportunity_versions", &batch, 6).await;
        assert_eq!(lines(&native), lines(&from_sql));
        assert_eq!(native.num_rows(), 7);
        for want in [
            "A|2026-01-01|o-A|c|qualified|3",
            "B|2026-01-01|o-B|c|lead|7",
            "∅|2026-01-01|∅|c|lost|2",
        ] {
            assert!(
                lines(&native).iter().any(|l| l == want),
                "{want}: {:?}",
                lines(&native)
            );
        }
    }
}
