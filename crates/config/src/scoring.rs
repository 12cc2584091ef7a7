//! `roster`, `absences`, `scorecards`, `opportunity_stages`, `orders_within_days` and
//! `review`: who is scored, how the rates weigh into a score, and what the performance
//! review judges (contract section 7).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::error::{ConfigError, Ctx};

/// Metric name → weight, for one role (or `team`).
pub type Scorecard = BTreeMap<String, f64>;

/// The metrics a scorecard may weigh: the rates (0–1) of `person_daily`, `team_daily` and
/// the period tables, the same for every role and for teams (each pooled as a ratio of
/// sums). A rate that is NULL for a subject drops out of its score.
pub const SCORE_METRICS: [&str; 11] = [
    "completeness_rate",
    "validity_rate",
    "timeliness_rate",
    "checkin_response_rate",
    "checkin_response_quality",
    "checkin_coverage",
    "satisfaction_rate",
    "complaint_free_rate",
    "win_rate",
    "stage_success_rate",
    "own_entry_rate",
];

/// The roster's columns (contract section 4; `assists` from section 7).
pub const ROSTER_COLUMNS: [&str; 8] = [
    "person_id",
    "name",
    "role",
    "team_id",
    "manager_id",
    "valid_from",
    "valid_to",
    "assists",
];

/// Defaults of the scoring sections.
pub mod default {
    use std::collections::BTreeMap;

    use super::{Scorecard, Target};

    /// The opportunity stages in pipeline order (`lost` is outside the order).
    pub const OPPORTUNITY_STAGES: [&str; 5] =
        ["lead", "qualified", "proposal", "negotiation", "won"];
    pub const ORDERS_WITHIN_DAYS: u32 = 7;
    /// Entries (and each scorecard KPI's denominator) below which a period is not judged.
    pub const MIN_VOLUME: u64 = 20;

    /// Shipped review targets: what "good" is per role (and for teams).
    pub fn targets() -> BTreeMap<String, BTreeMap<String, Target>> {
        let at_least = |pairs: &[(&str, f64)]| -> BTreeMap<String, Target> {
            pairs
                .iter()
                .map(|(m, v)| {
                    (
                        (*m).to_string(),
                        Target {
                            min: Some(*v),
                            max: None,
                        },
                    )
                })
                .collect()
        };
        let entry = [
            ("completeness_rate", 0.9),
            ("validity_rate", 0.95),
            ("timeliness_rate", 0.9),
        ];
        let with = |extra: &[(&str, f64)]| {
            let mut pairs = entry.to_vec();
            pairs.extend_from_slice(extra);
            at_least(&pairs)
        };
        let mut m = BTreeMap::new();
        m.insert(
            "sales_rep".to_string(),
            with(&[("checkin_response_rate", 0.9), ("own_entry_rate", 0.8)]),
        );
        m.insert(
            "sales_assistant".to_string(),
            with(&[("checkin_coverage", 0.9)]),
        );
        m.insert(
            "service_agent".to_string(),
            with(&[("satisfaction_rate", 0.75), ("complaint_free_rate", 0.9)]),
        );
        m.insert("team".to_string(), at_least(&entry));
        m
    }

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

/// `review` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawReview {
    /// A period with fewer entries, or a scorecard KPI with a smaller denominator, is not
    /// judged (kept, never ranked or alerted on). Default 20.
    pub min_volume: Option<u64>,
    /// Per role (and `team`): metric → `{min: x}` and/or `{max: x}`. Replaces the shipped
    /// targets of the roles it names.
    #[serde(default)]
    pub targets: BTreeMap<String, BTreeMap<String, Target>>,
}

/// A review target: the period's value must be at least `min` and at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl Target {
    /// Whether `v` meets the target (a NULL value meets nothing).
    pub fn met(&self, v: Option<f64>) -> bool {
        v.is_some_and(|v| self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m))
    }
}

/// The performance review: who is judged, against which targets.
#[derive(Debug, Clone)]
pub struct ReviewConfig {
    pub min_volume: u64,
    /// Role (or `team`) → metric → target.
    pub targets: BTreeMap<String, BTreeMap<String, Target>>,
}

/// How people and teams are scored.
#[derive(Debug, Clone)]
pub struct ScoringConfig {
    /// Role (or `team`, `default`) → weights.
    pub scorecards: BTreeMap<String, Scorecard>,
    /// The absences file (`person_id,from,to,kind`), if any.
    pub absences: Option<PathBuf>,
    /// Opportunity stages in pipeline order (lower-cased); `lost` is outside it.
    pub opportunity_stages: Vec<String>,
    /// A won opportunity needs an order for its customer within this many days after.
    pub orders_within_days: u32,
    pub review: ReviewConfig,
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

/// The raw keys this module validates (several top-level keys of the file).
pub(crate) struct RawParts {
    pub scorecards: BTreeMap<String, BTreeMap<String, f64>>,
    pub absences: Option<String>,
    pub opportunity_stages: Option<Vec<String>>,
    pub orders_within_days: Option<u32>,
    pub review: RawReview,
}

pub(crate) fn validate(parts: RawParts, cx: &Ctx<'_>) -> Result<ScoringConfig, ConfigError> {
    let raw = parts.scorecards;
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
    let opportunity_stages: Vec<String> = match parts.opportunity_stages {
        None => default::OPPORTUNITY_STAGES.map(str::to_string).to_vec(),
        Some(v) => {
            let v: Vec<String> = v.iter().map(|s| s.trim().to_lowercase()).collect();
            let mut seen = std::collections::BTreeSet::new();
            if v.is_empty()
                || v.iter()
                    .any(|s| s.is_empty() || s == "lost" || !seen.insert(s.clone()))
            {
                return Err(cx.err(
                    "opportunity_stages",
                    "give the stages in pipeline order, each once, without `lost` (it is outside the order)",
                ));
            }
            v
        }
    };
    let mut targets = default::targets();
    for (role, metrics) in parts.review.targets {
        for (metric, t) in &metrics {
            if !SCORE_METRICS.contains(&metric.as_str()) {
                return Err(cx.err(
                    &format!("review.targets.{role}.{metric}"),
                    format!(
                        "not a rate a review can target (expected one of {})",
                        SCORE_METRICS.join(", ")
                    ),
                ));
            }
            if t.min.is_none() && t.max.is_none() {
                return Err(cx.err(
                    &format!("review.targets.{role}.{metric}"),
                    "give `min`, `max` or both",
                ));
            }
        }
        targets.insert(role, metrics);
    }
    Ok(ScoringConfig {
        scorecards,
        absences: parts.absences.map(|a| cx.base.join(a)),
        opportunity_stages,
        orders_within_days: parts
            .orders_within_days
            .unwrap_or(default::ORDERS_WITHIN_DAYS),
        review: ReviewConfig {
            min_volume: parts.review.min_volume.unwrap_or(default::MIN_VOLUME),
            targets,
        },
    })
}
