//! The review periods (contract section 7): `person_period` and `team_period` for ISO
//! weeks, months and quarters, computed from the daily tables a score just wrote.
//!
//! Every count is the sum of the daily counts over the period, and every rate the ratio of
//! those sums (never a mean of daily rates); the medians come from the check-ins
//! themselves. A row is `judged` when its entries and each of its scorecard metrics'
//! denominators reach `review.min_volume`; only judged people are ranked within their
//! team and role. `prev_score` is the same subject (and role) in the period just before.
//! A person's `team_id`, `manager_id` and `name` are those of their last day in the
//! period (a quarter spanning a move counts every day, under the new team).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use arrow::array::{BooleanArray, Date32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use crmdq_config::{Pipeline, Scorecard};
use datafusion::datasource::MemTable;
use jiff::ToSpan as _;
use jiff::civil::Date;

use crate::sql::{COUNTS, RATES, denominator, rate_columns, role_score, score_expr, summed_counts};

/// A period a business date falls in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub kind: &'static str,
    /// `2026-W45`, `2026-11`, `2026-Q4`.
    pub label: String,
    pub start: Date,
    pub end: Date,
    /// The first day of the period before (same kind).
    pub prev_start: Date,
}

/// The week (ISO), month and quarter of `d`.
pub fn periods_of(d: Date) -> [Period; 3] {
    let iso = d.iso_week_date();
    let monday = d - i64::from(d.weekday().to_monday_zero_offset()).days();
    let month_start = d.first_of_month();
    let q = (d.month() - 1) / 3;
    let quarter_start = jiff::civil::date(d.year(), q * 3 + 1, 1);
    [
        Period {
            kind: "week",
            label: format!("{}-W{:02}", iso.year(), iso.week()),
            start: monday,
            end: monday + 6.days(),
            prev_start: monday - 7.days(),
        },
        Period {
            kind: "month",
            label: format!("{}-{:02}", d.year(), d.month()),
            start: month_start,
            end: d.last_of_month(),
            prev_start: month_start - 1.month(),
        },
        Period {
            kind: "quarter",
            label: format!("{}-Q{}", d.year(), q + 1),
            start: quarter_start,
            end: (quarter_start + 2.months()).last_of_month(),
            prev_start: quarter_start - 3.months(),
        },
    ]
}

fn days(d: Date) -> i32 {
    (d - jiff::civil::date(1970, 1, 1)).get_days()
}

/// `periods (dt, period_kind, period, period_start, period_end, prev_start, keep)` for
/// `dates`: every period of every date, all kept.
pub fn periods_table(dates: &[String]) -> MemTable {
    let rows = dates
        .iter()
        .filter_map(|t| Some((t.clone(), t.parse::<Date>().ok()?)))
        .flat_map(|(t, d)| periods_of(d).map(|p| (t.clone(), p, true)))
        .collect::<Vec<_>>();
    table_of(rows)
}

fn table_of(rows: Vec<(String, Period, bool)>) -> MemTable {
    let schema = Arc::new(Schema::new(vec![
        Field::new("dt", DataType::Utf8, false),
        Field::new("period_kind", DataType::Utf8, false),
        Field::new("period", DataType::Utf8, false),
        Field::new("period_start", DataType::Date32, false),
        Field::new("period_end", DataType::Date32, false),
        Field::new("prev_start", DataType::Date32, false),
        Field::new("keep", DataType::Boolean, false),
    ]));
    let (mut dt, mut kind, mut label) = (Vec::new(), Vec::new(), Vec::new());
    let (mut start, mut end, mut prev, mut keep) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (d, p, k) in rows {
        dt.push(d);
        kind.push(p.kind);
        label.push(p.label);
        start.push(days(p.start));
        end.push(days(p.end));
        prev.push(days(p.prev_start));
        keep.push(k);
    }
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(dt)),
            Arc::new(StringArray::from(kind)),
            Arc::new(StringArray::from(label)),
            Arc::new(Date32Array::from(start)),
            Arc::new(Date32Array::from(end)),
            Arc::new(Date32Array::from(prev)),
            Arc::new(BooleanArray::from(keep)),
        ],
    )
    .expect("columns match");
    MemTable::try_new(schema, vec![vec![batch]]).expect("schema matches")
}

