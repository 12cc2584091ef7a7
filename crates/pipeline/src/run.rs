//! `crmdq run`: consume Kafka into the warehouse until cancelled (or caught up).
//!
//! Positions live in the warehouse commit log. Each commit: close files (durable) → log
//! entry with every partition's next offset → Kafka group offset commit (informational).
//! On revocation all uncommitted buffers are discarded and retained partitions are sought
//! back to their committed position; until a partition's first message at that position
//! arrives again, its messages are dropped (they will be re-read), so nothing is doubled.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crmdq_check::Checker;
use crmdq_config::Pipeline;
use crmdq_decode::{Decoded, SourcePos};
use crmdq_schema::RecordType;
use crmdq_telemetry::metrics::{KindLabel, PartitionLabel, ReasonLabel, TopicLabel};
use crmdq_telemetry::{CommitCounts, Metrics, RunHealth};

use crate::stall::StallChange;
use crmdq_source::kafka::{
    self, BrokerViewSlot, ConsumerSettings, CrmdqConsumer, RebalanceEvent, Tp,
};
use crmdq_source::tracker::{Jump, PartitionTracker, Verdict};
use crmdq_warehouse::{Sink, SinkStats, SourcePosition, Warehouse};
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use tokio_util::sync::CancellationToken;

use crate::ingest::{BATCH_ROWS, sink_limits};
use crate::process::process;
use crate::stage::DecodeStage;
use crate::{Clock, PipelineError, writer_id};

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

