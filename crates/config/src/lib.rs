//! crmdq-config: the pipeline file.
//!
//! A pipeline file is YAML (parsed with `serde_yaml_ng`): `${VAR}` is replaced by the
//! environment first ([`env`]), then the text is read into raw structs (unknown keys
//! rejected, typed values such as durations and times checked as they are read) and each
//! section is validated by its own module into the typed section a stage receives:
//!
//! | module | keys | read by |
//! |---|---|---|
//! | [`source`] | `source` | the source and decode stages |
//! | [`checks`] | `phone_region`, `pii`, `placeholders`, `record_types`, `calendar`, `checks`, `reference_tables` | the check stage |
//! | [`warehouse`] | `warehouse` | the sink |
//! | [`scoring`] | `roster`, `absences`, `scorecards`, `opportunity_stages`, `orders_within_days`, `review` | score, catalog |
//! | [`serve`] | `serve`, `sql` | serve, `run --http-listen` |
//! | [`alerts`] | `alerts` | alerts |
//!
//! Each module holds its raw keys, its validated types and its defaults (`default::*`,
//! named constants). Every error names the file, the line the YAML parser saw ([`span`])
//! and the key. A validated [`Pipeline`] is not changed afterwards: command-line overrides
//! are given to [`Pipeline::load_with`].

pub mod alerts;
pub mod checks;
mod env;
mod error;
pub mod report;
pub mod scoring;
pub mod serve;
pub mod source;
pub mod span;
mod values;
pub mod warehouse;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crmdq_schema::RecordType;
use jiff::tz::TimeZone;
use serde::Deserialize;

pub use alerts::{
    ALERT_PIPELINE_METRICS, ALERT_SCORE_METRICS, AlertCondition, AlertRule, AlertScope,
    AlertsConfig, PeriodKind, Receiver, ReceiverKind,
};
pub use checks::{
    Calendar, CheckParams, ChecksConfig, DayCount, DeadlinePolicy, PiiMode, PiiPolicy,
    RecordTypeConfig, UserCheck, normalize_placeholder,
};
pub use error::ConfigError;
pub use report::{Lang, ReportConfig};
pub use scoring::{
    ROSTER_COLUMNS, ReviewConfig, RosterSource, SCORE_METRICS, Scorecard, ScoringConfig, Target,
};
pub use serve::ServeConfig;
pub use source::{CsvOptions, DeclaredFormat, KafkaConfig, SourceConfig, SourceMapping};
pub use warehouse::{Location, WarehouseConfig};

use error::Ctx;
use values::{Region, Zone};

/// Defaults of the top-level keys.
pub mod default {
    pub const NAME: &str = "crmdq";
    pub const TIME_ZONE: &str = "Asia/Shanghai";
}

/// Top level of a pipeline file, as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPipeline {
    /// Name of the pipeline (used in logs and metrics). Default `crmdq`.
    pub name: Option<String>,
    /// IANA time zone in which business dates and deadlines are computed and offset-less
    /// timestamps are read. Default `Asia/Shanghai`.
    pub time_zone: Option<Zone>,
    /// ISO 3166 region whose numbering plan phones are validated against. Default `CN`.
    pub phone_region: Option<Region>,
    #[serde(default)]
    pub source: source::RawSource,
    #[serde(default)]
    pub warehouse: warehouse::RawWarehouse,
    /// Roster file (CSV or Parquet), relative to the pipeline file's folder.
    pub roster: Option<scoring::RawRoster>,
    /// Reference tables for user checks: name → `{path}` (CSV with a header).
    #[serde(default)]
    pub reference_tables: BTreeMap<String, checks::RawReference>,
    #[serde(default)]
    pub pii: checks::RawPii,
    #[serde(default)]
    pub placeholders: checks::RawPlaceholders,
    #[serde(default)]
    pub record_types: BTreeMap<String, checks::RawRecordType>,
    #[serde(default)]
    pub checks: checks::RawChecks,
    #[serde(default)]
    pub calendar: checks::RawCalendar,
    /// Metric weights per role and for teams (`team`).
    #[serde(default)]
    pub scorecards: BTreeMap<String, BTreeMap<String, f64>>,
    /// Absences CSV (`person_id,from,to,kind`), relative to the pipeline file's folder.
    pub absences: Option<String>,
    /// Opportunity stages in pipeline order. Default `lead, qualified, proposal,
    /// negotiation, won`.
    pub opportunity_stages: Option<Vec<String>>,
    /// Days after a win within which its customer's order must arrive. Default 7.
    pub orders_within_days: Option<u32>,
    /// The performance review: `min_volume`, `targets`.
    #[serde(default)]
    pub review: scoring::RawReview,
    #[serde(default)]
    pub sql: serve::RawSql,
    #[serde(default)]
    pub serve: serve::RawServe,
    #[serde(default)]
    pub alerts: alerts::RawAlerts,
    /// The scorecards people read: `lang`, `base_url`.
    #[serde(default)]
    pub report: report::RawReport,
}