/// The period rows of one query of the period pass: the periods starting in a run of
/// calendar quarters (`keep`), and the period before each (not kept: read only for
/// `prev_score`), with the dates they cover.
pub struct PeriodGroup {
    pub dates: Vec<String>,
    pub table: Arc<MemTable>,
    /// The first days of the periods before the kept ones that the group does not
    /// compute (with `only`: their scores are read from the score tables as they are).
    pub before_starts: std::collections::BTreeSet<String>,
}

/// The period pass in groups of periods, so that memory follows a group rather than
/// the warehouse: consecutive calendar quarters (by the quarter a period starts in) up
/// to about `budget` person-days (`rows` per date) each. Every period starting on a
/// date is in the group of that date's quarter, so each `person_period` file (one per
/// period start) comes whole from one group, the same rows in the same order as from
/// one query over everything.
///
/// With `only` (an incremental score), one group keeping just the periods starting on
/// those days, and none before them (their scores are read as they are).
pub fn groups(
    dates: &[String],
    rows: &BTreeMap<&str, u64>,
    budget: u64,
    only: Option<&std::collections::BTreeSet<Date>>,
) -> Vec<PeriodGroup> {
    let parsed: Vec<(&String, Date)> = dates
        .iter()
        .filter_map(|t| Some((t, t.parse::<Date>().ok()?)))
        .collect();
    let quarter = |d: Date| (d.year(), (d.month() - 1) / 3);
    let mut per_quarter: BTreeMap<(i16, i8), u64> = BTreeMap::new();
    for (t, d) in &parsed {
        // Every quarter a period of the date starts in has a group (a week may start in
        // the quarter before its dates); the date's rows count in its own quarter.
        for p in periods_of(*d) {
            per_quarter.entry(quarter(p.start)).or_default();
        }
        *per_quarter.entry(quarter(*d)).or_default() += rows.get(t.as_str()).copied().unwrap_or(0);
    }
    if let Some(only) = only {
        let wanted: std::collections::BTreeSet<(i16, i8)> =
            only.iter().map(|d| quarter(*d)).collect();
        per_quarter.retain(|q, _| wanted.contains(q));
    }
    let mut runs: Vec<Vec<(i16, i8)>> = Vec::new();
    let mut n = 0;
    // With `only` (a few quarters), one group: a period before a kept one is then either
    // kept too or not computed again (its score is read as it is).
    let budget = if only.is_some() { u64::MAX } else { budget };
    for (q, r) in per_quarter {
        match runs.last_mut() {
            Some(run) if n + r <= budget => run.push(q),
            _ => {
                runs.push(vec![q]);
                n = 0;
            }
        }
        n += r;
    }
    runs.into_iter()
        .map(|run| {
            let kept = |p: &Period| {
                run.contains(&quarter(p.start)) && only.is_none_or(|o| o.contains(&p.start))
            };
            let mut before = std::collections::HashSet::new();
            let mut before_starts = std::collections::BTreeSet::new();
            for (_, d) in &parsed {
                for p in periods_of(*d) {
                    if kept(&p) {
                        if only.is_some() {
                            before_starts.insert(p.prev_start.to_string());
                        } else {
                            before.insert((p.kind, p.prev_start));
                        }
                    }
                }
            }
            let mut rows = Vec::new();
            let mut group_dates = Vec::new();
            for (t, d) in &parsed {
                let mut any = false;
                for p in periods_of(*d) {
                    let keep = kept(&p);
                    if keep || before.contains(&(p.kind, p.start)) {
                        rows.push(((*t).clone(), p, keep));
                        any = true;
                    }
                }
                if any {
                    group_dates.push((*t).clone());
                }
            }
            PeriodGroup {
                dates: group_dates,
                table: Arc::new(table_of(rows)),
                before_starts,
            }
        })
        .collect()
}

/// `entries >= N`, and each scorecard metric's denominator either 0 (the metric does not
/// apply: it is NULL and out of the score, like a rep's check-in rate when nobody checks
/// in with them) or at least N (too few cases is not a fair measure).
fn judged_expr(card: &Scorecard, min: u64) -> String {
    let mut parts = vec![format!("entries >= {min}")];
    for metric in card.keys() {
        if let Some(den) = denominator(metric) {
            parts.push(format!("(({den}) = 0 OR ({den}) >= {min})"));
        }
    }
    parts.join(" AND ")
}

