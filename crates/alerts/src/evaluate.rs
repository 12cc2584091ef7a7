//! What each rule observes for a business date: person and team rules read the score
//! tables (the value on D and the subject's own trailing baseline), pipeline rules read
//! the warehouse's ingestion times. Deciding is separate ([`Observation::firing`]) and
//! pure, so it is tested without a warehouse.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimestampMicrosecondType};
use crmdq_config::{AlertCondition, AlertRule, AlertScope};
use datafusion::common::ScalarValue;
use datafusion::prelude::SessionContext;
use jiff::civil::Date;

use crate::AlertError;

/// One subject's numbers for one rule on one date.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    pub subject: String,
    pub team_id: Option<String>,
    pub manager_id: Option<String>,
    pub entries: Option<i64>,
    pub value: Option<f64>,
    /// Baseline statistics over the trailing window (drop rules).
    pub mean: Option<f64>,
    pub sd: Option<f64>,
    pub median: Option<f64>,
    /// Days of history in the baseline.
    pub history: i64,
}

/// The verdict of a rule on an observation.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub firing: bool,
    /// The value the rule compares against (for a drop: mean − allowance, or median − x).
    pub threshold: Option<f64>,
    /// The subject's own baseline (drop rules).
    pub baseline: Option<f64>,
    /// How the threshold came about, in words.
    pub basis: String,
}

impl Observation {
    /// Apply `rule` (its entry minimum was applied when observing).
    pub fn judge(&self, rule: &AlertRule) -> Verdict {
        let Some(v) = self.value else {
            return Verdict {
                firing: false,
                threshold: None,
                baseline: None,
                basis: "no value".into(),
            };
        };
        match &rule.condition {
            AlertCondition::Below(t) => Verdict {
                firing: v < *t,
                threshold: Some(*t),
                baseline: None,
                basis: format!("fires below {t}"),
            },
            AlertCondition::Above(t) => Verdict {
                firing: v > *t,
                threshold: Some(*t),
                baseline: None,
                basis: format!("fires above {t}"),
            },
            AlertCondition::Drop {
                days,
                stddevs,
                below_median,
                min_history,
                min_drop,
            } => {
                if self.history < i64::from(*min_history) {
                    return Verdict {
                        firing: false,
                        threshold: None,
                        baseline: None,
                        basis: format!("{} of {min_history} days of history needed", self.history),
                    };
                }
                if let (Some(k), Some(mean)) = (stddevs, self.mean) {
                    let sd = self.sd.unwrap_or(0.0);
                    let allowance = (k * sd).max(*min_drop);
                    let t = mean - allowance;
                    Verdict {
                        firing: v < t,
                        threshold: Some(t),
                        baseline: Some(mean),
                        basis: format!(
                            "{days}-day mean {mean:.3}, sd {sd:.3}; fires below mean − max({k}·sd, {min_drop}) = {t:.3}"
                        ),
                    }
                } else if let (Some(x), Some(med)) = (below_median, self.median) {
                    let t = med - x;
                    Verdict {
                        firing: v < t,
                        threshold: Some(t),
                        baseline: Some(med),
                        basis: format!(
                            "{days}-day median {med:.3}; fires below median − {x} = {t:.3}"
                        ),
                    }
                } else {
                    Verdict {
                        firing: false,
                        threshold: None,
                        baseline: None,
                        basis: "no baseline".into(),
                    }
                }
            }
        }
    }
}

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

