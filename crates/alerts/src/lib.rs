//! crmdq-alerts: quality drops, routed to the person who can act.
//!
//! Each evaluation reads the warehouse (score tables for person and team rules, ingestion
//! times for pipeline rules), judges every rule of the pipeline file on one business date
//! or a run of them ([`episode`] decides, purely), compares with the alert state kept in
//! the warehouse's `alerts` table, and turns the transitions into events: a new firing
//! alert, a repeat after `repeat_interval_hours` while it keeps firing, a resolve when it
//! clears. Events are delivered to the route's receiver ([`delivery`], [`notify`]) and
//! then recorded ([`store`]) in one commit-log entry, so a restart knows exactly what was
//! sent; what was not delivered stays pending and is offered again by later evaluations.
//! What an evaluation takes and gives (options, events, report) is in [`event`].
//!
//! Invariant: live state only moves forward in business dates. An evaluation of a date
//! before the latest one evaluated is a report, never a state change; a backfill is
//! replayed in date order (`Dates::Range`), exactly as the daily job would have judged it.

pub mod delivery;
pub mod episode;
pub mod evaluate;
pub mod event;
pub mod notify;
pub mod store;

use std::collections::BTreeMap;
use std::path::Path;

use crmdq_config::{AlertRule, AlertScope, Pipeline};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use jiff::civil::Date;

pub use episode::Verdict;
pub use evaluate::{LiveInputs, Observation};
pub use event::{AlertEvent, Dates, Deliver, EvalOptions, Report, message, route};

