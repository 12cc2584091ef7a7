//! What each rule observes: person and team rules read a column of the score tables over
//! a range of business dates (the days judged and the baseline window before them),
//! pipeline rules read the warehouse's ingestion times. Deciding is separate and pure
//! ([`crate::episode`]), so it is tested without a warehouse.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMicrosecondType};
use crmdq_config::{AlertRule, AlertScope};
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;
use jiff::civil::Date;

use crate::AlertError;

/// A pipeline rule's reading at the clock's now.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub subject: String,
    pub entries: Option<i64>,
    pub value: Option<f64>,
}

/// A person's or team's row of the score table on one business date.
#[derive(Debug, Clone, PartialEq)]
pub struct DayRow {
    pub team_id: Option<String>,
    pub manager_id: Option<String>,
    pub entries: Option<i64>,
    pub value: f64,
}

/// Subject → business date → its row, for the days it is judged on (at least the rule's
/// `min_entries` and a value).
pub type Rows = BTreeMap<String, BTreeMap<Date, DayRow>>;

/// Run `sql` with positional parameters and collect it.
pub(crate) async fn query(
    ctx: &SessionContext,
    sql: &str,
    params: Vec<ScalarValue>,
) -> Result<Vec<RecordBatch>, AlertError> {
    let df = ctx
        .sql(sql)
        .await
        .map_err(|e| AlertError::query(sql, e))?
        .with_param_values(params)
        .map_err(|e| AlertError::query(sql, e))?;
    df.collect().await.map_err(|e| AlertError::query(sql, e))
}

pub(crate) fn s(v: &str) -> ScalarValue {
    ScalarValue::Utf8(Some(v.to_string()))
}

/// Column `name` of row `i` as text / f64 / i64 (None when null or absent).
pub(crate) fn text(b: &RecordBatch, name: &str, i: usize) -> Option<String> {
    let c = b.column_by_name(name)?;
    if c.is_null(i) {
        return None;
    }
    let c = arrow::compute::cast(c, &DataType::Utf8).ok()?;
    Some(c.as_string::<i32>().value(i).to_string())
}

pub(crate) fn float(b: &RecordBatch, name: &str, i: usize) -> Option<f64> {
    let c = b.column_by_name(name)?;
    if c.is_null(i) {
        return None;
    }
    let c = arrow::compute::cast(c, &DataType::Float64).ok()?;
    Some(c.as_primitive::<Float64Type>().value(i))
}

pub(crate) fn int(b: &RecordBatch, name: &str, i: usize) -> Option<i64> {
    let c = b.column_by_name(name)?;
    if c.is_null(i) {
        return None;
    }
    let c = arrow::compute::cast(c, &DataType::Int64).ok()?;
    Some(c.as_primitive::<Int64Type>().value(i))
}