struct Loop<'a> {
    consumer: &'a CrmdqConsumer,
    warehouse: &'a Warehouse,
    checker: &'a Checker,
    sink: Sink,
    /// Messages → decoded batches, decoding off the loop.
    stage: DecodeStage,
    p: &'a Pipeline,
    clock: &'a dyn Clock,
    topics: BTreeMap<String, Option<RecordType>>,
    /// Where each held partition stands (next offset, committed offset, seeks).
    parts: PartitionTracker,
    buffered: bool,
    writer: String,
    summary: RunSummary,
    metrics: Arc<Metrics>,
    health: Arc<RunHealth>,
    /// Counts of what is buffered, added to the metrics once committed.
    pending: CommitCounts,
    /// Sink counters at the last metrics update.
    last_stats: SinkStats,
    /// Newest committed event time (µs).
    newest_event_us: Option<i64>,
    view: BrokerViewSlot,
    /// After a warehouse failure: when to probe again, and the current backoff.
    stalled: Option<(Instant, Duration)>,
    /// The optional dead-letter topic, and the dead letters buffered for it.
    dlq: Option<kafka::DeadLetterTopic>,
    pending_dlq: Vec<arrow::array::RecordBatch>,
    /// The commit log as last seen (refreshed by each fenced commit).
    log: crmdq_warehouse::Snapshot,
    /// Partitions with lag and no progress.
    stalls: crate::stall::StallWatch,
    /// With `--until-caught-up`: each partition's end offset at start.
    targets: Option<BTreeMap<Tp, i64>>,
    /// A message just took its partition to its target: look at the end now rather
    /// than at the next tick.
    reached_one: bool,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Loop<'_> {
    async fn on_message(
        &mut self,
        m: &rdkafka::message::BorrowedMessage<'_>,
    ) -> Result<(), PipelineError> {
        let tp = (m.topic().to_string(), m.partition());
        let offset = m.offset();
        // The broker's watermarks are asked only for a message that does not follow.
        let consumer = self.consumer;
        let verdict = self.parts.on_message(&tp, offset, |tp| {
            consumer
                .fetch_watermarks(&tp.0, tp.1, Duration::from_secs(5))
                .map_err(|e| tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "watermarks unavailable"))
                .ok()
        });
        match verdict {
            Verdict::Skip => {
                self.summary.skipped += 1;
                return Ok(());
            }
            Verdict::Accept(Some(jump)) => self.after_jump(&tp, jump),
            Verdict::Accept(None) => {}
        }
        if self.targets.as_ref().and_then(|t| t.get(&tp)) == Some(&(offset + 1)) {
            self.reached_one = true;
        }
        self.metrics
            .consumed
            .get_or_create(&TopicLabel {
                topic: m.topic().to_string(),
            })
            .inc();
        let implied = self.topics.get(m.topic()).copied().flatten();
        let pos = SourcePos::Kafka {
            topic: Arc::from(m.topic()),
            partition: m.partition(),
            offset,
        };
        self.stage.push(m.payload(), pos, implied, self.clock.now());

        self.buffered = true;
        self.summary.messages += 1;
        self.summary
            .first_message_at
            .get_or_insert_with(Instant::now);
        if self.stage.queued() >= BATCH_ROWS {
            // This batch decodes on its own thread while the one before is checked.
            if let Some(d) = self.stage.dispatch().await? {
                self.process_decoded(d).await?;
            }
            // Buffers full: commit before consuming more (bounded memory).
            if self.sink.needs_commit() {
                self.commit().await?;
            }
        }
        Ok(())
    }

    /// Decode, check and hand to the sink everything consumed so far.
    async fn flush_decoder(&mut self) -> Result<(), PipelineError> {
        for d in self.stage.drain().await? {
            self.process_decoded(d).await?;
        }
        Ok(())
    }

    async fn process_decoded(&mut self, d: Decoded) -> Result<(), PipelineError> {
        let c = process(d, self.checker, &mut self.sink, &self.p.time_zone).await?;
        self.summary.records += c.records;
        self.summary.dead_letters += c.dead_letters;
        self.pending.merge(c.detail);
        if self.dlq.is_some()
            && let Some(dl) = c.dead_letter_batch
        {
            self.pending_dlq.push(dl);
        }
        Ok(())
    }

    /// Write everything buffered, log it with the partitions' next offsets, then commit
    /// the offsets to the group.
    async fn commit(&mut self) -> Result<(), PipelineError> {
        self.flush_decoder().await?;
        let advanced: BTreeMap<Tp, i64> = self.parts.advanced();
        if advanced.is_empty() && !self.buffered {
            return Ok(());
        }
        let sources = advanced
            .iter()
            .map(|(tp, next)| SourcePosition::Kafka {
                topic: tp.0.clone(),
                partition: tp.1,
                next_offset: *next,
                // Behind the last committed position only after an offset reset.
                reset: *next < self.parts.committed(tp),
            })
            .collect();
        self.copy_dead_letters().await;
        let started = Instant::now();
        // Fenced: each partition must still be where this consumer started reading it.
        let expect: BTreeMap<Tp, i64> = advanced
            .keys()
            .map(|tp| (tp.clone(), self.parts.committed(tp)))
            .collect();
        match self
            .sink
            .commit_fenced(
                sources,
                self.clock.now().to_string(),
                self.writer.clone(),
                &mut self.log,
                &expect,
            )
            .await
        {
            Ok(version) => {
                let rows: u64 = self.pending.records.values().sum();
                let dead: u64 = self.pending.dead_letters.values().sum();
                tracing::info!(
                    version,
                    records = rows,
                    dead_letters = dead,
                    partitions = advanced.len(),
                    seconds = started.elapsed().as_secs_f64(),
                    "committed"
                );
            }
            Err(crmdq_warehouse::WarehouseError::Fenced {
                topic,
                partition,
                expected,
                found,
            }) => {
                self.fenced(&(topic, partition), expected, found);
                return Ok(());
            }
            Err(e) => {
                self.metrics.warehouse_errors.inc();
                self.health.set_warehouse(Err(e.to_string()));
                return Err(e.into());
            }
        }
        self.health.set_warehouse(Ok(()));
        self.summary.commits += 1;
        self.metrics.commits.inc();
        self.metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        let counts = std::mem::take(&mut self.pending);
        self.newest_event_us = self.newest_event_us.max(counts.max_event_time_us);
        self.metrics.observe_commit(&counts);
        self.sync_sink_metrics();
        self.parts.committed_to(&advanced);
        self.buffered = false;
        if let Err(e) = kafka::commit_offsets(self.consumer, &advanced) {
            // The warehouse is the source of truth; the group offset is for lag tools.
            tracing::warn!(error = %e, "kafka offset commit failed (warehouse commit succeeded)");
        }
        Ok(())
    }

    /// `tp` moved from the expected offset to another ([`Jump`], read from positions
    /// and the broker's watermarks): a reset after "offset out of range" is said loudly
    /// and counted; offsets jumped over are gone from the broker (retention); a move
    /// backwards means the topic was re-created or truncated, and what follows is read
    /// as new messages. A gap with nothing lost (transaction markers) is only traced.
    fn after_jump(&self, tp: &Tp, jump: Jump) {
        let label = PartitionLabel {
            topic: tp.0.clone(),
            partition: tp.1.to_string(),
        };
        if jump.is_reset() {
            self.metrics.offset_resets.get_or_create(&label).inc();
        }
        match jump {
            Jump::Lost {
                expected,
                resumed_at,
            } => {
                let lost = jump.lost();
                self.metrics
                    .offsets_skipped
                    .get_or_create(&label)
                    .inc_by(lost);
                tracing::error!(
                    topic = %tp.0, partition = tp.1, expected, resumed_at, skipped = lost,
                    "offset reset: {lost} messages were removed from the broker before crmdq read them; they are not in the warehouse"
                );
            }
            Jump::Rewound {
                expected,
                resumed_at,
            } => tracing::error!(
                topic = %tp.0, partition = tp.1, expected, resumed_at,
                "offset reset moved backwards: the topic was re-created or truncated; reading from offset {resumed_at} as new messages"
            ),
            Jump::Gap {
                expected,
                resumed_at,
            } => tracing::debug!(
                topic = %tp.0, partition = tp.1, expected, resumed_at,
                "offsets without messages skipped (transaction markers or compaction)"
            ),
        }
    }

    /// Copy the buffered dead letters to the dead-letter topic (before the warehouse
    /// commit, so a crash in between re-reads and re-sends them: at least once). A copy
    /// that fails is logged and counted; the warehouse's `dead_letters` stays complete.
    async fn copy_dead_letters(&mut self) {
        let batches = std::mem::take(&mut self.pending_dlq);
        let Some(dlq) = &self.dlq else {
            return;
        };
        let copies: Vec<kafka::DeadLetterCopy> =
            batches.iter().flat_map(dead_letter_copies).collect();
        if copies.is_empty() {
            return;
        }
        match dlq.send(&copies).await {
            Ok(n) => {
                self.metrics.dead_letter_topic_produced.inc_by(n);
            }
            Err((failed, e)) => {
                self.metrics
                    .dead_letter_topic_produced
                    .inc_by(copies.len() as u64 - failed);
                self.metrics.dead_letter_topic_errors.inc_by(failed);
                tracing::error!(
                    topic = dlq.topic(), failed, error = %e,
                    "dead letters not copied to the dead-letter topic (they are in the warehouse's dead_letters table)"
                );
            }
        }
    }

    /// Add the sink's counters since the last call to the metrics.
    fn sync_sink_metrics(&mut self) {
        let now = self.sink.stats().clone();
        for (reason, n) in &now.files_rolled {
            let before = self
                .last_stats
                .files_rolled
                .get(reason)
                .copied()
                .unwrap_or(0);
            if *n > before {
                self.metrics
                    .files_rolled
                    .get_or_create(&ReasonLabel {
                        reason: reason.as_str().to_string(),
                    })
                    .inc_by(n - before);
            }
        }
        self.metrics
            .rows_written
            .inc_by(now.committed_rows - self.last_stats.committed_rows);
        self.metrics
            .bytes_written
            .inc_by(now.committed_bytes - self.last_stats.committed_bytes);
        self.metrics
            .open_writers
            .set(self.sink.open_writers() as i64);
        self.last_stats = now;
    }

    /// Lag, broker reachability and freshness, from the latest broker statistics.
    fn update_gauges(&mut self) {
        let view = self.view.lock().map(|v| v.clone()).unwrap_or_default();
        let mut total = 0;
        let now = Instant::now();
        let held: Vec<(Tp, i64)> = self
            .parts
            .partitions()
            .map(|tp| (tp.clone(), self.parts.next(tp).unwrap_or(0)))
            .collect();
        for (tp, next) in &held {
            let next = *next;
            let Some(high) = view.high_watermarks.get(tp) else {
                continue;
            };
            let label = PartitionLabel {
                topic: tp.0.clone(),
                partition: tp.1.to_string(),
            };
            let lag = (high - next).max(0);
            total += lag;
            match self.stalls.observe(tp, next, lag, now) {
                Some(StallChange::Stalled {
                    next,
                    lag,
                    stuck_for,
                    ..
                }) => {
                    self.metrics.partition_stalls.inc();
                    self.metrics.partition_stalled.get_or_create(&label).set(1);
                    tracing::error!(
                        topic = %tp.0, partition = tp.1, next_offset = next, lag,
                        stuck_seconds = stuck_for.as_secs_f64(),
                        "partition stalled: {lag} messages waiting and no progress at offset {next} for {:.0} s (a message the broker cannot hand out, a fetch error that does not clear, or an unwritable warehouse); /readyz fails until it moves",
                        stuck_for.as_secs_f64()
                    );
                }
                Some(StallChange::Resumed { stuck_for, .. }) => {
                    self.metrics.partition_stalled.get_or_create(&label).set(0);
                    tracing::warn!(
                        topic = %tp.0, partition = tp.1,
                        stuck_seconds = stuck_for.as_secs_f64(),
                        "partition moving again after a stall"
                    );
                }
                None => {}
            }
            self.metrics.consumer_lag.get_or_create(&label).set(lag);
            let committed = self.parts.committed(tp);
            self.metrics
                .committed_lag
                .get_or_create(&label)
                .set((high - committed).max(0));
        }
        self.health.lag.store(total, Ordering::Relaxed);
        if let Ok(mut s) = self.health.stalled.lock() {
            *s = self.stalls.stalled();
        }
        self.health
            .brokers_up
            .store(view.brokers_up, Ordering::Relaxed);
        self.health
            .stats_seen
            .store(view.reports > 0, Ordering::Relaxed);
        self.health
            .assigned
            .store(self.parts.len(), Ordering::Relaxed);
        self.metrics
            .open_writers
            .set(self.sink.open_writers() as i64);
        if let Some(us) = self.newest_event_us {
            let now = self.clock.now().as_microsecond();
            self.metrics.freshness.set((now - us) as f64 / 1e6);
        }
    }

    /// Seek `tp` back to `next` and accept only exactly `next` until it arrives.
    fn seek_back(&mut self, tp: &Tp, next: i64) {
        self.parts.seek_back(tp, next);
        let off = if next == 0 {
            rdkafka::Offset::Beginning
        } else {
            rdkafka::Offset::Offset(next)
        };
        if let Err(e) = self.consumer.seek(&tp.0, tp.1, off, Duration::from_secs(5)) {
            tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "seek failed");
        }
    }

    /// Forget everything consumed but not committed (it will be read again).
    fn drop_uncommitted(&mut self) {
        self.sink.discard();
        self.stage.discard();
        self.buffered = false;
        self.pending = CommitCounts::default();
        self.pending_dlq.clear();
    }

    /// Another consumer committed a partition this one was also reading (both owned it
    /// for a moment during a rebalance): drop everything uncommitted and go back to the
    /// log's positions for every partition. Nothing is doubled; what was dropped is
    /// re-read (or already committed by the other consumer).
    fn fenced(&mut self, tp: &Tp, expected: i64, found: i64) {
        tracing::warn!(
            topic = %tp.0, partition = tp.1, expected, found,
            "another consumer committed this partition meanwhile (split ownership during a rebalance): discarding uncommitted data and re-reading from the commit log"
        );
        self.metrics
            .rebalances
            .get_or_create(&KindLabel {
                kind: "fenced".to_string(),
            })
            .inc();
        self.drop_uncommitted();
        let parts: Vec<(Tp, i64)> = self
            .parts
            .partitions()
            .map(|tp| (tp.clone(), self.log.kafka.get(tp).copied().unwrap_or(0)))
            .collect();
        for (tp, next) in parts {
            self.seek_back(&tp, next);
        }
    }

    /// A warehouse write failed: drop everything uncommitted (it will be re-read from
    /// Kafka), seek every partition back to its committed position, and stop consuming
    /// until the warehouse takes writes again. Nothing is committed past what is durable.
    fn stall(&mut self, e: &crmdq_warehouse::WarehouseError) {
        let backoff = self
            .stalled
            .map_or(Duration::from_secs(1), |(_, b)| (b * 2).min(MAX_BACKOFF));
        self.metrics.warehouse_errors.inc();
        self.health.set_warehouse(Err(e.to_string()));
        tracing::error!(
            error = %e,
            retry_in_seconds = backoff.as_secs_f64(),
            "warehouse write failed: consumption paused, uncommitted data discarded (it will be re-read)"
        );
        self.drop_uncommitted();
        let parts: Vec<(Tp, i64)> = self
            .parts
            .partitions()
            .map(|tp| (tp.clone(), self.parts.committed(tp)))
            .collect();
        for (tp, next) in parts {
            self.seek_back(&tp, next);
        }
        self.stalled = Some((Instant::now() + backoff, backoff));
    }

    /// While stalled: probe the warehouse when the backoff has passed; resume if it takes
    /// writes.
    async fn retry_stalled(&mut self) {
        let Some((at, backoff)) = self.stalled else {
            return;
        };
        if Instant::now() < at {
            return;
        }
        match self.warehouse.probe_writable().await {
            Ok(()) => {
                tracing::info!("warehouse writable again: consumption resumes");
                self.health.set_warehouse(Ok(()));
                self.stalled = None;
            }
            Err(e) => {
                let backoff = (backoff * 2).min(MAX_BACKOFF);
                tracing::error!(error = %e, retry_in_seconds = backoff.as_secs_f64(), "warehouse still not writable");
                self.stalled = Some((Instant::now() + backoff, backoff));
            }
        }
    }

    /// Route a step's result: retryable warehouse failures stall, others end the run.
    fn check(&mut self, r: Result<(), PipelineError>) -> Result<(), PipelineError> {
        match r {
            Err(PipelineError::Warehouse(e)) if e.is_retryable() => {
                self.stall(&e);
                Ok(())
            }
            other => other,
        }
    }

    fn forget_partition(&mut self, tp: &Tp) {
        let label = PartitionLabel {
            topic: tp.0.clone(),
            partition: tp.1.to_string(),
        };
        self.metrics.consumer_lag.remove(&label);
        self.metrics.committed_lag.remove(&label);
        self.metrics.partition_stalled.remove(&label);
        self.stalls.forget(tp);
    }

    async fn on_rebalance(&mut self, ev: RebalanceEvent) -> Result<(), PipelineError> {
        self.summary.rebalances += 1;
        let kind = match &ev {
            RebalanceEvent::Assigned(_) => "assign",
            RebalanceEvent::Revoked(_) => "revoke",
            RebalanceEvent::Error(_) => "error",
        };
        self.metrics
            .rebalances
            .get_or_create(&KindLabel {
                kind: kind.to_string(),
            })
            .inc();
        match ev {
            RebalanceEvent::Assigned(parts) => {
                for (tp, start) in parts {
                    tracing::info!(topic = %tp.0, partition = tp.1, start = ?start, "partition assigned");
                    self.parts.assign(tp, start.unwrap_or(0));
                }
            }
            RebalanceEvent::Revoked(parts) => {
                tracing::info!(
                    partitions = parts.len(),
                    "partitions revoked: discarding uncommitted buffers"
                );
                self.drop_uncommitted();
                for tp in &parts {
                    self.parts.revoke(tp);
                    self.forget_partition(tp);
                }
                // Retained partitions go back to their committed position.
                let snap = self.warehouse.snapshot().await?;
                let retained: Vec<Tp> = self.parts.partitions().cloned().collect();
                for tp in retained {
                    let next = snap.kafka.get(&tp).copied().unwrap_or(0);
                    self.seek_back(&tp, next);
                }
            }
            RebalanceEvent::Error(e) => tracing::warn!(error = %e, "rebalance problem"),
        }
        self.health
            .assigned
            .store(self.parts.len(), Ordering::Relaxed);
        Ok(())
    }
}

