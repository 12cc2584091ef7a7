//! Typed internal events of the consumer loop (Vector's `internal_events` is the model):
//! one type per thing that happens, and its `emit` is the one place that writes both the
//! log line and the counters for it, so the two can never tell different stories.
//!
//! The consumer loop builds an event and emits it: `Committed { .. }.emit(&metrics)`.
//! Events hold plain values (topic, partition, offsets) so this crate stays below every
//! stage.

use std::fmt::Display;
use std::time::Duration;

use crate::metrics::{KindLabel, Metrics, PartitionLabel, TopicLabel};

/// Something the process says about itself: a log line and its counters.
pub trait InternalEvent {
    fn emit(self, m: &Metrics);
}

fn partition_label(topic: &str, partition: i32) -> PartitionLabel {
    PartitionLabel {
        topic: topic.to_string(),
        partition: partition.to_string(),
    }
}

fn kind_label(kind: &str) -> KindLabel {
    KindLabel {
        kind: kind.to_string(),
    }
}

/// A warehouse commit (files, dead letters and Kafka positions) is durable.
pub struct Committed {
    /// The commit-log version written (None: nothing needed writing).
    pub version: Option<u64>,
    pub records: u64,
    pub dead_letters: u64,
    pub partitions: usize,
    pub took: Duration,
}

impl InternalEvent for Committed {
    fn emit(self, m: &Metrics) {
        tracing::info!(
            version = self.version,
            records = self.records,
            dead_letters = self.dead_letters,
            partitions = self.partitions,
            seconds = self.took.as_secs_f64(),
            "committed"
        );
        m.commits.inc();
        m.commit_duration.observe(self.took.as_secs_f64());
    }
}

/// A warehouse write or commit failed. With `retry_in`, consumption pauses and the
/// uncommitted data is dropped (it will be re-read); without, the run ends.
pub struct WarehouseWriteFailed<'a> {
    pub error: &'a dyn Display,
    pub retry_in: Option<Duration>,
}

impl InternalEvent for WarehouseWriteFailed<'_> {
    fn emit(self, m: &Metrics) {
        m.warehouse_errors.inc();
        if let Some(d) = self.retry_in {
            tracing::error!(
                error = %self.error,
                retry_in_seconds = d.as_secs_f64(),
                "warehouse write failed: consumption paused, uncommitted data discarded (it will be re-read)"
            );
        } else {
            tracing::error!(error = %self.error, "warehouse commit failed");
        }
    }
}

/// The paused consumer probed the warehouse: writable again, or not yet.
pub struct WarehouseProbed<'a> {
    pub error: Option<&'a dyn Display>,
    pub retry_in: Duration,
}

impl InternalEvent for WarehouseProbed<'_> {
    fn emit(self, _: &Metrics) {
        match self.error {
            None => tracing::info!("warehouse writable again: consumption resumes"),
            Some(e) => tracing::error!(
                error = %e,
                retry_in_seconds = self.retry_in.as_secs_f64(),
                "warehouse still not writable"
            ),
        }
    }
}

/// The Kafka group offset commit failed after a durable warehouse commit (the warehouse
/// is the source of truth; the group offset is for lag tools).
pub struct OffsetCommitFailed<'a> {
    pub error: &'a dyn Display,
}

impl InternalEvent for OffsetCommitFailed<'_> {
    fn emit(self, m: &Metrics) {
        m.kafka_errors.inc();
        tracing::warn!(error = %self.error, "kafka offset commit failed (warehouse commit succeeded)");
    }
}

/// How a partition's position moved away from the expected next offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JumpKind {
    /// Forwards over offsets the broker no longer has (retention): they are lost.
    Lost { skipped: u64 },
    /// Backwards: the topic was re-created or truncated.
    Rewound,
    /// Forwards over offsets without messages (transaction markers, compaction).
    Gap,
}

/// A partition's position jumped; an offset reset (lost, rewound) is said loudly and
/// counted, a gap with nothing lost only traced.
pub struct OffsetJumped<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub expected: i64,
    pub resumed_at: i64,
    pub kind: JumpKind,
}

impl InternalEvent for OffsetJumped<'_> {
    fn emit(self, m: &Metrics) {
        let (topic, partition, expected, resumed_at) =
            (self.topic, self.partition, self.expected, self.resumed_at);
        let label = partition_label(topic, partition);
        match self.kind {
            JumpKind::Lost { skipped } => {
                m.offset_resets.get_or_create(&label).inc();
                m.offsets_skipped.get_or_create(&label).inc_by(skipped);
                tracing::error!(
                    topic,
                    partition,
                    expected,
                    resumed_at,
                    skipped,
                    "offset reset: {skipped} messages were removed from the broker before crmdq read them; they are not in the warehouse"
                );
            }
            JumpKind::Rewound => {
                m.offset_resets.get_or_create(&label).inc();
                tracing::error!(
                    topic,
                    partition,
                    expected,
                    resumed_at,
                    "offset reset moved backwards: the topic was re-created or truncated; reading from offset {resumed_at} as new messages"
                );
            }
            JumpKind::Gap => tracing::debug!(
                topic,
                partition,
                expected,
                resumed_at,
                "offsets without messages skipped (transaction markers or compaction)"
            ),
        }
    }
}

/// Dead letters copied to the dead-letter topic; `failed` of them were not.
pub struct DeadLettersCopied<'a> {
    pub topic: &'a str,
    pub produced: u64,
    pub failed: u64,
    pub error: Option<&'a dyn Display>,
}