use episode::{History, Kind, RepeatEvery, Step};

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert query failed: {source}\n  in: {sql}")]
    Query {
        sql: String,
        #[source]
        source: Box<DataFusionError>,
    },
    #[error(transparent)]
    Warehouse(#[from] crmdq_warehouse::WarehouseError),
    #[error(transparent)]
    Catalog(#[from] crmdq_catalog::CatalogError),
    #[error("writing the alerts table: {0}")]
    Encode(String),
    #[error("{0}")]
    Usage(String),
}

impl AlertError {
    pub(crate) fn query(sql: &str, e: DataFusionError) -> Self {
        AlertError::Query {
            sql: sql.to_string(),
            source: Box::new(e),
        }
    }
}

async fn session(
    p: &Pipeline,
    w: &crmdq_warehouse::Warehouse,
    roster: Option<&Path>,
) -> Result<(SessionContext, crmdq_warehouse::Snapshot), AlertError> {
    let snap = w.snapshot().await?;
    let ctx = crmdq_catalog::session();
    let roster = crmdq_catalog::roster::load_for_pipeline(p, roster).await?;
    crmdq_catalog::register_snapshot(&ctx, w, &snap, roster)?;
    crmdq_catalog::create_views(&ctx, crmdq_catalog::all_views()).await?;
    Ok((ctx, snap))
}

/// A recorded event, as the state needs it.
#[derive(Debug, Clone)]
struct Recorded {
    rule: String,
    subject: String,
    scope: String,
    dt: Date,
    state: String,
    at_us: i64,
    episode: String,
}

/// The recorded events in order, and the last sequence number used.
async fn read_recorded(ctx: &SessionContext) -> Result<(Vec<Recorded>, i64), AlertError> {
    let b = evaluate::query(
        ctx,
        "SELECT rule, subject, scope, dt, state, CAST(evaluated_at AS BIGINT) AS at, seq, \
           episode FROM alerts ORDER BY seq, dt",
        vec![],
    )
    .await?;
    let mut out = Vec::new();
    let mut last_seq = 0;
    for batch in &b {
        for i in 0..batch.num_rows() {
            last_seq = last_seq.max(evaluate::int(batch, "seq", i).unwrap_or(0));
            let t = |c: &str| evaluate::text(batch, c, i);
            let (Some(rule), Some(subject), Some(scope), Some(dt), Some(state), Some(at_us)) = (
                t("rule"),
                t("subject"),
                t("scope"),
                t("dt").and_then(|d| d.parse::<Date>().ok()),
                t("state"),
                evaluate::int(batch, "at", i),
            ) else {
                continue;
            };
            // Rows written before episodes were recorded: the episode began on the
            // business date (pipeline rules: at the instant) of its firing event.
            let episode = t("episode").unwrap_or_else(|| {
                if scope == "pipeline" {
                    instant(at_us)
                } else {
                    dt.to_string()
                }
            });
            out.push(Recorded {
                rule,
                subject,
                scope,
                dt,
                state,
                at_us,
                episode,
            });
        }
    }
    Ok((out, last_seq))
}

fn instant(us: i64) -> String {
    jiff::Timestamp::from_microsecond(us)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

type Key = (String, String);

/// The state per (rule, subject) from the recorded events; with `before`, only person
/// and team events of earlier dates count (the state a report of that date starts from).
fn state_of(recorded: &[Recorded], before: Option<Date>) -> BTreeMap<Key, History> {
    let mut st: BTreeMap<Key, History> = BTreeMap::new();
    for r in recorded {
        if before.is_some_and(|b| r.scope != "pipeline" && r.dt >= b) {
            continue;
        }
        st.entry((r.rule.clone(), r.subject.clone()))
            .or_default()
            .apply_recorded(&r.state, r.dt, r.at_us, &r.episode);
    }
    st
}

/// Evaluate the pipeline's alert rules.
pub async fn evaluate(
    p: &Pipeline,
    w: &crmdq_warehouse::Warehouse,
    roster: Option<&Path>,
    opts: &EvalOptions,
) -> Result<Report, AlertError> {
    let (ctx, snap) = session(p, w, roster).await?;
    let (recorded, last_seq) = read_recorded(&ctx).await?;
    let through: Option<Date> = snap.alerts_through.as_deref().and_then(|d| d.parse().ok());
    let today = opts.now.to_zoned(p.time_zone.clone()).date();
    let mut report = Report {
        through: through.map(|d| d.to_string()),
        ..Report::default()
    };
    if let Some(scored) = &opts.scored_entries {
        ctx.register_table(evaluate::SCORED_ENTRIES, scored.table.clone())
            .map_err(|e| AlertError::query(evaluate::SCORED_ENTRIES, e))?;
    }

    let score_rules: Vec<&AlertRule> = p
        .alerts
        .rules
        .iter()
        .filter(|r| r.scope != AlertScope::Pipeline && !opts.pipeline_only)
        .collect();
    let dates = if score_rules.is_empty() {
        Vec::new()
    } else {
        dates_of(&ctx, opts.dates, through).await?
    };
    if dates.is_empty() {
        for r in &score_rules {
            report
                .skipped
                .push((r.name.clone(), "no scored business date yet".into()));
        }
    }
    report.date = Some(dates.last().copied().unwrap_or(today).to_string());
    report.from = (dates.len() > 1).then(|| dates[0].to_string());
    let split = dates.partition_point(|d| through.is_some_and(|t| *d < t));
    let (past, live) = dates.split_at(split);

    // Dates before the latest evaluated one: a report from the state as it was then.
    if !past.is_empty() {
        let mut st = state_of(&recorded, Some(past[0]));
        let judged = judge_dates(&ctx, p, &score_rules, past, &mut st, last_seq).await?;
        report.reported = judged.events;
        report.report_only = past.iter().map(ToString::to_string).collect();
        mark_deliveries(&mut report.reported, opts.deliver, &judged.open_before, &st);
        explain(&ctx, p, &mut report.reported, opts.scored_entries.as_ref()).await?;
    }

    let mut st = state_of(&recorded, None);
    let judged = judge_dates(&ctx, p, &score_rules, live, &mut st, last_seq).await?;
    let mut open_before = judged.open_before;
    let mut events = judged.events;
    report.still_firing = judged.still_firing;
    let seq = last_seq + live.len().max(1) as i64;
    for rule in p
        .alerts
        .rules
        .iter()
        .filter(|r| r.scope == AlertScope::Pipeline)
    {
        let Some(o) = evaluate::observe_pipeline(
            &ctx,
            w,
            &snap,
            rule,
            &p.name,
            opts.now.as_microsecond(),
            &opts.live,
        )
        .await?
        else {
            report.skipped.push((
                rule.name.clone(),
                format!("{} is only known to a running consumer", rule.metric),
            ));
            continue;
        };
        let key = (rule.name.clone(), o.subject.clone());
        let h = st.entry(key.clone()).or_default();
        if let Some(open) = h.open() {
            open_before.insert(key.clone(), open.id.clone());
        }
        let v = episode::judge(&rule.condition, o.value, None);
        let every = RepeatEvery::Micros(p.alerts.repeat_interval.as_micros() as i64);
        match episode::step(
            h,
            &v,
            o.value.is_some(),
            today,
            opts.now.as_microsecond(),
            every,
        ) {
            Step::Event(kind) => {
                let id = h
                    .open()
                    .map_or_else(|| opts.now.to_string(), |e| e.id.clone());
                h.apply(kind, today, opts.now.as_microsecond(), &id);
                let ctx_row = evaluate::DayRow {
                    team_id: None,
                    manager_id: None,
                    entries: o.entries,
                    value: o.value.unwrap_or(f64::NAN),
                };
                let mut e = new_event(rule, &o.subject, today, kind, &id, &ctx_row, v, seq);
                e.value = o.value;
                e.event_id =
                    episode::event_id(&rule.name, &o.subject, &id, kind, &opts.now.to_string());
                events.push(e);
            }
            Step::StillFiring => report.still_firing.push(key),
            Step::Quiet => {}
        }
    }
    for e in &mut events {
        e.evaluated_at = opts.now.to_string();
        e.evaluated_at_us = opts.now.as_microsecond();
    }
    for e in &mut report.reported {
        e.evaluated_at = opts.now.to_string();
        e.evaluated_at_us = opts.now.as_microsecond();
    }
    mark_deliveries(&mut events, opts.deliver, &open_before, &st);
    explain(&ctx, p, &mut events, opts.scored_entries.as_ref()).await?;
    for e in events.iter_mut().chain(report.reported.iter_mut()) {
        e.message = message(e);
        if let Some(link) = event::report_link(p, e) {
            e.message.push_str("\nReport: ");
            e.message.push_str(&link);
        }
        e.receiver = route(p, e).map(|r| r.name.clone());
    }
    if opts.dry_run {
        report.events = events;
        return Ok(report);
    }

    // Deliver: what is pending from earlier evaluations first (oldest first), then this
    // evaluation's events. Delivered before recorded: a crash between the two repeats a
    // notification (receivers de-duplicate on event_id), never loses one.
    let deliverer = delivery::Deliverer::new(p, opts.extra_webhook.as_deref())?;
    let older = delivery::pending(&ctx).await?;
    let (attempts, counts) =
        delivery::retry_pending(&deliverer, &older, opts.now, seq, p.alerts.max_pending).await;
    report.redelivered = counts.delivered;
    report.expired = counts.expired;
    report.pending = counts.pending;
    for e in &mut events {
        if !e.pending {
            e.delivery_error = Some(
                "not sent (--deliver open): a later event of this replay supersedes it".into(),
            );
            continue;
        }
        let o = deliverer.send(e).await;
        e.delivered = o.delivered;
        e.pending = !o.delivered;
        e.receiver = o.receiver;
        e.delivery_error = o.error;
        report.pending += usize::from(e.pending);
    }
    let advanced = live.last().filter(|d| through.is_none_or(|t| **d > t));
    report.committed = store::record(
        w,
        &store::Commit {
            events: &events,
            attempts: &attempts,
            through: advanced.map(ToString::to_string),
            seq,
        },
        &opts.now,
    )
    .await?;
    if let Some(d) = live.last() {
        report.through = Some(through.map_or(*d, |t| t.max(*d)).to_string());
    }
    report.events = events;
    Ok(report)
}

/// The business dates of `sel`, ascending.
async fn dates_of(
    ctx: &SessionContext,
    sel: Dates,
    through: Option<Date>,
) -> Result<Vec<Date>, AlertError> {
    let b = evaluate::query(
        ctx,
        "SELECT MIN(dt) AS lo, MAX(dt) AS hi FROM person_daily",
        vec![],
    )
    .await?;
    let scored = |c: &str| {
        b.first()
            .and_then(|b| evaluate::text(b, c, 0))
            .and_then(|d| d.parse::<Date>().ok())
    };
    let (first, latest) = (scored("lo"), scored("hi"));
    let range = |a: Date, z: Date| -> Vec<Date> {
        a.series(jiff::Span::new().days(1))
            .take_while(|d| *d <= z)
            .collect()
    };
    Ok(match sel {
        Dates::Latest => latest.into_iter().collect(),
        Dates::On(d) => vec![d],
        Dates::Range(a, z) => range(a, z),
        Dates::CatchUp => match (first, latest) {
            (Some(f), Some(l)) => match through {
                Some(t) if t < l => range(t.tomorrow().unwrap_or(l).max(f), l),
                Some(_) => vec![l],
                None => range(f, l),
            },
            _ => Vec::new(),
        },
    })
}

/// What judging person and team rules on a run of dates found.
struct Judged {
    /// In date order (then rule order, then subject).
    events: Vec<AlertEvent>,
    /// (rule, subject) → the episode open before the first date.
    open_before: BTreeMap<Key, String>,
    still_firing: Vec<Key>,
}

/// Judge the person and team rules on `dates` (ascending), moving `st` forward. Events
/// of the i-th date get sequence number `last_seq + 1 + i`.
async fn judge_dates(
    ctx: &SessionContext,
    p: &Pipeline,
    rules: &[&AlertRule],
    dates: &[Date],
    st: &mut BTreeMap<Key, History>,
    last_seq: i64,
) -> Result<Judged, AlertError> {
    let mut out = Judged {
        events: Vec::new(),
        open_before: st
            .iter()
            .filter_map(|(k, h)| h.open().map(|e| (k.clone(), e.id.clone())))
            .collect(),
        still_firing: Vec::new(),
    };
    let (Some(first), Some(last)) = (dates.first(), dates.last()) else {
        return Ok(out);
    };
    let every = RepeatEvery::days_of(p.alerts.repeat_interval);
    let mut by_date: Vec<(Date, usize, AlertEvent)> = Vec::new();
    for (ri, rule) in rules.iter().enumerate() {
        let window = match rule.condition {
            crmdq_config::AlertCondition::Drop { days, .. } => i64::from(days),
            _ => 0,
        };
        // Back far enough for every baseline: the window before the first date, or
        // before the start of an episode still open.
        let earliest_open = st
            .iter()
            .filter(|((r, _), _)| r == &rule.name)
            .filter_map(|(_, h)| h.open().map(|e| e.start))
            .min();
        let from = earliest_open.map_or(*first, |s| s.min(*first)) - jiff::Span::new().days(window);
        let rows = evaluate::observe_series(ctx, rule, from, *last).await?;
        let series: BTreeMap<String, episode::Series> = rows
            .iter()
            .map(|(s, days)| (s.clone(), days.iter().map(|(d, r)| (*d, r.value)).collect()))
            .collect();
        let mut hist: BTreeMap<String, History> = st
            .iter()
            .filter(|((r, _), _)| r == &rule.name)
            .map(|((_, s), h)| (s.clone(), h.clone()))
            .collect();
        let (transitions, still) =
            episode::step_dates(&rule.condition, &series, &mut hist, dates, every);
        for (s, h) in hist {
            st.insert((rule.name.clone(), s), h);
        }
        out.still_firing
            .extend(still.into_iter().map(|s| (rule.name.clone(), s)));
        for t in transitions {
            let row = &rows[&t.subject][&t.dt];
            let i = dates.partition_point(|d| *d < t.dt);
            let mut e = new_event(
                rule,
                &t.subject,
                t.dt,
                t.kind,
                &t.episode,
                row,
                t.verdict,
                last_seq + 1 + i as i64,
            );
            e.event_id = episode::event_id(
                &rule.name,
                &t.subject,
                &t.episode,
                t.kind,
                &t.dt.to_string(),
            );
            by_date.push((t.dt, ri, e));
        }
    }
    by_date.sort_by(|a, b| (a.0, a.1, &a.2.subject).cmp(&(b.0, b.1, &b.2.subject)));
    out.events = by_date.into_iter().map(|(_, _, e)| e).collect();
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn new_event(
    rule: &AlertRule,
    subject: &str,
    dt: Date,
    kind: Kind,
    episode: &str,
    row: &evaluate::DayRow,
    v: Verdict,
    seq: i64,
) -> AlertEvent {
    AlertEvent {
        evaluated_at: String::new(),
        evaluated_at_us: 0,
        seq,
        dt: dt.to_string(),
        rule: rule.name.clone(),
        scope: rule.scope.as_str().to_string(),
        subject: subject.to_string(),
        severity: rule.severity.clone(),
        state: kind.state().to_string(),
        repeat: kind == Kind::Repeat,
        metric: rule.metric.clone(),
        value: Some(row.value),
        baseline: v.baseline,
        threshold: v.threshold,
        entries: row.entries,
        team_id: row.team_id.clone(),
        manager_id: row.manager_id.clone(),
        receiver: None,
        delivered: false,
        delivery_error: None,
        message: String::new(),
        top_rules: None,
        example_records: Vec::new(),
        event_id: String::new(),
        episode: episode.to_string(),
        pending: true,
        basis: match rule.period {
            Some(k) => format!("{}, over the {} containing {dt}", v.basis, k.as_str()),
            None => v.basis,
        },
    }
}

/// Set each event's `pending` (to be delivered) by the delivery mode: see [`Deliver`].
fn mark_deliveries(
    events: &mut [AlertEvent],
    mode: Deliver,
    open_before: &BTreeMap<Key, String>,
    after: &BTreeMap<Key, History>,
) {
    if mode == Deliver::All {
        return;
    }
    let mut last: BTreeMap<Key, usize> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        last.insert((e.rule.clone(), e.subject.clone()), i);
    }
    for (i, e) in events.iter_mut().enumerate() {
        let key = (e.rule.clone(), e.subject.clone());
        e.pending = if e.state == "resolved" {
            open_before.get(&key) == Some(&e.episode)
        } else {
            last.get(&key) == Some(&i)
                && after
                    .get(&key)
                    .and_then(History::open)
                    .is_some_and(|o| o.id == e.episode)
        };
    }
}

/// Fill the rules that cost most and example records of the firing events that will be
/// sent: one pair of queries per (rule, date).
async fn explain(
    ctx: &SessionContext,
    p: &Pipeline,
    events: &mut [AlertEvent],
    scored: Option<&crmdq_score::ScoredEntries>,
) -> Result<(), AlertError> {
    let scored_dt = scored.map(|s| s.dt.as_str());
    let mut firing: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for e in events.iter().filter(|e| e.state == "firing" && e.pending) {
        firing
            .entry((e.rule.clone(), e.dt.clone()))
            .or_default()
            .push(e.subject.clone());
    }
    let mut explained: BTreeMap<(String, String, String), evaluate::Explanation> = BTreeMap::new();
    for ((rule, dt), subjects) in firing {
        let Some(r) = p.alerts.rules.iter().find(|r| r.name == rule) else {
            continue;
        };
        let Ok(d) = dt.parse::<Date>() else { continue };
        for (subject, x) in
            evaluate::explain_many(ctx, r.scope, &r.metric, &subjects, d, scored_dt).await?
        {
            explained.insert((rule.clone(), dt.clone(), subject), x);
        }
    }
    for e in events.iter_mut() {
        if let Some((top, examples)) =
            explained.remove(&(e.rule.clone(), e.dt.clone(), e.subject.clone()))
        {
            e.top_rules = top;
            e.example_records = examples;
        }
    }
    Ok(())
}
