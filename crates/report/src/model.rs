//! What a report shows, read from the committed warehouse in a handful of queries for
//! the whole period (every team and person at once): the period tables of the period
//! and the ones before it, the period's days, the rules that cost most with example
//! records, the assistants' reps, and the pipeline's health.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int32Type, Int64Type};
use crmdq_config::Pipeline;
use datafusion::prelude::SessionContext;
use jiff::civil::Date;

use crate::ReportError;

/// How many periods the trends show (the period and the ones before it).
pub const TREND_PERIODS: usize = 6;
/// Example record ids per rule, and rules per person, that a page lists.
pub const EXAMPLES: usize = 3;
pub const TOP_RULES: usize = 5;
/// Alerts the pipeline page lists at most.
pub const MAX_ALERTS: usize = 200;

/// A value of a score table's row.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
    Bool(bool),
    Date(Date),
}

/// One row of a table, by column name.
#[derive(Debug, Clone, Default)]
pub struct Row(pub BTreeMap<Arc<str>, Val>);

impl Row {
    pub fn get(&self, c: &str) -> &Val {
        self.0.get(c).unwrap_or(&Val::Null)
    }
    /// A number (integers too).
    pub fn num(&self, c: &str) -> Option<f64> {
        match self.get(c) {
            Val::Int(i) => Some(*i as f64),
            Val::Float(f) => Some(*f),
            _ => None,
        }
    }
    pub fn int(&self, c: &str) -> Option<i64> {
        match self.get(c) {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }
    pub fn text(&self, c: &str) -> Option<&str> {
        match self.get(c) {
            Val::Text(s) => Some(s),
            _ => None,
        }
    }
    pub fn flag(&self, c: &str) -> bool {
        matches!(self.get(c), Val::Bool(true))
    }
    pub fn date(&self, c: &str) -> Option<Date> {
        match self.get(c) {
            Val::Date(d) => Some(*d),
            _ => None,
        }
    }
}

/// Rows of record batches, each column by its type.
pub fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let names: Vec<Arc<str>> = b
            .schema()
            .fields()
            .iter()
            .map(|f| Arc::from(f.name().as_str()))
            .collect();
        for i in 0..b.num_rows() {
            let mut r = BTreeMap::new();
            for (c, name) in b.columns().iter().zip(&names) {
                r.insert(name.clone(), value(c.as_ref(), i));
            }
            out.push(Row(r));
        }
    }
    out
}

fn value(c: &dyn Array, i: usize) -> Val {
    if c.is_null(i) {
        return Val::Null;
    }
    match c.data_type() {
        DataType::Int64 => Val::Int(c.as_primitive::<Int64Type>().value(i)),
        DataType::Int32 => Val::Int(i64::from(c.as_primitive::<Int32Type>().value(i))),
        DataType::Float64 => Val::Float(c.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => Val::Text(c.as_string::<i32>().value(i).to_string()),
        DataType::Utf8View => Val::Text(c.as_string_view().value(i).to_string()),
        DataType::LargeUtf8 => Val::Text(c.as_string::<i64>().value(i).to_string()),
        DataType::Boolean => Val::Bool(c.as_boolean().value(i)),
        DataType::Date32 => {
            let days = c.as_primitive::<Date32Type>().value(i);
            Val::Date(date_of_days(days))
        }
        _ => Val::Null,
    }
}

fn date_of_days(days: i32) -> Date {
    let epoch = jiff::civil::date(1970, 1, 1);
    epoch
        .checked_add(jiff::Span::new().days(i64::from(days)))
        .unwrap_or(epoch)
}

/// The period a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodRef {
    /// `week`, `month` or `quarter`.
    pub kind: &'static str,
    /// `2026-W45`, `2026-11`, `2026-Q4`.
    pub label: String,
    pub start: Date,
    pub end: Date,
}

/// The kind of a period label, if it has one of the contract's shapes.
pub fn period_kind(label: &str) -> Option<&'static str> {
    let b = label.as_bytes();
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if b.len() < 6 || !digits(&b[..4]) || b[4] != b'-' {
        return None;
    }
    match &b[5..] {
        [b'W', w @ ..] if w.len() == 2 && digits(w) => Some("week"),
        [b'Q', q] if (b'1'..=b'4').contains(q) => Some("quarter"),
        m if m.len() == 2 && digits(m) => Some("month"),
        _ => None,
    }
}

/// A rule that cost someone (or a team) entries in the period.
#[derive(Debug, Clone)]
pub struct RuleCost {
    pub rule: String,
    pub entries: i64,
    pub examples: Vec<String>,
}