/// Person- or team-scope observations of `rule` on `date`.
pub async fn observe_scores(
    ctx: &SessionContext,
    rule: &AlertRule,
    date: Date,
) -> Result<Vec<Observation>, AlertError> {
    let (table, key) = match rule.scope {
        AlertScope::Person => ("person_daily", "person_id"),
        _ => ("team_daily", "team_id"),
    };
    let m = &rule.metric;
    let days = match rule.condition {
        AlertCondition::Drop { days, .. } => days,
        _ => 1,
    };
    let from = date - jiff::Span::new().days(i64::from(days));
    let manager = if rule.scope == AlertScope::Person {
        "c.manager_id"
    } else {
        "CAST(NULL AS VARCHAR)"
    };
    let sql = format!(
        "SELECT c.{key} AS subject, c.team_id, {manager} AS manager_id, c.entries, \
           CAST(c.{m} AS DOUBLE) AS value, h.mean, h.sd, h.med, h.n \
         FROM (SELECT * FROM {table} WHERE dt = $1 AND entries >= {min}) c \
         LEFT JOIN (SELECT {key} AS k, AVG(CAST({m} AS DOUBLE)) AS mean, \
             STDDEV_SAMP(CAST({m} AS DOUBLE)) AS sd, MEDIAN(CAST({m} AS DOUBLE)) AS med, \
             COUNT({m}) AS n \
           FROM {table} WHERE dt >= $2 AND dt < $1 AND entries >= {min} AND {m} IS NOT NULL \
           GROUP BY {key}) h ON h.k = c.{key} \
         ORDER BY subject",
        min = rule.min_entries,
    );
    let batches = query(ctx, &sql, vec![s(&date.to_string()), s(&from.to_string())]).await?;
    let team_managers = if rule.scope == AlertScope::Team {
        team_managers(ctx, date).await?
    } else {
        BTreeMap::new()
    };
    let mut out: BTreeMap<String, Observation> = BTreeMap::new();
    for b in &batches {
        for i in 0..b.num_rows() {
            let Some(subject) = text(b, "subject", i) else {
                continue;
            };
            out.entry(subject.clone()).or_insert(Observation {
                subject,
                team_id: text(b, "team_id", i),
                manager_id: text(b, "manager_id", i)
                    .or_else(|| team_managers.get(&subject_key(b, i)).cloned()),
                entries: int(b, "entries", i),
                value: float(b, "value", i),
                mean: float(b, "mean", i),
                sd: float(b, "sd", i),
                median: float(b, "med", i),
                history: int(b, "n", i).unwrap_or(0),
            });
        }
    }
    Ok(out.into_values().collect())
}

fn subject_key(b: &RecordBatch, i: usize) -> String {
    text(b, "subject", i).unwrap_or_default()
}