/// The person- or team-scope rows of `rule` from `from` to `to` (inclusive): the judged
/// days and the baseline window before them, in one query. A person with rows for two
/// roles on a day is judged on the first (by role).
pub async fn observe_series(
    ctx: &SessionContext,
    rule: &AlertRule,
    from: Date,
    to: Date,
) -> Result<Rows, AlertError> {
    let (table, key) = match rule.scope {
        AlertScope::Person => ("person_daily", "person_id"),
        _ => ("team_daily", "team_id"),
    };
    let (manager, order) = if rule.scope == AlertScope::Person {
        ("manager_id", ", role")
    } else {
        ("CAST(NULL AS VARCHAR)", "")
    };
    let m = &rule.metric;
    let sql = match rule.period {
        None => format!(
            "SELECT {key} AS subject, dt, team_id, {manager} AS manager_id, entries, \
               CAST({m} AS DOUBLE) AS value \
             FROM {table} WHERE dt >= $1 AND dt <= $2 AND entries >= {min} AND {m} IS NOT NULL \
             ORDER BY subject, dt{order}",
            min = rule.min_entries,
        ),
        // A period rule: on each scored business date, the judged row of the period that
        // contains it.
        Some(kind) => {
            let period_table = if rule.scope == AlertScope::Person {
                "person_period"
            } else {
                "team_period"
            };
            let manager = manager.replace("manager_id", "x.manager_id");
            format!(
                "SELECT x.{key} AS subject, d.dt, x.team_id, {manager} AS manager_id, x.entries, \
                   CAST(x.{m} AS DOUBLE) AS value \
                 FROM {period_table} x \
                 JOIN (SELECT DISTINCT dt FROM {table} WHERE dt >= $1 AND dt <= $2) d \
                   ON CAST(d.dt AS DATE) BETWEEN x.period_start AND x.period_end \
                 WHERE x.period_kind = '{kind}' AND x.judged AND x.entries >= {min} \
                   AND x.{m} IS NOT NULL \
                 ORDER BY subject, d.dt{order}",
                kind = kind.as_str(),
                min = rule.min_entries,
                order = order.replace("role", "x.role"),
            )
        }
    };
    let batches = query(ctx, &sql, vec![s(&from.to_string()), s(&to.to_string())]).await?;
    let team_managers = if rule.scope == AlertScope::Team {
        team_managers(ctx, from, to).await?
    } else {
        BTreeMap::new()
    };
    let mut out = Rows::new();
    for b in &batches {
        for i in 0..b.num_rows() {
            let (Some(subject), Some(dt), Some(value)) = (
                text(b, "subject", i),
                text(b, "dt", i).and_then(|d| d.parse::<Date>().ok()),
                float(b, "value", i),
            ) else {
                continue;
            };
            let manager_id = text(b, "manager_id", i)
                .or_else(|| team_managers.get(&(dt, subject.clone())).cloned());
            out.entry(subject).or_default().entry(dt).or_insert(DayRow {
                team_id: text(b, "team_id", i),
                manager_id,
                entries: int(b, "entries", i),
                value,
            });
        }
    }
    Ok(out)
}

/// Each team's manager on each date from `from` to `to`: the manager most of its scored
/// members report to (ties: the smallest id).
async fn team_managers(
    ctx: &SessionContext,
    from: Date,
    to: Date,
) -> Result<BTreeMap<(Date, String), String>, AlertError> {
    let b = query(
        ctx,
        "SELECT dt, team_id, manager_id, COUNT(*) AS n FROM person_daily \
         WHERE dt >= $1 AND dt <= $2 AND team_id IS NOT NULL AND manager_id IS NOT NULL \
         GROUP BY dt, team_id, manager_id ORDER BY dt, team_id, n DESC, manager_id",
        vec![s(&from.to_string()), s(&to.to_string())],
    )
    .await?;
    let mut out = BTreeMap::new();
    for batch in &b {
        for i in 0..batch.num_rows() {
            if let (Some(d), Some(t), Some(m)) = (
                text(batch, "dt", i).and_then(|d| d.parse::<Date>().ok()),
                text(batch, "team_id", i),
                text(batch, "manager_id", i),
            ) {
                out.entry((d, t)).or_insert(m);
            }
        }
    }
    Ok(out)
}

/// What only a running consumer knows.
#[derive(Debug, Clone, Default)]
pub struct LiveInputs {
    /// Summed consumer lag over the assigned partitions.
    pub consumer_lag: Option<i64>,
}

fn one_ts(batches: &[RecordBatch]) -> Option<i64> {
    let b = batches.first()?;
    let c = b.column(0);
    if b.num_rows() == 0 || c.is_null(0) {
        return None;
    }
    Some(c.as_primitive::<TimestampMicrosecondType>().value(0))
}