/// One day of a person in the period (`person_daily`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DayCounts {
    pub entries: i64,
    pub complete: i64,
    pub valid: i64,
    pub on_time: i64,
}

/// An assisted rep of an assistant, over the period.
#[derive(Debug, Clone, Default)]
pub struct AssistedRep {
    pub rep: String,
    pub entries: i64,
    pub checkins: i64,
    pub checkin_days: i64,
}

/// The pipeline's health for the period and at the report's time.
#[derive(Debug, Clone, Default)]
pub struct Health {
    /// (dt, reason, messages).
    pub dead_letters: Vec<(String, String, i64)>,
    pub newest_event_us: Option<i64>,
    pub newest_ingest_us: Option<i64>,
    /// (topic, partition, next offset).
    pub positions: Vec<(String, i32, i64)>,
    pub alerts: Vec<Row>,
    pub alerts_total: usize,
    pub version: u64,
}

/// Everything a report of one period shows.
#[derive(Debug, Clone)]
pub struct Model {
    pub pipeline: String,
    pub period: PeriodRef,
    /// The trend's periods, oldest first, ending with this one.
    pub periods: Vec<String>,
    /// `team_period` rows of those periods.
    pub teams: Vec<Row>,
    /// `person_period` rows of those periods.
    pub people: Vec<Row>,
    /// The columns of `team_period` and `person_period`, in table order.
    pub team_columns: Vec<String>,
    pub people_columns: Vec<String>,
    /// (person, role) → dt → counts.
    pub days: BTreeMap<(String, String), BTreeMap<Date, DayCounts>>,
    /// (person, role) → rules, costliest first.
    pub person_rules: BTreeMap<(String, String), Vec<RuleCost>>,
    /// team → rules, costliest first.
    pub team_rules: BTreeMap<String, Vec<RuleCost>>,
    /// person → absent dates of the period.
    pub absences: BTreeMap<String, Vec<Date>>,
    /// assistant → reps.
    pub assists: BTreeMap<String, Vec<AssistedRep>>,
    pub health: Health,
    /// The team the report is limited to (`--team`).
    pub team: Option<String>,
    pub now: jiff::Timestamp,
}

/// What to report on.
#[derive(Debug, Clone)]
pub struct Scope {
    pub period: String,
    pub team: Option<String>,
    pub now: jiff::Timestamp,
}

fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, ReportError> {
    let df = ctx.sql(sql).await.map_err(|e| ReportError::query(sql, e))?;
    df.collect().await.map_err(|e| ReportError::query(sql, e))
}

