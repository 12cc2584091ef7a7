//! crmdq-alerts: quality drops, routed to the person who can act.
//!
//! Each evaluation reads the warehouse (score tables for person and team rules, ingestion
//! times for pipeline rules), judges every rule of the pipeline file ([`evaluate`]),
//! compares with the alert state kept in the warehouse's `alerts` table, and turns the
//! transitions into events: a new firing alert, a repeat after `repeat_interval_hours`
//! while it keeps firing, a resolve when it clears. Events are delivered to the route's
//! receiver ([`notify`]) and then appended to `alerts` in one commit-log entry, so a
//! restart knows exactly what was sent and sends nothing twice.

pub mod evaluate;
pub mod notify;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, ListBuilder, RecordBatch, StringArray,
    StringBuilder, TimestampMicrosecondArray,
};
use crmdq_config::{AlertScope, Pipeline, Receiver, ReceiverKind};
use crmdq_schema::alerts_schema;
use crmdq_warehouse::{FileAdd, LogEntry, LogKind, Warehouse, WarehouseError};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use jiff::civil::Date;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

pub use evaluate::{LiveInputs, Observation, Verdict};

#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error("alert query failed: {source}\n  in: {sql}")]
    Query {
        sql: String,
        #[source]
        source: Box<DataFusionError>,
    },
    #[error(transparent)]
    Warehouse(#[from] WarehouseError),
    #[error(transparent)]
    Score(#[from] crmdq_score::ScoreError),
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

/// One alert event: a notification (firing, repeated, or resolved).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertEvent {
    pub evaluated_at: String,
    pub evaluated_at_us: i64,
    /// Evaluation sequence number: events are ordered by it (commit order), so a clock
    /// that goes backwards (a re-run with `--now`) cannot reorder the state.
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
}

/// How to evaluate.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Business date; default the latest scored date.
    pub date: Option<Date>,
    /// Print what would fire; change no state, send nothing.
    pub dry_run: bool,
    /// Also POST every event (JSON) here.
    pub extra_webhook: Option<String>,
    pub now: jiff::Timestamp,
    pub live: LiveInputs,
    /// Only pipeline-scope rules (what `run` evaluates periodically).
    pub pipeline_only: bool,
    /// The entries of one date a scoring run just computed (see
    /// [`crmdq_score::ScoreSummary::entries`]): when that is the evaluated date, example
    /// records are taken from them instead of deduplicating the warehouse's deliveries
    /// again.
    pub scored_entries: Option<crmdq_score::ScoredEntries>,
}