/// A validated pipeline: one typed section per stage.
#[derive(Debug, Clone)]
pub struct Pipeline {
    pub file: PathBuf,
    pub name: String,
    pub time_zone_name: String,
    pub time_zone: TimeZone,
    pub source: SourceConfig,
    pub checks: ChecksConfig,
    pub warehouse: WarehouseConfig,
    pub roster: Option<RosterSource>,
    pub scoring: ScoringConfig,
    pub serve: ServeConfig,
    pub alerts: AlertsConfig,
    pub report: ReportConfig,
}

/// What the command line overrides, applied while the file is validated.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--warehouse`.
    pub warehouse: Option<PathBuf>,
    /// `--roster`: a roster file in the contract's columns, instead of the pipeline's.
    pub roster: Option<PathBuf>,
}

impl Pipeline {
    /// Read and validate a pipeline file.
    pub fn load(path: &Path) -> Result<Pipeline, ConfigError> {
        Self::load_with(path, &Overrides::default())
    }

    /// Read and validate a pipeline file, with command-line overrides.
    pub fn load_with(path: &Path, overrides: &Overrides) -> Result<Pipeline, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut p = Self::from_str_at(&text, path, &|k| std::env::var(k).ok())?;
        if let Some(w) = &overrides.warehouse {
            p.warehouse.set_location(&Location::from(w));
        }
        if let Some(r) = &overrides.roster {
            p.roster = Some(RosterSource::file(r.clone()));
        }
        Ok(p)
    }

    /// Validate pipeline text as if read from `path` (relative paths resolve against its
    /// folder), with `env` standing in for the environment.
    pub fn from_str_at(
        text: &str,
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Pipeline, ConfigError> {
        let expanded = env::expand_env(text, path, env)?;
        let cx = Ctx {
            path,
            text: &expanded,
            base: base_dir(path),
            env,
        };
        let de = serde_yaml_ng::Deserializer::from_str(&expanded);
        let raw: RawPipeline = match serde_path_to_error::deserialize(de) {
            Ok(r) => r,
            Err(e) => {
                let key = e.path().to_string();
                let key = if key == "." { String::new() } else { key };
                let inner = e.into_inner();
                // Type errors carry the parser's mark; values that check themselves
                // (durations, times, …) are found by their key path.
                let line = inner
                    .location()
                    .map(|l| l.line())
                    .or_else(|| span::line_of(&expanded, &key))
                    .unwrap_or(1);
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    line,
                    key,
                    message: inner.to_string(),
                });
            }
        };
        validate(raw, &cx)
    }

    /// The pipeline file's folder, against which relative paths resolve.
    pub fn base_dir(&self) -> PathBuf {
        base_dir(&self.file)
    }

    /// The roster file named by the pipeline, if any.
    pub fn roster_path(&self) -> Option<&Path> {
        self.roster.as_ref().map(|r| r.path.as_path())
    }

    pub fn record_type(&self, rt: RecordType) -> &RecordTypeConfig {
        &self.checks.record_types[&rt]
    }

    /// The scorecard for a role, falling back to `default`.
    pub fn scorecard(&self, role: &str) -> &Scorecard {
        self.scoring.scorecard(role)
    }
}

fn base_dir(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn validate(raw: RawPipeline, cx: &Ctx<'_>) -> Result<Pipeline, ConfigError> {
    let zone = match raw.time_zone {
        Some(z) => z,
        None => {
            Zone::try_from(default::TIME_ZONE.to_string()).map_err(|e| cx.err("time_zone", e))?
        }
    };
    Ok(Pipeline {
        file: cx.path.to_path_buf(),
        name: raw.name.unwrap_or_else(|| default::NAME.into()),
        time_zone_name: zone.name,
        time_zone: zone.tz,
        source: source::validate(raw.source, cx)?,
        checks: checks::validate(
            checks::RawParts {
                phone_region: raw.phone_region,
                pii: raw.pii,
                placeholders: raw.placeholders,
                record_types: raw.record_types,
                checks: raw.checks,
                calendar: raw.calendar,
                reference_tables: raw.reference_tables,
            },
            cx,
        )?,
        warehouse: warehouse::validate(raw.warehouse, cx)?,
        roster: scoring::roster(raw.roster, cx)?,
        scoring: scoring::validate(
            scoring::RawParts {
                scorecards: raw.scorecards,
                absences: raw.absences,
                opportunity_stages: raw.opportunity_stages,
                orders_within_days: raw.orders_within_days,
                review: raw.review,
            },
            cx,
        )?,
        serve: serve::validate(raw.serve, raw.sql, cx)?,
        alerts: alerts::validate(raw.alerts, cx)?,
        report: report::validate(raw.report, cx)?,
    })
}

#[cfg(test)]
mod tests;