impl InternalEvent for DeadLettersCopied<'_> {
    fn emit(self, m: &Metrics) {
        m.dead_letter_topic_produced.inc_by(self.produced);
        if self.failed > 0 {
            m.dead_letter_topic_errors.inc_by(self.failed);
            tracing::error!(
                topic = self.topic,
                failed = self.failed,
                error = self.error.map(ToString::to_string),
                "dead letters not copied to the dead-letter topic (they are in the warehouse's dead_letters table)"
            );
        }
    }
}

/// A partition with messages waiting made no progress for `stuck_for`.
pub struct PartitionStalled<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub next_offset: i64,
    pub lag: i64,
    pub stuck_for: Duration,
}

impl InternalEvent for PartitionStalled<'_> {
    fn emit(self, m: &Metrics) {
        m.partition_stalls.inc();
        m.partition_stalled
            .get_or_create(&partition_label(self.topic, self.partition))
            .set(1);
        let secs = self.stuck_for.as_secs_f64();
        tracing::error!(
            topic = self.topic,
            partition = self.partition,
            next_offset = self.next_offset,
            lag = self.lag,
            stuck_seconds = secs,
            "partition stalled: {} messages waiting and no progress at offset {} for {secs:.0} s (a message the broker cannot hand out, a fetch error that does not clear, or an unwritable warehouse); /readyz fails until it moves",
            self.lag,
            self.next_offset
        );
    }
}

/// A stalled partition moves again.
pub struct PartitionResumed<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub stuck_for: Duration,
}

impl InternalEvent for PartitionResumed<'_> {
    fn emit(self, m: &Metrics) {
        m.partition_stalled
            .get_or_create(&partition_label(self.topic, self.partition))
            .set(0);
        tracing::warn!(
            topic = self.topic,
            partition = self.partition,
            stuck_seconds = self.stuck_for.as_secs_f64(),
            "partition moving again after a stall"
        );
    }
}

/// The group changed this consumer's partitions.
pub enum Rebalanced<'a> {
    Assigned {
        partitions: &'a [(String, i32, Option<i64>)],
    },
    Revoked {
        partitions: usize,
    },
    Error {
        error: &'a dyn Display,
    },
}

impl InternalEvent for Rebalanced<'_> {
    fn emit(self, m: &Metrics) {
        let kind = match &self {
            Rebalanced::Assigned { .. } => "assign",
            Rebalanced::Revoked { .. } => "revoke",
            Rebalanced::Error { .. } => "error",
        };
        m.rebalances.get_or_create(&kind_label(kind)).inc();
        match self {
            Rebalanced::Assigned { partitions } => {
                for (topic, partition, start) in partitions {
                    tracing::info!(topic, partition, start = ?start, "partition assigned");
                }
            }
            Rebalanced::Revoked { partitions } => tracing::info!(
                partitions,
                "partitions revoked: discarding uncommitted buffers"
            ),
            Rebalanced::Error { error } => tracing::warn!(error = %error, "rebalance problem"),
        }
    }
}

/// Another consumer committed a partition this one was also reading (split ownership
/// during a rebalance): this one drops what it has not committed and re-reads.
pub struct Fenced<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub expected: i64,
    pub found: i64,
}

impl InternalEvent for Fenced<'_> {
    fn emit(self, m: &Metrics) {
        m.rebalances.get_or_create(&kind_label("fenced")).inc();
        tracing::warn!(
            topic = self.topic,
            partition = self.partition,
            expected = self.expected,
            found = self.found,
            "another consumer committed this partition meanwhile (split ownership during a rebalance): discarding uncommitted data and re-reading from the commit log"
        );
    }
}

/// A message was consumed from `topic`.
pub struct MessageConsumed<'a> {
    pub topic: &'a str,
}

impl InternalEvent for MessageConsumed<'_> {
    fn emit(self, m: &Metrics) {
        m.consumed
            .get_or_create(&TopicLabel {
                topic: self.topic.to_string(),
            })
            .inc();
    }
}

/// librdkafka reported an error while consuming (it retries by itself).
pub struct KafkaError<'a> {
    pub error: &'a dyn Display,
    pub context: &'static str,
}

impl InternalEvent for KafkaError<'_> {
    fn emit(self, m: &Metrics) {
        m.kafka_errors.inc();
        tracing::warn!(error = %self.error, "kafka {} (librdkafka retries)", self.context);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(m: &Metrics, name: &str) -> String {
        m.encode()
            .lines()
            .filter(|l| l.starts_with(name))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn an_event_moves_its_counters() {
        let m = Metrics::new();
        OffsetJumped {
            topic: "t",
            partition: 3,
            expected: 10,
            resumed_at: 25,
            kind: JumpKind::Lost { skipped: 15 },
        }
        .emit(&m);
        OffsetJumped {
            topic: "t",
            partition: 3,
            expected: 30,
            resumed_at: 31,
            kind: JumpKind::Gap,
        }
        .emit(&m);
        assert!(
            sample(&m, "crmdq_offsets_skipped_total").contains("partition=\"3\",topic=\"t\"} 15")
                || sample(&m, "crmdq_offsets_skipped_total")
                    .contains("topic=\"t\",partition=\"3\"} 15"),
            "{}",
            m.encode()
        );
        let resets = sample(&m, "crmdq_offset_resets_total");
        assert!(resets.ends_with(" 1"), "a gap is not a reset: {resets}");
        Fenced {
            topic: "t",
            partition: 0,
            expected: 1,
            found: 2,
        }
        .emit(&m);
        Rebalanced::Revoked { partitions: 2 }.emit(&m);
        let rebalances = sample(&m, "crmdq_rebalances_total");
        assert!(rebalances.contains("kind=\"fenced\"} 1"), "{rebalances}");
        assert!(rebalances.contains("kind=\"revoke\"} 1"), "{rebalances}");
    }
}