impl EvalOptions {
    /// Every rule, for the latest scored date, notifying and recording.
    pub fn latest(now: jiff::Timestamp) -> EvalOptions {
        EvalOptions {
            date: None,
            dry_run: false,
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
    pub date: Option<String>,
    /// New notifications (sent, or with `dry_run` to be sent).
    pub events: Vec<AlertEvent>,
    /// (rule, subject) firing and already notified within the repeat interval.
    pub still_firing: Vec<(String, String)>,
    /// Rules that could not be evaluated here, with why.
    pub skipped: Vec<(String, String)>,
    /// Log version of the commit that recorded the events.
    pub committed: Option<u64>,
}

/// (state, when the last firing notification was sent, µs) per (rule, subject).
type State = BTreeMap<(String, String), (String, i64)>;

async fn session(
    p: &Pipeline,
    w: &Warehouse,
    roster: Option<&Path>,
) -> Result<(SessionContext, crmdq_warehouse::Snapshot), AlertError> {
    let snap = w.snapshot().await?;
    let ctx = crmdq_score::session();
    let roster = crmdq_score::load_pipeline_roster(p, roster).await?;
    crmdq_score::register_all(&ctx, w, &snap, roster).await?;
    crmdq_score::create_entry_views(&ctx).await?;
    Ok((ctx, snap))
}

/// The alert state, and the last sequence number used.
async fn read_state(ctx: &SessionContext) -> Result<(State, i64), AlertError> {
    let b = evaluate::query(
        ctx,
        "SELECT rule, subject, state, CAST(evaluated_at AS BIGINT) AS at, seq FROM alerts ORDER BY seq",
        vec![],
    )
    .await?;
    let mut st = State::new();
    let mut last_seq = 0;
    for batch in &b {
        for i in 0..batch.num_rows() {
            last_seq = last_seq.max(evaluate::int(batch, "seq", i).unwrap_or(0));
            let (Some(rule), Some(subject), Some(state), Some(at)) = (
                evaluate::text(batch, "rule", i),
                evaluate::text(batch, "subject", i),
                evaluate::text(batch, "state", i),
                evaluate::int(batch, "at", i),
            ) else {
                continue;
            };
            let key = (rule, subject);
            let last_fire = if state == "firing" {
                at
            } else {
                st.get(&key).map_or(at, |(_, f)| *f)
            };
            st.insert(key, (state, last_fire));
        }
    }
    Ok((st, last_seq))
}

fn fmt(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |x| format!("{x:.3}"))
}

fn message(e: &AlertEvent, basis: &str) -> String {
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

/// Evaluate the pipeline's alert rules.
pub async fn evaluate(
    p: &Pipeline,
    w: &Warehouse,
    roster: Option<&Path>,
    opts: &EvalOptions,
) -> Result<Report, AlertError> {
    let (ctx, snap) = session(p, w, roster).await?;
    let mut report = Report::default();
    let latest = evaluate::query(&ctx, "SELECT MAX(dt) AS d FROM person_daily", vec![])
        .await?
        .first()
        .and_then(|b| evaluate::text(b, "d", 0));
    let date: Option<Date> = match opts.date {
        Some(d) => Some(d),
        None => latest.as_deref().and_then(|d| d.parse().ok()),
    };
    let today = opts.now.to_zoned(p.time_zone.clone()).date();
    let dt = date.unwrap_or(today);
    report.date = Some(dt.to_string());
    if let Some(scored) = opts
        .scored_entries
        .as_ref()
        .filter(|s| s.dt == dt.to_string())
    {
        ctx.register_table(evaluate::SCORED_ENTRIES, scored.table.clone())
            .map_err(|e| AlertError::query(evaluate::SCORED_ENTRIES, e))?;
    }
    let (state, last_seq) = read_state(&ctx).await?;
    let now_us = opts.now.as_microsecond();
    let evaluated_at = opts.now.to_string();
    let repeat_us = p.alerts.repeat_interval.as_micros() as i64;
    // Each event's basis (for its message, written once its explanation is known).
    let mut bases: Vec<String> = Vec::new();

    for rule in &p.alerts.rules {
        if opts.pipeline_only && rule.scope != AlertScope::Pipeline {
            continue;
        }
        let observations = if rule.scope == AlertScope::Pipeline {
            let Some(o) =
                evaluate::observe_pipeline(&ctx, w, &snap, rule, &p.name, now_us, &opts.live)
                    .await?
            else {
                report.skipped.push((
                    rule.name.clone(),
                    format!("{} is only known to a running consumer", rule.metric),
                ));
                continue;
            };
            vec![o]
        } else {
            let Some(d) = date else {
                report
                    .skipped
                    .push((rule.name.clone(), "no scored business date yet".into()));
                continue;
            };
            evaluate::observe_scores(&ctx, rule, d).await?
        };
        for o in observations {
            let v = o.judge(rule);
            let key = (rule.name.clone(), o.subject.clone());
            let prior = state.get(&key);
            let (fire, repeat) = match (v.firing, prior) {
                (true, None) => (Some("firing"), false),
                (true, Some((s, _))) if s != "firing" => (Some("firing"), false),
                (true, Some((_, last))) if now_us - last >= repeat_us => (Some("firing"), true),
                (true, Some(_)) => {
                    report.still_firing.push(key.clone());
                    (None, false)
                }
                (false, Some((s, _))) if s == "firing" && o.value.is_some() => {
                    (Some("resolved"), false)
                }
                (false, _) => (None, false),
            };
            let Some(st) = fire else { continue };
            let e = AlertEvent {
                evaluated_at: evaluated_at.clone(),
                evaluated_at_us: now_us,
                seq: last_seq + 1,
                dt: dt.to_string(),
                rule: rule.name.clone(),
                scope: rule.scope.as_str().to_string(),
                subject: o.subject.clone(),
                severity: rule.severity.clone(),
                state: st.to_string(),
                repeat,
                metric: rule.metric.clone(),
                value: o.value,
                baseline: v.baseline,
                threshold: v.threshold,
                entries: o.entries,
                team_id: o.team_id.clone(),
                manager_id: o.manager_id.clone(),
                receiver: None,
                delivered: false,
                delivery_error: None,
                message: String::new(),
                top_rules: None,
                example_records: Vec::new(),
            };
            report.events.push(e);
            bases.push(v.basis);
        }
    }
    // What the firing subjects' rules and records were: one batch per rule (scope and
    // metric), not per subject.
    let mut firing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in &report.events {
        if e.state == "firing" {
            firing
                .entry(e.rule.as_str())
                .or_default()
                .push(e.subject.clone());
        }
    }
    let mut explained: BTreeMap<(String, String), evaluate::Explanation> = BTreeMap::new();
    for (rule, subjects) in firing {
        let r = p
            .alerts
            .rules
            .iter()
            .find(|r| r.name == rule)
            .expect("events come from the pipeline's rules");
        for (subject, x) in evaluate::explain_many(&ctx, r.scope, &r.metric, &subjects, dt).await? {
            explained.insert((rule.to_string(), subject), x);
        }
    }
    for (e, basis) in report.events.iter_mut().zip(&bases) {
        if e.state == "firing"
            && let Some((top, examples)) = explained.remove(&(e.rule.clone(), e.subject.clone()))
        {
            e.top_rules = top;
            e.example_records = examples;
        }
        e.message = message(e, basis);
        e.receiver = route(p, e).map(|r| r.name.clone());
    }
    if opts.dry_run || report.events.is_empty() {
        return Ok(report);
    }
    let client = reqwest::Client::builder()
        .build()
        .map_err(|e| AlertError::Usage(format!("HTTP client: {e}")))?;
    let extra = opts.extra_webhook.as_ref().map(|url| Receiver {
        name: "--webhook".into(),
        kind: ReceiverKind::Webhook,
        url: url.clone(),
        secret: None,
        timeout: std::time::Duration::from_secs(10),
        retries: 3,
    });
    for e in &mut report.events {
        if let Some(r) = route(p, e) {
            match notify::deliver(&client, r, e).await {
                Ok(()) => e.delivered = true,
                Err(err) => e.delivery_error = Some(err),
            }
        } else {
            e.delivery_error = Some("no receiver routed".into());
            tracing::warn!(rule = %e.rule, subject = %e.subject, "alert has no receiver (alerts.routes)");
        }
        if let Some(x) = &extra
            && notify::deliver(&client, x, e).await.is_ok()
            && e.receiver.is_none()
        {
            e.receiver = Some(x.name.clone());
            e.delivered = true;
            e.delivery_error = None;
        }
    }
    report.committed = Some(record(w, &report.events, &opts.now.to_string()).await?);
    Ok(report)
}

fn opt_str(v: impl Iterator<Item = Option<String>>) -> ArrayRef {
    Arc::new(v.collect::<StringArray>())
}

/// The events as a batch of the `alerts` table.
pub fn events_batch(events: &[AlertEvent]) -> Result<RecordBatch, AlertError> {
    let str_col = |f: &dyn Fn(&AlertEvent) -> String| -> ArrayRef {
        Arc::new(events.iter().map(|e| Some(f(e))).collect::<StringArray>())
    };
    let mut examples = ListBuilder::new(StringBuilder::new());
    for e in events {
        for x in &e.example_records {
            examples.values().append_value(x);
        }
        examples.append(true);
    }
    let schema = alerts_schema();
    let ts_field = schema.field(0).data_type().clone();
    let ts: ArrayRef = Arc::new(
        TimestampMicrosecondArray::from(
            events.iter().map(|e| e.evaluated_at_us).collect::<Vec<_>>(),
        )
        .with_timezone_opt(match &ts_field {
            arrow::datatypes::DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        }),
    );
    let examples: ArrayRef = Arc::new(examples.finish());
    let examples = arrow::compute::cast(&examples, schema.field(19).data_type())
        .map_err(|e| AlertError::Encode(e.to_string()))?;
    let cols: Vec<ArrayRef> = vec![
        ts,
        Arc::new(events.iter().map(|e| e.seq).collect::<Int64Array>()),
        str_col(&|e| e.rule.clone()),
        str_col(&|e| e.scope.clone()),
        str_col(&|e| e.subject.clone()),
        str_col(&|e| e.severity.clone()),
        str_col(&|e| e.state.clone()),
        str_col(&|e| e.metric.clone()),
        Arc::new(events.iter().map(|e| e.value).collect::<Float64Array>()),
        Arc::new(events.iter().map(|e| e.baseline).collect::<Float64Array>()),
        Arc::new(events.iter().map(|e| e.threshold).collect::<Float64Array>()),
        Arc::new(events.iter().map(|e| e.entries).collect::<Int64Array>()),
        opt_str(events.iter().map(|e| e.team_id.clone())),
        opt_str(events.iter().map(|e| e.manager_id.clone())),
        opt_str(events.iter().map(|e| e.receiver.clone())),
        Arc::new(
            events
                .iter()
                .map(|e| Some(e.delivered))
                .collect::<BooleanArray>(),
        ),
        opt_str(events.iter().map(|e| e.delivery_error.clone())),
        str_col(&|e| e.message.clone()),
        opt_str(events.iter().map(|e| e.top_rules.clone())),
        examples,
    ];
    RecordBatch::try_new(schema, cols).map_err(|e| AlertError::Encode(e.to_string()))
}

/// Append the events to the `alerts` table: one file per business date, then one
/// commit-log entry naming them.
async fn record(
    w: &Warehouse,
    events: &[AlertEvent],
    committed_at: &str,
) -> Result<u64, AlertError> {
    let mut by_dt: BTreeMap<&str, Vec<AlertEvent>> = BTreeMap::new();
    for e in events {
        by_dt.entry(e.dt.as_str()).or_default().push(e.clone());
    }
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        .build();
    let mut files = Vec::new();
    for (dt, evs) in by_dt {
        let batch = events_batch(&evs)?;
        let mut wr = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props.clone()))
            .map_err(|e| AlertError::Encode(e.to_string()))?;
        wr.write(&batch)
            .map_err(|e| AlertError::Encode(e.to_string()))?;
        let bytes = wr
            .into_inner()
            .map_err(|e| AlertError::Encode(e.to_string()))?;
        let path = format!(
            "{}/part-{}-{}.parquet",
            crmdq_warehouse::partition_dir("alerts", dt),
            evs[0].evaluated_at_us,
            std::process::id()
        );
        let size = bytes.len() as u64;
        w.put_durable(&path, bytes::Bytes::from(bytes)).await?;
        files.push(FileAdd {
            table: "alerts".into(),
            dt: dt.to_string(),
            path,
            rows: evs.len() as u64,
            bytes: size,
            ingested_us: None,
        });
    }
    let v = w
        .commit(LogEntry {
            version: 0,
            kind: LogKind::Alerts,
            committed_at: committed_at.to_string(),
            writer: format!("crmdq alerts (pid {})", std::process::id()),
            files,
            sources: Vec::new(),
            replaces_tables: Vec::new(),
        })
        .await?;
    Ok(v)
}
