//! The consumer loop's state and what it does with each thing the select loop hands it:
//! an accepted message, a commit, a rebalance, a fenced commit, a failing warehouse.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crmdq_check::Checker;
use crmdq_config::Pipeline;
use crmdq_decode::Decoded;
use crmdq_schema::RecordType;
use crmdq_source::kafka::{self, BrokerViewSlot, RebalanceEvent, Tp};
use crmdq_source::stage::{KafkaSource, Positioned};
use crmdq_source::tracker::Jump;
use crmdq_telemetry::metrics::PartitionLabel;
use crmdq_telemetry::{CommitCounts, InternalEvent, Metrics, RunHealth, events};
use crmdq_warehouse::{Sink, SinkStats, SourcePosition, Warehouse};

use super::RunSummary;
use crate::ingest::BATCH_ROWS;
use crate::process::process;
use crate::stage::DecodeStage;
use crate::{Clock, PipelineError};

/// The consumer loop's state: everything downstream of the source (decode stage, sink,
/// commit bookkeeping, telemetry). The source itself is handed to the methods that need
/// it, so a message borrowed from it can be taken in while the loop is mutable.
pub(super) struct Loop<'a> {
    pub(super) warehouse: &'a Warehouse,
    pub(super) checker: &'a Checker,
    pub(super) sink: Sink,
    /// Messages → decoded batches, decoding off the loop.
    pub(super) stage: DecodeStage,
    pub(super) p: &'a Pipeline,
    pub(super) clock: &'a dyn Clock,
    pub(super) topics: BTreeMap<String, Option<RecordType>>,
    pub(super) buffered: bool,
    pub(super) writer: String,
    pub(super) summary: RunSummary,
    pub(super) metrics: Arc<Metrics>,
    pub(super) health: Arc<RunHealth>,
    /// Counts of what is buffered, added to the metrics once committed.
    pub(super) pending: CommitCounts,
    /// Sink counters at the last metrics update.
    pub(super) last_stats: SinkStats,
    /// Newest committed event time (µs).
    pub(super) newest_event_us: Option<i64>,
    pub(super) view: BrokerViewSlot,
    /// After a warehouse failure: when to probe again, and the current backoff.
    pub(super) stalled: Option<(Instant, Duration)>,
    /// The optional dead-letter topic, and the dead letters buffered for it.
    pub(super) dlq: Option<kafka::DeadLetterTopic>,
    pub(super) pending_dlq: Vec<arrow::array::RecordBatch>,
    /// The commit log as last seen (refreshed by each fenced commit).
    pub(super) log: crmdq_warehouse::Snapshot,
    /// Partitions with lag and no progress.
    pub(super) stalls: crate::stall::StallWatch,
    /// With `--until-caught-up`: each partition's end offset at start.
    pub(super) targets: Option<BTreeMap<Tp, i64>>,
    /// A message just took its partition to its target: look at the end now rather
    /// than at the next tick.
    pub(super) reached_one: bool,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Loop<'_> {
    /// Take an accepted message into the decode stage.
    #[expect(
        clippy::needless_pass_by_value,
        reason = "taking the message ends its borrow of the source before the loop commits"
    )]
    pub(super) fn accept(&mut self, msg: Positioned<'_>) {
        if let Some(jump) = msg.jump {
            self.after_jump(msg.topic(), msg.partition(), jump);
        }
        if let Some(t) = &self.targets
            && t.get(&(msg.topic().to_string(), msg.partition())) == Some(&(msg.offset() + 1))
        {
            self.reached_one = true;
        }
        events::MessageConsumed { topic: msg.topic() }.emit(&self.metrics);
        let implied = self.topics.get(msg.topic()).copied().flatten();
        self.stage
            .push(msg.payload(), msg.pos().clone(), implied, self.clock.now());
        self.buffered = true;
        self.summary.messages += 1;
        self.summary
            .first_message_at
            .get_or_insert_with(Instant::now);
    }
    /// After a message: decode a full batch (on its own thread while the one before is
    /// checked), and commit when the buffers are full (bounded memory).
    pub(super) async fn after_accept(
        &mut self,
        src: &mut KafkaSource,
    ) -> Result<(), PipelineError> {
        if self.stage.queued() >= BATCH_ROWS {
            if let Some(d) = self.stage.dispatch().await? {
                self.process_decoded(d).await?;
            }
            if self.sink.needs_commit() {
                self.commit(src).await?;
            }
        }
        Ok(())
    }
    /// Decode, check and hand to the sink everything consumed so far.
    pub(super) async fn flush_decoder(&mut self) -> Result<(), PipelineError> {
        for d in self.stage.drain().await? {
            self.process_decoded(d).await?;
        }
        Ok(())
    }
    pub(super) async fn process_decoded(&mut self, d: Decoded) -> Result<(), PipelineError> {
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
    pub(super) async fn commit(&mut self, src: &mut KafkaSource) -> Result<(), PipelineError> {
        self.flush_decoder().await?;
        let advanced: BTreeMap<Tp, i64> = src.advanced();
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
                reset: *next < src.committed_next(tp),
            })
            .collect();
        self.copy_dead_letters().await;
        let started = Instant::now();
        // Fenced: each partition must still be where this consumer started reading it.
        let expect: BTreeMap<Tp, i64> = advanced
            .keys()
            .map(|tp| (tp.clone(), src.committed_next(tp)))
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
            Ok(version) => events::Committed {
                version,
                records: self.pending.records.values().sum(),
                dead_letters: self.pending.dead_letters.values().sum(),
                partitions: advanced.len(),
                took: started.elapsed(),
            }
            .emit(&self.metrics),
            Err(crmdq_warehouse::WarehouseError::Fenced {
                topic,
                partition,
                expected,
                found,
            }) => {
                self.fenced(src, &(topic, partition), expected, found);
                return Ok(());
            }
            Err(e) => {
                events::WarehouseWriteFailed {
                    error: &e,
                    retry_in: None,
                }
                .emit(&self.metrics);
                self.health.set_warehouse(Err(e.to_string()));
                return Err(e.into());
            }
        }
        self.health.set_warehouse(Ok(()));
        self.summary.commits += 1;
        let counts = std::mem::take(&mut self.pending);
        self.newest_event_us = self.newest_event_us.max(counts.max_event_time_us);
        self.metrics.observe_commit(&counts);
        self.sync_sink_metrics();
        self.buffered = false;
        if let Err(e) = src.committed(&advanced) {
            events::OffsetCommitFailed { error: &e }.emit(&self.metrics);
        }
        Ok(())
    }
    /// `tp` moved from the expected offset to another ([`Jump`], read from positions
    /// and the broker's watermarks): a reset after "offset out of range" is said loudly
    /// and counted; offsets jumped over are gone from the broker (retention); a move
    /// backwards means the topic was re-created or truncated, and what follows is read
    /// as new messages. A gap with nothing lost (transaction markers) is only traced.
    pub(super) fn after_jump(&self, topic: &str, partition: i32, jump: Jump) {
        let (expected, resumed_at, kind) = match jump {
            Jump::Lost {
                expected,
                resumed_at,
            } => (
                expected,
                resumed_at,
                events::JumpKind::Lost {
                    skipped: jump.lost(),
                },
            ),
            Jump::Rewound {
                expected,
                resumed_at,
            } => (expected, resumed_at, events::JumpKind::Rewound),
            Jump::Gap {
                expected,
                resumed_at,
            } => (expected, resumed_at, events::JumpKind::Gap),
        };
        events::OffsetJumped {
            topic,
            partition,
            expected,
            resumed_at,
            kind,
        }
        .emit(&self.metrics);
    }
    /// Forget everything consumed but not committed (it will be read again).
    pub(super) fn drop_uncommitted(&mut self) {
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
    pub(super) fn fenced(&mut self, src: &mut KafkaSource, tp: &Tp, expected: i64, found: i64) {
        events::Fenced {
            topic: &tp.0,
            partition: tp.1,
            expected,
            found,
        }
        .emit(&self.metrics);
        self.drop_uncommitted();
        let parts: Vec<(Tp, i64)> = src
            .partitions()
            .map(|tp| (tp.clone(), self.log.kafka.get(tp).copied().unwrap_or(0)))
            .collect();
        for (tp, next) in parts {
            src.seek_back(&tp, next);
        }
    }
    /// A warehouse write failed: drop everything uncommitted (it will be re-read from
    /// Kafka), seek every partition back to its committed position, and stop consuming
    /// until the warehouse takes writes again. Nothing is committed past what is durable.
    pub(super) fn stall(&mut self, src: &mut KafkaSource, e: &crmdq_warehouse::WarehouseError) {
        let backoff = self
            .stalled
            .map_or(Duration::from_secs(1), |(_, b)| (b * 2).min(MAX_BACKOFF));
        events::WarehouseWriteFailed {
            error: e,
            retry_in: Some(backoff),
        }
        .emit(&self.metrics);
        self.health.set_warehouse(Err(e.to_string()));
        self.drop_uncommitted();
        let parts: Vec<(Tp, i64)> = src
            .partitions()
            .map(|tp| (tp.clone(), src.committed_next(tp)))
            .collect();
        for (tp, next) in parts {
            src.seek_back(&tp, next);
        }
        self.stalled = Some((Instant::now() + backoff, backoff));
    }
    /// While stalled: probe the warehouse when the backoff has passed; resume if it takes
    /// writes.
    pub(super) async fn retry_stalled(&mut self) {
        let Some((at, backoff)) = self.stalled else {
            return;
        };
        if Instant::now() < at {
            return;
        }
        match self.warehouse.probe_writable().await {
            Ok(()) => {
                events::WarehouseProbed {
                    error: None,
                    retry_in: Duration::ZERO,
                }
                .emit(&self.metrics);
                self.health.set_warehouse(Ok(()));
                self.stalled = None;
            }
            Err(e) => {
                let backoff = (backoff * 2).min(MAX_BACKOFF);
                events::WarehouseProbed {
                    error: Some(&e),
                    retry_in: backoff,
                }
                .emit(&self.metrics);
                self.stalled = Some((Instant::now() + backoff, backoff));
            }
        }
    }
    /// Route a step's result: retryable warehouse failures stall, others end the run.
    pub(super) fn check(
        &mut self,
        src: &mut KafkaSource,
        r: Result<(), PipelineError>,
    ) -> Result<(), PipelineError> {
        match r {
            Err(PipelineError::Warehouse(e)) if e.is_retryable() => {
                self.stall(src, &e);
                Ok(())
            }
            other => other,
        }
    }
    pub(super) fn forget_partition(&mut self, tp: &Tp) {
        let label = PartitionLabel {
            topic: tp.0.clone(),
            partition: tp.1.to_string(),
        };
        self.metrics.consumer_lag.remove(&label);
        self.metrics.committed_lag.remove(&label);
        self.metrics.partition_stalled.remove(&label);
        self.stalls.forget(tp);
    }
    pub(super) async fn on_rebalance(
        &mut self,
        src: &mut KafkaSource,
        ev: RebalanceEvent,
    ) -> Result<(), PipelineError> {
        self.summary.rebalances += 1;
        let revoked = src.on_rebalance(&ev);
        match ev {
            RebalanceEvent::Assigned(parts) => {
                let listed: Vec<(String, i32, Option<i64>)> = parts
                    .iter()
                    .map(|((t, p), start)| (t.clone(), *p, *start))
                    .collect();
                events::Rebalanced::Assigned {
                    partitions: &listed,
                }
                .emit(&self.metrics);
            }
            RebalanceEvent::Revoked(_) => {
                events::Rebalanced::Revoked {
                    partitions: revoked.len(),
                }
                .emit(&self.metrics);
                self.drop_uncommitted();
                for tp in &revoked {
                    self.forget_partition(tp);
                }
                // Retained partitions go back to their committed position.
                let snap = self.warehouse.snapshot().await?;
                let retained: Vec<Tp> = src.partitions().cloned().collect();
                for tp in retained {
                    let next = snap.kafka.get(&tp).copied().unwrap_or(0);
                    src.seek_back(&tp, next);
                }
            }
            RebalanceEvent::Error(e) => events::Rebalanced::Error { error: &e }.emit(&self.metrics),
        }
        self.health.assigned.store(src.len(), Ordering::Relaxed);
        Ok(())
    }
}