/// The pipeline-scope observation of `rule` at `now` (µs), or None when it cannot be
/// evaluated here (consumer lag outside `run`).
pub async fn observe_pipeline(
    ctx: &SessionContext,
    w: &crmdq_warehouse::Warehouse,
    snap: &crmdq_warehouse::Snapshot,
    rule: &AlertRule,
    pipeline: &str,
    now_us: i64,
    live: &LiveInputs,
) -> Result<Option<Observation>, AlertError> {
    let obs = |value: Option<f64>, entries: Option<i64>, subject: String| Observation {
        subject,
        entries,
        value,
    };
    match rule.metric.as_str() {
        "dead_letter_ratio" => {
            let since = now_us - rule.window.as_micros() as i64;
            let dl = ingested_since(
                w,
                snap,
                &[("dead_letters", crmdq_schema::dead_letter_schema())],
                since,
            )
            .await?;
            let tables: Vec<(&str, arrow::datatypes::SchemaRef)> = crmdq_schema::RecordType::ALL
                .iter()
                .map(|rt| (rt.as_str(), crmdq_schema::record_table_schema(*rt)))
                .collect();
            let rec = ingested_since(w, snap, &tables, since).await?;
            let n = dl + rec;
            if n < rule.min_entries as i64 {
                return Ok(Some(obs(None, Some(n), pipeline.to_string())));
            }
            Ok(Some(obs(
                Some(dl as f64 / n as f64),
                Some(n),
                pipeline.to_string(),
            )))
        }
        "freshness_seconds" => {
            // Every record table has event_time (the pooled view does not carry it).
            let sql = format!(
                "SELECT MAX(t) FROM ({})",
                crmdq_schema::RecordType::ALL
                    .iter()
                    .map(|rt| format!("SELECT event_time AS t FROM \"{rt}\""))
                    .collect::<Vec<_>>()
                    .join(" UNION ALL ")
            );
            let b = query(ctx, &sql, vec![]).await?;
            let v = one_ts(&b).map(|us| (now_us - us) as f64 / 1e6);
            Ok(Some(obs(v, None, pipeline.to_string())))
        }
        "topic_silence_seconds" => {
            let (filter, params, subject) = match &rule.topic {
                Some(t) => (
                    " WHERE src_topic = $1",
                    vec![s(t)],
                    format!("{pipeline}/{t}"),
                ),
                None => ("", vec![], pipeline.to_string()),
            };
            let sql = format!(
                "SELECT MAX(t) FROM (SELECT dq_ingested_at AS t, src_topic FROM all_deliveries \
                   UNION ALL SELECT dq_ingested_at AS t, src_topic FROM dead_letters){filter}"
            );
            let b = query(ctx, &sql, params).await?;
            let v = one_ts(&b).map(|us| (now_us - us) as f64 / 1e6);
            Ok(Some(obs(v, None, subject)))
        }
        "consumer_lag_messages" => Ok(live
            .consumer_lag
            .map(|l| obs(Some(l as f64), None, pipeline.to_string()))),
        _ => Ok(None),
    }
}

/// How many rows of `tables` have `dq_ingested_at > since_us`: from the commit log for
/// every file whose ingestion range ([`crmdq_warehouse::FileAdd::ingested_us`]) lies
/// wholly after or at-or-before `since_us`, by reading only the other files. (The ratio
/// is evaluated periodically by `run`; reading every record file each time grew with
/// the warehouse.)
pub async fn ingested_since(
    w: &crmdq_warehouse::Warehouse,
    snap: &crmdq_warehouse::Snapshot,
    tables: &[(&str, arrow::datatypes::SchemaRef)],
    since_us: i64,
) -> Result<i64, AlertError> {
    let mut n: u64 = 0;
    let ctx = SessionContext::new();
    let mut read = Vec::new();
    for (table, schema) in tables {
        let mut straddling = Vec::new();
        for f in snap.files_of(table) {
            match f.ingested_us {
                Some([lo, _]) if lo > since_us => n += f.rows,
                Some([_, hi]) if hi <= since_us => {}
                _ => straddling.push(f.clone()),
            }
        }
        if straddling.is_empty() {
            continue;
        }
        crmdq_warehouse::register_table(&ctx, w, table, schema.clone(), &straddling)
            .map_err(|e| AlertError::query(table, e))?;
        read.push(format!(
            "SELECT COUNT(*) AS n FROM \"{table}\" WHERE dq_ingested_at > $1"
        ));
    }
    if !read.is_empty() {
        let sql = format!(
            "SELECT CAST(SUM(n) AS BIGINT) AS n FROM ({})",
            read.join(" UNION ALL ")
        );
        let b = query(
            &ctx,
            &sql,
            vec![ScalarValue::TimestampMicrosecond(
                Some(since_us),
                Some("UTC".into()),
            )],
        )
        .await?;
        n += b.first().and_then(|b| int(b, "n", 0)).unwrap_or(0) as u64;
    }
    Ok(n as i64)
}

