//! The Kafka source as a stage: it yields positioned messages and owns where every held
//! partition stands.
//!
//! [`KafkaSource`] wraps the subscribed consumer of [`crate::kafka`] and a
//! [`PartitionTracker`]. [`KafkaSource::recv`] returns only messages the tracker accepts,
//! each with its [`SourcePos`] (the one position type of every stage) and the offset jump
//! it revealed, if any; messages already committed, or waiting to be re-read after a seek,
//! are counted as skipped and never reach the caller. Seeks, assignments, revocations and
//! group offset commits go through the source too, so the consumer loop holds no rdkafka
//! type and no offset arithmetic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crmdq_schema::SourcePos;
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use rdkafka::message::BorrowedMessage;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::SourceError;
use crate::kafka::{self, ConsumerSettings, CrmdqConsumer, PositionFn, RebalanceEvent, Tp};
use crate::tracker::{Jump, PartitionTracker, Verdict};

/// How long a watermark query or a seek may block the loop.
const BROKER_CALL: Duration = Duration::from_secs(5);
/// How long the end offsets of `--until-caught-up` may take.
const METADATA_CALL: Duration = Duration::from_secs(10);

/// A message accepted at its position.
pub struct Positioned<'a> {
    msg: BorrowedMessage<'a>,
    pos: SourcePos,
    /// The message did not follow its partition's position: how it moved.
    pub jump: Option<Jump>,
}

impl Positioned<'_> {
    pub fn pos(&self) -> &SourcePos {
        &self.pos
    }

    pub fn into_pos(self) -> SourcePos {
        self.pos
    }

    pub fn topic(&self) -> &str {
        self.msg.topic()
    }

    pub fn partition(&self) -> i32 {
        self.msg.partition()
    }

    pub fn offset(&self) -> i64 {
        self.msg.offset()
    }

    /// The message's bytes (None: a tombstone without payload).
    pub fn payload(&self) -> Option<&[u8]> {
        self.msg.payload()
    }
}

/// What [`KafkaSource::recv`] produced.
pub enum Received<'a> {
    Message(Positioned<'a>),
    /// Already committed, or waiting for its partition's re-read after a seek.
    Skipped,
    /// librdkafka reported an error (it retries by itself).
    Error(rdkafka::error::KafkaError),
}

/// The subscribed consumer and the position of every partition it holds.
pub struct KafkaSource {
    consumer: CrmdqConsumer,
    parts: PartitionTracker,
    /// Topic names as shared strings, so a position costs no allocation per message.
    topics: BTreeMap<String, Arc<str>>,
}

impl KafkaSource {
    /// Subscribe; assignments start at what `positions` says (the commit log), and
    /// rebalances arrive on the returned channel, to be handed back to
    /// [`KafkaSource::on_rebalance`].
    pub fn open(
        settings: &ConsumerSettings,
        positions: PositionFn,
    ) -> Result<(KafkaSource, UnboundedReceiver<RebalanceEvent>), SourceError> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let consumer = kafka::consumer(settings, positions, tx)?;
        let topics = settings
            .topics
            .iter()
            .map(|t| (t.clone(), Arc::from(t.as_str())))
            .collect();
        Ok((
            KafkaSource {
                consumer,
                parts: PartitionTracker::default(),
                topics,
            },
            rx,
        ))
    }

    /// The next message its partition's position accepts. The broker's watermarks are
    /// asked (blocking up to 5 s) only for a message that does not follow its partition.
    pub async fn recv(&mut self) -> Received<'_> {
        let m = match self.consumer.recv().await {
            Ok(m) => m,
            Err(e) => return Received::Error(e),
        };
        let tp = (m.topic().to_string(), m.partition());
        let consumer = &self.consumer;
        let verdict = self.parts.on_message(&tp, m.offset(), |tp| {
            consumer
                .fetch_watermarks(&tp.0, tp.1, BROKER_CALL)
                .map_err(|e| {
                    tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "watermarks unavailable");
                })
                .ok()
        });
        let jump = match verdict {
            Verdict::Skip => return Received::Skipped,
            Verdict::Accept(jump) => jump,
        };
        let topic = match self.topics.get(m.topic()) {
            Some(t) => t.clone(),
            None => Arc::from(m.topic()),
        };
        let pos = SourcePos::Kafka {
            topic,
            partition: m.partition(),
            offset: m.offset(),
        };
        Received::Message(Positioned { msg: m, pos, jump })
    }

    /// Apply a rebalance: assigned partitions start at their committed positions;
    /// revoked ones are forgotten. Returns the partitions revoked.
    pub fn on_rebalance(&mut self, ev: &RebalanceEvent) -> Vec<Tp> {
        match ev {
            RebalanceEvent::Assigned(parts) => {
                for (tp, start) in parts {
                    self.parts.assign(tp.clone(), start.unwrap_or(0));
                }
                Vec::new()
            }
            RebalanceEvent::Revoked(parts) => {
                for tp in parts {
                    self.parts.revoke(tp);
                }
                parts.clone()
            }
            RebalanceEvent::Error(_) => Vec::new(),
        }
    }

    /// Seek `tp` back to `next` and accept only exactly `next` until it arrives.
    pub fn seek_back(&mut self, tp: &Tp, next: i64) {
        self.parts.seek_back(tp, next);
        let off = if next == 0 {
            rdkafka::Offset::Beginning
        } else {
            rdkafka::Offset::Offset(next)
        };
        if let Err(e) = self.consumer.seek(&tp.0, tp.1, off, BROKER_CALL) {
            tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "seek failed");
        }
    }

    /// Partitions whose position moved since the last commit, with their next offsets.
    pub fn advanced(&self) -> BTreeMap<Tp, i64> {
        self.parts.advanced()
    }

    /// The warehouse committed `next` offsets: remember them, and commit them to the group
    /// (informational, for lag tools; the warehouse is the source of truth).
    pub fn committed(&mut self, next: &BTreeMap<Tp, i64>) -> Result<(), SourceError> {
        self.parts.committed_to(next);
        kafka::commit_offsets(&self.consumer, next).map_err(|source| SourceError::Kafka {
            operation: "commit offsets",
            source,
        })
    }

    /// The partitions held, in order.
    pub fn partitions(&self) -> impl Iterator<Item = &Tp> {
        self.parts.partitions()
    }

    /// The next offset this consumer reads of `tp`.
    pub fn next(&self, tp: &Tp) -> Option<i64> {
        self.parts.next(tp)
    }

    /// The next offset committed to the warehouse of `tp`.
    pub fn committed_next(&self, tp: &Tp) -> i64 {
        self.parts.committed(tp)
    }

    pub fn len(&self) -> usize {
        self.parts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// High watermarks of every partition of the subscribed topics at this moment.
    pub fn end_offsets(&self) -> Result<BTreeMap<Tp, i64>, SourceError> {
        let mut out = BTreeMap::new();
        for t in self.topics.keys() {
            let md = self
                .consumer
                .fetch_metadata(Some(t), METADATA_CALL)
                .map_err(|source| SourceError::Kafka {
                    operation: "fetch metadata",
                    source,
                })?;
            for topic in md.topics() {
                for p in topic.partitions() {
                    let (_, high) = self
                        .consumer
                        .fetch_watermarks(t, p.id(), METADATA_CALL)
                        .map_err(|source| SourceError::Kafka {
                            operation: "fetch watermarks",
                            source,
                        })?;
                    out.insert((t.clone(), p.id()), high);
                }
            }
        }
        Ok(out)
    }

    /// Leave the group.
    pub fn close(self) {
        self.consumer.unsubscribe();
    }
}