/// The dead-letter topic copies of a written dead-letter batch: raw bytes, with the reason,
/// detail and source position as headers (`crmdq.reason`, `crmdq.detail`,
/// `crmdq.src_topic`, `crmdq.src_partition`, `crmdq.src_offset`).
fn dead_letter_copies(b: &arrow::array::RecordBatch) -> Vec<kafka::DeadLetterCopy> {
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Int32Type, Int64Type};
    let raw = b
        .column_by_name("raw")
        .map(|c| c.as_binary::<i32>().clone());
    let text = |name: &str| b.column_by_name(name).map(|c| c.as_string::<i32>().clone());
    let (reason, detail, topic) = (text("reason"), text("detail"), text("src_topic"));
    let partition = b
        .column_by_name("src_partition")
        .map(|c| c.as_primitive::<Int32Type>().clone());
    let offset = b
        .column_by_name("src_offset")
        .map(|c| c.as_primitive::<Int64Type>().clone());
    (0..b.num_rows())
        .map(|i| {
            let mut headers = Vec::new();
            let mut put = |k: &'static str, v: Option<String>| {
                if let Some(v) = v {
                    headers.push((k, v));
                }
            };
            let s = |a: &Option<arrow::array::StringArray>| {
                a.as_ref()
                    .filter(|a| a.is_valid(i))
                    .map(|a| a.value(i).to_string())
            };
            put("crmdq.reason", s(&reason));
            put("crmdq.detail", s(&detail));
            put("crmdq.src_topic", s(&topic));
            put(
                "crmdq.src_partition",
                partition
                    .as_ref()
                    .filter(|a| a.is_valid(i))
                    .map(|a| a.value(i).to_string()),
            );
            put(
                "crmdq.src_offset",
                offset
                    .as_ref()
                    .filter(|a| a.is_valid(i))
                    .map(|a| a.value(i).to_string()),
            );
            kafka::DeadLetterCopy {
                payload: raw.as_ref().map_or_else(Vec::new, |r| r.value(i).to_vec()),
                headers,
            }
        })
        .collect()
}

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
            rt.block_on(w.snapshot()).ok().map(|s| s.kafka)
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

