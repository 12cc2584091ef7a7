//! `crmdq run`: consume Kafka into the warehouse until cancelled (or caught up).
//!
//! Positions live in the warehouse commit log. Each commit: close files (durable) → log
//! entry with every partition's next offset → Kafka group offset commit (informational).
//! On revocation all uncommitted buffers are discarded and retained partitions are sought
//! back to their committed position; until a partition's first message at that position
//! arrives again, its messages are dropped (they will be re-read), so nothing is doubled.
//!
//! The module's rooms: this file is the select loop that wires the stages (the Kafka
//! source, the decode stage, the checker, the sink) and its options; [`consume`] is the
//! loop's state and what it does with a message, a commit, a rebalance or a failing
//! warehouse; [`gauges`] turns the loop's state into metrics and readiness;
//! [`dead_letters`] copies dead letters to the optional Kafka topic.

mod consume;
mod dead_letters;
mod gauges;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crmdq_config::Pipeline;
use crmdq_source::kafka::{self, BrokerViewSlot, ConsumerSettings, RebalanceEvent, Tp};
use crmdq_source::stage::{KafkaSource, Received};
use crmdq_telemetry::{CommitCounts, InternalEvent, Metrics, RunHealth, events};
use crmdq_warehouse::{Sink, SinkStats, Warehouse};
use tokio_util::sync::CancellationToken;

use crate::ingest::sink_limits;
use crate::stage::DecodeStage;
use crate::{Clock, PipelineError, checker, writer_id};
use consume::Loop;

/// Options of a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the pipeline's bootstrap servers.
    pub brokers: Option<String>,
    /// Stop once every partition reached the end offset it had when the run started.
    pub until_caught_up: bool,
    /// Metrics and readiness to update (e.g. served by `--http-listen`); a run without
    /// them keeps private ones.
    pub telemetry: Option<Telemetry>,
}

/// What a run reports to `/metrics` and `/readyz`.
#[derive(Debug, Clone)]
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    pub health: Arc<RunHealth>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub messages: u64,
    pub records: u64,
    pub dead_letters: u64,
    pub commits: u64,
    pub rebalances: u64,
    /// Messages dropped because they were already committed or will be re-read after a seek.
    pub skipped: u64,
    /// When the first message arrived (the time before it is the group join).
    pub first_message_at: Option<Instant>,
    /// When the run ended (after its last commit).
    pub ended_at: Option<Instant>,
    /// Time the loop spent on messages, rebalances and commits since the first message;
    /// the rest of that time it waited for the broker. Busy near 100% means crmdq
    /// is the bottleneck; well below, the broker is.
    pub busy: Duration,
}

impl RunSummary {
    /// Busy time as a share of the time from the first message to the end.
    pub fn busy_share(&self) -> Option<f64> {
        let span = self.ended_at?.duration_since(self.first_message_at?);
        (!span.is_zero()).then(|| self.busy.as_secs_f64() / span.as_secs_f64())
    }
}

/// How long an assignment waits for the commit log.
const POSITIONS_TIMEOUT: Duration = Duration::from_secs(30);

/// Read the committed Kafka positions from the log on a separate thread (usable from
/// inside librdkafka's rebalance callback, whatever the runtime).
fn positions_fn(w: Warehouse) -> kafka::PositionFn {
    Arc::new(move || {
        let w = w.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            // Bounded: librdkafka waits in this callback (the fence keeps a start from
            // the earliest offset exactly once; the next commit finds the true position).
            // (The timer is made inside the runtime: made outside, it panics.)
            rt.block_on(async { tokio::time::timeout(POSITIONS_TIMEOUT, w.snapshot()).await })
                .ok()?
                .ok()
                .map(|s| s.kafka)
        })
        .join()
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            tracing::error!(
                "could not read the commit log during assignment: starting from earliest"
            );
            BTreeMap::new()
        })
    })
}