/// (targets met, targets total) for one set of targets.
fn targets_exprs(
    targets: Option<&std::collections::BTreeMap<String, crmdq_config::Target>>,
) -> (String, String) {
    let Some(targets) = targets.filter(|t| !t.is_empty()) else {
        return ("CAST(0 AS BIGINT)".into(), "CAST(0 AS BIGINT)".into());
    };
    let met = targets
        .iter()
        .map(|(m, t)| {
            let mut conds = Vec::new();
            if let Some(v) = t.min {
                conds.push(format!("{m} >= {v:?}"));
            }
            if let Some(v) = t.max {
                conds.push(format!("{m} <= {v:?}"));
            }
            format!("CASE WHEN {} THEN 1 ELSE 0 END", conds.join(" AND "))
        })
        .collect::<Vec<_>>()
        .join(" + ");
    (
        format!("CAST({met} AS BIGINT)"),
        format!("CAST({} AS BIGINT)", targets.len()),
    )
}

/// Per role: `CASE role WHEN … THEN x ELSE default END` for an expression built from the
/// role's scorecard (and targets).
fn per_role(p: &Pipeline, f: impl Fn(&str) -> String) -> String {
    let mut roles: Vec<&String> = p
        .scoring
        .scorecards
        .keys()
        .chain(p.scoring.review.targets.keys())
        .filter(|r| *r != "default" && *r != "team")
        .collect();
    roles.sort();
    roles.dedup();
    let mut s = String::from("CASE role");
    for r in roles {
        let _ = write!(s, " WHEN '{}' THEN {}", r.replace('\'', "''"), f(r));
    }
    let _ = write!(s, " ELSE {} END", f("default"));
    s
}

const PERIOD_KEYS: &str = "period_kind, period, period_start, period_end, prev_start, keep";

/// The steps before the `person_period` query ([`person_period`]), each materialized —
/// run and held as an in-memory table of its name — before the next: DataFusion inlines
/// a common table expression wherever it is read, so the period sums, read by the
/// names' lookup and by the scores, would be computed twice, and the scores, read for
/// `prev_score` too, again.
///
/// `person_period_sums`: the daily rows summed by period and person, grouped by the
/// period's key (kind and first day) and the person alone — the period's labels, and the
/// team and manager of the person's last day in it (one `person_daily` row per date,
/// person and role), joined on after (an ordered `last_value` per group cost as much as
/// all the sums). `person_period_scored`: with names, check-in medians, rates, scores,
/// `judged` and targets.
pub fn person_period_steps(p: &Pipeline) -> Vec<(&'static str, String)> {
    let min = p.scoring.review.min_volume;
    let judged = per_role(p, |r| judged_expr(p.scorecard(r), min));
    let met = per_role(p, |r| targets_exprs(p.scoring.review.targets.get(r)).0);
    let total = per_role(p, |r| targets_exprs(p.scoring.review.targets.get(r)).1);
    let sums = format!(
        "WITH d AS (SELECT k.period_kind, k.period_start, x.* \
           FROM person_daily x JOIN periods k ON k.dt = x.dt), \
         g AS (SELECT period_kind, period_start, person_id, role, MAX(dt) AS last_dt, \
             CAST(COUNT(*) AS BIGINT) AS days, {sums} \
           FROM d GROUP BY period_kind, period_start, person_id, role), \
         k AS (SELECT DISTINCT {PERIOD_KEYS} FROM periods) \
         SELECT k.period_kind, k.period, k.period_start, k.period_end, k.prev_start, k.keep, \
           g.person_id, g.role, x.team_id, x.manager_id, g.last_dt, g.days, {g_counts}, g.order_amount \
         FROM g JOIN k ON k.period_kind = g.period_kind AND k.period_start = g.period_start \
         JOIN person_daily x ON (x.person_id IS NOT DISTINCT FROM g.person_id) \
           AND (x.role IS NOT DISTINCT FROM g.role) AND (x.dt IS NOT DISTINCT FROM g.last_dt)",
        sums = summed_counts(),
        g_counts = COUNTS.map(|c| format!("g.{c}")).join(", "),
    );
    let scored = format!(
        "WITH g AS (SELECT * FROM person_period_sums), \
         m AS (SELECT k.period_kind, k.period, f.person_id, median(f.minutes) AS checkin_response_minutes \
           FROM checkin_facts f JOIN periods k ON k.dt = f.dt GROUP BY k.period_kind, k.period, f.person_id), \
         n AS ({names}), \
         r AS (SELECT g.*, n.name, m.checkin_response_minutes, {rate_cols} FROM g \
           LEFT JOIN m ON m.period_kind = g.period_kind AND m.period = g.period AND m.person_id = g.person_id \
           LEFT JOIN n ON n.person_id = g.person_id AND n.dt = g.last_dt) \
         SELECT *, {score} AS score, COALESCE({judged}, false) AS judged, \
           {met} AS targets_met, {total} AS targets_total FROM r",
        names = crate::review::roster_at("SELECT DISTINCT person_id, last_dt AS dt FROM g"),
        rate_cols = rate_columns(),
        score = role_score(p),
    );
    vec![
        ("person_period_sums", sums),
        ("person_period_scored", scored),
    ]
}