/// Each team's manager on `date`: the manager most of its scored members report to
/// (ties: the smallest id).
async fn team_managers(
    ctx: &SessionContext,
    date: Date,
) -> Result<BTreeMap<String, String>, AlertError> {
    let b = query(
        ctx,
        "SELECT team_id, manager_id, COUNT(*) AS n FROM person_daily \
         WHERE dt = $1 AND team_id IS NOT NULL AND manager_id IS NOT NULL \
         GROUP BY team_id, manager_id ORDER BY team_id, n DESC, manager_id",
        vec![s(&date.to_string())],
    )
    .await?;
    let mut out = BTreeMap::new();
    for batch in &b {
        for i in 0..batch.num_rows() {
            if let (Some(t), Some(m)) = (text(batch, "team_id", i), text(batch, "manager_id", i)) {
                out.entry(t).or_insert(m);
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
        team_id: None,
        manager_id: None,
        entries,
        value,
        mean: None,
        sd: None,
        median: None,
        history: 0,
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
async fn entries_on(ctx: &SessionContext, date: Date) -> Result<String, AlertError> {
    let day = date.strftime("%Y%m%d").to_string();
    let name = format!("crmdq_entries_on_{day}");
    if ctx.table_exist(name.as_str()).unwrap_or(false) {
        return Ok(name);
    }
    if ctx.table_exist(SCORED_ENTRIES).unwrap_or(false) {
        // Already deduplicated by the scoring run that precedes this evaluation.
        let sql = format!(
            "SELECT record_id, entered_by, dq_complete, dq_valid, dq_on_time FROM {SCORED_ENTRIES} WHERE dt = $1"
        );
        memory_table(ctx, &name, &sql, date).await?;
        return Ok(name);
    }
    let deliveries = format!("crmdq_deliveries_on_{day}");
    let keys = ["record_type", "record_id", "version"];
    let (key_cols, on) = crmdq_score::sql::key_join(&keys, "a", "k");
    let sql = format!(
        "SELECT a.* FROM all_deliveries a LEFT SEMI JOIN \
           (SELECT DISTINCT {key_cols} FROM all_deliveries WHERE dt = $1) k ON {on}"
    );
    memory_table(ctx, &deliveries, &sql, date).await?;
    let sql = format!(
        "SELECT record_id, entered_by, dq_complete, dq_valid, dq_on_time FROM ({}) WHERE dt = $1",
        crmdq_score::sql::dedup_by(&deliveries, crmdq_score::sql::COMMON, &keys)
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
    let table = entries_on(ctx, date).await?;
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
mod tests {
    use super::*;
    use std::time::Duration;

    fn rule(condition: AlertCondition) -> AlertRule {
        AlertRule {
            name: "r".into(),
            scope: AlertScope::Person,
            severity: "warning".into(),
            metric: "completeness_rate".into(),
            condition,
            min_entries: 5,
            window: Duration::from_hours(24),
            topic: None,
        }
    }

    fn obs(value: f64, mean: f64, sd: f64, history: i64) -> Observation {
        Observation {
            subject: "p".into(),
            team_id: None,
            manager_id: None,
            entries: Some(10),
            value: Some(value),
            mean: Some(mean),
            sd: Some(sd),
            median: Some(mean),
            history,
        }
    }

    fn drop_rule(k: f64) -> AlertRule {
        rule(AlertCondition::Drop {
            days: 14,
            stddevs: Some(k),
            below_median: None,
            min_history: 7,
            min_drop: 0.1,
        })
    }

    #[test]
    fn thresholds() {
        let r = rule(AlertCondition::Below(0.9));
        assert!(obs(0.89, 0.0, 0.0, 0).judge(&r).firing);
        assert!(!obs(0.9, 0.0, 0.0, 0).judge(&r).firing);
        let r = rule(AlertCondition::Above(0.05));
        assert!(obs(0.06, 0.0, 0.0, 0).judge(&r).firing);
        assert!(!obs(0.05, 0.0, 0.0, 0).judge(&r).firing);
    }

    #[test]
    fn drop_against_own_baseline() {
        let r = drop_rule(3.0);
        // mean 0.9, sd 0.05: allowance max(0.15, 0.1) = 0.15 → threshold 0.75.
        let v = obs(0.74, 0.9, 0.05, 14).judge(&r);
        assert!(v.firing);
        assert!((v.threshold.unwrap() - 0.75).abs() < 1e-12);
        assert_eq!(v.baseline, Some(0.9));
        assert!(!obs(0.76, 0.9, 0.05, 14).judge(&r).firing);
        // A perfectly stable baseline (sd 0) does not make every wobble an alert.
        assert!(!obs(0.95, 1.0, 0.0, 14).judge(&r).firing);
        assert!(obs(0.89, 1.0, 0.0, 14).judge(&r).firing);
        // Too little history: never judged.
        assert!(!obs(0.1, 0.9, 0.05, 6).judge(&r).firing);
    }

    #[test]
    fn drop_below_median() {
        let r = rule(AlertCondition::Drop {
            days: 14,
            stddevs: None,
            below_median: Some(0.2),
            min_history: 3,
            min_drop: 0.1,
        });
        assert!(obs(0.69, 0.9, 0.0, 5).judge(&r).firing);
        assert!(!obs(0.71, 0.9, 0.0, 5).judge(&r).firing);
    }

    #[test]
    fn no_value_never_fires() {
        let mut o = obs(0.0, 0.9, 0.0, 14);
        o.value = None;
        assert!(!o.judge(&drop_rule(3.0)).firing);
    }
}

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
            )
            .await
            .unwrap();
            assert_eq!(alone.get(one), expected.get(one));
        }
        // A composite metric: all rules; the failing entries include late ones.
        let overall = explain_many(&ctx, AlertScope::Person, "score", &subjects(&["b"]), d)
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