/// High watermarks of every partition of `topics` at this moment.
fn end_offsets(c: &CrmdqConsumer, topics: &[String]) -> Result<BTreeMap<Tp, i64>, PipelineError> {
    let mut out = BTreeMap::new();
    for t in topics {
        let md = c
            .fetch_metadata(Some(t), Duration::from_secs(10))
            .map_err(|source| crmdq_source::SourceError::Kafka {
                operation: "fetch metadata",
                source,
            })?;
        for topic in md.topics() {
            for p in topic.partitions() {
                let (_, high) = c
                    .fetch_watermarks(t, p.id(), Duration::from_secs(10))
                    .map_err(|source| crmdq_source::SourceError::Kafka {
                        operation: "fetch watermarks",
                        source,
                    })?;
                out.insert((t.clone(), p.id()), high);
            }
        }
    }
    Ok(out)
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
    let checker = Checker::compile(p)?;
    let telemetry = opts.telemetry.clone().unwrap_or_else(|| Telemetry {
        metrics: Arc::new(Metrics::new()),
        health: Arc::new(RunHealth::new(p.serve.ready_max_lag)),
    });
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
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
    let consumer = kafka::consumer(&settings, positions_fn(w.clone()), tx)?;
    let targets = if opts.until_caught_up {
        Some(end_offsets(&consumer, &settings.topics)?)
    } else {
        None
    };
    let mut lp = Loop {
        consumer: &consumer,
        warehouse: w,
        checker: &checker,
        sink: Sink::new(w.clone(), sink_limits(&p.warehouse), writer_id(clock)),
        stage: DecodeStage::new(p.time_zone.clone(), p.source.max_message_bytes),
        p,
        clock,
        topics: kc.topics.clone(),
        parts: PartitionTracker::default(),
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
            Some(ev) = events.recv() => {
                let t = Instant::now();
                assigned_once |= matches!(ev, RebalanceEvent::Assigned(_));
                lp.on_rebalance(ev).await?;
                if lp.summary.first_message_at.is_some() {
                    lp.summary.busy += t.elapsed();
                }
            }
            m = consumer.recv(), if lp.stalled.is_none() => match m {
                Ok(m) => {
                    let t = Instant::now();
                    let r = lp.on_message(&m).await;
                    lp.summary.busy += t.elapsed();
                    lp.check(r)?;
                    if std::mem::take(&mut lp.reached_one) {
                        // The tick arm commits and stops once every partition is there
                        // (and no message is waiting: `recv` comes first).
                        tick.reset_immediately();
                    }
                }
                Err(e) => {
                    lp.metrics.kafka_errors.inc();
                    tracing::warn!(error = %e, "kafka consume error (librdkafka retries)");
                }
            },
            _ = tick.tick() => {
                lp.update_gauges();
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
                lp.check(r)?;
                // With --until-caught-up, commit as soon as every partition held here has
                // reached its end offset, not at the next commit interval (at most once a
                // second, should more keep arriving while other members catch up).
                let reached = targets.as_ref().is_some_and(|t| {
                    lp.buffered
                        && !lp.parts.is_empty()
                        && lp.parts.partitions().all(|tp| {
                            t.get(tp)
                                .is_none_or(|h| lp.parts.next(tp).is_some_and(|n| n >= *h))
                        })
                        && last_commit.elapsed() >= Duration::from_secs(1)
                });
                if lp.stalled.is_none()
                    && (last_commit.elapsed() >= kc.commit_interval
                        || lp.sink.needs_commit()
                        || reached)
                {
                    let t = Instant::now();
                    let r = lp.commit().await;
                    lp.summary.busy += t.elapsed();
                    lp.check(r)?;
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
    lp.commit().await?;
    lp.summary.busy += t.elapsed();
    lp.summary.ended_at = Some(Instant::now());
    if let Some(t) = alerts_task {
        let _ = t.await;
    }
    let summary = lp.summary.clone();
    drop(lp);
    consumer.unsubscribe();
    Ok(summary)
}