/// The name under which [`crate::EvalOptions::scored_entries`] is registered.
pub const SCORED_ENTRIES: &str = "crmdq_scored_entries";

/// The entries of business date D — exactly those scoring counted on D — with the
/// columns [`explain`] reads, held in memory under the returned name the first time a
/// firing rule needs them (an evaluation with many firing subjects, the first one on a
/// warehouse say, used to deduplicate the whole warehouse once per subject: minutes on
/// a million entries).
///
/// Deduplicating only D's deliveries would be wrong (a record version first delivered on
/// another date is not an entry of D), so: every delivery of each key (record_type,
/// record_id, version) delivered on D — D's files, then one pass over the key columns —
/// then the first delivery of each, kept if it is on D.
async fn entries_on(
    ctx: &SessionContext,
    date: Date,
    scored_dt: Option<&str>,
) -> Result<String, AlertError> {
    let day = date.strftime("%Y%m%d").to_string();
    let name = format!("crmdq_entries_on_{day}");
    if ctx.table_exist(name.as_str()).unwrap_or(false) {
        return Ok(name);
    }
    if scored_dt == Some(date.to_string().as_str())
        && ctx.table_exist(SCORED_ENTRIES).unwrap_or(false)
    {
        // Already deduplicated by the scoring run that precedes this evaluation.
        let sql = format!(
            "SELECT record_id, entered_by, dq_complete, dq_valid, dq_on_time FROM {SCORED_ENTRIES} WHERE dt = $1"
        );
        memory_table(ctx, &name, &sql, date).await?;
        return Ok(name);
    }
    let deliveries = format!("crmdq_deliveries_on_{day}");
    let keys = ["record_type", "record_id", "version"];
    let (key_cols, on) = crmdq_catalog::views::key_join(&keys, "a", "k");
    let sql = format!(
        "SELECT a.* FROM all_deliveries a LEFT SEMI JOIN \
           (SELECT DISTINCT {key_cols} FROM all_deliveries WHERE dt = $1) k ON {on}"
    );
    memory_table(ctx, &deliveries, &sql, date).await?;
    let sql = format!(
        "SELECT record_id, entered_by, dq_complete, dq_valid, dq_on_time FROM ({}) WHERE dt = $1",
        crmdq_catalog::views::dedup_by(&deliveries, crmdq_catalog::views::COMMON, &keys)
    );
    memory_table(ctx, &name, &sql, date).await?;
    Ok(name)
}

/// Run `sql` (parameter $1: `date`) and register its result as in-memory table `name`.
async fn memory_table(
    ctx: &SessionContext,
    name: &str,
    sql: &str,
    date: Date,
) -> Result<(), AlertError> {
    let df = ctx
        .sql(sql)
        .await
        .and_then(|df| df.with_param_values(vec![s(&date.to_string())]))
        .map_err(|e| AlertError::query(sql, e))?;
    let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
    let batches = df.collect().await.map_err(|e| AlertError::query(sql, e))?;
    let table = datafusion::datasource::MemTable::try_new(schema, vec![batches])
        .map_err(|e| AlertError::query(sql, e))?;
    ctx.register_table(name, std::sync::Arc::new(table))
        .map_err(|e| AlertError::query(sql, e))?;
    Ok(())
}