/// The `person_period` query over the steps of [`person_period_steps`] (which read
/// `person_daily`, `periods`, `checkin_facts` and the roster, `roster_rows`) and
/// `person_period_before`. `prev_score` is the score of the same person and role in the
/// period that starts on `prev_start`, of this group or stored before it (a period of a
/// kind, person and role is there at most once).
pub fn person_period(_p: &Pipeline) -> String {
    format!(
        "SELECT CAST(s.period_start AS VARCHAR) AS dt, s.period_kind, s.period, s.period_start, s.period_end, \
           s.person_id, s.name, s.role, s.team_id, s.manager_id, s.days, {s_counts}, s.order_amount, \
           s.checkin_response_minutes, {s_rates}, s.score, s.judged, \
           CASE WHEN s.judged THEN CAST(RANK() OVER (PARTITION BY s.period_kind, s.period, s.team_id, s.role, s.judged \
             ORDER BY s.score DESC NULLS LAST) AS BIGINT) END AS rank_in_team, \
           b.score AS prev_score, s.score - b.score AS score_change, s.targets_met, s.targets_total \
         FROM person_period_scored s LEFT JOIN ( \
           SELECT period_kind, period_start, person_id, role, score FROM person_period_scored UNION ALL \
           SELECT period_kind, period_start, person_id, role, score FROM person_period_before) b \
         ON (b.period_kind IS NOT DISTINCT FROM s.period_kind) AND (b.person_id IS NOT DISTINCT FROM s.person_id) \
           AND (b.role IS NOT DISTINCT FROM s.role) AND (b.period_start IS NOT DISTINCT FROM s.prev_start) \
         WHERE s.keep ORDER BY s.period_start, s.period_kind, s.person_id, s.role",
        s_counts = COUNTS.map(|c| format!("s.{c}")).join(", "),
        s_rates = RATES.map(|r| format!("s.{}", r.0)).join(", "),
    )
}