/// Whether the warehouse holds everything below `targets` (the end offsets seen at start),
/// whichever instance of the group committed it: the commit log is shared, so with several
/// instances each stops once the group as a whole has caught up, and a partition still
/// held by a dead member (until its session times out) is waited for, not forgotten.
async fn caught_up(w: &Warehouse, targets: &BTreeMap<Tp, i64>) -> Result<bool, PipelineError> {
    if targets.values().all(|h| *h == 0) {
        return Ok(true);
    }
    let snap = w.snapshot().await?;
    Ok(targets
        .iter()
        .all(|(tp, h)| *h == 0 || snap.kafka.get(tp).is_some_and(|c| c >= h)))
}

/// Evaluate the pipeline-scope alert rules (with the live consumer lag) in the background.
fn spawn_health_alerts(
    tasks: &tokio_util::task::TaskTracker,
    p: &Pipeline,
    w: &Warehouse,
    metrics: &Arc<Metrics>,
    lag: i64,
    now: jiff::Timestamp,
) -> tokio::task::JoinHandle<()> {
    let (p, w, metrics) = (p.clone(), w.clone(), metrics.clone());
    tasks.spawn(async move {
        let opts = crmdq_alerts::EvalOptions {
            live: crmdq_alerts::LiveInputs {
                consumer_lag: Some(lag),
            },
            pipeline_only: true,
            ..crmdq_alerts::EvalOptions::latest(now)
        };
        match crmdq_alerts::evaluate(&p, &w, p.roster_path(), &opts).await {
            Ok(r) => {
                for e in &r.events {
                    tracing::warn!(rule = %e.rule, state = %e.state, "{}", e.message);
                }
                metrics.alerts_pending.set(r.pending as i64);
                metrics.alerts_expired.inc_by(r.expired as u64);
            }
            Err(e) => tracing::warn!(error = %e, "pipeline-health alert evaluation failed"),
        }
    })
}