/// For each subject (of one scope, all firing on one metric on D): the rules that cost
/// it most on D, as "rule ×n" (at most 3), and up to 3 example record ids of its failing
/// entries. Two queries whatever the number of subjects (one per subject was most of a
/// first evaluation's time: 59 firing subjects, ~1 s on a million entries).
pub async fn explain_many(
    ctx: &SessionContext,
    scope: AlertScope,
    metric: &str,
    subjects: &[String],
    date: Date,
    scored_dt: Option<&str>,
) -> Result<BTreeMap<String, Explanation>, AlertError> {
    let mut out: BTreeMap<String, Explanation> = BTreeMap::new();
    if subjects.is_empty() || scope == AlertScope::Pipeline {
        return Ok(out);
    }
    // The rules behind the metric that dropped (all rules for composite metrics).
    let (relevant, failing) = match metric {
        "completeness_rate" => ("rule LIKE 'missing.%'", "NOT dq_complete"),
        "validity_rate" => (
            "rule NOT LIKE 'missing.%' AND rule <> 'late'",
            "NOT dq_valid",
        ),
        "timeliness_rate" => ("rule = 'late'", "NOT dq_on_time"),
        _ => (
            "TRUE",
            "(NOT dq_complete OR NOT dq_valid OR NOT dq_on_time)",
        ),
    };
    // $1 is D, $2… the subjects.
    let list = (2..subjects.len() + 2)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut params = vec![s(&date.to_string())];
    params.extend(subjects.iter().map(|x| s(x)));
    let table = entries_on(ctx, date, scored_dt).await?;
    let (subject_col, subject_entries) = match scope {
        AlertScope::Person => (
            "person_id",
            format!(
                "SELECT DISTINCT entered_by AS subject, record_id FROM {table} \
                 WHERE entered_by IN ({list}) AND {failing}"
            ),
        ),
        // A team's entries: those of the people scored in it on D (the roster team,
        // or for people off the roster their record team), as rule_daily counts them.
        _ => (
            "team_id",
            format!(
                "SELECT DISTINCT m.team_id AS subject, e.record_id FROM {table} e \
                 JOIN (SELECT DISTINCT person_id, team_id FROM person_daily \
                   WHERE dt = $1 AND team_id IN ({list})) m ON e.entered_by = m.person_id \
                 WHERE {failing}"
            ),
        ),
    };
    let rules = query(
        ctx,
        &format!(
            "SELECT subject, rule, n FROM (SELECT subject, rule, n, \
               ROW_NUMBER() OVER (PARTITION BY subject ORDER BY n DESC, rule) AS rk FROM ( \
                 SELECT {subject_col} AS subject, rule, CAST(SUM(entries) AS BIGINT) AS n \
                 FROM rule_daily WHERE {subject_col} IN ({list}) AND dt = $1 AND {relevant} \
                 GROUP BY {subject_col}, rule)) \
             WHERE rk <= 3 ORDER BY subject, rk"
        ),
        params.clone(),
    )
    .await?;
    for batch in &rules {
        for i in 0..batch.num_rows() {
            if let (Some(subject), Some(r), Some(n)) = (
                text(batch, "subject", i),
                text(batch, "rule", i),
                int(batch, "n", i),
            ) {
                let e = out.entry(subject).or_default();
                let top = e.0.get_or_insert_with(String::new);
                if !top.is_empty() {
                    top.push_str(", ");
                }
                let _ = write!(top, "{r} ×{n}");
            }
        }
    }
    let examples = query(
        ctx,
        &format!(
            "SELECT subject, record_id FROM (SELECT subject, record_id, \
               ROW_NUMBER() OVER (PARTITION BY subject ORDER BY record_id) AS rk \
               FROM ({subject_entries})) WHERE rk <= 3 ORDER BY subject, rk"
        ),
        params,
    )
    .await?;
    for batch in &examples {
        for i in 0..batch.num_rows() {
            if let (Some(subject), Some(id)) =
                (text(batch, "subject", i), text(batch, "record_id", i))
            {
                out.entry(subject).or_default().1.push(id);
            }
        }
    }
    Ok(out)
}