/// The `team_period` query over `team_daily`, `person_daily`, `periods` and
/// `checkin_facts`.
pub fn team_period(p: &Pipeline) -> String {
    let card = p.scorecard("team");
    let (met, total) = targets_exprs(p.scoring.review.targets.get("team"));
    format!(
        "WITH d AS (SELECT k.period_kind, k.period, k.period_start, k.period_end, k.prev_start, k.keep, x.* \
           FROM team_daily x JOIN periods k ON k.dt = x.dt), \
         g AS (SELECT {PERIOD_KEYS}, team_id, CAST(COUNT(*) AS BIGINT) AS days, {sums} \
           FROM d GROUP BY {PERIOD_KEYS}, team_id), \
         pe AS (SELECT k.period_kind, k.period, x.team_id, CAST(COUNT(DISTINCT x.person_id) AS BIGINT) AS people \
           FROM person_daily x JOIN periods k ON k.dt = x.dt WHERE x.entries > 0 \
           GROUP BY k.period_kind, k.period, x.team_id), \
         m AS (SELECT k.period_kind, k.period, x.team_id, median(f.minutes) AS checkin_response_minutes \
           FROM checkin_facts f JOIN person_daily x ON x.person_id = f.person_id AND x.dt = f.dt \
           JOIN periods k ON k.dt = f.dt GROUP BY k.period_kind, k.period, x.team_id), \
         r AS (SELECT g.*, COALESCE(pe.people, 0) AS people, m.checkin_response_minutes, {rate_cols} FROM g \
           LEFT JOIN pe ON pe.period_kind = g.period_kind AND pe.period = g.period AND pe.team_id = g.team_id \
           LEFT JOIN m ON m.period_kind = g.period_kind AND m.period = g.period AND m.team_id = g.team_id), \
         s AS (SELECT *, {score} AS score, COALESCE({judged}, false) AS judged, \
             {met} AS targets_met, {total} AS targets_total FROM r) \
         SELECT CAST(s.period_start AS VARCHAR) AS dt, s.period_kind, s.period, s.period_start, s.period_end, \
           s.team_id, s.people, s.days, {s_counts}, s.order_amount, s.checkin_response_minutes, {s_rates}, \
           s.score, s.judged, s.prev_score, s.score - s.prev_score AS score_change, \
           s.targets_met, s.targets_total \
         FROM (SELECT *, CASE WHEN LAG(period_start) OVER w = prev_start THEN LAG(score) OVER w END AS prev_score \
           FROM (SELECT * FROM s UNION ALL BY NAME \
             SELECT period_kind, period_start, team_id, score, false AS keep FROM team_period_before) \
           WINDOW w AS (PARTITION BY period_kind, team_id ORDER BY period_start)) s \
         WHERE s.keep ORDER BY s.period_start, s.period_kind, s.team_id",
        sums = summed_counts(),
        rate_cols = rate_columns(),
        score = score_expr(card),
        judged = judged_expr(card, p.scoring.review.min_volume),
        s_counts = COUNTS.map(|c| format!("s.{c}")).join(", "),
        s_rates = RATES.map(|r| format!("s.{}", r.0)).join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[tokio::test]
    async fn each_period_is_kept_in_exactly_one_group() {
        // A year from a Thursday (its first week starts in the quarter before), in groups
        // of about one quarter.
        let dates: Vec<String> = (0..365)
            .map(|i| (d("2026-10-01") + i.days()).to_string())
            .collect();
        let rows: BTreeMap<&str, u64> = dates.iter().map(|t| (t.as_str(), 10)).collect();
        let groups = groups(&dates, &rows, 900, None);
        assert!(groups.len() >= 4, "{}", groups.len());
        let mut kept: BTreeMap<(String, String), usize> = BTreeMap::new();
        for g in &groups {
            let ctx = datafusion::prelude::SessionContext::new();
            ctx.register_table("p", g.table.clone()).unwrap();
            let df = ctx
                .sql("SELECT DISTINCT period_kind, period FROM p WHERE keep")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            for b in df {
                use arrow::array::AsArray as _;
                let (k, p) = (
                    b.column(0).as_string::<i32>(),
                    b.column(1).as_string::<i32>(),
                );
                for i in 0..b.num_rows() {
                    *kept
                        .entry((k.value(i).into(), p.value(i).into()))
                        .or_default() += 1;
                }
            }
        }
        let all: std::collections::HashSet<(String, String)> = dates
            .iter()
            .flat_map(|t| periods_of(d(t)).map(|p| (p.kind.to_string(), p.label)))
            .collect();
        assert_eq!(kept.len(), all.len());
        assert!(kept.values().all(|n| *n == 1), "{kept:?}");
        assert!(kept.contains_key(&("week".to_string(), "2026-W40".to_string())));
    }

    #[test]
    fn weeks_are_iso_and_quarters_and_months_have_their_bounds() {
        // 2026-12-31 is a Thursday of ISO week 2026-W53; 2027-01-01 (Friday) too.
        let [w, m, q] = periods_of(d("2026-12-31"));
        assert_eq!(
            (w.label.as_str(), w.start, w.end),
            ("2026-W53", d("2026-12-28"), d("2027-01-03"))
        );
        assert_eq!(w.prev_start, d("2026-12-21"));
        assert_eq!(
            (m.label.as_str(), m.start, m.end),
            ("2026-12", d("2026-12-01"), d("2026-12-31"))
        );
        assert_eq!(
            (q.label.as_str(), q.start, q.end),
            ("2026-Q4", d("2026-10-01"), d("2026-12-31"))
        );
        assert_eq!(q.prev_start, d("2026-07-01"));
        let [w, m, q] = periods_of(d("2027-01-01"));
        assert_eq!(w.label, "2026-W53");
        assert_eq!(m.label, "2027-01");
        assert_eq!(
            (q.label.as_str(), q.prev_start),
            ("2027-Q1", d("2026-10-01"))
        );
        // A week inside one month, and February of a leap year.
        let [w, m, _] = periods_of(d("2028-02-29"));
        assert_eq!((w.label.as_str(), m.end), ("2028-W09", d("2028-02-29")));
        assert_eq!(m.prev_start, d("2028-01-01"));
    }
}