/// Consume until `cancel` fires (or, with `until_caught_up`, until caught up).
pub async fn run(
    p: &Pipeline,
    w: &Warehouse,
    opts: &RunOptions,
    clock: &dyn Clock,
    cancel: CancellationToken,
) -> Result<RunSummary, PipelineError> {
    let kc = p.source.kafka.as_ref().ok_or_else(|| {
        PipelineError::Other(format!(
            "{}: the pipeline has no source.kafka section",
            p.file.display()
        ))
    })?;
    let checker = checker(p).await?;
    let telemetry = opts.telemetry.clone().unwrap_or_else(|| Telemetry {
        metrics: Arc::new(Metrics::new()),
        health: Arc::new(RunHealth::new(p.serve.ready_max_lag)),
    });
    let view = BrokerViewSlot::default();
    let settings = ConsumerSettings {
        bootstrap_servers: opts
            .brokers
            .clone()
            .unwrap_or_else(|| kc.bootstrap_servers.clone()),
        group_id: kc.group_id.clone(),
        topics: kc.topics.keys().cloned().collect(),
        properties: kc.properties.clone(),
        view: view.clone(),
    };
    let (mut src, mut rebalances) = KafkaSource::open(&settings, positions_fn(w.clone()))?;
    // What an earlier writer committed but did not publish to the Delta tables (it
    // crashed between the two) is published now, while the consumer joins its group.
    if let Err(e) = w.publish_all().await {
        tracing::warn!(error = %e, "publishing the commit log to the Delta tables failed; the next commit retries");
    }
    let targets = if opts.until_caught_up {
        Some(src.end_offsets()?)
    } else {
        None
    };
    let mut lp = Loop {
        warehouse: w,
        checker: &checker,
        sink: Sink::new(w.clone(), sink_limits(&p.warehouse), writer_id(clock)),
        stage: DecodeStage::new(p.time_zone.clone(), p.source.max_message_bytes),
        p,
        clock,
        topics: kc.topics.clone(),
        buffered: false,
        writer: format!("crmdq run (pid {})", std::process::id()),
        summary: RunSummary::default(),
        metrics: telemetry.metrics,
        health: telemetry.health,
        pending: CommitCounts::default(),
        last_stats: SinkStats::default(),
        newest_event_us: None,
        view,
        stalled: None,
        dlq: match &kc.dead_letter_topic {
            Some(t) => Some(kafka::DeadLetterTopic::new(
                &settings.bootstrap_servers,
                &kc.properties,
                t,
            )?),
            None => None,
        },
        pending_dlq: Vec::new(),
        log: w.snapshot().await?,
        stalls: crate::stall::StallWatch::new(p.serve.stall_after),
        targets: targets.clone(),
        reached_one: false,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_commit = Instant::now();
    // Pipeline-health alert rules, evaluated periodically off the consumer loop.
    let health_rules = p
        .alerts
        .rules
        .iter()
        .any(|r| r.scope == crmdq_config::AlertScope::Pipeline);
    let mut last_alerts = Instant::now();
    // The periodic pipeline-health evaluation, at most one at a time; waited for at the end.
    let tasks = tokio_util::task::TaskTracker::new();
    let mut alerts_task: Option<tokio::task::JoinHandle<()>> = None;
    let mut assigned_once = false;
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            Some(ev) = rebalances.recv() => {
                let t = Instant::now();
                assigned_once |= matches!(ev, RebalanceEvent::Assigned(_));
                // Reading the log for retained partitions may fail (the warehouse is
                // unreachable): that pauses consumption like a failed write.
                let r = lp.on_rebalance(&mut src, ev).await;
                lp.check(&mut src, r)?;
                if lp.summary.first_message_at.is_some() {
                    lp.summary.busy += t.elapsed();
                }
            }
            m = src.recv(), if lp.stalled.is_none() => match m {
                Received::Message(msg) => {
                    let t = Instant::now();
                    lp.accept(msg);
                    let r = lp.after_accept(&mut src).await;
                    lp.summary.busy += t.elapsed();
                    lp.check(&mut src, r)?;
                    if std::mem::take(&mut lp.reached_one) {
                        // The tick arm commits and stops once every partition is there
                        // (and no message is waiting: `recv` comes first).
                        tick.reset_immediately();
                    }
                }
                Received::Skipped => lp.summary.skipped += 1,
                Received::Error(e) => events::KafkaError {
                    error: &e,
                    context: "consume error",
                }
                .emit(&lp.metrics),
            },
            _ = tick.tick() => {
                lp.update_gauges(&src);
                if health_rules
                    && last_alerts.elapsed() >= p.alerts.evaluate_every
                    && alerts_task.as_ref().is_none_or(tokio::task::JoinHandle::is_finished)
                {
                    last_alerts = Instant::now();
                    let lag = lp.health.lag.load(Ordering::Relaxed);
                    alerts_task = Some(spawn_health_alerts(&tasks, p, w, &lp.metrics, lag, clock.now()));
                }
                if lp.stalled.is_some() {
                    lp.retry_stalled().await;
                    continue;
                }
                let r = lp.sink.roll_aged().await.map_err(PipelineError::from);
                lp.check(&mut src, r)?;
                // With --until-caught-up, commit as soon as every partition held here has
                // reached its end offset, not at the next commit interval (at most once a
                // second, should more keep arriving while other members catch up).
                let reached = targets.as_ref().is_some_and(|t| {
                    lp.buffered
                        && !src.is_empty()
                        && src.partitions().all(|tp| {
                            t.get(tp)
                                .is_none_or(|h| src.next(tp).is_some_and(|n| n >= *h))
                        })
                        && last_commit.elapsed() >= Duration::from_secs(1)
                });
                if lp.stalled.is_none()
                    && (last_commit.elapsed() >= kc.commit_interval
                        || lp.sink.needs_commit()
                        || reached)
                {
                    let t = Instant::now();
                    let r = lp.commit(&mut src).await;
                    lp.summary.busy += t.elapsed();
                    lp.check(&mut src, r)?;
                    last_commit = Instant::now();
                }
                if let Some(t) = &targets
                    && assigned_once
                    && !lp.buffered
                    && caught_up(w, t).await?
                {
                    break;
                }
            }
        }
    }
    let t = Instant::now();
    lp.commit(&mut src).await?;
    lp.summary.busy += t.elapsed();
    lp.summary.ended_at = Some(Instant::now());
    if let Some(t) = alerts_task {
        let _ = t.await;
    }
    let summary = lp.summary.clone();
    drop(lp);
    src.close();
    Ok(summary)
}