/// A firing subject's explanation: its costliest rules ("rule ×n, …") and example
/// record ids.
pub type Explanation = (Option<String>, Vec<String>);

#[cfg(test)]
mod explain_tests {
    use super::*;

    async fn ctx() -> SessionContext {
        let ctx = SessionContext::new();
        for sql in [
            "CREATE TABLE rule_daily AS SELECT * FROM (VALUES \
               ('2026-10-20', 'a', 't1', 'missing.phone', 5), ('2026-10-20', 'a', 't1', 'missing.age', 2), \
               ('2026-10-20', 'a', 't1', 'late', 4), ('2026-10-20', 'a', 't1', 'phone.invalid', 1), \
               ('2026-10-20', 'a', 't1', 'missing.email', 1), ('2026-10-20', 'a', 't1', 'missing.zip', 1), \
               ('2026-10-20', 'b', 't1', 'missing.age', 3), ('2026-10-20', 'c', 't2', 'missing.age', 7), \
               ('2026-10-19', 'a', 't1', 'missing.x', 100)) \
             AS v(dt, person_id, team_id, rule, entries)",
            "CREATE TABLE person_daily AS SELECT * FROM (VALUES \
               ('2026-10-20', 'a', 't1'), ('2026-10-20', 'b', 't1'), ('2026-10-20', 'c', 't2'), \
               ('2026-10-19', 'c', 't1')) AS v(dt, person_id, team_id)",
            "CREATE TABLE crmdq_scored_entries AS SELECT * FROM (VALUES \
               ('2026-10-20', 'r3', 'a', true, true, true), ('2026-10-20', 'r2', 'a', false, true, true), \
               ('2026-10-20', 'r1', 'a', false, true, true), ('2026-10-20', 'r4', 'a', false, true, true), \
               ('2026-10-20', 'r0', 'a', false, true, true), ('2026-10-20', 'r9', 'b', false, true, true), \
               ('2026-10-20', 'r5', 'b', true, true, false), ('2026-10-20', 'r00', 'c', false, true, true), \
               ('2026-10-19', 'q1', 'b', false, true, true)) \
             AS v(dt, record_id, entered_by, dq_complete, dq_valid, dq_on_time)",
        ] {
            ctx.sql(sql).await.unwrap().collect().await.unwrap();
        }
        ctx
    }

    fn x(top: &str, ids: &[&str]) -> Explanation {
        (
            Some(top.to_string()),
            ids.iter().map(ToString::to_string).collect(),
        )
    }

