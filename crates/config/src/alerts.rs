//! `alerts`: rules, receivers and routes (`crmdq alerts`, after `score`, inside `run`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{ConfigError, Ctx};
use crate::values::{Hours, Seconds};

/// Defaults of the `alerts` section.
pub mod default {
    use std::time::Duration;
    /// A person or team with fewer entries on the day is never judged.
    pub const MIN_ENTRIES: u64 = 5;
    pub const REPEAT_INTERVAL: Duration = Duration::from_hours(24);
    pub const EVALUATE_EVERY: Duration = Duration::from_mins(5);
    /// Three days of retries for an undelivered event.
    pub const MAX_PENDING: Duration = Duration::from_hours(72);
    pub const RECEIVER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const RECEIVER_RETRIES: u32 = 3;
    pub const SEVERITY: &str = "warning";
    /// The window of `dead_letter_ratio`.
    pub const WINDOW: Duration = Duration::from_hours(24);
    pub const DROP_DAYS: u32 = 14;
    pub const DROP_MIN_HISTORY: u32 = 7;
    pub const DROP_MIN_DROP: f64 = 0.1;
}

/// Metrics a person- or team-scope rule may watch (columns of both `person_daily` and
/// `team_daily`: every rate, count and score).
pub const ALERT_SCORE_METRICS: [&str; 27] = [
    "completeness_rate",
    "validity_rate",
    "timeliness_rate",
    "score",
    "entries",
    "checkin_response_rate",
    "checkin_response_quality",
    "checkin_response_minutes",
    "checkin_coverage",
    "checkins",
    "satisfaction_rate",
    "complaint_free_rate",
    "win_rate",
    "stage_success_rate",
    "own_entry_rate",
    "mean_satisfaction",
    "complaint_rate",
    "tickets",
    "new_customers",
    "orders",
    "order_amount",
    "won_without_order",
    "opportunities_advanced",
    "opportunities_lost",
    "opportunities_won",
    "opportunities_closed",
    "late_seconds",
];

/// Metrics a pipeline-scope rule may watch.
pub const ALERT_PIPELINE_METRICS: [&str; 4] = [
    "dead_letter_ratio",
    "freshness_seconds",
    "topic_silence_seconds",
    "consumer_lag_messages",
];