/// Read the model of `scope` from a session over the warehouse (`crmdq_catalog::open`
/// or `serve`'s live session); `kafka` and `version` from the same snapshot.
pub async fn load(
    p: &Pipeline,
    ctx: &SessionContext,
    kafka: &BTreeMap<(String, i32), i64>,
    version: u64,
    scope: &Scope,
) -> Result<Model, ReportError> {
    let Some(kind) = period_kind(&scope.period) else {
        return Err(ReportError::Usage(format!(
            "--period `{}`: expected a week (2026-W45), a month (2026-11) or a quarter (2026-Q4)",
            scope.period
        )));
    };
    let label = scope.period.clone();
    // The period and the ones before it, from the period tables themselves.
    let known = rows(
        &query(
            ctx,
            &format!(
                "SELECT period, MIN(period_start) AS period_start, MAX(period_end) AS period_end \
                 FROM person_period WHERE period_kind = {} GROUP BY period ORDER BY period_start",
                lit(kind)
            ),
        )
        .await?,
    );
    let Some(at) = known
        .iter()
        .position(|r| r.text("period") == Some(label.as_str()))
    else {
        let recent: Vec<&str> = known
            .iter()
            .rev()
            .take(6)
            .filter_map(|r| r.text("period"))
            .collect();
        return Err(ReportError::Usage(format!(
            "--period `{label}`: no scores for this {kind}; scored {kind}s include: {} (run `crmdq score` first)",
            if recent.is_empty() {
                "none".to_string()
            } else {
                recent.join(", ")
            }
        )));
    };
    let (Some(start), Some(end)) = (known[at].date("period_start"), known[at].date("period_end"))
    else {
        return Err(ReportError::Usage(format!("--period `{label}`: no dates")));
    };
    let first = (at + 1).saturating_sub(TREND_PERIODS);
    let periods: Vec<String> = known[first..=at]
        .iter()
        .filter_map(|r| r.text("period").map(str::to_string))
        .collect();
    let in_periods = periods
        .iter()
        .map(|p| lit(p))
        .collect::<Vec<_>>()
        .join(", ");
    let team_filter = scope
        .team
        .as_ref()
        .map(|t| format!(" AND team_id = {}", lit(t)))
        .unwrap_or_default();
    let (s, e) = (lit(&start.to_string()), lit(&end.to_string()));

    let team_batches = query(
            ctx,
            &format!(
                "SELECT * FROM team_period WHERE period_kind = {} AND period IN ({in_periods}){team_filter} \
                 ORDER BY team_id, period_start",
                lit(kind)
            ),
        )
        .await?;
    let people_batches = query(
        ctx,
        &format!(
            "SELECT * FROM person_period WHERE period_kind = {} AND period IN ({in_periods}) \
             AND person_id <> 'unassigned'{team_filter} ORDER BY person_id, role, period_start",
            lit(kind)
        ),
    )
    .await?;
    let names = |b: &[RecordBatch]| -> Vec<String> {
        b.first()
            .map(|b| {
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (team_columns, people_columns) = (names(&team_batches), names(&people_batches));
    let (teams, people) = (rows(&team_batches), rows(&people_batches));
    if let Some(t) = &scope.team
        && !teams
            .iter()
            .any(|r| r.text("period") == Some(label.as_str()))
    {
        return Err(ReportError::Usage(format!(
            "--team `{t}`: no scores for this team in {label}"
        )));
    }

    let mut days: BTreeMap<(String, String), BTreeMap<Date, DayCounts>> = BTreeMap::new();
    for r in rows(
        &query(
            ctx,
            &format!(
                "SELECT person_id, role, CAST(dt AS DATE) AS d, entries, complete_entries, valid_entries, \
                   on_time_entries FROM person_daily WHERE dt BETWEEN {s} AND {e}{team_filter}"
            ),
        )
        .await?,
    ) {
        let (Some(pid), Some(role), Some(d)) = (r.text("person_id"), r.text("role"), r.date("d"))
        else {
            continue;
        };
        let c = DayCounts {
            entries: r.int("entries").unwrap_or(0),
            complete: r.int("complete_entries").unwrap_or(0),
            valid: r.int("valid_entries").unwrap_or(0),
            on_time: r.int("on_time_entries").unwrap_or(0),
        };
        days.entry((pid.to_string(), role.to_string()))
            .or_default()
            .insert(d, c);
    }

    // Rules: per person and role, and per team (the team each person-day was scored in).
    let mut person_rules: BTreeMap<(String, String), Vec<RuleCost>> = BTreeMap::new();
    let mut team_sum: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for r in rows(
        &query(
            ctx,
            &format!(
                "SELECT person_id, role, team_id, rule, CAST(SUM(entries) AS BIGINT) AS n FROM rule_daily \
                 WHERE dt BETWEEN {s} AND {e}{team_filter} GROUP BY person_id, role, team_id, rule"
            ),
        )
        .await?,
    ) {
        let (Some(pid), Some(rule), Some(n)) = (r.text("person_id"), r.text("rule"), r.int("n"))
        else {
            continue;
        };
        let role = r.text("role").unwrap_or("unknown").to_string();
        let team = r.text("team_id").unwrap_or("unassigned").to_string();
        *team_sum.entry(team).or_default().entry(rule.to_string()).or_default() += n;
        let v = person_rules.entry((pid.to_string(), role)).or_default();
        match v.iter_mut().find(|c| c.rule == rule) {
            Some(c) => c.entries += n,
            None => v.push(RuleCost {
                rule: rule.to_string(),
                entries: n,
                examples: Vec::new(),
            }),
        }
    }
    for v in person_rules.values_mut() {
        v.sort_by(|a, b| b.entries.cmp(&a.entries).then_with(|| a.rule.cmp(&b.rule)));
        v.truncate(TOP_RULES);
    }
    let team_rules: BTreeMap<String, Vec<RuleCost>> = team_sum
        .into_iter()
        .map(|(t, m)| {
            let mut v: Vec<RuleCost> = m
                .into_iter()
                .map(|(rule, entries)| RuleCost {
                    rule,
                    entries,
                    examples: Vec::new(),
                })
                .collect();
            v.sort_by(|a, b| b.entries.cmp(&a.entries).then_with(|| a.rule.cmp(&b.rule)));
            v.truncate(TOP_RULES);
            (t, v)
        })
        .collect();
    examples(ctx, &s, &e, &mut person_rules).await?;

    let absences = absences(p, ctx, start, end).await?;
    let assists = assists(ctx, &s, &e, &people, &label).await?;
    let health = health(ctx, &s, &e, kafka, version).await?;
    Ok(Model {
        pipeline: p.name.clone(),
        period: PeriodRef {
            kind,
            label,
            start,
            end,
        },
        periods,
        teams,
        people,
        team_columns,
        people_columns,
        days,
        person_rules,
        team_rules,
        absences,
        assists,
        health,
        team: scope.team.clone(),
        now: scope.now,
    })
}

/// Up to [`EXAMPLES`] record ids (smallest first) of each person's costliest rules: one
/// query for everyone. Deliveries, not entries: a duplicate delivery carries the same
/// verdicts, and the date filter prunes partitions.
async fn examples(
    ctx: &SessionContext,
    s: &str,
    e: &str,
    person_rules: &mut BTreeMap<(String, String), Vec<RuleCost>>,
) -> Result<(), ReportError> {
    if person_rules.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "SELECT person_id, rule, record_id FROM (SELECT person_id, rule, record_id, \
           ROW_NUMBER() OVER (PARTITION BY person_id, rule ORDER BY record_id) AS k FROM ( \
             SELECT DISTINCT person_id, rule, record_id FROM ( \
               SELECT entered_by AS person_id, concat('missing.', f) AS rule, record_id FROM \
                 (SELECT entered_by, record_id, unnest(dq_missing_fields) AS f FROM all_deliveries WHERE dt BETWEEN {s} AND {e}) \
               UNION ALL SELECT entered_by, c, record_id FROM \
                 (SELECT entered_by, record_id, unnest(dq_failed_checks) AS c FROM all_deliveries WHERE dt BETWEEN {s} AND {e}) \
               UNION ALL SELECT entered_by, 'late', record_id FROM all_deliveries \
                 WHERE dt BETWEEN {s} AND {e} AND NOT dq_on_time))) \
         WHERE k <= {EXAMPLES} ORDER BY person_id, rule, record_id"
    );
    let mut found: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for r in rows(&query(ctx, &sql).await?) {
        if let (Some(p), Some(rule), Some(id)) =
            (r.text("person_id"), r.text("rule"), r.text("record_id"))
        {
            found
                .entry((p.to_string(), rule.to_string()))
                .or_default()
                .push(id.to_string());
        }
    }
    for ((pid, _), rules) in person_rules.iter_mut() {
        for c in rules {
            if let Some(ids) = found.get(&(pid.clone(), c.rule.clone())) {
                c.examples.clone_from(ids);
            }
        }
    }
    Ok(())
}

async fn absences(
    p: &Pipeline,
    ctx: &SessionContext,
    start: Date,
    end: Date,
) -> Result<BTreeMap<String, Vec<Date>>, ReportError> {
    let mut out: BTreeMap<String, Vec<Date>> = BTreeMap::new();
    let Some(path) = p.scoring.absences.as_deref() else {
        return Ok(out);
    };
    let roster = query(ctx, "SELECT * FROM roster").await?;
    let roster = match roster.first() {
        Some(b) => arrow::compute::concat_batches(&b.schema(), &roster)
            .map_err(|e| ReportError::Other(e.to_string()))?,
        None => return Ok(out),
    };
    let abs = crmdq_catalog::roster::load_absences(Some(path), &roster)
        .map_err(|e| ReportError::Other(e.to_string()))?;
    for r in rows(&[abs]) {
        let (Some(pid), Some(from), Some(to)) = (r.text("person_id"), r.date("from"), r.date("to"))
        else {
            continue;
        };
        let mut d = from.max(start);
        while d <= to.min(end) {
            out.entry(pid.to_string()).or_default().push(d);
            d = d.tomorrow().unwrap_or(d);
            if d == jiff::civil::Date::MAX {
                break;
            }
        }
    }
    Ok(out)
}

/// Each assistant's reps (the roster's `assists` in force in the period) with what the
/// assistant entered for them in the period.
async fn assists(
    ctx: &SessionContext,
    s: &str,
    e: &str,
    people: &[Row],
    label: &str,
) -> Result<BTreeMap<String, Vec<AssistedRep>>, ReportError> {
    let mut out: BTreeMap<String, Vec<AssistedRep>> = BTreeMap::new();
    let assistants: Vec<&str> = people
        .iter()
        .filter(|r| r.text("period") == Some(label) && r.text("role") == Some("sales_assistant"))
        .filter_map(|r| r.text("person_id"))
        .collect();
    if assistants.is_empty() {
        return Ok(out);
    }
    let list = assistants
        .iter()
        .map(|a| lit(a))
        .collect::<Vec<_>>()
        .join(", ");
    let roster = query(
        ctx,
        &format!(
            "SELECT person_id, assists FROM roster WHERE person_id IN ({list}) AND assists IS NOT NULL \
             AND (valid_from IS NULL OR valid_from <= CAST({e} AS DATE)) \
             AND (valid_to IS NULL OR valid_to >= CAST({s} AS DATE))"
        ),
    )
    .await;
    // A roster without `assists` (older files) lists no reps.
    let Ok(roster) = roster else { return Ok(out) };
    for r in rows(&roster) {
        if let (Some(a), Some(list)) = (r.text("person_id"), r.text("assists")) {
            let v = out.entry(a.to_string()).or_default();
            for rep in list.split(';').map(str::trim).filter(|x| !x.is_empty()) {
                if !v.iter().any(|x| x.rep == rep) {
                    v.push(AssistedRep {
                        rep: rep.to_string(),
                        ..AssistedRep::default()
                    });
                }
            }
        }
    }
    if out.is_empty() {
        return Ok(out);
    }
    let counts = query(
        ctx,
        &format!(
            "SELECT entered_by, owner_id, COUNT(DISTINCT record_id) AS entries, \
               COUNT(DISTINCT CASE WHEN record_type = 'checkin' THEN record_id END) AS checkins, \
               COUNT(DISTINCT CASE WHEN record_type = 'checkin' THEN dt END) AS checkin_days \
             FROM all_deliveries WHERE dt BETWEEN {s} AND {e} AND entered_by IN ({list}) \
             GROUP BY entered_by, owner_id"
        ),
    )
    .await?;
    for r in rows(&counts) {
        let (Some(a), Some(owner)) = (r.text("entered_by"), r.text("owner_id")) else {
            continue;
        };
        if let Some(rep) = out
            .get_mut(a)
            .and_then(|v| v.iter_mut().find(|x| x.rep == owner))
        {
            rep.entries = r.int("entries").unwrap_or(0);
            rep.checkins = r.int("checkins").unwrap_or(0);
            rep.checkin_days = r.int("checkin_days").unwrap_or(0);
        }
    }
    Ok(out)
}

async fn health(
    ctx: &SessionContext,
    s: &str,
    e: &str,
    kafka: &BTreeMap<(String, i32), i64>,
    version: u64,
) -> Result<Health, ReportError> {
    let mut h = Health {
        version,
        positions: kafka
            .iter()
            .map(|((t, p), o)| (t.clone(), *p, *o))
            .collect(),
        ..Health::default()
    };
    for r in rows(
        &query(
            ctx,
            &format!(
                "SELECT dt, reason, COUNT(*) AS n FROM dead_letters WHERE dt BETWEEN {s} AND {e} \
                 GROUP BY dt, reason ORDER BY dt, reason"
            ),
        )
        .await?,
    ) {
        if let (Some(dt), Some(reason), Some(n)) = (r.text("dt"), r.text("reason"), r.int("n")) {
            h.dead_letters.push((dt.to_string(), reason.to_string(), n));
        }
    }
    // Every record table has event_time; the pooled views do not carry it.
    let union = crmdq_catalog::tables()
        .iter()
        .filter(|(_, schema)| schema.field_with_name("event_time").is_ok())
        .map(|(t, _)| {
            format!(
                "SELECT CAST(MAX(event_time) AS BIGINT) AS ev, CAST(MAX(dq_ingested_at) AS BIGINT) AS ing FROM \"{t}\""
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    if !union.is_empty() {
        let b = query(
            ctx,
            &format!("SELECT MAX(ev) AS ev, MAX(ing) AS ing FROM ({union})"),
        )
        .await?;
        if let Some(r) = rows(&b).first() {
            h.newest_event_us = r.int("ev");
            h.newest_ingest_us = r.int("ing");
        }
    }
    let alerts = rows(
        &query(
            ctx,
            &format!(
                "SELECT dt, rule, scope, subject, severity, state, metric, value, threshold FROM alerts \
                 WHERE dt BETWEEN {s} AND {e} ORDER BY dt, seq"
            ),
        )
        .await?,
    );
    h.alerts_total = alerts.len();
    h.alerts = alerts.into_iter().take(MAX_ALERTS).collect();
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn period_kinds() {
        assert_eq!(period_kind("2026-11"), Some("month"));
        assert_eq!(period_kind("2026-W05"), Some("week"));
        assert_eq!(period_kind("2026-Q4"), Some("quarter"));
        for bad in [
            "2026-Q5",
            "2026-1",
            "2026-W5",
            "26-11",
            "2026-11'; DROP",
            "",
        ] {
            assert_eq!(period_kind(bad), None, "{bad}");
        }
    }
}
