//! Property: the period tables are the daily tables summed. On generated streams of random
//! size, start (across month, quarter and year ends) and scoring chunk size, every count
//! of `person_period` and `team_period` equals the sum of the daily counts of that subject
//! over the period's days, every rate equals the ratio of those sums, and every daily row
//! lies in exactly one week, one month and one quarter.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use crmdq_config::Pipeline;
use crmdq_pipeline::{FixedClock, ingest};
use crmdq_schema::ScoreTable;
use crmdq_score::sql::{COUNTS, RATES};
use crmdq_score::{ScoreOptions, score_with};
use crmdq_testkit::generate::{GenSpec, generate, roster_csv};
use crmdq_warehouse::Warehouse;
use proptest::prelude::*;

async fn one(ctx: &datafusion::prelude::SessionContext, sql: &str) -> i64 {
    let b = ctx.sql(sql).await.unwrap().collect().await.unwrap();
    let c = b[0].column(0).as_primitive::<Int64Type>();
    assert!(c.is_valid(0), "{sql}");
    c.value(0)
}

/// `expr` with every count column prefixed by `x.`.
fn qualify(expr: &str) -> String {
    let mut out = String::new();
    let mut word = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if COUNTS.contains(&word.as_str()) {
            out.push_str("x.");
        }
        out.push_str(&std::mem::take(&mut word));
        out.push(c);
    }
    out.pop();
    out
}

/// Per count and rate, (its name, a query counting the rows of `table` where it differs
/// from the daily sums, or from the ratio of the row's counts).
fn mismatches(table: ScoreTable, daily: &str, keys: &[&str]) -> Vec<(String, String)> {
    let on = keys
        .iter()
        .map(|k| format!("d.{k} = x.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let sums = COUNTS
        .iter()
        .map(|c| format!("SUM(d.{c}) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let group = keys
        .iter()
        .map(|k| format!("x.{k}"))
        .collect::<Vec<_>>()
        .join(", ");
    let differ: Vec<(String, String)> = COUNTS
        .iter()
        .map(|c| ((*c).to_string(), format!("s.{c} IS DISTINCT FROM x.{c}")))
        .chain(RATES.iter().map(|(r, num, den)| {
            let (num, den) = (qualify(num), qualify(den));
            (
                (*r).to_string(),
                format!(
                    "COALESCE(ABS(x.{r} - CAST({num} AS DOUBLE) / CAST(NULLIF({den}, 0) AS DOUBLE)) > 1e-9, \
                     (x.{r} IS NULL) <> (NULLIF({den}, 0) IS NULL))"
                ),
            )
        }))
        .collect();
    let name = table.name();
    let s_on = keys
        .iter()
        .map(|k| format!("s.{k} = x.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    differ
        .into_iter()
        .map(|(label, differ)| {
            (
                label,
                format!(
                    "SELECT CAST(COUNT(*) AS BIGINT) FROM {name} x JOIN ( \
           SELECT x.period_kind, x.period, {group}, {sums} FROM {name} x JOIN {daily} d ON {on} \
             AND CAST(d.dt AS DATE) BETWEEN x.period_start AND x.period_end \
           GROUP BY x.period_kind, x.period, {group}) s \
         ON s.period_kind = x.period_kind AND s.period = x.period AND {s_on} \
         WHERE {differ}"
                ),
            )
        })
        .collect()
}

async fn check(seed: u64, start_offset: i64, days: u32, people: u32, chunk_rows: u64) {
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures");
    let mut p = Pipeline::load(&fixtures.join("pipeline.yaml")).unwrap();
    p.warehouse.path = dir.path().join("wh");
    let w = Warehouse::open(&p.warehouse.path).unwrap();
    let spec = GenSpec {
        start: jiff::civil::date(2026, 12, 1) + jiff::Span::new().days(start_offset),
        days,
        people,
        seed,
        tz: p.time_zone.clone(),
        first_id: 0,
    };
    let roster = dir.path().join("roster.csv");
    std::fs::write(&roster, roster_csv(&spec)).unwrap();
    let input = dir.path().join("in.ndjson");
    std::fs::write(&input, generate(&spec).join("\n") + "\n").unwrap();
    let clock = Arc::new(FixedClock("2027-06-01T00:00:00Z".parse().unwrap()));
    ingest::ingest(&p, &w, &[input], clock, &mut |_, _, _| {})
        .await
        .unwrap();
    let opts = ScoreOptions {
        chunk_rows,
        // As many review buckets as chunks, roughly: both vary together here, and the
        // chunk test holds each apart against the whole warehouse.
        bucket_rows: chunk_rows,
        ..ScoreOptions::default()
    };
    score_with(&p, &w, Some(&roster), "2027-06-01T00:00:00Z".into(), &opts)
        .await
        .unwrap();
    let ctx = crmdq_catalog::open(&w, Some(&roster)).await.unwrap();
    assert!(one(&ctx, "SELECT CAST(COUNT(*) AS BIGINT) FROM person_period").await > 0);
    for (table, daily, keys) in [
        (
            ScoreTable::PersonPeriod,
            "person_daily",
            &["person_id", "role"][..],
        ),
        (ScoreTable::TeamPeriod, "team_daily", &["team_id"][..]),
    ] {
        for (column, sql) in mismatches(table, daily, keys) {
            let n = one(&ctx, &sql).await;
            assert_eq!(
                n,
                0,
                "{n} rows of {}: {column} differs from the sums of {daily}",
                table.name()
            );
        }
    }
    // Each daily row is in exactly one period of each kind.
    let n = one(
        &ctx,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT d.dt, d.person_id, d.role, x.period_kind, COUNT(*) AS n \
           FROM person_daily d JOIN person_period x ON x.person_id = d.person_id AND x.role = d.role \
             AND CAST(d.dt AS DATE) BETWEEN x.period_start AND x.period_end \
           GROUP BY d.dt, d.person_id, d.role, x.period_kind) WHERE n <> 1",
    )
    .await;
    assert_eq!(n, 0);
    let n = one(
        &ctx,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT d.dt, d.person_id, d.role, COUNT(*) AS n \
           FROM person_daily d JOIN person_period x ON x.person_id = d.person_id AND x.role = d.role \
             AND CAST(d.dt AS DATE) BETWEEN x.period_start AND x.period_end \
           GROUP BY d.dt, d.person_id, d.role) WHERE n <> 3",
    )
    .await;
    assert_eq!(n, 0);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3, ..ProptestConfig::default() })]
    #[test]
    fn periods_are_the_daily_tables_summed(
        seed in 0u64..10_000,
        start_offset in 0i64..40,
        days in 10u32..45,
        people in 4u32..10,
        chunk_rows in prop::sample::select(vec![500u64, 5_000, 400_000]),
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(check(seed, start_offset, days, people, chunk_rows));
    }
}