// ---- as written --------------------------------------------------------------------------

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// A person or team with fewer entries on the day is never judged.
    pub min_entries: Option<u64>,
    /// A firing alert is notified again after this long while it keeps firing.
    pub repeat_interval_hours: Option<Hours>,
    /// How often `run` evaluates the pipeline-health rules.
    pub evaluate_every_seconds: Option<Seconds>,
    /// An event not yet delivered is retried by every later evaluation until it is this
    /// old (then it is logged and counted as expired).
    pub max_pending_hours: Option<Hours>,
    #[serde(default)]
    pub receivers: BTreeMap<String, RawReceiver>,
    #[serde(default)]
    pub routes: RawRoutes,
    #[serde(default)]
    pub rules: Vec<RawAlertRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReceiver {
    /// `webhook`, `alertmanager`, `slack`, `wecom` or `dingtalk`.
    #[serde(rename = "type")]
    pub kind: ReceiverKind,
    /// Endpoint URL (Alertmanager: its base URL). Empty: the receiver is disabled.
    pub url: String,
    /// Environment variable holding the signing secret (webhook HMAC, DingTalk sign).
    pub secret_env: Option<String>,
    pub timeout_seconds: Option<Seconds>,
    pub retries: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRoutes {
    /// Receiver of pipeline-scope alerts.
    pub pipeline: Option<String>,
    /// Receivers of person- and team-scope alerts, by the team's manager id; `default`
    /// for managers not listed (and subjects without a manager).
    #[serde(default)]
    pub managers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlertRule {
    pub name: String,
    /// `person`, `team` or `pipeline`.
    pub scope: AlertScope,
    /// `info`, `warning` or `critical`.
    pub severity: Option<Severity>,
    pub metric: String,
    pub below: Option<f64>,
    pub above: Option<f64>,
    pub drop: Option<RawDrop>,
    pub min_entries: Option<u64>,
    /// Pipeline scope: the window of `dead_letter_ratio`.
    pub window_hours: Option<Hours>,
    /// Pipeline scope: the topic of `topic_silence_seconds`.
    pub topic: Option<String>,
    /// Person and team scope: watch the period table (`week`, `month`, `quarter`) instead
    /// of the daily one.
    pub period: Option<PeriodKind>,
}

/// A review period (contract section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodKind {
    Week,
    Month,
    Quarter,
}

impl PeriodKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
            PeriodKind::Quarter => "quarter",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrop {
    /// Trailing business days forming the subject's own baseline.
    pub days: Option<u32>,
    /// Fire when the value is more than this many standard deviations below the mean.
    pub stddevs: Option<f64>,
    /// Fire when the value is more than this below the baseline median.
    pub below_median: Option<f64>,
    /// Days of history (with enough entries) needed before the subject is judged.
    pub min_history: Option<u32>,
    /// Never fire for a drop smaller than this (a perfectly stable baseline has sd 0).
    pub min_drop: Option<f64>,
}

// ---- validated ---------------------------------------------------------------------------

/// Alerting: rules, receivers and routes.
#[derive(Debug, Clone, Default)]
pub struct AlertsConfig {
    pub min_entries: u64,
    pub repeat_interval: Duration,
    pub evaluate_every: Duration,
    /// How long an undelivered event stays pending (retried by later evaluations).
    pub max_pending: Duration,
    pub receivers: BTreeMap<String, Receiver>,
    /// Receiver of pipeline-scope alerts.
    pub pipeline_route: Option<String>,
    /// Manager id (or `default`) → receiver of person- and team-scope alerts.
    pub manager_routes: BTreeMap<String, String>,
    pub rules: Vec<AlertRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReceiverKind {
    Webhook,
    Alertmanager,
    Slack,
    Wecom,
    Dingtalk,
}

/// Where notifications go.
#[derive(Clone)]
pub struct Receiver {
    pub name: String,
    pub kind: ReceiverKind,
    /// Empty: disabled (alerts are still evaluated and recorded).
    pub url: String,
    /// Signing secret (webhook HMAC-SHA256, DingTalk signed URL).
    pub secret: Option<String>,
    pub timeout: Duration,
    pub retries: u32,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertScope {
    Person,
    Team,
    Pipeline,
}

impl AlertScope {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertScope::Person => "person",
            AlertScope::Team => "team",
            AlertScope::Pipeline => "pipeline",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// When a rule fires.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertCondition {
    Below(f64),
    Above(f64),
    /// Against the subject's own trailing baseline.
    Drop {
        days: u32,
        stddevs: Option<f64>,
        below_median: Option<f64>,
        min_history: u32,
        min_drop: f64,
    },
}

#[derive(Debug, Clone)]
pub struct AlertRule {
    pub name: String,
    pub scope: AlertScope,
    /// `info`, `warning` or `critical` (as stored in the alert tables).
    pub severity: String,
    pub metric: String,
    pub condition: AlertCondition,
    pub min_entries: u64,
    pub window: Duration,
    pub topic: Option<String>,
    /// Watch `person_period` / `team_period` of this kind (judged rows only): on each
    /// business date, the value of the period containing it.
    pub period: Option<PeriodKind>,
}

impl AlertsConfig {
    /// What `check-config` warns about without rejecting the file: rules whose every
    /// routed receiver is disabled (empty url) or missing, so nothing they fire reaches
    /// anyone until a receiver is enabled or `crmdq alerts --webhook URL` delivers the
    /// pending events.
    pub fn warnings(&self) -> Vec<String> {
        let enabled = |name: &String| self.receivers.get(name).is_some_and(|r| !r.url.is_empty());
        let describe = |names: &[&String]| {
            if names.is_empty() {
                "no route".to_string()
            } else {
                names
                    .iter()
                    .map(|n| format!("`{n}` disabled (empty url)"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let mut out = Vec::new();
        let has = |scopes: &[AlertScope]| self.rules.iter().any(|r| scopes.contains(&r.scope));
        let managers: Vec<&String> = self.manager_routes.values().collect();
        if has(&[AlertScope::Person, AlertScope::Team]) && !managers.iter().any(|n| enabled(n)) {
            out.push(format!(
                "alerts.routes.managers: every receiver of person and team alerts is off ({}); \
                 their events are recorded and stay pending until a receiver is enabled or \
                 `crmdq alerts --webhook URL` delivers them",
                describe(&managers)
            ));
        }
        let pipeline: Vec<&String> = self.pipeline_route.iter().collect();
        if has(&[AlertScope::Pipeline]) && !pipeline.iter().any(|n| enabled(n)) {
            out.push(format!(
                "alerts.routes.pipeline: the receiver of pipeline-health alerts is off ({}); \
                 their events are recorded and stay pending until a receiver is enabled or \
                 `crmdq alerts --webhook URL` delivers them",
                describe(&pipeline)
            ));
        }
        out
    }
}

pub(crate) fn validate(raw: RawAlerts, cx: &Ctx<'_>) -> Result<AlertsConfig, ConfigError> {
    let min_entries = raw.min_entries.unwrap_or(default::MIN_ENTRIES);
    let mut receivers = BTreeMap::new();
    for (name, r) in raw.receivers {
        let key = format!("alerts.receivers.{name}");
        if !(r.url.is_empty() || r.url.starts_with("http://") || r.url.starts_with("https://")) {
            return Err(cx.err(
                &format!("{key}.url"),
                format!("`{}` is not an http(s) URL", r.url),
            ));
        }
        let secret = match &r.secret_env {
            None => None,
            Some(var) => Some((cx.env)(var).ok_or_else(|| {
                cx.err(
                    &format!("{key}.secret_env"),
                    format!("environment variable {var} is not set"),
                )
            })?),
        };
        receivers.insert(
            name.clone(),
            Receiver {
                name,
                kind: r.kind,
                url: r.url,
                secret,
                timeout: r.timeout_seconds.map_or(default::RECEIVER_TIMEOUT, |s| s.0),
                retries: r.retries.unwrap_or(default::RECEIVER_RETRIES),
            },
        );
    }
    let known = |key: &str, name: &str| -> Result<(), ConfigError> {
        if receivers.contains_key(name) {
            Ok(())
        } else {
            Err(cx.err(
                key,
                format!("no receiver named `{name}` in alerts.receivers"),
            ))
        }
    };
    if let Some(r) = &raw.routes.pipeline {
        known("alerts.routes.pipeline", r)?;
    }
    for (m, r) in &raw.routes.managers {
        known(&format!("alerts.routes.managers.{m}"), r)?;
    }
    let mut rules = Vec::new();
    let mut names = BTreeSet::new();
    for (i, r) in raw.rules.into_iter().enumerate() {
        let key = format!("alerts.rules[{i}]");
        if !names.insert(r.name.clone()) {
            return Err(cx.err(
                &format!("{key}.name"),
                format!("duplicate rule name `{}`", r.name),
            ));
        }
        let metrics: &[&str] = if r.scope == AlertScope::Pipeline {
            &ALERT_PIPELINE_METRICS
        } else {
            &ALERT_SCORE_METRICS
        };
        if !metrics.contains(&r.metric.as_str()) {
            return Err(cx.err(
                &format!("{key}.metric"),
                format!(
                    "`{}` is not a {} metric ({})",
                    r.metric,
                    r.scope.as_str(),
                    metrics.join(", ")
                ),
            ));
        }
        if r.period.is_some() && r.scope == AlertScope::Pipeline {
            return Err(cx.err(
                &format!("{key}.period"),
                "only person and team rules watch a period",
            ));
        }
        if r.period.is_some() && r.drop.is_some() {
            return Err(cx.err(
                &format!("{key}.period"),
                "a period rule takes `below` or `above` (a period is judged against its target, not a baseline of days)",
            ));
        }
        let condition = match (r.below, r.above, r.drop) {
            (Some(b), None, None) => AlertCondition::Below(b),
            (None, Some(a), None) => AlertCondition::Above(a),
            (None, None, Some(d)) => {
                if r.scope == AlertScope::Pipeline {
                    return Err(cx.err(
                        &format!("{key}.drop"),
                        "pipeline-scope rules take `below` or `above`",
                    ));
                }
                if d.stddevs.is_none() == d.below_median.is_none() {
                    return Err(cx.err(
                        &format!("{key}.drop"),
                        "give exactly one of `stddevs` and `below_median`",
                    ));
                }
                AlertCondition::Drop {
                    days: d.days.unwrap_or(default::DROP_DAYS).max(1),
                    stddevs: d.stddevs,
                    below_median: d.below_median,
                    min_history: d.min_history.unwrap_or(default::DROP_MIN_HISTORY),
                    min_drop: d.min_drop.unwrap_or(default::DROP_MIN_DROP),
                }
            }
            _ => {
                return Err(cx.err(&key, "give exactly one of `below`, `above` and `drop`"));
            }
        };
        rules.push(AlertRule {
            name: r.name,
            scope: r.scope,
            severity: r
                .severity
                .map_or(default::SEVERITY, Severity::as_str)
                .to_string(),
            metric: r.metric,
            condition,
            min_entries: r.min_entries.unwrap_or(min_entries),
            window: r.window_hours.map_or(default::WINDOW, |h| h.0),
            topic: r.topic,
            period: r.period,
        });
    }
    Ok(AlertsConfig {
        min_entries,
        repeat_interval: raw
            .repeat_interval_hours
            .map_or(default::REPEAT_INTERVAL, |h| h.0),
        evaluate_every: raw
            .evaluate_every_seconds
            .map_or(default::EVALUATE_EVERY, |s| s.0),
        max_pending: raw.max_pending_hours.map_or(default::MAX_PENDING, |h| h.0),
        receivers,
        pipeline_route: raw.routes.pipeline,
        manager_routes: raw.routes.managers,
        rules,
    })
}
