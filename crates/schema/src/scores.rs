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
}

impl ScoreTable {
    pub const ALL: [ScoreTable; 3] = [
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
        }
    }

    /// The table's folder in the warehouse (its files sit in `dt=` partitions below).
    pub fn dir(self) -> &'static str {
        match self {
            ScoreTable::PersonDaily => "scores/person_daily",
            ScoreTable::TeamDaily => "scores/team_daily",
            ScoreTable::RuleDaily => "scores/rule_daily",
        }
    }

    /// The schema of the table's Parquet files (without `dt`, which is the partition).
    /// Every column is nullable: a rate with no denominator is NULL, and a person absent
    /// from the roster has no role, team or manager.
    pub fn schema(self) -> SchemaRef {
        static CACHE: OnceLock<[SchemaRef; 3]> = OnceLock::new();
        let all = CACHE.get_or_init(|| ScoreTable::ALL.map(|t| Arc::new(build(t))));
        all[self as usize].clone()
    }
}

fn build(t: ScoreTable) -> Schema {
    use DataType::{Float64, Int64, Utf8};
    let cols: &[(&str, DataType)] = match t {
        ScoreTable::PersonDaily => &[
            ("person_id", Utf8),
            ("role", Utf8),
            ("team_id", Utf8),
            ("manager_id", Utf8),
            ("entries", Int64),
            ("complete_entries", Int64),
            ("valid_entries", Int64),
            ("on_time_entries", Int64),
            ("late_seconds", Int64),
            ("completeness_rate", Float64),
            ("validity_rate", Float64),
            ("timeliness_rate", Float64),
            ("tickets", Int64),
            ("mean_satisfaction", Float64),
            ("complaint_rate", Float64),
            ("checkins", Int64),
            ("checkin_response_rate", Float64),
            ("opportunities_closed", Int64),
            ("win_rate", Float64),
            ("score", Float64),
        ],
        ScoreTable::TeamDaily => &[
            ("team_id", Utf8),
            ("people", Int64),
            ("entries", Int64),
            ("complete_entries", Int64),
            ("valid_entries", Int64),
            ("on_time_entries", Int64),
            ("completeness_rate", Float64),
            ("validity_rate", Float64),
            ("timeliness_rate", Float64),
            ("score", Float64),
        ],
        ScoreTable::RuleDaily => &[
            ("person_id", Utf8),
            ("role", Utf8),
            ("team_id", Utf8),
            ("rule", Utf8),
            ("entries", Int64),
        ],
    };
    Schema::new(
        cols.iter()
            .map(|(n, d)| Field::new(*n, d.clone(), true))
            .collect::<Vec<_>>(),
    )
}