    /// Many subjects in one batch: each gets its own rules and records, exactly what it
    /// gets alone, and nothing from other dates, people or teams.
    #[tokio::test]
    async fn each_subject_gets_its_own_rules_and_records() {
        let ctx = ctx().await;
        let d: Date = "2026-10-20".parse().unwrap();
        let subjects = |v: &[&str]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
        let people = explain_many(
            &ctx,
            AlertScope::Person,
            "completeness_rate",
            &subjects(&["a", "b", "nobody"]),
            d,
            Some("2026-10-20"),
        )
        .await
        .unwrap();
        let expected: BTreeMap<String, Explanation> = [
            (
                "a".to_string(),
                x(
                    "missing.phone ×5, missing.age ×2, missing.email ×1",
                    &["r0", "r1", "r2"],
                ),
            ),
            ("b".to_string(), x("missing.age ×3", &["r9"])),
        ]
        .into();
        assert_eq!(people, expected);
        for one in ["a", "b"] {
            let alone = explain_many(
                &ctx,
                AlertScope::Person,
                "completeness_rate",
                &subjects(&[one]),
                d,
                Some("2026-10-20"),
            )
            .await
            .unwrap();
            assert_eq!(alone.get(one), expected.get(one));
        }
        // A composite metric: all rules; the failing entries include late ones.
        let overall = explain_many(
            &ctx,
            AlertScope::Person,
            "score",
            &subjects(&["b"]),
            d,
            Some("2026-10-20"),
        )
        .await
        .unwrap();
        assert_eq!(overall["b"], x("missing.age ×3", &["r5", "r9"]));
        // Teams: their people on D (c is in t1 only on another day).
        let teams = explain_many(
            &ctx,
            AlertScope::Team,
            "completeness_rate",
            &subjects(&["t1", "t2"]),
            d,
            Some("2026-10-20"),
        )
        .await
        .unwrap();
        let expected: BTreeMap<String, Explanation> = [
            (
                "t1".to_string(),
                x(
                    "missing.age ×5, missing.phone ×5, missing.email ×1",
                    &["r0", "r1", "r2"],
                ),
            ),
            ("t2".to_string(), x("missing.age ×7", &["r00"])),
        ]
        .into();
        assert_eq!(teams, expected);
        let late = explain_many(
            &ctx,
            AlertScope::Team,
            "timeliness_rate",
            &subjects(&["t1"]),
            d,
            Some("2026-10-20"),
        )
        .await
        .unwrap();
        assert_eq!(late["t1"], x("late ×4", &["r5"]));
    }
}

#[cfg(test)]
mod ingested_since_tests {
    use super::*;
    use arrow::array::TimestampMicrosecondArray;
    use arrow::datatypes::{Field, Schema, TimeUnit};
    use std::sync::Arc;

    /// Counted from the log where a file's ingestion range decides, read where it does
    /// not (a range straddling the bound, or no range): always the SQL count.
    #[tokio::test]
    async fn equals_counting_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let w = crmdq_warehouse::Warehouse::open(dir.path()).unwrap();
        let schema = Arc::new(Schema::new(vec![Field::new(
            "dq_ingested_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        )]));
        let batch = |v: Vec<Option<i64>>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(
                    TimestampMicrosecondArray::from(v).with_timezone("UTC"),
                )],
            )
            .unwrap()
        };
        let mut sink = crmdq_warehouse::Sink::new(
            w.clone(),
            crmdq_warehouse::SinkLimits::default(),
            "t".into(),
        );
        for (dt, rows) in [
            ("2026-11-01", vec![Some(105), Some(100)]),
            ("2026-11-01", vec![Some(110)]),
            ("2026-11-02", vec![Some(220), Some(200)]),
            ("2026-11-03", vec![Some(150)]),
            ("2026-11-03", vec![None, Some(300)]),
        ] {
            sink.write("t", "records/t", dt, &batch(rows))
                .await
                .unwrap();
        }
        sink.commit(vec![], "2026-11-04T00:00:00Z".into(), "test".into())
            .await
            .unwrap();
        let snap = w.snapshot().await.unwrap();
        let ranges: Vec<Option<[i64; 2]>> =
            snap.files_of("t").iter().map(|f| f.ingested_us).collect();
        // The range spans the file's batches; a file with a NULL in any batch has none.
        assert_eq!(ranges, [Some([100, 110]), Some([200, 220]), None]);
        let ctx = SessionContext::new();
        crmdq_warehouse::register_table(&ctx, &w, "t", schema.clone(), snap.files_of("t")).unwrap();
        for since in [
            0, 99, 100, 104, 105, 110, 150, 199, 200, 219, 220, 299, 300, 400,
        ] {
            let b = query(
                &ctx,
                "SELECT COUNT(*) AS n FROM t WHERE dq_ingested_at > $1",
                vec![ScalarValue::TimestampMicrosecond(
                    Some(since),
                    Some("UTC".into()),
                )],
            )
            .await
            .unwrap();
            let want = int(&b[0], "n", 0).unwrap();
            let got = ingested_since(&w, &snap, &[("t", schema.clone())], since)
                .await
                .unwrap();
            assert_eq!(got, want, "since {since}");
        }
    }
}
