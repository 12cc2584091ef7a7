//! The score tables' file schemas (contract section 3; each column's exact definition is
//! in `schemas/README.md`). Declared here rather than taken from the scoring plan, so that
//! a reader sees the same table whether or not anything was scored yet, and a change to
//! a score table is a change to this file (the scoring crate tests that its SQL produces
//! exactly these columns and types, and writes its files with these schemas).

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// A table `crmdq score` replaces as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScoreTable {
    PersonDaily,
    TeamDaily,
    RuleDaily,
    /// One row per (period, person, role); its files sit in the partition of the
    /// period's first day (`dt` = `period_start`).
    PersonPeriod,
    TeamPeriod,
}

impl ScoreTable {
    pub const ALL: [ScoreTable; 5] = [
        ScoreTable::PersonDaily,
        ScoreTable::TeamDaily,
        ScoreTable::RuleDaily,
        ScoreTable::PersonPeriod,
        ScoreTable::TeamPeriod,
    ];

    /// The tables computed per business date (the period tables are computed from them).
    pub const DAILY: [ScoreTable; 3] = [
        ScoreTable::PersonDaily,
        ScoreTable::TeamDaily,
        ScoreTable::RuleDaily,
    ];

    /// The table's name in SQL.
    pub fn name(self) -> &'static str {
        match self {
            ScoreTable::PersonDaily => "person_daily",
            ScoreTable::TeamDaily => "team_daily",
            ScoreTable::RuleDaily => "rule_daily",
            ScoreTable::PersonPeriod => "person_period",
            ScoreTable::TeamPeriod => "team_period",
        }
    }

    /// The table's folder in the warehouse (its files sit in `dt=` partitions below).
    pub fn dir(self) -> &'static str {
        match self {
            ScoreTable::PersonDaily => "scores/person_daily",
            ScoreTable::TeamDaily => "scores/team_daily",
            ScoreTable::RuleDaily => "scores/rule_daily",
            ScoreTable::PersonPeriod => "scores/person_period",
            ScoreTable::TeamPeriod => "scores/team_period",
        }
    }

    /// The schema of the table's Parquet files (without `dt`, which is the partition).
    /// Every column is nullable: a rate with no denominator is NULL, and a person absent
    /// from the roster has no role, team or manager.
    pub fn schema(self) -> SchemaRef {
        static CACHE: OnceLock<[SchemaRef; 5]> = OnceLock::new();
        let all = CACHE.get_or_init(|| ScoreTable::ALL.map(|t| Arc::new(build(t))));
        all[self as usize].clone()
    }
}

/// The counts of the daily and period tables (each rate is a ratio of two of them).
pub const SCORE_COUNTS: [&str; 24] = [
    "entries",
    "complete_entries",
    "valid_entries",
    "on_time_entries",
    "late_seconds",
    "tickets",
    "rated_tickets",
    "satisfaction_sum",
    "complaints",
    "complaints_known",
    "checkins",
    "checkins_answered",
    "checkins_complete",
    "coverage_pairs",
    "covered_pairs",
    "new_customers",
    "customer_entries",
    "own_side_entries",
    "opportunities_advanced",
    "opportunities_lost",
    "opportunities_won",
    "opportunities_closed",
    "won_without_order",
    "orders",
];

/// The rates and means of the daily and period tables.
pub const SCORE_RATES: [&str; 13] = [
    "completeness_rate",
    "validity_rate",
    "timeliness_rate",
    "checkin_response_rate",
    "checkin_response_quality",
    "checkin_coverage",
    "mean_satisfaction",
    "satisfaction_rate",
    "complaint_rate",
    "complaint_free_rate",
    "win_rate",
    "stage_success_rate",
    "own_entry_rate",
];

fn build(t: ScoreTable) -> Schema {
    use DataType::{Boolean, Date32, Float64, Int64, Utf8};
    let kpis = || {
        let mut v: Vec<(&str, DataType)> = SCORE_COUNTS.iter().map(|c| (*c, Int64)).collect();
        v.push(("order_amount", Float64));
        v.push(("checkin_response_minutes", Float64));
        v.extend(SCORE_RATES.iter().map(|r| (*r, Float64)));
        v.push(("score", Float64));
        v
    };
    let period = || -> Vec<(&str, DataType)> {
        vec![
            ("period_kind", Utf8),
            ("period", Utf8),
            ("period_start", Date32),
            ("period_end", Date32),
        ]
    };
    let review = |rank: bool| {
        let mut v: Vec<(&str, DataType)> = vec![("judged", Boolean)];
        if rank {
            v.push(("rank_in_team", Int64));
        }
        v.extend([
            ("prev_score", Float64),
            ("score_change", Float64),
            ("targets_met", Int64),
            ("targets_total", Int64),
        ]);
        v
    };
    let cols: Vec<(&str, DataType)> = match t {
        ScoreTable::PersonDaily => {
            let mut v = vec![
                ("person_id", Utf8),
                ("role", Utf8),
                ("team_id", Utf8),
                ("manager_id", Utf8),
            ];
            v.extend(kpis());
            v
        }
        ScoreTable::TeamDaily => {
            let mut v = vec![("team_id", Utf8), ("people", Int64)];
            v.extend(kpis());
            v
        }
        ScoreTable::RuleDaily => vec![
            ("person_id", Utf8),
            ("role", Utf8),
            ("team_id", Utf8),
            ("rule", Utf8),
            ("entries", Int64),
        ],
        ScoreTable::PersonPeriod => {
            let mut v = period();
            v.extend([
                ("person_id", Utf8),
                ("name", Utf8),
                ("role", Utf8),
                ("team_id", Utf8),
                ("manager_id", Utf8),
                ("days", Int64),
            ]);
            v.extend(kpis());
            v.extend(review(true));
            v
        }
        ScoreTable::TeamPeriod => {
            let mut v = period();
            v.extend([("team_id", Utf8), ("people", Int64), ("days", Int64)]);
            v.extend(kpis());
            v.extend(review(false));
            v
        }
    };
    Schema::new(
        cols.into_iter()
            .map(|(n, d)| Field::new(n, d, true))
            .collect::<Vec<_>>(),
    )
}
