//! What an evaluation takes and gives: the options ([`EvalOptions`], which dates,
//! which events to deliver), the events it produces ([`AlertEvent`], one row of the
//! `alerts` table each) and its [`Report`]; and how an event reads and where it goes
//! ([`message`], [`route`]).

use std::fmt::Write as _;

use crmdq_config::{Pipeline, Receiver};
use jiff::civil::Date;

use crate::LiveInputs;

/// One alert event: a notification (firing, repeated, or resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    pub evaluated_at: String,
    pub evaluated_at_us: i64,
    /// Evaluation sequence number: events are ordered by it (commit order, and within a
    /// replay one number per business date), so a clock that goes backwards (a re-run
    /// with `--now`) cannot reorder the state.
    pub seq: i64,
    /// Business date evaluated.
    pub dt: String,
    pub rule: String,
    pub scope: String,
    pub subject: String,
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    /// A repeat notification of an alert already firing.
    pub repeat: bool,
    pub metric: String,
    pub value: Option<f64>,
    pub baseline: Option<f64>,
    pub threshold: Option<f64>,
    pub entries: Option<i64>,
    pub team_id: Option<String>,
    pub manager_id: Option<String>,
    pub receiver: Option<String>,
    pub delivered: bool,
    pub delivery_error: Option<String>,
    pub message: String,
    pub top_rules: Option<String>,
    pub example_records: Vec<String>,
    /// Stable id `rule/subject/episode/kind` (see [`episode::event_id`]).
    pub event_id: String,
    /// The episode: the business date (pipeline rules: the instant) it began.
    pub episode: String,
    /// Before delivery: to be delivered by this evaluation. Once recorded: still awaits
    /// delivery (offered again by later evaluations).
    pub pending: bool,
    /// How the threshold came about (the baseline window, the days left out); part of
    /// the message, not a column of its own.
    pub basis: String,
}

/// Which business dates person and team rules are judged on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dates {
    /// The latest scored date.
    Latest,
    On(Date),
    /// Every date from the first to the last, in order (a backfill replay).
    Range(Date, Date),
    /// Every scored date after the latest one evaluated, up to the latest scored (what
    /// `score` does after scoring: a daily job that missed days catches up in order).
    /// Never evaluated before: every scored date.
    CatchUp,
}

/// Which events of an evaluation are delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Deliver {
    /// Every event.
    All,
    /// What the receiver needs at the end: the latest event of each episode still open,
    /// and the resolve of each episode that was open before the evaluation began. The
    /// rest (episodes that opened and closed within a replay) is recorded, not sent. For
    /// one date this is every event.
    #[default]
    Open,
}

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub dates: Dates,
    /// Print what would fire; change no state, send nothing.
    pub dry_run: bool,
    pub deliver: Deliver,
    /// Also POST every event (JSON) here, pending ones included; it stands in for a
    /// route whose receiver is disabled.
    pub extra_webhook: Option<String>,
    pub now: jiff::Timestamp,
    pub live: LiveInputs,
    /// Only pipeline-scope rules (what `run` evaluates periodically).
    pub pipeline_only: bool,
    /// The entries of one date a scoring run just computed (see
    /// [`crmdq_score::ScoreSummary::entries`]): when that is an evaluated date, example
    /// records are taken from them instead of deduplicating the warehouse's deliveries
    /// again.
    pub scored_entries: Option<crmdq_score::ScoredEntries>,
}

impl EvalOptions {
    /// Every rule, for the latest scored date, notifying and recording.
    pub fn latest(now: jiff::Timestamp) -> EvalOptions {
        EvalOptions {
            dates: Dates::Latest,
            dry_run: false,
            deliver: Deliver::Open,
            extra_webhook: None,
            now,
            live: LiveInputs::default(),
            pipeline_only: false,
            scored_entries: None,
        }
    }
}

/// What an evaluation found and did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The (last) business date evaluated.
    pub date: Option<String>,
    /// The first business date evaluated, when several were.
    pub from: Option<String>,
    /// New events (sent and recorded, or with `dry_run` those that would be).
    pub events: Vec<AlertEvent>,
    /// Dates before the latest evaluated one: judged as a report, state unchanged.
    pub report_only: Vec<String>,
    /// The events those dates would have had.
    pub reported: Vec<AlertEvent>,
    /// (rule, subject) firing and already notified within the repeat interval.
    pub still_firing: Vec<(String, String)>,
    /// Rules that could not be evaluated here, with why.
    pub skipped: Vec<(String, String)>,
    /// The latest business date evaluated live, after this evaluation.
    pub through: Option<String>,
    /// Events recorded earlier and delivered by this evaluation.
    pub redelivered: usize,
    /// Events awaiting delivery after this evaluation (new and older).
    pub pending: usize,
    /// Pending events given up by this evaluation (`alerts.max_pending_hours`).
    pub expired: usize,
    /// Log version of the commit that recorded the events.
    pub committed: Option<u64>,
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |x| format!("{x:.3}"))
}

/// The text of an event, as receivers show it.
pub fn message(e: &AlertEvent) -> String {
    let basis = &e.basis;
    let team = e
        .team_id
        .as_ref()
        .filter(|_| e.scope == "person")
        .map(|t| format!(" (team {t})"))
        .unwrap_or_default();
    let entries = e
        .entries
        .map(|n| format!(", {n} entries"))
        .unwrap_or_default();
    if e.state == "resolved" {
        return format!(
            "RESOLVED {rule}: {subject}{team} {metric} is {value} on {dt}{entries} ({basis})",
            rule = e.rule,
            subject = e.subject,
            metric = e.metric,
            value = fmt(e.value),
            dt = e.dt,
        );
    }
    let mut m = format!(
        "{sev} {rule}{again}: {subject}{team} {metric} {value} on {dt}{entries}",
        sev = e.severity.to_uppercase(),
        rule = e.rule,
        again = if e.repeat { " (still firing)" } else { "" },
        subject = e.subject,
        metric = e.metric,
        value = fmt(e.value),
        dt = e.dt,
    );
    if let Some(b) = e.baseline {
        let _ = write!(m, ", down from its baseline {b:.3}");
    }
    let _ = write!(m, " — {basis}");
    if let Some(r) = &e.top_rules {
        let _ = write!(m, "\nRules that cost most: {r}");
    }
    if !e.example_records.is_empty() {
        let _ = write!(m, "\nExample records: {}", e.example_records.join(", "));
    }
    m
}

/// The page of `serve`'s `/report/` that explains an event (`report.base_url` set): the
/// month of its business date, the person's, team's or pipeline page.
pub fn report_link(p: &Pipeline, e: &AlertEvent) -> Option<String> {
    use crmdq_config::report::{month_of, page, url};
    let base = p.report.base_url.as_deref()?;
    let month = month_of(&e.dt)?;
    let file = match e.scope.as_str() {
        "person" => page::person(&e.subject),
        "team" => page::team(&e.subject),
        _ => page::PIPELINE.to_string(),
    };
    Some(url(base, month, &file))
}

/// The receiver of an event: pipeline scope → the ops route; person and team scope → the
/// route of the subject's manager, else `default`.
pub fn route<'a>(p: &'a Pipeline, e: &AlertEvent) -> Option<&'a Receiver> {
    let name = if e.scope == "pipeline" {
        p.alerts.pipeline_route.as_ref()
    } else {
        e.manager_id
            .as_ref()
            .and_then(|m| p.alerts.manager_routes.get(m))
            .or_else(|| p.alerts.manager_routes.get("default"))
    }?;
    p.alerts.receivers.get(name)
}
