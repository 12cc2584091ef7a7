//! `roster` and `scorecards`: who is scored and how the daily rates weigh into a score.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{ConfigError, Ctx};

/// Metric name → weight, for one role (or `team`).
pub type Scorecard = BTreeMap<String, f64>;

/// The metrics a scorecard may weigh (columns of `person_daily`).
pub const SCORE_METRICS: [&str; 7] = [
    "completeness_rate",
    "validity_rate",
    "timeliness_rate",
    "checkin_response_rate",
    "satisfaction_rate",
    "complaint_free_rate",
    "win_rate",
];

/// The roster's columns (contract section 4).
pub const ROSTER_COLUMNS: [&str; 7] = [
    "person_id",
    "name",
    "role",
    "team_id",
    "manager_id",
    "valid_from",
    "valid_to",
];

/// Defaults of the scoring sections.
pub mod default {
    use std::collections::BTreeMap;

    use super::Scorecard;

    /// Equal weights on the three entry-quality rates; role KPIs added where the role owns
    /// them.
    pub fn scorecards() -> BTreeMap<String, Scorecard> {
        let card = |pairs: &[(&str, f64)]| -> Scorecard {
            pairs.iter().map(|(k, v)| ((*k).to_string(), *v)).collect()
        };
        let base = [
            ("completeness_rate", 1.0),
            ("validity_rate", 1.0),
            ("timeliness_rate", 1.0),
        ];
        let with = |extra: &[(&str, f64)]| {
            let mut pairs = base.to_vec();
            pairs.extend_from_slice(extra);
            card(&pairs)
        };
        let mut m = BTreeMap::new();
        for role in ["default", "team", "sales_assistant", "manager", "unknown"] {
            m.insert(role.to_string(), card(&base));
        }
        m.insert("sales_rep".into(), with(&[("checkin_response_rate", 1.0)]));
        m.insert(
            "service_agent".into(),
            with(&[("satisfaction_rate", 1.0), ("complaint_free_rate", 1.0)]),
        );
        m
    }
}

/// The roster: a path to a roster file in the contract's columns, or `{path, mapping}`
/// deriving those columns from another table by SQL expressions.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRoster {
    Path(String),
    Mapped {
        path: String,
        #[serde(default)]
        mapping: BTreeMap<String, String>,
    },
}

/// Where the roster comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterSource {
    pub path: PathBuf,
    /// Roster column → SQL expression over the file's own columns (empty: the file has the
    /// contract's columns).
    pub mapping: BTreeMap<String, String>,
}

impl RosterSource {
    /// A roster file in the contract's columns (`--roster`).
    pub fn file(path: PathBuf) -> RosterSource {
        RosterSource {
            path,
            mapping: BTreeMap::new(),
        }
    }
}

/// How people and teams are scored.
#[derive(Debug, Clone)]
pub struct ScoringConfig {
    /// Role (or `team`, `default`) → weights.
    pub scorecards: BTreeMap<String, Scorecard>,
}

impl ScoringConfig {
    /// The scorecard for a role, falling back to `default`.
    pub fn scorecard(&self, role: &str) -> &Scorecard {
        self.scorecards
            .get(role)
            .unwrap_or_else(|| &self.scorecards["default"])
    }
}

pub(crate) fn roster(
    raw: Option<RawRoster>,
    cx: &Ctx<'_>,
) -> Result<Option<RosterSource>, ConfigError> {
    Ok(match raw {
        None => None,
        Some(RawRoster::Path(p)) => Some(RosterSource::file(cx.base.join(p))),
        Some(RawRoster::Mapped { path, mapping }) => {
            for k in mapping.keys() {
                if !ROSTER_COLUMNS.contains(&k.as_str()) {
                    return Err(cx.err(
                        &format!("roster.mapping.{k}"),
                        format!("not a roster column ({})", ROSTER_COLUMNS.join(", ")),
                    ));
                }
            }
            Some(RosterSource {
                path: cx.base.join(path),
                mapping,
            })
        }
    })
}

pub(crate) fn validate(
    raw: BTreeMap<String, BTreeMap<String, f64>>,
    cx: &Ctx<'_>,
) -> Result<ScoringConfig, ConfigError> {
    let mut scorecards = default::scorecards();
    for (role, weights) in raw {
        for (metric, w) in &weights {
            if !SCORE_METRICS.contains(&metric.as_str()) {
                return Err(cx.err(
                    &format!("scorecards.{role}.{metric}"),
                    format!(
                        "unknown metric `{metric}` (expected one of {})",
                        SCORE_METRICS.join(", ")
                    ),
                ));
            }
            if !(w.is_finite() && *w >= 0.0) {
                return Err(cx.err(
                    &format!("scorecards.{role}.{metric}"),
                    "weight must be a non-negative number",
                ));
            }
        }
        if weights.values().sum::<f64>() <= 0.0 {
            return Err(cx.err(
                &format!("scorecards.{role}"),
                "weights must not all be zero",
            ));
        }
        scorecards.insert(role, weights);
    }
    Ok(ScoringConfig { scorecards })
}
